//! The one place that makes a backend: the simulator with a hardware
//! profile, a seed and run limits, or the host's KVM through a device
//! node. The command line, the experiments, `check` and `bench` all say
//! which they want with a [`BackendSpec`] and get a [`Machine`] from it.
//!
//! The backend traits have associated types, so code that runs on "either
//! backend" is generic; [`OnVm`] is how it is handed to a [`Machine`],
//! which calls it with the concrete VM.

use exitlab_guest::BootImage;
use exitlab_hv::{HvError, Vm};
use exitlab_kvm::KvmVm;
use exitlab_sim::profile::Profile;
use exitlab_sim::{RunLimits, SimVm};
use exitlab_vmm::{RunOptions, RunReport, VmmError};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of backend, as users name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The deterministic simulated machine (virtual time).
    Sim,
    /// The host's KVM.
    Kvm,
}

impl BackendKind {
    /// Every kind, in the order users see them.
    pub const ALL: [BackendKind; 2] = [BackendKind::Sim, BackendKind::Kvm];

    /// The name users select it by (`sim`, `kvm`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sim => "sim",
            BackendKind::Kvm => "kvm",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<BackendKind> {
        BackendKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend and its settings.
#[derive(Clone, Debug)]
pub enum BackendSpec {
    /// The simulator on `profile`'s hardware; `seed` drives every cost
    /// distribution; `limits` stop a runaway guest.
    Sim {
        /// The hardware profile.
        profile: Box<Profile>,
        /// The seed of the cost distributions.
        seed: u64,
        /// Instruction and guest-time limits.
        limits: RunLimits,
    },
    /// KVM through the device node at `device`.
    Kvm {
        /// The KVM device node (/dev/kvm, or `$EXITLAB_KVM_DEVICE`).
        device: PathBuf,
        /// Wall-clock limit on the vCPU's run calls (a guest spinning
        /// inside KVM_RUN included), from the first.
        max_time: Option<Duration>,
        /// Whether the run's threads are confined to the system calls they
        /// make (seccomp; on unless turned off for debugging).
        seccomp: bool,
    },
}

impl BackendSpec {
    /// The simulator on `profile` with `seed`, with the default limits
    /// ([`RunLimits::DEFAULT`]).
    pub fn sim(profile: Profile, seed: u64) -> BackendSpec {
        BackendSpec::Sim { profile: Box::new(profile), seed, limits: RunLimits::DEFAULT }
    }

    /// KVM through `device`, or the default device node, without a
    /// wall-clock limit of its own (the VMM's host-time limit holds:
    /// `exitlab_vmm::limits`).
    pub fn kvm(device: Option<PathBuf>) -> BackendSpec {
        BackendSpec::Kvm { device: device.unwrap_or_else(exitlab_kvm::device_path), max_time: None, seccomp: true }
    }

    /// Which kind of backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSpec::Sim { .. } => BackendKind::Sim,
            BackendSpec::Kvm { .. } => BackendKind::Kvm,
        }
    }

    /// A fresh VM with `memory_size` bytes of RAM.
    pub fn open(&self, memory_size: u64) -> Result<Machine, HvError> {
        Ok(match self {
            BackendSpec::Sim { profile, seed, limits } => {
                let mut vm = SimVm::with_profile(memory_size, Profile::clone(profile), *seed)?;
                vm.set_limits(*limits);
                Machine::Sim(Box::new(vm))
            }
            BackendSpec::Kvm { device, max_time, seccomp } => {
                let mut vm = KvmVm::new(device, memory_size)?;
                vm.set_time_limit(*max_time);
                vm.set_seccomp(*seccomp);
                Machine::Kvm(vm)
            }
        })
    }

    /// Builds the VM `image` describes on a fresh backend and runs it.
    pub fn run(&self, image: &BootImage, options: &RunOptions) -> Result<RunReport, VmmError> {
        self.open(image.memory_size)?.run(image, options)
    }
}

/// Code that runs on a VM of any backend.
pub trait OnVm {
    /// What it gives back.
    type Output;
    /// Runs on `vm`.
    fn on<V: Vm>(self, vm: &mut V) -> Self::Output;
}

/// A VM of one of the backends.
pub enum Machine {
    /// A simulated VM.
    Sim(Box<SimVm>),
    /// A KVM VM.
    Kvm(KvmVm),
}

impl Machine {
    /// Runs `f` on the VM.
    pub fn with<F: OnVm>(&mut self, f: F) -> F::Output {
        match self {
            Machine::Sim(vm) => f.on(vm.as_mut()),
            Machine::Kvm(vm) => f.on(vm),
        }
    }

    /// Builds the VM `image` describes and runs it.
    pub fn run(&mut self, image: &BootImage, options: &RunOptions) -> Result<RunReport, VmmError> {
        struct Run<'a>(&'a BootImage, &'a RunOptions);
        impl OnVm for Run<'_> {
            type Output = Result<RunReport, VmmError>;
            fn on<V: Vm>(self, vm: &mut V) -> Self::Output {
                exitlab_vmm::run_boot_image(vm, self.0, self.1)
            }
        }
        self.with(Run(image, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::from_name(k.name()), Some(k));
        }
        assert_eq!(BackendKind::from_name("qemu"), None);
    }

    #[test]
    fn a_sim_spec_makes_a_simulator_with_its_limits() {
        let spec = BackendSpec::Sim {
            profile: Box::new(Profile::load("legacy").unwrap()),
            seed: 3,
            limits: RunLimits { max_instructions: Some(1000), max_time_ns: None },
        };
        assert_eq!(spec.kind(), BackendKind::Sim);
        let w = exitlab_guest::find_workload("pio-out").unwrap();
        let image = w.build(&w.resolve(["n=100000"]).unwrap()).unwrap().boot_image();
        let Machine::Sim(vm) = spec.open(image.memory_size).unwrap() else { panic!("not the simulator") };
        assert_eq!(vm.profile().name, "legacy");
        let r = spec.run(&image, &RunOptions::default()).unwrap();
        let exitlab_vmm::Outcome::GuestError(e) = r.outcome else { panic!("{:?}", r.outcome) };
        assert!(e.to_string().contains("instruction limit of 1000"), "{e}");
    }

    #[test]
    fn a_kvm_spec_names_its_device_when_it_cannot_open_it() {
        let spec = BackendSpec::kvm(Some("/nonexistent/kvm".into()));
        assert_eq!(spec.kind(), BackendKind::Kvm);
        let Err(e) = spec.open(1 << 20) else { panic!("opened a device that does not exist") };
        assert!(e.to_string().contains("/nonexistent/kvm"), "{e}");
    }
}

//! The build step: (backend, image, machine description, options) in, one
//! [`Vmm`] out, ready to run. It loads the image, creates the vCPU, checks
//! that the backend has what the machine asks for, and sets the machine
//! up: devices on their buses, the device thread on a host-time backend,
//! isolated memory; and where the VMM drives VMX itself, the controls,
//! posted interrupts, the host timer, the EPT, the write monitor and the
//! IOMMU with the devices assigned behind it. The model is Firecracker's
//! `builder.rs`, apart from the vCPU's exit handling.

use crate::account::Accountant;
use crate::assign::{plug, program_iommu, BLK_SOURCE, DOORBELL_SOURCE};
use crate::bus::Bus;
use crate::ept::{Ept, RWX};
use crate::error::{Needed, VmmError};
use crate::host_tick::HostTick;
use crate::interrupts::{Pending, Posting};
use crate::limits::RunLimits;
use crate::monitor::Monitor;
use crate::platform::{FastPath, Platform, ToAssign};
use crate::sites::ExitSites;
use crate::state::{Vmm, VmxState};
use exitlab_guest::machine::{CpuFeature, MonitorKind, Nic, Platform as MachinePlatform};
use exitlab_guest::{layout, nic, BootImage};
use exitlab_hv::{Vcpu, Vm, VmxVcpu, VmxVm};

/// EPT permissions the VMM gives a guest-physical range (R, W, X bits of
/// an EPT entry), on hardware with EPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// EPT permission bits (R 1, W 2, X 4).
    pub perms: u64,
}

/// How to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep every exit in [`crate::RunReport::trace`] (costs a register
    /// read per exit on KVM).
    pub trace: bool,
    /// EPT policies over RAM ranges (ignored without EPT).
    pub protect: Vec<Protection>,
    /// CPUID leaves the VMM answers differently from its built-in model:
    /// (leaf, [EAX, EBX, ECX, EDX]).
    pub cpuid: Vec<(u32, [u32; 4])>,
    /// On KVM: devices' notifications and interrupts without userspace.
    pub fast_path: FastPath,
    /// Exits, exits without progress and host time before the run stops
    /// (on by default: [`RunLimits::default`]).
    pub limits: RunLimits,
    /// Count exits by guest RIP ([`crate::RunReport::sites`]), for exits
    /// by guest function (a register read per exit on KVM).
    pub exit_sites: bool,
    /// Console lines that end the run ([`crate::console`]; none: the
    /// console is not watched).
    pub console_stops: Vec<crate::console::StopRule>,
}

/// The MMIO bus name of isolated memory.
const ISOLATED: &str = "isolated";

/// Writes every chunk of `image` into guest memory, after checking that
/// all of them fit.
pub(crate) fn load<V: Vm>(vm: &V, image: &BootImage) -> Result<(), VmmError> {
    let memory = vm.memory_size();
    for c in &image.chunks {
        let len = c.bytes.len() as u64;
        if c.gpa.checked_add(len).is_none_or(|end| end > memory) {
            return Err(VmmError::DoesNotFit { gpa: c.gpa, len, memory });
        }
    }
    for c in &image.chunks {
        vm.write_memory(c.gpa, &c.bytes)?;
    }
    Ok(())
}

/// Builds the VM `image` asks for on `vm`: loaded, its vCPU created, its
/// machine set up, ready for [`Vmm::run`].
pub fn build<'a, V: Vm>(vm: &'a mut V, image: &BootImage, options: &RunOptions) -> Result<Vmm<'a, V>, VmmError> {
    let machine = &image.machine;
    machine.check(vm.memory_size()).map_err(|(key, message)| VmmError::Machine { key, message })?;
    load(vm, image)?;
    let mut boot = std::borrow::Cow::Borrowed(&image.boot);
    if machine.platform == MachinePlatform::Pc {
        crate::pc::write_acpi(vm, &image.chunks)?;
        if crate::firmware::applies(&image.boot) {
            boot = std::borrow::Cow::Owned(crate::firmware::post(vm, &image.chunks, &image.boot)?);
        }
    }
    let caps = vm.capabilities();
    let mut vcpu = vm.create_vcpu(0, &boot)?;
    let lacks = |needed| VmmError::Lacks { image: image.name.clone(), needed };
    if machine.needs(CpuFeature::Tsx) && !caps.tsx {
        return Err(lacks(Needed::Tsx));
    }
    let has_vmx = vm.vmx().is_some() && vcpu.vmx().is_some();
    let mut controls = crate::policy::controls(&caps, &image.boot);
    let host_tick = match machine.host_timer_hz {
        Some(hz) if has_vmx && caps.tsc_hz > 0 => Some(HostTick::new(hz.get(), caps.tsc_hz, vcpu.now_ns())),
        _ => None,
    };
    let mut posting = None;
    if !machine.posted_interrupts {
        controls.external_interrupt_exiting = true;
    } else if let (true, Some(vmx)) = (caps.posted_interrupts, vm.vmx_mut()) {
        posting = Some(Posting::new(vmx, &mut controls, 0)?);
    }
    let passthrough = caps.iommu && caps.ept && has_vmx;
    let doorbell = matches!(machine.virtio_net(), Some(Nic::VirtioNet { kick_doorbell: Some(_), .. }));
    // Without an IOMMU, the VMM's own doorbell, which needs ioeventfds.
    let own_doorbell = vm.host().is_some() && options.fast_path.ioeventfd;
    if doorbell && !passthrough && !own_doorbell {
        return Err(lacks(Needed::IommuForDoorbell));
    }
    let (watch, console) = crate::console::ConsoleWatch::new(&options.console_stops).unzip();
    let (mut platform, to_assign) = Platform::new(vm, machine, passthrough, options.fast_path, watch)?;
    let blk_assigned = to_assign.blk.is_some();
    if !machine.isolate.is_empty() && has_vmx && !caps.ept {
        return Err(lacks(Needed::EptToIsolate));
    }
    if !has_vmx && !machine.isolate.is_empty() {
        // No EPT of the VMM's to enforce it with: the memory slots must.
        let host = vm.host().ok_or(VmmError::Missing { exit: None, extension: "VMX or memory slots" })?;
        for &range in &machine.isolate {
            host.unmap(range.start, range.len).map_err(|source| VmmError::Isolate { range, source })?;
        }
    }
    if let (false, Some(m)) = (has_vmx, &machine.monitor) {
        // No EPT of the VMM's to watch with: a memory slot of its own.
        let host = vm.host().ok_or(VmmError::Missing { exit: None, extension: "VMX or memory slots" })?;
        crate::monitor::watch_slot(host, &mut platform.mmio, m)?;
    }
    let vmx = match (has_vmx, vm.vmx_mut(), vcpu.vmx()) {
        (true, Some(vmx_vm), Some(vmx_vcpu)) => {
            let state =
                VmxState { controls, ept: None, monitor: None, posting, host_tick, pending: Pending::default() };
            Some(setup_vmx(vmx_vm, vmx_vcpu, image, options, &platform, to_assign, state)?)
        }
        _ => None,
    };
    for r in &machine.isolate {
        // After the EPT is built: the range stays RAM with no permission,
        // and the device only completes the accesses the VMM blocks.
        let free = "isolated ranges are guest RAM, outside every device";
        platform.mmio.insert(ISOLATED, r.start, r.len, Box::<crate::devices::Isolated>::default()).expect(free);
    }
    let mut vmm = Vmm {
        vm,
        vcpu,
        caps,
        machine: machine.clone(),
        platform,
        vmx,
        isolated: machine.isolate.clone(),
        cpuid: options.cpuid.clone(),
        blk_assigned,
        accountant: Accountant::new(0, Vec::new()),
        trace: options.trace.then(Vec::new),
        limits: options.limits,
        sites: options.exit_sites.then(ExitSites::default),
        console,
    };
    vmm.accountant = Accountant::new(vmm.vcpu.now_ns(), vmm.counters()?);
    Ok(vmm)
}

/// Where the VMM drives VMX itself: with EPT, the EPT (RAM, devices,
/// isolated ranges and the options' protections), the write monitor, the
/// IOMMU programmed and the devices that live behind it plugged in and
/// mapped; then the controls loaded.
fn setup_vmx(
    vm: &mut dyn VmxVm<Vcpu = impl Vcpu>,
    vcpu: &mut dyn VmxVcpu,
    image: &BootImage,
    options: &RunOptions,
    platform: &Platform,
    to_assign: ToAssign,
    mut state: VmxState,
) -> Result<VmxState, VmmError> {
    let machine = &image.machine;
    if vm.capabilities().ept {
        let mut protect = options.protect.clone();
        protect.extend(machine.isolate.iter().map(|r| Protection { gpa: r.start, len: r.len, perms: 0 }));
        let mut ept = build_ept(vm, &platform.mmio, &protect)?;
        state.controls.eptp = ept.eptp();
        if let Some(m) = &machine.monitor {
            if m.kind == MonitorKind::Pml && !vm.capabilities().pml {
                return Err(VmmError::Lacks { image: image.name.clone(), needed: Needed::Pml });
            }
            state.monitor = Some(Monitor::new(vm, &mut ept, &mut state.controls, m.kind, m.range)?);
        }
        if to_assign.blk.is_some() || to_assign.doorbell.is_some() {
            program_iommu(vm, platform.window, state.posting.as_ref())?;
        }
        if let Some(device) = to_assign.blk {
            plug(vm, &mut ept, Box::new(device), BLK_SOURCE, layout::BLK_BAR, layout::BLK_BAR_SIZE)?;
        }
        if let Some(bell) = to_assign.doorbell {
            plug(vm, &mut ept, Box::new(bell), DOORBELL_SOURCE, nic::KICK_DOORBELL, nic::KICK_DOORBELL_SIZE)?;
        }
        state.ept = Some(ept);
    }
    vcpu.set_controls(&state.controls)?;
    Ok(state)
}

/// The EPT for this machine: RAM 1:1 with every permission, the local
/// APIC page 1:1, device MMIO misconfigured; everything else unmapped (an
/// access there is MMIO to nothing, reported as an EPT violation).
fn build_ept<M: VmxVm + ?Sized>(vm: &mut M, mmio: &Bus, protect: &[Protection]) -> Result<Ept, VmmError> {
    let mut ept = Ept::new(vm)?;
    let ram = vm.memory_size();
    ept.map_identity(vm, 0, ram, RWX)?;
    let apic = exitlab_arch::bits::apic::DEFAULT_BASE;
    ept.map_identity(vm, apic, 4096, exitlab_arch::bits::ept::R | exitlab_arch::bits::ept::W)?;
    for (_, base, len) in mmio.ranges() {
        ept.mark_mmio(vm, base, len)?;
    }
    for p in protect {
        ept.protect(vm, p.gpa, p.len, p.perms)?;
    }
    Ok(ept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exitlab_guest::boot::Chunk;
    use exitlab_guest::machine::GuestRange;
    use exitlab_sim::SimVm;

    fn image() -> BootImage {
        let w = exitlab_guest::find_workload("pio-out").unwrap();
        w.build(&w.resolve(["n=10"]).unwrap()).unwrap().boot_image()
    }

    #[test]
    fn a_chunk_outside_guest_memory_is_refused_before_anything_is_written() {
        let mut img = image();
        let memory = img.memory_size;
        img.chunks.push(Chunk { gpa: memory - 4, bytes: vec![0xaa; 8] });
        let mut vm = SimVm::new(memory).unwrap();
        let Err(e) = build(&mut vm, &img, &RunOptions::default()) else { panic!("built") };
        assert!(matches!(e, VmmError::DoesNotFit { gpa, len: 8, memory: m } if gpa == memory - 4 && m == memory));
        let mut first = [0u8; 8];
        vm.read_memory(img.chunks[0].gpa, &mut first).unwrap();
        assert_eq!(first, [0; 8], "nothing was loaded");
    }

    #[test]
    fn a_machine_that_does_not_fit_the_guest_is_refused_by_key() {
        let mut img = image();
        img.machine.isolate = vec![GuestRange { start: img.memory_size, len: 0x1000 }];
        let mut vm = SimVm::new(img.memory_size).unwrap();
        let Err(e) = build(&mut vm, &img, &RunOptions::default()) else { panic!("built") };
        assert!(matches!(e, VmmError::Machine { key: "isolate", .. }), "{e}");
    }

    #[test]
    fn the_built_vm_runs_the_image_it_loaded() {
        let img = image();
        let mut vm = SimVm::new(img.memory_size).unwrap();
        let r = build(&mut vm, &img, &RunOptions::default()).unwrap().run().unwrap();
        assert_eq!(r.outcome, crate::Outcome::Exited { status: 0 });
        let measure = r.accountant.phase_stats(exitlab_guest::layout::Phase::Measure);
        assert_eq!(measure.samples(exitlab_arch::ExitReason::IoInstruction), 10);
    }
}

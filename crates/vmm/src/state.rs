//! The state of one VM the VMM runs: the backend and its vCPU, the
//! machine's devices, the VMX structures the VMM keeps where it drives the
//! hardware itself, and the accounting. [`crate::build`] makes it, the
//! loop in `run.rs` runs it, and the handlers under `exits/` change it.

use crate::account::Accountant;
use crate::ept::Ept;
use crate::error::VmmError;
use crate::host_tick::HostTick;
use crate::interrupts::{Pending, Posting};
use crate::monitor::Monitor;
use crate::platform::Platform;
use crate::report::TraceEntry;
use crate::sites::ExitSites;
use exitlab_arch::vmx::Controls;
use exitlab_arch::ExitReason;
use exitlab_guest::layout;
use exitlab_guest::machine::{GuestRange, MachineConfig};
use exitlab_hv::{Capabilities, Counter, Vcpu, Vm, VmxVcpu, VmxVm};

/// What the VMM keeps for a backend whose VMX hardware it drives (the
/// simulator): the controls it last loaded, its EPT, the write monitor,
/// the posted-interrupt descriptor, the host timer and the interrupts it
/// holds for injection.
pub(crate) struct VmxState {
    pub controls: Controls,
    pub ept: Option<Ept>,
    pub monitor: Option<Monitor>,
    pub posting: Option<Posting>,
    pub host_tick: Option<HostTick>,
    pub pending: Pending,
}

/// The VMX parts of a VM at once: backend, vCPU and the VMM's state.
pub(crate) struct Vmx<'s, V: Vm> {
    pub vm: &'s mut dyn VmxVm<Vcpu = V::Vcpu>,
    pub vcpu: &'s mut dyn VmxVcpu,
    pub state: &'s mut VmxState,
}

/// One VM, built and ready to run ([`Vmm::run`]).
pub struct Vmm<'a, V: Vm> {
    pub(crate) vm: &'a mut V,
    pub(crate) vcpu: V::Vcpu,
    pub(crate) caps: Capabilities,
    /// The machine the guest asked for.
    pub(crate) machine: MachineConfig,
    pub(crate) platform: Platform,
    /// `Some` exactly where the backend has the VMX extension.
    pub(crate) vmx: Option<VmxState>,
    /// Guest RAM the VMM isolates.
    pub(crate) isolated: Vec<GuestRange>,
    /// CPUID leaves answered differently from the built-in model.
    pub(crate) cpuid: Vec<(u32, [u32; 4])>,
    /// Whether the block device is assigned (its DMA faults are the
    /// IOMMU's to collect).
    pub(crate) blk_assigned: bool,
    pub(crate) accountant: Accountant,
    /// Every exit, when the options ask for a trace.
    pub(crate) trace: Option<Vec<TraceEntry>>,
    /// Exits, exits without progress and host time before the run stops.
    pub(crate) limits: crate::limits::RunLimits,
    /// Exits by guest RIP, when the options ask for them.
    pub(crate) sites: Option<ExitSites>,
    /// Where the console watch reports a line that ends the run.
    pub(crate) console: Option<crate::console::ConsoleLatch>,
}

impl<V: Vm> Vmm<'_, V> {
    /// The vCPU's VMX hardware, for handling `exit`.
    pub(crate) fn vmx_vcpu(&mut self, exit: ExitReason) -> Result<&mut dyn VmxVcpu, VmmError> {
        self.vcpu.vmx().ok_or(VmmError::Missing { exit: Some(exit), extension: "VMX" })
    }

    /// Backend, vCPU and VMM state of the VMX extension, for handling
    /// `exit`.
    pub(crate) fn vmx_parts(&mut self, exit: ExitReason) -> Result<Vmx<'_, V>, VmmError> {
        let missing = VmmError::Missing { exit: Some(exit), extension: "VMX" };
        match (self.vm.vmx_mut(), self.vcpu.vmx(), self.vmx.as_mut()) {
            (Some(vm), Some(vcpu), Some(state)) => Ok(Vmx { vm, vcpu, state }),
            _ => Err(missing),
        }
    }

    /// The backend's counters, the devices' (DMA refused included), and
    /// the guest's own: the slots at [`layout::GUEST_COUNTERS`] the machine
    /// names.
    pub(crate) fn counters(&mut self) -> Result<Vec<Counter>, VmmError> {
        let mut all = self.vcpu.counters()?;
        all.extend(
            self.platform.counters().into_iter().map(|(name, value)| Counter {
                name: format!("{}{name}", crate::account::DEVICE_COUNTER_PREFIX),
                value,
            }),
        );
        for (slot, name) in self.machine.counters.iter().take(layout::GUEST_COUNTER_SLOTS).enumerate() {
            let mut b = [0u8; 8];
            self.vm.read_memory(layout::GUEST_COUNTERS + 8 * slot as u64, &mut b)?;
            all.push(Counter {
                name: format!("{}{name}", crate::account::GUEST_COUNTER_PREFIX),
                value: u64::from_le_bytes(b),
            });
        }
        Ok(all)
    }
}

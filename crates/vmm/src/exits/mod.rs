//! Exit handlers, one module per exit family. Each takes the VM's state
//! and one exit, does what the exit asks, notes where it went and the work
//! it took in a [`Handling`], and says how the run goes on ([`Flow`]). The
//! run loop does the rest: time, accounting, trace. The shape is
//! Firecracker's `handle_kvm_exit`, kept apart from its run loop.

mod ept;
mod events;
mod hypercall;
mod mmio;
mod msr;
mod paging;
mod port_io;

use crate::account::Target;
use crate::error::VmmError;
use crate::report::{Access, GuestError, Outcome};
use crate::state::Vmm;
use exitlab_arch::vector;
use exitlab_guest::layout::Phase;
use exitlab_hv::{HandlerWork, Vm, VmExit};

/// How the run goes on after an exit.
pub(crate) enum Flow {
    /// Resume the guest.
    Resume,
    /// The exit was a phase marker: account it as a boundary, resume.
    Boundary(Phase),
    /// Account the exit, then end the run.
    End(Outcome),
    /// End the run at once; the exit broke the protocol and is not
    /// accounted.
    Abandon(Outcome),
}

/// What handling one exit found out, for its record.
pub(crate) struct Handling {
    /// The backend clock when the exit reached the VMM.
    pub now_ns: u64,
    /// Where the access went.
    pub target: Target,
    /// What it carried, for the trace.
    pub access: Access,
    /// The handler's work, for the cost model.
    pub work: HandlerWork,
    /// A HLT's wake-up, when the machine halts the vCPU in the VMM's view
    /// (backend clock, ns): the record's time to the next entry runs to it.
    pub wake_ns: Option<u64>,
}

impl Handling {
    /// Nothing found out yet about `exit`, which arrived at `now_ns`.
    pub fn new(exit: &VmExit, now_ns: u64) -> Handling {
        let access = match exit {
            VmExit::Io(io) => port_io::access(io, io.data),
            VmExit::MsrRead { msr } => Access::Msr { index: *msr, write: false },
            VmExit::MsrWrite { msr, .. } => Access::Msr { index: *msr, write: true },
            _ => Access::None,
        };
        Handling { now_ns, target: Target::None, access, work: HandlerWork::default(), wake_ns: None }
    }
}

/// Hands `exit` to its family's handler.
pub(crate) fn dispatch<V: Vm>(vmm: &mut Vmm<'_, V>, exit: &VmExit, h: &mut Handling) -> Result<Flow, VmmError> {
    match exit {
        VmExit::Io(io) => port_io::handle(vmm, io, h),
        VmExit::Mmio { access, .. } => mmio::access(vmm, access, h),
        VmExit::MmioEmulate { reason, .. } => mmio::emulate(vmm, *reason, h),
        VmExit::ApicAccess { offset, write } => mmio::apic_access(vmm, *offset, *write, h),
        VmExit::EptViolation { gpa, qual } => ept::violation(vmm, *gpa, qual, h),
        VmExit::PmlFull => ept::pml_full(vmm, h),
        VmExit::MonitorTrap => ept::monitor_trap(vmm),
        VmExit::Cpuid { leaf, subleaf } => msr::cpuid(vmm, *leaf, *subleaf),
        VmExit::MsrRead { msr } => msr::rdmsr(vmm, *msr),
        VmExit::MsrWrite { msr, value } => msr::wrmsr(vmm, *msr, *value),
        VmExit::Rdtsc => msr::rdtsc(vmm),
        VmExit::CrAccess(q) => paging::cr_access(vmm, q),
        VmExit::Invlpg { linear } => paging::invlpg(vmm, *linear),
        VmExit::Exception { vector: vector::PF, error_code, qualification } => {
            paging::page_fault(vmm, *qualification, error_code.unwrap_or(0), h)
        }
        VmExit::Exception { vector, error_code, .. } => events::exception(vmm, *vector, *error_code),
        VmExit::ExternalInterrupt { .. } => events::external_interrupt(vmm),
        VmExit::ApicWrite { .. } => events::apic_write(),
        VmExit::Nmi => events::nmi(vmm),
        VmExit::Vmcall => hypercall::vmcall(vmm),
        VmExit::Hlt => events::hlt(vmm, h),
        VmExit::Shutdown => Ok(Flow::End(Outcome::GuestError(GuestError::TripleFault))),
        VmExit::Debug { .. } | VmExit::InterruptWindow | VmExit::NmiWindow | VmExit::PreemptionTimer => {
            Ok(Flow::Resume)
        }
        VmExit::Other { reason, qualification } => Ok(events::unhandled(*reason, *qualification)),
    }
}

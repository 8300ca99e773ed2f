//! EPT exits: violations (blocked accesses to isolated memory, writes the
//! write monitor traps, and everything else, which ends the run), the PML
//! log filling up, and the monitor trap after a let-through write.

use super::{Flow, Handling};
use crate::error::VmmError;
use crate::report::{GuestError, Outcome};
use crate::state::Vmm;
use exitlab_arch::{EptViolationQual, ExitReason};
use exitlab_guest::machine::MonitorKind;
use exitlab_hv::Vm;

/// An EPT violation at `gpa`.
pub(super) fn violation<V: Vm>(
    vmm: &mut Vmm<'_, V>,
    gpa: u64,
    qual: &EptViolationQual,
    h: &mut Handling,
) -> Result<Flow, VmmError> {
    if vmm.isolated.iter().any(|r| r.contains(gpa)) {
        // Isolated memory: blocked, completed against its device.
        return super::mmio::emulate(vmm, ExitReason::EptViolation, h);
    }
    let vmx = vmm.vmx_parts(ExitReason::EptViolation)?;
    if let (Some(m), Some(e)) = (&mut vmx.state.monitor, &mut vmx.state.ept) {
        if m.kind == MonitorKind::WriteProtect && qual.write && m.covers(gpa) {
            h.work.page_walks = 1;
            m.write_fault(vmx.vm, vmx.vcpu, e, &mut vmx.state.controls, gpa)?;
            return Ok(Flow::Resume);
        }
    }
    let linear = vmx.vcpu.exit_info().guest_linear;
    Ok(Flow::End(Outcome::GuestError(GuestError::EptViolation { gpa, linear, qual: *qual })))
}

/// PML_FULL: the log is harvested and emptied.
pub(super) fn pml_full<V: Vm>(vmm: &mut Vmm<'_, V>, h: &mut Handling) -> Result<Flow, VmmError> {
    let vmx = vmm.vmx_parts(ExitReason::PmlFull)?;
    match (&mut vmx.state.monitor, &mut vmx.state.ept) {
        (Some(m), Some(e)) => {
            h.work.bytes_copied = 8 * m.harvest(vmx.vm, vmx.vcpu, e)?;
            Ok(Flow::Resume)
        }
        _ => Ok(Flow::End(Outcome::GuestError(GuestError::UnhandledExit("PML_FULL without a log".into())))),
    }
}

/// MONITOR_TRAP_FLAG: the write the monitor let through has happened;
/// its page is protected again.
pub(super) fn monitor_trap<V: Vm>(vmm: &mut Vmm<'_, V>) -> Result<Flow, VmmError> {
    let vmx = vmm.vmx_parts(ExitReason::MonitorTrapFlag)?;
    if let (Some(m), Some(e)) = (&mut vmx.state.monitor, &mut vmx.state.ept) {
        m.stepped(vmx.vm, vmx.vcpu, e, &mut vmx.state.controls)?;
    }
    Ok(Flow::Resume)
}

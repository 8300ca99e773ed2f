//! Control registers and paging: trapped MOV to and from CRs, INVLPG, and
//! the #PF exits of shadow paging (`crate::shadow`).

use super::{events, events::single_step_trap, Flow, Handling};
use crate::error::VmmError;
use crate::shadow::FaultResolution;
use crate::state::Vmm;
use exitlab_arch::{CrAccessQual, CrAccessType, ExitReason};
use exitlab_hv::{Vcpu, Vm};

/// A trapped MOV to or from a control register, emulated. A CR3 load
/// under shadow paging switches address spaces: every shadow entry goes.
pub(super) fn cr_access<V: Vm>(vmm: &mut Vmm<'_, V>, q: &CrAccessQual) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::CrAccess)?;
    let mut r = vcpu.regs()?;
    let gpr = usize::from(q.gpr & 15);
    match q.access {
        CrAccessType::MovToCr => {
            vcpu.write_cr(q.cr, r.gpr[gpr])?;
            if q.cr == 3 {
                vcpu.shadow_unmap(None)?;
            }
        }
        CrAccessType::MovFromCr => {
            r.gpr[gpr] = vcpu.read_cr(q.cr)?;
            vcpu.set_regs(&r)?;
        }
        // CLTS and LMSW are never trapped by this VMM's controls.
        CrAccessType::Clts | CrAccessType::Lmsw => {}
    }
    vcpu.skip_instruction()?;
    single_step_trap(vcpu)?;
    Ok(Flow::Resume)
}

/// INVLPG under shadow paging: the shadow entry goes.
pub(super) fn invlpg<V: Vm>(vmm: &mut Vmm<'_, V>, linear: u64) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::Invlpg)?;
    vcpu.shadow_unmap(Some(linear))?;
    vcpu.skip_instruction()?;
    single_step_trap(vcpu)?;
    Ok(Flow::Resume)
}

/// A #PF under shadow paging: filled from the guest's tables (a hidden
/// fault; an event whose delivery it interrupted is delivered again at the
/// next entry, see `Vmm::reinject`) or reflected into the guest, merged
/// with that event as table 6-5 says (a #PF while delivering a #PF is a
/// #DF, one while delivering a #DF a triple fault).
pub(super) fn page_fault<V: Vm>(
    vmm: &mut Vmm<'_, V>,
    linear: u64,
    error_code: u32,
    h: &mut Handling,
) -> Result<Flow, VmmError> {
    h.work.page_walks = 1;
    let vm = &*vmm.vm;
    let vcpu = vmm.vcpu.vmx().ok_or(VmmError::Missing { exit: Some(ExitReason::ExceptionNmi), extension: "VMX" })?;
    match crate::shadow::page_fault(vm, vcpu, linear, error_code)? {
        FaultResolution::Hidden => Ok(Flow::Resume),
        FaultResolution::Guest(pf) => events::reflect(vcpu, pf),
    }
}

//! Control registers and paging: trapped MOV to and from CRs, INVLPG, and
//! the #PF exits of shadow paging (`crate::shadow`).

use super::{events::single_step_trap, Flow, Handling};
use crate::error::VmmError;
use crate::shadow::FaultResolution;
use crate::state::Vmm;
use exitlab_arch::bits::{efer, msr};
use exitlab_arch::{CrAccessQual, CrAccessType, ExitReason};
use exitlab_hv::{Vcpu, Vm};

/// A trapped MOV to or from a control register, emulated. Under shadow
/// paging a CR3 load switches address spaces, and a CR0 or CR4 load that
/// changes a bit the VMM owns (`policy::SHADOW_CR0`, `SHADOW_CR4`)
/// changes the paging mode: either way every shadow entry goes, and the
/// read shadows follow the guest's new value.
pub(super) fn cr_access<V: Vm>(vmm: &mut Vmm<'_, V>, q: &CrAccessQual) -> Result<Flow, VmmError> {
    let vmx = vmm.vmx_parts(ExitReason::CrAccess)?;
    let vcpu = vmx.vcpu;
    let mut r = vcpu.regs()?;
    let gpr = usize::from(q.gpr & 15);
    match q.access {
        CrAccessType::MovToCr => {
            let long = vcpu.read_msr(msr::IA32_EFER)?.unwrap_or(0) & efer::LMA != 0 && vcpu.segment(1)?.l;
            // Outside 64-bit mode MOV to CR moves a 32-bit register.
            let v = if long { r.gpr[gpr] } else { r.gpr[gpr] & 0xffff_ffff };
            vcpu.write_cr(q.cr, v)?;
            let c = &mut vmx.state.controls;
            match q.cr {
                0 => c.cr0_shadow = v & c.cr0_mask,
                4 => c.cr4_shadow = v & c.cr4_mask,
                _ => {}
            }
            if matches!(q.cr, 0 | 4) {
                vcpu.set_controls(c)?;
            }
            if matches!(q.cr, 0 | 3 | 4) {
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
/// fault) or reflected into the guest. A hidden fault during event
/// delivery delivers the event again.
pub(super) fn page_fault<V: Vm>(
    vmm: &mut Vmm<'_, V>,
    linear: u64,
    error_code: u32,
    h: &mut Handling,
) -> Result<Flow, VmmError> {
    h.work.page_walks = 1;
    let vm = &*vmm.vm;
    let vcpu = vmm.vcpu.vmx().ok_or(VmmError::Missing { exit: Some(ExitReason::ExceptionNmi), extension: "VMX" })?;
    let fixed = crate::shadow::page_fault(vm, vcpu, linear, error_code)?;
    if let (FaultResolution::Hidden, Some(ev)) = (fixed, vcpu.exit_info().idt_vectoring) {
        vcpu.inject(ev)?;
    }
    Ok(Flow::Resume)
}

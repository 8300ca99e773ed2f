//! VMCALL: the guest's call to the hypervisor, answered with KVM's
//! hypercall ABI (Linux's Documentation/virt/kvm/x86/hypercalls.rst): the
//! number in RAX, arguments in RBX, RCX, RDX and RSI, the result in RAX.
//! exitlab offers none of KVM's paravirtual features (its CPUID signature
//! is not KVMKVMKVM), so it answers as KVM does for a guest that has not
//! been given them: KVM_HC_VAPIC_POLL_IRQ succeeds, every other number is
//! -KVM_ENOSYS, and a call from CPL > 0 is -KVM_EPERM. A VMCALL is one
//! VMCALL exit in the accounting, with no device behind it.

use super::{events::single_step_trap, Flow};
use crate::error::VmmError;
use crate::state::Vmm;
use exitlab_arch::{ExitReason, Regs};
use exitlab_hv::Vm;

/// KVM_HC_VAPIC_POLL_IRQ: a no-op that returns 0 (kvm_para.h).
pub const KVM_HC_VAPIC_POLL_IRQ: u64 = 1;
/// KVM_ENOSYS: the hypercall number is not implemented (kvm_para.h).
pub const KVM_ENOSYS: i64 = 1000;
/// KVM_EPERM: hypercalls are for CPL 0 (kvm_para.h).
pub const KVM_EPERM: i64 = 1;

/// RAX after a hypercall `nr` from privilege level `cpl`; outside 64-bit
/// code the number is EAX and the result 32 bits, as in KVM's
/// `kvm_emulate_hypercall`.
pub fn answer(nr: u64, cpl: u8, long: bool) -> u64 {
    let nr = if long { nr } else { nr & 0xffff_ffff };
    let ret: i64 = if cpl != 0 {
        -KVM_EPERM
    } else if nr == KVM_HC_VAPIC_POLL_IRQ {
        0
    } else {
        -KVM_ENOSYS
    };
    if long {
        ret as u64
    } else {
        u64::from(ret as u32)
    }
}

/// A VMCALL exit: the answer in RAX, RIP past the instruction.
pub(super) fn vmcall<V: Vm>(vmm: &mut Vmm<'_, V>) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::Vmcall)?;
    let cs = vcpu.code_segment()?;
    let mut r = vcpu.regs()?;
    r.gpr[Regs::RAX] = answer(r.gpr[Regs::RAX], cs.selector as u8 & 3, cs.l);
    vcpu.set_regs(&r)?;
    vcpu.skip_instruction()?;
    single_step_trap(vcpu)?;
    Ok(Flow::Resume)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_hypercall_abi() {
        // kvm-unit-tests hypercall.c calls with RAX = -1: not a hypercall.
        assert_eq!(answer(u64::MAX, 0, true), (-1000i64) as u64);
        assert_eq!(answer(KVM_HC_VAPIC_POLL_IRQ, 0, true), 0);
        assert_eq!(answer(KVM_HC_VAPIC_POLL_IRQ, 3, true), u64::MAX, "-KVM_EPERM from ring 3");
        // 32-bit callers: EAX in, EAX out (zero-extended).
        assert_eq!(answer(0xffff_ffff_0000_0001, 0, false), 0);
        assert_eq!(answer(7, 0, false), 0xffff_fc18);
    }
}

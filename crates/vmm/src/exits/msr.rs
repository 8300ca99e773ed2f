//! CPUID, RDMSR, WRMSR and RDTSC: instructions the VMM answers from its
//! CPU model, completing them for the guest.

use super::{events::single_step_trap, Flow};
use crate::error::VmmError;
use crate::state::Vmm;
use exitlab_arch::bits::msr::IA32_TSC;
use exitlab_arch::{ExitReason, Regs};
use exitlab_hv::{Completion, Vcpu, Vm};

/// CPUID: the options' answer for the leaf, else the built-in model.
pub(super) fn cpuid<V: Vm>(vmm: &mut Vmm<'_, V>, leaf: u32, subleaf: u32) -> Result<Flow, VmmError> {
    let answer = match vmm.cpuid.iter().find(|(l, _)| *l == leaf) {
        Some((_, regs)) => *regs,
        None => crate::cpuid::cpuid(leaf, subleaf, vmm.vcpu.id() as u8, vmm.caps.tsx),
    };
    let vcpu = vmm.vmx_vcpu(ExitReason::Cpuid)?;
    let answer = crate::cpuid::with_os_bits(leaf, answer, vcpu.read_cr(4)?);
    vcpu.complete(Completion::Cpuid(answer));
    single_step_trap(vcpu)?;
    Ok(Flow::Resume)
}

/// RDMSR: the vCPU's MSR, or #GP(0) where it has none.
pub(super) fn rdmsr<V: Vm>(vmm: &mut Vmm<'_, V>, msr: u32) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::MsrRead)?;
    let v = vcpu.read_msr(msr)?;
    vcpu.complete(Completion::MsrRead(v));
    if v.is_some() {
        single_step_trap(vcpu)?;
    }
    Ok(Flow::Resume)
}

/// WRMSR: into the vCPU's MSR, or #GP(0) where it refuses.
pub(super) fn wrmsr<V: Vm>(vmm: &mut Vmm<'_, V>, msr: u32, value: u64) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::MsrWrite)?;
    let ok = vcpu.write_msr(msr, value)?;
    vcpu.complete(Completion::MsrWrite(ok));
    if ok {
        single_step_trap(vcpu)?;
    }
    Ok(Flow::Resume)
}

/// RDTSC under RDTSC exiting: the vCPU's TSC in EDX:EAX.
pub(super) fn rdtsc<V: Vm>(vmm: &mut Vmm<'_, V>) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::Rdtsc)?;
    let tsc = vcpu.read_msr(IA32_TSC)?.unwrap_or(0);
    let mut r = vcpu.regs()?;
    r.gpr[Regs::RAX] = tsc & 0xffff_ffff;
    r.gpr[Regs::RDX] = tsc >> 32;
    vcpu.set_regs(&r)?;
    vcpu.skip_instruction()?;
    single_step_trap(vcpu)?;
    Ok(Flow::Resume)
}

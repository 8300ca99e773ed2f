//! Interrupts and events: HLT, exceptions the VMM reflects (merged with
//! the event whose delivery they interrupted, as KVM's
//! `kvm_multiple_exception` does), external interrupts and NMIs it queues
//! for injection, the single-step #DB it owes after completing an
//! instruction, and exits it does not handle.

use super::{Flow, Handling};
use crate::error::VmmError;
use crate::report::{GuestError, Outcome};
use crate::state::Vmm;
use exitlab_arch::bits::{dr6, rflags};
use exitlab_arch::vector::{self, Class, Escalation};
use exitlab_arch::ExitReason;
use exitlab_hv::{Injection, InjectionKind, Vcpu, Vm, VmxVcpu};

/// HLT: the vCPU halts until something wakes it; nothing ever will when
/// its interrupts are masked and the VMM holds none.
/// When the machine halts the vCPU in the VMM's view, the wake-up it
/// scheduled goes in the record (perf kvm stat times a HLT to the next
/// entry); an interrupt the VMM holds wakes it at the entry instead.
pub(super) fn hlt<V: Vm>(vmm: &mut Vmm<'_, V>, h: &mut Handling) -> Result<Flow, VmmError> {
    let wakes = vmm.vcpu.halt()?;
    if let Some(vcpu) = vmm.vcpu.vmx() {
        // HLT single-stepped: the #DB ends the HLT state at once, with RIP
        // after the HLT (kvm-unit-tests debug.c, STI;HLT).
        if single_step_trap(vcpu)? {
            return Ok(Flow::Resume);
        }
    }
    let held = vmm.vmx.as_ref().is_some_and(|v| !v.pending.is_empty());
    if wakes.is_none() && !held {
        return Ok(Flow::End(Outcome::GuestError(GuestError::HaltedForever)));
    }
    h.wake_ns = wakes.filter(|_| !held);
    Ok(Flow::Resume)
}

/// APIC_WRITE (trap-like, SDM Vol. 3C "APIC-Write Emulation"): the write
/// to a register APIC virtualization does not virtualize has landed on
/// the virtual-APIC page, and the backend's local APIC (the simulator's,
/// which models the timer and LVTs) has acted on it: nothing is left for
/// the VMM to emulate, and RIP is already past the write.
pub(super) fn apic_write() -> Result<Flow, VmmError> {
    Ok(Flow::Resume)
}

/// An exception in the exception bitmap that is not the VMM's (#PF is,
/// under shadow paging): reflected into the guest.
pub(super) fn exception<V: Vm>(vmm: &mut Vmm<'_, V>, vector: u8, error_code: Option<u32>) -> Result<Flow, VmmError> {
    let vcpu = vmm.vmx_vcpu(ExitReason::ExceptionNmi)?;
    reflect(vcpu, Injection::exception(vector, error_code))
}

/// Queues exception `second` for the guest. If it arose while the CPU was
/// delivering another event (the exit's IDT-vectoring information), the
/// two meet as SDM table 6-5 says, as KVM's `kvm_multiple_exception`
/// merges them: serially (the first is dropped; a fault or software
/// interrupt recurs when its instruction runs again), as #DF, or, after
/// #DF, as a triple fault that ends the run.
pub(super) fn reflect<C: VmxVcpu + ?Sized>(vcpu: &mut C, second: Injection) -> Result<Flow, VmmError> {
    let first = vcpu.exit_info().idt_vectoring.map_or(Class::Benign, class);
    match vector::escalate(first, vector::class(second.vector)) {
        Escalation::Serial => vcpu.inject(second)?,
        Escalation::DoubleFault => vcpu.inject(Injection::exception(vector::DF, Some(0)))?,
        Escalation::Shutdown => return Ok(Flow::End(Outcome::GuestError(GuestError::TripleFault))),
    }
    Ok(Flow::Resume)
}

/// The table 6-5 class of an injected event: interrupts, NMIs and software
/// interrupts are benign.
fn class(ev: Injection) -> Class {
    match ev.kind {
        InjectionKind::HardwareException => vector::class(ev.vector),
        _ => Class::Benign,
    }
}

/// An NMI for the guest under NMI exiting: held until the guest can take
/// it (no virtual-NMI blocking), then injected.
pub(super) fn nmi<V: Vm>(vmm: &mut Vmm<'_, V>) -> Result<Flow, VmmError> {
    let missing = VmmError::Missing { exit: Some(ExitReason::ExceptionNmi), extension: "VMX" };
    vmm.vmx.as_mut().ok_or(missing)?.pending.nmi();
    Ok(Flow::Resume)
}

/// An interrupt for the guest under external-interrupt exiting: held
/// until the guest can take it, when the VMM injects the vector the
/// local APIC presents then (this one, or a higher one that came since).
pub(super) fn external_interrupt<V: Vm>(vmm: &mut Vmm<'_, V>) -> Result<Flow, VmmError> {
    let missing = VmmError::Missing { exit: Some(ExitReason::ExternalInterrupt), extension: "VMX" };
    vmm.vmx.as_mut().ok_or(missing)?.pending.apic();
    Ok(Flow::Resume)
}

/// An exit this VMM has no handler for: the run ends, naming it.
pub(super) fn unhandled(reason: ExitReason, qualification: u64) -> Flow {
    let e = GuestError::UnhandledExit(format!("{reason} (qualification {qualification:#x})"));
    Flow::End(Outcome::GuestError(e))
}

/// After the VMM completed an instruction for the guest: if the guest was
/// single-stepping (RFLAGS.TF), the #DB the instruction owes is the VMM's
/// to raise, through event injection with DR6.BS, so the guest's handler
/// sees RIP after the instruction as on bare metal.
/// Returns whether it did.
pub(super) fn single_step_trap<C: VmxVcpu + ?Sized>(vcpu: &mut C) -> Result<bool, VmmError> {
    let tf = vcpu.regs()?.rflags & rflags::TF != 0;
    if tf {
        let mut inj = Injection::exception(vector::DB, None);
        inj.dr6 = dr6::BS;
        vcpu.inject(inj)?;
    }
    Ok(tf)
}

/// After the VMM emulated MOV SS or POP SS: blocking by MOV SS holds
/// interrupts, NMIs and debug traps off for one more instruction (SDM Vol.
/// 3A 6.8.3), so a single step's #DB waits past it as a pending debug
/// exception instead of being injected now, as the CPU does with a MOV SS
/// of its own.
pub(super) fn mov_ss_blocking<C: VmxVcpu + ?Sized>(vcpu: &mut C) -> Result<(), VmmError> {
    let mut state = vcpu.interruptibility()?;
    state.mov_ss = true;
    vcpu.set_interruptibility(state)?;
    if vcpu.regs()?.rflags & rflags::TF != 0 {
        vcpu.set_pending_debug(dr6::BS)?;
    }
    Ok(())
}

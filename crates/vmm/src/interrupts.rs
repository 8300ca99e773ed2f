//! Interrupts from devices to the guest. Devices raise interrupt messages
//! (crate::platform turns them into MSIs); the VMM hands them to the
//! backend. Where the hardware has no posted interrupts, the VMM's controls
//! make every interrupt exit (EXTERNAL_INTERRUPT) and [`Pending`] injects
//! each one when the guest can take it, asking for an interrupt-window exit
//! when it cannot: the classic path that APIC virtualization and posted
//! interrupts remove. Where it has them, [`Posting`] routes device
//! interrupts through a posted-interrupt descriptor, as interrupt remapping
//! in posted mode does.

use crate::error::VmmError;
use exitlab_arch::bits::rflags;
use exitlab_arch::posted;
use exitlab_arch::vmx::Controls;
use exitlab_arch::vmx::PostedInterrupts;
use exitlab_hv::{Injection, Msi, Result, Vm, VmxVcpu, VmxVm};
use std::collections::VecDeque;

/// The notification vector the VMM programs: Linux's POSTED_INTR_VECTOR,
/// the one KVM uses.
pub const NOTIFICATION_VECTOR: u8 = 0xf2;

/// One vCPU's posted-interrupt descriptor, in host memory the VMM owns.
#[derive(Clone, Copy, Debug)]
pub struct Posting {
    descriptor: u64,
}

impl Posting {
    /// Builds the descriptor for the vCPU with xAPIC ID `apic_id` and turns
    /// posted-interrupt processing on in `controls`.
    pub fn new<M: VmxVm + ?Sized>(vm: &mut M, controls: &mut Controls, apic_id: u8) -> Result<Posting> {
        let descriptor = vm.alloc_host_pages(1)?;
        let d = posted::Descriptor { nv: NOTIFICATION_VECTOR, ndst: apic_id, ..Default::default() };
        vm.write_host(descriptor, &d.to_bytes())?;
        controls.posted_interrupts = Some(PostedInterrupts { notification_vector: NOTIFICATION_VECTOR, descriptor });
        Ok(Posting { descriptor })
    }

    /// The descriptor's host-physical address.
    pub fn descriptor(&self) -> u64 {
        self.descriptor
    }
}

/// Hands a device's `msi` to the guest, now or at `at_ns`: through the
/// descriptor when posting (which only a VMX backend has), at a moment of
/// the backend's virtual clock when later, else as a plain MSI.
pub fn deliver<V: Vm>(
    vm: &V,
    posting: Option<&Posting>,
    msi: Msi,
    at_ns: Option<u64>,
) -> std::result::Result<(), VmmError> {
    let missing = |extension| VmmError::Missing { exit: None, extension };
    match (posting, at_ns) {
        (Some(p), at) => vm.vmx().ok_or(missing("VMX"))?.post_interrupt(p.descriptor, msi.data as u8, at)?,
        (None, Some(at)) => vm.virtual_clock().ok_or(missing("a virtual clock"))?.signal_msi_at(msi, at)?,
        (None, None) => vm.signal_msi(msi)?,
    }
    Ok(())
}

/// Interrupts and the NMI the VMM holds for the guest.
#[derive(Debug, Default)]
pub struct Pending {
    /// Vectors the PIC's INTA cycle gave (ExtINT), in order.
    queue: VecDeque<u8>,
    /// The local APIC presented an interrupt (an EXTERNAL_INTERRUPT
    /// exit); it stays requested there until the VMM injects it.
    apic: bool,
    /// An NMI waits (one is latched, as the CPU latches one).
    nmi: bool,
    /// The PIC's INT waits for the guest to set IF: the INTA cycle runs
    /// only when the CPU takes the interrupt, so the VMM asks for an
    /// interrupt window, as KVM does for a userspace PIC
    /// (`kvm_run.request_interrupt_window`).
    pic: bool,
}

impl Pending {
    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && !self.apic && !self.nmi && !self.pic
    }

    /// Whether the PIC's INT waits for IF (see [`Pending::service`]).
    pub fn set_pic(&mut self, waits: bool) {
        self.pic = waits;
    }

    /// The PIC's INTA gave `vector` (an ExtINT the VMM acknowledged).
    pub fn arrive(&mut self, vector: u8) {
        self.queue.push_back(vector);
    }

    /// The local APIC presented an interrupt (an EXTERNAL_INTERRUPT exit).
    pub fn apic(&mut self) {
        self.apic = true;
    }

    /// An NMI arrived (an EXCEPTION_NMI exit under NMI exiting).
    pub fn nmi(&mut self) {
        self.nmi = true;
    }

    /// Injects what waits when the guest can take it, one event per entry
    /// and none over an event already queued (one being re-delivered):
    /// the NMI when there is no NMI blocking and no MOV SS blocking, else
    /// the next interrupt when IF is set and no STI or MOV SS blocking
    /// holds it. Keeps NMI-window and interrupt-window exiting on exactly
    /// while something waits, as KVM's `inject_pending_event` does.
    pub fn service<C: VmxVcpu + ?Sized>(&mut self, vcpu: &mut C, controls: &mut Controls) -> Result<()> {
        if vcpu.injection().is_none() {
            let blocked = vcpu.interruptibility()?;
            if self.nmi && !blocked.nmi && !blocked.mov_ss {
                self.nmi = false;
                vcpu.inject(Injection::nmi())?;
            } else if !self.is_empty() && !blocked.sti && !blocked.mov_ss && vcpu.regs()?.rflags & rflags::IF != 0 {
                if let Some(vector) = self.next_interrupt(vcpu)? {
                    vcpu.inject(Injection::external(vector))?;
                }
            }
        }
        // Nothing the APIC could present now (the processor priority holds
        // it): its next interrupt, or this one after an EOI, exits again.
        if self.apic && vcpu.apic_interrupt()?.is_none() {
            self.apic = false;
        }
        let (want_nmi, want_irq) = (self.nmi, self.apic || self.pic || !self.queue.is_empty());
        if controls.nmi_window_exiting != want_nmi || controls.interrupt_window_exiting != want_irq {
            controls.nmi_window_exiting = want_nmi;
            controls.interrupt_window_exiting = want_irq;
            vcpu.set_controls(controls)?;
        }
        Ok(())
    }

    /// The interrupt to inject: an ExtINT first (the PIC's INTR passes the
    /// APIC's priority, as KVM's `kvm_cpu_get_interrupt` asks the PIC
    /// first), else the vector the local APIC presents, acknowledged now
    /// (not at the exit), so that of two requested while IF was clear the
    /// higher goes first, as on bare metal.
    fn next_interrupt<C: VmxVcpu + ?Sized>(&mut self, vcpu: &mut C) -> Result<Option<u8>> {
        if let Some(vector) = self.queue.pop_front() {
            return Ok(Some(vector));
        }
        if !self.apic {
            return Ok(None);
        }
        let vector = vcpu.apic_interrupt()?;
        if let Some(v) = vector {
            vcpu.apic_acknowledge(v)?;
        }
        Ok(vector)
    }
}

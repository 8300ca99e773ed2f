//! Interrupts from devices to the guest. Devices raise MSIs on an
//! [`IrqLine`]; the run loop hands them to the backend. Where the hardware
//! has no posted interrupts, the VMM's controls make every interrupt exit
//! (EXTERNAL_INTERRUPT) and [`Pending`] injects each one when the guest can
//! take it, asking for an interrupt-window exit when it cannot: the
//! classic path that APIC virtualization and posted interrupts remove.

use exitlab_arch::bits::rflags;
use exitlab_arch::vmx::Controls;
use exitlab_hv::{Injection, InjectionKind, Msi, Result, Vcpu};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Where devices raise interrupts; the run loop drains it after each exit.
#[derive(Clone, Default)]
pub struct IrqLine {
    raised: Arc<Mutex<Vec<Msi>>>,
}

impl IrqLine {
    pub fn raise(&self, msi: Msi) {
        self.raised.lock().unwrap_or_else(|e| e.into_inner()).push(msi);
    }

    pub fn take(&self) -> Vec<Msi> {
        std::mem::take(&mut *self.raised.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Interrupts the VMM holds for the guest.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<u8>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn arrive(&mut self, vector: u8) {
        self.queue.push_back(vector);
    }

    /// Injects the next interrupt if the guest has interrupts enabled;
    /// keeps interrupt-window exiting on exactly while some wait.
    pub fn service<C: Vcpu>(&mut self, vcpu: &mut C, controls: &mut Controls) -> Result<()> {
        if !self.queue.is_empty() && vcpu.regs()?.rflags & rflags::IF != 0 {
            let vector = self.queue.pop_front().expect("not empty");
            vcpu.inject(Injection { kind: InjectionKind::External, ..Injection::exception(vector, None) })?;
        }
        let want_window = !self.queue.is_empty();
        if controls.interrupt_window_exiting != want_window {
            controls.interrupt_window_exiting = want_window;
            vcpu.set_controls(controls)?;
        }
        Ok(())
    }
}

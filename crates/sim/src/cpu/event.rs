//! Events (SDM Vol. 3A ch. 6): what raised one and how it is delivered —
//! exceptions with and without error codes, external interrupts, software
//! interrupts, #DF on a fault during delivery and shutdown on a fault
//! during #DF. The delivery itself, through the IDT or the real-mode IVT
//! in whatever mode the core is in, is exitlab-x86's
//! (`exitlab_x86::interrupt::deliver`).

use super::{Running, Stop};
use crate::cost;
use exitlab_arch::bits::dr6;
use exitlab_arch::vector;
use exitlab_hv::{Injection, InjectionKind, VmExit};

/// How an event arose: it decides the pushed RIP and the DPL check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A fault: RIP is the faulting instruction's.
    Fault,
    /// A trap (single step): RIP is the next instruction's.
    Trap,
    /// INT n / INT3: RIP is the next instruction's; gate DPL is checked.
    Software,
    /// An interrupt from the local APIC.
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    pub kind: EventKind,
    pub error_code: Option<u32>,
    /// CR2 for #PF.
    pub cr2: Option<u64>,
    /// Bits to set in DR6 for #DB.
    pub dr6: u64,
    /// A software interrupt's instruction length: RIP is past the
    /// instruction, and a fault while delivering it is reported at the
    /// instruction (SDM Vol. 3A 6.5: INT n "faults" when its delivery does).
    pub len: u8,
}

impl Event {
    pub fn fault(vector: u8) -> Event {
        Event { vector, kind: EventKind::Fault, error_code: None, cr2: None, dr6: 0, len: 0 }
    }

    pub fn with_code(vector: u8, code: u32) -> Event {
        Event { error_code: Some(code), ..Event::fault(vector) }
    }

    pub fn gp(code: u32) -> Event {
        Event::with_code(vector::GP, code)
    }

    pub fn ud() -> Event {
        Event::fault(vector::UD)
    }

    pub fn page_fault(code: u32, lin: u64) -> Event {
        Event { cr2: Some(lin), ..Event::with_code(vector::PF, code) }
    }

    /// The single-step trap after an instruction that started with TF.
    pub fn single_step() -> Event {
        Event { kind: EventKind::Trap, dr6: dr6::BS, ..Event::fault(vector::DB) }
    }

    /// INT n, INT3, INTO of `len` bytes, RIP past it.
    pub fn software(vector: u8, len: u8) -> Event {
        Event { kind: EventKind::Software, len, ..Event::fault(vector) }
    }

    pub fn external(vector: u8) -> Event {
        Event { kind: EventKind::External, ..Event::fault(vector) }
    }
}

/// The injection that re-delivers `ev` (IDT-vectoring information).
fn as_injection(ev: Event) -> Injection {
    let kind = match ev.kind {
        EventKind::External => InjectionKind::External,
        EventKind::Software => InjectionKind::SoftwareInterrupt,
        EventKind::Fault | EventKind::Trap => InjectionKind::HardwareException,
    };
    Injection { vector: ev.vector, kind, error_code: ev.error_code, dr6: ev.dr6, cr2: ev.cr2 }
}

/// Benign, contributory and page-fault classes decide double faults.
fn contributory(v: u8) -> bool {
    matches!(v, vector::DE | vector::TS | vector::NP | vector::SS | vector::GP)
}

impl Running<'_> {
    /// Delivers `ev`, escalating to #DF and then to shutdown as the SDM's
    /// double-fault table says. RIP must already be what gets pushed.
    pub fn deliver(&mut self, ev: Event) -> Result<(), Stop> {
        if !self.abort_for(&ev) {
            return Ok(());
        }
        match self.deliver_once(ev) {
            Ok(()) => Ok(()),
            Err(Stop::Event) => {
                let second = self.core.event.take().expect("Stop::Event carries an event");
                if second.kind != EventKind::External && self.core.controls.exception_exits(second.vector) {
                    // The VMM traps this exception (a shadow-paging #PF on
                    // the IDT or the stack): exit, and tell it which event
                    // was being delivered so it can deliver it again.
                    let q = second.cr2.unwrap_or(second.dr6);
                    let stop = self.exit(VmExit::Exception {
                        vector: second.vector,
                        error_code: second.error_code,
                        qualification: q,
                    });
                    self.core.exit_info.guest_linear = second.cr2;
                    self.core.exit_info.idt_vectoring = Some(as_injection(ev));
                    return Err(stop);
                }
                if ev.kind == EventKind::Software {
                    self.core.rip = self.core.rip.wrapping_sub(u64::from(ev.len));
                }
                let first = ev.vector;
                if first == vector::DF {
                    return Err(Stop::Shutdown);
                }
                let double = (contributory(first) || first == vector::PF)
                    && (contributory(second.vector) || (second.vector == vector::PF && first == vector::PF));
                let next = if double { Event::with_code(vector::DF, 0) } else { second };
                match self.deliver_once(next) {
                    Ok(()) => Ok(()),
                    Err(Stop::Event) if double => Err(Stop::Shutdown),
                    Err(Stop::Event) => {
                        let third = self.core.event.take().expect("Stop::Event carries an event");
                        self.deliver(third)
                    }
                    Err(other) => Err(other),
                }
            }
            Err(other) => Err(other),
        }
    }

    fn deliver_once(&mut self, ev: Event) -> Result<(), Stop> {
        let cpu = &mut *self.core;
        cpu.cycles += cost::EVENT_DELIVERY;
        if ev.kind == EventKind::External {
            cpu.stats.interrupts += 1;
        } else {
            cpu.stats.exceptions += 1;
        }
        if let Some(cr2) = ev.cr2 {
            cpu.cr2 = cr2;
        }
        if ev.vector == vector::DB {
            cpu.dr6 = (cpu.dr6 & !0xf) | ev.dr6 | dr6::INIT;
        }
        exitlab_x86::interrupt::deliver(self, &delivery(ev))?;
        self.core.sti_shadow = false;
        Ok(())
    }
}

/// How exitlab-x86 delivers `ev` through the IDT (or the real-mode IVT):
/// software interrupts check the gate's DPL; faults during the delivery of
/// anything but INT n carry EXT in their error codes (SDM Vol. 3A 6.13);
/// a fault pushes RFLAGS with RF set, so that IRET back to the faulting
/// instruction does not re-trigger an instruction breakpoint (SDM Vol. 3A,
/// "RF flag"; KVM on silicon agrees).
fn delivery(ev: Event) -> exitlab_x86::interrupt::Delivery {
    exitlab_x86::interrupt::Delivery {
        vector: ev.vector,
        error_code: ev.error_code,
        software: ev.kind == EventKind::Software,
        external: ev.kind != EventKind::Software,
        resume: ev.kind == EventKind::Fault,
    }
}

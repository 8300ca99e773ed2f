//! Events (SDM Vol. 3A ch. 6): what raised one and how it is delivered —
//! exceptions with and without error codes, external interrupts, NMIs,
//! software interrupts and ICEBP; what a fault during delivery becomes
//! (table 6-5: serially, #DF, then shutdown); and what taking an event
//! changes besides the frame (interrupt shadows, NMI blocking, DR6). The
//! delivery itself, through the IDT or the real-mode IVT in whatever mode
//! the core is in, is exitlab-x86's (`exitlab_x86::interrupt::deliver`).

use super::{Running, Stop};
use exitlab_arch::bits::dr6;
use exitlab_arch::vector::{self, Class, Escalation};
use exitlab_hv::{Injection, InjectionKind, VmExit};

/// How an event arose: it decides the pushed RIP, RF and the DPL check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A fault: RIP is the faulting instruction's.
    Fault,
    /// A trap (single step, data breakpoint): RIP is the next
    /// instruction's.
    Trap,
    /// INT n / INT3 / INTO: RIP is at the instruction, RIP + `len` is
    /// pushed; the gate's DPL is checked.
    Software,
    /// ICEBP (INT1): a #DB with RIP + `len` pushed and no DPL check (SDM
    /// 25.8.3, "privileged software exception").
    Privileged,
    /// A maskable interrupt from the local APIC.
    External,
    /// A non-maskable interrupt: blocks further NMIs until IRET.
    Nmi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    pub kind: EventKind,
    pub error_code: Option<u32>,
    /// CR2 for #PF.
    pub cr2: Option<u64>,
    /// Bits to set in DR6 for #DB (B0-B3 are replaced, the rest added).
    pub dr6: u64,
    /// Length of the instruction a software or privileged event comes
    /// from: RIP is at the instruction, the frame gets RIP + `len`, and a
    /// fault while delivering it is reported at the instruction (SDM Vol.
    /// 3A 6.5: INT n "faults" when its delivery does; VMX's
    /// instruction-length field, SDM Vol. 3C 25.8.3).
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

    /// A trap-class #DB (single step, data or I/O breakpoint) reporting
    /// the DR6 bits `dr6`.
    pub fn debug_trap(dr6: u64) -> Event {
        Event { kind: EventKind::Trap, dr6, ..Event::fault(vector::DB) }
    }

    /// A fault-class #DB (instruction breakpoint, general detect).
    pub fn debug_fault(dr6: u64) -> Event {
        Event { dr6, ..Event::fault(vector::DB) }
    }

    /// INT n, INT3 or INTO of `len` bytes at RIP.
    pub fn software(vector: u8, len: u8) -> Event {
        Event { kind: EventKind::Software, len, ..Event::fault(vector) }
    }

    /// ICEBP of `len` bytes at RIP.
    pub fn icebp(len: u8) -> Event {
        Event { kind: EventKind::Privileged, len, ..Event::fault(vector::DB) }
    }

    pub fn external(vector: u8) -> Event {
        Event { kind: EventKind::External, ..Event::fault(vector) }
    }

    pub fn nmi() -> Event {
        Event { kind: EventKind::Nmi, ..Event::fault(vector::NMI) }
    }

    /// Its class for table 6-5: only hardware exceptions have one other
    /// than benign.
    pub fn class(&self) -> Class {
        match self.kind {
            EventKind::Fault | EventKind::Trap => vector::class(self.vector),
            _ => Class::Benign,
        }
    }

    /// A #DB raised by the debug hardware (not INT 1, not ICEBP): it writes
    /// DR6 and consumes pending debug exceptions.
    fn is_debug_exception(&self) -> bool {
        self.vector == vector::DB && matches!(self.kind, EventKind::Fault | EventKind::Trap)
    }

    /// RF in the RFLAGS image pushed: set for faults, so that IRET back to
    /// the faulting instruction does not re-trigger an instruction
    /// breakpoint, except for the instruction breakpoint's own #DB, whose
    /// handler sets it (SDM Vol. 3A 18.3.1.1; KVM on silicon agrees).
    fn pushes_rf(&self) -> bool {
        self.kind == EventKind::Fault && !(self.vector == vector::DB && self.dr6 & 0xf != 0)
    }
}

/// The injection that re-delivers `ev` (IDT-vectoring information).
pub(super) fn as_injection(ev: Event) -> Injection {
    let kind = match ev.kind {
        EventKind::External => InjectionKind::External,
        EventKind::Nmi => InjectionKind::Nmi,
        EventKind::Software => InjectionKind::SoftwareInterrupt,
        EventKind::Privileged => InjectionKind::PrivilegedSoftwareException,
        EventKind::Fault | EventKind::Trap => InjectionKind::HardwareException,
    };
    Injection { vector: ev.vector, kind, error_code: ev.error_code, dr6: ev.dr6, cr2: ev.cr2, instruction_len: ev.len }
}

impl Running<'_> {
    /// Delivers `ev`. A fault during delivery meets the event being
    /// delivered as SDM table 6-5 says (serially, #DF, then shutdown); one
    /// the exception bitmap traps exits with the event in the IDT-vectoring
    /// information instead, for the VMM to merge (`exitlab_vmm`'s shadow
    /// paging does it as KVM's `kvm_multiple_exception`). An exit during
    /// delivery (an EPT violation on the IDT or the stack) carries it too.
    pub fn deliver(&mut self, ev: Event) -> Result<(), Stop> {
        if !self.abort_for(&ev) {
            return Ok(());
        }
        let mut current = ev;
        loop {
            let second = match self.deliver_once(current) {
                Ok(()) => return Ok(()),
                Err(Stop::Event) => self.core.event.take().expect("Stop::Event carries an event"),
                Err(stop) => {
                    if matches!(stop, Stop::Exit) {
                        self.core.exit_info.idt_vectoring = Some(as_injection(current));
                    }
                    return Err(stop);
                }
            };
            if self.core.controls.exception_exits(second.vector) {
                return Err(self.delivery_fault_exit(current, second));
            }
            current = match vector::escalate(current.class(), second.class()) {
                Escalation::Serial => second,
                Escalation::DoubleFault => Event::with_code(vector::DF, 0),
                Escalation::Shutdown => return Err(Stop::Shutdown),
            };
        }
    }

    /// The VMM traps `second`, which arose while `first` was being
    /// delivered (a shadow-paging #PF on the IDT or the stack): exit, and
    /// tell it which event was being delivered.
    fn delivery_fault_exit(&mut self, first: Event, second: Event) -> Stop {
        let q = second.cr2.unwrap_or(second.dr6);
        let stop =
            self.exit(VmExit::Exception { vector: second.vector, error_code: second.error_code, qualification: q });
        self.core.exit_info.guest_linear = second.cr2;
        self.core.exit_info.idt_vectoring = Some(as_injection(first));
        stop
    }

    /// One attempt at delivering `ev`; state changes only once the frame
    /// is written.
    fn deliver_once(&mut self, ev: Event) -> Result<(), Stop> {
        let cpu = &mut *self.core;
        cpu.cycles += cpu.costs.event_delivery();
        if matches!(ev.kind, EventKind::External | EventKind::Nmi) {
            cpu.stats.interrupts += 1;
        } else {
            cpu.stats.exceptions += 1;
        }
        if let Some(cr2) = ev.cr2 {
            cpu.cr2 = cr2;
        }
        // exitlab-x86 pushes RIP as it is: past a software event's
        // instruction while it is delivered, back at it if delivery fails.
        let len = u64::from(ev.len);
        self.core.rip = self.core.rip.wrapping_add(len);
        if let Err(stop) = exitlab_x86::interrupt::deliver(self, &delivery(ev)) {
            self.core.rip = self.core.rip.wrapping_sub(len);
            return Err(stop);
        }
        self.delivered(&ev);
        Ok(())
    }

    /// What taking `ev` changes besides the frame: the interrupt shadows
    /// and the HLT state end, NMIs are blocked until IRET after an NMI,
    /// and a #DB from the debug hardware writes DR6, clears DR7.GD and
    /// consumes the debug exceptions that were pending (ICEBP consumes
    /// them too, without touching DR6).
    fn delivered(&mut self, ev: &Event) {
        let cpu = &mut *self.core;
        cpu.sti_shadow = false;
        cpu.mov_ss_blocking = false;
        cpu.halted = false;
        if ev.kind == EventKind::Nmi {
            cpu.nmi_blocked = true;
        }
        if ev.is_debug_exception() {
            cpu.dr6 = (cpu.dr6 & !0xf) | ev.dr6 | dr6::INIT;
        }
        if ev.vector == vector::DB && ev.kind != EventKind::Software {
            cpu.dr7 &= !super::debug::DR7_GD;
            cpu.pending_dbg = 0;
        }
    }
}

/// How exitlab-x86 delivers `ev` through the IDT (or the real-mode IVT):
/// software interrupts check the gate's DPL; faults during the delivery of
/// anything but INT n carry EXT in their error codes (SDM Vol. 3A 6.13);
/// RF in the pushed RFLAGS as [`Event::pushes_rf`] says.
fn delivery(ev: Event) -> exitlab_x86::interrupt::Delivery {
    exitlab_x86::interrupt::Delivery {
        vector: ev.vector,
        error_code: ev.error_code,
        software: ev.kind == EventKind::Software,
        external: ev.kind != EventKind::Software,
        resume: ev.pushes_rf(),
    }
}

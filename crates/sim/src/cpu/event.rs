//! Event delivery through the IDT in IA-32e mode (SDM Vol. 3A 6.14):
//! exceptions with and without error codes, external interrupts, NMIs,
//! software interrupts and ICEBP, the handler's code segment checks, the
//! privilege-level stack switch through the TSS; what a fault during
//! delivery becomes (table 6-5: serially, #DF, then shutdown); and IRETQ.

use super::{Running, Stop};
use crate::cost;
use exitlab_arch::bits::{dr6, rflags};
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
    /// from.
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

    /// The IDT error code's EXT bit: set unless a software interrupt (INT
    /// n, INT3, INTO) was being delivered (SDM 6.13).
    fn ext(&self) -> u32 {
        u32::from(self.kind != EventKind::Software)
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

/// The IDT gate of the event being delivered.
struct Gate {
    selector: u16,
    target: u64,
    ist: u64,
    /// An interrupt gate (IF cleared), not a trap gate.
    interrupt: bool,
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

    /// One attempt at delivering `ev`: gate, handler segment, stack frame;
    /// state changes only once the frame is written.
    fn deliver_once(&mut self, ev: Event) -> Result<(), Stop> {
        let cpu = &mut *self.core;
        cpu.cycles += cost::EVENT_DELIVERY;
        if matches!(ev.kind, EventKind::External | EventKind::Nmi) {
            cpu.stats.interrupts += 1;
        } else {
            cpu.stats.exceptions += 1;
        }
        if let Some(cr2) = ev.cr2 {
            cpu.cr2 = cr2;
        }
        let gate = self.gate(&ev)?;
        let new_cpl = self.handler_segment(gate.selector, &ev)?;
        let old_cpl = self.core.cpl();
        let old_rsp = self.core.gpr[4];
        let old_ss = self.core.ss.selector;
        let old_rflags = self.core.rflags();
        let old_cs = self.core.cs.selector;
        let mut rsp = if gate.ist != 0 {
            self.read_linear(self.core.tr.base.wrapping_add(0x24 + (gate.ist - 1) * 8), 8, false)?
        } else if new_cpl < old_cpl {
            self.read_linear(self.core.tr.base.wrapping_add(4 + u64::from(new_cpl) * 8), 8, false)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        let pushed_rflags = if ev.pushes_rf() { old_rflags | rflags::RF } else { old_rflags };
        let rip = self.core.rip.wrapping_add(u64::from(ev.len));
        let mut frame = [u64::from(old_ss), old_rsp, pushed_rflags, u64::from(old_cs), rip, 0];
        let n = if let Some(code) = ev.error_code {
            frame[5] = u64::from(code);
            6
        } else {
            5
        };
        for v in &frame[..n] {
            rsp = rsp.wrapping_sub(8);
            self.write_linear(rsp, 8, *v, false)?;
        }
        let cpu = &mut *self.core;
        if new_cpl != old_cpl {
            cpu.ss = exitlab_arch::Segment { selector: u16::from(new_cpl), ..cpu.ss };
        }
        cpu.gpr[4] = rsp;
        cpu.cs.selector = (gate.selector & !3) | u16::from(new_cpl);
        cpu.cs.dpl = new_cpl;
        cpu.cs.l = true;
        let mut rf = old_rflags & !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if gate.interrupt {
            rf &= !rflags::IF;
        }
        cpu.set_rflags(rf);
        cpu.rip = gate.target;
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

    /// The IDT gate for `ev`: within the IDT's limit, present, a 64-bit
    /// interrupt or trap gate, and for INT n/INT3 of DPL >= CPL; each
    /// failure raises #GP or #NP with the IDT error code (SDM 6.13).
    fn gate(&mut self, ev: &Event) -> Result<Gate, Stop> {
        let v = u64::from(ev.vector);
        let idt_error = u32::from(ev.vector) << 3 | 2 | ev.ext();
        if v * 16 + 15 > u64::from(self.core.idtr.limit) {
            return Err(self.raise(Event::gp(idt_error)));
        }
        let at = self.core.idtr.base.wrapping_add(v * 16);
        let lo = self.read_linear(at, 8, false)?;
        let hi = self.read_linear(at.wrapping_add(8), 8, false)?;
        let gate_type = (lo >> 40) & 0xf;
        if gate_type != 0xe && gate_type != 0xf {
            return Err(self.raise(Event::gp(idt_error)));
        }
        if ev.kind == EventKind::Software && (((lo >> 45) & 3) as u8) < self.core.cpl() {
            return Err(self.raise(Event::gp(idt_error)));
        }
        if lo & (1 << 47) == 0 {
            return Err(self.raise(Event::with_code(vector::NP, idt_error)));
        }
        Ok(Gate {
            selector: (lo >> 16) as u16,
            target: (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32),
            ist: (lo >> 32) & 7,
            interrupt: gate_type == 0xe,
        })
    }

    /// The handler's code segment: a present 64-bit code segment in the
    /// GDT with DPL <= CPL; returns its DPL (the new CPL). Failures raise
    /// #GP or #NP with the selector and the EXT bit (SDM 6.12.1.1).
    fn handler_segment(&mut self, selector: u16, ev: &Event) -> Result<u8, Stop> {
        let code = u32::from(selector & !3) | ev.ext();
        let index = u64::from(selector & !7);
        if index == 0 || selector & 4 != 0 || index + 7 > u64::from(self.core.gdtr.limit) {
            return Err(self.raise(Event::gp(code)));
        }
        let desc = self.read_linear(self.core.gdtr.base.wrapping_add(index), 8, false)?;
        let dpl = ((desc >> 45) & 3) as u8;
        let is_code = desc & (1 << 44) != 0 && desc & (1 << 43) != 0;
        if !is_code || dpl > self.core.cpl() || desc & (1 << 53) == 0 {
            return Err(self.raise(Event::gp(code)));
        }
        if desc & (1 << 47) == 0 {
            return Err(self.raise(Event::with_code(vector::NP, code)));
        }
        Ok(dpl)
    }

    /// The 8-byte GDT descriptor for `selector`.
    pub fn read_descriptor(&mut self, selector: u16) -> Result<u64, Stop> {
        let index = u64::from(selector & !7);
        if selector & 4 != 0 || index + 7 > u64::from(self.core.gdtr.limit) || index == 0 {
            return Err(self.raise(Event::gp(u32::from(selector & !3))));
        }
        self.read_linear(self.core.gdtr.base.wrapping_add(index), 8, false)
    }

    /// IRETQ: pops RIP, CS, RFLAGS, RSP and SS; ends NMI blocking.
    pub fn iret(&mut self) -> Result<(), Stop> {
        let rsp = self.core.gpr[4];
        let mut pop = [0u64; 5];
        for (i, v) in pop.iter_mut().enumerate() {
            *v = self.load(rsp.wrapping_add(8 * i as u64), 8)?;
        }
        let [rip, cs, rf, new_rsp, ss] = pop;
        let cs = cs as u16;
        let new_cpl = (cs & 3) as u8;
        let old_cpl = self.core.cpl();
        if new_cpl < old_cpl {
            return Err(self.raise(Event::gp(u32::from(cs & !3))));
        }
        let desc = self.read_descriptor(cs)?;
        if desc & (1 << 47) == 0 {
            return Err(self.raise(Event::with_code(vector::NP, u32::from(cs & !3))));
        }
        let cpu = &mut *self.core;
        // IOPL changes only at CPL 0; IF only when CPL <= IOPL.
        let mut keep = 0;
        if old_cpl > 0 {
            keep |= rflags::IOPL;
        }
        if old_cpl > cpu.iopl() {
            keep |= rflags::IF;
        }
        let cur = cpu.rflags();
        let settable = rflags::STATUS
            | rflags::TF
            | rflags::IF
            | rflags::DF
            | rflags::IOPL
            | rflags::NT
            | rflags::RF
            | rflags::AC
            | rflags::ID;
        let new = (cur & keep) | (rf & settable & !keep);
        cpu.set_rflags(new);
        cpu.rip = rip;
        cpu.cs.selector = cs;
        cpu.cs.dpl = new_cpl;
        cpu.cs.l = desc & (1 << 53) != 0;
        cpu.ss.selector = ss as u16;
        cpu.gpr[4] = new_rsp;
        cpu.nmi_blocked = false;
        Ok(())
    }
}

//! Event delivery through the IDT in IA-32e mode (SDM Vol. 3A 6.14):
//! exceptions with and without error codes, external interrupts, software
//! interrupts, the privilege-level stack switch through the TSS, #DF on a
//! fault during delivery and shutdown on a fault during #DF; and IRETQ.

use super::{Running, Stop};
use crate::cost;
use exitlab_arch::bits::{dr6, rflags};
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
}

impl Event {
    pub fn fault(vector: u8) -> Event {
        Event { vector, kind: EventKind::Fault, error_code: None, cr2: None, dr6: 0 }
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

    pub fn software(vector: u8) -> Event {
        Event { kind: EventKind::Software, ..Event::fault(vector) }
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
        let v = u64::from(ev.vector);
        let ext = (ev.kind == EventKind::External) as u32;
        let idt_error = (ev.vector as u32) << 3 | 2 | ext;
        if v * 16 + 15 > u64::from(cpu.idtr.limit) {
            return Err(self.raise(Event::gp(idt_error)));
        }
        let gate_at = cpu.idtr.base.wrapping_add(v * 16);
        let lo = self.read_linear(gate_at, 8, false)?;
        let hi = self.read_linear(gate_at.wrapping_add(8), 8, false)?;
        let present = lo & (1 << 47) != 0;
        let gate_type = (lo >> 40) & 0xf;
        let gate_dpl = ((lo >> 45) & 3) as u8;
        if !present {
            return Err(self.raise(Event::with_code(vector::NP, idt_error)));
        }
        if gate_type != 0xe && gate_type != 0xf {
            return Err(self.raise(Event::gp(idt_error)));
        }
        if ev.kind == EventKind::Software && gate_dpl < self.core.cpl() {
            return Err(self.raise(Event::gp(idt_error)));
        }
        let selector = (lo >> 16) as u16;
        let target = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let ist = (lo >> 32) & 7;
        let desc = self.read_descriptor(selector)?;
        let new_cpl = ((desc >> 45) & 3) as u8;

        let old_cpl = self.core.cpl();
        let old_rsp = self.core.gpr[4];
        let old_ss = self.core.ss.selector;
        let old_rflags = self.core.rflags();
        let old_cs = self.core.cs.selector;
        let mut rsp = if ist != 0 {
            self.read_linear(self.core.tr.base.wrapping_add(0x24 + (ist - 1) * 8), 8, false)?
        } else if new_cpl < old_cpl {
            self.read_linear(self.core.tr.base.wrapping_add(4 + u64::from(new_cpl) * 8), 8, false)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        // A fault pushes RFLAGS with RF set, so that IRET back to the
        // faulting instruction does not re-trigger an instruction breakpoint
        // (SDM Vol. 3A, "RF flag"; KVM on silicon agrees).
        let pushed_rflags = if ev.kind == EventKind::Fault { old_rflags | rflags::RF } else { old_rflags };
        let mut frame = vec![u64::from(old_ss), old_rsp, pushed_rflags, u64::from(old_cs), self.core.rip];
        if let Some(code) = ev.error_code {
            frame.push(u64::from(code));
        }
        for v in &frame {
            rsp = rsp.wrapping_sub(8);
            self.write_linear(rsp, 8, *v, false)?;
        }
        let cpu = &mut *self.core;
        if new_cpl != old_cpl {
            cpu.ss = exitlab_arch::Segment { selector: u16::from(new_cpl), ..cpu.ss };
        }
        cpu.gpr[4] = rsp;
        cpu.cs.selector = (selector & !3) | u16::from(new_cpl);
        cpu.cs.dpl = new_cpl;
        cpu.cs.l = desc & (1 << 53) != 0;
        let mut rf = old_rflags & !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if gate_type == 0xe {
            rf &= !rflags::IF;
        }
        cpu.set_rflags(rf);
        cpu.rip = target;
        cpu.sti_shadow = false;
        Ok(())
    }

    /// The 8-byte GDT descriptor for `selector`.
    pub fn read_descriptor(&mut self, selector: u16) -> Result<u64, Stop> {
        let index = u64::from(selector & !7);
        if selector & 4 != 0 || index + 7 > u64::from(self.core.gdtr.limit) || index == 0 {
            return Err(self.raise(Event::gp(u32::from(selector & !3))));
        }
        self.read_linear(self.core.gdtr.base.wrapping_add(index), 8, false)
    }

    /// IRETQ: pops RIP, CS, RFLAGS, RSP and SS.
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
        Ok(())
    }
}

//! The interpreter loop: events first (MSIs, timers, pending exceptions,
//! interrupts), then the HLT state's jump to the next event, then guest
//! code a decoded block at a time, or one instruction at a time when TF or
//! an interrupt shadow needs instruction boundaries.

use super::event::Event;
use super::event::EventKind;
use super::mmu::Access;
use super::{Running, Stop};
use crate::blocks::{Block, Step};
use crate::cost;
use crate::interrupts::Signal;
use crate::ram::PAGE;
use exitlab_arch::bits::rflags;
use exitlab_arch::vector;
use exitlab_hv::{ExitInfo, HvError, Injection, InjectionKind, VmExit};
use exitlab_x86::{lower, Op};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Formatter, IntelFormatter};
use std::sync::Arc;

/// Most instructions in one decoded block.
const BLOCK_MAX: usize = 32;

/// Run limits that turn a runaway guest into a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_instructions: Option<u64>,
    pub max_cycles: Option<u64>,
    /// One block per pass of the event loop, never chained: the reference
    /// the chained path (`cpu::chain`) is tested against.
    pub unchained: bool,
}

impl Running<'_> {
    /// Takes the interrupts devices have signalled by now into the local
    /// APIC, or through posted-interrupt processing. True when a VMM
    /// deadline is due.
    fn take_signals(&mut self) -> Result<bool, HvError> {
        let id = self.core.apic.id;
        while let Some(v) = self.machine.interrupts.pop_msi_for(id) {
            self.take_interrupt(v)?;
        }
        let now_ns = self.core.costs.clock.ns(self.core.cycles);
        let mut wake_vmm = false;
        while let Some(signal) = self.machine.interrupts.pop_due(now_ns) {
            let signal = match signal {
                Signal::Remapped { source, index } => match self.machine.remap_interrupt(source, index) {
                    Some(s) => s,
                    None => continue,
                },
                Signal::WakeVmm => {
                    wake_vmm = true;
                    continue;
                }
                s => s,
            };
            let (dest, vector) = match signal {
                Signal::Msi { dest, vector } => (dest, vector),
                Signal::Post { descriptor, vector } => match self.machine.host.post(descriptor, vector)? {
                    Some(notification) => notification,
                    None => continue,
                },
                Signal::Remapped { .. } | Signal::WakeVmm => continue,
            };
            if dest == id || dest == 0xff {
                self.take_interrupt(vector)?;
            } else {
                self.machine.interrupts.push_msi(dest, vector);
            }
        }
        Ok(wake_vmm)
    }

    /// An interrupt arriving at this vCPU: the notification vector, with
    /// posted interrupts on, moves the descriptor's requests into the
    /// virtual APIC without an exit (SDM 29.6); anything else is requested
    /// in the local APIC.
    fn take_interrupt(&mut self, vector: u8) -> Result<(), HvError> {
        match self.core.controls.posted_interrupts {
            Some(pi) if pi.notification_vector == vector => {
                self.core.stats.posted_notifications += 1;
                for v in self.machine.host.take_posted(pi.descriptor)? {
                    self.core.apic.request(v);
                }
            }
            _ => self.core.apic.request(vector),
        }
        Ok(())
    }

    /// Runs until the next exit. An exit that finds a transaction open
    /// (an asynchronous one: instruction exits abort it before this) aborts
    /// it first, so the VMM sees the vCPU at the fallback.
    pub fn run(&mut self, limits: &Limits) -> Result<VmExit, HvError> {
        let exit = self.run_to_exit(limits)?;
        self.abort(0);
        Ok(exit)
    }

    fn run_to_exit(&mut self, limits: &Limits) -> Result<VmExit, HvError> {
        if let Some(inj) = self.core.injection.take() {
            if let Err(stop) = self.deliver(injected(inj)) {
                if let Some(exit) = self.stopped(stop)? {
                    return Ok(exit);
                }
            }
        }
        self.core.preempt_at = match self.core.controls.preemption_timer {
            Some(n) => self.core.cycles.saturating_add(n),
            None => u64::MAX,
        };
        loop {
            if self.take_signals()? {
                self.core.exit_info = ExitInfo::default();
                return Err(HvError::Interrupted);
            }
            if self.core.cycles >= self.core.next_event() {
                let now = self.core.cycles;
                self.core.apic.tick(now);
                if now >= self.core.preempt_at {
                    self.core.preempt_at = u64::MAX;
                    self.core.exit_info = ExitInfo::default();
                    return Ok(VmExit::PreemptionTimer);
                }
            }
            if let Some(ev) = self.core.pending.take() {
                if intercepted(ev) && self.core.controls.exception_exits(ev.vector) {
                    return Ok(self.exception_exit(ev));
                }
                if let Err(stop) = self.deliver(ev) {
                    if let Some(exit) = self.stopped(stop)? {
                        return Ok(exit);
                    }
                }
                continue;
            }
            let can_take = !self.core.sti_shadow && self.core.interrupts_enabled();
            if self.core.controls.external_interrupt_exiting {
                // The VMM takes every interrupt and injects it when the
                // guest can receive it.
                if let Some(v) = self.core.apic.deliverable() {
                    self.core.apic.accept(v);
                    self.core.exit_info = ExitInfo::default();
                    return Ok(VmExit::ExternalInterrupt { vector: v });
                }
            } else if can_take && self.core.apic.any_requested() {
                if let Some(v) = self.core.apic.deliverable() {
                    self.core.apic.accept(v);
                    self.core.halted = false;
                    if let Err(stop) = self.deliver(Event::external(v)) {
                        if let Some(exit) = self.stopped(stop)? {
                            return Ok(exit);
                        }
                    }
                    continue;
                }
            }
            if can_take && self.core.controls.interrupt_window_exiting {
                self.core.exit_info = ExitInfo::default();
                return Ok(VmExit::InterruptWindow);
            }
            if self.core.halted {
                let t = self.horizon();
                let wakes = self.core.interrupts_enabled() || self.core.controls.external_interrupt_exiting;
                if t == u64::MAX || (!wakes && t != self.core.preempt_at) {
                    return Ok(VmExit::Hlt);
                }
                // Idle costs no host time: jump to the next event.
                self.core.stats.cycles_idle += t.saturating_sub(self.core.cycles);
                self.core.cycles = self.core.cycles.max(t);
                continue;
            }
            if let Some(max) = limits.max_instructions {
                if self.core.stats.instructions >= max {
                    return Err(HvError::Limit(format!(
                        "instruction limit of {max} reached at rip {:#x}",
                        self.core.rip
                    )));
                }
            }
            if let Some(max) = limits.max_cycles {
                if self.core.cycles >= max {
                    return Err(HvError::Limit(format!(
                        "time limit of {} ns of guest time reached at rip {:#x}",
                        self.core.costs.clock.ns(max),
                        self.core.rip
                    )));
                }
            }
            let single =
                self.core.rflags_rest & rflags::TF != 0 || self.core.sti_shadow || self.core.controls.monitor_trap_flag;
            if let Some(exit) = self.run_block(single, limits)? {
                return Ok(exit);
            }
            if self.core.controls.monitor_trap_flag && self.core.pending.is_none() {
                self.core.exit_info = ExitInfo::default();
                return Ok(VmExit::MonitorTrap);
            }
        }
    }

    /// An exception the exception bitmap traps: not delivered; the VMM
    /// gets it (for #PF with the linear address as the qualification and
    /// CR2 untouched; for #DB with the DR6 bits).
    fn exception_exit(&mut self, ev: Event) -> VmExit {
        self.core.exit_info = ExitInfo { guest_linear: ev.cr2, ..ExitInfo::default() };
        let qualification = ev.cr2.unwrap_or(ev.dr6);
        VmExit::Exception { vector: ev.vector, error_code: ev.error_code, qualification }
    }

    /// The next cycle at which anything needs the event loop: the vCPU's
    /// own timers or a device's scheduled MSI.
    pub(super) fn horizon(&self) -> u64 {
        let msi = self.machine.interrupts.next_at().map_or(u64::MAX, |at| self.core.costs.clock.cycles_ceil(at));
        self.core.next_event().min(msi)
    }

    /// Nothing is due: no timer, exception, interrupt request or MSI, and
    /// no limit reached.
    #[inline(always)]
    pub(super) fn quiet(&self, limits: &Limits) -> bool {
        self.core.cycles < self.horizon()
            && self.core.pending.is_none()
            && !self.core.apic.any_requested()
            && !self.machine.interrupts.has_msi()
            && limits.max_instructions.is_none_or(|m| self.core.stats.instructions < m)
            && limits.max_cycles.is_none_or(|m| self.core.cycles < m)
    }

    /// Runs `steps` in order. `Some(exit)` ends the run call; `None` means
    /// the ops ran (or stopped for an event the loop delivers).
    #[inline(always)]
    pub(super) fn run_ops(&mut self, steps: &[Step], tf: bool) -> Result<Option<Option<VmExit>>, HvError> {
        for step in steps {
            self.core.replay.pos = 0;
            match exitlab_x86::execute(self, &step.op) {
                Ok(()) => self.retire(step.cost, tf),
                Err(stop) => {
                    self.core.apic_write = None;
                    return self.stopped_in_block(&step.op, step.cost, stop, tf);
                }
            }
            if self.machine.blocks.stale() || self.core.recheck {
                // An APIC write sets `recheck` too.
                if let Some(exit) = self.apic_write() {
                    return Ok(Some(Some(exit)));
                }
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// The trap-like APIC_WRITE exit owed for a completed instruction that
    /// wrote a register APIC virtualization does not virtualize; none
    /// inside a transaction.
    #[cold]
    fn apic_write(&mut self) -> Option<VmExit> {
        let offset = self.core.apic_write.take().filter(|_| self.core.tx.is_none())?;
        self.core.exit_info = exitlab_hv::ExitInfo::default();
        Some(VmExit::ApicWrite { offset })
    }

    /// An instruction completed: its cycles, the count, and the single-step
    /// trap TF asks for.
    #[inline(always)]
    fn retire(&mut self, cost: u16, tf: bool) {
        self.core.cycles += u64::from(cost);
        self.core.stats.instructions += 1;
        self.core.replay.log.clear();
        if tf {
            self.core.pending = Some(Event::single_step());
        }
    }

    /// What an op's stop means inside a block: an exit for the VMM (OUT
    /// retires first, RIP past it, as VMX handlers and KVM complete it),
    /// an exception to deliver, or, inside a transaction, an abort instead
    /// of the exit.
    #[cold]
    fn stopped_in_block(
        &mut self,
        op: &Op,
        cost: u16,
        stop: Stop,
        tf: bool,
    ) -> Result<Option<Option<VmExit>>, HvError> {
        if stop == Stop::ExitAfter {
            self.core.rip = self.core.rip.wrapping_add(u64::from(op.len));
            self.retire(cost, tf);
        }
        match stop {
            Stop::Exit | Stop::ExitAfter if self.core.tx.is_some() => {
                // Instructions that exit abort a transaction instead.
                self.core.exit = None;
                self.core.awaiting = None;
                self.core.replay.log.clear();
                self.abort(0);
                Ok(Some(None))
            }
            Stop::Exit | Stop::ExitAfter => Ok(Some(self.core.exit.take())),
            stop => {
                self.core.replay.log.clear();
                self.stopped(stop).map(Some)
            }
        }
    }

    /// Turns a stop into what the VMM sees: an exception is queued for
    /// delivery on the next loop (no exit), shutdown is TRIPLE_FAULT.
    pub(super) fn stopped(&mut self, stop: Stop) -> Result<Option<VmExit>, HvError> {
        match stop {
            Stop::Exit | Stop::ExitAfter => Ok(self.core.exit.take()),
            Stop::Event => {
                self.core.pending = self.core.event.take();
                Ok(None)
            }
            Stop::Shutdown => Ok(Some(VmExit::Shutdown)),
            Stop::Aborted => Ok(None),
            Stop::Unsupported => Err(HvError::Unsupported(self.describe(self.core.rip))),
        }
    }

    /// Decodes a block at `rip` (linear `lin`, physical `phys`): up to
    /// `BLOCK_MAX` instructions, stopping at the page's end (an instruction
    /// that crosses it is decoded from both pages) and, outside 64-bit
    /// mode, at CS's limit (an instruction that crosses it is #GP(0)).
    pub(super) fn decode_block(
        &mut self,
        rip: u64,
        lin: u64,
        phys: u64,
        bits: u32,
        user: bool,
    ) -> Result<Arc<Block>, Stop> {
        self.core.stats.blocks_decoded += 1;
        let page_end = (phys | (PAGE - 1)) + 1;
        let mut bytes = vec![0u8; (page_end - phys) as usize];
        if !self.machine.ram.read(phys, &mut bytes) {
            return Err(Stop::Unsupported);
        }
        // Bytes past CS's limit may not be fetched.
        let limit_room =
            if self.core.view.flat { u64::MAX } else { u64::from(self.core.cs().limit).saturating_sub(rip) + 1 };
        let limited = limit_room < bytes.len() as u64;
        if limited {
            bytes.truncate(limit_room as usize);
        }
        let mut decoder = Decoder::with_ip(bits, &bytes, rip, DecoderOptions::NONE);
        let mut steps = Vec::new();
        let mut crossed = false;
        while steps.len() < BLOCK_MAX && decoder.can_decode() {
            let at = decoder.ip();
            let instr = decoder.decode();
            let op = if decoder.last_error() == DecoderError::NoMoreBytes && limited {
                if steps.is_empty() {
                    return Err(self.raise(Event::gp(0)));
                }
                break;
            } else if decoder.last_error() == DecoderError::NoMoreBytes {
                // The instruction runs into the next page: decode it from
                // both pages' bytes (the second page must be executable).
                let off = (at - rip) as usize;
                let mut buf = bytes[off..].to_vec();
                let next = match self.translate((lin | (PAGE - 1)).wrapping_add(1), Access::Fetch, user) {
                    Ok(p) => p,
                    Err(e) if steps.is_empty() => return Err(e),
                    Err(_) => break,
                };
                let mut tail = [0u8; 15];
                if !self.machine.ram.read(next, &mut tail) {
                    return Err(Stop::Unsupported);
                }
                buf.extend_from_slice(&tail);
                self.machine.ram.mark_code(next);
                crossed = true;
                lower(&Decoder::with_ip(bits, &buf, at, DecoderOptions::NONE).decode())
            } else {
                lower(&instr)
            };
            steps.push(Step { op, cost: cost::cycles(&op) });
            if op.ends_block() || crossed {
                break;
            }
        }
        self.machine.ram.mark_code(phys);
        let block = Arc::new(Block::new(lin, rip, bits, phys, steps));
        self.machine.blocks.insert(block.clone());
        Ok(block)
    }

    /// The instruction at `rip` the simulator does not model: its bytes and
    /// disassembly, for reports.
    pub fn describe(&mut self, rip: u64) -> exitlab_hv::Unmodelled {
        let mut bytes = Vec::new();
        let user = self.core.cpl() == 3;
        let bits = self.core.view.code_bits;
        let lin = self.fetch_linear(rip).unwrap_or(rip);
        for i in 0..15 {
            match self.translate(lin.wrapping_add(i), Access::Fetch, user) {
                Ok(p) => {
                    let mut b = [0u8];
                    if !self.machine.ram.read(p, &mut b) {
                        break;
                    }
                    bytes.push(b[0]);
                }
                Err(_) => break,
            }
        }
        self.core.event = None;
        let instr = Decoder::with_ip(bits, &bytes, rip, DecoderOptions::NONE).decode();
        let mut text = String::new();
        IntelFormatter::new().format(&instr, &mut text);
        bytes.truncate(instr.len().max(1));
        exitlab_hv::Unmodelled { rip, bytes, disassembly: text, by: "the simulator" }
    }
}

/// Exceptions the exception bitmap applies to: hardware exceptions and the
/// software exceptions INT3 and INTO, not INT n or interrupts.
fn intercepted(ev: Event) -> bool {
    match ev.kind {
        EventKind::Fault | EventKind::Trap => true,
        EventKind::Software => matches!(ev.vector, vector::BP | vector::OF),
        EventKind::External => false,
    }
}

/// The event an injection delivers. Injected #DB and #BP are traps (RIP
/// already past the instruction, no RF), other exceptions faults.
fn injected(inj: Injection) -> Event {
    let kind = match inj.kind {
        InjectionKind::External | InjectionKind::Nmi => EventKind::External,
        InjectionKind::SoftwareInterrupt => EventKind::Software,
        InjectionKind::HardwareException if matches!(inj.vector, vector::DB | vector::BP) => EventKind::Trap,
        InjectionKind::HardwareException => EventKind::Fault,
    };
    Event { vector: inj.vector, kind, error_code: inj.error_code, cr2: inj.cr2, dr6: inj.dr6, len: 0 }
}

//! The interpreter loop: events first (MSIs, timers, pending exceptions,
//! interrupts), then the HLT state's jump to the next event, then guest
//! code a decoded block at a time, or one instruction at a time when TF or
//! an interrupt shadow needs instruction boundaries.

use super::event::Event;
use super::event::EventKind;
use super::mmu::Access;
use super::op::lower;
use super::{Machine, Stop};
use crate::machine::{Block, Signal, PAGE};
use exitlab_arch::bits::rflags;
use exitlab_arch::vector;
use exitlab_hv::{ExitInfo, HvError, Injection, InjectionKind, VmExit};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Formatter, IntelFormatter};
use std::sync::Arc;

/// Most instructions in one decoded block.
const BLOCK_MAX: usize = 32;

/// Run limits that turn a runaway guest into a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_instructions: Option<u64>,
    pub max_cycles: Option<u64>,
}

impl Machine<'_> {
    /// Takes the interrupts devices have signalled by now into the local
    /// APIC, or through posted-interrupt processing. True when a VMM
    /// deadline is due.
    fn take_signals(&mut self) -> Result<bool, HvError> {
        let id = self.cpu.apic.id;
        let mine = |dest: u8| dest == id || dest == 0xff;
        let mut i = 0;
        while i < self.sh.msi.len() {
            if mine(self.sh.msi[i].0) {
                let (_, v) = self.sh.msi.remove(i);
                self.take_interrupt(v)?;
            } else {
                i += 1;
            }
        }
        let now_ns = self.cpu.costs.clock.ns(self.cpu.cycles);
        let mut wake_vmm = false;
        while let Some(&std::cmp::Reverse((at, _, signal))) = self.sh.timed.peek() {
            if at > now_ns {
                break;
            }
            self.sh.timed.pop();
            let signal = match signal {
                Signal::Remapped { source, index } => match self.sh.remap_interrupt(source, index) {
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
                Signal::Post { descriptor, vector } => match self.sh.post(descriptor, vector)? {
                    Some(notification) => notification,
                    None => continue,
                },
                Signal::Remapped { .. } | Signal::WakeVmm => continue,
            };
            if mine(dest) {
                self.take_interrupt(vector)?;
            } else {
                self.sh.msi.push((dest, vector));
            }
        }
        Ok(wake_vmm)
    }

    /// An interrupt arriving at this vCPU: the notification vector, with
    /// posted interrupts on, moves the descriptor's requests into the
    /// virtual APIC without an exit (SDM 29.6); anything else is requested
    /// in the local APIC.
    fn take_interrupt(&mut self, vector: u8) -> Result<(), HvError> {
        match self.cpu.controls.posted_interrupts {
            Some(pi) if pi.notification_vector == vector => {
                self.cpu.stats.posted_notifications += 1;
                for v in self.sh.take_posted(pi.descriptor)? {
                    self.cpu.apic.request(v);
                }
            }
            _ => self.cpu.apic.request(vector),
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
        if let Some(inj) = self.cpu.injection.take() {
            if let Err(stop) = self.deliver(injected(inj)) {
                if let Some(exit) = self.stopped(stop)? {
                    return Ok(exit);
                }
            }
        }
        self.cpu.preempt_at = match self.cpu.controls.preemption_timer {
            Some(n) => self.cpu.cycles.saturating_add(n),
            None => u64::MAX,
        };
        loop {
            if self.take_signals()? {
                self.cpu.exit_info = ExitInfo::default();
                return Err(HvError::Interrupted);
            }
            if self.cpu.cycles >= self.cpu.next_event() {
                let now = self.cpu.cycles;
                self.cpu.apic.tick(now);
                if now >= self.cpu.preempt_at {
                    self.cpu.preempt_at = u64::MAX;
                    self.cpu.exit_info = ExitInfo::default();
                    return Ok(VmExit::PreemptionTimer);
                }
            }
            if let Some(ev) = self.cpu.pending.take() {
                if intercepted(ev) && self.cpu.controls.exception_exits(ev.vector) {
                    return Ok(self.exception_exit(ev));
                }
                if let Err(stop) = self.deliver(ev) {
                    if let Some(exit) = self.stopped(stop)? {
                        return Ok(exit);
                    }
                }
                continue;
            }
            let can_take = !self.cpu.sti_shadow && self.cpu.interrupts_enabled();
            if self.cpu.controls.external_interrupt_exiting {
                // The VMM takes every interrupt and injects it when the
                // guest can receive it.
                if let Some(v) = self.cpu.apic.deliverable() {
                    self.cpu.apic.accept(v);
                    self.cpu.exit_info = ExitInfo::default();
                    return Ok(VmExit::ExternalInterrupt { vector: v });
                }
            } else if can_take && self.cpu.apic.any_requested() {
                if let Some(v) = self.cpu.apic.deliverable() {
                    self.cpu.apic.accept(v);
                    self.cpu.halted = false;
                    if let Err(stop) = self.deliver(Event::external(v)) {
                        if let Some(exit) = self.stopped(stop)? {
                            return Ok(exit);
                        }
                    }
                    continue;
                }
            }
            if can_take && self.cpu.controls.interrupt_window_exiting {
                self.cpu.exit_info = ExitInfo::default();
                return Ok(VmExit::InterruptWindow);
            }
            if self.cpu.halted {
                let t = self.horizon();
                let wakes = self.cpu.interrupts_enabled() || self.cpu.controls.external_interrupt_exiting;
                if t == u64::MAX || (!wakes && t != self.cpu.preempt_at) {
                    return Ok(VmExit::Hlt);
                }
                // Idle costs no host time: jump to the next event.
                self.cpu.stats.cycles_idle += t.saturating_sub(self.cpu.cycles);
                self.cpu.cycles = self.cpu.cycles.max(t);
                continue;
            }
            if let Some(max) = limits.max_instructions {
                if self.cpu.stats.instructions >= max {
                    return Err(HvError::Limit(format!(
                        "instruction limit of {max} reached at rip {:#x}",
                        self.cpu.rip
                    )));
                }
            }
            if let Some(max) = limits.max_cycles {
                if self.cpu.cycles >= max {
                    return Err(HvError::Limit(format!(
                        "time limit of {} ns of guest time reached at rip {:#x}",
                        self.cpu.costs.clock.ns(max),
                        self.cpu.rip
                    )));
                }
            }
            let single =
                self.cpu.rflags_rest & rflags::TF != 0 || self.cpu.sti_shadow || self.cpu.controls.monitor_trap_flag;
            if let Some(exit) = self.run_block(single, limits)? {
                return Ok(exit);
            }
            if self.cpu.controls.monitor_trap_flag && self.cpu.pending.is_none() {
                self.cpu.exit_info = ExitInfo::default();
                return Ok(VmExit::MonitorTrap);
            }
        }
    }

    /// An exception the exception bitmap traps: not delivered; the VMM
    /// gets it (for #PF with the linear address as the qualification and
    /// CR2 untouched; for #DB with the DR6 bits).
    fn exception_exit(&mut self, ev: Event) -> VmExit {
        self.cpu.exit_info = ExitInfo { guest_linear: ev.cr2, ..ExitInfo::default() };
        let qualification = ev.cr2.unwrap_or(ev.dr6);
        VmExit::Exception { vector: ev.vector, error_code: ev.error_code, qualification }
    }

    /// Runs one block (or one instruction). Returns an exit, or `None` to
    /// go around the event loop again.
    fn run_block(&mut self, single: bool, limits: &Limits) -> Result<Option<VmExit>, HvError> {
        let block = match self.block_at(self.cpu.rip) {
            Ok(b) => b,
            Err(stop) => return self.stopped(stop),
        };
        let tf = self.cpu.rflags_rest & rflags::TF != 0;
        if single {
            self.cpu.sti_shadow = false;
        }
        self.sh.code_written = false;
        let count = if single { 1 } else { block.ops.len() };
        loop {
            self.cpu.stats.block_runs += 1;
            if let Some(exit) = self.run_ops(&block.ops[..count], tf)? {
                return Ok(exit);
            }
            if self.sh.code_written {
                // This block may be stale: do not keep it.
                return Ok(None);
            }
            if self.cpu.recheck {
                self.cpu.recheck = false;
                break;
            }
            // A loop back to this block's start goes round again here, while
            // nothing needs the event loop's attention.
            if single || self.cpu.rip != block.lin || !self.quiet(limits) {
                break;
            }
        }
        self.cpu.last_block = Some(block);
        Ok(None)
    }

    /// The next cycle at which anything needs the event loop: the vCPU's
    /// own timers or a device's scheduled MSI.
    fn horizon(&self) -> u64 {
        let msi = self.sh.timed.peek().map_or(u64::MAX, |r| self.cpu.costs.clock.cycles_ceil((r.0).0));
        self.cpu.next_event().min(msi)
    }

    /// Nothing is due: no timer, exception, interrupt request or MSI, and
    /// no limit reached.
    #[inline(always)]
    fn quiet(&self, limits: &Limits) -> bool {
        self.cpu.cycles < self.horizon()
            && self.cpu.pending.is_none()
            && !self.cpu.apic.any_requested()
            && self.sh.msi.is_empty()
            && limits.max_instructions.is_none_or(|m| self.cpu.stats.instructions < m)
            && limits.max_cycles.is_none_or(|m| self.cpu.cycles < m)
    }

    /// Runs `ops` in order. `Some(exit)` ends the run call; `None` means the
    /// ops ran (or stopped for an event the loop delivers).
    #[inline(always)]
    fn run_ops(&mut self, ops: &[super::op::Op], tf: bool) -> Result<Option<Option<VmExit>>, HvError> {
        for op in ops {
            self.cpu.replay.pos = 0;
            let result = self.exec(op);
            let apic_write = self.cpu.apic_write.take();
            if matches!(result, Ok(()) | Err(Stop::ExitAfter)) {
                self.cpu.cycles += u64::from(op.cost);
                self.cpu.stats.instructions += 1;
                self.cpu.replay.log.clear();
                if tf {
                    self.cpu.pending = Some(Event::single_step());
                }
            }
            match result {
                Ok(()) => {
                    if let Some(offset) = apic_write.filter(|_| self.cpu.tx.is_none()) {
                        // Trap-like: the instruction has completed.
                        self.cpu.exit_info = exitlab_hv::ExitInfo::default();
                        return Ok(Some(Some(VmExit::ApicWrite { offset })));
                    }
                }
                Err(Stop::Exit | Stop::ExitAfter) if self.cpu.tx.is_some() => {
                    // Instructions that exit abort a transaction instead.
                    self.cpu.exit = None;
                    self.cpu.awaiting = None;
                    self.cpu.replay.log.clear();
                    self.abort(0);
                    return Ok(Some(None));
                }
                Err(Stop::ExitAfter) => return Ok(Some(self.cpu.exit.take())),
                Err(Stop::Exit) => return Ok(Some(self.cpu.exit.take())),
                Err(stop) => {
                    self.cpu.replay.log.clear();
                    return self.stopped(stop).map(Some);
                }
            }
            if self.sh.code_written || self.cpu.recheck {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Turns a stop into what the VMM sees: an exception is queued for
    /// delivery on the next loop (no exit), shutdown is TRIPLE_FAULT.
    fn stopped(&mut self, stop: Stop) -> Result<Option<VmExit>, HvError> {
        match stop {
            Stop::Exit | Stop::ExitAfter => Ok(self.cpu.exit.take()),
            Stop::Event => {
                self.cpu.pending = self.cpu.event.take();
                Ok(None)
            }
            Stop::Shutdown => Ok(Some(VmExit::Shutdown)),
            Stop::Aborted => Ok(None),
            Stop::Unsupported => Err(HvError::Unsupported(self.describe(self.cpu.rip))),
        }
    }

    /// The decoded block at `rip`: the one that just ran (a loop), one from
    /// the cache, or a freshly decoded one.
    fn block_at(&mut self, rip: u64) -> Result<Arc<Block>, Stop> {
        let user = self.cpu.cpl() == 3;
        let phys = self.translate(rip, Access::Fetch, user)?;
        // Moving the block out of `last_block` (and back after it ran)
        // keeps reference-count atomics off the loop path.
        if let Some(b) = self.cpu.last_block.take() {
            if b.lin == rip && b.phys == phys {
                return Ok(b);
            }
        }
        if let Some(b) = self.sh.cache.get(phys, rip) {
            return Ok(b.clone());
        }
        self.cpu.stats.blocks_decoded += 1;
        let page_end = (phys | (PAGE - 1)) + 1;
        let mut bytes = vec![0u8; (page_end - phys) as usize];
        if !self.sh.read(phys, &mut bytes) {
            return Err(Stop::Unsupported);
        }
        let mut decoder = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NONE);
        let mut ops = Vec::new();
        let mut crossed = false;
        while ops.len() < BLOCK_MAX && decoder.can_decode() {
            let at = decoder.ip();
            let instr = decoder.decode();
            let op = if decoder.last_error() == DecoderError::NoMoreBytes {
                // The instruction runs into the next page: decode it from
                // both pages' bytes (the second page must be executable).
                let off = (at - rip) as usize;
                let mut buf = bytes[off..].to_vec();
                let next = match self.translate((rip | (PAGE - 1)).wrapping_add(1), Access::Fetch, user) {
                    Ok(p) => p,
                    Err(e) if ops.is_empty() => return Err(e),
                    Err(_) => break,
                };
                let mut tail = [0u8; 15];
                if !self.sh.read(next, &mut tail) {
                    return Err(Stop::Unsupported);
                }
                buf.extend_from_slice(&tail);
                self.sh.mark_code(next);
                crossed = true;
                lower(&Decoder::with_ip(64, &buf, at, DecoderOptions::NONE).decode())
            } else {
                lower(&instr)
            };
            ops.push(op);
            if op.ends_block() || crossed {
                break;
            }
        }
        self.sh.mark_code(phys);
        let block = Arc::new(Block { lin: rip, phys, ops });
        self.sh.cache.insert(block.clone());
        Ok(block)
    }

    /// "rip 0x...: bytes 0f 0b (ud2)" for reports.
    pub fn describe(&mut self, rip: u64) -> String {
        let mut bytes = Vec::new();
        for i in 0..15 {
            let user = self.cpu.cpl() == 3;
            match self.translate(rip.wrapping_add(i), Access::Fetch, user) {
                Ok(p) => {
                    let mut b = [0u8];
                    if !self.sh.read(p, &mut b) {
                        break;
                    }
                    bytes.push(b[0]);
                }
                Err(_) => break,
            }
        }
        let instr = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NONE).decode();
        let mut text = String::new();
        IntelFormatter::new().format(&instr, &mut text);
        let hex: Vec<String> = bytes.iter().take(instr.len().max(1)).map(|b| format!("{b:02x}")).collect();
        format!("instruction at rip {rip:#x} not modelled by the simulator: bytes {} ({text})", hex.join(" "))
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
    Event { vector: inj.vector, kind, error_code: inj.error_code, cr2: inj.cr2, dr6: inj.dr6 }
}

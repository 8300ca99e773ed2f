//! The interpreter loop: events first (MSIs, timers, pending exceptions,
//! interrupts), then the HLT state's jump to the next event, then guest
//! code a decoded block at a time, or one instruction at a time when TF or
//! an interrupt shadow needs instruction boundaries.

use super::event::Event;
use super::event::EventKind;
use super::mmu::Access;
use super::{chain, Running, Stop};
use crate::apic::Destination;
use crate::blocks::{Block, Step};
use crate::cost;
use crate::interrupts::Signal;
use crate::ram::PAGE;
use exitlab_arch::bits::{dr6, rflags};
use exitlab_arch::vector;
use exitlab_hv::{ExitInfo, HvError, Injection, InjectionKind, VmExit};
use exitlab_x86::op::{absent, needs, Needs, ABSENT_X87};
use exitlab_x86::{lower, Kind, Op};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Formatter, IntelFormatter};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Most instructions in one decoded block.
const BLOCK_MAX: usize = 32;

/// Run limits that turn a runaway guest into a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_instructions: Option<u64>,
    pub max_cycles: Option<u64>,
    /// The VMM's host-time deadline: past it, a run call returns
    /// `Interrupted` even if the guest never exits. The only host-clock
    /// read in the simulator; it decides nothing about the guest, only
    /// when the VMM looks at its limits again.
    pub host_deadline: Option<Instant>,
    /// One block per pass of the event loop, never chained: the reference
    /// the chained path (`cpu::chain`) is tested against.
    pub unchained: bool,
}

impl Limits {
    /// Whether the host deadline has passed, looked at once every 1,024
    /// block runs (`runs`): a clock read per block would cost the fast
    /// path.
    #[inline(always)]
    pub(super) fn host_time_up(&self, runs: u64) -> bool {
        runs & 0x3ff == 0 && self.host_deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Running<'_> {
    /// Takes the interrupts devices have signalled by now into the local
    /// APIC, or through posted-interrupt processing. True when a VMM
    /// deadline is due.
    fn take_signals(&mut self) -> Result<bool, HvError> {
        loop {
            let apic = &self.core.apic;
            let Some(v) = self.machine.interrupts.pop_msi_for(|d| apic.accepts(d)) else { break };
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
                    Some((id, nv)) => (Destination::Physical(id), nv),
                    None => continue,
                },
                Signal::Remapped { .. } | Signal::WakeVmm => continue,
            };
            if self.core.apic.accepts(dest) {
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
        // An exit storm in which no instruction retires still spends guest
        // time (each exit is priced): the limits hold at every entry too.
        self.check_limits(limits)?;
        if !self.core.replay.log.is_empty() {
            // The instruction whose access the VMM just answered completes
            // before anything else, as KVM completes an MMIO or port access
            // on re-entry before it injects or delivers an event. Delivered
            // first, the handler's instructions would drop the replay and
            // the instruction would access the device again.
            if let Some(exit) = self.step()? {
                return Ok(exit);
            }
        }
        if let Some(inj) = self.core.injection.take() {
            if let Err(stop) = self.deliver_event(injected(inj)) {
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
            match self.events()? {
                Some(Some(exit)) => return Ok(exit),
                Some(None) => continue,
                None => {}
            }
            if self.core.halted {
                let t = self.horizon();
                let wakes = self.core.interrupts_enabled() || self.core.controls.external_interrupt_exiting;
                if t == u64::MAX || (!wakes && t != self.core.preempt_at) {
                    return Ok(VmExit::Hlt);
                }
                // Idle costs no host time: jump to the next event.
                self.core.stats.cycles_idle += t.saturating_sub(self.core.cycles);
                self.core.cycles = self.core.costs.halt_until(self.core.cycles, t);
                continue;
            }
            self.check_limits(limits)?;
            if limits.host_time_up(self.core.stats.block_runs) {
                self.core.exit_info = ExitInfo::default();
                return Err(HvError::Interrupted);
            }
            let c = &*self.core;
            let single = c.rflags_rest & (rflags::TF | rflags::RF) != 0
                || c.sti_shadow
                || c.mov_ss_blocking
                || c.controls.monitor_trap_flag
                || c.bp.armed();
            let ran = if single { self.step()? } else { self.run_block(limits)? };
            if let Some(exit) = ran {
                return Ok(exit);
            }
            if self.core.controls.monitor_trap_flag && self.core.pending.is_none() {
                self.core.exit_info = ExitInfo::default();
                return Ok(VmExit::MonitorTrap);
            }
        }
    }

    /// The run limits, as a backend error naming the limit and the RIP.
    fn check_limits(&self, limits: &Limits) -> Result<(), HvError> {
        if let Some(max) = limits.max_instructions {
            if self.core.stats.instructions >= max {
                return Err(HvError::Limit(format!("instruction limit of {max} reached at rip {:#x}", self.core.rip)));
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
        Ok(())
    }

    /// The highest-priority event due at this instruction boundary (SDM
    /// table 6-2), delivered or turned into the exit the controls ask for:
    /// an exception the last instruction raised, then pending debug traps
    /// (unless MOV SS blocks them), an NMI, a maskable interrupt, and the
    /// NMI- and interrupt-window exits. `Some(Some(exit))` ends the run
    /// call, `Some(None)` means something was delivered, `None` that code
    /// runs next.
    fn events(&mut self) -> Result<Option<Option<VmExit>>, HvError> {
        if let Some(ev) = self.core.pending.take() {
            return self.take_event(ev).map(Some);
        }
        if self.core.pending_dbg != 0 && !self.core.mov_ss_blocking {
            let ev = Event::debug_trap(std::mem::take(&mut self.core.pending_dbg));
            return self.take_event(ev).map(Some);
        }
        if let Some(nmi) = self.nmi()? {
            return Ok(Some(nmi));
        }
        let can_take = !self.core.sti_shadow && !self.core.mov_ss_blocking && self.core.interrupts_enabled();
        if self.core.controls.external_interrupt_exiting {
            // The VMM hears of every interrupt and acknowledges the one
            // the APIC presents when the guest can receive it
            // (VmxVcpu::apic_acknowledge), so a higher vector that
            // arrives meanwhile goes first.
            if let Some(v) = self.core.apic.newly_deliverable() {
                self.core.exit_info = ExitInfo::default();
                return Ok(Some(Some(VmExit::ExternalInterrupt { vector: v })));
            }
        } else if can_take && self.core.apic.any_requested() {
            if let Some(v) = self.core.apic.deliverable() {
                self.core.apic.accept(v);
                return self.take_event(Event::external(v)).map(Some);
            }
        }
        if can_take && self.core.controls.interrupt_window_exiting {
            self.core.exit_info = ExitInfo::default();
            return Ok(Some(Some(VmExit::InterruptWindow)));
        }
        Ok(None)
    }

    /// An NMI the local APIC latched: an exit under NMI exiting, else
    /// delivered unless NMIs are blocked (until IRET) or MOV SS blocks
    /// events; and the NMI-window exit once the guest can take one (SDM
    /// 26.7.6).
    fn nmi(&mut self) -> Result<Option<Option<VmExit>>, HvError> {
        if self.core.apic.take_nmi() {
            self.core.nmi_pending = true;
        }
        let c = &self.core.controls;
        let open = !self.core.nmi_blocked && !self.core.mov_ss_blocking;
        if self.core.nmi_pending && (c.nmi_exiting || open) {
            self.core.nmi_pending = false;
            if c.nmi_exiting {
                self.core.exit_info = ExitInfo::default();
                return Ok(Some(Some(VmExit::Nmi)));
            }
            return self.take_event(Event::nmi()).map(Some);
        }
        if open && c.virtual_nmis && c.nmi_window_exiting {
            self.core.exit_info = ExitInfo::default();
            return Ok(Some(Some(VmExit::NmiWindow)));
        }
        Ok(None)
    }

    /// Delivers `ev`, or exits if the exception bitmap traps it.
    fn take_event(&mut self, ev: Event) -> Result<Option<VmExit>, HvError> {
        if intercepted(ev) && self.core.controls.exception_exits(ev.vector) {
            return Ok(Some(self.exception_exit(ev)));
        }
        match self.deliver_event(ev) {
            Ok(()) => Ok(None),
            Err(stop) => self.stopped(stop),
        }
    }

    /// Delivery, and the data breakpoints its own accesses hit (a frame
    /// pushed onto a watched stack), which are pending once it is done.
    fn deliver_event(&mut self, ev: Event) -> Result<(), Stop> {
        self.core.bp_hits = 0;
        self.deliver(ev)?;
        self.core.pending_dbg |= std::mem::take(&mut self.core.bp_hits);
        Ok(())
    }

    /// An exception the exception bitmap traps: not delivered; the VMM
    /// gets it (for #PF with the linear address as the qualification and
    /// CR2 untouched; for #DB with the DR6 bits).
    fn exception_exit(&mut self, ev: Event) -> VmExit {
        self.core.exit_info = ExitInfo { guest_linear: ev.cr2, ..ExitInfo::default() };
        let qualification = ev.cr2.unwrap_or(ev.dr6);
        VmExit::Exception { vector: ev.vector, error_code: ev.error_code, qualification }
    }

    /// One instruction, at a boundary that needs care: single-stepping
    /// (TF), an interrupt shadow (STI, MOV SS), RF, the monitor trap flag
    /// or an armed breakpoint. An instruction breakpoint faults first; once
    /// the instruction retires, the data and I/O breakpoints it hit (and
    /// TF's BS) are pending debug exceptions, and RF is cleared unless
    /// IRET just loaded it (SDM 18.3.1.1).
    fn step(&mut self) -> Result<Option<VmExit>, HvError> {
        if let Some(stop) = self.instruction_breakpoint() {
            return self.stopped(stop);
        }
        let mut chain = std::mem::take(&mut self.core.chain);
        let r = self.step_in(&mut chain);
        self.core.chain = chain;
        r
    }

    /// `step`'s instruction, its block looked up through `chain`.
    fn step_in(&mut self, chain: &mut chain::Chain) -> Result<Option<VmExit>, HvError> {
        let cur = match self.chained_block(chain) {
            Ok(i) => i,
            Err(stop) => return self.stopped(stop),
        };
        let block = chain.block(cur);
        // SYSCALL and SYSRET trap by TF at their end (Cpu::single_step_trap).
        let tf_at_end = matches!(block.steps[0].op.kind, Kind::Syscall | Kind::Sysret);
        let tf = self.core.rflags_rest & rflags::TF != 0 && !tf_at_end;
        self.core.sti_shadow = false;
        self.core.mov_ss_blocking = false;
        self.core.bp_hits = 0;
        self.machine.blocks.clear_stale();
        self.core.stats.block_runs += 1;
        let retired = self.core.stats.instructions;
        let ran = self.run_ops(&block.steps[..1], tf)?;
        if self.core.stats.instructions != retired {
            self.core.pending_dbg |= std::mem::take(&mut self.core.bp_hits);
            if block.steps[0].op.kind != Kind::Iret {
                self.core.rflags_rest &= !rflags::RF;
            }
        }
        if !self.machine.blocks.stale() {
            chain.ran(cur);
        }
        Ok(ran.flatten())
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
            && self.core.pending_dbg == 0
            && !self.core.apic.any_requested()
            && !self.core.apic.nmi_latched()
            && !self.machine.interrupts.has_msi()
            && limits.max_instructions.is_none_or(|m| self.core.stats.instructions < m)
            && limits.max_cycles.is_none_or(|m| self.core.cycles < m)
            && !limits.host_time_up(self.core.stats.block_runs)
    }

    /// Runs `steps` in order. `Some(exit)` ends the run call; `None` means
    /// the ops ran (or stopped for an event the loop delivers).
    #[inline(always)]
    pub(super) fn run_ops(&mut self, steps: &[Step], tf: bool) -> Result<Option<Option<VmExit>>, HvError> {
        // Only a block's last op can change CPL: each op is priced at the
        // level it ran at.
        let cpl = self.core.cpl();
        for step in steps {
            if let ControlFlow::Break(r) = self.run_op(step, cpl, tf)? {
                return Ok(r);
            }
        }
        Ok(None)
    }

    /// One op of a block, retired at `cpl`: `Break` with what
    /// [`Running::run_ops`] returns when the block ends at it (a stop, or
    /// decoded code or interrupt state changed), else `Continue`.
    #[inline(never)]
    pub(super) fn run_op(
        &mut self,
        step: &Step,
        cpl: u8,
        tf: bool,
    ) -> Result<ControlFlow<Option<Option<VmExit>>>, HvError> {
        self.core.replay.pos = 0;
        match exitlab_x86::execute(self, &step.op) {
            Ok(()) => self.retire(step.cost, cpl, tf),
            Err(stop) => {
                self.core.apic_write = None;
                return self.stopped_in_block(&step.op, (step.cost, cpl), stop, tf).map(ControlFlow::Break);
            }
        }
        if self.machine.blocks.stale() || self.core.recheck {
            // An APIC write sets `recheck` too.
            if let Some(exit) = self.apic_write() {
                return Ok(ControlFlow::Break(Some(Some(exit))));
            }
            return Ok(ControlFlow::Break(None));
        }
        Ok(ControlFlow::Continue(()))
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

    /// An instruction completed at privilege level `cpl`: its cycles (the
    /// CPI table's `cost`, or the profile's price for the level), the
    /// count, and the single-step trap TF asks for (a pending debug
    /// exception, which MOV SS blocking may hold for one more instruction).
    #[inline(always)]
    fn retire(&mut self, cost: u16, cpl: u8, tf: bool) {
        self.core.cycles += self.core.costs.instruction(cost, cpl);
        self.core.stats.instructions += 1;
        self.core.replay.log.clear();
        if tf {
            self.core.pending_dbg |= dr6::BS;
        }
    }

    /// What an op's stop means inside a block: an exit for the VMM (OUT
    /// retires first, RIP past it, as VMX handlers and KVM complete it),
    /// an exception to deliver, or, inside a transaction, an abort instead
    /// of the exit. The pair is the op's CPI-table cost and the privilege
    /// level it ran at, for [`Running::retire`].
    #[cold]
    fn stopped_in_block(
        &mut self,
        op: &Op,
        (cost, cpl): (u16, u8),
        stop: Stop,
        tf: bool,
    ) -> Result<Option<Option<VmExit>>, HvError> {
        if stop == Stop::ExitAfter {
            self.core.rip = self.core.rip.wrapping_add(u64::from(op.len));
            self.retire(cost, cpl, tf);
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
                let next = match self.translate((lin | (PAGE - 1)).wrapping_add(1), Access::Fetch, user, 1) {
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
                self.gated(&Decoder::with_ip(bits, &buf, at, DecoderOptions::NONE).decode())
            } else {
                self.gated(&instr)
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

    /// `i` as this CPU runs it: lowered, and absent (#UD) if it needs a
    /// CPUID feature the CPU model lacks (CPUID is the contract).
    fn gated(&self, i: &iced_x86::Instruction) -> Op {
        let op = lower(i);
        match needs(i) {
            Needs::Feature(f) if !self.core.features.has(f) => absent(op, f),
            // Lowered, but of an extension the model never advertises:
            // #UD all the same.
            Needs::Unmodelled { x87 } if op.kind != Kind::Absent => {
                Op { kind: Kind::Absent, cc: if x87 { ABSENT_X87 } else { 0 }, ..op }
            }
            _ => op,
        }
    }

    /// The instruction at `rip` the simulator does not model: its bytes and
    /// disassembly, for reports.
    pub fn describe(&mut self, rip: u64) -> exitlab_hv::Unmodelled {
        let mut bytes = Vec::new();
        let user = self.core.cpl() == 3;
        let bits = self.core.view.code_bits;
        let lin = self.fetch_linear(rip).unwrap_or(rip);
        for i in 0..15 {
            match self.translate(lin.wrapping_add(i), Access::Fetch, user, 1) {
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

/// Exceptions the exception bitmap applies to: hardware exceptions, ICEBP's
/// #DB and the software exceptions INT3 and INTO, not INT n, interrupts or
/// NMIs (NMI exiting decides those).
fn intercepted(ev: Event) -> bool {
    match ev.kind {
        EventKind::Fault | EventKind::Trap | EventKind::Privileged => true,
        EventKind::Software => matches!(ev.vector, vector::BP | vector::OF),
        EventKind::External | EventKind::Nmi => false,
    }
}

/// The event an injection delivers. Injected #DB and #BP are traps (RIP
/// already past the instruction, no RF), other exceptions faults; software
/// interrupts and ICEBP push RIP plus the injection's instruction length.
fn injected(inj: Injection) -> Event {
    let kind = match inj.kind {
        InjectionKind::External => EventKind::External,
        InjectionKind::Nmi => EventKind::Nmi,
        InjectionKind::SoftwareInterrupt => EventKind::Software,
        InjectionKind::PrivilegedSoftwareException => EventKind::Privileged,
        InjectionKind::HardwareException if matches!(inj.vector, vector::DB | vector::BP) => EventKind::Trap,
        InjectionKind::HardwareException => EventKind::Fault,
    };
    Event { vector: inj.vector, kind, error_code: inj.error_code, cr2: inj.cr2, dr6: inj.dr6, len: inj.instruction_len }
}

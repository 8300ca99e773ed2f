//! Restricted transactional memory (Intel TSX RTM, SDM vol. 1 ch. 16):
//! XBEGIN saves the registers (the x87, MMX and SSE state with them) and
//! from then on every guest write logs the
//! bytes it overwrites; XEND commits by dropping the log; an abort writes
//! the log back, restores the registers, and resumes at XBEGIN's fallback
//! with the abort status in EAX. An exit, interrupt or exception inside a
//! transaction aborts it first: instructions that exit (CPUID, I/O, HLT,
//! MSR and MMIO accesses) abort without exiting, as the SDM lists them
//! among the instructions that always abort; an asynchronous exit or an
//! interrupt is taken at the fallback after the abort; an exception is
//! suppressed. One vCPU writes the memory, so conflict aborts (another
//! agent touching the write set) are not modelled; the read set is not
//! tracked either.

use super::event::{Event, EventKind};
use super::{Flags, Running, Stop};
use exitlab_arch::vector;
use exitlab_x86::fp::xsave::FpuState;
use exitlab_x86::tsx::status;
use std::collections::HashSet;

/// Where the write set lives: the L1 data cache, 32 KiB in 64 sets of 8
/// 64-byte lines (docs/SOURCES.md section 6, "Write-set capacity": a ninth
/// distinct line written in one set aborts; secondary source, Haswell).
pub const L1D_SETS: usize = 64;
pub const L1D_WAYS: u8 = 8;

/// MAX_RTM_NEST_COUNT: XBEGIN past this depth aborts.
pub const MAX_NEST: u8 = 7;

/// An open transaction: what an abort restores.
#[derive(Clone, Debug)]
pub struct Transaction {
    fallback: u64,
    gpr: [u64; 16],
    flags: Flags,
    rflags_rest: u64,
    /// The x87/MMX/SSE registers, MXCSR and XINUSE: an abort restores all
    /// architectural register state (SDM Vol. 1 16.3.8).
    fpu: FpuState,
    depth: u8,
    /// (physical address, overwritten bytes, length), in write order.
    undo: Vec<(u64, u64, u8)>,
    lines: HashSet<u64>,
    /// Written lines per L1D set.
    set_fill: [u8; L1D_SETS],
}

impl Running<'_> {
    /// XBEGIN with fallback address `fallback`; a nested XBEGIN only
    /// deepens the transaction it is in.
    pub(super) fn begin_transaction(&mut self, fallback: u64) {
        if let Some(tx) = self.core.tx.as_mut() {
            if tx.depth == MAX_NEST {
                self.abort(status::NESTED);
            } else {
                tx.depth += 1;
            }
            return;
        }
        self.core.tx = Some(Box::new(Transaction {
            fallback,
            gpr: self.core.gpr,
            flags: self.core.flags,
            rflags_rest: self.core.rflags_rest,
            fpu: self.core.fpu,
            depth: 1,
            undo: Vec::new(),
            lines: HashSet::new(),
            set_fill: [0; L1D_SETS],
        }));
    }

    /// XEND: commits the outermost transaction; #GP outside one.
    pub(super) fn end_transaction(&mut self) -> Result<(), Stop> {
        let Some(tx) = self.core.tx.as_mut() else { return Err(self.raise(Event::gp(0))) };
        tx.depth -= 1;
        if tx.depth == 0 {
            self.core.tx = None;
            self.core.stats.tx_commits += 1;
        }
        Ok(())
    }

    /// Logs the `n` bytes at `phys` a transactional write is about to
    /// overwrite. A line that does not fit its L1D set aborts instead.
    #[cold]
    pub(super) fn log_write(&mut self, phys: u64, n: u8) -> Result<(), Stop> {
        let Some(tx) = self.core.tx.as_mut() else { return Ok(()) };
        for line in [phys >> 6, (phys + u64::from(n) - 1) >> 6] {
            if tx.lines.insert(line) {
                let fill = &mut tx.set_fill[line as usize % L1D_SETS];
                *fill += 1;
                if *fill > L1D_WAYS {
                    self.abort(status::CAPACITY);
                    return Err(Stop::Aborted);
                }
            }
        }
        let mut old = [0u8; 8];
        self.machine.ram.read(phys, &mut old[..usize::from(n)]);
        tx.undo.push((phys, u64::from_le_bytes(old), n));
        Ok(())
    }

    /// Aborts the open transaction, if any: memory and registers back to
    /// XBEGIN, RIP at the fallback, `status` in EAX.
    pub(super) fn abort(&mut self, status: u32) {
        if self.core.tx.is_some() {
            self.rollback(status);
        }
    }

    #[cold]
    fn rollback(&mut self, mut status: u32) {
        let Some(tx) = self.core.tx.take() else { return };
        for &(phys, old, n) in tx.undo.iter().rev() {
            self.machine.write(phys, &old.to_le_bytes()[..usize::from(n)]);
        }
        if tx.depth > 1 {
            status |= status::NESTED;
        }
        self.core.gpr = tx.gpr;
        self.core.gpr[0] = u64::from(status);
        self.core.flags = tx.flags;
        self.core.rflags_rest = tx.rflags_rest;
        self.core.fpu = tx.fpu;
        self.core.rip = tx.fallback;
        self.core.halted = false;
        self.core.stats.tx_aborts += 1;
    }

    /// An event arriving inside a transaction aborts it. Exceptions are
    /// then suppressed (false: do not deliver); an interrupt is delivered
    /// at the fallback.
    pub(super) fn abort_for(&mut self, ev: &Event) -> bool {
        if self.core.tx.is_none() {
            return true;
        }
        let debug = ev.kind != EventKind::External && matches!(ev.vector, vector::DB | vector::BP);
        self.abort(if debug { status::DEBUG } else { 0 });
        ev.kind == EventKind::External
    }
}

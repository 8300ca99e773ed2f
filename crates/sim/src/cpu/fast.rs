//! The fast path of a chained block: its lowered micro-ops (`crate::uop`)
//! run with no dispatch through the executor, and the block's cycles and
//! instruction count are charged once per run of such ops instead of per
//! op.
//!
//! Exactness is by construction. A micro-op computes with exitlab-x86's
//! own functions, so registers and lazy flags are the executor's; it
//! touches nothing else but RIP, and guest memory only where the TLB
//! already holds the translation and the address is RAM (a lookup that
//! changes nothing). Anything else (a TLB miss, MMIO, the APIC page, an
//! open transaction, a page-crossing access, a `Slow` op) first charges
//! the ops before it, then runs that op through the reference path
//! (`Running::run_op`), which sees the clock, the counters and the replay
//! log exactly as the reference would. The charge itself is exact:
//! [`crate::cost::Costs::instructions`] is what the ops' one-by-one
//! charges add up to, and nothing a micro-op does reads the clock or the
//! counters in between.

use super::chain::Chain;
use super::micro::{run_from, Flow, Micro};
use super::mmu::Access;
use super::run::Limits;
use super::{Core, Running};
use crate::blocks::Block;
use crate::machine::Machine;
use exitlab_hv::{HvError, VmExit};
use exitlab_x86::arith::{self, unary_result};
use exitlab_x86::{sign_bit, Cond, Flags, FlagsOp, Kind, Mem, Size};
use std::ops::ControlFlow;

impl Running<'_> {
    /// Runs `block` (never with TF: the event loop steps those): what
    /// `run_ops` returns for the same steps.
    #[inline(always)]
    pub(super) fn run_fast(&mut self, block: &Block, from: usize) -> Result<Option<Option<VmExit>>, HvError> {
        if self.core.recheck {
            // Left set by an op that stopped after an APIC write: the
            // reference ends the block after its first op.
            return self.run_ops(&block.steps[from..], false);
        }
        let cpl = self.core.cpl();
        let mut from = from;
        loop {
            let (to, stale) = run_micros(self.core, self.machine, &block.micros, from, cpl == 3);
            self.charge(block, from, to, cpl);
            // A store that dropped decoded code ends the block after it,
            // as in the reference.
            if stale || to == block.micros.len() {
                return Ok(None);
            }
            if let ControlFlow::Break(r) = self.run_op(&block.steps[to], cpl, false)? {
                return Ok(r);
            }
            from = to + 1;
        }
    }

    /// Runs blocks from `chain`'s entry `cur` on, back to back, while each
    /// runs clean (every op through the fast path, no store to decoded
    /// code), nothing is due (`calm`, the clock below `deadline`, fewer
    /// than `max_instructions` retired, the host deadline not looked at)
    /// and the next block is the same one or a link needing no
    /// translation (`Running::linked`): what the chain loop would do for
    /// those blocks, with its checks that such blocks cannot change left
    /// out. `cur` ends as the block the chain loop goes on with, and
    /// `chain.last` as the chain loop would have left it. Not inlined into
    /// the chain loop: on its own its loop keeps its state in host
    /// registers instead of the chain loop's stack slots.
    #[inline(never)]
    pub(super) fn hot(&mut self, chain: &mut Chain, cur: &mut usize, bounds: Bounds, limits: &Limits) -> Hot {
        let cpl = self.core.cpl();
        let user = cpl == 3;
        let mut last = chain.last;
        let hot = 'blocks: loop {
            let block = chain.block(*cur);
            let (code, full) = (&block.micros[..], block.micros.len());
            // A block that loops to itself goes round here, its slice and
            // length at hand.
            loop {
                self.core.stats.block_runs += 1;
                let (to, stale) = run_micros(self.core, self.machine, code, 0, user);
                self.charge(block, 0, to, cpl);
                if stale {
                    break 'blocks Hot::Stale;
                }
                if to < full {
                    // The chain loop's lookup of this block took `last`.
                    break 'blocks Hot::Within { at: to };
                }
                last = Some(*cur);
                if limits.host_time_up(self.core.stats.block_runs)
                    || self.core.cycles >= bounds.deadline
                    || self.core.stats.instructions >= bounds.max_instructions
                {
                    break 'blocks Hot::Leave;
                }
                if self.core.rip != block.ip {
                    break;
                }
            }
            match self.linked(chain, *cur, self.core.rip, user) {
                Some(i) => {
                    *cur = i;
                    last = None;
                }
                None => break Hot::Lookup,
            }
        };
        chain.last = last;
        hot
    }

    /// Charges ops `from..to` of `block`, retired at `cpl`, as their
    /// one-by-one retirement would.
    #[inline(always)]
    fn charge(&mut self, block: &Block, from: usize, to: usize, cpl: u8) {
        if to > from {
            let n = (to - from) as u64;
            let modelled = block.prefix[to] - block.prefix[from];
            self.core.cycles += self.core.costs.instructions(modelled, n, cpl);
            self.core.stats.instructions += n;
        }
    }
}

/// What stopped [`Running::hot`] after the chain loop's checks.
pub(super) enum Hot {
    /// Block `cur` ran clean and nothing is due; its successor needs the
    /// full lookup.
    Lookup,
    /// Block `cur` ran clean; the event loop must look (something is due,
    /// or the host deadline is looked at).
    Leave,
    /// Block `cur` (counted) ran up to op `at`, which the fast path does
    /// not take: the chain loop runs the rest.
    Within { at: usize },
    /// Block `cur` ran to a store that dropped decoded code.
    Stale,
}

/// What the chain loop fixed for its run: the clock's horizon and the
/// instruction limit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub deadline: u64,
    pub max_instructions: u64,
}

/// Runs `code` from index `from` until a micro-op the fast path does not
/// take (or the end): that index, and whether the last op was a store that
/// dropped decoded code (the run then ends after it). RIP is set once,
/// where the run stops (a branch sets it itself).
#[inline(always)]
fn run_micros(core: &mut Core, machine: &mut Machine, code: &[Micro], from: usize, user: bool) -> (usize, bool) {
    let (i, flow) = run_from(core, machine, code, from, user);
    let (to, stale) = match flow {
        // Branches end blocks (a fused producer's Jcc is the last op).
        Flow::Branch => return (code.len(), false),
        Flow::Stale => (i + 1, true),
        Flow::Next | Flow::Decline => (i, false),
    };
    if to > from {
        core.rip = code[to - 1].next;
    }
    (to, stale)
}

/// What `unary_result` gives, with the CF that INC and DEC keep read
/// straight from the old record when its producer was INC or DEC (which
/// carry it), not evaluated through the record's match: `dec rcx; jnz`
/// after `dec rcx; jnz`.
#[inline(always)]
pub(super) fn unary(kind: Kind, size: Size, a: u64, old: &Flags) -> (u64, Flags) {
    let cf = || if matches!(old.op, FlagsOp::Inc | FlagsOp::Dec) { old.aux & 1 != 0 } else { old.cf() };
    match kind {
        Kind::Inc => arith::inc(size, a, cf()),
        Kind::Dec => arith::dec(size, a, cf()),
        _ => unary_result(kind, size, a, *old),
    }
}

/// Whether Jcc `cc` jumps after a flag producer (not NOT) that left
/// result `r` and record `f`: what `f.cond` gives, with ZF and SF taken
/// straight from `r` (every such producer sets them from its result) and
/// CF from `below` where given (SUB and CMP: the unsigned `a < b`).
#[inline(always)]
pub(super) fn taken(f: &Flags, r: u64, below: Option<bool>, cc: u8) -> bool {
    // Tests in turn rather than a table: each site sees one condition.
    let class = cc >> 1;
    let v = if class == 2 {
        r == 0
    } else if let (1, Some(b)) = (class, below) {
        b
    } else if class == 4 {
        r & sign_bit(f.size) != 0
    } else {
        return f.cond(Cond(cc));
    };
    v != (cc & 1 != 0)
}

/// The linear address of `mem` in 64-bit mode, if the access stays in one
/// page: what `Running::linear` gives there.
#[inline(always)]
fn flat_linear(core: &Core, mem: &Mem, size: Size) -> Option<u64> {
    if !core.view.flat {
        return None;
    }
    let lin = mem.offset(|n| core.gpr[usize::from(n & 15)]).wrapping_add(core.view.base[mem.seg as usize]);
    ((lin & 0xfff) + u64::from(size) <= 0x1000).then_some(lin)
}

/// A read of RAM through a TLB hit; `None` (nothing done) where the
/// reference path must take it.
#[inline(always)]
pub(super) fn load(core: &Core, machine: &Machine, mem: &Mem, size: Size, user: bool) -> Option<u64> {
    let phys = core.tlb_hit(flat_linear(core, mem, size)?, Access::Read, user)?;
    machine.ram.read_value(phys, usize::from(size))
}

/// A write of RAM through a TLB hit, outside a transaction; false
/// (nothing done) where the reference path must take it.
#[inline(always)]
pub(super) fn store(core: &Core, machine: &mut Machine, mem: &Mem, size: Size, v: u64, user: bool) -> bool {
    let Some(phys) = flat_linear(core, mem, size).and_then(|lin| core.tlb_hit(lin, Access::Write, user)) else {
        return false;
    };
    let n = usize::from(size);
    if core.tx.is_some() || phys.checked_add(n as u64).is_none_or(|e| e > machine.ram.len()) {
        return false;
    }
    machine.write_value(phys, n, v)
}

//! Block chaining: decoded blocks run back to back without going round the
//! event loop while nothing can be due, and each block remembers where its
//! two exits (taken and not taken, or a return's last target) led, so
//! the next block is found without the block cache's lookup or a
//! reference-count update (QEMU's TB chaining, in an interpreter).
//!
//! Exactness is by construction: a block runs here only when the event
//! loop, had it run, would have done nothing but run that same block.
//! The event loop's work between two blocks depends on the clock against
//! the horizon (timers, scheduled signals, the preemption timer, the run
//! limits), on pending events, debug traps, NMIs, interrupt requests and
//! MSIs, and on the interrupt, NMI-window, breakpoint and single-step
//! state (`nothing_pending`). A block that ends in a near branch
//! (JMP, Jcc, CALL, RET, LOOP, JrCXZ) or at its size or page limit
//! changes none of the latter (anything that might is an exit, a stop or
//! `recheck`, which leave the chain), so the horizon is computed once per
//! chain (again if an assigned device's register read queued an
//! interrupt) and each boundary compares two counters. A successor is used
//! when block lookup would return the same block: the one that just ran
//! (as the event loop's lookup tries first) or one the cache still holds
//! under the same physical address, linear address, RIP and code size.
//! Invalidation therefore needs nothing of its own: a write to decoded
//! code drops the page's blocks from the cache (and ends the running
//! block), a paging or mode change shows in the translation or the code
//! size the lookup computes for every block, chained or not.

use super::mmu::Access;
use super::run::Limits;
use super::{Running, Stop};
use crate::blocks::Block;
use exitlab_arch::bits::rflags;
use exitlab_hv::{HvError, VmExit};
use std::sync::Arc;

/// Blocks a core keeps at hand for chaining: enough for the loop nests of
/// a hot path, small enough that a miss's scan is cheap.
const CHAIN_BLOCKS: usize = 16;

/// No successor recorded.
const NONE: u8 = u8::MAX;

/// One block a core holds, with the blocks its exits led to last: the
/// successor's RIP and its index in [`Chain::entries`] (checked on use,
/// since entries are replaced).
#[derive(Clone, Debug)]
struct Entry {
    /// The block's key, beside it so that a check reads no block.
    key: Key,
    block: Arc<Block>,
    next: [(u64, u8); 2],
}

/// A core's recently run blocks and their links.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    entries: Vec<Entry>,
    /// The block that ran last, if it completed (the event loop's lookup
    /// tries it first, even when the cache has since dropped it).
    last: Option<usize>,
    /// The entry the next new block replaces (round robin).
    victim: usize,
}

/// What a block lookup computes from RIP and the mode: the key a block
/// must match to be the one at RIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    ip: u64,
    lin: u64,
    phys: u64,
    bits: u32,
}

impl Key {
    fn of(b: &Block) -> Key {
        Key { ip: b.ip, lin: b.lin, phys: b.phys, bits: b.bits }
    }
}

impl Chain {
    /// Remembers that block `from` led to block `to` at `ip`.
    fn link(&mut self, from: Option<usize>, ip: u64, to: usize) {
        let Some(e) = from.and_then(|f| self.entries.get_mut(f)) else { return };
        let slot = usize::from(e.next[0].0 != ip && e.next[0].1 != NONE);
        e.next[slot] = (ip, to as u8);
    }

    /// Adds `block`, replacing the oldest entry when full; its index.
    fn insert(&mut self, block: Arc<Block>) -> usize {
        let entry = Entry { key: Key::of(&block), block, next: [(0, NONE); 2] };
        if self.entries.len() < CHAIN_BLOCKS {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let i = self.victim;
        self.victim = (i + 1) % CHAIN_BLOCKS;
        self.entries[i] = entry;
        i
    }
}

impl Chain {
    /// The block held at index `i` (one `Running::chained_block` gave).
    pub(super) fn block(&self, i: usize) -> &Arc<Block> {
        &self.entries[i].block
    }

    /// Records that the block at index `i` ran to its end: the next lookup
    /// tries it first.
    pub(super) fn ran(&mut self, i: usize) {
        self.last = Some(i);
    }
}

impl Running<'_> {
    /// Runs the block at RIP, then, unless the run is unchained, the
    /// blocks that follow while nothing needs the event loop. Returns an
    /// exit, or `None` to go round the event loop again.
    pub(super) fn run_block(&mut self, limits: &Limits) -> Result<Option<VmExit>, HvError> {
        let mut chain = std::mem::take(&mut self.core.chain);
        let r = self.run_chain(&mut chain, limits);
        self.core.chain = chain;
        r
    }

    fn run_chain(&mut self, chain: &mut Chain, limits: &Limits) -> Result<Option<VmExit>, HvError> {
        let mut cur = match self.chained_block(chain) {
            Ok(i) => i,
            Err(stop) => return self.stopped(stop),
        };
        self.machine.blocks.clear_stale();
        // What the event loop would look at, fixed while the chain runs.
        let mut deadline = self.horizon().min(limits.max_cycles.unwrap_or(u64::MAX));
        // Invariant while chainable blocks run (see the module's comment),
        // but for interrupts an assigned device queued during a read.
        let mut calm = self.nothing_pending();
        let mut queued = self.machine.interrupts.changes();
        let max_instructions = limits.max_instructions.unwrap_or(u64::MAX);
        loop {
            let block = &chain.entries[cur].block;
            self.core.stats.block_runs += 1;
            // The event loop steps one instruction at a time whenever TF
            // is set, so a block never runs with it.
            if let Some(exit) = self.run_ops(&block.steps, false)? {
                return Ok(exit);
            }
            if self.machine.blocks.stale() {
                // This block may be stale: do not keep it.
                return Ok(None);
            }
            chain.last = Some(cur);
            if self.core.recheck {
                self.core.recheck = false;
                return Ok(None);
            }
            if limits.host_time_up(self.core.stats.block_runs) {
                // The event loop reads the clock again and returns.
                return Ok(None);
            }
            if self.machine.interrupts.changes() != queued {
                queued = self.machine.interrupts.changes();
                deadline = self.horizon().min(limits.max_cycles.unwrap_or(u64::MAX));
                calm = self.nothing_pending();
            }
            let plain = block.chainable && !limits.unchained;
            let quiet = || calm && self.core.cycles < deadline && self.core.stats.instructions < max_instructions;
            if self.core.rip == block.ip {
                // A loop back to this block's start goes round again
                // without a lookup (nor its translation), as it always
                // has; after an op that may change what is due, the
                // horizon is looked at afresh.
                if (plain && quiet()) || (!plain && self.quiet(limits)) {
                    continue;
                }
                return Ok(None);
            }
            if !plain || !quiet() {
                return Ok(None);
            }
            cur = match self.chained_block(chain) {
                Ok(i) => i,
                Err(stop) => return self.stopped(stop),
            };
        }
    }

    /// What the event loop checks besides the clock, all false: no pending
    /// exception, debug trap, NMI, interrupt request, MSI or window to
    /// open, nothing that makes it step one instruction (TF, RF, an
    /// interrupt shadow, the monitor trap flag, an armed breakpoint) and
    /// no HLT state.
    #[inline(always)]
    fn nothing_pending(&self) -> bool {
        let c = &*self.core;
        let nmi_open = !c.nmi_blocked && !c.mov_ss_blocking;
        c.pending.is_none()
            && c.pending_dbg == 0
            && !c.apic.any_requested()
            && !c.apic.nmi_latched()
            && !c.nmi_pending
            && !self.machine.interrupts.has_msi()
            && !c.halted
            && !c.sti_shadow
            && !c.mov_ss_blocking
            && c.rflags_rest & (rflags::TF | rflags::RF) == 0
            && !c.controls.monitor_trap_flag
            && !c.bp.armed()
            && !(c.controls.interrupt_window_exiting && c.interrupts_enabled())
            && !(nmi_open && c.controls.virtual_nmis && c.controls.nmi_window_exiting)
    }

    /// The index in `chain` of the decoded block at RIP, in the mode's
    /// code size: the block that just ran, a linked or held block the
    /// cache still has, one from the cache, or a freshly decoded one; the
    /// same block the cache lookup alone would give.
    pub(super) fn chained_block(&mut self, chain: &mut Chain) -> Result<usize, Stop> {
        let rip = self.core.rip;
        let user = self.core.cpl() == 3;
        let lin = self.fetch_linear(rip)?;
        let bits = self.core.view.code_bits;
        let phys = self.translate(lin, Access::Fetch, user, 1)?;
        let key = Key { ip: rip, lin, phys, bits };
        let from = chain.last.take();
        if let Some(l) = from {
            if chain.entries[l].key == key {
                return Ok(l);
            }
            for (ip, i) in chain.entries[l].next {
                if ip == rip && self.held(chain, usize::from(i), &key) {
                    return Ok(usize::from(i));
                }
            }
        }
        if let Some(i) = (0..chain.entries.len()).find(|&i| self.held(chain, i, &key)) {
            chain.link(from, rip, i);
            return Ok(i);
        }
        let block = match self.machine.blocks.get(phys, lin, rip, bits) {
            Some(b) => b.clone(),
            None => self.decode_block(rip, lin, phys, bits, user)?,
        };
        let i = chain.insert(block);
        chain.link(from.filter(|&f| f != i), rip, i);
        Ok(i)
    }

    /// Whether entry `i` is the block at `key` and the cache still holds it.
    #[inline(always)]
    fn held(&self, chain: &Chain, i: usize, key: &Key) -> bool {
        chain.entries.get(i).is_some_and(|e| e.key == *key && self.machine.blocks.holds(e.key.phys, &e.block))
    }
}

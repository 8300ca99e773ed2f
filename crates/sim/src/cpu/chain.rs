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
//! size the lookup computes for every block, chained or not. A link
//! skips the cache's check only while the cache's and the chain's
//! generations are those it was made at (nothing dropped or replaced).

use super::fast::{Bounds, Hot};
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

/// One block a core holds, with the blocks its exits led to last.
#[derive(Clone, Debug)]
struct Entry {
    /// The block's key, beside it so that a check reads no block.
    key: Key,
    block: Arc<Block>,
    next: [Link; 2],
}

/// Where a block's exit led: the successor's key and its index in
/// [`Chain::entries`] (checked on use, since entries are replaced), and
/// the TLB generation and privilege the key's translation was made at.
/// While the TLB is unchanged, the same fetch at the same privilege
/// translates the same, so a link taken then needs no translation.
/// `held` is the block cache's and the chain's generations when the link
/// was made, the successor then in the cache and at `to`: while both are
/// unchanged it still is, with no look at the cache's slot.
#[derive(Clone, Copy, Debug)]
struct Link {
    key: Key,
    to: u8,
    generation: u64,
    user: bool,
    held: (u64, u64),
}

impl Link {
    const NONE: Link = Link {
        key: Key { ip: 0, lin: 0, phys: 0, bits: 0 },
        to: NONE,
        generation: 0,
        user: false,
        held: (u64::MAX, u64::MAX),
    };
}

/// A core's recently run blocks and their links.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    entries: Vec<Entry>,
    /// The block that ran last, if it completed (the event loop's lookup
    /// tries it first, even when the cache has since dropped it).
    pub(super) last: Option<usize>,
    /// The entry the next new block replaces (round robin).
    victim: usize,
    /// Bumped whenever an entry is replaced (links to it go stale).
    replaced: u64,
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
    /// Remembers that block `from` led to block `to` (at `key`, its fetch
    /// translated at TLB generation `generation` for a `user` access; the
    /// block cache, at generation `cache`, holds it).
    fn link(&mut self, from: Option<usize>, to: usize, key: Key, generation: u64, user: bool, cache: u64) {
        let replaced = self.replaced;
        let Some(e) = from.and_then(|f| self.entries.get_mut(f)) else { return };
        let slot = usize::from(e.next[0].key.ip != key.ip && e.next[0].to != NONE);
        e.next[slot] = Link { key, to: to as u8, generation, user, held: (cache, replaced) };
    }

    /// Adds `block`, replacing the oldest entry when full; its index.
    fn insert(&mut self, block: Arc<Block>) -> usize {
        let entry = Entry { key: Key::of(&block), block, next: [Link::NONE; 2] };
        if self.entries.len() < CHAIN_BLOCKS {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let i = self.victim;
        self.victim = (i + 1) % CHAIN_BLOCKS;
        self.entries[i] = entry;
        self.replaced += 1;
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
            // Where in block `cur` to go on, once `hot` has counted it.
            let mut from = None;
            if calm && !limits.unchained && !self.core.recheck {
                let bounds = Bounds { deadline, max_instructions };
                match self.hot(chain, &mut cur, bounds, limits) {
                    Hot::Leave | Hot::Stale => return Ok(None),
                    Hot::Lookup => {
                        cur = match self.chained_block(chain) {
                            Ok(i) => i,
                            Err(stop) => return self.stopped(stop),
                        };
                        continue;
                    }
                    Hot::Within { at } => from = Some(at),
                }
            }
            let block = &chain.entries[cur].block;
            if from.is_none() {
                self.core.stats.block_runs += 1;
            }
            // The event loop steps one instruction at a time whenever TF
            // is set, so a block never runs with it.
            let ran = if limits.unchained {
                self.run_ops(&block.steps, false)?
            } else {
                self.run_fast(block, from.unwrap_or(0))?
            };
            if let Some(exit) = ran {
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
        let from = chain.last.take();
        if let Some(i) = from.and_then(|l| self.linked(chain, l, rip, user)) {
            return Ok(i);
        }
        let lin = self.fetch_linear(rip)?;
        let bits = self.core.view.code_bits;
        let phys = self.translate(lin, Access::Fetch, user, 1)?;
        let key = Key { ip: rip, lin, phys, bits };
        let generation = self.core.tlb.generation();
        if let Some(l) = from {
            if chain.entries[l].key == key {
                return Ok(l);
            }
            for link in chain.entries[l].next {
                if link.key.ip == rip && self.held(chain, usize::from(link.to), &key) {
                    let cache = self.machine.blocks.generation();
                    chain.link(from, usize::from(link.to), key, generation, user, cache);
                    return Ok(usize::from(link.to));
                }
            }
        }
        if let Some(i) = (0..chain.entries.len()).find(|&i| self.held(chain, i, &key)) {
            chain.link(from, i, key, generation, user, self.machine.blocks.generation());
            return Ok(i);
        }
        let block = match self.machine.blocks.get(phys, lin, rip, bits) {
            Some(b) => b.clone(),
            None => self.decode_block(rip, lin, phys, bits, user)?,
        };
        let i = chain.insert(block);
        chain.link(from.filter(|&f| f != i), i, key, generation, user, self.machine.blocks.generation());
        Ok(i)
    }

    /// The successor block `from` is linked to at `rip` when its fetch
    /// needs no translation: in 64-bit mode (the linear address is RIP),
    /// at the privilege and TLB generation the link was made at (the TLB
    /// would answer as it did then, with no side effect), with the code
    /// size unchanged, and the cache still holding that block (known
    /// without a look while neither the cache nor the chain has changed
    /// since the link was made).
    #[inline(always)]
    pub(super) fn linked(&self, chain: &Chain, from: usize, rip: u64, user: bool) -> Option<usize> {
        let v = &self.core.view;
        if !v.flat {
            return None;
        }
        let generation = self.core.tlb.generation();
        let link = chain.entries[from].next.iter().find(|l| {
            l.key.ip == rip
                && l.key.lin == rip
                && l.generation == generation
                && l.user == user
                && l.key.bits == v.code_bits
        })?;
        let i = usize::from(link.to);
        let unchanged = link.held == (self.machine.blocks.generation(), chain.replaced);
        (unchanged || self.held(chain, i, &link.key)).then_some(i)
    }

    /// Whether entry `i` is the block at `key` and the cache still holds it.
    #[inline(always)]
    fn held(&self, chain: &Chain, i: usize, key: &Key) -> bool {
        chain.entries.get(i).is_some_and(|e| e.key == *key && self.machine.blocks.holds(e.key.phys, &e.block))
    }
}

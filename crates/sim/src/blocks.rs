//! The decode cache: runs of lowered instructions (exitlab-x86 `Op`s), each
//! with the cycles the cost model gives it, keyed by the physical address
//! they were decoded from, so a loop is decoded once, not per iteration.
//! Op and price sit side by side in one array: the run loop walks one
//! slice (two parallel arrays measured 10% slower).

use crate::cpu::micro::Micro;
use crate::ram::PAGE;
use crate::uop::Uop;
use exitlab_x86::Op;
use std::sync::Arc;

/// A run of decoded instructions from one page, entered at `lin`: up to
/// `BLOCK_MAX` ops, ending at a control transfer, anything that may exit
/// or change interrupt state, or the page's end.
#[derive(Debug)]
pub struct Block {
    /// The linear address the block was decoded at.
    pub lin: u64,
    /// The instruction pointer (offset in CS) it was decoded at: branch
    /// targets and RIP-relative operands were resolved against it. Equal
    /// to `lin` in 64-bit mode.
    pub ip: u64,
    /// The decoder's mode: 16, 32 or 64 (CS.D, CS.L). The same bytes mean
    /// different instructions in each, so the cache keys on it.
    pub bits: u32,
    pub phys: u64,
    pub steps: Vec<Step>,
    /// The steps' ops lowered for the fast path (`crate::uop`) and
    /// compiled to handlers (`cpu::micro`), one each.
    pub micros: Vec<Micro>,
    /// `prefix[i]`: the CPI-table cycles of `steps[..i]` (the fast path
    /// charges a run of ops at once).
    pub prefix: Vec<u64>,
    /// The block ends in a near branch (JMP, Jcc, CALL, RET, LOOPcc,
    /// JrCXZ) or at its size or page limit: running it changes no
    /// interrupt, single-step, paging or mode state, so the next block may
    /// follow it without the event loop (`cpu::chain`).
    pub chainable: bool,
}

impl Block {
    pub fn new(lin: u64, ip: u64, bits: u32, phys: u64, steps: Vec<Step>) -> Block {
        use exitlab_x86::Kind::*;
        let chainable = steps.last().is_some_and(|s| {
            !s.op.ends_block() || matches!(s.op.kind, Jmp | Jcc | Call | Ret | Loop | Loope | Loopne | Jrcxz)
        });
        let uops = Uop::lower_block(steps.iter().map(|s| &s.op), bits);
        let micros = Micro::compile(&uops, steps.iter().map(|s| s.op.len), ip);
        let prefix = std::iter::once(0)
            .chain(steps.iter().scan(0, |sum, s| {
                *sum += u64::from(s.cost);
                Some(*sum)
            }))
            .collect();
        Block { lin, ip, bits, phys, steps, micros, prefix, chainable }
    }
}

/// One instruction of a block: the op and the cycles the cost model gives
/// it (`crate::cost::cycles`), priced when the block was built.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub op: Op,
    pub cost: u16,
}

const CACHE_SLOTS: usize = 1 << 13;

/// Direct-mapped cache of decoded blocks, keyed by physical address.
#[derive(Debug)]
pub struct BlockCache {
    slots: Vec<Option<Arc<Block>>>,
    /// A write dropped blocks since [`BlockCache::clear_stale`]: the block
    /// running may be one of them.
    stale: bool,
    /// Bumped whenever a block may leave the cache (a slot is replaced or
    /// a page's blocks are dropped): while it is unchanged, a block the
    /// cache held still is held (the chain's links check this one counter
    /// instead of the slot).
    generation: u64,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache { slots: vec![None; CACHE_SLOTS], stale: false, generation: 0 }
    }
}

fn slot(phys: u64) -> usize {
    ((phys ^ (phys >> 13)) as usize) & (CACHE_SLOTS - 1)
}

impl BlockCache {
    pub fn get(&self, phys: u64, lin: u64, ip: u64, bits: u32) -> Option<&Arc<Block>> {
        self.slots[slot(phys)].as_ref().filter(|b| b.phys == phys && b.lin == lin && b.ip == ip && b.bits == bits)
    }

    /// Whether the cache still holds `block` (decoded at `phys`) itself,
    /// not a newer decode of the same address: what a chained successor
    /// is checked against.
    #[inline(always)]
    pub fn holds(&self, phys: u64, block: &Arc<Block>) -> bool {
        self.slots[slot(phys)].as_ref().is_some_and(|b| Arc::ptr_eq(b, block))
    }

    pub fn insert(&mut self, block: Arc<Block>) {
        let i = slot(block.phys);
        self.slots[i] = Some(block);
        self.generation += 1;
    }

    /// The count of changes that may have dropped a block (see the field).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Drops every block decoded from physical page number `page`.
    pub fn invalidate_page(&mut self, page: u64) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|b| b.phys / PAGE == page) {
                *s = None;
            }
        }
        self.stale = true;
        self.generation += 1;
    }

    /// Whether blocks were dropped since the last [`BlockCache::clear_stale`].
    #[inline(always)]
    pub fn stale(&self) -> bool {
        self.stale
    }

    #[inline(always)]
    pub fn clear_stale(&mut self) {
        self.stale = false;
    }
}

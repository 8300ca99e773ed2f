//! The interrupt queue: what reaches the vCPUs from outside them. Fixed
//! MSIs wait for the vCPU they name; signals a device scheduled for a
//! moment of guest time (MSIs, posts, remappable messages, and the VMM's
//! own wake-ups, which are not interrupts but keep the same clock) wait
//! for that moment.

use crate::apic::Destination;
use exitlab_arch::iommu::SourceId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How a device interrupt reaches the vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// A fixed MSI: its destination, vector.
    Msi { dest: Destination, vector: u8 },
    /// Interrupt remapping in posted mode: `vector` into the descriptor at
    /// host-physical `descriptor`.
    Post { descriptor: u64, vector: u8 },
    /// A device's message `index` (its interrupt-remapping entry) from
    /// requester `source`, looked up in the interrupt-remapping table when
    /// it arrives.
    Remapped { source: SourceId, index: u16 },
    /// A deadline the VMM set: the run call returns so its devices can work.
    WakeVmm,
}

/// MSIs signalled now, and signals scheduled in guest time.
#[derive(Debug, Default)]
pub struct InterruptQueue {
    /// (destination, vector), in arrival order.
    msi: Vec<(Destination, u8)>,
    /// (virtual ns, order of scheduling, what), earliest first.
    timed: BinaryHeap<Reverse<(u64, u64, Signal)>>,
    seq: u64,
    /// MSIs pushed and signals scheduled so far.
    changes: u64,
}

impl InterruptQueue {
    /// A fixed MSI to `dest`, taken at the next instruction boundary.
    pub fn push_msi(&mut self, dest: Destination, vector: u8) {
        self.msi.push((dest, vector));
        self.changes += 1;
    }

    /// The oldest MSI whose destination `accepts` takes (an APIC's
    /// [`crate::apic::Apic::accepts`]), removed from the queue.
    pub fn pop_msi_for(&mut self, accepts: impl Fn(Destination) -> bool) -> Option<u8> {
        let i = self.msi.iter().position(|&(dest, _)| accepts(dest))?;
        Some(self.msi.remove(i).1)
    }

    /// Whether any MSI waits.
    #[inline(always)]
    pub fn has_msi(&self) -> bool {
        !self.msi.is_empty()
    }

    /// Queues `signal` for `at_ns` of guest time, after anything already
    /// queued for the same moment.
    pub fn schedule(&mut self, at_ns: u64, signal: Signal) {
        let seq = self.seq;
        self.seq += 1;
        self.changes += 1;
        self.timed.push(Reverse((at_ns, seq, signal)));
    }

    /// How many MSIs and signals have been queued: a change means the
    /// horizon and the MSI check must be looked at again (a device read
    /// during a chain of blocks may queue one).
    #[inline(always)]
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The earliest scheduled signal due by `now_ns`, removed.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Signal> {
        match self.timed.peek() {
            Some(Reverse((at, _, _))) if *at <= now_ns => self.timed.pop().map(|Reverse((_, _, s))| s),
            _ => None,
        }
    }

    /// When the earliest scheduled signal is due (virtual ns).
    #[inline(always)]
    pub fn next_at(&self) -> Option<u64> {
        self.timed.peek().map(|r| (r.0).0)
    }
}

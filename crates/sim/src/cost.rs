//! The simulator's time: the core clock, the per-instruction cycle table
//! (CPI), and the prices of exits and handler work drawn from the hardware
//! profile. The CPI table and event-delivery cost here are **modelled**
//! (the reasoning is beside each); everything a profile carries is sourced
//! there.

use crate::profile::{Draw, Figure, Profile};
use exitlab_arch::ExitReason;
use exitlab_hv::HandlerWork;
use exitlab_x86::{Kind, Op, Opnd};

/// The local APIC timer counts at 1 GHz, as KVM's emulated APIC does
/// (APIC_BUS_CYCLE_NS = 1), so the same count means the same time on both
/// backends.
pub const APIC_BUS_HZ: u64 = 1_000_000_000;

/// The core (and TSC) frequency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub hz: u64,
}

impl Clock {
    /// Virtual nanoseconds for `cycles` core cycles (saturating at
    /// u64::MAX: a clock slower than 1 GHz stretches the last cycles past
    /// what a u64 of nanoseconds holds).
    pub fn ns(&self, cycles: u64) -> u64 {
        saturate(cycles as u128 * 1_000_000_000 / self.hz.max(1) as u128)
    }

    /// Core cycles for `ns` virtual nanoseconds (saturating at u64::MAX).
    pub fn cycles(&self, ns: u64) -> u64 {
        saturate(ns as u128 * self.hz as u128 / 1_000_000_000)
    }

    /// The first cycle at which at least `ns` virtual nanoseconds have
    /// passed (so `ns(cycles_ceil(t)) >= t`; saturating at u64::MAX).
    pub fn cycles_ceil(&self, ns: u64) -> u64 {
        saturate((ns as u128 * self.hz as u128).div_ceil(1_000_000_000))
    }
}

/// A u128 count as a u64, u64::MAX where it does not fit: a moment past
/// the end of the clock never comes, rather than wrapping to an early one.
fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A profile's prices, ready for the hot paths.
#[derive(Clone, Debug)]
pub struct Costs {
    pub clock: Clock,
    /// Cycles per hardware paging-structure read.
    pub walk_step: u64,
    exits: Vec<Figure>,
    device_op: Figure,
    decode_byte: Figure,
    page_walk: Figure,
    byte_copied: Figure,
    draw: Draw,
}

impl Costs {
    pub fn new(p: &Profile, seed: u64) -> Costs {
        let max = ExitReason::ALL.iter().map(|r| r.number()).max().unwrap_or(0) as usize;
        let mut exits = vec![p.exit.round_trip.clone(); max + 1];
        for r in ExitReason::ALL {
            exits[r.number() as usize] = p.exit_cost(*r).clone();
        }
        Costs {
            clock: Clock { hz: p.hz() },
            walk_step: p.paging.walk_step.mean() as u64,
            exits,
            device_op: p.handler.device_op.clone(),
            decode_byte: p.handler.decode_byte.clone(),
            page_walk: p.handler.page_walk.clone(),
            byte_copied: p.handler.byte_copied.clone(),
            draw: Draw::new(seed),
        }
    }

    /// Cycles for one exit of `reason` whose handler did `work`: the round
    /// trip plus each unit of work, every figure drawn from its
    /// distribution.
    pub fn exit(&mut self, reason: ExitReason, work: &HandlerWork) -> u64 {
        let d = &mut self.draw;
        let mut c = d.sample(&self.exits[reason.number() as usize]);
        for (n, f) in [
            (work.device_ops, &self.device_op),
            (work.bytes_decoded, &self.decode_byte),
            (work.page_walks, &self.page_walk),
            (work.bytes_copied, &self.byte_copied),
        ] {
            if n > 0 {
                c = c.saturating_add(u64::from(n).saturating_mul(d.sample(f)));
            }
        }
        c
    }
}

/// Modelled cycles for one execution of `op` (CPI table). Register ALU ops
/// cost 1, a memory operand adds 1 (an L1 hit), multiplies 3, divides 26
/// (64-bit 40): the orders of magnitude of Intel's optimization manual
/// latency tables, not any one part's figures. A string instruction's
/// implicit operands are in its base price (per element). The simulator
/// prices ops where it builds decoded blocks.
pub fn cycles(op: &Op) -> u16 {
    use Kind::*;
    let string = matches!(op.kind, Movs | Stos | Lods | Cmps | Scas | Ins | Outs);
    let mem = (!string && [op.a, op.b, op.c].iter().any(|o| matches!(o, Opnd::Mem(_)))) as u16;
    let base = match op.kind {
        Imul1 | Imul2 | Imul3 | Mul => 3,
        Div | Idiv => {
            if op.size == 8 {
                40
            } else {
                26
            }
        }
        Call | Ret | Push | Pop | Pushf | Popf | Leave => 2,
        Xchg | Xadd | Cmpxchg if mem == 1 => 18, // locked read-modify-write
        Movs | Stos | Lods | Cmps | Scas => 2,
        Cpuid => 100,
        Rdtsc | Rdtscp => 20,
        Iretq | Int | Int3 => 40,
        MovToCr | Lidt | Lgdt | Invlpg => 20,
        _ => 1,
    };
    base + mem
}

/// Cycles to deliver an interrupt or exception through the IDT (modelled:
/// a few stack writes and a descriptor read, tens of cycles).
pub const EVENT_DELIVERY: u64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    /// Times past the end of a u64 saturate: a wrapped value would be an
    /// early moment (a limit reached before the first instruction).
    #[test]
    fn clock_conversions_saturate_instead_of_wrapping() {
        let fast = Clock { hz: 100_000_000_000 };
        assert_eq!(fast.cycles(u64::MAX), u64::MAX);
        assert_eq!(fast.cycles_ceil(u64::MAX), u64::MAX);
        assert_eq!(fast.cycles(9_223_372_036_854_775_807), u64::MAX);
        assert_eq!(fast.cycles(1_000_000_000), 100_000_000_000);
        let slow = Clock { hz: 1_000_000 };
        assert_eq!(slow.ns(u64::MAX), u64::MAX);
        assert_eq!(slow.ns(1_000_000), 1_000_000_000);
    }

    #[test]
    fn an_exit_with_the_most_work_costs_at_most_u64_max() {
        let mut p = Profile::load("modern").unwrap();
        p.handler.byte_copied = Figure { value: Some(1e6), mean: None, spread: None, source: "t".into() };
        p.exit.round_trip = Figure { value: Some(1e8), mean: None, spread: None, source: "t".into() };
        p.exit.reason.clear();
        let mut c = Costs::new(&p, 0);
        let most = HandlerWork { bytes_copied: u32::MAX, ..HandlerWork::default() };
        // The largest figures a profile may state, times the most work an
        // exit can report, stay exact: far from the end of a u64.
        assert_eq!(c.exit(ExitReason::IoInstruction, &most), 100_000_000 + 1_000_000 * u64::from(u32::MAX));
    }
}

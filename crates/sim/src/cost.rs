//! The simulator's time: the core clock, the per-instruction cycle table
//! (CPI), and the prices of exits and handler work drawn from the hardware
//! profile. The CPI table and event-delivery cost here are **modelled**
//! (the reasoning is beside each); everything a profile carries is sourced
//! there. A calibrated profile (`exitlab calibrate`) may price instructions
//! per privilege level, event delivery and the wake-up from HLT instead:
//! [`Costs::instruction`], [`Costs::event_delivery`] and
//! [`Costs::halt_until`] are the only places those figures enter the CPU.

use crate::profile::{Draw, Figure, Profile};
use exitlab_arch::ExitReason;
use exitlab_hv::HandlerWork;
use exitlab_x86::fp::cost as fp_cost;
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
    /// Per privilege level, the profile's price of one instruction in
    /// 1/65536 cycle (`None`: the CPI table's).
    per_cpl: [Option<u64>; 4],
    /// The fraction of a cycle fixed-point prices have not yet charged.
    carry: u64,
    delivery: Option<Figure>,
    halt_wakeup: Option<Figure>,
    draw: Draw,
}

/// Fixed-point scale of per-instruction prices: a fractional figure (a
/// native ring-3 instruction costs about one cycle) stays exact on average.
const PRICE_ONE: f64 = 65536.0;

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
            per_cpl: [
                p.instruction.ring0.as_ref().map(|f| (f.mean() * PRICE_ONE).round() as u64),
                None,
                None,
                p.instruction.ring3.as_ref().map(|f| (f.mean() * PRICE_ONE).round() as u64),
            ],
            carry: 0,
            delivery: p.interrupt.delivery.clone(),
            halt_wakeup: p.interrupt.halt_wakeup.clone(),
            draw: Draw::new(seed),
        }
    }

    /// Cycles for one instruction retired at privilege level `cpl` whose
    /// CPI-table cost is `modelled`: the profile's figure for that level
    /// where it has one, else `modelled`. The simulator's one hook for
    /// per-level prices: whatever retires an instruction calls it.
    #[inline(always)]
    pub fn instruction(&mut self, modelled: u16, cpl: u8) -> u64 {
        match self.per_cpl[usize::from(cpl & 3)] {
            None => u64::from(modelled),
            Some(price) => {
                let t = self.carry + price;
                self.carry = t & 0xffff;
                t >> 16
            }
        }
    }

    /// Cycles for `n` instructions retired in a row at level `cpl` whose
    /// CPI-table costs add up to `modelled`: exactly what `n` calls of
    /// [`Costs::instruction`] charge together (the fixed-point carry
    /// telescopes), so a block can be charged once at its end.
    #[inline(always)]
    pub fn instructions(&mut self, modelled: u64, n: u64, cpl: u8) -> u64 {
        match self.per_cpl[usize::from(cpl & 3)] {
            None => modelled,
            Some(price) => {
                let t = self.carry + n * price;
                self.carry = t & 0xffff;
                t >> 16
            }
        }
    }

    /// Cycles to deliver one interrupt or exception through the IDT: the
    /// profile's figure, drawn, or the modelled [`EVENT_DELIVERY`].
    pub fn event_delivery(&mut self) -> u64 {
        match &self.delivery {
            Some(f) => self.draw.sample(f),
            None => EVENT_DELIVERY,
        }
    }

    /// The cycle at which a vCPU halted at `now` runs again when its next
    /// event comes at `event`: at the event, plus the profile's wake-up
    /// from HLT when it had to wait for it.
    pub fn halt_until(&mut self, now: u64, event: u64) -> u64 {
        match &self.halt_wakeup {
            Some(f) if event > now => event.saturating_add(self.draw.sample(f)),
            _ => now.max(event),
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
/// latency tables, not any one part's figures. Segment-register loads
/// cost 12 and far transfers and fast system calls 40 (a descriptor read
/// and its checks, the order of an IRET's). A string instruction's
/// implicit operands are in its base price (per element). x87, MMX, SSE
/// and state-save instructions cost their class's latency from
/// exitlab-x86's sourced table (`fp::cost`). The simulator prices ops
/// where it builds decoded blocks.
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
        Call | Ret | Push | Pop | Pushf | Popf | Leave | PushSeg | Enter => 2,
        Pusha | Popa => 8,
        Xchg | Xadd | Cmpxchg | Cmpxchg8b if mem == 1 => 18, // locked read-modify-write
        Crc32 => fp_cost::latency(fp_cost::Class::Crc32).cycles as u16,
        Sse(v) => fp_cost::latency(v.cost_class()).cycles as u16,
        X87(x) => fp_cost::latency(x.cost_class()).cycles as u16,
        FpState(_) => fp_cost::latency(fp_cost::Class::StateSave).cycles as u16,
        Movs | Stos | Lods | Cmps | Scas => 2,
        Cpuid => 100,
        Rdtsc | Rdtscp => 20,
        Iret | Int | Int3 | Into | Int1 => 40,
        JmpFar | CallFar | RetFar | Syscall | Sysret | Sysenter | Sysexit => 40,
        MovToSeg | PopSeg | LoadFar => 12,
        MovToCr | Lidt | Lgdt | Invlpg | Ltr | Lldt | Lmsw => 20,
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

    fn fixed(v: f64) -> Option<Figure> {
        Some(Figure { value: Some(v), mean: None, spread: None, source: "t".into() })
    }

    #[test]
    fn without_calibrated_figures_the_modelled_prices_stand() {
        let mut c = Costs::new(&Profile::load("modern").unwrap(), 0);
        assert_eq!((c.instruction(3, 0), c.instruction(7, 3)), (3, 7));
        assert_eq!(c.event_delivery(), EVENT_DELIVERY);
        assert_eq!((c.halt_until(100, 500), c.halt_until(500, 100)), (500, 500));
    }

    #[test]
    fn per_level_prices_replace_the_table_and_keep_fractions() {
        let mut p = Profile::load("modern").unwrap();
        p.instruction.ring0 = fixed(700.0);
        p.instruction.ring3 = fixed(0.25);
        p.interrupt.delivery = fixed(900.0);
        p.interrupt.halt_wakeup = fixed(40.0);
        let mut c = Costs::new(&p, 0);
        assert_eq!(c.instruction(3, 0), 700, "ring 0 ignores the CPI table");
        let ring3: u64 = (0..8).map(|_| c.instruction(40, 3)).sum();
        assert_eq!(ring3, 2, "eight quarter-cycle instructions are two cycles");
        assert_eq!(c.instruction(5, 1), 5, "a level without a figure keeps the table");
        assert_eq!(c.event_delivery(), 900);
        assert_eq!(c.halt_until(100, 500), 540, "a halt that waits pays the wake-up");
        assert_eq!(c.halt_until(500, 100), 500, "an event already due wakes nothing");
    }

    /// A block charged once at its end pays what its instructions charged
    /// one by one would, carry included, at every level.
    #[test]
    fn a_block_charged_at_once_pays_what_its_instructions_do() {
        let mut p = Profile::load("modern").unwrap();
        p.instruction.ring0 = fixed(1.37);
        p.instruction.ring3 = fixed(0.3);
        let (mut one, mut all) = (Costs::new(&p, 0), Costs::new(&p, 0));
        for (n, cpl) in [(3u64, 3u8), (7, 0), (1, 3), (32, 3), (5, 1), (2, 0)] {
            let costs: Vec<u16> = (0..n).map(|i| (i % 4 + 1) as u16).collect();
            let each: u64 = costs.iter().map(|&k| one.instruction(k, cpl)).sum();
            let sum = costs.iter().map(|&k| u64::from(k)).sum();
            assert_eq!(all.instructions(sum, n, cpl), each, "{n} at CPL {cpl}");
        }
        assert_eq!(one.carry, all.carry);
    }

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

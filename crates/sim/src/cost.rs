//! The simulator's time model until hardware profiles land: a cycle cost
//! per op kind, a clock frequency, and the cost of an exit round trip.
//! Every figure here is **modelled**: a round, defensible number, not a
//! measurement; the reasoning is beside each one. Hardware profiles
//! (docs/DESIGN.md, "Time and cost") replace them with sourced figures.

use crate::cpu::op::{Kind, Op, Opnd};

/// Guest clock: TSC and core at 2 GHz (modelled: a typical server base
/// clock; only ratios between costs matter to the experiments).
pub const CPU_HZ: u64 = 2_000_000_000;

/// The local APIC timer counts at 1 GHz, as KVM's emulated APIC does
/// (APIC_BUS_CYCLE_NS = 1), so the same count means the same time on both
/// backends.
pub const APIC_BUS_HZ: u64 = 1_000_000_000;

/// Virtual nanoseconds for `cycles` core cycles.
pub fn cycles_to_ns(cycles: u64) -> u64 {
    (cycles as u128 * 1_000_000_000 / CPU_HZ as u128) as u64
}

/// Core cycles for `ns` virtual nanoseconds.
pub fn ns_to_cycles(ns: u64) -> u64 {
    (ns as u128 * CPU_HZ as u128 / 1_000_000_000) as u64
}

/// Modelled cycles for one execution of `op` (CPI table). Register ALU ops
/// cost 1, a memory operand adds 1 (an L1 hit), multiplies 3, divides 26
/// (64-bit 40): the orders of magnitude of Intel's optimization manual
/// latency tables, not any one part's figures.
pub fn cycles(op: &Op) -> u16 {
    use Kind::*;
    let mem = [op.a, op.b, op.c].iter().any(|o| matches!(o, Opnd::Mem(_))) as u16;
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

/// Modelled cycles for one exit round trip (VM exit, the handler's
/// dispatch, VM entry). 1,000 cycles sits in SOURCES.md's Sandy Bridge to
/// Skylake band (600-1,000 hardware) and under the ~1,030-1,100 cycles a
/// full in-kernel KVM CPUID exit measures (SOURCES.md section 1, verified).
pub const EXIT_ROUND_TRIP: u64 = 1_000;

/// Modelled cycles per device register operation in a VMM handler.
pub const DEVICE_OP: u64 = 200;

/// Cycles to deliver an interrupt or exception through the IDT.
pub const EVENT_DELIVERY: u64 = 60;

/// Cycles of one guest page-table walk step (one paging-structure read).
pub const WALK_STEP: u64 = 4;

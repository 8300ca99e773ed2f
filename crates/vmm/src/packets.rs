//! Per-packet figures of the ping-pong workloads (experiment E2): the
//! round trips the guest measured itself (RDTSC at send and at receive,
//! one u64 per echo in a log in its memory; the machine description names
//! the log and which entries are the measured ones), and the measure
//! phase's exits,
//! VMM handler time and device interrupts divided by the packets.

use crate::account::PhaseStats;
use exitlab_guest::machine::GuestLog;
use exitlab_hv::Vm;
use serde::Serialize;

/// What one measured packet cost, on average, and how its round trips
/// spread.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PacketStats {
    pub packets: u64,
    pub exits_per_packet: f64,
    /// The same by exit reason (perf-kvm-stat names).
    pub exits_per_packet_by_reason: std::collections::BTreeMap<&'static str, f64>,
    pub handler_ns_per_packet: f64,
    /// Device-to-guest interrupts (what coalescing saves).
    pub interrupts_per_packet: f64,
    pub latency_ns: Summary,
}

impl PacketStats {
    /// From the measure phase and the logged round trips; `None` for a
    /// run that logged none.
    pub fn of(measure: &PhaseStats, round_trips_ns: &[u64]) -> Option<PacketStats> {
        if round_trips_ns.is_empty() {
            return None;
        }
        let n = round_trips_ns.len() as f64;
        let interrupts: u64 =
            measure.counters.iter().filter(|(k, _)| k.ends_with(".interrupts")).map(|(_, v)| *v).sum();
        Some(PacketStats {
            packets: round_trips_ns.len() as u64,
            exits_per_packet: measure.total_exits() as f64 / n,
            exits_per_packet_by_reason: measure.reasons.iter().map(|(r, s)| (r.name(), s.samples as f64 / n)).collect(),
            handler_ns_per_packet: measure.total_handle_ns() as f64 / n,
            interrupts_per_packet: interrupts as f64 / n,
            latency_ns: Summary::of(round_trips_ns),
        })
    }
}

/// Reads the measured round trips from `log`, converted from TSC ticks at
/// `tsc_hz`; empty when the guest logs none or the TSC rate is unknown.
pub fn round_trips<V: Vm>(vm: &V, log: Option<&GuestLog>, tsc_hz: u64) -> Vec<u64> {
    let Some(log) = log.filter(|_| tsc_hz > 0) else { return Vec::new() };
    let log = measured::<V, 1>(vm, log);
    log.into_iter().map(|[ticks]| ns(ticks, tsc_hz)).collect()
}

/// Interrupt latencies a device-irq guest logged: for each measured
/// completion, from the device's completion time to the moment the driver
/// took it (its TSC at `tsc_hz`). `anchor` ties the two clocks: a guest TSC
/// value and the device clock's ns at the same moment ((0, 0) on the
/// simulator, where both are its virtual clock; read at the end of the run
/// on KVM, see [`tsc_anchor`]); empty without one.
pub fn irq_latencies<V: Vm>(vm: &V, log: Option<&GuestLog>, tsc_hz: u64, anchor: Option<(u64, u64)>) -> Vec<u64> {
    let (Some(log), Some((tsc0, ns0))) = (log, anchor.filter(|_| tsc_hz > 0)) else { return Vec::new() };
    let log = measured::<V, 2>(vm, log);
    log.into_iter()
        .map(|[taken, done_ns]| {
            // The device clock's ns when the driver read `taken`.
            let before = i128::from(tsc0) - i128::from(taken);
            let at = i128::from(ns0) - before * 1_000_000_000 / i128::from(tsc_hz);
            u64::try_from(at - i128::from(done_ns)).unwrap_or(0)
        })
        .collect()
}

/// The guest's TSC (IA32_TSC, read through the backend) and the backend's
/// clock at the same moment: the midpoint of two clock reads around the
/// MSR read. For a backend whose TSC and clock are not one clock (KVM).
pub fn tsc_anchor<C: exitlab_hv::Vcpu + ?Sized>(vcpu: &mut C) -> Option<(u64, u64)> {
    let before = vcpu.now_ns();
    let tsc = vcpu.read_msr(exitlab_arch::bits::msr::IA32_TSC).ok()??;
    let after = vcpu.now_ns();
    Some((tsc, before + (after - before) / 2))
}

/// The measured entries of a log in guest memory, `WORDS` u64s each.
/// Stops where guest memory ends.
fn measured<V: Vm, const WORDS: usize>(vm: &V, log: &GuestLog) -> Vec<[u64; WORDS]> {
    let mut out = Vec::new();
    for i in log.first..log.first.saturating_add(log.count) {
        let mut entry = [0u64; WORDS];
        for (w, word) in entry.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            let word_index = (WORDS as u64).checked_mul(i).and_then(|x| x.checked_add(w as u64));
            let at = word_index.and_then(|x| x.checked_mul(8)).and_then(|o| log.gpa.checked_add(o));
            if at.is_none_or(|at| vm.read_memory(at, &mut b).is_err()) {
                return out;
            }
            *word = u64::from_le_bytes(b);
        }
        out.push(entry);
    }
    out
}

/// TSC ticks at `tsc_hz` as nanoseconds.
fn ns(ticks: u64, tsc_hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(tsc_hz)) as u64
}

/// The distribution of round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub stddev: f64,
    pub p50: u64,
    pub p99: u64,
}

impl Summary {
    pub fn of(ns: &[u64]) -> Summary {
        if ns.is_empty() {
            return Summary::default();
        }
        let n = ns.len() as f64;
        let mean = ns.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = ns.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let mut sorted = ns.to_vec();
        sorted.sort_unstable();
        // Nearest-rank percentiles.
        let rank = |p: f64| sorted[((p * n).ceil() as usize).clamp(1, sorted.len()) - 1];
        Summary { mean, stddev: var.sqrt(), p50: rank(0.50), p99: rank(0.99) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank_percentiles() {
        let ns: Vec<u64> = (1..=100).collect();
        let s = Summary::of(&ns);
        assert_eq!((s.p50, s.p99), (50, 99));
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!((s.stddev - 28.866_070_047_722_12).abs() < 1e-9);
        assert_eq!(Summary::of(&[7]), Summary { mean: 7.0, stddev: 0.0, p50: 7, p99: 7 });
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}

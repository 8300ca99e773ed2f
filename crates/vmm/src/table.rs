//! The two forms a phase's statistics are shown in: the table hypervisor
//! engineers already read (`perf kvm stat report` columns) and JSON with
//! the same numbers.
//!
//! Time follows perf kvm stat's meaning: an event runs from the exit to the
//! next VM entry (its kvm_exit to kvm_entry tracepoints), so a HLT carries
//! the time the vCPU then stays halted and dominates Time% on an idle
//! guest, as in `perf kvm stat report` (Firecracker issue 3043 shows one).
//! The VMM's own handling (exit to resume) is the last column of the table
//! and the `handling` object of the JSON.

use crate::account::{PhaseStats, DEVICE_COUNTER_PREFIX, GUEST_COUNTER_PREFIX};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// What to render, and the context to title it with.
pub struct StatView<'a> {
    pub workload: &'a str,
    pub backend: &'a str,
    /// `all`, or a phase name.
    pub phase: &'a str,
    pub stats: &'a PhaseStats,
    /// Whether times are the backend's virtual clock (sim) or host time.
    pub virtual_time: bool,
}

fn us(ns: u64) -> String {
    format!("{:.2}us", ns as f64 / 1000.0)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Relative standard error of the mean, as perf prints it after "+-".
fn rel_stderr(h: &hdrhistogram::Histogram<u64>) -> f64 {
    let n = h.len();
    let mean = h.mean();
    if n < 2 || mean == 0.0 {
        0.0
    } else {
        h.stdev() / (n as f64).sqrt() / mean * 100.0
    }
}

/// The `perf kvm stat report` table (time: exit to next entry), with the
/// VMM's handling time beside it, then per-port and per-region counts and
/// the backend's counters.
pub fn render_table(v: &StatView) -> String {
    let s = v.stats;
    let total = s.total_exits();
    let total_ns = s.total_to_entry_ns();
    let mut out = String::new();
    let clock = if v.virtual_time { "virtual time" } else { "host time" };
    let _ = writeln!(
        out,
        "Analyze events for all VMs, all VCPUs (workload {}, backend {}, phase {}, {clock}):",
        v.workload, v.backend, v.phase
    );
    let _ = writeln!(
        out,
        "Time is exit to next VM entry, as perf kvm stat reports it (HLT includes the time halted); Handling is exit to the VMM's resume.\n"
    );
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>9} {:>9} {:>11} {:>11} {:>16}         {:>11}",
        "VM-EXIT", "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time", "Handling"
    );
    let mut rows: Vec<_> = s.reasons.iter().collect();
    rows.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.cmp(b.0)));
    for (reason, r) in rows {
        let t = &r.to_entry;
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>8.2}% {:>8.2}% {:>11} {:>11} {:>11} ( +- {:5.2}% ) {:>11}",
            reason.name(),
            r.samples,
            pct(r.samples, total),
            pct(t.total_ns, total_ns),
            us(t.min_ns),
            us(t.max_ns),
            us(t.mean_ns(r.samples).round() as u64),
            rel_stderr(&t.histogram),
            us(r.mean_ns().round() as u64),
        );
    }
    let _ = writeln!(
        out,
        "\nTotal Samples:{total}, Total events handled time:{:.2}us (the VMM's handling alone: {:.2}us).",
        total_ns as f64 / 1000.0,
        s.total_handle_ns() as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "Phase length {}; time inside the backend's run call {}.",
        us(s.end_ns.saturating_sub(s.start_ns)),
        us(s.total_run_ns())
    );

    let worked: Vec<_> = s.reasons.iter().filter(|(_, r)| r.work != Default::default()).collect();
    if !worked.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<20} {:>14} {:>14} {:>14} {:>14}",
            "HANDLER WORK/EXIT", "decoded bytes", "page walks", "device ops", "bytes copied"
        );
        for (reason, r) in worked {
            let per = |v: u32| v as f64 / r.samples.max(1) as f64;
            let _ = writeln!(
                out,
                "{:<20} {:>14.2} {:>14.2} {:>14.2} {:>14.2}",
                reason.name(),
                per(r.work.bytes_decoded),
                per(r.work.page_walks),
                per(r.work.device_ops),
                per(r.work.bytes_copied)
            );
        }
    }
    if !s.ports.is_empty() {
        let _ = writeln!(out, "\n{:<8} {:<14} {:>10} {:>11}", "PORT", "DEVICE", "Exits", "Avg time");
        for (port, t) in &s.ports {
            let avg = t.total_ns / t.exits.max(1);
            let _ = writeln!(out, "{:<8} {:<14} {:>10} {:>11}", format!("{port:#x}"), t.device, t.exits, us(avg));
        }
    }
    if !s.mmio.is_empty() {
        let _ = writeln!(out, "\n{:<23} {:>10} {:>11}", "MMIO REGION", "Exits", "Avg time");
        for (region, t) in &s.mmio {
            let avg = t.total_ns / t.exits.max(1);
            let _ = writeln!(out, "{:<23} {:>10} {:>11}", region, t.exits, us(avg));
        }
    }
    let nonzero: Vec<_> = backend_counters(s).filter(|(_, &v)| v > 0).collect();
    if !nonzero.is_empty() {
        let _ = writeln!(out, "\nBackend counters ({} binary stats), increase over the phase:", v.backend);
        for (name, value) in nonzero {
            let _ = writeln!(out, "  {name:<28} {value:>12}");
        }
    }
    let devices: Vec<_> = prefixed(s, DEVICE_COUNTER_PREFIX).filter(|(_, &v)| v > 0).collect();
    if !devices.is_empty() {
        let _ = writeln!(out, "\nDevice counters (the VMM's device models), increase over the phase:");
        for (name, value) in devices {
            let _ = writeln!(out, "  {name:<28} {value:>12}");
        }
    }
    let guest: Vec<_> = prefixed(s, GUEST_COUNTER_PREFIX).collect();
    if !guest.is_empty() {
        let _ = writeln!(out, "\nGuest counters (kept by the guest), increase over the phase:");
        for (name, value) in guest {
            let _ = writeln!(out, "  {name:<28} {value:>12}");
        }
    }
    out
}

fn backend_counters(s: &PhaseStats) -> impl Iterator<Item = (&String, &u64)> {
    s.counters.iter().filter(|(k, _)| !k.starts_with(GUEST_COUNTER_PREFIX) && !k.starts_with(DEVICE_COUNTER_PREFIX))
}

/// The guest's or the devices' counters, without their prefix.
fn prefixed<'a>(s: &'a PhaseStats, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a u64)> {
    s.counters.iter().filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v)))
}

/// The same numbers as [`render_table`], as JSON: each exit's `time_pct`,
/// `min_ns`, `max_ns`, `avg_ns`, `p50_ns`, `p99_ns` and `total_ns` are exit
/// to next entry (perf kvm stat's); `handling` has the same for exit to
/// resume.
pub fn render_json(v: &StatView) -> Value {
    let s = v.stats;
    let total = s.total_exits();
    let total_ns = s.total_to_entry_ns();
    let handled_ns = s.total_handle_ns();
    let mut rows: Vec<_> = s.reasons.iter().collect();
    rows.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.cmp(b.0)));
    let exits: Vec<Value> = rows
        .into_iter()
        .map(|(reason, r)| {
            let t = &r.to_entry;
            json!({
                "reason": reason.name(),
                "number": reason.number(),
                "samples": r.samples,
                "samples_pct": pct(r.samples, total),
                "time_pct": pct(t.total_ns, total_ns),
                "min_ns": t.min_ns,
                "max_ns": t.max_ns,
                "avg_ns": t.mean_ns(r.samples),
                "p50_ns": t.histogram.value_at_quantile(0.5),
                "p99_ns": t.histogram.value_at_quantile(0.99),
                "total_ns": t.total_ns,
                "handling": {
                    "time_pct": pct(r.total_ns, handled_ns),
                    "min_ns": r.min_ns,
                    "max_ns": r.max_ns,
                    "avg_ns": r.mean_ns(),
                    "p50_ns": r.histogram.value_at_quantile(0.5),
                    "p99_ns": r.histogram.value_at_quantile(0.99),
                    "total_ns": r.total_ns,
                },
                "run_ns": r.run_ns,
                "handler_work": {
                    "device_ops": r.work.device_ops,
                    "bytes_decoded": r.work.bytes_decoded,
                    "page_walks": r.work.page_walks,
                    "bytes_copied": r.work.bytes_copied,
                },
            })
        })
        .collect();
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|(p, t)| json!({"port": p, "device": t.device, "exits": t.exits, "total_ns": t.total_ns}))
        .collect();
    let mmio: Vec<Value> =
        s.mmio.iter().map(|(r, t)| json!({"region": r, "exits": t.exits, "total_ns": t.total_ns})).collect();
    let counters: Map<String, Value> = backend_counters(s).map(|(k, v)| (k.clone(), json!(v))).collect();
    let guest: Map<String, Value> = prefixed(s, GUEST_COUNTER_PREFIX).map(|(k, v)| (k.to_string(), json!(v))).collect();
    let devices: Map<String, Value> =
        prefixed(s, DEVICE_COUNTER_PREFIX).map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "workload": v.workload,
        "backend": v.backend,
        "phase": v.phase,
        "virtual_time": v.virtual_time,
        "time": "exit to next VM entry, as perf kvm stat reports it (HLT includes the time halted); `handling`: exit to the VMM's resume",
        "total_samples": total,
        "total_time_ns": total_ns,
        "total_handling_ns": handled_ns,
        "phase_ns": s.end_ns.saturating_sub(s.start_ns),
        "run_ns": s.total_run_ns(),
        "exits": exits,
        "ports": ports,
        "mmio": mmio,
        "backend_counters": counters,
        "device_counters": devices,
        "guest_counters": guest,
    })
}

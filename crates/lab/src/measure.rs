//! Running a scenario: every point of its sweep, in parallel, each on a
//! fresh machine; the measure phase's exits become the point's metrics.

use crate::backend::{BackendKind, BackendSpec};
use crate::scenario::{Scenario, HOST_AXES, RUN_AXES};
use exitlab_guest::layout::Phase;
use exitlab_sim::profile::Features;
use exitlab_vmm::packets::{PacketStats, Summary};
use exitlab_vmm::{Outcome, PhaseStats, RunOptions, RunReport, DEVICE_COUNTER_PREFIX, GUEST_COUNTER_PREFIX};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::IsTerminal;

/// One point's outcome: its axis values and metrics, or why the point
/// could not run ("n/a (...)").
#[derive(Clone, Debug, PartialEq)]
pub struct PointResult {
    pub axes: Vec<(String, String)>,
    pub metrics: BTreeMap<String, f64>,
    pub na: Option<String>,
}

impl PointResult {
    pub fn axis(&self, name: &str) -> Option<&str> {
        self.axes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A scenario's results, points in sweep order.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    pub scenario: Scenario,
    pub full: bool,
    pub points: Vec<PointResult>,
}

impl Results {
    /// Every metric any point reported, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.points.iter().flat_map(|p| p.metrics.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The measure phase's figures; `iterations` counts its loop (`n`, or
/// `packets`); the report brings what the guest logged (a ping-pong's
/// round trips, device-irq's interrupt latencies).
///
/// On a backend that handles exits itself (KVM), `all_exits` names its own
/// counter of every exit: `exits`, `exits_per_kiter` and `exits_per_s` then
/// count those too, so they mean the same on both backends; the
/// per-reason figures stay the exits that reached the VMM.
fn metrics(m: &PhaseStats, iterations: f64, r: &RunReport, all_exits: Option<&str>) -> BTreeMap<String, f64> {
    let guest_ns = m.end_ns.saturating_sub(m.start_ns).max(1) as f64;
    let seen = m.total_exits() as f64;
    // The backend counts the closing marker's exit in the phase before the
    // VMM sees it (see DESIGN, Phases and markers): not the phase's own.
    let exits = all_exits.and_then(|c| m.counters.get(c)).map_or(seen, |&v| v.saturating_sub(1) as f64);
    let mut out = BTreeMap::new();
    out.insert("exits".to_string(), exits);
    out.insert("guest_ns".to_string(), guest_ns);
    out.insert("exits_per_s".to_string(), exits / guest_ns * 1e9);
    out.insert("avg_exit_ns".to_string(), if seen > 0.0 { m.total_handle_ns() as f64 / seen } else { 0.0 });
    out.insert("exit_time_share".to_string(), m.total_handle_ns() as f64 / guest_ns);
    let per_kiter = 1000.0 / iterations.max(1.0);
    out.insert("exits_per_kiter".to_string(), exits * per_kiter);
    if seen > 0.0 {
        let mut w = exitlab_hv::HandlerWork::default();
        for r in m.reasons.values() {
            w.bytes_decoded += r.work.bytes_decoded;
            w.page_walks += r.work.page_walks;
            w.device_ops += r.work.device_ops;
            w.bytes_copied += r.work.bytes_copied;
        }
        for (k, v) in [
            ("bytes_decoded", w.bytes_decoded),
            ("page_walks", w.page_walks),
            ("device_ops", w.device_ops),
            ("bytes_copied", w.bytes_copied),
        ] {
            out.insert(format!("work_per_exit.{k}"), f64::from(v) / seen);
        }
    }
    for (reason, r) in &m.reasons {
        out.insert(format!("exits.{}", reason.name()), r.samples as f64);
        out.insert(format!("exits_per_s.{}", reason.name()), r.samples as f64 / guest_ns * 1e9);
        out.insert(format!("exits_per_kiter.{}", reason.name()), r.samples as f64 * per_kiter);
    }
    for (name, &v) in &m.counters {
        for (prefix, family) in [(GUEST_COUNTER_PREFIX, "guest"), (DEVICE_COUNTER_PREFIX, "device")] {
            if let Some(name) = name.strip_prefix(prefix) {
                out.insert(format!("{family}.{name}"), v as f64);
                out.insert(format!("{family}_per_kiter.{name}"), v as f64 * per_kiter);
            }
        }
    }
    // Pages a logging write monitor logged: the simulator's PML entries,
    // KVM's dirty log.
    let logged = match &r.monitor {
        Some(mon) if mon.kind == exitlab_guest::machine::MonitorKind::Pml => m.counters.get("pml_entries"),
        Some(_) => None,
        None => m.counters.get(exitlab_kvm::DIRTY_PAGES_LOGGED),
    };
    if let Some(&pages) = logged {
        out.insert("pages_logged_per_kiter".to_string(), pages as f64 * per_kiter);
    }
    if let Some(&cpu) = m.counters.get(exitlab_kvm::VCPU_THREAD_CPU_NS) {
        out.insert("vcpu_cpu_share".to_string(), cpu as f64 / guest_ns);
    }
    if !r.irq_latencies_ns.is_empty() {
        let l = Summary::of(&r.irq_latencies_ns);
        for (k, v) in [("mean", l.mean), ("stddev", l.stddev), ("p50", l.p50 as f64), ("p99", l.p99 as f64)] {
            out.insert(format!("irq_latency_ns.{k}"), v);
        }
    }
    if let Some(p) = PacketStats::of(m, &r.round_trips_ns) {
        let n = p.packets as f64;
        out.insert("packets".to_string(), n);
        out.insert("exits_per_packet".to_string(), p.exits_per_packet);
        out.insert("handler_ns_per_packet".to_string(), p.handler_ns_per_packet);
        out.insert("interrupts_per_packet".to_string(), p.interrupts_per_packet);
        let l = p.latency_ns;
        for (k, v) in [("mean", l.mean), ("stddev", l.stddev), ("p50", l.p50 as f64), ("p99", l.p99 as f64)] {
            out.insert(format!("latency_ns.{k}"), v);
        }
        for (reason, r) in &m.reasons {
            out.insert(format!("exits_per_packet.{}", reason.name()), r.samples as f64 / n);
        }
    }
    out
}

fn run_point(s: &Scenario, axes: &[(String, String)], full: bool) -> PointResult {
    let axis = |k: &str| axes.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let backend = axis("backend").unwrap_or_else(|| s.backends[0].clone());
    let profile = axis("profile").unwrap_or_else(|| "modern".to_string());
    let na = |why: String| PointResult { axes: axes.to_vec(), metrics: BTreeMap::new(), na: Some(why) };
    let w = s.workload_of(axes).expect("checked when the scenario was parsed");
    let assignments = s.assignments(axes, full);
    let params = match w.resolve(assignments.iter().map(String::as_str)) {
        Ok(p) => p,
        Err(e) => return na(e.to_string()),
    };
    let image = match w.build(&params) {
        Ok(i) => i.boot_image(),
        Err(e) => return na(e.to_string()),
    };
    let kind = BackendKind::from_name(&backend);
    if kind != Some(BackendKind::Kvm) && axes.iter().any(|(k, _)| HOST_AXES.contains(&k.as_str())) {
        return na("irqfd and ioeventfd are the VMM's KVM fast paths".into());
    }
    let spec = match kind {
        Some(BackendKind::Kvm) if axes.iter().any(|(k, _)| Features::NAMES.contains(&k.as_str())) => {
            return na("hardware features are the simulator's to turn on and off".into());
        }
        Some(BackendKind::Kvm) => BackendSpec::kvm(None),
        Some(BackendKind::Sim) => {
            let mut p = match exitlab_sim::profile::Profile::load(&profile) {
                Ok(p) => p,
                Err(e) => return na(e.0),
            };
            // Feature axes turn one hardware feature of the profile on or off.
            for (k, v) in axes {
                if Features::NAMES.contains(&k.as_str()) {
                    p.features.set(k, v == "true");
                }
            }
            BackendSpec::sim(p, s.seed)
        }
        None => return na(format!("backend `{backend}` is neither sim nor kvm")),
    };
    let report = match spec.open(image.memory_size) {
        Ok(mut vm) => {
            let fast = |k: &str| axis(k).is_none_or(|v| v == "true");
            let fast_path = exitlab_vmm::platform::FastPath { irqfd: fast("irqfd"), ioeventfd: fast("ioeventfd") };
            vm.run(&image, &RunOptions { fast_path, ..RunOptions::default() })
        }
        Err(e) if spec.kind() == BackendKind::Kvm => return na(format!("no KVM: {e}")),
        Err(e) => return na(e.to_string()),
    };
    match report {
        Ok(r) if r.outcome == (Outcome::Exited { status: 0 }) => PointResult {
            axes: axes.to_vec(),
            metrics: metrics(
                r.accountant.phase_stats(Phase::Measure),
                params.int(w.count) as f64,
                &r,
                (spec.kind() == BackendKind::Kvm).then_some("exits"),
            ),
            na: None,
        },
        Ok(r) => na(format!("the guest failed: {:?}", r.outcome)),
        Err(e) => na(e.to_string()),
    }
}

/// Runs every point of `s` (in parallel; results in sweep order). A
/// progress bar shows on a terminal.
pub fn run_scenario(s: &Scenario, full: bool) -> Results {
    run_points(s, full, s.points(full))
}

/// Runs `points` of `s` (a shard's, or all), results in their order.
pub fn run_points(s: &Scenario, full: bool, points: Vec<Vec<(String, String)>>) -> Results {
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(points.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} points {elapsed}") {
            b.set_style(style);
        }
        b.set_prefix(s.name.clone());
        b
    } else {
        ProgressBar::hidden()
    };
    let results: Vec<PointResult> = points
        .par_iter()
        .map(|axes| {
            let r = run_point(s, axes, full);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    // Machine axes read better first in tables.
    let mut results = results;
    for r in &mut results {
        r.axes.sort_by_key(|(k, _)| !RUN_AXES.contains(&k.as_str()));
    }
    Results { scenario: s.clone(), full, points: results }
}

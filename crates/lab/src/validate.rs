//! `exitlab validate`: a fixed set of workloads on the simulator with a
//! profile and on the host's KVM, side by side: the exits both see (port
//! I/O and MMIO, the kinds KVM hands to userspace), time per iteration (per
//! packet for the ping-pongs) and the simulator's error. Where the model
//! cannot follow the host, the row says why.
//!
//! The host runs as `calibrate`'s do (real-time scheduling, a wall-clock
//! limit, the median of `rounds` fresh VMs, round by round through the
//! whole set). virtio-net's notifications
//! exit to userspace on the host here (no ioeventfd): the simulator has no
//! in-kernel eventfd path, every notification is an MMIO exit there.

use crate::hostinfo::HostInfo;
use crate::probe::{run, sim_spec, HostRunner, Probe, Sample, Spread};
use exitlab_arch::ExitReason;
use exitlab_sim::profile::Profile;
use exitlab_vmm::platform::FastPath;
use exitlab_vmm::RunOptions;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// One workload of the fixed set.
struct Case {
    name: &'static str,
    workload: &'static str,
    sets: &'static [&'static str],
    /// Notifications exit to userspace on the host (no ioeventfd).
    trapped_notify: bool,
    /// Why the case runs as it does, where that is not plain: the row's
    /// note starts with it.
    why: &'static str,
}

const fn case(name: &'static str, workload: &'static str, sets: &'static [&'static str]) -> Case {
    Case { name, workload, sets, trapped_notify: false, why: "" }
}

/// The fixed set, in table order.
const CASES: &[Case] = &[
    case("pio-out", "pio-out", &["n=2000"]),
    case("mmio-write", "mmio-write", &["n=2000"]),
    case("cpuid", "cpuid", &["n=2000"]),
    case("rdmsr", "rdmsr", &["n=2000"]),
    case("hlt", "hlt", &["n=1000"]),
    case("idle tickless", "idle", &["tick_hz=0", "period_ms=10", "n=20"]),
    case("idle tick 1000 Hz", "idle", &["tick_hz=1000", "period_ms=10", "n=20"]),
    case("io-mix p=0.1", "io-mix", &["p=0.1", "n=2000"]),
    case("io-mix p=0.5", "io-mix", &["p=0.5", "n=2000"]),
    case("io-mix p=1", "io-mix", &["p=1", "n=2000"]),
    // drain=1: setup and each phase end only once every echo's interrupt
    // was taken, so the interrupt of the frame in flight at a marker (and
    // its ICR read) cannot land in the warm-up on one side and the
    // measure phase on the other.
    Case {
        why: "drain=1: setup and each phase end once every echo's interrupt was taken",
        ..case("e1000-pingpong window=1", "e1000-pingpong", &["window=1", "packets=500", "drain=1"])
    },
    Case {
        name: "virtio-pingpong window=1",
        workload: "virtio-pingpong",
        sets: &["window=1", "packets=500"],
        trapped_notify: true,
        why: "",
    },
    // depth=1: one request in flight, so each interrupt's HEAD read finds
    // exactly one completion whenever it comes. With the ring full (the
    // default), how many completions one HEAD read covers depends on how
    // late the driver runs: on a kvm_pvm host KVM's emulator runs up to
    // pvm_emul_batch (1024 here) ring-0 instructions before it looks for a
    // pending interrupt, 0.35-0.5 ms, so at 10,000/s the host's driver
    // took two completions per HEAD read and KVM merged half the
    // interrupts (IRR still set), and even at 500/s a stall of the shared
    // host now and then made one read cover two; the simulator, which
    // recognises an interrupt at the next instruction boundary and has no
    // figure for the batch, cannot follow either. The batch's wait (0.27
    // ms mean here) is in the host's time per completion and not the
    // simulator's: at 200/s it is a few percent of the 5 ms.
    Case {
        why: "depth=1: one request in flight, one completion per HEAD read (docs/CALIBRATE.md)",
        ..case("device-irq rate=200", "device-irq", &["rate=200", "depth=1", "n=100"])
    },
];

/// One row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    /// Port I/O and MMIO exits in the measure phase, each side.
    pub exits_sim: Option<u64>,
    pub exits_host: Option<u64>,
    /// Every exit the simulator's VMM handled; KVM's `exits` statistic.
    pub all_exits_sim: Option<u64>,
    pub kvm_exits: Option<u64>,
    /// Time per iteration (per packet), ns; the host's is the median.
    pub time_sim_ns: Option<f64>,
    pub time_host_ns: Option<f64>,
    pub host_spread_ns: Option<f64>,
    /// (sim - host) / host, percent.
    pub error_pct: Option<f64>,
    pub note: String,
}

/// A whole validation.
pub struct Validation {
    pub profile: String,
    pub host: HostInfo,
    pub scheduling: String,
    pub rounds: usize,
    pub workloads: Vec<Row>,
    pub median_error_pct: Option<f64>,
    pub max_error_pct: Option<f64>,
}

impl Validation {
    /// Rows with a time on both sides.
    pub fn compared(&self) -> usize {
        self.workloads.iter().filter(|r| r.error_pct.is_some()).count()
    }

    /// Rows whose exit counts are equal.
    pub fn exits_equal(&self) -> usize {
        self.workloads.iter().filter(|r| r.exits_sim.is_some() && r.exits_sim == r.exits_host).count()
    }

    /// The `--json` form: one object with a `workloads` array.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .workloads
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "exits_sim": r.exits_sim,
                    "exits_host": r.exits_host,
                    "exits_equal": r.exits_sim.is_some() && r.exits_sim == r.exits_host,
                    "all_exits_sim": r.all_exits_sim,
                    "kvm_exits": r.kvm_exits,
                    "time_sim_ns": r.time_sim_ns,
                    "time_host_ns": r.time_host_ns,
                    "host_spread_ns": r.host_spread_ns,
                    "error_pct": r.error_pct,
                    "note": r.note,
                })
            })
            .collect();
        json!({
            "profile": self.profile,
            "host": { "cpu": self.host.cpu, "kernel": self.host.kernel, "kvm": self.host.kvm, "date": self.host.date },
            "scheduling": self.scheduling,
            "rounds": self.rounds,
            "workloads": rows,
            "median_error_pct": self.median_error_pct,
            "max_error_pct": self.max_error_pct,
        })
    }
}

/// Per iteration on each side: interrupts delivered to the guest (the
/// simulator's `interrupts`, KVM's `irq_injections`) and HLTs (the
/// simulator's HLT exits, KVM's `halt_exits`).
fn interrupts_and_halts(sim: &Sample, host: &Sample) -> [(f64, f64); 2] {
    let sim_halts = sim.handled.get(&ExitReason::Hlt).map_or(0, |(n, _)| *n) as f64 / sim.iterations as f64;
    [
        (sim.per_iteration("interrupts"), host.per_iteration("irq_injections")),
        (sim_halts, host.per_iteration("halt_exits")),
    ]
}

/// The row's note: what the simulator's VMM handles that KVM keeps in the
/// kernel, the host's device handling the profile does not price, and
/// where the two differ in what the guest did. `op_ns`: the profile's
/// device operation.
fn note(sim: &Sample, host: &Sample, op_ns: f64) -> String {
    let mut parts = Vec::new();
    let own: Vec<String> = sim
        .handled
        .iter()
        .filter(|(r, _)| !matches!(r, ExitReason::IoInstruction | ExitReason::EptMisconfig | ExitReason::EptViolation))
        .map(|(r, (n, _))| format!("{n} {}", r.name()))
        .collect();
    if !own.is_empty() {
        parts.push(format!(
            "sim's VMM also handles {} (KVM: in the kernel, exits statistic {})",
            own.join(", "),
            host.all_exits
        ));
    }
    let [(si, hi), (sh, hh)] = interrupts_and_halts(sim, host);
    let apart = |a: f64, b: f64| (a - b).abs() > 0.02 * a.max(b).max(1.0);
    if host.counters.contains_key("irq_injections") && apart(si, hi) {
        parts.push(format!("interrupts per iteration sim {si:.2}, host {hi:.2}"));
    }
    if host.counters.contains_key("halt_exits") && apart(sh, hh) {
        parts.push(format!("HLTs per iteration sim {sh:.2}, host {hh:.2}"));
    }
    parts.extend(slower_handling(op_ns, host));
    if sim.userspace_exits != host.userspace_exits || apart(si, hi) || apart(sh, hh) {
        parts.push(
            "the guest took another path on the host: where it waits, and for what, follows the host's timing".into(),
        );
        let preempted = host.counters.get("preemption_other").copied().unwrap_or(0);
        if preempted > 0 {
            parts.push(format!("the host preempted the vCPU thread {preempted} times (KVM's preemption_other)"));
        }
    }
    parts.join("; ")
}

/// The userspace exits whose handling by the VMM (exit to resume, in
/// userspace) took the host more than twice what the profile prices one
/// device register access (`device_op`, `op_ns`, measured on the POST
/// port): device models that do more per access on the host (DMA, arming
/// the device thread's timer, poking it) than the profile's one figure.
fn slower_handling(op_ns: f64, host: &Sample) -> Vec<String> {
    [ExitReason::IoInstruction, ExitReason::EptMisconfig, ExitReason::EptViolation]
        .into_iter()
        .filter_map(|r| {
            let h = host.handle_ns(r)?;
            (h > 2.0 * op_ns).then(|| {
                format!(
                    "the host's VMM handled each {} in {:.1} us, the profile prices a device access at {:.2} us",
                    r.name(),
                    h / 1000.0,
                    op_ns / 1000.0
                )
            })
        })
        .collect()
}

impl Case {
    fn probe(&self) -> Result<Probe, String> {
        let sets: Vec<String> = self.sets.iter().map(|s| s.to_string()).collect();
        Probe::new(self.workload, &sets)
    }

    /// How the host runs it.
    fn host_options(&self) -> RunOptions {
        RunOptions {
            fast_path: FastPath { ioeventfd: !self.trapped_notify, ..FastPath::default() },
            ..RunOptions::default()
        }
    }
}

/// A case's host rounds: the samples of those that ran, the errors of
/// those that did not.
#[derive(Default)]
struct HostRounds {
    ok: Vec<Sample>,
    failed: Vec<String>,
}

/// Compares `c` on the simulator (seed 0) with its host rounds `host`.
fn row(c: &Case, profile: &Profile, host: HostRounds, rounds: usize) -> Result<Row, String> {
    let probe = c.probe()?;
    let sim = run(&sim_spec(profile), &probe, &RunOptions::default());
    let HostRounds { mut ok, failed } = host;
    ok.sort_by(|a, b| a.ns_per_iteration().total_cmp(&b.ns_per_iteration()));
    let median = ok.get(ok.len().saturating_sub(1) / 2).cloned();
    let mut notes: Vec<String> = (!c.why.is_empty()).then(|| c.why.to_string()).into_iter().collect();
    if !failed.is_empty() {
        notes.push(format!("host: {} of {rounds} rounds failed ({})", failed.len(), failed[0]));
    }
    let sim = match sim {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(format!("simulator: {e}"));
            None
        }
    };
    if let (Some(s), Some(h)) = (&sim, &median) {
        let op_ns = profile.handler.device_op.mean() * 1e9 / profile.hz() as f64;
        let n = note(s, h, op_ns);
        if !n.is_empty() {
            notes.push(n);
        }
    }
    let times: Vec<f64> = ok.iter().map(Sample::ns_per_iteration).collect();
    let time_host_ns = median.as_ref().map(|_| Spread::of(&times).median);
    let time_sim_ns = sim.as_ref().map(Sample::ns_per_iteration);
    let error_pct = match (time_sim_ns, time_host_ns) {
        (Some(s), Some(h)) if h > 0.0 => Some((s - h) / h * 100.0),
        _ => None,
    };
    Ok(Row {
        name: c.name.to_string(),
        exits_sim: sim.as_ref().map(|s| s.userspace_exits),
        exits_host: median.as_ref().map(|h| h.userspace_exits),
        all_exits_sim: sim.as_ref().map(|s| s.all_exits),
        kvm_exits: median.as_ref().map(|h| h.all_exits),
        time_sim_ns,
        time_host_ns,
        host_spread_ns: (times.len() > 1).then(|| Spread::of(&times).stddev),
        error_pct,
        note: notes.join("; "),
    })
}

/// Runs the fixed set on the simulator with `profile` and on the host's
/// KVM (`device`), `rounds` host runs each, each stopped after `limit`.
/// `progress` gets a line per workload. Errors: KVM cannot be used, a
/// workload cannot be built.
pub fn validate(
    profile: &Profile,
    device: Option<PathBuf>,
    rounds: usize,
    limit: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Validation, String> {
    let host = HostRunner::new(device, limit);
    host.check()?;
    let rounds = rounds.max(1);
    // Round by round through the whole set, as calibrate does, so that a
    // burst of load on a shared host touches one round of every workload
    // instead of every round of one.
    let probes = CASES.iter().map(Case::probe).collect::<Result<Vec<_>, _>>()?;
    let mut runs: Vec<HostRounds> = CASES.iter().map(|_| HostRounds::default()).collect();
    for r in 0..rounds {
        progress(&format!("  host round {} of {rounds}", r + 1));
        for ((c, probe), out) in CASES.iter().zip(&probes).zip(&mut runs) {
            match host.run(probe, &c.host_options()) {
                Ok(s) => out.ok.push(s),
                Err(e) => out.failed.push(e),
            }
        }
    }
    let mut workloads = Vec::new();
    for (c, h) in CASES.iter().zip(runs) {
        progress(&format!("  {} on the simulator", c.name));
        workloads.push(row(c, profile, h, rounds)?);
    }
    let mut errors: Vec<f64> = workloads.iter().filter_map(|r| r.error_pct.map(f64::abs)).collect();
    errors.sort_by(f64::total_cmp);
    let median_error_pct = (!errors.is_empty()).then(|| Spread::of(&errors).median);
    let max_error_pct = errors.last().copied();
    Ok(Validation {
        profile: profile.name.clone(),
        host: HostInfo::here(),
        scheduling: host.scheduling(),
        rounds,
        workloads,
        median_error_pct,
        max_error_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample(userspace_exits: u64, handled: &[(ExitReason, u64, u64)], counters: &[(&str, u64)]) -> Sample {
        Sample {
            iterations: 100,
            phase_ns: 1_000_000,
            userspace_exits,
            all_exits: userspace_exits,
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            handled: handled.iter().map(|&(r, n, ns)| (r, (n, ns))).collect::<BTreeMap<_, _>>(),
        }
    }

    /// The e1000 row on the simulator: without drain=1, on the calibrated
    /// host's prices, the interrupt of the frame in flight at the measure
    /// marker falls in the measure phase (its ICR read a 1,501st exit for
    /// 500 packets of RDT, TDT and ICR each); with it, both boundaries sit
    /// where every echo's interrupt has been taken, and the phase holds
    /// exactly the measured packets', whatever the profile's timing.
    #[test]
    fn a_drained_e1000_phase_holds_its_own_packets_interrupts() {
        let host = concat!(env!("CARGO_MANIFEST_DIR"), "/../../profiles/hosts/dev-xeon-f6m207-kvm_pvm.toml");
        for profile in ["modern", host] {
            let spec = sim_spec(&Profile::load(profile).unwrap());
            let count = |sets: &[&str]| {
                let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
                let s = run(&spec, &Probe::new("e1000-pingpong", &sets).unwrap(), &RunOptions::default()).unwrap();
                (s.userspace_exits, s.counters["interrupts"])
            };
            assert_eq!(count(&["window=1", "packets=500", "drain=1"]), (1500, 500), "{profile}");
            // Where the echo comes back within the exits that end a phase
            // (the calibrated host's prices), the undrained phase takes
            // the next phase's interrupt; on modern it happens not to.
            let undrained = if profile == host { (1501, 501) } else { (1500, 500) };
            assert_eq!(count(&["window=1", "packets=500"]), undrained, "{profile}");
        }
    }

    /// device-irq with one request in flight: a HEAD read and a TAIL write
    /// per completion, one interrupt each, on the simulator at a rate whose
    /// full ring would have the driver take several per read.
    #[test]
    fn one_request_in_flight_is_one_head_read_per_completion() {
        let host = concat!(env!("CARGO_MANIFEST_DIR"), "/../../profiles/hosts/dev-xeon-f6m207-kvm_pvm.toml");
        let spec = sim_spec(&Profile::load(host).unwrap());
        let sets = ["rate=100000".to_string(), "depth=1".to_string(), "n=100".to_string()];
        let s = run(&spec, &Probe::new("device-irq", &sets).unwrap(), &RunOptions::default()).unwrap();
        assert_eq!((s.userspace_exits, s.counters["interrupts"]), (200, 100));
    }

    /// On KVM too, for both rows: RDT, TDT and one ICR read per measured
    /// packet, a HEAD read and a TAIL write per completion, one interrupt
    /// each, wherever the host's timing puts the echoes and completions.
    #[test]
    fn the_counted_rows_on_kvm_hold_their_own_interrupts() {
        let host = HostRunner::new(None, Duration::from_secs(30));
        if let Err(why) = host.check() {
            eprintln!("skipping KVM test: {why}");
            return;
        }
        let sets = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases = [
            ("e1000-pingpong", sets(&["window=1", "packets=100", "drain=1"]), (300, 100)),
            ("device-irq", sets(&["rate=10000", "depth=1", "n=100"]), (200, 100)),
        ];
        for (workload, sets, expect) in cases {
            let s = host.run(&Probe::new(workload, &sets).unwrap(), &RunOptions::default()).unwrap();
            assert_eq!((s.userspace_exits, s.counters["irq_injections"]), expect, "{workload}");
        }
    }

    #[test]
    fn a_row_says_why_the_host_went_another_way() {
        let sim = sample(200, &[(ExitReason::EptMisconfig, 200, 2_000_000)], &[("interrupts", 100)]);
        let same = sample(200, &[(ExitReason::EptMisconfig, 200, 60_000)], &[("irq_injections", 100)]);
        assert_eq!(note(&sim, &same, 260.0), "", "the same path and handling: nothing to say");
        let host = sample(
            141,
            &[(ExitReason::EptMisconfig, 141, 775_500)],
            &[("irq_injections", 50), ("preemption_other", 7)],
        );
        let n = note(&sim, &host, 260.0);
        assert!(n.contains("interrupts per iteration sim 1.00, host 0.50"), "{n}");
        assert!(
            n.contains(
                "the host's VMM handled each EPT_MISCONFIG in 5.5 us, the profile prices a device access at 0.26 us"
            ),
            "{n}"
        );
        assert!(n.contains("the guest took another path on the host"), "{n}");
        assert!(n.contains("preempted the vCPU thread 7 times"), "{n}");
    }
}

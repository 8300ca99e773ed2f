//! Probes: a built-in workload with fixed parameters, run on the simulator
//! or on the host's KVM for `exitlab calibrate` and `exitlab validate`, and
//! reduced to what both read from it: time per iteration (per packet for
//! the ping-pongs), exits by who sees them, the backend's counters and the
//! VMM's own handling time. Host runs go through a [`HostRunner`]: real-
//! time scheduling where the host allows it, and a wall-clock limit, so a
//! guest that hangs inside KVM_RUN costs the limit and not the command.

use crate::backend::BackendSpec;
use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use exitlab_guest::{BootImage, Workload};
use exitlab_vmm::{Outcome, RunOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A workload with its parameters, assembled.
#[derive(Clone)]
pub struct Probe {
    pub workload: &'static Workload,
    /// The `key=value` parameters it was built with.
    pub sets: Vec<String>,
    /// Iterations (or packets) in the measure phase.
    pub iterations: u64,
    pub image: BootImage,
}

impl Probe {
    /// `workload` with `sets` (`key=value`).
    pub fn new(workload: &str, sets: &[String]) -> Result<Probe, String> {
        let w = exitlab_guest::find_workload(workload).ok_or_else(|| format!("no workload `{workload}`"))?;
        let params = w.resolve(sets.iter().map(String::as_str)).map_err(|e| e.to_string())?;
        let image = w.build(&params).map_err(|e| format!("{workload}: {e}"))?.boot_image();
        Ok(Probe { workload: w, sets: sets.to_vec(), iterations: params.int(w.count), image })
    }

    /// The same probe with `iterations` in its measure phase.
    pub fn resized(&self, iterations: u64) -> Result<Probe, String> {
        let mut sets: Vec<String> =
            self.sets.iter().filter(|s| s.split('=').next() != Some(self.workload.count)).cloned().collect();
        sets.push(format!("{}={iterations}", self.workload.count));
        Probe::new(self.workload.name, &sets)
    }

    /// `workload k=v ...`, for tables and sources.
    pub fn label(&self) -> String {
        std::iter::once(self.workload.name.to_string()).chain(self.sets.iter().cloned()).collect::<Vec<_>>().join(" ")
    }

    /// `workload k=v ...` without the iteration count, for sources.
    pub fn shape(&self) -> String {
        let count = format!("{}=", self.workload.count);
        std::iter::once(self.workload.name.to_string())
            .chain(self.sets.iter().filter(|s| !s.starts_with(&count)).cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// "iterations" or "packets".
    pub fn unit(&self) -> &'static str {
        if self.workload.count == "n" {
            "iterations"
        } else {
            "packets"
        }
    }
}

/// What one run's measure phase showed.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub iterations: u64,
    /// Length of the measure phase (ns, the backend's clock).
    pub phase_ns: u64,
    /// Port I/O and MMIO exits: the kinds KVM hands to userspace.
    pub userspace_exits: u64,
    /// Every exit: all the simulator's, or KVM's `exits` statistic (the
    /// exits it handled in the kernel included).
    pub all_exits: u64,
    /// The backend's counters over the phase (KVM binary stats, or the
    /// simulator's: `instructions`, `cycles`...).
    pub counters: BTreeMap<String, u64>,
    /// Per exit reason the VMM saw: samples and their handling time (ns).
    pub handled: BTreeMap<ExitReason, (u64, u64)>,
}

impl Sample {
    /// Time per iteration (per packet), ns.
    pub fn ns_per_iteration(&self) -> f64 {
        self.phase_ns as f64 / self.iterations.max(1) as f64
    }

    /// A counter's increase per iteration.
    pub fn per_iteration(&self, counter: &str) -> f64 {
        self.counters.get(counter).copied().unwrap_or(0) as f64 / self.iterations.max(1) as f64
    }

    /// The VMM's mean handling time of an exit of `reason` (ns), if any.
    pub fn handle_ns(&self, reason: ExitReason) -> Option<f64> {
        self.handled.get(&reason).filter(|(n, _)| *n > 0).map(|(n, ns)| *ns as f64 / *n as f64)
    }
}

/// Limits of a simulator run for calibrate and validate: a probe whose
/// guest hangs on a profile (as device-irq's driver does when its device
/// drains the ring faster than it takes completions) ends with the limit
/// instead of spinning in virtual time for ever.
pub const SIM_LIMITS: exitlab_sim::RunLimits =
    exitlab_sim::RunLimits { max_instructions: Some(400_000_000), max_time_ns: Some(120_000_000_000) };

/// The simulator on `profile`, seed 0, with [`SIM_LIMITS`].
pub fn sim_spec(profile: &exitlab_sim::profile::Profile) -> BackendSpec {
    BackendSpec::Sim { profile: Box::new(profile.clone()), seed: 0, limits: SIM_LIMITS }
}

/// Runs `probe` on `spec` with `options`. Errors: the backend cannot be
/// opened, the run failed, or the guest did not exit with status 0 (a run
/// limit included), as one line.
pub fn run(spec: &BackendSpec, probe: &Probe, options: &RunOptions) -> Result<Sample, String> {
    let mut vm = spec.open(probe.image.memory_size).map_err(|e| e.to_string())?;
    let r = vm.run(&probe.image, options).map_err(|e| format!("{}: {e}", probe.label()))?;
    match &r.outcome {
        Outcome::Exited { status: 0 } => {}
        Outcome::Exited { status } => return Err(format!("{}: the guest exited with status {status}", probe.label())),
        Outcome::GuestError(e) => return Err(format!("{}: {e}", probe.label())),
        other => return Err(format!("{}: the guest ended by {other:?}, not by its exit port", probe.label())),
    }
    let m = r.accountant.phase_stats(Phase::Measure);
    let userspace = [ExitReason::IoInstruction, ExitReason::EptMisconfig, ExitReason::EptViolation];
    let userspace_exits = userspace.iter().map(|&x| m.samples(x)).sum();
    let all_exits = match spec {
        BackendSpec::Kvm { .. } => m.counters.get("exits").copied().unwrap_or(0),
        BackendSpec::Sim { .. } => m.total_exits(),
    };
    Ok(Sample {
        iterations: probe.iterations,
        phase_ns: m.end_ns.saturating_sub(m.start_ns),
        userspace_exits,
        all_exits,
        counters: m.counters.clone(),
        handled: m.reasons.iter().map(|(k, s)| (*k, (s.samples, s.total_ns))).collect(),
    })
}

/// Runs probes on the host's KVM, one at a time, each on a fresh VM:
/// under SCHED_FIFO where the host allows it (the VMM's threads inherit
/// it), and stopped after a wall-clock limit.
pub struct HostRunner {
    spec: BackendSpec,
    priority: i32,
    /// Why real-time scheduling was not used, once a run found out.
    refused: std::cell::RefCell<Option<String>>,
}

/// The SCHED_FIFO priority measuring threads run at: above every normal
/// task, below the kernel's own real-time threads (which use 50 and up).
pub const PRIORITY: i32 = 10;

impl HostRunner {
    /// KVM through `device` (default: /dev/kvm or `$EXITLAB_KVM_DEVICE`),
    /// each run stopped after `limit`.
    pub fn new(device: Option<PathBuf>, limit: Duration) -> HostRunner {
        let device = device.unwrap_or_else(exitlab_kvm::device_path);
        HostRunner {
            spec: BackendSpec::Kvm { device, max_time: Some(limit), seccomp: true },
            priority: PRIORITY,
            refused: std::cell::RefCell::new(None),
        }
    }

    /// Checks that KVM can be opened at all.
    pub fn check(&self) -> Result<(), String> {
        match &self.spec {
            BackendSpec::Kvm { device, .. } => exitlab_kvm::probe(device),
            BackendSpec::Sim { .. } => Ok(()),
        }
    }

    /// Runs `probe` on a fresh KVM VM.
    pub fn run(&self, probe: &Probe, options: &RunOptions) -> Result<Sample, String> {
        let rt = match exitlab_kvm::Realtime::enter(self.priority) {
            Ok(rt) => Some(rt),
            Err(e) => {
                *self.refused.borrow_mut() = Some(e.to_string());
                None
            }
        };
        let sample = run(&self.spec, probe, options);
        drop(rt);
        sample
    }

    /// How the runs were scheduled, for sources and reports.
    pub fn scheduling(&self) -> String {
        match &*self.refused.borrow() {
            None => format!("SCHED_FIFO priority {}", self.priority),
            Some(why) => format!("SCHED_OTHER (SCHED_FIFO refused: {why}; other tasks' load is in the figures)"),
        }
    }

    /// Runs `probe` resized so that its measure phase lasts about
    /// `target` on this host (from a pilot run of its own size), between
    /// its own size and `max` iterations.
    pub fn sized(&self, probe: &Probe, target: Duration, max: u64, options: &RunOptions) -> Result<Probe, String> {
        let pilot = self.run(probe, options)?;
        let per = pilot.ns_per_iteration().max(1.0);
        let n = ((target.as_nanos() as f64 / per) as u64).clamp(probe.iterations, max.max(probe.iterations));
        probe.resized(n)
    }
}

/// A figure's repeated measurements: median, sample standard deviation
/// and range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Of `values` (at least one).
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Spread { median, stddev: var.sqrt(), min: v[0], max: v[n - 1], n }
    }

    /// Of `values` (at least one), with `stddev` a normal's standard
    /// deviation estimated from their median absolute deviation (1.4826 x
    /// MAD): robust to the odd value a burst of load on a shared host
    /// makes, which a sample standard deviation would let dominate.
    pub fn robust(values: &[f64]) -> Spread {
        let s = Spread::of(values);
        let dev: Vec<f64> = values.iter().map(|x| (x - s.median).abs()).collect();
        Spread { stddev: 1.4826 * Spread::of(&dev).median, ..s }
    }

    /// Every value scaled by `k`.
    pub fn scaled(&self, k: f64) -> Spread {
        Spread { median: self.median * k, stddev: self.stddev * k, min: self.min * k, max: self.max * k, n: self.n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        assert!((s.stddev - 4.0826).abs() < 1e-3, "{}", s.stddev);
        let one = Spread::of(&[7.0]);
        assert_eq!((one.median, one.stddev), (7.0, 0.0));
        // One round a load spike hit: the robust spread ignores it.
        let r = Spread::robust(&[10.0, 11.0, 9.0, 10.0, 50.0]);
        assert_eq!((r.median, r.min, r.max, r.n), (10.0, 9.0, 50.0, 5));
        assert!((r.stddev - 1.4826).abs() < 1e-9, "{}", r.stddev);
        assert!(Spread::of(&[10.0, 11.0, 9.0, 10.0, 50.0]).stddev > 17.0);
    }

    #[test]
    fn a_probe_resizes_and_runs_on_the_simulator() {
        let p = Probe::new("pio-out", &["n=100".to_string()]).unwrap();
        let q = p.resized(250).unwrap();
        assert_eq!((q.iterations, q.label()), (250, "pio-out n=250".to_string()));
        let s = run(&sim_spec(&exitlab_sim::profile::Profile::load("modern").unwrap()), &q, &RunOptions::default())
            .unwrap();
        assert_eq!((s.userspace_exits, s.all_exits, s.iterations), (250, 250, 250));
        // mov, mov, out, dec, jnz per iteration, and the closing marker's
        // seven (its exit counts in no phase, its instructions in this one).
        assert_eq!(s.counters["instructions"], 5 * 250 + 7);
        assert_eq!(s.handle_ns(ExitReason::IoInstruction).map(|ns| ns > 0.0), Some(true));
    }
}

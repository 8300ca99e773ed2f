//! `exitlab calibrate`: measures the host's KVM and writes a hardware
//! profile of it, every figure with the machine, the date, the number of
//! measurements and their spread in its source.
//!
//! Three ways to a figure, each stated in its source:
//! - **per instruction**: a loop with no exits (io-mix, p = 0), its measure
//!   phase's host time over the instructions the simulator counts for the
//!   same image (exact: the guest is deterministic; on a KVM that emulates
//!   ring 0, its `insn_emulation` statistic counts the same);
//! - **direct**: the VMM's own handling time per exit (the accountant's
//!   exit-to-resume time), and two micro-probes of the mechanisms the
//!   VMM's device thread rests on (an eventfd write that wakes a sleeping
//!   thread; a timerfd's lateness);
//! - **fitted**: a probe workload runs on the host and on the simulator
//!   with the profile measured so far; the figure is the value that makes
//!   the simulator's time per iteration equal the host's (a secant solve:
//!   the simulator is deterministic and near-linear in one figure). The
//!   residual is what the host spends on the mechanism the figure prices,
//!   exits KVM handles in the kernel included (KVM's `exits` statistic
//!   over the same phase is quoted beside it).
//!
//! Figures are solved in an order where each probe depends only on
//! figures already measured. Every host run is repeated `rounds` times on
//! a fresh VM; a figure is the median over rounds and its spread a
//! standard deviation estimated from their median absolute deviation
//! (robust to a round a burst of load hit; for fitted figures, each
//! round's time moved through the solve's slope). What the host cannot show (software decode and
//! page walks, which KVM does in the kernel) keeps the modern profile's
//! modelled figure and says so.

use crate::backend::{BackendSpec, OnVm};
use crate::hostinfo::HostInfo;
use crate::probe::{run, sim_spec, HostRunner, Probe, Sample, Spread};
use exitlab_arch::ExitReason;
use exitlab_hv::{Vcpu, Vm};
use exitlab_sim::profile::{Figure, Profile};
use exitlab_vmm::RunOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `exitlab calibrate` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The KVM device node (default: /dev/kvm or `$EXITLAB_KVM_DEVICE`).
    pub device: Option<PathBuf>,
    /// Host runs per probe (and per micro-probe).
    pub rounds: usize,
    /// The time the rounds are spread over: round `r` starts no earlier
    /// than `r / rounds` of it after the first, so that each figure's
    /// spread sees the host's drift over that long (on a shared host, load
    /// comes and goes over tens of seconds; rounds run back to back see
    /// only a few seconds of it and state a spread that a calibration a
    /// minute later falls outside of).
    pub span: Duration,
    /// The profile's name.
    pub name: String,
    /// Wall-clock limit of one host run.
    pub limit: Duration,
}

/// How a figure is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// Host phase time over the simulator's instruction count.
    PerInstruction,
    /// The VMM's handling time per exit of this reason, on the host.
    Handler(ExitReason),
    /// The simulator's time per iteration solved against the host's.
    Fit,
}

/// One figure, the probe that measures it and how.
struct Step {
    key: &'static str,
    workload: &'static str,
    sets: &'static [&'static str],
    how: How,
    /// The host run's target length (the probe is sized to it).
    target_ms: u64,
    /// What the figure is, for its source.
    what: &'static str,
}

/// The steps, in dependency order: each fitted probe's other costs are
/// figures of earlier steps. Calibration probes differ from `validate`'s
/// where they can (mmio-read against mmio-write, CPUID leaf 1 against 0, a
/// 20 us timer against 10 us, a 20 us wire against 5 us), so validation
/// checks the model rather than the fit.
const STEPS: &[Step] = &[
    Step {
        key: "instruction.ring0",
        workload: "io-mix",
        sets: &["p=0", "work=200", "n=50"],
        how: How::PerInstruction,
        target_ms: 100,
        what: "a ring-0 instruction",
    },
    Step {
        key: "instruction.ring3",
        workload: "io-mix",
        sets: &["p=0", "work=200", "n=50", "ring3=1"],
        how: How::PerInstruction,
        target_ms: 20,
        what: "a ring-3 instruction",
    },
    Step {
        key: "handler.device_op",
        workload: "pio-out",
        sets: &["n=200"],
        how: How::Handler(ExitReason::IoInstruction),
        target_ms: 100,
        what: "the VMM's handling of one device register access (exit to resume, POST port)",
    },
    Step {
        key: "exit.reason.IO_INSTRUCTION",
        workload: "pio-out",
        sets: &["n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "a port I/O exit to userspace and back, without the VMM's handling",
    },
    Step {
        key: "exit.reason.EPT_MISCONFIG",
        workload: "mmio-read",
        sets: &["n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "an MMIO exit to userspace and back, without the VMM's handling",
    },
    Step {
        key: "exit.reason.CPUID",
        workload: "cpuid",
        sets: &["leaf=1", "n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "CPUID beyond its instruction, handled in the kernel",
    },
    Step {
        key: "exit.reason.MSR_READ",
        workload: "rdmsr",
        sets: &["msr=0xc0000080", "n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "RDMSR (IA32_EFER) beyond its instruction, handled in the kernel",
    },
    Step {
        key: "exit.reason.MSR_WRITE",
        workload: "wrmsr",
        sets: &["n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "WRMSR (IA32_EFER) beyond its instruction, handled in the kernel",
    },
    Step {
        key: "interrupt.delivery",
        workload: "io-mix",
        sets: &["p=1", "irq=1", "n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "delivering an interrupt into the guest: the doorbell's, pending when the guest halts for it (the HLT priced as exit.round_trip)",
    },
    Step {
        key: "interrupt.halt_wakeup",
        workload: "hlt",
        sets: &["timer_count=20000", "n=200"],
        how: How::Fit,
        target_ms: 100,
        what: "from the local APIC timer's deadline to the vCPU halted for it running again (the timer's own lateness inside)",
    },
    Step {
        key: "interrupt.irqfd",
        workload: "e1000-pingpong",
        sets: &["window=1", "wire_ns=20000", "packets=50"],
        how: How::Fit,
        target_ms: 100,
        what: "from the device thread's irqfd write to the interrupt pending at the vCPU, beyond the halted vCPU's wake-up (e1000 receive interrupts)",
    },
];

/// Figures the calibration never measures apart, and why.
const FOLDED: &[(&str, &str)] = &[
    (
        "interrupt.timer_latency",
        "the probes see a late timer only through the HLT it ends, so its lateness is inside interrupt.halt_wakeup",
    ),
    (
        "exit.reason.HLT",
        "every HLT of the probes ends with an interrupt delivered at once, so its cost beyond an exit KVM handles in the kernel (exit.round_trip) is inside interrupt.delivery",
    ),
];

/// Figures taken from another as soon as it is measured: (figure, from,
/// why).
const COPIES: &[(&str, &str, &str)] = &[
    (
        "exit.round_trip",
        "exit.reason.CPUID",
        "every exit without a figure of its own is priced as CPUID, an exit KVM handles in the kernel",
    ),
    (
        "exit.reason.EPT_VIOLATION",
        "exit.reason.EPT_MISCONFIG",
        "KVM hands MMIO to nothing to userspace as KVM_EXIT_MMIO, the same exit as EPT_MISCONFIG",
    ),
];

/// Most iterations a sized probe may run (the ping-pongs' `packets`
/// tops out at 100,000).
const MAX_ITERATIONS: u64 = 100_000;

/// One measured figure: its value in cycles of the profile's clock, in ns,
/// and its source.
#[derive(Clone, Debug)]
pub struct Measured {
    pub key: String,
    pub cycles: Spread,
    pub ns: Spread,
    pub source: String,
}

/// A finished calibration.
pub struct Calibration {
    pub host: HostInfo,
    pub scheduling: String,
    pub tsc_hz: u64,
    pub figures: Vec<Measured>,
    pub profile: Profile,
    /// The profile file, ready to write.
    pub text: String,
}

/// The TSC rate KVM gives its guests (KVM_GET_TSC_KHZ): the calibrated
/// profile's clock, so the guest's TSC runs at the same rate on both.
struct TscHz;

impl OnVm for TscHz {
    type Output = Result<u64, String>;
    fn on<V: Vm>(self, vm: &mut V) -> Self::Output {
        let image = Probe::new("pio-out", &[])?.image;
        let mut vcpu = vm.create_vcpu(0, &image.boot).map_err(|e| e.to_string())?;
        vcpu.tsc_hz().map_err(|e| e.to_string())
    }
}

/// The simulator's time per iteration of `probe` on `profile` (ns).
fn sim_ns(profile: &Profile, probe: &Probe) -> Result<f64, String> {
    run(&sim_spec(profile), probe, &RunOptions::default()).map(|s| s.ns_per_iteration())
}

/// Why a fitted probe's guest did not do on the host what it does on the
/// simulator, if it did not: then the residual is not the figure's.
/// Compared per iteration: exits to userspace, and interrupts delivered
/// (KVM's `irq_injections` against the simulator's `interrupts`).
fn differs(host: &Sample, sim: &Sample) -> Option<String> {
    let apart = |a: f64, b: f64| (a - b).abs() > (0.02 * a.max(b)).max(0.01);
    let (hx, sx) =
        (host.userspace_exits as f64 / host.iterations as f64, sim.userspace_exits as f64 / sim.iterations as f64);
    if apart(hx, sx) {
        return Some(format!(
            "the host took {hx:.3} exits to userspace per iteration where the simulator took {sx:.3}"
        ));
    }
    let (hi, si) = (host.per_iteration("irq_injections"), sim.per_iteration("interrupts"));
    if host.counters.contains_key("irq_injections") && apart(hi, si) {
        return Some(format!(
            "KVM injected {hi:.3} interrupts per iteration where the simulator delivered {si:.3} (the host delivered them at other moments than the guest raised them)"
        ));
    }
    None
}

/// `profile` with figure `key` fixed at `value` (a draw-free figure).
fn with_value(profile: &Profile, key: &str, value: f64, source: &str) -> Result<Profile, String> {
    let mut p = profile.clone();
    let f = Figure { value: None, mean: Some(value), spread: None, source: source.to_string() };
    set_figure(&mut p, key, f)?;
    Ok(p)
}

/// Puts figure `f` at `key` (as `Profile::figures` names them).
pub fn set_figure(p: &mut Profile, key: &str, f: Figure) -> Result<(), String> {
    if let Some(reason) = key.strip_prefix("exit.reason.") {
        if ExitReason::from_name(reason).is_none() {
            return Err(format!("`{reason}` is not an exit reason"));
        }
        p.exit.reason.insert(reason.to_string(), f);
        return Ok(());
    }
    match key {
        "clock.hz" => p.clock.hz = f,
        "exit.round_trip" => p.exit.round_trip = f,
        "handler.device_op" => p.handler.device_op = f,
        "handler.decode_byte" => p.handler.decode_byte = f,
        "handler.page_walk" => p.handler.page_walk = f,
        "handler.byte_copied" => p.handler.byte_copied = f,
        "paging.walk_step" => p.paging.walk_step = f,
        "instruction.ring0" => p.instruction.ring0 = Some(f),
        "instruction.ring3" => p.instruction.ring3 = Some(f),
        "interrupt.delivery" => p.interrupt.delivery = Some(f),
        "interrupt.halt_wakeup" => p.interrupt.halt_wakeup = Some(f),
        "interrupt.timer_latency" => p.interrupt.timer_latency = Some(f),
        "interrupt.irqfd" => p.interrupt.irqfd = Some(f),
        "device_thread.poke" => p.device_thread.poke = Some(f),
        "device_thread.poke_latency" => p.device_thread.poke_latency = Some(f),
        "device_thread.timer_latency" => p.device_thread.timer_latency = Some(f),
        _ => return Err(format!("no figure `{key}` in a profile")),
    }
    Ok(())
}

/// A solved figure: its value (cycles) and the slope of the simulator's
/// time per iteration in it (ns per cycle) there.
#[derive(Debug)]
struct Solved {
    value: f64,
    slope: f64,
}

/// Solves `sim_ns(profile with key = v, probe) = target` for v (cycles)
/// by secant steps from 0. Errors: the probe's simulated time does not
/// depend on the figure.
fn solve(profile: &Profile, key: &str, probe: &Probe, target: f64) -> Result<Solved, String> {
    let at = |v: f64| sim_ns(&with_value(profile, key, v, "calibrating")?, probe);
    let hz = profile.hz() as f64;
    let (mut v0, mut t0) = (0.0, at(0.0)?);
    let mut v1 = ((target - t0).abs() * hz / 1e9).max(1000.0);
    let mut t1 = at(v1)?;
    if (t1 - t0).abs() < 1e-9 {
        return Err(format!("the simulated time of {} does not depend on `{key}`", probe.label()));
    }
    for _ in 0..6 {
        let slope = (t1 - t0) / (v1 - v0);
        if slope == 0.0 {
            break;
        }
        let v = (v1 + (target - t1) / slope).max(0.0);
        let t = at(v)?;
        (v0, t0, v1, t1) = (v1, t1, v, t);
        // Within a cycle (the simulator's resolution), or at the floor.
        if (t1 - target).abs() <= 1e-4 * target || (v1 - v0).abs() < 1.0 {
            break;
        }
    }
    // The slope there, over a step wide enough to see (the simulated
    // time moves in whole cycles).
    let h = (v1 * 0.1).max(1000.0);
    let slope = (at(v1 + h)? - at((v1 - h).max(0.0))?) / (v1 + h - (v1 - h).max(0.0));
    if slope <= 0.0 {
        return Err(format!("the simulated time of {} does not grow with `{key}`", probe.label()));
    }
    Ok(Solved { value: v1, slope })
}

/// Everything the calibration measures on the host, before any fit: each
/// probe (sized) with its rounds, and the micro-probes' rounds.
struct HostData {
    /// The step's probe label -> (the probe as sized, its rounds).
    probes: BTreeMap<String, (Probe, Vec<Sample>)>,
    threads: Vec<crate::threadprobe::Round>,
}

/// The label a step's probe is known by.
fn step_label(step: &Step) -> String {
    std::iter::once(step.workload).chain(step.sets.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// Runs every probe of [`STEPS`] on the host, each sized by a pilot run,
/// then `rounds` rounds of all of them in turn (and of the micro-probes),
/// so that each figure's rounds span the whole calibration and its spread
/// includes the host's drift over it; round `r` waits for `r / rounds` of
/// `span` to have passed since the first.
fn measure_host(
    host: &HostRunner,
    rounds: usize,
    span: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<HostData, String> {
    let options = RunOptions::default();
    let mut sized: Vec<(String, Probe)> = Vec::new();
    for s in STEPS {
        let label = step_label(s);
        if sized.iter().any(|(l, _)| *l == label) {
            continue;
        }
        let sets: Vec<String> = s.sets.iter().map(|x| x.to_string()).collect();
        let probe = Probe::new(s.workload, &sets)?;
        let probe = host.sized(&probe, Duration::from_millis(s.target_ms), MAX_ITERATIONS, &options)?;
        progress(&format!("  {}", probe.label()));
        sized.push((label, probe));
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); sized.len()];
    let mut threads = Vec::new();
    let first = Instant::now();
    for r in 0..rounds {
        let due = span.mul_f64(r as f64 / rounds as f64);
        std::thread::sleep(due.saturating_sub(first.elapsed()));
        progress(&format!("  round {} of {rounds}", r + 1));
        for ((_, probe), out) in sized.iter().zip(&mut samples) {
            out.push(host.run(probe, &options)?);
        }
        threads.push(crate::threadprobe::round()?);
    }
    let probes = sized.into_iter().zip(samples).map(|((label, probe), s)| (label, (probe, s))).collect();
    Ok(HostData { probes, threads })
}

/// The profile a calibration starts from: the features a VMM over KVM
/// sees, the host's clock, and the modern profile's modelled figures for
/// what the host cannot show (each marked so).
fn base(name: &str, host: &HostInfo, tsc_hz: u64, scheduling: &str) -> Profile {
    let mut p = Profile::load("modern").expect("the built-in modern profile parses");
    p.name = name.to_string();
    p.summary = format!("this host, calibrated: {}, {}", host.cpu, host.kvm);
    p.features.pml = false;
    p.features.decode_assist = true;
    p.features.tsx = false;
    p.features.iommu = false;
    p.clock.hz = Figure {
        value: Some(tsc_hz as f64),
        mean: None,
        spread: None,
        source: format!("measured: {}, the TSC rate KVM gives its guests (KVM_GET_TSC_KHZ)", host.short()),
    };
    p.exit.reason.clear();
    for key in ["handler.decode_byte", "handler.page_walk", "handler.byte_copied"] {
        let (_, f) = p.figures().into_iter().find(|(k, _)| k == key).expect("modern has every handler figure");
        let source = format!(
            "not measured: KVM decodes and walks in the kernel, so a VMM over it never does (decode_assist = true); the modern profile's figure: {}",
            f.source
        );
        let f = Figure { source, ..f.clone() };
        set_figure(&mut p, key, f).expect("a handler key");
    }
    let walk = Figure {
        value: Some(0.0),
        mean: None,
        spread: None,
        source: "modelled: 0, not measured: the measured instruction prices include whatever translation costs the host's loops paid".into(),
    };
    p.paging.walk_step = walk;
    p.host = Some(exitlab_sim::profile::Host {
        cpu: Some(host.cpu.clone()),
        kernel: Some(host.kernel.clone()),
        kvm: Some(host.kvm.clone()),
        date: Some(host.date.clone()),
        scheduling: Some(scheduling.to_string()),
        notes: None,
    });
    p
}

/// A measured figure from per-round values (cycles) and their ns.
fn measured(key: &str, rounds: &[f64], ns_per_cycle: f64, source: String) -> Measured {
    let cycles = Spread::robust(rounds);
    Measured { key: key.to_string(), cycles, ns: cycles.scaled(ns_per_cycle), source }
}

/// The source line of a measured figure.
fn source(host: &HostInfo, sched: &str, m: &Spread, what: &str, how: &str) -> String {
    format!(
        "measured: {}, {sched}, n = {}, median over rounds, spread = 1.4826 x their median absolute deviation ({:.1} +- {:.1} ns, range {:.1}-{:.1}); {what}: {how}",
        host.short(),
        m.n,
        m.median,
        m.stddev,
        m.min,
        m.max
    )
}

/// A step's figure, or why this host cannot give it.
enum Got {
    Figure(Measured),
    NotMeasured(String),
}

/// Measures one step's figure. `p` holds the figures measured so far.
fn step(s: &Step, p: &Profile, data: &HostData, ctx: &Ctx<'_>) -> Result<Got, String> {
    let (probe, samples) = data.probes.get(&step_label(s)).ok_or("internal error: a probe was not run")?;
    let rounds_text = |n: usize| format!("{n} rounds x {} {} of {}", probe.iterations, probe.unit(), probe.shape());
    let ns_per_cycle = 1e9 / p.hz() as f64;
    let per_round: Vec<f64>;
    let how: String;
    match s.how {
        How::PerInstruction => {
            let sim = run(&sim_spec(p), probe, &RunOptions::default())?;
            let count = sim.counters.get("instructions").copied().unwrap_or(0).max(1) as f64;
            per_round = samples.iter().map(|h| h.phase_ns as f64 / count / ns_per_cycle).collect();
            let emulated = samples[0].per_iteration("insn_emulation") / sim.per_iteration("instructions");
            how = format!(
                "{}: the measure phase's host time over the {count} instructions the simulator retires for it (KVM's insn_emulation counted {:.3} of them)",
                rounds_text(samples.len()),
                emulated
            );
        }
        How::Handler(reason) => {
            per_round = samples.iter().map(|h| h.handle_ns(reason).unwrap_or(0.0) / ns_per_cycle).collect::<Vec<_>>();
            how = format!("{}: the VMM's exit-to-resume time of {}", rounds_text(samples.len()), reason.name());
        }
        How::Fit => {
            let host: Vec<f64> = samples.iter().map(Sample::ns_per_iteration).collect();
            let target = Spread::of(&host).median;
            let solved = solve(p, s.key, probe, target)?;
            let at = run(&sim_spec(&with_value(p, s.key, solved.value, "")?), probe, &RunOptions::default())?;
            let median = samples.iter().find(|h| h.ns_per_iteration() == target).unwrap_or(&samples[0]);
            if let Some(why) = differs(median, &at) {
                return Ok(Got::NotMeasured(format!("{}: {why}", probe.label())));
            }
            per_round = host.iter().map(|t| solved.value + (t - target) / solved.slope).collect();
            let kvm_exits = samples.iter().map(|h| h.per_iteration("exits")).sum::<f64>() / samples.len() as f64;
            let floor =
                if solved.value == 0.0 { ", the host needing no more than the simulator without it: 0" } else { "" };
            how = format!(
                "{}: host {:.1} ns per {} against the simulator's; KVM's exits statistic {:.3} per {}{floor}",
                rounds_text(samples.len()),
                target,
                &probe.unit()[..probe.unit().len() - 1],
                kvm_exits,
                &probe.unit()[..probe.unit().len() - 1],
            );
        }
    }
    let ns = Spread::of(&per_round).scaled(ns_per_cycle);
    Ok(Got::Figure(measured(s.key, &per_round, ns_per_cycle, source(ctx.host, ctx.sched, &ns, s.what, &how))))
}

/// What a figure the host could not give is written as: the simulator's
/// modelled figure where it has one, said to be so, or nothing (the
/// simulator then leaves that delay out).
fn unmeasured(key: &str, why: &str) -> Option<Figure> {
    let modelled = match key {
        "interrupt.delivery" => exitlab_sim::cost::EVENT_DELIVERY,
        _ => return None,
    };
    let source = format!(
        "not measured: {why}; modelled: the simulator's own {modelled} cycles (crates/sim/src/cost.rs), as without a calibration"
    );
    Some(Figure { value: Some(modelled as f64), mean: None, spread: None, source })
}

/// What every step's source names.
struct Ctx<'a> {
    host: &'a HostInfo,
    sched: &'a str,
}

/// Runs a calibration on the host's KVM. `progress` gets a line per probe.
/// Errors: KVM cannot be used, a probe failed (the message names it).
pub fn calibrate(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Calibration, String> {
    let host_runner = HostRunner::new(opts.device.clone(), opts.limit);
    host_runner.check()?;
    let host = HostInfo::here();
    let spec = BackendSpec::kvm(opts.device.clone());
    let tsc_hz = spec.open(1 << 24).map_err(|e| e.to_string())?.with(TscHz)?;
    let rounds = opts.rounds.max(1);
    let started = Instant::now();
    progress(&format!("calibrating on {} ({}), TSC {} kHz", host.cpu, host.kvm, tsc_hz / 1000));
    let data = measure_host(&host_runner, rounds, opts.span, progress)?;
    let mut figures = Vec::new();
    let mut not_measured: Vec<String> = FOLDED.iter().map(|(k, why)| format!("{k} ({why})")).collect();
    let mut p = base(&opts.name, &host, tsc_hz, "");
    let ns_per_cycle = 1e9 / tsc_hz as f64;
    for s in STEPS {
        if s.key == "interrupt.irqfd" {
            // The ping-pong's other costs include the device thread's.
            let sched = host_runner.scheduling();
            for m in crate::threadprobe::figures(&data.threads, &host, &sched, ns_per_cycle) {
                progress(&format!("  {:<28} {:>12.1} ns  +- {:.1}", m.key, m.ns.median, m.ns.stddev));
                p = with_measured(&p, &m)?;
                figures.push(m);
            }
        }
        let sched = host_runner.scheduling();
        match step(s, &p, &data, &Ctx { host: &host, sched: &sched })? {
            Got::Figure(m) => {
                progress(&format!("  {:<28} {:>12.1} ns  +- {:.1}", m.key, m.ns.median, m.ns.stddev));
                p = with_measured(&p, &m)?;
                for (key, _, why) in COPIES.iter().filter(|(_, from, _)| *from == m.key) {
                    let copy = Measured {
                        key: key.to_string(),
                        source: format!("{} (as {}: {why})", m.source, m.key),
                        ..m.clone()
                    };
                    p = with_measured(&p, &copy)?;
                    figures.push(copy);
                }
                figures.push(m);
            }
            Got::NotMeasured(why) => {
                progress(&format!("  {:<28} not measured: {why}", s.key));
                if let Some(f) = unmeasured(s.key, &why) {
                    set_figure(&mut p, s.key, f)?;
                }
                not_measured.push(format!("{} ({why})", s.key));
            }
        }
    }
    for (key, from, _) in COPIES {
        if !figures.iter().any(|m| m.key == *key) {
            not_measured.push(format!("{key} (as {from}, which was not measured)"));
        }
    }
    let scheduling = host_runner.scheduling();
    if let Some(h) = p.host.as_mut() {
        h.scheduling = Some(scheduling.clone());
        let missing = if not_measured.is_empty() {
            String::new()
        } else {
            format!("; not measured on this host: {}", not_measured.join("; "))
        };
        h.notes = Some(format!(
            "exitlab {} calibrate, {} rounds per probe spread over {} s, {:.0} s{missing}",
            env!("CARGO_PKG_VERSION"),
            rounds,
            opts.span.as_secs(),
            started.elapsed().as_secs_f64()
        ));
    }
    let text = crate::profile_text::render(&p);
    let profile = Profile::parse("the calibrated profile", &text).map_err(|e| format!("internal error: {e}"))?;
    Ok(Calibration { host, scheduling, tsc_hz, figures, profile, text })
}

/// `p` with `m` as its figure.
fn with_measured(p: &Profile, m: &Measured) -> Result<Profile, String> {
    let mut q = p.clone();
    let f = if m.cycles.stddev > 0.0 {
        Figure { value: None, mean: Some(m.cycles.median), spread: Some(m.cycles.stddev), source: m.source.clone() }
    } else {
        Figure { value: Some(m.cycles.median), mean: None, spread: None, source: m.source.clone() }
    };
    set_figure(&mut q, &m.key, f)?;
    Ok(q)
}

/// One figure of two calibrations side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    pub key: String,
    pub a: (f64, f64),
    pub b: (f64, f64),
    /// |a - b| within the sum of the two spreads.
    pub agree: bool,
}

/// The measured figures two profiles share, and whether each pair agrees
/// within the spreads they state (the intervals mean +- spread overlap).
pub fn agreement(a: &Profile, b: &Profile) -> Vec<Agreement> {
    let theirs: BTreeMap<String, &Figure> = b.figures().into_iter().collect();
    a.figures()
        .into_iter()
        .filter(|(_, f)| f.source.starts_with("measured"))
        .filter_map(|(key, fa)| {
            let fb = theirs.get(&key)?;
            fb.source.starts_with("measured").then(|| {
                let (ma, sa, mb, sb) = (fa.mean(), fa.spread(), fb.mean(), fb.spread());
                Agreement { key, a: (ma, sa), b: (mb, sb), agree: (ma - mb).abs() <= sa + sb }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pio(n: u64) -> Probe {
        Probe::new("pio-out", &[format!("n={n}")]).unwrap()
    }

    #[test]
    fn the_solve_recovers_a_figure_from_the_time_it_gives() {
        let p = Profile::load("modern").unwrap();
        let truth = with_value(&p, "exit.reason.IO_INSTRUCTION", 23_456.0, "t").unwrap();
        let target = sim_ns(&truth, &pio(300)).unwrap();
        let solved = solve(&p, "exit.reason.IO_INSTRUCTION", &pio(300), target).unwrap();
        assert!((solved.value - 23_456.0).abs() <= 1.0, "{}", solved.value);
        // One exit per iteration at 2 GHz: half a nanosecond per cycle.
        assert!((solved.slope - 0.5).abs() < 1e-3, "{}", solved.slope);
    }

    #[test]
    fn a_host_faster_than_the_model_without_the_figure_gives_zero() {
        let p = Profile::load("modern").unwrap();
        let solved = solve(&p, "exit.reason.IO_INSTRUCTION", &pio(100), 1.0).unwrap();
        assert_eq!(solved.value, 0.0);
    }

    #[test]
    fn a_figure_the_probe_never_pays_cannot_be_solved() {
        let p = Profile::load("modern").unwrap();
        let e = solve(&p, "exit.reason.CPUID", &pio(100), 5000.0).unwrap_err();
        assert!(e.contains("does not depend on `exit.reason.CPUID`"), "{e}");
    }

    #[test]
    fn every_figure_of_a_profile_can_be_set_by_its_key() {
        let mut p = Profile::load("modern").unwrap();
        p.instruction.ring0 = Some(p.clock.hz.clone());
        let keys: Vec<String> = p.figures().into_iter().map(|(k, _)| k).collect();
        for key in keys.iter().map(String::as_str).chain(STEPS.iter().map(|s| s.key)) {
            let q = with_value(&p, key, 7.0, "t").unwrap();
            let got = q.figures().into_iter().find(|(k, _)| k == key).map(|(_, f)| f.mean());
            assert_eq!(got, Some(7.0), "{key}");
        }
        let f = p.clock.hz.clone();
        assert!(set_figure(&mut p, "exit.reason.NOPE", f.clone()).is_err());
        assert!(set_figure(&mut p, "paging.nope", f).is_err());
    }

    #[test]
    fn a_probe_whose_guest_took_another_path_is_refused() {
        let base = Sample {
            iterations: 100,
            phase_ns: 1,
            userspace_exits: 100,
            all_exits: 100,
            counters: BTreeMap::from([("irq_injections".to_string(), 100), ("interrupts".to_string(), 100)]),
            handled: BTreeMap::new(),
        };
        assert_eq!(differs(&base, &base), None);
        let fewer = Sample { counters: BTreeMap::from([("irq_injections".to_string(), 1)]), ..base.clone() };
        assert!(differs(&fewer, &base).unwrap().contains("KVM injected 0.010 interrupts per iteration"));
        let exits = Sample { userspace_exits: 150, ..base.clone() };
        assert!(differs(&exits, &base).unwrap().contains("1.500 exits to userspace"));
    }

    #[test]
    fn calibrations_agree_within_their_spreads() {
        let measured = |mean: f64, spread: f64| Figure {
            value: None,
            mean: Some(mean),
            spread: Some(spread),
            source: "measured: t".into(),
        };
        let mut a = Profile::load("modern").unwrap();
        let mut b = a.clone();
        a.instruction.ring0 = Some(measured(700.0, 10.0));
        b.instruction.ring0 = Some(measured(715.0, 5.0));
        a.interrupt.delivery = Some(measured(100.0, 1.0));
        b.interrupt.delivery = Some(measured(110.0, 1.0));
        let rows = agreement(&a, &b);
        assert_eq!(rows.len(), 2, "only figures both measured: {rows:?}");
        assert!(rows.iter().find(|r| r.key == "instruction.ring0").unwrap().agree);
        assert!(!rows.iter().find(|r| r.key == "interrupt.delivery").unwrap().agree);
    }

    #[test]
    fn the_base_profile_says_what_it_did_not_measure() {
        let host = HostInfo { cpu: "c".into(), kernel: "k".into(), kvm: "kvm_intel".into(), date: "d".into() };
        let p = base("h", &host, 2_100_000_000, "SCHED_FIFO");
        assert_eq!(p.hz(), 2_100_000_000);
        assert!(p.features.decode_assist && p.features.ept && !p.features.iommu);
        for (key, f) in p.figures() {
            let s = &f.source;
            assert!(
                s.starts_with("measured")
                    || s.starts_with("not measured")
                    || s.starts_with("modelled")
                    || s.starts_with("verified"),
                "{key}: {s}"
            );
        }
        assert!(p.handler.decode_byte.source.starts_with("not measured: KVM decodes"));
    }
}

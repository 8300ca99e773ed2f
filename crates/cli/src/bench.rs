//! `exitlab bench`: what exitlab itself costs.

use crate::UsageError;
use exitlab_guest::anchor::{self, AnchorLoop};
use exitlab_guest::BootImage;
use exitlab_hv::Vm;
use exitlab_lab::backend::{BackendSpec, OnVm};
use exitlab_vmm::bench::{bare_loop, vmm_loop, LoopTime};
use exitlab_vmm::{RunOptions, VmmError};
use std::path::PathBuf;
use std::time::Instant;

/// One timed run of pio-out: through the bare loop or the VMM's.
struct Timed<'a> {
    image: &'a BootImage,
    bare: bool,
}

impl OnVm for Timed<'_> {
    type Output = Result<LoopTime, VmmError>;
    fn on<V: Vm>(self, vm: &mut V) -> Self::Output {
        if self.bare {
            bare_loop(vm, self.image)
        } else {
            vmm_loop(vm, self.image)
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates a bare KVM_RUN loop and the full VMM loop over pio-out and
/// prints the median time per exit of each and their ratio.
pub fn kvm(n: &str, rounds: &str, device: Option<PathBuf>) -> Result<(), UsageError> {
    let n = crate::args::whole("-n", n, 1, 10_000_000)?;
    let rounds = crate::args::whole("--rounds", rounds, 1, 100)?;
    let path = device.unwrap_or_else(exitlab_kvm::device_path);
    let spec = BackendSpec::kvm(Some(path.clone()));
    let w = exitlab_guest::find_workload("pio-out").expect("pio-out is built in");
    let image = w.build(&w.resolve([format!("n={n}").as_str()])?).map_err(|e| UsageError(e.to_string()))?;
    let image = image.boot_image();
    let run = |bare: bool| {
        let mut vm = spec.open(image.memory_size)?;
        vm.with(Timed { image: &image, bare }).map_err(|e| UsageError(e.to_string()))
    };
    // Alternate which loop goes first so drift on the host (frequency,
    // other tenants) does not favour either; compare round by round.
    let (mut bare, mut vmm, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (b, v) = if round % 2 == 0 {
            let b = run(true)?.ns_per_exit();
            (b, run(false)?.ns_per_exit())
        } else {
            let v = run(false)?.ns_per_exit();
            (run(true)?.ns_per_exit(), v)
        };
        bare.push(b);
        vmm.push(v);
        ratios.push(v / b);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (bmin, vmin) = (best(&bare), best(&vmm));
    let ratio = median(ratios);
    say!("exit round trip on kvm ({}; pio-out, n = {n}, {rounds} rounds):", path.display());
    say!("{:<22} {:>14} {:>14}", "", "median us/exit", "best us/exit");
    say!("{:<22} {:>14.3} {:>14.3}", "bare KVM_RUN loop", median(bare) / 1000.0, bmin / 1000.0);
    say!("{:<22} {:>14.3} {:>14.3}", "exitlab VMM loop", median(vmm) / 1000.0, vmin / 1000.0);
    say!("ratio VMM / bare: {ratio:.4} (median of per-round ratios), {:.4} (best against best)", vmin / bmin);
    Ok(())
}

/// Host seconds and guest instructions retired over one whole simulator
/// run of `image`.
fn sim_image(image: &exitlab_guest::Image) -> Result<(f64, u64, exitlab_vmm::RunReport), UsageError> {
    let image = image.boot_image();
    let mut vm = BackendSpec::sim(exitlab_sim::profile::Profile::default_profile(), 0).open(image.memory_size)?;
    let start = Instant::now();
    let report = vm.run(&image, &RunOptions::default()).map_err(|e| UsageError(e.to_string()))?;
    let secs = start.elapsed().as_secs_f64();
    let instructions = report.accountant.all().counters.get("instructions").copied().unwrap_or(0);
    Ok((secs, instructions, report))
}

/// Runs `workload` with `sets` on the simulator; returns host seconds and
/// guest instructions retired over the whole run.
fn sim_run(workload: &str, sets: &[&str]) -> Result<(f64, u64, exitlab_vmm::RunReport), UsageError> {
    let w = exitlab_guest::find_workload(workload).expect("built in");
    sim_image(&w.build(&w.resolve(sets.iter().copied())?).map_err(|e| UsageError(e.to_string()))?)
}

/// The loop `exitlab bench sim` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimLoop {
    /// One of the speed anchors' bodies (../shared/bench-anchors).
    Anchor(AnchorLoop),
    /// io-mix p=0 work=1000 n=10000: exitlab's own compute loop.
    IoMix,
}

impl SimLoop {
    pub fn parse(text: &str) -> Result<SimLoop, UsageError> {
        match text {
            "dec" => Ok(SimLoop::Anchor(AnchorLoop::Dec)),
            "alu" => Ok(SimLoop::Anchor(AnchorLoop::Alu)),
            "io-mix" => Ok(SimLoop::IoMix),
            _ => Err(UsageError(format!("--loop: `{text}` is not one of dec, alu, io-mix"))),
        }
    }
}

/// Iterations of an anchor body per timed run: 10^8 instructions, about a
/// second at the simulator's speed.
fn anchor_iterations(body: AnchorLoop) -> u64 {
    100_000_000 / body.per_iteration()
}

/// Guest MIPS of one round of `what`. An anchor body is timed as the
/// anchors time theirs: the run with N iterations less the run with one,
/// so booting and the exit path cancel; instructions are the simulator's
/// retired count, not N times the body's length.
fn sim_round(what: SimLoop) -> Result<f64, UsageError> {
    match what {
        SimLoop::IoMix => {
            let (secs, n, _) = sim_run("io-mix", &["n=10000", "warmup=0", "p=0", "work=1000"])?;
            Ok(n as f64 / secs / 1e6)
        }
        SimLoop::Anchor(body) => {
            let build = |n| anchor::image(body, n).map_err(|e| UsageError(e.to_string()));
            let (s1, i1, _) = sim_image(&build(1)?)?;
            let (sn, i_n, _) = sim_image(&build(anchor_iterations(body))?)?;
            Ok(i_n.saturating_sub(i1) as f64 / (sn - s1).max(1e-9) / 1e6)
        }
    }
}

fn sim_rounds(what: SimLoop, rounds: u64) -> Result<Vec<f64>, UsageError> {
    (0..rounds).map(|_| sim_round(what)).collect()
}

/// The simulator's speed: `what` in million guest instructions per host
/// second, and the host time one hour of tickless idle guest time takes.
/// Ends with `guest MIPS: <median>`. With `vs`, runs the anchors' dec and
/// alu loops on the simulator, QEMU TCG and Bochs in the same invocation
/// and prints the ratios.
pub fn sim(rounds: &str, what: &str, vs: bool, anchors: PathBuf) -> Result<(), UsageError> {
    let rounds = crate::args::whole("--rounds", rounds, 1, 100)?;
    let what = SimLoop::parse(what)?;
    if vs {
        return versus(rounds, anchors);
    }
    let mips = sim_rounds(what, rounds)?;
    let (idle_secs, _, idle) = sim_run("idle", &["n=1", "warmup=0", "period_ms=3600000"])?;
    let guest = idle.accountant.phase_stats(exitlab_guest::layout::Phase::Measure);
    let best = mips.iter().copied().fold(0.0, f64::max);
    match what {
        SimLoop::IoMix => say!("compute loop: io-mix p=0 work=1000 n=10000, {rounds} rounds"),
        SimLoop::Anchor(body) => say!(
            "compute loop: the anchors' `{}` body ({} instructions per iteration), N = {} less N = 1, {rounds} rounds",
            body.name(),
            body.per_iteration(),
            anchor_iterations(body)
        ),
    }
    say!("  best {best:.1} MIPS, median {:.1} MIPS", median(mips.clone()));
    say!(
        "tickless idle: {:.3} s of guest time took {:.3} ms of host time ({} HLT exits)",
        guest.end_ns.saturating_sub(guest.start_ns) as f64 / 1e9,
        idle_secs * 1e3,
        guest.samples(exitlab_arch::ExitReason::Hlt)
    );
    say!("guest MIPS: {:.1}", median(mips));
    Ok(())
}

const INSTALL: &str = "apt-get install -y qemu-system-x86 bochs bochs-term bochsbios vgabios";

/// Whether `program` is an executable file on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The anchors' guest MIPS for (emulator, body) from run.sh's table rows
/// `| emulator | version | body (k insn/iter) | N | s | s | MIPS |`.
fn anchor_mips(table: &str, emulator: &str, body: AnchorLoop) -> Option<f64> {
    table.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        (cells.len() == 9 && cells[1] == emulator && cells[3].split(' ').next() == Some(body.name()))
            .then(|| cells[7].parse().ok())
            .flatten()
    })
}

/// `exitlab bench sim --vs`: the simulator's dec and alu rounds, then
/// run.sh's QEMU TCG and Bochs runs of the same bodies (RUNS=1, no KVM),
/// then the simulator's rounds again, so host drift during the anchors
/// weighs on both sides; ratios of the medians.
fn versus(rounds: u64, dir: PathBuf) -> Result<(), UsageError> {
    let missing: Vec<&str> = ["qemu-system-x86_64", "bochs-bin"].into_iter().filter(|p| !on_path(p)).collect();
    if !missing.is_empty() {
        return Err(UsageError(format!("--vs needs {} (install: {INSTALL})", missing.join(" and "))));
    }
    let script = dir.join("run.sh");
    if !script.is_file() {
        return Err(UsageError(format!("--anchors: {} has no run.sh", dir.display())));
    }
    let bodies = [AnchorLoop::Dec, AnchorLoop::Alu];
    let mut ours: Vec<Vec<f64>> =
        bodies.iter().map(|&b| sim_rounds(SimLoop::Anchor(b), rounds)).collect::<Result<_, _>>()?;
    say!("running {} (RUNS=1 SKIP_KVM=1; about two minutes)", script.display());
    // Debian's Bochs 2.7 aborts in its sound mixer thread when ALSA has no
    // default device (a headless host): run.sh gets a HOME whose .asoundrc
    // makes the default PCM a null one.
    let home = std::env::temp_dir().join(format!("exitlab-anchors-{}", std::process::id()));
    std::fs::create_dir_all(&home)
        .and_then(|_| {
            std::fs::write(home.join(".asoundrc"), "pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
        })
        .map_err(|e| UsageError(format!("{}: {e}", home.display())))?;
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("RUNS", "1")
        .env("SKIP_KVM", "1")
        .env("HOME", &home)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| UsageError(format!("{}: {e}", script.display())))?;
    let _ = std::fs::remove_dir_all(&home);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(UsageError(format!("{} failed ({}): {}", script.display(), out.status, table.trim())));
    }
    for (i, &b) in bodies.iter().enumerate() {
        ours[i].extend(sim_rounds(SimLoop::Anchor(b), rounds)?);
    }
    say!("{}", table.trim_end());
    say!("");
    say!(
        "| loop body | exitlab MIPS (median of {}) | QEMU TCG MIPS | Bochs MIPS | exitlab / Bochs | exitlab / TCG |",
        2 * rounds
    );
    say!("|---|---|---|---|---|---|");
    for (i, &b) in bodies.iter().enumerate() {
        let e = median(ours[i].clone());
        let (Some(tcg), Some(bochs)) = (anchor_mips(&table, "qemu-tcg", b), anchor_mips(&table, "bochs", b)) else {
            return Err(UsageError(format!("{}: no MIPS for `{}` in its table", script.display(), b.name())));
        };
        say!("| {} | {e:.1} | {tcg:.1} | {bochs:.1} | {:.2}x | {:.3}x |", b.name(), e / bochs, e / tcg);
    }
    Ok(())
}

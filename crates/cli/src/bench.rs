//! `exitlab bench`: what exitlab itself costs.

use crate::UsageError;
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

/// Runs `workload` with `sets` on the simulator; returns host seconds and
/// guest instructions retired over the whole run.
fn sim_run(workload: &str, sets: &[&str]) -> Result<(f64, u64, exitlab_vmm::RunReport), UsageError> {
    let w = exitlab_guest::find_workload(workload).expect("built in");
    let image = w.build(&w.resolve(sets.iter().copied())?).map_err(|e| UsageError(e.to_string()))?.boot_image();
    let mut vm = BackendSpec::sim(exitlab_sim::profile::Profile::default_profile(), 0).open(image.memory_size)?;
    let start = Instant::now();
    let report = vm.run(&image, &RunOptions::default()).map_err(|e| UsageError(e.to_string()))?;
    let secs = start.elapsed().as_secs_f64();
    let instructions = report.accountant.all().counters.get("instructions").copied().unwrap_or(0);
    Ok((secs, instructions, report))
}

/// The simulator's speed: a compute-bound guest loop in million guest
/// instructions per host second, and the host time one hour of tickless
/// idle guest time takes. Ends with `guest MIPS: <median>`.
pub fn sim(rounds: &str) -> Result<(), UsageError> {
    let rounds = crate::args::whole("--rounds", rounds, 1, 100)?;
    let sets = ["n=10000", "warmup=0", "p=0", "work=1000"];
    let mut mips = Vec::new();
    let mut instructions = 0;
    for _ in 0..rounds {
        let (secs, n, _) = sim_run("io-mix", &sets)?;
        instructions = n;
        mips.push(n as f64 / secs / 1e6);
    }
    let (idle_secs, _, idle) = sim_run("idle", &["n=1", "warmup=0", "period_ms=3600000"])?;
    let guest = idle.accountant.phase_stats(exitlab_guest::layout::Phase::Measure);
    let best = mips.iter().copied().fold(0.0, f64::max);
    say!("compute loop: io-mix p=0 work=1000 n=10000, {instructions} guest instructions, {rounds} rounds");
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

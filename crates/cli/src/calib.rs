//! `exitlab calibrate` and `exitlab validate`: measure this host into a
//! profile, and compare the simulator on a profile with the host.

use crate::{args, Backend, UsageError};
use exitlab_lab::calibrate::{agreement, calibrate as run_calibration, Options};
use exitlab_lab::validate::{validate as run_validation, Validation};
use exitlab_sim::profile::Profile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn only_kvm(command: &str, backend: Backend) -> Result<(), UsageError> {
    match backend {
        Backend::Kvm => Ok(()),
        Backend::Sim => Err(UsageError(format!(
            "{command} measures a host: --backend sim has nothing to measure (use --backend kvm)"
        ))),
    }
}

/// Prints two calibrations' shared measured figures side by side; true
/// when every pair agrees within its stated spreads.
fn compare(new: &Profile, old_path: &Path) -> Result<bool, UsageError> {
    let old = Profile::load(&old_path.to_string_lossy())?;
    let rows = agreement(new, &old);
    say!("\nagainst {} (agree: |difference| <= the sum of the two spreads):", old_path.display());
    say!("{:<28} {:>22} {:>22} {:>8}", "figure (cycles)", "this calibration", "the other", "");
    for r in &rows {
        let verdict = if r.agree { "agree" } else { "DIFFER" };
        say!(
            "{:<28} {:>22} {:>22} {:>8}",
            r.key,
            format!("{:.2} +- {:.2}", r.a.0, r.a.1),
            format!("{:.2} +- {:.2}", r.b.0, r.b.1),
            verdict
        );
    }
    let differ = rows.iter().filter(|r| !r.agree).count();
    say!("{} of {} measured figures agree", rows.len() - differ, rows.len());
    Ok(differ == 0)
}

/// `exitlab calibrate`.
pub fn calibrate(
    backend: Backend,
    device: Option<PathBuf>,
    out: Option<PathBuf>,
    (rounds, span): (&str, &str),
    name: &str,
    against: Option<PathBuf>,
) -> Result<ExitCode, UsageError> {
    only_kvm("calibrate", backend)?;
    let rounds = args::whole("--rounds", rounds, 2, 50)? as usize;
    let span = Duration::from_secs(args::whole("--span", span, 0, 3600)?);
    if name.trim().is_empty() {
        return Err(UsageError("--name: a profile needs a name".into()));
    }
    let opts = Options { device, rounds, span, name: name.to_string(), limit: Duration::from_secs(30) };
    let c = run_calibration(&opts, &mut |line| eprintln!("{line}")).map_err(UsageError)?;
    match &out {
        Some(path) => {
            exitlab_lab::output::write_file_atomically(path, c.text.as_bytes())?;
            say!("{} figures measured ({}) -> {}", c.figures.len(), c.scheduling, path.display());
        }
        None => say_part!("{}", c.text),
    }
    let agree = match &against {
        Some(old) => compare(&c.profile, old)?,
        None => true,
    };
    Ok(if agree { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Prints `v` as the table: a row per workload, then the median and the
/// largest error.
fn table(v: &Validation) {
    say!("validate: profile `{}` on the simulator against this host's KVM ({})", v.profile, v.scheduling);
    say!("host: median of {} rounds per workload; exits: port I/O and MMIO in the measure phase", v.rounds);
    say!(
        "{:<26} {:>9} {:>9} {:>12} {:>12} {:>8}  {}",
        "workload",
        "exits sim",
        "host",
        "sim us/it",
        "host us/it",
        "error",
        "note"
    );
    for w in &v.workloads {
        let us = |x: Option<f64>| x.map_or("-".to_string(), |ns| format!("{:.2}", ns / 1000.0));
        let err = w.error_pct.map_or("-".to_string(), |e| format!("{e:+.1}%"));
        let host_exits = w.exits_host.map_or("-".to_string(), |e| e.to_string());
        say!(
            "{:<26} {:>9} {:>9} {:>12} {:>12} {:>8}  {}",
            w.name,
            w.exits_sim.map_or("-".to_string(), |e| e.to_string()),
            host_exits,
            us(w.time_sim_ns),
            us(w.time_host_ns),
            err,
            w.note
        );
    }
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |e| format!("{e:.1}%"));
    say!(
        "median |error| {}, largest |error| {} ({} of {} workloads compared; exit counts equal in {})",
        pct(v.median_error_pct),
        pct(v.max_error_pct),
        v.compared(),
        v.workloads.len(),
        v.exits_equal()
    );
}

/// `exitlab validate`.
pub fn validate(
    profile: &str,
    backend: Backend,
    device: Option<PathBuf>,
    rounds: &str,
    json: bool,
) -> Result<ExitCode, UsageError> {
    only_kvm("validate", backend)?;
    let p = Profile::load(profile)?;
    let rounds = args::whole("--rounds", rounds, 1, 50)? as usize;
    let v = run_validation(&p, device, rounds, Duration::from_secs(10), &mut |line| eprintln!("{line}"))
        .map_err(UsageError)?;
    if json {
        say!("{}", serde_json::to_string_pretty(&v.to_json()).expect("plain values serialize"));
    } else {
        table(&v);
    }
    Ok(ExitCode::SUCCESS)
}

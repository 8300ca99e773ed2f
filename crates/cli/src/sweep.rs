//! `exitlab run`, `exitlab report` and `exitlab merge`: a set (one
//! experiment, or the report) run whole, or one shard of it written as a
//! part for a scheduler's job array, and parts merged into the complete
//! set. The output directory is checked before anything runs, and every
//! set is published whole (exitlab_lab::output::publish).

use crate::UsageError;
use exitlab_lab::linux::Request;
use exitlab_lab::manifest::{HostSide, SetKind};
use exitlab_lab::output::{check_target, publish};
use exitlab_lab::part::{merge as merge_parts, run_whole, run_whole_report, Part, Whole};
use exitlab_lab::report::Machines;
use exitlab_lab::shard::Shard;
use exitlab_lab::Scenario;
use std::path::{Path, PathBuf};

/// `--shard I/N`, when given.
fn parse_shard(text: Option<&str>) -> Result<Option<Shard>, UsageError> {
    Ok(text.map(str::parse).transpose()?)
}

/// Where a set goes: `--out`, or `out/<name>` (`out/<name>-shard-I-of-N`
/// for a part).
fn target(out: Option<PathBuf>, name: &str, shard: Option<Shard>) -> PathBuf {
    out.unwrap_or_else(|| match shard {
        Some(s) => PathBuf::from("out").join(format!("{name}-shard-{}-of-{}", s.index, s.count)),
        None => PathBuf::from("out").join(name),
    })
}

/// Runs shard `shard` of the set (a report's host side as `host` says,
/// its Linux section as `linux` asks in shard 0) and publishes it as a
/// part at `dir`.
fn run_part(
    set: SetKind,
    scenarios: &[Scenario],
    full: bool,
    shard: Shard,
    host: Option<(HostSide, &Request)>,
    dir: &Path,
) -> Result<(), UsageError> {
    let part = match host {
        Some((host, linux)) => Part::run_report(scenarios, full, shard, host, Some(linux)),
        None => Part::run(set, scenarios, full, shard),
    }
    .map_err(UsageError)?;
    publish(dir, |d| part.write(d)).map_err(UsageError)?;
    let m = &part.manifest;
    let held: usize = m.experiments.iter().map(|e| e.points.len() + e.host_points.len()).sum::<usize>()
        + usize::from(m.e8)
        + usize::from(m.e8_host)
        + usize::from(m.linux);
    let (name, what) = match set {
        SetKind::Run => (m.names(), "points"),
        SetKind::Report => ("report".to_string(), "units"),
    };
    say!("{name}: shard {shard}: {held} {what} -> {} (exitlab merge puts the shards together)", dir.display());
    Ok(())
}

/// Publishes a complete set and says what it holds and what it shows.
fn publish_whole(whole: &Whole, dir: &Path, parts: Option<usize>) -> Result<(), UsageError> {
    publish(dir, |d| whole.write(d)).map_err(UsageError)?;
    let from = parts.map_or(String::new(), |n| format!(" from {n} part(s)"));
    match whole.set {
        SetKind::Run => {
            for r in &whole.experiments {
                say!("{}: {} points{from} -> {}", r.scenario.name, r.points.len(), dir.display());
                say!("{}", exitlab_lab::reading::reading(r));
            }
        }
        SetKind::Report => {
            let n = whole.experiments.len();
            say!("report of {n} experiment(s){from} -> {}", dir.join("report.html").display());
            for r in &whole.experiments {
                say!("{}: {}", r.scenario.name, exitlab_lab::reading::reading(r));
            }
            if let Some(linux) = &whole.linux {
                say!("linux: {}", exitlab_lab::linux::summary(linux));
            }
        }
    }
    Ok(())
}

/// `exitlab run`: the scenario `s` (already edited by `--set` and
/// `--backend`), whole or one shard.
pub fn run(s: &Scenario, full: bool, shard: Option<&str>, out: Option<PathBuf>) -> Result<(), UsageError> {
    let shard = parse_shard(shard)?;
    let dir = target(out, &s.name, shard);
    check_target(&dir).map_err(UsageError)?;
    let scenarios = std::slice::from_ref(s);
    match shard {
        Some(shard) => run_part(SetKind::Run, scenarios, full, shard, None, &dir),
        None => publish_whole(&run_whole(SetKind::Run, scenarios, full).map_err(UsageError)?, &dir, None),
    }
}

/// `exitlab report`: every built-in experiment and E8, on the machines
/// `backend` names (`sim` or `sim,kvm`; default: the host's KVM beside
/// the simulator where it is usable, said once where not), whole or one
/// shard; `profiles` join the built-in ones wherever an experiment sweeps
/// them and the Linux section's boots (the kernel in `linux`; shard 0 of
/// a sharded report runs that section).
pub fn report(
    full: bool,
    backend: Option<&str>,
    shard: Option<&str>,
    out: Option<PathBuf>,
    profiles: &[String],
    linux: &Path,
) -> Result<(), UsageError> {
    let machines = backend.map_or(Ok(Machines::Auto), Machines::parse)?;
    let shard = parse_shard(shard)?;
    for p in profiles {
        exitlab_sim::profile::Profile::load(p)?;
    }
    let dir = target(out, "report", shard);
    check_target(&dir).map_err(UsageError)?;
    let scenarios =
        exitlab_lab::report::with_profiles(exitlab_lab::report::experiments().map_err(UsageError)?, profiles);
    let host = machines.host_side()?;
    if let (HostSide::Alone(why), Machines::Auto) = (&host, machines) {
        say!("the simulator alone: {why}");
    }
    let linux = Request { dir: linux.to_path_buf(), profiles: profiles.to_vec() };
    match shard {
        Some(shard) => run_part(SetKind::Report, &scenarios, full, shard, Some((host, &linux)), &dir),
        None => publish_whole(&run_whole_report(&scenarios, full, host, Some(&linux)).map_err(UsageError)?, &dir, None),
    }
}

/// `exitlab merge`: the parts in `dirs` into the complete set at `out`
/// (default `out/<scenario>`, or `out/report`).
pub fn merge(dirs: &[PathBuf], out: Option<PathBuf>) -> Result<(), UsageError> {
    let parts = dirs.iter().map(|d| Part::read(d)).collect::<Result<Vec<_>, _>>().map_err(UsageError)?;
    let n = parts.len();
    let whole = merge_parts(parts).map_err(UsageError)?;
    let name = match whole.set {
        SetKind::Run => whole.experiments.first().map_or("run", |r| r.scenario.name.as_str()),
        SetKind::Report => "report",
    };
    let dir = target(out, name, None);
    publish_whole(&whole, &dir, Some(n))
}

//! Parts and merging. A set (one experiment, or the report) is a list of
//! units of work — every point of every experiment, and in the report E8's
//! suite and, when the host runs beside the simulator, every point of each
//! experiment's host side and E8 on the host — each keyed by what it is. A
//! shard runs the units `shard::deal` gives it and writes them as a part:
//! manifest.json, points.json (each point's axes, metrics and n/a reason;
//! metrics as the exact decimal text of the f64, Rust's shortest
//! round-trip form, so nothing is lost on the way) and, when it holds E8,
//! e8.json (e8-host.json for the host's cases). `merge` checks that the parts are
//! of one set and that every unit is held exactly once, and puts the
//! complete set together. A run without `--shard` is the same path with
//! one shard of one (`run_whole`), so a merged set and an unsharded one
//! are written by the same code from the same values. A report's Linux
//! section (crates/lab/src/linux) is not dealt: it is one heavy unit that
//! shard 0 runs after its other units and holds as linux.json.

use crate::manifest::{definition_digest, Entry, HostSide, Manifest, SetKind, FILE};
use crate::measure::{run_points, PointResult, Results};
use crate::output::{write_file, write_results};
use crate::scenario::Scenario;
use crate::shard::{deal, point_key, Shard};
use exitlab_arch::input::read_limited;
use exitlab_vmm::check::{CaseResult, CASES};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const POINTS: &str = "points.json";

/// The most bytes one file of a part may have: a report's points are a
/// few MiB; a file far past that is not a part this exitlab wrote.
const MAX_PART_FILE: u64 = 256 << 20;
const E8: &str = "e8.json";
const E8_HOST: &str = "e8-host.json";
const LINUX: &str = "linux.json";

/// Why a report run with [`Part::run`] has no host side.
pub const SIM_ALONE: &str = "the report was asked for the simulator alone";

/// E8's results: (profile, case result).
pub type E8Results = Vec<(String, CaseResult)>;

/// The results of one shard of a set.
pub struct Part {
    /// Where the part came from, for messages: its directory, or "this run".
    pub origin: String,
    pub manifest: Manifest,
    /// Per experiment of the manifest, the points the part holds, in sweep
    /// order.
    pub points: Vec<Vec<PointResult>>,
    /// Per experiment, the points of its host side the part holds.
    pub host_points: Vec<Vec<PointResult>>,
    /// E8's results, when the part holds them.
    pub e8: Option<E8Results>,
    /// E8's results on the host, when the part holds them.
    pub e8_host: Option<Vec<CaseResult>>,
    /// The report's Linux section, in shard 0's part of a report.
    pub linux: Option<crate::linux::Section>,
}

/// A complete set, ready to be written.
pub struct Whole {
    pub set: SetKind,
    pub full: bool,
    /// Every experiment's results, every point in sweep order.
    pub experiments: Vec<Results>,
    /// E8's results (the report).
    pub e8: Option<E8Results>,
    /// The report's host side, or why the simulator ran alone (`None` for
    /// one experiment's set).
    pub host: Option<Result<HostResults, String>>,
    /// The report's Linux section (`None` for one experiment's set).
    pub linux: Option<crate::linux::Section>,
}

/// What a report ran on this host's KVM.
pub struct HostResults {
    /// Per experiment: its host side's results, or why the host does not
    /// run it.
    pub experiments: Vec<Result<Results, String>>,
    /// E8's cases on the host.
    pub e8: Vec<CaseResult>,
}

/// A point's axis values.
type Axes = Vec<(String, String)>;

/// A unit of work of a set: a point of an experiment (of its host side
/// with `host`), or E8's suite (on the host with `host`).
enum Unit {
    Point { experiment: usize, axes: Axes, host: bool },
    E8 { host: bool },
}

/// A unit's key: the point's key, prefixed `<experiment>/` in a report
/// (`<experiment>/host/` on the host).
fn unit_key(set: SetKind, experiment: &str, point: &str, host: bool) -> String {
    match (set, host) {
        (SetKind::Run, _) => point.to_string(),
        (SetKind::Report, false) => format!("{experiment}/{point}"),
        (SetKind::Report, true) => format!("{experiment}/host/{point}"),
    }
}

/// Each experiment's host side (`None` where its plan skips the host), or
/// an error naming a host side that does not hold together.
fn host_scenarios(scenarios: &[Scenario]) -> Result<Vec<Option<Scenario>>, String> {
    scenarios.iter().map(|s| crate::host::scenario(s).transpose()).collect()
}

/// Every unit of a set with its key: each experiment's points in sweep
/// order, then, in a report, E8 (`e8`); with `hosts` (a report beside the
/// host), each host side's points after its experiment's and E8 on the
/// host (`e8/host`) last.
fn units(set: SetKind, scenarios: &[Scenario], full: bool, hosts: Option<&[Option<Scenario>]>) -> Vec<(String, Unit)> {
    let mut out = Vec::new();
    for (experiment, s) in scenarios.iter().enumerate() {
        for axes in s.points(full) {
            out.push((unit_key(set, &s.name, &point_key(&axes), false), Unit::Point { experiment, axes, host: false }));
        }
        if let Some(h) = hosts.and_then(|h| h[experiment].as_ref()) {
            for axes in h.points(full) {
                let key = unit_key(set, &s.name, &point_key(&axes), true);
                out.push((key, Unit::Point { experiment, axes, host: true }));
            }
        }
    }
    if set == SetKind::Report {
        out.push(("e8".to_string(), Unit::E8 { host: false }));
        if hosts.is_some() {
            out.push(("e8/host".to_string(), Unit::E8 { host: true }));
        }
    }
    out
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointRecord {
    axes: Vec<(String, String)>,
    metrics: BTreeMap<String, String>,
    na: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentRecord {
    scenario: String,
    points: Vec<PointRecord>,
    /// Points of the experiment's host side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    host: Vec<PointRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRecord {
    profile: String,
    case: String,
    pass: bool,
    expected: String,
    got: String,
}

impl PointRecord {
    fn of(p: &PointResult) -> PointRecord {
        PointRecord {
            axes: p.axes.clone(),
            metrics: p.metrics.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect(),
            na: p.na.clone(),
        }
    }

    /// The point back; an error naming the part, `file` and `scenario` when a
    /// metric is not a number.
    fn result(self, origin: &str, scenario: &str) -> Result<PointResult, String> {
        let mut metrics = BTreeMap::new();
        for (name, text) in self.metrics {
            let v = text.parse::<f64>().map_err(|_| {
                format!("part {origin}: {POINTS}: {scenario} metric `{name}` = `{text}` is not a number")
            })?;
            metrics.insert(name, v);
        }
        Ok(PointResult { axes: self.axes, metrics, na: self.na })
    }
}

impl CaseRecord {
    fn of(profile: &str, r: &CaseResult) -> CaseRecord {
        CaseRecord {
            profile: profile.to_string(),
            case: r.name.to_string(),
            pass: r.pass,
            expected: r.expected.clone(),
            got: r.got.clone(),
        }
    }

    /// The case back (its name is one of [`CASES`]'s); an error naming the
    /// part and `file` when it is not.
    fn result(self, origin: &str, file: &str) -> Result<(String, CaseResult), String> {
        let name = CASES.iter().find(|k| k.name == self.case).map(|k| k.name);
        let name = name.ok_or_else(|| format!("part {origin}: {file}: no E8 case is named `{}`", self.case))?;
        Ok((self.profile, CaseResult { name, expected: self.expected, got: self.got, pass: self.pass }))
    }
}

/// E8's cases in `dir/file`, as a part wrote them.
fn read_cases(dir: &Path, origin: &str, file: &str) -> Result<E8Results, String> {
    let text =
        read_limited(&dir.join(file), MAX_PART_FILE).map_err(|e| format!("part {origin}: cannot read {file}: {e}"))?;
    let cases: Vec<CaseRecord> = serde_json::from_str(&text).map_err(|e| format!("part {origin}: {file}: {e}"))?;
    cases.into_iter().map(|c| c.result(origin, file)).collect()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("plain records serialize");
    text.push('\n');
    text.into_bytes()
}

impl Part {
    /// Runs the units of `scenarios` (one for `SetKind::Run`, the built-in
    /// ones in report order for `SetKind::Report`) that `shard` holds, on
    /// the simulator alone. A point costs what it costs in a whole run:
    /// each runs alone, as there.
    pub fn run(set: SetKind, scenarios: &[Scenario], full: bool, shard: Shard) -> Result<Part, String> {
        let host = (set == SetKind::Report).then(|| HostSide::Alone(SIM_ALONE.to_string()));
        Part::run_units(set, scenarios, full, shard, host, None)
    }

    /// Runs the units of the report over `scenarios` that `shard` holds,
    /// with the host's side when `host` says so, and in shard 0 the Linux
    /// section `linux` asks for.
    pub fn run_report(
        scenarios: &[Scenario],
        full: bool,
        shard: Shard,
        host: HostSide,
        linux: Option<&crate::linux::Request>,
    ) -> Result<Part, String> {
        Part::run_units(SetKind::Report, scenarios, full, shard, Some(host), linux)
    }

    fn run_units(
        set: SetKind,
        scenarios: &[Scenario],
        full: bool,
        shard: Shard,
        host: Option<HostSide>,
        linux: Option<&crate::linux::Request>,
    ) -> Result<Part, String> {
        let hosts = match host {
            Some(HostSide::Kvm) => Some(host_scenarios(scenarios)?),
            _ => None,
        };
        let units = units(set, scenarios, full, hosts.as_deref());
        let keys: Vec<String> = units.iter().map(|(k, _)| k.clone()).collect();
        // Per experiment, the points chosen on the simulator and on the host.
        let mut chosen: Vec<[Vec<Axes>; 2]> = vec![Default::default(); scenarios.len()];
        let (mut e8, mut e8_host) = (false, false);
        for i in deal(&keys, shard) {
            match &units[i].1 {
                Unit::Point { experiment, axes, host } => chosen[*experiment][usize::from(*host)].push(axes.clone()),
                Unit::E8 { host: false } => e8 = true,
                Unit::E8 { host: true } => e8_host = true,
            }
        }
        // Definitions first: a scenario that cannot be recorded fails before hours of runs.
        let mut entries = Vec::new();
        for (s, [sim, on_host]) in scenarios.iter().zip(&chosen) {
            let mut e = Entry::new(s, full, sim.iter().map(|a| point_key(a)).collect())?;
            e.host_points = on_host.iter().map(|a| point_key(a)).collect();
            entries.push(e);
        }
        let mut points = Vec::new();
        let mut host_points = Vec::new();
        for (i, (s, [sim, on_host])) in scenarios.iter().zip(chosen).enumerate() {
            points.push(run_points(s, full, sim).points);
            host_points.push(match hosts.as_ref().and_then(|h| h[i].as_ref()) {
                Some(h) if !on_host.is_empty() => crate::host::run_points(s, h, full, on_host).points,
                _ => Vec::new(),
            });
        }
        let e8 = if e8 { Some(crate::precise::run()?) } else { None };
        let e8_host = if e8_host { Some(crate::precise::run_host()?) } else { None };
        // Last, so that its boots do not share the cores with the host's timed runs.
        let linux = (set == SetKind::Report && shard.index == 0).then(|| crate::linux::section(linux));
        let mut manifest = Manifest::new(set, Some(shard), full, entries, e8.is_some());
        manifest.host = host;
        manifest.e8_host = e8_host.is_some();
        manifest.linux = linux.is_some();
        Ok(Part { origin: "this run".to_string(), manifest, points, host_points, e8, e8_host, linux })
    }

    /// Writes the part into `dir`, a directory of a set being published.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let records: Vec<ExperimentRecord> = (self.manifest.experiments.iter().zip(&self.points))
            .zip(&self.host_points)
            .map(|((e, points), host)| ExperimentRecord {
                scenario: e.scenario.clone(),
                points: points.iter().map(PointRecord::of).collect(),
                host: host.iter().map(PointRecord::of).collect(),
            })
            .collect();
        write_file(dir, POINTS, &to_json(&records))?;
        if let Some(e8) = &self.e8 {
            let cases: Vec<CaseRecord> = e8.iter().map(|(profile, r)| CaseRecord::of(profile, r)).collect();
            write_file(dir, E8, &to_json(&cases))?;
        }
        if let Some(e8) = &self.e8_host {
            let cases: Vec<CaseRecord> = e8.iter().map(|r| CaseRecord::of("kvm", r)).collect();
            write_file(dir, E8_HOST, &to_json(&cases))?;
        }
        if let Some(linux) = &self.linux {
            write_file(dir, LINUX, &to_json(linux))?;
        }
        write_file(dir, FILE, self.manifest.to_json().as_bytes())
    }

    /// Reads the part in `dir`. Errors, one line naming the part: no
    /// manifest, another exitlab version, a complete set instead of a part,
    /// files that do not match the manifest.
    pub fn read(dir: &Path) -> Result<Part, String> {
        let origin = dir.display().to_string();
        let manifest = read_manifest(dir, &origin)?;
        let text = read_limited(&dir.join(POINTS), MAX_PART_FILE)
            .map_err(|e| format!("part {origin}: cannot read {POINTS}: {e}"))?;
        let records: Vec<ExperimentRecord> =
            serde_json::from_str(&text).map_err(|e| format!("part {origin}: {POINTS}: {e}"))?;
        let keys = |points: &[PointRecord]| points.iter().map(|p| point_key(&p.axes)).collect::<Vec<_>>();
        let listed = |e: &Entry, r: &ExperimentRecord| {
            e.scenario == r.scenario && e.points == keys(&r.points) && e.host_points == keys(&r.host)
        };
        if records.len() != manifest.experiments.len()
            || !manifest.experiments.iter().zip(&records).all(|(e, r)| listed(e, r))
        {
            return Err(format!("part {origin}: {POINTS} does not hold the points its {FILE} lists"));
        }
        let (mut points, mut host_points) = (Vec::new(), Vec::new());
        for r in records {
            let back = |list: Vec<PointRecord>| -> Result<Vec<PointResult>, String> {
                list.into_iter().map(|p| p.result(&origin, &r.scenario)).collect()
            };
            points.push(back(r.points)?);
            host_points.push(back(r.host)?);
        }
        let e8 = manifest.e8.then(|| read_cases(dir, &origin, E8)).transpose()?;
        let e8_host = manifest.e8_host.then(|| read_cases(dir, &origin, E8_HOST)).transpose()?;
        let e8_host = e8_host.map(|cases| cases.into_iter().map(|(_, r)| r).collect());
        let linux = manifest
            .linux
            .then(|| {
                let text = read_limited(&dir.join(LINUX), MAX_PART_FILE)
                    .map_err(|e| format!("part {origin}: cannot read {LINUX}: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("part {origin}: {LINUX}: {e}"))
            })
            .transpose()?;
        Ok(Part { origin, manifest, points, host_points, e8, e8_host, linux })
    }

    fn shard(&self) -> Result<Shard, String> {
        let text = self.manifest.shard.as_deref().unwrap_or_default();
        text.parse().map_err(|e| format!("part {}: {FILE}: {e}", self.origin))
    }

    /// The keys of the units the part holds, as its manifest lists them.
    fn held(&self) -> Result<BTreeSet<String>, String> {
        let m = &self.manifest;
        let mut held = BTreeSet::new();
        let listed = m.experiments.iter().flat_map(|e| {
            let sim = e.points.iter().map(|k| unit_key(m.set, &e.scenario, k, false));
            sim.chain(e.host_points.iter().map(|k| unit_key(m.set, &e.scenario, k, true)))
        });
        let e8 = [(m.e8, "e8"), (m.e8_host, "e8/host")].into_iter().filter(|(held, _)| *held);
        for key in listed.chain(e8.map(|(_, k)| k.to_string())) {
            if !held.insert(key.clone()) {
                return Err(format!("part {} lists {key} twice", self.origin));
            }
        }
        Ok(held)
    }
}

/// The manifest of the part in `dir`: this exitlab's, and a part's.
fn read_manifest(dir: &Path, origin: &str) -> Result<Manifest, String> {
    let text = read_limited(&dir.join(FILE), MAX_PART_FILE)
        .map_err(|e| format!("{origin} is not an exitlab part: cannot read its {FILE}: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("part {origin}: {FILE}: {e}"))?;
    // The version first: another version's manifest may have other fields.
    match value.get("exitlab").and_then(|v| v.as_str()) {
        Some(v) if v == crate::manifest::VERSION => {}
        Some(v) => {
            return Err(format!(
                "part {origin} was written by exitlab {v}; this is exitlab {}",
                crate::manifest::VERSION
            ))
        }
        None => return Err(format!("{origin} is not an exitlab part: its {FILE} names no exitlab version")),
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| format!("part {origin}: {FILE}: {e}"))?;
    if manifest.shard.is_none() {
        return Err(format!(
            "{origin} is a complete {} set, not a part (merge takes what runs with --shard write)",
            manifest.set.name()
        ));
    }
    Ok(manifest)
}

/// Checks that `part` belongs with `first`: the same kind of set, the same
/// experiments with the same definitions at the same size, the same number
/// of shards. Each definition must match its digest.
fn check_alike(part: &Part, first: &Part) -> Result<(), String> {
    let (m, m0, o, o0) = (&part.manifest, &first.manifest, &part.origin, &first.origin);
    for e in &m.experiments {
        if e.digest != definition_digest(&e.definition, m.full) {
            return Err(format!("part {o}: the definition of {} does not match its digest {}", e.scenario, e.digest));
        }
    }
    if m.set != m0.set {
        return Err(format!("part {o} is a {} part, but part {o0} is a {} part", m.set.name(), m0.set.name()));
    }
    if m.names() != m0.names() {
        return Err(format!("part {o} is of scenario {}, but part {o0} is of {}", m.names(), m0.names()));
    }
    let size = |full: bool| if full { "full-size" } else { "quick" };
    if m.full != m0.full {
        return Err(format!("part {o} is a {} run, but part {o0} is a {} one", size(m.full), size(m0.full)));
    }
    for (e, e0) in m.experiments.iter().zip(&m0.experiments) {
        if e.definition != e0.definition {
            return Err(format!(
                "part {o} ran {} with other parameters (digest {}) than part {o0} (digest {})",
                e.scenario, e.digest, e0.digest
            ));
        }
    }
    let beside = |m: &Manifest| matches!(m.host, Some(HostSide::Kvm));
    if beside(m) != beside(m0) {
        let ran = |m: &Manifest| if beside(m) { "beside this host's KVM" } else { "on the simulator alone" };
        return Err(format!("part {o} ran the report {}, but part {o0} ran it {}", ran(m), ran(m0)));
    }
    let (shard, count) = (part.shard()?, first.shard()?.count);
    if shard.count != count {
        return Err(format!("part {o} is shard {shard}, but part {o0} is one of {count} shards"));
    }
    Ok(())
}

/// Merges `parts` into the complete set. Errors, one line naming the part
/// (or the missing shard): parts of another kind of set, scenario, size,
/// definition or number of shards than the first part; a shard given
/// twice; a shard missing; a part holding other units than its shard's.
pub fn merge(parts: Vec<Part>) -> Result<Whole, String> {
    let first = parts.first().ok_or_else(|| "merge needs at least one part".to_string())?;
    let count = first.shard()?.count;
    let mut holders: BTreeMap<usize, &Part> = BTreeMap::new();
    for p in &parts {
        check_alike(p, first)?;
        let shard = p.shard()?;
        if let Some(other) = holders.insert(shard.index, p) {
            return Err(format!(
                "part {} is shard {shard}, and so is part {}: each shard merges once",
                p.origin, other.origin
            ));
        }
    }
    let missing: Vec<String> =
        (0..count).filter(|i| !holders.contains_key(i)).map(|index| Shard { index, count }.to_string()).collect();
    match missing.as_slice() {
        [] => {}
        [one] => return Err(format!("shard {one} is missing: no part given holds it")),
        many => return Err(format!("shards {} are missing: no part given holds them", many.join(", "))),
    }
    let (set, full) = (first.manifest.set, first.manifest.full);
    let m0 = &first.manifest;
    let scenarios = m0
        .experiments
        .iter()
        .map(|e| Scenario::parse(&format!("{}/{FILE} ({})", first.origin, e.scenario), &e.definition).map_err(|e| e.0))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = match m0.host {
        Some(HostSide::Kvm) => Some(host_scenarios(&scenarios)?),
        _ => None,
    };
    let host_alone = match &m0.host {
        Some(HostSide::Alone(why)) => Some(why.clone()),
        _ => None,
    };
    let keys: Vec<String> = units(set, &scenarios, full, hosts.as_deref()).into_iter().map(|(k, _)| k).collect();
    for (&index, p) in &holders {
        let shard = Shard { index, count };
        let dealt: BTreeSet<String> = deal(&keys, shard).into_iter().map(|i| keys[i].clone()).collect();
        let held = p.held()?;
        if let Some(k) = held.difference(&dealt).next() {
            return Err(format!("part {} holds {k}, which is not a unit of shard {shard}", p.origin));
        }
        if let Some(k) = dealt.difference(&held).next() {
            return Err(format!("part {} lacks {k}, a unit of shard {shard}", p.origin));
        }
        let linux_here = set == SetKind::Report && index == 0;
        if p.manifest.linux != linux_here {
            let (does, should) = if linux_here { ("lacks", "holds") } else { ("holds", "lacks") };
            return Err(format!("part {} {does} the report's Linux section, which shard {shard} {should}", p.origin));
        }
    }
    let mut found: Vec<[BTreeMap<String, PointResult>; 2]> = vec![Default::default(); scenarios.len()];
    let (mut e8, mut e8_host, mut linux) = (None, None, None);
    for p in parts {
        for (i, (points, host)) in p.points.into_iter().zip(p.host_points).enumerate() {
            found[i][0].extend(points.into_iter().map(|r| (point_key(&r.axes), r)));
            found[i][1].extend(host.into_iter().map(|r| (point_key(&r.axes), r)));
        }
        e8 = e8.or(p.e8);
        e8_host = e8_host.or(p.e8_host);
        linux = linux.or(p.linux);
    }
    let mut experiments = Vec::new();
    let mut host_experiments = Vec::new();
    for (i, (s, [sim, on_host])) in scenarios.into_iter().zip(found).enumerate() {
        if let Some(hosts) = &hosts {
            host_experiments.push(match &hosts[i] {
                Some(h) => Ok(in_sweep_order(h.clone(), full, on_host)?),
                None => Err(crate::host::skip_reason(&s)),
            });
        }
        experiments.push(in_sweep_order(s, full, sim)?);
    }
    let host = match (hosts, host_alone) {
        (Some(_), _) => Some(Ok(HostResults { experiments: host_experiments, e8: e8_host.unwrap_or_default() })),
        (None, Some(why)) => Some(Err(why)),
        (None, None) => None,
    };
    Ok(Whole { set, full, experiments, e8, host, linux })
}

/// `s`'s results from the points `found` (by key), in sweep order.
fn in_sweep_order(s: Scenario, full: bool, mut found: BTreeMap<String, PointResult>) -> Result<Results, String> {
    let points = s
        .points(full)
        .iter()
        .map(|axes| found.remove(&point_key(axes)).ok_or_else(|| format!("no part holds {}", point_key(axes))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Results { scenario: s, full, points })
}

/// Runs a whole set on the simulator alone: one shard of one, merged.
pub fn run_whole(set: SetKind, scenarios: &[Scenario], full: bool) -> Result<Whole, String> {
    merge(vec![Part::run(set, scenarios, full, Shard::WHOLE)?])
}

/// Runs the whole report over `scenarios`, with the host's side when
/// `host` says so and the Linux section `linux` asks for: one shard of
/// one, merged.
pub fn run_whole_report(
    scenarios: &[Scenario],
    full: bool,
    host: HostSide,
    linux: Option<&crate::linux::Request>,
) -> Result<Whole, String> {
    merge(vec![Part::run_report(scenarios, full, Shard::WHOLE, host, linux)?])
}

impl Whole {
    /// Writes the complete set into `dir`, a directory of a set being
    /// published: one experiment's files, or the report.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        match (self.set, self.experiments.as_slice(), &self.e8, &self.host, &self.linux) {
            (SetKind::Run, [r], _, _, _) => write_results(r, dir),
            (SetKind::Report, all, Some(e8), Some(host), Some(linux)) => {
                crate::report::write(all, e8, host, self.full, linux, dir)
            }
            _ => Err(format!("a {} set without its results cannot be written", self.set.name())),
        }
    }
}

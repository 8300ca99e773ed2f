//! Parts and merging. A set (one experiment, or the report) is a list of
//! units of work — every point of every experiment, and in the report E8's
//! suite — each keyed by what it is. A shard runs the units `shard::deal`
//! gives it and writes them as a part: manifest.json, points.json (each
//! point's axes, metrics and n/a reason; metrics as the exact decimal text
//! of the f64, Rust's shortest round-trip form, so nothing is lost on the
//! way) and, when it holds E8, e8.json. `merge` checks that the parts are
//! of one set and that every unit is held exactly once, and puts the
//! complete set together. A run without `--shard` is the same path with
//! one shard of one (`run_whole`), so a merged set and an unsharded one
//! are written by the same code from the same values.

use crate::manifest::{definition_digest, Entry, Manifest, SetKind, FILE};
use crate::measure::{run_points, PointResult, Results};
use crate::output::{write_file, write_results};
use crate::scenario::Scenario;
use crate::shard::{deal, point_key, Shard};
use exitlab_vmm::check::{CaseResult, CASES};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const POINTS: &str = "points.json";
const E8: &str = "e8.json";

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
    /// E8's results, when the part holds them.
    pub e8: Option<E8Results>,
}

/// A complete set, ready to be written.
pub struct Whole {
    pub set: SetKind,
    pub full: bool,
    /// Every experiment's results, every point in sweep order.
    pub experiments: Vec<Results>,
    /// E8's results (the report).
    pub e8: Option<E8Results>,
}

/// A unit of work of a set.
enum Unit {
    Point { experiment: usize, axes: Vec<(String, String)> },
    E8,
}

/// A unit's key: the point's key, prefixed `<experiment>/` in a report.
fn unit_key(set: SetKind, experiment: &str, point: &str) -> String {
    match set {
        SetKind::Run => point.to_string(),
        SetKind::Report => format!("{experiment}/{point}"),
    }
}

/// Every unit of a set with its key: each experiment's points in sweep
/// order, then, in a report, E8 (`e8`).
fn units(set: SetKind, scenarios: &[Scenario], full: bool) -> Vec<(String, Unit)> {
    let mut out = Vec::new();
    for (experiment, s) in scenarios.iter().enumerate() {
        for axes in s.points(full) {
            out.push((unit_key(set, &s.name, &point_key(&axes)), Unit::Point { experiment, axes }));
        }
    }
    if set == SetKind::Report {
        out.push(("e8".to_string(), Unit::E8));
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

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("plain records serialize");
    text.push('\n');
    text.into_bytes()
}

impl Part {
    /// Runs the units of `scenarios` (one for `SetKind::Run`, the built-in
    /// ones in report order for `SetKind::Report`) that `shard` holds. A
    /// point costs what it costs in a whole run: each runs alone, as there.
    pub fn run(set: SetKind, scenarios: &[Scenario], full: bool, shard: Shard) -> Result<Part, String> {
        let units = units(set, scenarios, full);
        let keys: Vec<String> = units.iter().map(|(k, _)| k.clone()).collect();
        let mut chosen: Vec<Vec<Vec<(String, String)>>> = vec![Vec::new(); scenarios.len()];
        let mut e8 = false;
        for i in deal(&keys, shard) {
            match &units[i].1 {
                Unit::Point { experiment, axes } => chosen[*experiment].push(axes.clone()),
                Unit::E8 => e8 = true,
            }
        }
        // Definitions first: a scenario that cannot be recorded fails before hours of runs.
        let entries = scenarios
            .iter()
            .zip(&chosen)
            .map(|(s, axes)| Entry::new(s, full, axes.iter().map(|a| point_key(a)).collect()))
            .collect::<Result<Vec<_>, _>>()?;
        let points = scenarios.iter().zip(chosen).map(|(s, axes)| run_points(s, full, axes).points).collect();
        let e8 = if e8 { Some(crate::precise::run()?) } else { None };
        let manifest = Manifest::new(set, Some(shard), full, entries, e8.is_some());
        Ok(Part { origin: "this run".to_string(), manifest, points, e8 })
    }

    /// Writes the part into `dir`, a directory of a set being published.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let records: Vec<ExperimentRecord> = self
            .manifest
            .experiments
            .iter()
            .zip(&self.points)
            .map(|(e, points)| ExperimentRecord {
                scenario: e.scenario.clone(),
                points: points
                    .iter()
                    .map(|p| PointRecord {
                        axes: p.axes.clone(),
                        metrics: p.metrics.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect(),
                        na: p.na.clone(),
                    })
                    .collect(),
            })
            .collect();
        write_file(dir, POINTS, &to_json(&records))?;
        if let Some(e8) = &self.e8 {
            let cases: Vec<CaseRecord> = e8
                .iter()
                .map(|(profile, r)| CaseRecord {
                    profile: profile.clone(),
                    case: r.name.to_string(),
                    pass: r.pass,
                    expected: r.expected.clone(),
                    got: r.got.clone(),
                })
                .collect();
            write_file(dir, E8, &to_json(&cases))?;
        }
        write_file(dir, FILE, self.manifest.to_json().as_bytes())
    }

    /// Reads the part in `dir`. Errors, one line naming the part: no
    /// manifest, another exitlab version, a complete set instead of a part,
    /// files that do not match the manifest.
    pub fn read(dir: &Path) -> Result<Part, String> {
        let origin = dir.display().to_string();
        let text = std::fs::read_to_string(dir.join(FILE))
            .map_err(|e| format!("{origin} is not an exitlab part: cannot read its {FILE}: {e}"))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("part {origin}: {FILE}: {e}"))?;
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
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| format!("part {origin}: cannot read {name}: {e}"))
        };
        let records: Vec<ExperimentRecord> =
            serde_json::from_str(&read(POINTS)?).map_err(|e| format!("part {origin}: {POINTS}: {e}"))?;
        let listed = |e: &Entry, r: &ExperimentRecord| {
            e.scenario == r.scenario
                && e.points.iter().eq(r.points.iter().map(|p| point_key(&p.axes)).collect::<Vec<_>>().iter())
        };
        if records.len() != manifest.experiments.len()
            || !manifest.experiments.iter().zip(&records).all(|(e, r)| listed(e, r))
        {
            return Err(format!("part {origin}: {POINTS} does not hold the points its {FILE} lists"));
        }
        let mut points = Vec::new();
        for r in records {
            let mut results = Vec::new();
            for p in r.points {
                let mut metrics = BTreeMap::new();
                for (name, text) in p.metrics {
                    let v = text.parse::<f64>().map_err(|_| {
                        format!("part {origin}: {POINTS}: {} metric `{name}` = `{text}` is not a number", r.scenario)
                    })?;
                    metrics.insert(name, v);
                }
                results.push(PointResult { axes: p.axes, metrics, na: p.na });
            }
            points.push(results);
        }
        let e8 = match manifest.e8 {
            false => None,
            true => {
                let cases: Vec<CaseRecord> =
                    serde_json::from_str(&read(E8)?).map_err(|e| format!("part {origin}: {E8}: {e}"))?;
                let case = |c: CaseRecord| {
                    let name = CASES.iter().find(|k| k.name == c.case).map(|k| k.name);
                    let name = name.ok_or_else(|| format!("part {origin}: {E8}: no E8 case is named `{}`", c.case))?;
                    Ok((c.profile, CaseResult { name, expected: c.expected, got: c.got, pass: c.pass }))
                };
                Some(cases.into_iter().map(case).collect::<Result<Vec<_>, String>>()?)
            }
        };
        Ok(Part { origin, manifest, points, e8 })
    }

    fn shard(&self) -> Result<Shard, String> {
        let text = self.manifest.shard.as_deref().unwrap_or_default();
        text.parse().map_err(|e| format!("part {}: {FILE}: {e}", self.origin))
    }

    /// The keys of the units the part holds, as its manifest lists them.
    fn held(&self) -> Result<BTreeSet<String>, String> {
        let m = &self.manifest;
        let mut held = BTreeSet::new();
        let listed = m.experiments.iter().flat_map(|e| e.points.iter().map(|k| unit_key(m.set, &e.scenario, k)));
        for key in listed.chain(m.e8.then(|| "e8".to_string())) {
            if !held.insert(key.clone()) {
                return Err(format!("part {} lists {key} twice", self.origin));
            }
        }
        Ok(held)
    }
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
    let keys: Vec<String> = units(set, &scenarios, full).into_iter().map(|(k, _)| k).collect();
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
    }
    let mut found: Vec<BTreeMap<String, PointResult>> = vec![BTreeMap::new(); scenarios.len()];
    let mut e8 = None;
    for p in parts {
        for (i, points) in p.points.into_iter().enumerate() {
            found[i].extend(points.into_iter().map(|r| (point_key(&r.axes), r)));
        }
        e8 = e8.or(p.e8);
    }
    let mut experiments = Vec::new();
    for (s, mut found) in scenarios.into_iter().zip(found) {
        let points = s
            .points(full)
            .iter()
            .map(|axes| found.remove(&point_key(axes)).ok_or_else(|| format!("no part holds {}", point_key(axes))))
            .collect::<Result<Vec<_>, _>>()?;
        experiments.push(Results { scenario: s, full, points });
    }
    Ok(Whole { set, full, experiments, e8 })
}

/// Runs a whole set: one shard of one, merged.
pub fn run_whole(set: SetKind, scenarios: &[Scenario], full: bool) -> Result<Whole, String> {
    merge(vec![Part::run(set, scenarios, full, Shard::WHOLE)?])
}

impl Whole {
    /// Writes the complete set into `dir`, a directory of a set being
    /// published: one experiment's files, or the report.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        match (self.set, self.experiments.as_slice(), &self.e8) {
            (SetKind::Run, [r], _) => write_results(r, dir),
            (SetKind::Report, all, Some(e8)) => crate::report::write(all, e8, self.full, dir),
            _ => Err(format!("a {} set without its results cannot be written", self.set.name())),
        }
    }
}

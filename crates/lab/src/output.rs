//! Writing output sets: one experiment's results (results.csv,
//! results.json, one SVG per figure, summary.md, manifest.json), the
//! report, and the parts shards write. A set is written whole into a fresh
//! directory beside its final name and renamed into place, so a reader
//! finds the previous set whole, nothing, or the new set whole, never a
//! mixture (an interrupted run leaves no half set behind).

use crate::manifest::{Entry, Manifest, SetKind, FILE};
use crate::measure::{PointResult, Results};
use crate::plot::figure_svg;
use crate::reading::reading;
use crate::shard::point_key;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `dir/name` (inside a set being published) and syncs it.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `bytes` to the file `path` whole or not at all: into a fresh
/// file beside it (`.NAME.tmp-PID`), synced, then renamed over it. A
/// symbolic link is followed, so the file it points to is replaced and
/// the link stays. An existing path that is not a regular file (a
/// device such as /dev/full, a FIFO, a socket, a directory, or a link to
/// one) is refused: renaming over it would replace it.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let real = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => path.canonicalize().map_err(|e| cannot(&e))?,
        Ok(_) => return Err(cannot(&"it exists and is not a regular file (exitlab replaces only regular files)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::symlink_metadata(path) {
            Ok(_) => return Err(cannot(&"it is a symbolic link to nothing")),
            Err(_) => path.to_path_buf(),
        },
        Err(e) => return Err(cannot(&e)),
    };
    let (parent, name) = parent_and_name(&real)?;
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, &real));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        cannot(&e)
    })
}

/// `target`'s directory and name; `.` and `..` are resolved first, so a
/// set always has a name to be renamed to.
fn parent_and_name(target: &Path) -> Result<(PathBuf, OsString), String> {
    let resolved;
    let target = match target.file_name() {
        Some(_) => target,
        None => {
            resolved = target.canonicalize().map_err(|e| format!("cannot use {}: {e}", target.display()))?;
            &resolved
        }
    };
    let name = target.file_name().ok_or_else(|| format!("cannot write a set at {}", target.display()))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), name.to_os_string()))
}

/// Checks that a set can be published at `target`: nothing is there, or
/// an empty directory, or a set exitlab wrote (it has a manifest.json),
/// which the new set will replace. Anything else is refused, so a mistyped
/// `--out` never removes a user's files. Call it before a long run.
pub fn check_target(target: &Path) -> Result<(), String> {
    parent_and_name(target)?;
    match std::fs::read_dir(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot use {} as an output directory: {e}", target.display())),
        Ok(mut entries) => {
            if entries.next().is_none() || target.join(FILE).is_file() {
                Ok(())
            } else {
                Err(format!(
                    "{} exists and is not an exitlab output set (no {FILE}): remove it or choose another --out",
                    target.display()
                ))
            }
        }
    }
}

/// Publishes a set at `target`: `fill` writes it into a fresh directory
/// beside `target` (`.NAME.tmp-PID`), which then takes `target`'s place by
/// rename; a set already there (see `check_target`) moves aside first and
/// is removed after. On any error the fresh directory is removed and
/// `target` is left as it was.
pub fn publish(target: &Path, fill: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    check_target(target)?;
    let (parent, name) = parent_and_name(target)?;
    let name = name.to_string_lossy();
    std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let pid = std::process::id();
    let (tmp, old) = (parent.join(format!(".{name}.tmp-{pid}")), parent.join(format!(".{name}.old-{pid}")));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let cleanup = |e: String| {
        let _ = std::fs::remove_dir_all(&tmp);
        e
    };
    fill(&tmp).map_err(cleanup)?;
    let replacing = target.exists();
    if replacing {
        std::fs::rename(target, &old).map_err(|e| cleanup(format!("cannot move {} aside: {e}", target.display())))?;
    }
    if let Err(e) = std::fs::rename(&tmp, target) {
        if replacing {
            let _ = std::fs::rename(&old, target);
        }
        return Err(cleanup(format!("cannot write {}: {e}", target.display())));
    }
    if replacing {
        let _ = std::fs::remove_dir_all(&old);
    }
    // The renames reach the disk with the directory that holds them.
    let _ = std::fs::File::open(&parent).and_then(|d| d.sync_all());
    Ok(())
}

/// A number as results files print it: integers plainly, others with
/// enough digits to compare exactly between runs.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
    }
}

/// Exit-count families: a reason a point never saw counts 0 there.
const PER_REASON: [&str; 4] = ["exits", "exits_per_s", "exits_per_kiter", "exits_per_packet"];

/// A metric of a point that ran, as every output shows it: a per-reason
/// exit count the point never saw is 0; any other metric it lacks has no
/// value (no exits to average over, no device of that name, no log).
pub fn value(p: &PointResult, metric: &str) -> Option<f64> {
    let per_reason = metric.split_once('.').is_some_and(|(family, _)| PER_REASON.contains(&family));
    p.metrics.get(metric).copied().or(per_reason.then_some(0.0))
}

/// Why a point that ran has no `metric`, in a few words.
fn missing(metric: &str) -> &'static str {
    match metric.split('.').next().unwrap_or(metric) {
        "work_per_exit" | "avg_exit_ns" => "no exits",
        "latency_ns" | "packets" => "no round trips logged",
        "irq_latency_ns" => "no interrupt latencies logged",
        "device" | "device_per_kiter" => "no such device",
        "guest" | "guest_per_kiter" => "not kept by this guest",
        "pages_logged_per_kiter" => "write protection sees writes, not pages",
        _ => "not measured",
    }
}

pub fn csv(r: &Results) -> String {
    let axes: Vec<&str> =
        r.points.first().map(|p| p.axes.iter().map(|(k, _)| k.as_str()).collect()).unwrap_or_default();
    let metrics = r.metric_names();
    let mut out = String::new();
    let header: Vec<String> =
        axes.iter().map(|s| s.to_string()).chain(metrics.iter().cloned()).chain(["note".to_string()]).collect();
    let _ = writeln!(out, "{}", header.join(","));
    for p in &r.points {
        let mut row: Vec<String> = p.axes.iter().map(|(_, v)| v.clone()).collect();
        let ran = p.na.is_none();
        row.extend(metrics.iter().map(|m| value(p, m).filter(|_| ran).map_or(String::new(), number)));
        row.push(p.na.as_deref().map_or(String::new(), |n| format!("\"n/a ({})\"", n.replace('"', "'"))));
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

pub fn json(r: &Results) -> serde_json::Value {
    let points: Vec<serde_json::Value> = r
        .points
        .iter()
        .map(|p| {
            serde_json::json!({
                "axes": p.axes.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "metrics": p.metrics,
                "na": p.na,
            })
        })
        .collect();
    serde_json::json!({
        "scenario": r.scenario.name,
        "title": r.scenario.title,
        "full": r.full,
        "points": points,
    })
}

/// The parameters every point shares, as `key = value` lines.
pub fn parameters(r: &Results) -> Vec<String> {
    let s = &r.scenario;
    let mut lines = Vec::new();
    if !s.sweep.contains_key("workload") {
        lines.push(format!("workload: {}", s.workload));
    }
    lines.push(format!("seed: {}", s.seed));
    let mut params = s.params.clone();
    if r.full {
        params.extend(s.full.clone());
    }
    lines.extend(params.iter().map(|(k, v)| format!("{k} = {}", crate::scenario::value_text(v))));
    for (axis, values) in &s.sweep {
        let vs: Vec<String> = values.iter().map(crate::scenario::value_text).collect();
        lines.push(format!("{axis} swept over {}", vs.join(", ")));
    }
    lines
}

/// The results table for reports: the axes, then exits per 1,000
/// iterations and per second, the share of guest time spent in exits, exits
/// per 1,000 iterations by reason, and the guest's own counters per 1,000
/// iterations; for ping-pongs, per packet instead: exits (all and by
/// reason), interrupts and the round trip's mean, deviation and p99; then
/// any metric a figure plots that is not among those.
pub fn table(r: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let names = r.metric_names();
    let family = |prefix: &'static str| names.iter().filter(move |m| m.starts_with(prefix)).cloned();
    let mut metrics: Vec<String> = if names.iter().any(|m| m == "exits_per_packet") {
        ["exits_per_packet", "interrupts_per_packet", "latency_ns.mean", "latency_ns.stddev", "latency_ns.p99"]
            .into_iter()
            .map(String::from)
            .chain(family("exits_per_packet."))
            .collect()
    } else {
        ["exits_per_kiter", "exits_per_s", "exit_time_share"]
            .into_iter()
            .map(String::from)
            .chain(family("exits_per_kiter."))
            .chain(family("guest_per_kiter."))
            .collect()
    };
    // What a write monitor logged; what a VM costs its host core.
    for m in ["pages_logged_per_kiter", "vcpu_cpu_share"] {
        if names.iter().any(|n| n == m) {
            metrics.push(m.to_string());
        }
    }
    // And whatever the figures plot.
    for f in &r.scenario.figures {
        if !f.y.ends_with(".*") && !metrics.contains(&f.y) {
            metrics.push(f.y.clone());
        }
    }
    let w = &r.scenario.words;
    let axes: Vec<&str> =
        r.points.first().map(|p| p.axes.iter().map(|(k, _)| k.as_str()).collect()).unwrap_or_default();
    let header: Vec<String> =
        axes.iter().map(|a| w.axis(a)).chain(metrics.iter().map(|m| w.quantity(m).title())).collect();
    let rows = r
        .points
        .iter()
        .map(|p| {
            let mut row: Vec<String> = p.axes.iter().map(|(_, v)| v.clone()).collect();
            match &p.na {
                Some(why) => row.push(format!("n/a ({why})")),
                None => row.extend(metrics.iter().map(|m| match value(p, m) {
                    None => format!("n/a ({})", missing(m)),
                    Some(v) => w.quantity(m).cell(v),
                })),
            }
            row
        })
        .collect();
    (header, rows)
}

/// What the table's axis values stand for, one line per axis that has
/// words ("profile: legacy = first-generation VT-x ..."); the host's words
/// where its mechanism differs.
pub fn value_key(r: &Results) -> Vec<String> {
    let s = &r.scenario;
    let on_host = crate::host::is_host_run(s);
    s.sweep
        .iter()
        .filter(|(axis, _)| {
            s.words.values.contains_key(*axis)
                || (on_host && s.host.as_ref().is_some_and(|h| h.values.contains_key(*axis)))
        })
        .map(|(axis, values)| {
            let said: Vec<String> = values
                .iter()
                .map(|v| {
                    let v = crate::scenario::value_text(v);
                    let w = if on_host { crate::host::value_words(s, axis, &v) } else { s.words.value(axis, &v) };
                    format!("{v} = {w}")
                })
                .collect();
            format!("{}: {}", s.words.axis(axis), said.join("; "))
        })
        .collect()
}

pub fn markdown_table(r: &Results) -> String {
    let (header, rows) = table(r);
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for k in value_key(r) {
        let _ = writeln!(out, "\n{k}");
    }
    out
}

/// The manifest entry of `r`: its definition and the keys of its points.
pub fn entry(r: &Results) -> Result<Entry, String> {
    Entry::new(&r.scenario, r.full, r.points.iter().map(|p| point_key(&p.axes)).collect())
}

/// Writes results.csv, results.json, `<figure>.svg`, summary.md and
/// manifest.json into `dir` (created if need be), a directory of a set
/// being published.
pub fn write_results(r: &Results, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = Manifest::new(SetKind::Run, None, r.full, vec![entry(r)?], false);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("results.csv".into(), csv(r).into_bytes()),
        ("results.json".into(), serde_json::to_string_pretty(&json(r)).expect("results serialize").into_bytes()),
        (FILE.into(), manifest.to_json().into_bytes()),
    ];
    let mut md = format!("# {}\n\n{}\n\n## Parameters\n\n", r.scenario.title, r.scenario.question);
    for l in parameters(r) {
        let _ = writeln!(md, "- {l}");
    }
    let _ = writeln!(md, "\n## Results\n\n{}", markdown_table(r));
    for f in &r.scenario.figures {
        let name = format!("{}.svg", f.name);
        files.push((name.clone(), figure_svg(r, f, None).into_bytes()));
        let _ = writeln!(md, "![{}]({name})\n", f.title);
    }
    let _ = writeln!(md, "## Reading\n\n{}", reading(r));
    files.push(("summary.md".into(), md.into_bytes()));
    for (name, bytes) in files {
        write_file(dir, &name, &bytes)?;
    }
    Ok(())
}

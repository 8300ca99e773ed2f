//! Writing a scenario's results: results.csv, results.json, one SVG per
//! figure and summary.md. Every file is written beside its final name and
//! renamed over it, so an interrupted run leaves the previous file whole.

use crate::measure::{PointResult, Results};
use crate::plot::figure_svg;
use crate::reading::reading;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, dir.join(name)));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
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

/// Writes results.csv, results.json, `<figure>.svg` and summary.md.
pub fn write_results(r: &Results, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("results.csv".into(), csv(r).into_bytes()),
        ("results.json".into(), serde_json::to_string_pretty(&json(r)).expect("results serialize").into_bytes()),
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
        write_atomically(dir, &name, &bytes)?;
    }
    Ok(())
}

//! `exitlab report`: every built-in experiment on the simulator and, where
//! KVM is usable, on this host beside it; each with its question, the
//! answer, the chapter's figures beside exitlab's, its parameters, tables
//! and figures (the host's series dashed on the simulator's), and E4's
//! fleet projection; as report.md (figures beside it) and a self-contained
//! report.html with a table of contents (figures inline). The runs
//! themselves go through `part` (whole or by shard, the host's side as
//! units of its own); this module writes the set.

use crate::chapter::{Chapter, Host};
use crate::manifest::{HostSide, Manifest, SetKind, FILE};
use crate::measure::Results;
use crate::output::{entry, parameters, table, value_key, write_file, write_results};
use crate::part::{HostResults, SIM_ALONE};
use crate::plot::{figure_svg, host_figure_svg, same_scale};
use crate::scenario::{Scenario, BUILT_IN};
use exitlab_vmm::check::CaseResult;
use std::fmt::Write;
use std::path::Path;

/// Which machines the report runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machines {
    /// The simulator, and the host where KVM is usable (said once if not).
    Auto,
    /// The simulator alone.
    Sim,
    /// The simulator and the host: KVM must be usable.
    SimKvm,
}

impl Machines {
    /// `--backend`'s value: `sim` or `sim,kvm`.
    pub fn parse(text: &str) -> Result<Machines, String> {
        let mut names: Vec<&str> = text.split(',').map(str::trim).collect();
        names.sort_unstable();
        match names.as_slice() {
            ["sim"] => Ok(Machines::Sim),
            ["kvm", "sim"] => Ok(Machines::SimKvm),
            _ => Err(format!("--backend `{text}`: the report runs on `sim` or `sim,kvm` (the simulator always)")),
        }
    }

    /// Whether the report runs the host's side: checked here, once, before
    /// anything runs. An error only for `sim,kvm` on a host whose KVM
    /// cannot be used.
    pub fn host_side(self) -> Result<HostSide, String> {
        match self {
            Machines::Sim => Ok(HostSide::Alone(SIM_ALONE.into())),
            Machines::Auto => Ok(match crate::host::usable() {
                Ok(()) => HostSide::Kvm,
                Err(e) => HostSide::Alone(format!("no usable KVM here: {e}")),
            }),
            Machines::SimKvm => {
                crate::host::usable().map_err(|e| format!("--backend sim,kvm: {e}"))?;
                Ok(HostSide::Kvm)
            }
        }
    }
}

/// The built-in experiments, in report order.
pub fn experiments() -> Result<Vec<Scenario>, String> {
    BUILT_IN.iter().map(|(name, _)| Scenario::load(name).map_err(|e| e.0)).collect()
}

/// `scenarios` with `profiles` (names or files, e.g. a calibrated host's)
/// added to every `profile` axis: the what-if experiments then run on
/// them beside the built-in profiles, as more series of the same figures.
/// Scenarios without the axis are unchanged.
pub fn with_profiles(mut scenarios: Vec<Scenario>, profiles: &[String]) -> Vec<Scenario> {
    for s in &mut scenarios {
        if let Some(axis) = s.sweep.get_mut("profile") {
            for p in profiles {
                let v = toml::Value::String(p.clone());
                if !axis.contains(&v) {
                    axis.push(v);
                }
            }
        }
    }
    scenarios
}

/// The profiles beyond the built-in ones that `all` swept, each with its
/// name and summary (or why it could not be read), for the report's head.
fn added_profiles<'a>(all: impl Iterator<Item = &'a Results>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in all {
        for v in r.scenario.sweep.get("profile").into_iter().flatten() {
            let v = crate::scenario::value_text(v);
            if !exitlab_sim::profile::BUILT_IN.iter().any(|(n, _)| *n == v) && !seen.contains(&v) {
                seen.push(v);
            }
        }
    }
    seen.into_iter()
        .map(|v| match exitlab_sim::profile::Profile::load(&v) {
            Ok(p) => format!("`{v}`: {}, {}", p.name, p.summary),
            Err(e) => format!("`{v}`: {e}"),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The report as Markdown and HTML at once.
#[derive(Default)]
pub(crate) struct Doc {
    pub(crate) md: String,
    pub(crate) html: String,
}

impl Doc {
    pub(crate) fn heading(&mut self, level: usize, id: &str, text: &str) {
        let _ = writeln!(self.md, "{} {text}\n", "#".repeat(level));
        let _ = writeln!(self.html, "<h{level} id=\"{id}\">{}</h{level}>", escape(text));
    }

    /// A paragraph with a bold lead-in (empty for none).
    pub(crate) fn para(&mut self, lead: &str, text: &str) {
        match lead {
            "" => {
                let _ = writeln!(self.md, "{text}\n");
                let _ = writeln!(self.html, "<p>{}</p>", escape(text));
            }
            l => {
                let _ = writeln!(self.md, "**{l}** {text}\n");
                let _ = writeln!(self.html, "<p><b>{}</b> {}</p>", escape(l), escape(text));
            }
        }
    }

    pub(crate) fn list(&mut self, items: &[String]) {
        let _ = writeln!(self.html, "<ul>");
        for i in items {
            let _ = writeln!(self.md, "- {i}");
            let _ = writeln!(self.html, "<li>{}</li>", escape(i));
        }
        let _ = writeln!(self.md);
        let _ = writeln!(self.html, "</ul>");
    }

    pub(crate) fn table(&mut self, header: &[String], rows: &[Vec<String>]) {
        let cell = |c: &str| c.replace('|', "\\|");
        let _ = writeln!(self.md, "| {} |", header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(self.md, "|{}", "---|".repeat(header.len()));
        let _ = write!(self.html, "<div class=\"wide\"><table><tr>");
        for h in header {
            let _ = write!(self.html, "<th>{}</th>", escape(h));
        }
        let _ = writeln!(self.html, "</tr>");
        for row in rows {
            let _ = writeln!(self.md, "| {} |", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
            let _ = write!(self.html, "<tr>");
            // An n/a row spans the columns it has no values for.
            let span = header.len().saturating_sub(row.len()) + 1;
            for (i, c) in row.iter().enumerate() {
                match (i + 1 == row.len() && span > 1, c.starts_with("n/a")) {
                    (true, _) => {
                        let _ = write!(self.html, "<td colspan=\"{span}\" class=\"na\">{}</td>", escape(c));
                    }
                    (false, true) => {
                        let _ = write!(self.html, "<td class=\"na\">{}</td>", escape(c));
                    }
                    // Words read from the left, numbers from the right.
                    _ if c.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-') => {
                        let _ = write!(self.html, "<td>{}</td>", escape(c));
                    }
                    _ => {
                        let _ = write!(self.html, "<td class=\"t\">{}</td>", escape(c));
                    }
                }
            }
            let _ = writeln!(self.html, "</tr>");
        }
        let _ = writeln!(self.md);
        let _ = writeln!(self.html, "</table></div>");
    }

    /// A figure: a file beside report.md, inline in the HTML.
    pub(crate) fn figure(&mut self, title: &str, file: &str, svg: &str) {
        let _ = writeln!(self.md, "![{title}]({file})\n");
        let _ = writeln!(self.html, "<figure>{svg}</figure>");
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}\
h2{border-top:2px solid #ccc;padding-top:0.6em;margin-top:2em}\
.wide{overflow-x:auto;margin:0.6em 0}\
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right;vertical-align:top}\
th{background:#eee}td.t{text-align:left}td.na{color:#777;text-align:left}\
table.chapter td,table.chapter th{text-align:left;max-width:22em}\
nav{background:#f6f6f6;border:1px solid #ddd;padding:0.3em 1.2em}nav h2{border:0;margin-top:0.4em;padding-top:0}figure{margin:1em 0}figure svg{max-width:100%;height:auto}";

/// Writes the report of `all` (the built-in experiments' results, in
/// report order), E8's `e8`, the host's side `host` (or why the
/// simulator ran alone) and the Linux section `linux` into `dir`, a directory of a set being
/// published: `<experiment>/` for each (its host side in
/// `<experiment>/host/`), `e8/`, `linux/`, report.md, report.html and
/// manifest.json.
pub fn write(
    all: &[Results],
    e8: &[(String, CaseResult)],
    host: &Result<HostResults, String>,
    full: bool,
    linux: &crate::linux::Section,
    dir: &Path,
) -> Result<(), String> {
    let no_host = host.as_ref().err().cloned();
    let mut runs = Vec::new();
    for (i, r) in all.iter().enumerate() {
        let out = dir.join(&r.scenario.name);
        write_results(r, &out)?;
        let h = match host {
            Ok(h) => h.experiments.get(i).cloned().unwrap_or_else(|| Err("not run on the host".into())),
            Err(why) => Err(why.clone()),
        };
        if let Ok(h) = &h {
            write_results(h, &out.join("host"))?;
        }
        runs.push((r.clone(), h));
    }
    let e8_host = host.as_ref().map(|h| h.e8.clone()).map_err(String::clone);
    let mut doc = Doc::default();
    intro(&mut doc, full, &no_host, &runs);
    let slot = e8_slot(&runs);
    for i in 0..=runs.len() {
        if i == slot {
            precise_section(&mut doc, dir, e8, &e8_host)?;
        }
        if let Some((r, h)) = runs.get(i) {
            section(&mut doc, dir, r, h)?;
        }
    }
    let e4 = all.iter().find(|r| r.scenario.name == "e4");
    crate::linux::section::write(&mut doc, dir, linux, e4)?;
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>exitlab report</title><style>{STYLE}</style></head><body>\n{}</body></html>\n",
        doc.html
    );
    write_file(dir, "report.md", doc.md.as_bytes())?;
    write_file(dir, "report.html", html.as_bytes())?;
    let entries = all.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    let mut manifest = Manifest::new(SetKind::Report, None, full, entries, true);
    manifest.host = Some(match host {
        Ok(_) => HostSide::Kvm,
        Err(why) => HostSide::Alone(why.clone()),
    });
    write_file(dir, FILE, manifest.to_json().as_bytes())
}

/// Where E8 goes among the experiments: in its place after E7, else last.
fn e8_slot(runs: &[(Results, Result<Results, String>)]) -> usize {
    runs.iter().position(|(r, _)| r.scenario.name == "e7").map_or(runs.len(), |i| i + 1)
}

fn intro(doc: &mut Doc, full: bool, no_host: &Option<String>, runs: &[(Results, Result<Results, String>)]) {
    doc.heading(1, "top", "exitlab report");
    let size = if full { "at full size" } else { "at quick size (exitlab report --full for the paper size)" };
    let machines = match no_host {
        None => "on the simulator and, beside it, on this host's KVM (kept small: this host's KVM is nested and runs ring-0 guest code in its instruction emulator, so its times are this host's, never hardware's)".to_string(),
        Some(why) => format!("on the simulator alone ({why})"),
    };
    doc.para(
        "",
        &format!(
            "Every built-in experiment, {size}, {machines}. Each section answers its question first, puts the figures and directions of the chapter behind the experiments (seed-vm-exits.zh.txt) beside exitlab's, then gives the parameters, tables and figures. On the simulator, time is its virtual clock; \"share of the core in exits\" is the exits' handling time over guest time."
        ),
    );
    for line in added_profiles(runs.iter().map(|(r, _)| r)) {
        doc.para(
            "",
            &format!("Profile {line}, swept beside the built-in ones wherever an experiment sweeps profiles."),
        );
    }
    let mut toc: Vec<(String, String)> =
        runs.iter().map(|(r, _)| (r.scenario.name.clone(), r.scenario.title.clone())).collect();
    toc.insert(e8_slot(runs), ("e8".into(), E8_TITLE.into()));
    toc.push((crate::linux::section::ID.into(), crate::linux::section::TITLE.into()));
    let _ = writeln!(doc.md, "## Contents\n");
    let _ = writeln!(doc.html, "<nav><h2 id=\"contents\">Contents</h2><ol>");
    for (id, title) in &toc {
        let anchor =
            title.to_lowercase().replace(|c: char| !c.is_alphanumeric() && c != ' ' && c != '-', "").replace(' ', "-");
        let _ = writeln!(doc.md, "- [{title}](#{anchor})");
        let _ = writeln!(doc.html, "<li><a href=\"#{id}\">{}</a></li>", escape(title));
        if id == "e4" {
            let _ = writeln!(doc.html, "<ul><li><a href=\"#e4-fleet\">E4: fleet projection</a></li></ul>");
        }
    }
    let _ = writeln!(doc.md);
    let _ = writeln!(doc.html, "</ol></nav>");
}

/// The chapter table: says / simulator / host / agrees?
fn chapter_table(doc: &mut Doc, c: &Chapter) {
    let header: Vec<String> =
        ["the chapter says", "the simulator shows", "this host shows", "agrees?"].map(String::from).to_vec();
    let rows: Vec<Vec<String>> =
        c.rows.iter().map(|r| vec![r.says.clone(), r.sim.clone(), r.host.clone(), r.agrees.clone()]).collect();
    let at = doc.html.len();
    doc.table(&header, &rows);
    doc.html.insert_str(at + "<div class=\"wide\"><table".len(), " class=\"chapter\"");
}

fn section(doc: &mut Doc, dir: &Path, r: &Results, h: &Result<Results, String>) -> Result<(), String> {
    let s = &r.scenario;
    let host: Host<'_> = match h {
        Ok(h) => Ok(h),
        Err(why) => Err(why.clone()),
    };
    doc.heading(2, &s.name, &s.title);
    doc.para("Question.", &s.question);
    let chapter = crate::chapter::compare(&s.name, r, &host);
    match &chapter {
        Some(c) => doc.para("Answer.", &c.answer),
        None => doc.para("Reading.", &crate::reading::figure_reading(r)),
    }
    if let Some(c) = &chapter {
        doc.heading(3, &format!("{}-chapter", s.name), "The chapter beside exitlab");
        chapter_table(doc, c);
    }
    doc.heading(3, &format!("{}-sim", s.name), "On the simulator");
    doc.para("Parameters.", "");
    doc.list(&parameters(r));
    let (header, rows) = table(r);
    doc.table(&header, &rows);
    doc.list(&value_key(r));
    for f in &s.figures {
        // The host's series beside the simulator's, except by reason: the
        // host's table has its exits by reason (only those reaching the VMM).
        let hf = host
            .as_ref()
            .ok()
            .filter(|_| !f.y.ends_with(".*"))
            .and_then(|h| h.scenario.figures.iter().find(|g| g.name == f.name).map(|g| (*h, g)));
        let write = |name: String, svg: &str| {
            write_file(&dir.join(&s.name), &name, svg.as_bytes()).map(|_| format!("{}/{name}", s.name))
        };
        match hf {
            Some((h, g)) if same_scale(r, f, h, g) => {
                let svg = figure_svg(r, f, hf);
                doc.figure(&f.title, &write(format!("{}-sim-and-host.svg", f.name), &svg)?, &svg);
            }
            Some((h, g)) => {
                let svg = figure_svg(r, f, None);
                doc.figure(&f.title, &format!("{}/{}.svg", s.name, f.name), &svg);
                let svg = host_figure_svg(h, g);
                doc.figure(&g.title, &write(format!("{}-host.svg", f.name), &svg)?, &svg);
            }
            None => {
                let svg = figure_svg(r, f, None);
                doc.figure(&f.title, &format!("{}/{}.svg", s.name, f.name), &svg);
            }
        }
    }
    if s.name == "e4" {
        fleet_section(doc, dir, r, host.as_ref().ok().copied())?;
    }
    doc.heading(3, &format!("{}-host", s.name), "On this host (KVM)");
    match &host {
        Ok(h) => {
            let plan = s.host.clone().unwrap_or_default();
            if let Some(about) = &plan.about {
                doc.para("", about);
            }
            let mut notes = crate::host::dropped(s);
            notes.extend(
                plan.metrics.iter().map(|(sim, (hm, why))| format!("{hm} stands for the simulator's {sim}: {why}")),
            );
            notes.extend(parameters(h).into_iter().filter(|l| !l.starts_with("seed")));
            doc.list(&notes);
            let (header, rows) = table(h);
            doc.table(&header, &rows);
            doc.list(&value_key(h));
            doc.para(
                "Host results.",
                &format!("{}/host/results.csv; the host's series are dashed in the figures above (on the simulator's axes where the scales allow, in figures of their own where not).", s.name),
            );
        }
        Err(why) => doc.para("", &format!("n/a ({why})")),
    }
    Ok(())
}

fn fleet_section(doc: &mut Doc, dir: &Path, r: &Results, host: Option<&Results>) -> Result<(), String> {
    let Some(fleet) = crate::fleet::Fleet::of(r, host) else { return Ok(()) };
    doc.heading(3, "e4-fleet", "E4: fleet projection");
    doc.para(
        "",
        &format!(
            "Host cores burned by N idle VMs, from one VM's measured cost at idle periods of {} ms: on the simulator its exits' handling time (the halted time is free: the core runs other VMs), on this host its vCPU thread's CPU time (guest code, KVM's exits and halt polling; this nested host emulates the guest's ring-0 code, so its figures are high). Linear in N, as the chapter's argument is: a real host adds timer and scheduler overheads that grow with the number of threads.",
            fleet.period_ms
        ),
    );
    let (header, rows) = fleet.table(r);
    doc.table(&header, &rows);
    let svg = fleet.svg(r);
    write_file(&dir.join("e4"), "fleet.svg", svg.as_bytes())?;
    write_file(&dir.join("e4"), "fleet.md", fleet.markdown(r).as_bytes())?;
    doc.figure("Host cores burned by N idle VMs", "e4/fleet.svg", &svg);
    Ok(())
}

const E8_TITLE: &str = "E8: Precise trap-and-emulate - single steps and injected events";

/// E8: the trap-and-emulate correctness suite on both profiles and on the
/// host, as a table and an answer; its results beside the others in
/// `dir`/e8.
fn precise_section(
    doc: &mut Doc,
    dir: &Path,
    sim: &[(String, CaseResult)],
    host: &Result<Vec<CaseResult>, String>,
) -> Result<(), String> {
    let e8 = dir.join("e8");
    std::fs::create_dir_all(&e8).map_err(|e| format!("cannot create {}: {e}", e8.display()))?;
    write_file(&e8, "results.csv", crate::precise::csv(sim).as_bytes())?;
    doc.heading(2, "e8", E8_TITLE);
    doc.para(
        "Question.",
        "When the VMM completes an instruction for a single-stepping guest, or injects an exception, does the guest see exactly what bare metal would show it?",
    );
    let c = crate::chapter::e8(sim, host);
    doc.para("Answer.", &c.answer);
    doc.heading(3, "e8-chapter", "The chapter beside exitlab");
    chapter_table(doc, &c);
    let host_of = |name: &str| match host {
        Ok(h) => h.iter().find(|r| r.name == name).map_or("n/a".to_string(), |r| {
            if r.pass {
                "pass".to_string()
            } else {
                format!("DEVIATES: {}", r.got)
            }
        }),
        Err(why) => format!("n/a ({why})"),
    };
    let header: Vec<String> = ["case", "expected", "legacy", "modern", "this host (KVM)"].map(String::from).to_vec();
    let mut rows = Vec::new();
    for case in exitlab_vmm::check::CASES {
        let on = |p: &str| {
            sim.iter().find(|(q, r)| q == p && r.name == case.name).map_or("n/a".into(), |(_, r)| {
                if r.pass {
                    "pass".to_string()
                } else {
                    format!("FAIL: {}", r.got)
                }
            })
        };
        let expected =
            sim.iter().find(|(_, r)| r.name == case.name).map(|(_, r)| r.expected.clone()).unwrap_or_default();
        rows.push(vec![case.name.to_string(), expected, on("legacy"), on("modern"), host_of(case.name)]);
    }
    doc.table(&header, &rows);
    if let Ok(h) = host {
        let cases: Vec<(String, CaseResult)> = h.iter().map(|r| ("kvm".to_string(), r.clone())).collect();
        write_file(&e8, "host.csv", crate::precise::csv(&cases).as_bytes())?;
    }
    Ok(())
}

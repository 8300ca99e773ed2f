//! `exitlab report`: every built-in experiment, each with its question,
//! parameters, table, figures and reading, as report.md (figures beside it)
//! and a self-contained report.html (figures inline). The runs themselves
//! go through `part` (whole or by shard); this module writes the set.

use crate::manifest::{Manifest, SetKind, FILE};
use crate::measure::Results;
use crate::output::{entry, markdown_table, parameters, table, write_file, write_results};
use crate::plot::figure_svg;
use crate::reading::reading;
use crate::scenario::{Scenario, BUILT_IN};
use exitlab_vmm::check::CaseResult;
use std::fmt::Write;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The built-in experiments, in report order.
pub fn experiments() -> Result<Vec<Scenario>, String> {
    BUILT_IN.iter().map(|(name, _)| Scenario::load(name).map_err(|e| e.0)).collect()
}

/// E8: the trap-and-emulate correctness suite's `results` (profile, case),
/// as a table and a reading; the results beside the others in `dir`/e8.
fn precise_section(
    results: &[(String, CaseResult)],
    dir: &Path,
    md: &mut String,
    html: &mut String,
) -> Result<(), String> {
    let e8 = dir.join("e8");
    std::fs::create_dir_all(&e8).map_err(|e| format!("cannot create {}: {e}", e8.display()))?;
    write_file(&e8, "results.csv", crate::precise::csv(results).as_bytes())?;
    let title = "E8: Precise trap-and-emulate - single steps and injected events";
    let question = "When the VMM completes an instruction for a single-stepping guest, or injects an exception, does the guest see exactly what bare metal would show it?";
    let _ = writeln!(md, "## {title}\n\n**Question.** {question}\n");
    let _ = writeln!(html, "<h2>{}</h2>\n<p><b>Question.</b> {}</p>", escape(title), escape(question));
    let _ = writeln!(md, "| case | profile | verdict | expected | got |\n|---|---|---|---|---|");
    let _ =
        writeln!(html, "<table><tr><th>case</th><th>profile</th><th>verdict</th><th>expected</th><th>got</th></tr>");
    for (profile, r) in results {
        let verdict = if r.pass { "pass" } else { "FAIL" };
        let _ = writeln!(md, "| {} | {profile} | {verdict} | {} | {} |", r.name, r.expected, r.got);
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{profile}</td><td>{verdict}</td><td>{}</td><td>{}</td></tr>",
            r.name,
            escape(&r.expected),
            escape(&r.got)
        );
    }
    let _ = writeln!(html, "</table>");
    let text = crate::precise::reading(results);
    let _ = writeln!(md, "\n**Reading.** {text}\n");
    let _ = writeln!(html, "<p><b>Reading.</b> {}</p>", escape(&text));
    Ok(())
}

/// Writes the report of `all` (the built-in experiments' results, in
/// report order) and E8's `e8` into `dir`, a directory of a set being
/// published: `<experiment>/` for each, `e8/results.csv`, report.md,
/// report.html and manifest.json.
pub fn write(all: &[Results], e8: &[(String, CaseResult)], full: bool, dir: &Path) -> Result<(), String> {
    for r in all {
        write_results(r, &dir.join(&r.scenario.name))?;
    }
    let size = if full { "full size" } else { "quick size (exitlab report --full for the paper size)" };
    let mut md = format!("# exitlab report\n\nEvery built-in experiment on the simulator, {size}. Figures in exits per second are per second of *guest* (virtual) time.\n\n");
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>exitlab report</title><style>body{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.45}table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}</style></head><body>\n<h1>exitlab report</h1>\n",
    );
    let _ = writeln!(html, "<p>Every built-in experiment on the simulator, {}. Figures in exits per second are per second of <em>guest</em> (virtual) time.</p>", escape(size));
    for r in all {
        let s = &r.scenario;
        let _ = writeln!(md, "## {}\n\n**Question.** {}\n\n**Parameters.**\n", s.title, s.question);
        let _ = writeln!(
            html,
            "<h2>{}</h2>\n<p><b>Question.</b> {}</p>\n<p><b>Parameters.</b></p><ul>",
            escape(&s.title),
            escape(&s.question)
        );
        for l in parameters(r) {
            let _ = writeln!(md, "- {l}");
            let _ = writeln!(html, "<li>{}</li>", escape(&l));
        }
        let _ = writeln!(html, "</ul>");
        let _ = writeln!(md, "\n{}", markdown_table(r));
        let (header, rows) = table(r);
        let _ = write!(html, "<table><tr>");
        for h in header {
            let _ = write!(html, "<th>{}</th>", escape(&h));
        }
        let _ = writeln!(html, "</tr>");
        for row in rows {
            let _ = write!(html, "<tr>");
            for c in row {
                let _ = write!(html, "<td>{}</td>", escape(&c));
            }
            let _ = writeln!(html, "</tr>");
        }
        let _ = writeln!(html, "</table>");
        for f in &s.figures {
            let _ = writeln!(md, "![{}]({}/{}.svg)\n", f.title, s.name, f.name);
            let _ = writeln!(html, "<figure>{}</figure>", figure_svg(r, f));
        }
        let text = reading(r);
        let _ = writeln!(md, "**Reading.** {text}\n");
        let _ = writeln!(html, "<p><b>Reading.</b> {}</p>", escape(&text));
    }
    precise_section(e8, dir, &mut md, &mut html)?;
    html.push_str("</body></html>\n");
    write_file(dir, "report.md", md.as_bytes())?;
    write_file(dir, "report.html", html.as_bytes())?;
    let entries = all.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    write_file(dir, FILE, Manifest::new(SetKind::Report, None, full, entries, true).to_json().as_bytes())
}

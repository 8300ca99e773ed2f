//! E4's fleet projection: host cores burned by N idle VMs (1 to
//! 1,000,000), with a periodic tick and tickless, from the per-VM cost
//! E4 measured at its longest idle period. On the simulator a VM costs its
//! exits' handling time (the share of guest time in exits; halted time is
//! free, the core runs other VMs); on the host it costs what its vCPU
//! thread spent on a CPU (guest code, KVM's exits and halt polling), read
//! from the kernel. N VMs cost N times one: the projection is linear, as
//! the chapter's argument is; it leaves out what a real host adds (timer
//! and scheduler overheads that grow with the number of threads).

use crate::measure::Results;
use crate::output::value;
use std::fmt::Write;

/// Fleet sizes in the projection.
pub const SIZES: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// One line of the projection: a machine ("legacy", "modern" or "host")
/// and a timer (`tick_hz` value; "0" is tickless) with the share of a core
/// one idle VM costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub source: String,
    pub tick_hz: String,
    pub share: f64,
}

/// The projection's lines and the idle period they were measured at.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub period_ms: String,
    pub lines: Vec<Line>,
}

impl Fleet {
    /// The projection from E4's results on the simulator (both profiles)
    /// and, when there are any, the host's; `None` without E4's axes.
    pub fn of(sim: &Results, host: Option<&Results>) -> Option<Fleet> {
        let longest = |r: &Results| {
            r.points
                .iter()
                .filter_map(|p| p.axis("period_ms"))
                .max_by(|a, b| num(a).total_cmp(&num(b)))
                .map(String::from)
        };
        let period_ms = longest(sim)?;
        let mut lines = Vec::new();
        let mut hz: Vec<&str> = sim.points.iter().filter_map(|p| p.axis("tick_hz")).collect();
        hz.sort_by(|a, b| num(a).total_cmp(&num(b)));
        hz.dedup();
        for (source, r, metric) in [
            ("legacy", Some(sim), "exit_time_share"),
            ("modern", Some(sim), "exit_time_share"),
            ("host", host, "vcpu_cpu_share"),
        ] {
            let Some(r) = r else { continue };
            let Some(period) = longest(r) else { continue };
            for &t in &hz {
                let p = r.points.iter().find(|p| {
                    p.na.is_none()
                        && p.axis("tick_hz") == Some(t)
                        && p.axis("period_ms") == Some(period.as_str())
                        && (source == "host" || p.axis("profile") == Some(source))
                });
                if let Some(share) = p.and_then(|p| value(p, metric)) {
                    lines.push(Line { source: source.into(), tick_hz: t.into(), share });
                }
            }
        }
        (!lines.is_empty()).then_some(Fleet { period_ms, lines })
    }

    /// Cores burned by `n` idle VMs of `source` with timer `tick_hz`.
    pub fn cores(&self, source: &str, tick_hz: &str, n: f64) -> Option<f64> {
        self.lines.iter().find(|l| l.source == source && l.tick_hz == tick_hz).map(|l| l.share * n)
    }

    /// A line's name in words.
    pub fn name(&self, r: &Results, l: &Line) -> String {
        let timer = r.scenario.words.value("tick_hz", &l.tick_hz);
        match l.source.as_str() {
            "host" => format!("this host (KVM), {timer}"),
            p => format!("simulator, {p} profile, {timer}"),
        }
    }

    /// The projection as a Markdown table: N down, one column per line.
    pub fn markdown(&self, r: &Results) -> String {
        let (header, rows) = self.table(r);
        let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }

    /// The projection as a header and rows of text: one row per machine
    /// and timer, one column per N.
    pub fn table(&self, r: &Results) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["host cores burned by N idle VMs".to_string()];
        header.extend(SIZES.iter().map(|&n| format!("N = {}", crate::chapter::thousands(n as u64))));
        let rows = self
            .lines
            .iter()
            .map(|l| {
                let mut row = vec![self.name(r, l)];
                row.extend(SIZES.iter().map(|&n| number(l.share * n)));
                row
            })
            .collect();
        (header, rows)
    }

    /// The figure: cores against N, both on log scales.
    pub fn svg(&self, r: &Results) -> String {
        use plotters::prelude::*;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let positive = self.lines.iter().map(|l| l.share).filter(|&s| s > 0.0);
            let lo = positive.clone().fold(f64::INFINITY, f64::min).max(1e-9);
            let hi = positive.fold(0.0f64, f64::max) * 1e6;
            let (lo, hi) = if hi > lo { (lo / 2.0, hi * 2.0) } else { (1e-6, 1.0) };
            let chart = ChartBuilder::on(&root)
                .caption(
                    format!("Host cores burned by N idle VMs (idle periods of {} ms)", self.period_ms),
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(78)
                .build_cartesian_2d((1.0..1e6).log_scale(), (lo..hi).log_scale());
            let Ok(mut chart) = chart else {
                return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"60\"><text x=\"10\" y=\"30\">fleet projection: no data</text></svg>".into();
            };
            let _ = chart
                .configure_mesh()
                .x_desc("idle VMs (N)")
                .y_desc("host cores")
                .x_label_formatter(&|v| crate::plot::short(*v))
                .y_label_formatter(&|v| number(*v))
                .draw();
            // A colour per machine; the timer in the line: solid for the
            // 1,000 Hz tick, long dashes for 100 Hz, dots for tickless.
            for l in self.lines.iter().filter(|l| l.share > 0.0) {
                let color = match l.source.as_str() {
                    "legacy" => crate::plot::COLORS[5],
                    "modern" => crate::plot::COLORS[1],
                    _ => crate::plot::COLORS[0],
                };
                let pts: Vec<(f64, f64)> = SIZES.iter().map(|&n| (n, l.share * n)).collect();
                let style = color.stroke_width(2);
                let drawn = match l.tick_hz.as_str() {
                    "0" => chart.draw_series(DashedLineSeries::new(pts, 2, 4, style)),
                    "1000" => chart.draw_series(LineSeries::new(pts, style)),
                    _ => chart.draw_series(DashedLineSeries::new(pts, 10, 5, style)),
                };
                // The legend's sample in the line's own pattern (dash, gap).
                let (dash, gap) = match l.tick_hz.as_str() {
                    "0" => (2, 4),
                    "1000" => (18, 0),
                    _ => (7, 4),
                };
                if let Ok(s) = drawn {
                    s.label(self.name(r, l)).legend(move |(x, y)| {
                        let seg = |i: i32| {
                            let from = (i * (dash + gap)).min(18);
                            PathElement::new(vec![(from, 0), ((from + dash).min(18), 0)], style)
                        };
                        EmptyElement::at((x, y)) + seg(0) + seg(1) + seg(2)
                    });
                }
            }
            crate::plot::legend(&mut chart);
            let _ = root.present();
        }
        svg
    }
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// A number of cores as a reader reads it: "513 cores", "0.51 cores".
pub fn cores_text(v: f64) -> String {
    format!("{} cores", number(v))
}

/// A number of cores alone: "513", "0.51", "5.1e-4".
pub(crate) fn number(v: f64) -> String {
    if v >= 100.0 {
        crate::plot::short(v)
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else if v > 0.0 {
        format!("{v:.1e}")
    } else {
        "0".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_counts_read_plainly() {
        assert_eq!(cores_text(513.0), "513 cores");
        assert_eq!(cores_text(5130.0), "5.1k cores");
        assert_eq!(cores_text(0.513), "0.51 cores");
        assert_eq!(cores_text(0.000513), "5.1e-4 cores");
        assert_eq!(cores_text(0.0), "0 cores");
    }
}

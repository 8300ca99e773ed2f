//! Figures: a line per series of `y` against the numeric sweep axis `x`,
//! drawn with plotters into a self-contained SVG string.

use crate::measure::Results;
use crate::scenario::{value_text, Figure};
use plotters::prelude::*;
use std::collections::BTreeMap;

/// The (x, y) points of each series of `f`, series in name order (numeric
/// order when every name is a number: a swept parameter's values).
pub fn series(r: &Results, f: &Figure) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let points: Vec<_> = r
        .points
        .iter()
        .filter(|p| p.na.is_none())
        .filter(|p| f.filter.iter().all(|(k, v)| p.axis(k) == Some(value_text(v).as_str())))
        .collect();
    // Per-reason series cover every point: a reason a point never saw is 0
    // there, not a gap.
    let prefix = f.y.strip_suffix(".*").map(|p| format!("{p}."));
    let names: Vec<String> = match &prefix {
        Some(pre) => {
            let mut n: Vec<String> = points
                .iter()
                .flat_map(|p| p.metrics.keys().filter_map(|m| m.strip_prefix(pre.as_str()).map(String::from)))
                .collect();
            n.sort();
            n.dedup();
            n
        }
        None => Vec::new(),
    };
    for p in points {
        let Some(x) = p.axis(&f.x).and_then(|v| v.parse::<f64>().ok()) else { continue };
        match &prefix {
            Some(pre) => {
                for name in &names {
                    let v = p.metrics.get(&format!("{pre}{name}")).copied().unwrap_or(0.0);
                    out.entry(name.clone()).or_default().push((x, v));
                }
            }
            None => {
                let name = f.series.as_ref().and_then(|s| p.axis(s)).unwrap_or(&f.y).to_string();
                if let Some(v) = crate::output::value(p, &f.y) {
                    out.entry(name).or_default().push((x, v));
                }
            }
        }
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut ordered: Vec<_> = out.into_iter().collect();
    let numbers: Option<Vec<f64>> = ordered.iter().map(|(name, _)| name.parse::<f64>().ok()).collect();
    if let Some(numbers) = numbers {
        let mut keyed: Vec<_> = numbers.into_iter().zip(ordered).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        ordered = keyed.into_iter().map(|(_, s)| s).collect();
    }
    ordered
}

pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// A line to draw: its legend, its points in the reader's unit, whether it
/// is the host's (dashed), and the earlier line it coincides with, if any.
struct Line {
    label: String,
    pts: Vec<(f64, f64)>,
    host: bool,
    same_as: Option<usize>,
}

/// The lines of `f` on `r`, in words: a series over a swept axis is named
/// by what its value stands for, a per-reason series by the reason.
fn lines(r: &Results, f: &Figure, host: bool) -> Vec<Line> {
    let q = r.scenario.words.quantity(f.y.trim_end_matches(".*"));
    let data = series(r, f);
    let single = data.len() == 1 && f.series.is_none() && !f.y.ends_with(".*");
    data.into_iter()
        .map(|(name, pts)| {
            let words = match &f.series {
                Some(axis) if host => crate::host::value_words(&r.scenario, axis, &name),
                Some(axis) => r.scenario.words.value(axis, &name),
                None if single => {
                    if host {
                        "this host (KVM)".to_string()
                    } else {
                        "simulator".to_string()
                    }
                }
                None => name,
            };
            let label = match (host, &f.series) {
                (true, Some(_)) => format!("host: {words}"),
                _ => words,
            };
            Line { label, pts: pts.into_iter().map(|(x, y)| (x, y * q.scale)).collect(), host, same_as: None }
        })
        .collect()
}

/// The figure as an SVG document: the simulator's series solid, the
/// host's (when given: its results and its version of the figure) dashed;
/// axes titled in words with units; a series that coincides with an
/// earlier one is drawn narrower on top of it, with its own marker, and
/// its legend says so.
pub fn figure_svg(r: &Results, f: &Figure, host: Option<(&Results, &Figure)>) -> String {
    let mut data = lines(r, f, false);
    if let Some((h, hf)) = host {
        let mut hl = lines(h, hf, true);
        // The host's metric where it stands for another (E6's MMIO exits).
        if hf.y != f.y {
            let what = h.scenario.words.quantity(hf.y.trim_end_matches(".*")).name;
            hl.iter_mut().for_each(|l| l.label = format!("{}: {what}", l.label));
        }
        data.extend(hl);
    }
    draw(r, f, &f.title, data)
}

/// The host's own version of a figure (its series dashed), for when its
/// values are too far from the simulator's to share the axes.
pub fn host_figure_svg(h: &Results, hf: &Figure) -> String {
    draw(h, hf, &format!("This host (KVM): {}", hf.title), lines(h, hf, true))
}

/// Whether the host's series of a figure are on the simulator's scale
/// (their largest values within a factor of 10, or the host's all zero;
/// their x ranges sharing at least half of the narrower), so one pair of
/// axes shows both.
pub fn same_scale(r: &Results, f: &Figure, h: &Results, hf: &Figure) -> bool {
    let span = |r: &Results, f: &Figure| {
        let pts: Vec<(f64, f64)> = series(r, f).into_iter().flat_map(|(_, p)| p).collect();
        let (x0, x1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        (x0, x1, pts.iter().map(|p| p.1).fold(0.0f64, f64::max))
    };
    let ((a0, a1, a), (b0, b1, b)) = (span(r, f), span(h, hf));
    let shared = a1.min(b1) - a0.max(b0);
    let narrower = (a1 - a0).min(b1 - b0);
    // A host that is all zero sits on the simulator's axes as well.
    let near = b == 0.0 || (a > 0.0 && a / b < 10.0 && b / a < 10.0);
    near && shared >= 0.5 * narrower
}

fn draw(r: &Results, f: &Figure, title: &str, mut data: Vec<Line>) -> String {
    for i in 0..data.len() {
        data[i].same_as = (0..i).find(|&j| data[j].pts == data[i].pts && data[j].same_as.is_none());
    }
    let q = r.scenario.words.quantity(f.y.trim_end_matches(".*"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let xs = data.iter().flat_map(|l| &l.pts).map(|p| p.0);
        let (x0, x1) = xs.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        let y1 = data.iter().flat_map(|l| &l.pts).map(|p| p.1).fold(0.0f64, f64::max);
        let (x0, x1) = if x0.is_finite() && x1 > x0 {
            (x0, x1)
        } else if x0.is_finite() {
            (x0 - 0.5, x0 + 0.5)
        } else {
            (0.0, 1.0)
        };
        let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, 0.0..y1);
        let Ok(mut chart) = chart else { return svg_fallback(f) };
        // Whole-numbered axes with few values get a label at each.
        let integral = data.iter().flat_map(|l| &l.pts).all(|p| p.0.fract() == 0.0);
        let x_labels = if integral && x1 - x0 <= 12.0 { (x1 - x0) as usize + 1 } else { 10 };
        let y_desc = match f.y.ends_with(".*") {
            true => format!("{}, by exit reason", q.title()),
            false => q.title(),
        };
        let _ = chart
            .configure_mesh()
            .x_desc(r.scenario.words.axis(&f.x))
            .y_desc(y_desc)
            .x_labels(x_labels)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw();
        let coinciding = data.iter().filter(|l| l.same_as.is_some()).count();
        let mut narrower = 0;
        for (i, l) in data.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            // Coinciding lines: the first widest, each later one narrower on top.
            let width = match l.same_as {
                Some(_) => {
                    narrower += 1;
                    (2 + 2 * (coinciding - narrower) as u32).max(2)
                }
                None if data.iter().any(|o| o.same_as.is_some_and(|j| data[j].pts == l.pts)) => {
                    4 + 2 * coinciding as u32
                }
                None => 2,
            };
            let style = color.stroke_width(width);
            let pts = l.pts.iter().copied();
            let drawn = if l.host {
                chart.draw_series(DashedLineSeries::new(pts, 7, 5, style))
            } else {
                chart.draw_series(LineSeries::new(pts, style))
            };
            let label = match l.same_as {
                Some(j) => format!("{} (same as {})", l.label, data[j].label),
                None => l.label.clone(),
            };
            if let Ok(s) = drawn {
                s.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            let marker = i % 3;
            let _ =
                chart.draw_series(l.pts.iter().map(move |&(x, y)| -> DynElement<'static, SVGBackend, (f64, f64)> {
                    match marker {
                        0 => Circle::new((x, y), 4, color.filled()).into_dyn(),
                        1 => TriangleMarker::new((x, y), 6, color.filled()).into_dyn(),
                        _ => Cross::new((x, y), 5, color.stroke_width(2)).into_dyn(),
                    }
                }));
        }
        legend(&mut chart);
        let _ = root.present();
    }
    svg
}

/// The report's legend, the same on every figure: upper left, over a
/// white veil, framed.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>) {
    let _ = chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw();
}

fn svg_fallback(f: &Figure) -> String {
    format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"60\"><text x=\"10\" y=\"30\">{}: no data</text></svg>", f.title)
}

/// 1234567 -> "1.23M".
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        // Three significant figures: 3.46, 45.2.
        let decimals = if a >= 10.0 { 1 } else { 2 };
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3}")
    }
}

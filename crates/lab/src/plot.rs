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

const COLORS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// The figure as an SVG document.
pub fn figure_svg(r: &Results, f: &Figure) -> String {
    let data = series(r, f);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let xs = data.iter().flat_map(|(_, pts)| pts).map(|p| p.0);
        let (x0, x1) = xs.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        let y1 = data.iter().flat_map(|(_, pts)| pts).map(|p| p.1).fold(0.0f64, f64::max);
        let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else { (0.0, 1.0) };
        let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
        let chart = ChartBuilder::on(&root)
            .caption(&f.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0.0..y1);
        let Ok(mut chart) = chart else { return svg_fallback(f) };
        let y_desc = f.y.trim_end_matches(".*").replace('_', " ");
        let _ = chart.configure_mesh().x_desc(f.x.as_str()).y_desc(y_desc).y_label_formatter(&|v| short(*v)).draw();
        for (i, (name, pts)) in data.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if let Ok(s) = chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))) {
                s.label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            let _ = chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled())));
        }
        let _ = chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg
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

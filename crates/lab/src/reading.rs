//! The reading of a result, computed from its numbers, never canned text.
//! A built-in experiment's reading is its answer from crate::chapter (the
//! question answered first, in the field's words, then the numbers); any
//! other scenario's reads its first figure: which series is lower, by what
//! factor, how the gap moves along the axis, named with the scenario's
//! words and units. Series that are the same at every point are said to
//! be the same, never compared as if they differed.

use crate::measure::Results;
use crate::plot::series;
use crate::words::Quantity;
use std::fmt::Write;

fn times(hi: f64, lo: f64) -> String {
    if lo > 0.0 {
        format!("{:.1} times as many", hi / lo)
    } else {
        "against none".to_string()
    }
}

/// A paragraph answering the experiment, or reading its first figure.
pub fn reading(r: &Results) -> String {
    let mut out = String::new();
    let na: Vec<_> = r.points.iter().filter_map(|p| p.na.as_ref().map(|n| (p, n))).collect();
    if let Some((p, why)) = na.first() {
        let at: Vec<String> = p.axes.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = write!(out, "{} point(s) could not run (first: {}: n/a ({why})). ", na.len(), at.join(", "));
    }
    // The chapter's answers read the simulator's axes; a host run reads its
    // own figure.
    let no_host = Err("not run".to_string());
    let chapter =
        (!crate::host::is_host_run(&r.scenario)).then(|| crate::chapter::compare(&r.scenario.name, r, &no_host));
    if let Some(Some(c)) = chapter {
        return out + &c.answer;
    }
    out + &figure_reading(r)
}

/// The first figure's reading, in the scenario's words.
pub fn figure_reading(r: &Results) -> String {
    crate::chapter::capitalized(&first_figure(r))
}

fn first_figure(r: &Results) -> String {
    let Some(f) = r.scenario.figures.first() else {
        return "The scenario draws no figure to read.".into();
    };
    let w = &r.scenario.words;
    let on_host = crate::host::is_host_run(&r.scenario);
    let data = series(r, f);
    let q: Quantity = w.quantity(&f.y);
    let metric = q.name.clone();
    let x = w.axis(&f.x);
    let label = |name: &String| match &f.series {
        Some(axis) if on_host => crate::host::value_words(&r.scenario, axis, name),
        Some(axis) => w.value(axis, name),
        None if f.y.ends_with(".*") => name.clone(),
        None if on_host => "this host (KVM)".into(),
        None => "the simulator".into(),
    };
    let at = |v: f64| format!("{} = {}", f.x, crate::plot::short(v));
    match data.as_slice() {
        [] => "No point produced data.".into(),
        [(only, pts)] => {
            let (first, last) = (pts[0], pts[pts.len() - 1]);
            let trend = if last.1 > first.1 {
                "rises"
            } else if last.1 < first.1 {
                "falls"
            } else {
                "stays the same"
            };
            format!(
                "For {}, {metric} {trend} from {} at {} to {} at {}.",
                label(only),
                q.show(first.1),
                at(first.0),
                q.show(last.1),
                at(last.0)
            )
        }
        // With more than two series, the outermost two.
        [(a, pa), .., (b, pb)] => {
            let pairs: Vec<(f64, f64, f64)> =
                pa.iter().filter_map(|&(x, ya)| pb.iter().find(|p| p.0 == x).map(|&(_, yb)| (x, ya, yb))).collect();
            if pairs.is_empty() {
                return "The two series share no point of the axis to compare.".into();
            }
            if pairs.iter().all(|(_, ya, yb)| q.show(*ya) == q.show(*yb)) {
                return format!(
                    "{} and {} give the same {metric} at every tested value of {x} ({} at {}, {} at {}): here the choice between them makes no difference.",
                    label(a),
                    label(b),
                    q.show(pairs[0].1),
                    at(pairs[0].0),
                    q.show(pairs[pairs.len() - 1].1),
                    at(pairs[pairs.len() - 1].0)
                );
            }
            let a_lower = pairs.iter().filter(|(_, ya, yb)| ya < yb).count();
            let b_lower = pairs.iter().filter(|(_, ya, yb)| yb < ya).count();
            let (lo, hi, lo_is_a) = if b_lower >= a_lower { (b, a, false) } else { (a, b, true) };
            let count = if lo_is_a { a_lower } else { b_lower };
            let pick = |(x, ya, yb): (f64, f64, f64)| if lo_is_a { (x, yb, ya) } else { (x, ya, yb) };
            let (x0, hi0, lo0) = pick(pairs[0]);
            let (x1, hi1, lo1) = pick(pairs[pairs.len() - 1]);
            let lower = if q.unit.is_empty() { "fewer" } else { "lower" };
            let mut out = format!(
                "{} has {lower} {metric} than {} at {} of {x}: {} against {} at {}, {} against {} at {}",
                label(lo),
                label(hi),
                if count == pairs.len() {
                    "every tested value".to_string()
                } else {
                    format!("{count} of {} values", pairs.len())
                },
                q.show(lo0),
                q.show(hi0),
                at(x0),
                q.show(lo1),
                q.show(hi1),
                at(x1)
            );
            if q.unit.is_empty() {
                let _ = write!(out, " ({})", times(hi1, lo1));
            }
            out.push('.');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::times;

    #[test]
    fn factors_read_as_words() {
        assert_eq!(times(4.6, 2.0), "2.3 times as many");
        assert_eq!(times(3.0, 0.0), "against none");
    }
}

//! The reading of a result: sentences computed from the numbers of the
//! scenario's first figure (which series is lower, by what factor, how the
//! gap moves along the swept axis), never canned text.

use crate::measure::Results;
use crate::plot::{series, short};
use std::fmt::Write;

fn factor(hi: f64, lo: f64) -> String {
    if lo > 0.0 {
        format!("{:.1}x", hi / lo)
    } else if hi > 0.0 {
        "against none".to_string()
    } else {
        "none on either side".to_string()
    }
}

/// A metric's name in words: `exits_per_kiter` is "exits per kiter",
/// `exits_per_s.HLT` "HLT exits per s", `guest_per_kiter.tx_aborts` "tx
/// aborts per kiter".
fn words(metric: &str) -> String {
    let Some((family, member)) = metric.split_once('.') else { return metric.replace('_', " ") };
    if family == "latency_ns" {
        return format!("{member} round-trip ns");
    }
    if family == "irq_latency_ns" {
        return format!("{member} interrupt latency ns");
    }
    if family == "work_per_exit" {
        return format!("{} per exit", member.replace('_', " "));
    }
    let per = family.split_once("_per_").map(|(_, unit)| format!(" per {unit}")).unwrap_or_default();
    let what = if family.starts_with("guest") || family.starts_with("device") {
        member.replace(['_', '.'], " ")
    } else {
        format!("{member} exits")
    };
    format!("{what}{per}")
}

/// A paragraph about the scenario's first figure.
pub fn reading(r: &Results) -> String {
    let mut out = String::new();
    let na: Vec<_> = r.points.iter().filter_map(|p| p.na.as_ref().map(|n| (p, n))).collect();
    if let Some((p, why)) = na.first() {
        let at: Vec<String> = p.axes.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = write!(out, "{} point(s) could not run (first: {}: n/a ({why})). ", na.len(), at.join(", "));
    }
    let Some(f) = r.scenario.figures.first() else {
        return out + "The scenario draws no figure to read.";
    };
    let data = series(r, f);
    let metric = words(&f.y);
    // Counts are fewer; times and spreads are lower.
    let counted = ["exits", "guest", "device", "interrupts", "work"];
    let fewer = if counted.iter().any(|c| f.y.starts_with(c)) { "fewer" } else { "lower" };
    // A series named by a swept number or flag reads as `len = 16`.
    let label = |name: &String| match &f.series {
        Some(axis) if name.parse::<f64>().is_ok() || name.parse::<bool>().is_ok() => format!("{axis} = {name}"),
        _ => name.clone(),
    };
    match data.as_slice() {
        [] => out.push_str("No point produced data."),
        [(only, pts)] => {
            let only = label(only);
            let (first, last) = (pts[0], pts[pts.len() - 1]);
            let trend = if last.1 > first.1 {
                "rises"
            } else if last.1 < first.1 {
                "falls"
            } else {
                "stays"
            };
            let _ = write!(
                out,
                "For {only}, {metric} {trend} from {} at {} = {} to {} at {} = {}.",
                short(first.1),
                f.x,
                first.0,
                short(last.1),
                f.x,
                last.0
            );
        }
        // With more than two series, the outermost two.
        [(a, pa), .., (b, pb)] => {
            let pairs: Vec<(f64, f64, f64)> =
                pa.iter().filter_map(|&(x, ya)| pb.iter().find(|p| p.0 == x).map(|&(_, yb)| (x, ya, yb))).collect();
            if pairs.is_empty() {
                return out + "The two series share no point of the axis to compare.";
            }
            let a_lower = pairs.iter().filter(|(_, ya, yb)| ya < yb).count();
            let b_lower = pairs.iter().filter(|(_, ya, yb)| yb < ya).count();
            let (lo, hi, lo_is_a) = if b_lower >= a_lower { (b, a, false) } else { (a, b, true) };
            let (lo, hi) = (label(lo), label(hi));
            let everywhere = if lo_is_a { a_lower } else { b_lower } == pairs.len();
            let first = pairs[0];
            let last = pairs[pairs.len() - 1];
            let (hi0, lo0) = if lo_is_a { (first.2, first.1) } else { (first.1, first.2) };
            let (hi1, lo1) = if lo_is_a { (last.2, last.1) } else { (last.1, last.2) };
            if everywhere {
                let _ = write!(out, "{lo} has {fewer} {metric} than {hi} at every {} tested", f.x);
            } else {
                let _ = write!(
                    out,
                    "{lo} has {fewer} {metric} than {hi} at {} of {} values of {}",
                    if lo_is_a { a_lower } else { b_lower },
                    pairs.len(),
                    f.x
                );
            }
            let _ = write!(
                out,
                ": {hi} shows {} at {} = {} against {} for {lo} ({}), and {} at {} = {} against {} ({}). ",
                short(hi0),
                f.x,
                first.0,
                short(lo0),
                factor(hi0, lo0),
                short(hi1),
                f.x,
                last.0,
                short(lo1),
                factor(hi1, lo1)
            );
            let (gap0, gap1) = (hi0 - lo0, hi1 - lo1);
            if short(gap0) == short(gap1) {
                let _ = write!(
                    out,
                    "The absolute difference stays at {} {metric} from {} = {} to {}.",
                    short(gap0),
                    f.x,
                    first.0,
                    last.0
                );
            } else {
                let direction = if gap1 > gap0 { "grows" } else { "shrinks" };
                let _ = write!(
                    out,
                    "The absolute difference {direction} from {} to {} {metric} as {} goes from {} to {}.",
                    short(gap0),
                    short(gap1),
                    f.x,
                    first.0,
                    last.0
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn metric_names_read_as_words() {
        assert_eq!(words("exits_per_kiter"), "exits per kiter");
        assert_eq!(words("exits_per_s.HLT"), "HLT exits per s");
        assert_eq!(words("exits.IO_INSTRUCTION"), "IO_INSTRUCTION exits");
        assert_eq!(words("guest_per_kiter.tx_aborts"), "tx aborts per kiter");
        assert_eq!(words("exits_per_packet"), "exits per packet");
        assert_eq!(words("exits_per_packet.HLT"), "HLT exits per packet");
        assert_eq!(words("latency_ns.stddev"), "stddev round-trip ns");
        assert_eq!(words("irq_latency_ns.mean"), "mean interrupt latency ns");
        assert_eq!(words("work_per_exit.bytes_decoded"), "bytes decoded per exit");
        assert_eq!(words("device_per_kiter.isolated.blocked_writes"), "isolated blocked writes per kiter");
    }
}

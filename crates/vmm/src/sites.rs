//! Where in the guest exits happen: each exit's guest RIP, counted per
//! phase and reason, and folded into the guest functions the RIPs fall
//! in, as perf's symbol view shows samples by symbol. The VMM keeps the
//! RIPs; whoever has the image's symbols names them (the run loop knows
//! no symbol tables), so one run can be shown with any symbol file.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Exits by (phase, guest RIP, reason).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitSites {
    counts: BTreeMap<(Phase, u64, ExitReason), u64>,
}

/// One guest function's exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRow {
    /// The function's name, or `[unknown]` for RIPs no symbol covers.
    pub function: String,
    pub exits: u64,
    /// Its exits by reason, most first.
    pub reasons: Vec<(ExitReason, u64)>,
    /// Distinct RIPs that exited in it.
    pub sites: usize,
}

/// One function's exits as they are summed: count, by reason, RIPs.
type Fold = (u64, BTreeMap<ExitReason, u64>, BTreeSet<u64>);

/// What no symbol covers, as perf names it.
pub const UNKNOWN: &str = "[unknown]";

impl ExitSites {
    /// Counts one exit at `rip` in `phase`.
    pub fn record(&mut self, phase: Phase, rip: u64, reason: ExitReason) {
        *self.counts.entry((phase, rip, reason)).or_default() += 1;
    }

    /// Whether no exit was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Exits in `phase` (all phases: `None`) by the function `symbolize`
    /// names for each RIP, most exits first (ties by name), at most `top`.
    pub fn by_function(
        &self,
        phase: Option<Phase>,
        symbolize: &dyn Fn(u64) -> Option<String>,
        top: usize,
    ) -> Vec<FunctionRow> {
        let mut names: BTreeMap<u64, String> = BTreeMap::new();
        let mut rows: BTreeMap<String, Fold> = BTreeMap::new();
        for (&(p, rip, reason), &n) in &self.counts {
            if phase.is_some_and(|want| want != p) {
                continue;
            }
            let name = names.entry(rip).or_insert_with(|| symbolize(rip).unwrap_or_else(|| UNKNOWN.to_string()));
            let row = rows.entry(name.clone()).or_default();
            row.0 += n;
            *row.1.entry(reason).or_default() += n;
            row.2.insert(rip);
        }
        let mut out: Vec<FunctionRow> = rows
            .into_iter()
            .map(|(function, (exits, reasons, rips))| {
                let mut reasons: Vec<(ExitReason, u64)> = reasons.into_iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                FunctionRow { function, exits, reasons, sites: rips.len() }
            })
            .collect();
        out.sort_by(|a, b| b.exits.cmp(&a.exits).then_with(|| a.function.cmp(&b.function)));
        out.truncate(top);
        out
    }
}

/// The rows as a table under the exit table: function, exits, share of
/// `total`, distinct RIPs and the reasons.
pub fn render_functions(rows: &[FunctionRow], total: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} {:>10} {:>9} {:>6}  Reasons", "GUEST FUNCTION", "Exits", "Exits%", "RIPs");
    for r in rows {
        let share = if total == 0 { 0.0 } else { r.exits as f64 * 100.0 / total as f64 };
        let reasons: Vec<String> = r.reasons.iter().map(|(reason, n)| format!("{} {n}", reason.name())).collect();
        let _ =
            writeln!(out, "{:<32} {:>10} {:>8.2}% {:>6}  {}", r.function, r.exits, share, r.sites, reasons.join(", "));
    }
    out
}

/// The rows as JSON: `[{function, exits, sites, reasons: {NAME: n}}]`.
pub fn functions_json(rows: &[FunctionRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let reasons: serde_json::Map<String, Value> =
                    r.reasons.iter().map(|(reason, n)| (reason.name().to_string(), json!(n))).collect();
                json!({ "function": r.function, "exits": r.exits, "sites": r.sites, "reasons": reasons })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_fold_into_the_functions_their_rips_fall_in() {
        let mut s = ExitSites::default();
        for _ in 0..3 {
            s.record(Phase::Measure, 0x1004, ExitReason::IoInstruction);
        }
        s.record(Phase::Measure, 0x1010, ExitReason::Hlt);
        s.record(Phase::Boot, 0x2000, ExitReason::Cpuid);
        s.record(Phase::Boot, 0x9000, ExitReason::Cpuid);
        let name = |rip: u64| match rip {
            0x1000..=0x1fff => Some("loop".to_string()),
            0x2000..=0x2fff => Some("setup".to_string()),
            _ => None,
        };
        let all = s.by_function(None, &name, 10);
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].function.as_str(), all[0].exits, all[0].sites), ("loop", 4, 2));
        assert_eq!(all[0].reasons, [(ExitReason::IoInstruction, 3), (ExitReason::Hlt, 1)]);
        assert_eq!(all[1].function, UNKNOWN, "ties go by name: [ before s");
        assert_eq!(all[2].function, "setup");
        let measure = s.by_function(Some(Phase::Measure), &name, 10);
        assert_eq!(measure.len(), 1);
        assert_eq!(s.by_function(None, &name, 1).len(), 1, "top N");
        let text = render_functions(&all, 6);
        assert!(text.lines().nth(1).unwrap().starts_with("loop"), "{text}");
        assert!(text.contains("66.67%") && text.contains("IO_INSTRUCTION 3, HLT 1"), "{text}");
        assert_eq!(functions_json(&measure)[0]["reasons"]["HLT"], 1);
    }
}

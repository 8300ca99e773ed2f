//! The host beside the simulator: what an experiment runs on this
//! machine's KVM (a scenario's `[host]` plan) and running it. KVM cannot
//! change what the simulator's profiles and features change, so the plan
//! drops those axes (each with the reason, shown in the report), may put a
//! host mechanism in their place (irqfd against KVM_SIGNAL_MSI where E3
//! compares posted interrupts with injection), keeps the runs small (this
//! host's nested KVM emulates ring-0 guest code), and says which metric
//! stands for one the host reports otherwise (an isolated page's accesses
//! are MMIO exits on KVM, not EPT violations).

use crate::measure::Results;
use crate::scenario::{value_text, Figure, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scenario's `[host]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostPlan {
    /// Why the host does not run this experiment at all.
    #[serde(default)]
    pub skip: Option<String>,
    /// What the host's run stands for, in a sentence.
    #[serde(default)]
    pub about: Option<String>,
    /// Workload parameters for the host's run (its size).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Axes the host does not sweep, each with the reason.
    #[serde(default)]
    pub drop: BTreeMap<String, String>,
    /// Axes the host sweeps over other values, or adds.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    /// A host axis that stands where a dropped one did in the figures
    /// (`posted = "irqfd"`).
    #[serde(default)]
    pub replace: BTreeMap<String, String>,
    /// The value of a dropped axis the host is most like (`profile =
    /// "modern"`): a figure filtered to another value of it has no host
    /// side.
    #[serde(default)]
    pub like: BTreeMap<String, String>,
    /// A metric the host reports for one of the simulator's, with why
    /// (`"exits_per_kiter.EPT_VIOLATION" = ["exits_per_kiter.EPT_MISCONFIG", "..."]`).
    #[serde(default)]
    pub metrics: BTreeMap<String, (String, String)>,
    /// The host's words for axis values where its mechanism differs.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Points to run at once (idle points sleep: E4 runs them together).
    #[serde(default)]
    pub threads: Option<usize>,
}

impl HostPlan {
    /// The metric the host shows for the simulator's `metric`.
    pub fn metric<'a>(&'a self, metric: &'a str) -> &'a str {
        self.metrics.get(metric).map_or(metric, |(m, _)| m.as_str())
    }

    /// The host's words for `axis = value`, when they differ.
    pub fn value(&self, axis: &str, value: &str) -> Option<&str> {
        self.values.get(axis).and_then(|v| v.get(value)).map(String::as_str)
    }
}

/// Whether every point of `s` runs on the host's KVM.
pub fn is_host_run(s: &Scenario) -> bool {
    s.backends == ["kvm"] && !s.sweep.contains_key("backend")
}

/// Whether KVM can be used here; the reason when not.
pub fn usable() -> Result<(), String> {
    exitlab_kvm::probe(&exitlab_kvm::device_path())
}

/// The scenario the host runs for `s`: on KVM, the dropped axes gone, the
/// host's sweep and sizes in, and each figure over what remains (a series
/// over a dropped axis becomes the host's replacement, or one series; a
/// filter on a dropped axis goes; a host-only axis is held at its first
/// value). `None` when the plan skips the experiment.
pub fn scenario(s: &Scenario) -> Option<Result<Scenario, String>> {
    let plan = s.host.clone().unwrap_or_default();
    if plan.skip.is_some() {
        return None;
    }
    let mut h = s.clone();
    h.backends = vec!["kvm".into()];
    h.sweep.remove("backend");
    for axis in plan.drop.keys() {
        h.sweep.remove(axis);
    }
    h.params.extend(plan.params.clone());
    h.full.clear();
    let only_host: Vec<&String> = plan.sweep.keys().filter(|a| !s.sweep.contains_key(*a)).collect();
    h.sweep.extend(plan.sweep.clone());
    let unlike = |f: &Figure| f.filter.iter().any(|(k, v)| plan.like.get(k).is_some_and(|like| *like != value_text(v)));
    h.figures = s
        .figures
        .iter()
        .filter(|f| !plan.drop.contains_key(&f.x) && !unlike(f))
        .map(|f| {
            let mut g: Figure = f.clone();
            g.y = plan.metric(&f.y).to_string();
            g.series = f.series.as_ref().and_then(|a| match plan.drop.contains_key(a) {
                true => plan.replace.get(a).cloned(),
                false => Some(a.clone()),
            });
            // A title that names the dropped filter's value ("Modern
            // profile: ...") loses that prefix.
            if g.filter.keys().any(|k| plan.drop.contains_key(k)) {
                if let Some((_, rest)) = g.title.split_once(": ") {
                    g.title = crate::chapter::capitalized(rest);
                }
            }
            g.filter.retain(|k, _| !plan.drop.contains_key(k));
            for a in &only_host {
                if g.series.as_deref() != Some(a.as_str()) {
                    if let Some(v) = plan.sweep[*a].first() {
                        g.filter.insert((*a).clone(), v.clone());
                    }
                }
            }
            g
        })
        .collect();
    Some(h.check(&format!("{} on the host", s.name), "").map(|_| h).map_err(|e| e.0))
}

/// Why the host does not run `s`.
pub fn skipped(s: &Scenario) -> String {
    format!("{} runs on the simulator only: {}", s.name, skip_reason(s))
}

/// Runs `points` of the host's side `h` of `s` (results in their order),
/// as many at once as its plan allows (idle points sleep: E4 runs them
/// together).
pub fn run_points(s: &Scenario, h: &Scenario, full: bool, points: Vec<Vec<(String, String)>>) -> Results {
    let threads = s.host.as_ref().and_then(|p| p.threads);
    match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
        Some(pool) => pool.install(|| crate::measure::run_points(h, full, points)),
        None => crate::measure::run_points(h, full, points),
    }
}

/// Why the host has no side of `s` (its plan skips it).
pub fn skip_reason(s: &Scenario) -> String {
    s.host.as_ref().and_then(|p| p.skip.clone()).unwrap_or_default()
}

/// The plan's dropped axes as "axis: why" lines, for the report.
pub fn dropped(s: &Scenario) -> Vec<String> {
    let plan = s.host.clone().unwrap_or_default();
    plan.drop.iter().map(|(a, why)| format!("{a} is not swept on the host: {why}")).collect()
}

/// `axis = value` in the host's words where its mechanism differs, else
/// the scenario's.
pub fn value_words(s: &Scenario, axis: &str, value: &str) -> String {
    match s.host.as_ref().and_then(|p| p.value(axis, value)) {
        Some(w) => w.to_string(),
        None => s.words.value(axis, value),
    }
}

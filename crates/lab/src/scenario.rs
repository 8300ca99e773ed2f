//! Scenario files: what an experiment runs. Validated before anything
//! runs; a mistake names the file, the line and the key.

use exitlab_guest::Workload;
use exitlab_sim::profile::Features;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One figure of a scenario: `y` against the sweep axis `x`, one line per
/// value of `series` (or, when `y` ends in `.*`, one per metric with that
/// prefix), over the points that match `filter`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub name: String,
    pub title: String,
    pub x: String,
    pub y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, toml::Value>,
}

/// An experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    pub question: String,
    /// The workload, unless `workload` is a sweep axis (then the first of
    /// its values may be named here too).
    #[serde(default)]
    pub workload: String,
    /// Backends the points run on unless `backend` is a sweep axis.
    #[serde(default = "default_backends")]
    pub backends: Vec<String>,
    #[serde(default)]
    pub seed: u64,
    /// Workload parameters for every point.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Overrides of `params` for the full-size run (`--full`).
    #[serde(default)]
    pub full: BTreeMap<String, toml::Value>,
    /// Sweep axes: `profile`, `backend`, `workload`, a hardware feature of
    /// the profile (`decode_assist = [false, true]`: the simulator's profile
    /// with that one feature off and on), or workload parameters. Points are
    /// the cartesian product.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default, rename = "figure")]
    pub figures: Vec<Figure>,
    /// How the report names this experiment's things (crate::words).
    #[serde(default)]
    pub words: crate::words::Words,
    /// What the host's KVM runs beside the simulator (crate::host).
    #[serde(default)]
    pub host: Option<crate::host::HostPlan>,
}

fn default_backends() -> Vec<String> {
    vec!["sim".to_string()]
}

/// A scenario could not be read or checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// The built-in experiments, in report order.
pub const BUILT_IN: [(&str, &str); 9] = [
    ("e1", include_str!("../../../scenarios/e1.toml")),
    ("e2", include_str!("../../../scenarios/e2.toml")),
    ("e3", include_str!("../../../scenarios/e3.toml")),
    ("e4", include_str!("../../../scenarios/e4.toml")),
    ("e5", include_str!("../../../scenarios/e5.toml")),
    ("e6", include_str!("../../../scenarios/e6.toml")),
    ("e7", include_str!("../../../scenarios/e7.toml")),
    ("e9", include_str!("../../../scenarios/e9.toml")),
    ("e10", include_str!("../../../scenarios/e10.toml")),
];

/// Axes that choose what runs (the machine, the workload) rather than a
/// workload parameter.
pub const RUN_AXES: [&str; 3] = ["backend", "profile", "workload"];

/// Axes that switch one of the VMM's KVM fast paths (true or false): the
/// device thread's irqfds (off: KVM_SIGNAL_MSI from userspace) and
/// ioeventfds (off: every notification an MMIO exit to userspace). A
/// simulator point with one is n/a.
pub const HOST_AXES: [&str; 2] = ["irqfd", "ioeventfd"];

/// Metrics every point reports: exits in the measure phase, per 1,000
/// iterations of the measured loop, per second of guest (virtual) time,
/// their average cost and share of guest time; `exits.<REASON>`,
/// `exits_per_kiter.<REASON>` and `exits_per_s.<REASON>` add one per exit
/// reason seen; `guest.<NAME>` and `guest_per_kiter.<NAME>` one per counter
/// the guest keeps. Ping-pong workloads add per-packet figures:
/// `packets`, `exits_per_packet` (and `.<REASON>`), `handler_ns_per_packet`,
/// `interrupts_per_packet`, and `latency_ns.mean`, `.stddev`, `.p50`,
/// `.p99` of the round trips; device-irq adds `irq_latency_ns.mean` (and
/// the rest), from a completion to its driver taking it. `work_per_exit.*`
/// is the VMM handler's work per exit (bytes decoded, page walks, device
/// operations, bytes copied). `device.<device>.<counter>` and
/// `device_per_kiter.<device>.<counter>` are the VMM's device models' own
/// counts (frames, kicks, interrupts, blocked accesses). On KVM,
/// `vcpu_cpu_share` is the vCPU thread's host CPU time over the phase's
/// length: what one VM costs its core, idle or not.
/// `pages_logged_per_kiter` counts the pages a write monitor logged (PML
/// on the simulator, the dirty log on KVM).
pub const METRICS: [&str; 19] = [
    "vcpu_cpu_share",
    "pages_logged_per_kiter",
    "exits",
    "exits_per_kiter",
    "exits_per_s",
    "guest_ns",
    "avg_exit_ns",
    "exit_time_share",
    "guest",
    "guest_per_kiter",
    "packets",
    "exits_per_packet",
    "handler_ns_per_packet",
    "interrupts_per_packet",
    "latency_ns",
    "irq_latency_ns",
    "work_per_exit",
    "device",
    "device_per_kiter",
];

/// The most points one scenario's sweep may have: every point is a VM
/// run, and the built-in experiments have at most a few dozen. A sweep
/// larger than this is refused by its size before any point is made.
pub const MAX_POINTS: u64 = 10_000;

/// The most bytes a scenario file may have (the built-ins are under 8 KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Checks that `name` (a scenario's or a figure's, from a file) can name
/// a file or directory of its own inside an output directory: 1 to 64
/// ASCII letters, digits, `-`, `_` or `.`, not starting with `.`, so
/// never a separator, `..`, an absolute path or a hidden file. The error
/// says why not.
pub fn file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        Err("must be 1 to 64 characters long")
    } else if name.starts_with('.') {
        Err("must not start with `.`")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        Err("may hold only ASCII letters, digits, `-`, `_` and `.` (it names a file)")
    } else {
        Ok(())
    }
}

/// The text of a TOML value as a `--set` would write it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Scenario {
    /// Parses and checks `text`; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(sp) => {
                    let line = text[..sp.start.min(text.len())].matches('\n').count() + 1;
                    ScenarioError(format!("{origin}:{line}: {msg}"))
                }
                None => ScenarioError(format!("{origin}: {msg}")),
            }
        })?;
        s.check(origin, text)?;
        Ok(s)
    }

    /// Checks the scenario against its workload and itself; `text`, when
    /// the scenario came from one, gives errors their line.
    pub fn check(&self, origin: &str, text: &str) -> Result<(), ScenarioError> {
        let s = self;
        let line_of = |key: &str| {
            text.lines()
                .position(|l| {
                    let t = l.trim_start();
                    t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .map(|i| i + 1)
        };
        let err = |key: &str, msg: String| match line_of(key) {
            Some(line) => ScenarioError(format!("{origin}:{line}: {msg}")),
            None => ScenarioError(format!("{origin}: {msg}")),
        };
        file_name(&s.name).map_err(|why| err("name", format!("name = `{}` {why}", s.name)))?;
        let mut figure_names = std::collections::BTreeSet::new();
        for f in &s.figures {
            file_name(&f.name).map_err(|why| err("name", format!("figure name = `{}` {why}", f.name)))?;
            if !figure_names.insert(f.name.as_str()) {
                return Err(err("name", format!("figure name = `{}` is used twice", f.name)));
            }
        }
        // How many points, before any is made.
        let count = s.point_count();
        if count.is_none_or(|n| n > MAX_POINTS) {
            let shape: Vec<String> = s.sweep.iter().map(|(k, v)| format!("{} {k}", v.len())).collect();
            return Err(err(
                "name",
                format!(
                    "the sweep has more than {MAX_POINTS} points ({}): split it into smaller scenarios",
                    shape.join(" x ")
                ),
            ));
        }
        let names: Vec<String> = match s.sweep.get("workload") {
            Some(values) => values.iter().map(value_text).collect(),
            None if s.workload.is_empty() => return Err(err("name", "no `workload`, and it is not swept".into())),
            None => vec![s.workload.clone()],
        };
        let mut workloads = Vec::new();
        for name in &names {
            let w = exitlab_guest::find_workload(name)
                .ok_or_else(|| err("workload", format!("`workload`: no workload `{name}`")))?;
            workloads.push(w);
        }
        for w in &workloads {
            let specs = w.params();
            let known = |k: &str| specs.iter().any(|p| p.name == k);
            for (table, map) in [("params", &s.params), ("full", &s.full)] {
                for k in map.keys() {
                    if !known(k) {
                        return Err(err(k, format!("[{table}] `{k}`: workload `{}` has no such parameter", w.name)));
                    }
                }
            }
            for (k, values) in &s.sweep {
                let feature = Features::NAMES.contains(&k.as_str()) || HOST_AXES.contains(&k.as_str());
                if !known(k) && !RUN_AXES.contains(&k.as_str()) && !feature {
                    return Err(err(
                        k,
                        format!(
                            "[sweep] `{k}`: neither a run axis (backend, profile, workload), a hardware feature ({}), a KVM fast path ({}), nor a parameter of `{}`",
                            Features::NAMES.join(", "),
                            HOST_AXES.join(", "),
                            w.name
                        ),
                    ));
                }
                if feature && values.iter().any(|v| !matches!(v, toml::Value::Boolean(_))) {
                    return Err(err(k, format!("[sweep] `{k}`: {k} takes true or false")));
                }
                if values.is_empty() {
                    return Err(err(k, format!("[sweep] `{k}` has no values")));
                }
            }
        }
        for b in s.sweep.get("backend").map(|v| v.iter().map(value_text).collect()).unwrap_or(s.backends.clone()) {
            if b != "sim" && b != "kvm" {
                return Err(err("backend", format!("backend `{b}` is neither sim nor kvm")));
            }
        }
        for p in s.sweep.get("profile").into_iter().flatten() {
            exitlab_sim::profile::Profile::load(&value_text(p)).map_err(|e| err("profile", e.0))?;
        }
        // Every point's parameters must be valid for its workload.
        for point in s.points(true).into_iter().chain(s.points(false)) {
            let w = s.workload_of(&point).expect("every workload was found above");
            s.workload_params(&point, w).map_err(|e| err(&e.1, e.0))?;
        }
        let axis_ok = |a: &str| s.sweep.contains_key(a);
        for f in &s.figures {
            if !axis_ok(&f.x) {
                return Err(err("x", format!("figure `{}`: x = `{}` is not a sweep axis", f.name, f.x)));
            }
            if let Some(series) = &f.series {
                if !axis_ok(series) {
                    return Err(err("series", format!("figure `{}`: series = `{series}` is not a sweep axis", f.name)));
                }
            }
            // `exits_per_kiter.*`, `guest.tx_aborts`: a family and a member.
            let base = f.y.split('.').next().unwrap_or(&f.y);
            if !METRICS.contains(&base) {
                return Err(err(
                    "y",
                    format!("figure `{}`: y = `{}` is not a metric ({})", f.name, f.y, METRICS.join(", ")),
                ));
            }
            for k in f.filter.keys() {
                if !axis_ok(k) {
                    return Err(err(
                        "filter",
                        format!("figure `{}`: filter on `{k}`, which is not a sweep axis", f.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A built-in scenario by name, or a file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(&format!("scenarios/{name}.toml"), text);
        }
        let text =
            exitlab_arch::input::read_limited(std::path::Path::new(name_or_path), MAX_FILE_BYTES).map_err(|e| {
                let names: Vec<_> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                ScenarioError(format!(
                    "scenario `{name_or_path}` is neither built in ({}) nor a readable file: {e}",
                    names.join(", ")
                ))
            })?;
        Scenario::parse(name_or_path, &text)
    }

    /// The scenario as a scenario file (TOML) that parses back to it:
    /// what a result set records as the definition it ran, after any
    /// `--set` or `--backend` edits. Errors: a value the TOML writer
    /// refuses.
    pub fn definition(&self) -> Result<String, ScenarioError> {
        toml::to_string(self).map_err(|e| ScenarioError(format!("scenario `{}` cannot be recorded: {e}", self.name)))
    }

    /// How many points the sweep has (the product of its axes' lengths);
    /// `None` past u64 (a scenario [`Scenario::check`] refuses).
    pub fn point_count(&self) -> Option<u64> {
        self.sweep.values().try_fold(1u64, |n, v| n.checked_mul(v.len() as u64))
    }

    /// Every point of the sweep, in a fixed order: (axis, value text).
    pub fn points(&self, _full: bool) -> Vec<Vec<(String, String)>> {
        let mut points = vec![Vec::new()];
        for (axis, values) in &self.sweep {
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((axis.clone(), value_text(v)));
                        q
                    })
                })
                .collect();
        }
        points
    }

    /// Fixes `key` at `value` for every point (`exitlab run --set`). A
    /// swept axis keeps only that value, and the returned sentence says
    /// which values it replaced; a machine axis or hardware feature that is
    /// not swept becomes a one-value axis; anything else is a workload
    /// parameter (overriding `[full]` too). [`Scenario::check`] then checks
    /// the value as for any point.
    pub fn set(&mut self, key: &str, value: toml::Value) -> Option<String> {
        if let Some(values) = self.sweep.get_mut(key) {
            let was: Vec<String> = values.iter().map(value_text).collect();
            let note = format!(
                "--set {key}={}: {key} is swept over {}; every point now runs {key} = {} instead",
                value_text(&value),
                was.join(", "),
                value_text(&value)
            );
            *values = vec![value];
            return Some(note);
        }
        if RUN_AXES.contains(&key) || Features::NAMES.contains(&key) || HOST_AXES.contains(&key) {
            self.sweep.insert(key.to_string(), vec![value]);
            return None;
        }
        self.full.remove(key);
        self.params.insert(key.to_string(), value);
        None
    }

    /// The workload a point runs.
    pub fn workload_of(&self, point: &[(String, String)]) -> Option<&'static Workload> {
        let name = point.iter().find(|(k, _)| k == "workload").map_or(self.workload.as_str(), |(_, v)| v.as_str());
        exitlab_guest::find_workload(name)
    }

    /// The `key=value` assignments of a point's workload parameters.
    pub fn assignments(&self, point: &[(String, String)], full: bool) -> Vec<String> {
        let mut map: BTreeMap<String, String> = self.params.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
        if full {
            map.extend(self.full.iter().map(|(k, v)| (k.clone(), value_text(v))));
        }
        for (k, v) in point {
            let switch = Features::NAMES.contains(&k.as_str()) || HOST_AXES.contains(&k.as_str());
            if !RUN_AXES.contains(&k.as_str()) && !switch {
                map.insert(k.clone(), v.clone());
            }
        }
        map.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// Checks a point's parameters; the error carries the offending key.
    fn workload_params(&self, point: &[(String, String)], w: &Workload) -> Result<(), (String, String)> {
        let assignments = self.assignments(point, false);
        for a in &assignments {
            let key = a.split('=').next().unwrap_or_default().to_string();
            w.resolve([a.as_str()]).map_err(|e| (e.to_string(), key))?;
        }
        // Each value in range; then the combination.
        w.resolve(assignments.iter().map(String::as_str)).map(|_| ()).map_err(|e| {
            let key = match &e {
                exitlab_guest::params::ParamError::Conflict { key, .. } => key.clone(),
                _ => String::new(),
            };
            (e.to_string(), key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_parse() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(s.name, name);
            assert!(!s.points(false).is_empty());
        }
    }

    #[test]
    fn e1_sweeps_two_profiles_by_eleven_p() {
        let s = Scenario::load("e1").unwrap();
        let points = s.points(false);
        assert_eq!(points.len(), 22);
        assert_eq!(points[0], vec![("p".to_string(), "0.0".to_string()), ("profile".into(), "legacy".into())]);
        assert!(s.assignments(&points[3], true).contains(&"n=40000".to_string()));
    }

    #[test]
    fn definitions_parse_back_to_the_same_scenario() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap();
            let text = s.definition().unwrap();
            let again = Scenario::parse(name, &text).unwrap();
            assert_eq!(again, s, "{text}");
            assert_eq!(again.definition().unwrap(), text);
        }
        let mut s = Scenario::load("e1").unwrap();
        s.seed = u64::MAX;
        assert_eq!(Scenario::parse("e1", &s.definition().unwrap()).unwrap().seed, u64::MAX);
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let text = BUILT_IN[0].1;
        let typo = text.replace("fresh_every = 8", "fresh_evry = 8");
        let e = Scenario::parse("x.toml", &typo).unwrap_err().0;
        let line = typo.lines().position(|l| l.starts_with("fresh_evry")).unwrap() + 1;
        assert_eq!(e, format!("x.toml:{line}: [params] `fresh_evry`: workload `io-mix` has no such parameter"));
        let unknown_field = text.replace("question =", "questoin =");
        let e = Scenario::parse("x.toml", &unknown_field).unwrap_err().0;
        assert!(e.starts_with("x.toml:") && e.contains("questoin"), "{e}");
        let bad_axis = text.replace("x = \"p\"", "x = \"q\"");
        assert!(Scenario::parse("x.toml", &bad_axis).unwrap_err().0.contains("x = `q` is not a sweep axis"));
        let bad_value = text.replace("p = [0.0,", "p = [1.5,");
        assert!(Scenario::parse("x.toml", &bad_value).unwrap_err().0.contains("out of range"));
        let feature = text.replace("[sweep]\n", "[sweep]\napicv = [0, 1]\n");
        let e = Scenario::parse("x.toml", &feature).unwrap_err().0;
        assert!(e.ends_with("[sweep] `apicv`: apicv takes true or false"), "{e}");
        let ok = text.replace("[sweep]\n", "[sweep]\napicv = [false, true]\n");
        assert!(Scenario::parse("x.toml", &ok).is_ok());
    }

    #[test]
    fn setting_a_swept_axis_replaces_its_values_and_says_so_and_its_range_is_checked() {
        let mut s = Scenario::load("e1").unwrap();
        let note = s.set("p", toml::Value::Float(0.5)).unwrap();
        assert_eq!(
            note,
            "--set p=0.5: p is swept over 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0; every point now runs p = 0.5 instead"
        );
        assert_eq!(s.points(false).len(), 2, "one p on each profile");
        assert!(s.check("e1 with --set", "").is_ok());
        let mut s = Scenario::load("e1").unwrap();
        assert!(s.set("p", toml::Value::Integer(2)).is_some());
        let e = s.check("e1 with --set", "").unwrap_err().0;
        assert!(e.contains("`p` = 2 is out of range"), "{e}");
        let mut s = Scenario::load("e1").unwrap();
        assert_eq!(s.set("n", toml::Value::Integer(300)), None);
        assert!(s.assignments(&s.points(true)[0], true).contains(&"n=300".to_string()), "overrides [full] too");
        assert_eq!(
            s.set("profile", toml::Value::String("legacy".into())).as_deref().map(|n| n.contains("legacy, modern")),
            Some(true)
        );
    }
}

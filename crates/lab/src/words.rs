//! How the report names an experiment's things in the field's words: a
//! scenario's `[words]` table gives its iteration a name ("idle period"),
//! its axes titles ("I/O fraction p") and its axis values the mechanism
//! they stand for ("a tickless kernel" for `tick_hz = 0`); metrics become
//! quantities with units a reader uses ("exits per 1,000 idle periods",
//! "us per packet", "% of a core").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scenario's `[words]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Words {
    /// What one iteration of the measured loop is ("idle period",
    /// "monitored write"); "iteration" if not given.
    #[serde(default)]
    pub iteration: Option<String>,
    /// Axis titles, with units ("idle period (ms)").
    #[serde(default)]
    pub axes: BTreeMap<String, String>,
    /// What each value of an axis stands for: `values.tick_hz."0"`.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// The guest's counters in words (`tx_aborts` = "aborted transactions").
    #[serde(default)]
    pub counters: BTreeMap<String, String>,
}

impl Words {
    fn iteration(&self) -> &str {
        self.iteration.as_deref().unwrap_or("iteration")
    }

    /// An axis's title: the scenario's words, else its name.
    pub fn axis(&self, axis: &str) -> String {
        self.axes.get(axis).cloned().unwrap_or_else(|| axis.to_string())
    }

    /// What `axis = value` stands for: the scenario's words, else the
    /// assignment itself.
    pub fn value(&self, axis: &str, value: &str) -> String {
        self.values.get(axis).and_then(|v| v.get(value)).cloned().unwrap_or_else(|| format!("{axis} = {value}"))
    }

    /// A metric as a quantity with its unit.
    pub fn quantity(&self, metric: &str) -> Quantity {
        let per_it = format!("per 1,000 {}s", self.iteration());
        let (family, member) = match metric.split_once('.') {
            Some((f, m)) => (f, Some(m)),
            None => (metric, None),
        };
        let count = |name: String| Quantity { name, unit: "", scale: 1.0 };
        let time = |name: &str| Quantity { name: name.to_string(), unit: "us", scale: 1e-3 };
        let counter = |m: &str| {
            let last = m.rsplit('.').next().unwrap_or(m);
            self.counters.get(m).or(self.counters.get(last)).cloned().unwrap_or_else(|| m.replace(['_', '.'], " "))
        };
        match (family, member) {
            ("exits", None) => count("exits".into()),
            ("exits", Some(r)) => count(format!("{r} exits")),
            ("exits_per_kiter", None) => count(format!("exits {per_it}")),
            ("exits_per_kiter", Some(r)) => count(format!("{r} exits {per_it}")),
            ("exits_per_s", None) => count("exits per second of guest time".into()),
            ("exits_per_s", Some(r)) => count(format!("{r} exits per second of guest time")),
            ("exits_per_packet", None) => count("exits per packet".into()),
            ("exits_per_packet", Some(r)) => count(format!("{r} exits per packet")),
            ("exit_time_share", _) => Quantity { name: "share of the core in exits".into(), unit: "%", scale: 100.0 },
            ("vcpu_cpu_share", _) => {
                Quantity { name: "the vCPU thread's share of a host core".into(), unit: "%", scale: 100.0 }
            }
            ("avg_exit_ns", _) => time("time per exit"),
            ("guest_ns", _) => time("guest time"),
            ("handler_ns_per_packet", _) => time("VMM time per packet"),
            ("interrupts_per_packet", _) => count("interrupts per packet".into()),
            ("packets", _) => count("packets".into()),
            ("latency_ns", Some(s)) => time(&format!("{} round trip", stat(s))),
            ("irq_latency_ns", Some(s)) => time(&format!("{} interrupt latency", stat(s))),
            ("work_per_exit", Some(w)) => count(format!("{} per exit", w.replace('_', " "))),
            ("guest" | "device", Some(m)) => count(counter(m)),
            ("guest_per_kiter" | "device_per_kiter", Some(m)) => count(format!("{} {per_it}", counter(m))),
            ("pages_logged_per_kiter", _) => count(format!("pages logged {per_it}")),
            _ => count(metric.replace('_', " ")),
        }
    }
}

fn stat(s: &str) -> &str {
    match s {
        "mean" => "mean",
        "stddev" => "standard deviation of the",
        "p50" => "median",
        "p99" => "99th-percentile",
        other => other,
    }
}

/// A metric as a reader reads it: a name, a unit ("us", "%", or none for
/// counts) and the factor from the metric's own unit (ns, fraction).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    pub name: String,
    pub unit: &'static str,
    pub scale: f64,
}

impl Quantity {
    /// "mean round trip (us)", "exits per 1,000 idle periods".
    pub fn title(&self) -> String {
        match self.unit {
            "" => self.name.clone(),
            u => format!("{} ({u})", self.name),
        }
    }

    /// A value in the reader's unit: "12.50%", "1.37 us", "126 ns",
    /// "1.39 ms", "2.0k".
    pub fn show(&self, v: f64) -> String {
        let x = v * self.scale;
        match self.unit {
            // Counts from 100 up in full: "1,000" and "4,562", not "1.0k".
            "" if (x.fract() == 0.0 || x.abs() >= 100.0) && x.abs() < 1e7 => {
                let whole: u64 = format!("{:.0}", x.abs()).parse().unwrap_or(0);
                format!("{}{}", if x < 0.0 { "-" } else { "" }, crate::chapter::thousands(whole))
            }
            "" => crate::plot::short(x),
            "%" if x != 0.0 && x.abs() < 0.01 => format!("{x:.4}%"),
            "%" => format!("{x:.2}%"),
            // Times (kept in ns) in the unit that reads best.
            "us" if v.abs() < 1_000.0 => format!("{} ns", crate::plot::short(v)),
            "us" if v.abs() >= 1_000_000.0 => format!("{:.2} ms", v / 1e6),
            u => format!("{x:.2} {u}"),
        }
    }

    /// The value alone, in the reader's unit, for tables whose header
    /// carries the unit.
    pub fn cell(&self, v: f64) -> String {
        let x = v * self.scale;
        match self.unit {
            "%" => self.show(v),
            "" => crate::plot::short(x),
            _ if x.abs() >= 1000.0 => crate::plot::short(x),
            _ => format!("{x:.2}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e4() -> Words {
        toml::from_str(
            "iteration = \"idle period\"\naxes = { period_ms = \"idle period (ms)\" }\n[values.tick_hz]\n\"0\" = \"a tickless kernel\"\n\"1000\" = \"a 1,000 Hz tick\"\n",
        )
        .unwrap()
    }

    #[test]
    fn metrics_and_values_read_in_the_fields_words_with_units() {
        let w = e4();
        assert_eq!(w.quantity("exits_per_kiter").title(), "exits per 1,000 idle periods");
        assert_eq!(w.quantity("exits_per_kiter.HLT").title(), "HLT exits per 1,000 idle periods");
        assert_eq!(w.quantity("exit_time_share").show(0.125), "12.50%");
        assert_eq!(w.quantity("irq_latency_ns.mean").show(1372.0), "1.37 us");
        assert_eq!(w.quantity("latency_ns.p99").title(), "99th-percentile round trip (us)");
        assert_eq!(w.quantity("handler_ns_per_packet").show(63.6), "63.6 ns");
        assert_eq!(w.quantity("irq_latency_ns.p50").show(1_393_000.0), "1.39 ms");
        assert_eq!(w.value("tick_hz", "0"), "a tickless kernel");
        assert_eq!(w.value("tick_hz", "100"), "tick_hz = 100", "no words: the assignment");
        assert_eq!(w.axis("period_ms"), "idle period (ms)");
        assert_eq!(Words::default().quantity("exits_per_kiter").title(), "exits per 1,000 iterations");
        assert_eq!(
            Words::default().quantity("device_per_kiter.kick-doorbell.notifications").title(),
            "kick-doorbell notifications per 1,000 iterations"
        );
    }
}

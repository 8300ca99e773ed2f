//! Workload parameters: each workload declares its own, with a range and a
//! default, so a bad `--set` is caught before anything runs.

use std::collections::BTreeMap;
use std::fmt;

/// The kind and bounds of one parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamKind {
    Int {
        min: u64,
        max: u64,
        default: u64,
    },
    Float {
        min: f64,
        max: f64,
        default: f64,
    },
    /// One of several names; the value is the chosen name's index.
    Choice {
        choices: &'static [&'static str],
        default: usize,
    },
}

/// One parameter a workload accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub help: &'static str,
}

impl ParamSpec {
    pub const fn int(name: &'static str, min: u64, max: u64, default: u64, help: &'static str) -> Self {
        ParamSpec { name, kind: ParamKind::Int { min, max, default }, help }
    }

    pub const fn float(name: &'static str, min: f64, max: f64, default: f64, help: &'static str) -> Self {
        ParamSpec { name, kind: ParamKind::Float { min, max, default }, help }
    }

    pub const fn choice(
        name: &'static str,
        choices: &'static [&'static str],
        default: usize,
        help: &'static str,
    ) -> Self {
        ParamSpec { name, kind: ParamKind::Choice { choices, default }, help }
    }

    /// The default value, printed as a user would write it.
    pub fn default_text(&self) -> String {
        match self.kind {
            ParamKind::Int { default, .. } => default.to_string(),
            ParamKind::Float { default, .. } => default.to_string(),
            ParamKind::Choice { choices, default } => choices[default].to_string(),
        }
    }

    /// The accepted range, printed as a user would write it.
    pub fn range_text(&self) -> String {
        match self.kind {
            ParamKind::Int { min, max, .. } => format!("{min}..={max}"),
            ParamKind::Float { min, max, .. } => format!("{min}..={max}"),
            ParamKind::Choice { choices, .. } => choices.join(" | "),
        }
    }
}

/// What is wrong with a parameter a user gave.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamError {
    Unknown {
        workload: String,
        key: String,
        known: Vec<&'static str>,
    },
    NotANumber {
        key: String,
        value: String,
    },
    OutOfRange {
        key: String,
        value: String,
        range: String,
    },
    Malformed(String),
    /// Two values each in range that the workload cannot run together.
    Conflict {
        key: String,
        other: String,
        why: &'static str,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown { workload, key, known } => {
                write!(f, "workload `{workload}` has no parameter `{key}` (it takes: {})", known.join(", "))
            }
            ParamError::NotANumber { key, value } => {
                write!(f, "parameter `{key}`: `{value}` is not a number")
            }
            ParamError::OutOfRange { key, value, range } => {
                write!(f, "parameter `{key}` = {value} is out of range ({range})")
            }
            ParamError::Malformed(s) => write!(f, "`{s}` is not of the form key=value"),
            ParamError::Conflict { key, other, why } => {
                write!(f, "parameter `{key}` cannot be set with `{other}`: {why}")
            }
        }
    }
}

impl std::error::Error for ParamError {}

/// Resolved parameter values: every declared parameter has a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    values: BTreeMap<&'static str, f64>,
}

impl Params {
    /// Every parameter at its default.
    pub fn defaults(specs: &[ParamSpec]) -> Params {
        let values = specs
            .iter()
            .map(|s| {
                let v = match s.kind {
                    ParamKind::Int { default, .. } => default as f64,
                    ParamKind::Float { default, .. } => default,
                    ParamKind::Choice { default, .. } => default as f64,
                };
                (s.name, v)
            })
            .collect();
        Params { values }
    }

    /// Sets `key` from text, checking it against the workload's specs.
    pub fn set(&mut self, workload: &str, specs: &[ParamSpec], key: &str, value: &str) -> Result<(), ParamError> {
        let spec = specs.iter().find(|s| s.name == key).ok_or_else(|| ParamError::Unknown {
            workload: workload.to_string(),
            key: key.to_string(),
            known: specs.iter().map(|s| s.name).collect(),
        })?;
        let bad = || ParamError::NotANumber { key: key.to_string(), value: value.to_string() };
        let out_of_range =
            || ParamError::OutOfRange { key: key.to_string(), value: value.to_string(), range: spec.range_text() };
        let v = match spec.kind {
            ParamKind::Int { min, max, .. } => {
                // A whole number past u64 either way (-1, 10^20) is out of
                // range, not "not a number".
                let whole = |t: &str| {
                    let digits = t.trim().strip_prefix('-').unwrap_or(t.trim());
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                };
                let v = match parse_int(value) {
                    Some(v) => v,
                    None if whole(value) => return Err(out_of_range()),
                    None => return Err(bad()),
                };
                if v < min || v > max {
                    return Err(out_of_range());
                }
                v as f64
            }
            ParamKind::Float { min, max, .. } => {
                let v: f64 = value.trim().parse().map_err(|_| bad())?;
                if !v.is_finite() || v < min || v > max {
                    return Err(out_of_range());
                }
                v
            }
            ParamKind::Choice { choices, .. } => {
                choices.iter().position(|c| *c == value.trim()).ok_or_else(out_of_range)? as f64
            }
        };
        self.values.insert(spec.name, v);
        Ok(())
    }

    /// Applies `key=value` assignments in order.
    pub fn apply<'a>(
        &mut self,
        workload: &str,
        specs: &[ParamSpec],
        assignments: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ParamError> {
        for a in assignments {
            let (k, v) = a.split_once('=').ok_or_else(|| ParamError::Malformed(a.to_string()))?;
            self.set(workload, specs, k.trim(), v)?;
        }
        Ok(())
    }

    /// An integer parameter. Panics only on a name the workload never
    /// declared, which is a bug in the workload, not bad input.
    pub fn int(&self, name: &str) -> u64 {
        self.values[name] as u64
    }

    pub fn float(&self, name: &str) -> f64 {
        self.values[name]
    }

    /// The index of a choice parameter's value.
    pub fn choice(&self, name: &str) -> usize {
        self.values[name] as usize
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }
}

fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] =
        &[ParamSpec::int("n", 1, 1000, 10, "iterations"), ParamSpec::float("p", 0.0, 1.0, 0.5, "fraction")];

    #[test]
    fn defaults_then_overrides() {
        let mut p = Params::defaults(SPECS);
        assert_eq!(p.int("n"), 10);
        p.apply("w", SPECS, ["n=0x20", "p=0.25"]).unwrap();
        assert_eq!(p.int("n"), 32);
        assert_eq!(p.float("p"), 0.25);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut p = Params::defaults(SPECS);
        let e = p.apply("w", SPECS, ["q=1"]).unwrap_err();
        assert_eq!(e.to_string(), "workload `w` has no parameter `q` (it takes: n, p)");
        let e = p.set("w", SPECS, "n", "5000").unwrap_err();
        assert_eq!(e.to_string(), "parameter `n` = 5000 is out of range (1..=1000)");
        let e = p.set("w", SPECS, "p", "lots").unwrap_err();
        assert_eq!(e.to_string(), "parameter `p`: `lots` is not a number");
        assert!(matches!(p.apply("w", SPECS, ["n"]), Err(ParamError::Malformed(_))));
        assert!(p.set("w", SPECS, "p", "NaN").is_err());
        // Whole numbers below 0 or past u64 are out of range, not "not a number".
        for v in ["-1", "99999999999999999999999"] {
            let e = p.set("w", SPECS, "n", v).unwrap_err();
            assert_eq!(e.to_string(), format!("parameter `n` = {v} is out of range (1..=1000)"));
        }
        let e = p.set("w", SPECS, "n", "1e3").unwrap_err();
        assert_eq!(e.to_string(), "parameter `n`: `1e3` is not a number");
    }
}

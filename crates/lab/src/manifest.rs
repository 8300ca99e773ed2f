//! manifest.json: what an output set is. Every set exitlab writes — one
//! experiment's results, the report, or a part that a shard wrote — says
//! which exitlab wrote it, which experiments it ran with which definitions
//! (as scenario files, after `--set` and `--backend`), at which size,
//! which shard it is, and the keys of the points it holds. `merge` reads
//! nothing else to decide whether parts belong together, and the
//! definitions let it write the complete set without the scenario files.

use crate::scenario::Scenario;
use crate::shard::{digest64, Shard};
use serde::{Deserialize, Serialize};

/// The exitlab version that writes sets: parts merge only into the
/// version that wrote them.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The manifest's file name in every set.
pub const FILE: &str = "manifest.json";

/// One experiment (`exitlab run`) or the report (every built-in
/// experiment and E8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    Run,
    Report,
}

impl SetKind {
    /// `run` or `report`, as manifests and messages say it.
    pub fn name(self) -> &'static str {
        match self {
            SetKind::Run => "run",
            SetKind::Report => "report",
        }
    }
}

/// One experiment of a set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub scenario: String,
    /// `digest64` of the definition and the size, 16 hex digits.
    pub digest: String,
    /// The scenario file the points ran (TOML, `Scenario::definition`).
    pub definition: String,
    /// Keys (`shard::point_key`) of the points the set holds, in sweep order.
    pub points: Vec<String>,
    /// In a report's part: keys of the points of the experiment's host
    /// side (`host::scenario`) the part holds, in sweep order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_points: Vec<String>,
}

impl Entry {
    /// The entry of `s` at size `full`, holding the points `keys`.
    pub fn new(s: &Scenario, full: bool, keys: Vec<String>) -> Result<Entry, String> {
        let definition = s.definition().map_err(|e| e.0)?;
        let digest = definition_digest(&definition, full);
        Ok(Entry { scenario: s.name.clone(), digest, definition, points: keys, host_points: Vec::new() })
    }
}

/// What the digest of one experiment covers: its definition and its size.
pub fn definition_digest(definition: &str, full: bool) -> String {
    let size = if full { "full" } else { "quick" };
    format!("{:016x}", digest64(format!("{definition}# size: {size}\n").as_bytes()))
}

/// A report's second machine: this host's KVM beside the simulator, or
/// why the simulator runs alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostSide {
    /// Every experiment also runs on this host's KVM, as its `[host]` plan
    /// says, and E8's cases too.
    Kvm,
    /// The simulator alone, for this reason.
    Alone(String),
}

/// manifest.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The exitlab version that wrote the set.
    pub exitlab: String,
    pub set: SetKind,
    /// `I/N` for a part; absent from a complete set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The paper-size run (`--full`).
    pub full: bool,
    /// `digest64` of the kind and every entry's digest: the parts of one
    /// sweep, whatever their shard, share it.
    pub digest: String,
    pub experiments: Vec<Entry>,
    /// Whether the set holds E8's results (report sets only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e8: bool,
    /// A report's host side (report sets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSide>,
    /// Whether the set holds E8's results on the host (report parts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e8_host: bool,
    /// Whether the part holds the report's Linux section (shard 0 of a
    /// report; a complete set does not say).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linux: bool,
}

impl Manifest {
    /// The manifest of a set of `experiments` written by this exitlab.
    pub fn new(set: SetKind, shard: Option<Shard>, full: bool, experiments: Vec<Entry>, e8: bool) -> Manifest {
        let digests: Vec<&str> = experiments.iter().map(|e| e.digest.as_str()).collect();
        let digest = format!("{:016x}", digest64(format!("{}:{}", set.name(), digests.join(",")).as_bytes()));
        Manifest {
            exitlab: VERSION.to_string(),
            set,
            shard: shard.map(|s| s.to_string()),
            full,
            digest,
            experiments,
            e8,
            host: None,
            e8_host: false,
            linux: false,
        }
    }

    /// The manifest as the file holds it.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        text.push('\n');
        text
    }

    /// The experiments' names, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.experiments.iter().map(|e| e.scenario.as_str()).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_definition_and_size() {
        let s = Scenario::load("e1").unwrap();
        let quick = Entry::new(&s, false, vec![]).unwrap();
        assert_eq!(quick.digest.len(), 16);
        assert_ne!(quick.digest, Entry::new(&s, true, vec![]).unwrap().digest);
        let mut other = s.clone();
        other.params.insert("n".into(), toml::Value::Integer(300));
        assert_ne!(quick.digest, Entry::new(&other, false, vec![]).unwrap().digest);
        assert_eq!(quick.digest, definition_digest(&quick.definition, false));
        let m = Manifest::new(SetKind::Run, Some(Shard { index: 1, count: 3 }), false, vec![quick], false);
        let back: Manifest = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert!(m.to_json().contains("\"shard\": \"1/3\""));
        assert!(!m.to_json().contains("\"e8\""));
    }
}

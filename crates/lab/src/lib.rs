//! exitlab's experiments: scenario files (TOML) describing a workload, its
//! parameters and a sweep; running every point of the sweep in parallel,
//! whole or one shard at a time, and merging shards; results as CSV, JSON,
//! SVG figures and a summary; the report over every built-in experiment;
//! and Chrome/Perfetto traces of single runs. Every run gets its backend
//! from [`backend::BackendSpec`].
#![forbid(unsafe_code)]

pub mod backend;
pub mod calibrate;
pub mod chapter;
pub mod fleet;
pub mod host;
pub mod hostinfo;
pub mod image;
pub mod linux;
pub mod manifest;
pub mod measure;
pub mod output;
pub mod part;
pub mod plot;
pub mod precise;
pub mod probe;
pub mod profile_text;
pub mod reading;
pub mod report;
pub mod scenario;
pub mod shard;
pub mod suite;
pub mod threadprobe;
pub mod trace;
pub mod validate;
pub mod words;

pub use measure::{run_points, run_scenario, PointResult, Results};
pub use scenario::{Scenario, ScenarioError};

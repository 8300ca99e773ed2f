//! exitlab's experiments: scenario files (TOML) describing a workload, its
//! parameters and a sweep; running every point of the sweep in parallel;
//! results as CSV, JSON, SVG figures and a summary; the report over every
//! built-in experiment; and Chrome/Perfetto traces of single runs.

pub mod chapter;
pub mod fleet;
pub mod host;
pub mod measure;
pub mod output;
pub mod plot;
pub mod precise;
pub mod reading;
pub mod report;
pub mod scenario;
pub mod trace;
pub mod words;

pub use measure::{run_scenario, PointResult, Results};
pub use scenario::{Scenario, ScenarioError};

//! `exitlab suite`: the lab's kvm-unit-tests runner on the command line:
//! one line per test as each finishes (in the tests' order), a summary,
//! or one JSON object.

use crate::{args, Backend, UsageError};
use exitlab_lab::backend::BackendSpec;
use exitlab_lab::suite::{self, SuiteOptions, TestResult, Verdict};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub struct SuiteArgs<'a> {
    pub inputs: &'a [PathBuf],
    pub backend: Backend,
    pub kvm_device: Option<PathBuf>,
    pub profile: &'a str,
    pub timeout: Option<&'a str>,
    pub jobs: &'a str,
    pub json: bool,
}

/// One line: name, verdict, PASS/FAIL/SKIP lines, top exit reasons,
/// guest instructions, host seconds, and the reason where there is one.
fn line(r: &TestResult) -> String {
    if r.verdict == Verdict::NotApplicable && r.exits.is_none() {
        return format!("{:<36} {:<7} {}", r.name, r.verdict.name(), r.reason.as_deref().unwrap_or(""));
    }
    let (p, f, s) = r.counts();
    let top: Vec<String> = r.top_exits.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let insns = r.instructions.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut l = format!(
        "{:<36} {:<7} {:>4}/{}/{}  exits: {}  insns {insns}  {:.2}s",
        r.name,
        r.verdict.name(),
        p,
        f,
        s,
        if top.is_empty() { "none".to_string() } else { top.join(", ") },
        r.host_seconds
    );
    if let Some(why) = &r.reason {
        l.push_str(&format!("  ({why})"));
    }
    l
}

fn summary(results: &[TestResult], seconds: f64) -> String {
    let n = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    format!(
        "{} tests: {} PASS, {} FAIL, {} SKIP, {} TIMEOUT, {} n/a; {seconds:.1}s",
        results.len(),
        n(Verdict::Pass),
        n(Verdict::Fail),
        n(Verdict::Skip),
        n(Verdict::Timeout),
        n(Verdict::NotApplicable)
    )
}

pub fn suite(a: &SuiteArgs<'_>) -> Result<ExitCode, UsageError> {
    let jobs: usize = a
        .jobs
        .trim()
        .parse()
        .ok()
        .filter(|&j| j > 0)
        .ok_or_else(|| UsageError(format!("-j: `{}` is not a positive whole number", a.jobs)))?;
    let timeout = match a.timeout {
        Some(t) => Some(Duration::from_nanos(args::duration_ns("--timeout", t)?)),
        None => None,
    };
    let backend = match a.backend {
        Backend::Sim => BackendSpec::sim(exitlab_sim::profile::Profile::load(a.profile)?, 0),
        Backend::Kvm => {
            let spec = BackendSpec::kvm(a.kvm_device.clone());
            if let BackendSpec::Kvm { device, .. } = &spec {
                exitlab_kvm::probe(device)?;
            }
            spec
        }
    };
    let tests = suite::collect(a.inputs).map_err(|e| UsageError(e.to_string()))?;
    if tests.is_empty() {
        return Err(UsageError("no tests found (a directory needs unittests.cfg or .flat files)".into()));
    }
    let options = SuiteOptions { backend, timeout };
    let start = Instant::now();
    let json = a.json;
    let results = suite::run_all(&tests, &options, jobs, |r| {
        if !json {
            say!("{}", line(r));
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    if json {
        let n = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
        let doc = serde_json::json!({
            "backend": a.backend.name(),
            "tests": results.iter().map(TestResult::to_json).collect::<Vec<_>>(),
            "summary": {
                "tests": results.len(),
                "pass": n(Verdict::Pass),
                "fail": n(Verdict::Fail),
                "skip": n(Verdict::Skip),
                "timeout": n(Verdict::Timeout),
                "not_applicable": n(Verdict::NotApplicable),
                "host_seconds": seconds,
            },
        });
        say!("{}", serde_json::to_string_pretty(&doc).expect("JSON values always serialize"));
    } else {
        say!("{}", summary(&results, seconds));
    }
    Ok(if results.iter().any(|r| r.verdict.fails()) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

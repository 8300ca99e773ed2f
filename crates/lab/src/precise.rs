//! E8, precise trap-and-emulate, in the report: the `exitlab check` suite
//! (single steps over instructions the VMM completes, injected exceptions)
//! on the simulator's profiles, as a table of expected and observed RIPs,
//! vectors and DR6 values, with a reading computed from the verdicts. The
//! same cases run against the host's KVM with `exitlab check --backend
//! kvm`.

use crate::backend::BackendSpec;
use exitlab_sim::profile::{Profile, BUILT_IN};
use exitlab_vmm::check::{run_case, CaseResult, CASES};
use exitlab_vmm::RunOptions;

/// Every case on every built-in profile: (profile, result).
pub fn run() -> Result<Vec<(String, CaseResult)>, String> {
    let mut out = Vec::new();
    for (name, _) in BUILT_IN {
        let spec = BackendSpec::sim(Profile::load(name).map_err(|e| e.0)?, 0);
        for case in CASES {
            out.push((name.to_string(), run_case(case, |image| spec.run(image, &RunOptions::default()))));
        }
    }
    Ok(out)
}

/// Every case on the host's KVM, or why KVM cannot be used here.
pub fn run_host() -> Result<Vec<CaseResult>, String> {
    let spec = BackendSpec::kvm(None);
    if let BackendSpec::Kvm { device, .. } = &spec {
        exitlab_kvm::probe(device)?;
    }
    Ok(CASES.iter().map(|case| run_case(case, |image| spec.run(image, &RunOptions::default()))).collect())
}

/// The results as CSV: case, profile, verdict, expected, observed.
pub fn csv(results: &[(String, CaseResult)]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from("case,profile,pass,expected,got\n");
    for (profile, r) in results {
        out.push_str(&format!("{},{profile},{},{},{}\n", r.name, r.pass, quote(&r.expected), quote(&r.got)));
    }
    out
}

/// "22 of 22 cases behave as on bare metal on every profile", or which do not.
pub fn reading(results: &[(String, CaseResult)]) -> String {
    let failed: Vec<String> =
        results.iter().filter(|(_, r)| !r.pass).map(|(p, r)| format!("{} on {p}", r.name)).collect();
    if failed.is_empty() {
        return format!(
            "All {} case runs behave as the architecture says ({} cases on {} profiles): each completed or injected event reaches the guest with the RIP and DR6 it would have on bare metal.",
            results.len(),
            CASES.len(),
            BUILT_IN.len()
        );
    }
    format!("{} of {} case runs deviate: {}.", failed.len(), results.len(), failed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_passes_on_every_profile_and_the_reading_says_so() {
        let results = run().unwrap();
        assert_eq!(results.len(), CASES.len() * BUILT_IN.len());
        assert!(results.iter().all(|(_, r)| r.pass), "{results:?}");
        assert!(reading(&results).starts_with(&format!("All {} case runs", results.len())));
        assert_eq!(csv(&results).lines().count(), results.len() + 1);
    }
}

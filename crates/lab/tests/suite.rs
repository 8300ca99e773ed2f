//! The suite runner on kvm-unit-tests from ../shared (CI has it beside the
//! clone; a worktree elsewhere names it with EXITLAB_SHARED): the verdicts
//! QEMU gives on this host's KVM are the floor (../shared/kvm-unit-tests/
//! NOTES.md and issue 14: setjmp passes its 10 checks, tsc skips all of
//! its own, memory stops on a KVM emulation failure), and on the
//! simulator every test ends with a verdict or a one-line reason. Skips,
//! with the reason printed, without the files or without KVM.

use exitlab_lab::backend::BackendSpec;
use exitlab_lab::suite::{self, SuiteOptions, Test, Verdict};
use std::path::PathBuf;

fn shared_x86() -> Option<PathBuf> {
    let dir = std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("kvm-unit-tests/x86");
    if dir.join("unittests.cfg").is_file() {
        Some(dir)
    } else {
        println!("skipped: {} has no unittests.cfg; ../shared is beside the repository in CI", dir.display());
        None
    }
}

fn tests(dir: &PathBuf, names: &[&str]) -> Vec<Test> {
    let all = suite::collect(std::slice::from_ref(dir)).unwrap();
    names.iter().map(|n| all.iter().find(|t| t.entry.name == *n).unwrap().clone()).collect()
}

#[test]
fn on_kvm_setjmp_passes_tsc_skips_and_memory_stops_on_an_emulation_failure() {
    let Some(dir) = shared_x86() else { return };
    if let Err(why) = exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        println!("skipped: {why}");
        return;
    }
    let o = SuiteOptions { backend: BackendSpec::kvm(None), timeout: Some(std::time::Duration::from_secs(60)) };
    let r = suite::run_all(&tests(&dir, &["setjmp", "tsc", "memory", "smptest"]), &o, 2, |_| {});
    let (setjmp, tsc, memory, smp) = (&r[0], &r[1], &r[2], &r[3]);
    assert_eq!((setjmp.verdict, setjmp.counts()), (Verdict::Pass, (10, 0, 0)), "{}", setjmp.console);
    assert!(setjmp.console.contains("SUMMARY: 10 tests"));
    // tsc reports no check of its own here and exits "all skipped" (77);
    // on a CPU with RDTSCP/RDPID in KVM's CPUID it would pass them.
    assert!(matches!(tsc.verdict, Verdict::Skip | Verdict::Pass), "{:?}: {}", tsc.verdict, tsc.console);
    assert_eq!(tsc.counts().1, 0, "{}", tsc.console);
    assert!(memory.verdict == Verdict::Pass || memory.verdict == Verdict::Fail, "{:?}", memory.verdict);
    if memory.verdict == Verdict::Fail {
        let why = memory.reason.as_deref().unwrap();
        assert!(why.contains("not modelled by KVM's instruction emulator"), "{why}");
    }
    assert_eq!((smp.verdict, smp.reason.as_deref()), (Verdict::NotApplicable, Some("needs 2 vCPUs (exitlab runs 1)")));
}

#[test]
fn on_the_simulator_every_test_ends_with_a_verdict_or_a_reason() {
    let Some(dir) = shared_x86() else { return };
    let spec = BackendSpec::sim(exitlab_sim::profile::Profile::load("modern").unwrap(), 0);
    let o = SuiteOptions { backend: spec, timeout: Some(std::time::Duration::from_secs(10)) };
    let all = suite::collect(std::slice::from_ref(&dir)).unwrap();
    let r = suite::run_all(&all, &o, 2, |_| {});
    assert_eq!(r.len(), all.len());
    for t in &r {
        if matches!(t.verdict, Verdict::NotApplicable | Verdict::Fail | Verdict::Timeout) {
            let why = t.reason.as_deref().unwrap_or_default();
            assert!(!why.is_empty() && !why.contains('\n'), "{}: {why:?}", t.name);
        }
    }
    let setjmp = r.iter().find(|t| t.name == "setjmp").unwrap();
    assert_eq!((setjmp.verdict, setjmp.counts()), (Verdict::Pass, (10, 0, 0)), "{}", setjmp.console);
}

/// Tests that lean on the PC's firmware and on the CPU's vendor pass on
/// both simulator profiles with QEMU's check counts (NOTES.md's TCG table:
/// realmode 127 PASS lines): realmode's STI;HLT is woken by the BIOS's
/// 18.2 Hz PIT tick through the IVT (exitlab_vmm::firmware), and syscall's
/// entry asks for `vendor=AuthenticAMD`, whose compatibility-mode SYSCALL
/// the simulator then takes (AMD APM Vol. 3 "SYSCALL").
#[test]
fn realmode_and_syscall_pass_on_both_profiles() {
    let Some(dir) = shared_x86() else { return };
    for profile in ["modern", "legacy"] {
        let spec = BackendSpec::sim(exitlab_sim::profile::Profile::load(profile).unwrap(), 0);
        let o = SuiteOptions { backend: spec, timeout: Some(std::time::Duration::from_secs(60)) };
        let r = suite::run_all(&tests(&dir, &["realmode", "syscall"]), &o, 1, |_| {});
        let got: Vec<_> = r.iter().map(|t| (t.name.as_str(), t.verdict, t.counts())).collect();
        assert_eq!(
            got,
            [("realmode", Verdict::Pass, (127, 0, 0)), ("syscall", Verdict::Pass, (2, 0, 0))],
            "{profile}: {:?}",
            r.iter().map(|t| (&t.reason, &t.console)).collect::<Vec<_>>()
        );
    }
}

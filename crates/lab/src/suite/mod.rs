//! `exitlab suite`: kvm-unit-tests (or any multiboot test images that
//! report the same way) on either backend, run the way QEMU's runner does
//! (scripts/runtime.bash, x86/run): the test's `unittests.cfg` entry gives
//! its image, arguments, vCPUs, accelerator, architecture, groups, time
//! limit and host checks; the image boots on the PC platform with the
//! command line "<name> <args>" and an environment module (NR_CPUS,
//! MEMSIZE, TEST_DEVICE), in at least 128 MiB unless the entry asks for
//! another size; its checks are its console's `PASS:`/`FAIL:`/`SKIP:`
//! lines and its verdict the status it writes to isa-debug-exit.
//!
//! A test exitlab cannot run as configured is `n/a` with the reason
//! (more vCPUs than exitlab runs, nested virtualization, a QEMU device or
//! CPU model exitlab lacks, a host check not met, an image the backend
//! cannot start yet), never a guess. Every run has a time limit on both
//! backends, so no test hangs the suite.

pub mod cfg;

use crate::backend::{BackendKind, BackendSpec};
use crate::image::{self, ImageRequest};
use cfg::TestEntry;
use exitlab_arch::cpuid::Vendor;
use exitlab_loader::Module;
use exitlab_vmm::{GuestError, Outcome, RunOptions, RunReport};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The runner's time limit when neither `--timeout` nor the entry sets
/// one (runtime.bash's `${TIMEOUT:-${timeout:-90s}}`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// The most RAM exitlab's PC has: one range below the PCI hole at 3 GiB.
const MAX_MEMORY: u64 = 3 << 30;

/// A test to run: its entry, and the image's path.
#[derive(Clone, Debug)]
pub struct Test {
    pub entry: TestEntry,
    pub image: PathBuf,
    /// Named on the command line (not found through a directory), so a
    /// `nodefault` test runs.
    pub named: bool,
}

/// How a test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
    Timeout,
    /// exitlab cannot run it as configured (the reason says why).
    NotApplicable,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
            Verdict::Timeout => "TIMEOUT",
            Verdict::NotApplicable => "n/a",
        }
    }

    /// Whether the suite fails because of it (exit status 1).
    pub fn fails(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Timeout)
    }
}

/// One check the test printed: `PASS: name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// PASS, FAIL, SKIP, XFAIL, XPASS or KFAIL, as printed.
    pub verdict: String,
}

/// A test's result.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub verdict: Verdict,
    /// Why, where the verdict needs one (n/a, a failure that is not the
    /// test's own, a time limit).
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    /// The exit table of the whole run (`stat --json`'s form).
    pub exits: Option<Value>,
    /// The most frequent exit reasons: (name, samples).
    pub top_exits: Vec<(String, u64)>,
    /// Guest instructions, where the backend counts them.
    pub instructions: Option<u64>,
    pub host_seconds: f64,
    /// What the test printed.
    pub console: String,
}

impl TestResult {
    fn not_applicable(name: &str, reason: String) -> TestResult {
        TestResult {
            name: name.to_string(),
            verdict: Verdict::NotApplicable,
            reason: Some(reason),
            checks: Vec::new(),
            exits: None,
            top_exits: Vec::new(),
            instructions: None,
            host_seconds: 0.0,
            console: String::new(),
        }
    }

    /// Its PASS, FAIL and SKIP lines.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |v: &str| self.checks.iter().filter(|c| c.verdict == v).count();
        (n("PASS"), n("FAIL"), n("SKIP"))
    }

    /// The result as `--json` shows it.
    pub fn to_json(&self) -> Value {
        let (pass, fail, skip) = self.counts();
        json!({
            "name": self.name,
            "verdict": self.verdict.name(),
            "reason": self.reason,
            "checks": self.checks.iter().map(|c| json!({"name": c.name, "verdict": c.verdict})).collect::<Vec<_>>(),
            "pass": pass,
            "fail": fail,
            "skip": skip,
            "instructions": self.instructions,
            "host_seconds": self.host_seconds,
            "exits": self.exits,
        })
    }
}

/// A suite that cannot be read: one line.
#[derive(Debug)]
pub struct SuiteError(pub String);

impl std::fmt::Display for SuiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tests `inputs` name: a directory's `unittests.cfg` entries (or,
/// without one, its `.flat` files), a `unittests.cfg` file's entries, or
/// one image file (its name without extension is the test's).
pub fn collect(inputs: &[PathBuf]) -> Result<Vec<Test>, SuiteError> {
    let mut tests = Vec::new();
    for input in inputs {
        let cfg_file = if input.is_dir() { input.join("unittests.cfg") } else { input.clone() };
        let is_cfg = cfg_file.file_name().is_some_and(|n| n == "unittests.cfg");
        if is_cfg && cfg_file.is_file() {
            let text = std::fs::read_to_string(&cfg_file)
                .map_err(|e| SuiteError(format!("cannot read {}: {e}", cfg_file.display())))?;
            let entries = cfg::parse(&text).map_err(|e| SuiteError(format!("{}: {e}", cfg_file.display())))?;
            let dir = cfg_file.parent().unwrap_or(Path::new("."));
            tests.extend(entries.into_iter().map(|e| Test { image: dir.join(&e.file), entry: e, named: false }));
        } else if input.is_dir() {
            let mut flats: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| SuiteError(format!("cannot read {}: {e}", input.display())))?
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "flat"))
                .collect();
            flats.sort();
            tests.extend(flats.into_iter().map(|p| file_test(p, false)));
        } else if input.is_file() {
            tests.push(file_test(input.clone(), true));
        } else {
            return Err(SuiteError(format!("{}: no such file or directory", input.display())));
        }
    }
    Ok(tests)
}

fn file_test(image: PathBuf, named: bool) -> Test {
    let name = image.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let file = image.file_name().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Test { entry: TestEntry { name, file, smp: 1, ..TestEntry::default() }, image, named }
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// The backend every test runs on; each run gets the test's time limit.
    pub backend: BackendSpec,
    /// Every test's limit, over its entry's (as runtime.bash's `TIMEOUT`
    /// overrides `timeout`); `None`: the entry's, else [`DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// What a runnable test needs: RAM, the command line, its time limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub memory: u64,
    pub cmdline: String,
    pub timeout: Duration,
    /// The CPU vendor `-cpu ...,vendor=` asks of the simulator.
    pub vendor: Option<Vendor>,
}

/// What QEMU's options ask of the machine exitlab can give.
#[derive(Default)]
struct Asks {
    /// `-m`: the RAM size.
    memory: Option<u64>,
    /// `-cpu ...,vendor=` on the simulator.
    vendor: Option<Vendor>,
}

/// `90s`, `180`, `2m`, `1h`, `0.5s`: coreutils timeout's durations.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let secs = num.parse::<f64>().ok().filter(|v| *v > 0.0 && v.is_finite())? * scale;
    (secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// `-m 2048`, `-m 4g`, `-m size=512M`: QEMU's RAM option (MiB without a
/// unit).
fn qemu_memory(v: &str) -> Option<u64> {
    let v = v.strip_prefix("size=").unwrap_or(v);
    let v = v.split(',').next()?;
    if v.chars().all(|c| c.is_ascii_digit()) {
        return v.parse::<u64>().ok()?.checked_mul(1 << 20);
    }
    image::parse_size(v)
}

/// Why exitlab cannot run `t` on `backend` as configured, or its plan;
/// `timeout` overrides the entry's limit.
pub fn plan(t: &Test, backend: BackendKind, timeout: Option<Duration>) -> Result<Plan, String> {
    let e = &t.entry;
    if !e.arch.is_empty() && e.arch != "x86_64" {
        return Err(format!("{}-only (exitlab runs x86_64 images)", e.arch));
    }
    if !t.image.is_file() {
        return Err(format!("image {} not found", t.image.display()));
    }
    if e.groups.iter().any(|g| g == "nodefault") && !t.named {
        return Err("nodefault group: run only when named".into());
    }
    match (e.accel.as_str(), backend) {
        ("" | "kvm", BackendKind::Kvm) | ("", BackendKind::Sim) => {}
        (accel, _) => return Err(format!("{accel} only (accel = {accel})")),
    }
    if e.smp > 1 {
        return Err(format!("needs {} vCPUs (exitlab runs 1)", e.smp));
    }
    let asks = qemu_params(&e.qemu_params, backend)?;
    let memory = asks.memory.unwrap_or(image::DEFAULT_MEMORY);
    for c in &e.check {
        let (path, want) = c.split_once('=').unwrap_or((c, ""));
        let have = std::fs::read_to_string(path).map(|s| s.trim().to_string());
        match have {
            Ok(v) if v == want => {}
            Ok(v) => return Err(format!("host check not met: {path} is {v}, not {want}")),
            Err(_) => return Err(format!("host check not met: no {path}")),
        }
    }
    if e.args.contains('`') || e.args.contains("$(") {
        return Err(format!("test_args run a shell command ({})", e.args));
    }
    let timeout = match (timeout, e.timeout.as_str()) {
        (Some(t), _) => t,
        (None, "") => DEFAULT_TIMEOUT,
        (None, t) => parse_timeout(t).ok_or_else(|| format!("timeout = `{t}` is not a duration"))?,
    };
    let cmdline = format!("{} {}", e.name, e.args).trim_end().to_string();
    Ok(Plan { memory, cmdline, timeout, vendor: asks.vendor })
}

/// What QEMU's options ask of the machine (the RAM size, the simulator's
/// CPU vendor), or why exitlab cannot give the rest.
fn qemu_params(params: &str, backend: BackendKind) -> Result<Asks, String> {
    let words: Vec<&str> = params.split_whitespace().collect();
    let mut asks = Asks::default();
    let mut i = 0;
    while i < words.len() {
        let (opt, val) = (words[i], words.get(i + 1).copied().unwrap_or(""));
        i += 1;
        match opt {
            "-m" => {
                i += 1;
                let m = qemu_memory(val).ok_or_else(|| format!("-m {val} is not a size"))?;
                if m > MAX_MEMORY {
                    return Err(format!("asks for {} MiB of RAM (exitlab's PC has at most 3 GiB)", m >> 20));
                }
                asks.memory = Some(m);
            }
            "-cpu" => {
                i += 1;
                let flags: Vec<&str> = val.split(',').collect();
                if flags.iter().any(|f| matches!(*f, "+vmx" | "+svm")) {
                    return Err("nested VMX/SVM".into());
                }
                if flags.iter().any(|f| f.starts_with("hv_") || f.starts_with("+hv")) {
                    return Err("needs Hyper-V enlightenments (hv_* CPU flags)".into());
                }
                if flags[0] == "host" && backend == BackendKind::Sim {
                    return Err("needs -cpu host: KVM-only paravirtual MSRs".into());
                }
                // The simulator's CPU takes the vendor asked for (its
                // CPUID and where Intel and AMD differ, as syscall's
                // compatibility-mode SYSCALL); KVM's is the host's.
                let vendor = flags.iter().find_map(|f| f.strip_prefix("vendor="));
                if let (Some(v), BackendKind::Sim) = (vendor, backend) {
                    asks.vendor = Some(Vendor::from_signature(v).ok_or_else(|| {
                        format!("needs vendor {v} (-cpu {val}); the simulator models GenuineIntel and AuthenticAMD")
                    })?);
                }
            }
            "-device" => return Err(format!("needs QEMU device {}", val.split(',').next().unwrap_or(val))),
            "-M" | "-machine" => {
                i += 1;
                if val.split(',').any(|p| p == "q35" || p.starts_with("kernel-irqchip=split")) {
                    return Err("needs the q35 machine".into());
                }
                if val.split(',').any(|p| p == "vmport=on") {
                    return Err("needs the VMware backdoor port (vmport)".into());
                }
            }
            "-enable-kvm" if backend == BackendKind::Sim => return Err("KVM only (-enable-kvm)".into()),
            "-overcommit" | "-smp" | "-global" | "-append" => i += 1,
            _ => {}
        }
    }
    Ok(asks)
}

/// The environment module QEMU's runner passes as `-initrd`: what the
/// library reads instead of fw_cfg (lib/x86/fwcfg.c `read_cfg_override`).
pub fn environment(memory: u64) -> Module {
    Module {
        bytes: format!("NR_CPUS=1\nMEMSIZE={}\nTEST_DEVICE=1\n", memory >> 20).into_bytes(),
        cmdline: "env".into(),
    }
}

/// The `PASS:`/`FAIL:`/`SKIP:` (and XFAIL, XPASS, KFAIL) lines of a
/// console (lib/report.c `va_report`).
pub fn checks(console: &str) -> Vec<Check> {
    console
        .lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let (verdict, name) = l.split_once(": ")?;
            matches!(verdict, "PASS" | "FAIL" | "SKIP" | "XFAIL" | "XPASS" | "KFAIL")
                .then(|| Check { name: name.to_string(), verdict: verdict.to_string() })
        })
        .collect()
}

/// Runs `t` with `o`.
pub fn run(t: &Test, o: &SuiteOptions) -> TestResult {
    let name = t.entry.name.as_str();
    let kind = o.backend.kind();
    let plan = match plan(t, kind, o.timeout) {
        Ok(p) => p,
        Err(why) => return TestResult::not_applicable(name, why),
    };
    let request = ImageRequest {
        cmdline: plan.cmdline.clone(),
        modules: vec![environment(plan.memory)],
        memory: plan.memory,
        ..ImageRequest::new(&t.image)
    };
    let loaded = match image::load(&request) {
        Ok(l) => l,
        Err(e) => return TestResult { verdict: Verdict::Fail, ..TestResult::not_applicable(name, e.to_string()) },
    };
    let limit = u64::try_from(plan.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut options = RunOptions::default();
    let spec = match &o.backend {
        BackendSpec::Sim { profile, seed, limits } => {
            options.limits.max_host_time = Some(plan.timeout);
            let limits = exitlab_sim::RunLimits { max_time_ns: Some(limit), ..*limits };
            let mut profile = profile.clone();
            if let Some(v) = plan.vendor {
                profile.features.vendor = v;
            }
            BackendSpec::Sim { profile, seed: *seed, limits }
        }
        BackendSpec::Kvm { device, seccomp, .. } => {
            BackendSpec::Kvm { device: device.clone(), max_time: Some(plan.timeout), seccomp: *seccomp }
        }
    };
    let start = Instant::now();
    let report = spec.run(&loaded.boot, &options);
    let host_seconds = start.elapsed().as_secs_f64();
    match report {
        Ok(r) => judge(name, kind, &r, host_seconds),
        Err(e) => TestResult {
            verdict: Verdict::Fail,
            host_seconds,
            ..TestResult::not_applicable(name, format!("exitlab could not run it: {e}"))
        },
    }
}

/// The verdict of a run that ended: by the status the test wrote (QEMU's
/// runner: 1 passes, 77 skipped everything, anything else fails), else by
/// how the run stopped.
fn judge(name: &str, kind: BackendKind, r: &RunReport, host_seconds: f64) -> TestResult {
    let console = r.console();
    let (verdict, reason) = match &r.outcome {
        Outcome::DebugExit { status: 1, .. } | Outcome::Exited { status: 0 } => (Verdict::Pass, None),
        Outcome::DebugExit { status: 77, .. } => (Verdict::Skip, None),
        Outcome::DebugExit { status: 127, .. } => (Verdict::Fail, Some("aborted (status 127)".to_string())),
        Outcome::DebugExit { status, .. } | Outcome::Exited { status } => {
            (Verdict::Fail, Some(format!("exit status {status}")))
        }
        Outcome::GuestError(GuestError::Runaway(why)) => (Verdict::Timeout, Some(why.clone())),
        // What exitlab does not model yet: an instruction on the simulator,
        // or one the VMM's own MMIO emulator lacks on either backend (KVM's
        // emulator failing is the test's FAIL, as under QEMU).
        Outcome::GuestError(e @ GuestError::Unmodelled(_)) if kind == BackendKind::Sim => {
            (Verdict::NotApplicable, Some(e.to_string()))
        }
        Outcome::GuestError(e @ GuestError::NotEmulated { .. }) => (Verdict::NotApplicable, Some(e.to_string())),
        o => (Verdict::Fail, Some(o.to_string())),
    };
    let checks = checks(&console);
    let (verdict, reason) = failed_first(verdict, reason, &checks);
    let all = r.accountant.all();
    let mut top: Vec<(String, u64)> = all.reasons.iter().map(|(k, v)| (k.name().to_string(), v.samples)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(3);
    let view = exitlab_vmm::StatView {
        workload: name,
        backend: kind.name(),
        phase: "all",
        stats: &all,
        virtual_time: kind == BackendKind::Sim,
    };
    TestResult {
        name: name.to_string(),
        verdict,
        reason,
        checks,
        exits: Some(exitlab_vmm::render_json(&view)),
        top_exits: top,
        instructions: all.counters.get("instructions").copied(),
        host_seconds,
        console,
    }
}

/// A test that printed FAIL lines before exitlab stopped it on something
/// it does not model has failed all the same: n/a only when nothing it
/// checked failed.
fn failed_first(verdict: Verdict, reason: Option<String>, checks: &[Check]) -> (Verdict, Option<String>) {
    let failed = checks.iter().filter(|c| c.verdict == "FAIL").count();
    match (verdict, reason) {
        (Verdict::NotApplicable, Some(why)) if failed > 0 => {
            let noun = if failed == 1 { "check" } else { "checks" };
            (Verdict::Fail, Some(format!("{failed} {noun} failed before it stopped: {why}")))
        }
        (v, r) => (v, r),
    }
}

/// Runs `tests` on `jobs` threads; `each` sees every result in the
/// tests' order, as soon as it and those before it are done.
pub fn run_all(tests: &[Test], o: &SuiteOptions, jobs: usize, mut each: impl FnMut(&TestResult)) -> Vec<TestResult> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (send, receive) = std::sync::mpsc::channel::<(usize, TestResult)>();
    let mut done: Vec<Option<TestResult>> = vec![None; tests.len()];
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, tests.len().max(1)) {
            let (send, next) = (send.clone(), &next);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = tests.get(i) else { return };
                if send.send((i, run(t, o))).is_err() {
                    return;
                }
            });
        }
        drop(send);
        let mut shown = 0;
        for (i, r) in receive {
            done[i] = Some(r);
            while let Some(Some(r)) = done.get(shown) {
                each(r);
                shown += 1;
            }
        }
    });
    done.into_iter().flatten().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ../shared/kvm-unit-tests/x86 (EXITLAB_SHARED names another place).
    pub(crate) fn shared_x86() -> PathBuf {
        std::env::var_os("EXITLAB_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
            .join("kvm-unit-tests/x86")
    }

    fn entry(text: &str) -> Test {
        let e = cfg::parse(text).unwrap().remove(0);
        // Any file that exists stands for the image.
        Test { entry: e, image: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"), named: false }
    }

    #[test]
    fn what_exitlab_cannot_run_is_na_with_the_reason() {
        let na = |text: &str, b| plan(&entry(text), b, None).unwrap_err();
        assert_eq!(na("[a]\nsmp = 2\n", BackendKind::Kvm), "needs 2 vCPUs (exitlab runs 1)");
        assert_eq!(na("[a]\narch = i386\n", BackendKind::Kvm), "i386-only (exitlab runs x86_64 images)");
        assert_eq!(na("[a]\nqemu_params = -cpu max,+vmx\n", BackendKind::Kvm), "nested VMX/SVM");
        assert_eq!(na("[a]\naccel = kvm\n", BackendKind::Sim), "kvm only (accel = kvm)");
        assert_eq!(
            na("[a]\nqemu_params = -cpu host -m 2048\n", BackendKind::Sim),
            "needs -cpu host: KVM-only paravirtual MSRs"
        );
        assert_eq!(
            na("[a]\nqemu_params = -cpu host,hv_passthrough\n", BackendKind::Kvm),
            "needs Hyper-V enlightenments (hv_* CPU flags)"
        );
        assert_eq!(na("[a]\nqemu_params = -M q35 -device edu\n", BackendKind::Kvm), "needs the q35 machine");
        assert_eq!(
            na("[a]\nqemu_params = -cpu max,vendor=HygonGenuine\n", BackendKind::Sim),
            "needs vendor HygonGenuine (-cpu max,vendor=HygonGenuine); the simulator models GenuineIntel and AuthenticAMD"
        );
        let vendor = |text: &str, b| plan(&entry(text), b, None).unwrap().vendor;
        assert_eq!(
            vendor("[msr]\nqemu_params = -cpu max,vendor=GenuineIntel\n", BackendKind::Sim),
            Some(Vendor::Intel)
        );
        let amd = "[syscall]\nqemu_params = -cpu Opteron_G1,vendor=AuthenticAMD\n";
        assert_eq!(vendor(amd, BackendKind::Sim), Some(Vendor::Amd));
        assert_eq!(vendor(amd, BackendKind::Kvm), None, "KVM's CPU is the host's");
        assert_eq!(vendor("[a]\nqemu_params = -cpu max\n", BackendKind::Sim), None);
        assert_eq!(
            na("[a]\nqemu_params = -cpu max -m 4g\n", BackendKind::Kvm),
            "asks for 4096 MiB of RAM (exitlab's PC has at most 3 GiB)"
        );
        assert_eq!(na("[a]\ngroups = vmx nodefault\n", BackendKind::Kvm), "nodefault group: run only when named");
        assert!(na("[a]\ncheck = /nonexistent/x=Y\n", BackendKind::Kvm).contains("no /nonexistent/x"));
        assert!(na("[a]\ntest_args = \"1 `date +%s`\"\n", BackendKind::Kvm).contains("shell command"));
    }

    #[test]
    fn a_runnable_test_gets_its_memory_command_line_and_limit() {
        let p = plan(&entry("[vmexit_cpuid]\ntest_args = 'cpuid'\n"), BackendKind::Kvm, None).unwrap();
        assert_eq!(
            p,
            Plan { memory: 128 << 20, cmdline: "vmexit_cpuid cpuid".into(), timeout: DEFAULT_TIMEOUT, vendor: None }
        );
        let sieve = entry("[s]\ntimeout = 180\nqemu_params = -cpu max -m 2048\n");
        let p = plan(&sieve, BackendKind::Sim, None).unwrap();
        assert_eq!((p.memory, p.timeout, p.cmdline.as_str()), (2048 << 20, Duration::from_secs(180), "s"));
        let p = plan(&sieve, BackendKind::Sim, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(p.timeout, Duration::from_secs(60), "the flag overrides the entry, as TIMEOUT does");
        assert_eq!(environment(128 << 20).bytes, b"NR_CPUS=1\nMEMSIZE=128\nTEST_DEVICE=1\n");
        assert_eq!(parse_timeout("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("soon"), None);
    }

    #[test]
    fn a_test_that_failed_checks_before_an_unmodelled_stop_fails() {
        let why = || Some("unsupported: int1".to_string());
        let c = checks("PASS: a\nFAIL: b\nFAIL: c\n");
        assert_eq!(
            failed_first(Verdict::NotApplicable, why(), &c),
            (Verdict::Fail, Some("2 checks failed before it stopped: unsupported: int1".into()))
        );
        assert_eq!(failed_first(Verdict::NotApplicable, why(), &c[..1]), (Verdict::NotApplicable, why()));
        assert_eq!(failed_first(Verdict::Pass, None, &c[..1]), (Verdict::Pass, None));
    }

    #[test]
    fn checks_are_the_report_lines() {
        let c =
            checks("enabling apic\r\nPASS: setjmp: a\r\nFAIL: b c\nSKIP: d\nXFAIL: e\nPASSED: no\nSUMMARY: 4 tests\n");
        let v: Vec<(&str, &str)> = c.iter().map(|c| (c.verdict.as_str(), c.name.as_str())).collect();
        assert_eq!(v, [("PASS", "setjmp: a"), ("FAIL", "b c"), ("SKIP", "d"), ("XFAIL", "e")]);
    }
}

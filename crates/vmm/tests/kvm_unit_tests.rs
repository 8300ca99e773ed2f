//! kvm-unit-tests on the simulator (issue 12's check): each .flat image
//! from ../shared/kvm-unit-tests/x86 (EXITLAB_SHARED names another place)
//! is loaded by exitlab-loader as QEMU's `-kernel` would (multiboot, a
//! 32-bit protected-mode entry), with the env module QEMU's `-initrd` would
//! carry (one vCPU, no pc-testdev, the RAM size), and run on both
//! simulator profiles. The test ends PASS when the image's own summary
//! has no failure and it exits with status 0 (all passed) or 38/77 (all
//! skipped); every FAIL line is reported. A missing image skips with the
//! reason. `EXITLAB_KUT` picks the tests to run (comma-separated names);
//! the default is the quick set CI can afford.

use exitlab_guest::boot::Chunk;
use exitlab_guest::BootImage;
use exitlab_guest::MachineConfig;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_boot_image, Outcome, RunOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Guest RAM: the images end near 16.3 MiB; the library's page tables
/// cover RAM and 4 GiB.
const MEMORY: u64 = 128 << 20;

fn shared_dir() -> PathBuf {
    std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The image as the VMM loads it, or why not.
fn image(name: &str, args: &str) -> Result<BootImage, String> {
    let path = shared_dir().join("kvm-unit-tests/x86").join(format!("{name}.flat"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{} is not readable ({e})", path.display()))?;
    let env = format!("NR_CPUS=1\nMEMSIZE={}\nTEST_DEVICE=0\n", MEMORY >> 20);
    let mut options = exitlab_loader::Options::new(MEMORY);
    // argv[0] is the first word of the command line.
    options.cmdline = format!("{name} {args}").trim().to_string();
    options.modules = vec![exitlab_loader::Module { bytes: env.into_bytes(), cmdline: "env".into() }];
    let g = exitlab_loader::load(&bytes, &options).map_err(|e| e.to_string())?;
    let chunks = g
        .chunks
        .iter()
        .map(|c| Chunk { gpa: c.gpa, bytes: [c.bytes.clone(), vec![0; c.zeros as usize]].concat() })
        .collect();
    let symbols: BTreeMap<String, u64> = g.symbols.iter().map(|s| (s.name.clone(), s.addr)).collect();
    Ok(BootImage {
        name: name.into(),
        chunks,
        boot: g.boot,
        symbols,
        memory_size: MEMORY,
        machine: MachineConfig::default(),
    })
}

/// What one test printed and how it ended on `profile`.
fn run(name: &str, args: &str, profile: &str) -> Option<(Outcome, String)> {
    let img = match image(name, args) {
        Ok(i) => i,
        Err(why) => {
            println!("skipped {name}: {why}");
            return None;
        }
    };
    let mut vm = SimVm::with_profile(MEMORY, Profile::load(profile).unwrap(), 1).unwrap();
    vm.set_limits(exitlab_sim::RunLimits { max_instructions: Some(4_000_000_000), max_time_ns: None });
    let trace = std::env::var("EXITLAB_KUT_TRACE").is_ok();
    let r = run_boot_image(&mut vm, &img, &RunOptions { trace, ..RunOptions::default() }).unwrap();
    let mut console = r.console();
    for t in r.trace.iter().rev().take(40).rev() {
        console.push_str(&format!("\n{:?} rip {:#x} {:?}", t.record.reason, t.rip, t.access));
    }
    Some((r.outcome, console))
}

/// The verdict on one test's console and ending: `Ok` with its summary
/// line, or the reason it failed.
fn verdict(outcome: &Outcome, console: &str) -> Result<String, String> {
    let fails: Vec<&str> = console.lines().filter(|l| l.starts_with("FAIL")).collect();
    let summary = console.lines().find(|l| l.starts_with("SUMMARY")).unwrap_or("(no summary)").to_string();
    match outcome {
        Outcome::Exited { status: 0 | 38 } if fails.is_empty() => Ok(summary),
        other => Err(format!(
            "{other:?}; {summary}; {} FAIL lines:\n{}\n--- console tail ---\n{}",
            fails.len(),
            fails.join("\n"),
            tail(console)
        )),
    }
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The tests that run: `EXITLAB_KUT`, or the quick set.
fn selected() -> Vec<(String, String)> {
    let list = std::env::var("EXITLAB_KUT").unwrap_or_else(|_| "setjmp,memory,tsc,syscall,umip,idt_test".into());
    list.split(',').filter(|s| !s.is_empty()).map(|s| (s.trim().to_string(), String::new())).collect()
}

#[test]
fn kvm_unit_tests_pass_on_both_profiles() {
    let mut failed = Vec::new();
    for (name, args) in selected() {
        for profile in ["modern", "legacy"] {
            let Some((outcome, console)) = run(&name, &args, profile) else { continue };
            match verdict(&outcome, &console) {
                Ok(summary) => println!("{name} on {profile}: PASS ({summary})"),
                Err(why) => failed.push(format!("{name} on {profile}: {why}")),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Prints one test's whole console (`EXITLAB_KUT_SHOW=name[:profile]`), for
/// investigating; passes when the variable is unset.
#[test]
fn show_console() {
    let Ok(which) = std::env::var("EXITLAB_KUT_SHOW") else { return };
    let (name, profile) = which.split_once(':').unwrap_or((&which, "modern"));
    if let Some((outcome, console)) = run(name, "", profile) {
        println!("{console}\n{outcome:?}");
    }
}

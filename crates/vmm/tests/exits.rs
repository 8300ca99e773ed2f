//! The VMM's own exit handling on the simulator: configurable CPUID,
//! shadow paging under the legacy profile, and the rule that hardware
//! profiles change exits and time, never what the guest computes.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use exitlab_guest::Image;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image_with, RunOptions, RunReport};

fn image(name: &str, sets: &[&str]) -> Image {
    let w = exitlab_guest::find_workload(name).unwrap();
    w.build(&w.resolve(sets.iter().copied()).unwrap()).unwrap()
}

fn run(img: &Image, profile: &str, options: &RunOptions) -> RunReport {
    let mut vm = SimVm::with_profile(img.memory_size, Profile::load(profile).unwrap(), 1).unwrap();
    run_image_with(&mut vm, img, options).unwrap()
}

#[test]
fn cpuid_answers_come_from_the_configured_leaves() {
    let img = image("cpuid", &["n=3", "leaf=0x40000000"]);
    let options = RunOptions { cpuid: vec![(0x4000_0000, [7, 8, 9, 10])], ..RunOptions::default() };
    // The run's epilogue reuses RAX and RDX; RBX and RCX keep CPUID's.
    let r = run(&img, "modern", &options);
    assert_eq!((r.regs.gpr[3], r.regs.gpr[1]), (8, 9));
    let r = run(&img, "modern", &RunOptions::default());
    assert_eq!(r.regs.gpr[3], u64::from(u32::from_le_bytes(*b"exit")), "the built-in hypervisor leaf");
}

#[test]
fn profiles_change_exits_and_time_not_results() {
    for (name, sets) in [
        ("io-mix", &["n=500", "p=0.3", "ring3=1"][..]),
        ("cr3-write", &["n=100"][..]),
        ("mmio-write", &["n=100"][..]),
        ("hlt", &["n=20"][..]),
        ("fault", &["kind=1", "warmup=0"][..]),
    ] {
        let img = image(name, sets);
        let legacy = run(&img, "legacy", &RunOptions::default());
        let modern = run(&img, "modern", &RunOptions::default());
        assert_eq!(legacy.outcome, modern.outcome, "{name}");
        assert_eq!(legacy.regs, modern.regs, "{name}");
        let (l, m) = (legacy.accountant.all(), modern.accountant.all());
        assert_ne!(l.end_ns - l.start_ns, m.end_ns - m.start_ns, "{name}: the hardware differs in time");
    }
}

#[test]
fn shadow_paging_exits_on_first_touch_and_on_every_cr3_write() {
    let img = image("cr3-write", &["n=200", "warmup=0"]);
    let r = run(&img, "legacy", &RunOptions::default());
    let m = r.accountant.phase_stats(Phase::Measure);
    assert_eq!(m.samples(ExitReason::CrAccess), 200);
    // Each CR3 load drops the shadow: the next fetch of the loop's code
    // page is a hidden #PF the VMM fixes (one page walk each).
    assert_eq!(m.samples(ExitReason::ExceptionNmi), 200);
    assert_eq!(m.reasons[&ExitReason::ExceptionNmi].work.page_walks, 200);
    let modern = run(&img, "modern", &RunOptions::default());
    assert_eq!(modern.accountant.phase_stats(Phase::Measure).total_exits(), 0);
}

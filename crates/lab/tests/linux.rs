//! The Linux experiment on Debian's kernel from ../shared/linux (CI has it
//! beside the clone; a worktree elsewhere names the place with
//! EXITLAB_SHARED): the kernel through its PVH entry on the modern
//! profile, to the marker and down, cut into its phases. Run twice, the
//! two runs agree exactly (exits, console, virtual time); the per-phase
//! counts are this kernel's on this simulator. Skips, with the reason
//! printed, without the files.

use exitlab_lab::linux::{self, Kind};
use std::path::PathBuf;

fn shared_linux() -> Option<PathBuf> {
    let dir = std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("linux");
    match linux::missing(&dir) {
        None => Some(dir),
        Some(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

#[test]
fn the_pvh_boot_on_modern_is_cut_into_the_same_phases_twice() {
    let Some(dir) = shared_linux() else { return };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| linux::run(&dir, Kind::PvhBoot, "modern").unwrap());
        let b = s.spawn(|| linux::run(&dir, Kind::PvhBoot, "modern").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.outcome, "triple fault: the vCPU shut down");
    assert!(a.console.contains(linux::MARKER), "{}", a.console);
    assert_eq!((&a.phases, &a.console, a.exits, a.guest_ns), (&b.phases, &b.console, b.exits, b.guest_ns));
    let phases = a.phases.as_ref().unwrap();
    let counts: Vec<(&str, u64)> = phases.iter().map(|p| (p.name.as_str(), p.exits)).collect();
    assert_eq!(counts, [("kernel", 54_711), ("user space", 7_359), ("shutdown", 264)]);
    assert_eq!(a.guest_ns, 1_421_762_101);
    let reason = |phase: usize, r: &str| phases[phase].reasons.get(r).copied();
    // The console dominates: the kernel polls the 16550's LSR and writes
    // THR per byte; user space is interrupt-driven (THRE), so it adds
    // the 8259's EOIs and interrupt windows.
    assert_eq!((reason(0, "IO_INSTRUCTION"), reason(0, "CPUID"), reason(0, "HLT")), (Some(53_712), Some(895), None));
    assert_eq!((reason(1, "IO_INSTRUCTION"), reason(1, "INTERRUPT_WINDOW")), (Some(6_546), Some(387)));
    assert_eq!(reason(2, "TRIPLE_FAULT"), Some(1));
    assert_eq!(phases[0].ports.get("0x3f8 (serial)"), Some(&16_939));
    assert_eq!(phases[1].msrs.get("IA32_FS_BASE (0xc0000100)"), Some(&36));
    // APICv: no MMIO exit at all on modern.
    assert!(phases.iter().all(|p| p.mmio.is_empty()));
}

//! Debian's kernel (../shared/linux; a worktree elsewhere names the
//! directory with EXITLAB_SHARED) booted wrong, as `exitlab stat` runs it
//! (issue 18, item 5): a command line with no init and no console, a
//! truncated initramfs, too little memory. Each ends with the kernel's own
//! words and a clean stop: a panic report whose banner is the outcome
//! (status 1, one line on stderr) and whose end line is the console's
//! last, or the guest's own reset; never a run limit, never a VMM panic.
//! On the simulator (modern profile) through the PVH entry, which skips
//! the decompressor's 4.5 billion instructions. A missing file skips its
//! test with the reason printed. The host time of each run is printed.

mod common;

use common::{assert_usage_error, exitlab, stderr};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The README's minimal command line, less what a case takes away.
const CMDLINE: &str = "nokaslr acpi=off pci=off nosmp noapic tsc=reliable lpj=9781756 reboot=t exitlab_reboot";
const CONSOLE: &str = "console=ttyS0 earlyprintk=serial,ttyS0,115200";

fn shared(rel: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = dir.join("linux").join(rel);
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: {} is missing; ../shared is beside the repository in CI", path.display());
        None
    }
}

fn kernel_and_initrd() -> Option<(PathBuf, PathBuf)> {
    Some((shared("vmlinuz-6.1.0-57-amd64")?, shared("initrd-busybox.gz")?))
}

/// How a boot ended: status, stderr, the console (JSON's), in host seconds.
struct Boot {
    status: Option<i32>,
    stderr: String,
    console: String,
}

fn boot(case: &str, kernel: &Path, initrd: &Path, cmdline: &str, more: &[&str]) -> Boot {
    let mut args = vec!["stat", "--format", "pvh", "--image", kernel.to_str().unwrap()];
    args.extend_from_slice(&["--initrd", initrd.to_str().unwrap(), "--cmdline", cmdline, "--json", "--top", "0"]);
    args.extend_from_slice(more);
    let t = Instant::now();
    let o = exitlab(&args);
    println!("{case}: {:.1} s host time, status {:?}, {}", t.elapsed().as_secs_f64(), o.status.code(), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    Boot { status: o.status.code(), stderr: stderr(&o), console: v["console"].as_str().unwrap_or_default().into() }
}

/// The run ended at Linux's panic report for `why`: status 1, the banner
/// as the one line on stderr, the banner on the console and the report's
/// end line last (the 8250 console ends lines with CRLF).
fn assert_panicked(b: &Boot, why: &str) {
    let banner = format!("Kernel panic - not syncing: {why}");
    assert_eq!((b.status, b.stderr.as_str()), (Some(1), format!("exitlab: guest kernel panic: {banner}\n").as_str()));
    assert!(b.console.contains(&format!("] {banner}\r\n")), "{}", b.console);
    let end = format!("] ---[ end {banner} ]---\r\n");
    assert!(b.console.ends_with(&end), "the report's end line is the last: {}", b.console);
}

/// An initramfs /init runs before `init=` is looked at, so `rdinit=` goes
/// too: without an init in the initramfs the kernel mounts a root file
/// system, and the command line names none (init/do_mounts.c).
#[test]
fn no_init_ends_at_the_root_mount_panic() {
    let Some((kernel, initrd)) = kernel_and_initrd() else { return };
    let cmdline = format!("{CONSOLE} {CMDLINE} rdinit=/nonexistent init=/nonexistent");
    let b = boot("init=/nonexistent", &kernel, &initrd, &cmdline, &[]);
    assert_panicked(&b, "VFS: Unable to mount root fs on unknown-block(0,0)");
    assert!(b.console.contains("List of all partitions:"), "{}", b.console);
}

/// Without `console=` and `earlyprintk` the kernel has no console on
/// COM1 and prints nothing there; busybox's init then writes to
/// /dev/console (no serial behind it) and reboots, which `reboot=t` turns
/// into a triple fault: the guest's own end, with an empty console.
#[test]
fn no_console_prints_nothing_and_ends_at_the_guests_reboot() {
    let Some((kernel, initrd)) = kernel_and_initrd() else { return };
    let b = boot("no console", &kernel, &initrd, CMDLINE, &[]);
    assert_eq!(
        (b.status, b.stderr.as_str(), b.console.as_str()),
        (Some(1), "exitlab: triple fault: the vCPU shut down\n", "")
    );
}

/// Half an initramfs: the gzip stream ends early, the kernel says so and
/// goes on without /init, to the root mount panic.
#[test]
fn a_truncated_initramfs_ends_at_the_root_mount_panic() {
    let Some((kernel, initrd)) = kernel_and_initrd() else { return };
    let bytes = std::fs::read(&initrd).unwrap();
    let d = common::temp_dir("truncated-initrd");
    let half = d.join("initrd-half.gz");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let b = boot("truncated initramfs", &kernel, &half, &format!("{CONSOLE} {CMDLINE}"), &[]);
    assert!(b.console.contains("] Initramfs unpacking failed: read error\r\n"), "{}", b.console);
    assert_panicked(&b, "VFS: Unable to mount root fs on unknown-block(0,0)");
    std::fs::remove_dir_all(&d).unwrap();
}

/// 75 MiB, the least the PVH loader takes (the vmlinux's PT_LOADs end at
/// 0x4a00000, 74 MiB, and the 1 MiB initrd goes at the top of RAM, above
/// them): the kernel has 18 MiB to give out and runs out while setting up
/// tracefs (up to 81M it panics so; 82M boots to the marker). Less is
/// refused before anything runs, one line and status 2 (4M fails the
/// check that bounds the vmlinux's decompression).
#[test]
fn too_little_memory_ends_at_the_out_of_memory_panic_or_is_refused() {
    let Some((kernel, initrd)) = kernel_and_initrd() else { return };
    let b = boot("--memory 75M", &kernel, &initrd, &format!("{CONSOLE} {CMDLINE}"), &["--memory", "75M"]);
    assert!(b.console.contains("] Out of memory and no killable processes...\r\n"), "{}", b.console);
    assert_panicked(&b, "System is deadlocked on memory");
    for (memory, why) in [
        ("74M", "initrd (0x4904000-0x49ff1f3) overlaps ELF segment 3 (0x3079000-0x4a00000)"),
        ("64M", "ELF segment 3 (0x3079000-0x4a00000) does not fit in guest RAM"),
        ("4M", "the payload's uncompressed size = 0x3eda7b4: larger than guest memory"),
    ] {
        let (k, i) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());
        let o = exitlab(&["stat", "--format", "pvh", "--image", k, "--initrd", i, "--memory", memory]);
        assert_usage_error(&o, why);
    }
}

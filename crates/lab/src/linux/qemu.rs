//! QEMU's TCG on the same kernel, for the host-time comparison: QEMU 7.2's
//! `microvm` machine with the devices the minimal command line needs (PIT,
//! PIC, RTC, ISA serial), timed from its start until its serial log holds
//! the marker, and until it exits (`-no-reboot` turns the kernel's reboot
//! into an exit). Host seconds: the report's text, never results.csv.

use super::{CMDLINE, INITRD, KERNEL, MARKER};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The longest QEMU may take before it is stopped.
const LIMIT: Duration = Duration::from_secs(300);
/// How often the log is read.
const POLL: Duration = Duration::from_millis(20);

/// QEMU's times on the boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// `qemu-system-x86_64 --version`'s first line.
    pub version: String,
    /// Host seconds from QEMU's start to the marker in its log, if it came.
    pub to_marker_s: Option<f64>,
    /// Host seconds to its exit.
    pub to_exit_s: f64,
    /// The command line it ran (the log's path left out).
    pub command: String,
}

/// Boots the kernel in `dir` on QEMU TCG and times it; an error saying
/// how to install QEMU where it is not, or what went wrong.
pub fn time(dir: &Path) -> Result<Timing, String> {
    let version = match Command::new(QEMU).arg("--version").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{QEMU} is not installed here (apt-get install qemu-system-x86)"))
        }
        Err(e) => return Err(format!("cannot run {QEMU}: {e}")),
    };
    let tmp = std::env::temp_dir().join(format!("exitlab-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let log = tmp.join("serial.log");
    let result = boot(dir, &log, version);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn boot(dir: &Path, log: &Path, version: String) -> Result<Timing, String> {
    let cmdline = format!("{CMDLINE} exitlab_reboot");
    let machine = "microvm,pit=on,pic=on,rtc=on,isa-serial=on";
    let args = |log: &str| -> Vec<String> {
        [
            "-M",
            machine,
            "-m",
            "128M",
            "-kernel",
            &dir.join(KERNEL).display().to_string(),
            "-initrd",
            &dir.join(INITRD).display().to_string(),
            "-append",
            &cmdline,
            "-nographic",
            "-no-reboot",
            "-serial",
            &format!("file:{log}"),
            "-monitor",
            "none",
            "-display",
            "none",
        ]
        .map(String::from)
        .to_vec()
    };
    let command = format!("{QEMU} {}", args("LOG").join(" "));
    let started = Instant::now();
    let mut child = Command::new(QEMU)
        .args(args(&log.display().to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut to_marker_s = None;
    loop {
        if to_marker_s.is_none() && std::fs::read(log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(MARKER)) {
            to_marker_s = Some(started.elapsed().as_secs_f64());
        }
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{QEMU} did not end within {} s", LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("cannot wait for {QEMU}: {e}")),
        }
    }
    let to_exit_s = started.elapsed().as_secs_f64();
    if to_marker_s.is_none() && std::fs::read(log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(MARKER)) {
        to_marker_s = Some(to_exit_s);
    }
    Ok(Timing { version, to_marker_s, to_exit_s, command })
}

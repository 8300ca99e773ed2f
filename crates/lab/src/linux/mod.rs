//! The first real-guest experiment: Debian's kernel (../shared/linux, its
//! README says what it is) on the simulator. Three parts, all in the
//! report's Linux section:
//!
//! - where a real OS's exits come from: the bzImage (its XZ decompressor
//!   included) booted to its init and back down on each profile, its
//!   exits cut into boot phases ([`phases`]) and counted by reason, port,
//!   MMIO region and MSR per phase;
//! - E4 on a real kernel: the kernel entered through its PVH entry with
//!   busybox's `sleep 2` as init, once with its periodic tick
//!   (`nohz=off`) and once tickless, its exits per second of idle time;
//! - time: host seconds of the simulator's boots beside QEMU's TCG on the
//!   same kernel ([`qemu`]), in the report's text only (they are the
//!   host's, never deterministic).
//!
//! The phases and counts are deterministic (same image, profile and seed,
//! same trace) and are written to results.csv; the boots run in parallel
//! (rayon), each traced (`RunOptions::trace`) and reduced to its phases
//! at once, so no trace outlives its boot.

pub mod phases;
pub mod qemu;
pub(crate) mod section;

use crate::backend::BackendSpec;
use crate::image::{ImageRequest, DEFAULT_MEMORY};
use exitlab_loader::Format;
use exitlab_sim::profile::Profile;
use exitlab_vmm::RunOptions;
use phases::{Cut, Phase, Plan};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The kernel: Debian 12's linux-image-6.1.0-57-amd64 (a bzImage).
pub const KERNEL: &str = "vmlinuz-6.1.0-57-amd64";
/// The initramfs: busybox-static and an /init that prints markers.
pub const INITRD: &str = "initrd-busybox.gz";
/// The README's command line for a minimal PC (serial, PIT, PIC; no ACPI,
/// no PCI), less what each run adds.
pub const CMDLINE: &str =
    "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr acpi=off pci=off nosmp noapic tsc=reliable lpj=9781756 reboot=t";
/// What the initramfs's /init prints before `reboot -f`.
pub const MARKER: &str = "EXITLAB-MARKER: powering off";
/// The idle run's init: busybox's `sleep` for 2 s, after which init exits,
/// the kernel panics and `panic=-1` reboots at once (with `reboot=t`, a
/// triple fault: a clean end).
pub const IDLE_INIT: &str = "rdinit=/bin/busybox panic=-1";
/// The idle run's arguments to init.
pub const IDLE_ARGS: &str = "-- sleep 2";
/// The seed of the simulator's cost distributions.
const SEED: u64 = 1;

/// The kernel's line when it starts init ("Run /init as init process").
const RUN_INIT: &str = " as init process";

/// A bzImage boot: its decompressor, the kernel to init, user space to
/// the marker, the shutdown to the triple fault of `reboot=t`.
pub const BZIMAGE: Plan = Plan {
    names: &["decompressor", "kernel", "user space", "shutdown"],
    cuts: &[Cut::KernelCode("Linux version"), Cut::AfterLine(RUN_INIT), Cut::AfterLine(MARKER)],
};

/// A PVH boot: no decompressor.
pub const PVH: Plan =
    Plan { names: &["kernel", "user space", "shutdown"], cuts: &[Cut::AfterLine(RUN_INIT), Cut::AfterLine(MARKER)] };

/// The idle run: the boot to init, the idle window (init's `sleep`, until
/// the panic line that its exit causes), the panic and reboot.
pub const IDLE: Plan =
    Plan { names: &["boot", "idle", "panic"], cuts: &[Cut::AfterLine(RUN_INIT), Cut::BeforeLine("Kernel panic")] };

/// Where the kernel is unless `--linux DIR` says: `$EXITLAB_SHARED/linux`,
/// else `../shared/linux` from the working directory.
pub fn default_dir() -> PathBuf {
    std::env::var_os("EXITLAB_SHARED").map_or_else(|| PathBuf::from("../shared"), PathBuf::from).join("linux")
}

/// Why `dir` cannot be used, in one line that says where to get the files.
pub fn missing(dir: &Path) -> Option<String> {
    let absent: Vec<&str> = [KERNEL, INITRD].into_iter().filter(|f| !dir.join(f).is_file()).collect();
    (!absent.is_empty()).then(|| {
        format!(
            "not run: {} has no {} (the kernel is Debian 12's linux-image-6.1.0-57-amd64 package's /boot/{KERNEL}, the initramfs busybox-static's with the /init ../shared/linux/README.md describes; `exitlab report --linux DIR` names another place)",
            dir.display(),
            absent.join(" or ")
        )
    })
}

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// The bzImage to the marker and down.
    Boot,
    /// The PVH entry to the marker and down (the integration test's fast
    /// boot).
    PvhBoot,
    /// Idle with the periodic tick (`nohz=off`).
    Tick,
    /// Idle tickless (the kernel's default).
    Tickless,
}

impl Kind {
    /// The run's name in results.csv.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Boot => "boot",
            Kind::PvhBoot => "pvh-boot",
            Kind::Tick => "idle-tick",
            Kind::Tickless => "idle-tickless",
        }
    }

    fn format(self) -> Format {
        match self {
            Kind::Boot => Format::BzImage,
            _ => Format::Pvh,
        }
    }

    /// The kernel command line.
    pub fn cmdline(self) -> String {
        match self {
            Kind::Boot | Kind::PvhBoot => format!("{CMDLINE} exitlab_reboot"),
            Kind::Tick => format!("{CMDLINE} {IDLE_INIT} nohz=off {IDLE_ARGS}"),
            Kind::Tickless => format!("{CMDLINE} {IDLE_INIT} {IDLE_ARGS}"),
        }
    }

    fn plan(self) -> Plan {
        match self {
            Kind::Boot => BZIMAGE,
            Kind::PvhBoot => PVH,
            Kind::Tick | Kind::Tickless => IDLE,
        }
    }
}

/// One run of the kernel on the simulator, reduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub kind: Kind,
    /// The profile as given (a built-in name or a file).
    pub profile: String,
    /// The profile's own name.
    pub profile_name: String,
    /// How the run ended, in words.
    pub outcome: String,
    /// Its phases, or why they could not be cut.
    pub phases: Result<Vec<Phase>, String>,
    /// Every exit of the run.
    pub exits: u64,
    /// Guest time at the end (ns).
    pub guest_ns: u64,
    /// What the guest printed.
    pub console: String,
    /// Host seconds the run took (not deterministic: never in results.csv).
    pub host_s: f64,
}

/// Runs the kernel in `dir` as `kind` on `profile`, traced, and cuts it.
/// Errors: the profile or the image cannot be loaded, the VMM fails.
pub fn run(dir: &Path, kind: Kind, profile: &str) -> Result<Run, String> {
    let p = Profile::load(profile).map_err(|e| e.to_string())?;
    let profile_name = p.name.clone();
    let initrd =
        std::fs::read(dir.join(INITRD)).map_err(|e| format!("cannot read {}: {e}", dir.join(INITRD).display()))?;
    let request = ImageRequest {
        format: Some(kind.format()),
        cmdline: kind.cmdline(),
        initrd: Some(initrd),
        memory: DEFAULT_MEMORY,
        ..ImageRequest::new(dir.join(KERNEL))
    };
    let image = crate::image::load(&request).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let report = BackendSpec::sim(p, SEED)
        .run(&image.boot, &RunOptions { trace: true, ..RunOptions::default() })
        .map_err(|e| format!("{} on {profile}: {e}", kind.name()))?;
    let host_s = started.elapsed().as_secs_f64();
    let phases = phases::cut(&report.trace, &kind.plan());
    Ok(Run {
        kind,
        profile: profile.to_string(),
        profile_name,
        outcome: report.outcome.to_string(),
        phases,
        exits: report.trace.len() as u64,
        guest_ns: report.trace.last().map_or(0, |e| e.record.resume_ns),
        console: report.console(),
        host_s,
    })
}

/// The experiment's results: every run (boots on each profile, then the
/// idle runs), and QEMU's time on the same boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Where the kernel came from.
    pub dir: PathBuf,
    /// Each run, or why it failed: (kind, profile, result).
    pub runs: Vec<(Kind, String, Result<Run, String>)>,
    /// QEMU TCG's time to the marker, or why it did not run.
    pub qemu: Result<qemu::Timing, String>,
}

/// The report's Linux section: the experiment, or why it did not run.
/// A part of a report holds it as linux.json (shard 0's part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Section {
    Ran(Box<Experiment>),
    NotRun(String),
}

/// What the report's Linux section is asked to run: the kernel's place
/// and the profiles beyond legacy and modern to boot it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub dir: PathBuf,
    pub profiles: Vec<String>,
}

/// Why a report run from the library without a [`Request`] has no Linux
/// section.
pub const NOT_ASKED: &str = "not run: the report was asked for the built-in experiments alone";

/// The section `request` asks for, or [`NOT_ASKED`]'s.
pub fn section(request: Option<&Request>) -> Section {
    match request {
        Some(r) => experiment(&r.dir, &r.profiles),
        None => Section::NotRun(NOT_ASKED.to_string()),
    }
}

/// The profiles the idle runs use: E4's two.
pub const IDLE_PROFILES: [&str; 2] = ["legacy", "modern"];

/// The report's experiment with the kernel in `dir`: QEMU first, alone
/// (its time is a host time), then the bzImage boot on legacy, modern and
/// each of `extra` (e.g. a calibrated host's profile) and the idle runs on
/// [`IDLE_PROFILES`], all in parallel.
pub fn experiment(dir: &Path, extra: &[String]) -> Section {
    if let Some(why) = missing(dir) {
        return Section::NotRun(why);
    }
    let qemu = qemu::time(dir);
    let mut plan: Vec<(Kind, String)> = Vec::new();
    for p in ["legacy", "modern"].iter().map(|s| s.to_string()).chain(extra.iter().cloned()) {
        if !plan.iter().any(|(_, q)| *q == p) {
            plan.push((Kind::Boot, p));
        }
    }
    for p in IDLE_PROFILES {
        plan.push((Kind::Tick, p.to_string()));
        plan.push((Kind::Tickless, p.to_string()));
    }
    let runs = plan.into_par_iter().map(|(k, p)| (k, p.clone(), run(dir, k, &p))).collect();
    Section::Ran(Box::new(Experiment { dir: dir.to_path_buf(), runs, qemu }))
}

/// A float as results.csv writes it: fixed decimals, so two runs give the
/// same bytes.
fn fixed(v: Option<f64>, decimals: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.decimals$}"))
}

/// results.csv: per run and phase a row `all` (exits, guest time, exits
/// per second, share of time in exits), then a row per reason, port,
/// MMIO region and MSR. Only simulator figures: identical run to run.
pub fn csv(e: &Experiment) -> String {
    let mut out = String::from("run,profile,phase,what,key,exits,exits_per_s,guest_ns,exit_time_share\n");
    for (kind, profile, r) in &e.runs {
        let Ok(Run { phases: Ok(phases), .. }) = r else { continue };
        for p in phases {
            let head = format!("{},{},{}", kind.name(), profile.replace(',', ";"), p.name);
            let _ = writeln!(
                out,
                "{head},all,,{},{},{},{}",
                p.exits,
                fixed(p.exits_per_s(), 3),
                p.end_ns - p.start_ns,
                fixed(p.exit_share(), 6)
            );
            for (what, map) in [("reason", &p.reasons), ("port", &p.ports), ("mmio", &p.mmio), ("msr", &p.msrs)] {
                for (key, n) in map {
                    let rate = (p.end_ns > p.start_ns).then(|| *n as f64 / p.guest_s());
                    let _ = writeln!(out, "{head},{what},{},{n},{},,", key.replace(',', ";"), fixed(rate, 3));
                }
            }
        }
    }
    out
}

/// The section in one line, for the command's output.
pub fn summary(s: &Section) -> String {
    match s {
        Section::NotRun(why) => why.clone(),
        Section::Ran(e) => section::answer(e),
    }
}

//! Hardware profiles: which VMX features a simulated machine has and what
//! its transitions and table walks cost, every figure with its source
//! (docs/SOURCES.md rows, or "modelled: <reasoning>"). Two ship built in
//! (profiles/legacy.toml, profiles/modern.toml); any TOML file of the same
//! shape is a custom one.

use exitlab_arch::cpuid::{Feature, FeatureSet};
use exitlab_arch::ExitReason;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A cost as written in a profile: `value`, or `mean` with an optional
/// `spread` (the standard deviation of a normal distribution, drawn per
/// event from the run's seed), and always a `source`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub value: Option<f64>,
    pub mean: Option<f64>,
    pub spread: Option<f64>,
    pub source: String,
}

impl Figure {
    pub fn mean(&self) -> f64 {
        self.value.or(self.mean).unwrap_or(0.0)
    }

    pub fn spread(&self) -> f64 {
        self.spread.unwrap_or(0.0)
    }

    /// Checks the figure's form, its source and that its mean and spread
    /// lie in `range` (in the figure's unit, named by `unit`).
    fn check(&self, key: &str, range: (f64, f64), unit: &str) -> Result<(), String> {
        match (self.value, self.mean) {
            (Some(_), Some(_)) => return Err(format!("`{key}` has both `value` and `mean`")),
            (None, None) => return Err(format!("`{key}` needs `value` or `mean`")),
            (Some(_), None) if self.spread.is_some() => {
                return Err(format!("`{key}`: `spread` goes with `mean`, not `value`"))
            }
            _ => {}
        }
        if !(self.mean().is_finite() && self.mean() >= 0.0 && self.spread().is_finite() && self.spread() >= 0.0) {
            return Err(format!("`{key}` must be a finite, non-negative number"));
        }
        let (lo, hi) = range;
        if !(lo..=hi).contains(&self.mean()) || self.spread() > hi {
            return Err(format!(
                "`{key}` = {} (spread {}) is out of range: {lo} to {hi} {unit}, spread at most {hi}",
                self.mean(),
                self.spread()
            ));
        }
        if self.source.trim().is_empty() {
            return Err(format!("`{key}` has an empty `source`: every figure needs one"));
        }
        Ok(())
    }
}

/// Hardware features a profile's CPU has. The VMM's policy follows them
/// (with EPT, no shadow paging; with APICv, no APIC-access exits...).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Features {
    pub ept: bool,
    pub vpid: bool,
    pub apicv: bool,
    pub posted_interrupts: bool,
    pub pml: bool,
    pub decode_assist: bool,
    pub tsx: bool,
    /// VT-d DMA and interrupt remapping: devices can be assigned to guests.
    pub iommu: bool,
    /// The CPU has process-context identifiers (CPUID.01H:ECX.PCID,
    /// CR4.PCIDE).
    #[serde(default)]
    pub pcid: bool,
    /// The CPU has INVPCID (CPUID.(EAX=07H,ECX=0):EBX.INVPCID).
    #[serde(default)]
    pub invpcid: bool,
    /// Whose architecture the CPU follows where Intel's and AMD's differ
    /// (`vendor = "AuthenticAMD"`; default "GenuineIntel", the VT-x parts
    /// the built-in profiles describe). QEMU's `-cpu ...,vendor=` sets it.
    #[serde(default)]
    pub vendor: exitlab_arch::cpuid::Vendor,
}

/// What every simulated CPU advertises in CPUID, since the simulator
/// implements it: the TSC, MSRs, PAE paging with global pages and the
/// PAT, the local APIC with its TSC-deadline timer, CMOV, CMPXCHG8B and
/// CMPXCHG16B, POPCNT, LZCNT, PREFETCHW, LAHF/SAHF in 64-bit mode,
/// SYSENTER/SYSEXIT,
/// SYSCALL, RDTSCP, RDPID and IA32_TSC_AUX, IA32_TSC_ADJUST, UMIP, NX,
/// long mode, the hypervisor bit, and exitlab-x86's floating point (x87,
/// MMX, SSE-SSE4.2, the XSAVE family: `exitlab_x86::fp::cpuid::FEATURES`):
/// the x86-64-v2 level. Not AVX or later vector extensions, x2APIC, BMI1
/// (TZCNT alone is modelled; it runs as BSF without BMI1), nor MOVBE,
/// FSGSBASE, CLFLUSH and CLFLUSHOPT, which are modelled but not part of
/// the model: their instructions raise #UD (docs/INSTRUCTIONS.md).
pub const BASELINE: FeatureSet = FeatureSet::of(&[
    Feature::Tsc,
    Feature::Msr,
    Feature::Pae,
    Feature::Cx8,
    Feature::Apic,
    Feature::Sep,
    Feature::Pge,
    Feature::Cmov,
    Feature::Pat,
    Feature::Cx16,
    Feature::Popcnt,
    Feature::TscDeadline,
    Feature::Hypervisor,
    Feature::TscAdjust,
    Feature::Umip,
    Feature::Rdpid,
    Feature::LahfLm,
    Feature::Abm,
    Feature::Prefetchw,
    Feature::Syscall,
    Feature::Nx,
    Feature::Rdtscp,
    Feature::Lm,
])
.union(exitlab_x86::fp::cpuid::FEATURES);

impl Features {
    /// The CPU model a profile describes: the baseline and the optional
    /// features it has. The VMM answers CPUID from exactly this set
    /// (`Capabilities::cpu_features`), and the simulated CPU raises #UD
    /// for an instruction whose feature is not in it: one place decides
    /// both.
    pub fn cpu(&self) -> FeatureSet {
        let mut set = BASELINE.with_vendor(self.vendor);
        for (on, f) in [(self.tsx, Feature::Rtm), (self.pcid, Feature::Pcid), (self.invpcid, Feature::Invpcid)] {
            if on {
                set = set.with(f);
            }
        }
        set
    }

    /// The features by name, as profiles and scenario axes spell them.
    pub const NAMES: [&'static str; 10] =
        ["ept", "vpid", "apicv", "posted_interrupts", "pml", "decode_assist", "tsx", "iommu", "pcid", "invpcid"];

    /// Turns feature `name` on or off; false for an unknown name.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let f = match name {
            "ept" => &mut self.ept,
            "vpid" => &mut self.vpid,
            "apicv" => &mut self.apicv,
            "posted_interrupts" => &mut self.posted_interrupts,
            "pml" => &mut self.pml,
            "decode_assist" => &mut self.decode_assist,
            "tsx" => &mut self.tsx,
            "iommu" => &mut self.iommu,
            "pcid" => &mut self.pcid,
            "invpcid" => &mut self.invpcid,
            _ => return false,
        };
        *f = on;
        true
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Clock {
    pub hz: Figure,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Exits {
    /// One exit and entry, for reasons without their own figure.
    pub round_trip: Figure,
    /// Per-reason figures, keyed by the `perf kvm stat` name.
    #[serde(default)]
    pub reason: BTreeMap<String, Figure>,
}

/// What a VMM handler's work units cost.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    pub device_op: Figure,
    pub decode_byte: Figure,
    pub page_walk: Figure,
    pub byte_copied: Figure,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// One paging-structure (or EPT-structure) read during a hardware walk.
    pub walk_step: Figure,
}

/// Guest instruction throughput by privilege level, in cycles per
/// instruction, as `exitlab calibrate` measures it on a host whose KVM runs
/// ring-0 and ring-3 code differently (in its instruction emulator, or on
/// the CPU). Where a level has a figure, every instruction retired there
/// costs it (at its mean: a draw per instruction would cost more than the
/// instruction), in place of the modelled CPI table; levels without one
/// keep the table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Instructions {
    pub ring0: Option<Figure>,
    pub ring3: Option<Figure>,
}

/// Interrupt timing beyond the exits themselves; each figure, where a
/// profile has it, replaces a modelled constant or adds a delay the
/// simulator otherwise leaves out.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interrupts {
    /// Delivering an interrupt or exception through the IDT (in place of
    /// the modelled `cost::EVENT_DELIVERY`).
    pub delivery: Option<Figure>,
    /// From the interrupt that ends an idle HLT to the vCPU running again
    /// (a host scheduling the halted vCPU thread back in).
    pub halt_wakeup: Option<Figure>,
    /// How late the local APIC timer's interrupt comes after its deadline
    /// (a host whose timers fire late), at its mean.
    pub timer_latency: Option<Figure>,
    /// From a device thread raising an interrupt (an irqfd write on KVM)
    /// to the interrupt being pending at the vCPU.
    pub irqfd: Option<Figure>,
}

/// The VMM's device thread, which on a host serves device deadlines and
/// interrupts off the vCPU thread (crates/vmm/src/iothread.rs): the vCPU
/// thread hands it each new deadline with an eventfd write (a poke) that
/// wakes it; it serves what is due and sleeps on a timer for the rest.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceThread {
    /// What the poke costs the vCPU thread.
    pub poke: Option<Figure>,
    /// From the poke to the device thread running.
    pub poke_latency: Option<Figure>,
    /// How late the thread wakes for a deadline it sleeps on.
    pub timer_latency: Option<Figure>,
}

/// The machine a calibrated profile was measured on, as its calibration
/// recorded it: what a reader needs to know before trusting the figures
/// elsewhere.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// CPU model, family/model/stepping, microcode, whether it runs under a
    /// hypervisor.
    pub cpu: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// KVM module and its hardware assists (kvm_intel ept/apicv, kvm_amd
    /// npt/avic, kvm_pvm...).
    pub kvm: Option<String>,
    /// When it was measured (UTC date).
    pub date: Option<String>,
    /// How the measuring threads were scheduled (SCHED_FIFO or not).
    pub scheduling: Option<String>,
    /// Anything else worth knowing (how the calibration ran).
    pub notes: Option<String>,
}

impl Host {
    /// The fields that are set, by their TOML key, in the file's order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("cpu", &self.cpu),
            ("kernel", &self.kernel),
            ("kvm", &self.kvm),
            ("date", &self.date),
            ("scheduling", &self.scheduling),
            ("notes", &self.notes),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// A hardware profile.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub summary: String,
    pub features: Features,
    pub clock: Clock,
    pub exit: Exits,
    pub handler: Handler,
    pub paging: Paging,
    /// Per-privilege-level instruction prices (calibrated profiles).
    #[serde(default)]
    pub instruction: Instructions,
    /// Interrupt delivery and wake-up figures (calibrated profiles).
    #[serde(default)]
    pub interrupt: Interrupts,
    /// The device thread's figures (calibrated profiles).
    #[serde(default)]
    pub device_thread: DeviceThread,
    /// The machine a calibrated profile was measured on.
    #[serde(default)]
    pub host: Option<Host>,
}

/// The range of a core clock, in Hz: from 1 MHz to 100 GHz, so a run's
/// cycles (u64) last years of guest time.
pub const HZ_RANGE: (f64, f64) = (1e6, 1e11);

/// The range of one exit's round trip, in cycles: measured round trips
/// are 10^2 to 10^5 cycles (docs/SOURCES.md); 10^8 (tens of milliseconds)
/// leaves room for any modelled machine while a run's sum of them stays
/// far from the end of a u64.
pub const EXIT_RANGE: (f64, f64) = (0.0, 1e8);

/// The range of one unit of handler or paging work, in cycles (a device
/// operation, a byte decoded or copied, a page walk or one of its steps):
/// 10^6 cycles, a hundred times a cache-missing page walk. A calibrated
/// profile's instruction prices, interrupt and device-thread figures lie
/// in it too (the largest this project's host measured is 7 x 10^4: a
/// wake-up from HLT).
pub const WORK_RANGE: (f64, f64) = (0.0, 1e6);

/// The range and unit of the figure [`Profile::figures`] names `key`: the
/// clock in [`HZ_RANGE`], exits in [`EXIT_RANGE`], everything else (handler
/// work, paging, calibrated instruction, interrupt and device-thread
/// figures) in [`WORK_RANGE`].
pub fn range_of(key: &str) -> ((f64, f64), &'static str) {
    match key.split('.').next() {
        Some("clock") => (HZ_RANGE, "Hz"),
        Some("exit") => (EXIT_RANGE, "cycles"),
        _ => (WORK_RANGE, "cycles"),
    }
}

/// A profile could not be read; the message names the file and, where it
/// can, the line and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileError(pub String);

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProfileError {}

/// The most bytes a profile file may have (the built-ins are under 4 KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The built-in profiles, by name.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("modern", include_str!("../../../profiles/modern.toml")),
    ("legacy", include_str!("../../../profiles/legacy.toml")),
];

fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().starts_with(key)).map(|i| i + 1)
}

impl Profile {
    /// Parses and checks a profile; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let p: Profile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            match at {
                Some(line) => ProfileError(format!("{origin}:{line}: {msg}")),
                None => ProfileError(format!("{origin}: {msg}")),
            }
        })?;
        let at = |key: &str, msg: String| match line_of(text, key) {
            Some(line) => ProfileError(format!("{origin}:{line}: {msg}")),
            None => ProfileError(format!("{origin}: {msg}")),
        };
        for (key, f) in p.figures() {
            let (range, unit) = range_of(&key);
            // Errors name the key as the file spells it (its last part).
            let key = key.rsplit('.').next().unwrap_or(&key).to_string();
            f.check(&key, range, unit).map_err(|m| at(&key, m))?;
        }
        for name in p.exit.reason.keys() {
            if ExitReason::from_name(name).is_none() {
                return Err(at(name, format!("`{name}` in [exit.reason] is not an exit reason (names as `perf kvm stat` prints them, e.g. CPUID, IO_INSTRUCTION)")));
            }
        }
        if p.clock.hz.spread() != 0.0 {
            return Err(at("hz", "`hz` must be a fixed value (no spread)".to_string()));
        }
        Ok(p)
    }

    /// A built-in profile by name, or a file by path (at most
    /// [`MAX_FILE_BYTES`]).
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(&format!("profiles/{name}.toml"), text);
        }
        let text =
            exitlab_arch::input::read_limited(std::path::Path::new(name_or_path), MAX_FILE_BYTES).map_err(|e| {
                ProfileError(format!(
                    "profile `{name_or_path}` is neither built in (legacy, modern) nor a readable file: {e}"
                ))
            })?;
        Profile::parse(name_or_path, &text)
    }

    /// The profile used when none is named.
    pub fn default_profile() -> Profile {
        Profile::load("modern").expect("the built-in modern profile parses")
    }

    pub fn hz(&self) -> u64 {
        self.clock.hz.mean() as u64
    }

    /// The figure for exits of `reason`.
    pub fn exit_cost(&self, reason: ExitReason) -> &Figure {
        self.exit.reason.get(reason.name()).unwrap_or(&self.exit.round_trip)
    }

    /// Every figure with its key, for listings.
    pub fn figures(&self) -> Vec<(String, &Figure)> {
        let mut v =
            vec![("clock.hz".to_string(), &self.clock.hz), ("exit.round_trip".to_string(), &self.exit.round_trip)];
        v.extend(self.exit.reason.iter().map(|(k, f)| (format!("exit.reason.{k}"), f)));
        v.extend([
            ("handler.device_op".to_string(), &self.handler.device_op),
            ("handler.decode_byte".to_string(), &self.handler.decode_byte),
            ("handler.page_walk".to_string(), &self.handler.page_walk),
            ("handler.byte_copied".to_string(), &self.handler.byte_copied),
            ("paging.walk_step".to_string(), &self.paging.walk_step),
        ]);
        let optional = [
            ("instruction.ring0", &self.instruction.ring0),
            ("instruction.ring3", &self.instruction.ring3),
            ("interrupt.delivery", &self.interrupt.delivery),
            ("interrupt.halt_wakeup", &self.interrupt.halt_wakeup),
            ("interrupt.timer_latency", &self.interrupt.timer_latency),
            ("interrupt.irqfd", &self.interrupt.irqfd),
            ("device_thread.poke", &self.device_thread.poke),
            ("device_thread.poke_latency", &self.device_thread.poke_latency),
            ("device_thread.timer_latency", &self.device_thread.timer_latency),
        ];
        v.extend(optional.into_iter().filter_map(|(k, f)| f.as_ref().map(|f| (k.to_string(), f))));
        v
    }
}

/// Deterministic draws from a profile's distributions: splitmix64 for
/// uniform bits, Box-Muller for normals.
#[derive(Clone, Debug)]
pub struct Draw {
    state: u64,
}

impl Draw {
    pub fn new(seed: u64) -> Draw {
        Draw { state: seed ^ 0x9e37_79b9_7f4a_7c15 }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// One draw of `f`, in its units, never negative.
    pub fn sample(&mut self, f: &Figure) -> u64 {
        let spread = f.spread();
        if spread == 0.0 {
            return f.mean() as u64;
        }
        let (u1, u2) = (self.unit(), self.unit());
        let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (f.mean() + spread * n).max(0.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_parse_and_every_figure_has_a_source() {
        for (name, _) in BUILT_IN {
            let p = Profile::load(name).unwrap();
            assert_eq!(p.name, name);
            for (key, f) in p.figures() {
                assert!(!f.source.is_empty(), "{name}: {key}");
            }
        }
        assert!(!Profile::load("legacy").unwrap().features.ept);
        assert!(Profile::load("modern").unwrap().features.ept);
        assert_eq!(Profile::load("modern").unwrap().exit_cost(ExitReason::Cpuid).mean(), 1027.0);
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        let good = BUILT_IN[0].1;
        let typo = good.replace("posted_interrupts = true", "posted_interupts = true");
        let e = Profile::parse("p.toml", &typo).unwrap_err().0;
        assert!(e.starts_with("p.toml:") && e.contains("posted_interupts"), "{e}");
        let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!(typo.lines().nth(line - 1).unwrap().trim(), "posted_interupts = true");

        let bad_reason = good.replace("CPUID = {", "CPUIDX = {");
        let e = Profile::parse("p.toml", &bad_reason).unwrap_err().0;
        assert!(e.contains("`CPUIDX` in [exit.reason] is not an exit reason"), "{e}");
        let no_source = good.replace("device_op = { value = 200, source = ", "device_op = { value = 200, other = ");
        assert!(Profile::parse("p.toml", &no_source).is_err());
        let empty = good.replace(
            "decode_byte = { value = 20, source = \"modelled",
            "decode_byte = { value = 20, source = \"\", x = \"",
        );
        assert!(Profile::parse("p.toml", &empty).is_err());
    }

    #[test]
    fn calibrated_sections_parse_list_and_are_checked() {
        let text = format!(
            "{}\n[instruction]\nring0 = {{ mean = 700.5, spread = 3, source = \"measured: t\" }}\n\n[interrupt]\nhalt_wakeup = {{ value = 70000, source = \"measured: t\" }}\n\n[device_thread]\npoke = {{ value = 28000, source = \"measured: t\" }}\n\n[host]\ncpu = \"c\"\nkernel = \"k\"\n",
            BUILT_IN[0].1
        );
        let p = Profile::parse("h.toml", &text).unwrap();
        assert_eq!(p.instruction.ring0.as_ref().unwrap().mean(), 700.5);
        assert_eq!(p.host.as_ref().unwrap().kernel.as_deref(), Some("k"));
        let keys: Vec<String> = p.figures().into_iter().map(|(k, _)| k).collect();
        for k in ["instruction.ring0", "interrupt.halt_wakeup", "device_thread.poke"] {
            assert!(keys.contains(&k.to_string()), "{k} in {keys:?}");
        }
        assert!(!keys.contains(&"instruction.ring3".to_string()));
        let bad = text
            .replace("poke = { value = 28000, source = \"measured: t\" }", "poke = { value = 28000, source = \"\" }");
        let e = Profile::parse("h.toml", &bad).unwrap_err().0;
        let line = bad.lines().position(|l| l.starts_with("poke")).unwrap() + 1;
        assert_eq!(e, format!("h.toml:{line}: `poke` has an empty `source`: every figure needs one"));
        let typo = text.replace("[device_thread]\npoke", "[device_thread]\npokes");
        assert!(Profile::parse("h.toml", &typo).unwrap_err().0.contains("pokes"));
        // Calibrated figures are range-checked as the others are (WORK_RANGE).
        for (from, to, key) in [
            ("ring0 = { mean = 700.5,", "ring0 = { mean = 1e7,", "ring0"),
            ("halt_wakeup = { value = 70000,", "halt_wakeup = { value = 1.8e19,", "halt_wakeup"),
            ("poke = { value = 28000,", "poke = { value = 1000001,", "poke"),
        ] {
            let out = text.replace(from, to);
            let e = Profile::parse("h.toml", &out).unwrap_err().0;
            let line = out.lines().position(|l| l.starts_with(key)).unwrap() + 1;
            assert!(e.starts_with(&format!("h.toml:{line}: `{key}` = ")), "{e}");
            assert!(e.contains("is out of range: 0 to 1000000 cycles"), "{e}");
        }
    }

    #[test]
    fn figures_out_of_their_range_are_refused_with_file_and_line() {
        let good = BUILT_IN[0].1;
        let line_of = |text: &str, key: &str| text.lines().position(|l| l.trim_start().starts_with(key)).unwrap() + 1;
        let cpuid = good.lines().find(|l| l.trim_start().starts_with("CPUID = {")).unwrap();
        let hz = good.lines().find(|l| l.trim_start().starts_with("hz = {")).unwrap();
        let round_trip = good.lines().find(|l| l.trim_start().starts_with("round_trip = {")).unwrap();
        let device_op = good.lines().find(|l| l.trim_start().starts_with("device_op = {")).unwrap();
        for (from, to, key, range) in [
            (hz, "hz = { value = 1e300, source = \"x\" }", "hz", "1000000 to 100000000000 Hz"),
            (hz, "hz = { value = 999999, source = \"x\" }", "hz", "1000000 to 100000000000 Hz"),
            (round_trip, "round_trip = { value = 1e308, source = \"x\" }", "round_trip", "0 to 100000000 cycles"),
            (cpuid, "CPUID = { value = 1.8e19, source = \"x\" }", "CPUID", "0 to 100000000 cycles"),
            (cpuid, "CPUID = { mean = 10, spread = 1e12, source = \"x\" }", "CPUID", "spread at most 100000000"),
            (device_op, "device_op = { value = 1.8e19, source = \"x\" }", "device_op", "0 to 1000000 cycles"),
        ] {
            let text = good.replace(from, to);
            let e = Profile::parse("p.toml", &text).unwrap_err().0;
            let line = line_of(&text, key);
            assert!(e.starts_with(&format!("p.toml:{line}: `{key}` = ")), "{e}");
            assert!(e.contains(range) && e.contains("is out of range"), "{e}");
        }
        let text = good.replace(hz, "hz = { mean = 2e9, spread = 1, source = \"x\" }");
        assert!(Profile::parse("p.toml", &text).unwrap_err().0.ends_with("`hz` must be a fixed value (no spread)"));
    }

    #[test]
    fn draws_are_deterministic_and_centred() {
        let f = Figure { value: None, mean: Some(1000.0), spread: Some(50.0), source: "t".into() };
        let (mut a, mut b) = (Draw::new(7), Draw::new(7));
        let xs: Vec<u64> = (0..1000).map(|_| a.sample(&f)).collect();
        let ys: Vec<u64> = (0..1000).map(|_| b.sample(&f)).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<u64>() as f64 / 1000.0;
        assert!((mean - 1000.0).abs() < 10.0, "{mean}");
        assert!(xs.iter().any(|&x| x != 1000));
        let fixed = Figure { value: Some(5.0), mean: None, spread: None, source: "t".into() };
        assert_eq!(Draw::new(1).sample(&fixed), 5);
    }
}

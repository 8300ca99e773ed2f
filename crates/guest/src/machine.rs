//! The machine a guest asks the VMM for, beyond CPU and RAM: its network
//! cards, the block device and the memory it may reach by DMA, a write
//! monitor, isolated memory, how device interrupts arrive, a host timer,
//! the counters and logs the guest keeps for the VMM to read, and the CPU
//! features it cannot run without.
//!
//! A built-in workload declares its machine in Rust; an image from
//! elsewhere gets the same description from a TOML file (or command-line
//! flags that build one), parsed with `serde` into these types: an unknown
//! key or a bad value is an error naming the file, the line and the key,
//! never a silent default. The shape follows Firecracker's `vmm_config`
//! and Cloud Hypervisor's `VmConfig`: one typed struct per device, enums
//! for the choices.
//!
//! ```toml
//! posted_interrupts = false
//! counters = ["completions", "errors"]
//!
//! [[nic]]
//! model = "virtio-net"
//! wire_ns = 5000
//! coalesce = { frames = 4, delay_us = 50 }
//!
//! [block]
//! rate = 100000
//! dma = { start = 0x1000000, len = 0x100000 }
//! ```

use crate::layout::GUEST_COUNTER_SLOTS;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU64;

/// The machine a guest asks for. The default is the plain exitlab machine:
/// console, debug exit, markers and the fixed microbenchmark devices, no
/// network card, no block device, posted interrupts where the hardware has
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineConfig {
    /// The platform around the CPU: exitlab's own machine, or the PC
    /// that images from elsewhere expect.
    pub platform: Platform,
    /// Network cards, at most one of each model (each has its fixed BAR).
    #[serde(rename = "nic")]
    pub nics: Vec<Nic>,
    /// The exitlab block device.
    pub block: Option<Block>,
    /// A write monitor over guest memory (experiment E7).
    pub monitor: Option<WriteMonitor>,
    /// Guest RAM the VMM isolates: no guest access reaches it, through any
    /// mapping the guest may build (experiment E6).
    pub isolate: Vec<GuestRange>,
    /// Device interrupts through posted interrupts where the hardware has
    /// them (true); false makes every one exit and be injected, whatever
    /// the hardware.
    pub posted_interrupts: bool,
    /// The host's own periodic timer, as a guest feels it: an exit at every
    /// tick (the VMX-preemption timer; experiment E10).
    pub host_timer_hz: Option<NonZeroU64>,
    /// Names of the guest's counter slots at
    /// [`crate::layout::GUEST_COUNTERS`], slot 0 first; the VMM reads them
    /// at each phase boundary.
    pub counters: Vec<String>,
    /// A log of round trips the guest measured: one u64 per entry, TSC
    /// ticks (the ping-pongs).
    pub round_trip_log: Option<GuestLog>,
    /// A log of interrupt latencies: two u64s per entry, the TSC when the
    /// driver took a completion and the device's completion time in ns
    /// (device-irq).
    pub irq_latency_log: Option<GuestLog>,
    /// CPU features the guest cannot run without.
    pub needs: Vec<CpuFeature>,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            platform: Platform::Exitlab,
            nics: Vec::new(),
            block: None,
            monitor: None,
            isolate: Vec::new(),
            posted_interrupts: true,
            host_timer_hz: None,
            counters: Vec::new(),
            round_trip_log: None,
            irq_latency_log: None,
            needs: Vec::new(),
        }
    }
}

/// Which platform the CPU sits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// exitlab's machine: COM1, the debug exit whose dword is the status,
    /// the phase markers and the microbenchmark devices.
    #[default]
    Exitlab,
    /// QEMU's `pc` machine as kvm-unit-tests and kernels expect it, on top
    /// of exitlab's: the 8259 pair, IOAPIC, 8254, RTC, isa-debug-exit with
    /// QEMU's status, fw_cfg, PCI configuration ports, the reset paths,
    /// pc-testdev, the ACPI PM block and ACPI tables.
    Pc,
}

/// `len` bytes of guest-physical memory from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRange {
    /// First guest-physical address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl GuestRange {
    /// One past the last address, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }

    /// Whether `gpa` lies inside.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.start && gpa - self.start < self.len
    }
}

impl fmt::Display for GuestRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.start, self.len)
    }
}

/// A network card and the wire behind it: an echo peer that sends every
/// frame back after twice `wire_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Nic {
    /// An Intel 82540EM (e1000) at [`crate::nic::E1000_BAR`].
    E1000 {
        /// One-way wire delay to the echo peer, ns.
        wire_ns: u64,
    },
    /// virtio-net over virtio-mmio at [`crate::nic::VIRTIO_NET_BAR`].
    VirtioNet {
        /// One-way wire delay to the echo peer, ns.
        wire_ns: u64,
        /// Interrupt coalescing of completions.
        #[serde(default)]
        coalesce: Coalescing,
        /// A coalescing kick doorbell in the machine (experiment E5):
        /// the driver's queue notifications go to it instead of exiting.
        #[serde(default)]
        kick_doorbell: Option<KickDoorbell>,
    },
}

impl Nic {
    /// The card's model name, as the TOML form spells it.
    pub fn model(&self) -> &'static str {
        match self {
            Nic::E1000 { .. } => "e1000",
            Nic::VirtioNet { .. } => "virtio-net",
        }
    }

    /// One-way wire delay to the echo peer, ns.
    pub fn wire_ns(&self) -> u64 {
        match *self {
            Nic::E1000 { wire_ns } | Nic::VirtioNet { wire_ns, .. } => wire_ns,
        }
    }
}

/// One interrupt per `frames` completions, or `delay_us` after the first
/// one not yet signalled, whichever comes first (0 or 1 frames: every
/// completion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Coalescing {
    /// Completions per interrupt.
    pub frames: u32,
    /// The longest a completion waits for its interrupt, us (0: no limit).
    pub delay_us: u64,
}

/// The kick doorbell tells the VMM once per `kicks` writes, or `delay_us`
/// after the first write it has not told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickDoorbell {
    /// Writes gathered into one notification.
    pub kicks: NonZeroU64,
    /// The longest a write waits to be told of, us (0: no limit).
    #[serde(default)]
    pub delay_us: u64,
}

/// The exitlab block device (interface in [`crate::layout::blk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Requests the device completes per second of guest time.
    pub rate: NonZeroU64,
    /// Guest memory the device may reach by DMA; all of RAM when absent.
    #[serde(default)]
    pub dma: Option<GuestRange>,
}

/// How the VMM records guest writes to a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MonitorKind {
    /// EPT write protection: every write exits (twice).
    WriteProtect,
    /// Page-modification logging: the CPU logs first writes per page.
    Pml,
}

/// A write monitor over guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteMonitor {
    /// How writes are recorded.
    pub kind: MonitorKind,
    /// The guest-physical range watched.
    pub range: GuestRange,
}

/// A log the guest keeps in its memory for the VMM to read at the end:
/// entries `first..first + count` are the measured ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestLog {
    /// Guest-physical address of entry 0.
    pub gpa: u64,
    /// The first measured entry (after the warm-up's).
    pub first: u64,
    /// How many entries are measured.
    pub count: u64,
}

/// A CPU feature a guest may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuFeature {
    /// Restricted transactional memory (XBEGIN/XEND).
    Tsx,
}

/// A machine description that could not be read or does not hold
/// together: where, which key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineError {
    /// The file (or other origin) the description came from.
    pub origin: String,
    /// The line, where the mistake has one.
    pub line: Option<usize>,
    /// The key at fault, where there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for MachineError {}

/// The key written at the start of `line` (`key = ...`, `[key]`,
/// `[[key]]`), if any.
fn key_on(line: &str) -> Option<String> {
    let l = line.trim_start();
    let key = match l.strip_prefix('[') {
        Some(rest) => rest.trim_start_matches('[').split(']').next()?,
        None => l.split('=').next().filter(|_| l.contains('='))?,
    };
    let key = key.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

impl MachineConfig {
    /// Parses the TOML form; `origin` (a file name) names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<MachineConfig, MachineError> {
        let config: MachineConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let key = line.and_then(|l| text.lines().nth(l - 1)).and_then(key_on);
            let message = e.message().trim().replace('\n', " ");
            MachineError { origin: origin.to_string(), line, key, message }
        })?;
        config.check(u64::MAX).map_err(|(key, message)| {
            let line = text.lines().position(|l| key_on(l).is_some_and(|k| k == key)).map(|i| i + 1);
            MachineError { origin: origin.to_string(), line, key: Some(key.to_string()), message }
        })?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &std::path::Path) -> Result<MachineConfig, MachineError> {
        let origin = path.display().to_string();
        // A machine description is a few lines; 1 MiB is more than any.
        let text = exitlab_arch::input::read_limited(path, 1 << 20).map_err(|e| MachineError {
            origin: origin.clone(),
            line: None,
            key: None,
            message: format!("cannot read it: {e}"),
        })?;
        MachineConfig::from_toml(&origin, &text)
    }

    /// Checks what the types alone cannot say, for a guest with
    /// `memory_size` bytes of RAM: every range inside RAM, at most one card
    /// of each model, no more counters than slots. The error names the key.
    pub fn check(&self, memory_size: u64) -> Result<(), (&'static str, String)> {
        let inside = |key: &'static str, r: &GuestRange| match r.end() {
            Some(end) if r.len > 0 && end <= memory_size => Ok(()),
            None => Err((key, format!("{r} runs past the end of the address space"))),
            Some(_) => Err((key, format!("{r} is not inside the guest's {memory_size:#x} bytes of RAM"))),
        };
        for (i, nic) in self.nics.iter().enumerate() {
            if self.nics[..i].iter().any(|n| n.model() == nic.model()) {
                return Err(("model", format!("two `{}` cards: each model has one fixed BAR", nic.model())));
            }
        }
        if let Some(dma) = self.block.as_ref().and_then(|b| b.dma.as_ref()) {
            inside("dma", dma)?;
        }
        if let Some(m) = &self.monitor {
            inside("range", &m.range)?;
        }
        for r in &self.isolate {
            inside("isolate", r)?;
        }
        if self.counters.len() > GUEST_COUNTER_SLOTS {
            return Err((
                "counters",
                format!("{} counters name more than the {GUEST_COUNTER_SLOTS} slots", self.counters.len()),
            ));
        }
        Ok(())
    }

    /// The virtio-net card, if the machine has one.
    pub fn virtio_net(&self) -> Option<&Nic> {
        self.nics.iter().find(|n| matches!(n, Nic::VirtioNet { .. }))
    }

    /// Whether the guest needs `feature`.
    pub fn needs(&self, feature: CpuFeature) -> bool {
        self.needs.contains(&feature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
platform = "pc"
posted_interrupts = false
host_timer_hz = 1000
counters = ["commits", "aborts"]
needs = ["tsx"]
isolate = [{ start = 0x700000, len = 0x1000 }]

[[nic]]
model = "e1000"
wire_ns = 100

[[nic]]
model = "virtio-net"
wire_ns = 5000
coalesce = { frames = 4, delay_us = 50 }
kick_doorbell = { kicks = 8 }

[block]
rate = 100000
dma = { start = 0x1000000, len = 0x100000 }

[monitor]
kind = "pml"
range = { start = 0x800000, len = 0x200000 }

[round_trip_log]
gpa = 0x2000000
first = 10
count = 1000
"#;

    #[test]
    fn the_toml_form_round_trips_every_field() {
        let c = MachineConfig::from_toml("full.toml", FULL).unwrap();
        assert_eq!(c.platform, Platform::Pc);
        assert!(!c.posted_interrupts);
        assert_eq!(c.host_timer_hz, NonZeroU64::new(1000));
        assert_eq!(c.counters, ["commits", "aborts"]);
        assert!(c.needs(CpuFeature::Tsx));
        assert_eq!(c.isolate, [GuestRange { start: 0x70_0000, len: 0x1000 }]);
        assert_eq!(c.nics[0], Nic::E1000 { wire_ns: 100 });
        assert_eq!(
            c.virtio_net(),
            Some(&Nic::VirtioNet {
                wire_ns: 5000,
                coalesce: Coalescing { frames: 4, delay_us: 50 },
                kick_doorbell: Some(KickDoorbell { kicks: NonZeroU64::new(8).unwrap(), delay_us: 0 }),
            })
        );
        let block = c.block.unwrap();
        assert_eq!((block.rate.get(), block.dma), (100_000, Some(GuestRange { start: 0x100_0000, len: 0x10_0000 })));
        assert_eq!(c.monitor.unwrap().kind, MonitorKind::Pml);
        assert_eq!(c.round_trip_log, Some(GuestLog { gpa: 0x200_0000, first: 10, count: 1000 }));
        assert_eq!(c.irq_latency_log, None);
        let again = MachineConfig::from_toml("again.toml", &toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert_eq!(MachineConfig::from_toml("empty.toml", "").unwrap(), MachineConfig::default());
    }

    fn error(text: &str) -> MachineError {
        MachineConfig::from_toml("m.toml", text).unwrap_err()
    }

    #[test]
    fn mistakes_name_the_file_line_and_key() {
        let e = error("counters = []\nposted_interupts = false\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("posted_interupts")), "{e}");
        assert!(e.to_string().starts_with("m.toml:2: `posted_interupts`: unknown field"), "{e}");
        let e = error("[block]\nrate = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("rate")), "{e}");
        let e = error("[[nic]]\nmodel = \"rtl8139\"\nwire_ns = 1\n");
        assert!(e.message.contains("rtl8139"), "{e}");
        assert_eq!(e.line.map(|l| l <= 2), Some(true), "{e}");
        let e = error("[[nic]]\nmodel = \"e1000\"\nwire_ns = 1\ncoalesce = { frames = 2 }\n");
        assert!(e.message.contains("coalesce"), "{e}");
        let e = error("[monitor]\nkind = \"dirty-bits\"\nrange = { start = 0, len = 1 }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("kind")), "{e}");
        let e = error("[block]\nrate = 1\ndma = { start = 0xffffffffffff0000, len = 0x100000 }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("dma")), "{e}");
        assert!(e.message.contains("past the end"), "{e}");
        let e = error("[[nic]]\nmodel = \"e1000\"\nwire_ns = 1\n[[nic]]\nmodel = \"e1000\"\nwire_ns = 2\n");
        assert_eq!(e.key.as_deref(), Some("model"), "{e}");
        let e = error("counters = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\"]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("counters")), "{e}");
    }

    #[test]
    fn ranges_are_checked_against_guest_memory() {
        let c = MachineConfig { isolate: vec![GuestRange { start: 0x7f_f000, len: 0x2000 }], ..Default::default() };
        assert!(c.check(8 << 20).is_err());
        assert!(c.check(16 << 20).is_ok());
        let empty = MachineConfig { isolate: vec![GuestRange { start: 0, len: 0 }], ..Default::default() };
        assert!(empty.check(1 << 20).is_err(), "an empty range isolates nothing: a mistake");
    }
}

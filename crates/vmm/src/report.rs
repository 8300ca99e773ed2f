//! What a run gives back: how it ended, the accounting, every exit when
//! traced, and the machine's devices and logs for inspection.

use crate::account::{Accountant, ExitRecord};
use crate::bus::Bus;
use crate::devices::power::ResetSource;
use crate::devices::Serial;
use crate::monitor::Monitor;
use crate::platform::SERIAL;
use crate::sites::ExitSites;
use exitlab_arch::iommu::Fault;
use exitlab_arch::{EptViolationQual, Regs};
use exitlab_guest::MailboxReport;
use exitlab_hv::Unmodelled;
use std::fmt;

/// Something the guest did that ends the run without a clean exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// The guest kernel reported an exception or an unexpected interrupt.
    Exception(MailboxReport),
    /// TRIPLE_FAULT: the vCPU shut down.
    TripleFault,
    /// HLT with nothing that could ever wake the vCPU.
    HaltedForever,
    /// The guest broke the exitlab guest <-> VMM protocol.
    Protocol(String),
    /// An exit this VMM does not handle on this backend.
    UnhandledExit(String),
    /// The guest ran an instruction the backend does not model.
    Unmodelled(Unmodelled),
    /// The VMM had to emulate an instruction (an MMIO access the CPU did
    /// not decode) and could not.
    NotEmulated {
        /// Guest RIP of the instruction.
        rip: u64,
        /// Why not.
        why: String,
    },
    /// The guest hit a run limit (instructions or time): a runaway loop.
    Runaway(String),
    /// The guest touched guest-physical memory its EPT permissions forbid,
    /// and no VMM policy allows it.
    EptViolation {
        /// Guest-physical address accessed.
        gpa: u64,
        /// The guest-linear address, when the access had one.
        linear: Option<u64>,
        /// The exit qualification.
        qual: EptViolationQual,
    },
    /// The guest kernel panicked: its console printed the panic banner
    /// (and, for Linux, the report's end line); the kernel would spin from
    /// here ([`crate::console`]).
    KernelPanic {
        /// The banner line from the banner on (Linux: `Kernel panic - not
        /// syncing: <why>`).
        message: String,
    },
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::Exception(r) => write!(f, "{r}"),
            GuestError::TripleFault => f.write_str("triple fault: the vCPU shut down"),
            GuestError::HaltedForever => f.write_str("HLT with interrupts masked and no wake-up source"),
            GuestError::Protocol(s) => write!(f, "guest protocol error: {s}"),
            GuestError::UnhandledExit(s) => write!(f, "unhandled exit: {s}"),
            GuestError::Unmodelled(u) => write!(f, "unsupported: {u}"),
            GuestError::NotEmulated { rip, why } => write!(f, "unsupported: {why} (rip {rip:#x})"),
            GuestError::Runaway(s) => write!(f, "stopped: {s}"),
            GuestError::KernelPanic { message } => write!(f, "guest kernel panic: {message}"),
            GuestError::EptViolation { gpa, linear, qual } => {
                let access = if qual.fetch {
                    "fetch"
                } else if qual.write {
                    "write"
                } else {
                    "read"
                };
                let allows: String = [(qual.readable, 'r'), (qual.writable, 'w'), (qual.executable, 'x')]
                    .iter()
                    .map(|&(b, c)| if b { c } else { '-' })
                    .collect();
                write!(f, "EPT violation: {access} of guest-physical {gpa:#x} (EPT allows {allows})")?;
                if let Some(l) = linear {
                    write!(f, " from linear {l:#x}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `status` to the exitlab machine's debug-exit port
    /// (0: success).
    Exited {
        /// The dword written.
        status: u32,
    },
    /// The guest wrote `code` to the PC's isa-debug-exit (0xf4), which
    /// QEMU turns into the process status `(code << 1) | 1`: 1 passes,
    /// 3 fails, 77 skipped everything, 127 aborted (kvm-unit-tests).
    DebugExit {
        /// The value written (its low 31 bits).
        code: u32,
        /// The status QEMU would exit with.
        status: u32,
    },
    /// The guest reset the machine (a VMM without firmware ends the run,
    /// as QEMU's `-no-reboot` does).
    Reset {
        /// Which path.
        source: ResetSource,
    },
    /// The guest powered the machine off (ACPI S5).
    PowerOff,
    /// The guest printed a console line the run was asked to stop at
    /// ([`crate::console::StopRule::line`]).
    ConsoleStop {
        /// The line, without its line break.
        line: String,
    },
    /// The guest ended the run badly.
    GuestError(GuestError),
}

impl Outcome {
    /// Whether the guest ended the run saying it succeeded: status 0 on
    /// the exitlab machine, QEMU status 1 on the PC.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited { status: 0 } | Outcome::DebugExit { status: 1, .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited { status } => write!(f, "guest exited with status {status}"),
            Outcome::DebugExit { code, status } => {
                write!(f, "guest wrote {code} to isa-debug-exit (QEMU status {status})")
            }
            Outcome::Reset { source } => write!(f, "guest reset the machine ({})", crate::pc::reset_name(*source)),
            Outcome::PowerOff => f.write_str("guest powered the machine off (ACPI S5)"),
            Outcome::ConsoleStop { line } => write!(f, "stopped at the console line: {line}"),
            Outcome::GuestError(e) => write!(f, "{e}"),
        }
    }
}

/// What an exit carried, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A port access and its data (for IN, what the VMM answered).
    Port {
        /// The port.
        port: u16,
        /// Bytes per access.
        size: u8,
        /// IN (else OUT).
        is_in: bool,
        /// The (first) value moved.
        data: u32,
    },
    /// An MMIO access and its data (for reads, what the VMM answered).
    Mmio {
        /// Guest-physical address.
        gpa: u64,
        /// Bytes.
        size: u8,
        /// A store (else a load).
        is_write: bool,
        /// The value moved.
        data: u64,
    },
    /// An RDMSR or WRMSR (SDM Vol. 3C 26.1.3: exits 31 and 32 carry no
    /// qualification; the index is ECX).
    Msr {
        /// The MSR's index (ECX).
        index: u32,
        /// WRMSR (else RDMSR).
        write: bool,
    },
    /// Nothing was accessed.
    None,
}

/// One exit in a run's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// The exit as accounted.
    pub record: ExitRecord,
    /// What it accessed.
    pub access: Access,
    /// Guest RIP as the backend reports it when the exit reaches the VMM
    /// (the simulator: the exiting instruction; KVM may already be past
    /// it for port I/O).
    pub rip: u64,
}

/// The result of one run: how it ended, the accounting, and the machine's
/// devices for inspection.
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// Every exit, folded by phase.
    pub accountant: Accountant,
    /// The vCPU's registers at the end.
    pub regs: Regs,
    /// The port bus and its devices.
    pub pio: Bus,
    /// The MMIO bus and its devices.
    pub mmio: Bus,
    /// Every exit in order, when [`crate::RunOptions::trace`] asked for it.
    pub trace: Vec<TraceEntry>,
    /// What the write monitor recorded, when the machine has one.
    pub monitor: Option<Monitor>,
    /// DMA the IOMMU (or, for an emulated device, the VMM) refused.
    pub dma_faults: Vec<Fault>,
    /// Round trips a ping-pong guest logged for its measured echoes (ns).
    pub round_trips_ns: Vec<u64>,
    /// Completion-to-driver latencies a device-irq guest logged (ns; on
    /// the simulator, whose TSC and device clock agree).
    pub irq_latencies_ns: Vec<u64>,
    /// Exits by guest RIP, when [`crate::RunOptions::exit_sites`] asked.
    pub sites: ExitSites,
    /// On the PC platform, who served each device: (device, model).
    pub served_by: Vec<(&'static str, &'static str)>,
}

impl RunReport {
    /// What the guest printed on COM1.
    pub fn console(&self) -> String {
        let serial = self.pio.device::<Serial>(SERIAL);
        String::from_utf8_lossy(serial.map_or(&[][..], |s| s.output())).into_owned()
    }
}

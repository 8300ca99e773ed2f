//! VM exits as the VMM sees them, in the SDM's vocabulary (Vol. 3C
//! Appendix C basic exit reasons, chapter 28 qualifications).

use exitlab_arch::{CrAccessQual, EptViolationQual, ExitReason, IoQual};

/// A port I/O exit (IO_INSTRUCTION).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// The exit qualification: port, size, direction, string, REP.
    pub qual: IoQual,
    /// Repetitions of a string instruction the backend folded into this
    /// exit (1 for IN/OUT).
    pub count: u32,
    /// OUT: the value written (low `qual.size` bytes), when `count` is 1.
    pub data: u32,
    /// OUTS with `count` > 1: all bytes written, in order.
    pub bulk: Vec<u8>,
}

/// An access to guest-physical memory that has no RAM behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioExit {
    /// Guest-physical address accessed.
    pub gpa: u64,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// A store (else a load).
    pub is_write: bool,
    /// The stored value for a write (low `size` bytes).
    pub data: u64,
}

/// Why a vCPU stopped running guest code, in the SDM's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// IO_INSTRUCTION. An IN needs [`Vcpu::complete_read`] before the
    /// next [`Vcpu::run`].
    Io(IoExit),
    /// A guest-physical access to MMIO. The SDM reason is the backend's
    /// (`EPT_MISCONFIG` for KVM's MMIO exits, see docs/DESIGN.md). A read
    /// needs [`Vcpu::complete_read`].
    Mmio {
        /// The SDM reason the backend reports for it.
        reason: ExitReason,
        /// The decoded access.
        access: MmioExit,
    },
    /// The page-modification log is full: the write that would have logged
    /// has not happened yet.
    PmlFull,
    /// An access to the local-APIC page without APIC virtualization: the
    /// VMM emulates the instruction at RIP (not yet run) against the vCPU's
    /// APIC. `offset` is the register offset, `write` the access type.
    ApicAccess {
        /// Register offset in the APIC page.
        offset: u16,
        /// A write (else a read).
        write: bool,
    },
    /// APIC_WRITE (trap-like): with APIC virtualization, the guest wrote a
    /// local-APIC register the CPU does not virtualize (the timer's, an
    /// LVT); the write is done and RIP is past it. The VMM emulates the
    /// write's effect (the simulator's APIC already has).
    ApicWrite {
        /// Register offset in the APIC page.
        offset: u16,
    },
    /// An MMIO access the CPU did not describe: the VMM must fetch, decode
    /// and emulate the instruction at RIP (which has not run), then skip it.
    MmioEmulate {
        /// EPT_MISCONFIG for device MMIO, EPT_VIOLATION for unmapped
        /// or blocked memory, EXCEPTION_NMI (#PF) under shadow paging.
        reason: ExitReason,
        /// Guest-physical address accessed.
        gpa: u64,
    },
    /// HLT with nothing pending (a backend without an in-kernel irqchip).
    Hlt,
    /// TRIPLE_FAULT: the guest shut the vCPU down.
    Shutdown,
    /// A debug event (single step or breakpoint) the VMM asked to see.
    Debug {
        /// Guest RIP at the event.
        rip: u64,
        /// DR6 as the event set it.
        dr6: u64,
    },
    /// CPUID: answer with [`Completion::Cpuid`].
    Cpuid {
        /// EAX at the CPUID.
        leaf: u32,
        /// ECX at the CPUID.
        subleaf: u32,
    },
    /// RDMSR: answer with [`Completion::MsrRead`].
    MsrRead {
        /// The MSR index (ECX).
        msr: u32,
    },
    /// WRMSR: answer with [`Completion::MsrWrite`].
    MsrWrite {
        /// The MSR index (ECX).
        msr: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// A control-register access the controls trap.
    CrAccess(CrAccessQual),
    /// A guest-physical access the EPT does not permit. The guest-linear
    /// address, when there was one, is in [`ExitInfo::guest_linear`].
    EptViolation {
        /// Guest-physical address accessed.
        gpa: u64,
        /// The SDM qualification (access, permissions, GLA valid).
        qual: EptViolationQual,
    },
    /// An exception in the exception bitmap, not delivered. For #PF the
    /// qualification is the faulting linear address (CR2 is not written).
    Exception {
        /// The exception vector.
        vector: u8,
        /// Its error code, for the vectors that push one.
        error_code: Option<u32>,
        /// The exit qualification (for #PF, the linear address).
        qualification: u64,
    },
    /// INVLPG of a linear address (trapped under shadow paging).
    Invlpg {
        /// The linear address the guest invalidates.
        linear: u64,
    },
    /// RDTSC under RDTSC exiting.
    Rdtsc,
    /// The guest can take an interrupt now (interrupt-window exiting).
    InterruptWindow,
    /// An instruction completed under the monitor trap flag.
    MonitorTrap,
    /// The VMX-preemption timer counted down to zero.
    PreemptionTimer,
    /// An interrupt arrived for the guest (external-interrupt exiting).
    ExternalInterrupt {
        /// The interrupt's vector.
        vector: u8,
    },
    /// Any other exit, with its raw qualification.
    Other {
        /// The basic exit reason.
        reason: ExitReason,
        /// The raw exit qualification.
        qualification: u64,
    },
}

impl VmExit {
    /// The basic exit reason (SDM Vol. 3C Appendix C).
    pub fn reason(&self) -> ExitReason {
        match self {
            VmExit::Io(_) => ExitReason::IoInstruction,
            VmExit::Mmio { reason, .. } | VmExit::MmioEmulate { reason, .. } => *reason,
            VmExit::Hlt => ExitReason::Hlt,
            VmExit::Shutdown => ExitReason::TripleFault,
            VmExit::Debug { .. } => ExitReason::ExceptionNmi,
            VmExit::Cpuid { .. } => ExitReason::Cpuid,
            VmExit::MsrRead { .. } => ExitReason::MsrRead,
            VmExit::MsrWrite { .. } => ExitReason::MsrWrite,
            VmExit::CrAccess(_) => ExitReason::CrAccess,
            VmExit::ApicAccess { .. } => ExitReason::ApicAccess,
            VmExit::ApicWrite { .. } => ExitReason::ApicWrite,
            VmExit::PmlFull => ExitReason::PmlFull,
            VmExit::EptViolation { .. } => ExitReason::EptViolation,
            VmExit::Exception { .. } => ExitReason::ExceptionNmi,
            VmExit::Invlpg { .. } => ExitReason::Invlpg,
            VmExit::Rdtsc => ExitReason::Rdtsc,
            VmExit::InterruptWindow => ExitReason::InterruptWindow,
            VmExit::MonitorTrap => ExitReason::MonitorTrapFlag,
            VmExit::PreemptionTimer => ExitReason::PreemptionTimer,
            VmExit::ExternalInterrupt { .. } => ExitReason::ExternalInterrupt,
            VmExit::Other { reason, .. } => *reason,
        }
    }

    /// The exit-qualification field, SDM layout.
    pub fn qualification(&self) -> u64 {
        match self {
            VmExit::Io(io) => io.qual.encode(),
            VmExit::Mmio { access, .. } => {
                let q = EptViolationQual { read: !access.is_write, write: access.is_write, ..Default::default() };
                q.encode()
            }
            VmExit::Debug { dr6, .. } => *dr6,
            VmExit::MmioEmulate { reason, .. } if *reason == ExitReason::EptViolation => {
                EptViolationQual { read: true, ..Default::default() }.encode()
            }
            VmExit::MmioEmulate { .. } => 0,
            VmExit::Other { qualification, .. } => *qualification,
            VmExit::CrAccess(q) => q.encode(),
            // SDM table 28-6: offset in bits 11:0, access type in 15:12
            // (0 linear read, 1 linear write).
            VmExit::ApicAccess { offset, write } => u64::from(*offset & 0xfff) | u64::from(*write) << 12,
            // SDM Vol. 3C 28.2.1: an APIC-write exit gives the page offset in bits 11:0.
            VmExit::ApicWrite { offset } => u64::from(*offset & 0xfff),
            VmExit::EptViolation { qual, .. } => qual.encode(),
            VmExit::Exception { qualification, .. } => *qualification,
            VmExit::Invlpg { linear } => *linear,
            VmExit::Hlt
            | VmExit::Shutdown
            | VmExit::Cpuid { .. }
            | VmExit::MsrRead { .. }
            | VmExit::MsrWrite { .. }
            | VmExit::Rdtsc
            | VmExit::PmlFull
            | VmExit::InterruptWindow
            | VmExit::MonitorTrap
            | VmExit::PreemptionTimer
            | VmExit::ExternalInterrupt { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_report_sdm_reason_and_qualification() {
        let io = VmExit::Io(IoExit {
            qual: IoQual { size: 1, is_in: false, string: false, rep: false, immediate: false, port: 0x80 },
            count: 1,
            data: 7,
            bulk: Vec::new(),
        });
        assert_eq!(io.reason(), ExitReason::IoInstruction);
        assert_eq!(io.qualification(), 0x0080_0000);
        let mmio = VmExit::Mmio {
            reason: ExitReason::EptMisconfig,
            access: MmioExit { gpa: 0xd000_0000, size: 4, is_write: true, data: 1 },
        };
        assert_eq!(mmio.reason().name(), "EPT_MISCONFIG");
        assert_eq!(mmio.qualification(), 0b10);
    }
}

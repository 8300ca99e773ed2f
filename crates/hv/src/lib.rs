//! The backend interface: what the VMM needs from a machine that runs guest
//! code, and nothing else. A backend (the simulated CPU, KVM) implements
//! [`Vm`] and [`Vcpu`]; the VMM drives them and never asks which one it
//! has, only what it [`Capabilities`] offers.
#![forbid(unsafe_code)]

pub mod device;

pub use device::{Device, DeviceCtx, Dma, DmaError};
use exitlab_arch::iommu;
use exitlab_arch::vmx::Controls;
use exitlab_arch::{BootState, CrAccessQual, EptViolationQual, ExitReason, IoQual, Regs};
use serde::Serialize;
use std::fmt;

/// What a backend can show and do. An experiment cell that needs a missing
/// capability is reported as "n/a (reason)", never faked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Backend name as users select it (`sim`, `kvm`).
    pub backend: &'static str,
    /// Every exit reaches the VMM (sim). KVM shows only userspace exits;
    /// the rest appear in [`Vcpu::counters`].
    pub sees_all_exits: bool,
    /// Same inputs give the same exits, registers and time, bit for bit.
    pub deterministic_time: bool,
    /// The hardware has EPT (second-level address translation); without
    /// it the VMM shadows the guest's page tables.
    pub ept: bool,
    /// The hardware tags TLB entries with a VPID, so VM entries and exits
    /// need not flush it.
    pub vpid: bool,
    /// MMIO exits can carry the decoded access (see
    /// `exitlab_arch::vmx::Controls::decode_assist`).
    pub decode_assist: bool,
    /// APIC virtualization: the guest's APIC accesses need no exit.
    pub apicv: bool,
    /// Per-page execute permission in the second-level tables.
    pub ept_exec_control: bool,
    pub pml: bool,
    pub posted_interrupts: bool,
    pub tsx: bool,
    /// An IOMMU (VT-d DMA and interrupt remapping) through which the VMM
    /// can assign a device to the guest ([`Vm::assign_device`]).
    pub iommu: bool,
    /// TSC ticks per second, where the VMM may know it (the VMX-preemption
    /// timer counts in them); 0 when it does not.
    pub tsc_hz: u64,
    /// The backend reports counters for exits it handles itself.
    pub backend_counters: bool,
    /// The VMM sets VMX execution controls, injects events and manages
    /// shadow page tables itself (the simulator; KVM keeps these).
    pub vmx_controls: bool,
}

/// An MSI: the address/data pair a device writes to interrupt a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub address: u64,
    pub data: u32,
}

impl Msi {
    /// A fixed-delivery, edge-triggered MSI of `vector` to APIC ID `dest`.
    pub fn fixed(dest: u8, vector: u8) -> Msi {
        Msi { address: exitlab_arch::bits::apic::MSI_ADDRESS_BASE | u64::from(dest) << 12, data: u32::from(vector) }
    }
}

/// A port I/O exit (IO_INSTRUCTION).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoExit {
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
    pub gpa: u64,
    pub size: u8,
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
        reason: ExitReason,
        access: MmioExit,
    },
    /// The page-modification log is full: the write that would have logged
    /// has not happened yet.
    PmlFull,
    /// An access to the local-APIC page without APIC virtualization: the
    /// VMM emulates the instruction at RIP (not yet run) against the vCPU's
    /// APIC. `offset` is the register offset, `write` the access type.
    ApicAccess {
        offset: u16,
        write: bool,
    },
    /// APIC_WRITE (trap-like): with APIC virtualization, the guest wrote a
    /// local-APIC register the CPU does not virtualize (the timer's, an
    /// LVT); the write is done and RIP is past it. The VMM emulates the
    /// write's effect (the simulator's APIC already has).
    ApicWrite {
        offset: u16,
    },
    /// An MMIO access the CPU did not describe: the VMM must fetch, decode
    /// and emulate the instruction at RIP (which has not run), then skip it.
    MmioEmulate {
        reason: ExitReason,
        gpa: u64,
    },
    /// HLT with nothing pending (a backend without an in-kernel irqchip).
    Hlt,
    /// TRIPLE_FAULT: the guest shut the vCPU down.
    Shutdown,
    /// A debug event (single step or breakpoint) the VMM asked to see.
    Debug {
        rip: u64,
        dr6: u64,
    },
    /// CPUID: answer with [`Completion::Cpuid`].
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    /// RDMSR: answer with [`Completion::MsrRead`].
    MsrRead {
        msr: u32,
    },
    /// WRMSR: answer with [`Completion::MsrWrite`].
    MsrWrite {
        msr: u32,
        value: u64,
    },
    /// A control-register access the controls trap.
    CrAccess(CrAccessQual),
    /// A guest-physical access the EPT does not permit. The guest-linear
    /// address, when there was one, is in [`ExitInfo::guest_linear`].
    EptViolation {
        gpa: u64,
        qual: EptViolationQual,
    },
    /// An exception in the exception bitmap, not delivered. For #PF the
    /// qualification is the faulting linear address (CR2 is not written).
    Exception {
        vector: u8,
        error_code: Option<u32>,
        qualification: u64,
    },
    Invlpg {
        linear: u64,
    },
    Rdtsc,
    /// The guest can take an interrupt now (interrupt-window exiting).
    InterruptWindow,
    /// An instruction completed under the monitor trap flag.
    MonitorTrap,
    PreemptionTimer,
    /// An interrupt arrived for the guest (external-interrupt exiting).
    ExternalInterrupt {
        vector: u8,
    },
    /// Any other exit, with its raw qualification.
    Other {
        reason: ExitReason,
        qualification: u64,
    },
}

impl VmExit {
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
                let q = exitlab_arch::EptViolationQual {
                    read: !access.is_write,
                    write: access.is_write,
                    ..Default::default()
                };
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

/// What kind of event an injection is (the type field of the VM-entry
/// interruption-information field, SDM 25.8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionKind {
    External,
    Nmi,
    HardwareException,
    SoftwareInterrupt,
}

/// An event the VMM injects at the next VM entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub vector: u8,
    pub kind: InjectionKind,
    pub error_code: Option<u32>,
    /// Bits to set in DR6 when the event is #DB (the "pending debug
    /// exceptions" a VMM passes along, e.g. BS for a single step).
    pub dr6: u64,
    /// CR2 to set when the event is #PF.
    pub cr2: Option<u64>,
}

impl Injection {
    pub fn exception(vector: u8, error_code: Option<u32>) -> Injection {
        Injection { vector, kind: InjectionKind::HardwareException, error_code, dr6: 0, cr2: None }
    }
}

/// Exit information beyond reason and qualification (SDM 25.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Length of the instruction that exited (instruction exits only).
    pub instruction_len: u8,
    pub guest_linear: Option<u64>,
    pub guest_physical: Option<u64>,
    /// The VM-exit instruction-information field (SDM 28.2.5): for INS and
    /// OUTS, the address size (bits 9:7) and segment (bits 17:15).
    pub instruction_info: u32,
    /// The event being delivered when the exit happened, if any.
    pub idt_vectoring: Option<Injection>,
}

/// Permissions of a shadow page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowFlags {
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
}

/// The VMM's answer to an exit that needs one, given before the next run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion<'a> {
    /// The bytes an IN or MMIO read returns.
    Read(&'a [u8]),
    /// EAX, EBX, ECX, EDX for a CPUID.
    Cpuid([u32; 4]),
    /// The value an RDMSR returns, or `None` to raise #GP(0).
    MsrRead(Option<u64>),
    /// Whether a WRMSR was accepted; `false` raises #GP(0).
    MsrWrite(bool),
}

/// Work a VMM exit handler did, in units a cost model can price (the
/// simulator turns them into virtual time; KVM's real time already passed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerWork {
    /// Device register reads and writes.
    pub device_ops: u32,
    /// Guest instruction bytes fetched and decoded.
    pub bytes_decoded: u32,
    /// Guest page-table walks.
    pub page_walks: u32,
    /// Bytes copied to or from guest memory.
    pub bytes_copied: u32,
}

/// A counter the backend keeps for events the VMM may not see (KVM's
/// binary stats: `exits`, `io_exits`, `halt_exits`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HvError {
    /// The backend cannot be used on this host (e.g. no usable /dev/kvm).
    Unavailable(String),
    /// A guest-physical range outside guest memory.
    BadAddress { gpa: u64, len: usize },
    /// The backend failed (an ioctl error, an entry failure).
    Backend(String),
    /// The guest executed something the backend does not implement; the
    /// message names the RIP, the bytes and their disassembly.
    Unsupported(String),
    /// A run limit (instructions, virtual time) was reached.
    Limit(String),
    /// The run call returned before any exit because a deadline the VMM
    /// set ([`Vm::wake_vmm_at`]) passed: its devices have work due (KVM's
    /// analogue is KVM_RUN returning EINTR to a signal). Not a VM exit.
    Interrupted,
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HvError::Unavailable(s) => write!(f, "backend unavailable: {s}"),
            HvError::Interrupted => f.write_str("run interrupted at a VMM deadline"),
            HvError::BadAddress { gpa, len } => {
                write!(f, "guest-physical range {gpa:#x}+{len:#x} is outside guest memory")
            }
            HvError::Backend(s) | HvError::Unsupported(s) | HvError::Limit(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for HvError {}

pub type Result<T> = std::result::Result<T, HvError>;

/// How [`Vm::watch_writes`] watches a range: a read-only memory slot
/// (KVM_MEM_READONLY) or the dirty-page log (KVM_MEM_LOG_DIRTY_PAGES,
/// harvested with KVM_GET_DIRTY_LOG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteWatch {
    ReadOnly,
    DirtyLog,
}

/// The error of a VMX-level call on a backend that does that part itself.
fn kept(what: &str) -> HvError {
    HvError::Backend(format!("this backend keeps {what} to itself"))
}

/// A virtual machine: guest memory, vCPUs, interrupt delivery.
pub trait Vm {
    type Vcpu: Vcpu;

    fn capabilities(&self) -> Capabilities;

    /// Bytes of guest RAM, mapped from guest-physical address 0.
    fn memory_size(&self) -> u64;

    /// Guest RAM as vm-memory sees it, for devices that walk guest
    /// structures themselves (virtio queues through virtio-queue).
    fn guest_memory(&self) -> &vm_memory::GuestMemoryMmap;

    /// Makes the vCPU's run call return [`HvError::Interrupted`] once the
    /// backend's clock reaches `at_ns` (a device's timer: a packet arriving
    /// from the wire), so the VMM can let its devices work then.
    fn wake_vmm_at(&self, _at_ns: u64) -> Result<()> {
        Err(kept("device timing"))
    }

    fn write_memory(&self, gpa: u64, data: &[u8]) -> Result<()>;

    fn read_memory(&self, gpa: u64, data: &mut [u8]) -> Result<()>;

    /// Creates vCPU `id` in the given architectural state.
    fn create_vcpu(&mut self, id: u32, boot: &BootState) -> Result<Self::Vcpu>;

    /// Delivers an MSI to the guest's local APICs.
    fn signal_msi(&self, msi: Msi) -> Result<()>;

    /// Delivers an MSI at a moment of the backend's clock (a device whose
    /// interrupts keep their own time, in virtual time on the simulator).
    fn signal_msi_at(&self, _msi: Msi, _at_ns: u64) -> Result<()> {
        Err(kept("device timing"))
    }

    /// Posts `vector` through the posted-interrupt descriptor at host-
    /// physical `descriptor`, as interrupt remapping in posted mode does for
    /// a device: now, or at `at_ns` of the backend's clock. The descriptor
    /// says which vCPU to notify, and with which vector.
    fn post_interrupt(&self, _descriptor: u64, _vector: u8, _at_ns: Option<u64>) -> Result<()> {
        Err(kept("posted interrupts"))
    }

    /// Allocates zeroed pages of host memory for structures the VMM builds
    /// for the hardware (EPT tables); returns their host-physical address.
    fn alloc_host_pages(&mut self, _pages: usize) -> Result<u64> {
        Err(kept("host-physical memory"))
    }

    fn write_host(&self, _hpa: u64, _data: &[u8]) -> Result<()> {
        Err(kept("host-physical memory"))
    }

    fn read_host(&self, _hpa: u64, _data: &mut [u8]) -> Result<()> {
        Err(kept("host-physical memory"))
    }

    /// Points the IOMMU at the VMM's tables in host memory: the root table
    /// (RTADDR_REG) and the interrupt-remapping table of `irt_entries`
    /// entries (IRTA_REG); DMA and interrupt remapping are on from then.
    fn set_iommu(&mut self, _root_table: u64, _irt: u64, _irt_entries: u32) -> Result<()> {
        Err(kept("an IOMMU"))
    }

    /// Plugs `device` into the machine as physical hardware behind the
    /// IOMMU and returns the host-physical address of its registers: the
    /// VMM maps them into the guest, which then drives the device without
    /// exits. Its DMA is remapped as requester `source`, its interrupt
    /// message k through interrupt-remapping entry `first_irte + k`.
    fn assign_device(&mut self, _device: Box<dyn Device>, _assignment: Assignment) -> Result<u64> {
        Err(kept("an IOMMU"))
    }

    /// The IOMMU's fault records since the last call, oldest first.
    fn take_iommu_faults(&self) -> Vec<iommu::Fault> {
        Vec::new()
    }

    /// The moment the backend's clock counts from, when that clock is the
    /// host's (KVM): a device thread reads the same clock from it.
    fn clock_epoch(&self) -> Option<std::time::Instant> {
        None
    }

    /// A way for a device thread to send `msi`: through an irqfd (KVM
    /// injects it with no userspace on the way) or, with `irqfd` false, an
    /// interrupt-injection call from userspace.
    fn msi_sender(&mut self, _msi: Msi, _irqfd: bool) -> Result<MsiSender> {
        Err(kept("interrupts from other threads"))
    }

    /// Watches guest writes to RAM `gpa..gpa+len` the way a VMM without
    /// EPT of its own does on KVM, through a memory slot of its own:
    /// [`WriteWatch::ReadOnly`] makes every write an MMIO exit the VMM
    /// completes; [`WriteWatch::DirtyLog`] lets writes through and logs the
    /// first to each page, which the backend harvests each time it samples
    /// its counters (`dirty_pages_logged`). Once per VM.
    fn watch_writes(&mut self, _gpa: u64, _len: u64, _how: WriteWatch) -> Result<()> {
        Err(kept("memory slots"))
    }

    /// Takes guest RAM `gpa..gpa+len` out of the guest's view (KVM: the
    /// memory slot is split around it): every access there is then MMIO,
    /// which exits to the VMM. The VMM's own view of the memory stays.
    fn unmap(&mut self, _gpa: u64, _len: u64) -> Result<()> {
        Err(kept("memory slots"))
    }

    /// An ioeventfd: guest writes of `datamatch` (32 bits) to MMIO `gpa`
    /// signal the returned eventfd instead of exiting to userspace.
    fn notify_eventfd(&mut self, _gpa: u64, _datamatch: u32) -> Result<vmm_sys_util::eventfd::EventFd> {
        Err(kept("ioeventfds"))
    }
}

/// Sends one interrupt; callable from any thread.
pub type MsiSender = std::sync::Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// How an assigned device sits behind the IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Bytes of register space (one BAR).
    pub bar_len: u64,
    pub source: iommu::SourceId,
    pub first_irte: u16,
}

/// One virtual CPU.
pub trait Vcpu {
    fn id(&self) -> u32;

    /// Runs guest code until the next exit the VMM must handle.
    fn run(&mut self) -> Result<VmExit>;

    /// Answers the last exit; the answer reaches the guest on the next
    /// [`Vcpu::run`].
    fn complete(&mut self, answer: Completion<'_>);

    /// Supplies the value an IN or MMIO-read exit asked for.
    fn complete_read(&mut self, data: &[u8]) {
        self.complete(Completion::Read(data))
    }

    /// Completes a HLT exit: the vCPU enters the HLT activity state. Returns
    /// the backend-clock time at which something the vCPU owns (its local
    /// APIC timer) will wake it, or `None` if nothing it owns can.
    fn halt(&mut self) -> Result<Option<u64>>;

    /// An MSR of the vCPU's architectural state, or `None` if the CPU has
    /// no such MSR.
    fn read_msr(&mut self, msr: u32) -> Result<Option<u64>>;

    /// Writes an MSR; `false` if the CPU has no such MSR or rejects the
    /// value (the guest then gets #GP).
    fn write_msr(&mut self, msr: u32, value: u64) -> Result<bool>;

    /// Charges the exit the VMM just handled to the backend's clock. Only a
    /// backend with virtual time has anything to do.
    fn account_exit(&mut self, _reason: ExitReason, _work: &HandlerWork) {}

    // What follows is for backends whose [`Capabilities::vmx_controls`] is
    // set: the VMM plays the hypervisor's whole part.

    /// Loads the VM-execution controls.
    fn set_controls(&mut self, _controls: &Controls) -> Result<()> {
        Err(kept("the VMX controls"))
    }

    /// Details of the last exit.
    fn exit_info(&self) -> ExitInfo {
        ExitInfo::default()
    }

    /// Advances RIP past the instruction that exited.
    fn skip_instruction(&mut self) -> Result<()> {
        Err(kept("instruction skipping"))
    }

    /// A guest control register (CR0, CR2, CR3, CR4, CR8).
    fn read_cr(&mut self, _n: u8) -> Result<u64> {
        Err(kept("control registers"))
    }

    fn write_cr(&mut self, _n: u8, _value: u64) -> Result<()> {
        Err(kept("control registers"))
    }

    /// The guest PML index: the next log entry to fill (511 down to 0; any
    /// larger value means full).
    fn pml_index(&mut self) -> Result<u16> {
        Err(kept("page-modification logging"))
    }

    fn set_pml_index(&mut self, _index: u16) -> Result<()> {
        Err(kept("page-modification logging"))
    }

    /// Reads a register of the vCPU's local APIC (for the VMM emulating an
    /// APIC_ACCESS).
    fn apic_read(&mut self, _offset: u16) -> Result<u32> {
        Err(kept("the local APIC"))
    }

    fn apic_write(&mut self, _offset: u16, _value: u32) -> Result<()> {
        Err(kept("the local APIC"))
    }

    /// Queues an event for delivery at the next entry.
    fn inject(&mut self, _event: Injection) -> Result<()> {
        Err(kept("event injection"))
    }

    /// Maps linear page `linear` to physical page `physical` in the shadow
    /// page table the MMU uses while EPT is off.
    fn shadow_map(&mut self, _linear: u64, _physical: u64, _flags: ShadowFlags) -> Result<()> {
        Err(kept("shadow paging"))
    }

    /// Drops every cached guest-physical translation after the VMM changed
    /// the EPT tables (INVEPT, all contexts).
    fn invept(&mut self) -> Result<()> {
        Err(kept("the EPT"))
    }

    /// Drops one shadow translation (`Some`) or all of them (`None`).
    fn shadow_unmap(&mut self, _linear: Option<u64>) -> Result<()> {
        Err(kept("shadow paging"))
    }

    fn regs(&mut self) -> Result<Regs>;

    /// TSC ticks per second as the guest sees them, where the capability
    /// does not say (KVM asks the vCPU); 0 when unknown.
    fn tsc_hz(&mut self) -> Result<u64> {
        Ok(0)
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()>;

    /// The backend's own counters, cumulative since the vCPU was created.
    fn counters(&mut self) -> Result<Vec<Counter>>;

    /// Nanoseconds on this backend's clock: host monotonic time on KVM,
    /// virtual time on the simulator.
    fn now_ns(&self) -> u64;
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

    #[test]
    fn msi_address_carries_the_destination() {
        let m = Msi::fixed(3, 0x41);
        assert_eq!(m.address, 0xfee0_3000);
        assert_eq!(m.data, 0x41);
    }
}

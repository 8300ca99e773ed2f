//! The VMX hardware a VMM drives itself when the backend lets it play the
//! hypervisor's whole part (the simulator): execution controls, exit
//! information, instruction skipping, control registers, event injection,
//! shadow paging, the EPT and INVEPT, page-modification logging, the
//! local-APIC page, host-physical memory for the structures the hardware
//! reads, posted interrupts and an IOMMU with assigned devices.
//!
//! A backend that keeps these to itself (KVM) implements only [`Vm`] and
//! [`Vcpu`]; [`Vm::vmx`] and [`Vcpu::vmx`] then answer `None`, and code
//! that needs an operation takes a `VmxVm` or `VmxVcpu`, so "can this
//! backend toggle EPT" is a question the types answer. The split follows
//! crosvm's `VcpuX86_64: Vcpu` extension traits.

use crate::device::Device;
use crate::error::Result;
use crate::{Vcpu, Vm};
use exitlab_arch::iommu;
use exitlab_arch::vmx::Controls;

/// What kind of event an injection is (the type field of the VM-entry
/// interruption-information field, SDM 25.8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionKind {
    /// An external interrupt.
    External,
    /// A non-maskable interrupt.
    Nmi,
    /// A hardware exception (#DB, #PF, #GP, ...).
    HardwareException,
    /// INT n, INT3 and INTO: delivered with the gate's DPL checked and RIP
    /// plus the instruction length pushed.
    SoftwareInterrupt,
    /// ICEBP (INT1, opcode F1): a #DB with RIP plus the instruction length
    /// pushed, no DPL check (SDM 25.8.3, interruption type 5).
    PrivilegedSoftwareException,
}

/// An event the VMM injects at the next VM entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The vector delivered through the guest's IDT.
    pub vector: u8,
    /// What kind of event it is.
    pub kind: InjectionKind,
    /// The error code pushed, for the exceptions that push one.
    pub error_code: Option<u32>,
    /// Bits to set in DR6 when the event is #DB (the "pending debug
    /// exceptions" a VMM passes along, e.g. BS for a single step).
    pub dr6: u64,
    /// CR2 to set when the event is #PF.
    pub cr2: Option<u64>,
    /// The VM-entry instruction length (SDM 25.8.3): for software
    /// interrupts and privileged software exceptions, how far past RIP the
    /// return address pushed lies; RIP is at the instruction.
    pub instruction_len: u8,
}

impl Injection {
    /// A hardware exception with `vector` and, if it pushes one, its error
    /// code.
    pub fn exception(vector: u8, error_code: Option<u32>) -> Injection {
        Injection { vector, kind: InjectionKind::HardwareException, error_code, dr6: 0, cr2: None, instruction_len: 0 }
    }

    /// A non-maskable interrupt.
    pub fn nmi() -> Injection {
        Injection { kind: InjectionKind::Nmi, ..Injection::exception(2, None) }
    }

    /// External interrupt `vector`.
    pub fn external(vector: u8) -> Injection {
        Injection { kind: InjectionKind::External, ..Injection::exception(vector, None) }
    }
}

/// The guest interruptibility state (SDM 25.4.2): what holds events off
/// at the next instruction boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interruptibility {
    /// Blocking by STI.
    pub sti: bool,
    /// Blocking by MOV SS.
    pub mov_ss: bool,
    /// Blocking by NMI (virtual-NMI blocking under virtual NMIs).
    pub nmi: bool,
}

/// Exit information beyond reason and qualification (SDM 25.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Length of the instruction that exited (instruction exits only).
    pub instruction_len: u8,
    /// The guest-linear address field, when the exit sets it.
    pub guest_linear: Option<u64>,
    /// The guest-physical address field, when the exit sets it.
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
    /// Writes allowed.
    pub writable: bool,
    /// Ring 3 allowed.
    pub user: bool,
    /// Instruction fetches allowed.
    pub executable: bool,
}

/// How an assigned device sits behind the IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Bytes of register space (one BAR).
    pub bar_len: u64,
    /// The requester ID its DMA and interrupts carry.
    pub source: iommu::SourceId,
    /// The interrupt-remapping entry of its message 0.
    pub first_irte: u16,
}

/// The machine-level VMX hardware: host-physical memory for the
/// structures the CPU and IOMMU read, posted interrupts, the IOMMU and the
/// devices assigned behind it.
pub trait VmxVm: Vm {
    /// Posts `vector` through the posted-interrupt descriptor at host-
    /// physical `descriptor`, as interrupt remapping in posted mode does for
    /// a device: now, or at `at_ns` of the backend's clock. The descriptor
    /// says which vCPU to notify, and with which vector.
    fn post_interrupt(&self, descriptor: u64, vector: u8, at_ns: Option<u64>) -> Result<()>;

    /// Allocates zeroed pages of host memory for structures the VMM builds
    /// for the hardware (EPT tables); returns their host-physical address.
    fn alloc_host_pages(&mut self, pages: usize) -> Result<u64>;

    /// Writes host-physical memory the VMM allocated.
    fn write_host(&self, hpa: u64, data: &[u8]) -> Result<()>;

    /// Reads host-physical memory the VMM allocated.
    fn read_host(&self, hpa: u64, data: &mut [u8]) -> Result<()>;

    /// Points the IOMMU at the VMM's tables in host memory: the root table
    /// (RTADDR_REG) and the interrupt-remapping table of `irt_entries`
    /// entries (IRTA_REG); DMA and interrupt remapping are on from then.
    /// Fails with [`crate::HvError::Unavailable`] on hardware without one.
    fn set_iommu(&mut self, root_table: u64, irt: u64, irt_entries: u32) -> Result<()>;

    /// Plugs `device` into the machine as physical hardware behind the
    /// IOMMU and returns the host-physical address of its registers: the
    /// VMM maps them into the guest, which then drives the device without
    /// exits. Its DMA is remapped as requester `source`, its interrupt
    /// message k through interrupt-remapping entry `first_irte + k`.
    fn assign_device(&mut self, device: Box<dyn Device>, assignment: Assignment) -> Result<u64>;

    /// The IOMMU's fault records since the last call, oldest first.
    fn take_iommu_faults(&self) -> Vec<iommu::Fault>;
}

/// Bytes of the x87/SSE XSAVE area [`VmxVcpu::xsave_area`] exchanges: the
/// legacy region and the header.
pub const XSAVE_AREA: usize = 576;

/// The vCPU-level VMX hardware: the VMCS's controls and exit information,
/// the guest state the VMM edits while it emulates, event injection, and
/// the translation structures (shadow page table, EPT, PML) the VMM
/// maintains.
pub trait VmxVcpu: Vcpu {
    /// Loads the VM-execution controls.
    fn set_controls(&mut self, controls: &Controls) -> Result<()>;

    /// Details of the last exit.
    fn exit_info(&self) -> ExitInfo;

    /// Advances RIP past the instruction that exited.
    fn skip_instruction(&mut self) -> Result<()>;

    /// A guest control register (CR0, CR2, CR3, CR4, CR8).
    fn read_cr(&mut self, n: u8) -> Result<u64>;

    /// Guest segment register `sreg` (0 = ES, 1 = CS, 2 = SS, 3 = DS, 4 =
    /// FS, 5 = GS: the Sreg encoding) with its hidden part, from the
    /// guest-state area (SDM Vol. 3C 25.4.1): what the VMM's emulator
    /// needs to decode and address in the guest's mode.
    fn segment(&mut self, sreg: u8) -> Result<exitlab_arch::Segment>;

    /// Loads guest segment register `sreg` (selector and hidden part, which
    /// the VMM's emulator has checked against its descriptor) into the
    /// guest-state area: a far JMP through MMIO, MOV SS from MMIO.
    fn set_segment(&mut self, sreg: u8, s: exitlab_arch::Segment) -> Result<()>;

    /// The guest's TR (`tr`) or LDTR with its hidden part (SDM Vol. 3C
    /// 25.4.1), for the emulator's LTR and LLDT.
    fn system_segment(&mut self, tr: bool) -> Result<exitlab_arch::Segment>;

    /// Loads TR (`tr`) or LDTR.
    fn set_system_segment(&mut self, tr: bool, s: exitlab_arch::Segment) -> Result<()>;

    /// The guest's GDTR, or IDTR with `idt` (SDM Vol. 3C 25.4.3): where the
    /// emulator reads the descriptors a segment load names.
    fn descriptor_table(&mut self, idt: bool) -> Result<exitlab_arch::DescriptorTable>;

    /// Writes a guest control register (CR0, CR2, CR3, CR4, CR8).
    fn write_cr(&mut self, n: u8, value: u64) -> Result<()>;

    /// The guest's x87, MMX and SSE state as an XSAVE area (SDM Vol. 1
    /// 13.4): the 512-byte legacy region in the 64-bit (FXSAVE64) layout
    /// and the 64-byte header, XSTATE_BV holding XINUSE, in the standard
    /// form (the first 576 bytes of what KVM_GET_XSAVE returns), for the
    /// VMM emulating an instruction that touches it.
    fn xsave_area(&mut self) -> Result<[u8; XSAVE_AREA]>;

    /// Loads the guest's x87, MMX and SSE state from an area of
    /// [`VmxVcpu::xsave_area`]'s form (a component whose XSTATE_BV bit is
    /// clear is in its initial configuration).
    fn set_xsave_area(&mut self, area: &[u8; XSAVE_AREA]) -> Result<()>;

    /// The guest PML index: the next log entry to fill (511 down to 0; any
    /// larger value means full).
    fn pml_index(&mut self) -> Result<u16>;

    /// Sets the guest PML index (511 after a harvest).
    fn set_pml_index(&mut self, index: u16) -> Result<()>;

    /// Reads a register of the vCPU's local APIC (for the VMM emulating an
    /// APIC_ACCESS).
    fn apic_read(&mut self, offset: u16) -> Result<u32>;

    /// Writes a register of the vCPU's local APIC.
    fn apic_write(&mut self, offset: u16, value: u32) -> Result<()>;

    /// The vector the vCPU's local APIC presents to the core now: the
    /// highest requested (IRR) whose priority class is above the
    /// processor priority (SDM Vol. 3A 11.8.3.1), if any.
    fn apic_interrupt(&mut self) -> Result<Option<u8>>;

    /// The interrupt acknowledge for `vector` (IRR to ISR, SDM Vol. 3A
    /// 11.8.4), for a VMM that injects the APIC's interrupts itself when
    /// the guest can take them, as KVM's `kvm_cpu_get_interrupt` does.
    fn apic_acknowledge(&mut self, vector: u8) -> Result<()>;

    /// Queues an event for delivery at the next entry, in place of any
    /// queued before.
    fn inject(&mut self, event: Injection) -> Result<()>;

    /// The event queued for the next entry, if any (the VM-entry
    /// interruption-information field's valid bit).
    fn injection(&self) -> Option<Injection>;

    /// What holds events off at the next instruction boundary.
    fn interruptibility(&mut self) -> Result<Interruptibility>;

    /// Sets the guest interruptibility state (SDM 25.4.2), as an
    /// instruction the VMM emulated leaves it (MOV SS: blocking by MOV SS).
    fn set_interruptibility(&mut self, state: Interruptibility) -> Result<()>;

    /// Sets the pending debug exceptions field (SDM 25.4.2; DR6's layout:
    /// BS for a single step that blocking by MOV SS holds for one more
    /// instruction).
    fn set_pending_debug(&mut self, dr6: u64) -> Result<()>;

    /// The guest's CS (its DPL is the CPL; L says 64-bit code).
    fn code_segment(&mut self) -> Result<exitlab_arch::Segment>;

    /// Maps linear page `linear` to physical page `physical` in the shadow
    /// page table the MMU uses while EPT is off.
    fn shadow_map(&mut self, linear: u64, physical: u64, flags: ShadowFlags) -> Result<()>;

    /// Drops one shadow translation (`Some`) or all of them (`None`).
    fn shadow_unmap(&mut self, linear: Option<u64>) -> Result<()>;

    /// Drops every cached guest-physical translation after the VMM changed
    /// the EPT tables (INVEPT, all contexts).
    fn invept(&mut self) -> Result<()>;
}

//! Architectural bit positions: RFLAGS, CR0, CR4, EFER, DR6, page-table
//! entries (4-level paging) and EPT entries (Intel SDM Vol. 3A ch. 2 and 4,
//! Vol. 3C ch. 29). Plain constants so they read like the manual.

/// RFLAGS (SDM Vol. 1, 3.4.3).
pub mod rflags {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Bit 1 always reads as 1.
    pub const FIXED: u64 = 1 << 1;
    /// Parity flag.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag.
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Trap flag: single-step.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable flag.
    pub const IF: u64 = 1 << 9;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// Position of the I/O privilege level field.
    pub const IOPL_SHIFT: u32 = 12;
    /// I/O privilege level, bits 13:12.
    pub const IOPL: u64 = 3 << IOPL_SHIFT;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume flag: suppresses instruction breakpoints for one instruction.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check / access control.
    pub const AC: u64 = 1 << 18;
    /// Virtual interrupt flag.
    pub const VIF: u64 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u64 = 1 << 20;
    /// CPUID available (writable).
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// CR0 (SDM Vol. 3A, 2.5).
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// x87 emulation.
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (reads as 1).
    pub const ET: u64 = 1 << 4;
    /// Numeric error: native x87 error reporting.
    pub const NE: u64 = 1 << 5;
    /// Write protect: supervisor writes honour read-only pages.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 (SDM Vol. 3A, 2.5).
pub mod cr4 {
    /// Virtual-8086 mode extensions.
    pub const VME: u64 = 1 << 0;
    /// Protected-mode virtual interrupts.
    pub const PVI: u64 = 1 << 1;
    /// Time stamp disable: RDTSC only in ring 0.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// Page size extensions.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Machine-check enable.
    pub const MCE: u64 = 1 << 6;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// Performance-monitoring counter enable.
    pub const PCE: u64 = 1 << 8;
    /// OS supports FXSAVE/FXRSTOR.
    pub const OSFXSR: u64 = 1 << 9;
    /// OS supports unmasked SIMD floating-point exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// User-mode instruction prevention.
    pub const UMIP: u64 = 1 << 11;
    /// 57-bit linear addresses (5-level paging).
    pub const LA57: u64 = 1 << 12;
    /// VMX enable.
    pub const VMXE: u64 = 1 << 13;
    /// SMX enable.
    pub const SMXE: u64 = 1 << 14;
    /// RDFSBASE and friends enabled.
    pub const FSGSBASE: u64 = 1 << 16;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// XSAVE and processor extended states enabled.
    pub const OSXSAVE: u64 = 1 << 18;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
    /// Protection keys for user-mode pages.
    pub const PKE: u64 = 1 << 22;
}

/// IA32_EFER (MSR 0xC000_0080).
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// IA-32e (long) mode enable.
    pub const LME: u64 = 1 << 8;
    /// IA-32e mode active.
    pub const LMA: u64 = 1 << 10;
    /// Execute-disable bit enable.
    pub const NXE: u64 = 1 << 11;
}

/// DR6 (SDM Vol. 3B, 18.2.3).
pub mod dr6 {
    /// Breakpoint condition 0 detected.
    pub const B0: u64 = 1 << 0;
    /// Breakpoint condition 1 detected.
    pub const B1: u64 = 1 << 1;
    /// Breakpoint condition 2 detected.
    pub const B2: u64 = 1 << 2;
    /// Breakpoint condition 3 detected.
    pub const B3: u64 = 1 << 3;
    /// Debug-register access detected.
    pub const BD: u64 = 1 << 13;
    /// Single step (RFLAGS.TF).
    pub const BS: u64 = 1 << 14;
    /// Task switch.
    pub const BT: u64 = 1 << 15;
    /// Cleared (active low) for #DB inside an RTM region.
    pub const RTM: u64 = 1 << 16;
    /// The value DR6 holds with no debug condition reported.
    pub const INIT: u64 = 0xffff_0ff0;
}

/// Model-specific registers exitlab's guests touch.
pub mod msr {
    /// Local APIC base address and enable.
    pub const IA32_APIC_BASE: u32 = 0x1b;
    /// The time-stamp counter.
    pub const IA32_TSC: u32 = 0x10;
    /// SYSENTER code segment.
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    /// SYSENTER's stack pointer.
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    /// SYSENTER's instruction pointer.
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    /// TSC-deadline timer target.
    pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
    /// Extended feature enables (see [`super::efer`]).
    pub const IA32_EFER: u32 = 0xc000_0080;
    /// SYSCALL segments.
    pub const IA32_STAR: u32 = 0xc000_0081;
    /// SYSCALL target RIP in 64-bit mode.
    pub const IA32_LSTAR: u32 = 0xc000_0082;
    /// SYSCALL target RIP from compatibility mode.
    pub const IA32_CSTAR: u32 = 0xc000_0083;
    /// SYSCALL RFLAGS mask.
    pub const IA32_FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    /// The GS base SWAPGS swaps in.
    pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// 4-level paging entries (SDM Vol. 3A, 4.5).
pub mod pte {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Read/write.
    pub const RW: u64 = 1 << 1;
    /// User/supervisor.
    pub const US: u64 = 1 << 2;
    /// Page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (leaf entries).
    pub const D: u64 = 1 << 6;
    /// Page size: a 1 GiB (PDPTE) or 2 MiB (PDE) leaf.
    pub const PS: u64 = 1 << 7;
    /// Global (leaf entries, with CR4.PGE).
    pub const G: u64 = 1 << 8;
    /// Execute disable (with EFER.NXE).
    pub const NX: u64 = 1 << 63;
    /// Bits 51:12: the physical address of the next table or 4 KiB page.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// #PF error code bits (SDM Vol. 3A, 4.7).
pub mod pf_error {
    /// The fault was a protection violation (else a not-present page).
    pub const P: u64 = 1 << 0;
    /// The access was a write.
    pub const W: u64 = 1 << 1;
    /// The access was from ring 3.
    pub const U: u64 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const I: u64 = 1 << 4;
}

/// EPT paging-structure entries (SDM Vol. 3C, 29.3.2).
pub mod ept {
    /// Read access.
    pub const R: u64 = 1 << 0;
    /// Write access.
    pub const W: u64 = 1 << 1;
    /// Execute access (supervisor, with mode-based control).
    pub const X: u64 = 1 << 2;
    /// Position of the EPT memory type, bits 5:3 of a leaf.
    pub const MEMTYPE_SHIFT: u32 = 3;
    /// Memory type write-back (6).
    pub const MEMTYPE_WB: u64 = 6 << MEMTYPE_SHIFT;
    /// Ignore the guest PAT memory type.
    pub const IGNORE_PAT: u64 = 1 << 6;
    /// A 2 MiB or 1 GiB leaf.
    pub const LARGE: u64 = 1 << 7;
    /// Accessed (with EPTP A/D enabled).
    pub const A: u64 = 1 << 8;
    /// Dirty (leaf entries, with EPTP A/D enabled).
    pub const D: u64 = 1 << 9;
    /// User-mode execute access (mode-based execute control).
    pub const USER_X: u64 = 1 << 10;
    /// Bits 51:12: the physical address of the next table or page.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Local APIC register offsets from the xAPIC base (SDM Vol. 3A, table 11-1).
pub mod apic {
    /// The xAPIC page's architectural default base.
    pub const DEFAULT_BASE: u64 = 0xfee0_0000;
    /// Local APIC ID.
    pub const ID: u64 = 0x20;
    /// Local APIC version.
    pub const VERSION: u64 = 0x30;
    /// Task priority register.
    pub const TPR: u64 = 0x80;
    /// End of interrupt.
    pub const EOI: u64 = 0xb0;
    /// Spurious-interrupt vector register.
    pub const SVR: u64 = 0xf0;
    /// In-service register, bits 31:0 (eight registers, 0x10 apart).
    pub const ISR0: u64 = 0x100;
    /// Interrupt request register, bits 31:0 (eight registers, 0x10 apart).
    pub const IRR0: u64 = 0x200;
    /// Interrupt command register, bits 31:0 (a write sends the IPI).
    pub const ICR_LOW: u64 = 0x300;
    /// Interrupt command register, bits 63:32 (destination).
    pub const ICR_HIGH: u64 = 0x310;
    /// LVT timer register: vector, mask, mode.
    pub const LVT_TIMER: u64 = 0x320;
    /// Timer initial count.
    pub const TIMER_INITIAL_COUNT: u64 = 0x380;
    /// Timer current count.
    pub const TIMER_CURRENT_COUNT: u64 = 0x390;
    /// Timer divide configuration.
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    /// SVR bit 8: APIC software enable.
    pub const SVR_ENABLE: u32 = 1 << 8;
    /// LVT timer modes, bits 18:17.
    pub const TIMER_ONE_SHOT: u32 = 0;
    /// LVT timer mode: periodic.
    pub const TIMER_PERIODIC: u32 = 1 << 17;
    /// LVT timer mode: TSC deadline.
    pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;
    /// Divide configuration value for divide-by-1.
    pub const DIVIDE_BY_1: u32 = 0b1011;
    /// An MSI's address: 0xFEEx_xxxx with the destination APIC ID in 19:12.
    pub const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;
}

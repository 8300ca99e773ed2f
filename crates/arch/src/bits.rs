//! Architectural bit positions: RFLAGS, CR0, CR4, EFER, DR6, page-table
//! entries (4-level paging) and EPT entries (Intel SDM Vol. 3A ch. 2 and 4,
//! Vol. 3C ch. 29). Plain constants so they read like the manual.

/// RFLAGS (SDM Vol. 1, 3.4.3).
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    /// Bit 1 always reads as 1.
    pub const FIXED: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL_SHIFT: u32 = 12;
    pub const IOPL: u64 = 3 << IOPL_SHIFT;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// CR0 (SDM Vol. 3A, 2.5).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// CR4 (SDM Vol. 3A, 2.5).
pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const LA57: u64 = 1 << 12;
    pub const VMXE: u64 = 1 << 13;
    pub const SMXE: u64 = 1 << 14;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    pub const PKE: u64 = 1 << 22;
}

/// IA32_EFER (MSR 0xC000_0080).
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

/// DR6 (SDM Vol. 3B, 18.2.3).
pub mod dr6 {
    pub const B0: u64 = 1 << 0;
    pub const B1: u64 = 1 << 1;
    pub const B2: u64 = 1 << 2;
    pub const B3: u64 = 1 << 3;
    pub const BD: u64 = 1 << 13;
    /// Single step (RFLAGS.TF).
    pub const BS: u64 = 1 << 14;
    pub const BT: u64 = 1 << 15;
    /// Cleared (active low) for #DB inside an RTM region.
    pub const RTM: u64 = 1 << 16;
    /// The value DR6 holds with no debug condition reported.
    pub const INIT: u64 = 0xffff_0ff0;
}

/// Model-specific registers exitlab's guests touch.
pub mod msr {
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_STAR: u32 = 0xc000_0081;
    pub const IA32_LSTAR: u32 = 0xc000_0082;
    pub const IA32_FMASK: u32 = 0xc000_0084;
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// 4-level paging entries (SDM Vol. 3A, 4.5).
pub mod pte {
    pub const P: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    /// Page size: a 1 GiB (PDPTE) or 2 MiB (PDE) leaf.
    pub const PS: u64 = 1 << 7;
    pub const G: u64 = 1 << 8;
    pub const NX: u64 = 1 << 63;
    /// Bits 51:12: the physical address of the next table or 4 KiB page.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// #PF error code bits (SDM Vol. 3A, 4.7).
pub mod pf_error {
    pub const P: u64 = 1 << 0;
    pub const W: u64 = 1 << 1;
    pub const U: u64 = 1 << 2;
    pub const RSVD: u64 = 1 << 3;
    pub const I: u64 = 1 << 4;
}

/// EPT paging-structure entries (SDM Vol. 3C, 29.3.2).
pub mod ept {
    pub const R: u64 = 1 << 0;
    pub const W: u64 = 1 << 1;
    pub const X: u64 = 1 << 2;
    pub const MEMTYPE_SHIFT: u32 = 3;
    pub const MEMTYPE_WB: u64 = 6 << MEMTYPE_SHIFT;
    pub const IGNORE_PAT: u64 = 1 << 6;
    pub const LARGE: u64 = 1 << 7;
    pub const A: u64 = 1 << 8;
    pub const D: u64 = 1 << 9;
    pub const USER_X: u64 = 1 << 10;
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Local APIC register offsets from the xAPIC base (SDM Vol. 3A, table 11-1).
pub mod apic {
    pub const DEFAULT_BASE: u64 = 0xfee0_0000;
    pub const ID: u64 = 0x20;
    pub const VERSION: u64 = 0x30;
    pub const TPR: u64 = 0x80;
    pub const EOI: u64 = 0xb0;
    pub const SVR: u64 = 0xf0;
    pub const ISR0: u64 = 0x100;
    pub const IRR0: u64 = 0x200;
    pub const ICR_LOW: u64 = 0x300;
    pub const ICR_HIGH: u64 = 0x310;
    pub const LVT_TIMER: u64 = 0x320;
    pub const TIMER_INITIAL_COUNT: u64 = 0x380;
    pub const TIMER_CURRENT_COUNT: u64 = 0x390;
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    /// SVR bit 8: APIC software enable.
    pub const SVR_ENABLE: u32 = 1 << 8;
    /// LVT timer modes, bits 18:17.
    pub const TIMER_ONE_SHOT: u32 = 0;
    pub const TIMER_PERIODIC: u32 = 1 << 17;
    pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;
    /// Divide configuration value for divide-by-1.
    pub const DIVIDE_BY_1: u32 = 0b1011;
    /// An MSI's address: 0xFEEx_xxxx with the destination APIC ID in 19:12.
    pub const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;
}

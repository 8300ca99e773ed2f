//! The architectural state a vCPU starts from: general registers, segment
//! registers, descriptor tables and control registers. Backends load it
//! as they can (KVM: KVM_SET_REGS / KVM_SET_SREGS).

use serde::{Deserialize, Serialize};

/// General-purpose registers, RIP and RFLAGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regs {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8 .. R15: the order of the
    /// ModRM register encoding (and of CR-access qualification bits 11:8).
    pub gpr: [u64; 16],
    /// The instruction pointer.
    pub rip: u64,
    /// RFLAGS (see [`crate::bits::rflags`]).
    pub rflags: u64,
}

impl Regs {
    /// Index of RAX in [`Regs::gpr`].
    pub const RAX: usize = 0;
    /// Index of RCX.
    pub const RCX: usize = 1;
    /// Index of RDX.
    pub const RDX: usize = 2;
    /// Index of RBX.
    pub const RBX: usize = 3;
    /// Index of RSP.
    pub const RSP: usize = 4;
    /// Index of RBP.
    pub const RBP: usize = 5;
    /// Index of RSI.
    pub const RSI: usize = 6;
    /// Index of RDI.
    pub const RDI: usize = 7;

    /// Register names in encoding order.
    pub const NAMES: [&'static str; 16] =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
}

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit in bytes (with G, the byte limit before scaling).
    pub limit: u32,
    /// Descriptor type field (bits 43:40 of the descriptor).
    pub type_: u8,
    /// S: code/data (1) or system (0).
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// P: present (an absent segment is unusable).
    pub present: bool,
    /// AVL: available to software.
    pub avl: bool,
    /// L: 64-bit code segment.
    pub l: bool,
    /// D/B: default operation size.
    pub db: bool,
    /// G: limit in 4 KiB units.
    pub g: bool,
}

impl Segment {
    /// The 8-byte GDT descriptor for a code or data segment (base < 4 GiB).
    pub fn descriptor(&self) -> u64 {
        let limit = if self.g { self.limit >> 12 } else { self.limit };
        let base = self.base as u32;
        u64::from(limit & 0xffff)
            | u64::from(base & 0xff_ffff) << 16
            | u64::from(self.type_ & 0xf) << 40
            | u64::from(self.s) << 44
            | u64::from(self.dpl & 3) << 45
            | u64::from(self.present) << 47
            | u64::from((limit >> 16) & 0xf) << 48
            | u64::from(self.avl) << 52
            | u64::from(self.l) << 53
            | u64::from(self.db) << 54
            | u64::from(self.g) << 55
            | u64::from(base >> 24) << 56
    }
}

impl Segment {
    /// A flat (base 0, 4 GiB) ring-0 code segment, execute/read,
    /// accessed: 64-bit (L) when `long`, else 32-bit (D).
    pub fn flat_code(selector: u16, long: bool) -> Segment {
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            type_: 0xb,
            s: true,
            dpl: 0,
            present: true,
            avl: false,
            l: long,
            db: !long,
            g: true,
        }
    }

    /// A flat (base 0, 4 GiB) ring-0 data segment, read/write, accessed.
    pub fn flat_data(selector: u16) -> Segment {
        Segment { type_: 0x3, l: false, db: true, ..Segment::flat_code(selector, false) }
    }

    /// A real-mode segment as the CPU leaves it after loading `selector`:
    /// base selector * 16, 64 KiB limit, 16-bit (SDM Vol. 3A, 20.1.1);
    /// execute/read when `code`, read/write otherwise.
    pub fn real_mode(selector: u16, code: bool) -> Segment {
        Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            type_: if code { 0xb } else { 0x3 },
            s: true,
            dpl: 0,
            present: true,
            avl: false,
            l: false,
            db: false,
            g: false,
        }
    }

    /// A busy TSS (type 11: a 64-bit TSS in IA-32e mode, a 32-bit one
    /// otherwise), which VM entry requires of TR (SDM Vol. 3C, 26.3.1.2).
    pub fn busy_tss(selector: u16, base: u64, limit: u32) -> Segment {
        Segment { selector, base, limit, type_: 0xb, s: false, present: true, ..Default::default() }
    }

    /// An LDTR with no table: selector 0, the usable-LDT type (2) VM
    /// entry accepts (SDM Vol. 3C, 26.3.1.2).
    pub fn no_ldt() -> Segment {
        Segment { type_: 0x2, present: true, limit: 0xffff, ..Default::default() }
    }
}

/// The operating mode a [`BootState`] starts the vCPU in (SDM Vol. 3A,
/// 2.2: CR0.PE, EFER.LMA and CS.L decide it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuMode {
    /// CR0.PE clear: 16-bit real-address mode.
    Real,
    /// CR0.PE set without EFER.LMA: protected mode, 32-bit code when
    /// CS.D is set.
    Protected,
    /// EFER.LMA and CS.L: 64-bit mode.
    Long,
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorTable {
    /// Base address.
    pub base: u64,
    /// Limit: the table's size in bytes, minus one.
    pub limit: u16,
}

/// Everything a vCPU needs to start executing a guest image in long mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// General registers, RIP and RFLAGS.
    pub regs: Regs,
    /// Code segment.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// Task register (the 64-bit TSS).
    pub tr: Segment,
    /// Local descriptor table register.
    pub ldt: Segment,
    /// GDTR.
    pub gdt: DescriptorTable,
    /// IDTR.
    pub idt: DescriptorTable,
    /// CR0 (see [`crate::bits::cr0`]).
    pub cr0: u64,
    /// CR3: the top-level page table.
    pub cr3: u64,
    /// CR4 (see [`crate::bits::cr4`]).
    pub cr4: u64,
    /// IA32_EFER (see [`crate::bits::efer`]).
    pub efer: u64,
}

impl BootState {
    /// The mode the vCPU starts in. An EFER.LMA start with a CS that is
    /// not 64-bit is compatibility mode, which no loader produces; it is
    /// reported as `Protected`.
    pub fn mode(&self) -> CpuMode {
        use crate::bits::{cr0, efer};
        if self.cr0 & cr0::PE == 0 {
            CpuMode::Real
        } else if self.efer & efer::LMA != 0 && self.cs.l {
            CpuMode::Long
        } else {
            CpuMode::Protected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_64bit_code_descriptor() {
        // The classic long-mode kernel code descriptor 0x00af9b000000ffff.
        let cs = Segment {
            selector: 8,
            limit: 0xffff_ffff,
            type_: 0xb,
            s: true,
            present: true,
            l: true,
            g: true,
            ..Default::default()
        };
        assert_eq!(cs.descriptor(), 0x00af_9b00_0000_ffff);
        // Flat data: 0x00cf93000000ffff.
        let ds = Segment { type_: 0x3, db: true, l: false, ..cs };
        assert_eq!(ds.descriptor(), 0x00cf_9300_0000_ffff);
        assert_eq!(Segment::flat_code(8, true), cs);
        assert_eq!(Segment::flat_data(8), ds);
        // The flat 32-bit code descriptor every multiboot loader uses.
        assert_eq!(Segment::flat_code(8, false).descriptor(), 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn real_mode_segment_base_is_selector_times_16() {
        let cs = Segment::real_mode(0xf000, true);
        assert_eq!((cs.base, cs.limit, cs.db, cs.type_), (0xf_0000, 0xffff, false, 0xb));
    }

    #[test]
    fn mode_follows_cr0_pe_efer_lma_and_cs_l() {
        use crate::bits::{cr0, efer};
        let mut b = BootState { cs: Segment::real_mode(0, true), ..Default::default() };
        assert_eq!(b.mode(), CpuMode::Real);
        b.cr0 = cr0::PE;
        b.cs = Segment::flat_code(0x10, false);
        assert_eq!(b.mode(), CpuMode::Protected);
        b.cr0 |= cr0::PG;
        b.efer = efer::LME | efer::LMA;
        assert_eq!(b.mode(), CpuMode::Protected, "compatibility mode");
        b.cs = Segment::flat_code(0x10, true);
        assert_eq!(b.mode(), CpuMode::Long);
    }
}

//! The boot layout: the memory contents and register state of a vCPU that
//! starts directly in 64-bit long mode with paging, as Firecracker starts a
//! Linux kernel. The page tables are ordinary guest memory: the guest owns
//! them and may edit them.

use crate::layout::*;
use exitlab_arch::bits::{cr0, cr4, efer, pte, rflags};
use exitlab_arch::{BootState, DescriptorTable, Regs, Segment};

/// A piece of guest memory to write before the first instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub gpa: u64,
    pub bytes: Vec<u8>,
}

/// Memory and register state for a long-mode start at `entry`.
#[derive(Clone, Debug)]
pub struct BootLayout {
    pub chunks: Vec<Chunk>,
    pub state: BootState,
}

fn code_segment(selector: u16, dpl: u8) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        type_: 0xb, // execute/read, accessed
        s: true,
        dpl,
        present: true,
        avl: false,
        l: true,
        db: false,
        g: true,
    }
}

fn data_segment(selector: u16, dpl: u8) -> Segment {
    Segment { type_: 0x3, l: false, db: true, ..code_segment(selector, dpl) } // read/write, accessed
}

fn tss_segment() -> Segment {
    Segment {
        selector: TSS_SELECTOR,
        base: TSS,
        limit: TSS_LIMIT,
        type_: 0xb, // 64-bit TSS, busy
        s: false,
        dpl: 0,
        present: true,
        avl: false,
        l: false,
        db: false,
        g: false,
    }
}

impl BootLayout {
    /// The layout for an image entered at `entry`.
    pub fn new(entry: u64) -> BootLayout {
        let cs = code_segment(KERNEL_CS, 0);
        let ds = data_segment(KERNEL_DS, 0);
        let tr = tss_segment();

        let mut gdt = Vec::with_capacity(56);
        for d in [
            0,
            cs.descriptor(),
            ds.descriptor(),
            data_segment(USER_DS, 3).descriptor(),
            code_segment(USER_CS, 3).descriptor(),
            tr.descriptor(),
            0, // bits 63:32 of the TSS base
        ] {
            gdt.extend_from_slice(&d.to_le_bytes());
        }

        // 64-bit TSS: RSP0 at offset 4, the I/O-map base at 0x66. Ring-3
        // code runs with IOPL 3, which alone allows port I/O; the all-zero
        // bitmap allows it too, for hosts that check the bitmap whatever the
        // IOPL (this host's KVM does: see docs/DESIGN.md, "Host findings").
        let mut tss = vec![0u8; TSS_LIMIT as usize + 1];
        tss[4..12].copy_from_slice(&KERNEL_STACK_TOP.to_le_bytes());
        tss[0x66..0x68].copy_from_slice(&(TSS_IO_BITMAP as u16).to_le_bytes());
        tss[TSS_LIMIT as usize] = 0xff;

        let table = pte::P | pte::RW | pte::US;
        let mut pml4 = vec![0u8; 4096];
        pml4[..8].copy_from_slice(&(PDPT | table).to_le_bytes());
        let mut pdpt = vec![0u8; 4096];
        let mut pds = vec![0u8; 4096 * PD_COUNT as usize];
        for i in 0..PD_COUNT {
            let e = (PD + i * 4096) | table;
            pdpt[i as usize * 8..][..8].copy_from_slice(&e.to_le_bytes());
        }
        for (i, e) in pds.chunks_exact_mut(8).enumerate() {
            let leaf = ((i as u64) << 21) | table | pte::PS;
            e.copy_from_slice(&leaf.to_le_bytes());
        }

        let mut regs = Regs { rip: entry, rflags: rflags::FIXED, ..Default::default() };
        regs.gpr[Regs::RSP] = KERNEL_STACK_TOP;

        let state = BootState {
            regs,
            cs,
            ds,
            es: ds,
            fs: ds,
            gs: ds,
            ss: ds,
            tr,
            ldt: Segment { type_: 0x2, present: true, limit: 0xffff, ..Default::default() },
            gdt: DescriptorTable { base: GDT, limit: gdt.len() as u16 - 1 },
            idt: DescriptorTable { base: 0, limit: 0 },
            cr0: cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG,
            cr3: PML4,
            // No OSFXSR: exitlab's guests use no SSE, and the simulated CPU
            // has none to enable (its CPUID advertises no FXSR or SSE).
            cr4: cr4::PAE,
            efer: efer::LME | efer::LMA | efer::SCE,
        };

        BootLayout {
            chunks: vec![
                Chunk { gpa: GDT, bytes: gdt },
                Chunk { gpa: TSS, bytes: tss },
                Chunk { gpa: PML4, bytes: pml4 },
                Chunk { gpa: PDPT, bytes: pdpt },
                Chunk { gpa: PD, bytes: pds },
            ],
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u64(chunks: &[Chunk], gpa: u64) -> u64 {
        let c = chunks.iter().find(|c| c.gpa <= gpa && gpa < c.gpa + c.bytes.len() as u64).unwrap();
        let off = (gpa - c.gpa) as usize;
        u64::from_le_bytes(c.bytes[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn identity_map_covers_low_4g_with_2m_pages() {
        let b = BootLayout::new(IMAGE_BASE);
        let pml4e = read_u64(&b.chunks, PML4);
        assert_eq!(pml4e & pte::ADDR_MASK, PDPT);
        // The local APIC page: PDPT index 3, PD index (0xfee00000 >> 21) & 511.
        let pdpte = read_u64(&b.chunks, PDPT + 3 * 8);
        let pd = pdpte & pte::ADDR_MASK;
        let pde = read_u64(&b.chunks, pd + ((0xfee0_0000u64 >> 21) & 511) * 8);
        assert_eq!(pde & pte::ADDR_MASK, 0xfee0_0000 & !0x1f_ffff);
        assert_ne!(pde & pte::PS, 0);
        assert_ne!(pde & pte::US, 0);
    }

    #[test]
    fn gdt_matches_the_boot_segments() {
        let b = BootLayout::new(IMAGE_BASE);
        assert_eq!(read_u64(&b.chunks, GDT + 8), b.state.cs.descriptor());
        assert_eq!(read_u64(&b.chunks, GDT + 0x10), b.state.ss.descriptor());
        assert_eq!(b.state.regs.rip, IMAGE_BASE);
        assert_eq!(b.state.efer & efer::LMA, efer::LMA);
    }
}

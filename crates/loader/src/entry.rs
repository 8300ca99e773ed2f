//! Entry states: the registers, segments and control registers a vCPU
//! starts with, and the GDT and page tables they need in guest memory.
//!
//! - real mode: CS:IP as a boot sector expects it;
//! - 32-bit protected mode: flat 4 GiB CS (32-bit) and DS/ES/FS/GS/SS,
//!   CR0.PE only, paging off, IF clear (the multiboot v1 machine state,
//!   multiboot specification 0.6.96 section 3.2);
//! - 64-bit mode: long mode with the low 4 GiB identity-mapped in 2 MiB
//!   pages, CS = `__BOOT_CS` and the data segments `__BOOT_DS`, IF clear
//!   (the Linux 64-bit boot protocol's state).

use crate::layout::{BOOT_CS, BOOT_DS, BOOT_TSS, GDT, PD, PDPT, PD_COUNT, PML4};
use crate::place::Placer;
use crate::LoadError;
use exitlab_arch::bits::{cr0, cr4, efer, pte, rflags};
use exitlab_arch::{BootState, DescriptorTable, Regs, Segment};

/// Real mode at `entry` (below 1 MiB): CS = entry's 64 KiB block, IP the
/// rest; `None` above 1 MiB.
pub fn real_mode(entry: u64) -> Option<BootState> {
    if entry >= 0x10_0000 {
        return None;
    }
    let cs = Segment::real_mode(((entry >> 4) & 0xf000) as u16, true);
    let ds = Segment::real_mode(0, false);
    Some(BootState {
        regs: Regs { rip: entry - cs.base, rflags: rflags::FIXED, ..Default::default() },
        cs,
        ds,
        es: ds,
        fs: ds,
        gs: ds,
        ss: ds,
        tr: Segment { type_: 0x3, ..Segment::busy_tss(0, 0, 0xffff) },
        ldt: Segment::no_ldt(),
        gdt: DescriptorTable::default(),
        idt: DescriptorTable { base: 0, limit: 0x3ff },
        cr0: cr0::ET,
        ..Default::default()
    })
}

/// 32-bit protected mode at `entry`, with the loader's GDT placed.
pub fn protected_mode(place: &mut Placer, entry: u64) -> Result<BootState, LoadError> {
    let cs = Segment::flat_code(BOOT_CS, false);
    let state = flat_state(place, cs, entry)?;
    Ok(BootState { cr0: cr0::PE | cr0::ET, ..state })
}

/// 64-bit mode at `entry`, with the loader's GDT and identity map placed.
pub fn long_mode(place: &mut Placer, entry: u64) -> Result<BootState, LoadError> {
    let cs = Segment::flat_code(BOOT_CS, true);
    let state = flat_state(place, cs, entry)?;
    place.data("page tables".into(), PML4, identity_map())?;
    Ok(BootState {
        cr0: cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG,
        cr3: PML4,
        cr4: cr4::PAE,
        efer: efer::LME | efer::LMA,
        ..state
    })
}

/// The state both flat modes share: `cs`, flat data segments, a busy TSS,
/// the GDT holding them.
fn flat_state(place: &mut Placer, cs: Segment, entry: u64) -> Result<BootState, LoadError> {
    let ds = Segment::flat_data(BOOT_DS);
    let tr = Segment::busy_tss(BOOT_TSS, 0, 0x67);
    let mut gdt = vec![0u8; usize::from(BOOT_TSS) + 16];
    for (selector, d) in [(BOOT_CS, cs.descriptor()), (BOOT_DS, ds.descriptor()), (BOOT_TSS, tr.descriptor())] {
        gdt[usize::from(selector)..][..8].copy_from_slice(&d.to_le_bytes());
    }
    let limit = gdt.len() as u16 - 1;
    place.data("GDT".into(), GDT, gdt)?;
    Ok(BootState {
        regs: Regs { rip: entry, rflags: rflags::FIXED, ..Default::default() },
        cs,
        ds,
        es: ds,
        fs: ds,
        gs: ds,
        ss: ds,
        tr,
        ldt: Segment::no_ldt(),
        gdt: DescriptorTable { base: GDT, limit },
        idt: DescriptorTable::default(),
        ..Default::default()
    })
}

/// PML4, PDPT and four page directories: the low 4 GiB 1:1 in 2 MiB
/// pages, writable, supervisor-only.
fn identity_map() -> Vec<u8> {
    let table = pte::P | pte::RW;
    let mut bytes = vec![0u8; 4096 * (2 + PD_COUNT as usize)];
    bytes[..8].copy_from_slice(&(PDPT | table).to_le_bytes());
    for i in 0..PD_COUNT {
        let at = (PDPT - PML4) as usize + i as usize * 8;
        bytes[at..at + 8].copy_from_slice(&((PD + i * 4096) | table).to_le_bytes());
    }
    let pds = (PD - PML4) as usize;
    for (i, e) in bytes[pds..].chunks_exact_mut(8).enumerate() {
        e.copy_from_slice(&(((i as u64) << 21) | table | pte::PS).to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use exitlab_arch::CpuMode;

    fn u64_at(bytes: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(bytes[at as usize..][..8].try_into().unwrap())
    }

    #[test]
    fn identity_map_translates_to_itself() {
        let m = identity_map();
        // Walk 0xfee00000 (the local APIC) by hand: PML4[0], PDPT[3], PD[0x1f7].
        let pdpt = u64_at(&m, 0) & pte::ADDR_MASK;
        assert_eq!(pdpt, PDPT);
        let pd = u64_at(&m, pdpt - PML4 + 3 * 8) & pte::ADDR_MASK;
        let pde = u64_at(&m, pd - PML4 + 0x1f7 * 8);
        assert_eq!(pde, 0xfee0_0000 & !0x1f_ffff | pte::P | pte::RW | pte::PS);
    }

    #[test]
    fn protected_mode_gdt_holds_the_segments_it_names() {
        let mut p = Placer::new(4 << 20);
        let s = protected_mode(&mut p, 0x10_0000).unwrap();
        let guest = p.finish(crate::Format::Flat, s.clone(), Default::default());
        let gdt = &guest.chunks[0];
        assert_eq!((gdt.what.as_str(), gdt.gpa), ("GDT", GDT));
        assert_eq!(u64_at(&gdt.bytes, u64::from(BOOT_CS)), 0x00cf_9b00_0000_ffff);
        assert_eq!(u64_at(&gdt.bytes, u64::from(BOOT_DS)), 0x00cf_9300_0000_ffff);
        assert_eq!(u64_at(&gdt.bytes, u64::from(BOOT_TSS)), s.tr.descriptor());
        assert_eq!(s.gdt.limit as usize + 1, gdt.bytes.len());
        assert_eq!((s.mode(), s.cr0, s.regs.rflags & rflags::IF), (CpuMode::Protected, 0x11, 0));
    }

    #[test]
    fn long_mode_uses_linux_boot_selectors() {
        let mut p = Placer::new(4 << 20);
        let s = long_mode(&mut p, 0x10_0200).unwrap();
        assert_eq!((s.cs.selector, s.ds.selector, s.ss.selector), (0x10, 0x18, 0x18));
        assert_eq!((s.mode(), s.cr3, s.regs.rip), (CpuMode::Long, PML4, 0x10_0200));
    }
}

//! The PVH boot ABI (Xen's docs/misc/pvh.pandoc, "x86/HVM direct boot
//! ABI"; xen/include/public/arch-x86/hvm/start_info.h), as Firecracker and
//! Cloud Hypervisor boot an uncompressed Linux: an ELF whose
//! XEN_ELFNOTE_PHYS32_ENTRY note (type 18, owner "Xen") gives a 32-bit
//! physical entry point. Its PT_LOAD segments go to their physical
//! addresses; the vCPU starts there in 32-bit protected mode without
//! paging (flat CS and DS/ES/SS, CR0.PE, IF clear) with EBX = the
//! physical address of an `hvm_start_info` that names the command line,
//! the modules (the initrd is module 0, as Linux's
//! arch/x86/platform/pvh/enlighten.c takes it), the memory map
//! (version 1's `memmap_paddr`, E820 types) and the RSDP.
//!
//! The structures are linux-loader's bindings of start_info.h. Its
//! `Elf::load` and `PvhBootConfigurator` are not used: they write into
//! guest memory, where this crate returns chunks, and the note parser
//! stops at the first note it cannot read without saying which; the
//! crate's ELF loader is this test suite's second opinion on the entry.
//!
//! Low memory as Firecracker's x86_64 layout has it: start_info at
//! 0x6000, the module list at 0x6040, the memory map at 0x7000, the
//! command line at 0x20000; the initrd page-aligned at the top of RAM.

use crate::bzimage::place_initrd;
use crate::elf::{self, Parsed};
use crate::layout::{memory_map, LINUX_CMDLINE};
use crate::place::Placer;
use crate::{entry, Format, LoadError, LoadedGuest, Options};
use exitlab_arch::Regs;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::ByteValued;

/// The note type that carries the 32-bit entry (xen/include/public/elfnote.h).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `hvm_start_info.magic` (start_info.h).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Version 1 adds `memmap_paddr` and `memmap_entries`.
const START_INFO_VERSION: u32 = 1;
/// Where the loader puts `hvm_start_info`, the module list and the map.
pub const START_INFO: u64 = 0x6000;
pub const MODLIST: u64 = 0x6040;
pub const MEMMAP: u64 = 0x7000;
/// Linux's COMMAND_LINE_SIZE on x86 (arch/x86/include/asm/setup.h) less
/// the terminating NUL: the kernel copies no more.
const CMDLINE_MAX: u64 = 2047;
const NOTE_OWNER: &[u8] = b"Xen\0";

fn bad(field: &'static str, value: u64, why: &'static str) -> LoadError {
    LoadError::BadField { format: Format::Pvh, field, value, why }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The physical entry the first XEN_ELFNOTE_PHYS32_ENTRY note in
/// `parsed`'s PT_NOTE segments gives, or `None` without one. A note that
/// runs past its segment, or a PVH note whose descriptor is not a 4- or
/// 8-byte address below 4 GiB, is an error.
pub fn phys32_entry(image: &[u8], parsed: &Parsed) -> Result<Option<u64>, LoadError> {
    for seg in &parsed.notes {
        // elf::parse checked that the segment lies in the file.
        let notes = &image[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        let align = if seg.align == 8 { 8 } else { 4 };
        let mut at = 0u64;
        let len = notes.len() as u64;
        while at < len {
            if len - at < 12 {
                return Err(bad("ELF note header", seg.offset + at, "runs past the end of its PT_NOTE segment"));
            }
            let h = &notes[at as usize..];
            let (namesz, descsz, ty) = (u64::from(u32_at(h, 0)), u64::from(u32_at(h, 4)), u32_at(h, 8));
            let desc_at = at + 12 + namesz.next_multiple_of(align);
            if desc_at.saturating_add(descsz) > len {
                return Err(bad("ELF note n_descsz", descsz, "the note runs past the end of its PT_NOTE segment"));
            }
            let name = &notes[(at + 12) as usize..(at + 12 + namesz) as usize];
            if ty == XEN_ELFNOTE_PHYS32_ENTRY && name == NOTE_OWNER {
                let desc = &notes[desc_at as usize..(desc_at + descsz) as usize];
                let entry = match *desc {
                    [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
                    [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
                    _ => return Err(bad("XEN_ELFNOTE_PHYS32_ENTRY n_descsz", descsz, "not a 4- or 8-byte address")),
                };
                if entry > u64::from(u32::MAX) {
                    return Err(bad("XEN_ELFNOTE_PHYS32_ENTRY", entry, "a 32-bit entry must lie below 4 GiB"));
                }
                return Ok(Some(entry));
            }
            at = (desc_at + descsz).next_multiple_of(align);
        }
    }
    Ok(None)
}

/// Whether `image` is an ELF with a PVH entry note (for detection: an ELF
/// that does not parse is not).
pub fn has_entry_note(image: &[u8]) -> bool {
    elf::parse(image, Format::Pvh).is_ok_and(|p| matches!(phys32_entry(image, &p), Ok(Some(_))))
}

/// Loads the ELF `vmlinux` through its PVH entry with `options`' memory,
/// command line, initrd and RSDP.
pub fn load(vmlinux: &[u8], options: &Options) -> Result<LoadedGuest, LoadError> {
    let parsed = elf::parse(vmlinux, Format::Pvh)?;
    let entry = phys32_entry(vmlinux, &parsed)?
        .ok_or_else(|| bad("PT_NOTE", parsed.notes.len() as u64, "no XEN_ELFNOTE_PHYS32_ENTRY note"))?;
    let mut place = Placer::new(options.memory);
    elf::place_segments(&parsed, vmlinux, &mut place)?;
    place.entry(entry)?;

    let cmdline = options.cmdline.as_bytes();
    if cmdline.len() as u64 > CMDLINE_MAX {
        return Err(LoadError::CmdlineTooLong { len: cmdline.len() as u64, max: CMDLINE_MAX });
    }
    place.data("kernel command line".into(), LINUX_CMDLINE, [cmdline, b"\0"].concat())?;
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        cmdline_paddr: LINUX_CMDLINE,
        rsdp_paddr: options.rsdp.unwrap_or(0),
        ..Default::default()
    };
    if let Some(initrd) = &options.initrd {
        let paddr = place_initrd(&mut place, initrd, u32::MAX)?;
        let module = hvm_modlist_entry { paddr, size: initrd.len() as u64, ..Default::default() };
        place.data("PVH module list".into(), MODLIST, module.as_slice().to_vec())?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST;
    }
    let map = memory_map(options.memory);
    let table: Vec<u8> = map
        .iter()
        .flat_map(|&(addr, size, ty)| {
            hvm_memmap_table_entry { addr, size, type_: ty as u32, reserved: 0 }.as_slice().to_vec()
        })
        .collect();
    place.data("PVH memory map".into(), MEMMAP, table)?;
    info.memmap_paddr = MEMMAP;
    info.memmap_entries = map.len() as u32;
    place.data("hvm_start_info".into(), START_INFO, info.as_slice().to_vec())?;

    let mut boot = entry::protected_mode(&mut place, entry)?;
    boot.regs.gpr[Regs::RBX] = START_INFO;
    Ok(place.finish(Format::Pvh, boot, parsed.symbols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage::{self, Elf, Note};
    use exitlab_arch::CpuMode;

    fn chunk<'a>(g: &'a LoadedGuest, what: &str) -> &'a crate::Chunk {
        g.chunks.iter().find(|c| c.what == what).unwrap_or_else(|| panic!("no chunk {what} in {:?}", g.chunks))
    }

    fn options() -> Options {
        let mut o = Options::new(16 << 20);
        o.cmdline = "console=ttyS0".into();
        o.initrd = Some(vec![7; 0x1800]);
        o.rsdp = Some(0xe_0000);
        o
    }

    fn le(words: &[(u64, usize)]) -> Vec<u8> {
        words.iter().flat_map(|&(v, n)| v.to_le_bytes()[..n].to_vec()).collect()
    }

    #[test]
    fn start_info_modlist_and_memmap_bytes() {
        let g = load(&testimage::pvh_elf(0x20_0000), &options()).unwrap();
        let what: Vec<_> = g.chunks.iter().map(|c| (c.what.as_str(), c.gpa)).collect();
        assert_eq!(
            what,
            [
                ("GDT", 0x500),
                ("hvm_start_info", 0x6000),
                ("PVH module list", 0x6040),
                ("PVH memory map", 0x7000),
                ("kernel command line", 0x2_0000),
                ("ELF segment 0", 0x20_0000),
                ("ELF segment 1", 0x20_1000),
                ("initrd", 0xff_e000),
            ]
        );
        // start_info.h: magic, version, flags, nr_modules, modlist_paddr,
        // cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries, reserved.
        let info = le(&[
            (0x336e_c578, 4),
            (1, 4),
            (0, 4),
            (1, 4),
            (0x6040, 8),
            (0x2_0000, 8),
            (0xe_0000, 8),
            (0x7000, 8),
            (3, 4),
            (0, 4),
        ]);
        assert_eq!(chunk(&g, "hvm_start_info").bytes, info);
        assert_eq!(info.len(), 56);
        // paddr, size, cmdline_paddr, reserved.
        assert_eq!(chunk(&g, "PVH module list").bytes, le(&[(0xff_e000, 8), (0x1800, 8), (0, 8), (0, 8)]));
        // addr, size, type (1 RAM, 2 reserved), reserved.
        let map = le(&[
            (0, 8),
            (0x9_fc00, 8),
            (1, 4),
            (0, 4),
            (0x9_fc00, 8),
            (0x6_0400, 8),
            (2, 4),
            (0, 4),
            (0x10_0000, 8),
            (0xf0_0000, 8),
            (1, 4),
            (0, 4),
        ]);
        assert_eq!(chunk(&g, "PVH memory map").bytes, map);
        assert_eq!(chunk(&g, "kernel command line").bytes, b"console=ttyS0\0");
        assert_eq!(chunk(&g, "initrd").bytes, vec![7; 0x1800]);
        assert_eq!(g.format, Format::Pvh);
        assert_eq!(g.memory_needed, 0xff_f800, "the initrd's end");
    }

    #[test]
    fn enters_the_note_address_in_flat_32bit_mode_with_ebx_the_start_info() {
        let g = load(&testimage::pvh_elf(0x20_0000), &Options::new(16 << 20)).unwrap();
        // The note's 0x200000, not e_entry's 0x200001.
        assert_eq!((g.boot.regs.rip, g.boot.regs.gpr[Regs::RBX]), (0x20_0000, 0x6000));
        assert_eq!(g.boot.mode(), CpuMode::Protected);
        assert_eq!((g.boot.cr0, g.boot.cr4, g.boot.efer), (0x11, 0, 0));
        assert_eq!(g.boot.regs.rflags & exitlab_arch::bits::rflags::IF, 0);
        let (cs, ds) = (g.boot.cs, g.boot.ds);
        assert_eq!((cs.base, cs.limit, cs.db, cs.l), (0, 0xffff_ffff, true, false));
        assert_eq!((ds.base, ds.limit, g.boot.es, g.boot.ss), (0, 0xffff_ffff, ds, ds));
        assert_eq!(g.boot.tr.limit, 0x67);
        assert_eq!(g.symbols.address("hello"), Some(0x20_0000));
        // No initrd: no module list; an empty command line is one NUL.
        assert!(g.chunks.iter().all(|c| c.what != "PVH module list"));
        assert_eq!(chunk(&g, "hvm_start_info").bytes[12..24], [0; 12]);
        assert_eq!(chunk(&g, "kernel command line").bytes, b"\0");
    }

    #[test]
    fn linux_loader_finds_the_same_entry() {
        use linux_loader::loader::{elf::Elf as LlElf, elf::PvhBootCapability, KernelLoader};
        use vm_memory::{GuestAddress, GuestMemoryMmap};
        let image = testimage::pvh_elf(0x20_0000);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let r = LlElf::load(&mem, None, &mut std::io::Cursor::new(&image), None).unwrap();
        assert_eq!(r.pvh_boot_cap, PvhBootCapability::PvhEntryPresent(GuestAddress(0x20_0000)));
    }

    fn with_notes(notes: &[u8]) -> Vec<u8> {
        testimage::elf_with_notes(&Elf::hello(0x20_0000), notes)
    }

    fn pvh_note(desc: Vec<u8>) -> Vec<u8> {
        Note { name: "Xen".into(), ty: XEN_ELFNOTE_PHYS32_ENTRY, desc }.bytes()
    }

    #[test]
    fn malformed_notes_and_images_are_errors_naming_the_field() {
        let o = Options::new(16 << 20);
        let err = |image: &[u8]| load(image, &o).unwrap_err();
        // A 4-byte descriptor (older kernels' .long) works too.
        assert_eq!(
            load(&with_notes(&pvh_note(0x20_0002u32.to_le_bytes().to_vec())), &o).unwrap().boot.regs.rip,
            0x20_0002
        );
        // Truncated: the note header, then the descriptor, past the segment
        // (at file offset 0x110: after 3 program headers and the two
        // segments' bytes, each at a 16-byte boundary).
        let note = pvh_note(0x20_0000u32.to_le_bytes().to_vec());
        assert_eq!(
            err(&with_notes(&note[..8])),
            bad("ELF note header", 0x110, "runs past the end of its PT_NOTE segment")
        );
        assert_eq!(
            err(&with_notes(&note[..18])),
            bad("ELF note n_descsz", 4, "the note runs past the end of its PT_NOTE segment")
        );
        assert_eq!(
            err(&with_notes(&pvh_note(vec![0; 2]))),
            bad("XEN_ELFNOTE_PHYS32_ENTRY n_descsz", 2, "not a 4- or 8-byte address")
        );
        assert_eq!(
            err(&with_notes(&pvh_note((1u64 << 32).to_le_bytes().to_vec()))),
            bad("XEN_ELFNOTE_PHYS32_ENTRY", 1 << 32, "a 32-bit entry must lie below 4 GiB")
        );
        // The entry in no segment's bytes (the data segment's .bss here).
        assert_eq!(
            err(&with_notes(&pvh_note(0x20_1800u32.to_le_bytes().to_vec()))),
            LoadError::EntryOutside { entry: 0x20_1800 }
        );
        // No PVH note at all; an ELF note of another owner is not one.
        let other = Note { name: "Lin".into(), ty: XEN_ELFNOTE_PHYS32_ENTRY, desc: vec![0; 4] }.bytes();
        assert_eq!(err(&with_notes(&other)), bad("PT_NOTE", 1, "no XEN_ELFNOTE_PHYS32_ENTRY note"));
        assert_eq!(err(&testimage::elf(&Elf::hello(0x20_0000))), bad("PT_NOTE", 0, "no XEN_ELFNOTE_PHYS32_ENTRY note"));
        // Overlapping segments.
        let mut e = Elf::hello(0x20_0000);
        e.segments[1].paddr = 0x20_0002;
        let overlap = testimage::elf_with_notes(&e, &pvh_note(vec![0, 0, 0x20, 0]));
        assert!(matches!(err(&overlap), LoadError::Overlap { .. }));
        // The note segment cut off by the end of the file.
        let image = testimage::pvh_elf(0x20_0000);
        let cut = &image[..0x118];
        assert!(matches!(err(cut), LoadError::Truncated { what: "ELF note segment", .. }), "{}", err(cut));
        let mut o = Options::new(16 << 20);
        o.cmdline = "x".repeat(2048);
        assert_eq!(load(&image, &o).unwrap_err(), LoadError::CmdlineTooLong { len: 2048, max: 2047 });
    }
}

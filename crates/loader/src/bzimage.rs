//! The Linux x86 boot protocol for a bzImage, through its 64-bit entry
//! (Documentation/arch/x86/boot.rst): the setup header at 0x1f1 is read
//! and copied into a zero page (`struct boot_params`, linux-loader's
//! bindings of arch/x86/include/uapi/asm/bootparam.h) with an e820 map,
//! the command line and the initrd; the protected-mode kernel goes to
//! `code32_start` and the vCPU starts at its load address + 0x200 in
//! 64-bit mode with RSI = the zero page. Where the platform has ACPI
//! tables, the zero page's `acpi_rsdp_addr` (offset 0x070,
//! Documentation/arch/x86/zero-page.rst) says where the RSDP is, as PVH's
//! `rsdp_paddr` does; the decompressor and the kernel take it before
//! scanning the EBDA and 0xe0000-0xfffff for one.
//!
//! linux-loader's own `BzImage::load` is not used: it writes into guest
//! memory instead of returning chunks, and its errors carry no fields;
//! its `boot_params` and `setup_header` are.

use crate::layout::{memory_map, LINUX_CMDLINE, ZERO_PAGE};
use crate::place::Placer;
use crate::{entry, Format, LoadError, LoadedGuest, Options, Symbols};
use exitlab_arch::Regs;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::ByteValued;

/// Where the setup header starts in the file and in the zero page.
const HEADER: usize = 0x1f1;
/// `boot_flag` (0x1fe) and `header` (0x202) signatures.
const BOOT_FLAG: u16 = 0xaa55;
const HDRS: &[u8] = b"HdrS";
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000.
const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags` bit 0: the 64-bit entry at load address + 0x200 exists.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Protocol 2.12 introduced `xloadflags`.
const MIN_VERSION: u16 = 0x020c;
/// The 64-bit entry's offset from the load address.
const ENTRY_64: u64 = 0x200;
/// `type_of_loader` 0xff: a boot loader without an assigned ID.
const LOADER_UNDEFINED: u8 = 0xff;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The bzImage signatures are there: boot_flag 0xAA55, header "HdrS".
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() >= 0x206 && u16_at(image, 0x1fe) == BOOT_FLAG && &image[0x202..0x206] == HDRS
}

fn bad(field: &'static str, value: u64, why: &'static str) -> LoadError {
    LoadError::BadField { format: Format::BzImage, field, value, why }
}

fn unsupported(what: String) -> LoadError {
    LoadError::Unsupported { format: Format::BzImage, what }
}

/// The setup header as the file has it (its length is 0x202 + the byte
/// at 0x201), after its signatures; fields the file's protocol version
/// predates stay zero.
pub(crate) fn setup_header(image: &[u8]) -> Result<setup_header, LoadError> {
    if !is_bzimage(image) {
        return Err(bad("boot_flag/header", 0, "no 0xAA55 at 0x1fe and \"HdrS\" at 0x202"));
    }
    let end = 0x202 + usize::from(image[0x201]);
    let file_len = image.len() as u64;
    if end > image.len() {
        return Err(LoadError::Truncated {
            what: "setup header",
            offset: HEADER as u64,
            len: (end - HEADER) as u64,
            file_len,
        });
    }
    let mut hdr = setup_header::default();
    let n = (end - HEADER).min(hdr.as_slice().len());
    hdr.as_mut_slice()[..n].copy_from_slice(&image[HEADER..HEADER + n]);
    Ok(hdr)
}

/// The file offset of the protected-mode kernel: the boot sector and
/// `setup_sects` setup sectors (0 means 4) before it.
pub(crate) fn setup_len(hdr: &setup_header) -> u64 {
    let sects = if hdr.setup_sects == 0 { 4 } else { u64::from(hdr.setup_sects) };
    (sects + 1) * 512
}

/// The setup header, checked for what a 64-bit boot needs.
fn read_header(image: &[u8]) -> Result<setup_header, LoadError> {
    let hdr = setup_header(image)?;
    let version = hdr.version;
    if version < MIN_VERSION {
        let v = format!("boot protocol {}.{:02} predates the 64-bit entry (2.12)", version >> 8, version & 0xff);
        return Err(unsupported(v));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(unsupported("a zImage (loadflags bit 0 clear) loads below 1 MiB".into()));
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(unsupported("no 64-bit entry point (xloadflags bit 0 clear)".into()));
    }
    Ok(hdr)
}

/// Loads a bzImage with `options`' memory, command line and initrd.
pub fn load(image: &[u8], options: &Options) -> Result<LoadedGuest, LoadError> {
    let mut hdr = read_header(image)?;
    let setup = setup_len(&hdr);
    let file_len = image.len() as u64;
    if setup >= file_len {
        return Err(LoadError::Truncated { what: "setup sectors and kernel", offset: 0, len: setup + 1, file_len });
    }
    let mut place = Placer::new(options.memory);
    let load = u64::from(hdr.code32_start);
    place.image("bzImage kernel".into(), load, &image[setup as usize..], 0)?;
    let entry = load + ENTRY_64;
    place.entry(entry)?;
    reserve_working_memory(&mut place, &hdr, load, load + (file_len - setup))?;

    let cmdline = options.cmdline.as_bytes();
    if cmdline.len() as u64 > u64::from(hdr.cmdline_size) {
        return Err(LoadError::CmdlineTooLong { len: cmdline.len() as u64, max: hdr.cmdline_size.into() });
    }
    let mut text = cmdline.to_vec();
    text.push(0);
    place.data("kernel command line".into(), LINUX_CMDLINE, text)?;
    hdr.cmd_line_ptr = LINUX_CMDLINE as u32;
    if let Some(initrd) = &options.initrd {
        let at = place_initrd(&mut place, initrd, hdr.initrd_addr_max)?;
        hdr.ramdisk_image = at as u32;
        hdr.ramdisk_size = initrd.len() as u32;
    }
    hdr.type_of_loader = LOADER_UNDEFINED;

    let mut zero_page = boot_params { hdr, ..Default::default() };
    let map = memory_map(options.memory);
    for (slot, (addr, size, ty)) in zero_page.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry { addr, size, r#type: ty as u32 };
    }
    zero_page.e820_entries = map.len() as u8;
    zero_page.acpi_rsdp_addr = options.rsdp.unwrap_or(0);
    place.data("zero page".into(), ZERO_PAGE, zero_page.as_slice().to_vec())?;

    let mut boot = entry::long_mode(&mut place, entry)?;
    boot.regs.gpr[Regs::RSI] = ZERO_PAGE;
    Ok(place.finish(Format::BzImage, boot, Symbols::default()))
}

/// Claims the memory the kernel decompresses into before it reads the
/// memory map: `init_size` bytes from its run-time start (the load address
/// aligned up to `kernel_alignment`, at least `pref_address`, for a
/// relocatable kernel; `pref_address` otherwise), less what the loaded
/// kernel itself covers.
fn reserve_working_memory(place: &mut Placer, hdr: &setup_header, load: u64, loaded_end: u64) -> Result<(), LoadError> {
    let pref = hdr.pref_address;
    let start = if hdr.relocatable_kernel != 0 {
        let align = u64::from(hdr.kernel_alignment);
        if !align.is_power_of_two() {
            return Err(bad("kernel_alignment", align, "not a power of two"));
        }
        load.next_multiple_of(align).max(pref)
    } else {
        pref
    };
    let end = start.saturating_add(hdr.init_size.into());
    let what = "kernel working memory (init_size)";
    if start < load {
        place.reserve(what.into(), start, end.min(load) - start)?;
    }
    let from = start.max(loaded_end);
    if from < end {
        place.reserve(what.into(), from, end - from)?;
    }
    Ok(())
}

/// Places the initrd page-aligned as high as memory and
/// `initrd_addr_max` allow, as boot loaders do; returns its address.
pub(crate) fn place_initrd(place: &mut Placer, initrd: &[u8], initrd_addr_max: u32) -> Result<u64, LoadError> {
    let top = place.memory().min(u64::from(initrd_addr_max) + 1);
    let len = initrd.len() as u64;
    let at = top.checked_sub(len).map(|a| a & !0xfff).ok_or_else(|| LoadError::OutsideMemory {
        region: crate::Region { what: "initrd".into(), start: 0, end: len },
        memory: place.memory(),
    })?;
    place.data("initrd".into(), at, initrd.to_vec())?;
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage::{self, BzImage};
    use exitlab_arch::CpuMode;

    fn zero_page(g: &LoadedGuest) -> boot_params {
        let c = g.chunks.iter().find(|c| c.what == "zero page").unwrap();
        let mut p = boot_params::default();
        p.as_mut_slice().copy_from_slice(&c.bytes);
        p
    }

    #[test]
    fn loads_kernel_zero_page_cmdline_initrd_and_64bit_entry() {
        let image = testimage::bzimage(&BzImage::default());
        let mut o = Options::new(64 << 20);
        o.cmdline = "console=ttyS0".into();
        o.initrd = Some(vec![7; 0x1800]);
        let g = load(&image, &o).unwrap();
        assert_eq!(g.boot.mode(), CpuMode::Long);
        assert_eq!((g.boot.regs.rip, g.boot.regs.gpr[Regs::RSI]), (0x10_0200, ZERO_PAGE));
        assert_eq!((g.boot.cs.selector, g.boot.ds.selector), (0x10, 0x18));
        let kernel = g.chunks.iter().find(|c| c.what == "bzImage kernel").unwrap();
        assert_eq!((kernel.gpa, kernel.bytes.len()), (0x10_0000, 0x1000));
        assert_eq!(&kernel.bytes[0x200..0x205], &testimage::HELLO_CODE);
        let p = zero_page(&g);
        let (cmd, rd, rd_size) = (p.hdr.cmd_line_ptr, p.hdr.ramdisk_image, p.hdr.ramdisk_size);
        assert_eq!((cmd, rd, rd_size), (0x2_0000, (64 << 20) - 0x2000, 0x1800));
        assert_eq!((p.hdr.type_of_loader, p.hdr.version, p.sentinel), (0xff, 0x020f, 0));
        let e820: Vec<_> =
            p.e820_table[..usize::from(p.e820_entries)].iter().map(|e| (e.addr, e.size, e.r#type)).collect();
        assert_eq!(e820, [(0, 0x9_fc00, 1), (0x9_fc00, 0x6_0400, 2), (0x10_0000, (63 << 20), 1)]);
        let cmdline = g.chunks.iter().find(|c| c.gpa == 0x2_0000).unwrap();
        assert_eq!(cmdline.bytes, b"console=ttyS0\0");
        assert_eq!({ p.acpi_rsdp_addr }, 0, "no ACPI tables: the guest scans");
        // Relocatable, aligned to 2 MiB from 1 MiB: runs at 2 MiB for 1 MiB.
        assert_eq!(g.memory_needed, (64 << 20) - 0x800, "the initrd ends at the top page");
    }

    #[test]
    fn the_zero_page_says_where_the_rsdp_is() {
        let mut o = Options::new(64 << 20);
        o.rsdp = Some(0xe_0000);
        let g = load(&testimage::bzimage(&BzImage::default()), &o).unwrap();
        let c = g.chunks.iter().find(|c| c.what == "zero page").unwrap();
        assert_eq!(c.bytes[0x70..0x78], 0xe_0000u64.to_le_bytes(), "boot_params.acpi_rsdp_addr at 0x070");
    }

    #[test]
    fn memory_needed_covers_init_size_from_the_runtime_address() {
        let g = load(&testimage::bzimage(&BzImage::default()), &Options::new(16 << 20)).unwrap();
        assert_eq!(g.memory_needed, 0x30_0000);
        let b = BzImage { init_size: 15 << 20, ..Default::default() };
        let e = load(&testimage::bzimage(&b), &Options::new(16 << 20)).unwrap_err();
        assert!(matches!(e, LoadError::OutsideMemory { .. }), "{e}");
    }

    #[test]
    fn refuses_what_the_64bit_protocol_cannot_boot() {
        let old = BzImage { version: 0x020a, ..Default::default() };
        let e = load(&testimage::bzimage(&old), &Options::new(16 << 20)).unwrap_err();
        assert_eq!(e.to_string(), "unsupported bzImage image: boot protocol 2.10 predates the 64-bit entry (2.12)");
        let no64 = BzImage { xloadflags: 0, ..Default::default() };
        assert!(matches!(
            load(&testimage::bzimage(&no64), &Options::new(16 << 20)),
            Err(LoadError::Unsupported { .. })
        ));
        let tiny = BzImage { payload: vec![0; 0x100], ..Default::default() };
        let e = load(&testimage::bzimage(&tiny), &Options::new(16 << 20)).unwrap_err();
        assert_eq!(e, LoadError::EntryOutside { entry: 0x10_0200 });
        let mut o = Options::new(16 << 20);
        o.cmdline = "x".repeat(0x800);
        let e = load(&testimage::bzimage(&BzImage::default()), &o).unwrap_err();
        assert_eq!(e, LoadError::CmdlineTooLong { len: 0x800, max: 0x7ff });
        let image = testimage::bzimage(&BzImage::default());
        let e = load(&image[..0x300], &Options::new(16 << 20)).unwrap_err();
        assert!(matches!(e, LoadError::Truncated { what: "setup sectors and kernel", .. }), "{e}");
        let mut o = Options::new(16 << 20);
        o.initrd = Some(vec![0; 15 << 20]);
        assert!(matches!(load(&image, &o), Err(LoadError::Overlap { .. })));
    }
}

//! Multiboot v1 (the Multiboot Specification 0.6.96): the header in the
//! image's first 8 KiB, the image loaded from its ELF program headers or,
//! with flags bit 16, from the header's a.out-kludge addresses; modules
//! page-aligned after the image; the multiboot information block (memory
//! sizes, memory map, command line, modules, boot loader name) after them;
//! entry in 32-bit protected mode with EAX = 0x2BADB002 and EBX = the
//! information block (section 3.2). kvm-unit-tests' .flat files are
//! ELF32 multiboot images; its environment file is module 0.

use crate::layout::{memory_map, EBDA, HIGH_MEMORY};
use crate::place::Placer;
use crate::{elf, entry, Format, LoadError, LoadedGuest, Options, Symbols};
use exitlab_arch::Regs;

/// The header's magic (3.1.1).
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at entry: the image was loaded by a multiboot loader (3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header lies 32-bit aligned within the first 8192 bytes (3.1).
const SEARCH: usize = 8192;

/// Header flags (3.1.2). Bits 0-15 are requirements: a loader that does
/// not understand one must refuse the image.
const PAGE_ALIGN: u32 = 1 << 0;
const MEMORY_INFO: u32 = 1 << 1;
const VIDEO_MODE: u32 = 1 << 2;
const AOUT_KLUDGE: u32 = 1 << 16;

/// Information-block flags (3.3): which fields are valid.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MEM_MAP: u32 = 1 << 6;
const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;
/// The information block up to and including `vbe_interface_len` (3.3).
const INFO_SIZE: usize = 88;
const BOOT_LOADER_NAME: &[u8] = b"exitlab\0";

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The offset of the first valid header (magic, flags and checksum
/// summing to 0 mod 2^32) in the first 8 KiB.
pub fn find_header(image: &[u8]) -> Option<usize> {
    let window = &image[..image.len().min(SEARCH)];
    (0..window.len().saturating_sub(11)).step_by(4).find(|&at| {
        let (magic, flags, sum) = (u32_at(window, at), u32_at(window, at + 4), u32_at(window, at + 8));
        magic == HEADER_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0
    })
}

fn bad(field: &'static str, value: u64, why: &'static str) -> LoadError {
    LoadError::BadField { format: Format::Multiboot, field, value, why }
}

/// Loads a multiboot image with `options`' memory, command line and
/// modules.
pub fn load(image: &[u8], options: &Options) -> Result<LoadedGuest, LoadError> {
    let at = find_header(image)
        .ok_or_else(|| bad("header", 0, "no magic 0x1badb002 with a valid checksum in the first 8 KiB"))?;
    let flags = u32_at(image, at + 4);
    if flags & VIDEO_MODE != 0 {
        let what = "it requires a video mode (flags bit 2), and exitlab has no display".into();
        return Err(LoadError::Unsupported { format: Format::Multiboot, what });
    }
    let unknown = flags & 0xffff & !(PAGE_ALIGN | MEMORY_INFO);
    if unknown != 0 {
        let what =
            format!("it requires flags bit {}, which the specification does not define", unknown.trailing_zeros());
        return Err(LoadError::Unsupported { format: Format::Multiboot, what });
    }
    let mut place = Placer::new(options.memory);
    let (entry, symbols) = if flags & AOUT_KLUDGE != 0 {
        (place_kludge(image, at, &mut place)?, Symbols::default())
    } else if image.starts_with(elf::MAGIC) {
        let parsed = elf::parse(image, Format::Multiboot)?;
        (elf::place_with_entry(&parsed, image, &mut place)?, parsed.symbols)
    } else {
        return Err(bad("flags", flags.into(), "not ELF, so the a.out-kludge addresses (bit 16) are needed"));
    };
    if entry > u64::from(u32::MAX) {
        return Err(bad("entry", entry, "a 32-bit protected-mode entry must lie below 4 GiB"));
    }
    let info = place_info(&mut place, options)?;
    let mut boot = entry::protected_mode(&mut place, entry)?;
    boot.regs.gpr[Regs::RAX] = u64::from(BOOTLOADER_MAGIC);
    boot.regs.gpr[Regs::RBX] = info;
    Ok(place.finish(Format::Multiboot, boot, symbols))
}

/// Places the file range the a.out-kludge addresses give (3.1.3) and
/// returns `entry_addr`.
fn place_kludge(image: &[u8], at: usize, place: &mut Placer) -> Result<u64, LoadError> {
    let file_len = image.len() as u64;
    if at + 32 > image.len() {
        return Err(LoadError::Truncated {
            what: "multiboot header address fields",
            offset: at as u64,
            len: 32,
            file_len,
        });
    }
    let [header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr] =
        [12, 16, 20, 24, 28].map(|o| u64::from(u32_at(image, at + o)));
    if load_addr > header_addr {
        return Err(bad("load_addr", load_addr, "above header_addr"));
    }
    let start = (at as u64)
        .checked_sub(header_addr - load_addr)
        .ok_or_else(|| bad("load_addr", load_addr, "would start loading before the file's first byte"))?;
    let len = match load_end_addr {
        0 => file_len - start,
        end if end < load_addr => return Err(bad("load_end_addr", end, "below load_addr")),
        end => end - load_addr,
    };
    if start + len > file_len {
        return Err(LoadError::Truncated { what: "multiboot load range", offset: start, len, file_len });
    }
    let zeros = match bss_end_addr {
        0 => 0,
        end if end < load_addr + len => return Err(bad("bss_end_addr", end, "below the end of the loaded bytes")),
        end => end - (load_addr + len),
    };
    let bytes = &image[start as usize..(start + len) as usize];
    place.image("multiboot image".into(), load_addr, bytes, zeros)?;
    place.entry(entry_addr)?;
    Ok(entry_addr)
}

fn page_up(a: u64) -> u64 {
    a.checked_next_multiple_of(4096).unwrap_or(u64::MAX)
}

/// Places the modules (page-aligned, after the image) and the
/// information block after them; returns the block's address.
fn place_info(place: &mut Placer, options: &Options) -> Result<u64, LoadError> {
    let mut mods = Vec::new();
    for (i, m) in options.modules.iter().enumerate() {
        let start = page_up(place.end());
        place.data(format!("multiboot module {i}"), start, m.bytes.clone())?;
        mods.push((start, start + m.bytes.len() as u64));
    }
    let base = page_up(place.end());
    // The block, then the memory map, the module list and the strings.
    let mut block = vec![0u8; INFO_SIZE];
    let put = |block: &mut Vec<u8>, at: usize, v: u64| block[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
    let mut flags = INFO_MEMORY | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME;
    put(&mut block, 4, EBDA / 1024); // mem_lower, KiB
    put(&mut block, 8, (options.memory - HIGH_MEMORY) / 1024); // mem_upper, KiB above 1 MiB
    let mmap = block.len();
    for (start, len, ty) in memory_map(options.memory) {
        block.extend_from_slice(&20u32.to_le_bytes()); // size of the rest of the entry
        block.extend_from_slice(&start.to_le_bytes());
        block.extend_from_slice(&len.to_le_bytes());
        block.extend_from_slice(&(ty as u32).to_le_bytes());
    }
    let mmap_length = (block.len() - mmap) as u64;
    put(&mut block, 44, mmap_length);
    put(&mut block, 48, base + mmap as u64); // mmap_addr
    let list = block.len();
    block.resize(list + 16 * mods.len(), 0);
    let string = |block: &mut Vec<u8>, s: &[u8]| {
        let at = base + block.len() as u64;
        block.extend_from_slice(s);
        block.push(0);
        at
    };
    if !mods.is_empty() {
        flags |= INFO_MODS;
        put(&mut block, 20, mods.len() as u64); // mods_count
        put(&mut block, 24, base + list as u64); // mods_addr
        for (i, (m, &(start, end))) in options.modules.iter().zip(&mods).enumerate() {
            let name = string(&mut block, m.cmdline.as_bytes());
            for (k, v) in [start, end, name].into_iter().enumerate() {
                put(&mut block, list + 16 * i + 4 * k, v);
            }
        }
    }
    if !options.cmdline.is_empty() {
        flags |= INFO_CMDLINE;
        let at = string(&mut block, options.cmdline.as_bytes());
        put(&mut block, 16, at);
    }
    let name = string(&mut block, &BOOT_LOADER_NAME[..BOOT_LOADER_NAME.len() - 1]);
    put(&mut block, 64, name);
    put(&mut block, 0, flags.into());
    place.data("multiboot information".into(), base, block)?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage;
    use crate::Module;
    use exitlab_arch::CpuMode;

    fn u32_in(g: &LoadedGuest, gpa: u64) -> u32 {
        let c = g.chunks.iter().find(|c| c.gpa <= gpa && gpa + 4 <= c.gpa + c.bytes.len() as u64).unwrap();
        u32_at(&c.bytes, (gpa - c.gpa) as usize)
    }

    fn string_in(g: &LoadedGuest, gpa: u64) -> String {
        let c = g.chunks.iter().find(|c| c.gpa <= gpa && gpa < c.gpa + c.bytes.len() as u64).unwrap();
        let s = &c.bytes[(gpa - c.gpa) as usize..];
        String::from_utf8(s[..s.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
    }

    #[test]
    fn elf32_multiboot_entry_state_and_information_block() {
        let mut o = Options::new(128 << 20);
        o.cmdline = "test.flat arg".into();
        o.modules = vec![Module { bytes: b"NR_CPUS=1\n".to_vec(), cmdline: "env".into() }];
        let g = load(&testimage::elf32_multiboot(0x20_0000), &o).unwrap();
        assert_eq!(g.boot.mode(), CpuMode::Protected);
        assert_eq!(g.boot.regs.rip, 0x20_000c);
        assert_eq!(g.boot.regs.gpr[Regs::RAX], 0x2bad_b002);
        assert_eq!(g.symbols.address("start"), Some(0x20_000c));
        // The module goes to the first page after the image's bss (0x202000).
        let module = g.chunks.iter().find(|c| c.what == "multiboot module 0").unwrap();
        assert_eq!((module.gpa, module.bytes.as_slice()), (0x20_2000, &b"NR_CPUS=1\n"[..]));
        let info = g.boot.regs.gpr[Regs::RBX];
        assert_eq!(info, 0x20_3000);
        assert_eq!(u32_in(&g, info), INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME);
        assert_eq!(u32_in(&g, info + 4), 639);
        assert_eq!(u32_in(&g, info + 8), (128 << 10) - 1024);
        assert_eq!(string_in(&g, u32_in(&g, info + 16).into()), "test.flat arg");
        assert_eq!(u32_in(&g, info + 20), 1);
        let m = u64::from(u32_in(&g, info + 24));
        assert_eq!((u32_in(&g, m), u32_in(&g, m + 4)), (0x20_2000, 0x20_200a));
        assert_eq!(string_in(&g, u32_in(&g, m + 8).into()), "env");
        assert_eq!(u32_in(&g, info + 44), 3 * 24);
        let mmap = u64::from(u32_in(&g, info + 48));
        // Third entry: size 20, base 1 MiB, length memory - 1 MiB, type 1.
        let e = mmap + 2 * 24;
        assert_eq!(
            (u32_in(&g, e), u32_in(&g, e + 4), u32_in(&g, e + 12), u32_in(&g, e + 20)),
            (20, 0x10_0000, (127 << 20), 1)
        );
        assert_eq!(string_in(&g, u32_in(&g, info + 64).into()), "exitlab");
    }

    #[test]
    fn aout_kludge_loads_the_file_range_and_bss() {
        let image = testimage::multiboot_kludge(0x10_0000);
        let g = load(&image, &Options::new(4 << 20)).unwrap();
        let c = g.chunks.iter().find(|c| c.what == "multiboot image").unwrap();
        assert_eq!((c.gpa, c.bytes.as_slice(), c.zeros), (0x10_0000, image.as_slice(), 0x1000));
        assert_eq!(g.boot.regs.rip, 0x10_0020);
        assert!(g.symbols.is_empty());
    }

    #[test]
    fn bad_headers_are_refused_with_the_field() {
        let mut bad_kludge = testimage::multiboot_header(1 << 16, Some([0x10_0000, 0x10_0010, 0, 0, 0x10_0020]));
        bad_kludge.extend_from_slice(&[0xf4; 64]);
        assert_eq!(load(&bad_kludge, &Options::new(4 << 20)), Err(bad("load_addr", 0x10_0010, "above header_addr")));
        let video = testimage::multiboot_header(VIDEO_MODE, None);
        assert!(matches!(load(&video, &Options::new(4 << 20)), Err(LoadError::Unsupported { .. })));
        let raw = testimage::multiboot_header(0, None);
        assert!(matches!(load(&raw, &Options::new(4 << 20)), Err(LoadError::BadField { field: "flags", .. })));
        let mut wrong_sum = testimage::multiboot_header(0, None);
        wrong_sum[8] ^= 1;
        assert_eq!(find_header(&wrong_sum), None);
        let short = &testimage::multiboot_header(1 << 16, Some([0; 5]))[..20];
        assert!(matches!(load(short, &Options::new(4 << 20)), Err(LoadError::Truncated { .. })));
    }
}

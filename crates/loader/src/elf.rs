//! ELF32 and ELF64 executables (System V gABI, "ELF Header", "Program
//! Header", "Symbol Table"): PT_LOAD segments go to their physical
//! addresses (`p_paddr`), the entry point is translated from virtual to
//! physical through the segment holding it, and the symbol table is kept.
//!
//! linux-loader's ELF loader is not used: it reads ELF64 only, writes into
//! guest memory instead of returning chunks, keeps no symbols, and its
//! errors carry no fields.

use crate::place::Placer;
use crate::{entry, Format, LoadError, LoadedGuest, Symbol, Symbols};

pub const MAGIC: &[u8] = b"\x7fELF";

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// e_phnum's escape to extended numbering (gABI "Extended numbering").
const PN_XNUM: u16 = 0xffff;
const SHT_SYMTAB: u32 = 2;
const SHN_UNDEF: u16 = 0;
const SHN_ABS: u16 = 0xfff1;
const STT_NOTYPE: u8 = 0;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;

/// The two classes' field offsets and sizes.
struct Class {
    is64: bool,
    ehsize: u64,
    phentsize: u64,
    shentsize: u64,
    symentsize: u64,
}

const CLASS32: Class = Class { is64: false, ehsize: 52, phentsize: 32, shentsize: 40, symentsize: 16 };
const CLASS64: Class = Class { is64: true, ehsize: 64, phentsize: 56, shentsize: 64, symentsize: 24 };

/// Bounds-checked little-endian reads from the file.
struct Reader<'a> {
    bytes: &'a [u8],
    format: Format,
}

impl Reader<'_> {
    /// `len` bytes at `offset`, or `Truncated` naming `what`.
    fn slice(&self, what: &'static str, offset: u64, len: u64) -> Result<&[u8], LoadError> {
        let file_len = self.bytes.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= file_len => Ok(&self.bytes[offset as usize..end as usize]),
            _ => Err(LoadError::Truncated { what, offset, len, file_len }),
        }
    }

    fn bad(&self, field: &'static str, value: u64, why: &'static str) -> LoadError {
        LoadError::BadField { format: self.format, field, value, why }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A word of the class's size: 4 bytes in ELF32, 8 in ELF64.
fn word(b: &[u8], at32: usize, at64: usize, is64: bool) -> u64 {
    if is64 {
        u64_at(b, at64)
    } else {
        u64::from(u32_at(b, at32))
    }
}

/// A PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub index: usize,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A PT_NOTE segment: its notes' bytes in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteSegment {
    pub index: usize,
    pub offset: u64,
    pub filesz: u64,
    /// `p_align`: 4, or 8 for notes padded to 8 bytes.
    pub align: u64,
}

/// What a parsed executable holds.
#[derive(Debug)]
pub struct Parsed {
    pub is64: bool,
    pub entry: u64,
    pub segments: Vec<LoadSegment>,
    pub notes: Vec<NoteSegment>,
    pub symbols: Symbols,
}

/// Parses the ELF header, program headers and symbol table of `image`
/// (for `format`'s messages: ELF, or multiboot's ELF body).
pub fn parse(image: &[u8], format: Format) -> Result<Parsed, LoadError> {
    let r = Reader { bytes: image, format };
    let ident = r.slice("ELF identification", 0, 16)?;
    if &ident[..4] != MAGIC {
        return Err(r.bad("e_ident magic", u64::from(u32_at(ident, 0)), "not \\x7fELF"));
    }
    let class = match ident[4] {
        ELFCLASS32 => &CLASS32,
        ELFCLASS64 => &CLASS64,
        c => return Err(r.bad("e_ident[EI_CLASS]", c.into(), "neither ELFCLASS32 (1) nor ELFCLASS64 (2)")),
    };
    if ident[5] != ELFDATA2LSB {
        return Err(LoadError::Unsupported { format, what: format!("byte order {} is not little-endian", ident[5]) });
    }
    let h = r.slice("ELF header", 0, class.ehsize)?;
    let (e_type, machine) = (u16_at(h, 16), u16_at(h, 18));
    if e_type != ET_EXEC {
        return Err(LoadError::Unsupported {
            format,
            what: format!("ELF type {e_type} is not an executable (ET_EXEC)"),
        });
    }
    let want = if class.is64 { EM_X86_64 } else { EM_386 };
    if machine != want {
        return Err(r.bad("e_machine", machine.into(), "not x86 (EM_386 for ELF32, EM_X86_64 for ELF64)"));
    }
    let entry = word(h, 24, 24, class.is64);
    let (segments, notes) = program_headers(&r, class, h)?;
    let symbols = symbol_table(&r, class, h)?;
    Ok(Parsed { is64: class.is64, entry, segments, notes, symbols })
}

type ProgramHeaders = (Vec<LoadSegment>, Vec<NoteSegment>);

fn program_headers(r: &Reader<'_>, class: &Class, h: &[u8]) -> Result<ProgramHeaders, LoadError> {
    let phoff = word(h, 28, 32, class.is64);
    let (phentsize, phnum) = if class.is64 { (u16_at(h, 54), u16_at(h, 56)) } else { (u16_at(h, 42), u16_at(h, 44)) };
    if phnum == PN_XNUM {
        return Err(LoadError::Unsupported { format: r.format, what: "extended program header numbering".into() });
    }
    if phnum == 0 {
        return Err(r.bad("e_phnum", 0, "no program headers, so nothing to load"));
    }
    if u64::from(phentsize) != class.phentsize {
        return Err(r.bad("e_phentsize", phentsize.into(), "not the class's program header size (32 or 56)"));
    }
    let table = r.slice("ELF program header table", phoff, u64::from(phnum) * class.phentsize)?;
    let mut segments = Vec::new();
    let mut notes = Vec::new();
    for (index, p) in table.chunks_exact(class.phentsize as usize).enumerate() {
        if u32_at(p, 0) == PT_NOTE {
            let (offset, filesz) = (word(p, 4, 8, class.is64), word(p, 16, 32, class.is64));
            r.slice("ELF note segment", offset, filesz)?;
            notes.push(NoteSegment { index, offset, filesz, align: word(p, 28, 48, class.is64) });
            continue;
        }
        if u32_at(p, 0) != PT_LOAD {
            continue;
        }
        let s = LoadSegment {
            index,
            offset: word(p, 4, 8, class.is64),
            vaddr: word(p, 8, 16, class.is64),
            paddr: word(p, 12, 24, class.is64),
            filesz: word(p, 16, 32, class.is64),
            memsz: word(p, 20, 40, class.is64),
        };
        if s.filesz > s.memsz {
            return Err(r.bad("p_filesz", s.filesz, "larger than the segment's p_memsz"));
        }
        r.slice("ELF segment", s.offset, s.filesz)?;
        segments.push(s);
    }
    if segments.is_empty() {
        return Err(r.bad("e_phnum", phnum.into(), "no PT_LOAD segment among the program headers"));
    }
    Ok((segments, notes))
}

/// The symbols of the first SHT_SYMTAB section, named from the string
/// table its `sh_link` gives. An image without sections has none.
fn symbol_table(r: &Reader<'_>, class: &Class, h: &[u8]) -> Result<Symbols, LoadError> {
    let shoff = word(h, 32, 40, class.is64);
    let (shentsize, shnum) = if class.is64 { (u16_at(h, 58), u16_at(h, 60)) } else { (u16_at(h, 46), u16_at(h, 48)) };
    if shoff == 0 || shnum == 0 {
        return Ok(Symbols::default());
    }
    if u64::from(shentsize) != class.shentsize {
        return Err(r.bad("e_shentsize", shentsize.into(), "not the class's section header size (40 or 64)"));
    }
    let table = r.slice("ELF section header table", shoff, u64::from(shnum) * class.shentsize)?;
    let sections: Vec<&[u8]> = table.chunks_exact(class.shentsize as usize).collect();
    let Some(symtab) = sections.iter().find(|s| u32_at(s, 4) == SHT_SYMTAB) else {
        return Ok(Symbols::default());
    };
    // sh_offset, sh_size, sh_link, sh_entsize.
    let (off, size) = (word(symtab, 16, 24, class.is64), word(symtab, 20, 32, class.is64));
    let link = if class.is64 { u32_at(symtab, 40) } else { u32_at(symtab, 24) };
    let entsize = word(symtab, 36, 56, class.is64);
    if entsize != class.symentsize {
        return Err(r.bad("symbol table sh_entsize", entsize, "not the class's symbol size (16 or 24)"));
    }
    let strtab =
        sections.get(link as usize).ok_or_else(|| r.bad("symbol table sh_link", link.into(), "no such section"))?;
    let strings = r.slice("ELF string table", word(strtab, 16, 24, class.is64), word(strtab, 20, 32, class.is64))?;
    let syms = r.slice("ELF symbol table", off, size - size % entsize)?;
    let mut symbols = Vec::new();
    for s in syms.chunks_exact(entsize as usize) {
        let (name, value, size, info, shndx) = if class.is64 {
            (u32_at(s, 0), u64_at(s, 8), u64_at(s, 16), s[4], u16_at(s, 6))
        } else {
            (u32_at(s, 0), u64::from(u32_at(s, 4)), u64::from(u32_at(s, 8)), s[12], u16_at(s, 14))
        };
        if !matches!(info & 0xf, STT_NOTYPE | STT_OBJECT | STT_FUNC) || shndx == SHN_UNDEF || shndx == SHN_ABS {
            continue;
        }
        let tail =
            strings.get(name as usize..).ok_or_else(|| r.bad("st_name", name.into(), "past the string table"))?;
        let name = &tail[..tail.iter().position(|&b| b == 0).unwrap_or(tail.len())];
        if !name.is_empty() {
            symbols.push(Symbol { name: String::from_utf8_lossy(name).into_owned(), addr: value, size });
        }
    }
    Ok(Symbols::new(symbols))
}

/// Places every PT_LOAD segment at its physical address.
pub fn place_segments(parsed: &Parsed, image: &[u8], place: &mut Placer) -> Result<(), LoadError> {
    for s in &parsed.segments {
        let bytes = &image[s.offset as usize..(s.offset + s.filesz) as usize];
        place.image(format!("ELF segment {}", s.index), s.paddr, bytes, s.memsz - s.filesz)?;
    }
    Ok(())
}

/// Places the segments and returns the physical entry point (the virtual
/// entry translated through the segment that holds it, or taken as
/// physical when no segment's virtual range does), checked to be loaded.
pub fn place_with_entry(parsed: &Parsed, image: &[u8], place: &mut Placer) -> Result<u64, LoadError> {
    place_segments(parsed, image, place)?;
    let entry = parsed
        .segments
        .iter()
        .find(|s| s.vaddr <= parsed.entry && parsed.entry - s.vaddr < s.filesz)
        .map_or(parsed.entry, |s| parsed.entry - s.vaddr + s.paddr);
    place.entry(entry)?;
    Ok(entry)
}

/// An ELF executable: ELF64 enters in 64-bit mode, ELF32 in 32-bit
/// protected mode, at the physical entry point.
pub fn load(image: &[u8], memory: u64) -> Result<LoadedGuest, LoadError> {
    let parsed = parse(image, Format::Elf)?;
    let mut place = Placer::new(memory);
    let entry = place_with_entry(&parsed, image, &mut place)?;
    let boot =
        if parsed.is64 { entry::long_mode(&mut place, entry)? } else { entry::protected_mode(&mut place, entry)? };
    Ok(place.finish(Format::Elf, boot, parsed.symbols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage::{self, Elf};
    use exitlab_arch::CpuMode;

    #[test]
    fn elf64_loads_segments_bss_entry_and_symbols() {
        let image = testimage::elf(&Elf::hello(0x20_0000));
        let g = load(&image, 4 << 20).unwrap();
        let seg: Vec<_> = g.chunks.iter().filter(|c| c.what.starts_with("ELF segment")).collect();
        assert_eq!(seg.len(), 2);
        assert_eq!((seg[0].gpa, seg[0].bytes.as_slice(), seg[0].zeros), (0x20_0000, &testimage::HELLO_CODE[..], 0));
        assert_eq!((seg[1].gpa, seg[1].bytes.as_slice(), seg[1].zeros), (0x20_1000, &b"data"[..], 0x1000 - 4));
        assert_eq!(g.boot.regs.rip, 0x20_0000);
        assert_eq!(g.boot.mode(), CpuMode::Long);
        assert_eq!(g.symbols.address("hello"), Some(0x20_0000));
        assert_eq!(g.symbols.lookup(0x20_0003).map(|(s, o)| (s.name.as_str(), o)), Some(("hello", 3)));
        assert_eq!(g.memory_needed, 0x20_2000);
    }

    #[test]
    fn elf32_enters_in_protected_mode() {
        let mut e = Elf::hello(0x20_0000);
        e.is64 = false;
        let g = load(&testimage::elf(&e), 4 << 20).unwrap();
        assert_eq!(g.boot.mode(), CpuMode::Protected);
        assert_eq!(g.symbols.address("data"), Some(0x20_1000));
    }

    #[test]
    fn virtual_entry_is_translated_to_physical() {
        let mut e = Elf::hello(0x20_0000);
        for s in &mut e.segments {
            s.vaddr = s.paddr + 0xffff_ffff_8000_0000;
        }
        e.entry = 0xffff_ffff_8020_0002;
        assert_eq!(load(&testimage::elf(&e), 4 << 20).unwrap().boot.regs.rip, 0x20_0002);
    }

    #[test]
    fn malformed_images_name_the_field() {
        let good = testimage::elf(&Elf::hello(0x20_0000));
        let mut e = Elf::hello(0x20_0000);
        e.segments[1].paddr = 0x20_0002;
        assert!(matches!(load(&testimage::elf(&e), 4 << 20), Err(LoadError::Overlap { .. })));
        let mut e = Elf::hello(0x20_0000);
        e.entry = 0x30_0000;
        assert_eq!(load(&testimage::elf(&e), 4 << 20), Err(LoadError::EntryOutside { entry: 0x30_0000 }));
        let e = Elf::hello(0x3f_f000);
        assert!(matches!(load(&testimage::elf(&e), 4 << 20), Err(LoadError::OutsideMemory { .. })));
        let mut bad = good.clone();
        bad[54] = 12; // e_phentsize
        assert_eq!(
            load(&bad, 4 << 20),
            Err(LoadError::BadField {
                format: Format::Elf,
                field: "e_phentsize",
                value: 12,
                why: "not the class's program header size (32 or 56)"
            })
        );
        let e = load(&good[..100], 4 << 20).unwrap_err();
        assert!(matches!(e, LoadError::Truncated { what: "ELF program header table", file_len: 100, .. }), "{e}");
        let mut bad = good.clone();
        bad[5] = 2;
        assert!(matches!(load(&bad, 4 << 20), Err(LoadError::Unsupported { .. })));
        let mut bad = good;
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
        assert!(matches!(load(&bad, 4 << 20), Err(LoadError::Truncated { offset: u64::MAX, .. })));
    }
}

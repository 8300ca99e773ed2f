//! Guest image loaders: a flat binary, ELF64 and ELF32, multiboot v1, the
//! Linux x86 boot protocol (bzImage) and the PVH boot ABI (a vmlinux, or
//! the one a bzImage compresses). A loader reads the image's bytes
//! and returns a [`LoadedGuest`]: the memory to write into guest RAM, the
//! vCPU's entry state, the image's symbols and the RAM it needs. Nothing
//! here touches guest memory or a backend, so the same result boots on the
//! simulator and on KVM, and a test can check it byte for byte.
//!
//! Every malformed image is a [`LoadError`] naming the problem; no input
//! panics, and no allocation is larger than the image, the guest memory
//! size or the command line and modules the caller gave.
#![forbid(unsafe_code)]

mod bzimage;
mod elf;
mod entry;
mod error;
pub mod layout;
mod multiboot;
mod payload;
mod place;
pub mod pvh;
mod symbols;
pub mod testimage;

pub use error::{LoadError, Region};
pub use exitlab_arch::CpuMode;
pub use symbols::{Symbol, Symbols};

use exitlab_arch::BootState;
use std::fmt;

/// An image format, as `--format` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Raw bytes at a given address (no header).
    Flat,
    /// ELF32 or ELF64 executable (PT_LOAD segments).
    Elf,
    /// Multiboot v1 (an ELF or an a.out-kludge binary with a multiboot
    /// header), entered in 32-bit protected mode.
    Multiboot,
    /// Linux bzImage, through the 64-bit boot protocol.
    BzImage,
    /// An ELF with a XEN_ELFNOTE_PHYS32_ENTRY note (a Linux vmlinux), or
    /// the vmlinux a bzImage compresses, through the PVH boot ABI.
    Pvh,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Flat => "flat",
            Format::Elf => "ELF",
            Format::Multiboot => "multiboot",
            Format::BzImage => "bzImage",
            Format::Pvh => "PVH",
        })
    }
}

/// Where and how a flat binary starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatOptions {
    /// Guest-physical address of the first byte.
    pub load: u64,
    /// Guest-physical address of the first instruction.
    pub entry: u64,
    /// The mode the vCPU starts in (long mode gets the loader's identity
    /// map of the low 4 GiB and its GDT).
    pub mode: CpuMode,
}

/// A multiboot module (kvm-unit-tests' environment file is one).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Module {
    pub bytes: Vec<u8>,
    /// The module's string in the multiboot module list.
    pub cmdline: String,
}

/// What the caller knows about the guest beyond the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Guest RAM in bytes, one range from address 0 (at least 2 MiB, at
    /// most 3 GiB: above that the PC's PCI hole begins).
    pub memory: u64,
    /// The format, or `None` to detect it (a flat binary is never
    /// detected).
    pub format: Option<Format>,
    /// The kernel command line (multiboot, bzImage, PVH).
    pub cmdline: String,
    /// Multiboot modules.
    pub modules: Vec<Module>,
    /// The Linux initial RAM disk (bzImage; PVH module 0).
    pub initrd: Option<Vec<u8>>,
    /// Required for [`Format::Flat`].
    pub flat: Option<FlatOptions>,
    /// Where the platform's ACPI RSDP is, for PVH's `rsdp_paddr` and a
    /// bzImage's `boot_params.acpi_rsdp_addr` (`None`: no ACPI tables, or
    /// leave the guest to scan for them).
    pub rsdp: Option<u64>,
}

impl Options {
    /// Options for `memory` bytes of RAM and nothing else.
    pub fn new(memory: u64) -> Options {
        Options {
            memory,
            format: None,
            cmdline: String::new(),
            modules: Vec::new(),
            initrd: None,
            flat: None,
            rsdp: None,
        }
    }
}

/// Bytes to write into guest RAM at `gpa`, followed by `zeros` zero bytes
/// (an ELF segment's .bss). Fresh guest RAM is zero already; RAM that is
/// reused must be cleared over the zeros too.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// What the chunk is, for messages and listings ("ELF segment 0").
    pub what: String,
    pub gpa: u64,
    pub bytes: Vec<u8>,
    pub zeros: u64,
}

impl Chunk {
    /// The exclusive end of the chunk, zeros included.
    pub fn end(&self) -> u64 {
        self.gpa + self.bytes.len() as u64 + self.zeros
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#x}+{:#x}", self.what, self.gpa, self.bytes.len())?;
        if self.zeros != 0 {
            write!(f, " +{:#x} zeros", self.zeros)?;
        }
        Ok(())
    }
}

/// A guest ready to run: what to write, where to start, what it is called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedGuest {
    pub format: Format,
    /// In ascending guest-physical order, never overlapping.
    pub chunks: Vec<Chunk>,
    /// The vCPU's registers, segments and control registers at entry.
    pub boot: BootState,
    /// The image's symbol table (ELF images; empty otherwise).
    pub symbols: Symbols,
    /// The least guest RAM the image runs in: the end of the highest byte
    /// the loader placed or the image says it will use (a bzImage's
    /// `init_size`).
    pub memory_needed: u64,
}

/// The format `image` is in: ELF (multiboot when it carries a multiboot
/// header, else PVH when it has the PVH entry note), bzImage (through its
/// decompressor: PVH is asked for), or a raw multiboot binary. Flat
/// binaries have no signature.
pub fn detect(image: &[u8]) -> Result<Format, LoadError> {
    let has_multiboot = multiboot::find_header(image).is_some();
    if image.starts_with(elf::MAGIC) {
        Ok(if has_multiboot {
            Format::Multiboot
        } else if pvh::has_entry_note(image) {
            Format::Pvh
        } else {
            Format::Elf
        })
    } else if bzimage::is_bzimage(image) {
        Ok(Format::BzImage)
    } else if has_multiboot {
        Ok(Format::Multiboot)
    } else {
        Err(LoadError::UnknownFormat { first_bytes: image.iter().take(8).copied().collect() })
    }
}

/// The uncompressed kernel (an ELF vmlinux) inside bzImage `image`, at
/// most `limit` bytes: the XZ payload the setup header's `payload_offset`
/// and `payload_length` name, decompressed (or an uncompressed ELF
/// payload as it is).
pub fn extract_vmlinux(image: &[u8], limit: u64) -> Result<Vec<u8>, LoadError> {
    payload::extract(image, limit)
}

/// Loads `image` with `options`.
pub fn load(image: &[u8], options: &Options) -> Result<LoadedGuest, LoadError> {
    layout::check_memory(options.memory)?;
    let format = match options.format {
        Some(f) => f,
        None => detect(image)?,
    };
    match format {
        Format::Flat => {
            let flat = options.flat.ok_or(LoadError::FlatNeedsOptions)?;
            load_flat(image, options.memory, flat)
        }
        Format::Elf => elf::load(image, options.memory),
        Format::Multiboot => multiboot::load(image, options),
        Format::BzImage => bzimage::load(image, options),
        Format::Pvh if bzimage::is_bzimage(image) => pvh::load(&extract_vmlinux(image, options.memory)?, options),
        Format::Pvh => pvh::load(image, options),
    }
}

fn load_flat(image: &[u8], memory: u64, flat: FlatOptions) -> Result<LoadedGuest, LoadError> {
    let mut place = place::Placer::new(memory);
    place.image("flat image".into(), flat.load, image, 0)?;
    place.entry(flat.entry)?;
    let boot = match flat.mode {
        CpuMode::Real => entry::real_mode(flat.entry).ok_or(LoadError::BadField {
            format: Format::Flat,
            field: "entry",
            value: flat.entry,
            why: "a real-mode entry must lie below 1 MiB",
        })?,
        CpuMode::Protected => entry::protected_mode(&mut place, flat.entry)?,
        CpuMode::Long => entry::long_mode(&mut place, flat.entry)?,
    };
    Ok(place.finish(Format::Flat, boot, Symbols::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format_and_refuses_the_unknown() {
        assert_eq!(detect(&testimage::elf(&testimage::Elf::hello(0x20_0000))), Ok(Format::Elf));
        assert_eq!(detect(&testimage::elf32_multiboot(0x20_0000)), Ok(Format::Multiboot));
        assert_eq!(detect(&testimage::bzimage(&testimage::BzImage::default())), Ok(Format::BzImage));
        assert_eq!(detect(&testimage::multiboot_kludge(0x10_0000)), Ok(Format::Multiboot));
        assert_eq!(detect(&testimage::pvh_elf(0x20_0000)), Ok(Format::Pvh));
        let bz = testimage::bzimage_with_vmlinux(&testimage::pvh_elf(0x20_0000));
        assert_eq!(detect(&bz), Ok(Format::BzImage), "the decompressor path stays the default");
        let e = detect(b"\x90\x90\xf4").unwrap_err();
        assert_eq!(e, LoadError::UnknownFormat { first_bytes: vec![0x90, 0x90, 0xf4] });
        assert_eq!(detect(&[]).unwrap_err(), LoadError::UnknownFormat { first_bytes: vec![] });
    }

    #[test]
    fn flat_binary_needs_options_and_lands_where_told() {
        let mut o = Options::new(4 << 20);
        o.format = Some(Format::Flat);
        assert_eq!(load(b"\xf4", &o), Err(LoadError::FlatNeedsOptions));
        o.flat = Some(FlatOptions { load: 0x10_0000, entry: 0x10_0001, mode: CpuMode::Protected });
        let g = load(b"\x90\xf4", &o).unwrap();
        let image = g.chunks.iter().find(|c| c.what == "flat image").unwrap();
        assert_eq!((image.gpa, image.bytes.as_slice()), (0x10_0000, &b"\x90\xf4"[..]));
        assert_eq!(g.boot.regs.rip, 0x10_0001);
        assert_eq!(g.boot.mode(), CpuMode::Protected);
        assert_eq!(g.memory_needed, 0x10_0002);
        o.flat = Some(FlatOptions { load: 0x10_0000, entry: 0x10_0002, mode: CpuMode::Protected });
        assert_eq!(load(b"\x90\xf4", &o), Err(LoadError::EntryOutside { entry: 0x10_0002 }));
    }

    #[test]
    fn flat_real_mode_entry_is_cs_ip() {
        let mut o = Options::new(4 << 20);
        o.format = Some(Format::Flat);
        o.flat = Some(FlatOptions { load: 0x7c00, entry: 0x7c00, mode: CpuMode::Real });
        let g = load(&[0xf4; 512], &o).unwrap();
        assert_eq!(g.boot.mode(), CpuMode::Real);
        assert_eq!(g.boot.cs.base + g.boot.regs.rip, 0x7c00);
        assert_eq!(g.chunks.len(), 1, "real mode needs no GDT or page tables");
    }

    #[test]
    fn flat_long_mode_gets_page_tables_and_refuses_overlap_with_them() {
        let mut o = Options::new(4 << 20);
        o.format = Some(Format::Flat);
        o.flat = Some(FlatOptions { load: 0x10_0000, entry: 0x10_0000, mode: CpuMode::Long });
        let g = load(&[0xf4], &o).unwrap();
        assert_eq!(g.boot.mode(), CpuMode::Long);
        assert_eq!(g.boot.cr3, layout::PML4);
        o.flat = Some(FlatOptions { load: 0x2000, entry: 0x2000, mode: CpuMode::Long });
        assert!(matches!(load(&[0xf4], &o), Err(LoadError::Overlap { .. })));
    }
}

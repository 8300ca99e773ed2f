//! Small images of each format, built in code so tests and fuzz seeds need
//! no external toolchain: an ELF32/ELF64 writer (with notes: a PVH
//! vmlinux), a multiboot header, a multiboot a.out-kludge binary and a
//! bzImage-shaped file, with an XZ-compressed vmlinux as Linux builds it. The bytes
//! follow the same specifications the loaders read (gABI, multiboot 0.6.96,
//! Documentation/arch/x86/boot.rst), written independently of the parsers.

/// `mov al, 0; out 0xf4, al; hlt`: report status 0 on isa-debug-exit.
pub const HELLO_CODE: [u8; 5] = [0xb0, 0x00, 0xe6, 0xf4, 0xf4];

/// One PT_LOAD segment.
#[derive(Clone, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub paddr: u64,
    pub bytes: Vec<u8>,
    pub memsz: u64,
}

/// An ELF executable to write.
#[derive(Clone, Debug)]
pub struct Elf {
    pub is64: bool,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// (name, address, size); written as STT_FUNC symbols in section 1.
    pub symbols: Vec<(String, u64, u64)>,
}

impl Elf {
    /// ELF64: code `HELLO_CODE` at `base` (symbol `hello`, the entry), and
    /// a data page at `base + 0x1000` holding "data" then zeros (symbol
    /// `data`).
    pub fn hello(base: u64) -> Elf {
        Elf {
            is64: true,
            entry: base,
            segments: vec![
                Segment { vaddr: base, paddr: base, bytes: HELLO_CODE.to_vec(), memsz: HELLO_CODE.len() as u64 },
                Segment { vaddr: base + 0x1000, paddr: base + 0x1000, bytes: b"data".to_vec(), memsz: 0x1000 },
            ],
            symbols: vec![("hello".into(), base, HELLO_CODE.len() as u64), ("data".into(), base + 0x1000, 4)],
        }
    }
}

/// An ELF note (gABI "Note Section"): owner name, type, descriptor.
#[derive(Clone, Debug)]
pub struct Note {
    /// Without the terminating NUL, which the writer adds.
    pub name: String,
    pub ty: u32,
    pub desc: Vec<u8>,
}

impl Note {
    /// The note's bytes: namesz, descsz, type, then the name and the
    /// descriptor, each padded to 4 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let name = [self.name.as_bytes(), b"\0"].concat();
        let mut b = Vec::new();
        for v in [name.len() as u32, self.desc.len() as u32, self.ty] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&name);
        b.resize(b.len().next_multiple_of(4), 0);
        b.extend_from_slice(&self.desc);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }
}

/// The PVH test vmlinux: `Elf::hello(base)` entered at `base + 1` in
/// 64-bit mode, with a PT_NOTE segment holding a Xen guest-OS note
/// ("linux"), then XEN_ELFNOTE_PHYS32_ENTRY with the 8-byte address
/// `base` (as Linux 6.1 writes it with _ASM_PTR), then a GNU note.
pub fn pvh_elf(base: u64) -> Vec<u8> {
    let mut e = Elf::hello(base);
    e.entry = base + 1;
    let notes = [
        Note { name: "Xen".into(), ty: 6, desc: b"linux\0".to_vec() },
        Note { name: "Xen".into(), ty: 18, desc: base.to_le_bytes().to_vec() },
        Note { name: "GNU".into(), ty: 3, desc: vec![0xab; 20] },
    ];
    elf_with_notes(&e, &notes.iter().flat_map(Note::bytes).collect::<Vec<u8>>())
}

/// Little-endian words of the class's size.
struct Out {
    bytes: Vec<u8>,
    is64: bool,
}

impl Out {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn word(&mut self, v: u64) {
        if self.is64 {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        } else {
            self.u32(v as u32);
        }
    }
    fn align(&mut self, to: usize) {
        self.bytes.resize(self.bytes.len().next_multiple_of(to), 0);
    }
}

/// Writes `elf` (ELF64, or ELF32 when `elf.is64` is false):
/// header, program headers, segment bytes, then .symtab, .strtab and the
/// section header table (null, .text, .symtab, .strtab).
pub fn elf(elf: &Elf) -> Vec<u8> {
    elf_with_notes(elf, &[])
}

/// [`elf`] with `notes` (note bytes, see [`Note::bytes`]) in a PT_NOTE
/// segment after the PT_LOAD segments, unless `notes` is empty.
pub fn elf_with_notes(elf: &Elf, notes: &[u8]) -> Vec<u8> {
    let is64 = elf.is64;
    let (ehsize, phentsize, shentsize, symsize) = if is64 { (64, 56, 64, 24) } else { (52, 32, 40, 16) };
    let phoff = ehsize;
    let phnum = elf.segments.len() + usize::from(!notes.is_empty());
    // Segment data after the program headers, each at a 16-byte boundary.
    let mut offsets = Vec::new();
    let mut at = (phoff + phentsize * phnum).next_multiple_of(16);
    for s in &elf.segments {
        offsets.push(at);
        at = (at + s.bytes.len()).next_multiple_of(16);
    }
    let notes_at = at;
    at = (at + notes.len()).next_multiple_of(16);
    let mut strtab = vec![0u8];
    let mut symtab = Out { bytes: vec![0; symsize], is64 };
    for (name, addr, size) in &elf.symbols {
        let name_at = strtab.len() as u32;
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
        symtab.u32(name_at);
        if is64 {
            symtab.u8(0x12); // STB_GLOBAL, STT_FUNC
            symtab.u8(0);
            symtab.u16(1);
            symtab.word(*addr);
            symtab.word(*size);
        } else {
            symtab.word(*addr);
            symtab.word(*size);
            symtab.u8(0x12);
            symtab.u8(0);
            symtab.u16(1);
        }
    }
    let symtab_at = at;
    let strtab_at = symtab_at + symtab.bytes.len();
    let shoff = (strtab_at + strtab.len()).next_multiple_of(8);

    let mut o = Out { bytes: Vec::new(), is64 };
    o.bytes.extend_from_slice(b"\x7fELF");
    o.u8(if is64 { 2 } else { 1 });
    o.u8(1); // little-endian
    o.u8(1); // EV_CURRENT
    o.bytes.resize(16, 0);
    o.u16(2); // ET_EXEC
    o.u16(if is64 { 62 } else { 3 });
    o.u32(1);
    o.word(elf.entry);
    o.word(phoff as u64);
    o.word(shoff as u64);
    o.u32(0); // e_flags
    o.u16(ehsize as u16);
    o.u16(phentsize as u16);
    o.u16(phnum as u16);
    o.u16(shentsize as u16);
    o.u16(4); // e_shnum
    o.u16(0); // e_shstrndx: no section names
    for (s, &off) in elf.segments.iter().zip(&offsets) {
        o.u32(1); // PT_LOAD
        if is64 {
            o.u32(7);
        }
        o.word(off as u64);
        o.word(s.vaddr);
        o.word(s.paddr);
        o.word(s.bytes.len() as u64);
        o.word(s.memsz);
        if !is64 {
            o.u32(7);
        }
        o.word(0x10);
    }
    if !notes.is_empty() {
        o.u32(4); // PT_NOTE
        if is64 {
            o.u32(4); // PF_R
        }
        for v in [notes_at as u64, 0, 0, notes.len() as u64, notes.len() as u64] {
            o.word(v); // offset, vaddr, paddr, filesz, memsz
        }
        if !is64 {
            o.u32(4);
        }
        o.word(4); // p_align
    }
    for (s, &off) in elf.segments.iter().zip(&offsets) {
        o.bytes.resize(off, 0);
        o.bytes.extend_from_slice(&s.bytes);
    }
    o.bytes.resize(notes_at, 0);
    o.bytes.extend_from_slice(notes);
    o.bytes.resize(symtab_at, 0);
    o.bytes.extend_from_slice(&symtab.bytes);
    o.bytes.extend_from_slice(&strtab);
    o.align(8);
    let text = offsets.first().copied().unwrap_or(0);
    let sections = [
        (0, 0, 0, 0, 0),
        (1, text, elf.segments.first().map_or(0, |s| s.bytes.len()), 0, 0), // .text: SHT_PROGBITS
        (2, symtab_at, symtab.bytes.len(), 3, symsize),                     // .symtab, sh_link .strtab
        (3, strtab_at, strtab.len(), 0, 0),                                 // .strtab
    ];
    for (ty, off, size, link, entsize) in sections {
        o.u32(0); // sh_name
        o.u32(ty);
        o.word(0); // sh_flags
        o.word(0); // sh_addr
        o.word(off as u64);
        o.word(size as u64);
        o.u32(link);
        o.u32(0); // sh_info
        o.word(1);
        o.word(entsize as u64);
    }
    o.bytes
}

/// The multiboot v1 header magic (multiboot specification 0.6.96, 3.1.1).
pub const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;

/// A multiboot header: magic, `flags`, checksum, and with flags bit 16
/// the a.out kludge's five addresses.
pub fn multiboot_header(flags: u32, kludge: Option<[u32; 5]>) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [MULTIBOOT_MAGIC, flags, 0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags)] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in kludge.into_iter().flatten() {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// An ELF32 multiboot image as kvm-unit-tests' .flat files are: one code
/// segment at `base` starting with a multiboot header (flags 0), entry
/// right after it (symbol `start`), and a bss page (symbol `stack`).
pub fn elf32_multiboot(base: u64) -> Vec<u8> {
    let mut code = multiboot_header(0, None);
    let entry = base + code.len() as u64;
    code.extend_from_slice(&HELLO_CODE);
    let len = code.len() as u64;
    elf(&Elf {
        is64: false,
        entry,
        segments: vec![
            Segment { vaddr: base, paddr: base, bytes: code, memsz: len },
            Segment { vaddr: base + 0x1000, paddr: base + 0x1000, bytes: Vec::new(), memsz: 0x1000 },
        ],
        symbols: vec![("start".into(), entry, HELLO_CODE.len() as u64), ("stack".into(), base + 0x1000, 0x1000)],
    })
}

/// A raw multiboot binary loaded with the a.out kludge (flags bit 16):
/// the header at file offset 0 and `load`, the code after it (the entry),
/// the file loaded whole, then a page of bss.
pub fn multiboot_kludge(load: u32) -> Vec<u8> {
    let header_len = 12 + 20;
    let file_len = header_len + HELLO_CODE.len() as u32;
    let kludge = [load, load, load + file_len, load + file_len + 0x1000, load + header_len];
    let mut image = multiboot_header(1 << 16, Some(kludge));
    image.extend_from_slice(&HELLO_CODE);
    image
}

/// The setup-header fields a bzImage-shaped test file sets
/// (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
#[derive(Clone, Debug)]
pub struct BzImage {
    pub setup_sects: u8,
    pub version: u16,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: bool,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    /// Where the compressed kernel lies in `payload`, and its length.
    pub payload_offset: u32,
    pub payload_length: u32,
    /// The protected-mode kernel: the bytes after the setup sectors.
    pub payload: Vec<u8>,
}

impl Default for BzImage {
    /// Protocol 2.15, 64-bit entry, relocatable, 4 setup sectors, a
    /// 4 KiB payload starting with `HELLO_CODE` at +0x200 (the 64-bit
    /// entry), 1 MiB init_size, preferred at 2 MiB.
    fn default() -> Self {
        let mut payload = vec![0u8; 0x1000];
        payload[0x200..0x200 + HELLO_CODE.len()].copy_from_slice(&HELLO_CODE);
        BzImage {
            setup_sects: 4,
            version: 0x020f,
            loadflags: 0x01,
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            relocatable: true,
            xloadflags: 0x1 | 0x2, // XLF_KERNEL_64, XLF_CAN_BE_LOADED_ABOVE_4G
            cmdline_size: 0x7ff,
            pref_address: 0x20_0000,
            init_size: 0x10_0000,
            payload_offset: 0,
            payload_length: 0,
            payload,
        }
    }
}

/// Writes `b`: boot sector and setup sectors (the setup header at 0x1f1),
/// then the payload.
pub fn bzimage(b: &BzImage) -> Vec<u8> {
    let setup = (usize::from(b.setup_sects.max(4)) + 1) * 512;
    let mut f = vec![0u8; setup];
    let mut put = |at: usize, v: &[u8]| f[at..at + v.len()].copy_from_slice(v);
    put(0x1f1, &[b.setup_sects]);
    put(0x1f4, &((b.payload.len() / 16) as u32).to_le_bytes()); // syssize
    put(0x1fe, &0xaa55u16.to_le_bytes());
    put(0x200, &[0xeb, 0x6a]); // jmp: the header ends at 0x202 + 0x6a
    put(0x202, b"HdrS");
    put(0x206, &b.version.to_le_bytes());
    put(0x211, &[b.loadflags]);
    put(0x214, &b.code32_start.to_le_bytes());
    put(0x22c, &b.initrd_addr_max.to_le_bytes());
    put(0x230, &b.kernel_alignment.to_le_bytes());
    put(0x234, &[u8::from(b.relocatable)]);
    put(0x236, &b.xloadflags.to_le_bytes());
    put(0x238, &b.cmdline_size.to_le_bytes());
    put(0x248, &b.payload_offset.to_le_bytes());
    put(0x24c, &b.payload_length.to_le_bytes());
    put(0x258, &b.pref_address.to_le_bytes());
    put(0x260, &b.init_size.to_le_bytes());
    f.extend_from_slice(&b.payload);
    f
}

/// The default bzImage with `vmlinux` as its compressed kernel, as Linux
/// builds one with CONFIG_KERNEL_XZ: XZ with the x86 BCJ filter before
/// LZMA2 and a CRC32 check (scripts/xz_wrap.sh), the uncompressed size
/// appended as 4 little-endian bytes (`size_append`), the whole placed
/// after the default payload's 4 KiB and named by `payload_offset` and
/// `payload_length`. The dictionary is 64 KiB (the kernel's is 32 MiB), so
/// fuzzing and property tests decode quickly.
pub fn bzimage_with_vmlinux(vmlinux: &[u8]) -> Vec<u8> {
    use lzma_rust2::{CheckType, FilterType, XzOptions, XzWriter};
    use std::io::Write;
    let mut options = XzOptions::with_preset(1);
    options.lzma_options.dict_size = 64 << 10;
    options.set_check_sum_type(CheckType::Crc32);
    options.prepend_pre_filter(FilterType::BcjX86, 0);
    let mut w = XzWriter::new(Vec::new(), options).expect("an in-memory XZ writer");
    w.write_all(vmlinux).expect("writes to a Vec");
    let mut xz = w.finish().expect("writes to a Vec");
    xz.extend_from_slice(&(vmlinux.len() as u32).to_le_bytes());
    let mut b = BzImage::default();
    b.payload_offset = b.payload.len() as u32;
    b.payload_length = xz.len() as u32;
    b.payload.extend_from_slice(&xz);
    bzimage(&b)
}

/// One image of each format the loaders take, built once (the XZ one
/// costs a compression): the seeds of the loader's property tests and its
/// fuzz target.
pub fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            elf(&Elf::hello(0x20_0000)),
            elf32_multiboot(0x20_0000),
            multiboot_kludge(0x10_0000),
            bzimage(&BzImage::default()),
            pvh_elf(0x20_0000),
            bzimage_with_vmlinux(&pvh_elf(0x20_0000)),
        ]
    })
}

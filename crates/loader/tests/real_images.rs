//! The loaders on images built by others: kvm-unit-tests' x86 tests (ELF32
//! multiboot .flat files and their ELF64 .elf twins) and Debian 12's
//! kernel, from ../shared beside the repository (CI has it; a worktree
//! elsewhere names it with EXITLAB_SHARED). A missing file skips its test
//! with the reason printed. Expected numbers come from
//! `readelf -l -s` on the same files and from the bzImage's setup header
//! (`xxd -s 0x1f0`), as the comments say.

use exitlab_arch::{CpuMode, Regs};
use exitlab_loader::{load, Format, LoadedGuest, Module, Options};
use std::path::PathBuf;

fn shared_dir() -> PathBuf {
    std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn shared(rel: &str) -> Option<Vec<u8>> {
    let path = shared_dir().join(rel);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("skipped: {} is not readable ({e}); ../shared is beside the repository in CI", path.display());
            None
        }
    }
}

fn describe(g: &LoadedGuest) -> String {
    let mut s = format!(
        "{} entry: mode {:?} rip {:#x} rax {:#x} rbx {:#x} rsi {:#x} cs {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x}\n",
        g.format,
        g.boot.mode(),
        g.boot.regs.rip,
        g.boot.regs.gpr[Regs::RAX],
        g.boot.regs.gpr[Regs::RBX],
        g.boot.regs.gpr[Regs::RSI],
        g.boot.cs.selector,
        g.boot.cr0,
        g.boot.cr3,
        g.boot.cr4,
        g.boot.efer
    );
    for c in &g.chunks {
        s += &format!("  {c:?} (to {:#x})\n", c.end());
    }
    s += &format!("  symbols: {}, memory needed {:#x}\n", g.symbols.len(), g.memory_needed);
    s
}

fn unit_test_options() -> Options {
    let mut o = Options::new(128 << 20);
    o.cmdline = "setjmp.flat".into();
    o.modules = vec![Module { bytes: b"NR_CPUS=1\nMEMSIZE=128\nTEST_DEVICE=0\n".to_vec(), cmdline: String::new() }];
    o
}

fn chunk<'a>(g: &'a LoadedGuest, what: &str) -> &'a exitlab_loader::Chunk {
    g.chunks.iter().find(|c| c.what == what).unwrap_or_else(|| panic!("no chunk {what}"))
}

#[test]
fn kvm_unit_tests_setjmp_flat_loads_as_multiboot() {
    let Some(image) = shared("kvm-unit-tests/x86/setjmp.flat") else { return };
    let g = load(&image, &unit_test_options()).unwrap();
    println!("{}", describe(&g));
    assert_eq!(g.format, Format::Multiboot);
    // readelf -l setjmp.flat: LOAD 0xb0 -> 0x4000b0 (0x6608 bytes), LOAD
    // 0x7000 -> 0x407000 (0xe2ba bytes, 0xc33048 in memory); entry 0x4000bc.
    let text = chunk(&g, "ELF segment 0");
    assert_eq!((text.gpa, text.bytes.len(), text.zeros), (0x40_00b0, 0x6608, 0));
    assert_eq!(text.bytes[..], image[0xb0..0xb0 + 0x6608]);
    let data = chunk(&g, "ELF segment 1");
    assert_eq!((data.gpa, data.bytes.len() as u64, data.zeros), (0x40_7000, 0xe2ba, 0xc3_3048 - 0xe2ba));
    assert_eq!(g.boot.mode(), CpuMode::Protected);
    assert_eq!(g.boot.regs.rip, 0x40_00bc);
    assert_eq!(g.boot.regs.gpr[Regs::RAX], 0x2bad_b002);
    // The env module goes to the first page after the bss (0x103a048).
    assert_eq!(chunk(&g, "multiboot module 0").gpa, 0x103_b000);
    assert_eq!(g.boot.regs.gpr[Regs::RBX], 0x103_c000);
    // readelf -s setjmp.flat.
    assert_eq!(g.symbols.address("start64"), Some(0x40_0148));
    assert_eq!(g.symbols.address("mb_boot_info"), Some(0x40_e000));
    assert_eq!(g.symbols.lookup(0x40_01d0).map(|(s, o)| (s.name.as_str(), o)), Some(("main", 8)));
}

#[test]
fn kvm_unit_tests_elf64_twin_loads_the_same_way() {
    let (Some(flat), Some(elf)) = (shared("kvm-unit-tests/x86/setjmp.flat"), shared("kvm-unit-tests/x86/setjmp.elf"))
    else {
        return;
    };
    // The .elf carries the same multiboot header, so it is detected as
    // multiboot and entered in 32-bit mode, as its `start` expects.
    let (a, b) = (load(&flat, &unit_test_options()).unwrap(), load(&elf, &unit_test_options()).unwrap());
    assert_eq!(b.format, Format::Multiboot);
    assert_eq!(a.chunks, b.chunks);
    assert_eq!(a.boot, b.boot);
    assert_eq!(a.symbols, b.symbols);
}

#[test]
fn every_kvm_unit_test_image_loads() {
    let dir = shared_dir().join("kvm-unit-tests/x86");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("skipped: {} is not there; ../shared is beside the repository in CI", dir.display());
        return;
    };
    let mut loaded = 0;
    for e in entries.flatten() {
        let path = e.path();
        if !matches!(path.extension().and_then(|x| x.to_str()), Some("flat" | "elf")) {
            continue;
        }
        let image = std::fs::read(&path).unwrap();
        let g = load(&image, &unit_test_options()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(g.format, Format::Multiboot, "{}", path.display());
        assert_eq!(g.boot.regs.gpr[Regs::RAX], 0x2bad_b002);
        assert!(g.symbols.address("start").is_some(), "{}", path.display());
        assert!(g.memory_needed <= 128 << 20);
        loaded += 1;
    }
    // 49 tests built, a .flat and a .elf each (NOTES.md).
    assert_eq!(loaded, 98);
}

#[test]
fn debian_bzimage_loads_with_the_busybox_initrd() {
    let (Some(kernel), Some(initrd)) = (shared("linux/vmlinuz-6.1.0-57-amd64"), shared("linux/initrd-busybox.gz"))
    else {
        return;
    };
    let mut o = Options::new(256 << 20);
    o.cmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr acpi=off pci=off nosmp noapic".into();
    o.initrd = Some(initrd.clone());
    let g = load(&kernel, &o).unwrap();
    println!("{}", describe(&g));
    assert_eq!(g.format, Format::BzImage);
    // Setup header (xxd -s 0x1f0): setup_sects 0x27, so the kernel starts
    // at file offset 40 * 512; code32_start 0x100000.
    let k = chunk(&g, "bzImage kernel");
    assert_eq!((k.gpa, k.bytes.len()), (0x10_0000, kernel.len() - 40 * 512));
    assert_eq!(g.boot.mode(), CpuMode::Long);
    assert_eq!((g.boot.regs.rip, g.boot.regs.gpr[Regs::RSI]), (0x10_0200, 0x7000));
    // Relocatable, kernel_alignment 2 MiB, pref_address 0x1000000,
    // init_size 0x3f98000: it runs from 16 MiB up to 0x4f98000.
    let rd = chunk(&g, "initrd");
    assert_eq!(rd.gpa, ((256 << 20) - initrd.len() as u64) & !0xfff);
    assert!(rd.gpa >= 0x4f9_8000);
    let zp = chunk(&g, "zero page");
    assert_eq!(zp.bytes[0x1f1], 0x27);
    assert_eq!(u16::from_le_bytes([zp.bytes[0x206], zp.bytes[0x207]]), 0x020f);
    assert_eq!(zp.bytes[0x210], 0xff, "type_of_loader");
    assert_eq!(u32::from_le_bytes(zp.bytes[0x218..0x21c].try_into().unwrap()), rd.gpa as u32, "ramdisk_image");
    // Too little memory for init_size is refused before anything runs.
    let small = load(&kernel, &Options::new(64 << 20)).unwrap_err();
    assert!(small.to_string().contains("kernel working memory (init_size)"), "{small}");
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn debian_vmlinux_extracts_and_boots_through_pvh() {
    let (Some(kernel), Some(initrd)) = (shared("linux/vmlinuz-6.1.0-57-amd64"), shared("linux/initrd-busybox.gz"))
    else {
        return;
    };
    let vmlinux = exitlab_loader::extract_vmlinux(&kernel, 256 << 20).unwrap();
    // The payload's appended size, and `readelf -h` on the file Python's
    // lzma module decompresses from the same payload: ELF64, little-endian,
    // ET_EXEC, EM_X86_64, entry 0x1000000 (startup_64), program headers at
    // 64, five of them.
    assert_eq!(vmlinux.len(), 65_906_612);
    assert_eq!(&vmlinux[..7], b"\x7fELF\x02\x01\x01");
    assert_eq!((u16_at(&vmlinux, 16), u16_at(&vmlinux, 18)), (2, 62));
    assert_eq!((u64_at(&vmlinux, 24), u64_at(&vmlinux, 32), u16_at(&vmlinux, 56)), (0x100_0000, 64, 5));
    let mut o = Options::new(256 << 20);
    o.format = Some(Format::Pvh);
    o.cmdline = "console=ttyS0 nokaslr".into();
    o.initrd = Some(initrd.clone());
    let g = load(&kernel, &o).unwrap();
    println!("{}", describe(&g));
    assert_eq!(g.format, Format::Pvh);
    // `readelf -n`: the Xen note of type 18 (PHYS32_ENTRY) holds
    // 0x1000850, pvh_start_xen's physical address.
    assert_eq!((g.boot.regs.rip, g.boot.regs.gpr[Regs::RBX]), (0x100_0850, 0x6000));
    assert_eq!(g.boot.mode(), CpuMode::Protected);
    // `readelf -l`: four PT_LOADs at their physical addresses.
    let loads: Vec<_> =
        g.chunks.iter().filter(|c| c.what.starts_with("ELF segment")).map(|c| (c.gpa, c.bytes.len())).collect();
    assert_eq!(
        loads,
        [(0x100_0000, 0x18e_acdc), (0x2a0_0000, 0x64_4000), (0x304_4000, 0x3_5000), (0x307_9000, 0x198_7000)]
    );
    assert_eq!(chunk(&g, "ELF segment 0").bytes[..], vmlinux[0x20_0000..0x20_0000 + 0x18e_acdc]);
    let rd = chunk(&g, "initrd");
    assert_eq!((rd.gpa, rd.bytes.len()), (((256 << 20) - initrd.len() as u64) & !0xfff, initrd.len()));
    // The module list names it as module 0.
    let modlist = chunk(&g, "PVH module list");
    assert_eq!((u64_at(&modlist.bytes, 0), u64_at(&modlist.bytes, 8)), (rd.gpa, initrd.len() as u64));
    // Loading the vmlinux itself gives the same guest.
    let mut direct = o.clone();
    direct.format = None;
    assert_eq!(load(&vmlinux, &direct).unwrap(), g);
    // The bzImage is still booted through its decompressor unless told.
    assert_eq!(load(&kernel, &direct).unwrap().format, Format::BzImage);
}

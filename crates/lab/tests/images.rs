//! Images from files, end to end on both backends: the project's own small
//! images in each format (built in code by exitlab-loader's `testimage`:
//! an ELF64, an ELF32 multiboot image and a bzImage-shaped file) boot on
//! the PC platform and end on isa-debug-exit with exact exits; and the
//! time limits that stop a guest that never exits, on KVM (the vCPU is
//! kicked out of KVM_RUN) and on the simulator (host time checked at the
//! VMM's wake-ups). KVM cases skip, with the reason, without a usable KVM.

use exitlab_arch::ExitReason;
use exitlab_lab::backend::BackendSpec;
use exitlab_lab::image::{self, ImageRequest};
use exitlab_loader::testimage::{self, BzImage, Elf, Segment};
use exitlab_loader::Format;
use exitlab_vmm::{Access, GuestError, Outcome, RunOptions, RunReport};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `mov dx, 0x3f8`, "hi\n" byte by byte to COM1, `mov al, 0; out 0xf4,
/// al; hlt`: the same bytes in 32-bit and 64-bit mode. Four port exits on
/// every backend: three serial writes and isa-debug-exit.
const HI: [u8; 18] =
    [0x66, 0xba, 0xf8, 0x03, 0xb0, b'h', 0xee, 0xb0, b'i', 0xee, 0xb0, b'\n', 0xee, 0xb0, 0x00, 0xe6, 0xf4, 0xf4];
/// `jmp $`: a guest that never exits.
const SPIN: [u8; 2] = [0xeb, 0xfe];

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exitlab-lab-images-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn elf64(code: &[u8]) -> Vec<u8> {
    let base = 0x20_0000;
    testimage::elf(&Elf {
        is64: true,
        entry: base,
        segments: vec![Segment { vaddr: base, paddr: base, bytes: code.to_vec(), memsz: code.len() as u64 }],
        symbols: vec![("hi".into(), base, code.len() as u64)],
    })
}

/// kvm-unit-tests' shape: ELF32, multiboot header first, 32-bit entry.
fn elf32_multiboot(code: &[u8]) -> Vec<u8> {
    let base = 0x20_0000;
    let mut bytes = testimage::multiboot_header(0, None);
    let entry = base + bytes.len() as u64;
    bytes.extend_from_slice(code);
    let len = bytes.len() as u64;
    testimage::elf(&Elf {
        is64: false,
        entry,
        segments: vec![Segment { vaddr: base, paddr: base, bytes, memsz: len }],
        symbols: vec![("start".into(), entry, code.len() as u64)],
    })
}

/// A bzImage whose 64-bit entry (+0x200 into the protected-mode kernel)
/// runs `code`.
fn bzimage(code: &[u8]) -> Vec<u8> {
    let mut b = BzImage::default();
    b.payload[0x200..0x200 + code.len()].copy_from_slice(code);
    testimage::bzimage(&b)
}

fn kvm(max_time: Option<Duration>) -> Option<BackendSpec> {
    if let Err(why) = exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        eprintln!("skipping KVM case: {why}");
        return None;
    }
    let device = exitlab_kvm::device_path();
    Some(BackendSpec::Kvm { device, max_time, seccomp: true })
}

fn sim() -> BackendSpec {
    BackendSpec::sim(exitlab_sim::profile::Profile::load("modern").unwrap(), 0)
}

fn run(spec: &BackendSpec, file: &str, bytes: &[u8], options: &RunOptions) -> Result<RunReport, String> {
    let d = temp(file);
    let path = d.join(file);
    std::fs::write(&path, bytes).unwrap();
    let loaded = image::load(&ImageRequest::new(&path)).map_err(|e| e.to_string())?;
    spec.run(&loaded.boot, options).map_err(|e| e.to_string())
}

/// What every format's image must do: print "hi", end with code 0 on
/// isa-debug-exit (QEMU status 1), four port exits in the VMM's view.
fn says_hi(r: &RunReport) {
    says_hi_after_firmware(r, 0, 0);
}

/// As [`says_hi`], after the firmware's `io` port exits and `apic` APIC
/// writes (exitlab_vmm::firmware: 13 OUTs to the PICs and the PIT, three
/// APIC registers), which reach the VMM on the simulator only.
fn says_hi_after_firmware(r: &RunReport, io: u64, apic: u64) {
    assert_eq!(r.outcome, Outcome::DebugExit { code: 0, status: 1 });
    assert_eq!(r.console(), "hi\n");
    let all = r.accountant.all();
    assert_eq!(all.samples(ExitReason::IoInstruction), 4 + io);
    assert_eq!(all.samples(ExitReason::ApicWrite), apic);
    assert_eq!(all.total_exits(), 4 + io + apic);
    assert_eq!((all.ports[&0x3f8].exits, all.ports[&0xf4].exits), (3, 1));
    assert_eq!(all.ports[&0xf4].device, "debug-exit");
    if io > 0 {
        // ICW1 to 0x20/0xa0; ICW2-ICW4 and OCW1 to 0x21/0xa1; the PIT's
        // control word, then the count's LSB and MSB.
        let pic = [0x20, 0x21, 0xa0, 0xa1].map(|p| all.ports[&p].exits);
        assert_eq!((pic, all.ports[&0x43].exits, all.ports[&0x40].exits), ([1, 4, 1, 4], 1, 2));
    }
}

#[test]
fn an_elf64_image_says_hi_on_both_backends() {
    let r = run(&sim(), "hi.elf", &elf64(&HI), &RunOptions::default()).unwrap();
    says_hi(&r);
    // The run ends where the guest stopped: past the OUT, at the HLT.
    assert_eq!(r.regs.rip, 0x20_0000 + HI.len() as u64 - 1);
    if let Some(k) = kvm(None) {
        says_hi(&run(&k, "hi.elf", &elf64(&HI), &RunOptions::default()).unwrap());
    }
}

#[test]
fn a_bzimage_enters_at_its_64_bit_entry_and_says_hi() {
    says_hi(&run(&sim(), "bzImage", &bzimage(&HI), &RunOptions::default()).unwrap());
    if let Some(k) = kvm(None) {
        says_hi(&run(&k, "bzImage", &bzimage(&HI), &RunOptions::default()).unwrap());
    }
}

#[test]
fn an_elf32_multiboot_image_enters_in_protected_mode_and_says_hi_on_both_backends() {
    // After the firmware's POST: on the modern profile (APICv) each APIC
    // register write is a trap-like APIC_WRITE.
    let r = run(&sim(), "hi.flat", &elf32_multiboot(&HI), &RunOptions::default()).unwrap();
    says_hi_after_firmware(&r, 13, 3);
    if let Some(k) = kvm(None) {
        // There the POST's OUTs and APIC writes reach the host kernel's
        // PIC, PIT and APIC: no userspace exits.
        says_hi(&run(&k, "hi.flat", &elf32_multiboot(&HI), &RunOptions::default()).unwrap());
    }
}

#[test]
fn exits_by_function_name_the_image_symbol_the_exits_are_in() {
    let d = temp("sites");
    let path = d.join("hi.elf");
    std::fs::write(&path, elf64(&HI)).unwrap();
    let loaded = image::load(&ImageRequest::new(&path)).unwrap();
    let options = RunOptions { exit_sites: true, ..RunOptions::default() };
    let r = sim().run(&loaded.boot, &options).unwrap();
    let rows = r.sites.by_function(None, &|rip| loaded.function(rip), 10);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].function.as_str(), rows[0].exits, rows[0].sites), ("hi", 4, 4));
}

#[test]
fn a_guest_that_never_exits_is_stopped_by_kvms_time_limit_where_it_spins() {
    let Some(k) = kvm(Some(Duration::from_millis(300))) else { return };
    let start = Instant::now();
    let r = run(&k, "spin.elf", &elf64(&SPIN), &RunOptions::default()).unwrap();
    let took = start.elapsed();
    let Outcome::GuestError(GuestError::Runaway(why)) = &r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!(why, "time limit of 300ms reached (host time) at rip 0x200000");
    assert_eq!(r.regs.rip, 0x20_0000);
    assert!(took >= Duration::from_millis(300), "stopped after {took:?}");
}

#[test]
fn a_guest_that_never_exits_is_stopped_on_the_simulator_by_host_time() {
    let mut options = RunOptions::default();
    options.limits.max_host_time = Some(Duration::from_millis(200));
    let start = Instant::now();
    let r = run(&sim(), "spin.elf", &elf64(&SPIN), &options).unwrap();
    let Outcome::GuestError(GuestError::Runaway(why)) = &r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!(why, "host time limit of 0.2 s reached at rip 0x200000 after 0 exits: no exit yet (--max-host-time)");
    assert!(start.elapsed() >= Duration::from_millis(200));
}

/// ../shared/linux (EXITLAB_SHARED names another ../shared), or `None`
/// with the reason printed.
fn shared_linux() -> Option<PathBuf> {
    let dir = std::env::var_os("EXITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("linux");
    if dir.join("vmlinuz-6.1.0-57-amd64").is_file() && dir.join("initrd-busybox.gz").is_file() {
        Some(dir)
    } else {
        println!(
            "skipped: {} has no vmlinuz-6.1.0-57-amd64 and initrd; ../shared is beside the repository in CI",
            dir.display()
        );
        None
    }
}

/// Port accesses in `r`'s trace: (port, IN, data) in order.
fn port_accesses(r: &RunReport) -> Vec<(u16, bool, u32)> {
    r.trace
        .iter()
        .filter_map(|e| match e.access {
            Access::Port { port, is_in, data, .. } => Some((port, is_in, data)),
            _ => None,
        })
        .collect()
}

/// IOAPIC redirection-table writes in `r`'s trace, per pin: writes to
/// IOWIN (0xfec00010) while IOREGSEL (0xfec00000) selects 0x10 + 2n or
/// 0x11 + 2n.
fn ioapic_redirection_writes(r: &RunReport) -> [u32; 24] {
    let (mut select, mut pins) = (0u64, [0u32; 24]);
    for e in &r.trace {
        match e.access {
            Access::Mmio { gpa: 0xfec0_0000, is_write: true, data, .. } => select = data & 0xff,
            Access::Mmio { gpa: 0xfec0_0010, is_write: true, .. } if (0x10..0x40).contains(&select) => {
                pins[((select - 0x10) / 2) as usize] += 1
            }
            _ => {}
        }
    }
    pins
}

/// Debian's kernel with ACPI on (the README's command line less acpi=off,
/// noapic and nosmp: on x86 `nosmp` also turns the IOAPIC off,
/// arch_disable_smp_support()) through its PVH entry, on the modern
/// profile: it reads the MADT, routes the ISA IRQs through the IOAPIC
/// (the PIT's IRQ 0 on pin 2 by the MADT's override, the SCI on pin 9
/// level-triggered), ticks on the local APIC's TSC-deadline timer, and
/// busybox's `poweroff -f` ends the run through PM1a_CNT's SLP_EN with
/// sleep type 0 (the DSDT's \_S5). Counts are this kernel's on the
/// simulator, which repeats them exactly.
#[test]
fn debians_kernel_boots_with_acpi_through_the_ioapic_and_powers_off_through_s5() {
    let Some(dir) = shared_linux() else { return };
    let mut request = ImageRequest::new(dir.join("vmlinuz-6.1.0-57-amd64"));
    request.format = Some(Format::Pvh);
    request.cmdline =
        "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr pci=off tsc=reliable lpj=9781756 reboot=t".into();
    request.initrd = Some(std::fs::read(dir.join("initrd-busybox.gz")).unwrap());
    let loaded = image::load(&request).unwrap();
    let r = sim().run(&loaded.boot, &RunOptions { trace: true, ..Default::default() }).unwrap();
    let console = r.console();
    assert_eq!(r.outcome, Outcome::PowerOff, "{console}");
    for line in [
        "ACPI: PM-Timer IO Port: 0x608",
        "IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23",
        "ACPI: Using IOAPIC for interrupt routing",
        "ACPI: PM: (supports S0 S5)",
        "clocksource: acpi_pm: mask: 0xffffff",
        "EXITLAB-MARKER: powering off",
        "ACPI: PM: Preparing to enter system sleep state S5",
    ] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    // /proc/interrupts: every ISA IRQ on the IOAPIC; the SCI, idle, never
    // fired; no ACPI error (a PM1_EN bit that did not stick).
    for line in ["  0:         19   IO-APIC   2-edge      timer", "  9:          0   IO-APIC   9-fasteoi   acpi"] {
        assert!(console.contains(line), "{line:?} missing from:\n{console}");
    }
    assert!(!console.contains("XT-PIC") && !console.contains("ACPI Error"), "{console}");
    let ports = port_accesses(&r);
    // ACPICA's sleep (acpi_hw_legacy_sleep): PM1a_CNT written with
    // SLP_TYP first, then with SLP_EN (bit 13) too; SCI_EN stays set.
    let pm1_cnt: Vec<u32> = ports.iter().filter(|p| p.0 == 0x604 && !p.1).map(|p| p.2).collect();
    assert_eq!(pm1_cnt, [0x0001, 0x2001]);
    // The PM timer, read by the acpi_pm clocksource's checks.
    assert_eq!(ports.iter().filter(|p| p.0 == 0x608 && p.1).count(), 26);
    // Each entry cleared (high and low dword) at setup and at shutdown;
    // the pins in use (1, 2, 4, 8, 9, 12) programmed and masked on top.
    let pins = ioapic_redirection_writes(&r);
    for (pin, &n) in pins.iter().enumerate() {
        if ![1, 2, 4, 8, 9, 12].contains(&pin) {
            assert_eq!(n, 4, "pin {pin}");
        }
    }
    assert_eq!(pins.iter().sum::<u32>(), 145);
    // The tick: 305 local APIC timer interrupts and one write to the
    // timer's initial count (TMICT, 0x380: lapic_timer_shutdown's 0) in the
    // whole boot; the deadlines went to IA32_TSC_DEADLINE instead.
    assert!(console.contains("LOC:        305   Local timer interrupts"), "{console}");
    let apic_write = |offset| {
        r.trace.iter().filter(|e| e.record.reason == ExitReason::ApicWrite && e.record.qualification == offset).count()
    };
    assert_eq!(apic_write(0x380), 1);
}

//! `exitlab stat --image` and `exitlab suite` as a user runs them: broken
//! images of each kind give one line and exit status 2; a working image
//! prints its console, its exits, its exits by guest function and who
//! serves the PC's devices; a suite of the project's own small images gets
//! one line per test, verdicts with reasons, a summary and JSON.

mod common;

use common::{assert_usage_error, exitlab, stderr, stdout, temp_dir};
use exitlab_loader::testimage::{self, Elf, Segment};
use std::path::{Path, PathBuf};

const BASE: u64 = 0x20_0000;

/// Code that prints `text` on COM1 (the same bytes in 32- and 64-bit
/// mode).
fn say(text: &str) -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03];
    for b in text.bytes() {
        c.extend_from_slice(&[0xb0, b, 0xee]);
    }
    c
}

/// Code that prints `text` on COM1 and writes `code` to isa-debug-exit,
/// then halts.
fn say_and_exit(text: &str, code: u8) -> Vec<u8> {
    let mut c = say(text);
    c.extend_from_slice(&[0xb0, code, 0xe6, 0xf4, 0xf4]);
    c
}

/// Code that prints `text` on COM1 and then spins for ever (`jmp $`), as
/// Linux does after a panic without `panic=N`.
fn say_and_spin(text: &str) -> Vec<u8> {
    let mut c = say(text);
    c.extend_from_slice(&[0xeb, 0xfe]);
    c
}

fn elf64(segments: Vec<Segment>, entry: u64) -> Vec<u8> {
    let symbols = segments.iter().enumerate().map(|(i, s)| (format!("seg{i}"), s.vaddr, s.memsz)).collect();
    testimage::elf(&Elf { is64: true, entry, segments, symbols })
}

fn code_at(addr: u64, bytes: Vec<u8>) -> Segment {
    let memsz = bytes.len() as u64;
    Segment { vaddr: addr, paddr: addr, bytes, memsz }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn stat_image(path: &Path, more: &[&str]) -> std::process::Output {
    let mut args = vec!["stat", "--image", path.to_str().unwrap()];
    args.extend_from_slice(more);
    exitlab(&args)
}

#[test]
fn broken_images_of_each_kind_get_one_line_and_status_2() {
    let d = temp_dir("broken-images");
    let good = elf64(vec![code_at(BASE, say_and_exit("", 0))], BASE);
    let mut cut = good.clone();
    cut.truncate(70);
    let cut = write(&d, "cut.elf", &cut);
    assert_usage_error(&stat_image(&cut, &[]), "truncated image");
    let overlap = elf64(vec![code_at(BASE, vec![0x90; 0x100]), code_at(BASE + 0x80, vec![0xf4; 0x10])], BASE);
    assert_usage_error(&stat_image(&write(&d, "overlap.elf", &overlap), &[]), "overlaps");
    let outside = elf64(vec![code_at(BASE, say_and_exit("", 0))], BASE + 0x1000);
    assert_usage_error(&stat_image(&write(&d, "entry.elf", &outside), &[]), "entry point 0x201000 is outside");
    let big = elf64(vec![code_at(200 << 20, say_and_exit("", 0))], 200 << 20);
    let big = write(&d, "big.elf", &big);
    assert_usage_error(&stat_image(&big, &[]), "does not fit in guest RAM");
    assert_eq!(stat_image(&big, &["--memory", "256M"]).status.code(), Some(0), "fits in 256 MiB");
    let junk = write(&d, "junk.bin", b"\x7fELG not an image at all");
    assert_usage_error(&stat_image(&junk, &[]), "unknown image format");
    assert_usage_error(&stat_image(&junk, &["--format", "flat", "--entry", "0x300000"]), "entry point");
    assert_usage_error(&stat_image(&cut, &["--memory", "lots"]), "--memory");
    assert_usage_error(&stat_image(&d.join("absent.elf"), &[]), "absent.elf");
    std::fs::write(d.join("cut.elf.toml"), "platform = \"pc\"\nnics = []\n").unwrap();
    assert_usage_error(&stat_image(&cut, &[]), "cut.elf.toml:2: `nics`");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_image_prints_its_console_exits_functions_and_platform() {
    let d = temp_dir("image-stat");
    let hi = write(&d, "hi.elf", &elf64(vec![code_at(BASE, say_and_exit("hello\n", 0))], BASE));
    let o = stat_image(&hi, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("hello\n\nAnalyze events"), "{out}");
    assert!(out.contains("IO_INSTRUCTION                7"), "6 bytes and the exit: {out}");
    let functions = out.split("Exits by guest function").nth(1).unwrap();
    let row: Vec<&str> = functions.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(row, ["seg0", "7", "100.00%", "7", "IO_INSTRUCTION", "7"], "{out}");
    let pit = out.lines().find(|l| l.starts_with("  8254 PIT, port 0x61 ")).unwrap();
    assert!(pit.ends_with(" exitlab model"), "{out}");
    let o = stat_image(&hi, &["--json", "--top", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["debug_exit"], 0);
    assert_eq!(v["outcome"]["status"], 1);
    assert_eq!(v["console"], "hello\n");
    assert_eq!(v["functions"][0]["function"], "seg0");
    assert_eq!(v["functions"][0]["reasons"]["IO_INSTRUCTION"], 7);
    assert_eq!(v["platform"][0]["served_by"], "exitlab model");
    // A non-zero code is the guest's failure, QEMU's status on stderr.
    let fail = write(&d, "fail.elf", &elf64(vec![code_at(BASE, say_and_exit("", 1))], BASE));
    let o = stat_image(&fail, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "exitlab: guest wrote 1 to isa-debug-exit (QEMU status 3)\n");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_spinning_image_stops_at_the_time_limit_on_kvm_and_says_where() {
    if let Err(why) = exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        eprintln!("skipping KVM case: {why}");
        return;
    }
    let d = temp_dir("image-spin");
    let spin = write(&d, "spin.elf", &elf64(vec![code_at(BASE, vec![0xeb, 0xfe])], BASE));
    let o = stat_image(&spin, &["--backend", "kvm", "--max-time", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "exitlab: stopped: time limit of 300ms reached (host time) at rip 0x200000, in seg0\n");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_suite_of_small_images_gets_a_verdict_per_test_and_json() {
    let d = temp_dir("suite");
    let image = |name: &str, code: Vec<u8>| write(&d, name, &elf64(vec![code_at(BASE, code)], BASE));
    image("pass.elf", say_and_exit("PASS: one\nPASS: two\nSKIP: three\n", 0));
    image("fail.elf", say_and_exit("PASS: one\nFAIL: two\n", 1));
    image("skip.elf", say_and_exit("SKIP: all\n", 38));
    image("spin.elf", vec![0xeb, 0xfe]);
    let cfg = "[pass]\nfile = pass.elf\n\n[fail]\nfile = fail.elf\n\n[skip]\nfile = skip.elf\n\n\
               [spin]\nfile = spin.elf\ntimeout = 1\n\n[pair]\nfile = pass.elf\nsmp = 2\n\n\
               [nested]\nfile = pass.elf\nqemu_params = -cpu max,+vmx\n";
    std::fs::write(d.join("unittests.cfg"), cfg).unwrap();
    let o = exitlab(&["suite", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "a failure and a time-out: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    let verdict = |i: usize| lines[i].split_whitespace().nth(1).unwrap();
    assert_eq!(
        [verdict(0), verdict(1), verdict(2), verdict(3), verdict(4), verdict(5)],
        ["PASS", "FAIL", "SKIP", "TIMEOUT", "n/a", "n/a"]
    );
    assert!(lines[0].contains("   2/0/1  exits: IO_INSTRUCTION 33"), "32 bytes and the exit: {}", lines[0]);
    assert!(lines[1].ends_with("(exit status 3)"), "{}", lines[1]);
    assert!(lines[3].contains("host time limit of 1 s reached at rip 0x200000"), "{}", lines[3]);
    assert!(lines[4].ends_with("needs 2 vCPUs (exitlab runs 1)"), "{}", lines[4]);
    assert!(lines[5].ends_with("nested VMX/SVM"), "{}", lines[5]);
    assert!(lines[6].starts_with("6 tests: 1 PASS, 1 FAIL, 1 SKIP, 1 TIMEOUT, 2 n/a;"), "{}", lines[6]);
    let o = exitlab(&["suite", d.join("unittests.cfg").to_str().unwrap(), "--json", "-j", "2"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tests = v["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 6);
    assert_eq!(tests[0]["name"], "pass");
    assert_eq!(tests[0]["checks"][2], serde_json::json!({"name": "three", "verdict": "SKIP"}));
    assert_eq!(tests[0]["exits"]["exits"][0]["reason"], "IO_INSTRUCTION");
    assert_eq!(tests[1]["verdict"], "FAIL");
    assert_eq!(tests[4]["reason"], "needs 2 vCPUs (exitlab runs 1)");
    assert_eq!(v["summary"]["timeout"], 1);
    // A file named alone is a test named after it.
    let o = exitlab(&["suite", d.join("pass.elf").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("pass "), "{}", stdout(&o));
    assert_usage_error(&exitlab(&["suite", d.join("none").to_str().unwrap()]), "no such file or directory");
    assert_usage_error(&exitlab(&["suite", d.to_str().unwrap(), "-j", "0"]), "-j");
    std::fs::remove_dir_all(&d).unwrap();
}

/// A vmlinux-shaped ELF64 whose PVH note enters at BASE (in 32-bit mode)
/// while its e_entry points one byte past it. The code checks that EBX
/// points at hvm_start_info's magic, then says `text` and exits with
/// `code`; else it says so and exits with 1.
fn pvh_image(text: &str, code: u8) -> Vec<u8> {
    pvh_running(say_and_exit(text, code))
}

/// [`pvh_image`] running `ok` once it has checked EBX.
fn pvh_running(ok: Vec<u8>) -> Vec<u8> {
    let mut c = vec![0x81, 0x3b]; // cmp dword [ebx], XEN_HVM_START_MAGIC_VALUE
    c.extend_from_slice(&0x336e_c578u32.to_le_bytes());
    c.extend_from_slice(&[0x75, ok.len() as u8]); // jne past `ok`
    c.extend_from_slice(&ok);
    c.extend_from_slice(&say_and_exit("EBX is not the start_info\n", 1));
    let e = Elf { is64: true, entry: BASE + 1, segments: vec![code_at(BASE, c)], symbols: vec![] };
    let note = testimage::Note { name: "Xen".into(), ty: 18, desc: (BASE as u32).to_le_bytes().to_vec() };
    testimage::elf_with_notes(&e, &note.bytes())
}

#[test]
fn a_vmlinux_and_a_bzimage_boot_through_their_pvh_entry() {
    let d = temp_dir("pvh");
    let vmlinux = pvh_image("pvh\n", 0);
    let elf = write(&d, "vmlinux", &vmlinux);
    let o = stat_image(&elf, &["--cmdline", "console=ttyS0"]);
    assert_eq!(o.status.code(), Some(0), "auto picks PVH for an ELF with the note: {}", stderr(&o));
    assert!(stdout(&o).contains("pvh\n"), "{}", stdout(&o));
    let bz = write(&d, "bzImage", &testimage::bzimage_with_vmlinux(&vmlinux));
    let o = stat_image(&bz, &["--format", "pvh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("pvh\n"), "{}", stdout(&o));
    match exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        Err(why) => eprintln!("skipping KVM case: {why}"),
        Ok(_) => {
            let o = stat_image(&bz, &["--format", "pvh", "--backend", "kvm", "--max-time", "60s"]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            assert!(stdout(&o).contains("pvh\n"), "{}", stdout(&o));
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn broken_pvh_images_get_one_line_and_status_2() {
    let d = temp_dir("broken-pvh");
    let vmlinux = pvh_image("", 0);
    // The note cut off by the end of the file after its name, before its
    // 4-byte descriptor (the symbol table after it goes too).
    let desc_at = vmlinux.windows(4).position(|w| w == b"Xen\0").unwrap() + 4;
    let cut = write(&d, "cut-note", &vmlinux[..desc_at]);
    assert_usage_error(&stat_image(&cut, &["--format", "pvh"]), "ELF note segment");
    let bz = testimage::bzimage_with_vmlinux(&vmlinux);
    let mut long = bz.clone();
    let length = u32::from_le_bytes(long[0x24c..0x250].try_into().unwrap());
    long[0x24c..0x250].copy_from_slice(&(length + 1).to_le_bytes());
    let long = write(&d, "long-payload", &long);
    assert_usage_error(&stat_image(&long, &["--format", "pvh"]), "compressed kernel (payload_offset, payload_length)");
    let mut corrupt = bz.clone();
    let at = corrupt.len() - length as usize / 2;
    corrupt[at] ^= 0x55;
    let corrupt = write(&d, "corrupt-xz", &corrupt);
    assert_usage_error(&stat_image(&corrupt, &["--format", "pvh"]), "does not decompress");
    let plain = write(&d, "plain.elf", &elf64(vec![code_at(BASE, say_and_exit("", 0))], BASE));
    assert_usage_error(&stat_image(&plain, &["--format", "pvh"]), "no XEN_ELFNOTE_PHYS32_ENTRY note");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Linux's panic report as its 8250 console prints it (CRLF, printk
/// timestamps), then a line the guest prints after it.
const PANIC_REPORT: &str = "[    0.99] Kernel panic - not syncing: No working init found.\r\n\
     [    0.99] Call Trace:\r\n\
     [    0.99] ---[ end Kernel panic - not syncing: No working init found. ]---\r\n\
     after the report\r\n";

/// A Linux image (PVH) that prints a panic report and spins, as Linux
/// does without `panic=N`: the run ends at the report's end line with the
/// banner as the outcome (one line, status 1), the whole report on the
/// console and nothing after it, on the simulator (twice, the same exits)
/// and on KVM (the console watch is the VMM's serial model on both). A
/// plain ELF is not Linux: the same bytes only stop at a limit.
#[test]
fn a_linux_panic_report_ends_the_run_with_its_banner_on_both_backends() {
    let d = temp_dir("panic");
    let vmlinux = write(&d, "vmlinux", &pvh_running(say_and_spin(PANIC_REPORT)));
    let banner = "exitlab: guest kernel panic: Kernel panic - not syncing: No working init found.\n";
    let report = &PANIC_REPORT[..PANIC_REPORT.find("after").unwrap()];
    let sim = stat_image(&vmlinux, &["--top", "0"]);
    assert_eq!((sim.status.code(), stderr(&sim).as_str()), (Some(1), banner));
    assert!(stdout(&sim).starts_with(&format!("{report}\n")), "{}", stdout(&sim));
    assert_eq!(stdout(&stat_image(&vmlinux, &["--top", "0"])), stdout(&sim), "deterministic");
    let json = stat_image(&vmlinux, &["--json", "--top", "0"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["outcome"]["kernel_panic"], "Kernel panic - not syncing: No working init found.");
    assert_eq!(v["console"], report);
    let plain = elf64(vec![code_at(BASE, say_and_spin(PANIC_REPORT))], BASE);
    let o = stat_image(&write(&d, "plain.elf", &plain), &["--max-instructions", "100000", "--top", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("instruction limit of 100000"), "{}", stderr(&o));
    match exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        Err(why) => eprintln!("skipping KVM case: {why}"),
        Ok(_) => {
            let o = stat_image(&vmlinux, &["--backend", "kvm", "--max-time", "60s", "--top", "0"]);
            assert_eq!((o.status.code(), stderr(&o).as_str()), (Some(1), banner));
            assert!(stdout(&o).starts_with(&format!("{report}\n")), "{}", stdout(&o));
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// `--stop-on-console TEXT` (repeatable) ends any run at the first line
/// containing one of them: status 0, the line on stderr, the console up to
/// it; a text no line can hold is one line and status 2.
#[test]
fn stop_on_console_ends_the_run_at_the_first_line_holding_a_text() {
    let d = temp_dir("stop-on-console");
    let elf = write(&d, "lines.elf", &elf64(vec![code_at(BASE, say_and_spin("one\ntwo three\nfour\n"))], BASE));
    let o = stat_image(&elf, &["--stop-on-console", "four", "--stop-on-console", "o th", "--top", "0"]);
    assert_eq!((o.status.code(), stderr(&o).as_str()), (Some(0), "exitlab: stopped at the console line: two three\n"));
    assert!(stdout(&o).starts_with("one\ntwo three\n\n"), "{}", stdout(&o));
    let json = stat_image(&elf, &["--stop-on-console", "four", "--json", "--top", "0"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["outcome"]["console_stop"], "four");
    let w = exitlab(&["stat", "cpuid", "-n", "1", "--stop-on-console", "x"]);
    assert_eq!(w.status.code(), Some(0), "a workload that never prints it ends as before: {}", stderr(&w));
    assert_usage_error(&stat_image(&elf, &["--stop-on-console", ""]), "--stop-on-console: \"\" is empty");
    assert_usage_error(
        &stat_image(&elf, &["--stop-on-console", "a\nb"]),
        "--stop-on-console: \"a\\nb\" holds a line break",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

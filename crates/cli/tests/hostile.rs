//! Hostile input, as a hostile user and a hostile guest would try it
//! (issue 19): each test is one kind of attack, with the cases the issue
//! reported and further ones of the same kind. Every case must end within
//! its limits, with one line and the documented exit status, write
//! nothing outside its output, replace no special file and leave no half
//! result set.

mod common;

use common::{assert_usage_error, exitlab, stderr, stdout, temp_dir};
use std::path::Path;
use std::process::Command;

fn e1_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/e1.toml")).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Kind 6: every bad argument is one line and status 2, the parser's own
/// refusals included (clap prints usage text over several lines by
/// default), and numbers and durations say what is wrong with them.
#[test]
fn bad_arguments_are_one_line_naming_the_problem() {
    let cases: [(&[&str], &str); 14] = [
        (&["stat", "pio-out", "--max-instructions", "-1"], "--max-instructions: `-1` is negative"),
        (&["stat", "pio-out", "--max-instructions", "99999999999999999999"], "is more than 18446744073709551615"),
        (&["stat", "pio-out", "--max-time", "-1s"], "--max-time: `-1s` is negative"),
        (&["stat", "pio-out", "--max-time", "NaNs"], "--max-time: `NaNs` is not a number"),
        (&["stat", "pio-out", "--max-time", "0ms"], "`0ms` is shorter than 1 ns"),
        (&["stat", "pio-out", "--max-time", "3 fortnights"], "unknown unit `fortnights`"),
        (&["stat", "pio-out", "--max-time", "18446744073709551616ns"], "longer than the longest limit"),
        (&["stat", "pio-out", "--max-time", "1e300s"], "longer than the longest limit"),
        // Representable in nanoseconds, not in the simulator's cycles.
        (&["stat", "pio-out", "--max-time", "18000000000000000000ns"], "more guest time than the simulator counts"),
        (&["stat", "pio-out", "--seed", "-3"], "--seed: `-3` is negative"),
        (&["stat", "pio-out", "--bogus"], "unexpected argument '--bogus'"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&[], "a command is needed"),
        (&["bench", "kvm", "--rounds", "-5"], "--rounds: `-5` is negative"),
    ];
    for (args, what) in cases {
        assert_usage_error(&exitlab(args), what);
    }
    // Simulator-only options on KVM, and numbers out of a parameter's range.
    assert_usage_error(
        &exitlab(&["stat", "pio-out", "--backend", "kvm", "--cpuid", "1=1:2:3:4"]),
        "--cpuid is a simulator option",
    );
    assert_usage_error(&exitlab(&["stat", "pio-out", "--set", "warmup=-1"]), "`warmup` = -1 is out of range");
    assert_usage_error(&exitlab(&["stat", "pio-out", "-n", "-5"]), "`n` = -5 is out of range");
    // An argument that is not UTF-8.
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"n=\xff");
    let o = Command::new(env!("CARGO_BIN_EXE_exitlab")).args(["stat", "pio-out", "--set"]).arg(bad).output().unwrap();
    assert_usage_error(&o, "invalid UTF-8");
    // The help and the version are not errors.
    assert_eq!(exitlab(&["--help"]).status.code(), Some(0));
    assert_eq!(exitlab(&["--version"]).status.code(), Some(0));
}

/// Kind 6: values each in range that a workload cannot run together are
/// refused before the run, from the command line and from a scenario.
#[test]
fn unrunnable_parameter_combinations_are_refused_before_the_run() {
    for set in [["ring3=1", "irq=1"], ["ring3=1", "switch_every=8"]] {
        let o = exitlab(&["stat", "io-mix", "--set", set[0], "--set", set[1]]);
        assert_usage_error(&o, "cannot be set with `ring3=1`");
    }
    let d = temp_dir("hostile-combo");
    let f = d.join("combo.toml");
    std::fs::write(&f, e1_text().replace("switch_every = 16", "switch_every = 16\nring3 = 1")).unwrap();
    let o = exitlab(&["run", s(&f), "--out", s(&d.join("out"))]);
    assert_usage_error(&o, "cannot be set with `ring3=1`: its code runs privileged instructions");
    assert!(!d.join("out").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Kind 3: names from a scenario file never become paths outside the
/// output directory.
#[test]
fn names_from_files_never_become_paths() {
    let d = temp_dir("hostile-names");
    let elsewhere = d.join("elsewhere");
    let text = e1_text();
    let figure = text.lines().find(|l| l.starts_with("name = \"exits")).unwrap().to_string();
    let cases = [
        (text.replace(&figure, &format!("name = \"/../../../../../..{}/figure\"", s(&elsewhere))), "figure name"),
        (text.replace(&figure, "name = \"../figure\""), "figure name"),
        (text.replace(&figure, "name = \".hidden\""), "must not start with `.`"),
        (text.replace(&figure, "name = \"\""), "1 to 64 characters"),
        (text.replacen("name = \"e1\"", "name = \"../../escape\"", 1), "name = `../../escape`"),
        (text.replacen("name = \"e1\"", &format!("name = \"{}\"", s(&elsewhere)), 1), "only ASCII letters"),
    ];
    for (i, (bad, what)) in cases.iter().enumerate() {
        let f = d.join(format!("bad{i}.toml"));
        std::fs::write(&f, bad).unwrap();
        assert_usage_error(&exitlab(&["run", s(&f), "--set", "n=50", "--out", s(&d.join("out"))]), what);
        // Without --out: the default out/<name> would be the attack.
        assert_usage_error(&exitlab(&["run", s(&f), "--set", "n=50"]), what);
    }
    let twice = format!("{text}\n[[figure]]\n{figure}\ntitle = \"again\"\nx = \"p\"\ny = \"exits_per_kiter\"\n");
    let f = d.join("twice.toml");
    std::fs::write(&f, twice).unwrap();
    assert_usage_error(&exitlab(&["run", s(&f), "--out", s(&d.join("out"))]), "is used twice");
    assert!(!elsewhere.exists() && !d.join("out").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Kind 3: an existing output that is not a regular file (a FIFO, a
/// device, a link to one) is refused and left as it was; a link to a
/// regular file is written through and stays a link.
#[test]
fn special_files_are_never_replaced() {
    let d = temp_dir("hostile-special");
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = d.join("link-to-fifo");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let dangling = d.join("dangling");
    std::os::unix::fs::symlink(d.join("nothing"), &dangling).unwrap();
    for path in [&fifo, &link, Path::new("/dev/null"), Path::new("/dev/full")] {
        let o = exitlab(&["trace", "pio-out", "-n", "5", "--out", s(path)]);
        assert_usage_error(&o, "is not a regular file");
        let o = exitlab(&["image", "pio-out", "-o", s(path)]);
        assert_usage_error(&o, "is not a regular file");
    }
    assert_usage_error(&exitlab(&["image", "pio-out", "-o", s(&dangling)]), "a symbolic link to nothing");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A directory given for a file, and a FIFO given for a set's directory.
    assert_usage_error(&exitlab(&["image", "pio-out", "-o", s(&d)]), "is not a regular file");
    assert_usage_error(&exitlab(&["run", "e1", "--set", "n=50", "--out", s(&fifo)]), "cannot use");
    // A link to a regular file: the file gets the bytes, the link stays.
    let real = d.join("real.bin");
    std::fs::write(&real, b"old").unwrap();
    let to_real = d.join("to-real");
    std::os::unix::fs::symlink(&real, &to_real).unwrap();
    assert_eq!(exitlab(&["image", "pio-out", "-o", s(&to_real)]).status.code(), Some(0));
    assert!(std::fs::symlink_metadata(&to_real).unwrap().file_type().is_symlink());
    let plain = d.join("plain.bin");
    assert_eq!(exitlab(&["image", "pio-out", "-o", s(&plain)]).status.code(), Some(0));
    assert_eq!(std::fs::read(&real).unwrap(), std::fs::read(&plain).unwrap());
    // Nothing else was left beside them (no temporary files).
    let mut names: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["dangling", "fifo", "link-to-fifo", "plain.bin", "real.bin", "to-real"]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Kind 4: inputs of any size. A sweep's points are counted before any is
/// made and refused above the cap; files past their size limit, and
/// endless ones, are refused with one line.
#[test]
fn inputs_of_any_size_are_refused_by_their_size() {
    let d = temp_dir("hostile-size");
    let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let axis = |name: &str| format!("{name} = [{}]\n", values.join(", "));
    let text =
        e1_text().replace("[sweep]\n", &format!("[sweep]\n{}{}{}", axis("work"), axis("fresh_every"), axis("warmup")));
    let f = d.join("huge-sweep.toml");
    std::fs::write(&f, text).unwrap();
    let started = std::time::Instant::now();
    let o = exitlab(&["run", s(&f), "--out", s(&d.join("out"))]);
    assert_usage_error(&o, "the sweep has more than 10000 points");
    assert!(started.elapsed().as_secs() < 60, "refused before anything is built");
    let big = d.join("big.toml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    assert_usage_error(&exitlab(&["run", s(&big)]), "larger than the 1048576-byte limit");
    assert_usage_error(&exitlab(&["stat", "pio-out", "--profile", s(&big)]), "larger than the 1048576-byte limit");
    assert_usage_error(&exitlab(&["profiles", "/dev/zero"]), "larger than the 1048576-byte limit");
    assert_usage_error(&exitlab(&["run", "/dev/zero"]), "larger than the 1048576-byte limit");
    let binary = d.join("binary.toml");
    std::fs::write(&binary, b"name = \"\xff\"\n").unwrap();
    assert_usage_error(&exitlab(&["run", s(&binary)]), "not UTF-8");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Kind 1: every run has limits by default, stated in --help, and a run
/// stopped by one ends with one line naming the limit and the RIP.
#[test]
fn runs_have_limits_by_default_stated_in_help() {
    let help = stdout(&exitlab(&["stat", "--help"]));
    for (flag, default) in [
        ("--max-instructions", "[default: 20000000000]"),
        ("--max-time", "[default: 1h]"),
        ("--max-host-time", "[default: 10min]"),
        ("--max-stalled-exits", "[default: 1000000]"),
        ("--max-exits", "[default: 1000000000]"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} not in --help"));
        assert!(help[at..].find(default).is_some_and(|d| d < 400), "{flag} {default}:\n{help}");
    }
    // An idle guest that asks for 694 days of guest time, without flags.
    let o = exitlab(&["stat", "idle", "--set", "period_ms=60000", "-n", "1000000"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("time limit of 3600000000000 ns of guest time reached at rip 0x"), "{err}");
    // A guest that exits 10^9 times, stopped by host time.
    let o = exitlab(&["stat", "pio-out", "-n", "1000000000", "--max-host-time", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("exitlab: stopped: host time limit of 0.3 s reached at rip 0x"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The same limit on KVM, where it is the VMM's too.
    match exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        Err(why) => eprintln!("skipping the KVM half: {why}"),
        Ok(()) => {
            let o = exitlab(&["stat", "pio-out", "--backend", "kvm", "-n", "100000000", "--max-host-time", "300ms"]);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(
                stderr(&o).starts_with("exitlab: stopped: host time limit of 0.3 s reached at rip 0x"),
                "{}",
                stderr(&o)
            );
        }
    }
}

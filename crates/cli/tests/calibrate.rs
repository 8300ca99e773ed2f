//! `exitlab calibrate`, `exitlab validate`, a calibrated profile in use,
//! and the wall-clock limit on KVM runs. Tests that need /dev/kvm skip
//! with the reason when it cannot be used; none asserts a time (those are
//! the host's), only what is fixed: exit counts, the file's shape, sources.

mod common;

use common::{assert_usage_error, exitlab, exitlab_env, kvm_usable, stderr, stdout, temp_dir};

/// The example calibrated profile: this project's development host.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../profiles/hosts/dev-xeon-f6m207-kvm_pvm.toml");

#[test]
fn bad_input_to_calibrate_validate_and_report_is_one_line() {
    assert_usage_error(&exitlab(&["calibrate", "--backend", "sim"]), "calibrate measures a host");
    assert_usage_error(&exitlab(&["calibrate", "--rounds", "1"]), "--rounds = 1 is out of range (2..=50)");
    assert_usage_error(&exitlab(&["calibrate", "--span", "4000"]), "--span = 4000 is out of range (0..=3600)");
    assert_usage_error(&exitlab(&["calibrate", "--name", " "]), "--name");
    assert_usage_error(&exitlab(&["validate", "--profile", "modern", "--backend", "sim"]), "validate measures a host");
    assert_usage_error(&exitlab(&["validate", "--profile", "/nonexistent.toml"]), "is neither built in");
    assert_usage_error(&exitlab(&["report", "--profile", "/nonexistent.toml"]), "/nonexistent.toml");
    let o = exitlab_env(&["calibrate"], "EXITLAB_KVM_DEVICE", "/nonexistent/kvm");
    assert_usage_error(&o, "/nonexistent/kvm");
    let o = exitlab_env(&["validate", "--profile", "modern"], "EXITLAB_KVM_DEVICE", "/nonexistent/kvm");
    assert_usage_error(&o, "/nonexistent/kvm");
}

#[test]
fn the_example_host_profile_is_listed_and_runs_with_every_figure_sourced() {
    let both = stdout(&exitlab(&["profiles", EXAMPLE, "modern"]));
    assert!(both.contains("modern: EPT"), "both profiles are listed: {both}");
    let out = stdout(&exitlab(&["profiles", EXAMPLE]));
    assert!(out.contains("host kvm: kvm_pvm"), "{out}");
    let figures: Vec<&str> = out.lines().filter(|l| l.starts_with("  ") && !l.starts_with("  host")).collect();
    for f in ["instruction.ring0", "interrupt.delivery", "device_thread.poke_latency", "exit.reason.IO_INSTRUCTION"] {
        assert!(figures.iter().any(|l| l.trim_start().starts_with(f)), "{f} in {out}");
    }
    for l in figures.iter().filter(|l| !l.contains("features:")) {
        assert!(l.contains("measured: ") || l.contains("not measured: ") || l.contains("modelled: "), "{l}");
    }
    let o = exitlab(&["stat", "pio-out", "-n", "500", "--phase", "measure", "--json", "--profile", EXAMPLE]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exits"][0]["reason"], "IO_INSTRUCTION");
    assert_eq!(v["exits"][0]["samples"], 500);
    let again = exitlab(&["stat", "pio-out", "-n", "500", "--phase", "measure", "--json", "--profile", EXAMPLE]);
    assert_eq!(o.stdout, again.stdout, "a calibrated profile is as deterministic as any");
}

#[test]
fn a_guest_halted_inside_kvm_run_stops_at_the_wall_clock_limit() {
    if !kvm_usable() {
        return;
    }
    // One idle period of an hour: the vCPU halts in the kernel and KVM_RUN
    // does not return until its timer, an hour later.
    let start = std::time::Instant::now();
    let o = exitlab(&["stat", "idle", "-n", "1", "--set", "period_ms=3600000", "--backend", "kvm", "--max-time", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("time limit of 1s reached (host time) at rip"), "{}", stderr(&o));
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn calibrate_writes_a_profile_that_stat_validate_and_report_take() {
    if !kvm_usable() {
        return;
    }
    let dir = temp_dir("calibrate");
    let file = dir.join("host.toml");
    let f = file.to_str().unwrap();
    let o = exitlab(&["calibrate", "--rounds", "2", "--span", "0", "--out", f, "--name", "this-host"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("-> {f}")), "{}", stdout(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    let p = exitlab_sim::profile::Profile::parse(f, &text).unwrap();
    assert_eq!(p.name, "this-host");
    assert!(p.host.as_ref().and_then(|h| h.kernel.as_ref()).is_some());
    for (key, fig) in p.figures() {
        let s = &fig.source;
        assert!(
            s.starts_with("measured: ") || s.starts_with("not measured: ") || s.starts_with("modelled: "),
            "{key}: {s}"
        );
    }
    let measured = p.figures().into_iter().filter(|(_, f)| f.source.starts_with("measured: ")).count();
    assert!(measured >= 10, "{measured} measured figures");
    assert!(stdout(&exitlab(&["profiles", f])).starts_with("this-host: this host, calibrated"));
    let o = exitlab(&["stat", "cpuid", "-n", "100", "--profile", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A second calibration compares itself with the first: a row per
    // figure both measured, and exit status 1 exactly when a row differs
    // (whether they do is this shared host's, not asserted here).
    let o = exitlab(&["calibrate", "--rounds", "2", "--span", "0", "--compare", f]);
    let out = stdout(&o);
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains(" measured figures agree") && (l.ends_with(" agree") || l.ends_with(" DIFFER")))
        .collect();
    assert!((10..=measured).contains(&rows.len()), "a row per figure both measured: {out}");
    let differ = rows.iter().filter(|l| l.ends_with("DIFFER")).count();
    assert!(out.contains(&format!("{} of {} measured figures agree", rows.len() - differ, rows.len())), "{out}");
    assert_eq!(o.status.code(), Some(if differ == 0 { 0 } else { 1 }), "{out}");

    let o = exitlab(&["validate", "--profile", f, "--rounds", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["workloads"].as_array().unwrap();
    assert_eq!(rows.len(), 13);
    for r in rows {
        for k in ["name", "exits_sim", "exits_host", "time_sim_ns", "time_host_ns", "error_pct"] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
    }
    // What the architecture fixes: one userspace exit per iteration, both
    // sides, and none for what KVM keeps in the kernel.
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap();
    for (name, exits) in [("pio-out", 2000), ("mmio-write", 2000), ("io-mix p=0.5", 1000), ("cpuid", 0)] {
        assert_eq!(row(name)["exits_sim"], exits, "{name}");
        assert_eq!(row(name)["exits_host"], exits, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

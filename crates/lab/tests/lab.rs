//! The lab end to end: the built-in experiments run small and show the
//! direction they must; results are deterministic; files are whole.

use exitlab_lab::{run_scenario, Scenario};

fn value(r: &exitlab_lab::Results, profile: &str, p: &str, metric: &str) -> f64 {
    let point = r.points.iter().find(|x| x.axis("profile") == Some(profile) && x.axis("p") == Some(p)).unwrap();
    assert!(point.na.is_none(), "{:?}", point.na);
    point.metrics.get(metric).copied().unwrap_or(0.0)
}

#[test]
fn e1_modern_causes_fewer_exits_than_legacy_at_every_p() {
    let mut s = Scenario::load("e1").unwrap();
    s.params.insert("n".into(), toml::Value::Integer(800));
    let r = run_scenario(&s, false);
    assert_eq!(r.points.len(), 22);
    let mut last_saving = -1.0;
    for p in ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"] {
        let (legacy, modern) = (value(&r, "legacy", p, "exits_per_kiter"), value(&r, "modern", p, "exits_per_kiter"));
        assert!(modern < legacy, "p = {p}: modern {modern} vs legacy {legacy}");
        // With EPT, APICv and posted interrupts only the I/O's own exits
        // remain: the register write and the HLT that waits.
        let io: f64 = p.parse::<f64>().unwrap() * 1000.0;
        assert!((modern - 2.0 * io).abs() <= 3.0, "p = {p}: {modern} vs {}", 2.0 * io);
        // I/O-bound work gains most: the saving grows with p.
        let saving = legacy - modern;
        assert!(saving > last_saving, "p = {p}: saving {saving} after {last_saving}");
        last_saving = saving;
    }
    // What legacy adds: interrupt exits, APIC accesses (EOI) and shadow paging.
    assert!(value(&r, "legacy", "1.0", "exits_per_kiter.EXTERNAL_INTERRUPT") > 0.0);
    assert!(value(&r, "legacy", "1.0", "exits_per_kiter.APIC_ACCESS") > 0.0);
    // Shadow paging's own exits (fresh pages, CR3 reloads) are what legacy adds.
    assert!(value(&r, "legacy", "0.0", "exits_per_kiter.EXCEPTION_NMI") > 0.0);
    assert!(value(&r, "legacy", "0.0", "exits_per_kiter.CR_ACCESS") > 0.0);
}

#[test]
fn e2_virtio_costs_fewer_exits_and_less_time_per_packet_than_e1000() {
    let r = run_scenario(&Scenario::load("e2").unwrap(), false);
    assert_eq!(r.points.len(), 16);
    let m = |workload: &str, profile: &str, window: &str, metric: &str| {
        let point = r
            .points
            .iter()
            .find(|x| {
                x.axis("workload") == Some(workload)
                    && x.axis("profile") == Some(profile)
                    && x.axis("window") == Some(window)
            })
            .unwrap();
        assert!(point.na.is_none(), "{:?}", point.na);
        point.metrics[metric]
    };
    for profile in ["legacy", "modern"] {
        for window in ["1", "2", "4", "8"] {
            let at = |w: &str, k: &str| m(w, profile, window, k);
            for k in ["exits_per_packet", "latency_ns.mean", "latency_ns.stddev"] {
                let (e1000, virtio) = (at("e1000-pingpong", k), at("virtio-pingpong", k));
                assert!(virtio < e1000, "{profile} window {window} {k}: virtio {virtio} vs e1000 {e1000}");
            }
            assert_eq!(at("e1000-pingpong", "packets"), 500.0);
        }
    }
    // One echo in flight on modern: e1000 traps TDT, RDT and the ICR read,
    // virtio only the transmit notification; both sleep once per echo.
    assert_eq!(m("e1000-pingpong", "modern", "1", "exits_per_packet"), 4.0);
    assert_eq!(m("virtio-pingpong", "modern", "1", "exits_per_packet"), 2.0);
    assert_eq!(m("e1000-pingpong", "modern", "1", "exits_per_packet.EPT_MISCONFIG"), 3.0);
}

/// The metric at the point whose axes have these values.
fn at(r: &exitlab_lab::Results, axes: &[(&str, &str)], metric: &str) -> f64 {
    let point = r.points.iter().find(|p| axes.iter().all(|(k, v)| p.axis(k) == Some(v))).unwrap();
    assert!(point.na.is_none(), "{:?}", point.na);
    point.metrics.get(metric).copied().unwrap_or(0.0)
}

#[test]
fn e3_posted_interrupts_cost_no_exits_and_arrive_sooner() {
    let r = run_scenario(&Scenario::load("e3").unwrap(), false);
    assert_eq!(r.points.len(), 12);
    for rate in ["25000", "50000", "100000"] {
        let m = |profile: &str, posted: &str, k: &str| {
            at(&r, &[("profile", profile), ("posted", posted), ("rate", rate)], k)
        };
        assert_eq!(m("modern", "true", "exits"), 0.0, "{rate}/s posted: no exit at all");
        assert_eq!(m("modern", "false", "exits_per_kiter.EXTERNAL_INTERRUPT"), 1000.0, "{rate}/s: one exit each");
        assert_eq!(m("modern", "true", "guest_per_kiter.blk_completions"), 1000.0);
        let (posted, injected) =
            (m("modern", "true", "irq_latency_ns.mean"), m("modern", "false", "irq_latency_ns.mean"));
        assert!(posted > 0.0 && posted * 2.0 < injected, "{rate}/s: posted {posted} ns vs injected {injected} ns");
        // The emulated device of the legacy profile costs the most.
        assert!(m("legacy", "false", "exit_time_share") > m("modern", "false", "exit_time_share"));
    }
}

#[test]
fn e4_tickless_idle_costs_two_exits_per_period_and_the_tick_grows_with_it() {
    let r = run_scenario(&Scenario::load("e4").unwrap(), false);
    assert_eq!(r.points.len(), 24, "two profiles, three timers, four periods");
    for period in ["1", "10", "100", "1000"] {
        let exits = |profile: &str, hz: &str| {
            at(&r, &[("profile", profile), ("tick_hz", hz), ("period_ms", period)], "exits_per_kiter")
        };
        // Arming the one-shot timer is a write to its initial-count
        // register, which APIC virtualization does not virtualize (SDM Vol.
        // 3C, APIC-write emulation): an APIC_WRITE exit, then the HLT.
        assert_eq!(exits("modern", "0"), 2000.0, "tickless: two exits per period of {period} ms");
        let hlt = at(&r, &[("profile", "modern"), ("tick_hz", "0"), ("period_ms", period)], "exits_per_kiter.HLT");
        assert_eq!(hlt, 1000.0, "one of them the HLT");
        // Without APICv the write is an APIC_ACCESS, and so is the EOI of
        // the timer's interrupt, which exits as EXTERNAL_INTERRUPT: four.
        assert_eq!(exits("legacy", "0"), 4000.0, "legacy tickless, {period} ms");
        // A tick wakes the guest hz times a second, at least once a period:
        // a HLT each on modern; with the interrupt's exit and its EOI's on
        // legacy.
        for hz in ["100", "1000"] {
            let ticks = (period.parse::<f64>().unwrap() * hz.parse::<f64>().unwrap() / 1000.0).max(1.0);
            assert_eq!(exits("modern", hz), ticks * 1000.0, "{hz} Hz, {period} ms");
            assert_eq!(exits("legacy", hz), 3.0 * ticks * 1000.0, "legacy {hz} Hz, {period} ms");
        }
    }
}

/// E4's fleet projection: 1 to 1,000,000 idle VMs on each profile and
/// timer, linear in N, from the share of a core one VM spends in exits.
#[test]
fn e4_fleet_projection_reaches_a_million_vms() {
    let r = run_scenario(&Scenario::load("e4").unwrap(), false);
    let fleet = exitlab_lab::fleet::Fleet::of(&r, None).unwrap();
    assert_eq!(fleet.period_ms, "1000");
    assert_eq!(fleet.lines.len(), 6, "two profiles by three timers");
    let share = at(&r, &[("profile", "modern"), ("tick_hz", "1000"), ("period_ms", "1000")], "exit_time_share");
    assert_eq!(fleet.cores("modern", "1000", 1e6), Some(share * 1e6));
    assert!(fleet.cores("modern", "1000", 1e6).unwrap() > 100.0 * fleet.cores("modern", "0", 1e6).unwrap());
    assert!(fleet.cores("legacy", "1000", 1e6).unwrap() > fleet.cores("modern", "1000", 1e6).unwrap());
    assert_eq!(fleet.cores("host", "1000", 1e6), None, "no host run given");
    let (header, rows) = fleet.table(&r);
    assert_eq!(header.last().map(String::as_str), Some("N = 1,000,000"));
    assert_eq!(rows.len(), 6);
    assert!(fleet.svg(&r).contains("Host cores burned by N idle VMs"));
}

/// On KVM the idle guest's exits happen in the kernel; the lab counts them
/// from KVM's own counter, so E4 reads the same on both backends.
#[test]
fn e4_on_kvm_counts_the_exits_kvm_handles_itself() {
    if let Err(why) = exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        eprintln!("skipping KVM test: {why}");
        return;
    }
    let mut s = Scenario::load("e4").unwrap();
    s.backends = vec!["kvm".into()];
    s.params.insert("n".into(), toml::Value::Integer(5));
    s.sweep.insert("period_ms".into(), vec![toml::Value::Integer(10)]);
    s.sweep.insert("tick_hz".into(), vec![toml::Value::Integer(0), toml::Value::Integer(1000)]);
    let r = run_scenario(&s, false);
    let tickless = at(&r, &[("tick_hz", "0")], "exits_per_kiter");
    let ticking = at(&r, &[("tick_hz", "1000")], "exits_per_kiter");
    assert!(tickless >= 1000.0, "at least the HLT of each period: {tickless}");
    assert!(ticking > 5.0 * tickless, "ten ticks a period against one sleep: {ticking} vs {tickless}");
}

#[test]
fn e5_the_kick_doorbell_removes_kick_exits_and_batches_notifications() {
    let r = run_scenario(&Scenario::load("e5").unwrap(), false);
    assert_eq!(r.points.len(), 16);
    for tau in ["10", "50"] {
        let m = |kicks: &str, n: &str, k: &str| at(&r, &[("kicks", kicks), ("kick_n", n), ("kick_us", tau)], k);
        let notes = |n: &str| m("doorbell", n, "device_per_kiter.kick-doorbell.notifications");
        assert_eq!(notes("1"), 1000.0, "N = 1: a notification per kick");
        assert!(notes("8") < notes("4") && notes("4") < notes("1"), "tau {tau}: fewer as N grows");
        for n in ["1", "2", "4", "8"] {
            assert_eq!(m("every", n, "exits_per_packet.EPT_MISCONFIG"), 1.0, "trapped: each kick exits");
            assert_eq!(m("doorbell", n, "exits_per_packet.EPT_MISCONFIG"), 0.0, "the doorbell: none");
            assert!(m("doorbell", n, "handler_ns_per_packet") < m("every", n, "handler_ns_per_packet"));
        }
        // Waiting for a batch costs latency.
        assert!(m("doorbell", "8", "latency_ns.mean") > m("doorbell", "1", "latency_ns.mean"));
    }
}

#[test]
fn e6_every_attempt_on_isolated_memory_exits_and_legacy_cannot_isolate() {
    let r = run_scenario(&Scenario::load("e6").unwrap(), false);
    for trick in ["0", "1", "2"] {
        let m = |k: &str| at(&r, &[("profile", "modern"), ("trick", trick)], k);
        assert_eq!(m("guest_per_kiter.attempts"), 1000.0);
        assert_eq!(m("exits_per_kiter.EPT_VIOLATION"), 1000.0, "trick {trick}: one violation per attempt");
        assert_eq!(m("exits_per_kiter"), 1000.0, "trick {trick}: and nothing else");
        let blocked = if trick == "2" { "blocked_reads" } else { "blocked_writes" };
        assert_eq!(m(&format!("device_per_kiter.isolated.{blocked}")), 1000.0, "trick {trick}: all blocked");
        let legacy = r.points.iter().find(|p| p.axis("profile") == Some("legacy") && p.axis("trick") == Some(trick));
        assert!(legacy.unwrap().na.as_deref().is_some_and(|w| w.contains("needs EPT")));
    }
}

#[test]
fn e7_write_protection_exits_twice_per_write_and_pml_once_per_full_log() {
    let r = run_scenario(&Scenario::load("e7").unwrap(), false);
    for pages in ["64", "512", "1024", "4096"] {
        let wp = |m: &str| at(&r, &[("monitor", "write-protect"), ("pages", pages)], m);
        assert_eq!(wp("exits_per_kiter.EPT_VIOLATION"), 1000.0, "{pages} pages");
        assert_eq!(wp("exits_per_kiter.MONITOR_TRAP_FLAG"), 1000.0, "{pages} pages");
        // At most one log entry per write: 4,096 writes fill at most 8 logs
        // of 512 entries, one PML_FULL exit each.
        let pml = at(&r, &[("monitor", "pml"), ("pages", pages)], "exits.PML_FULL");
        assert!(pml <= 8.0, "{pages} pages: {pml}");
    }
    assert_eq!(at(&r, &[("monitor", "pml"), ("pages", "64")], "exits"), 0.0, "64 pages never fill the log");
    assert_eq!(at(&r, &[("monitor", "pml"), ("pages", "4096")], "exits.PML_FULL"), 8.0);
}

#[test]
fn e9_decoding_costs_the_vmm_work_per_exit_that_an_assist_removes() {
    let r = run_scenario(&Scenario::load("e9").unwrap(), false);
    let mut last_cost = 0.0;
    for (form, len) in [("0", 2.0), ("1", 3.0), ("2", 8.0), ("3", 11.0)] {
        let m = |assist: &str, k: &str| at(&r, &[("decode_assist", assist), ("form", form)], k);
        assert_eq!((m("false", "exits_per_kiter"), m("true", "exits_per_kiter")), (1000.0, 1000.0), "one exit each");
        assert_eq!(m("false", "work_per_exit.bytes_decoded"), len, "form {form}: the whole instruction");
        assert_eq!(m("false", "work_per_exit.page_walks"), 2.0, "the instruction's page and the operand's");
        assert_eq!(m("true", "work_per_exit.bytes_decoded"), 0.0);
        assert_eq!(m("true", "work_per_exit.page_walks"), 0.0);
        let cost = m("false", "avg_exit_ns");
        assert!(cost > last_cost && cost > m("true", "avg_exit_ns"), "form {form}: {cost} ns");
        last_cost = cost;
    }
    let assisted: Vec<f64> =
        ["0", "1", "2", "3"].iter().map(|f| at(&r, &[("decode_assist", "true"), ("form", f)], "avg_exit_ns")).collect();
    assert!(assisted.windows(2).all(|w| w[0] == w[1]), "the assisted exit costs the same whatever the form");
}

#[test]
fn e10_aborts_rise_with_the_host_timer_and_with_transaction_length() {
    let r = run_scenario(&Scenario::load("e10").unwrap(), false);
    assert_eq!(r.points.len(), 15);
    let aborts = |len: &str, hz: &str| {
        let point = r.points.iter().find(|x| x.axis("len") == Some(len) && x.axis("timer_hz") == Some(hz)).unwrap();
        assert!(point.na.is_none(), "{:?}", point.na);
        let m = |k: &str| point.metrics.get(k).copied().unwrap_or(0.0);
        assert_eq!(m("guest_per_kiter.tx_aborts") + m("guest_per_kiter.tx_commits"), 1000.0, "{len} {hz}");
        m("guest_per_kiter.tx_aborts")
    };
    for len in ["16", "128", "512"] {
        // The baseline without host interruptions commits everything.
        assert_eq!(aborts(len, "0"), 0.0);
        let rates: Vec<f64> = ["1000", "10000", "100000", "1000000"].iter().map(|hz| aborts(len, hz)).collect();
        assert!(rates.windows(2).all(|w| w[0] <= w[1]), "len {len}: {rates:?}");
    }
    // A 1 MHz tick lands inside every 512-line transaction.
    assert_eq!(aborts("512", "1000000"), 1000.0);
    assert!(aborts("16", "1000000") < aborts("128", "1000000"));
    assert!(aborts("128", "1000000") < aborts("512", "1000000"));
}

#[test]
fn results_files_are_identical_across_runs_and_written_whole() {
    let mut s = Scenario::load("e1").unwrap();
    s.params.insert("n".into(), toml::Value::Integer(200));
    let dir = std::env::temp_dir().join(format!("exitlab-lab-{}", std::process::id()));
    let (a, b) = (dir.join("a"), dir.join("b"));
    for dir in [&a, &b] {
        let r = run_scenario(&s, false);
        exitlab_lab::output::publish(dir, |d| exitlab_lab::output::write_results(&r, d)).unwrap();
    }
    for f in ["results.csv", "results.json", "summary.md", "exits-vs-p.svg"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    // No temporary file is left behind.
    assert!(std::fs::read_dir(&a).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
    let csv = std::fs::read_to_string(a.join("results.csv")).unwrap();
    assert!(csv.starts_with("profile,p,"));
    assert_eq!(csv.lines().count(), 23);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_reading_is_computed_from_the_numbers() {
    let mut s = Scenario::load("e1").unwrap();
    s.params.insert("n".into(), toml::Value::Integer(400));
    let text = exitlab_lab::reading::reading(&run_scenario(&s, false));
    let first = "Current VT-x (EPT, APICv, posted interrupts) takes fewer exits than first-generation VT-x (shadow paging, no APICv) at every I/O fraction tested: 0 against 312 per 1,000 iterations at p = 0.0";
    assert!(text.starts_with(first), "{text}");
    assert!(text.contains("(1,000 HLT, 1,000 IO_INSTRUCTION)"), "the I/O's own exits remain: {text}");
    // Change the workload and the reading changes with it.
    s.params.insert("fresh_every".into(), toml::Value::Integer(0));
    s.params.insert("switch_every".into(), toml::Value::Integer(0));
    let text = exitlab_lab::reading::reading(&run_scenario(&s, false));
    assert!(text.contains("at 10 of 11 I/O fraction tested"), "equal at p = 0: {text}");
}

/// Two series that are the same everywhere are said to be the same, not
/// compared as if they differed; names and units are the scenario's words.
#[test]
fn a_reading_never_compares_identical_series() {
    let mut s = Scenario::load("e4").unwrap();
    s.name = "ticks".into();
    s.sweep.insert("profile".into(), vec!["modern".into()]);
    s.sweep.insert("period_ms".into(), vec![toml::Value::Integer(1), toml::Value::Integer(2)]);
    s.sweep.insert("tick_hz".into(), vec![toml::Value::Integer(100), toml::Value::Integer(500)]);
    let text = exitlab_lab::reading::reading(&run_scenario(&s, false));
    assert_eq!(
        text,
        "A 100 Hz tick and tick_hz = 500 give the same exits per 1,000 idle periods at every tested value of idle period (ms) (1,000 at period_ms = 1, 1,000 at period_ms = 2): here the choice between them makes no difference."
    );
}

/// The chapter's figures beside the simulator's, E3's in particular: the
/// exit path's share of a core agrees within the chapter's rounding once
/// the external-interrupt exit takes KVM's full exit path; the latencies do
/// not, and the reason says what path the model leaves out and how long it
/// would have to be for the chapter's two figures to hold together.
#[test]
fn e3_beside_the_chapter() {
    let r = run_scenario(&Scenario::load("e3").unwrap(), false);
    let c = exitlab_lab::chapter::compare("e3", &r, &Err("no KVM".into())).unwrap();
    assert_eq!(c.rows.len(), 4);
    assert!(c.rows[0].sim.starts_with("15.13% (exit and injection"), "{:?}", c.rows[0]);
    assert_eq!(c.rows[0].agrees, "yes, within the chapter's rounding");
    assert!(c.rows[1].sim.starts_with("1.64 us"), "{:?}", c.rows[1]);
    assert!(c.rows[1].agrees.starts_with("no: the model prices the exit"), "{:?}", c.rows[1]);
    assert!(c.rows[1].agrees.contains("takes 1.39 us"), "{}", c.rows[1].agrees);
    assert_eq!(c.rows[2].agrees, "yes", "posted: no exits");
    assert!(c.rows[3].sim.starts_with("126 ns: 8% of the exit path's"), "{:?}", c.rows[3]);
    // The host's latencies need the host; its exits are never the VMM's.
    assert_eq!((c.rows[1].host.as_str(), c.rows[3].host.as_str()), ("n/a (no KVM)", "n/a (no KVM)"));
    assert!(c.rows[0].host.starts_with("n/a (KVM delivers interrupts in the kernel"), "{}", c.rows[0].host);
    assert!(c.answer.starts_with("Posted interrupts remove the exit from every completion"), "{}", c.answer);
}

/// What the host runs for each experiment: the axes KVM cannot change are
/// gone (with the reason), a host mechanism stands where one of them was,
/// figures follow; E10 does not run there.
#[test]
fn the_host_runs_what_kvm_can_change() {
    let h = |name: &str| exitlab_lab::host::scenario(&Scenario::load(name).unwrap());
    let e1 = h("e1").unwrap().unwrap();
    assert_eq!(e1.backends, vec!["kvm".to_string()]);
    assert!(!e1.sweep.contains_key("profile"));
    assert_eq!(e1.points(false).len(), 11, "the host's own curve, one series");
    assert_eq!(e1.figures.iter().find(|f| f.name == "exits-vs-p").unwrap().series, None);
    let e3 = h("e3").unwrap().unwrap();
    assert!(!e3.sweep.contains_key("posted") && e3.sweep.contains_key("irqfd"));
    let share = e3.figures.iter().find(|f| f.name == "share-vs-rate").unwrap();
    assert_eq!(share.series.as_deref(), Some("irqfd"));
    assert!(share.filter.is_empty(), "{:?}", share.filter);
    assert!(e3.figures.iter().all(|f| f.name != "legacy-share"), "the host is not first-generation hardware");
    let e6 = h("e6").unwrap().unwrap();
    assert_eq!(e6.figures[0].y, "exits_per_kiter.EPT_MISCONFIG");
    let e9 = h("e9").unwrap().unwrap();
    assert!(!e9.sweep.contains_key("decode_assist"));
    assert!(h("e10").is_none());
    let e5 = h("e5").unwrap().unwrap();
    let exits = e5.figures.iter().find(|f| f.name == "exits").unwrap();
    assert_eq!(
        exits.filter.get("ioeventfd"),
        Some(&toml::Value::Boolean(true)),
        "a host-only axis held at its first value"
    );
}

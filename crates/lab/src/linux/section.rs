//! The report's Linux section: the question, an answer computed from the
//! numbers, the exits of each boot phase per profile (by reason, port,
//! MMIO region and MSR), the idle kernel with and without its tick beside
//! E4's microbenchmark and its fleet projection, and the host time of the
//! simulator's boot beside QEMU's TCG. results.csv (simulator figures
//! only) goes in `linux/`.

use super::phases::Phase;
use super::{Experiment, Kind, Run, Section, BZIMAGE};
use crate::chapter::thousands;
use crate::fleet::{number, Fleet, SIZES};
use crate::measure::Results;
use crate::output::{value, write_file};
use crate::report::Doc;
use std::collections::BTreeMap;
use std::path::Path;

/// The section's anchor and title.
pub(crate) const ID: &str = "linux";
pub(crate) const TITLE: &str = "Linux: where a real kernel's exits come from";

const QUESTION: &str = "How many exits does a real operating system cause, in which phase of its life and from which devices, and what does each hardware generation save? Debian 12's kernel (6.1) boots from its bzImage (its XZ decompressor included) with a busybox initramfs to its init, prints a marker and reboots, on each profile; then idles in `sleep 2` with its periodic tick and tickless.";

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn per_s(v: Option<f64>) -> String {
    v.map_or("n/a (no time)".into(), |v| thousands(v.round() as u64))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a (no time)".into(), |v| format!("{:.3}%", v * 100.0))
}

/// The `n` largest entries of `map` as "KEY count (share of `total`)".
fn top(map: &BTreeMap<String, u64>, n: usize, total: u64) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let items: Vec<String> = v
        .iter()
        .take(n)
        .map(|(k, c)| format!("{k} {} ({:.0}%)", thousands(**c), **c as f64 * 100.0 / total.max(1) as f64))
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The runs of `kind` that ran and were cut, with their phases.
fn runs(e: &Experiment, kind: Kind) -> Vec<(&Run, &Vec<Phase>)> {
    e.runs
        .iter()
        .filter(|(k, _, _)| *k == kind)
        .filter_map(|(_, _, r)| r.as_ref().ok().and_then(|r| r.phases.as_ref().ok().map(|p| (r, p))))
        .collect()
}

/// The runs of `kind` that failed, each as a line.
fn failures(e: &Experiment, kind: Kind) -> Vec<String> {
    e.runs
        .iter()
        .filter(|(k, _, _)| *k == kind)
        .filter_map(|(k, p, r)| match r {
            Err(why) => Some(format!("{} on {p}: n/a ({why})", k.name())),
            Ok(r) => r
                .phases
                .as_ref()
                .err()
                .map(|why| format!("{} on {p}: n/a ({why}; the run ended: {})", k.name(), r.outcome)),
        })
        .collect()
}

fn phase<'a>(phases: &'a [Phase], name: &str) -> Option<&'a Phase> {
    phases.iter().find(|p| p.name == name)
}

fn count(p: &Phase, reasons: &[&str]) -> u64 {
    reasons.iter().map(|r| p.reasons.get(*r).copied().unwrap_or(0)).sum()
}

/// Shadow paging's exits: #PF (EXCEPTION_NMI), CR accesses and INVLPG.
const SHADOW: [&str; 3] = ["EXCEPTION_NMI", "CR_ACCESS", "INVLPG"];

/// The answer: what dominates each phase, and what legacy pays more.
pub(crate) fn answer(e: &Experiment) -> String {
    let boots = runs(e, Kind::Boot);
    let mut text = String::new();
    for (r, phases) in &boots {
        let total: u64 = phases.iter().map(|p| p.exits).sum();
        let parts: Vec<String> = phases
            .iter()
            .map(|p| format!("{} {} ({})", p.name, thousands(p.exits), top(&p.reasons, 1, p.exits)))
            .collect();
        text += &format!(
            "On the {} profile the boot takes {} exits: {}. ",
            r.profile_name,
            thousands(total),
            parts.join("; ")
        );
    }
    let by = |name: &str| boots.iter().find(|(r, _)| r.profile == name).map(|(_, p)| *p);
    if let (Some(l), Some(m)) = (by("legacy"), by("modern")) {
        let total = |ps: &[Phase]| ps.iter().map(|p| p.exits).sum::<u64>();
        let shadow = |ps: &[Phase]| ps.iter().map(|p| count(p, &SHADOW)).sum::<u64>();
        let (lt, mt) = (total(l), total(m));
        text += &format!(
            "First-generation VT-x takes {:.1} times the exits of current VT-x: shadow paging traps the guest's page faults, CR3 loads and INVLPGs (#PF, CR_ACCESS, INVLPG: {} of its {} exits, against {} on modern, where EPT lets the guest own its page tables and the CR3 loads stay in the guest); what both share is the devices' port I/O (the console, the PIT and the 8259). ",
            lt as f64 / mt.max(1) as f64,
            thousands(shadow(l)),
            thousands(lt),
            thousands(shadow(m)),
        );
    }
    let idle = |k: Kind| {
        runs(e, k).into_iter().find(|(r, _)| r.profile == "modern").and_then(|(_, p)| phase(p, "idle").cloned())
    };
    if let (Some(t), Some(tl)) = (idle(Kind::Tick), idle(Kind::Tickless)) {
        text += &format!(
            "Idle in `sleep 2`, the kernel with its periodic 250 Hz tick takes {} exits per second against {} tickless (modern).",
            per_s(t.exits_per_s()),
            per_s(tl.exits_per_s())
        );
    }
    text
}

/// Writes the section `s` into `doc`, and results.csv into `dir/linux`; `e4` is E4's results, for the
/// microbenchmark beside the idle kernel.
pub(crate) fn write(doc: &mut Doc, dir: &Path, s: &Section, e4: Option<&Results>) -> Result<(), String> {
    doc.heading(2, ID, TITLE);
    doc.para("Question.", QUESTION);
    let e = match s {
        Section::Ran(e) => e,
        Section::NotRun(why) => {
            doc.para("", &format!("n/a ({why})"));
            return Ok(());
        }
    };
    let out = dir.join(ID);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write_file(&out, "results.csv", super::csv(e).as_bytes())?;
    doc.para("Answer.", &answer(e));
    doc.para(
        "How.",
        &format!(
            "The kernel and initramfs from {}; command line `{}`. Each run is traced (every exit with its time, RIP and access) and cut into phases: the decompressor until the first exit from the kernel's virtual mapping (RIP >= {:#x}) or its first \"Linux version\" line (the few exits of startup_64 before it switches to that mapping count to the decompressor), the kernel until its \"Run /init as init process\" line, user space until the marker line \"{}\", the shutdown until the triple fault of reboot=t. The console is rebuilt from the trace's COM1 writes. Guest time is the simulator's virtual clock; simulator figures are deterministic and in linux/results.csv.",
            e.dir.display(),
            Kind::Boot.cmdline(),
            super::phases::KERNEL_BASE,
            super::MARKER
        ),
    );
    boot_tables(doc, e);
    idle_tables(doc, e, e4);
    time_table(doc, e);
    Ok(())
}

fn boot_tables(doc: &mut Doc, e: &Experiment) {
    doc.heading(3, "linux-phases", "Exits by boot phase");
    let boots = runs(e, Kind::Boot);
    let header: Vec<String> = [
        "phase",
        "profile",
        "exits",
        "guest time",
        "exits per s of guest time",
        "share of time in exits",
        "top reasons",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    for name in BZIMAGE.names {
        for (r, phases) in &boots {
            if let Some(p) = phase(phases, name) {
                rows.push(vec![
                    p.name.clone(),
                    r.profile_name.clone(),
                    thousands(p.exits),
                    ms(p.end_ns - p.start_ns),
                    per_s(p.exits_per_s()),
                    pct(p.exit_share()),
                    top(&p.reasons, 3, p.exits),
                ]);
            }
        }
    }
    for (r, phases) in &boots {
        let all = whole(phases);
        rows.push(vec![
            "whole run".into(),
            r.profile_name.clone(),
            thousands(all.exits),
            ms(all.end_ns),
            per_s(all.exits_per_s()),
            pct(all.exit_share()),
            top(&all.reasons, 3, all.exits),
        ]);
    }
    doc.table(&header, &rows);
    doc.list(&failures(e, Kind::Boot));
    doc.heading(3, "linux-targets", "Where the exits go: ports, MMIO regions, MSRs");
    let header: Vec<String> = ["phase", "profile", "top ports", "MMIO regions", "top MSRs"].map(String::from).to_vec();
    let mut rows = Vec::new();
    for name in BZIMAGE.names {
        for (r, phases) in &boots {
            if let Some(p) = phase(phases, name) {
                rows.push(vec![
                    p.name.clone(),
                    r.profile_name.clone(),
                    top(&p.ports, 4, p.exits),
                    top(&p.mmio, 3, p.exits),
                    top(&p.msrs, 3, p.exits),
                ]);
            }
        }
    }
    doc.table(&header, &rows);
}

/// The whole run as one phase.
fn whole(phases: &[Phase]) -> Phase {
    let mut all = Phase { name: "whole run".into(), ..Phase::default() };
    for p in phases {
        all.end_ns = all.end_ns.max(p.end_ns);
        all.exits += p.exits;
        all.handle_ns += p.handle_ns;
        for (k, v) in &p.reasons {
            *all.reasons.entry(k.clone()).or_default() += v;
        }
    }
    all
}

fn idle_tables(doc: &mut Doc, e: &Experiment, e4: Option<&Results>) {
    doc.heading(3, "linux-idle", "E4 on a real kernel: periodic tick against tickless");
    doc.para(
        "",
        &format!(
            "The kernel through its PVH entry (no decompressor) with `{} [nohz=off] {}`: busybox's sleep is init; its exit makes the kernel panic and panic=-1 reboot at once. The idle window runs from the \"Run /bin/busybox as init process\" line to the panic line. Debian's kernel ticks at 250 Hz (CONFIG_HZ=250 in ../shared/linux's config) with nohz=off; by default it is tickless (NO_HZ_IDLE). Its timer here is the PIT through the 8259 (acpi=off, noapic). Beside it, E4's idle microbenchmark at its longest idle period (1 s) from this report's E4 points.",
            super::IDLE_INIT,
            super::IDLE_ARGS
        ),
    );
    let header: Vec<String> = [
        "guest",
        "profile",
        "idle window",
        "exits",
        "exits per s",
        "by reason (per s)",
        "top ports",
        "share of a core in exits",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (kind, timer) in [(Kind::Tick, "a periodic 250 Hz tick (nohz=off)"), (Kind::Tickless, "tickless (the default)")]
    {
        for (r, phases) in runs(e, kind) {
            let Some(p) = phase(phases, "idle") else { continue };
            let secs = p.guest_s();
            let reasons: Vec<String> = {
                let mut v: Vec<(&String, &u64)> = p.reasons.iter().collect();
                v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                v.iter().map(|(k, n)| format!("{k} {:.1}", **n as f64 / secs)).collect()
            };
            let name = format!("Debian 6.1, {timer}");
            rows.push(vec![
                name.clone(),
                r.profile_name.clone(),
                format!("{secs:.3} s"),
                thousands(p.exits),
                format!("{:.1}", p.exits_per_s().unwrap_or(0.0)),
                reasons.join(", "),
                top(&p.ports, 3, p.exits),
                pct(p.exit_share()),
            ]);
            if let Some(share) = p.exit_share() {
                lines.push((format!("{name}, {} profile", r.profile_name), share));
            }
        }
    }
    let fleet = e4.and_then(|r| Fleet::of(r, None).map(|f| (r, f)));
    if let Some((r, f)) = &fleet {
        for l in f.lines.iter().filter(|l| super::IDLE_PROFILES.contains(&l.source.as_str())) {
            let at = |metric: &str| {
                r.points
                    .iter()
                    .find(|p| {
                        p.na.is_none()
                            && p.axis("profile") == Some(l.source.as_str())
                            && p.axis("tick_hz") == Some(l.tick_hz.as_str())
                            && p.axis("period_ms") == Some(f.period_ms.as_str())
                    })
                    .and_then(|p| value(p, metric))
            };
            let name = format!("E4's idle guest, {}", r.scenario.words.value("tick_hz", &l.tick_hz));
            rows.push(vec![
                name.clone(),
                l.source.clone(),
                format!("{} ms periods", f.period_ms),
                String::new(),
                at("exits_per_s").map_or("n/a".into(), |v| format!("{v:.1}")),
                String::new(),
                String::new(),
                pct(Some(l.share)),
            ]);
            lines.push((format!("{name}, {} profile", l.source), l.share));
        }
    }
    doc.table(&header, &rows);
    doc.list(&[failures(e, Kind::Tick), failures(e, Kind::Tickless)].concat());
    doc.para("Reading.", &idle_reading(e));
    doc.heading(3, "linux-fleet", "Fleet projection: the real kernel beside E4");
    doc.para(
        "",
        "Host cores burned by N idle VMs: one VM's share of a core in exits in its idle window (the simulator's exit handling time over guest time; halted time is free) times N, as E4's projection (crates/lab/src/fleet.rs) computes it from E4's points; linear in N.",
    );
    let mut header = vec!["host cores burned by N idle VMs".to_string()];
    header.extend(SIZES.iter().map(|&n| format!("N = {}", thousands(n as u64))));
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|(name, share)| std::iter::once(name.clone()).chain(SIZES.iter().map(|&n| number(share * n))).collect())
        .collect();
    doc.table(&header, &rows);
}

/// What the idle runs show: wake-ups per second, exits per wake-up, and
/// why tickless still wakes.
fn idle_reading(e: &Experiment) -> String {
    let mut parts = Vec::new();
    for (r, phases) in runs(e, Kind::Tick).into_iter().chain(runs(e, Kind::Tickless)) {
        let Some(p) = phase(phases, "idle") else { continue };
        let hlt = p.reasons.get("HLT").copied().unwrap_or(0);
        let timer = if r.kind == Kind::Tick { "with the tick" } else { "tickless" };
        parts.push(format!(
            "{timer} on {} it halts {:.1} times a second and takes {:.1} exits per halt",
            r.profile_name,
            hlt as f64 / p.guest_s(),
            p.exits as f64 / hlt.max(1) as f64
        ));
    }
    format!(
        "{}. Where E4's guest takes one exit per tick (its LAPIC timer under APIC virtualization), the kernel's timer here is the PIT behind the 8259 (acpi=off, noapic), so each wake-up adds port I/O to the 8259 and the PIT (the top ports above). Tickless on the PIT still wakes often: Linux's i8253 clockevent can be armed at most 0x7fff PIT ticks ahead (27.5 ms at 1.193182 MHz; drivers/clocksource/i8253.c), so an idle kernel wakes at least 36 times a second whatever its next timer. On legacy, shadow paging's #PF exits, about as many with the tick as without (so not the timer's), weigh on both. The window includes busybox's start; the figures are per second of the whole window.",
        crate::chapter::capitalized(&parts.join("; "))
    )
}

fn time_table(doc: &mut Doc, e: &Experiment) {
    doc.heading(3, "linux-time", "Time: the simulator beside QEMU's TCG");
    let header: Vec<String> = ["machine", "host seconds", "timed"].map(String::from).to_vec();
    let mut rows = Vec::new();
    for (r, phases) in runs(e, Kind::Boot) {
        // The marker ends user space; the shutdown is all that follows.
        let marker = phase(phases, "user space").map_or(String::new(), |p| {
            format!(
                " (the marker at {:.3} s of its {:.3} s of guest time)",
                p.end_ns as f64 / 1e9,
                r.guest_ns as f64 / 1e9
            )
        });
        rows.push(vec![
            format!("exitlab simulator, {} profile, traced", r.profile_name),
            format!("{:.1}", r.host_s),
            format!("the whole run, to the triple fault{marker}"),
        ]);
    }
    match &e.qemu {
        Ok(q) => {
            let name = format!("{} (TCG)", q.version);
            rows.push(vec![
                name.clone(),
                q.to_marker_s.map_or("n/a (no marker in its log)".into(), |s| format!("{s:.1}")),
                "from its start until its serial log holds the marker".into(),
            ]);
            rows.push(vec![name, format!("{:.1}", q.to_exit_s), "until it exits (-no-reboot)".into()]);
        }
        Err(why) => rows.push(vec!["QEMU".into(), format!("n/a ({why})")]),
    }
    doc.table(&header, &rows);
    let mut notes = vec![
        "Host seconds are this host's, taken in this run (never in results.csv): the simulator's runs went two at a time on this 2-core machine, beside whatever else ran on it; QEMU ran alone before them.".to_string(),
    ];
    if let Ok(q) = &e.qemu {
        notes.push(format!(
            "QEMU: `{}`, timed from its start until LOG holds the marker, and until it exits (-no-reboot).",
            q.command
        ));
    }
    doc.list(&notes);
}

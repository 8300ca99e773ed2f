//! The chapter behind the experiments (../shared/seed-vm-exits.zh.txt)
//! beside exitlab's numbers: for each experiment, what the chapter says
//! (its figures and directions), what the simulator shows, what this
//! host's KVM shows, and whether they agree — with the reason where they
//! do not, computed from the numbers. The same numbers give the answer to
//! the experiment's question that opens its section of the report.

use crate::measure::Results;
use crate::output::value;
use exitlab_vmm::check::CaseResult;

/// One row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub says: String,
    pub sim: String,
    pub host: String,
    pub agrees: String,
}

/// An experiment's answer and its comparison with the chapter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chapter {
    pub answer: String,
    pub rows: Vec<Row>,
}

/// The host's side of an experiment: its results, or why there are none.
pub type Host<'a> = Result<&'a Results, String>;

/// The chapter's comparison for experiment `name` (e1 ... e10), from the
/// simulator's results and the host's. `None` for a scenario the chapter
/// does not speak to, or whose points are not all there (a `--set` that
/// took values away).
pub fn compare(name: &str, sim: &Results, host: &Host<'_>) -> Option<Chapter> {
    let mut c = match name {
        "e1" => e1(sim, host),
        "e2" => e2(sim, host),
        "e3" => e3(sim, host),
        "e4" => e4(sim, host),
        "e5" => e5(sim, host),
        "e6" => e6(sim, host),
        "e7" => e7(sim, host),
        "e9" => e9(sim, host),
        "e10" => e10(sim),
        _ => None,
    }?;
    c.answer = capitalized(&c.answer);
    Some(c)
}

/// `text` with its first letter upper case.
pub(crate) fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The value of `metric` at the point whose axes include every pair of
/// `at`, if it ran.
fn get(r: &Results, at: &[(&str, &str)], metric: &str) -> Option<f64> {
    r.points
        .iter()
        .find(|p| p.na.is_none() && at.iter().all(|(k, v)| p.axis(k) == Some(*v)))
        .and_then(|p| value(p, metric))
}

/// `v` of `metric` in the reader's unit.
fn show(r: &Results, metric: &str, v: f64) -> String {
    r.scenario.words.quantity(metric).show(v)
}

fn words(r: &Results, axis: &str, v: &str) -> String {
    r.scenario.words.value(axis, v)
}

fn na(why: &str) -> String {
    format!("n/a ({why})")
}

/// The host's cell: `f` of its results, or n/a with the reason.
fn host_cell(host: &Host<'_>, f: impl FnOnce(&Results) -> Option<String>) -> String {
    match host {
        Ok(h) => f(h).unwrap_or_else(|| na("the host's run has no such point")),
        Err(why) => na(why),
    }
}

/// A count as a sentence says it: 1000 -> "1,000", 2.5 -> "2.50".
fn n(v: f64) -> String {
    crate::words::Words::default().quantity("exits").show(v)
}

/// 100000 -> "100,000".
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn e1(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let m = "exits_per_kiter";
    let ps: Vec<String> = s.points.iter().filter_map(|p| p.axis("p").map(String::from)).collect();
    let (first, last) = (ps.first()?.clone(), ps.iter().max_by(|a, b| num(a).total_cmp(&num(b)))?.clone());
    let at = |prof: &str, p: &str| get(s, &[("profile", prof), ("p", p)], m);
    let (l0, m0, l1, m1) = (at("legacy", &first)?, at("modern", &first)?, at("legacy", &last)?, at("modern", &last)?);
    let mut pvals: Vec<&String> = ps.iter().collect();
    pvals.sort_by(|a, b| num(a).total_cmp(&num(b)));
    pvals.dedup();
    let fewer =
        pvals.iter().filter(|p| matches!((at("modern", p), at("legacy", p)), (Some(a), Some(b)) if a < b)).count();
    let (legacy, modern) = (words(s, "profile", "legacy"), words(s, "profile", "modern"));
    let q = |v: f64| show(s, m, v);
    let (s0, s1) = (l0 - m0, l1 - m1);
    let rel = |saving: f64, whole: f64| if whole > 0.0 { saving / whole } else { 0.0 };
    let own: Vec<String> = s
        .points
        .iter()
        .filter(|p| p.axis("profile") == Some("modern") && p.axis("p") == Some(last.as_str()))
        .flat_map(|p| p.metrics.iter().filter(|(k, v)| k.starts_with("exits_per_kiter.") && **v > 0.0))
        .map(|(k, v)| format!("{} {}", q(*v), k.trim_start_matches("exits_per_kiter.")))
        .collect();
    let host_curve = |h: &Results| {
        let (h0, h1) = (get(h, &[("p", &first)], m)?, get(h, &[("p", &last)], m)?);
        Some(format!(
            "its own curve rises from {} to {} exits per 1,000 iterations from p = {first} to {last}",
            q(h0),
            q(h1)
        ))
    };
    let rows = vec![
        Row {
            says: "Hardware assists (EPT for memory, APIC virtualization for interrupts) cut exits across the board.".into(),
            sim: format!(
                "{modern}: fewer exits at {fewer} of {} I/O fractions; {} against {} per 1,000 iterations at p = {first}, {} against {} at p = {last}",
                pvals.len(),
                q(m0),
                q(l0),
                q(m1),
                q(l1)
            ),
            host: host_cell(host, |h| host_curve(h).map(|c| format!("one machine, whose assists cannot be switched off: {c}"))),
            agrees: if fewer == pvals.len() { "yes".into() } else { format!("no: at {} of {} fractions the assists save nothing", pvals.len() - fewer, pvals.len()) },
        },
        Row {
            says: "I/O-bound work gains disproportionately: I/O was virtualization's Achilles' heel.".into(),
            sim: format!(
                "the saving grows from {} to {} exits per 1,000 iterations from p = {first} to {last}; as a share of {legacy}'s exits it goes from {} to {}",
                q(s0),
                q(s1),
                pct(rel(s0, l0)),
                pct(rel(s1, l1))
            ),
            host: na("the host has one hardware generation"),
            agrees: if s1 > s0 && rel(s1, l1) < rel(s0, l0) {
                format!(
                    "partly: in exits saved, yes; as a share, no: each I/O keeps exits of its own on any hardware ({} per 1,000 iterations at p = {last} on {modern}), while the assists remove the memory-management exits all work makes",
                    own.join(", ")
                )
            } else if s1 > s0 {
                "yes".into()
            } else {
                "no: the saving does not grow with I/O".into()
            },
        },
    ];
    let answer = format!(
        "{modern} takes fewer exits than {legacy} at {} I/O fraction tested: {} against {} per 1,000 iterations at p = {first}, {} against {} at p = {last}. The saving grows with I/O, from {} to {}, but what remains at p = {last} is the I/O's own exits ({}), which no assist here removes. {}",
        if fewer == pvals.len() { "every".to_string() } else { format!("{fewer} of {}", pvals.len()) },
        q(m0),
        q(l0),
        q(m1),
        q(l1),
        q(s0),
        q(s1),
        own.join(", "),
        match host {
            Ok(h) => host_curve(h).map(|c| format!("On this host's KVM, {c}.")).unwrap_or_default(),
            Err(_) => String::new(),
        }
    );
    Some(Chapter { answer: answer.trim_end().to_string(), rows })
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// "yes" when `lower` is below `higher`, else "no" with both.
fn lower_verdict(lower: f64, higher: f64, what: &str) -> String {
    if lower < higher {
        "yes".into()
    } else {
        format!("no: {what} is not lower")
    }
}

fn e2(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let (e, v) = ("e1000-pingpong", "virtio-pingpong");
    let at = |r: &Results, w: &str, m: &str, modern: bool| {
        let mut a = vec![("workload", w), ("window", "1")];
        if modern {
            a.push(("profile", "modern"));
        }
        get(r, &a, m)
    };
    let (ev, vv) = (words(s, "workload", e), words(s, "workload", v));
    let row = |says: &str, m: &str, what: &str| -> Option<Row> {
        let (se, sv) = (at(s, e, m, true)?, at(s, v, m, true)?);
        let pair = host.as_ref().ok().and_then(|h| Some((at(h, e, m, false)?, at(h, v, m, false)?)));
        let host_text = match (host, pair) {
            (Err(why), _) => na(why),
            (Ok(_), None) => na("the host's run has no such point"),
            (Ok(h), Some((he, hv))) => format!("{} against {}", show(h, m, hv), show(h, m, he)),
        };
        let mut agrees = lower_verdict(sv, se, what);
        if agrees == "yes" && pair.is_some_and(|(he, hv)| hv >= he) {
            agrees = format!("yes on the simulator; not on this host, where {what} is set by its shared, nested CPUs (the guest's driver runs in KVM's instruction emulator)");
        }
        Some(Row {
            says: says.into(),
            sim: format!("{} against {} (window 1, current VT-x)", show(s, m, sv), show(s, m, se)),
            host: host_text,
            agrees,
        })
    };
    let rows = vec![
        row("Full emulation of an e1000 means a storm of exits per packet; virtio-net batches requests behind one kick and takes far fewer.", "exits_per_packet", "the exit count")?,
        row("With fewer exits, virtio-net's mean latency is markedly lower...", "latency_ns.mean", "the mean round trip")?,
        row("...and so is its jitter.", "latency_ns.stddev", "the spread of round trips")?,
    ];
    let m = |w: &str, metric: &str| at(s, w, metric, true);
    let answer = format!(
        "{vv} costs {} exits per packet against {} for {ev} (one frame in flight, current VT-x): its round trip is {} against {}, with a standard deviation of {} against {}.{}",
        show(s, "exits_per_packet", m(v, "exits_per_packet")?),
        show(s, "exits_per_packet", m(e, "exits_per_packet")?),
        show(s, "latency_ns.mean", m(v, "latency_ns.mean")?),
        show(s, "latency_ns.mean", m(e, "latency_ns.mean")?),
        show(s, "latency_ns.stddev", m(v, "latency_ns.stddev")?),
        show(s, "latency_ns.stddev", m(e, "latency_ns.stddev")?),
        match host {
            Ok(h) => match (at(h, v, "exits_per_packet", false), at(h, e, "exits_per_packet", false)) {
                (Some(a), Some(b)) => format!(
                    " On this host's KVM, virtio-net's notifications and interrupts never reach the VMM ({} exits to userspace per packet, against {} for the e1000).",
                    show(h, "exits_per_packet", a),
                    show(h, "exits_per_packet", b)
                ),
                _ => String::new(),
            },
            Err(_) => String::new(),
        }
    );
    Some(Chapter { answer, rows })
}

/// Exits that reached the VMM per 1,000 iterations at a point (on KVM,
/// `exits_per_kiter` also counts those KVM handles itself).
fn seen(r: &Results, at: &[(&str, &str)]) -> Option<f64> {
    let p = r.points.iter().find(|p| p.na.is_none() && at.iter().all(|(k, v)| p.axis(k) == Some(*v)))?;
    Some(p.metrics.iter().filter(|(k, _)| k.starts_with("exits_per_kiter.")).fold(0.0, |a, (_, v)| a + v))
}

fn e3(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let rate = s.points.iter().filter_map(|p| p.axis("rate")).max_by(|a, b| num(a).total_cmp(&num(b)))?.to_string();
    let at = |posted: &str, m: &str| get(s, &[("profile", "modern"), ("posted", posted), ("rate", &rate)], m);
    let lat = "irq_latency_ns.mean";
    let (share_x, share_p) = (at("false", "exit_time_share")?, at("true", "exit_time_share")?);
    let (lat_x, lat_p) = (at("false", lat)?, at("true", lat)?);
    let rate_words = thousands(num(&rate) as u64);
    let us = |ns: f64| show(s, lat, ns);
    // The path from device to CPU the model does not price, if the
    // chapter's two latencies are to hold together: Lx + d = 2 (Lp + d).
    let d = lat_x - 2.0 * lat_p;
    let host_lat = |h: &Results| {
        let r = h.points.iter().filter_map(|p| p.axis("rate")).max_by(|a, b| num(a).total_cmp(&num(b)))?.to_string();
        let f = |irqfd: &str| get(h, &[("irqfd", irqfd), ("rate", &r)], "irq_latency_ns.p50");
        Some((f("true")?, f("false")?, r))
    };
    let host_text = match host {
        Ok(h) => match host_lat(h) {
            Some((fd, msi, r)) => Ok(format!(
                "median {} through an irqfd, {} with KVM_SIGNAL_MSI from userspace, at {}/s",
                us(fd),
                us(msi),
                thousands(num(&r) as u64)
            )),
            None => Err(na("the host's run has no such point")),
        },
        Err(why) => Err(na(why)),
    };
    let host_lat_cell = host_text.clone().unwrap_or_else(|e| e);
    let no_exit_choice = na("KVM delivers interrupts in the kernel, posted or injected: the VMM cannot choose an exit per interrupt, and neither way exits to it");
    let rows = vec![
        Row {
            says: format!(
                "With an exit per interrupt, {rate_words} interrupts a second cost about 15% of a host core..."
            ),
            sim: format!("{} (exit and injection, current VT-x, {rate_words}/s)", show(s, "exit_time_share", share_x)),
            host: no_exit_choice.clone(),
            agrees: if (share_x * 100.0 - 15.0).abs() <= 2.5 {
                "yes, within the chapter's rounding".into()
            } else {
                format!("no: {} per interrupt", us(share_x * 1e9 / num(&rate)))
            },
        },
        Row {
            says: "...and the interrupt reaches the guest after more than 2 us.".into(),
            sim: format!("{} from completion to the driver", us(lat_x)),
            host: host_lat_cell.clone(),
            agrees: if lat_x > 2000.0 {
                "yes".into()
            } else {
                format!(
                    "no: the model prices the exit (3,029 cycles, 1.51 us at 2 GHz), the injection and the guest's handler, not the interrupt's way from the device to the CPU (the MSI write, interrupt remapping, the host's interrupt entry), which no source in docs/SOURCES.md prices; if that path, common to both deliveries, takes {}, the chapter's two latencies hold together: {} with an exit, half that posted",
                    us(d),
                    us(lat_x + d)
                )
            },
        },
        Row {
            says: "Posted interrupts bring the cost under 1% of a core...".into(),
            sim: format!("{} (posted)", show(s, "exit_time_share", share_p)),
            host: no_exit_choice,
            agrees: if share_p < 0.01 { "yes".into() } else { "no".into() },
        },
        Row {
            says: "...and about halve the latency.".into(),
            sim: format!("{}: {} of the exit path's", us(lat_p), pct(lat_p / lat_x)),
            host: host_lat_cell,
            agrees: if (0.4..=0.6).contains(&(lat_p / lat_x)) {
                "yes".into()
            } else {
                format!(
                    "no: posted delivery here is only the CPU's event delivery and the guest's handler ({}); with the device-to-CPU path of the row above the ratio is the chapter's half",
                    us(lat_p)
                )
            },
        },
    ];
    let answer = format!(
        "Posted interrupts remove the exit from every completion: at {rate_words} completions a second, exits cost {} of the core with exit and injection and {} posted, and the driver takes a completion {} after the device finishes it instead of {}.{}",
        show(s, "exit_time_share", share_x),
        show(s, "exit_time_share", share_p),
        us(lat_p),
        us(lat_x),
        match (host_text, host.as_ref().ok().and_then(|h| host_lat(h))) {
            (Ok(t), Some((fd, msi, _))) if (fd - msi).abs() < 0.1 * fd.max(msi) => format!(
                " On this host, where KVM delivers the interrupt either way and the guest's ring-0 driver runs in KVM's instruction emulator, an irqfd and an injection call from userspace come out within 10% of each other, lost in the driver's own time: {t}."
            ),
            (Ok(t), Some((fd, msi, _))) => format!(
                " On this host, where KVM delivers the interrupt either way, {} is the quicker: {t}.",
                if fd < msi { "the irqfd" } else { "the injection call from userspace" }
            ),
            _ => String::new(),
        }
    );
    Some(Chapter { answer, rows })
}

fn e4(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let m = "exits_per_kiter";
    let periods: Vec<f64> = {
        let mut p: Vec<f64> = s.points.iter().filter_map(|p| p.axis("period_ms")).map(num).collect();
        p.sort_by(f64::total_cmp);
        p.dedup();
        p
    };
    let (short, long) = (*periods.first()?, *periods.last()?);
    let per = |r: &Results, hz: &str, ms: f64, modern: bool| {
        let ms = format!("{ms}");
        let mut a = vec![("tick_hz", hz), ("period_ms", ms.as_str())];
        if modern {
            a.push(("profile", "modern"));
        }
        get(r, &a, m).map(|v| v / 1000.0)
    };
    let (t1, t1000) = (per(s, "1000", short, true)?, per(s, "1000", long, true)?);
    let tickless: Vec<f64> = periods.iter().filter_map(|&p| per(s, "0", p, true)).collect();
    let (tl_min, tl_max) = tickless.iter().fold((f64::MAX, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    let reasons: Vec<String> = s
        .points
        .iter()
        .filter(|p| p.axis("profile") == Some("modern") && p.axis("tick_hz") == Some("0"))
        .take(1)
        .flat_map(|p| p.metrics.iter().filter(|(k, v)| k.starts_with("exits_per_kiter.") && **v > 0.0))
        .map(|(k, v)| format!("{} {}", n(v / 1000.0), k.trim_start_matches("exits_per_kiter.")))
        .collect();
    let ms = |v: f64| if v >= 1000.0 { format!("{} s", v / 1000.0) } else { format!("{v} ms") };
    let growth = t1000 / t1;
    let fleet = crate::fleet::Fleet::of(s, host.as_ref().ok().copied());
    let million = |src: &str, mode: &str| fleet.as_ref().and_then(|f| f.cores(src, mode, 1e6));
    let c = |v: f64| crate::fleet::cores_text(v);
    let host_rows = |h: &Results| {
        let (h1, h1000) = (per(h, "1000", short, false)?, per(h, "1000", long, false)?);
        let hl: Vec<f64> = periods.iter().filter_map(|&p| per(h, "0", p, false)).collect();
        Some((h1, h1000, hl))
    };
    let rows = vec![
        Row {
            says: "With a periodic tick every needless wake-up is an exit: the exits of an idle period grow with its length.".into(),
            sim: format!(
                "exits per idle period with a 1,000 Hz tick: {} for a period of {}, {} for {} ({growth:.0} times as many for {:.0} times the length)",
                n(t1),
                ms(short),
                n(t1000),
                ms(long),
                long / short
            ),
            host: host_cell(host, |h| {
                let (h1, h1000, _) = host_rows(h)?;
                Some(format!("{} for a period of {}, {} for {}", n(h1), ms(short), n(h1000), ms(long)))
            }),
            agrees: if (growth / (long / short) - 1.0).abs() < 0.1 { "yes".into() } else { "no: the exits do not follow the length".into() },
        },
        Row {
            says: "A tickless kernel takes a small constant instead: about one exit to go to sleep and one to wake.".into(),
            sim: format!(
                "exits per idle period: {} to {} whatever its length ({} on current VT-x)",
                n(tl_min),
                n(tl_max),
                reasons.join(", ")
            ),
            host: host_cell(host, |h| {
                let (_, _, hl) = host_rows(h)?;
                let (a, b) = hl.iter().fold((f64::MAX, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
                Some(format!(
                    "exits per idle period: {} to {} (KVM's count; this host's nested KVM runs the guest's timer write in its instruction emulator, so only the HLT shows)",
                    n(a),
                    n(b)
                ))
            }),
            agrees: if tl_max <= 2.5 && tl_max - tl_min < 0.5 {
                "yes: two exits a period, though not the chapter's two: the wake-up is a VM entry, not an exit; the exits are the write that arms the one-shot timer (APIC_WRITE: APIC virtualization leaves the timer's registers to the hypervisor) and the HLT".into()
            } else {
                "no: the tickless count is not a small constant".into()
            },
        },
        Row {
            says: "For a provider with a million idle VMs, the periodic tick wastes CPU on a huge scale.".into(),
            sim: match (million("modern", "1000"), million("modern", "0"), million("legacy", "1000")) {
                (Some(t), Some(l), Some(lg)) => format!(
                    "1,000,000 idle VMs burn {} in exits with a 1,000 Hz tick and {} tickless on current VT-x ({} with the tick on first-generation VT-x)",
                    c(t),
                    c(l),
                    c(lg)
                ),
                _ => na("the fleet projection needs E4's 1,000 Hz and tickless points"),
            },
            host: match (million("host", "1000"), million("host", "0")) {
                (Some(t), Some(l)) => format!("{} with a 1,000 Hz tick, {} tickless (the vCPU thread's own CPU time here)", c(t), c(l)),
                _ => match host {
                    Err(why) => na(why),
                    Ok(_) => na("the host's run has no 1,000 Hz or tickless point"),
                },
            },
            agrees: match (million("modern", "1000"), million("modern", "0")) {
                (Some(t), Some(l)) if t > 10.0 * l => "yes".into(),
                _ => "no".into(),
            },
        },
    ];
    let answer = format!(
        "A tickless kernel costs {} exits per idle period whatever its length; a 1,000 Hz tick costs one per millisecond asleep, {} for a {} period: {:.0} times as many. {}",
        n(tl_max),
        n(t1000),
        ms(long),
        t1000 / tl_max.max(f64::MIN_POSITIVE),
        match (million("modern", "1000"), million("modern", "0")) {
            (Some(t), Some(l)) => format!("Across 1,000,000 idle VMs that is {} of host CPU against {} (current VT-x, the simulator's exit costs).", c(t), c(l)),
            _ => String::new(),
        }
    );
    Some(Chapter { answer: answer.trim_end().to_string(), rows })
}

fn e5(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let at = |r: &Results, kicks: &str, n: &str, m: &str, extra: &[(&str, &str)]| {
        let mut a = vec![("kicks", kicks), ("kick_n", n), ("kick_us", "50")];
        a.extend_from_slice(extra);
        get(r, &a, m)
    };
    let kick = "exits_per_packet.EPT_MISCONFIG";
    let told = "device_per_kiter.kick-doorbell.notifications";
    let (every, bell) = (at(s, "every", "4", kick, &[])?, at(s, "doorbell", "4", kick, &[])?);
    let notes = at(s, "doorbell", "4", told, &[])?;
    let (t_every, t_bell) =
        (at(s, "every", "4", "handler_ns_per_packet", &[])?, at(s, "doorbell", "4", "handler_ns_per_packet", &[])?);
    let (l_every, l_bell) =
        (at(s, "every", "4", "latency_ns.mean", &[])?, at(s, "doorbell", "4", "latency_ns.mean", &[])?);
    let on = [("ioeventfd", "true")];
    let rows = vec![
        Row {
            says: "The guest's kicks no longer trap one by one...".into(),
            sim: format!("kick exits per packet: {} trapped, {} with the doorbell", show(s, kick, every), show(s, kick, bell)),
            host: host_cell(host, |h| {
                let trapped = at(h, "every", "4", "exits_per_packet", &[("ioeventfd", "false")])?;
                let fd = at(h, "every", "4", "exits_per_packet", &on)?;
                Some(format!(
                    "exits to userspace per packet: {} with every kick trapped, {} through ioeventfds",
                    show(h, "exits_per_packet", trapped),
                    show(h, "exits_per_packet", fd)
                ))
            }),
            agrees: lower_verdict(bell, every, "the kick exit count"),
        },
        Row {
            says: "...a batch of N = 4 requests (or tau = 50 us, whichever comes first) becomes one notification to the hypervisor...".into(),
            sim: format!("{} notifications per 1,000 packets at N = 4: one per {:.1} packets", show(s, told, notes), 1000.0 / notes),
            host: host_cell(host, |h| {
                let n = at(h, "doorbell", "4", told, &on)?;
                let every = at(h, "every", "4", "device_per_kiter.virtio-net.kicks", &on)?;
                Some(format!(
                    "{} per 1,000 packets with the VMM's batching at N = 4, against {} queue notifications when the eventfd alone batches",
                    show(h, told, n),
                    show(h, told, every)
                ))
            }),
            agrees: if (notes - 250.0).abs() <= 25.0 { "yes".into() } else { format!("no: one per {:.1} packets, not 4", 1000.0 / notes) },
        },
        Row {
            says: "...reclaiming the CPU time the transitions cost.".into(),
            sim: format!(
                "VMM time per packet {} trapped, {} with N = 4 (the round trip grows from {} to {} while batches wait)",
                show(s, "handler_ns_per_packet", t_every),
                show(s, "handler_ns_per_packet", t_bell),
                show(s, "latency_ns.mean", l_every),
                show(s, "latency_ns.mean", l_bell)
            ),
            host: na("the device thread's own time is not measured"),
            agrees: lower_verdict(t_bell, t_every, "the VMM's time"),
        },
    ];
    let answer = format!(
        "Coalescing in hardware removes the kick exits ({} per packet trapped, {} with the doorbell) and tells the hypervisor once per batch: {} notifications per 1,000 packets at N = 4. The VMM's time per packet falls from {} to {}; the price is latency, {} against {} per round trip.",
        show(s, kick, every),
        show(s, kick, bell),
        show(s, told, notes),
        show(s, "handler_ns_per_packet", t_every),
        show(s, "handler_ns_per_packet", t_bell),
        show(s, "latency_ns.mean", l_bell),
        show(s, "latency_ns.mean", l_every)
    );
    Some(Chapter { answer, rows })
}

fn e6(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let tricks: Vec<&str> =
        ["0", "1", "2"].into_iter().filter(|t| s.points.iter().any(|p| p.axis("trick") == Some(t))).collect();
    let v = "exits_per_kiter.EPT_VIOLATION";
    let sim: Vec<f64> =
        tricks.iter().map(|t| get(s, &[("profile", "modern"), ("trick", t)], v)).collect::<Option<_>>()?;
    let blocked = |r: &Results, t: &str, extra: &[(&str, &str)]| {
        let mut a = vec![("trick", t)];
        a.extend_from_slice(extra);
        let w = get(r, &a, "device_per_kiter.isolated.blocked_writes").unwrap_or(0.0);
        let rd = get(r, &a, "device_per_kiter.isolated.blocked_reads").unwrap_or(0.0);
        w + rd
    };
    let all = sim.iter().all(|&x| (x - 1000.0).abs() < 0.5)
        && tricks.iter().all(|t| (blocked(s, t, &[("profile", "modern")]) - 1000.0).abs() < 0.5);
    // "1,000 per 1,000 attempts with each trick", or each trick's.
    let list = |r: &Results, m: &str, xs: &[f64]| match xs.windows(2).all(|w| w[0] == w[1]) {
        true => format!("{} per 1,000 attempts with each trick", xs.first().map_or(String::new(), |x| show(r, m, *x))),
        false => format!("{} per 1,000 attempts", xs.iter().map(|x| show(r, m, *x)).collect::<Vec<_>>().join(", ")),
    };
    let rows = vec![Row {
        says: "Rewriting the guest's own page tables does not get past the EPT: the two-dimensional walk completes, the EPT check fails, an EPT violation hands the hypervisor the address and the access, and it blocks the write.".into(),
        sim: format!(
            "EPT violations: {} (tricks {}: identity map, forged alias write, alias read), each attempt blocked",
            list(s, v, &sim),
            tricks.join(", ")
        ),
        host: host_cell(host, |h| {
            let m = "exits_per_kiter.EPT_MISCONFIG";
            let xs: Vec<f64> = tricks.iter().map(|t| get(h, &[("trick", t)], m)).collect::<Option<_>>()?;
            let b: Vec<f64> = tricks.iter().map(|t| blocked(h, t, &[])).collect();
            Some(format!(
                "MMIO exits (the page is outside every memory slot): {}; blocked: {}",
                list(h, m, &xs),
                list(h, m, &b)
            ))
        }),
        agrees: if all { "yes".into() } else { "no: an attempt got through or was not seen".into() },
    }];
    let answer = format!(
        "No: every attempt, through the identity map or through an alias the guest forged in its own page tables, ends in an EPT violation the VMM blocks ({}), and the page never changes.{}",
        list(s, v, &sim),
        match host {
            Ok(_) => " On this host's KVM the isolated page is outside every memory slot, and each attempt is an MMIO exit the VMM blocks the same way.",
            Err(_) => "",
        }
    );
    Some(Chapter { answer, rows })
}

fn e7(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let pages: Vec<f64> = {
        let mut p: Vec<f64> = s.points.iter().filter_map(|p| p.axis("pages")).map(num).collect();
        p.sort_by(f64::total_cmp);
        p.dedup();
        p
    };
    let (small, big) = (format!("{}", pages.first()?), format!("{}", pages.last()?));
    let m = "exits_per_kiter";
    let at = |r: &Results, mon: &str, pg: &str, metric: &str| get(r, &[("monitor", mon), ("pages", pg)], metric);
    let (wp, pml) = (at(s, "write-protect", &big, m)? / 1000.0, at(s, "pml", &big, m)?);
    let logged = |r: &Results, pg: &str| at(r, "pml", pg, "pages_logged_per_kiter");
    let rows = vec![
        Row {
            says: "Write protection: every write exits; the hypervisor logs it, opens the page for that one instruction and protects it again.".into(),
            sim: format!("exits per monitored write: {} (the EPT violation, and the monitor-trap-flag exit after the single step)", n(wp)),
            host: host_cell(host, |h| {
                let x = seen(h, &[("monitor", "write-protect"), ("pages", &big)])? / 1000.0;
                Some(format!(
                    "exits per write through a read-only memory slot: {} (KVM hands the VMM the write, which it completes itself: no single step)",
                    n(x)
                ))
            }),
            agrees: if wp >= 1.0 { "yes".into() } else { "no".into() },
        },
        Row {
            says: "PML: pages stay writable, the CPU logs the first write to each page, and only a full log (512 entries) exits.".into(),
            sim: format!(
                "{} exits per 1,000 writes over {big} pages (one per {:.0} writes); {} pages logged per 1,000 writes over {small} pages, {} over {big}",
                show(s, m, pml),
                1000.0 / pml.max(f64::MIN_POSITIVE),
                show(s, m, logged(s, &small)?),
                show(s, m, logged(s, &big)?)
            ),
            host: host_cell(host, |h| {
                let x = seen(h, &[("monitor", "pml"), ("pages", &big)])?;
                Some(format!(
                    "exits to userspace per 1,000 writes: {}; KVM's dirty log holds {} pages per 1,000 writes over {small} pages, {} over {big}",
                    n(x),
                    show(h, m, logged(h, &small)?),
                    show(h, m, logged(h, &big)?)
                ))
            }),
            agrees: if (1000.0 / pml - 512.0).abs() < 16.0 { "yes".into() } else { format!("no: one exit per {:.0} writes", 1000.0 / pml) },
        },
    ];
    let answer = format!(
        "Write protection sees every write at {} exits each; PML sees the first write to each page per harvest and exits once per 512 logged pages ({} per 1,000 writes over {big} pages), {:.0} times fewer exits.{}",
        n(wp),
        show(s, m, pml),
        wp * 1000.0 / pml.max(f64::MIN_POSITIVE),
        match host {
            Ok(_) => " On this host's KVM the same choice is a read-only memory slot (an exit to the VMM per write) against the dirty-page log (none).",
            Err(_) => "",
        }
    );
    Some(Chapter { answer, rows })
}

fn e9(s: &Results, host: &Host<'_>) -> Option<Chapter> {
    let forms: Vec<&str> =
        ["0", "1", "2", "3"].into_iter().filter(|f| s.points.iter().any(|p| p.axis("form") == Some(f))).collect();
    let (f0, f1) = (*forms.first()?, *forms.last()?);
    let at = |assist: &str, f: &str, m: &str| get(s, &[("decode_assist", assist), ("form", f)], m);
    let b = "work_per_exit.bytes_decoded";
    let w = "work_per_exit.page_walks";
    let t = "avg_exit_ns";
    let rows = vec![Row {
        says: "A trapped complex instruction and a simple trap are both one exit, but the hypervisor's work during the exit is much higher for the complex one: a hidden virtualization tax of instruction-set complexity.".into(),
        sim: format!(
            "{} exits per 1,000 stores in every form; without an assist the VMM decodes {} to {} bytes and walks the guest's tables {} times per exit, {} to {}; with one, nothing, {}",
            n(at("false", f0, "exits_per_kiter")?),
            n(at("false", f0, b)?),
            n(at("false", f1, b)?),
            n(at("false", f1, w)?),
            show(s, t, at("false", f0, t)?),
            show(s, t, at("false", f1, t)?),
            show(s, t, at("true", f1, t)?)
        ),
        host: host_cell(host, |h| {
            let x0 = get(h, &[("form", f0)], t)?;
            let x1 = get(h, &[("form", f1)], t)?;
            Some(format!(
                "one exit per store; KVM decodes the instruction in the kernel, the VMM {} bytes; {} to {} per exit in userspace",
                n(get(h, &[("form", f1)], b).unwrap_or(0.0)),
                show(h, t, x0),
                show(h, t, x1)
            ))
        }),
        agrees: if at("false", f1, b)? > at("true", f1, b)? { "yes".into() } else { "no".into() },
    }];
    let answer = format!(
        "Every form of the store is one exit; what grows is the VMM's work: {} to {} instruction bytes decoded and {} guest page walks per exit without a decode assist ({} to {} per exit), none with one ({}).",
        n(at("false", f0, b)?),
        n(at("false", f1, b)?),
        n(at("false", f1, w)?),
        show(s, t, at("false", f0, t)?),
        show(s, t, at("false", f1, t)?),
        show(s, t, at("true", f1, t)?)
    );
    Some(Chapter { answer, rows })
}

fn e10(s: &Results) -> Option<Chapter> {
    let hz: Vec<f64> = {
        let mut v: Vec<f64> = s.points.iter().filter_map(|p| p.axis("timer_hz")).map(num).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let lens: Vec<f64> = {
        let mut v: Vec<f64> = s.points.iter().filter_map(|p| p.axis("len")).map(num).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let m = "guest_per_kiter.tx_aborts";
    let at = |len: f64, hz: f64| get(s, &[("len", &format!("{len}")), ("timer_hz", &format!("{hz}"))], m);
    let (lo, hi) = (*hz.first()?, *hz.last()?);
    let (short, long) = (*lens.first()?, *lens.last()?);
    let rises = lens.iter().all(|&l| matches!((at(l, lo), at(l, hi)), (Some(a), Some(b)) if b > a));
    let rows = vec![Row {
        says: "An exit during a transaction aborts it first, so the hypervisor's activity raises the abort rate.".into(),
        sim: format!(
            "aborted transactions per 1,000: {} and {} ({short:.0} and {long:.0} lines) with no host timer, {} and {} with it at {} Hz",
            show(s, m, at(short, lo)?),
            show(s, m, at(long, lo)?),
            show(s, m, at(short, hi)?),
            show(s, m, at(long, hi)?),
            thousands(hi as u64)
        ),
        host: na("this host's CPU has no RTM (TSX)"),
        agrees: if rises { "yes".into() } else { "no".into() },
    }];
    let answer = format!(
        "Every exit inside a transaction aborts it: with the host's timer at {} Hz, {} of 1,000 {short:.0}-line transactions and {} of 1,000 {long:.0}-line ones abort, against {} and {} with no timer; longer transactions are more often caught by an exit.",
        thousands(hi as u64),
        show(s, m, at(short, hi)?),
        show(s, m, at(long, hi)?),
        show(s, m, at(short, lo)?),
        show(s, m, at(long, lo)?)
    );
    Some(Chapter { answer, rows })
}

/// E8: the chapter's order of events for TF over an emulated MOV CR3,
/// against the suite on the simulator's profiles and on the host.
pub fn e8(sim: &[(String, CaseResult)], host: &Result<Vec<CaseResult>, String>) -> Chapter {
    let cr3 = "tf-after-mov-cr3";
    let sim_cr3: Vec<String> = sim
        .iter()
        .filter(|(_, r)| r.name == cr3)
        .map(|(p, r)| format!("{} on {p}", if r.pass { "passes" } else { "fails" }))
        .collect();
    let passed = sim.iter().filter(|(_, r)| r.pass).count();
    let host_cell = match host {
        Ok(h) => {
            let cr3_pass = h.iter().any(|r| r.name == cr3 && r.pass);
            let failed: Vec<&str> = h.iter().filter(|r| !r.pass).map(|r| r.name).collect();
            format!(
                "{cr3} {}; {} of {} cases pass{}",
                if cr3_pass { "passes" } else { "fails" },
                h.len() - failed.len(),
                h.len(),
                if failed.is_empty() { String::new() } else { format!(" (deviations: {})", failed.join(", ")) }
            )
        }
        Err(why) => na(why),
    };
    let sim_ok = sim.iter().filter(|(_, r)| r.name == cr3).all(|(_, r)| r.pass);
    let rows = vec![Row {
        says: "Under TF, MOV CR3 exits; the VMM emulates it, sees TF and a pending #DB, injects the #DB rather than handling it, and the guest's own handler runs with RIP after the MOV, as on bare metal.".into(),
        sim: format!("{cr3} {}; {passed} of {} case runs pass", sim_cr3.join(", "), sim.len()),
        host: host_cell,
        agrees: if sim_ok { "yes".into() } else { "no".into() },
    }];
    let answer = match host {
        Ok(h) => {
            let failed: Vec<&str> = h.iter().filter(|r| !r.pass).map(|r| r.name).collect();
            format!(
                "Yes on the simulator: {passed} of {} case runs reach the guest exactly as bare metal would. This host's KVM deviates in {} of {} cases{}.",
                sim.len(),
                failed.len(),
                h.len(),
                if failed.is_empty() { String::new() } else { format!(": {}", failed.join(", ")) }
            )
        }
        Err(_) => format!("Yes: {passed} of {} case runs reach the guest exactly as bare metal would.", sim.len()),
    };
    Chapter { answer, rows }
}

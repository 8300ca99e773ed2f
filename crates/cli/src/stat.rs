//! `exitlab stat`: run a workload or an image and print its exits as
//! `perf kvm stat report` does, then the exits by guest function, the
//! devices' and the guest's figures, and on the PC platform who served
//! each device.

use crate::{guest_of, run_with, GuestArgs, MachineArgs, UsageError};
use exitlab_guest::layout::Phase;
use exitlab_vmm::sites::{functions_json, render_functions};
use exitlab_vmm::{render_json, render_table, GuestError, Outcome, RunOptions, RunReport, StatView};
use std::process::ExitCode;

pub struct StatFlags<'a> {
    pub json: bool,
    pub phase: Option<String>,
    pub console: bool,
    pub top: &'a str,
}

fn phase_of(name: Option<&str>) -> Result<Option<Phase>, UsageError> {
    match name {
        None | Some("all") => Ok(None),
        Some(name) => Phase::from_name(name).map(Some).ok_or_else(|| {
            UsageError(format!("unknown phase `{name}` (try one of: all, boot, warmup, measure, done)"))
        }),
    }
}

pub fn stat(g: &GuestArgs, m: &MachineArgs, f: StatFlags<'_>) -> Result<ExitCode, UsageError> {
    let phase = phase_of(f.phase.as_deref())?;
    let top: usize =
        f.top.trim().parse().map_err(|_| UsageError(format!("--top: `{}` is not a whole number", f.top)))?;
    let guest = guest_of(g)?;
    let is_image = guest.loaded.is_some();
    let options = RunOptions { exit_sites: top > 0, ..RunOptions::default() };
    let report = run_with(m, &guest, options)?;
    let stats = match phase {
        Some(p) => report.accountant.phase_stats(p).clone(),
        None => report.accountant.all(),
    };
    let view = StatView {
        workload: &guest.boot.name,
        backend: m.backend.name(),
        phase: phase.map_or("all", Phase::name),
        stats: &stats,
        virtual_time: m.backend == crate::Backend::Sim,
    };
    let functions = report.sites.by_function(phase, &|rip| guest.function(rip), top);
    if f.console && !is_image {
        eprint!("{}", report.console());
    }
    let outcome_json = match &report.outcome {
        Outcome::Exited { status } => serde_json::json!({ "status": status }),
        Outcome::DebugExit { code, status } => serde_json::json!({ "debug_exit": code, "status": status }),
        o @ (Outcome::Reset { .. } | Outcome::PowerOff) => serde_json::json!({ "power": o.to_string() }),
        Outcome::ConsoleStop { line } => serde_json::json!({ "console_stop": line }),
        Outcome::GuestError(GuestError::KernelPanic { message }) => {
            serde_json::json!({ "guest_error": report.outcome.to_string(), "kernel_panic": message })
        }
        Outcome::GuestError(e) => serde_json::json!({ "guest_error": e.to_string() }),
    };
    if f.json {
        let mut v = render_json(&view);
        v["outcome"] = outcome_json;
        if top > 0 {
            v["functions"] = functions_json(&functions);
        }
        if !report.served_by.is_empty() {
            v["platform"] =
                report.served_by.iter().map(|(d, by)| serde_json::json!({ "device": d, "served_by": by })).collect();
        }
        if is_image {
            v["console"] = report.console().into();
        }
        add_figures_json(&mut v, &report);
        say!("{}", serde_json::to_string_pretty(&v).expect("JSON values always serialize"));
    } else {
        if is_image {
            say_part!("{}", report.console());
            say!();
        }
        say_part!("{}", render_table(&view));
        if top > 0 && !functions.is_empty() {
            say!("\nExits by guest function (top {top}, phase {}):", phase.map_or("all", Phase::name));
            say_part!("{}", render_functions(&functions, stats.total_exits()));
        }
        print_figures(&report);
        if !report.served_by.is_empty() {
            say!("\nPC platform: who serves each device");
            for (device, by) in &report.served_by {
                say!("  {device:<38} {by}");
            }
        }
    }
    Ok(status(&report, &guest))
}

/// The process status for how the run ended: 0 when the guest says it
/// succeeded or stopped at a console line the user asked for (named on
/// stderr), else 1 with the outcome on stderr (a run stopped by a limit
/// says where the guest was).
fn status(report: &RunReport, guest: &crate::guest::Guest) -> ExitCode {
    if report.outcome.success() {
        return ExitCode::SUCCESS;
    }
    match &report.outcome {
        o @ Outcome::ConsoleStop { .. } => {
            eprintln!("exitlab: {o}");
            return ExitCode::SUCCESS;
        }
        Outcome::GuestError(GuestError::Runaway(why)) => {
            let rip = report.regs.rip;
            match guest.function(rip) {
                Some(f) => eprintln!("exitlab: stopped: {why}, in {f}"),
                None => eprintln!("exitlab: stopped: {why}"),
            }
        }
        o => eprintln!("exitlab: {o}"),
    }
    ExitCode::from(1)
}

/// A workload's own figures in JSON: per packet (over the measure phase,
/// the packets'), interrupt latencies, the write monitor.
fn add_figures_json(v: &mut serde_json::Value, report: &RunReport) {
    let packets =
        exitlab_vmm::packets::PacketStats::of(report.accountant.phase_stats(Phase::Measure), &report.round_trips_ns);
    if let Some(p) = &packets {
        v["packets"] = p.packets.into();
        v["exits_per_packet"] = p.exits_per_packet.into();
        v["exits_per_packet_by_reason"] =
            serde_json::to_value(&p.exits_per_packet_by_reason).expect("plain numbers serialize");
        v["handler_ns_per_packet"] = p.handler_ns_per_packet.into();
        v["interrupts_per_packet"] = p.interrupts_per_packet.into();
        v["latency_ns"] = serde_json::to_value(p.latency_ns).expect("plain numbers serialize");
    }
    if !report.irq_latencies_ns.is_empty() {
        let s = exitlab_vmm::packets::Summary::of(&report.irq_latencies_ns);
        v["irq_latency_ns"] = serde_json::to_value(s).expect("plain numbers serialize");
    }
    if let Some((kind, logged)) = monitor(report) {
        v["monitor"] = serde_json::json!({ "kind": kind, "writes_or_pages_logged": logged });
    }
}

/// The same figures under the table.
fn print_figures(report: &RunReport) {
    let packets =
        exitlab_vmm::packets::PacketStats::of(report.accountant.phase_stats(Phase::Measure), &report.round_trips_ns);
    if let Some(p) = &packets {
        let l = p.latency_ns;
        say!(
            "\nPackets (measure phase): {}; per packet {:.2} exits, {:.2}us in the VMM, {:.2} interrupts",
            p.packets,
            p.exits_per_packet,
            p.handler_ns_per_packet / 1000.0,
            p.interrupts_per_packet
        );
        say!(
            "Round trip: mean {:.2}us, stddev {:.3}us, p50 {:.2}us, p99 {:.2}us",
            l.mean / 1000.0,
            l.stddev / 1000.0,
            l.p50 as f64 / 1000.0,
            l.p99 as f64 / 1000.0
        );
    }
    if !report.irq_latencies_ns.is_empty() {
        let l = exitlab_vmm::packets::Summary::of(&report.irq_latencies_ns);
        say!(
            "\nInterrupt latency, completion to driver ({} completions): mean {:.2}us, stddev {:.3}us, p50 {:.2}us, p99 {:.2}us",
            report.irq_latencies_ns.len(),
            l.mean / 1000.0,
            l.stddev / 1000.0,
            l.p50 as f64 / 1000.0,
            l.p99 as f64 / 1000.0
        );
    }
    if let Some((kind, logged)) = monitor(report) {
        say!("\nWrite monitor ({kind}): {logged} entries logged over the whole run in the watched range.");
    }
}

/// The write monitor's kind and the entries it logged in its range.
fn monitor(report: &RunReport) -> Option<(&'static str, usize)> {
    report.monitor.as_ref().map(|m| {
        let kind = match m.kind {
            exitlab_guest::machine::MonitorKind::WriteProtect => "write-protect",
            exitlab_guest::machine::MonitorKind::Pml => "pml",
        };
        (kind, m.log.iter().filter(|g| m.covers(**g)).count())
    })
}

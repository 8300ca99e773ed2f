//! A profile as a profile file (TOML, the shape of profiles/*.toml), with
//! the comments a reader of a calibrated profile needs: what the features
//! mean for a VMM over KVM, the units, where each figure came from.

use exitlab_sim::profile::{Figure, Profile};
use std::fmt::Write;

/// A TOML string literal.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A number as TOML: an integer when it is one, else four decimals.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.4}")
    }
}

/// `key = { value = ..., source = ... }` (or `mean` and `spread`).
fn figure(out: &mut String, key: &str, f: &Figure) {
    let v = match (f.value, f.spread) {
        (Some(v), _) => format!("value = {}", number(v)),
        (None, Some(s)) => format!("mean = {}, spread = {}", number(f.mean()), number(s)),
        (None, None) => format!("mean = {}", number(f.mean())),
    };
    let _ = writeln!(out, "{key} = {{ {v}, source = {} }}", string(&f.source));
}

/// The profile file of `p`.
pub fn render(p: &Profile) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# A hardware profile written by `exitlab calibrate`: the host it ran on, as a");
    let _ = writeln!(o, "# VMM over its KVM sees it. Figures are cycles of [clock] (the TSC rate KVM");
    let _ = writeln!(o, "# gives its guests); each source says how it was measured, on what, when,");
    let _ = writeln!(o, "# how often and how much it varied, or why it was not. These are this");
    let _ = writeln!(o, "# machine's numbers, not any other's: see docs/CALIBRATE.md.");
    let _ = writeln!(o, "name = {}", string(&p.name));
    let _ = writeln!(o, "summary = {}\n", string(&p.summary));
    if let Some(h) = &p.host {
        let _ = writeln!(o, "[host]");
        for (k, v) in h.fields() {
            let _ = writeln!(o, "{k} = {}", string(v));
        }
        o.push('\n');
    }
    let f = p.features;
    let _ = writeln!(o, "# What a VMM over KVM sees, not what the silicon has: KVM keeps paging, the");
    let _ = writeln!(o, "# local APIC and interrupt injection in the kernel and decodes MMIO for");
    let _ = writeln!(o, "# userspace, so the simulated VMM gets no exit for them, as over EPT, APICv,");
    let _ = writeln!(o, "# posted interrupts and a decode assist; what they cost the host is in the");
    let _ = writeln!(o, "# figures. exitlab's KVM backend has no PML, RTM or device assignment.");
    let _ = writeln!(o, "[features]");
    for (k, v) in [
        ("ept", f.ept),
        ("vpid", f.vpid),
        ("apicv", f.apicv),
        ("posted_interrupts", f.posted_interrupts),
        ("pml", f.pml),
        ("decode_assist", f.decode_assist),
        ("tsx", f.tsx),
        ("iommu", f.iommu),
        ("pcid", f.pcid),
        ("invpcid", f.invpcid),
    ] {
        let _ = writeln!(o, "{k} = {v}");
    }
    let _ = writeln!(o, "\n[clock]");
    figure(&mut o, "hz", &p.clock.hz);
    let _ = writeln!(o, "\n[exit]");
    figure(&mut o, "round_trip", &p.exit.round_trip);
    let _ = writeln!(o, "\n[exit.reason]");
    for (k, f) in &p.exit.reason {
        figure(&mut o, k, f);
    }
    let _ = writeln!(o, "\n[handler]");
    figure(&mut o, "device_op", &p.handler.device_op);
    figure(&mut o, "decode_byte", &p.handler.decode_byte);
    figure(&mut o, "page_walk", &p.handler.page_walk);
    figure(&mut o, "byte_copied", &p.handler.byte_copied);
    let _ = writeln!(o, "\n[paging]");
    figure(&mut o, "walk_step", &p.paging.walk_step);
    let optional = [
        ("instruction", vec![("ring0", &p.instruction.ring0), ("ring3", &p.instruction.ring3)]),
        (
            "interrupt",
            vec![
                ("delivery", &p.interrupt.delivery),
                ("halt_wakeup", &p.interrupt.halt_wakeup),
                ("timer_latency", &p.interrupt.timer_latency),
                ("irqfd", &p.interrupt.irqfd),
            ],
        ),
        (
            "device_thread",
            vec![
                ("poke", &p.device_thread.poke),
                ("poke_latency", &p.device_thread.poke_latency),
                ("timer_latency", &p.device_thread.timer_latency),
            ],
        ),
    ];
    for (table, figures) in optional {
        if figures.iter().all(|(_, f)| f.is_none()) {
            continue;
        }
        let _ = writeln!(o, "\n[{table}]");
        for (k, f) in figures {
            if let Some(f) = f {
                figure(&mut o, k, f);
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_profile_parses_back_to_itself() {
        for name in ["modern", "legacy"] {
            let mut p = Profile::load(name).unwrap();
            p.instruction.ring3 = Some(Figure {
                value: None,
                mean: Some(0.9123),
                spread: Some(0.01),
                source: "measured: t \"q\"".into(),
            });
            p.host = Some(exitlab_sim::profile::Host { cpu: Some("c".into()), ..Default::default() });
            let text = render(&p);
            assert_eq!(Profile::parse("r.toml", &text).unwrap(), p, "{text}");
        }
    }
}

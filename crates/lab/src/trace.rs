//! Chrome/Perfetto trace-event JSON of a run: one complete ("X") event per
//! exit on its vCPU's track, named by the exit reason, with the
//! qualification, RIP and target as arguments. Loads in ui.perfetto.dev.

use exitlab_vmm::account::Target;
use exitlab_vmm::{Access, TraceEntry};
use serde_json::{json, Value};

/// The trace-event document for `entries`.
pub fn chrome_trace(workload: &str, backend: &str, entries: &[TraceEntry]) -> Value {
    let mut events: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1,
        "args": { "name": format!("exitlab {workload} on {backend}") },
    })];
    let mut vcpus: Vec<u32> = entries.iter().map(|e| e.record.vcpu).collect();
    vcpus.sort_unstable();
    vcpus.dedup();
    for v in vcpus {
        events.push(
            json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": v, "args": { "name": format!("vCPU {v}") } }),
        );
    }
    for e in entries {
        let r = &e.record;
        let target = match r.target {
            Target::Port { port, device } => format!("port {port:#x} ({device})"),
            Target::Mmio { region } => format!("mmio {region}"),
            Target::None => String::new(),
        };
        let mut args = json!({
            "qualification": format!("{:#x}", r.qualification),
            "rip": format!("{:#x}", e.rip),
            "target": target,
            "run_ns": r.run_ns,
        });
        match e.access {
            Access::Port { port, size, is_in, data } => {
                args["access"] = json!({ "port": port, "size": size, "in": is_in, "data": data });
            }
            Access::Mmio { gpa, size, is_write, data } => {
                args["access"] = json!({ "gpa": format!("{gpa:#x}"), "size": size, "write": is_write, "data": data });
            }
            Access::Msr { index, write } => {
                args["access"] = json!({ "msr": format!("{index:#x}"), "write": write });
            }
            Access::None => {}
        }
        events.push(json!({
            "name": r.reason.name(),
            "cat": "vmexit",
            "ph": "X",
            "pid": 1,
            "tid": r.vcpu,
            "ts": r.exit_ns as f64 / 1000.0,
            "dur": r.handle_ns() as f64 / 1000.0,
            "args": args,
        }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ns" })
}

//! What the VMM adds to every exit: the accountant's record alone (pure
//! CPU, any host), and on hosts with a usable KVM the full VMM loop beside
//! a bare KVM_RUN loop over the same guest, per exit.

use criterion::{criterion_group, criterion_main, Criterion};
use exitlab_arch::ExitReason;
use exitlab_hv::HandlerWork;
use exitlab_vmm::account::{Accountant, ExitRecord, Target};
use exitlab_vmm::bench::{bare_loop, vmm_loop, LoopTime};
use std::hint::black_box;
use std::time::Duration;

fn accounting(c: &mut Criterion) {
    let mut acc = Accountant::new(0, Vec::new());
    let mut t = 0u64;
    c.bench_function("accountant_record_io_exit", |b| {
        b.iter(|| {
            t += 9_000;
            let rec = ExitRecord {
                vcpu: 0,
                reason: ExitReason::IoInstruction,
                qualification: 0x80_0000,
                target: Target::Port { port: 0x80, device: "post" },
                exit_ns: t,
                resume_ns: t + 50 + (t % 17),
                run_ns: 9_000,
                work: HandlerWork { device_ops: 1, ..HandlerWork::default() },
                halted_ns: 0,
            };
            acc.record(black_box(&rec));
        })
    });
}

fn kvm_round_trip(c: &mut Criterion) {
    let path = exitlab_kvm::device_path();
    if let Err(why) = exitlab_kvm::probe(&path) {
        eprintln!("skipping the KVM exit round-trip bench: {why}");
        return;
    }
    let w = exitlab_guest::find_workload("pio-out").expect("built in");
    let image = w.build(&w.resolve(["n=2000"]).expect("valid")).expect("assembles").boot_image();
    let mut group = c.benchmark_group("kvm_exit_round_trip");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    type Loop = fn(&mut exitlab_kvm::KvmVm, &exitlab_guest::BootImage) -> Result<LoopTime, exitlab_vmm::VmmError>;
    for (name, f) in [("bare_kvm_run", bare_loop as Loop), ("exitlab_vmm", vmm_loop as Loop)] {
        group.bench_function(name, |b| {
            // Time per exit: each iteration is one exit's share of a run.
            b.iter_custom(|iters| {
                let mut per_exit = 0.0;
                let mut done = 0;
                while done < iters {
                    let mut vm = exitlab_kvm::KvmVm::new(&path, image.memory_size).expect("KVM was probed");
                    let t = f(&mut vm, &image).expect("pio-out runs");
                    per_exit += t.ns_per_exit() * t.exits.min(iters - done) as f64;
                    done += t.exits;
                }
                Duration::from_nanos(per_exit as u64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, accounting, kvm_round_trip);
criterion_main!(benches);

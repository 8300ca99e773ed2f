//! The simulator's speed targets: a compute-bound guest loop (reported as
//! guest instructions per second; the target is 100 million) and one hour
//! of tickless idle guest time (the target is under 10 ms of host time).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exitlab_guest::Image;
use exitlab_sim::SimVm;
use std::time::Duration;

fn image(workload: &str, sets: &[&str]) -> Image {
    let w = exitlab_guest::find_workload(workload).expect("built in");
    w.build(&w.resolve(sets.iter().copied()).expect("valid")).expect("assembles")
}

fn run(img: &Image) -> u64 {
    let mut vm = SimVm::new(img.memory_size).expect("memory");
    let report = exitlab_vmm::run_image(&mut vm, img).expect("runs");
    report.accountant.all().counters["instructions"]
}

fn speed(c: &mut Criterion) {
    let compute = image("io-mix", &["n=2000", "warmup=0", "p=0", "work=1000"]);
    let instructions = run(&compute);
    let mut g = c.benchmark_group("sim");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(instructions));
    g.bench_function("compute_loop_instructions", |b| b.iter(|| run(&compute)));
    g.finish();

    let idle = image("idle", &["n=1", "warmup=0", "period_ms=3600000"]);
    c.bench_function("sim_tickless_idle_one_hour", |b| b.iter(|| run(&idle)));
}

criterion_group!(benches, speed);
criterion_main!(benches);

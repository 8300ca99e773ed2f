//! Watching guest writes on the simulator: write protection sees every
//! write at two exits each; page-modification logging sees the first write
//! per page per harvest at one exit per 512 pages.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use exitlab_guest::machine::MonitorKind as Kind;
use exitlab_hv::Vm;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image, Outcome, RunReport};

const WATCH: u64 = 8 << 20;

fn run(pages: u64, writes: u64, monitor: &str) -> (RunReport, SimVm) {
    let w = exitlab_guest::find_workload("page-writes").unwrap();
    let sets = [format!("pages={pages}"), format!("writes={writes}"), format!("monitor={monitor}")];
    let img = w.build(&w.resolve(sets.iter().map(String::as_str)).unwrap()).unwrap();
    let mut vm = SimVm::new(img.memory_size).unwrap();
    let r = run_image(&mut vm, &img).unwrap();
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    (r, vm)
}

fn in_range(r: &RunReport, pages: u64) -> Vec<u64> {
    let m = r.monitor.as_ref().unwrap();
    m.log.iter().copied().filter(|g| *g >= WATCH && *g < WATCH + pages * 4096).collect()
}

#[test]
fn pml_exits_once_per_512_dirty_pages() {
    let (r, _) = run(2048, 2048, "pml");
    let m = r.accountant.phase_stats(Phase::Measure);
    assert_eq!(m.samples(ExitReason::PmlFull), 4);
    assert_eq!(m.total_exits(), 4);
    assert_eq!(r.monitor.as_ref().unwrap().kind, Kind::Pml);
    let mut pages = in_range(&r, 2048);
    pages.sort_unstable();
    pages.dedup();
    assert_eq!(pages.len(), 2048, "every page logged");
}

#[test]
fn write_protection_sees_every_write_at_two_exits_each() {
    let (r, vm) = run(2048, 2048, "write-protect");
    let m = r.accountant.phase_stats(Phase::Measure);
    assert_eq!(m.samples(ExitReason::EptViolation), 2048);
    assert_eq!(m.samples(ExitReason::MonitorTrapFlag), 2048);
    assert_eq!(in_range(&r, 2048).len(), 2048);
    // The writes went through: page i holds 2048 - i.
    for i in [0u64, 1, 2047] {
        let mut b = [0u8; 8];
        vm.read_memory(WATCH + i * 4096, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 2048 - i);
    }
}

#[test]
fn pml_sees_the_first_write_per_page_per_harvest_and_write_protection_sees_all() {
    let (wp, _) = run(256, 4096, "write-protect");
    assert_eq!(in_range(&wp, 256).len(), 4096);
    let (pml, _) = run(256, 4096, "pml");
    let logged = in_range(&pml, 256).len();
    // 256 pages fit one log: only the first write to each is logged.
    assert_eq!(logged, 256);
    assert_eq!(pml.accountant.phase_stats(Phase::Measure).samples(ExitReason::PmlFull), 0);
}

//! The EPT on the simulator: the permission matrix (R/W/X of the entry
//! against read, write and fetch), the SDM qualification of each
//! violation, MMIO through misconfigured entries, and the counted
//! two-dimensional walk.

use exitlab_arch::bits::ept::{R, W, X};
use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use exitlab_guest::program::{program, Ring, Start};
use exitlab_guest::Image;
use exitlab_hv::Vm;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image_with, GuestError, Outcome, Protection, RunOptions};
use iced_x86::code_asm::*;

const PAGE: u64 = 0x40_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    Fetch,
}

fn image(access: Access) -> Image {
    let start = Start { gpr: [0; 16], rflags: 0 };
    program("ept", Ring::Kernel, &start, |a| {
        a.mov(rsi, PAGE)?;
        match access {
            Access::Read => a.mov(eax, dword_ptr(rsi)),
            Access::Write => a.mov(dword_ptr(rsi), eax),
            Access::Fetch => a.call(rsi),
        }
    })
    .unwrap()
}

fn run(access: Access, perms: u64) -> Outcome {
    let img = image(access);
    let mut vm = SimVm::new(img.memory_size).unwrap();
    vm.write_memory(PAGE, &[0xc3]).unwrap(); // RET, for the fetch
    let options = RunOptions { protect: vec![Protection { gpa: PAGE, len: 4096, perms }], ..RunOptions::default() };
    run_image_with(&mut vm, &img, &options).unwrap().outcome
}

#[test]
fn permission_matrix() {
    // Every valid combination (write without read is a misconfiguration).
    for perms in [0, R, R | W, X, R | X, R | W | X] {
        for access in [Access::Read, Access::Write, Access::Fetch] {
            let need = match access {
                Access::Read => R,
                Access::Write => W,
                Access::Fetch => X,
            };
            let outcome = run(access, perms);
            if perms & need != 0 {
                assert!(matches!(outcome, Outcome::Exited { .. }), "{access:?} with perms {perms:#b}: {outcome:?}");
                continue;
            }
            let Outcome::GuestError(GuestError::EptViolation { gpa, linear, qual }) = outcome else {
                panic!("{access:?} with perms {perms:#b}: {outcome:?}")
            };
            assert_eq!((gpa, linear), (PAGE, Some(PAGE)), "{access:?} {perms:#b}");
            assert_eq!(
                (qual.read, qual.write, qual.fetch),
                (access == Access::Read, access == Access::Write, access == Access::Fetch)
            );
            assert_eq!(
                (qual.readable, qual.writable, qual.executable),
                (perms & R != 0, perms & W != 0, perms & X != 0)
            );
            assert!(qual.gla_valid && qual.gla_is_translation, "the data access itself, not a paging structure");
            assert_eq!(qual.encode() & 0b11_1000, perms << 3, "bits 5:3 mirror the entry");
        }
    }
}

#[test]
fn a_guest_page_table_behind_a_read_only_entry_is_still_walkable() {
    // The guest's page directory is read-only in the EPT: translating
    // through it reads it (allowed); the data access is elsewhere.
    let img = image(Access::Read);
    let mut vm = SimVm::new(img.memory_size).unwrap();
    let pd = exitlab_guest::layout::PD;
    let options =
        RunOptions { protect: vec![Protection { gpa: pd, len: 4096 * 4, perms: R }], ..RunOptions::default() };
    let r = run_image_with(&mut vm, &img, &options).unwrap();
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
}

#[test]
fn mmio_through_misconfigured_entries_and_the_two_dimensional_walk_is_counted() {
    let w = exitlab_guest::find_workload("mmio-read").unwrap();
    let img = w.build(&w.resolve(["n=100"]).unwrap()).unwrap();
    let mut vm = SimVm::new(img.memory_size).unwrap();
    let r = run_image_with(&mut vm, &img, &RunOptions::default()).unwrap();
    let m = r.accountant.phase_stats(Phase::Measure);
    assert_eq!(m.samples(ExitReason::EptMisconfig), 100);
    assert!(r.accountant.all().counters["ept_steps"] > r.accountant.all().counters["page_walks"]);
}

/// E6: the untrusted code's forged alias translates (its page tables are
/// its own), the EPT refuses the guest-physical page, the exit names the
/// page and the access, and the VMM blocks it: the page never changes,
/// however the guest reaches it.
#[test]
fn isolated_memory_cannot_be_reached_through_any_guest_mapping() {
    use exitlab_arch::EptViolationQual;
    use exitlab_vmm::{run_image_with, Access, RunOptions};
    const SECRET: u64 = 7 << 20;
    for (trick, write) in [(0, true), (1, true), (2, false)] {
        let w = exitlab_guest::find_workload("isolation").unwrap();
        let trick_set = format!("trick={trick}");
        let img = w.build(&w.resolve(["n=50", "warmup=0", trick_set.as_str()]).unwrap()).unwrap();
        let mut vm = SimVm::new(img.memory_size).unwrap();
        let r = run_image_with(&mut vm, &img, &RunOptions { trace: true, ..Default::default() }).unwrap();
        assert_eq!(r.outcome, Outcome::Exited { status: 0 }, "trick {trick}: the guest runs on");
        let violations: Vec<_> = r.trace.iter().filter(|t| t.record.reason == ExitReason::EptViolation).collect();
        assert_eq!(violations.len(), 50, "trick {trick}: every attempt exits");
        for v in violations {
            let q = EptViolationQual::decode(v.record.qualification);
            assert_eq!((q.write, q.read), (write, !write), "trick {trick}");
            assert!(!q.readable && !q.writable && !q.executable, "the page allows nothing");
            assert!(q.gla_valid && q.gla_is_translation, "a data access through a guest translation");
            assert!(matches!(v.access, Access::Mmio { gpa: SECRET, is_write, .. } if is_write == write));
        }
        let mut page = vec![0u8; 4096];
        vm.read_memory(SECRET, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0), "trick {trick}: nothing reached the isolated page");
        let m = r.accountant.phase_stats(Phase::Measure);
        let blocked = if write { "device.isolated.blocked_writes" } else { "device.isolated.blocked_reads" };
        assert_eq!(m.counters.get(blocked), Some(&50));
    }
    // Without EPT there is nothing to enforce it with: refused up front.
    let w = exitlab_guest::find_workload("isolation").unwrap();
    let img = w.build(&w.resolve([]).unwrap()).unwrap();
    let legacy = exitlab_sim::profile::Profile::load("legacy").unwrap();
    let mut vm = SimVm::with_profile(img.memory_size, legacy, 0).unwrap();
    let e = exitlab_vmm::run_image(&mut vm, &img).err().expect("legacy has no EPT");
    assert!(e.to_string().contains("needs EPT"), "{e}");
}

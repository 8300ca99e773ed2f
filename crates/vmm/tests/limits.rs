//! Run limits by default (issue 19, item 1): a guest that only exits, or
//! exits forever, ends the run with one line naming the limit, the RIP
//! and what the guest was doing, instead of hanging exitlab.

use exitlab_guest::layout::PORT_POST;
use exitlab_guest::program::{program, program_marked, Ring, Start};
use exitlab_guest::Image;
use exitlab_sim::SimVm;
use exitlab_vmm::limits::RunLimits;
use exitlab_vmm::{run_image_with, GuestError, Outcome, RunOptions};
use iced_x86::code_asm::*;
use std::time::Duration;

fn start() -> Start {
    Start { gpr: [0; 16], rflags: 0 }
}

fn stopped(img: &Image, limits: RunLimits) -> String {
    let mut vm = SimVm::new(img.memory_size).unwrap();
    let r = run_image_with(&mut vm, img, &RunOptions { limits, ..RunOptions::default() }).unwrap();
    match r.outcome {
        Outcome::GuestError(GuestError::Runaway(s)) => s,
        other => panic!("not stopped by a limit: {other:?}"),
    }
}

#[test]
fn exits_with_no_instruction_retired_between_them_stop_the_run() {
    // REP OUTSB: one exit per byte, and the instruction retires only after
    // the last; 10^9 bytes would take hours.
    let img = program_marked("rep-outs", Ring::Kernel, &start(), |a| {
        let mut outs = a.create_label();
        a.mov(rcx, 1_000_000_000u64)?;
        a.mov(rsi, 0x10_0000u64)?;
        a.mov(dx, u32::from(PORT_POST))?;
        a.set_label(&mut outs)?;
        a.rep().outsb()?;
        Ok(vec![("outs", outs)])
    })
    .unwrap();
    let rip = img.symbol("outs").unwrap();
    let line = stopped(&img, RunLimits { max_stalled_exits: Some(5000), ..RunLimits::NONE });
    let at = format!("at rip {rip:#x}");
    assert!(
        line.starts_with(
            "no progress: 5000 exits with no instruction retired between them, 100% of them IO_INSTRUCTION, "
        ) && line.contains(&at),
        "{line} (expected {at})"
    );
}

#[test]
fn a_guest_that_exits_forever_stops_at_the_host_time_limit() {
    let img = program("forever", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        a.mov(dx, u32::from(PORT_POST))?;
        a.set_label(&mut top)?;
        a.out(dx, al)?;
        a.jmp(top)?;
        Ok(())
    })
    .unwrap();
    let line = stopped(&img, RunLimits { max_host_time: Some(Duration::from_millis(200)), ..RunLimits::NONE });
    assert!(line.starts_with("host time limit of 0.2 s reached at rip 0x"), "{line}");
    assert!(line.ends_with("% of all exits IO_INSTRUCTION (--max-host-time)"), "{line}");
}

//! RTM (TSX): commit, explicit abort, aborts forced by exits, exceptions,
//! capacity and asynchronous exits, each checked by memory, registers, the
//! abort status in EAX and the counters.

mod support;

use exitlab_arch::vmx::Controls;
use exitlab_guest::program::{program, Ring};
use exitlab_guest::Image;
use exitlab_hv::{Vcpu, VmExit};
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use iced_x86::code_asm::*;
use support::*;

const BUF: u64 = 0x30_0000;

/// A transaction around `body`: before it, [BUF] = 7 and r12 = 0; inside,
/// [BUF] = 0x1234 and r12 = 0x99, then `body`; r13 = 1 after a commit,
/// r14 = 1 at the fallback.
fn transaction(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Image {
    program("rtm", Ring::Kernel, &start(), |a| {
        let mut fallback = a.create_label();
        let mut done = a.create_label();
        a.mov(rbx, BUF)?;
        a.mov(qword_ptr(rbx), 7)?;
        a.xor(r12d, r12d)?;
        a.xbegin(fallback)?;
        a.mov(qword_ptr(rbx), 0x1234)?;
        a.mov(r12d, 0x99)?;
        body(a)?;
        a.xend()?;
        a.mov(r13d, 1)?;
        a.jmp(done)?;
        a.set_label(&mut fallback)?;
        a.mov(r14d, 1)?;
        a.set_label(&mut done)?;
        a.nop()
    })
    .unwrap()
}

fn run_rtm(img: &Image, controls: Option<&Controls>) -> Run {
    let r = run_on(vm(img, true), img, 0, controls);
    assert_eq!(r.end, End::Done, "{:?}", r.end);
    r
}

fn vm(img: &Image, tsx: bool) -> SimVm {
    let mut profile = Profile::load("modern").unwrap();
    profile.features.tsx = tsx;
    SimVm::with_profile(img.memory_size, profile, 0).unwrap()
}

fn buf(r: &Run) -> u64 {
    let mut b = [0u8; 8];
    exitlab_hv::Vm::read_memory(&r.vm, BUF, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn counter(r: &mut Run, name: &str) -> u64 {
    r.vcpu.counters().unwrap().into_iter().find(|c| c.name == name).unwrap().value
}

/// (rax, r12, r13, r14, [BUF], commits, aborts)
fn outcome(mut r: Run) -> (u64, u64, u64, u64, u64, u64, u64) {
    let g = r.vcpu.regs().unwrap().gpr;
    let m = buf(&r);
    (g[0], g[12], g[13], g[14], m, counter(&mut r, "tx_commits"), counter(&mut r, "tx_aborts"))
}

#[test]
fn a_committed_transaction_keeps_its_writes_and_xtest_sees_it() {
    let img = transaction(|a| {
        a.mov(eax, 0x55)?;
        a.xtest()?;
        a.setne(cl) // ZF clear inside a transaction
    });
    let mut r = run_rtm(&img, None);
    assert_eq!(r.vcpu.regs().unwrap().gpr[1] & 0xff, 1);
    assert_eq!(outcome(r), (0x55, 0x99, 1, 0, 0x1234, 1, 0));
}

#[test]
fn xabort_rolls_back_memory_and_registers_and_reports_its_code() {
    let img = transaction(|a| a.xabort(0x5a));
    assert_eq!(outcome(run_rtm(&img, None)), (1 | 0x5a << 24, 0, 0, 1, 7, 0, 1));
}

#[test]
fn an_instruction_that_exits_aborts_instead_of_exiting() {
    let img = transaction(|a| a.cpuid());
    let r = run_rtm(&img, None);
    assert!(!r.exits.iter().any(|e| matches!(e, VmExit::Cpuid { .. })), "{:?}", r.exits);
    assert_eq!(outcome(r), (0, 0, 0, 1, 7, 0, 1));
}

#[test]
fn an_exception_inside_is_suppressed_by_the_abort() {
    let img = transaction(|a| a.ud2());
    assert_eq!(outcome(run_rtm(&img, None)), (0, 0, 0, 1, 7, 0, 1));
    let int3 = transaction(|a| a.int3());
    assert_eq!(outcome(run_rtm(&int3, None)).0, 1 << 4, "a breakpoint sets the debug bit");
}

/// A transaction writing a byte at `n` addresses from `start`, `stride`
/// apart.
fn strided_writes(n: u32, start: u64, stride: i32) -> Image {
    transaction(move |a| {
        let mut top = a.create_label();
        a.mov(ecx, n)?;
        a.mov(rdi, start)?;
        a.set_label(&mut top)?;
        a.mov(byte_ptr(rdi), 1)?;
        a.add(rdi, stride)?;
        a.dec(ecx)?;
        a.jnz(top)
    })
}

#[test]
fn a_write_set_past_capacity_aborts_with_the_capacity_bit() {
    // One write per cache line from set 1 on; [BUF] is in set 0. 511 more
    // lines fill every set to its 8 ways, the 512th is a ninth in set 0.
    let lines = |n: u32| strided_writes(n, BUF + 0x1040, 64);
    assert_eq!(outcome(run_rtm(&lines(511), None)).5, 1, "511 + 1 lines commit");
    let (status, _, _, fell_back, m, commits, aborts) = outcome(run_rtm(&lines(512), None));
    assert_eq!((status, fell_back, m, commits, aborts), (8, 1, 7, 0, 1));
    // Nine lines 4 KiB apart share one L1D set: the ninth aborts.
    let same_set = |n: u32| strided_writes(n, BUF + 0x1000, 4096);
    // [BUF] is in set 0 too: seven more fit, the eighth does not.
    assert_eq!(outcome(run_rtm(&same_set(7), None)).5, 1);
    assert_eq!(outcome(run_rtm(&same_set(8), None)).0, 8);
}

#[test]
fn an_asynchronous_exit_aborts_first_and_the_vmm_sees_the_fallback() {
    let img = transaction(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 100_000)?;
        a.set_label(&mut top)?;
        a.dec(ecx)?;
        a.jnz(top)
    });
    let c = Controls { preemption_timer: Some(5_000), ..Controls::default() };
    let r = run_rtm(&img, Some(&c));
    assert!(r.exits.iter().any(|e| matches!(e, VmExit::PreemptionTimer)));
    assert_eq!(outcome(r), (0, 0, 0, 1, 7, 0, 1));
}

#[test]
fn without_rtm_xbegin_is_undefined() {
    let img = transaction(|a| a.nop());
    let r = run_on(vm(&img, false), &img, 0, None);
    assert!(matches!(r.end, End::Report(ref m) if m.vector == exitlab_arch::vector::UD), "{:?}", r.end);
}

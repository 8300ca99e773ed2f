//! The VMM's MMIO instruction emulator on the simulator (no decode assist,
//! as on Intel VT-x): each form the emulator supports, the values that
//! reach the device and the registers, flags and RIP it leaves, and the
//! work it counts.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::MMIO_BENCH;
use exitlab_guest::program::{program, Ring, Start};
use exitlab_sim::SimVm;
use exitlab_vmm::devices::MmioScratch;
use exitlab_vmm::{run_image, Outcome, RunReport};
use iced_x86::code_asm::*;

fn run(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> RunReport {
    let img = program("emulate", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        a.mov(rdi, MMIO_BENCH)?;
        body(a)
    })
    .unwrap();
    let mut vm = SimVm::new(img.memory_size).unwrap();
    run_image(&mut vm, &img).unwrap()
}

fn scratch(r: &RunReport) -> &MmioScratch {
    r.mmio.device::<MmioScratch>("mmio-scratch").unwrap()
}

#[test]
fn moves_and_extensions() {
    let r = run(|a| {
        a.mov(dword_ptr(rdi), 0x8765_4321u32 as i32)?;
        a.movzx(r8d, byte_ptr(rdi))?;
        a.movsx(r9, word_ptr(rdi))?;
        a.mov(r10, qword_ptr(rdi))
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    assert_eq!(r.regs.gpr[8], 0x21);
    assert_eq!(r.regs.gpr[9], 0x4321);
    // The device kept the four bytes written; the 64-bit read sees them.
    assert_eq!(r.regs.gpr[10], 0x8765_4321);
}

#[test]
fn read_modify_write_sets_flags_like_the_cpu() {
    let r = run(|a| {
        a.mov(dword_ptr(rdi), -1)?;
        a.add(dword_ptr(rdi), 1)?; // wraps to 0: ZF, CF
        a.setz(r11b)?;
        a.setc(r12b)
    });
    assert_eq!(scratch(&r).value() & 0xffff_ffff, 0);
    assert_eq!((r.regs.gpr[11], r.regs.gpr[12]), (1, 1));
}

#[test]
fn rep_movs_into_mmio_is_one_exit_with_every_element() {
    let r = run(|a| {
        a.mov(rsi, 0x30_0000u64)?;
        a.mov(qword_ptr(rsi), 0x11)?;
        a.mov(qword_ptr(rsi + 8), 0x22)?;
        a.mov(ecx, 2)?;
        a.rep().movsq()
    });
    let all = r.accountant.all();
    let mmio = &all.reasons[&ExitReason::EptMisconfig];
    assert_eq!(mmio.samples, 1);
    assert_eq!((mmio.work.device_ops, mmio.work.bytes_copied), (2, 16));
    assert_eq!(scratch(&r).value(), 0x22);
    assert_eq!(scratch(&r).writes(), 2);
    assert_eq!((r.regs.gpr[1], r.regs.gpr[6], r.regs.gpr[7]), (0, 0x30_0010, MMIO_BENCH + 16));
}

#[test]
fn work_is_counted_per_exit() {
    let r = run(|a| a.mov(dword_ptr(rdi + 8), eax));
    let w = r.accountant.all().reasons[&ExitReason::EptMisconfig].work;
    // `mov [rdi+8], eax` is 3 bytes; one walk to fetch, one for the operand.
    assert_eq!((w.bytes_decoded, w.page_walks, w.device_ops), (3, 2, 1));
}

#[test]
fn an_instruction_the_emulator_lacks_is_a_guest_error_not_a_crash() {
    let r = run(|a| a.bts(dword_ptr(rdi), 3));
    let Outcome::GuestError(e) = r.outcome else { panic!("{:?}", r.outcome) };
    assert!(e.to_string().contains("the VMM's emulator has no Bts"), "{e}");
}

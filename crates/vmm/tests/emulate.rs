//! The VMM's MMIO instruction emulator on the simulator (no decode assist,
//! as on Intel VT-x): each form the emulator supports, the values that
//! reach the device and the registers, flags and RIP it leaves, and the
//! work it counts.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::MMIO_BENCH;
use exitlab_guest::program::{program, program_marked, Ring, Start};
use exitlab_sim::SimVm;
use exitlab_vmm::devices::MmioScratch;
use exitlab_vmm::{run_image, GuestError, Outcome, RunReport};
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

/// As [`run`], with the label `at` the body places, for the RIP of a
/// fault.
fn run_at(body: impl FnOnce(&mut CodeAssembler, &mut CodeLabel) -> Result<(), IcedError>) -> (RunReport, u64) {
    let img = program_marked("emulate", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        let mut at = a.create_label();
        a.mov(rdi, MMIO_BENCH)?;
        body(a, &mut at)?;
        Ok(vec![("at", at)])
    })
    .unwrap();
    let mut vm = SimVm::new(img.memory_size).unwrap();
    (run_image(&mut vm, &img).unwrap(), img.symbol("at").unwrap())
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
    let r = run(|a| a.fld(dword_ptr(rdi)));
    let Outcome::GuestError(e) = r.outcome else { panic!("{:?}", r.outcome) };
    assert!(e.to_string().contains("the VMM's emulator has no Fld"), "{e}");
}

/// REPE CMPSB (SDM Vol. 2 "CMPS", "REP/REPE/REPNE"): [RSI] - [RDI] per
/// byte, stopping after the first unequal one; kvm-unit-tests' emulator
/// compares RAM against MMIO this way. RAM "aaab" against a device that
/// reads 'a' everywhere: four elements in one exit, then ZF = 0 and CF = 0
/// ('b' - 'a'), RCX = 10 - 4, RSI and RDI 4 on.
#[test]
fn repe_cmpsb_against_mmio_stops_at_the_first_difference() {
    let r = run(|a| {
        a.mov(rsi, 0x30_0000u64)?;
        a.mov(dword_ptr(rsi), 0x6261_6161)?;
        a.mov(byte_ptr(rdi), 0x61)?;
        a.mov(ecx, 10)?;
        a.repe().cmpsb()?;
        a.setz(r11b)?;
        a.setc(r12b)
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    let all = r.accountant.all();
    let mmio = &all.reasons[&ExitReason::EptMisconfig];
    assert_eq!((mmio.samples, mmio.work.device_ops), (2, 5), "the MOV's exit, then CMPSB's four reads in one");
    assert_eq!((r.regs.gpr[1], r.regs.gpr[6], r.regs.gpr[7]), (6, 0x30_0004, MMIO_BENCH + 4));
    assert_eq!((r.regs.gpr[11], r.regs.gpr[12]), (0, 0));
}

/// BTS (SDM Vol. 2 "BTS": CF = the old bit) and XADD ("XADD": the sum to
/// the destination, the old value to the source) read-modify-write MMIO.
#[test]
fn bit_test_and_exchange_add_on_mmio() {
    let r = run(|a| {
        a.mov(qword_ptr(rdi), 1)?;
        a.bts(dword_ptr(rdi), 3)?; // 1 -> 9, CF = 0
        a.setc(r11b)?;
        a.mov(r8, 0x10u64)?;
        a.xadd(qword_ptr(rdi), r8) // [rdi] = 0x19, r8 = 9
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    assert_eq!((scratch(&r).value(), r.regs.gpr[8], r.regs.gpr[11]), (0x19, 9, 0));
}

/// A fault of an emulated instruction is the guest's: DIV by an MMIO
/// zero raises #DE (SDM Vol. 2 "DIV") at the DIV, which the VMM injects
/// as KVM's emulator does, and the guest kernel's handler reports.
#[test]
fn a_fault_in_an_emulated_instruction_reaches_the_guest() {
    let r = run(|a| {
        a.mov(qword_ptr(rdi), 0)?;
        a.mov(eax, 1)?;
        a.xor(edx, edx)?;
        a.div(dword_ptr(rdi))
    });
    let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!((m.vector, m.error_code), (exitlab_arch::vector::DE, 0));
    assert_eq!(r.accountant.all().reasons[&ExitReason::EptMisconfig].samples, 2);
}

mod hostile {
    //! The emulator against instruction bytes, registers, memory and device
    //! answers a hostile guest chooses, through the harness the cargo-fuzz
    //! target `emulate` runs (fuzz/fuzz_targets/emulate.rs).

    use exitlab_arch::Regs;
    use exitlab_vmm::emulate::harness::{Case, Harness, ANSWERING, CODE, RAM};
    use exitlab_vmm::emulate::REP_CHUNK;
    use proptest::prelude::*;

    /// Opcode starts of the forms the emulator takes, and a few it refuses;
    /// the bytes after them (ModRM, SIB, displacement, immediate) are
    /// random.
    const STARTS: &[&[u8]] = &[
        &[0x89],
        &[0x8b],
        &[0x48, 0x89],
        &[0x88],
        &[0x8a],
        &[0xc7],
        &[0xc6],
        &[0x0f, 0xb6],
        &[0x0f, 0xb7],
        &[0x48, 0x0f, 0xbf],
        &[0x48, 0x63],
        &[0x01],
        &[0x11],
        &[0x29],
        &[0x19],
        &[0x21],
        &[0x09],
        &[0x31],
        &[0x39],
        &[0x85],
        &[0x80],
        &[0x81],
        &[0x83],
        &[0xfe],
        &[0xff],
        &[0xf6],
        &[0xf7],
        &[0x86],
        &[0x87],
        &[0xa4],
        &[0xa5],
        &[0xf3, 0xa4],
        &[0xf3, 0x48, 0xa5],
        &[0xf3, 0xaa],
        &[0xf3, 0x48, 0xab],
        &[0xf2, 0xab],
        &[0x66, 0x89],
        &[0x67, 0x8b],
        &[0x64, 0x89],
        &[0x65, 0x8b],
        &[0xf0, 0x01],
        &[0x0f, 0xab],
        &[0x0f, 0xc1],
        &[0xd1],
        &[0xf3, 0xa6],
        &[0xf2, 0xae],
        &[0x0f, 0xa3],
        &[0x0f, 0xc1],
        &[0x0f, 0x44],
        &[0x0f, 0xa5],
        &[0xf7, 0x30],
        &[0x8f],
        &[0xc3],
        &[0x0f, 0x01, 0x20],
        &[0x0f, 0x00, 0x18],
        &[0x8e, 0x10],
    ];

    fn input() -> impl Strategy<Value = Vec<u8>> {
        (prop::sample::select(STARTS), prop::collection::vec(any::<u8>(), 0..400)).prop_map(|(start, rest)| {
            let mut v = start.to_vec();
            v.extend(rest);
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes: the call returns, a refused instruction
        /// changes no register, an emulated one decodes exactly its bytes,
        /// moves RIP past itself (or keeps it for a REP with elements
        /// left) and leaves RFLAGS' control bits alone.
        #[test]
        fn any_bytes_keep_the_emulator_s_promises(bytes in input()) {
            let case = Case::from_bytes(&bytes);
            let outcome = Harness::new().run(&case);
            prop_assert_eq!(outcome.check(&case), Ok(()), "{:x?}", outcome);
        }
    }

    /// `rep stosq` into a device with a count near 2^40: one exit takes
    /// REP_CHUNK elements and leaves RIP on the instruction with RCX down
    /// by as many, so a hostile count cannot hold the VMM (found while
    /// building the fuzz target: the emulator used to take every element
    /// in one exit).
    #[test]
    fn a_huge_rep_count_is_taken_a_chunk_per_exit() {
        let mut gpr = [0u64; 16];
        gpr[Regs::RCX] = 1 << 40;
        gpr[Regs::RDI] = ANSWERING;
        let case = Case { code: [0xf3, 0x48, 0xab, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], gpr, ..Case::default() };
        let outcome = Harness::new().run(&case);
        let done = outcome.result.as_ref().expect("emulated");
        assert_eq!(outcome.after.rip, CODE);
        assert_eq!(outcome.after.gpr[Regs::RCX], (1 << 40) - REP_CHUNK);
        assert_eq!(outcome.after.gpr[Regs::RDI], ANSWERING + 8 * REP_CHUNK);
        assert_eq!(u64::from(done.work.bytes_copied), 8 * REP_CHUNK);
        assert_eq!(outcome.check(&case), Ok(()));
    }

    /// A read that crosses from RAM into a page with nothing behind it
    /// translates both pages (two walks besides the fetch) and takes RAM's
    /// bytes and all ones for the rest.
    #[test]
    fn an_access_across_pages_reads_each_page_where_it_is() {
        let mut gpr = [0u64; 16];
        gpr[Regs::RSI] = RAM - 2;
        // mov eax, [rsi]
        let case = Case { code: [0x8b, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], gpr, ..Case::default() };
        let outcome = Harness::new().run(&case);
        let done = outcome.result.as_ref().expect("emulated");
        assert_eq!(outcome.after.gpr[Regs::RAX], 0xffff_0000);
        assert_eq!((done.work.page_walks, done.work.device_ops), (3, 1));
        assert_eq!(outcome.after.rip, CODE + 2);
    }
}

#[test]
fn sse_and_mmx_moves_through_mmio_reach_the_device_and_the_registers() {
    let (lo, hi) = (0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888u64);
    let r = run(|a| {
        a.mov(rax, lo)?;
        a.movq(xmm0, rax)?;
        a.mov(rax, hi)?;
        a.pinsrq(xmm0, rax, 1)?;
        // 16 bytes out: the scratch register sees the low then the high
        // quadword and keeps the last.
        a.movdqu(xmmword_ptr(rdi), xmm0)?;
        // 16 bytes in: both halves read the one register.
        a.movaps(xmm1, xmmword_ptr(rdi))?;
        a.movq(r8, xmm1)?;
        a.pextrq(r9, xmm1, 1)?;
        // MMX MOVQ both ways, MOVD in.
        a.mov(rax, lo)?;
        a.movq(mm2, rax)?;
        a.movq(qword_ptr(rdi), mm2)?;
        a.movq(mm3, qword_ptr(rdi))?;
        a.movq(r10, mm3)?;
        a.movd(xmm4, dword_ptr(rdi))?;
        a.movq(r11, xmm4)?;
        a.emms()?;
        a.xor(eax, eax) // the exit status
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    assert_eq!((r.regs.gpr[8], r.regs.gpr[9]), (hi, hi));
    assert_eq!((r.regs.gpr[10], r.regs.gpr[11]), (lo, lo & 0xffff_ffff));
    // One exit per instruction, emulated whole: 16-byte accesses are two
    // device operations.
    let mmio = &r.accountant.all().reasons[&ExitReason::EptMisconfig];
    assert_eq!((mmio.samples, mmio.work.device_ops), (5, 2 + 2 + 1 + 1 + 1));
    assert_eq!((scratch(&r).writes(), scratch(&r).reads()), (3, 4));
}

/// The 16550's scratch register (COM1 + 7; a byte the guest writes and
/// reads back), the port the string I/O tests move bytes through.
const COM1_SCR: u16 = 0x3ff;

/// REP INSB into MMIO (SDM Vol. 2 "INS"; kvm-unit-tests' emulator
/// `test_string_io_mmio`): the CPU exits for the port first, then for the
/// MMIO store, and the VMM emulates the whole instruction there: three
/// port reads and three device writes in the one MMIO exit, RDI and RCX
/// as the instruction leaves them.
#[test]
fn rep_insb_into_mmio_reads_the_port_bus_in_one_exit() {
    let r = run(|a| {
        a.mov(dx, COM1_SCR as u32)?;
        a.mov(al, 0x5a)?;
        a.out(dx, al)?;
        a.mov(ecx, 3)?;
        a.rep().insb()?;
        a.xor(eax, eax)
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    let all = r.accountant.all();
    let mmio = &all.reasons[&ExitReason::EptMisconfig];
    assert_eq!((mmio.samples, mmio.work.device_ops, mmio.work.bytes_copied), (1, 6, 3));
    assert_eq!((scratch(&r).value(), scratch(&r).writes()), (0x5a, 3));
    assert_eq!((r.regs.gpr[1], r.regs.gpr[7]), (0, MMIO_BENCH + 3));
}

/// REP OUTSB from MMIO (SDM Vol. 2 "OUTS"): the source read exits first;
/// the VMM reads the device twice and writes the port twice in that exit;
/// IN then reads back the last byte.
#[test]
fn rep_outsb_from_mmio_writes_the_port_bus_in_one_exit() {
    let r = run(|a| {
        a.mov(byte_ptr(rdi), 0x77)?;
        a.mov(rsi, rdi)?;
        a.mov(dx, COM1_SCR as u32)?;
        a.mov(ecx, 2)?;
        a.rep().outsb()?;
        a.mov(r8, rsi)?;
        a.xor(eax, eax)?;
        a.in_(al, dx)?;
        a.mov(r9, rax)?;
        a.xor(eax, eax)
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    let mmio = &r.accountant.all().reasons[&ExitReason::EptMisconfig];
    assert_eq!((mmio.samples, mmio.work.device_ops, mmio.work.bytes_copied), (2, 5, 2));
    assert_eq!(scratch(&r).reads(), 2);
    assert_eq!((r.regs.gpr[1], r.regs.gpr[8], r.regs.gpr[9]), (0, MMIO_BENCH + 2, 0x77));
}

/// MOV r/m16, Sreg and PUSH FS to MMIO (SDM Vol. 2 "MOV", "PUSH"; the
/// emulator test's LJMP stores CS this way): the selector reaches the
/// device; PUSH FS with RSP in MMIO writes 8 bytes there (FS's selector
/// zero-extended, as this project's host does: issue 12) and moves RSP
/// down 8.
#[test]
fn segment_register_stores_to_mmio() {
    let r = run(|a| {
        a.mov(word_ptr(rdi), cs)?;
        a.mov(r8, qword_ptr(rdi))?;
        a.mov(qword_ptr(rdi), -1)?;
        a.mov(r10, rsp)?;
        a.lea(rsp, qword_ptr(rdi + 0x100))?;
        a.push(fs)?;
        a.mov(r9, rsp)?;
        a.mov(rsp, r10)?;
        a.mov(r11, qword_ptr(rdi))?;
        a.mov(r12d, fs)?;
        a.xor(eax, eax)
    });
    assert_eq!(r.outcome, Outcome::Exited { status: 0 });
    assert_eq!(r.regs.gpr[8], 0x8, "the guest kernel's code selector");
    assert_eq!((r.regs.gpr[9], r.regs.gpr[11], r.regs.gpr[12]), (MMIO_BENCH + 0xf8, 0x10, 0x10));
}

/// JMP through MMIO to a non-canonical target (SDM Vol. 2 "JMP", 64-bit
/// mode exceptions: #GP(0) "if the target offset is non-canonical"): the
/// JMP itself faults, RIP on it, as kvm-unit-tests' emulator64
/// `test_jmp_noncanonical` expects (QEMU 7.2 TCG reports it at the target,
/// ../shared/kvm-unit-tests/NOTES.md).
#[test]
fn a_jmp_through_mmio_to_a_non_canonical_target_faults_at_the_jmp() {
    let (r, at) = run_at(|a, at| {
        a.mov(rax, 0xaaaa_aaaa_aaaa_aaaau64)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.set_label(at)?;
        a.jmp(qword_ptr(rdi))
    });
    let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!((m.vector, m.error_code, m.rip), (exitlab_arch::vector::GP, 0, at));
    assert_eq!(r.accountant.all().reasons[&ExitReason::EptMisconfig].samples, 2);
}

/// RET to a non-canonical return address faults at the RET with RSP as
/// it was (the pop does not commit), and CALL pushes nothing (SDM Vol. 2
/// "RET", "CALL"); the simulated CPU runs both (no MMIO).
#[test]
fn near_branches_to_non_canonical_targets_fault_without_committing() {
    let (r, at) = run_at(|a, at| {
        a.mov(rax, 0x8000_0000_0000_0000u64)?;
        a.push(rax)?;
        a.mov(rbx, rsp)?;
        a.set_label(at)?;
        a.ret()
    });
    let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!((m.vector, m.rip, m.rsp), (exitlab_arch::vector::GP, at, r.regs.gpr[3]));
    let (r, at) = run_at(|a, at| {
        a.mov(rax, 0x8000_0000_0000_0000u64)?;
        a.mov(rbx, rsp)?;
        a.set_label(at)?;
        a.call(rax)
    });
    let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!((m.vector, m.rip, m.rsp), (exitlab_arch::vector::GP, at, r.regs.gpr[3]));
}

/// A non-canonical address through SS (an RSP- or RBP-based operand) is
/// #SS(0), through any other segment #GP(0) (SDM Vol. 2, 64-bit mode
/// exceptions; kvm-unit-tests' emulator64 `test_reg_noncanonical`, which
/// QEMU 7.2 TCG fails with #GP).
#[test]
fn a_non_canonical_stack_access_is_a_stack_fault() {
    for (base_is_rbp, vector) in [(true, exitlab_arch::vector::SS), (false, exitlab_arch::vector::GP)] {
        let (r, at) = run_at(|a, at| {
            a.mov(rax, 0x8000_0000_0000_0000u64)?;
            a.mov(rbp, rsp)?;
            a.set_label(at)?;
            if base_is_rbp {
                a.or(qword_ptr(rbp + rax), 0)
            } else {
                a.or(qword_ptr(rax), 0)
            }
        });
        let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
        assert_eq!((m.vector, m.error_code, m.rip), (vector, 0, at));
    }
}

/// MOV SS from MMIO (kvm-unit-tests' emulator64 `test_sreg` loads SS from
/// MMIO): the VMM emulates it and sets blocking by MOV SS, so with TF set
/// the single-step #DB comes after the next instruction, not after MOV SS
/// (SDM Vol. 3A 6.8.3), as when the CPU runs a MOV SS of its own.
#[test]
fn a_mov_ss_from_mmio_holds_the_single_step_trap_for_one_instruction() {
    let (r, at) = run_at(|a, at| {
        a.mov(word_ptr(rdi), ss)?;
        a.pushfq()?;
        a.or(qword_ptr(rsp), 0x100)?;
        a.popfq()?;
        a.mov(ss, word_ptr(rdi))?;
        a.nop()?;
        a.set_label(at)?;
        a.nop()
    });
    let Outcome::GuestError(GuestError::Exception(m)) = r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!((m.vector, m.rip, m.dr6 & 0x4000), (exitlab_arch::vector::DB, at, 0x4000));
    assert_eq!(r.accountant.all().reasons[&ExitReason::EptMisconfig].samples, 2);
}

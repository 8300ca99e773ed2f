//! Chained execution (`cpu::chain`) against the reference path (one block
//! per pass of the event loop, `SimVm::set_chaining(false)`): the same
//! exits in the same order, the same registers, counters (instructions,
//! cycles, blocks decoded and run, page walks, TLB misses) and memory, on
//! the anchors' loops, built-in workloads with timers, interrupts, faults
//! and CR3 reloads, self-modifying code and code pages remapped with and
//! without INVLPG. Each case also checks its architectural answer, so
//! agreeing on a wrong result fails too.

mod support;

use exitlab_arch::{vector, Regs};
use exitlab_guest::anchor::{self, AnchorLoop};
use exitlab_guest::layout::{PD, PORT_DEBUG_EXIT};
use exitlab_guest::program::{program, Ring};
use exitlab_guest::Image;
use exitlab_hv::{Counter, HvError, Vcpu, Vm, VmExit};
use exitlab_sim::{RunLimits, SimVm};
use iced_x86::code_asm::*;
use support::*;

/// What one run leaves: its end, exits, registers, counters and RAM.
#[derive(Debug, PartialEq)]
struct Outcome {
    end: String,
    exits: Vec<VmExit>,
    regs: Regs,
    counters: Vec<Counter>,
    ram: Vec<u8>,
}

fn outcome(img: &Image, chaining: bool) -> Outcome {
    let mut vm = SimVm::new(img.memory_size).unwrap();
    vm.set_chaining(chaining);
    let mut r = run_on(vm, img, 0, None);
    let mut ram = vec![0u8; img.memory_size as usize];
    r.vm.read_memory(0, &mut ram).unwrap();
    Outcome {
        end: format!("{:?}", r.end),
        exits: r.exits,
        regs: r.vcpu.regs().unwrap(),
        counters: r.vcpu.counters().unwrap(),
        ram,
    }
}

/// Runs `img` chained and unchained; asserts they agree; returns the
/// chained outcome.
fn same(img: &Image) -> Outcome {
    let chained = outcome(img, true);
    let reference = outcome(img, false);
    assert_eq!(chained.end, reference.end);
    assert_eq!(chained.exits, reference.exits);
    assert_eq!(chained.regs, reference.regs);
    assert_eq!(chained.counters, reference.counters);
    assert!(chained.ram == reference.ram, "RAM differs");
    chained
}

fn counter(o: &Outcome, name: &str) -> u64 {
    o.counters.iter().find(|c| c.name == name).unwrap().value
}

#[test]
fn anchor_loops_agree_and_retire_the_stated_instructions() {
    for body in [AnchorLoop::Dec, AnchorLoop::Alu] {
        let one = same(&anchor::image(body, 1).unwrap());
        let many = same(&anchor::image(body, 1001).unwrap());
        assert_eq!(many.end, "Done");
        assert_eq!(counter(&many, "instructions") - counter(&one, "instructions"), 1000 * body.per_iteration());
        assert_eq!(many.regs.gpr[1], 0);
        assert!(counter(&many, "block_runs") >= 1000, "{body:?}");
    }
}

#[test]
fn workloads_with_timers_interrupts_faults_and_cr3_reloads_agree() {
    for (name, sets) in [
        ("io-mix", &["n=300", "warmup=5", "p=0.3", "work=20", "fresh_every=7", "switch_every=5"][..]),
        ("hlt", &["n=5", "warmup=1"][..]),
        ("idle", &["n=3", "warmup=0", "period_ms=2", "tick_hz=1000"][..]),
        ("apic-eoi", &["n=20", "warmup=2"][..]),
        ("fault", &["n=20", "warmup=2"][..]),
        ("cr3-write", &["n=20", "warmup=2"][..]),
        ("page-writes", &["n=20", "warmup=2"][..]),
    ] {
        let w = exitlab_guest::find_workload(name).unwrap();
        let img = w.build(&w.resolve(sets.iter().copied()).unwrap()).unwrap();
        let o = same(&img);
        assert!(counter(&o, "instructions") > 100, "{name}");
        // The fault workload ends in the kernel's report of its last #UD.
        let want = if name == "fault" { "Report(MailboxReport { vector: 6," } else { "Done" };
        assert!(o.end.starts_with(want), "{name}: {}", o.end);
    }
}

/// A loop that patches the immediate of `mov eax, imm32` in another block
/// (called) and in its own block (the instruction after the store), so
/// that both a successor and the running block go stale every iteration.
#[test]
fn self_modifying_code_agrees_and_runs_the_new_bytes() {
    let img = program("smc", Ring::Kernel, &start(), |a| {
        let mut f = a.create_label();
        let mut top = a.create_label();
        let mut here = a.create_label();
        let mut over = a.create_label();
        a.mov(ecx, 100)?;
        a.xor(ebx, ebx)?;
        a.xor(r8d, r8d)?;
        a.set_label(&mut top)?;
        a.lea(rdi, ptr(f))?;
        a.mov(dword_ptr(rdi + 1), ecx)?;
        a.call(f)?;
        a.add(rbx, rax)?;
        a.lea(rsi, ptr(here))?;
        a.mov(dword_ptr(rsi + 1), ecx)?;
        a.set_label(&mut here)?;
        a.mov(edx, 0)?;
        a.add(r8, rdx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.jmp(over)?;
        a.set_label(&mut f)?;
        a.mov(eax, 0)?;
        a.ret()?;
        a.set_label(&mut over)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    // Both patched instructions ran their new immediate: 100 + 99 + ... + 1.
    assert_eq!((o.regs.gpr[3], o.regs.gpr[8]), (5050, 5050));
}

/// Linear 8 MiB is remapped, by its 2 MiB PDE, between physical 10 MiB and
/// 12 MiB, each holding `mov eax, k; ret` with its own k; a loop calls it.
/// With INVLPG (or a CR3 reload) the new code runs at once; without, the
/// TLB may keep the old translation, which both paths must keep alike.
#[test]
fn code_pages_remapped_with_and_without_invlpg_agree() {
    const LIN: u64 = 0x80_0000;
    let pde = PD + (LIN >> 21) * 8;
    let img = program("remap", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        // mov eax, 1; ret at 10 MiB, mov eax, 2; ret at 12 MiB.
        for (phys, k) in [(0xa0_0000u64, 1u32), (0xc0_0000, 2)] {
            a.mov(rdi, phys)?;
            a.mov(byte_ptr(rdi), 0xb8)?;
            a.mov(dword_ptr(rdi + 1), k)?;
            a.mov(byte_ptr(rdi + 5), 0xc3)?;
        }
        a.mov(r9, pde)?;
        a.mov(r10, LIN)?;
        a.mov(ecx, 60)?;
        a.xor(ebx, ebx)?;
        a.xor(r12d, r12d)?;
        a.set_label(&mut top)?;
        // Map LIN to 10 or 12 MiB by the counter's low bit.
        a.mov(eax, ecx)?;
        a.and(eax, 1)?;
        a.shl(eax, 21)?;
        a.add(eax, 0xa0_0083)?; // P | RW | PS
        a.mov(qword_ptr(r9), rax)?;
        a.invlpg(ptr(r10))?;
        a.call(r10)?;
        a.add(rbx, rax)?;
        // The same edit back, without INVLPG: the stale entry may run.
        a.xor(qword_ptr(r9), 0x20_0000)?;
        a.call(r10)?;
        a.add(r12, rax)?;
        // And with a CR3 reload.
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.call(r10)?;
        a.add(r12, rax)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    // With INVLPG: 30 calls of each page.
    assert_eq!(o.regs.gpr[3], 30 + 30 * 2);
    // After the CR3 reload the other page runs: 30 of each again, plus
    // whatever the stale entries ran (one of the two each time).
    assert!((90 + 60..=90 + 120).contains(&o.regs.gpr[12]), "{}", o.regs.gpr[12]);
}

/// Links to blocks that left the block cache or the chain. Two routines
/// at physical 0xa0_0000 and 0xa0_2001 share a slot of the direct-mapped
/// block cache (`(p ^ p >> 13) & 0x1fff` is 0x500 for both), so each call
/// drops the other's block while the chain still holds it and a link
/// leads there. With `jumps` = 20 each pass also runs 20 more blocks than
/// the chain's 16 entries, so entries that links point to are replaced
/// round robin. The links' generations must send both to the full lookup.
fn evicting(jumps: usize) -> Image {
    const F: [(u64, u32); 2] = [(0xa0_0000, 1), (0xa0_2001, 2)];
    program("evict", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        // mov eax, k; ret at each address.
        for (phys, k) in F {
            a.mov(rdi, phys)?;
            a.mov(byte_ptr(rdi), 0xb8)?;
            a.mov(dword_ptr(rdi + 1), k)?;
            a.mov(byte_ptr(rdi + 5), 0xc3)?;
        }
        a.mov(r9, F[0].0)?;
        a.mov(r10, F[1].0)?;
        a.mov(ecx, 50)?;
        a.xor(ebx, ebx)?;
        a.xor(r12d, r12d)?;
        a.set_label(&mut top)?;
        a.call(r9)?;
        a.add(rbx, rax)?;
        a.call(r10)?;
        a.add(rbx, rax)?;
        for _ in 0..jumps {
            let mut next = a.create_label();
            a.inc(r12)?;
            a.jmp(next)?;
            a.set_label(&mut next)?;
        }
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap()
}

#[test]
fn links_to_blocks_dropped_from_the_cache_or_the_chain_agree() {
    for jumps in [0, 20] {
        let o = same(&evicting(jumps));
        assert_eq!(o.end, "Done");
        assert_eq!((o.regs.gpr[3], o.regs.gpr[12]), (50 * 3, 50 * jumps as u64));
        // Each pass decodes both routines afresh: they evict each other.
        assert!(counter(&o, "blocks_decoded") >= 100, "{}", counter(&o, "blocks_decoded"));
    }
}

/// A routine at physical 0xa0_0000 whose page is written before each
/// call (a byte beside the routine, not its code): the write drops the
/// routine's block from the block cache without a decode, so no chain
/// entry is replaced and the chain's generation stays put; only the
/// cache's generation tells the call's link that its successor is gone.
fn rewritten(passes: u32) -> Image {
    const R: u64 = 0xa0_0000;
    program("rewritten", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        // mov eax, 7; ret
        a.mov(rdi, R)?;
        a.mov(byte_ptr(rdi), 0xb8)?;
        a.mov(dword_ptr(rdi + 1), 7)?;
        a.mov(byte_ptr(rdi + 5), 0xc3)?;
        a.mov(ecx, passes)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.mov(byte_ptr(rdi + 0x100), cl)?;
        a.call(rdi)?;
        a.add(rbx, rax)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap()
}

/// Both paths take links through `Running::linked`, so agreeing is not
/// enough here: every pass must decode the routine afresh (a link that
/// ignored the cache's generation would run the dropped block again and
/// decode nothing).
#[test]
fn links_to_a_block_dropped_by_a_write_to_its_page_are_not_taken() {
    let decoded = |passes: u32| {
        let o = same(&rewritten(passes));
        assert_eq!(o.end, "Done");
        assert_eq!(o.regs.gpr[3], 7 * u64::from(passes));
        counter(&o, "blocks_decoded")
    };
    assert_eq!(decoded(4) - decoded(3), 1);
    assert_eq!(decoded(12) - decoded(4), 8);
}

/// An instruction limit stops both paths at the same block boundary.
#[test]
fn instruction_limits_stop_both_paths_at_the_same_instruction() {
    let img = anchor::image(AnchorLoop::Alu, 1_000_000).unwrap();
    let stop = |chaining: bool| {
        let mut vm = SimVm::new(img.memory_size).unwrap();
        vm.set_chaining(chaining);
        vm.set_limits(RunLimits { max_instructions: Some(123_457), max_time_ns: None });
        for c in img.boot_layout().chunks {
            vm.write_memory(c.gpa, &c.bytes).unwrap();
        }
        vm.write_memory(img.load_gpa, &img.bytes).unwrap();
        let mut vcpu = vm.create_vcpu(0, &img.boot_layout().state).unwrap();
        let error = loop {
            match vcpu.run() {
                Ok(VmExit::Io(io)) if io.qual.is_in => vcpu.complete_read(&[0x20]),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        (error, vcpu.regs().unwrap(), vcpu.counters().unwrap())
    };
    let chained = stop(true);
    assert_eq!(chained, stop(false));
    assert!(matches!(&chained.0, HvError::Limit(m) if m.contains("instruction limit of 123457")), "{}", chained.0);
}

/// Hot loops around the events that make the event loop act between
/// blocks: a self-NMI through the ICR, single-stepping (TF) over a loop, a
/// data breakpoint (DR0/DR7) hit inside a loop, and RF and the NMI's IRET
/// on the way back. The handlers count in memory: the NMI at 0x600000,
/// #DB at 0x600008.
#[test]
fn single_steps_breakpoints_and_nmis_between_hot_loops_agree() {
    let img = exitlab_guest::program::program_with_handlers("debug", Ring::Kernel, &start(), |a| {
        let mut over = a.create_label();
        a.jmp(over)?;
        let mut nmi = a.create_label();
        a.set_label(&mut nmi)?;
        a.inc(qword_ptr(0x60_0000u64))?;
        a.iretq()?;
        let mut db = a.create_label();
        a.set_label(&mut db)?;
        a.inc(qword_ptr(0x60_0008u64))?;
        a.iretq()?;
        a.set_label(&mut over)?;
        let hot = |a: &mut CodeAssembler, n: u32| -> Result<(), IcedError> {
            let mut top = a.create_label();
            a.mov(ecx, n)?;
            a.set_label(&mut top)?;
            a.add(rbx, rcx)?;
            a.xor(rbx, 0x55)?;
            a.dec(ecx)?;
            a.jnz(top)
        };
        hot(a, 500)?;
        // A self-NMI (fixed destination: our APIC ID 0), then more loop.
        a.mov(rdi, 0xfee0_0000u64)?;
        a.mov(dword_ptr(rdi + 0x310), 0)?;
        a.mov(dword_ptr(rdi + 0x300), 4 << 8)?;
        hot(a, 500)?;
        // Single-step a 10-iteration loop.
        a.pushfq()?;
        a.or(qword_ptr(rsp), 0x100)?;
        a.popfq()?;
        hot(a, 10)?;
        a.pushfq()?;
        a.and(qword_ptr(rsp), !0x100)?;
        a.popfq()?;
        a.mov(r12, qword_ptr(0x60_0008u64))?;
        hot(a, 500)?;
        // A write breakpoint on 0x600010 (8 bytes) hit 20 times in a loop.
        a.mov(rax, 0x60_0010u64)?;
        a.mov(dr0, rax)?;
        a.mov(rax, 0xd_0001u64)?;
        a.mov(dr7, rax)?;
        let mut top = a.create_label();
        a.mov(ecx, 20)?;
        a.set_label(&mut top)?;
        a.mov(qword_ptr(0x60_0010u64), rcx)?;
        a.add(rbx, rcx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.xor(eax, eax)?;
        a.mov(dr7, rax)?;
        hot(a, 500)?;
        a.mov(r13, qword_ptr(0x60_0000u64))?;
        a.mov(r14, qword_ptr(0x60_0008u64))?;
        Ok(exitlab_guest::program::Body { marks: Vec::new(), gates: vec![(vector::NMI, nmi), (vector::DB, db)] })
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    assert_eq!(o.regs.gpr[13], 1, "one NMI");
    // Stepping (SDM 18.3.1.4): a trap after the MOV ECX, the loop's 40
    // instructions and the PUSHFQ/AND, and after the POPFQ that clears TF
    // (it began with TF set); none after the POPFQ that set it: 1 + 40 +
    // 2 + 1.
    assert_eq!(o.regs.gpr[12], 44, "single-step traps");
    assert_eq!(o.regs.gpr[14] - o.regs.gpr[12], 20, "data breakpoint traps");
}

/// Every form the fast path lowers (`uop.rs`: ALU reg/imm, INC/DEC/NEG/NOT,
/// MOV, LEA, IMUL, SHL/SHR/SAR by immediates including counts that mask to
/// 0, loads and stores) at every operand size, each flag producer read
/// back through PUSHFQ (a slow op in the middle of the block) and every
/// Jcc condition after it: registers, RFLAGS, memory and counters agree
/// with the executor's reference path.
#[test]
fn every_lowered_form_and_flag_producer_agrees_with_the_executor() {
    let img = program("uops", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        a.mov(rdi, 0x60_0000u64)?;
        a.mov(ecx, 40)?;
        a.mov(rax, 0x8000_0000_7fff_fff0u64)?;
        a.mov(rbx, 0x0123_4567_89ab_cdefu64)?;
        a.mov(rdx, 0xffff_ffff_ffff_ff81u64)?;
        a.xor(r15d, r15d)?;
        a.set_label(&mut top)?;
        // A flag producer, then its flags into r15 (the slow PUSHFQ) and
        // one condition taken or not into r14.
        let read_flags = |a: &mut CodeAssembler, cc: u32| -> Result<(), IcedError> {
            let mut skip = a.create_label();
            a.pushfq()?;
            a.pop(r8)?;
            a.add(r15, r8)?;
            a.rol(r15, 7)?;
            jcc(a, cc % 16, skip)?;
            a.add(r14, rcx)?;
            a.set_label(&mut skip)
        };
        let mut cc = 0;
        let mut next = |a: &mut CodeAssembler| -> Result<(), IcedError> {
            cc += 1;
            read_flags(a, cc)
        };
        a.add(rax, rbx)?;
        next(a)?;
        a.adc(ebx, edx)?;
        next(a)?;
        a.sub(dx, ax)?;
        next(a)?;
        a.sbb(al, bl)?;
        next(a)?;
        a.and(rbx, 0x7fff_f0f0)?;
        next(a)?;
        a.or(cx, 0)?;
        next(a)?;
        a.xor(dl, 0x80)?;
        next(a)?;
        a.cmp(eax, -1)?;
        next(a)?;
        a.test(rbx, rax)?;
        next(a)?;
        a.inc(al)?;
        next(a)?;
        a.dec(dx)?;
        next(a)?;
        a.neg(rbx)?;
        next(a)?;
        a.not(edx)?;
        next(a)?;
        a.imul_2(rax, rbx)?;
        next(a)?;
        a.imul_3(dx, bx, -3)?;
        next(a)?;
        a.imul_3(ebx, eax, 0x12345)?;
        next(a)?;
        a.shl(rdx, 63)?;
        next(a)?;
        a.shr(ebx, 1)?;
        next(a)?;
        a.sar(ax, 15)?;
        next(a)?;
        a.shl(al, 32)?; // masks to 0: flags kept
        next(a)?;
        a.sar(rbx, 64)?; // masks to 0 in 64 bits
        next(a)?;
        // Moves, LEA, loads and stores at every size.
        a.mov(r9, rax)?;
        a.mov(r10d, 0xdead_beefu32)?;
        a.mov(r11w, bx)?;
        a.mov(r12b, 0x5a)?;
        a.lea(r13, qword_ptr(rax + rbx * 4 + 0x10))?;
        a.lea(r9d, dword_ptr(rdx + rcx * 8 - 3))?;
        a.mov(qword_ptr(rdi + rcx * 8), rax)?;
        a.mov(dword_ptr(rdi + 0x400), r10d)?;
        a.mov(word_ptr(rdi + 0x402), 0x1234)?;
        a.mov(byte_ptr(rdi + 0x401), dl)?;
        a.mov(rsi, qword_ptr(rdi + 0x400))?;
        a.mov(r11d, dword_ptr(rdi + rcx * 8))?;
        a.mov(r12w, word_ptr(rdi + 0x401))?;
        a.mov(r13b, byte_ptr(rdi + 0x403))?;
        a.add(r15, rsi)?;
        a.xor(r15, r11)?;
        a.add(r15, r12)?;
        a.add(r15, r13)?;
        a.add(r15, r9)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    assert_eq!(o.regs.gpr[1], 0);
    // The qword read back at 0x600400: the dword 0xdeadbeef, the word
    // 0x1234 over its high half and DL over its second byte.
    assert_eq!(o.regs.gpr[6], 0x1234_00ef | (o.regs.gpr[2] & 0xff) << 8, "{:#x}", o.regs.gpr[6]);
}

/// Reads the flags a producer left (PUSHFQ: a slow op, so the record is
/// stored) into r15.
fn flags_read(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.pushfq()?;
    a.pop(r8)?;
    a.add(r15, r8)?;
    a.rol(r15, 7)
}

/// Overwrites every status flag unread (the producer before stores no
/// record), then reads the new ones.
fn flags_dropped(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.add(r13, r12)?;
    flags_read(a)
}

/// Jcc with condition `cc` right after a producer (the fused pair),
/// counting taken branches in r14, then the flags read in the next block.
fn fused_jcc(a: &mut CodeAssembler, cc: u32) -> Result<(), IcedError> {
    let mut skip = a.create_label();
    jcc(a, cc % 16, skip)?;
    a.add(r14, rcx)?;
    a.set_label(&mut skip)?;
    flags_read(a)
}

/// `$body` with `$d`, `$s` a destination and source register, `$p` a
/// memory operand constructor and `$i` an immediate (the type MOV takes)
/// of each operand size in turn (8, 4, 2, 1).
macro_rules! at_every_size {
    (|$d:ident, $s:ident, $p:ident, $i:ident| $body:block) => {{
        {
            let ($d, $s, $p, $i) = (rax, rbx, qword_ptr::<AsmMemoryOperand>, -0x1234_5678_9abc_i64);
            $body
        }
        {
            let ($d, $s, $p, $i) = (eax, ebx, dword_ptr::<AsmMemoryOperand>, 0x1234_5678);
            $body
        }
        {
            let ($d, $s, $p, $i) = (ax, bx, word_ptr::<AsmMemoryOperand>, 0x9876);
            $body
        }
        {
            let ($d, $s, $p, $i) = (al, bl, byte_ptr::<AsmMemoryOperand>, 0xa5);
            $body
        }
    }};
}

/// Every handler a micro-op compiles to (`cpu::micro`: one per form,
/// operation, operand size, register or immediate source, and flag record
/// stored or dropped): each binary op, INC, DEC, NEG, NOT and shift at
/// every size with its flags read back, dropped (the next op overwrites
/// them) and fused with a Jcc (each condition in turn, the flags read in
/// the next block), IMUL, MOV, LEA, loads and stores at each size they
/// have. Registers, RFLAGS, memory and counters agree with the reference.
#[test]
fn every_handler_at_every_size_agrees_with_the_executor() {
    let img = program("handlers", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        a.mov(rbp, 0x60_0000u64)?;
        a.mov(ecx, 9)?;
        a.mov(rax, 0x8000_0000_7fff_fff0u64)?;
        a.mov(rbx, 0x0123_4567_89ab_cdefu64)?;
        a.mov(r12, 0x7fff_ffff_ffff_ff00u64)?;
        a.xor(r15d, r15d)?;
        a.set_label(&mut top)?;
        let mut cc = 0;
        macro_rules! binary {
            ($op:ident) => {
                at_every_size!(|d, s, _p, _i| {
                    a.$op(d, s)?;
                    flags_read(a)?;
                    a.$op(d, -0x66)?;
                    flags_read(a)?;
                    a.$op(d, s)?;
                    flags_dropped(a)?;
                    a.$op(d, 0x55)?;
                    flags_dropped(a)?;
                    a.$op(d, s)?;
                    cc += 1;
                    fused_jcc(a, cc)?;
                    a.$op(d, 0x7f)?;
                    cc += 1;
                    fused_jcc(a, cc)?;
                    // Keep the values moving.
                    a.add(rbx, rcx)?;
                    a.rol(rax, 13)?;
                })
            };
        }
        binary!(add);
        binary!(adc);
        binary!(sub);
        binary!(sbb);
        binary!(and);
        binary!(or);
        binary!(xor);
        binary!(cmp);
        binary!(test);
        macro_rules! unary {
            ($op:ident, $fuse:expr) => {
                at_every_size!(|d, _s, _p, _i| {
                    a.$op(d)?;
                    flags_read(a)?;
                    a.$op(d)?;
                    flags_dropped(a)?;
                    if $fuse {
                        a.$op(d)?;
                        cc += 1;
                        fused_jcc(a, cc)?;
                    }
                    a.add(rax, rcx)?;
                })
            };
        }
        unary!(inc, true);
        unary!(dec, true);
        unary!(neg, true);
        unary!(not, false);
        macro_rules! shift {
            ($op:ident) => {
                at_every_size!(|d, _s, _p, _i| {
                    a.$op(d, 3)?;
                    flags_read(a)?;
                    a.$op(d, 1)?;
                    flags_dropped(a)?;
                    a.rol(rax, 5)?;
                })
            };
        }
        shift!(shl);
        shift!(shr);
        shift!(sar);
        at_every_size!(|d, s, p, i| {
            a.mov(d, s)?;
            a.add(r15, rax)?;
            a.mov(p(rbp + rcx * 8), d)?;
            a.mov(p(rbp + 0x100), 0x5a)?;
            a.mov(d, p(rbp + 0xff))?;
            a.add(r15, rax)?;
            a.mov(d, i)?;
            a.add(r15, rax)?;
            // At the page's end: the last quadword, and parts of it.
            a.mov(p(rbp + 0xff8), d)?;
            a.mov(d, p(rbp + 0xff8))?;
            a.add(r15, rax)?;
            a.mov(r9b, byte_ptr(rbp + 0xfff))?;
            a.add(r15, r9)?;
            a.mov(r9w, word_ptr(rbp + 0xffe))?;
            a.add(r15, r9)?;
            a.mov(r9d, dword_ptr(rbp + 0xffc))?;
            a.add(r15, r9)?;
            a.rol(rbx, 3)?;
        });
        // IMUL and LEA have no 8-bit form.
        macro_rules! wide {
            ($d:ident, $s:ident) => {
                a.imul_2($d, $s)?;
                flags_read(a)?;
                a.imul_2($d, $s)?;
                flags_dropped(a)?;
                a.imul_3($d, $s, -9)?;
                flags_read(a)?;
                a.imul_3($d, $s, 0x3)?;
                flags_dropped(a)?;
                a.lea($d, ptr(rbx + rcx * 4 - 0x10))?;
                a.add(r15, rax)?;
                a.add(rbx, rcx)?;
            };
        }
        wide!(rax, rbx);
        wide!(eax, ebx);
        wide!(ax, bx);
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    assert_eq!(o.regs.gpr[1], 0);
    // The last pass stored 0x5a as a byte at 0x600100 last.
    assert_eq!(o.ram[0x60_0100], 0x5a);
}

/// Loads and stores at the end of a page (the fast path takes those within
/// it, the reference path those that cross), and a data page remapped by
/// its PDE with INVLPG, without it (the stale TLB entry must serve both
/// paths alike) and with a CR3 reload.
#[test]
fn data_accesses_at_page_ends_and_after_remaps_agree() {
    const LIN: u64 = 0x80_0000;
    let pde = PD + (LIN >> 21) * 8;
    let img = program("remap-data", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        a.mov(qword_ptr(0xa0_0000u64), 1)?;
        a.mov(qword_ptr(0xc0_0000u64), 2)?;
        a.mov(r9, pde)?;
        a.mov(r10, LIN)?;
        a.mov(rdi, 0x60_0ff8u64)?;
        a.mov(ecx, 60)?;
        a.xor(ebx, ebx)?;
        a.xor(r12d, r12d)?;
        a.xor(r13d, r13d)?;
        a.set_label(&mut top)?;
        // Page ends: 8 bytes at 0xff8 (inside), 8 at 0xffc (crossing),
        // 2 at 0xfff (crossing), then read back.
        a.mov(qword_ptr(rdi), rcx)?;
        a.mov(qword_ptr(rdi + 4), rbx)?;
        a.mov(word_ptr(rdi + 7), cx)?;
        a.add(r13, qword_ptr(rdi))?;
        a.mov(rax, qword_ptr(rdi + 4))?;
        a.add(r13, rax)?;
        a.movzx(eax, word_ptr(rdi + 7))?;
        a.add(r13, rax)?;
        // Map LIN's data to 10 or 12 MiB by the counter's low bit.
        a.mov(eax, ecx)?;
        a.and(eax, 1)?;
        a.shl(eax, 21)?;
        a.add(eax, 0xa0_0083)?; // P | RW | PS
        a.mov(qword_ptr(r9), rax)?;
        a.invlpg(ptr(r10))?;
        a.mov(rax, qword_ptr(r10))?;
        a.add(rbx, rax)?;
        // The same edit back, without INVLPG: the stale entry may serve.
        a.xor(qword_ptr(r9), 0x20_0000)?;
        a.mov(rax, qword_ptr(r10))?;
        a.add(r12, rax)?;
        a.add(qword_ptr(r10 + 8), rcx)?;
        // And with a CR3 reload.
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.mov(rax, qword_ptr(r10))?;
        a.add(r12, rax)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert_eq!(o.end, "Done");
    // With INVLPG: 30 reads of each page.
    assert_eq!(o.regs.gpr[3], 30 + 30 * 2);
    // The XOR flips bit 21, mapping 8 or 14 MiB (zero at offset 0): the
    // read without INVLPG still sees the stale entry (1 or 2); the store
    // after it walks (the PDE's D bit is clear), and after the CR3 reload
    // the new mapping reads 0.
    assert_eq!(o.regs.gpr[12], 30 + 30 * 2);
}

/// The fast path's fused pairs (`uop.rs`: a flag producer and the Jcc
/// after it as one micro-op) and its dropped flag records (a producer
/// whose flags the next register-only op overwrites unread): every
/// producer at every size with Jcc conditions taken and not, the flags
/// read in the next block (PUSHFQ at the target and after the
/// fall-through, LAHF, SETcc, ADC reading the CF that DEC keeps),
/// producers overwritten unread before a PUSHFQ, and a page fault after
/// a dropped record, whose exception frame holds the RFLAGS pushed.
#[test]
fn fused_jcc_pairs_and_dropped_flag_records_agree() {
    let img = program("fused", Ring::Kernel, &start(), |a| {
        let mut top = a.create_label();
        a.mov(ecx, 70)?;
        a.mov(rbx, 0x8000_0000_0000_0001u64)?;
        a.xor(r14d, r14d)?;
        a.xor(r15d, r15d)?;
        a.set_label(&mut top)?;
        a.imul_3(rax, rcx, 0x3779_b97f)?;
        a.ror(rax, 29)?;
        a.mov(rdx, rax)?;
        a.xor(rdx, rbx)?;
        a.rol(rbx, 3)?;
        // A producer, a Jcc on it, then the flags read in the next block
        // (the fall-through adds to r14 first).
        let mut cc = 0u32;
        let mut pair = |a: &mut CodeAssembler, produce: &dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>| {
            let mut skip = a.create_label();
            produce(a)?;
            cc += 5;
            jcc(a, cc % 16, skip)?;
            a.add(r14, rcx)?;
            a.set_label(&mut skip)?;
            a.pushfq()?;
            a.pop(r8)?;
            a.add(r15, r8)?;
            a.rol(r15, 7)
        };
        pair(a, &|a| a.add(rax, rdx))?;
        pair(a, &|a| a.adc(edx, eax))?;
        pair(a, &|a| a.sub(ax, dx))?;
        pair(a, &|a| a.sbb(dl, al))?;
        pair(a, &|a| a.and(rdx, 0x7fff_f0f0))?;
        pair(a, &|a| a.or(eax, edx))?;
        pair(a, &|a| a.xor(dx, 0x8000u32 as i32))?;
        pair(a, &|a| a.cmp(al, dl))?;
        pair(a, &|a| a.cmp(rax, rdx))?;
        pair(a, &|a| a.cmp(edx, eax))?;
        pair(a, &|a| a.test(rdx, rax))?;
        pair(a, &|a| a.inc(al))?;
        pair(a, &|a| a.dec(edx))?;
        pair(a, &|a| a.neg(rax))?;
        pair(a, &|a| a.sub(rdx, rax))?;
        pair(a, &|a| a.cmp(dx, ax))?;
        // LAHF, SETcc and ADC after fused pairs.
        let (mut l1, mut l2, mut l3) = (a.create_label(), a.create_label(), a.create_label());
        a.sub(eax, edx)?;
        a.jz(l1)?;
        a.set_label(&mut l1)?;
        a.lahf()?;
        a.add(r15, rax)?;
        a.cmp(rax, rdx)?;
        a.jl(l2)?;
        a.set_label(&mut l2)?;
        a.setg(r9b)?;
        a.seta(r10b)?;
        a.add(r15b, r9b)?;
        a.add(r15b, r10b)?;
        a.stc()?;
        a.dec(rdx)?;
        a.jnz(l3)?;
        a.set_label(&mut l3)?;
        a.adc(r15, 0)?;
        // Records overwritten unread (ADD by XOR, XOR by IMUL, IMUL by
        // SHL, NOT by NEG), then read back.
        a.add(rax, rcx)?;
        a.xor(rdx, rax)?;
        a.imul_3(rdx, rdx, 9)?;
        a.shl(rdx, 3)?;
        a.not(rax)?;
        a.neg(rax)?;
        a.pushfq()?;
        a.pop(r8)?;
        a.xor(r15, r8)?;
        a.add(r15, rax)?;
        a.add(r15, rdx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        // A fault after a dropped record: ADD's flags are overwritten by
        // SUB's, which the #PF's frame holds.
        a.mov(rdi, 0x40_0000_0000u64)?;
        a.add(rax, rbx)?;
        a.sub(rdx, rax)?;
        a.mov(r9, qword_ptr(rdi))?;
        a.out(PORT_DEBUG_EXIT as u32, al)
    })
    .unwrap();
    let o = same(&img);
    assert!(o.end.starts_with("Report(MailboxReport { vector: 14,"), "{}", o.end);
    assert_eq!(o.regs.gpr[1], 0);
    assert_ne!(o.regs.gpr[14], 0, "some fall-throughs ran");
}

fn jcc(a: &mut CodeAssembler, cc: u32, to: CodeLabel) -> Result<(), IcedError> {
    match cc {
        0 => a.jo(to),
        1 => a.jno(to),
        2 => a.jb(to),
        3 => a.jae(to),
        4 => a.je(to),
        5 => a.jne(to),
        6 => a.jbe(to),
        7 => a.ja(to),
        8 => a.js(to),
        9 => a.jns(to),
        10 => a.jp(to),
        11 => a.jnp(to),
        12 => a.jl(to),
        13 => a.jge(to),
        14 => a.jle(to),
        _ => a.jg(to),
    }
}

//! The simulated CPU against the architecture: exact RIPs, registers,
//! exit sequences and event delivery for the cases KVM cannot show (every
//! exit is visible here) or that need precise control.

mod support;

use exitlab_arch::bits::{dr6, pte};
use exitlab_arch::vector;
use exitlab_guest::layout::{self, PD};
use exitlab_guest::program::Ring;
use exitlab_hv::{Vcpu, Vm, VmExit};
use iced_x86::code_asm::*;
use support::*;

#[test]
fn same_image_same_exits_registers_and_time() {
    let w = exitlab_guest::find_workload("io-mix").unwrap();
    let img = w.build(&w.resolve(["n=2000", "p=0.3", "ring3=1"]).unwrap()).unwrap();
    let (a, b) = (run_with(&img, 7), run_with(&img, 7));
    assert_eq!(a.exits, b.exits);
    assert_eq!(a.vcpu.cpu().regs(), b.vcpu.cpu().regs());
    assert_eq!(a.vcpu.now_ns(), b.vcpu.now_ns());
    assert_eq!(a.vcpu.cpu().stats.instructions, b.vcpu.cpu().stats.instructions);
    assert_eq!(a.exits.iter().filter(|e| matches!(e, VmExit::Io(io) if io.qual.port == 0x80)).count(), 600 + 3);
}

#[test]
fn popf_setting_tf_traps_after_the_next_instruction_with_dr6_bs() {
    let mut l = CodeLabel::default();
    let (r, img) = run(Ring::Kernel, |a| {
        a.pushfq()?;
        a.or(qword_ptr(rsp), 0x100)?;
        a.popfq()?;
        l = a.create_label();
        a.set_label(&mut l)?;
        a.nop()?;
        a.nop()
    });
    let rep = report(&r);
    assert_eq!(rep.vector, vector::DB);
    // POPF sets TF: the NOP after it runs, then #DB with RIP past the NOP.
    let popf = after(&img, after(&img, sym(&img, "body")));
    let nop = after(&img, popf);
    assert_eq!(rep.rip, after(&img, nop));
    assert_ne!(r.vcpu.cpu().dr6 & dr6::BS, 0);
    // Delivery cleared TF in the handler's RFLAGS; the pushed image has it.
    assert_ne!(rep.rflags & 0x100, 0);
}

#[test]
fn sti_shadow_holds_a_pending_interrupt_for_one_instruction() {
    let (r, img) = run(Ring::Kernel, |a| {
        // A self-IPI on vector 0x50 (no handler: the kernel reports it)
        // while IF = 0, then STI; NOP; NOP.
        a.mov(rdi, 0xfee0_0000u64)?;
        a.mov(dword_ptr(rdi + 0x300), 1 << 18 | 0x50)?;
        a.sti()?;
        a.nop()?;
        a.nop()
    });
    let rep = report(&r);
    assert_eq!(rep.vector, 0x50);
    let sti = after(&img, after(&img, sym(&img, "body")));
    let first_nop = after(&img, sti);
    // Not after STI: after the instruction in its shadow.
    assert_eq!(rep.rip, after(&img, first_nop));
}

#[test]
fn read_modify_write_and_rep_string_against_mmio_exit_per_access() {
    let (r, _) = run_reading(Ring::Kernel, 10, |a| {
        a.mov(rdi, 0xd000_0000u64)?;
        a.add(dword_ptr(rdi), 5)?;
        // Three dwords of RAM to MMIO.
        a.mov(rsi, 0x30_0000u64)?;
        a.mov(dword_ptr(rsi), 0x11)?;
        a.mov(dword_ptr(rsi + 4), 0x22)?;
        a.mov(dword_ptr(rsi + 8), 0x33)?;
        a.mov(ecx, 3)?;
        a.rep().movsd()
    });
    assert_eq!(r.end, End::Done);
    let mmio: Vec<(u64, bool, u64)> = r
        .exits
        .iter()
        .filter_map(|e| match e {
            VmExit::Mmio { access, .. } => Some((access.gpa, access.is_write, access.data)),
            _ => None,
        })
        .collect();
    let d = 0xd000_0000;
    // The VMM answered the read with 10: the write carries 15.
    assert_eq!(mmio, vec![(d, false, 0), (d, true, 15), (d, true, 0x11), (d + 4, true, 0x22), (d + 8, true, 0x33)]);
    let cpu = r.vcpu.cpu();
    assert_eq!((cpu.gpr[1], cpu.gpr[7]), (0, d + 12));
}

#[test]
fn self_modifying_code_runs_the_new_bytes() {
    let (r, _) = run(Ring::Kernel, |a| {
        let mut f = a.create_label();
        let mut over = a.create_label();
        a.call(f)?;
        a.mov(rbx, rax)?;
        // Patch the immediate of `mov eax, 1` in f, then call it again.
        a.lea(rdi, ptr(f))?;
        a.mov(byte_ptr(rdi + 1), 7)?;
        a.call(f)?;
        a.jmp(over)?;
        a.set_label(&mut f)?;
        a.mov(eax, 1)?;
        a.ret()?;
        a.set_label(&mut over)?;
        a.nop()
    });
    assert_eq!(r.end, End::Done);
    assert_eq!((r.vcpu.cpu().gpr[3], r.vcpu.cpu().gpr[0]), (1, 7));
}

#[test]
fn a_fault_while_delivering_a_double_fault_shuts_down() {
    let (r, _) = run(Ring::Kernel, |a| {
        // An IDT with a zero limit: #UD -> #GP (IDT limit) -> #DF -> shutdown.
        a.push(0)?;
        a.push(0)?;
        a.lidt(ptr(rsp + 6))?;
        a.ud2()
    });
    assert_eq!(r.end, End::Shutdown);
}

#[test]
fn unmodelled_instructions_stop_with_rip_bytes_and_disassembly() {
    // AVX is not modelled.
    let (r, img) = run(Ring::Kernel, |a| a.vaddps(xmm0, xmm1, xmm2));
    let End::Unsupported(msg) = &r.end else { panic!("{:?}", r.end) };
    assert!(msg.contains(&format!("rip {:#x}", sym(&img, "body"))), "{msg}");
    assert!(msg.contains("c5 f0 58 c2") && msg.contains("vaddps"), "{msg}");
}

#[test]
fn undefined_opcodes_raise_ud_in_the_guest() {
    let (r, img) = run(Ring::User, |a| a.db(&[0x06])); // PUSH ES: invalid in 64-bit mode
    let rep = report(&r);
    assert_eq!((rep.vector, rep.rip, rep.cs & 3), (vector::UD, sym(&img, "body"), 3));
}

#[test]
fn page_faults_report_the_architectural_error_code_and_cr2() {
    // The 2 MiB page at 4 MiB made read-only by the guest itself, then
    // written: #PF with P and W; user access to a supervisor page: P and U.
    let pde = PD + 2 * 8;
    let (r, img) = run(Ring::Kernel, |a| {
        a.mov(rdi, pde)?;
        a.and(qword_ptr(rdi), !(pte::RW as i32))?;
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.mov(rsi, 0x40_0010u64)?;
        a.mov(eax, dword_ptr(rsi))?;
        a.mov(dword_ptr(rsi), eax)
    });
    let rep = report(&r);
    assert_eq!((rep.vector, rep.error_code, rep.cr2), (vector::PF, 0b11, 0x40_0010));
    assert_eq!(rep.rip, img.symbol("body_end").unwrap() - 2);
    // The read set A in the PDE; the faulting write did not set D.
    let mut e = [0u8; 8];
    r.vm.read_memory(pde, &mut e).unwrap();
    let e = u64::from_le_bytes(e);
    assert_ne!(e & pte::A, 0);
    assert_eq!(e & pte::D, 0);
}

#[test]
fn writes_set_the_dirty_bit_and_the_tlb_keeps_stale_entries_until_invlpg() {
    let pde = PD + 3 * 8; // 6 MiB
    let (r, _) = run(Ring::Kernel, |a| {
        a.mov(rsi, 0x60_0000u64)?;
        a.mov(dword_ptr(rsi), 1)?; // fills the TLB, sets A and D
        a.mov(rdi, pde)?;
        a.and(qword_ptr(rdi), !(pte::RW as i32))?;
        a.mov(dword_ptr(rsi), 2)?; // stale writable entry: no fault
        a.invlpg(ptr(rsi))?;
        a.mov(dword_ptr(rsi), 3) // now it faults
    });
    let rep = report(&r);
    assert_eq!((rep.vector, rep.cr2), (vector::PF, 0x60_0000));
    let mut v = [0u8; 4];
    r.vm.read_memory(0x60_0000, &mut v).unwrap();
    assert_eq!(u32::from_le_bytes(v), 2);
    let mut e = [0u8; 8];
    r.vm.read_memory(pde, &mut e).unwrap();
    assert_eq!(u64::from_le_bytes(e) & (pte::A | pte::D), pte::A | pte::D);
}

#[test]
fn ring3_port_io_checks_iopl_then_the_tss_bitmap() {
    // Ring 3 cannot lower IOPL with POPF (it stays 3), and I/O works.
    let (r, _) = run(Ring::User, |a| {
        a.pushfq()?;
        a.and(qword_ptr(rsp), !0x3000)?;
        a.popfq()?;
        a.pushfq()?;
        a.pop(r12)?;
        a.out(0x80, al)
    });
    assert_eq!(r.end, End::Done);
    assert_eq!(r.vcpu.cpu().gpr[12] & 0x3000, 0x3000);

    // Ring 0 denies port 0x80 in the TSS bitmap and enters ring 3 with
    // IOPL 0: port 0x81 still exits to the VMM, port 0x80 raises #GP(0).
    let mut user = CodeLabel::default();
    let (r, img) = run(Ring::Kernel, |a| {
        user = a.create_label();
        a.mov(rdi, layout::TSS + layout::TSS_IO_BITMAP + 0x80 / 8)?;
        a.mov(byte_ptr(rdi), 1)?;
        a.push(i32::from(layout::USER_DS))?;
        a.push(layout::USER_STACK_TOP as i32)?;
        a.push(0x2)?;
        a.push(i32::from(layout::USER_CS))?;
        a.lea(rax, ptr(user))?;
        a.push(rax)?;
        a.iretq()?;
        a.set_label(&mut user)?;
        a.out(0x81, al)?;
        a.out(0x80, al)
    });
    let rep = report(&r);
    assert_eq!((rep.vector, rep.error_code, rep.cs & 3), (vector::GP, 0, 3));
    assert_eq!(rep.rip, img.symbol("body_end").unwrap() - 2);
    assert!(matches!(r.exits.last(), Some(VmExit::Io(io)) if io.qual.port == 0x81));
}

/// A segment override on a string instruction's source applies that
/// segment's base, as in any memory operand (in 64-bit mode FS and GS
/// have one): `fs rep movsb` copies from FS base + RSI.
#[test]
fn string_instructions_take_the_source_segment_override() {
    let (r, _) = run(Ring::Kernel, |a| {
        a.mov(ecx, 0xc000_0100u32)?; // IA32_FS_BASE
        a.mov(eax, 0x30_0000)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(rbx, 0x30_0010u64)?;
        a.mov(qword_ptr(rbx), rax)?;
        a.mov(esi, 0x10)?;
        a.mov(edi, 0x30_0100)?;
        a.mov(ecx, 8)?;
        a.db(&[0x64, 0xf3, 0xa4])?; // fs rep movsb
        a.mov(r8, qword_ptr(0x30_0100u64))?;
        a.mov(esi, 0x10)?;
        a.db(&[0x64, 0x48, 0xad]) // fs lodsq
    });
    assert_eq!(r.end, End::Done);
    let cpu = r.vcpu.cpu();
    assert_eq!((cpu.gpr[8], cpu.gpr[0]), (0x1122_3344_5566_7788, 0x1122_3344_5566_7788));
    assert_eq!((cpu.gpr[6], cpu.gpr[7], cpu.gpr[1]), (0x18, 0x30_0108, 0));
}

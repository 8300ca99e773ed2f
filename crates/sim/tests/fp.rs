//! x87, MMX and SSE in a guest on the simulated CPU: state kept in the
//! vCPU, exceptions delivered through the IDT at the architectural RIP
//! (#NM for lazy FPU switching, #XM/#UD for SIMD exceptions, #MF at the
//! next waiting instruction), XCR0 and the XSAVE family in ring 0 and
//! their privilege checks, and RTM aborts restoring vector registers.

mod support;

use exitlab_arch::bits::{cr0, cr4};
use exitlab_arch::vector;
use exitlab_guest::layout::KERNEL_CS;
use exitlab_guest::program::{program_marked, Marks, Ring};
use exitlab_guest::Image;
use exitlab_hv::Vm;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use iced_x86::code_asm::*;
use support::*;

const BUF: u64 = 0x30_0000;

fn ps(v: [f32; 4]) -> u128 {
    v.iter().enumerate().fold(0, |r, (i, x)| r | (x.to_bits() as u128) << (32 * i))
}

/// Loads xmm0 = [1, 2, 3, 4] and xmm1 = [10, 20, 30, 40] from BUF.
fn load_vectors(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rbx, BUF)?;
    for (i, v) in [ps([1.0, 2.0, 3.0, 4.0]), ps([10.0, 20.0, 30.0, 40.0])].into_iter().enumerate() {
        a.mov(rax, v as u64)?;
        a.mov(qword_ptr(rbx + 16 * i as i32), rax)?;
        a.mov(rax, (v >> 64) as u64)?;
        a.mov(qword_ptr(rbx + 16 * i as i32 + 8), rax)?;
    }
    a.movaps(xmm0, xmmword_ptr(rbx))?;
    a.movaps(xmm1, xmmword_ptr(rbx + 16))
}

/// Points IDT vector `v` of `img` at the label `handler` (a 64-bit
/// interrupt gate to ring 0), as the kernel's own gates are built.
fn gate(img: &mut Image, v: u8, handler: &str) {
    let h = sym(img, handler);
    let at = (sym(img, "idt") - img.load_gpa) as usize + 16 * usize::from(v);
    let g = &mut img.bytes[at..at + 16];
    g[0..2].copy_from_slice(&(h as u16).to_le_bytes());
    g[2..4].copy_from_slice(&KERNEL_CS.to_le_bytes());
    g[4] = 0;
    g[5] = 0x8e;
    g[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
}

fn build(ring: Ring, body: impl FnOnce(&mut CodeAssembler) -> Result<Marks, IcedError>) -> Image {
    program_marked("fp", ring, &start(), body).unwrap()
}

#[test]
fn sse_arithmetic_leaves_its_results_in_the_vcpu() {
    let (r, _) = run(Ring::User, |a| {
        load_vectors(a)?;
        a.addps(xmm0, xmm1)?;
        a.movups(xmmword_ptr(rbx + 40), xmm0)?;
        a.cvttss2si(r8, xmm0)
    });
    assert_eq!(r.end, End::Done);
    let cpu = r.vcpu.cpu();
    assert_eq!(cpu.fpu.xmm[0], ps([11.0, 22.0, 33.0, 44.0]));
    assert_eq!(cpu.gpr[8], 11);
    let mut b = [0u8; 16];
    r.vm.read_memory(BUF + 40, &mut b).unwrap();
    assert_eq!(u128::from_le_bytes(b), ps([11.0, 22.0, 33.0, 44.0]));
    assert_eq!(cpu.fpu.xinuse & 2, 2);
}

#[test]
fn lazy_fpu_switching_through_cr0_ts() {
    // The #NM handler counts in r15, clears TS and returns: the faulting
    // ADDPS runs again and completes.
    let mut img = build(Ring::Kernel, |a| {
        let mut handler = a.create_label();
        let mut done = a.create_label();
        load_vectors(a)?;
        a.xor(r15d, r15d)?;
        a.mov(rax, cr0)?;
        a.or(rax, cr0::TS as i32)?;
        a.mov(cr0, rax)?;
        a.addps(xmm0, xmm1)?;
        a.addps(xmm0, xmm1)?;
        a.jmp(done)?;
        a.set_label(&mut handler)?;
        a.inc(r15)?;
        a.clts()?;
        a.iretq()?;
        a.set_label(&mut done)?;
        a.nop()?;
        Ok(vec![("nm_handler", handler)])
    });
    gate(&mut img, vector::NM, "nm_handler");
    let r = run_with(&img, 0);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.vcpu.cpu().gpr[15], 1, "one #NM, then the FPU is the task's");
    assert_eq!(r.vcpu.cpu().fpu.xmm[0], ps([21.0, 42.0, 63.0, 84.0]));
    assert_eq!(r.vcpu.cpu().cr0 & cr0::TS, 0);
}

#[test]
fn unmasked_simd_exceptions_are_xm_or_ud_at_the_instruction() {
    for os in [true, false] {
        let mut divps = CodeLabel::default();
        let img = build(Ring::Kernel, |a| {
            load_vectors(a)?;
            if !os {
                a.mov(rax, cr4)?;
                a.and(rax, !(cr4::OSXMMEXCPT as i32))?;
                a.mov(cr4, rax)?;
            }
            // MXCSR with ZM clear; xmm1's first lane zero.
            a.mov(dword_ptr(rbx + 64), 0x1f80 & !(1 << 9))?;
            a.ldmxcsr(dword_ptr(rbx + 64))?;
            a.pxor(xmm2, xmm2)?;
            a.movss(xmm1, xmm2)?;
            divps = a.create_label();
            a.set_label(&mut divps)?;
            a.divps(xmm0, xmm1)?;
            Ok(vec![("divps", divps)])
        });
        let r = run_with(&img, 0);
        let rep = report(&r);
        assert_eq!(rep.vector, if os { vector::XM } else { vector::UD });
        assert_eq!(rep.rip, sym(&img, "divps"));
        let cpu = r.vcpu.cpu();
        assert_eq!(cpu.fpu.mxcsr.0 & 0x3f, 0x04, "ZE flagged");
        assert_eq!(cpu.fpu.xmm[0], ps([1.0, 2.0, 3.0, 4.0]), "destination unchanged");
    }
}

#[test]
fn a_pending_x87_exception_is_mf_at_the_next_waiting_instruction() {
    let img = build(Ring::User, |a| {
        let mut wait = a.create_label();
        a.mov(rbx, BUF)?;
        a.mov(word_ptr(rbx), 0x037f & !4)?; // ZM clear
        a.fninit()?;
        a.fldcw(word_ptr(rbx))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?; // 1 / 0: ZE, unmasked
        a.fnstsw(ax)?; // no-wait: runs
        a.mov(r9d, eax)?;
        a.set_label(&mut wait)?;
        a.fld1()?;
        Ok(vec![("waiting", wait)])
    });
    let r = run_with(&img, 0);
    let rep = report(&r);
    assert_eq!((rep.vector, rep.rip), (vector::MF, sym(&img, "waiting")));
    let x = r.vcpu.cpu().fpu.x87;
    assert_eq!(r.vcpu.cpu().gpr[9] as u16 & 0x80, 0x80, "FNSTSW saw ES");
    // FOP: DE F8+1 (FDIVP ST(1), ST(0)); FIP at the FDIVP, before FNSTSW
    // (2 bytes) and the MOV (3).
    assert_eq!(x.fop, 0x6f9);
    assert_eq!(x.fip, sym(&img, "waiting") - 3 - 2 - 2);
}

#[test]
fn mmx_instructions_fault_on_a_pending_x87_exception_and_enter_mmx_mode() {
    let (r, _) = run(Ring::User, |a| {
        a.fld1()?;
        a.fld1()?;
        a.mov(eax, 0x0102_0304)?;
        a.movd(mm3, eax)?;
        a.paddb(mm3, mm3)?;
        a.movd(ecx, mm3)
    });
    assert_eq!(r.end, End::Done);
    let x = r.vcpu.cpu().fpu.x87;
    assert_eq!((x.top, x.valid), (0, 0xff));
    assert_eq!(r.vcpu.cpu().gpr[1], 0x0204_0608);
}

#[test]
fn xsave_family_in_ring_0_and_its_privilege_checks() {
    let (r, _) = run(Ring::Kernel, |a| {
        load_vectors(a)?;
        a.mov(rax, cr4)?;
        a.or(rax, cr4::OSXSAVE as i32)?;
        a.mov(cr4, rax)?;
        a.xor(ecx, ecx)?;
        a.xor(edx, edx)?;
        a.mov(eax, 3)?;
        a.xsetbv()?;
        a.mov(rdi, BUF + 0x1000)?;
        a.xsave64(ptr(rdi))?;
        a.pxor(xmm0, xmm0)?;
        a.xrstor64(ptr(rdi))?;
        a.mov(ecx, 1)?;
        a.xgetbv()?; // XINUSE & XCR0
        a.mov(r8, rax)?;
        a.mov(eax, 3)?;
        a.xsaves64(ptr(rdi + 0x400))?;
        a.xrstors64(ptr(rdi + 0x400))
    });
    assert_eq!(r.end, End::Done);
    let cpu = r.vcpu.cpu();
    // XGETBV(1): SSE in use, x87 not (no x87 instruction ran).
    assert_eq!((cpu.xcr0, cpu.gpr[8], cpu.fpu.xmm[0]), (3, 2, ps([1.0, 2.0, 3.0, 4.0])));
    let mut hdr = [0u8; 16];
    r.vm.read_memory(BUF + 0x1000 + 0x400 + 512, &mut hdr).unwrap();
    assert_eq!(u64::from_le_bytes(hdr[8..].try_into().unwrap()), 1 << 63 | 3, "XSAVES: compacted XCOMP_BV");
    // Without CR4.OSXSAVE (the boot state's) the family is #UD, which
    // outranks XSETBV's privilege check (an instruction-decoding fault;
    // SDM Vol. 3A 6.9): the CPL 0 #GP is in crates/x86/tests/fp_exec.rs.
    let (r, _) = run(Ring::User, |a| a.xsetbv());
    assert_eq!(report(&r).vector, vector::UD);
    let (r, _) = run(Ring::User, |a| {
        a.mov(rdi, BUF)?;
        a.xsave64(ptr(rdi))
    });
    assert_eq!(report(&r).vector, vector::UD);
}

#[test]
fn an_rtm_abort_restores_the_vector_registers() {
    let img = build(Ring::Kernel, |a| {
        let mut fallback = a.create_label();
        load_vectors(a)?;
        a.xbegin(fallback)?;
        a.addps(xmm0, xmm1)?;
        a.xabort(1)?;
        a.set_label(&mut fallback)?;
        a.nop()?;
        Ok(Vec::new())
    });
    let mut profile = Profile::load("modern").unwrap();
    profile.features.tsx = true;
    let r = run_on(SimVm::with_profile(img.memory_size, profile, 0).unwrap(), &img, 0, None);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.vcpu.cpu().fpu.xmm[0], ps([1.0, 2.0, 3.0, 4.0]));
}

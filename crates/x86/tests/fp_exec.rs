//! The executor's x87, MMX, SSE and state-save families (crates/x86/src/
//! x87.rs, sse.rs, xsave.rs) on the smallest `Cpu` that has the state:
//! operand routing, the CR0/CR4 checks and their exceptions (#UD, #NM,
//! #MF, #XM, #GP), what a fault leaves unchanged, FIP/FDP/FOP, XINUSE and
//! the MMX transition. The arithmetic itself is phase 1's, checked
//! against silicon in the other tests of this crate.

use exitlab_arch::bits::{cr0, cr4, rflags};
use exitlab_arch::vector;
use exitlab_x86::fp::mxcsr::Mxcsr;
use exitlab_x86::fp::x87::F80;
use exitlab_x86::fp::xsave::FpuState;
use exitlab_x86::fp::Exc;
use exitlab_x86::{execute, lower, Cpu, Exception, Flags, Kind, Op, Seg, Size};
use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions};
use std::collections::HashMap;

#[derive(Debug, PartialEq)]
enum Stop {
    Fault(Exception),
    Unsupported,
}

/// Flat memory below `limit`; CR0, CR4, XCR0 and the FPU state.
struct Flat {
    gpr: [u64; 16],
    rip: u64,
    flags: Flags,
    rest: u64,
    cpl: u8,
    mem: HashMap<u64, u8>,
    limit: u64,
    cr0: u64,
    cr4: u64,
    xcr0: u64,
    fpu: FpuState,
}

impl Cpu for Flat {
    type Stop = Stop;

    fn has(&self, feature: exitlab_x86::Feature) -> bool {
        feature == exitlab_x86::Feature::Cx16
    }

    fn gpr(&self, n: u8) -> u64 {
        self.gpr[usize::from(n & 15)]
    }
    fn set_gpr(&mut self, n: u8, v: u64) {
        self.gpr[usize::from(n & 15)] = v;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, v: u64) {
        self.rip = v;
    }
    fn flags(&self) -> Flags {
        self.flags
    }
    fn set_flags(&mut self, f: Flags) {
        self.flags = f;
    }
    fn rflags_rest(&self) -> u64 {
        self.rest
    }
    fn set_rflags_rest(&mut self, v: u64) {
        self.rest = v;
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn read(&mut self, _seg: Seg, lin: u64, size: Size) -> Result<u64, Stop> {
        if lin.saturating_add(u64::from(size)) > self.limit {
            return Err(Stop::Fault(Exception::gp(0)));
        }
        Ok((0..u64::from(size)).fold(0, |v, i| v | u64::from(*self.mem.get(&(lin + i)).unwrap_or(&0)) << (8 * i)))
    }
    fn write(&mut self, _seg: Seg, lin: u64, size: Size, v: u64) -> Result<(), Stop> {
        if lin.saturating_add(u64::from(size)) > self.limit {
            return Err(Stop::Fault(Exception::gp(0)));
        }
        for i in 0..u64::from(size) {
            self.mem.insert(lin + i, (v >> (8 * i)) as u8);
        }
        Ok(())
    }
    fn check_write(&mut self, _seg: Seg, lin: u64, len: usize) -> Result<(), Stop> {
        if lin.saturating_add(len as u64) > self.limit {
            return Err(Stop::Fault(Exception::gp(0)));
        }
        Ok(())
    }
    fn exception(&mut self, e: Exception) -> Stop {
        Stop::Fault(e)
    }
    fn unsupported(&mut self) -> Stop {
        Stop::Unsupported
    }
    fn cr(&mut self, n: u8) -> Result<u64, Stop> {
        Ok(if n == 0 { self.cr0 } else { self.cr4 })
    }
    fn fpu(&mut self) -> Result<&mut FpuState, Stop> {
        Ok(&mut self.fpu)
    }
    fn xcr0(&mut self) -> Result<u64, Stop> {
        Ok(self.xcr0)
    }
    fn set_xcr0(&mut self, v: u64) -> Result<(), Stop> {
        self.xcr0 = v;
        Ok(())
    }
}

const CODE: u64 = 0x1000;
const DATA: u64 = 0x4000;

fn flat() -> Flat {
    Flat {
        gpr: [0; 16],
        rip: CODE,
        flags: Flags::default(),
        rest: rflags::FIXED,
        cpl: 3,
        mem: HashMap::new(),
        limit: 0x10_0000,
        cr0: cr0::PE | cr0::MP | cr0::NE | cr0::PG,
        cr4: cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE,
        xcr0: 1,
        fpu: FpuState::default(),
    }
}

/// Assembles one instruction at CODE.
fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

fn lowered(bytes: &[u8]) -> Op {
    lower(&Decoder::with_ip(64, bytes, CODE, DecoderOptions::NONE).decode())
}

/// Runs one instruction at the current RIP.
fn run(c: &mut Flat, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Result<(), Stop> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    let bytes = a.assemble(c.rip).unwrap();
    execute(c, &lower(&Decoder::with_ip(64, &bytes, c.rip, DecoderOptions::NONE).decode()))
}

fn fault(v: u8) -> Result<(), Stop> {
    Err(Stop::Fault(Exception { vector: v, error_code: if v == vector::GP { Some(0) } else { None } }))
}

fn ps(v: [f32; 4]) -> u128 {
    v.iter().enumerate().fold(0, |r, (i, x)| r | (x.to_bits() as u128) << (32 * i))
}

fn put128(c: &mut Flat, at: u64, v: u128) {
    c.write(Seg::Ds, at, 8, v as u64).unwrap();
    c.write(Seg::Ds, at + 8, 8, (v >> 64) as u64).unwrap();
}

#[test]
fn every_form_of_issue_13_lowers() {
    let forms: Vec<Vec<u8>> = vec![
        asm(|a| a.addps(xmm1, xmmword_ptr(rbx))),
        asm(|a| a.insertps(xmm1, dword_ptr(rbx), 0x10)),
        asm(|a| a.maskmovq(mm1, mm2)),
        asm(|a| a.maskmovdqu(xmm1, xmm2)),
        asm(|a| a.movntdq(xmmword_ptr(rbx), xmm3)),
        asm(|a| a.movq(rax, xmm3)),
        asm(|a| a.popcnt(eax, ecx)),
        asm(|a| a.crc32(eax, byte_ptr(rbx))),
        asm(|a| a.cmpxchg16b(xmmword_ptr(rbx))),
        asm(|a| a.lahf()),
        asm(|a| a.fxsave64(ptr(rbx))),
        asm(|a| a.xsaves64(ptr(rbx))),
        asm(|a| a.xrstors(ptr(rbx))),
        asm(|a| a.xgetbv()),
        asm(|a| a.xsetbv()),
        asm(|a| a.ldmxcsr(dword_ptr(rbx))),
        asm(|a| a.fninit()),
        asm(|a| a.fnstsw(ax)),
        asm(|a| a.fldcw(word_ptr(rbx))),
        asm(|a| a.wait()),
        asm(|a| a.emms()),
        asm(|a| a.prefetchw(byte_ptr(rbx))),
        asm(|a| a.prefetchnta(byte_ptr(rbx))),
        asm(|a| a.sfence()),
        asm(|a| a.pcmpestri64(xmm1, xmmword_ptr(rbx), 0x0c)),
        asm(|a| a.fsincos()),
        asm(|a| a.fbstp(tword_ptr(rbx))),
    ];
    for f in forms {
        let op = lowered(&f);
        assert_ne!(op.kind, Kind::Unsupported, "{f:02x?}");
        assert_eq!(usize::from(op.len), f.len(), "{f:02x?}");
    }
    // The 16-bit environment format is not modelled.
    assert_eq!(lowered(&[0x66, 0xd9, 0x33]).kind, Kind::Unsupported);
}

#[test]
fn fop_is_the_opcode_and_modrm() {
    // fdiv dword [rbx+0x10]: D8 /6, mod 01, r/m 011.
    assert_eq!(lowered(&[0xd8, 0x73, 0x10]).c, exitlab_x86::Opnd::Imm(0x073));
    // fdiv st, st(3): D8 F0+i.
    assert_eq!(lowered(&[0xd8, 0xf3]).c, exitlab_x86::Opnd::Imm(0x0f3));
    // fcompp: DE D9; fstp qword [rsp+8]: DD /3 with a SIB byte.
    assert_eq!(lowered(&[0xde, 0xd9]).c, exitlab_x86::Opnd::Imm(0x6d9));
    assert_eq!(lowered(&[0xdd, 0x5c, 0x24, 0x08]).c, exitlab_x86::Opnd::Imm(0x55c));
    // fld dword [rip+0]: mod 00, r/m 101.
    assert_eq!(lowered(&[0xd9, 0x05, 0, 0, 0, 0]).c, exitlab_x86::Opnd::Imm(0x105));
}

#[test]
fn an_unmasked_simd_exception_sets_flags_and_keeps_the_destination() {
    let mut c = flat();
    c.fpu.xmm[1] = ps([1.0, 2.0, 3.0, 4.0]);
    c.fpu.xmm[2] = ps([0.0, 1.0, 1.0, 1.0]);
    c.fpu.mxcsr = Mxcsr(0x1f80 & !(1 << 9)); // ZM clear
    assert_eq!(run(&mut c, |a| a.divps(xmm1, xmm2)), fault(vector::XM));
    assert_eq!((c.fpu.xmm[1], c.fpu.mxcsr.flags(), c.rip), (ps([1.0, 2.0, 3.0, 4.0]), Exc::ZE, CODE));
    c.cr4 &= !cr4::OSXMMEXCPT;
    assert_eq!(run(&mut c, |a| a.divps(xmm1, xmm2)), fault(vector::UD));
    c.fpu.mxcsr = Mxcsr::default();
    run(&mut c, |a| a.divps(xmm1, xmm2)).unwrap();
    assert_eq!(c.fpu.xmm[1], ps([f32::INFINITY, 2.0, 3.0, 4.0]));
    assert_eq!(c.fpu.xinuse, 2, "an XMM write sets XINUSE[1]");
}

#[test]
fn control_register_checks_come_first() {
    let mut c = flat();
    c.cr0 |= cr0::TS;
    assert_eq!(run(&mut c, |a| a.addps(xmm0, xmm1)), fault(vector::NM));
    assert_eq!(run(&mut c, |a| a.fadd_2(st0, st1)), fault(vector::NM));
    assert_eq!(run(&mut c, |a| a.fxsave64(ptr(rbx))), fault(vector::NM));
    // WAIT needs TS and MP.
    assert_eq!(run(&mut c, |a| a.wait()), fault(vector::NM));
    c.cr0 &= !cr0::MP;
    run(&mut c, |a| a.wait()).unwrap();
    let mut c = flat();
    c.cr0 |= cr0::EM;
    assert_eq!(run(&mut c, |a| a.addps(xmm0, xmm1)), fault(vector::UD));
    assert_eq!(run(&mut c, |a| a.paddb(mm0, mm1)), fault(vector::UD));
    assert_eq!(run(&mut c, |a| a.fld1()), fault(vector::NM));
    let mut c = flat();
    c.cr4 &= !cr4::OSFXSR;
    assert_eq!(run(&mut c, |a| a.addps(xmm0, xmm1)), fault(vector::UD));
    assert_eq!(run(&mut c, |a| a.ldmxcsr(dword_ptr(rbx))), fault(vector::UD));
    run(&mut c, |a| a.paddb(mm0, mm1)).unwrap();
}

#[test]
fn aligned_forms_fault_on_misaligned_operands() {
    let mut c = flat();
    c.gpr[3] = DATA + 8;
    put128(&mut c, DATA + 8, 0x1234);
    assert_eq!(run(&mut c, |a| a.movaps(xmm0, xmmword_ptr(rbx))), fault(vector::GP));
    assert_eq!(run(&mut c, |a| a.addps(xmm0, xmmword_ptr(rbx))), fault(vector::GP));
    assert_eq!(run(&mut c, |a| a.movaps(xmmword_ptr(rbx), xmm0)), fault(vector::GP));
    run(&mut c, |a| a.movups(xmm0, xmmword_ptr(rbx))).unwrap();
    assert_eq!(c.fpu.xmm[0], 0x1234);
    // Scalar and string forms take any alignment.
    run(&mut c, |a| a.addss(xmm0, dword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.pcmpistri(xmm0, xmmword_ptr(rbx), 0)).unwrap();
}

#[test]
fn a_store_that_faults_part_way_writes_nothing() {
    let mut c = flat();
    c.limit = DATA + 0x1000;
    c.gpr[3] = DATA + 0x1000 - 8;
    c.fpu.xmm[0] = u128::MAX;
    assert_eq!(run(&mut c, |a| a.movups(xmmword_ptr(rbx), xmm0)), fault(vector::GP));
    assert_eq!(c.read(Seg::Ds, DATA + 0x1000 - 8, 8), Ok(0));
}

#[test]
fn moves_between_every_register_file_and_memory() {
    let mut c = flat();
    c.gpr[3] = DATA;
    c.fpu.xmm[1] = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff;
    run(&mut c, |a| a.movq(rax, xmm1)).unwrap();
    assert_eq!(c.gpr[0], 0x8899_aabb_ccdd_eeff);
    run(&mut c, |a| a.movd(xmm2, eax)).unwrap();
    assert_eq!(c.fpu.xmm[2], 0xccdd_eeff);
    run(&mut c, |a| a.movhps(qword_ptr(rbx), xmm1)).unwrap();
    assert_eq!(c.read(Seg::Ds, DATA, 8), Ok(0x0011_2233_4455_6677));
    run(&mut c, |a| a.movss(xmm2, xmm1)).unwrap();
    assert_eq!(c.fpu.xmm[2], 0xccdd_eeff);
    c.fpu.xmm[3] = u128::MAX;
    run(&mut c, |a| a.movss(xmm3, xmm2)).unwrap();
    assert_eq!(c.fpu.xmm[3], (u128::MAX << 32) | 0xccdd_eeff, "MOVSS xmm, xmm merges");
    run(&mut c, |a| a.movss(xmm3, dword_ptr(rbx))).unwrap();
    assert_eq!(c.fpu.xmm[3], 0x4455_6677, "MOVSS xmm, m32 zero-extends");
    // MMX: MOVQ mm enters MMX mode.
    c.fpu.x87.top = 3;
    run(&mut c, |a| a.movq(mm2, rax)).unwrap();
    assert_eq!((c.fpu.x87.mm(2), c.fpu.x87.top, c.fpu.x87.valid), (0x8899_aabb_ccdd_eeff, 0, 0xff));
    run(&mut c, |a| a.movq2dq(xmm4, mm2)).unwrap();
    assert_eq!(c.fpu.xmm[4], 0x8899_aabb_ccdd_eeff);
    run(&mut c, |a| a.emms()).unwrap();
    assert_eq!(c.fpu.x87.valid, 0);
}

#[test]
fn maskmovdqu_stores_the_selected_bytes() {
    let mut c = flat();
    c.gpr[7] = DATA;
    put128(&mut c, DATA, u128::MAX);
    c.fpu.xmm[1] = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
    c.fpu.xmm[2] = 0x80 | 0x80 << 24 | 0xff << 120;
    run(&mut c, |a| a.maskmovdqu(xmm1, xmm2)).unwrap();
    assert_eq!(c.read(Seg::Ds, DATA, 8), Ok(0xffff_ffff_03ff_ff00));
    assert_eq!(c.read(Seg::Ds, DATA + 8, 8), Ok(0x0fff_ffff_ffff_ffff));
}

#[test]
fn string_compares_write_ecx_or_xmm0_and_flags() {
    let mut c = flat();
    c.fpu.xmm[1] = u128::from_le_bytes(*b"abc\0\0\0\0\0\0\0\0\0\0\0\0\0");
    c.fpu.xmm[2] = u128::from_le_bytes(*b"xxabcxx\0\0\0\0\0\0\0\0\0");
    // Equal ordered, unsigned bytes: "abc" first occurs at 2.
    run(&mut c, |a| a.pcmpistri(xmm1, xmm2, 0x0c)).unwrap();
    assert_eq!(c.gpr[1], 2);
    assert_eq!(c.flags.bits(), rflags::CF | rflags::ZF | rflags::SF);
    run(&mut c, |a| a.pcmpistrm(xmm1, xmm2, 0x0c)).unwrap();
    assert_eq!(c.fpu.xmm[0], 0b100);
}

#[test]
fn x87_arithmetic_pointers_and_mf() {
    let mut c = flat();
    c.gpr[3] = DATA;
    c.write(Seg::Ds, DATA + 0x10, 4, 0).unwrap(); // +0.0f
    run(&mut c, |a| a.fld1()).unwrap();
    assert_eq!((c.fpu.x87.st(0), c.fpu.x87.fip, c.fpu.xinuse), (F80::ONE, CODE, 1));
    // Division by zero, masked: infinity, no pointer change beyond FIP.
    c.rip = 0x2000;
    run(&mut c, |a| a.fdiv(dword_ptr(rbx + 0x10))).unwrap();
    assert_eq!((c.fpu.x87.fip, c.fpu.x87.fop, c.fpu.x87.fdp), (0x2000, 0, 0));
    assert!(c.fpu.x87.status_word() & 4 != 0);
    // Unmasked: ES, and FOP/FDP recorded.
    c.fpu.x87.fnclex();
    c.fpu.x87.fldcw(0x037f & !4);
    run(&mut c, |a| a.fld1()).unwrap();
    c.rip = 0x3000;
    run(&mut c, |a| a.fdiv(dword_ptr(rbx + 0x10))).unwrap();
    assert!(c.fpu.x87.pending());
    assert_eq!((c.fpu.x87.fip, c.fpu.x87.fop, c.fpu.x87.fdp), (0x3000, 0x073, DATA + 0x10));
    // The next waiting instruction raises #MF; a no-wait one does not.
    assert_eq!(run(&mut c, |a| a.fld1()), fault(vector::MF));
    assert_eq!(run(&mut c, |a| a.paddb(mm0, mm1)), fault(vector::MF));
    run(&mut c, |a| a.fnstsw(ax)).unwrap();
    assert_eq!(c.gpr[0] as u16, c.fpu.x87.status_word());
    // With CR0.NE clear the platform's FERR# path decides (none here).
    c.cr0 &= !cr0::NE;
    assert_eq!(run(&mut c, |a| a.fld1()), Err(Stop::Unsupported));
}

#[test]
fn x87_stores_leave_the_stack_when_the_write_faults() {
    let mut c = flat();
    run(&mut c, |a| a.fldpi()).unwrap();
    let before = c.fpu;
    c.gpr[3] = c.limit - 4;
    assert_eq!(run(&mut c, |a| a.fstp(tword_ptr(rbx))), fault(vector::GP));
    assert_eq!(c.fpu, before);
    c.gpr[3] = DATA;
    run(&mut c, |a| a.fstp(tword_ptr(rbx))).unwrap();
    assert_eq!(c.fpu.x87.valid, 0);
    let mut b = [0u8; 10];
    for (i, x) in b.iter_mut().enumerate() {
        *x = c.read(Seg::Ds, DATA + i as u64, 1).unwrap() as u8;
    }
    assert_eq!(
        F80::from_bytes(b),
        exitlab_x86::fp::x87::constant(exitlab_x86::fp::x87::Const::Pi, exitlab_x86::fp::Rc::Nearest)
    );
}

#[test]
fn fxsave_fxrstor_and_the_xsave_family() {
    let mut c = flat();
    c.cpl = 0;
    c.gpr[3] = DATA;
    c.fpu.xmm[5] = 0x55;
    c.fpu.mxcsr = Mxcsr(0x1fa0);
    run(&mut c, |a| a.fxsave64(ptr(rbx))).unwrap();
    let saved = c.fpu;
    c.fpu.xmm[5] = 0;
    run(&mut c, |a| a.fxrstor64(ptr(rbx))).unwrap();
    assert_eq!((c.fpu.xmm[5], c.fpu.mxcsr), (saved.xmm[5], saved.mxcsr));
    // A reserved MXCSR bit in the image is #GP, and nothing changes.
    c.write(Seg::Ds, DATA + 24, 4, 0x1_0000).unwrap();
    c.fpu.xmm[5] = 7;
    assert_eq!(run(&mut c, |a| a.fxrstor64(ptr(rbx))), fault(vector::GP));
    assert_eq!(c.fpu.xmm[5], 7);
    c.gpr[3] = DATA + 8;
    assert_eq!(run(&mut c, |a| a.fxsave64(ptr(rbx))), fault(vector::GP));
    // XSETBV, XGETBV; XSAVE needs 64-byte alignment.
    c.gpr[0] = 3;
    c.gpr[1] = 0;
    run(&mut c, |a| a.xsetbv()).unwrap();
    assert_eq!(c.xcr0, 3);
    c.gpr[0] = 2;
    assert_eq!(run(&mut c, |a| a.xsetbv()), fault(vector::GP));
    c.gpr[1] = 1;
    run(&mut c, |a| a.xgetbv()).unwrap();
    assert_eq!(c.gpr[0], 3, "XINUSE & XCR0");
    assert_eq!(run(&mut c, |a| a.xsave64(ptr(rbx))), fault(vector::GP));
    c.gpr[3] = DATA + 0x100;
    c.gpr[0] = 3;
    c.gpr[2] = 0;
    run(&mut c, |a| a.xsavec64(ptr(rbx))).unwrap();
    assert_eq!(c.read(Seg::Ds, DATA + 0x100 + 520, 8), Ok(1 << 63 | 3));
    c.cpl = 3;
    assert_eq!(run(&mut c, |a| a.xsetbv()), fault(vector::GP));
    assert_eq!(run(&mut c, |a| a.xsaves64(ptr(rbx))), fault(vector::GP));
    c.cr4 &= !cr4::OSXSAVE;
    assert_eq!(run(&mut c, |a| a.xgetbv()), fault(vector::UD));
    assert_eq!(run(&mut c, |a| a.xsave64(ptr(rbx))), fault(vector::UD));
}

#[test]
fn cmpxchg16b_and_crc32() {
    let mut c = flat();
    c.gpr[3] = DATA;
    put128(&mut c, DATA, 0x2222_0000_0000_0000_1111);
    (c.gpr[0], c.gpr[2], c.gpr[1]) = (0x1111, 0x2222, 0xcc);
    // Equal: RCX:RBX stored, ZF set. (RBX is the address here.)
    run(&mut c, |a| a.cmpxchg16b(xmmword_ptr(rbx))).unwrap();
    assert!(c.flags.zf());
    assert_eq!((c.read(Seg::Ds, DATA, 8), c.read(Seg::Ds, DATA + 8, 8)), (Ok(DATA), Ok(0xcc)));
    // Not equal: loaded into RDX:RAX, ZF clear.
    run(&mut c, |a| a.cmpxchg16b(xmmword_ptr(rbx))).unwrap();
    assert!(!c.flags.zf());
    assert_eq!((c.gpr[0], c.gpr[2]), (DATA, 0xcc));
    c.gpr[3] = DATA + 8;
    assert_eq!(run(&mut c, |a| a.cmpxchg16b(xmmword_ptr(rbx))), fault(vector::GP));
    // CRC32C of "123456789" is 0xE3069283 (with the usual pre- and
    // post-inversion, which the instruction leaves to software).
    let mut c = flat();
    c.gpr[0] = 0xffff_ffff;
    for b in b"123456789" {
        c.gpr[1] = u64::from(*b);
        run(&mut c, |a| a.crc32(eax, cl)).unwrap();
    }
    assert_eq!(c.gpr[0] ^ 0xffff_ffff, 0xe306_9283);
}

#[test]
fn immediate_shift_counts_past_the_lane_clear_or_fill() {
    // Found by the differential test: the count is the whole imm8.
    let mut c = flat();
    c.fpu.xmm[1] = u128::MAX;
    run(&mut c, |a| a.psrldq(xmm1, 0x18)).unwrap();
    assert_eq!(c.fpu.xmm[1], 0);
    c.fpu.xmm[2] = 0x8000_7fff;
    run(&mut c, |a| a.psraw(xmm2, 0x10)).unwrap();
    assert_eq!(c.fpu.xmm[2], 0xffff_0000);
    c.fpu.x87.set_mm(2, u64::MAX);
    run(&mut c, |a| a.pslld(mm2, 0x22)).unwrap();
    assert_eq!(c.fpu.x87.mm(2), 0);
}

#[test]
fn sse_forms_with_an_mmx_operand_enter_mmx_mode() {
    let mut c = flat();
    c.fpu.x87.top = 3;
    c.fpu.x87.valid = 0xbb;
    c.fpu.xmm[10] = (2.5f64.to_bits() as u128) | (7.0f64.to_bits() as u128) << 64;
    run(&mut c, |a| a.cvtpd2pi(mm3, xmm10)).unwrap();
    assert_eq!((c.fpu.x87.top, c.fpu.x87.valid, c.fpu.x87.mm(3)), (0, 0xff, 7 << 32 | 2));
}

// ---- Held-back cases: published emulator bug reports about SSE and x87
// corners (issue 13). Each expected value was measured on this host's CPU
// with a small C program (inline assembly, the result, MXCSR and the x87
// status word read back), and each test names the report it comes from.

fn put80(c: &mut Flat, at: u64, v: F80) {
    c.write(Seg::Ds, at, 8, v.sig).unwrap();
    c.write(Seg::Ds, at + 8, 2, u64::from(v.se)).unwrap();
}

fn f80(se: u16, sig: u64) -> F80 {
    F80 { se, sig }
}

/// One instruction, to assemble where the test runs it.
type Insn = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// CVTTSD2SI/CVTTSS2SI/CVTSS2SI out of range: the integer indefinite with
/// IE (masked), and a 32-bit destination clears RAX's upper half. Reports:
/// Boxedwine PR #1 and SIMDe PR #693 (the overflow must give 0x80000000,
/// not a truncation), Ghidra issue #8004 (the upper 32 bits are cleared).
#[test]
fn float_to_integer_overflow_is_the_integer_indefinite() {
    let cases: [(u128, Insn, u64); 3] = [
        // 2^31 as a double; RAX held 0x1111_1111_1111_1111.
        (0x41e0_0000_0000_0000, |a| a.cvttsd2si(eax, xmm0), 0x8000_0000),
        // -2147483904.0f, just below i32::MIN.
        (0xcf00_0001, |a| a.cvttss2si(eax, xmm0), 0x8000_0000),
        // 1e19f, above i64::MAX.
        (0x5f0a_c723, |a| a.cvtss2si(rax, xmm0), 0x8000_0000_0000_0000),
    ];
    for (src, insn, want) in cases {
        let mut c = flat();
        c.gpr[0] = 0x1111_1111_1111_1111;
        c.fpu.xmm[0] = src;
        run(&mut c, insn).unwrap();
        assert_eq!((c.gpr[0], c.fpu.mxcsr.0), (want, 0x1f81), "{src:#x}");
    }
}

/// MAXSS/MINSS return the second operand when either is a NaN (a QNaN
/// too raises IE: they are signalling comparisons) and when both are
/// zeros of either sign; an SNaN second operand comes back unquieted.
/// Report: box64 PR #3486 (`_mm_max_ss(1.0f, NAN)` must give the NaN).
#[test]
fn maxss_minss_return_the_second_operand_on_nan_and_zeros() {
    let (max, min): (Insn, Insn) = (|a| a.maxss(xmm0, xmm1), |a| a.minss(xmm0, xmm1));
    let silicon: [(Insn, u32, u32, u32, u32); 7] = [
        (max, 0x3f80_0000, 0x7fc0_0001, 0x7fc0_0001, 0x1f81),
        (max, 0x7fc0_0001, 0x3f80_0000, 0x3f80_0000, 0x1f81),
        (min, 0x0000_0000, 0x8000_0000, 0x8000_0000, 0x1f80),
        (min, 0x8000_0000, 0x0000_0000, 0x0000_0000, 0x1f80),
        (max, 0x8000_0000, 0x0000_0000, 0x0000_0000, 0x1f80),
        (min, 0x7f80_0001, 0x3f80_0000, 0x3f80_0000, 0x1f81),
        (max, 0x3f80_0000, 0x7f80_0001, 0x7f80_0001, 0x1f81),
    ];
    for (insn, a, b, want, mxcsr) in silicon {
        let mut c = flat();
        c.fpu.xmm[0] = u128::from(a) | 0xdead_beef << 64;
        c.fpu.xmm[1] = u128::from(b);
        run(&mut c, insn).unwrap();
        assert_eq!(c.fpu.xmm[0], u128::from(want) | 0xdead_beef << 64, "{a:#x}, {b:#x}");
        assert_eq!(c.fpu.mxcsr.0, mxcsr, "{a:#x}, {b:#x}");
    }
}

/// PSHUFB: an index byte with bit 7 set gives 0; otherwise bits 3:0 pick
/// the byte (XMM) or bits 2:0 (MMX). Report: remill issue #441 (one
/// template for both widths).
#[test]
fn pshufb_zeroes_on_the_high_bit_and_masks_the_index_by_width() {
    let mut c = flat();
    c.fpu.xmm[1] = 0x1f1e_1d1c_1b1a_1918_1716_1514_1312_1110;
    c.fpu.xmm[2] = 0x3e00_0000_0000_0000_8f42_01ff_7f1f_0f80;
    run(&mut c, |a| a.pshufb(xmm1, xmm2)).unwrap();
    assert_eq!(c.fpu.xmm[1], 0x1e10_1010_1010_1010_0012_1100_1f1f_1f00);
    c.gpr[3] = DATA;
    c.write(Seg::Ds, DATA, 8, 0x2726_2524_2322_2120).unwrap();
    c.write(Seg::Ds, DATA + 8, 8, 0x000f_807f_091f_0887).unwrap();
    run(&mut c, |a| a.movq(mm0, qword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.pshufb(mm0, qword_ptr(rbx + 8))).unwrap();
    run(&mut c, |a| a.movq(qword_ptr(rbx + 16), mm0)).unwrap();
    assert_eq!(c.read(Seg::Ds, DATA + 16, 8).unwrap(), 0x2027_0027_2127_2000);
}

/// FXTRACT of -0.0: ST(0) = -0, ST(1) = -inf, ZE (SDM Vol. 2 FXTRACT);
/// of the smallest denormal: exponent -16445, significand 1.0, DE.
/// Report: FEX-Emu PR #4093 (FXTRACT of +-0.0).
#[test]
fn fxtract_of_zero_and_denormal() {
    let mut c = flat();
    c.gpr[3] = DATA;
    c.write(Seg::Ds, DATA, 8, 0x8000_0000_0000_0000).unwrap();
    run(&mut c, |a| a.fld(qword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.fxtract()).unwrap();
    let x = &c.fpu.x87;
    assert_eq!((x.st(0), x.st(1), x.status_word()), (f80(0x8000, 0), f80(0xffff, 1 << 63), 0x3004));
    let mut c = flat();
    c.gpr[3] = DATA;
    put80(&mut c, DATA, f80(0, 1));
    run(&mut c, |a| a.fld(tword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.fxtract()).unwrap();
    let x = &c.fpu.x87;
    let want = (f80(0x3fff, 1 << 63), f80(0xc00d, 0x807a_0000_0000_0000), 0x3002);
    assert_eq!((x.st(0), x.st(1), x.status_word()), want);
}

/// FPREM truncates the quotient, FPREM1 rounds it to nearest; both put
/// its low bits in C0 = Q2, C3 = Q1, C1 = Q0. 11 rem 7: FPREM 4 (q 1),
/// FPREM1 -3 (q 2); 23 rem 3: FPREM 2 (q 7: all three set). Reports:
/// retdec issue #887 (FPREM1 11 mod 7 is -3), FEX-Emu issue #5908
/// (C0/C1/C3 never computed).
#[test]
fn fprem_and_fprem1_quotient_bits() {
    let silicon: [(u64, u64, Insn, F80, u16); 3] = [
        (0x4026_0000_0000_0000, 0x401c_0000_0000_0000, |a| a.fprem(), f80(0x4001, 1 << 63), 0x3200),
        (0x4026_0000_0000_0000, 0x401c_0000_0000_0000, |a| a.fprem1(), f80(0xc000, 0xc000_0000_0000_0000), 0x7000),
        (0x4037_0000_0000_0000, 0x4008_0000_0000_0000, |a| a.fprem(), f80(0x4000, 1 << 63), 0x7300),
    ];
    for (x, y, insn, want, sw) in silicon {
        let mut c = flat();
        c.gpr[3] = DATA;
        c.write(Seg::Ds, DATA, 8, y).unwrap();
        c.write(Seg::Ds, DATA + 8, 8, x).unwrap();
        run(&mut c, |a| a.fld(qword_ptr(rbx))).unwrap();
        run(&mut c, |a| a.fld(qword_ptr(rbx + 8))).unwrap();
        run(&mut c, insn).unwrap();
        assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), (want, sw), "{x:#x} rem {y:#x}");
    }
}

/// FISTP m16 of 32769.0 (out of range, IE masked) stores the integer
/// indefinite 0x8000 and sets IE. Report: FEX-Emu issue #5868.
#[test]
fn fistp_overflow_stores_the_integer_indefinite() {
    let mut c = flat();
    c.gpr[3] = DATA;
    c.write(Seg::Ds, DATA, 8, 0x40e0_0020_0000_0000).unwrap();
    c.write(Seg::Ds, DATA + 8, 2, 0x1234).unwrap();
    run(&mut c, |a| a.fld(qword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.fistp(word_ptr(rbx + 8))).unwrap();
    assert_eq!((c.read(Seg::Ds, DATA + 8, 2).unwrap(), c.fpu.x87.status_word()), (0x8000, 0x0001));
}

/// FLD m64 is exact whatever the precision control says (PC rounds
/// arithmetic results only): 1234.56789 loads whole with PC = single.
/// Report: Zephyr sdk-ng issue #461, QEMU issue #984 (FLD rounded to the
/// precision control).
#[test]
fn fld_m64_ignores_the_precision_control() {
    let mut c = flat();
    c.gpr[3] = DATA;
    c.write(Seg::Ds, DATA, 2, 0x007f).unwrap();
    c.write(Seg::Ds, DATA + 8, 8, 0x4093_4a45_84f4_c6e7).unwrap();
    run(&mut c, |a| a.fldcw(word_ptr(rbx))).unwrap();
    run(&mut c, |a| a.fld(qword_ptr(rbx + 8))).unwrap();
    let want = (f80(0x4009, 0x9a52_2c27_a637_3800), 0x3800);
    assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), want);
}

/// FRNDINT of the pseudo-denormal 0000_8000000000000000 (exponent 0,
/// integer bit set): +0 with DE and PE. Report: Bochs issue #802.
#[test]
fn frndint_of_a_pseudo_denormal() {
    let mut c = flat();
    c.gpr[3] = DATA;
    put80(&mut c, DATA, f80(0, 1 << 63));
    run(&mut c, |a| a.fld(tword_ptr(rbx))).unwrap();
    run(&mut c, |a| a.frndint()).unwrap();
    assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), (f80(0, 0), 0x3822));
}

/// x87 stack faults (masked): reading an empty ST(1) is an underflow, IE
/// and SF with C1 = 0 and the QNaN indefinite as the result; a ninth push
/// is an overflow, IE and SF with C1 = 1, the indefinite pushed. Reports:
/// felix86 PR #650 (SF/IE/C1 on stack overflow and underflow), FEX-Emu
/// issue #5920 (an empty register read gives the indefinite), box64
/// issue #75 (C1 on overflow).
#[test]
fn x87_stack_underflow_and_overflow() {
    let indefinite = f80(0xffff, 0xc000_0000_0000_0000);
    let mut c = flat();
    run(&mut c, |a| a.fld1()).unwrap();
    run(&mut c, |a| a.fadd_2(st0, st1)).unwrap();
    assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), (indefinite, 0x3841));
    let mut c = flat();
    for _ in 0..8 {
        run(&mut c, |a| a.fld1()).unwrap();
    }
    run(&mut c, |a| a.fldpi()).unwrap();
    assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), (indefinite, 0x3a41));
}

/// FSCALE: ST(0) * 2^trunc(ST(1)), with its extremes: overflow to +inf
/// (OE, PE, C1 for the rounding up), underflow to +0 (UE, PE), a zero
/// keeps its sign, -inf scales a finite value to a zero of its sign, and
/// 0 * 2^+inf is invalid (the indefinite). Reports: FEX-Emu PR #4085
/// (FSCALE of zero must stay zero, with its sign), FEX-Emu PR #5447
/// (FSCALE(0, +inf) raises IE and gives a QNaN), FEX-Emu issue #1584.
#[test]
fn fscale_extremes() {
    let (inf, ninf) = (0x7ff0_0000_0000_0000u64, 0xfff0_0000_0000_0000u64);
    let silicon: [(u64, u64, F80, u16); 7] = [
        (0x3ff0_0000_0000_0000, 0x40f8_6a00_0000_0000, f80(0x7fff, 1 << 63), 0x3228),
        (0x3ff0_0000_0000_0000, 0xc0f8_6a00_0000_0000, f80(0, 0), 0x3030),
        (0x8000_0000_0000_0000, 0x4014_0000_0000_0000, f80(0x8000, 0), 0x3000),
        (0, ninf, f80(0, 0), 0x3000),
        (0xc000_0000_0000_0000, ninf, f80(0x8000, 0), 0x3000),
        (0, inf, f80(0xffff, 0xc000_0000_0000_0000), 0x3001),
        (0x4008_0000_0000_0000, 0x4007_3333_3333_3333, f80(0x4002, 0xc000_0000_0000_0000), 0x3000),
    ];
    for (x, s, want, sw) in silicon {
        let mut c = flat();
        c.gpr[3] = DATA;
        c.write(Seg::Ds, DATA, 8, s).unwrap();
        c.write(Seg::Ds, DATA + 8, 8, x).unwrap();
        run(&mut c, |a| a.fld(qword_ptr(rbx))).unwrap();
        run(&mut c, |a| a.fld(qword_ptr(rbx + 8))).unwrap();
        run(&mut c, |a| a.fscale()).unwrap();
        assert_eq!((c.fpu.x87.st(0), c.fpu.x87.status_word()), (want, sw), "{x:#x} scaled by {s:#x}");
    }
}

/// PCMPISTRI/PCMPESTRI (equal ordered, unsigned bytes, imm8 0x0c): the
/// index goes to ECX zero-extended into RCX; explicit lengths saturate at
/// 16 in magnitude. The needle "ReflectiveLoader" is found at 1 in
/// "_ReflectiveLoader@4" (CF). Reports: Unicorn issue #1874 / Qiling
/// issue #1374 (that search gave 16), FEX-Emu PR #2750 (RCX's upper half
/// kept).
#[test]
fn pcmpxstri_index_and_lengths() {
    let mut c = flat();
    c.gpr[1] = u64::MAX;
    c.gpr[3] = DATA;
    c.fpu.xmm[0] = 0x7265_6461_6f4c_6576_6974_6365_6c66_6552;
    for (i, b) in b"_ReflectiveLoader@4\0".iter().enumerate() {
        c.write(Seg::Ds, DATA + i as u64, 1, u64::from(*b)).unwrap();
    }
    run(&mut c, |a| a.pcmpistri(xmm0, xmmword_ptr(rbx), 0x0c)).unwrap();
    assert_eq!((c.gpr[1], c.flags.bits() & 0x8d5), (1, 0x001));
    // "abc" in "xyabcz": EAX = 3 and EDX = 100 (saturates), then EAX = -3
    // and EDX = 6 (ZF: the haystack is shorter than 16).
    c.fpu.xmm[0] = 0x63_6261;
    c.fpu.xmm[1] = 0x7a63_6261_7978;
    for (len_a, len_b, flags) in [(3u64, 100u64, 0x081), ((-3i64) as u64, 6, 0x0c1)] {
        c.gpr[0] = len_a;
        c.gpr[2] = len_b;
        c.gpr[1] = u64::MAX;
        run(&mut c, |a| a.pcmpestri(xmm0, xmm1, 0x0c)).unwrap();
        assert_eq!((c.gpr[1], c.flags.bits() & 0x8d5), (2, flags), "EAX {len_a:#x} EDX {len_b:#x}");
    }
}

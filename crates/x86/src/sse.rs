//! MMX and SSE through SSE4.2 (SDM Vol. 1 ch. 9-12; Vol. 2 per
//! instruction; the exception conditions of Vol. 2 ch. 2 "Exception
//! Conditions for Legacy SIMD/MMX Instructions"): the executor fetches the
//! operands (XMM and MMX registers, general registers, memory with the
//! 16-byte alignment rule, immediates), runs the pure semantics of
//! [`crate::fp`] and writes the result. MXCSR's flags are set even when an
//! unmasked exception stops the instruction (#XM, or #UD with
//! CR4.OSXMMEXCPT clear); nothing else changes then.
//!
//! Before anything else: CR0.EM raises #UD, an XMM operand or MXCSR
//! without CR4.OSFXSR raises #UD, CR0.TS raises #NM, and an instruction
//! with an MMX operand raises #MF when an x87 exception is pending
//! ([`crate::x87::pending`]). Every MMX instruction but EMMS moves the x87
//! unit to MMX mode (TOP = 0, every tag valid). Writes to x87/MMX state set
//! XINUSE bit 0, writes to an XMM register bit 1.

use crate::cpu::{Cpu, Exception};
use crate::exec::{get, next, offset, set_reg};
use crate::flags::Flags;
use crate::fp::cost::Class;
use crate::fp::mxcsr::{Mxcsr, SimdFault};
use crate::fp::round::{DOUBLE, SINGLE};
use crate::fp::sse_float::{self as f, Arith, Shape};
use crate::fp::sse_int as int;
use crate::fp::sse_str;
use crate::op::{Mem, Op, Opnd};
use crate::reg::{RAX, RCX, RDI, RDX};
use crate::wide;
use exitlab_arch::bits::{cr0, cr4};
use exitlab_arch::vector;

/// An MMX or SSE-SSE4.2 operation. Where the MMX and the XMM form of an
/// instruction do the same on 8 or 16 bytes, one operation covers both;
/// where several mnemonics do the same (ANDPS, ANDPD, PAND), the first
/// names it. `Ps`/`Pd`/`Ss`/`Sd` suffixes are the float shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SseOp {
    // Moves.
    /// MOVUPS, MOVUPD, MOVDQU, LDDQU: the whole operand, any alignment.
    Mov,
    /// MOVAPS, MOVAPD, MOVDQA, MOVNTPS, MOVNTPD, MOVNTDQ, MOVNTDQA: the
    /// whole operand, 16-byte aligned.
    MovA,
    /// MOVD and the 32-bit forms of MOVSS: the low 4 bytes, zero-extended.
    Movd,
    /// MOVQ (every form), MOVQ2DQ, MOVDQ2Q, MOVNTQ, the 64-bit forms of
    /// MOVSD, MOVLPS/MOVLPD stores: the low 8 bytes, zero-extended.
    Movq,
    /// MOVSS xmm, xmm: the low single of the source, the rest kept.
    MergeLow32,
    /// MOVSD xmm, xmm and MOVLPS/MOVLPD xmm, m64.
    MergeLow64,
    /// MOVHPS/MOVHPD xmm, m64 and MOVLHPS: the source's low quadword into
    /// the high one.
    MergeHigh,
    /// MOVHPS/MOVHPD m64, xmm: the high quadword.
    StoreHigh,
    Movhlps,
    Movsldup,
    Movshdup,
    Movddup,
    /// MASKMOVQ, MASKMOVDQU: the bytes of `b` whose byte in `c` has its top
    /// bit set, stored at DS:rDI.
    Maskmov,
    Movmskps,
    Movmskpd,
    Pmovmskb,
    // Float arithmetic.
    AddPs,
    AddPd,
    AddSs,
    AddSd,
    SubPs,
    SubPd,
    SubSs,
    SubSd,
    MulPs,
    MulPd,
    MulSs,
    MulSd,
    DivPs,
    DivPd,
    DivSs,
    DivSd,
    MinPs,
    MinPd,
    MinSs,
    MinSd,
    MaxPs,
    MaxPd,
    MaxSs,
    MaxSd,
    SqrtPs,
    SqrtPd,
    SqrtSs,
    SqrtSd,
    CmpPs,
    CmpPd,
    CmpSs,
    CmpSd,
    Comiss,
    Comisd,
    Ucomiss,
    Ucomisd,
    Rcpps,
    Rcpss,
    Rsqrtps,
    Rsqrtss,
    RoundPs,
    RoundPd,
    RoundSs,
    RoundSd,
    Dpps,
    Dppd,
    Addsubps,
    Addsubpd,
    Haddps,
    Haddpd,
    Hsubps,
    Hsubpd,
    // Float conversions.
    Cvtss2sd,
    Cvtsd2ss,
    Cvtps2pd,
    Cvtpd2ps,
    Cvtdq2ps,
    Cvtdq2pd,
    Cvtps2dq,
    Cvttps2dq,
    Cvtpd2dq,
    Cvttpd2dq,
    Cvtpi2ps,
    Cvtpi2pd,
    Cvtps2pi,
    Cvttps2pi,
    Cvtpd2pi,
    Cvttpd2pi,
    Cvtsi2ss,
    Cvtsi2sd,
    Cvtss2si,
    Cvttss2si,
    Cvtsd2si,
    Cvttsd2si,
    // Bitwise (float and integer alike).
    And,
    Andn,
    Or,
    Xor,
    // Shuffles, blends, inserts, extracts.
    Shufps,
    Shufpd,
    Blendps,
    Blendpd,
    Blendvps,
    Blendvpd,
    Pblendw,
    Pblendvb,
    Insertps,
    Extractps,
    Pextrb,
    Pextrw,
    Pextrd,
    Pextrq,
    Pinsrb,
    Pinsrw,
    Pinsrd,
    Pinsrq,
    Pshufd,
    Pshufhw,
    Pshuflw,
    Pshufw,
    Pshufb,
    Palignr,
    // Packed integer arithmetic.
    Paddb,
    Paddw,
    Paddd,
    Paddq,
    Psubb,
    Psubw,
    Psubd,
    Psubq,
    Paddsb,
    Paddsw,
    Paddusb,
    Paddusw,
    Psubsb,
    Psubsw,
    Psubusb,
    Psubusw,
    Pmullw,
    Pmulld,
    Pmulhw,
    Pmulhuw,
    Pmulhrsw,
    Pmuludq,
    Pmuldq,
    Pmaddwd,
    Pmaddubsw,
    Pavgb,
    Pavgw,
    Psadbw,
    Mpsadbw,
    Pminub,
    Pminuw,
    Pminud,
    Pminsb,
    Pminsw,
    Pminsd,
    Pmaxub,
    Pmaxuw,
    Pmaxud,
    Pmaxsb,
    Pmaxsw,
    Pmaxsd,
    Phminposuw,
    Pcmpeqb,
    Pcmpeqw,
    Pcmpeqd,
    Pcmpeqq,
    Pcmpgtb,
    Pcmpgtw,
    Pcmpgtd,
    Pcmpgtq,
    Phaddw,
    Phaddd,
    Phaddsw,
    Phsubw,
    Phsubd,
    Phsubsw,
    Psignb,
    Psignw,
    Psignd,
    Pabsb,
    Pabsw,
    Pabsd,
    Ptest,
    // Shifts.
    Psllw,
    Pslld,
    Psllq,
    Psrlw,
    Psrld,
    Psrlq,
    Psraw,
    Psrad,
    Pslldq,
    Psrldq,
    // Packs, unpacks, extensions.
    Packsswb,
    Packssdw,
    Packuswb,
    Packusdw,
    /// PUNPCKLBW.
    Punpcklbw,
    Punpcklwd,
    /// PUNPCKLDQ, UNPCKLPS.
    Punpckldq,
    /// PUNPCKLQDQ, UNPCKLPD.
    Punpcklqdq,
    Punpckhbw,
    Punpckhwd,
    /// PUNPCKHDQ, UNPCKHPS.
    Punpckhdq,
    /// PUNPCKHQDQ, UNPCKHPD.
    Punpckhqdq,
    Pmovsxbw,
    Pmovsxbd,
    Pmovsxbq,
    Pmovsxwd,
    Pmovsxwq,
    Pmovsxdq,
    Pmovzxbw,
    Pmovzxbd,
    Pmovzxbq,
    Pmovzxwd,
    Pmovzxwq,
    Pmovzxdq,
    // SSE4.2 strings.
    Pcmpestri,
    Pcmpestri64,
    Pcmpestrm,
    Pcmpestrm64,
    Pcmpistri,
    Pcmpistrm,
    // State.
    Emms,
    Ldmxcsr,
    Stmxcsr,
}

/// What an operation produces.
enum Out {
    /// The destination operand's new value (an XMM or MMX register, a
    /// general register or memory, of the destination's size).
    Dest(u128),
    /// RFLAGS status bits (COMISS, PTEST).
    Flags(u64),
    /// PCMPxSTRI: ECX and the status bits.
    Index(u32, u64),
    /// PCMPxSTRM: XMM0 and the status bits.
    Mask(u128, u64),
}

/// An operation's inputs.
struct In {
    /// The destination's old value (zero for a memory destination).
    a: u128,
    /// The source: register, memory or immediate, zero-extended.
    b: u128,
    imm: u8,
    /// The operation works on MMX registers (8 bytes).
    mmx: bool,
    /// The source is memory.
    bmem: bool,
    /// Source and destination sizes in bytes.
    bsize: u8,
    asize: u8,
    /// XMM0 (the BLENDV mask).
    x0: u128,
    /// RAX and RDX (the PCMPESTRx lengths).
    rax: u64,
    rdx: u64,
}

impl SseOp {
    /// Whether a 16-byte memory operand must be 16-byte aligned (#GP(0)
    /// otherwise): every legacy SSE instruction but the unaligned moves,
    /// the SSE4.2 string compares and MASKMOVDQU (SDM Vol. 1 11.4.1.1,
    /// 12.10.3).
    pub fn aligned(self) -> bool {
        use SseOp::*;
        !matches!(self, Mov | Maskmov | Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm)
    }

    /// The latency class of the cost model ([`crate::fp::cost`]).
    pub fn cost_class(self) -> Class {
        use SseOp::*;
        match self {
            AddPs | AddPd | AddSs | AddSd | SubPs | SubPd | SubSs | SubSd | MulPs | MulPd | MulSs | MulSd | MinPs
            | MinPd | MinSs | MinSd | MaxPs | MaxPd | MaxSs | MaxSd | CmpPs | CmpPd | CmpSs | CmpSd | Comiss
            | Comisd | Ucomiss | Ucomisd | Addsubps | Addsubpd => Class::SimdFloatArith,
            DivPs | DivSs => Class::SimdDivSingle,
            DivPd | DivSd => Class::SimdDivDouble,
            SqrtPs | SqrtSs => Class::SimdSqrtSingle,
            SqrtPd | SqrtSd => Class::SimdSqrtDouble,
            Haddps | Haddpd | Hsubps | Hsubpd => Class::SimdHorizontal,
            Dpps | Dppd => Class::SimdDotProduct,
            RoundPs | RoundPd | RoundSs | RoundSd | Cvtss2sd | Cvtsd2ss | Cvtps2pd | Cvtpd2ps | Cvtdq2ps | Cvtdq2pd
            | Cvtps2dq | Cvttps2dq | Cvtpd2dq | Cvttpd2dq | Cvtpi2ps | Cvtpi2pd | Cvtps2pi | Cvttps2pi | Cvtpd2pi
            | Cvttpd2pi | Cvtsi2ss | Cvtsi2sd | Cvtss2si | Cvttss2si | Cvtsd2si | Cvttsd2si => Class::SimdConvert,
            Rcpps | Rcpss | Rsqrtps | Rsqrtss => Class::SimdApprox,
            Pmullw | Pmulhw | Pmulhuw | Pmulhrsw | Pmuludq | Pmuldq | Pmaddwd | Pmaddubsw | Psadbw | Mpsadbw
            | Phminposuw => Class::SimdIntMul,
            Pmulld => Class::SimdMulLd,
            Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm => Class::SimdString,
            Emms | Ldmxcsr | Stmxcsr => Class::X87Control,
            _ => Class::SimdIntSimple,
        }
    }

    /// The plain moves between XMM or MMX registers and memory or general
    /// registers: what the VMM's MMIO emulator takes (MOVAPS, MOVUPS,
    /// MOVDQA, MOVDQU, MOVD, MOVQ and their aliases).
    pub fn is_plain_move(self) -> bool {
        matches!(self, SseOp::Mov | SseOp::MovA | SseOp::Movd | SseOp::Movq)
    }
}

/// CR0.EM, CR4.OSFXSR and CR0.TS, then a pending x87 exception for an
/// instruction with MMX operands (SDM Vol. 3A 2.5, Vol. 1 9.5.1, 11.6.2).
fn enabled<C: Cpu>(c: &mut C, mmx: bool, sse: bool) -> Result<(), C::Stop> {
    let cr0 = c.cr(0)?;
    if cr0 & cr0::EM != 0 || (sse && c.cr(4)? & cr4::OSFXSR == 0) {
        return Err(c.exception(Exception::ud()));
    }
    if cr0 & cr0::TS != 0 {
        return Err(c.exception(Exception::fault(vector::NM)));
    }
    if mmx {
        crate::x87::pending(c)?;
    }
    Ok(())
}

/// An unmasked SIMD floating-point exception: #XM, or #UD with
/// CR4.OSXMMEXCPT clear (SDM Vol. 1 11.5.1).
fn simd_fault<C: Cpu>(c: &mut C) -> C::Stop {
    let os = match c.cr(4) {
        Ok(v) => v & cr4::OSXMMEXCPT != 0,
        Err(stop) => return stop,
    };
    c.exception(if os { Exception::fault(vector::XM) } else { Exception::ud() })
}

/// #GP(0) for a misaligned 16-byte operand of an aligned form.
fn check_alignment<C: Cpu>(c: &mut C, v: SseOp, size: u8, at: u64) -> Result<(), C::Stop> {
    if size == 16 && v.aligned() && at & 15 != 0 {
        return Err(c.exception(Exception::gp(0)));
    }
    Ok(())
}

/// A register operand's value: XMM, MMX or general register (zero for a
/// memory destination, which is never read).
fn register<C: Cpu>(c: &mut C, o: &Opnd, size: u8) -> Result<u128, C::Stop> {
    Ok(match *o {
        Opnd::Xmm(n) => c.fpu()?.xmm[usize::from(n & 15)],
        Opnd::Mm(n) => u128::from(c.fpu()?.x87.mm(usize::from(n))),
        Opnd::Reg(_) | Opnd::RegHi(_) => u128::from(get(c, o, size)?),
        // A shift count: the whole imm8 (the operand has no size).
        Opnd::Imm(v) => u128::from(v as u8),
        _ => 0,
    })
}

/// The source operand, from memory with the alignment rule.
fn source<C: Cpu>(c: &mut C, op: &Op, v: SseOp) -> Result<u128, C::Stop> {
    match op.b {
        Opnd::Mem(m) => {
            let at = offset(c, &m);
            check_alignment(c, v, op.size2, at)?;
            wide::load(c, m.seg, at, op.size2)
        }
        o => register(c, &o, op.size2),
    }
}

/// Executes an MMX or SSE instruction.
#[inline(never)]
pub fn sse<C: Cpu>(c: &mut C, op: &Op, v: SseOp) -> Result<(), C::Stop> {
    let any = |f: fn(&Opnd) -> bool| [op.a, op.b, op.c].iter().any(f);
    let mmx = v == SseOp::Emms || any(|o| matches!(o, Opnd::Mm(_)));
    let xmm = matches!(v, SseOp::Ldmxcsr | SseOp::Stmxcsr) || any(|o| matches!(o, Opnd::Xmm(_)));
    enabled(c, mmx, xmm)?;
    match v {
        SseOp::Emms => {
            let s = c.fpu()?;
            s.x87.emms();
            s.xinuse |= 1;
            next(c, op)
        }
        SseOp::Ldmxcsr => {
            let m = crate::exec::memory(c, &op.a)?;
            let at = offset(c, &m);
            let value = c.read(m.seg, at, 4)? as u32;
            let mx = Mxcsr::load(value).map_err(|_| c.exception(Exception::gp(0)))?;
            c.fpu()?.mxcsr = mx;
            next(c, op)
        }
        SseOp::Stmxcsr => {
            let m = crate::exec::memory(c, &op.a)?;
            let at = offset(c, &m);
            let mx = c.fpu()?.mxcsr.0;
            c.write(m.seg, at, 4, u64::from(mx))?;
            next(c, op)
        }
        SseOp::Maskmov => maskmov(c, op, mmx),
        _ => value(c, op, v, mmx),
    }
}

/// The common shape: read the operands, compute, write the result.
fn value<C: Cpu>(c: &mut C, op: &Op, v: SseOp, mmx: bool) -> Result<(), C::Stop> {
    let b = source(c, op, v)?;
    let a = register(c, &op.a, op.size)?;
    let (rax, rdx) = (c.gpr(RAX), c.gpr(RDX));
    let imm = match op.c {
        Opnd::Imm(i) => i as u8,
        _ => 0,
    };
    let s = c.fpu()?;
    let mut mx = s.mxcsr;
    let input = In {
        a,
        b,
        imm,
        mmx: matches!(op.a, Opnd::Mm(_)) || (matches!(op.b, Opnd::Mm(_)) && !matches!(op.a, Opnd::Xmm(_))),
        bmem: matches!(op.b, Opnd::Mem(_)),
        bsize: op.size2,
        asize: op.size,
        x0: s.xmm[0],
        rax,
        rdx,
    };
    let out = match compute(v, &input, &mut mx) {
        Ok(out) => out,
        Err(SimdFault) => {
            // The MMX transition happens before the fault (silicon:
            // crates/vmm/tests/differential/fp.rs).
            let s = c.fpu()?;
            s.mxcsr = mx;
            if mmx {
                s.x87.mmx_enter();
                s.xinuse |= 1;
            }
            return Err(simd_fault(c));
        }
    };
    // Memory first: the only write that can fault.
    if let (Out::Dest(r), Opnd::Mem(m)) = (&out, op.a) {
        let at = offset(c, &m);
        check_alignment(c, v, op.size, at)?;
        wide::store(c, m.seg, at, op.size, *r)?;
    }
    match out {
        Out::Dest(r) => match op.a {
            Opnd::Xmm(n) => set_xmm(c, n, r)?,
            Opnd::Mm(n) => c.fpu()?.x87.set_mm(usize::from(n), r as u64),
            Opnd::Reg(n) => set_reg(c, n, op.size, r as u64),
            _ => {}
        },
        Out::Flags(bits) => c.set_flags(Flags::known(bits)),
        Out::Index(i, bits) => {
            set_reg(c, RCX, 4, u64::from(i));
            c.set_flags(Flags::known(bits));
        }
        Out::Mask(m, bits) => {
            set_xmm(c, 0, m)?;
            c.set_flags(Flags::known(bits));
        }
    }
    let s = c.fpu()?;
    s.mxcsr = mx;
    if mmx {
        s.x87.mmx_enter();
        s.xinuse |= 1;
    }
    next(c, op)
}

fn set_xmm<C: Cpu>(c: &mut C, n: u8, v: u128) -> Result<(), C::Stop> {
    let s = c.fpu()?;
    s.xmm[usize::from(n & 15)] = v;
    s.xinuse |= 2;
    Ok(())
}

/// MASKMOVQ, MASKMOVDQU: byte stores at DS:rDI (or the prefix's segment)
/// selected by the mask's top bits. The whole operand is checked for
/// writing first when any byte is selected, so a fault stores nothing.
fn maskmov<C: Cpu>(c: &mut C, op: &Op, mmx: bool) -> Result<(), C::Stop> {
    let width = if mmx { 8 } else { 16 };
    let data = register(c, &op.b, width)?;
    let mask = register(c, &op.c, width)?;
    let Opnd::Mem(m) = op.a else { return Err(c.unsupported()) };
    let at = offset(c, &Mem { base: RDI, ..m });
    let select = if mmx { int::maskmov::<u64>(mask as u64) } else { int::maskmov::<u128>(mask) };
    if select != 0 {
        c.check_write(m.seg, at, usize::from(width))?;
        for i in 0..width {
            if select & (1 << i) != 0 {
                c.write(m.seg, at.wrapping_add(u64::from(i)), 1, (data >> (8 * i)) as u64)?;
            }
        }
    }
    if mmx {
        let s = c.fpu()?;
        s.x87.mmx_enter();
        s.xinuse |= 1;
    }
    next(c, op)
}

/// `$e` on MMX (`V` = u64) or XMM (`V` = u128) values of `$a` and `$b`.
macro_rules! vec2 {
    ($x:expr, |$a:ident, $b:ident| $e:expr) => {
        if $x.mmx {
            #[allow(dead_code)]
            type V = u64;
            let ($a, $b) = ($x.a as u64, $x.b as u64);
            u128::from($e)
        } else {
            #[allow(dead_code)]
            type V = u128;
            let ($a, $b) = ($x.a, $x.b);
            u128::from($e)
        }
    };
}

/// The operation on its inputs: the pure semantics of [`crate::fp`].
fn compute(v: SseOp, x: &In, mx: &mut Mxcsr) -> Result<Out, SimdFault> {
    use Shape::{Pd, Ps, Sd, Ss};
    use SseOp::*;
    let (a, b, imm, x0) = (x.a, x.b, x.imm, x.x0);
    let int_src = || if x.bsize == 8 { b as u64 as i64 } else { b as u32 as i32 as i64 };
    let bits = 8 * u32::from(x.asize);
    let d = |r: u128| Ok(Out::Dest(r));
    match v {
        Mov | MovA => d(b),
        Movd => d(b as u32 as u128),
        Movq => d(b as u64 as u128),
        MergeLow32 => d((a & !0xffff_ffff) | (b & 0xffff_ffff)),
        MergeLow64 => d((a & !(u64::MAX as u128)) | (b & u64::MAX as u128)),
        MergeHigh => d((a & u64::MAX as u128) | (b << 64)),
        StoreHigh => d(b >> 64),
        Movhlps => d(int::movhlps(a, b)),
        Movsldup => d(int::movsdup(b, false)),
        Movshdup => d(int::movsdup(b, true)),
        Movddup => d(int::movddup(b)),
        Movmskps => d(f::movmsk(Ps, b).into()),
        Movmskpd => d(f::movmsk(Pd, b).into()),
        Pmovmskb => d(vec2!(x, |_a, b| int::movmskb::<V>(b))),
        AddPs | AddPd | AddSs | AddSd | SubPs | SubPd | SubSs | SubSd | MulPs | MulPd | MulSs | MulSd | DivPs
        | DivPd | DivSs | DivSd => {
            let (shape, op) = arith_shape(v);
            d(f::arith_op(mx, shape, op, a, b)?)
        }
        MinPs => d(f::minmax_op(mx, Ps, false, a, b)?),
        MinPd => d(f::minmax_op(mx, Pd, false, a, b)?),
        MinSs => d(f::minmax_op(mx, Ss, false, a, b)?),
        MinSd => d(f::minmax_op(mx, Sd, false, a, b)?),
        MaxPs => d(f::minmax_op(mx, Ps, true, a, b)?),
        MaxPd => d(f::minmax_op(mx, Pd, true, a, b)?),
        MaxSs => d(f::minmax_op(mx, Ss, true, a, b)?),
        MaxSd => d(f::minmax_op(mx, Sd, true, a, b)?),
        SqrtPs => d(f::sqrt_op(mx, Ps, a, b)?),
        SqrtPd => d(f::sqrt_op(mx, Pd, a, b)?),
        SqrtSs => d(f::sqrt_op(mx, Ss, a, b)?),
        SqrtSd => d(f::sqrt_op(mx, Sd, a, b)?),
        CmpPs => d(f::cmp_op(mx, Ps, imm, a, b)?),
        CmpPd => d(f::cmp_op(mx, Pd, imm, a, b)?),
        CmpSs => d(f::cmp_op(mx, Ss, imm, a, b)?),
        CmpSd => d(f::cmp_op(mx, Sd, imm, a, b)?),
        Comiss => Ok(Out::Flags(f::comi_op(mx, Ss, true, a, b)?)),
        Comisd => Ok(Out::Flags(f::comi_op(mx, Sd, true, a, b)?)),
        Ucomiss => Ok(Out::Flags(f::comi_op(mx, Ss, false, a, b)?)),
        Ucomisd => Ok(Out::Flags(f::comi_op(mx, Sd, false, a, b)?)),
        Rcpps => d(f::approx_op(Ps, false, a, b)),
        Rcpss => d(f::approx_op(Ss, false, a, b)),
        Rsqrtps => d(f::approx_op(Ps, true, a, b)),
        Rsqrtss => d(f::approx_op(Ss, true, a, b)),
        RoundPs => d(f::round_op(mx, Ps, imm, a, b)?),
        RoundPd => d(f::round_op(mx, Pd, imm, a, b)?),
        RoundSs => d(f::round_op(mx, Ss, imm, a, b)?),
        RoundSd => d(f::round_op(mx, Sd, imm, a, b)?),
        Dpps => d(f::dp(mx, false, imm, a, b)?),
        Dppd => d(f::dp(mx, true, imm, a, b)?),
        Addsubps => d(f::addsub(mx, false, a, b)?),
        Addsubpd => d(f::addsub(mx, true, a, b)?),
        Haddps => d(f::horizontal(mx, false, false, a, b)?),
        Haddpd => d(f::horizontal(mx, true, false, a, b)?),
        Hsubps => d(f::horizontal(mx, false, true, a, b)?),
        Hsubpd => d(f::horizontal(mx, true, true, a, b)?),
        Cvtss2sd => d(f::convert_scalar(mx, Ss, Sd, a, b)?),
        Cvtsd2ss => d(f::convert_scalar(mx, Sd, Ss, a, b)?),
        Cvtps2pd => d(f::convert_packed(mx, true, b)?),
        Cvtpd2ps => d(f::convert_packed(mx, false, b)?),
        Cvtdq2ps => d(f::from_int_packed(mx, Ps, b)?),
        Cvtdq2pd => d(f::from_int_packed(mx, Pd, b)?),
        Cvtps2dq => d(f::to_int_packed(mx, Ps, false, b)?),
        Cvttps2dq => d(f::to_int_packed(mx, Ps, true, b)?),
        Cvtpd2dq => d(f::to_int_packed(mx, Pd, false, b)?),
        Cvttpd2dq => d(f::to_int_packed(mx, Pd, true, b)?),
        Cvtpi2ps => d(f::from_int_lanes(mx, &SINGLE, 2, a, b)?),
        Cvtpi2pd => d(f::from_int_lanes(mx, &DOUBLE, 2, a, b)?),
        Cvtps2pi => d(f::to_int_lanes(mx, &SINGLE, 2, false, b)? as u64 as u128),
        Cvttps2pi => d(f::to_int_lanes(mx, &SINGLE, 2, true, b)? as u64 as u128),
        Cvtpd2pi => d(f::to_int_packed(mx, Pd, false, b)? as u64 as u128),
        Cvttpd2pi => d(f::to_int_packed(mx, Pd, true, b)? as u64 as u128),
        Cvtsi2ss => d(f::from_int_scalar(mx, Ss, a, int_src())?),
        Cvtsi2sd => d(f::from_int_scalar(mx, Sd, a, int_src())?),
        Cvtss2si => d(f::to_int_scalar(mx, Ss, bits, false, b)?.into()),
        Cvttss2si => d(f::to_int_scalar(mx, Ss, bits, true, b)?.into()),
        Cvtsd2si => d(f::to_int_scalar(mx, Sd, bits, false, b)?.into()),
        Cvttsd2si => d(f::to_int_scalar(mx, Sd, bits, true, b)?.into()),
        And => d(a & b),
        Andn => d(!a & b),
        Or => d(a | b),
        Xor => d(a ^ b),
        Ptest => Ok(Out::Flags(int::ptest(a, b))),
        Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm => Ok(strings(v, x)),
        Shufps => d(int::shufps(a, b, imm)),
        Shufpd => d(int::shufpd(a, b, imm)),
        Blendps => d(int::blend::<u128, u32>(a, b, imm)),
        Blendpd => d(int::blend::<u128, u64>(a, b, imm)),
        Pblendw => d(int::blend::<u128, u16>(a, b, imm)),
        Blendvps => d(int::blendv::<u128, u32>(a, b, x0)),
        Blendvpd => d(int::blendv::<u128, u64>(a, b, x0)),
        Pblendvb => d(int::blendv::<u128, u8>(a, b, x0)),
        Insertps => d(int::insertps(a, b, if x.bmem { imm & 0x3f } else { imm })),
        Extractps => d(int::extract::<u128, u32>(b, imm).into()),
        Pextrb => d(int::extract::<u128, u8>(b, imm).into()),
        Pextrw => d(vec2!(x, |_a, b| int::extract::<V, u16>(b, imm))),
        Pextrd => d(int::extract::<u128, u32>(b, imm).into()),
        Pextrq => d(int::extract::<u128, u64>(b, imm).into()),
        Pinsrb => d(int::insert::<u128, u8>(a, b as u64, imm)),
        Pinsrw => d(vec2!(x, |a, b| int::insert::<V, u16>(a, b as u64, imm))),
        Pinsrd => d(int::insert::<u128, u32>(a, b as u64, imm)),
        Pinsrq => d(int::insert::<u128, u64>(a, b as u64, imm)),
        Pshufd => d(int::pshufd(b, imm)),
        Pshufhw => d(int::pshufw::<u128>(b, imm, true)),
        Pshuflw => d(int::pshufw::<u128>(b, imm, false)),
        Pshufw => d(int::pshufw::<u64>(b as u64, imm, false).into()),
        Pshufb => d(vec2!(x, |a, b| int::pshufb::<V>(a, b))),
        Palignr => d(vec2!(x, |a, b| int::palignr::<V>(a, b, imm))),
        Paddb => d(vec2!(x, |a, b| int::add::<V, u8>(a, b))),
        Paddw => d(vec2!(x, |a, b| int::add::<V, u16>(a, b))),
        Paddd => d(vec2!(x, |a, b| int::add::<V, u32>(a, b))),
        Paddq => d(vec2!(x, |a, b| int::add::<V, u64>(a, b))),
        Psubb => d(vec2!(x, |a, b| int::sub::<V, u8>(a, b))),
        Psubw => d(vec2!(x, |a, b| int::sub::<V, u16>(a, b))),
        Psubd => d(vec2!(x, |a, b| int::sub::<V, u32>(a, b))),
        Psubq => d(vec2!(x, |a, b| int::sub::<V, u64>(a, b))),
        Paddsb => d(vec2!(x, |a, b| int::adds::<V, i8>(a, b))),
        Paddsw => d(vec2!(x, |a, b| int::adds::<V, i16>(a, b))),
        Paddusb => d(vec2!(x, |a, b| int::adds::<V, u8>(a, b))),
        Paddusw => d(vec2!(x, |a, b| int::adds::<V, u16>(a, b))),
        Psubsb => d(vec2!(x, |a, b| int::subs::<V, i8>(a, b))),
        Psubsw => d(vec2!(x, |a, b| int::subs::<V, i16>(a, b))),
        Psubusb => d(vec2!(x, |a, b| int::subs::<V, u8>(a, b))),
        Psubusw => d(vec2!(x, |a, b| int::subs::<V, u16>(a, b))),
        Pmullw => d(vec2!(x, |a, b| int::mullo::<V, i16>(a, b))),
        Pmulld => d(int::mullo::<u128, i32>(a, b)),
        Pmulhw => d(vec2!(x, |a, b| int::mulhi::<V, i16>(a, b))),
        Pmulhuw => d(vec2!(x, |a, b| int::mulhi::<V, u16>(a, b))),
        Pmulhrsw => d(vec2!(x, |a, b| int::mulhrs::<V>(a, b))),
        Pmuludq => d(vec2!(x, |a, b| int::mul_even::<V>(a, b, false))),
        Pmuldq => d(int::mul_even::<u128>(a, b, true)),
        Pmaddwd => d(vec2!(x, |a, b| int::madd_wd::<V>(a, b))),
        Pmaddubsw => d(vec2!(x, |a, b| int::madd_ubsw::<V>(a, b))),
        Pavgb => d(vec2!(x, |a, b| int::avg::<V, u8>(a, b))),
        Pavgw => d(vec2!(x, |a, b| int::avg::<V, u16>(a, b))),
        Psadbw => d(vec2!(x, |a, b| int::sad::<V>(a, b))),
        Mpsadbw => d(int::mpsadbw(a, b, imm)),
        Pminub => d(vec2!(x, |a, b| int::min::<V, u8>(a, b))),
        Pminuw => d(int::min::<u128, u16>(a, b)),
        Pminud => d(int::min::<u128, u32>(a, b)),
        Pminsb => d(int::min::<u128, i8>(a, b)),
        Pminsw => d(vec2!(x, |a, b| int::min::<V, i16>(a, b))),
        Pminsd => d(int::min::<u128, i32>(a, b)),
        Pmaxub => d(vec2!(x, |a, b| int::max::<V, u8>(a, b))),
        Pmaxuw => d(int::max::<u128, u16>(a, b)),
        Pmaxud => d(int::max::<u128, u32>(a, b)),
        Pmaxsb => d(int::max::<u128, i8>(a, b)),
        Pmaxsw => d(vec2!(x, |a, b| int::max::<V, i16>(a, b))),
        Pmaxsd => d(int::max::<u128, i32>(a, b)),
        Phminposuw => d(int::phminposuw(b)),
        Pcmpeqb => d(vec2!(x, |a, b| int::cmpeq::<V, u8>(a, b))),
        Pcmpeqw => d(vec2!(x, |a, b| int::cmpeq::<V, u16>(a, b))),
        Pcmpeqd => d(vec2!(x, |a, b| int::cmpeq::<V, u32>(a, b))),
        Pcmpeqq => d(int::cmpeq::<u128, u64>(a, b)),
        Pcmpgtb => d(vec2!(x, |a, b| int::cmpgt::<V, i8>(a, b))),
        Pcmpgtw => d(vec2!(x, |a, b| int::cmpgt::<V, i16>(a, b))),
        Pcmpgtd => d(vec2!(x, |a, b| int::cmpgt::<V, i32>(a, b))),
        Pcmpgtq => d(int::cmpgt::<u128, i64>(a, b)),
        Phaddw => d(vec2!(x, |a, b| int::hadd::<V, i16>(a, b, false, false))),
        Phaddd => d(vec2!(x, |a, b| int::hadd::<V, i32>(a, b, false, false))),
        Phaddsw => d(vec2!(x, |a, b| int::hadd::<V, i16>(a, b, false, true))),
        Phsubw => d(vec2!(x, |a, b| int::hadd::<V, i16>(a, b, true, false))),
        Phsubd => d(vec2!(x, |a, b| int::hadd::<V, i32>(a, b, true, false))),
        Phsubsw => d(vec2!(x, |a, b| int::hadd::<V, i16>(a, b, true, true))),
        Psignb => d(vec2!(x, |a, b| int::sign::<V, i8>(a, b))),
        Psignw => d(vec2!(x, |a, b| int::sign::<V, i16>(a, b))),
        Psignd => d(vec2!(x, |a, b| int::sign::<V, i32>(a, b))),
        Pabsb => d(vec2!(x, |_a, b| int::abs::<V, i8>(b))),
        Pabsw => d(vec2!(x, |_a, b| int::abs::<V, i16>(b))),
        Pabsd => d(vec2!(x, |_a, b| int::abs::<V, i32>(b))),
        Psllw => d(vec2!(x, |a, b| int::sll::<V, u16>(a, b as u64))),
        Pslld => d(vec2!(x, |a, b| int::sll::<V, u32>(a, b as u64))),
        Psllq => d(vec2!(x, |a, b| int::sll::<V, u64>(a, b as u64))),
        Psrlw => d(vec2!(x, |a, b| int::srl::<V, u16>(a, b as u64))),
        Psrld => d(vec2!(x, |a, b| int::srl::<V, u32>(a, b as u64))),
        Psrlq => d(vec2!(x, |a, b| int::srl::<V, u64>(a, b as u64))),
        Psraw => d(vec2!(x, |a, b| int::sra::<V, i16>(a, b as u64))),
        Psrad => d(vec2!(x, |a, b| int::sra::<V, i32>(a, b as u64))),
        Pslldq => d(int::slldq(a, b as u8)),
        Psrldq => d(int::srldq(a, b as u8)),
        Packsswb => d(vec2!(x, |a, b| int::pack::<V, i16, i8>(a, b))),
        Packssdw => d(vec2!(x, |a, b| int::pack::<V, i32, i16>(a, b))),
        Packuswb => d(vec2!(x, |a, b| int::pack::<V, i16, u8>(a, b))),
        Packusdw => d(int::pack::<u128, i32, u16>(a, b)),
        Punpcklbw => d(vec2!(x, |a, b| int::unpack::<V, u8>(a, b, false))),
        Punpcklwd => d(vec2!(x, |a, b| int::unpack::<V, u16>(a, b, false))),
        Punpckldq => d(vec2!(x, |a, b| int::unpack::<V, u32>(a, b, false))),
        Punpcklqdq => d(int::unpack::<u128, u64>(a, b, false)),
        Punpckhbw => d(vec2!(x, |a, b| int::unpack::<V, u8>(a, b, true))),
        Punpckhwd => d(vec2!(x, |a, b| int::unpack::<V, u16>(a, b, true))),
        Punpckhdq => d(vec2!(x, |a, b| int::unpack::<V, u32>(a, b, true))),
        Punpckhqdq => d(int::unpack::<u128, u64>(a, b, true)),
        Pmovsxbw => d(int::movx::<i8, i16>(b)),
        Pmovsxbd => d(int::movx::<i8, i32>(b)),
        Pmovsxbq => d(int::movx::<i8, i64>(b)),
        Pmovsxwd => d(int::movx::<i16, i32>(b)),
        Pmovsxwq => d(int::movx::<i16, i64>(b)),
        Pmovsxdq => d(int::movx::<i32, i64>(b)),
        Pmovzxbw => d(int::movx::<u8, u16>(b)),
        Pmovzxbd => d(int::movx::<u8, u32>(b)),
        Pmovzxbq => d(int::movx::<u8, u64>(b)),
        Pmovzxwd => d(int::movx::<u16, u32>(b)),
        Pmovzxwq => d(int::movx::<u16, u64>(b)),
        Pmovzxdq => d(int::movx::<u32, u64>(b)),
        // Executed by `sse` itself, never computed here.
        Emms | Ldmxcsr | Stmxcsr | Maskmov => d(a),
    }
}

/// ADD/SUB/MUL/DIV in their four shapes.
fn arith_shape(v: SseOp) -> (Shape, Arith) {
    use Shape::{Pd, Ps, Sd, Ss};
    use SseOp::*;
    match v {
        AddPs => (Ps, Arith::Add),
        AddPd => (Pd, Arith::Add),
        AddSs => (Ss, Arith::Add),
        AddSd => (Sd, Arith::Add),
        SubPs => (Ps, Arith::Sub),
        SubPd => (Pd, Arith::Sub),
        SubSs => (Ss, Arith::Sub),
        SubSd => (Sd, Arith::Sub),
        MulPs => (Ps, Arith::Mul),
        MulPd => (Pd, Arith::Mul),
        MulSs => (Ss, Arith::Mul),
        MulSd => (Sd, Arith::Mul),
        DivPs => (Ps, Arith::Div),
        DivPd => (Pd, Arith::Div),
        DivSs => (Ss, Arith::Div),
        _ => (Sd, Arith::Div),
    }
}

/// The SSE4.2 string compares, which write ECX or XMM0 and the flags.
fn strings(v: SseOp, x: &In) -> Out {
    use SseOp::*;
    let explicit = |r: u64, wide: bool| Some(if wide { r as i64 } else { r as u32 as i32 as i64 });
    let (la, lb) = match v {
        Pcmpestri | Pcmpestrm => (explicit(x.rax, false), explicit(x.rdx, false)),
        Pcmpestri64 | Pcmpestrm64 => (explicit(x.rax, true), explicit(x.rdx, true)),
        _ => (None, None),
    };
    let r = sse_str::pcmpstr(x.a, x.b, la, lb, x.imm);
    match v {
        Pcmpestri | Pcmpestri64 | Pcmpistri => Out::Index(sse_str::index(r, x.imm), r.flags),
        _ => Out::Mask(sse_str::mask(r, x.imm), r.flags),
    }
}

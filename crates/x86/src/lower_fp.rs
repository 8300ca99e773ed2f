//! Lowering of the x87, MMX, SSE-SSE4.2 and state-save instructions, an
//! early branch of [`crate::lower`]: the operation from the mnemonic (and,
//! where one mnemonic has forms that behave differently, the iced `Code`),
//! operands as XMM, MMX, x87 stack, general registers, memory and
//! immediates. An x87 op carries its FOP (the low three bits of the first
//! opcode byte and the ModR/M byte, SDM Vol. 1 8.1.9) as its third
//! operand. VEX-encoded (AVX) forms have other mnemonics and are not
//! lowered here.

use crate::op::{gpr, mem, op_size, seg, Kind, Mem, Op, Opnd};
use crate::sse::SseOp;
use crate::x87::X87Op;
use crate::xsave::StateOp;
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

/// The op for `i` if it is one of these instructions; `base` carries the
/// length.
pub(crate) fn lower(i: &Instruction, base: Op) -> Option<Op> {
    if let Some(v) = sse_op(i) {
        return Some(vector(i, base, v));
    }
    if let Some(x) = x87_op(i) {
        return Some(x87(i, base, x));
    }
    let s = state_op(i.mnemonic())?;
    let a = if s == StateOp::Xgetbv || s == StateOp::Xsetbv { Opnd::None } else { mem(i)? };
    Some(Op { kind: Kind::FpState(s), a, ..base })
}

/// An operand of a vector instruction.
fn vector_operand(i: &Instruction, n: u32) -> Option<Opnd> {
    match i.op_kind(n) {
        OpKind::Register => {
            let r = i.op_register(n);
            if r.is_xmm() {
                Some(Opnd::Xmm((r as u32 - Register::XMM0 as u32) as u8))
            } else if r.is_mm() {
                Some(Opnd::Mm((r as u32 - Register::MM0 as u32) as u8))
            } else {
                gpr(r)
            }
        }
        OpKind::Memory => mem(i),
        OpKind::MemorySegRDI | OpKind::MemorySegEDI => Some(Opnd::Mem(Mem {
            base: crate::reg::RDI,
            index: Mem::NONE,
            scale: 1,
            seg: seg(i.memory_segment()),
            asize: if i.op_kind(n) == OpKind::MemorySegRDI { 8 } else { 4 },
            disp: 0,
        })),
        OpKind::Immediate8 => Some(Opnd::Imm(i.immediate(n))),
        _ => None,
    }
}

fn vector(i: &Instruction, base: Op, v: SseOp) -> Op {
    let mut ops = [Opnd::None; 3];
    for n in 0..i.op_count().min(3) {
        match vector_operand(i, n) {
            Some(o) => ops[n as usize] = o,
            None => return Op { kind: Kind::Unsupported, ..base },
        }
    }
    let size2 = if i.op_count() > 1 { op_size(i, 1) } else { 0 };
    Op { kind: Kind::Sse(v), size: op_size(i, 0), size2, a: ops[0], b: ops[1], c: ops[2], ..base }
}

/// Whether operands 0 and 1 are both registers.
fn reg_reg(i: &Instruction) -> bool {
    i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register
}

/// The SSE or MMX operation of `i`.
fn sse_op(i: &Instruction) -> Option<SseOp> {
    use Mnemonic as M;
    use SseOp::*;
    Some(match i.mnemonic() {
        M::Movups | M::Movupd | M::Movdqu | M::Lddqu => Mov,
        M::Movaps | M::Movapd | M::Movdqa | M::Movntps | M::Movntpd | M::Movntdq | M::Movntdqa => MovA,
        M::Movd => Movd,
        M::Movq | M::Movq2dq | M::Movdq2q | M::Movntq => Movq,
        M::Movss if reg_reg(i) => MergeLow32,
        M::Movss => Movd,
        M::Movsd if !matches!(i.code(), Code::Movsd_xmm_xmmm64 | Code::Movsd_xmmm64_xmm) => return None,
        M::Movsd if reg_reg(i) => MergeLow64,
        M::Movsd => Movq,
        M::Movlps | M::Movlpd if i.op0_kind() == OpKind::Memory => Movq,
        M::Movlps | M::Movlpd => MergeLow64,
        M::Movhps | M::Movhpd if i.op0_kind() == OpKind::Memory => StoreHigh,
        M::Movhps | M::Movhpd | M::Movlhps => MergeHigh,
        M::Movhlps => Movhlps,
        M::Movsldup => Movsldup,
        M::Movshdup => Movshdup,
        M::Movddup => Movddup,
        M::Maskmovq | M::Maskmovdqu => Maskmov,
        M::Movmskps => Movmskps,
        M::Movmskpd => Movmskpd,
        M::Pmovmskb => Pmovmskb,
        M::Addps => AddPs,
        M::Addpd => AddPd,
        M::Addss => AddSs,
        M::Addsd => AddSd,
        M::Subps => SubPs,
        M::Subpd => SubPd,
        M::Subss => SubSs,
        M::Subsd => SubSd,
        M::Mulps => MulPs,
        M::Mulpd => MulPd,
        M::Mulss => MulSs,
        M::Mulsd => MulSd,
        M::Divps => DivPs,
        M::Divpd => DivPd,
        M::Divss => DivSs,
        M::Divsd => DivSd,
        M::Minps => MinPs,
        M::Minpd => MinPd,
        M::Minss => MinSs,
        M::Minsd => MinSd,
        M::Maxps => MaxPs,
        M::Maxpd => MaxPd,
        M::Maxss => MaxSs,
        M::Maxsd => MaxSd,
        M::Sqrtps => SqrtPs,
        M::Sqrtpd => SqrtPd,
        M::Sqrtss => SqrtSs,
        M::Sqrtsd => SqrtSd,
        M::Cmpps => CmpPs,
        M::Cmppd => CmpPd,
        M::Cmpss => CmpSs,
        M::Cmpsd if i.code() == Code::Cmpsd_xmm_xmmm64_imm8 => CmpSd,
        M::Comiss => Comiss,
        M::Comisd => Comisd,
        M::Ucomiss => Ucomiss,
        M::Ucomisd => Ucomisd,
        M::Rcpps => Rcpps,
        M::Rcpss => Rcpss,
        M::Rsqrtps => Rsqrtps,
        M::Rsqrtss => Rsqrtss,
        M::Roundps => RoundPs,
        M::Roundpd => RoundPd,
        M::Roundss => RoundSs,
        M::Roundsd => RoundSd,
        M::Dpps => Dpps,
        M::Dppd => Dppd,
        M::Addsubps => Addsubps,
        M::Addsubpd => Addsubpd,
        M::Haddps => Haddps,
        M::Haddpd => Haddpd,
        M::Hsubps => Hsubps,
        M::Hsubpd => Hsubpd,
        M::Cvtss2sd => Cvtss2sd,
        M::Cvtsd2ss => Cvtsd2ss,
        M::Cvtps2pd => Cvtps2pd,
        M::Cvtpd2ps => Cvtpd2ps,
        M::Cvtdq2ps => Cvtdq2ps,
        M::Cvtdq2pd => Cvtdq2pd,
        M::Cvtps2dq => Cvtps2dq,
        M::Cvttps2dq => Cvttps2dq,
        M::Cvtpd2dq => Cvtpd2dq,
        M::Cvttpd2dq => Cvttpd2dq,
        M::Cvtpi2ps => Cvtpi2ps,
        M::Cvtpi2pd => Cvtpi2pd,
        M::Cvtps2pi => Cvtps2pi,
        M::Cvttps2pi => Cvttps2pi,
        M::Cvtpd2pi => Cvtpd2pi,
        M::Cvttpd2pi => Cvttpd2pi,
        M::Cvtsi2ss => Cvtsi2ss,
        M::Cvtsi2sd => Cvtsi2sd,
        M::Cvtss2si => Cvtss2si,
        M::Cvttss2si => Cvttss2si,
        M::Cvtsd2si => Cvtsd2si,
        M::Cvttsd2si => Cvttsd2si,
        M::Andps | M::Andpd | M::Pand => And,
        M::Andnps | M::Andnpd | M::Pandn => Andn,
        M::Orps | M::Orpd | M::Por => Or,
        M::Xorps | M::Xorpd | M::Pxor => Xor,
        M::Shufps => Shufps,
        M::Shufpd => Shufpd,
        M::Blendps => Blendps,
        M::Blendpd => Blendpd,
        M::Blendvps => Blendvps,
        M::Blendvpd => Blendvpd,
        M::Pblendw => Pblendw,
        M::Pblendvb => Pblendvb,
        M::Insertps => Insertps,
        M::Extractps => Extractps,
        M::Pextrb => Pextrb,
        M::Pextrw => Pextrw,
        M::Pextrd => Pextrd,
        M::Pextrq => Pextrq,
        M::Pinsrb => Pinsrb,
        M::Pinsrw => Pinsrw,
        M::Pinsrd => Pinsrd,
        M::Pinsrq => Pinsrq,
        M::Pshufd => Pshufd,
        M::Pshufhw => Pshufhw,
        M::Pshuflw => Pshuflw,
        M::Pshufw => Pshufw,
        M::Pshufb => Pshufb,
        M::Palignr => Palignr,
        _ => return integer_op(i.mnemonic()),
    })
}

/// The packed-integer, shift, pack, string and MXCSR operations.
fn integer_op(m: Mnemonic) -> Option<SseOp> {
    use Mnemonic as M;
    use SseOp::*;
    Some(match m {
        M::Paddb => Paddb,
        M::Paddw => Paddw,
        M::Paddd => Paddd,
        M::Paddq => Paddq,
        M::Psubb => Psubb,
        M::Psubw => Psubw,
        M::Psubd => Psubd,
        M::Psubq => Psubq,
        M::Paddsb => Paddsb,
        M::Paddsw => Paddsw,
        M::Paddusb => Paddusb,
        M::Paddusw => Paddusw,
        M::Psubsb => Psubsb,
        M::Psubsw => Psubsw,
        M::Psubusb => Psubusb,
        M::Psubusw => Psubusw,
        M::Pmullw => Pmullw,
        M::Pmulld => Pmulld,
        M::Pmulhw => Pmulhw,
        M::Pmulhuw => Pmulhuw,
        M::Pmulhrsw => Pmulhrsw,
        M::Pmuludq => Pmuludq,
        M::Pmuldq => Pmuldq,
        M::Pmaddwd => Pmaddwd,
        M::Pmaddubsw => Pmaddubsw,
        M::Pavgb => Pavgb,
        M::Pavgw => Pavgw,
        M::Psadbw => Psadbw,
        M::Mpsadbw => Mpsadbw,
        M::Pminub => Pminub,
        M::Pminuw => Pminuw,
        M::Pminud => Pminud,
        M::Pminsb => Pminsb,
        M::Pminsw => Pminsw,
        M::Pminsd => Pminsd,
        M::Pmaxub => Pmaxub,
        M::Pmaxuw => Pmaxuw,
        M::Pmaxud => Pmaxud,
        M::Pmaxsb => Pmaxsb,
        M::Pmaxsw => Pmaxsw,
        M::Pmaxsd => Pmaxsd,
        M::Phminposuw => Phminposuw,
        M::Pcmpeqb => Pcmpeqb,
        M::Pcmpeqw => Pcmpeqw,
        M::Pcmpeqd => Pcmpeqd,
        M::Pcmpeqq => Pcmpeqq,
        M::Pcmpgtb => Pcmpgtb,
        M::Pcmpgtw => Pcmpgtw,
        M::Pcmpgtd => Pcmpgtd,
        M::Pcmpgtq => Pcmpgtq,
        M::Phaddw => Phaddw,
        M::Phaddd => Phaddd,
        M::Phaddsw => Phaddsw,
        M::Phsubw => Phsubw,
        M::Phsubd => Phsubd,
        M::Phsubsw => Phsubsw,
        M::Psignb => Psignb,
        M::Psignw => Psignw,
        M::Psignd => Psignd,
        M::Pabsb => Pabsb,
        M::Pabsw => Pabsw,
        M::Pabsd => Pabsd,
        M::Ptest => Ptest,
        M::Psllw => Psllw,
        M::Pslld => Pslld,
        M::Psllq => Psllq,
        M::Psrlw => Psrlw,
        M::Psrld => Psrld,
        M::Psrlq => Psrlq,
        M::Psraw => Psraw,
        M::Psrad => Psrad,
        M::Pslldq => Pslldq,
        M::Psrldq => Psrldq,
        M::Packsswb => Packsswb,
        M::Packssdw => Packssdw,
        M::Packuswb => Packuswb,
        M::Packusdw => Packusdw,
        M::Punpcklbw => Punpcklbw,
        M::Punpcklwd => Punpcklwd,
        M::Punpckldq | M::Unpcklps => Punpckldq,
        M::Punpcklqdq | M::Unpcklpd => Punpcklqdq,
        M::Punpckhbw => Punpckhbw,
        M::Punpckhwd => Punpckhwd,
        M::Punpckhdq | M::Unpckhps => Punpckhdq,
        M::Punpckhqdq | M::Unpckhpd => Punpckhqdq,
        M::Pmovsxbw => Pmovsxbw,
        M::Pmovsxbd => Pmovsxbd,
        M::Pmovsxbq => Pmovsxbq,
        M::Pmovsxwd => Pmovsxwd,
        M::Pmovsxwq => Pmovsxwq,
        M::Pmovsxdq => Pmovsxdq,
        M::Pmovzxbw => Pmovzxbw,
        M::Pmovzxbd => Pmovzxbd,
        M::Pmovzxbq => Pmovzxbq,
        M::Pmovzxwd => Pmovzxwd,
        M::Pmovzxwq => Pmovzxwq,
        M::Pmovzxdq => Pmovzxdq,
        M::Pcmpestri => Pcmpestri,
        M::Pcmpestri64 => Pcmpestri64,
        M::Pcmpestrm => Pcmpestrm,
        M::Pcmpestrm64 => Pcmpestrm64,
        M::Pcmpistri => Pcmpistri,
        M::Pcmpistrm => Pcmpistrm,
        M::Emms => Emms,
        M::Ldmxcsr => Ldmxcsr,
        M::Stmxcsr => Stmxcsr,
        _ => return None,
    })
}

/// The x87 operation of `i`.
fn x87_op(i: &Instruction) -> Option<X87Op> {
    use Mnemonic as M;
    use X87Op::*;
    Some(match i.mnemonic() {
        M::Fld => Fld,
        M::Fild => Fild,
        M::Fbld => Fbld,
        M::Fst => Fst,
        M::Fstp | M::Fstpnce => Fstp,
        M::Fist => Fist,
        M::Fistp => Fistp,
        M::Fisttp => Fisttp,
        M::Fbstp => Fbstp,
        M::Fadd => Fadd,
        M::Faddp => Faddp,
        M::Fiadd => Fiadd,
        M::Fsub => Fsub,
        M::Fsubp => Fsubp,
        M::Fisub => Fisub,
        M::Fsubr => Fsubr,
        M::Fsubrp => Fsubrp,
        M::Fisubr => Fisubr,
        M::Fmul => Fmul,
        M::Fmulp => Fmulp,
        M::Fimul => Fimul,
        M::Fdiv => Fdiv,
        M::Fdivp => Fdivp,
        M::Fidiv => Fidiv,
        M::Fdivr => Fdivr,
        M::Fdivrp => Fdivrp,
        M::Fidivr => Fidivr,
        M::Fcom => Fcom,
        M::Fcomp => Fcomp,
        M::Fcompp => Fcompp,
        M::Fucom => Fucom,
        M::Fucomp => Fucomp,
        M::Fucompp => Fucompp,
        M::Ficom => Ficom,
        M::Ficomp => Ficomp,
        M::Ftst => Ftst,
        M::Fcomi => Fcomi,
        M::Fcomip => Fcomip,
        M::Fucomi => Fucomi,
        M::Fucomip => Fucomip,
        M::Fxam => Fxam,
        M::Fchs => Fchs,
        M::Fabs => Fabs,
        M::Fsqrt => Fsqrt,
        M::Frndint => Frndint,
        M::Fscale => Fscale,
        M::Fxtract => Fxtract,
        M::Fprem => Fprem,
        M::Fprem1 => Fprem1,
        M::Fsin => Fsin,
        M::Fcos => Fcos,
        M::Fsincos => Fsincos,
        M::Fptan => Fptan,
        M::Fpatan => Fpatan,
        M::F2xm1 => F2xm1,
        M::Fyl2x => Fyl2x,
        M::Fyl2xp1 => Fyl2xp1,
        M::Fxch => Fxch,
        M::Fcmovb => Fcmovb,
        M::Fcmove => Fcmove,
        M::Fcmovbe => Fcmovbe,
        M::Fcmovu => Fcmovu,
        M::Fcmovnb => Fcmovnb,
        M::Fcmovne => Fcmovne,
        M::Fcmovnbe => Fcmovnbe,
        M::Fcmovnu => Fcmovnu,
        M::Ffree => Ffree,
        M::Ffreep => Ffreep,
        M::Fincstp => Fincstp,
        M::Fdecstp => Fdecstp,
        // FNENI, FNDISI and FNSETPM are the 8087/287's; the 387 and later
        // execute them as FNOP.
        M::Fnop | M::Fneni | M::Fndisi | M::Fnsetpm => Fnop,
        M::Fld1 => Fld1,
        M::Fldl2t => Fldl2t,
        M::Fldl2e => Fldl2e,
        M::Fldpi => Fldpi,
        M::Fldlg2 => Fldlg2,
        M::Fldln2 => Fldln2,
        M::Fldz => Fldz,
        M::Fninit => Fninit,
        M::Fnclex => Fnclex,
        M::Fldcw => Fldcw,
        M::Fnstcw => Fnstcw,
        M::Fnstsw => Fnstsw,
        M::Fnstenv => Fnstenv,
        M::Fldenv => Fldenv,
        M::Fnsave => Fnsave,
        M::Frstor => Frstor,
        M::Wait => Fwait,
        _ => return None,
    })
}

/// An x87 op: ST registers, a memory operand (its size the format's), AX
/// for FNSTSW AX; the 14- and 94-byte (16-bit operand size) environment
/// and state formats are not modelled.
fn x87(i: &Instruction, base: Op, x: X87Op) -> Op {
    let mut ops = [Opnd::None; 2];
    let mut size = 0;
    for n in 0..i.op_count().min(2) {
        ops[n as usize] = match i.op_kind(n) {
            OpKind::Register if i.op_register(n).is_st() => {
                Opnd::St((i.op_register(n) as u32 - Register::ST0 as u32) as u8)
            }
            OpKind::Register if i.op_register(n) == Register::AX => Opnd::Reg(0),
            OpKind::Memory => match mem(i) {
                Some(m) => {
                    size = op_size(i, n);
                    m
                }
                None => return Op { kind: Kind::Unsupported, ..base },
            },
            _ => return Op { kind: Kind::Unsupported, ..base },
        };
    }
    if matches!(x, X87Op::Fnstenv | X87Op::Fldenv | X87Op::Fnsave | X87Op::Frstor) && !matches!(size, 28 | 108) {
        return Op { kind: Kind::Unsupported, ..base };
    }
    Op { kind: Kind::X87(x), size, a: ops[0], b: ops[1], c: Opnd::Imm(u64::from(fop(i))), ..base }
}

/// FOP: bits 10:8 the first opcode byte's low three bits, bits 7:0 the
/// ModR/M byte, rebuilt from the decoded form (for a memory operand: mod
/// from the displacement's size, r/m from the base or a SIB byte).
fn fop(i: &Instruction) -> u16 {
    let oc = i.op_code();
    let code = oc.op_code();
    if oc.op_code_len() == 2 {
        // "D8 C0+i" and the like: the second byte is the ModR/M, plus i.
        let sti = (0..i.op_count())
            .filter(|&n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_st())
            .map(|n| i.op_register(n) as u32 - Register::ST0 as u32)
            .max()
            .unwrap_or(0);
        let plus = if oc.op_code_string().ends_with("+i") { sti } else { 0 };
        return ((((code >> 8) & 7) << 8) | ((code & 0xff) + plus)) as u16;
    }
    let reg = oc.group_index().max(0) as u32;
    let (mode, rm) = modrm_mem(i);
    (((code & 7) << 8) | (mode << 6) | (reg << 3) | rm) as u16
}

/// The mod and r/m fields of a memory operand's ModR/M byte.
fn modrm_mem(i: &Instruction) -> (u32, u32) {
    if i.is_ip_rel_memory_operand() {
        return (0, 5);
    }
    let (b, x) = (i.memory_base(), i.memory_index());
    let number = |r: Register| r.full_register() as u32 - Register::RAX as u32;
    let rm = if x != Register::None || b == Register::None || number(b) & 7 == 4 { 4 } else { number(b) & 7 };
    let mode = match (b, i.memory_displ_size()) {
        (Register::None, _) => 0,
        (_, 0) => 0,
        (_, 1) => 1,
        _ => 2,
    };
    (mode, rm)
}

/// The state-save operation of mnemonic `m`.
fn state_op(m: Mnemonic) -> Option<StateOp> {
    use Mnemonic as M;
    use StateOp::*;
    Some(match m {
        M::Fxsave => Fxsave,
        M::Fxsave64 => Fxsave64,
        M::Fxrstor => Fxrstor,
        M::Fxrstor64 => Fxrstor64,
        M::Xsave => Xsave,
        M::Xsave64 => Xsave64,
        M::Xsaveopt => Xsaveopt,
        M::Xsaveopt64 => Xsaveopt64,
        M::Xsavec => Xsavec,
        M::Xsavec64 => Xsavec64,
        M::Xsaves => Xsaves,
        M::Xsaves64 => Xsaves64,
        M::Xrstor => Xrstor,
        M::Xrstor64 => Xrstor64,
        M::Xrstors => Xrstors,
        M::Xrstors64 => Xrstors64,
        M::Xgetbv => Xgetbv,
        M::Xsetbv => Xsetbv,
        _ => return None,
    })
}

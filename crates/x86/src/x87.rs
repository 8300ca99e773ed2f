//! The x87 FPU (SDM Vol. 1 ch. 8; Vol. 2 per instruction): the executor
//! reads memory operands in their format (m16int ... m80bcd, the 28-byte
//! environment, the 108-byte state), runs the instruction on a copy of
//! the x87 state with the pure semantics of [`crate::fp::x87`], writes any
//! memory result, then commits the state, so a fault leaves everything as
//! it was.
//!
//! Before anything else: CR0.EM or CR0.TS raises #NM (WAIT: CR0.TS with
//! CR0.MP); then every instruction but the no-wait control ones (FNINIT,
//! FNCLEX, FNSTCW, FNSTSW, FNSTENV, FNSAVE) raises #MF when an unmasked
//! exception is pending, or asserts FERR# with CR0.NE clear ([`pending`]).
//!
//! The last-instruction pointers follow the CPU this model copies (an
//! Intel part that deprecates FCS/FDS and has FDP_EXCPTN_ONLY,
//! CPUID.(EAX=07H,ECX=0):EBX bits 13 and 6; SDM Vol. 1 8.1.8-8.1.9): every
//! non-control instruction records its address in FIP; FOP and FDP change
//! only when the instruction raises an unmasked exception (FDP only when
//! it has a memory operand: its offset); FCS and FDS are always 0, even
//! after a restore from memory (silicon: crates/vmm/tests/differential/
//! fp.rs).

use crate::cpu::{Cpu, Exception};
use crate::exec::{next, offset, set_reg};
use crate::flags::{Cond, Flags};
use crate::fp::cost::Class;
use crate::fp::round::{DOUBLE, SINGLE};
use crate::fp::x87::{
    self as fpu, constant, from_bcd, from_int, to_bcd, to_ieee, to_int, Arith87, Const, Operand, F80,
};
use crate::fp::xsave::{self as save, FpuState};
use crate::fp::Exc;
use crate::op::{Mem, Op, Opnd};
use crate::wide;
use exitlab_arch::bits::cr0;
use exitlab_arch::vector;

/// An x87 instruction. Memory forms take their operand's format from the
/// op's size (2, 4, 8 or 10 bytes; the integer forms are their own
/// variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum X87Op {
    Fld,
    Fild,
    Fbld,
    Fst,
    Fstp,
    Fist,
    Fistp,
    Fisttp,
    Fbstp,
    Fadd,
    Faddp,
    Fiadd,
    Fsub,
    Fsubp,
    Fisub,
    Fsubr,
    Fsubrp,
    Fisubr,
    Fmul,
    Fmulp,
    Fimul,
    Fdiv,
    Fdivp,
    Fidiv,
    Fdivr,
    Fdivrp,
    Fidivr,
    Fcom,
    Fcomp,
    Fcompp,
    Fucom,
    Fucomp,
    Fucompp,
    Ficom,
    Ficomp,
    Ftst,
    Fcomi,
    Fcomip,
    Fucomi,
    Fucomip,
    Fxam,
    Fchs,
    Fabs,
    Fsqrt,
    Frndint,
    Fscale,
    Fxtract,
    Fprem,
    Fprem1,
    Fsin,
    Fcos,
    Fsincos,
    Fptan,
    Fpatan,
    F2xm1,
    Fyl2x,
    Fyl2xp1,
    Fxch,
    Fcmovb,
    Fcmove,
    Fcmovbe,
    Fcmovu,
    Fcmovnb,
    Fcmovne,
    Fcmovnbe,
    Fcmovnu,
    Ffree,
    /// FFREEP ST(i): FFREE, then pop.
    Ffreep,
    Fincstp,
    Fdecstp,
    Fnop,
    Fld1,
    Fldl2t,
    Fldl2e,
    Fldpi,
    Fldlg2,
    Fldln2,
    Fldz,
    Fninit,
    Fnclex,
    Fldcw,
    Fnstcw,
    /// FNSTSW m16 or AX.
    Fnstsw,
    Fnstenv,
    Fldenv,
    Fnsave,
    Frstor,
    Fwait,
}

impl X87Op {
    /// The no-wait instructions, which never raise #MF (SDM Vol. 1 8.3.11).
    pub fn no_wait(self) -> bool {
        use X87Op::*;
        matches!(self, Fninit | Fnclex | Fnstcw | Fnstsw | Fnstenv | Fnsave)
    }

    /// The control instructions, which leave FIP, FDP and FOP alone (SDM
    /// Vol. 1 8.1.8).
    pub fn control(self) -> bool {
        use X87Op::*;
        matches!(self, Fninit | Fnclex | Fldcw | Fnstcw | Fnstsw | Fnstenv | Fldenv | Fnsave | Frstor | Fwait)
    }

    /// The latency class of the cost model ([`crate::fp::cost`]).
    pub fn cost_class(self) -> Class {
        use X87Op::*;
        match self {
            Fmul | Fmulp | Fimul => Class::X87Mul,
            Fdiv | Fdivp | Fidiv | Fdivr | Fdivrp | Fidivr => Class::X87Div,
            Fsqrt => Class::X87Sqrt,
            Fsin | Fcos => Class::X87SinCos,
            Fsincos => Class::X87SinCosBoth,
            Fptan | Fpatan => Class::X87Tan,
            F2xm1 => Class::X87Exp,
            Fyl2x | Fyl2xp1 => Class::X87Log,
            Fprem | Fprem1 => Class::X87Rem,
            Frndint | Fscale | Fxtract => Class::X87Misc,
            Fbld => Class::X87Bld,
            Fbstp => Class::X87Bstp,
            Fldl2t | Fldl2e | Fldpi | Fldlg2 | Fldln2 => Class::X87Const,
            Fninit | Fnclex | Fldcw | Fnstcw | Fnstsw | Fwait => Class::X87Control,
            Fnstenv | Fldenv | Fnsave | Frstor => Class::StateSave,
            _ => Class::X87Add,
        }
    }
}

/// #MF when an unmasked x87 exception is pending (SW.ES), or FERR# when
/// CR0.NE is clear (SDM Vol. 1 8.7): what a waiting x87 instruction and
/// every MMX instruction check first.
pub fn pending<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if !c.fpu()?.x87.pending() {
        return Ok(());
    }
    if c.cr(0)? & cr0::NE != 0 {
        return Err(c.exception(Exception::fault(vector::MF)));
    }
    c.ferr()
}

/// The memory images x87 instructions store, largest the 108-byte state.
type Image = ([u8; 108], usize);

fn image(bytes: &[u8]) -> Image {
    let mut b = [0u8; 108];
    b[..bytes.len()].copy_from_slice(bytes);
    (b, bytes.len())
}

/// Executes an x87 instruction.
#[inline(never)]
pub fn x87<C: Cpu>(c: &mut C, op: &Op, x: X87Op) -> Result<(), C::Stop> {
    let cr0 = c.cr(0)?;
    let nm =
        if x == X87Op::Fwait { cr0 & (cr0::TS | cr0::MP) == cr0::TS | cr0::MP } else { cr0 & (cr0::EM | cr0::TS) != 0 };
    if nm {
        return Err(c.exception(Exception::fault(vector::NM)));
    }
    if !x.no_wait() {
        pending(c)?;
    }
    let mem = match op.a {
        Opnd::Mem(m) => Some((m, offset(c, &m))),
        _ => None,
    };
    let loaded = match mem {
        Some((m, at)) if loads(x) => Some(load(c, m, at, op.size)?),
        _ => None,
    };
    let flags = c.flags();
    let mut s = *c.fpu()?;
    let was_pending = s.x87.pending();
    let out = run(&mut s, op, x, loaded.as_ref(), flags);
    match (&out.store, mem) {
        (Some((bytes, n)), Some((m, at))) => wide::write(c, m.seg, at, &bytes[..*n])?,
        (Some((bytes, _)), None) => {
            if let Opnd::Reg(r) = op.a {
                set_reg(c, r, 2, u64::from(u16::from_le_bytes([bytes[0], bytes[1]])));
            }
        }
        _ => {}
    }
    if let Some(bits) = out.rflags {
        c.set_flags(Flags::known(bits));
    }
    if !x.control() {
        s.x87.fip = c.rip();
        if s.x87.pending() && !was_pending {
            s.x87.fop = fop(op);
            if let Some((_, at)) = mem {
                s.x87.fdp = at;
            }
        }
    }
    // FCS and FDS are deprecated: always 0, even after FLDENV or FRSTOR.
    (s.fcs, s.fds) = (0, 0);
    s.xinuse |= 1;
    *c.fpu()? = s;
    next(c, op)
}

/// The opcode FOP records (11 bits), which lowering keeps in the op's
/// third operand.
fn fop(op: &Op) -> u16 {
    match op.c {
        Opnd::Imm(v) => v as u16 & 0x7ff,
        _ => 0,
    }
}

/// Whether `x` reads its memory operand.
fn loads(x: X87Op) -> bool {
    use X87Op::*;
    matches!(
        x,
        Fld | Fild
            | Fbld
            | Fadd
            | Fiadd
            | Fsub
            | Fisub
            | Fsubr
            | Fisubr
            | Fmul
            | Fimul
            | Fdiv
            | Fidiv
            | Fdivr
            | Fidivr
            | Fcom
            | Fcomp
            | Ficom
            | Ficomp
            | Fldcw
            | Fldenv
            | Frstor
    )
}

/// Reads `size` bytes of a memory operand (at most the 108-byte state).
fn load<C: Cpu>(c: &mut C, m: Mem, at: u64, size: u8) -> Result<[u8; 108], C::Stop> {
    let mut b = [0u8; 108];
    wide::read(c, m.seg, at, &mut b[..usize::from(size).min(108)])?;
    Ok(b)
}

/// What an instruction produced besides its state change.
struct Done {
    /// A memory (or AX) image to store, and its length.
    store: Option<Image>,
    /// RFLAGS status bits (FCOMI).
    rflags: Option<u64>,
}

/// A memory operand as an arithmetic or compare source.
fn operand(x: X87Op, size: u8, b: &[u8; 108]) -> Operand {
    let int = matches!(x, X87Op::Fiadd | X87Op::Fisub | X87Op::Fisubr | X87Op::Fimul | X87Op::Fidiv | X87Op::Fidivr)
        || matches!(x, X87Op::Ficom | X87Op::Ficomp);
    let v = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    match (int, size) {
        (true, 2) => Operand::int(v as u16 as i16 as i64),
        (true, _) => Operand::int(v as u32 as i32 as i64),
        (false, 4) => Operand::ieee(&SINGLE, v & 0xffff_ffff),
        (false, _) => Operand::ieee(&DOUBLE, v),
    }
}

/// ST(i) of a register operand.
fn st(o: &Opnd) -> usize {
    match o {
        Opnd::St(i) => usize::from(*i & 7),
        _ => 0,
    }
}

/// An integer of `size` bytes from a load.
fn int_of(b: &[u8; 108], size: u8) -> i64 {
    let v = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    match size {
        2 => v as u16 as i16 as i64,
        4 => v as u32 as i32 as i64,
        _ => v as i64,
    }
}

fn f80_of(b: &[u8; 108]) -> F80 {
    F80::from_bytes(b[..10].try_into().unwrap_or([0; 10]))
}

/// Runs `x` on the state copy `s`.
fn run(s: &mut FpuState, op: &Op, x: X87Op, m: Option<&[u8; 108]>, flags: Flags) -> Done {
    use X87Op::*;
    let mut done = Done { store: None, rflags: None };
    let zero = [0u8; 108];
    let b = m.unwrap_or(&zero);
    let mem = matches!(op.a, Opnd::Mem(_));
    let rc = s.x87.control().rc();
    let xs = &mut s.x87;
    match x {
        Fld if mem => match op.size {
            4 => xs.fld_ieee(&SINGLE, u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            8 => xs.fld_ieee(&DOUBLE, u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))),
            _ => xs.push(f80_of(b), Exc::NONE),
        },
        Fld => xs.fld_st(st(&op.a)),
        Fild => xs.push(from_int(int_of(b, op.size)), Exc::NONE),
        Fbld => xs.push(from_bcd(b[..10].try_into().unwrap_or([0; 10])), Exc::NONE),
        Fst | Fstp if !mem => xs.fst_st(st(&op.a), x == Fstp),
        Fst | Fstp | Fist | Fistp | Fisttp | Fbstp => done.store = store(xs, x, op.size),
        Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp | Fimul | Fdiv | Fdivp
        | Fidiv | Fdivr | Fdivrp | Fidivr => {
            let (a, pop) = arith(x);
            if mem {
                xs.arith(a, 0, operand(x, op.size, b), false);
            } else {
                xs.arith(a, st(&op.a), Operand::St(st(&op.b)), pop);
            }
        }
        Fcom | Fcomp | Fucom | Fucomp | Ficom | Ficomp => {
            let signalling = !matches!(x, Fucom | Fucomp);
            let pops = u8::from(matches!(x, Fcomp | Fucomp | Ficomp));
            let src = if mem { operand(x, op.size, b) } else { Operand::St(st(&op.b).max(st(&op.a))) };
            xs.fcom(src, signalling, pops);
        }
        Fcompp => xs.fcom(Operand::St(1), true, 2),
        Fucompp => xs.fcom(Operand::St(1), false, 2),
        Ftst => xs.fcom(Operand::Mem(F80::ZERO, false), true, 0),
        Fcomi | Fcomip | Fucomi | Fucomip => {
            let i = st(&op.b);
            done.rflags = Some(xs.fcomi(i, matches!(x, Fcomi | Fcomip), matches!(x, Fcomip | Fucomip)));
        }
        Fxam => xs.fxam(),
        Fchs => xs.fchs(),
        Fabs => xs.fabs(),
        Fsqrt => xs.unary(fpu::sqrt),
        Frndint => xs.unary(fpu::rndint),
        Fscale => xs.fscale(),
        Fxtract => xs.fxtract(),
        Fprem => xs.fprem(false),
        Fprem1 => xs.fprem(true),
        Fsin => xs.fsin(),
        Fcos => xs.fcos(),
        Fsincos => xs.fsincos(),
        Fptan => xs.fptan(),
        Fpatan => xs.fpatan(),
        F2xm1 => xs.f2xm1(),
        Fyl2x => xs.fyl2x(),
        Fyl2xp1 => xs.fyl2xp1(),
        Fxch => xs.fxch(st(&op.b).max(st(&op.a))),
        Fcmovb | Fcmove | Fcmovbe | Fcmovu | Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu => {
            xs.fcmov(st(&op.b), flags.cond(fcmov_cond(x)));
        }
        Ffree => xs.ffree(st(&op.a)),
        Ffreep => xs.ffreep(st(&op.a)),
        Fincstp => xs.rotate(1),
        Fdecstp => xs.rotate(7),
        Fnop | Fwait => {}
        Fld1 | Fldl2t | Fldl2e | Fldpi | Fldlg2 | Fldln2 | Fldz => xs.push(constant(konst(x), rc), Exc::NONE),
        Fninit => xs.fninit(),
        Fnclex => xs.fnclex(),
        Fldcw => xs.fldcw(u16::from_le_bytes([b[0], b[1]])),
        Fnstcw => done.store = Some(image(&xs.cw.to_le_bytes())),
        Fnstsw => done.store = Some(image(&xs.status_word().to_le_bytes())),
        Fnstenv => done.store = Some(image(&save::fnstenv(s))),
        Fldenv => save::fldenv(s, b[..28].try_into().unwrap_or(&[0; 28])),
        Fnsave => done.store = Some(image(&save::fnsave(s))),
        Frstor => save::frstor(s, b),
    }
    done
}

/// FST/FSTP/FIST/FISTP/FISTTP/FBSTP to memory: the image, or `None` when
/// an unmasked exception stores nothing.
fn store(xs: &mut fpu::X87, x: X87Op, size: u8) -> Option<Image> {
    use X87Op::*;
    let pop = !matches!(x, Fst | Fist);
    let int_indefinite = |bits: u32| (1u64 << (bits - 1)).to_le_bytes();
    match (x, size) {
        (Fst | Fstp, 4) => {
            xs.store(pop, |v, cw| to_ieee(&SINGLE, v, cw), 0xffc0_0000).map(|v| image(&v.to_le_bytes()[..4]))
        }
        (Fst | Fstp, 8) => {
            xs.store(pop, |v, cw| to_ieee(&DOUBLE, v, cw), 0xfff8_0000_0000_0000).map(|v| image(&v.to_le_bytes()))
        }
        (Fstp, _) => {
            xs.store(true, |v, _| (v.to_bytes(), Exc::NONE, false), F80::INDEFINITE.to_bytes()).map(|v| image(&v))
        }
        (Fbstp, _) => {
            let mut indefinite = [0u8; 10];
            indefinite[7] = 0xc0;
            indefinite[8] = 0xff;
            indefinite[9] = 0xff;
            xs.store(true, to_bcd, indefinite).map(|v| image(&v))
        }
        (_, n) => {
            let bits = 8 * u32::from(n);
            let truncate = x == Fisttp;
            let indefinite = u64::from_le_bytes(int_indefinite(bits));
            xs.store(pop, |v, cw| to_int(v, bits, truncate, cw), indefinite)
                .map(|v| image(&v.to_le_bytes()[..usize::from(n)]))
        }
    }
}

/// The arithmetic of an arithmetic form, and whether it pops.
fn arith(x: X87Op) -> (Arith87, bool) {
    use X87Op::*;
    match x {
        Fadd | Fiadd => (Arith87::Add, false),
        Faddp => (Arith87::Add, true),
        Fsub | Fisub => (Arith87::Sub, false),
        Fsubp => (Arith87::Sub, true),
        Fsubr | Fisubr => (Arith87::SubR, false),
        Fsubrp => (Arith87::SubR, true),
        Fmul | Fimul => (Arith87::Mul, false),
        Fmulp => (Arith87::Mul, true),
        Fdiv | Fidiv => (Arith87::Div, false),
        Fdivp => (Arith87::Div, true),
        Fdivr | Fidivr => (Arith87::DivR, false),
        _ => (Arith87::DivR, true),
    }
}

/// The RFLAGS condition of an FCMOVcc (SDM Vol. 2 FCMOVcc): B (CF), E
/// (ZF), BE (CF or ZF), U (PF) and their negations, in Jcc numbering.
fn fcmov_cond(x: X87Op) -> Cond {
    use X87Op::*;
    Cond(match x {
        Fcmovb => 2,
        Fcmovnb => 3,
        Fcmove => 4,
        Fcmovne => 5,
        Fcmovbe => 6,
        Fcmovnbe => 7,
        Fcmovu => 10,
        _ => 11,
    })
}

/// The constant an FLDconst loads.
fn konst(x: X87Op) -> Const {
    use X87Op::*;
    match x {
        Fld1 => Const::One,
        Fldl2t => Const::L2t,
        Fldl2e => Const::L2e,
        Fldpi => Const::Pi,
        Fldlg2 => Const::Lg2,
        Fldln2 => Const::Ln2,
        _ => Const::Zero,
    }
}

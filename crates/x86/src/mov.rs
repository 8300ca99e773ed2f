//! Data transfer (SDM Vol. 1 5.1.1; Vol. 2 "MOV", "MOVZX", "MOVSX/MOVSXD",
//! "XCHG", "CMOVcc", "BSWAP", "XADD", "CMPXCHG", "CMPXCHG8B/CMPXCHG16B",
//! "XLAT", "MOVBE", "CBW/CWDE/CDQE", "CWD/CDQ/CQO") and LEA (Vol. 1
//! 5.1.13). Which operands an instruction writes, and at what width, is
//! each function's: a 32-bit register write zero-extends (Vol. 1
//! 3.4.1.1), so a register the instruction does not write must not be
//! put back.

use crate::arith::{add, sub};
use crate::cpu::{Cpu, Exception, Feature};
use crate::exec::{get, memory, next, offset, put, reg, set_reg};
use crate::flags::{Cond, Flags};
use crate::op::{Op, Opnd};
use crate::reg::{RAX, RBX, RCX, RDX};
use crate::{sign_bit, sign_extend};
use exitlab_arch::bits::rflags::ZF;

/// MOV r/m, r/m/imm.
#[inline(always)]
pub fn mov<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.b, op.size)?;
    put(c, &op.a, op.size, v)?;
    next(c, op)
}

/// MOVZX: the source zero-extended.
#[inline(always)]
pub fn movzx<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.b, op.size2)?;
    put(c, &op.a, op.size, v)?;
    next(c, op)
}

/// MOVSX, MOVSXD: the source sign-extended.
#[inline(always)]
pub fn movsx<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = sign_extend(get(c, &op.b, op.size2)?, op.size2);
    put(c, &op.a, op.size, v)?;
    next(c, op)
}

/// LEA: the operand's offset, no memory access (#UD for a register form).
#[inline(always)]
pub fn lea<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.b)?;
    let a = offset(c, &m);
    put(c, &op.a, op.size, a)?;
    next(c, op)
}

/// XCHG: both operands read, then both written.
#[inline(never)]
pub fn xchg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let a = get(c, &op.a, op.size)?;
    let b = get(c, &op.b, op.size)?;
    put(c, &op.a, op.size, b)?;
    put(c, &op.b, op.size, a)?;
    next(c, op)
}

/// CMOVcc: the source is read whatever the condition; a 32-bit destination
/// is zero-extended even when the move does not happen.
#[inline(never)]
pub fn cmov<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.b, op.size)?;
    if c.flags().cond(Cond(op.cc)) {
        put(c, &op.a, op.size, v)?;
    } else if op.size == 4 {
        let keep = get(c, &op.a, 4)?;
        put(c, &op.a, 4, keep)?;
    }
    next(c, op)
}

/// BSWAP r32/r64.
#[inline(never)]
pub fn bswap<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.a, op.size)?;
    let r = if op.size == 8 { v.swap_bytes() } else { u64::from((v as u32).swap_bytes()) };
    put(c, &op.a, op.size, r)?;
    next(c, op)
}

/// XADD: destination = sum, source = old destination.
#[inline(never)]
pub fn xadd<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let a = get(c, &op.a, size)?;
    let b = get(c, &op.b, size)?;
    let (r, f) = add(size, a, b);
    // The sum goes to the destination last, so `xadd r, r` leaves the sum;
    // a memory destination is written first so a fault there leaves the
    // register untouched.
    if matches!(op.a, Opnd::Mem(_)) {
        put(c, &op.a, size, r)?;
        put(c, &op.b, size, a)?;
    } else {
        put(c, &op.b, size, a)?;
        put(c, &op.a, size, r)?;
    }
    c.set_flags(f);
    next(c, op)
}

/// CMPXCHG: compare the accumulator with the destination; equal, the
/// source is stored; different, the destination is loaded into the
/// accumulator, and a memory destination is written back unchanged (the
/// locked cycle's write). A register destination is not written when they
/// differ: `cmpxchg ebx, ecx` with RBX = 0xaaaaaaaa00000005, EAX = 1 keeps
/// RBX whole on silicon (issue 12; an Intel and the AMD host agree), where
/// a write-back would zero-extend it.
#[inline(never)]
pub fn cmpxchg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let dst = get(c, &op.a, size)?;
    let acc = reg(c, RAX, size);
    let (_, f) = sub(size, acc, dst);
    if acc == dst {
        let src = get(c, &op.b, size)?;
        put(c, &op.a, size, src)?;
    } else {
        if matches!(op.a, Opnd::Mem(_)) {
            put(c, &op.a, size, dst)?;
        }
        set_reg(c, RAX, size, dst);
    }
    c.set_flags(f);
    next(c, op)
}

/// CMPXCHG8B m64 (`op.size` 8) and CMPXCHG16B m128 (16, #GP(0) unless
/// 16-byte aligned, #UD unless advertised): compares EDX:EAX (RDX:RAX)
/// with the operand; equal, ZF is set and ECX:EBX (RCX:RBX) is stored;
/// otherwise ZF is cleared, the operand is loaded into EDX:EAX (RDX:RAX)
/// and written back unchanged, as the locked cycle does. Other flags are
/// kept. The alignment is checked on the offset: segment bases are not
/// added (in 64-bit mode only FS and GS have one).
#[inline(never)]
pub fn cmpxchg8b<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    let half = op.size / 2;
    if op.size == 16 && (!c.has(Feature::Cx16) || at & 15 != 0) {
        let e = if c.has(Feature::Cx16) { Exception::gp(0) } else { Exception::ud() };
        return Err(c.exception(e));
    }
    c.check_write(m.seg, at, usize::from(op.size))?;
    let hi_at = at.wrapping_add(u64::from(half)) & crate::mask(m.asize);
    let (lo, hi) = (c.read(m.seg, at, half)?, c.read(m.seg, hi_at, half)?);
    let equal = lo == reg(c, RAX, half) && hi == reg(c, RDX, half);
    let (new_lo, new_hi) = if equal { (reg(c, RBX, half), reg(c, RCX, half)) } else { (lo, hi) };
    c.write(m.seg, at, half, new_lo)?;
    c.write(m.seg, hi_at, half, new_hi)?;
    if !equal {
        set_reg(c, RAX, half, lo);
        set_reg(c, RDX, half, hi);
    }
    let others = c.flags().bits() & !ZF;
    c.set_flags(Flags::known(others | if equal { ZF } else { 0 }));
    next(c, op)
}

/// XLAT: AL = seg:[rBX + AL], the offset at the address size.
#[inline(never)]
pub fn xlat<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m).wrapping_add(reg(c, RAX, 1)) & crate::mask(m.asize);
    let v = c.read(m.seg, at, 1)?;
    set_reg(c, RAX, 1, v);
    next(c, op)
}

/// MOVBE: a load or store with the bytes reversed (#UD unless
/// advertised).
#[inline(never)]
pub fn movbe<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.has(Feature::Movbe) {
        return Err(c.exception(Exception::ud()));
    }
    let v = get(c, &op.b, op.size)?;
    let swapped = v.swap_bytes() >> (64 - 8 * u32::from(op.size));
    put(c, &op.a, op.size, swapped)?;
    next(c, op)
}

/// CBW, CWDE, CDQE: the accumulator's low half sign-extended in place.
#[inline(never)]
pub fn cbw<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let half = op.size / 2;
    let v = sign_extend(reg(c, RAX, half), half);
    set_reg(c, RAX, op.size, v);
    next(c, op)
}

/// CWD, CDQ, CQO: rDX = the accumulator's sign.
#[inline(never)]
pub fn cwd<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let neg = reg(c, RAX, op.size) & sign_bit(op.size) != 0;
    set_reg(c, RDX, op.size, if neg { u64::MAX } else { 0 });
    next(c, op)
}

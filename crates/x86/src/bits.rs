//! Bit and byte instructions (SDM Vol. 1 5.1.6; Vol. 2 "BT", "BTS", "BTR",
//! "BTC", "BSF", "BSR", "SETcc", "POPCNT", "TZCNT", "LZCNT", "CRC32"). Flags the SDM
//! leaves undefined are kept, as Intel cores keep them.

use crate::cpu::Cpu;
use crate::exec::{get, next, offset, put};
use crate::flags::{flag, Cond, Flags};
use crate::op::{Kind, Op, Opnd};
use crate::sign_extend;
use exitlab_arch::bits::rflags::{CF, ZF};

/// BT, BTS, BTR, BTC: CF = the selected bit, which the last three then set,
/// clear or complement. A register bit offset with a memory operand
/// addresses a bit string that reaches outside the operand (Vol. 2 "BT":
/// bit-string addressing).
#[inline(never)]
pub fn bit_test<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let bits = u64::from(size) * 8;
    let off = get(c, &op.b, if matches!(op.b, Opnd::Imm(_)) { 1 } else { size })?;
    let bit = off & (bits - 1);
    let target = match (op.a, op.b) {
        (Opnd::Mem(m), Opnd::Reg(_)) => {
            let signed = sign_extend(off, size) as i64;
            let delta = ((signed >> bits.trailing_zeros()) * i64::from(size)) as u64;
            Some((m.seg, offset(c, &m).wrapping_add(delta)))
        }
        _ => None,
    };
    let v = match target {
        Some((seg, at)) => c.read(seg, at, size)?,
        None => get(c, &op.a, size)?,
    };
    let cf = (v >> bit) & 1 != 0;
    let r = match op.kind {
        Kind::Bts => v | 1 << bit,
        Kind::Btr => v & !(1 << bit),
        Kind::Btc => v ^ 1 << bit,
        _ => v,
    };
    if op.kind != Kind::Bt {
        match target {
            Some((seg, at)) => c.write(seg, at, size, r)?,
            None => put(c, &op.a, size, r)?,
        }
    }
    let others = c.flags().bits() & !CF;
    c.set_flags(Flags::known(others | flag(cf, CF)));
    next(c, op)
}

/// BSF, BSR: the lowest or highest set bit's index; a zero source sets ZF
/// and leaves the destination's value, which Intel processors write back
/// (a 32-bit register's upper half is cleared; the SDM says "undefined",
/// Linux's arch/x86/include/asm/bitops.h records the architects' answer;
/// AMD leaves the register whole).
#[inline(never)]
pub fn bit_scan<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.b, op.size)?;
    let old = c.flags().bits();
    if v == 0 {
        if op.size == 4 {
            let keep = get(c, &op.a, 4)?;
            put(c, &op.a, 4, keep)?;
        }
        c.set_flags(Flags::known((old & !ZF) | ZF));
    } else {
        let r = if op.kind == Kind::Bsf { v.trailing_zeros() } else { 63 - v.leading_zeros() };
        put(c, &op.a, op.size, u64::from(r))?;
        c.set_flags(Flags::known(old & !ZF));
    }
    next(c, op)
}

/// POPCNT (ZF for a zero source, other status flags clear), TZCNT and
/// LZCNT (CF for a zero source, ZF for a zero result).
#[inline(never)]
pub fn count<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let v = get(c, &op.b, size)?;
    let bits = u32::from(size) * 8;
    if op.kind == Kind::Popcnt {
        put(c, &op.a, size, u64::from(v.count_ones()))?;
        c.set_flags(Flags::known(if v == 0 { ZF } else { 0 }));
        return next(c, op);
    }
    let old = c.flags().bits();
    let r = if op.kind == Kind::Tzcnt { v.trailing_zeros().min(bits) } else { v.leading_zeros() - (64 - bits) };
    let r = if op.kind == Kind::Lzcnt && v == 0 { bits } else { r };
    put(c, &op.a, size, u64::from(r))?;
    c.set_flags(Flags::known((old & !(CF | ZF)) | flag(v == 0, CF) | flag(r == 0, ZF)));
    next(c, op)
}

/// SETcc r/m8.
#[inline(never)]
pub fn setcc<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = c.flags().cond(Cond(op.cc)) as u64;
    put(c, &op.a, 1, v)?;
    next(c, op)
}

/// CRC32 r32/r64, r/m8..r/m64 (SSE4.2): the destination's low 32 bits
/// continued over the source's bytes as CRC-32C ([`crate::fp::sse_str::crc32c`]),
/// zero-extended; no flag changes.
#[inline(never)]
pub fn crc32<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let data = get(c, &op.b, op.size2)?;
    let crc = get(c, &op.a, 4)? as u32;
    let r = crate::fp::sse_str::crc32c(crc, data, usize::from(op.size2));
    put(c, &op.a, op.size, u64::from(r))?;
    next(c, op)
}

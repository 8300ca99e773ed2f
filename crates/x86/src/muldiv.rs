//! Multiply and divide (SDM Vol. 1 5.1.2; Vol. 2 "MUL", "IMUL", "DIV",
//! "IDIV"). Products and dividends wider than the operand are passed as
//! (high, low) halves, as the instructions hold them in rDX:rAX (AH:AL for
//! bytes).

use crate::cpu::{Cpu, Exception};
use crate::exec::{get, next, put, reg, set_reg};
use crate::flags::{Flags, FlagsOp};
use crate::op::{Kind, Op};
use crate::reg::{RAX, RDX};
use crate::{mask, sign_extend, Size};

/// IMUL r, r/m and IMUL r, r/m, imm: the truncated signed product.
#[inline(always)]
pub fn imul_truncating<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let (x, y) = if op.kind == Kind::Imul2 {
        (get(c, &op.a, size)?, get(c, &op.b, size)?)
    } else {
        (get(c, &op.b, size)?, get(c, &op.c, size)?)
    };
    let (_, lo, f) = imul(size, x, y);
    put(c, &op.a, size, lo)?;
    c.set_flags(f);
    next(c, op)
}

/// MUL r/m and IMUL r/m: rDX:rAX (AX for bytes) = rAX * r/m.
#[inline(never)]
pub fn mul_rdx_rax<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let src = get(c, &op.a, size)?;
    let acc = reg(c, RAX, size);
    let (hi, lo, f) = if op.kind == Kind::Mul { mul(size, acc, src) } else { imul(size, acc, src) };
    if size == 1 {
        set_reg(c, RAX, 2, hi << 8 | lo);
    } else {
        set_reg(c, RAX, size, lo);
        set_reg(c, RDX, size, hi);
    }
    c.set_flags(f);
    next(c, op)
}

/// DIV and IDIV r/m: rAX = quotient, rDX = remainder (AL, AH for bytes);
/// #DE on a zero divisor or a quotient that does not fit.
#[inline(never)]
pub fn div_rdx_rax<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let d = get(c, &op.a, size)?;
    let (hi, lo) =
        if size == 1 { (reg(c, RAX, 2) >> 8, reg(c, RAX, 1)) } else { (reg(c, RDX, size), reg(c, RAX, size)) };
    let res = if op.kind == Kind::Div { div(size, hi, lo, d) } else { idiv(size, hi, lo, d) };
    let (q, r) = res.map_err(|_| c.exception(Exception::de()))?;
    if size == 1 {
        set_reg(c, RAX, 2, r << 8 | q);
    } else {
        set_reg(c, RAX, size, q);
        set_reg(c, RDX, size, r);
    }
    next(c, op)
}

/// Flags after a multiply: CF = OF = the product did not fit the low half
/// (lazily: see [`FlagsOp::Mul`] for the flags the SDM leaves undefined).
#[inline(always)]
fn mul_flags(size: Size, lo: u64, overflow: bool) -> Flags {
    Flags::new(FlagsOp::Mul, size, 0, 0, lo, overflow as u8)
}

/// Unsigned multiply of the low `size` bytes: (high, low, flags).
pub fn mul(size: Size, a: u64, b: u64) -> (u64, u64, Flags) {
    let bits = size as u32 * 8;
    let p = (a & mask(size)) as u128 * (b & mask(size)) as u128;
    let lo = p as u64 & mask(size);
    let hi = (p >> bits) as u64 & mask(size);
    (hi, lo, mul_flags(size, lo, hi != 0))
}

/// Signed multiply: (high, low, flags).
#[inline]
pub fn imul(size: Size, a: u64, b: u64) -> (u64, u64, Flags) {
    if size == 8 {
        let (lo, overflow) = (a as i64).overflowing_mul(b as i64);
        if !overflow {
            let hi = if lo < 0 { u64::MAX } else { 0 };
            return (hi, lo as u64, mul_flags(8, lo as u64, false));
        }
    }
    let bits = size as u32 * 8;
    let p = sign_extend(a, size) as i64 as i128 * sign_extend(b, size) as i64 as i128;
    let lo = p as u64 & mask(size);
    let hi = (p >> bits) as u64 & mask(size);
    let fits = sign_extend(lo, size) as i64 as i128 == p;
    (hi, lo, mul_flags(size, lo, !fits))
}

/// DIV or IDIV would raise #DE (divide by zero or quotient overflow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivideError;

/// Unsigned divide of (high:low) by `d`: (quotient, remainder).
pub fn div(size: Size, high: u64, low: u64, d: u64) -> Result<(u64, u64), DivideError> {
    let bits = size as u32 * 8;
    let d = (d & mask(size)) as u128;
    if d == 0 {
        return Err(DivideError);
    }
    let n = ((high & mask(size)) as u128) << bits | (low & mask(size)) as u128;
    let q = n / d;
    if q > mask(size) as u128 {
        return Err(DivideError);
    }
    Ok((q as u64, (n % d) as u64))
}

/// Signed divide of (high:low) by `d`: (quotient, remainder), truncating
/// toward zero; the remainder has the dividend's sign.
pub fn idiv(size: Size, high: u64, low: u64, d: u64) -> Result<(u64, u64), DivideError> {
    let bits = size as u32 * 8;
    let d = sign_extend(d, size) as i64 as i128;
    if d == 0 {
        return Err(DivideError);
    }
    let raw = ((high & mask(size)) as u128) << bits | (low & mask(size)) as u128;
    let n = ((raw << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
    let q = n.checked_div(d).ok_or(DivideError)?;
    let half = 1i128 << (bits - 1);
    if q < -half || q >= half {
        return Err(DivideError);
    }
    Ok((q as u64 & mask(size), (n % d) as u64 & mask(size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply() {
        assert_eq!(mul(1, 0x80, 2).0, 1);
        assert!(mul(1, 0x80, 2).2.cf());
        assert!(!mul(8, 3, 5).2.of());
        let (hi, lo, f) = imul(4, 0xffff_ffff, 2); // -1 * 2
        assert_eq!((hi, lo, f.cf()), (0xffff_ffff, 0xffff_fffe, false));
        let (_, _, f) = imul(1, 0x40, 2); // 64 * 2 = 128 does not fit i8
        assert!(f.of());
        let (hi, lo, _) = mul(8, u64::MAX, u64::MAX);
        assert_eq!((hi, lo), (u64::MAX - 1, 1));
    }

    #[test]
    fn multiply_flags_are_what_intel_cores_produce() {
        use exitlab_arch::bits::rflags::{CF, OF, PF, SF};
        // 0x80 * 2 (8-bit): 0x100 does not fit; low half 0: PF, no ZF.
        assert_eq!(mul(1, 0x80, 2).2.bits(), CF | OF | PF);
        // -1 * 1 (32-bit) fits; low half 0xffffffff: SF, PF (0xff has 8 ones).
        assert_eq!(imul(4, 0xffff_ffff, 1).2.bits(), SF | PF);
        // 3 * 1 (64-bit): low byte 3 has even parity.
        assert_eq!(imul(8, 3, 1).2.bits(), PF);
    }

    #[test]
    fn divide() {
        assert_eq!(div(4, 0, 100, 7), Ok((14, 2)));
        assert_eq!(div(4, 0, 1, 0), Err(DivideError));
        assert_eq!(div(1, 1, 0, 1), Err(DivideError)); // 256 / 1 overflows AL
        assert_eq!(idiv(4, 0xffff_ffff, (-7i32) as u32 as u64, 2), Ok(((-3i32) as u32 as u64, (-1i32) as u32 as u64)));
        assert_eq!(idiv(8, u64::MAX, 1 << 63, u64::MAX), Err(DivideError)); // i64::MIN / -1
        assert_eq!(idiv(2, 0, 100, (-10i16) as u16 as u64), Ok(((-10i16) as u16 as u64, 0)));
    }
}

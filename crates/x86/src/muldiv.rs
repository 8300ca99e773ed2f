//! MUL, IMUL and DIV, IDIV. Products and dividends wider than the operand
//! are passed as (high, low) halves, as the instructions hold them in
//! rDX:rAX (AH:AL for bytes).

use crate::flags::{parity, Flags};
use crate::{mask, sign_bit, sign_extend, Size};
use exitlab_arch::bits::rflags::{CF, OF, PF, SF, ZF};

/// Flags after a multiply: CF = OF = the product did not fit the low half.
/// SF, ZF, PF are undefined in the SDM; Intel cores derive SF and PF from
/// the low half and clear ZF, which is what this returns.
fn mul_flags(size: Size, lo: u64, overflow: bool) -> Flags {
    let mut f = if overflow { CF | OF } else { 0 };
    if lo & sign_bit(size) != 0 {
        f |= SF;
    }
    if parity(lo) {
        f |= PF;
    }
    Flags::known(f & !ZF)
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
    fn divide() {
        assert_eq!(div(4, 0, 100, 7), Ok((14, 2)));
        assert_eq!(div(4, 0, 1, 0), Err(DivideError));
        assert_eq!(div(1, 1, 0, 1), Err(DivideError)); // 256 / 1 overflows AL
        assert_eq!(idiv(4, 0xffff_ffff, (-7i32) as u32 as u64, 2), Ok(((-3i32) as u32 as u64, (-1i32) as u32 as u64)));
        assert_eq!(idiv(8, u64::MAX, 1 << 63, u64::MAX), Err(DivideError)); // i64::MIN / -1
        assert_eq!(idiv(2, 0, 100, (-10i16) as u16 as u64), Ok(((-10i16) as u16 as u64, 0)));
    }
}

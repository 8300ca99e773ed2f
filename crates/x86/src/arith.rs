//! Binary arithmetic and logic (SDM Vol. 1 5.1.2, 5.1.4; Vol. 2 "ADD",
//! "ADC", "SUB", "SBB", "CMP", "INC", "DEC", "NEG", "AND", "OR", "XOR",
//! "NOT", "TEST"): results masked to the operand size, status flags as a
//! lazy [`Flags`] record (Vol. 1 3.4.3.1, Appendix A).

use crate::cpu::Cpu;
use crate::exec::{get, next, put};
use crate::flags::{Flags, FlagsOp};
use crate::op::{Kind, Op};
use crate::{mask, Size};

/// ADD, ADC, SUB, SBB, AND, OR, XOR, CMP, TEST: `a op= b`, flags from the
/// result (CMP and TEST keep `a`).
#[inline(always)]
pub fn binary<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let a = get(c, &op.a, size)?;
    let b = get(c, &op.b, size)?;
    let (r, f) = binary_result(op.kind, size, a, b, &c.flags());
    if writes_result(op.kind) {
        put(c, &op.a, size, r)?;
    }
    c.set_flags(f);
    next(c, op)
}

/// The result and flags of binary op `kind` on `a` and `b` (`old`: the
/// flags before, for ADC's and SBB's carry-in).
#[inline(always)]
pub fn binary_result(kind: Kind, size: Size, a: u64, b: u64, old: &Flags) -> (u64, Flags) {
    match kind {
        Kind::Add => add(size, a, b),
        Kind::Adc => adc(size, a, b, old.cf()),
        Kind::Sub | Kind::Cmp => sub(size, a, b),
        Kind::Sbb => sbb(size, a, b, old.cf()),
        Kind::And | Kind::Test => (a & b, logic(size, a & b)),
        Kind::Or => (a | b, logic(size, a | b)),
        _ => (a ^ b, logic(size, a ^ b)),
    }
}

/// Whether binary op `kind` writes its destination (CMP and TEST do not).
#[inline(always)]
pub fn writes_result(kind: Kind) -> bool {
    !matches!(kind, Kind::Cmp | Kind::Test)
}

/// INC, DEC, NEG, NOT (NOT changes no flags).
#[inline(always)]
pub fn unary<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let a = get(c, &op.a, size)?;
    let (r, f) = unary_result(op.kind, size, a, c.flags());
    put(c, &op.a, size, r)?;
    c.set_flags(f);
    next(c, op)
}

/// The result and flags of unary op `kind` on `a` (`old`: the flags
/// before, which INC and DEC keep CF of and NOT keeps whole).
#[inline(always)]
pub fn unary_result(kind: Kind, size: Size, a: u64, old: Flags) -> (u64, Flags) {
    match kind {
        Kind::Inc => inc(size, a, old.cf()),
        Kind::Dec => dec(size, a, old.cf()),
        Kind::Neg => neg(size, a),
        _ => (!a & mask(size), old),
    }
}

#[inline(always)]
pub fn add(size: Size, a: u64, b: u64) -> (u64, Flags) {
    let r = a.wrapping_add(b) & mask(size);
    (r, Flags::new(FlagsOp::Add, size, a, b, r, 0))
}

#[inline(always)]
pub fn adc(size: Size, a: u64, b: u64, cf: bool) -> (u64, Flags) {
    let r = a.wrapping_add(b).wrapping_add(cf as u64) & mask(size);
    (r, Flags::new(FlagsOp::Adc, size, a, b, r, cf as u8))
}

#[inline(always)]
pub fn sub(size: Size, a: u64, b: u64) -> (u64, Flags) {
    let r = a.wrapping_sub(b) & mask(size);
    (r, Flags::new(FlagsOp::Sub, size, a, b, r, 0))
}

#[inline(always)]
pub fn sbb(size: Size, a: u64, b: u64, cf: bool) -> (u64, Flags) {
    let r = a.wrapping_sub(b).wrapping_sub(cf as u64) & mask(size);
    (r, Flags::new(FlagsOp::Sbb, size, a, b, r, cf as u8))
}

/// Flags of AND/OR/XOR/TEST with result `r`.
#[inline(always)]
pub fn logic(size: Size, r: u64) -> Flags {
    Flags::new(FlagsOp::Logic, size, 0, 0, r & mask(size), 0)
}

#[inline(always)]
pub fn inc(size: Size, a: u64, cf: bool) -> (u64, Flags) {
    let r = a.wrapping_add(1) & mask(size);
    (r, Flags::new(FlagsOp::Inc, size, a, 1, r, cf as u8))
}

#[inline(always)]
pub fn dec(size: Size, a: u64, cf: bool) -> (u64, Flags) {
    let r = a.wrapping_sub(1) & mask(size);
    (r, Flags::new(FlagsOp::Dec, size, a, 1, r, cf as u8))
}

/// NEG: 0 - a (CF set unless a is zero).
#[inline(always)]
pub fn neg(size: Size, a: u64) -> (u64, Flags) {
    sub(size, 0, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exitlab_arch::bits::rflags::*;
    use proptest::prelude::*;

    #[test]
    fn examples_from_the_manual() {
        assert_eq!(add(4, 0xffff_ffff, 1).0, 0);
        assert!(add(4, 0xffff_ffff, 1).1.cf());
        assert_eq!(adc(1, 0xfe, 1, true).0, 0);
        assert_eq!(sbb(2, 0, 0, true), (0xffff, sbb(2, 0, 0, true).1));
        assert!(sbb(2, 0, 0, true).1.cf());
        let (r, f) = neg(8, 0);
        assert_eq!((r, f.cf()), (0, false));
        let (r, f) = neg(1, 0x80);
        assert_eq!((r, f.of(), f.cf()), (0x80, true, true));
        assert_eq!(logic(1, 0x80).bits(), SF);
    }

    proptest! {
        /// Against wide arithmetic: the carry is the bit past the operand,
        /// the overflow is the signed result not fitting.
        #[test]
        fn add_sub_flags_match_wide_arithmetic(a: u64, b: u64, size in prop::sample::select(vec![1u8, 2, 4, 8]), cin: bool) {
            let m = mask(size);
            let (a, b) = (a & m, b & m);
            let bits = size as u32 * 8;
            let sx = |v: u64| ((v << (64 - bits)) as i64 >> (64 - bits)) as i128;
            let (r, f) = adc(size, a, b, cin);
            let wide = a as u128 + b as u128 + cin as u128;
            prop_assert_eq!(r as u128, wide & m as u128);
            prop_assert_eq!(f.cf(), wide > m as u128);
            let sw = sx(a) + sx(b) + cin as i128;
            prop_assert_eq!(f.of(), sw != sx(r));
            let (r, f) = sbb(size, a, b, cin);
            prop_assert_eq!(f.cf(), (a as u128) < b as u128 + cin as u128);
            let sw = sx(a) - sx(b) - cin as i128;
            prop_assert_eq!(f.of(), sw != sx(r));
            prop_assert_eq!(f.zf(), r == 0);
        }
    }
}

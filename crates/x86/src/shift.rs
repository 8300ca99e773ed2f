//! Shifts and rotates (SDM Vol. 1 5.1.5; Vol. 2 "SAL/SAR/SHL/SHR",
//! "RCL/RCR/ROL/ROR", "SHLD", "SHRD"). The count is masked to 5 bits (6 for
//! 64-bit operands); a masked count of 0 changes no flags. Where the SDM
//! leaves a flag undefined (OF for counts above 1, AF), these functions
//! produce what current Intel cores produce for the common cases, and
//! exitlab's differential tests do not compare those bits.

use crate::cpu::Cpu;
use crate::exec::{get, next, put};
use crate::flags::{flag, parity, Flags, FlagsOp};
use crate::op::{Kind, Op};
use crate::{mask, sign_bit, sign_extend, Size};
use exitlab_arch::bits::rflags::{CF, OF, PF, SF, ZF};

/// SHL, SHR, SAR, ROL, ROR, RCL, RCR r/m by 1, imm8 or CL.
#[inline(always)]
pub fn shift<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let a = get(c, &op.a, size)?;
    let n = get(c, &op.b, 1)?;
    let old = c.flags();
    let (r, f) = match op.kind {
        Kind::Shl => shl(size, a, n, old),
        Kind::Shr => shr(size, a, n, old),
        Kind::Sar => sar(size, a, n, old),
        Kind::Rol => rol(size, a, n, old),
        Kind::Ror => ror(size, a, n, old),
        Kind::Rcl => rcl(size, a, n, old),
        _ => rcr(size, a, n, old),
    };
    put(c, &op.a, size, r)?;
    c.set_flags(f);
    next(c, op)
}

/// SHLD and SHRD r/m, r, imm8 or CL.
#[inline(never)]
pub fn double<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let a = get(c, &op.a, size)?;
    let b = get(c, &op.b, size)?;
    let n = get(c, &op.c, 1)?;
    let old = c.flags();
    let (r, f) = if op.kind == Kind::Shld { shld(size, a, b, n, old) } else { shrd(size, a, b, n, old) };
    put(c, &op.a, size, r)?;
    c.set_flags(f);
    next(c, op)
}

/// The masked shift count for an operand of `size` bytes.
#[inline(always)]
pub fn count(size: Size, c: u64) -> u32 {
    (c & if size == 8 { 63 } else { 31 }) as u32
}

#[inline(always)]
fn szp(size: Size, r: u64) -> u64 {
    let mut f = 0;
    if r & mask(size) == 0 {
        f |= ZF;
    }
    if r & sign_bit(size) != 0 {
        f |= SF;
    }
    if parity(r) {
        f |= PF;
    }
    f
}

fn with_cf_of(old: &Flags, cf: bool, of: bool) -> Flags {
    let keep = old.bits() & !(CF | OF);
    Flags::known(keep | flag(cf, CF) | flag(of, OF))
}

/// SHL/SAL. Returns the result and the new flags (the old ones if c = 0).
#[inline]
pub fn shl(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let c = count(size, c);
    if c == 0 {
        return (a & mask(size), old);
    }
    let bits = size as u32 * 8;
    let wide = (a as u128 & mask(size) as u128) << c;
    let r = wide as u64 & mask(size);
    let cf = (wide >> bits) & 1 != 0;
    (r, Flags::new(FlagsOp::Shl, size, a, u64::from(c), r, cf as u8))
}

/// SHR.
#[inline]
pub fn shr(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let c = count(size, c);
    if c == 0 {
        return (a & mask(size), old);
    }
    let a = a & mask(size);
    let r = if c >= 64 { 0 } else { a >> c };
    let cf = if c > 64 { false } else { (a >> (c - 1)) & 1 != 0 };
    let of = a & sign_bit(size) != 0;
    (r, Flags::known(szp(size, r) | flag(cf, CF) | flag(of, OF)))
}

/// SAR.
#[inline]
pub fn sar(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let c = count(size, c);
    if c == 0 {
        return (a & mask(size), old);
    }
    let s = sign_extend(a, size) as i64;
    let r = (s >> c.min(63)) as u64 & mask(size);
    let cf = (s >> (c - 1).min(63)) & 1 != 0;
    (r, Flags::known(szp(size, r) | flag(cf, CF)))
}

/// Rotates `a` by the masked count, left or right; `None` for a masked
/// count of 0 (flags kept). A count that is a multiple of the width still
/// updates the flags from the unchanged value.
fn rotate(size: Size, a: u64, c: u64, left: bool) -> Option<u64> {
    let bits = size as u32 * 8;
    let masked = count(size, c);
    if masked == 0 {
        return None;
    }
    let c = masked % bits;
    let a = a & mask(size);
    if c == 0 {
        return Some(a);
    }
    let r = if left { (a << c) | (a >> (bits - c)) } else { (a >> c) | (a << (bits - c)) };
    Some(r & mask(size))
}

/// ROL: only CF and OF change.
pub fn rol(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let Some(r) = rotate(size, a, c, true) else { return (a & mask(size), old) };
    let cf = r & 1 != 0;
    let of = (r & sign_bit(size) != 0) != cf;
    (r, with_cf_of(&old, cf, of))
}

/// ROR: only CF and OF change.
pub fn ror(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let Some(r) = rotate(size, a, c, false) else { return (a & mask(size), old) };
    let msb = r & sign_bit(size) != 0;
    let msb2 = r & (sign_bit(size) >> 1) != 0;
    (r, with_cf_of(&old, msb, msb != msb2))
}

/// Rotates the size+1-bit value CF:a by the masked count, left or right:
/// the result and the new CF, or `None` for a count of 0 (flags kept).
fn rotate_through_carry(size: Size, a: u64, c: u64, old: &Flags, left: bool) -> Option<(u64, bool)> {
    let bits = size as u32 * 8;
    let c = count(size, c) % (bits + 1);
    if c == 0 {
        return None;
    }
    let v = (a as u128 & mask(size) as u128) | (old.cf() as u128) << bits;
    let width = bits + 1;
    let rot = if left { (v << c) | (v >> (width - c)) } else { (v >> c) | (v << (width - c)) };
    let rot = rot & ((1u128 << width) - 1);
    Some((rot as u64 & mask(size), (rot >> bits) & 1 != 0))
}

/// RCL: rotate left through CF.
pub fn rcl(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let Some((r, cf)) = rotate_through_carry(size, a, c, &old, true) else { return (a & mask(size), old) };
    let of = (r & sign_bit(size) != 0) != cf;
    (r, with_cf_of(&old, cf, of))
}

/// RCR: rotate right through CF.
pub fn rcr(size: Size, a: u64, c: u64, old: Flags) -> (u64, Flags) {
    let Some((r, cf)) = rotate_through_carry(size, a, c, &old, false) else { return (a & mask(size), old) };
    let msb = r & sign_bit(size) != 0;
    let msb2 = r & (sign_bit(size) >> 1) != 0;
    (r, with_cf_of(&old, cf, msb != msb2))
}

/// SHLD dst, src, count (16/32/64-bit). For a 16-bit operand a count
/// above 16 leaves the result undefined; this returns a 48-bit funnel shift
/// of dst:src:dst, as Intel cores do.
pub fn shld(size: Size, dst: u64, src: u64, c: u64, old: Flags) -> (u64, Flags) {
    let c = count(size, c);
    if c == 0 {
        return (dst & mask(size), old);
    }
    let bits = size as u32 * 8;
    let (d, s) = (dst & mask(size), src & mask(size));
    let (r, cf) = if c < bits {
        (((d << c) | (s >> (bits - c))) & mask(size), (d >> (bits - c)) & 1 != 0)
    } else {
        let wide = (d as u128) << (2 * bits) | (s as u128) << bits | d as u128;
        let shifted = wide << c;
        ((shifted >> (2 * bits)) as u64 & mask(size), (shifted >> (3 * bits)) & 1 != 0)
    };
    let of = ((r ^ d) & sign_bit(size)) != 0;
    (r, Flags::known(szp(size, r) | flag(cf, CF) | flag(of, OF)))
}

/// SHRD dst, src, count.
pub fn shrd(size: Size, dst: u64, src: u64, c: u64, old: Flags) -> (u64, Flags) {
    let c = count(size, c);
    if c == 0 {
        return (dst & mask(size), old);
    }
    let bits = size as u32 * 8;
    let (d, s) = (dst & mask(size), src & mask(size));
    let (r, cf) = if c < bits {
        (((d >> c) | (s << (bits - c))) & mask(size), (d >> (c - 1)) & 1 != 0)
    } else {
        let wide = (d as u128) << (2 * bits) | (s as u128) << bits | d as u128;
        ((wide >> c) as u64 & mask(size), (wide >> (c - 1)) & 1 != 0)
    };
    let of = ((r ^ d) & sign_bit(size)) != 0;
    (r, Flags::known(szp(size, r) | flag(cf, CF) | flag(of, OF)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_follow_the_manual() {
        let f0 = Flags::known(0);
        let (r, f) = shl(1, 0x81, 1, f0);
        assert_eq!(r, 0x02);
        assert!(f.cf() && f.of());
        let (r, f) = shr(4, 0x8000_0001, 1, f0);
        assert_eq!(r, 0x4000_0000);
        assert!(f.cf() && f.of());
        let (r, f) = sar(1, 0x80, 7, f0);
        assert_eq!(r, 0xff);
        assert!(!f.cf() && f.sf());
        // Count 0 leaves flags untouched; counts mask to 5 bits.
        let marked = Flags::known(ZF | CF);
        assert_eq!(shl(4, 5, 32, marked), (5, marked));
        assert_eq!(shl(8, 1, 64, marked).1, marked);
        assert_eq!(shl(8, 1, 63, f0).0, 1 << 63);
    }

    /// SHL's lazy record gives the bits the eager computation gave (the
    /// result's SF, ZF, PF, the last bit out as CF, OF = CF ^ SF, AF
    /// clear) for every size and count.
    #[test]
    fn shl_records_evaluate_as_the_eager_flags() {
        for size in [1u8, 2, 4, 8] {
            for a in [0u64, 1, 0x81, 0x4000_0000_8000_4081, u64::MAX, 0x5a5a_5a5a_5a5a_5a5a] {
                for c in 1..=count(size, 63) {
                    let (r, f) = shl(size, a, u64::from(c), Flags::known(0));
                    let bits = u32::from(size) * 8;
                    let wide = (a as u128 & mask(size) as u128) << c;
                    let cf = (wide >> bits) & 1 != 0;
                    let of = (r & sign_bit(size) != 0) != cf;
                    assert_eq!(f.bits(), szp(size, r) | flag(cf, CF) | flag(of, OF), "{size} {a:#x} {c}");
                }
            }
        }
    }

    #[test]
    fn rotates_touch_only_cf_and_of() {
        let old = Flags::known(ZF | SF | PF);
        let (r, f) = rol(1, 0x81, 1, old);
        assert_eq!(r, 0x03);
        assert_eq!(f.bits() & (ZF | SF | PF), ZF | SF | PF);
        assert!(f.cf());
        let (r, f) = ror(2, 1, 1, old);
        assert_eq!(r, 0x8000);
        assert!(f.cf() && f.of());
        let (r, f) = rcl(1, 0x80, 1, Flags::known(0));
        assert_eq!((r, f.cf()), (0, true));
        let (r, f) = rcr(1, 0x01, 1, Flags::known(CF));
        assert_eq!((r, f.cf()), (0x80, true));
        // 8-bit RCL by 9 is a full turn through CF.
        assert_eq!(rcl(1, 0x5a, 9, Flags::known(CF)).0, 0x5a);
    }

    #[test]
    fn double_shifts() {
        let f0 = Flags::known(0);
        assert_eq!(shld(4, 0x1234_5678, 0x9abc_def0, 8, f0).0, 0x3456_789a);
        assert_eq!(shrd(4, 0x1234_5678, 0x9abc_def0, 8, f0).0, 0xf012_3456);
        assert_eq!(shld(8, 1, 1 << 63, 1, f0).0, 3);
    }
}

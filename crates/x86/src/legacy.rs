//! Instructions of the legacy modes only (SDM Vol. 2 "AAA", "AAS", "DAA",
//! "DAS", "AAD", "AAM", "SALC", "BOUND"): decimal adjustment of AL, and
//! array bounds. In 64-bit mode their encodings are invalid, so the
//! decoder makes them #UD before they get here. Flags the SDM leaves
//! undefined are set as current Intel cores set them: SF, ZF and PF from
//! the result (kvm-unit-tests' realmode test checks DAS's against a
//! silicon table).

use crate::cpu::{Cpu, Exception};
use crate::exec::{get, memory, next, offset, reg, set_reg};
use crate::flags::{flag, parity, Flags};
use crate::op::{Kind, Op, Opnd};
use crate::reg::RAX;
use crate::{mask, sign_extend};
use exitlab_arch::bits::rflags::{AF, CF, PF, SF, ZF};
use exitlab_arch::vector;

/// SF, ZF and PF of a byte result, with `cf` and `af`; OF clear.
fn byte_flags(al: u8, cf: bool, af: bool) -> Flags {
    let f = flag(al & 0x80 != 0, SF) | flag(al == 0, ZF) | flag(parity(u64::from(al)), PF);
    Flags::known(f | flag(cf, CF) | flag(af, AF))
}

/// AAA, AAS, DAA, DAS.
#[inline(never)]
pub fn adjust<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let ax = reg(c, RAX, 2) as u16;
    let f = c.flags();
    let (al, (cf, af)) = ((ax & 0xff) as u8, (f.cf(), f.af()));
    let low_adjust = al & 0xf > 9 || af;
    let (new_ax, flags) = match op.kind {
        Kind::Aaa | Kind::Aas => {
            let ax = if !low_adjust {
                ax
            } else if op.kind == Kind::Aaa {
                ax.wrapping_add(0x106)
            } else {
                (ax.wrapping_sub(6) & 0xff) | ((ax >> 8).wrapping_sub(1) << 8)
            };
            let ax = ax & 0xff0f;
            (ax, byte_flags(ax as u8, low_adjust, low_adjust))
        }
        Kind::Daa => {
            // The carry out of the low adjustment is overwritten by the
            // high one's test (SDM "DAA").
            let mut r = if low_adjust { al.wrapping_add(6) } else { al };
            let high = al > 0x99 || cf;
            if high {
                r = r.wrapping_add(0x60);
            }
            ((ax & 0xff00) | u16::from(r), byte_flags(r, high, low_adjust))
        }
        _ => {
            let (mut r, mut new_cf) = (al, false);
            if low_adjust {
                let (v, borrow) = r.overflowing_sub(6);
                r = v;
                new_cf = cf || borrow;
            }
            if al > 0x99 || cf {
                r = r.wrapping_sub(0x60);
                new_cf = true;
            }
            ((ax & 0xff00) | u16::from(r), byte_flags(r, new_cf, low_adjust))
        }
    };
    set_reg(c, RAX, 2, u64::from(new_ax));
    c.set_flags(flags);
    next(c, op)
}

/// AAD imm8: AL = AL + AH x imm8, AH = 0. AAM imm8: AH = AL / imm8, AL =
/// AL mod imm8 (#DE for 0). SF, ZF, PF from AL; OF, AF, CF clear.
#[inline(never)]
pub fn ascii_multiply_divide<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let base = get(c, &op.a, 1)? as u8;
    let ax = reg(c, RAX, 2) as u16;
    let (al, ah) = (ax as u8, (ax >> 8) as u8);
    let new_ax = if op.kind == Kind::Aad {
        u16::from(al.wrapping_add(ah.wrapping_mul(base)))
    } else {
        if base == 0 {
            return Err(c.exception(Exception::de()));
        }
        u16::from(al / base) << 8 | u16::from(al % base)
    };
    set_reg(c, RAX, 2, u64::from(new_ax));
    c.set_flags(byte_flags(new_ax as u8, false, false));
    next(c, op)
}

/// SALC: AL = 0xff with CF, else 0; flags unchanged.
#[inline(never)]
pub fn salc<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = if c.flags().cf() { 0xff } else { 0 };
    set_reg(c, RAX, 1, v);
    next(c, op)
}

/// BOUND r, m: #BR unless lower <= r <= upper (signed), the bounds a pair
/// of operand-size words in memory.
#[inline(never)]
pub fn bound<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let m = memory(c, &op.b)?;
    let at = offset(c, &m);
    let lower = sign_extend(c.read(m.seg, at, size)?, size) as i64;
    let upper = sign_extend(c.read(m.seg, at.wrapping_add(u64::from(size)) & mask(m.asize), size)?, size) as i64;
    let Opnd::Reg(n) = op.a else { return Err(c.unsupported()) };
    let v = sign_extend(reg(c, n, size), size) as i64;
    if v < lower || v > upper {
        return Err(c.exception(Exception { vector: vector::BR, error_code: None }));
    }
    next(c, op)
}

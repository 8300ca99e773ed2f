//! The x87 transcendental instructions compilers and libm emit: FSIN,
//! FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1 (SDM Vol. 1
//! §8.3.10-8.3.11 and Vol. 2 per instruction).
//!
//! What is exact and what is bounded: the SDM promises less than one ulp
//! of error (1.5 ulp in directed rounding) and leaves the algorithm to the
//! implementation. This model computes each function to about 100 bits
//! (rustc_apfloat in a 100-bit format, series after argument reduction)
//! and rounds once to 64 bits by RC, so it returns the correctly rounded
//! result, with these measured exceptions where silicon is not correctly
//! rounded and this model follows it: below 2^-68 FSIN, FPTAN and FSINCOS
//! return the operand and FCOS returns 1, as if exact but with PE and C1
//! clear; FPTAN of |x| < 2^-33 lands just below |x|. FSIN, FCOS, FSINCOS
//! and FPTAN reduce their argument modulo π/2 with the FPU's 66-bit π
//! (SDM Vol. 1 §8.3.8), as silicon does. Against 1,600 silicon results
//! (tests/x87_silicon.rs) 23 still differ by one ulp — moderate arguments
//! where silicon's own algorithm rounds the other way — and the test keeps
//! that count from growing. The special cases (zeros, infinities, NaNs,
//! out-of-range arguments with C2, invalid operands) and the flags follow
//! the SDM's tables and silicon exactly.

use super::round::{self, Unpacked};
use super::x87::{finish, propagate, Class80, Cw, Out, F80, X87};
use super::Exc;
use rustc_apfloat::ieee::{IeeeFloat, Semantics};
use rustc_apfloat::{Float, Round};

/// The working format: a 100-bit significand, 17-bit exponent.
pub struct WorkS;

impl Semantics for WorkS {
    const BITS: usize = 1 + WEXP_BITS as usize + WFRAC as usize;
    const EXP_BITS: usize = WEXP_BITS as usize;
}

type W = IeeeFloat<WorkS>;
const WFRAC: u32 = 99;
/// 17 exponent bits: a product of two x87 denormals (about 2^-32890)
/// stays normal.
const WEXP_BITS: u32 = 17;
const WBIAS: i32 = (1 << (WEXP_BITS - 1)) - 1;
const RN: Round = Round::NearestTiesToEven;

fn w(u: Unpacked) -> W {
    let bits = ((u.sign as u128) << (WEXP_BITS + WFRAC))
        | (((u.exp + WBIAS) as u128) << WFRAC)
        | ((u.sig >> 28) & ((1u128 << WFRAC) - 1));
    W::from_bits(bits)
}

fn wi(v: i64) -> W {
    W::from_i128(v as i128).value
}

/// A working value as an inexact Unpacked (a sticky bit below its 100
/// bits: no transcendental result here is exactly representable).
fn unw(x: W) -> Unpacked {
    let bits = x.to_bits();
    let exp = ((bits >> WFRAC) & ((1 << WEXP_BITS) - 1)) as i32 - WBIAS;
    let sig = ((bits & ((1u128 << WFRAC) - 1)) | (1u128 << WFRAC)) << 28 | 1;
    Unpacked { sign: x.is_negative(), exp, sig }
}

fn add(a: W, b: W) -> W {
    a.add_r(b, RN).value
}
fn sub(a: W, b: W) -> W {
    a.sub_r(b, RN).value
}
fn mul(a: W, b: W) -> W {
    a.mul_r(b, RN).value
}
fn div(a: W, b: W) -> W {
    a.div_r(b, RN).value
}

/// √a by Newton's method from a double estimate (three steps: 53 → 100+
/// bits).
fn wsqrt(a: W) -> W {
    let u = unw(a);
    let approx = (((u.sig >> 64) as u64) as f64 * 2f64.powi(-63)).sqrt();
    let s = if u.exp.rem_euclid(2) == 0 { approx } else { approx * 2f64.sqrt() };
    let half = u.exp.div_euclid(2);
    let mut x = w(Unpacked { sign: false, exp: half, sig: ((s.to_bits() & ((1 << 52) - 1)) as u128 | 1 << 52) << 75 });
    for _ in 0..4 {
        x = mul(add(x, div(a, x)), w(Unpacked::from_int(false, 1, -1)));
    }
    x
}

/// A constant from its 128-bit significand.
fn k(exp: i32, sig: u128) -> W {
    w(Unpacked { sign: false, exp, sig })
}

fn pi() -> W {
    k(1, 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1)
}
fn ln2() -> W {
    k(-1, 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af)
}

/// 1/k in the working format for k < 512, computed once: the series
/// multiply by these instead of dividing term by term (a division in
/// apfloat costs many multiplications).
fn inv(k: u32) -> W {
    static TABLE: std::sync::OnceLock<Vec<W>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| (0..512).map(|k| if k == 0 { W::ZERO } else { div(wi(1), wi(k)) }).collect());
    t.get(k as usize).copied().unwrap_or_else(|| div(wi(1), wi(k as i64)))
}

/// Sum of a series from its first term, `term(previous, n)` giving term
/// n, until adding a term changes nothing.
fn series(start: W, mut term: impl FnMut(W, u32) -> W) -> W {
    let mut sum = start;
    let mut t = start;
    for n in 1..200 {
        t = term(t, n);
        let next = add(sum, t);
        if next.to_bits() == sum.to_bits() {
            break;
        }
        sum = next;
    }
    sum
}

/// sin r for |r| ≲ π/4.
fn ksin(r: W) -> W {
    let r2 = mul(r, r);
    series(r, |t, n| -mul(mul(mul(t, r2), inv(2 * n)), inv(2 * n + 1)))
}

/// cos r for |r| ≲ π/4.
fn kcos(r: W) -> W {
    let r2 = mul(r, r);
    series(wi(1), |t, n| -mul(mul(mul(t, r2), inv(2 * n - 1)), inv(2 * n)))
}

/// atan t for any finite t.
fn katan(t: W) -> W {
    let neg = t.is_negative();
    let mut t = t.abs();
    let one = wi(1);
    let mut add_half_pi = false;
    if t > one {
        t = div(one, t);
        add_half_pi = true;
    }
    // atan t = 2 atan(t / (1 + √(1 + t²))), three times.
    for _ in 0..3 {
        t = div(t, add(one, wsqrt(add(one, mul(t, t)))));
    }
    // atan t = t − t³/3 + t⁵/5 − ...
    let t2 = mul(t, t);
    let mut sum = t;
    let mut p = t;
    for n in 1..200u32 {
        p = -mul(p, t2);
        let next = add(sum, mul(p, inv(2 * n + 1)));
        if next.to_bits() == sum.to_bits() {
            break;
        }
        sum = next;
    }
    let mut r = mul(sum, wi(8));
    if add_half_pi {
        r = sub(div(pi(), wi(2)), r);
    }
    if neg {
        -r
    } else {
        r
    }
}

/// ln(1 + x) for x > −1, without cancellation near 0: 2 atanh(x / (2 + x)).
fn kln1p(x: W) -> W {
    let z = div(x, add(wi(2), x));
    let z2 = mul(z, z);
    let mut sum = z;
    let mut p = z;
    for n in 1..300u32 {
        p = mul(p, z2);
        let next = add(sum, mul(p, inv(2 * n + 1)));
        if next.to_bits() == sum.to_bits() {
            break;
        }
        sum = next;
    }
    mul(sum, wi(2))
}

/// log2 of a positive finite working value.
fn klog2(x: W) -> W {
    let u = unw(x);
    // x = m · 2^e with m in [√½, √2).
    let mut e = u.exp;
    let mut m = w(Unpacked { exp: 0, ..u });
    if u.sig >> 64 > 0xb504_f333_f9de_6484 {
        m = w(Unpacked { exp: -1, ..u });
        e += 1;
    }
    add(wi(e as i64), div(kln1p(sub(m, wi(1))), ln2()))
}

/// 2^x − 1 for |x| ≤ 1, as expm1(x ln 2).
fn kexp2m1(x: W) -> W {
    let y = mul(x, ln2());
    series(y, |t, n| mul(mul(t, y), inv(n + 1)))
}

/// The 66-bit π/2 of the FPU's argument reduction (SDM Vol. 1 §8.3.8), as
/// an integer multiple of 2^−65.
const HALF_PI_66: u128 = 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1 >> 62;

/// Reduces a finite |x| < 2^63 modulo the 66-bit π/2: the quadrant (k mod
/// 4) and the remainder, computed exactly in integers and then rounded
/// into the working format.
fn reduce(x: F80) -> (u32, W) {
    let u = x.unpack();
    let xw = w(Unpacked { sign: false, ..u });
    if u.exp < -1 {
        return (0, xw);
    }
    // |x| = mx · 2^(ex − 63) = X · 2^−65 with X = mx << (ex + 2) (< 2^127).
    let mx = (u.sig >> 64) as u64 as u128;
    let big = mx << (u.exp + 2);
    let p = w(Unpacked::from_int(false, HALF_PI_66, -65));
    let q = div(xw, p);
    let kq = round::to_integer(unw(q), super::Rc::Nearest).0;
    let r = big.wrapping_sub(kq.wrapping_mul(HALF_PI_66)) as i128;
    let rw = if r == 0 { W::ZERO } else { w(Unpacked::from_int(r < 0, r.unsigned_abs(), -65)) };
    ((kq & 3) as u32, rw)
}

/// The result of a transcendental rounded to 64 bits by RC (precision
/// control does not apply).
fn done(x: W, cw: Cw) -> Out {
    if x.is_zero() {
        return Out { v: F80::ZERO.with_sign(x.is_negative()), exc: Exc::NONE, c1: false };
    }
    done_u(unw(x), cw)
}

fn done_u(u: Unpacked, cw: Cw) -> Out {
    finish(u, Cw(cw.0 | 0x300), 64)
}

/// A value just above (`up`) or just below `u` in magnitude: the true
/// result of sin, cos or tan of an argument so small that the next term of
/// the series is far below the working precision.
fn nudged(u: Unpacked, up: bool) -> Unpacked {
    if up {
        Unpacked { sig: u.sig | 1, ..u }
    } else if u.sig == 1 << 127 {
        Unpacked { exp: u.exp - 1, sig: u128::MAX, ..u }
    } else {
        Unpacked { sig: u.sig - 1, ..u }
    }
}

/// `v` delivered as an exact value that still reports PE (and UE when it
/// is tiny and UE is masked), C1 clear.
fn as_exact_inexact(v: Unpacked, cw: Cw) -> Out {
    let mut o = done_u(v, cw);
    o.exc |= Exc::PE;
    o.c1 = false;
    if matches!(o.v.class(), Class80::Denormal) && !cw.unmasked(Exc::UE) {
        o.exc |= Exc::UE;
    }
    o
}

/// DE for a denormal operand, unless the result is an invalid operation
/// or a division by zero (as silicon reports them).
fn with_de(mut o: Out, den: bool) -> Out {
    if den && !o.exc.intersects(Exc(Exc::IE.0 | Exc::ZE.0)) {
        o.exc |= Exc::DE;
    }
    o
}

fn is_den(a: F80) -> bool {
    matches!(a.class(), Class80::Denormal | Class80::PseudoDenormal)
}

/// An operand the function cannot use: unsupported (IE, indefinite), NaN
/// (propagated), or `None` to go on.
fn bad(a: F80) -> Option<Out> {
    match a.class() {
        Class80::Unsupported => Some(Out { v: F80::INDEFINITE, exc: Exc::IE, c1: false }),
        Class80::QNan | Class80::SNan => Some(propagate(a, a)),
        Class80::Inf => Some(Out { v: F80::INDEFINITE, exc: Exc::IE, c1: false }),
        _ => None,
    }
}

fn out_of_range(a: F80) -> bool {
    a.exp() >= 0x3fff + 63
}

/// Which of the trigonometric functions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trig {
    Sin,
    Cos,
    Tan,
}

fn trig(a: F80, f: Trig, cw: Cw) -> Out {
    if a.class() == Class80::Zero {
        return match f {
            Trig::Cos => Out { v: F80::ONE, exc: Exc::NONE, c1: false },
            _ => Out { v: a, exc: Exc::NONE, c1: false },
        };
    }
    let u = a.unpack();
    if u.exp < -68 {
        // Below 2^-68 silicon returns the operand (cos: 1) as if exact,
        // with PE and C1 clear (tests/silicon/x87.txt and a sweep of every
        // exponent from -90 to -20 in each rounding mode).
        let v = if f == Trig::Cos { Unpacked::from_int(false, 1, 0) } else { u };
        return as_exact_inexact(v, cw);
    }
    if u.exp < -40 || (f == Trig::Tan && u.exp <= -34) {
        // sin x = x − x³/6 and cos x = 1 − x²/2 lie just below x and 1,
        // past the 100-bit working precision; only the direction remains.
        // Silicon's FPTAN also lands just below x, where the true tangent
        // lies just above (the same sweep), so this model follows it.
        return match f {
            Trig::Sin | Trig::Tan => done_u(nudged(u, false), cw),
            Trig::Cos => done_u(nudged(Unpacked::from_int(false, 1, 0), false), cw),
        };
    }
    let (q, r) = reduce(a);
    let v = match (f, q) {
        (Trig::Sin, 0) | (Trig::Cos, 3) => ksin(r),
        (Trig::Sin, 1) | (Trig::Cos, 0) => kcos(r),
        (Trig::Sin, 2) | (Trig::Cos, 1) => -ksin(r),
        (Trig::Sin, _) | (Trig::Cos, _) => -kcos(r),
        (Trig::Tan, q) if q % 2 == 0 => div(ksin(r), kcos(r)),
        (Trig::Tan, _) => -div(kcos(r), ksin(r)),
    };
    let v = if a.sign() && f != Trig::Cos { -v } else { v };
    done(v, cw)
}

impl X87 {
    /// Runs a one-operand function of ST(0) that may find it out of range
    /// (|x| ≥ 2^63: C2 set, ST(0) unchanged) and may push a second result.
    fn trig_op(&mut self, f: impl Fn(F80, Cw) -> Result<(Out, Option<F80>), Out>, pushes: bool) {
        if self.is_empty(0) || (pushes && !self.is_empty(7)) {
            // C2 clears on a stack fault too (silicon:
            // crates/vmm/tests/differential/fp.rs).
            self.sw &= !super::x87::sw::C2;
            let overflow = !self.is_empty(0);
            if self.stack_fault(overflow) {
                self.set_st(0, F80::INDEFINITE);
                if pushes {
                    self.push_over(F80::INDEFINITE);
                }
            }
            return;
        }
        let a = self.st(0);
        if (a.class() == Class80::Normal) && out_of_range(a) {
            self.sw |= super::x87::sw::C2;
            return;
        }
        self.sw &= !super::x87::sw::C2;
        match f(a, self.control()) {
            Err(o) => {
                if self.signal(o.exc) {
                    self.set_st(0, o.v);
                    if pushes {
                        self.push(o.v, Exc::NONE);
                    }
                }
            }
            Ok((o, second)) => {
                let o = with_de(o, is_den(a));
                if self.signal(o.exc) {
                    self.set_st(0, o.v);
                    self.sw = (self.sw & !super::x87::sw::C1) | if o.c1 { super::x87::sw::C1 } else { 0 };
                    if let Some(s) = second {
                        self.top = (self.top + 7) & 7;
                        self.set_st(0, s);
                    }
                }
            }
        }
    }

    /// FSIN.
    pub fn fsin(&mut self) {
        self.trig_op(|a, cw| bad(a).map_or(Ok((trig(a, Trig::Sin, cw), None)), Err), false);
    }

    /// FCOS.
    pub fn fcos(&mut self) {
        self.trig_op(|a, cw| bad(a).map_or(Ok((trig(a, Trig::Cos, cw), None)), Err), false);
    }

    /// FSINCOS: ST(0) becomes sin, cos is pushed.
    pub fn fsincos(&mut self) {
        self.trig_op(
            |a, cw| {
                if let Some(o) = bad(a) {
                    return Err(o);
                }
                let (s, c) = (trig(a, Trig::Sin, cw), trig(a, Trig::Cos, cw));
                Ok((Out { v: s.v, exc: s.exc | c.exc, c1: c.c1 }, Some(c.v)))
            },
            true,
        );
    }

    /// FPTAN: ST(0) becomes tan, 1.0 is pushed.
    pub fn fptan(&mut self) {
        self.trig_op(|a, cw| bad(a).map_or(Ok((trig(a, Trig::Tan, cw), Some(F80::ONE))), Err), true);
    }

    /// F2XM1: 2^ST(0) − 1 for ST(0) in [−1, 1]. Outside that range the
    /// SDM leaves the result undefined; silicon returns the operand
    /// unchanged with PE (tests/silicon/x87.txt), and so does this model.
    pub fn f2xm1(&mut self) {
        self.unary(|a, cw| match a.class() {
            Class80::Zero => Out { v: a, exc: Exc::NONE, c1: false },
            Class80::Inf if a.sign() => Out { v: F80::ONE.with_sign(true), exc: Exc::NONE, c1: false },
            Class80::Inf => Out { v: a, exc: Exc::NONE, c1: false },
            Class80::QNan | Class80::SNan | Class80::Unsupported => {
                bad(a).unwrap_or(Out { v: a, exc: Exc::NONE, c1: false })
            }
            _ if a.exp() >= 0x3fff && a != F80::ONE && a != F80::ONE.with_sign(true) => {
                Out { v: a, exc: Exc::PE, c1: false }
            }
            _ => with_de(done(kexp2m1(w(a.unpack())), cw), is_den(a)),
        });
    }

    /// FPATAN: ST(1) = arctan(ST(1) / ST(0)) with the quadrant of (ST(0),
    /// ST(1)) as x and y, then pop.
    pub fn fpatan(&mut self) {
        self.binary_pop(|x, y, cw| {
            let (cx, cy) = (x.class(), y.class());
            let pi_w = pi();
            let signed = |v: W, s: bool| if s { -v } else { v };
            let v = match (cx, cy) {
                (_, Class80::Zero) if x.sign() => signed(pi_w, y.sign()),
                (_, Class80::Zero) => return Out { v: y, exc: Exc::NONE, c1: false },
                (Class80::Zero, _) => signed(div(pi_w, wi(2)), y.sign()),
                (Class80::Inf, Class80::Inf) => {
                    signed(div(mul(pi_w, wi(if x.sign() { 3 } else { 1 })), wi(4)), y.sign())
                }
                (Class80::Inf, _) if x.sign() => signed(pi_w, y.sign()),
                (Class80::Inf, _) => return Out { v: F80::ZERO.with_sign(y.sign()), exc: Exc::NONE, c1: false },
                (_, Class80::Inf) => signed(div(pi_w, wi(2)), y.sign()),
                _ => {
                    let t = katan(div(w(y.unpack()), w(x.unpack())));
                    if x.sign() {
                        if y.sign() {
                            sub(t, pi_w)
                        } else {
                            add(t, pi_w)
                        }
                    } else {
                        t
                    }
                }
            };
            done(v, cw)
        });
    }

    /// FYL2X: ST(1) = ST(1) × log2(ST(0)), then pop.
    pub fn fyl2x(&mut self) {
        self.binary_pop(|x, y, cw| {
            let inf = |s: bool| F80 { se: 0x7fff | (s as u16) << 15, sig: 1 << 63 };
            let invalid = Out { v: F80::INDEFINITE, exc: Exc::IE, c1: false };
            let (cx, cy) = (x.class(), y.class());
            let x_is_one = x == F80::ONE;
            match (cx, cy) {
                _ if x.sign() && cx != Class80::Zero => invalid,
                (Class80::Zero, Class80::Zero) => invalid,
                // log2(0) = −∞ times ±∞: no exception (silicon).
                (Class80::Zero, Class80::Inf) => Out { v: inf(!y.sign()), exc: Exc::NONE, c1: false },
                (Class80::Zero, _) => Out { v: inf(!y.sign()), exc: Exc::ZE, c1: false },
                (Class80::Inf, Class80::Zero) => invalid,
                (Class80::Inf, _) => Out { v: inf(y.sign()), exc: Exc::NONE, c1: false },
                (_, Class80::Inf) if x_is_one => invalid,
                (_, Class80::Inf) => Out { v: inf(y.sign() ^ (x.exp() < 0x3fff)), exc: Exc::NONE, c1: false },
                (_, Class80::Zero) => {
                    Out { v: F80::ZERO.with_sign(y.sign() ^ (x.exp() < 0x3fff)), exc: Exc::NONE, c1: false }
                }
                _ if x_is_one => Out { v: F80::ZERO.with_sign(y.sign()), exc: Exc::NONE, c1: false },
                _ => done(mul(w(y.unpack()), klog2(w(x.unpack()))), cw),
            }
        });
    }

    /// FYL2XP1: ST(1) = ST(1) × log2(ST(0) + 1), then pop. The SDM defines
    /// it for |ST(0)| < 1 − √2/2; beyond, silicon computes the function for
    /// positive arguments and returns ST(0) with PE at or below −1
    /// (tests/silicon/x87.txt), and so does this model; −∞ is invalid.
    pub fn fyl2xp1(&mut self) {
        self.binary_pop(|x, y, cw| {
            let invalid = Out { v: F80::INDEFINITE, exc: Exc::IE, c1: false };
            let inf = |s: bool| F80 { se: 0x7fff | (s as u16) << 15, sig: 1 << 63 };
            let (cx, cy) = (x.class(), y.class());
            match (cx, cy) {
                (Class80::Inf, _) if x.sign() => invalid,
                (Class80::Zero, Class80::Inf) | (Class80::Inf, Class80::Zero) => invalid,
                (Class80::Inf, _) => Out { v: inf(y.sign()), exc: Exc::NONE, c1: false },
                (Class80::Zero, _) | (_, Class80::Zero) => {
                    Out { v: F80::ZERO.with_sign(x.sign() ^ y.sign()), exc: Exc::NONE, c1: false }
                }
                (_, Class80::Inf) => Out { v: inf(x.sign() ^ y.sign()), exc: Exc::NONE, c1: false },
                // At or below −1 silicon returns the operand with PE.
                _ if x.sign() && x.exp() >= 0x3fff => Out { v: x, exc: Exc::PE, c1: false },
                _ => {
                    let xw = w(x.unpack());
                    let l = if x.exp() >= 0x3ffe {
                        let s = add(wi(1), xw);
                        if s.is_zero() {
                            return Out { v: inf(!y.sign()), exc: Exc::ZE, c1: false };
                        }
                        if s.is_negative() {
                            return invalid;
                        }
                        klog2(s)
                    } else {
                        div(kln1p(xw), ln2())
                    };
                    done(mul(w(y.unpack()), l), cw)
                }
            }
        });
    }

    /// ST(1) = f(ST(0), ST(1)), then pop, with NaN and unsupported-operand
    /// handling.
    fn binary_pop(&mut self, f: impl FnOnce(F80, F80, Cw) -> Out) {
        if self.is_empty(0) || self.is_empty(1) {
            if self.stack_fault(false) {
                self.set_st(1, F80::INDEFINITE);
                self.pop();
            }
            return;
        }
        let (x, y) = (self.st(0), self.st(1));
        let o = if x.class() == Class80::Unsupported || y.class() == Class80::Unsupported {
            Out { v: F80::INDEFINITE, exc: Exc::IE, c1: false }
        } else if x.is_nan() || y.is_nan() {
            propagate(x, y)
        } else {
            with_de(f(x, y, self.control()), is_den(x) || is_den(y))
        };
        if self.signal(o.exc) {
            self.set_st(1, o.v);
            self.sw = (self.sw & !super::x87::sw::C1) | if o.c1 { super::x87::sw::C1 } else { 0 };
            self.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp::round::DOUBLE;
    use crate::fp::x87::{from_ieee, to_ieee};

    fn f(x: f64) -> F80 {
        from_ieee(&DOUBLE, x.to_bits()).0
    }

    fn d(v: F80) -> f64 {
        f64::from_bits(to_ieee(&DOUBLE, v, Cw(0x37f)).0)
    }

    fn run(x: f64, op: fn(&mut X87)) -> f64 {
        let mut s = X87::default();
        s.push(f(x), Exc::NONE);
        op(&mut s);
        d(s.st(0))
    }

    #[test]
    fn functions_agree_with_libm_to_double() {
        for x in [0.5, 1.0, -2.0, 3.0, 100.0, 1e-5] {
            assert_eq!(run(x, X87::fsin), x.sin(), "sin {x}");
            assert_eq!(run(x, X87::fcos), x.cos(), "cos {x}");
        }
        // √2 − 1 = 0.41421356237309504880..., whose nearest double is this.
        assert_eq!(run(0.5, X87::f2xm1), 0.414_213_562_373_095_03);
        let mut s = X87::default();
        s.push(f(1.0), Exc::NONE);
        s.push(f(-1.0), Exc::NONE);
        s.fpatan();
        assert_eq!(d(s.st(0)), (1.0f64).atan2(-1.0));
        let mut s = X87::default();
        s.push(f(3.0), Exc::NONE);
        s.push(f(8.0), Exc::NONE);
        s.fyl2x();
        assert_eq!(d(s.st(0)), 9.0);
    }

    #[test]
    fn out_of_range_sets_c2() {
        let mut s = X87::default();
        s.push(f(1e19), Exc::NONE);
        s.fsin();
        assert_eq!(s.st(0), f(1e19));
        assert_ne!(s.status_word() & super::super::x87::sw::C2, 0);
    }
}

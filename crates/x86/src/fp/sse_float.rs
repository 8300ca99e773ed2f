//! SSE/SSE2/SSE3/SSE4.1 floating-point instructions on single and double
//! precision lanes (SDM Vol. 1 §10.4.2, §11.4.1, §11.5, §12.3, §12.10.3;
//! Vol. 2 per instruction): arithmetic, square root, MIN/MAX with their
//! operand-order NaN rule, CMPPS/CMPSD predicates 0-7, (U)COMISS/SD,
//! conversions (integer indefinite on invalid), ROUNDxx, DPPS/DPPD,
//! horizontal and alternating add/subtract, and RCP/RSQRT approximations.
//!
//! Each lane function returns its result and the exceptions it detected;
//! instruction functions run the lanes and then the MXCSR exception
//! procedure ([`Mxcsr::signal`]), so an unmasked exception leaves the
//! destination unchanged and returns [`SimdFault`]. NaN rules follow SDM
//! Vol. 1 Table 4-7: the first source operand's NaN wins, an SNaN is
//! quieted, and an invalid operation without NaN operands gives the QNaN
//! floating-point indefinite.

use super::mxcsr::{Mxcsr, SimdFault};
use super::round::{self, Class, Ieee, Unpacked, Val, DOUBLE, SINGLE};
use super::{Exc, Rc};
use exitlab_arch::bits::rflags;

/// A 128-bit XMM value, lane 0 in the low bits.
pub type Xmm = u128;

/// The lane layout of an instruction form: packed or scalar, single or
/// double. A scalar form computes lane 0 and keeps the first operand's
/// upper lanes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// Four singles (`..PS`).
    Ps,
    /// The low single (`..SS`).
    Ss,
    /// Two doubles (`..PD`).
    Pd,
    /// The low double (`..SD`).
    Sd,
}

impl Shape {
    /// The lane format.
    #[inline]
    pub const fn ieee(self) -> &'static Ieee {
        match self {
            Shape::Ps | Shape::Ss => &SINGLE,
            Shape::Pd | Shape::Sd => &DOUBLE,
        }
    }

    /// How many lanes the form computes.
    #[inline]
    pub const fn lanes(self) -> usize {
        match self {
            Shape::Ps => 4,
            Shape::Pd => 2,
            Shape::Ss | Shape::Sd => 1,
        }
    }
}

/// Lane `i` of `v` in format `f`.
#[inline]
pub const fn lane(v: Xmm, f: &Ieee, i: usize) -> u64 {
    let w = f.bits() as usize;
    ((v >> (w * i)) as u64) & (u64::MAX >> (64 - w))
}

/// `v` with lane `i` replaced by `x`.
#[inline]
pub const fn set_lane(v: Xmm, f: &Ieee, i: usize, x: u64) -> Xmm {
    let w = f.bits() as usize;
    let m = ((u64::MAX >> (64 - w)) as u128) << (w * i);
    (v & !m) | (((x as u128) << (w * i)) & m)
}

/// The four basic operations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arith {
    /// ADDxx.
    Add,
    /// SUBxx.
    Sub,
    /// MULxx.
    Mul,
    /// DIVxx.
    Div,
}

/// The response to a finite non-zero exact-or-sticky result, with its
/// post-computation exceptions: overflow (OE, PE), tininess after rounding
/// (UE when inexact or UE unmasked; with FTZ and UE masked a zero of the
/// result's sign, UE and PE; SDM Vol. 1 §10.2.3.3, §11.5.2.5) and
/// inexactness (PE). When an unmasked OE or UE will fault, PE reports
/// whether the result rounded with an unbounded exponent was inexact, as
/// silicon does (tests/silicon/sse.txt: 2^31 × −DBL_MAX faults with OE
/// alone); the value is discarded then.
pub fn finish(f: &Ieee, u: Unpacked, mx: Mxcsr) -> (u64, Exc) {
    let r = round::round(u, f.fmt, mx.rc());
    let wide_pe = if r.wide_inexact { Exc::PE } else { Exc::NONE };
    if r.overflow {
        if mx.unmasked(Exc::OE) {
            return (f.pack(&r), Exc::OE | wide_pe);
        }
        return (f.pack(&r), Exc::OE | Exc::PE);
    }
    if r.tiny {
        if mx.unmasked(Exc::UE) {
            return (f.pack(&r), Exc::UE | wide_pe);
        }
        if mx.ftz() {
            return (f.zero(u.sign), Exc::UE | Exc::PE);
        }
        if r.inexact {
            return (f.pack(&r), Exc::UE | Exc::PE);
        }
    }
    (f.pack(&r), if r.inexact { Exc::PE } else { Exc::NONE })
}

/// The NaN result of a two-operand arithmetic instruction with a NaN
/// operand: the first operand's NaN if it has one, else the second's,
/// quieted; IE when either is signalling (SDM Vol. 1 Table 4-7).
#[inline]
fn propagate(f: &Ieee, a: u64, b: u64) -> (u64, Exc) {
    let e = if f.is_snan(a) || f.is_snan(b) { Exc::IE } else { Exc::NONE };
    (f.quiet(if f.is_nan(a) { a } else { b }), e)
}

#[inline]
fn denormal_exc(f: &Ieee, a: u64, b: u64) -> Exc {
    if f.class(a) == Class::Denormal || f.class(b) == Class::Denormal {
        Exc::DE
    } else {
        Exc::NONE
    }
}

/// Round-to-nearest with PE already set and masked, normal operands and a
/// normal result above the smallest normal: the host's IEEE arithmetic is
/// then exactly silicon's (correctly rounded, no exception it could add).
#[inline(always)]
fn host_fast(f: &Ieee, op: Arith, a: u64, b: u64, mx: Mxcsr) -> Option<u64> {
    const PE_SET_AND_MASKED: u32 = 0x20 | (0x20 << 7);
    if mx.0 & (PE_SET_AND_MASKED | (3 << 13)) != PE_SET_AND_MASKED {
        return None;
    }
    if f.class(a) != Class::Normal || f.class(b) != Class::Normal {
        return None;
    }
    if f.frac == 23 {
        let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
        let r = match op {
            Arith::Add => x + y,
            Arith::Sub => x - y,
            Arith::Mul => x * y,
            Arith::Div => x / y,
        };
        (r.is_finite() && r.abs() > f32::MIN_POSITIVE).then_some(r.to_bits() as u64)
    } else {
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let r = match op {
            Arith::Add => x + y,
            Arith::Sub => x - y,
            Arith::Mul => x * y,
            Arith::Div => x / y,
        };
        (r.is_finite() && r.abs() > f64::MIN_POSITIVE).then_some(r.to_bits())
    }
}

/// One lane of ADD/SUB/MUL/DIV (SDM Vol. 2 ADDPS ... DIVSD; invalid cases
/// from SDM Vol. 1 Table 11-1: ∞−∞, 0×∞, 0/0, ∞/∞).
pub fn arith(f: &Ieee, op: Arith, a: u64, b: u64, mx: Mxcsr) -> (u64, Exc) {
    if let Some(r) = host_fast(f, op, a, b, mx) {
        return (r, Exc::NONE);
    }
    let (a, b) = (f.daz(a, mx.daz()), f.daz(b, mx.daz()));
    if f.is_nan(a) || f.is_nan(b) {
        return propagate(f, a, b);
    }
    let de = denormal_exc(f, a, b);
    let (ca, cb) = (f.class(a), f.class(b));
    let (sa, sb) = (f.is_neg(a), f.is_neg(b));
    let invalid = (f.indefinite(), de | Exc::IE);
    let finite = |u: Unpacked| {
        let (r, e) = finish(f, u, mx);
        (r, e | de)
    };
    match op {
        Arith::Add | Arith::Sub => {
            let sb = sb ^ (op == Arith::Sub);
            match (ca, cb) {
                (Class::Inf, Class::Inf) if sa != sb => invalid,
                (Class::Inf, _) => (f.inf(sa), de),
                (_, Class::Inf) => (f.inf(sb), de),
                (Class::Zero, Class::Zero) => (f.zero(if sa == sb { sa } else { mx.rc() == Rc::Down }), de),
                (Class::Zero, _) => finite(Unpacked { sign: sb, ..f.unpack(b) }),
                (_, Class::Zero) => finite(f.unpack(a)),
                _ => match round::add(f.unpack(a), Unpacked { sign: sb, ..f.unpack(b) }) {
                    Some(u) => finite(u),
                    None => (f.zero(mx.rc() == Rc::Down), de),
                },
            }
        }
        Arith::Mul => {
            let s = sa ^ sb;
            match (ca, cb) {
                (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => invalid,
                (Class::Inf, _) | (_, Class::Inf) => (f.inf(s), de),
                (Class::Zero, _) | (_, Class::Zero) => (f.zero(s), de),
                _ => finite(round::mul(f.unpack(a), f.unpack(b))),
            }
        }
        Arith::Div => {
            let s = sa ^ sb;
            match (ca, cb) {
                (Class::Inf, Class::Inf) | (Class::Zero, Class::Zero) => invalid,
                (Class::Inf, _) => (f.inf(s), de),
                (_, Class::Inf) | (Class::Zero, _) => (f.zero(s), de),
                // Silicon: a denormal dividend by zero raises ZE alone.
                (_, Class::Zero) => (f.inf(s), Exc::ZE),
                _ => finite(round::div(f.unpack(a), f.unpack(b))),
            }
        }
    }
}

/// One lane of SQRTxx: IE for an SNaN or a negative non-zero operand
/// (including −∞, and a negative denormal without DE), DE for a positive
/// denormal, √−0 = −0.
pub fn sqrt(f: &Ieee, a: u64, mx: Mxcsr) -> (u64, Exc) {
    let a = f.daz(a, mx.daz());
    match f.class(a) {
        Class::QNan | Class::SNan => propagate(f, a, a),
        Class::Zero => (a, Exc::NONE),
        _ if f.is_neg(a) => (f.indefinite(), Exc::IE),
        Class::Inf => (a, Exc::NONE),
        c => {
            let de = if c == Class::Denormal { Exc::DE } else { Exc::NONE };
            let (r, e) = finish(f, round::sqrt(f.unpack(a)), mx);
            (r, e | de)
        }
    }
}

/// Orders two non-NaN encodings numerically (±0 equal).
#[inline]
fn key(f: &Ieee, v: u64) -> i64 {
    let mag = (v & !f.sign_bit()) as i64;
    if f.is_neg(v) {
        -mag
    } else {
        mag
    }
}

/// One lane of MAXxx (`max`) or MINxx: the first operand when it is
/// strictly greater (less), otherwise the second; a NaN in either operand
/// returns the second operand unchanged and raises IE, as do two zeros
/// whatever their signs (SDM Vol. 2 MAXPS, MINPS).
pub fn minmax(f: &Ieee, max: bool, a: u64, b: u64, mx: Mxcsr) -> (u64, Exc) {
    let (a, b) = (f.daz(a, mx.daz()), f.daz(b, mx.daz()));
    if f.is_nan(a) || f.is_nan(b) {
        return (b, Exc::IE);
    }
    let (ka, kb) = (key(f, a), key(f, b));
    let first = if max { ka > kb } else { ka < kb };
    (if first { a } else { b }, denormal_exc(f, a, b))
}

/// CMPPS/CMPPD/CMPSS/CMPSD predicate `imm8 & 7` on one lane (SDM Vol. 2
/// CMPPS, Table 3-1): EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD. LT, LE, NLT
/// and NLE signal IE on any NaN, the others only on an SNaN.
pub fn cmp(f: &Ieee, imm8: u8, a: u64, b: u64, mx: Mxcsr) -> (bool, Exc) {
    let (a, b) = (f.daz(a, mx.daz()), f.daz(b, mx.daz()));
    let pred = imm8 & 7;
    let unordered = f.is_nan(a) || f.is_nan(b);
    if unordered {
        let signalling = matches!(pred, 1 | 2 | 5 | 6);
        let ie = signalling || f.is_snan(a) || f.is_snan(b);
        let r = (3..=6).contains(&pred);
        return (r, if ie { Exc::IE } else { Exc::NONE });
    }
    let (ka, kb) = (key(f, a), key(f, b));
    let r = match pred {
        0 => ka == kb,
        1 => ka < kb,
        2 => ka <= kb,
        3 => false,
        4 => ka != kb,
        5 => ka >= kb,
        6 => ka > kb,
        _ => true,
    };
    (r, denormal_exc(f, a, b))
}

/// COMISS/COMISD (`signalling`: IE on any NaN) and UCOMISS/UCOMISD (IE on
/// an SNaN): the RFLAGS status bits to set (ZF, PF, CF: unordered 111,
/// greater 000, less 001, equal 100; OF, SF and AF cleared), and the
/// exceptions (SDM Vol. 2 COMISS).
pub fn comi(f: &Ieee, signalling: bool, a: u64, b: u64, mx: Mxcsr) -> (u64, Exc) {
    let (a, b) = (f.daz(a, mx.daz()), f.daz(b, mx.daz()));
    if f.is_nan(a) || f.is_nan(b) {
        let ie = signalling || f.is_snan(a) || f.is_snan(b);
        return (rflags::ZF | rflags::PF | rflags::CF, if ie { Exc::IE } else { Exc::NONE });
    }
    let (ka, kb) = (key(f, a), key(f, b));
    let fl = if ka == kb {
        rflags::ZF
    } else if ka < kb {
        rflags::CF
    } else {
        0
    };
    (fl, denormal_exc(f, a, b))
}

/// One lane of a float-to-float conversion (CVTSS2SD, CVTSD2SS, CVTPS2PD,
/// CVTPD2PS): an SNaN is quieted with IE, a NaN keeps its sign and the top
/// of its payload, a denormal source raises DE, and a narrowing may
/// overflow, underflow or be inexact.
pub fn convert(from: &Ieee, to: &Ieee, a: u64, mx: Mxcsr) -> (u64, Exc) {
    let a = from.daz(a, mx.daz());
    let sign = from.is_neg(a);
    match from.class(a) {
        Class::QNan | Class::SNan => {
            let payload = a & ((1u64 << from.frac) - 1);
            let p =
                if to.frac >= from.frac { payload << (to.frac - from.frac) } else { payload >> (from.frac - to.frac) };
            let ie = if from.is_snan(a) { Exc::IE } else { Exc::NONE };
            (to.inf(sign) | p | to.quiet_bit(), ie)
        }
        Class::Inf => (to.inf(sign), Exc::NONE),
        Class::Zero => (to.zero(sign), Exc::NONE),
        c => {
            let de = if c == Class::Denormal { Exc::DE } else { Exc::NONE };
            let (r, e) = finish(to, from.unpack(a), mx);
            (r, e | de)
        }
    }
}

/// One lane of a float-to-integer conversion to a `bits`-bit signed
/// integer (CVTSS2SI, CVTTSD2SI, CVTPS2DQ, CVTTPD2DQ, CVTPS2PI, ...):
/// rounding by MXCSR.RC, or toward zero for the truncating (`CVTT`) forms;
/// a NaN or out-of-range value gives the integer indefinite
/// (`1 << (bits − 1)`) with IE; otherwise PE when inexact. Returned as the
/// two's-complement bits in the low `bits` bits.
pub fn to_int(f: &Ieee, a: u64, bits: u32, truncate: bool, mx: Mxcsr) -> (u64, Exc) {
    let a = f.daz(a, mx.daz());
    let mask = u64::MAX >> (64 - bits);
    let indefinite = (1u64 << (bits - 1), Exc::IE);
    match f.class(a) {
        Class::QNan | Class::SNan | Class::Inf => indefinite,
        Class::Zero => (0, Exc::NONE),
        _ => {
            let rc = if truncate { Rc::Zero } else { mx.rc() };
            match round::to_signed(f.unpack(a), rc, bits) {
                (None, _) => indefinite,
                (Some(v), inexact) => (v as u64 & mask, if inexact { Exc::PE } else { Exc::NONE }),
            }
        }
    }
}

/// One lane of an integer-to-float conversion (CVTSI2SS, CVTDQ2PS,
/// CVTPI2PS, CVTSI2SD, ...): PE when the integer does not fit the
/// significand.
pub fn from_int(f: &Ieee, v: i64, mx: Mxcsr) -> (u64, Exc) {
    if v == 0 {
        return (0, Exc::NONE);
    }
    let u = Unpacked::from_int(v < 0, v.unsigned_abs() as u128, 0);
    let r = round::round(u, f.fmt, mx.rc());
    (f.pack(&r), if r.inexact { Exc::PE } else { Exc::NONE })
}

/// One lane of ROUNDPS/ROUNDPD/ROUNDSS/ROUNDSD (SDM Vol. 2 ROUNDPS, Table
/// 4-18): `imm8` bits 1:0 a rounding mode, bit 2 "use MXCSR.RC instead",
/// bit 3 "suppress the precision exception". An SNaN is quieted with IE;
/// DE is never raised; the sign survives (−0.4 rounds to −0).
pub fn round_int(f: &Ieee, a: u64, imm8: u8, mx: Mxcsr) -> (u64, Exc) {
    let a = f.daz(a, mx.daz());
    match f.class(a) {
        Class::QNan | Class::SNan => propagate(f, a, a),
        Class::Zero | Class::Inf => (a, Exc::NONE),
        _ => {
            let rc = if imm8 & 4 != 0 { mx.rc() } else { Rc::from_bits(imm8 as u32) };
            let x = f.unpack(a);
            let (mag, inexact) = round::to_integer(x, rc);
            let pe = if inexact && imm8 & 8 == 0 { Exc::PE } else { Exc::NONE };
            if mag == 0 {
                return (f.zero(x.sign), pe);
            }
            if x.exp >= f.fmt.precision as i32 - 1 {
                return (a, Exc::NONE);
            }
            let r = round::round(Unpacked::from_int(x.sign, mag, 0), f.fmt, Rc::Zero);
            (f.pack(&r), pe)
        }
    }
}

/// Runs a two-operand lane function over `shape`'s lanes and the MXCSR
/// exception procedure; scalar forms keep `a`'s upper lanes.
pub fn lanes2(
    mx: &mut Mxcsr,
    shape: Shape,
    a: Xmm,
    b: Xmm,
    op: impl Fn(&Ieee, u64, u64, Mxcsr) -> (u64, Exc),
) -> Result<Xmm, SimdFault> {
    let f = shape.ieee();
    let mut r = a;
    let mut exc = Exc::NONE;
    for i in 0..shape.lanes() {
        let (v, e) = op(f, lane(a, f, i), lane(b, f, i), *mx);
        r = set_lane(r, f, i, v);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// ADDxx/SUBxx/MULxx/DIVxx `a, b` in any shape.
pub fn arith_op(mx: &mut Mxcsr, shape: Shape, op: Arith, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let f = shape.ieee();
    // Every lane on the host-float fast path: no exception can change
    // MXCSR, so the lanes are all that is computed.
    let mut r = a;
    for i in 0..shape.lanes() {
        match host_fast(f, op, lane(a, f, i), lane(b, f, i), *mx) {
            Some(v) => r = set_lane(r, f, i, v),
            None => return lanes2(mx, shape, a, b, |f, x, y, m| arith(f, op, x, y, m)),
        }
    }
    Ok(r)
}

/// SQRTxx: the square root of `b`'s lanes (scalar forms keep `a`'s upper
/// lanes).
pub fn sqrt_op(mx: &mut Mxcsr, shape: Shape, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    lanes2(mx, shape, a, b, |f, _, y, m| sqrt(f, y, m))
}

/// MAXxx (`max`) or MINxx.
pub fn minmax_op(mx: &mut Mxcsr, shape: Shape, max: bool, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    lanes2(mx, shape, a, b, |f, x, y, m| minmax(f, max, x, y, m))
}

/// CMPxx with predicate `imm8 & 7`: all-ones lanes where true.
pub fn cmp_op(mx: &mut Mxcsr, shape: Shape, imm8: u8, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    lanes2(mx, shape, a, b, |f, x, y, m| {
        let (t, e) = cmp(f, imm8, x, y, m);
        (if t { u64::MAX } else { 0 }, e)
    })
}

/// COMISS/UCOMISS (`shape` Ss) or COMISD/UCOMISD (Sd) on the low lanes:
/// the RFLAGS status bits (see [`comi`]).
pub fn comi_op(mx: &mut Mxcsr, shape: Shape, signalling: bool, a: Xmm, b: Xmm) -> Result<u64, SimdFault> {
    let f = shape.ieee();
    let (fl, e) = comi(f, signalling, lane(a, f, 0), lane(b, f, 0), *mx);
    mx.signal(e)?;
    Ok(fl)
}

/// ROUNDxx `b` by `imm8` (scalar forms keep `a`'s upper lanes).
pub fn round_op(mx: &mut Mxcsr, shape: Shape, imm8: u8, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    lanes2(mx, shape, a, b, |f, _, y, m| round_int(f, y, imm8, m))
}

/// The packed shape of a packed-only instruction: PD when `double`.
#[inline]
const fn packed(double: bool) -> Shape {
    if double {
        Shape::Pd
    } else {
        Shape::Ps
    }
}

/// ADDSUBPS/ADDSUBPD (`double`; SSE3): even lanes subtract, odd lanes add.
pub fn addsub(mx: &mut Mxcsr, double: bool, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let shape = packed(double);
    let f = shape.ieee();
    let mut r = 0;
    let mut exc = Exc::NONE;
    for i in 0..shape.lanes() {
        let op = if i % 2 == 0 { Arith::Sub } else { Arith::Add };
        let (v, e) = arith(f, op, lane(a, f, i), lane(b, f, i), *mx);
        r = set_lane(r, f, i, v);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// HADDPS/HADDPD (`double`; `sub` false) and HSUBPS/HSUBPD (SSE3):
/// adjacent pairs of `a` fill the low half of the result, pairs of `b` the
/// high half; a subtraction takes the even lane minus the odd one.
pub fn horizontal(mx: &mut Mxcsr, double: bool, sub: bool, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let shape = packed(double);
    let f = shape.ieee();
    let n = shape.lanes();
    let op = if sub { Arith::Sub } else { Arith::Add };
    let mut r = 0;
    let mut exc = Exc::NONE;
    for i in 0..n {
        let src = if i < n / 2 { a } else { b };
        let j = (i % (n / 2)) * 2;
        let (v, e) = arith(f, op, lane(src, f, j), lane(src, f, j + 1), *mx);
        r = set_lane(r, f, i, v);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// DPPS/DPPD (`double`; SSE4.1; SDM Vol. 2 DPPS operation): lane products selected
/// by `imm8` bits 4-7 (others +0.0), summed pairwise with a rounding after
/// every step, the sum written to the lanes `imm8` bits 0-3 select (others
/// +0.0). Exceptions of every step are combined. The order of the
/// additions only shows in which NaN wins, and silicon sums separately for
/// each result lane `d`: DPPS as `(p[d^1] + p[d]) + (p[d^3] + p[d^2])`,
/// DPPD as `p[d] + p[d^1]` (measured with distinct NaN payloads in every
/// product; tests/silicon/sse.txt). The products and the additions are
/// two steps, each with its own exception procedure (SDM Vol. 2 DPPS:
/// "exceptions are determined separately for each add and multiply"):
/// the products' flags stand when an addition then faults, so an unmasked
/// IE of inf + -inf keeps the products' OE and PE, and an unmasked DE of a
/// denormal product keeps their UE and PE (this host's Xeon, found by the
/// differential suite, crates/vmm/tests/differential/fp.rs). An unmasked
/// exception in the products faults before the additions with the
/// products' flags alone: a denormal product then raises no DE, whatever
/// the masks (measured with `_mm_dp_pd`/`_mm_dp_ps`, tests/sse_silicon.rs).
pub fn dp(mx: &mut Mxcsr, double: bool, imm8: u8, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let shape = packed(double);
    let f = shape.ieee();
    let n = shape.lanes();
    let mut products = Exc::NONE;
    let mut p = [0u64; 4];
    for (i, p) in p.iter_mut().enumerate().take(n) {
        if imm8 & (0x10 << i) != 0 {
            let (v, e) = arith(f, Arith::Mul, lane(a, f, i), lane(b, f, i), *mx);
            *p = v;
            products |= e;
        }
    }
    if mx.unmasked(products) {
        return mx.signal(products).map(|_| 0);
    }
    mx.raise(products);
    let mut exc = Exc::NONE;
    let mut add = |x: u64, y: u64| {
        let (v, e) = arith(f, Arith::Add, x, y, *mx);
        exc |= e;
        v
    };
    let mut r = 0;
    for d in 0..n {
        let sum = if n == 4 {
            let lo = add(p[d ^ 1], p[d]);
            let hi = add(p[d ^ 3], p[d ^ 2]);
            add(lo, hi)
        } else {
            add(p[d], p[d ^ 1])
        };
        if imm8 & (1 << d) != 0 {
            r = set_lane(r, f, d, sum);
        }
    }
    mx.signal(exc)?;
    Ok(r)
}

/// CVTSS2SD/CVTSD2SS: lane 0 of `b` converted from `from`'s format into
/// lane 0 of `a`'s `to` format, `a`'s other bits kept.
pub fn convert_scalar(mx: &mut Mxcsr, from: Shape, to: Shape, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let (ff, tf) = (from.ieee(), to.ieee());
    let (v, e) = convert(ff, tf, lane(b, ff, 0), *mx);
    mx.signal(e)?;
    Ok(set_lane(a, tf, 0, v))
}

/// CVTPS2PD (`to_double`: the low two singles widen) or CVTPD2PS (two
/// doubles narrow into the low 64 bits, the upper 64 zeroed).
pub fn convert_packed(mx: &mut Mxcsr, to_double: bool, b: Xmm) -> Result<Xmm, SimdFault> {
    let (ff, tf) = if to_double { (&SINGLE, &DOUBLE) } else { (&DOUBLE, &SINGLE) };
    let mut r = 0;
    let mut exc = Exc::NONE;
    for i in 0..2 {
        let (v, e) = convert(ff, tf, lane(b, ff, i), *mx);
        r = set_lane(r, tf, i, v);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// Packed float-to-int32 conversions: CVTPS2DQ/CVTTPS2DQ (`shape` Ps, four
/// lanes) and CVTPD2DQ/CVTTPD2DQ (Pd: two lanes into the low 64 bits, the
/// upper 64 zeroed); CVTPD2PI/CVTTPD2PI take the low 64 bits of the
/// result, CVTPS2PI/CVTTPS2PI are [`to_int_lanes`].
pub fn to_int_packed(mx: &mut Mxcsr, shape: Shape, truncate: bool, b: Xmm) -> Result<Xmm, SimdFault> {
    to_int_lanes(mx, shape.ieee(), shape.lanes(), truncate, b)
}

/// The low `n` lanes of `b` in format `f` converted to int32 lanes of the
/// result (the rest zero): CVTPS2PI/CVTTPS2PI are two single lanes, whose
/// upper two lanes raise nothing.
pub fn to_int_lanes(mx: &mut Mxcsr, f: &Ieee, n: usize, truncate: bool, b: Xmm) -> Result<Xmm, SimdFault> {
    let mut r = 0u128;
    let mut exc = Exc::NONE;
    for i in 0..n.min(4) {
        let (v, e) = to_int(f, lane(b, f, i), 32, truncate, *mx);
        r |= (v as u128) << (32 * i);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// Scalar float-to-integer conversions (CVT(T)SS2SI, CVT(T)SD2SI) to a
/// 32- or 64-bit integer (`bits`), zero-extended.
pub fn to_int_scalar(mx: &mut Mxcsr, shape: Shape, bits: u32, truncate: bool, b: Xmm) -> Result<u64, SimdFault> {
    let f = shape.ieee();
    let (v, e) = to_int(f, lane(b, f, 0), bits, truncate, *mx);
    mx.signal(e)?;
    Ok(v)
}

/// Packed int32-to-float conversions: CVTDQ2PS (`shape` Ps, four lanes)
/// and CVTDQ2PD/CVTPI2PD (Pd, the low two int32s; exact, no exception).
/// CVTPI2PS is [`from_int_lanes`] on two lanes.
pub fn from_int_packed(mx: &mut Mxcsr, shape: Shape, b: Xmm) -> Result<Xmm, SimdFault> {
    from_int_lanes(mx, shape.ieee(), shape.lanes(), 0, b)
}

/// Converts the low `n` int32 lanes of `b` into lanes of format `f`,
/// over `a` (CVTPI2PS keeps `a`'s upper 64 bits: pass `n` = 2; CVTPI2PD
/// is `n` = 2 in double over anything).
pub fn from_int_lanes(mx: &mut Mxcsr, f: &Ieee, n: usize, a: Xmm, b: Xmm) -> Result<Xmm, SimdFault> {
    let mut r = a;
    let mut exc = Exc::NONE;
    for i in 0..n.min(128 / f.bits() as usize) {
        let (v, e) = from_int(f, (b >> (32 * i)) as u32 as i32 as i64, *mx);
        r = set_lane(r, f, i, v);
        exc |= e;
    }
    mx.signal(exc)?;
    Ok(r)
}

/// CVTSI2SS/CVTSI2SD: a 32- or 64-bit signed integer into lane 0 of `a`.
pub fn from_int_scalar(mx: &mut Mxcsr, shape: Shape, a: Xmm, v: i64) -> Result<Xmm, SimdFault> {
    let f = shape.ieee();
    let (r, e) = from_int(f, v, *mx);
    mx.signal(e)?;
    Ok(set_lane(a, f, 0, r))
}

/// RCPSS/RCPPS and RSQRTSS/RSQRTPS (single precision only). The SDM
/// bounds the relative error by 1.5 × 2^−12 and leaves the table to the
/// implementation; this is Intel's, measured on the CPU tests/silicon/
/// names over every input that matters: the result is the exact
/// reciprocal (root) of the midpoint of the input's interval of the top 11
/// (RSQRT: 10, per exponent parity) fraction bits, rounded to nearest at
/// 13 significant bits. No exception and no MXCSR control applies: a
/// denormal source reads as a zero of its sign (1/±0 = ±∞), a result below
/// the normal range is +0 or −0, a NaN is quieted, RSQRT of a negative
/// non-zero value gives the indefinite.
pub fn approx(rsqrt: bool, a: u32) -> u32 {
    let f = &SINGLE;
    let a = a as u64;
    let sign = f.is_neg(a);
    let r = match f.class(a) {
        Class::QNan | Class::SNan => f.quiet(a),
        Class::Zero | Class::Denormal => f.inf(sign),
        _ if rsqrt && sign => f.indefinite(),
        Class::Inf => f.zero(sign),
        _ => {
            let x = f.unpack(a);
            let bits: i32 = if rsqrt { 10 } else { 11 };
            let idx = (x.sig >> (127 - bits)) & ((1 << bits) - 1);
            let mut mid = Unpacked::from_int(false, (((1 << bits) + idx) << 1) | 1, -bits - 1);
            let one = Unpacked::from_int(false, 1, 0);
            let (q, scale) = if rsqrt {
                mid.exp += x.exp.rem_euclid(2);
                (round::div(one, round::sqrt(mid)), -x.exp.div_euclid(2))
            } else {
                (round::div(one, mid), -x.exp)
            };
            let fmt13 = round::Format { precision: 13, emin: -1000, emax: 1000 };
            match round::round(q, fmt13, Rc::Nearest).val {
                Val::Finite { exp, sig } if exp + scale >= f.fmt.emin => {
                    f.pack_val(sign, Val::Finite { exp: exp + scale, sig: sig << 11 })
                }
                _ => f.zero(sign),
            }
        }
    };
    r as u32
}

/// RCPPS/RCPSS/RSQRTPS/RSQRTSS over `shape` (`Ps` or `Ss`); no exception
/// is possible.
pub fn approx_op(shape: Shape, rsqrt: bool, a: Xmm, b: Xmm) -> Xmm {
    let f = &SINGLE;
    let mut r = a;
    for i in 0..shape.lanes() {
        r = set_lane(r, f, i, approx(rsqrt, lane(b, f, i) as u32) as u64);
    }
    r
}

/// MOVMSKPS/MOVMSKPD: the lanes' sign bits, lane 0 in bit 0.
pub fn movmsk(shape: Shape, v: Xmm) -> u32 {
    let f = shape.ieee();
    (0..shape.lanes()).fold(0, |m, i| m | ((f.is_neg(lane(v, f, i)) as u32) << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mxcsr = Mxcsr(0x1f80);

    fn ps(v: [f32; 4]) -> Xmm {
        v.iter().enumerate().fold(0, |r, (i, x)| r | (x.to_bits() as u128) << (32 * i))
    }

    #[test]
    fn first_operand_nan_wins_and_is_quieted() {
        let snan = 0x7f80_0001u64;
        let qnan = 0xffc0_1234u64;
        assert_eq!(arith(&SINGLE, Arith::Add, snan, qnan, M), (0x7fc0_0001, Exc::IE));
        assert_eq!(arith(&SINGLE, Arith::Add, qnan, snan, M), (qnan, Exc::IE));
        assert_eq!(arith(&SINGLE, Arith::Mul, 0x3f80_0000, qnan, M), (qnan, Exc::NONE));
    }

    #[test]
    fn invalid_gives_indefinite() {
        let inf = f32::INFINITY.to_bits() as u64;
        assert_eq!(arith(&SINGLE, Arith::Sub, inf, inf, M), (0xffc0_0000, Exc::IE));
        assert_eq!(arith(&DOUBLE, Arith::Div, 0, 0, M), (0xfff8_0000_0000_0000, Exc::IE));
        assert_eq!(sqrt(&SINGLE, (-1.0f32).to_bits() as u64, M), (0xffc0_0000, Exc::IE));
    }

    #[test]
    fn divide_by_zero_and_denormal() {
        let one = 1.0f32.to_bits() as u64;
        assert_eq!(arith(&SINGLE, Arith::Div, one, 0x8000_0000, M), (0xff80_0000, Exc::ZE));
        assert_eq!(arith(&SINGLE, Arith::Mul, one, 1, M), (1, Exc::DE));
        assert_eq!(arith(&SINGLE, Arith::Mul, one, 1, Mxcsr(0x1f80 & !(1 << 11))), (1, Exc::DE | Exc::UE));
        assert_eq!(arith(&SINGLE, Arith::Mul, one, 1, Mxcsr(0x1f80 | Mxcsr::DAZ)), (0, Exc::NONE));
    }

    #[test]
    fn exact_zero_sum_sign_follows_rounding() {
        let one = 1.0f64.to_bits();
        let m_one = (-1.0f64).to_bits();
        assert_eq!(arith(&DOUBLE, Arith::Add, one, m_one, M).0, 0);
        assert_eq!(arith(&DOUBLE, Arith::Add, one, m_one, Mxcsr(0x1f80 | (1 << 13))).0, 1 << 63);
    }

    #[test]
    fn max_min_return_second_operand_on_nan_and_zeros() {
        let qnan = 0x7fc0_0000u64;
        let one = 1.0f32.to_bits() as u64;
        assert_eq!(minmax(&SINGLE, true, qnan, one, M), (one, Exc::IE));
        assert_eq!(minmax(&SINGLE, true, one, qnan, M), (qnan, Exc::IE));
        assert_eq!(minmax(&SINGLE, false, 0, 0x8000_0000, M), (0x8000_0000, Exc::NONE));
        assert_eq!(minmax(&SINGLE, true, 0x8000_0000, 0, M), (0, Exc::NONE));
    }

    #[test]
    fn unmasked_exception_leaves_destination() {
        let a = ps([1.0, 2.0, 3.0, 4.0]);
        let b = ps([0.0, 1.0, 1.0, 1.0]);
        let mut mx = Mxcsr(0x1f80 & !(1 << 9)); // ZM clear
        assert_eq!(arith_op(&mut mx, Shape::Ps, Arith::Div, a, b), Err(SimdFault));
        assert_eq!(mx.flags(), Exc::ZE);
        let mut mx = M;
        let r = arith_op(&mut mx, Shape::Ps, Arith::Div, a, b).unwrap();
        assert_eq!(r, ps([f32::INFINITY, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn conversions_give_integer_indefinite() {
        assert_eq!(to_int(&SINGLE, 0x7fc0_0000, 32, false, M), (0x8000_0000, Exc::IE));
        assert_eq!(to_int(&DOUBLE, 1e19f64.to_bits(), 64, true, M), (1 << 63, Exc::IE));
        assert_eq!(to_int(&SINGLE, (-2.5f32).to_bits() as u64, 32, false, M), ((-2i32) as u32 as u64, Exc::PE));
        assert_eq!(to_int(&SINGLE, (-2.5f32).to_bits() as u64, 32, true, M), ((-2i32) as u32 as u64, Exc::PE));
    }

    #[test]
    fn round_keeps_sign_and_suppresses_pe() {
        let x = (-0.4f64).to_bits();
        assert_eq!(round_int(&DOUBLE, x, 0, M), (1 << 63, Exc::PE));
        assert_eq!(round_int(&DOUBLE, x, 8, M), (1 << 63, Exc::NONE));
        assert_eq!(round_int(&DOUBLE, 2.5f64.to_bits(), 0, M), (2.0f64.to_bits(), Exc::PE));
        assert_eq!(round_int(&DOUBLE, 2.5f64.to_bits(), 2, M), (3.0f64.to_bits(), Exc::PE));
    }

    #[test]
    fn horizontal_and_dot_product() {
        let mut mx = M;
        let a = ps([1.0, 2.0, 3.0, 4.0]);
        let b = ps([10.0, 20.0, 30.0, 40.0]);
        assert_eq!(horizontal(&mut mx, false, false, a, b), Ok(ps([3.0, 7.0, 30.0, 70.0])));
        assert_eq!(horizontal(&mut mx, false, true, a, b), Ok(ps([-1.0, -1.0, -10.0, -10.0])));
        assert_eq!(addsub(&mut mx, false, a, b), Ok(ps([-9.0, 22.0, -27.0, 44.0])));
        assert_eq!(dp(&mut mx, false, 0xf1, a, b), Ok(ps([300.0, 0.0, 0.0, 0.0])));
        assert_eq!(dp(&mut mx, false, 0x36, a, b), Ok(ps([0.0, 50.0, 50.0, 0.0])));
    }

    #[test]
    fn comi_flags() {
        let one = 1.0f32.to_bits() as u128;
        let two = 2.0f32.to_bits() as u128;
        let mut mx = M;
        assert_eq!(comi_op(&mut mx, Shape::Ss, true, one, two), Ok(rflags::CF));
        assert_eq!(comi_op(&mut mx, Shape::Ss, true, two, one), Ok(0));
        assert_eq!(comi_op(&mut mx, Shape::Ss, true, one, one), Ok(rflags::ZF));
        assert_eq!(mx.flags(), Exc::NONE);
        assert_eq!(comi_op(&mut mx, Shape::Ss, false, 0x7fc0_0000, one), Ok(rflags::ZF | rflags::PF | rflags::CF));
        assert_eq!(mx.flags(), Exc::NONE);
        assert_eq!(comi_op(&mut mx, Shape::Ss, true, 0x7fc0_0000, one), Ok(rflags::ZF | rflags::PF | rflags::CF));
        assert_eq!(mx.flags(), Exc::IE);
    }
}

//! The x87 FPU (SDM Vol. 1 ch. 8, §4.2.2 double extended format, §4.8.3
//! and Table 4-7 NaN rules, §8.5 exceptions; Vol. 2 per instruction): the
//! 80-bit register format, the register stack with TOP and the tag word,
//! the control word (precision and rounding control, masks), the status
//! word (C0-C3, ES, SF, stack faults), loads and stores of every memory
//! format, arithmetic, compares and the stack instructions.
//!
//! An unmasked invalid-operation, denormal or divide-by-zero exception
//! leaves the destination and the stack as they were; an unmasked
//! overflow or underflow delivers the bias-adjusted result (exponent ∓
//! 24576); every unmasked exception sets ES and B, and the executor raises
//! #MF (or FERR# with CR0.NE clear) at the next waiting x87 instruction.
//! Status-word bits an instruction leaves undefined (C0, C2, C3 after
//! arithmetic, for example) are left unchanged.

use super::round::{self, Rounded, Unpacked, Val};
use super::{Exc, Rc};
use exitlab_arch::bits::rflags::{CF, PF, ZF};

/// An 80-bit double extended value (SDM Vol. 1 Figure 4-3): sign and
/// 15-bit exponent, 64-bit significand with an explicit integer bit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct F80 {
    /// Sign (bit 15) and biased exponent (bits 14:0).
    pub se: u16,
    /// Significand, integer bit in bit 63.
    pub sig: u64,
}

/// The class of an 80-bit encoding (SDM Vol. 1 Table 8-3 and §8.2.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class80 {
    /// ±0.
    Zero,
    /// Exponent 0, integer bit 0, significand non-zero.
    Denormal,
    /// Exponent 0 with the integer bit set: read as a denormal.
    PseudoDenormal,
    /// A normal finite value.
    Normal,
    /// ±∞.
    Inf,
    /// A quiet NaN (bits 63:62 = 11).
    QNan,
    /// A signalling NaN (bits 63:62 = 10, fraction non-zero).
    SNan,
    /// Pseudo-NaN, pseudo-infinity or unnormal: an invalid operand.
    Unsupported,
}

const BIAS: i32 = 16383;
/// The bias adjustment of an unmasked overflow or underflow (SDM Vol. 1
/// §8.5.3, §8.5.4).
const ADJUST: i32 = 24576;

impl F80 {
    /// +0.
    pub const ZERO: F80 = F80 { se: 0, sig: 0 };
    /// +1.
    pub const ONE: F80 = F80 { se: 0x3fff, sig: 1 << 63 };
    /// The QNaN floating-point indefinite (SDM Vol. 1 Table 8-3).
    pub const INDEFINITE: F80 = F80 { se: 0xffff, sig: 0xc000_0000_0000_0000 };

    /// From the 10 bytes of memory (m80fp, FXSAVE's register slots).
    pub fn from_bytes(b: [u8; 10]) -> F80 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        F80 { se: u16::from_le_bytes([b[8], b[9]]), sig: u64::from_le_bytes(s) }
    }

    /// The 10 bytes of memory.
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// Negative.
    #[inline]
    pub const fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    /// Biased exponent.
    #[inline]
    pub const fn exp(self) -> u16 {
        self.se & 0x7fff
    }

    /// The same magnitude with sign `s`.
    #[inline]
    pub const fn with_sign(self, s: bool) -> F80 {
        F80 { se: (self.se & 0x7fff) | ((s as u16) << 15), sig: self.sig }
    }

    /// Classifies the encoding.
    pub const fn class(self) -> Class80 {
        let int = self.sig >> 63 != 0;
        match self.exp() {
            0 if self.sig == 0 => Class80::Zero,
            0 if int => Class80::PseudoDenormal,
            0 => Class80::Denormal,
            0x7fff if !int => Class80::Unsupported,
            0x7fff if self.sig << 1 == 0 => Class80::Inf,
            0x7fff if self.sig & (1 << 62) != 0 => Class80::QNan,
            0x7fff => Class80::SNan,
            _ if !int => Class80::Unsupported,
            _ => Class80::Normal,
        }
    }

    /// Whether the value is a NaN (quiet or signalling).
    #[inline]
    pub const fn is_nan(self) -> bool {
        matches!(self.class(), Class80::QNan | Class80::SNan)
    }

    /// The value unpacked; it must be finite and non-zero (a denormal or
    /// pseudo-denormal has exponent −16382).
    pub fn unpack(self) -> Unpacked {
        match self.exp() {
            0 => Unpacked::from_int(self.sign(), self.sig as u128, 1 - BIAS - 63),
            e => Unpacked { sign: self.sign(), exp: e as i32 - BIAS, sig: (self.sig as u128) << 64 },
        }
    }

    /// The encoding of a value of `precision` significand bits.
    pub const fn pack(sign: bool, v: Val, precision: u32) -> F80 {
        let s = (sign as u16) << 15;
        match v {
            Val::Zero => F80 { se: s, sig: 0 },
            Val::Inf => F80 { se: s | 0x7fff, sig: 1 << 63 },
            Val::Finite { exp, sig } => {
                let sig = sig << (64 - precision);
                let e = if sig >> 63 != 0 { (exp + BIAS) as u16 } else { 0 };
                F80 { se: s | e, sig }
            }
        }
    }

    /// `u` exactly: it must fit 64 significant bits and be representable,
    /// as a normal number or as a denormal.
    pub fn from_unpacked(u: Unpacked) -> F80 {
        F80::pack(u.sign, round::round(u, round::x87(64), Rc::Nearest).val, 64)
    }

    /// A NaN made quiet (bit 62 set).
    #[inline]
    pub const fn quiet(self) -> F80 {
        F80 { se: self.se, sig: self.sig | (1 << 62) }
    }
}

/// The x87 control word (SDM Vol. 1 §8.1.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cw(pub u16);

impl Cw {
    /// A loaded control word as the FPU keeps it: bit 6 reads as 1, bits 7
    /// and 13-15 as 0 (SDM Vol. 1 Figure 8-6 calls them reserved; silicon's
    /// values after FLDCW, FLDENV and FRSTOR, crates/vmm/tests/
    /// differential/fp.rs).
    pub const fn stored(v: u16) -> u16 {
        (v & 0x1f3f) | 0x40
    }

    /// The exception masks.
    #[inline]
    pub const fn masks(self) -> Exc {
        Exc((self.0 & 0x3f) as u8)
    }

    /// Precision control: 24, 53 or 64 significand bits. The reserved
    /// encoding 01 reads as 64 bits (this model's choice; SDM Vol. 1
    /// Table 8-2 calls it reserved).
    #[inline]
    pub const fn precision(self) -> u32 {
        match (self.0 >> 8) & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        }
    }

    /// Rounding control.
    #[inline]
    pub const fn rc(self) -> Rc {
        Rc::from_bits((self.0 >> 10) as u32)
    }

    /// Whether `e` holds an exception whose mask is clear.
    #[inline]
    pub const fn unmasked(self, e: Exc) -> bool {
        e.0 & !self.masks().0 != 0
    }
}

/// A value result: the value, the exceptions detected, and the C1 bit
/// (set when the delivered magnitude was rounded up).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Out {
    /// The result (meaningless when an unmasked pre-computation exception
    /// is in `exc`).
    pub v: F80,
    /// Exceptions detected.
    pub exc: Exc,
    /// C1: the last rounding went up.
    pub c1: bool,
}

impl Out {
    const fn of(v: F80, exc: Exc) -> Out {
        Out { v, exc, c1: false }
    }
}

/// Rounds a finite exact-or-sticky value to precision `p` under `cw`, with
/// the x87 responses to overflow and underflow (SDM Vol. 1 §8.5.3-4).
pub fn finish(u: Unpacked, cw: Cw, p: u32) -> Out {
    let r = round::round(u, round::x87(p), cw.rc());
    let adjusted = |r: &Rounded, by: i32, e: Exc| {
        let exp = r.wide_exp + by;
        // Still out of range after the adjustment (only FSCALE gets
        // there): silicon delivers ±∞ (rounded up) or ±0 (tests/silicon/
        // x87.txt).
        if exp > 16383 {
            return Out { v: F80::pack(r.sign, Val::Inf, p), exc: e | Exc::PE, c1: true };
        }
        if exp < -16382 {
            return Out { v: F80::pack(r.sign, Val::Zero, p), exc: e | Exc::PE, c1: false };
        }
        let v = F80::pack(r.sign, Val::Finite { exp, sig: r.wide_sig }, p);
        Out { v, exc: e | if r.wide_inexact { Exc::PE } else { Exc::NONE }, c1: r.wide_up }
    };
    let packed = F80::pack(r.sign, r.val, p);
    if r.overflow {
        if cw.unmasked(Exc::OE) {
            return adjusted(&r, -ADJUST, Exc::OE);
        }
        return Out { v: packed, exc: Exc::OE | Exc::PE, c1: r.up };
    }
    if r.tiny && cw.unmasked(Exc::UE) {
        return adjusted(&r, ADJUST, Exc::UE);
    }
    let exc = match (r.tiny, r.inexact) {
        (true, true) => Exc::UE | Exc::PE,
        (_, true) => Exc::PE,
        _ => Exc::NONE,
    };
    Out { v: packed, exc, c1: r.up }
}

/// The x87 NaN rule for two operands (SDM Vol. 1 Table 4-7): a QNaN beats
/// an SNaN; between two NaNs of the same kind the larger significand wins
/// (then the positive one); an SNaN is quieted with IE.
pub fn propagate(a: F80, b: F80) -> Out {
    let (an, bn) = (a.is_nan(), b.is_nan());
    let (asn, bsn) = (a.class() == Class80::SNan, b.class() == Class80::SNan);
    let ie = if asn || bsn { Exc::IE } else { Exc::NONE };
    let pick = match (an, bn) {
        (true, false) => a,
        (false, true) => b,
        _ if asn != bsn => {
            if asn {
                b
            } else {
                a
            }
        }
        _ => {
            let (ma, mb) = (a.sig | 1 << 62, b.sig | 1 << 62);
            if ma > mb || (ma == mb && !a.sign()) {
                a
            } else {
                b
            }
        }
    };
    Out::of(pick.quiet(), ie)
}

/// Pre-checks of an arithmetic operand pair: an unsupported encoding gives
/// the indefinite with IE, a NaN the propagated NaN; otherwise the DE the
/// operands raise.
fn specials(a: F80, b: F80) -> Result<Exc, Out> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class80::Unsupported || cb == Class80::Unsupported {
        return Err(Out::of(F80::INDEFINITE, Exc::IE));
    }
    if a.is_nan() || b.is_nan() {
        return Err(propagate(a, b));
    }
    let den = |c| matches!(c, Class80::Denormal | Class80::PseudoDenormal);
    Ok(if den(ca) || den(cb) { Exc::DE } else { Exc::NONE })
}

/// The four arithmetic operations (the R forms swap the operands first).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arith87 {
    /// FADD, FADDP, FIADD.
    Add,
    /// FSUB, FSUBP, FISUB.
    Sub,
    /// FSUBR, FSUBRP, FISUBR.
    SubR,
    /// FMUL, FMULP, FIMUL.
    Mul,
    /// FDIV, FDIVP, FIDIV.
    Div,
    /// FDIVR, FDIVRP, FIDIVR.
    DivR,
}

/// `a op b` with precision control, operands with `denormal` marking a
/// memory operand that was a denormal in its own format (DE).
pub fn arith(op: Arith87, a: F80, b: F80, cw: Cw) -> Out {
    let (a, b) = match op {
        Arith87::SubR | Arith87::DivR => (b, a),
        _ => (a, b),
    };
    let de = match specials(a, b) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let with_de = |mut o: Out| {
        o.exc |= de;
        o
    };
    let p = cw.precision();
    let (ca, cb) = (a.class(), b.class());
    let (ia, ib) = (ca == Class80::Inf, cb == Class80::Inf);
    let (za, zb) = (ca == Class80::Zero, cb == Class80::Zero);
    let invalid = Out::of(F80::INDEFINITE, Exc::IE | de);
    let inf = |s: bool| F80 { se: 0x7fff | (s as u16) << 15, sig: 1 << 63 };
    let zero = |s: bool| F80 { se: (s as u16) << 15, sig: 0 };
    match op {
        Arith87::Add | Arith87::Sub | Arith87::SubR => {
            let sb = b.sign() ^ (op != Arith87::Add);
            if ia && ib && a.sign() != sb {
                invalid
            } else if ia {
                Out::of(a, de)
            } else if ib {
                Out::of(inf(sb), de)
            } else if za && zb {
                Out::of(zero(if a.sign() == sb { sb } else { cw.rc() == Rc::Down }), de)
            } else if za {
                with_de(finish(Unpacked { sign: sb, ..b.unpack() }, cw, p))
            } else if zb {
                with_de(finish(a.unpack(), cw, p))
            } else {
                match round::add(a.unpack(), Unpacked { sign: sb, ..b.unpack() }) {
                    Some(u) => with_de(finish(u, cw, p)),
                    None => Out::of(zero(cw.rc() == Rc::Down), de),
                }
            }
        }
        Arith87::Mul => {
            let s = a.sign() ^ b.sign();
            if (ia && zb) || (za && ib) {
                invalid
            } else if ia || ib {
                Out::of(inf(s), de)
            } else if za || zb {
                Out::of(zero(s), de)
            } else {
                with_de(finish(round::mul(a.unpack(), b.unpack()), cw, p))
            }
        }
        Arith87::Div | Arith87::DivR => {
            let s = a.sign() ^ b.sign();
            if (ia && ib) || (za && zb) {
                invalid
            } else if ia {
                Out::of(inf(s), de)
            } else if ib || za {
                Out::of(zero(s), de)
            } else if zb {
                Out::of(inf(s), Exc::ZE)
            } else {
                with_de(finish(round::div(a.unpack(), b.unpack()), cw, p))
            }
        }
    }
}

/// FSQRT of `a` under precision control.
pub fn sqrt(a: F80, cw: Cw) -> Out {
    let de = match specials(a, a) {
        Ok(e) => e,
        Err(o) => return o,
    };
    match a.class() {
        Class80::Zero => Out::of(a, Exc::NONE),
        // Silicon: a negative denormal raises IE alone.
        _ if a.sign() => Out::of(F80::INDEFINITE, Exc::IE),
        Class80::Inf => Out::of(a, Exc::NONE),
        _ => {
            let mut o = finish(round::sqrt(a.unpack()), cw, cw.precision());
            o.exc |= de;
            o
        }
    }
}

/// The value of a memory float operand in the register format, and
/// whether it was a denormal in its own format (DE on use). An SNaN stays
/// signalling, so that the instruction using it raises IE.
pub fn from_ieee(f: &round::Ieee, bits: u64) -> (F80, bool) {
    use round::Class;
    let sign = f.is_neg(bits);
    let v = match f.class(bits) {
        Class::Zero => F80::ZERO.with_sign(sign),
        Class::Inf => F80 { se: 0x7fff, sig: 1 << 63 }.with_sign(sign),
        Class::QNan | Class::SNan => {
            let frac = bits & ((1 << f.frac) - 1);
            F80 { se: 0x7fff, sig: 1 << 63 | frac << (63 - f.frac) }.with_sign(sign)
        }
        _ => F80::from_unpacked(f.unpack(bits)),
    };
    (v, f.class(bits) == Class::Denormal)
}

/// FST/FSTP to m32fp or m64fp: `a` rounded to the memory format by RC (not
/// precision control). A NaN keeps the top of its payload (an SNaN is
/// quieted with IE), an unsupported encoding stores the indefinite with
/// IE; a denormal register value raises no DE (silicon, against the
/// SDM's FST page). Returns the bits and the outcome (the caller stores nothing when
/// IE, OE or UE is unmasked).
pub fn to_ieee(f: &round::Ieee, a: F80, cw: Cw) -> (u64, Exc, bool) {
    let sign = a.sign();
    match a.class() {
        Class80::Unsupported => (f.indefinite(), Exc::IE, false),
        Class80::QNan | Class80::SNan => {
            let ie = if a.class() == Class80::SNan { Exc::IE } else { Exc::NONE };
            let frac = (a.sig & !(1 << 63)) >> (63 - f.frac);
            (f.inf(sign) | frac | f.quiet_bit(), ie, false)
        }
        Class80::Inf => (f.inf(sign), Exc::NONE, false),
        Class80::Zero => (f.zero(sign), Exc::NONE, false),
        _ => {
            // Silicon raises no DE for a denormal register value stored.
            let r = round::round(a.unpack(), f.fmt, cw.rc());
            let exc = if r.overflow {
                Exc::OE | Exc::PE
            } else if r.tiny && (r.inexact || cw.unmasked(Exc::UE)) {
                Exc::UE | if r.inexact { Exc::PE } else { Exc::NONE }
            } else if r.inexact {
                Exc::PE
            } else {
                Exc::NONE
            };
            (f.pack(&r), exc, r.up)
        }
    }
}

/// FIST/FISTP (`truncate` false: RC) and FISTTP (truncate) to a `bits`-bit
/// integer (16, 32, 64): a NaN, infinity, unsupported encoding or
/// out-of-range value gives the integer indefinite (`1 << (bits − 1)`)
/// with IE; PE and C1 (rounded up) otherwise.
pub fn to_int(a: F80, bits: u32, truncate: bool, cw: Cw) -> (u64, Exc, bool) {
    let mask = u64::MAX >> (64 - bits);
    let indefinite = (1u64 << (bits - 1), Exc::IE, false);
    match a.class() {
        Class80::Zero => (0, Exc::NONE, false),
        Class80::Normal | Class80::Denormal | Class80::PseudoDenormal => {
            let rc = if truncate { Rc::Zero } else { cw.rc() };
            let u = a.unpack();
            let (mag, _) = round::to_integer(u, rc);
            let trunc = round::to_integer(u, Rc::Zero).0;
            match round::to_signed(u, rc, bits) {
                (Some(v), inexact) => (v as u64 & mask, if inexact { Exc::PE } else { Exc::NONE }, mag > trunc),
                (None, _) => indefinite,
            }
        }
        _ => indefinite,
    }
}

/// Converts a signed integer (FILD, FIADD... m16int/m32int/m64int) exactly.
pub fn from_int(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    F80::from_unpacked(Unpacked::from_int(v < 0, v.unsigned_abs() as u128, 0))
}

/// FBLD: an 18-digit packed BCD (bytes 0-8, two digits each, low digit
/// first; byte 9 bit 7 the sign) as an exact value. Digits above 9 are
/// undefined by the SDM; this model takes their binary value.
pub fn from_bcd(b: [u8; 10]) -> F80 {
    let mut v: i64 = 0;
    for i in (0..9).rev() {
        v = v * 100 + (b[i] >> 4) as i64 * 10 + (b[i] & 15) as i64;
    }
    let r = from_int(v);
    if b[9] & 0x80 != 0 {
        r.with_sign(true)
    } else {
        r
    }
}

/// FBSTP: `a` rounded to an integer by RC as 18 packed BCD digits; a NaN,
/// infinity, unsupported value or magnitude of 10^18 or more stores the
/// BCD indefinite (0xFFFF C000 0000 0000 0000) with IE; PE and C1 as for
/// FIST. −0 stores a negative zero.
pub fn to_bcd(a: F80, cw: Cw) -> ([u8; 10], Exc, bool) {
    let mut indefinite = [0u8; 10];
    indefinite[7] = 0xc0;
    indefinite[8] = 0xff;
    indefinite[9] = 0xff;
    let (mag, exc, up) = match a.class() {
        Class80::Zero => (0u64, Exc::NONE, false),
        Class80::Normal | Class80::Denormal | Class80::PseudoDenormal => {
            let u = a.unpack();
            let (mag, inexact) = round::to_integer(u, cw.rc());
            if mag >= 1_000_000_000_000_000_000 {
                return (indefinite, Exc::IE, false);
            }
            let trunc = round::to_integer(u, Rc::Zero).0;
            (mag as u64, if inexact { Exc::PE } else { Exc::NONE }, mag > trunc)
        }
        _ => return (indefinite, Exc::IE, false),
    };
    let mut b = [0u8; 10];
    let mut m = mag;
    for byte in b.iter_mut().take(9) {
        *byte = (m % 10) as u8 | (((m / 10) % 10) as u8) << 4;
        m /= 100;
    }
    b[9] = (a.sign() as u8) << 7;
    (b, exc, up)
}

/// FRNDINT: `a` rounded to an integer by RC (PE and C1 when inexact).
pub fn rndint(a: F80, cw: Cw) -> Out {
    let de = match specials(a, a) {
        Ok(e) => e,
        Err(o) => return o,
    };
    match a.class() {
        Class80::Zero | Class80::Inf => Out::of(a, Exc::NONE),
        _ => {
            let u = a.unpack();
            if u.exp >= 63 {
                return Out::of(a, de);
            }
            let (mag, inexact) = round::to_integer(u, cw.rc());
            let trunc = round::to_integer(u, Rc::Zero).0;
            let v = if mag == 0 {
                F80::ZERO.with_sign(a.sign())
            } else {
                F80::from_unpacked(Unpacked::from_int(a.sign(), mag, 0))
            };
            Out { v, exc: de | if inexact { Exc::PE } else { Exc::NONE }, c1: mag > trunc }
        }
    }
}

/// The outcome of a compare: C3, C2, C0 as the status word takes them
/// (greater 000, less 001, equal 100, unordered 111), and the exceptions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cmp {
    /// Unordered (a NaN or unsupported operand).
    pub unordered: bool,
    /// a < b.
    pub less: bool,
    /// a = b.
    pub equal: bool,
    /// IE (any NaN for FCOM/FCOMI, only an SNaN or unsupported encoding for
    /// FUCOM/FUCOMI) and DE.
    pub exc: Exc,
}

impl Cmp {
    /// The condition-code bits of the status word (C3 bit 14, C2 bit 10,
    /// C0 bit 8).
    pub const fn cc(self) -> u16 {
        if self.unordered {
            0x4500
        } else if self.equal {
            0x4000
        } else if self.less {
            0x0100
        } else {
            0
        }
    }

    /// RFLAGS status bits for FCOMI/FUCOMI (ZF, PF, CF like C3, C2, C0).
    pub const fn rflags(self) -> u64 {
        if self.unordered {
            ZF | PF | CF
        } else if self.equal {
            ZF
        } else if self.less {
            CF
        } else {
            0
        }
    }
}

/// FCOM/FCOMI (`signalling`: IE on any NaN) and FUCOM/FUCOMI, FTST (b =
/// +0), FICOM (b from an integer).
pub fn compare(a: F80, b: F80, signalling: bool) -> Cmp {
    let bad = |x: F80| matches!(x.class(), Class80::Unsupported | Class80::SNan);
    if a.is_nan() || b.is_nan() || a.class() == Class80::Unsupported || b.class() == Class80::Unsupported {
        let ie = signalling || bad(a) || bad(b);
        return Cmp { unordered: true, less: false, equal: false, exc: if ie { Exc::IE } else { Exc::NONE } };
    }
    let den = |x: F80| matches!(x.class(), Class80::Denormal | Class80::PseudoDenormal);
    let exc = if den(a) || den(b) { Exc::DE } else { Exc::NONE };
    let key = |x: F80| -> (bool, i128) {
        match x.class() {
            Class80::Zero => (false, 0),
            Class80::Inf => (true, if x.sign() { i128::MIN } else { i128::MAX }),
            _ => {
                let u = x.unpack();
                let m = ((u.exp as i128 + 20000) << 64) | (u.sig >> 64) as i128;
                (false, if u.sign { -m } else { m })
            }
        }
    };
    let (ka, kb) = (key(a).1, key(b).1);
    Cmp { unordered: false, less: ka < kb, equal: ka == kb, exc }
}

/// FXAM's C3, C2, C0 for a register's class (SDM Vol. 2 FXAM): the C1 bit
/// is the sign. `empty` registers give 101.
pub fn examine(a: F80, empty: bool) -> u16 {
    const C0: u16 = 0x100;
    const C2: u16 = 0x400;
    const C3: u16 = 0x4000;
    let cc = if empty {
        C3 | C0
    } else {
        match a.class() {
            Class80::Unsupported => 0,
            Class80::QNan | Class80::SNan => C0,
            Class80::Normal => C2,
            Class80::Inf => C2 | C0,
            Class80::Zero => C3,
            Class80::Denormal | Class80::PseudoDenormal => C3 | C2,
        }
    };
    cc | if a.sign() { 0x200 } else { 0 }
}

/// FSCALE: `a × 2^trunc(b)` (SDM Vol. 2 FSCALE), rounded by RC to 64 bits
/// (precision control does not apply).
pub fn scale(a: F80, b: F80, cw: Cw) -> Out {
    let de = match specials(a, b) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let (ca, cb) = (a.class(), b.class());
    let inf = |s: bool| F80 { se: 0x7fff | (s as u16) << 15, sig: 1 << 63 };
    match (ca, cb) {
        (Class80::Zero, Class80::Inf) if !b.sign() => Out::of(F80::INDEFINITE, Exc::IE | de),
        (Class80::Inf, Class80::Inf) if b.sign() => Out::of(F80::INDEFINITE, Exc::IE | de),
        (Class80::Zero | Class80::Inf, _) => Out::of(a, de),
        (_, Class80::Inf) => Out::of(if b.sign() { F80::ZERO.with_sign(a.sign()) } else { inf(a.sign()) }, de),
        // Scaling by ±0 returns the operand: a denormal as it is, with no
        // underflow, a pseudo-denormal with exponent 1 (silicon).
        (Class80::PseudoDenormal, Class80::Zero) => Out::of(F80 { se: a.se | 1, sig: a.sig }, de),
        (_, Class80::Zero) => Out::of(a, de),
        _ => {
            let n = {
                let u = b.unpack();
                if u.exp >= 20 {
                    if u.sign {
                        -70000
                    } else {
                        70000
                    }
                } else {
                    let m = round::to_integer(u, Rc::Zero).0 as i32;
                    if u.sign {
                        -m
                    } else {
                        m
                    }
                }
            };
            let mut u = a.unpack();
            u.exp += n;
            let mut o = finish(u, cw, 64);
            o.exc |= de;
            o
        }
    }
}

/// FXTRACT: (exponent as a value, significand with exponent 0); zero gives
/// (−∞, ±0) with ZE; infinity (+∞, ±∞).
pub fn xtract(a: F80) -> (F80, F80, Exc) {
    let de = match specials(a, a) {
        Ok(e) => e,
        Err(o) => return (o.v, o.v, o.exc),
    };
    match a.class() {
        Class80::Zero => (F80 { se: 0xffff, sig: 1 << 63 }, a, Exc::ZE),
        Class80::Inf => (F80 { se: 0x7fff, sig: 1 << 63 }, a, Exc::NONE),
        _ => {
            let u = a.unpack();
            let sig = F80::from_unpacked(Unpacked { exp: 0, ..u });
            (from_int(u.exp as i64), sig, de)
        }
    }
}

/// FPREM (`ieee` false: quotient truncated) and FPREM1 (rounded to
/// nearest even): the partial remainder of `a / b` (SDM Vol. 2 FPREM). At
/// most 63 exponent bits are reduced per execution: a larger difference
/// gives a partial remainder with C2 set, to be run again. Returns the
/// result, its status bits (C2 incomplete; otherwise C0, C3, C1 = quotient
/// bits 2, 1, 0), or `None` when there is no quotient (a NaN, unsupported
/// or invalid operand: silicon then clears C1 and C2 and leaves C0 and C3,
/// crates/vmm/tests/differential/fp.rs), and the exceptions.
pub fn prem(a: F80, b: F80, ieee: bool) -> (F80, Option<u16>, Exc) {
    let de = match specials(a, b) {
        Ok(e) => e,
        Err(o) => return (o.v, None, o.exc),
    };
    let (ca, cb) = (a.class(), b.class());
    if ca == Class80::Inf || cb == Class80::Zero {
        return (F80::INDEFINITE, None, Exc::IE);
    }
    if ca == Class80::Zero {
        return (a, Some(0), de);
    }
    if cb == Class80::Inf {
        // A pseudo-denormal comes back normalized.
        return (F80::from_unpacked(a.unpack()), Some(0), de);
    }
    let (ua, ub) = (a.unpack(), b.unpack());
    let d = ua.exp - ub.exp;
    let (ma, mb) = (ua.sig >> 64, ub.sig >> 64);
    if d > 63 {
        // Partial: reduce by a multiple of b × 2^(d − n) with n in 32..=63
        // (the SDM's "N equal to a number between 32 and 63"; silicon uses
        // a fixed reduction, modelled as 32 + (d mod 32)).
        let n = 32 + (d % 32);
        let shift = d - n;
        let r = (ma << n) % mb;
        let out = if r == 0 {
            F80::ZERO.with_sign(a.sign())
        } else {
            F80::from_unpacked(Unpacked::from_int(a.sign(), r, ub.exp - 63 + shift))
        };
        return (out, Some(0x400), de);
    }
    // a = ma·2^(ea−63), b = mb·2^(eb−63).
    let (mut q, mut r, scale, mut sign) =
        if d >= 0 { ((ma << d) / mb, (ma << d) % mb, ub.exp - 63, a.sign()) } else { (0, ma, ua.exp - 63, a.sign()) };
    if ieee {
        // Round the quotient to nearest even: |r| against |b|/2.
        let above_half = if d >= 0 { 2 * r > mb || (2 * r == mb && q & 1 == 1) } else { d == -1 && ma > mb };
        if above_half {
            q += 1;
            sign = !sign;
            r = if d >= 0 { mb - r } else { 2 * mb - ma };
        }
    }
    let out =
        if r == 0 { F80::ZERO.with_sign(a.sign()) } else { F80::from_unpacked(Unpacked::from_int(sign, r, scale)) };
    let cc = ((q & 4 != 0) as u16) << 8 | ((q & 2 != 0) as u16) << 14 | ((q & 1 != 0) as u16) << 9;
    (out, Some(cc), de)
}

/// The constants of FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2 and FLDZ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Const {
    /// +1.0.
    One,
    /// log2(10).
    L2t,
    /// log2(e).
    L2e,
    /// π.
    Pi,
    /// log10(2).
    Lg2,
    /// ln(2).
    Ln2,
    /// +0.0.
    Zero,
}

/// A constant as the FPU loads it, rounded by RC to 64 bits, with no
/// exception. The SDM (Vol. 1 §8.3.8) says the constants are held to 66
/// bits; log10(2)'s bits 65-66 are 10 with more ones below, and silicon's
/// FLDLG2 rounds it up to ...F799 as correct rounding does (a 66-bit value
/// would tie to ...F798), so this rounds the 128-bit value. The
/// significands were computed in decimal arithmetic to 80 digits.
pub fn constant(c: Const, rc: Rc) -> F80 {
    let (exp, sig128): (i32, u128) = match c {
        Const::One => return F80::ONE,
        Const::Zero => return F80::ZERO,
        Const::L2t => (1, 0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4c),
        Const::L2e => (0, 0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e88),
        Const::Pi => (1, 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1),
        Const::Lg2 => (-2, 0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178),
        Const::Ln2 => (-1, 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af),
    };
    let r = round::round(Unpacked { sign: false, exp, sig: sig128 }, round::x87(64), rc);
    F80::pack(false, r.val, 64)
}

/// The x87 register file and its control, status and tag state, with the
/// last-instruction pointers FXSAVE and FNSTENV record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct X87 {
    /// Physical registers R0-R7 (ST(i) is R((TOP + i) mod 8)).
    pub regs: [F80; 8],
    /// Top-of-stack pointer.
    pub top: u8,
    /// Abridged tag: bit `i` set when R`i` is non-empty (FXSAVE's FTW).
    pub valid: u8,
    /// Control word.
    pub cw: u16,
    /// Status word without TOP (bits 13:11 read from `top`).
    pub sw: u16,
    /// Last instruction's opcode (11 bits), FPU instruction pointer and
    /// data pointer, as the executor records them.
    pub fop: u16,
    /// FPU instruction pointer.
    pub fip: u64,
    /// FPU data pointer.
    pub fdp: u64,
}

impl Default for X87 {
    fn default() -> X87 {
        let mut x = X87 { regs: [F80::ZERO; 8], top: 0, valid: 0, cw: 0, sw: 0, fop: 0, fip: 0, fdp: 0 };
        x.fninit();
        x
    }
}

/// Status-word bits.
pub mod sw {
    /// Stack fault.
    pub const SF: u16 = 1 << 6;
    /// Exception summary.
    pub const ES: u16 = 1 << 7;
    /// C0.
    pub const C0: u16 = 1 << 8;
    /// C1.
    pub const C1: u16 = 1 << 9;
    /// C2.
    pub const C2: u16 = 1 << 10;
    /// C3.
    pub const C3: u16 = 1 << 14;
    /// Busy (mirrors ES).
    pub const B: u16 = 1 << 15;
    /// The condition codes.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// The full tag of a register's content (SDM Vol. 1 §8.1.7): 00 valid,
/// 01 zero, 10 special (NaN, ∞, denormal, unsupported), 11 empty.
pub fn tag_of(v: F80, empty: bool) -> u16 {
    if empty {
        return 3;
    }
    match v.class() {
        Class80::Normal => 0,
        Class80::Zero => 1,
        _ => 2,
    }
}

impl X87 {
    /// FNINIT: control word 0x037F, status and pointers cleared, every
    /// register empty (SDM Vol. 2 FINIT).
    pub fn fninit(&mut self) {
        self.cw = 0x037f;
        self.sw = 0;
        self.top = 0;
        self.valid = 0;
        self.fop = 0;
        self.fip = 0;
        self.fdp = 0;
    }

    /// FNSTSW: the status word with TOP.
    pub fn status_word(&self) -> u16 {
        (self.sw & !(7 << 11)) | ((self.top as u16 & 7) << 11)
    }

    /// Loads a status word (FLDENV, FRSTOR, FXRSTOR): TOP from bits 13:11.
    pub fn set_status_word(&mut self, v: u16) {
        self.top = ((v >> 11) & 7) as u8;
        self.sw = v & !(7 << 11);
    }

    /// FNCLEX: the exception flags, SF, ES and B cleared.
    pub fn fnclex(&mut self) {
        self.sw &= !(0xff | sw::B);
    }

    /// FLDCW: the new control word; ES and B follow whether a set flag is
    /// now unmasked. The reserved bits read as silicon keeps them: bit 6
    /// set, bits 7 and 13-15 clear ([`Cw::stored`]).
    pub fn fldcw(&mut self, v: u16) {
        self.cw = Cw::stored(v);
        self.update_es();
    }

    fn update_es(&mut self) {
        if self.sw as u8 & 0x3f & !(self.cw as u8 & 0x3f) != 0 {
            self.sw |= sw::ES | sw::B;
        } else {
            self.sw &= !(sw::ES | sw::B);
        }
    }

    /// Whether an unmasked exception is pending (SW.ES): the next waiting
    /// x87 instruction raises #MF (CR0.NE set) or asserts FERR#.
    pub fn pending(&self) -> bool {
        self.sw & sw::ES != 0
    }

    /// The control word.
    pub fn control(&self) -> Cw {
        Cw(self.cw)
    }

    /// The full 16-bit tag word (FNSTENV, FNSAVE), computed from contents.
    pub fn tag_word(&self) -> u16 {
        (0..8).fold(0, |t, r| t | tag_of(self.regs[r], self.valid & (1 << r) == 0) << (2 * r))
    }

    /// Loads a full tag word (FLDENV, FRSTOR): only empty or not is kept.
    pub fn set_tag_word(&mut self, t: u16) {
        self.valid = (0..8).fold(0, |v, r| v | (((t >> (2 * r)) & 3 != 3) as u8) << r);
    }

    #[inline]
    fn phys(&self, i: usize) -> usize {
        (self.top as usize + i) & 7
    }

    /// ST(i).
    pub fn st(&self, i: usize) -> F80 {
        self.regs[self.phys(i)]
    }

    /// Whether ST(i) is empty.
    pub fn is_empty(&self, i: usize) -> bool {
        self.valid & (1 << self.phys(i)) == 0
    }

    /// Writes ST(i) and marks it non-empty.
    pub fn set_st(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.valid |= 1 << p;
    }

    /// Decrements TOP and writes ST(0), whatever the register held: the
    /// masked response of a stack fault pushes this way.
    pub fn push_over(&mut self, v: F80) {
        self.top = (self.top + 7) & 7;
        self.set_st(0, v);
    }

    /// Marks ST(0) empty and increments TOP.
    pub fn pop(&mut self) {
        let p = self.phys(0);
        self.valid &= !(1 << p);
        self.top = (self.top + 1) & 7;
    }

    fn set_c1(&mut self, c1: bool) {
        self.sw = (self.sw & !sw::C1) | if c1 { sw::C1 } else { 0 };
    }

    /// Records exceptions: flags, ES/B when unmasked. Returns whether the
    /// destination may be written (no unmasked IE, DE or ZE; with one,
    /// only the pre-computation flags are recorded).
    pub fn signal(&mut self, exc: Exc) -> bool {
        // An unmasked pre-computation exception stops the instruction
        // before any result exists: only those flags are set, and C1 is
        // cleared (silicon: crates/vmm/tests/differential/fp.rs).
        let pre = exc.and(Exc::PRE);
        let go = !Cw(self.cw).unmasked(pre);
        self.sw |= if go { exc.0 } else { pre.0 } as u16;
        if !go {
            self.set_c1(false);
        }
        self.update_es();
        go
    }

    /// A stack fault (SDM Vol. 1 §8.5.1.1): IE and SF, C1 = `overflow`.
    /// Returns whether the masked response (the indefinite) applies.
    pub fn stack_fault(&mut self, overflow: bool) -> bool {
        self.sw |= sw::SF;
        let go = self.signal(Exc::IE);
        self.set_c1(overflow);
        go
    }

    /// FLD/FILD/FBLD/FLDconst: pushes `v` (`exc` from its conversion, e.g.
    /// IE for an m32fp SNaN, DE for a denormal). A full stack is a stack
    /// overflow: masked, the indefinite is pushed.
    pub fn push(&mut self, v: F80, exc: Exc) {
        let dst = (self.top + 7) & 7;
        if self.valid & (1 << dst) != 0 {
            if self.stack_fault(true) {
                self.top = dst;
                self.set_st(0, F80::INDEFINITE);
            }
            return;
        }
        self.set_c1(false);
        let v = if exc.contains(Exc::IE) && v.is_nan() { v.quiet() } else { v };
        if self.signal(exc) {
            self.top = dst;
            self.set_st(0, v);
        }
    }

    /// FLD m32fp/m64fp: the value converted exactly, an SNaN quieted with
    /// IE, a denormal raising DE (and loaded even when DE is unmasked).
    pub fn fld_ieee(&mut self, f: &round::Ieee, bits: u64) {
        let (v, den) = from_ieee(f, bits);
        let full = self.valid & (1 << ((self.top + 7) & 7)) != 0;
        if v.class() == Class80::SNan {
            self.push(v, Exc::IE);
        } else {
            // Silicon loads a denormal even with DE unmasked; a stack
            // overflow reports no DE (crates/vmm/tests/differential/fp.rs).
            self.push(v, Exc::NONE);
            if den && !full {
                self.sw |= Exc::DE.0 as u16;
                self.update_es();
            }
        }
    }

    /// FLD ST(i): pushes a copy (no exception for an SNaN or denormal; an
    /// empty ST(i) is a stack underflow that pushes the indefinite).
    pub fn fld_st(&mut self, i: usize) {
        if self.is_empty(i) {
            // One stack fault: the masked response pushes over a full
            // ST(7) without a second (overflow) fault (silicon:
            // crates/vmm/tests/differential/fp.rs).
            if self.stack_fault(false) {
                self.push_over(F80::INDEFINITE);
            }
            return;
        }
        let v = self.st(i);
        self.push(v, Exc::NONE);
    }

    /// Reads ST(i) for an operation, or reports a stack underflow (masked:
    /// the operation's result is the indefinite).
    fn read(&mut self, i: usize) -> Result<F80, bool> {
        if self.is_empty(i) {
            Err(self.stack_fault(false))
        } else {
            Ok(self.st(i))
        }
    }

    /// Writes an operation's result to ST(dst) (when its exceptions allow),
    /// sets C1, pops when asked. Returns whether it was written.
    fn commit(&mut self, dst: usize, o: Out, pop: bool) -> bool {
        if !self.signal(o.exc) {
            return false;
        }
        self.set_st(dst, o.v);
        self.set_c1(o.c1);
        if pop {
            self.pop();
        }
        true
    }

    /// The arithmetic instruction forms: ST(dst) = ST(dst) op `src`, where
    /// `src` is ST(i) or a memory operand (m32fp/m64fp via [`from_ieee`],
    /// m16int/m32int via [`from_int`], with its denormal flag); pops after
    /// for the P forms. FADD ST(i), ST(0) is `arith(Add, i, St(0), false)`.
    pub fn arith(&mut self, op: Arith87, dst: usize, src: Operand, pop: bool) {
        let a = self.read(dst);
        let b = match src {
            Operand::St(i) => self.read(i),
            Operand::Mem(v, _) => Ok(v),
        };
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(m), _) | (_, Err(m)) => {
                if m {
                    self.set_st(dst, F80::INDEFINITE);
                    if pop {
                        self.pop();
                    }
                }
                return;
            }
        };
        let mut o = arith(op, a, b, self.control());
        // A denormal memory operand raises DE, but not beside IE or ZE
        // (silicon: denormal / 0 is ZE alone) nor after a NaN.
        if let Operand::Mem(_, true) = src {
            if !o.exc.intersects(Exc(Exc::IE.0 | Exc::ZE.0)) && !a.is_nan() {
                o.exc |= Exc::DE;
            }
        }
        self.commit(dst, o, pop);
    }

    /// A one-operand instruction on ST(0): FSQRT, FRNDINT, FABS, FCHS...
    pub fn unary(&mut self, f: impl FnOnce(F80, Cw) -> Out) {
        match self.read(0) {
            Ok(a) => {
                let o = f(a, self.control());
                self.commit(0, o, false);
            }
            Err(true) => self.set_st(0, F80::INDEFINITE),
            Err(false) => {}
        }
    }

    /// FABS: clears the sign (C1 cleared; no exception, even for an SNaN).
    pub fn fabs(&mut self) {
        self.unary(|a, _| Out::of(a.with_sign(false), Exc::NONE));
    }

    /// FCHS: flips the sign.
    pub fn fchs(&mut self) {
        self.unary(|a, _| Out::of(a.with_sign(!a.sign()), Exc::NONE));
    }

    /// FST/FSTP ST(i): copies ST(0) (no conversion, no exception).
    pub fn fst_st(&mut self, i: usize, pop: bool) {
        match self.read(0) {
            Ok(v) => {
                self.set_st(i, v);
                self.set_c1(false);
            }
            Err(true) => self.set_st(i, F80::INDEFINITE),
            Err(false) => return,
        }
        if pop {
            self.pop();
        }
    }

    /// FST/FSTP/FIST/FISTP/FISTTP/FBSTP to memory: `conv` turns ST(0) into
    /// the memory image and its outcome; returns the image to store, or
    /// None when nothing is stored (an unmasked IE, DE, OE or UE, or an
    /// unmasked stack underflow; the stack is then not popped either). A
    /// masked underflow stores the format's indefinite.
    pub fn store<T>(&mut self, pop: bool, conv: impl FnOnce(F80, Cw) -> (T, Exc, bool), indefinite: T) -> Option<T> {
        let v = match self.read(0) {
            Ok(v) => v,
            Err(true) => {
                if pop {
                    self.pop();
                }
                return Some(indefinite);
            }
            Err(false) => return None,
        };
        let (img, mut exc, c1) = conv(v, self.control());
        let refused = self.control().unmasked(exc.and(Exc(Exc::PRE.0 | Exc::OE.0 | Exc::UE.0)));
        if self.control().unmasked(exc.and(Exc(Exc::OE.0 | Exc::UE.0))) {
            // Nothing stored, and silicon reports no PE with it.
            exc = Exc(exc.0 & !Exc::PE.0);
        }
        self.sw |= exc.0 as u16;
        self.update_es();
        if refused {
            // As for a result an unmasked exception keeps ([`X87::commit`]).
            self.set_c1(false);
            return None;
        }
        self.set_c1(c1);
        if pop {
            self.pop();
        }
        Some(img)
    }

    /// FXCH ST(i): swaps ST(0) and ST(i); an empty one is a stack
    /// underflow whose masked response swaps in the indefinite.
    pub fn fxch(&mut self, i: usize) {
        if self.is_empty(0) || self.is_empty(i) {
            if !self.stack_fault(false) {
                return;
            }
            for j in [0, i] {
                if self.is_empty(j) {
                    self.set_st(j, F80::INDEFINITE);
                }
            }
        } else {
            self.set_c1(false);
        }
        let (a, b) = (self.st(0), self.st(i));
        self.set_st(0, b);
        self.set_st(i, a);
    }

    /// FCMOVcc ST(0), ST(i): copies ST(i) into ST(0) when `cond` (the
    /// executor evaluates it from RFLAGS). A masked stack underflow writes
    /// the indefinite whatever the condition (silicon:
    /// crates/vmm/tests/differential/fp.rs).
    pub fn fcmov(&mut self, i: usize, cond: bool) {
        if self.is_empty(0) || self.is_empty(i) {
            if self.stack_fault(false) {
                self.set_st(0, F80::INDEFINITE);
            }
            return;
        }
        if cond {
            let v = self.st(i);
            self.set_st(0, v);
        }
    }

    /// FCOM/FCOMP/FCOMPP/FUCOM*/FICOM*/FTST: compares ST(0) with `src`,
    /// sets C3/C2/C0 (C1 cleared), pops `pops` times unless an exception
    /// is unmasked. An empty operand is a stack underflow: masked, the
    /// result is unordered.
    pub fn fcom(&mut self, src: Operand, signalling: bool, pops: u8) {
        let (c, go) = self.compare_operands(src, signalling);
        self.sw = (self.sw & !sw::CC) | c.cc();
        for _ in 0..if go { pops } else { 0 } {
            self.pop();
        }
    }

    /// FCOMI/FCOMIP/FUCOMI/FUCOMIP ST(0), ST(i): the RFLAGS status bits to
    /// set (ZF, PF, CF; OF, SF, AF cleared).
    pub fn fcomi(&mut self, i: usize, signalling: bool, pop: bool) -> u64 {
        let (c, go) = self.compare_operands(Operand::St(i), signalling);
        if pop && go {
            self.pop();
        }
        c.rflags()
    }

    /// The compare and whether the instruction may go on to pop (no
    /// unmasked exception).
    fn compare_operands(&mut self, src: Operand, signalling: bool) -> (Cmp, bool) {
        let a = self.read(0);
        let b = match src {
            Operand::St(i) => self.read(i),
            Operand::Mem(v, _) => Ok(v),
        };
        // A stack underflow compares unordered even when unmasked (then
        // without popping), as silicon does.
        let unordered = Cmp { unordered: true, less: false, equal: false, exc: Exc::NONE };
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(go), _) | (_, Err(go)) => return (unordered, go),
        };
        let mut c = compare(a, b, signalling);
        if let Operand::Mem(_, true) = src {
            if !c.unordered {
                c.exc |= Exc::DE;
            }
        }
        // Silicon sets the condition codes (and FCOMI's RFLAGS) even when
        // the compare raises an unmasked IE or DE, but then does not pop.
        // FCOMI leaves C1 as it was, even after an unmasked exception
        // (silicon, against the SDM's "set to 0":
        // crates/vmm/tests/differential/fp.rs); FCOM's condition codes
        // clear it.
        let c1 = self.sw & sw::C1;
        let go = self.signal(c.exc);
        self.sw = (self.sw & !sw::C1) | c1;
        (c, go)
    }

    /// FXAM: classifies ST(0) into C3, C2, C1, C0 (no exception, even when
    /// empty).
    pub fn fxam(&mut self) {
        let cc = examine(self.st(0), self.is_empty(0));
        self.sw = (self.sw & !sw::CC) | cc;
    }

    /// FFREE ST(i): marks it empty, C1 cleared (the SDM leaves the
    /// condition codes undefined; silicon clears C1:
    /// crates/vmm/tests/differential/fp.rs).
    pub fn ffree(&mut self, i: usize) {
        let p = self.phys(i);
        self.valid &= !(1 << p);
        self.set_c1(false);
    }

    /// FFREEP ST(i) (undocumented, DF C0+i): FFREE, then a pop.
    pub fn ffreep(&mut self, i: usize) {
        self.ffree(i);
        self.pop();
    }

    /// FINCSTP (`by` 1) / FDECSTP (7): rotates TOP, C1 cleared.
    pub fn rotate(&mut self, by: u8) {
        self.top = (self.top + by) & 7;
        self.set_c1(false);
    }

    /// The MMX transition every MMX instruction but EMMS makes (SDM Vol. 1
    /// §9.5.1): TOP = 0 and every tag valid. The executor raises #MF first
    /// when an x87 exception is pending ([`X87::pending`]).
    pub fn mmx_enter(&mut self) {
        self.top = 0;
        self.valid = 0xff;
    }

    /// MMi: the significand of physical register Ri.
    pub fn mm(&self, i: usize) -> u64 {
        self.regs[i & 7].sig
    }

    /// Writes MMi: the significand of Ri, its sign and exponent all ones
    /// (SDM Vol. 1 §9.5.1).
    pub fn set_mm(&mut self, i: usize, v: u64) {
        self.regs[i & 7] = F80 { se: 0xffff, sig: v };
    }

    /// EMMS: every tag empty, and TOP = 0 as for every MMX instruction
    /// (silicon: crates/vmm/tests/differential/fp.rs).
    pub fn emms(&mut self) {
        self.top = 0;
        self.valid = 0;
    }

    /// FXTRACT: ST(0) replaced by its exponent, then the significand pushed.
    pub fn fxtract(&mut self) {
        let a = match self.read(0) {
            Ok(a) => a,
            Err(m) => {
                if m {
                    self.set_st(0, F80::INDEFINITE);
                    self.push_over(F80::INDEFINITE);
                }
                return;
            }
        };
        if !self.is_empty(7) {
            if self.stack_fault(true) {
                self.set_st(0, F80::INDEFINITE);
                self.push_over(F80::INDEFINITE);
            }
            return;
        }
        let (e, s, exc) = xtract(a);
        if self.signal(exc) {
            self.set_st(0, e);
            self.set_c1(false);
            self.top = (self.top + 7) & 7;
            self.set_st(0, s);
        }
    }

    /// FSCALE (ST(0) by ST(1)) and FPREM/FPREM1 (ST(0) by ST(1)).
    pub fn binary_st01(&mut self, f: impl FnOnce(F80, F80, Cw) -> (Out, Option<u16>)) {
        let (a, b) = match (self.read(0), self.read(1)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(true), _) | (_, Err(true)) => {
                self.set_st(0, F80::INDEFINITE);
                return;
            }
            _ => return,
        };
        let (o, cc) = f(a, b, self.control());
        if self.signal(o.exc) {
            self.set_st(0, o.v);
            match cc {
                Some(cc) => self.sw = (self.sw & !sw::CC) | cc,
                None => self.set_c1(o.c1),
            }
        }
    }

    /// FPREM (`ieee` false) or FPREM1. The remainder is exact, but a
    /// denormal one still meets an unmasked UE with the bias-adjusted
    /// response, as silicon gives it.
    pub fn fprem(&mut self, ieee: bool) {
        // Without a quotient (a stack underflow, a NaN or invalid operand,
        // an unmasked exception) C1 and C2 clear and C0 and C3 stay, as
        // silicon leaves them (crates/vmm/tests/differential/fp.rs).
        let kept = self.sw & (sw::C0 | sw::C3);
        let (a, b) = match (self.read(0), self.read(1)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(masked), _) | (_, Err(masked)) => {
                self.sw &= !sw::C2;
                if masked {
                    self.set_st(0, F80::INDEFINITE);
                }
                return;
            }
        };
        let (v, cc, exc) = prem(a, b, ieee);
        let o = match v.class() {
            Class80::Denormal | Class80::PseudoDenormal if !exc.contains(Exc::IE) => {
                let f = finish(v.unpack(), self.control(), 64);
                Out { v: f.v, exc: exc | f.exc, c1: false }
            }
            _ => Out { v, exc, c1: false },
        };
        let go = self.signal(o.exc);
        let cc = cc.filter(|_| go).unwrap_or(kept);
        self.sw = (self.sw & !sw::CC) | cc;
        if go {
            self.set_st(0, o.v);
        }
    }

    /// FSCALE.
    pub fn fscale(&mut self) {
        self.binary_st01(|a, b, cw| (scale(a, b, cw), None));
    }
}

/// The second operand of an arithmetic or compare instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Operand {
    /// ST(i).
    St(usize),
    /// A memory operand in register format, and whether it was a denormal
    /// in its memory format (m32fp/m64fp; raises DE when used).
    Mem(F80, bool),
}

impl Operand {
    /// An m32fp or m64fp operand.
    pub fn ieee(f: &round::Ieee, bits: u64) -> Operand {
        let (v, d) = from_ieee(f, bits);
        Operand::Mem(v, d)
    }

    /// An m16int/m32int operand (FIADD, FICOM...).
    pub fn int(v: i64) -> Operand {
        Operand::Mem(from_int(v), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp::round::{DOUBLE, SINGLE};

    const CW: Cw = Cw(0x037f);

    fn f(x: f64) -> F80 {
        from_ieee(&DOUBLE, x.to_bits()).0
    }

    #[test]
    fn classes_follow_table_8_3() {
        assert_eq!(F80::ONE.class(), Class80::Normal);
        assert_eq!(F80 { se: 0x3fff, sig: 1 << 62 }.class(), Class80::Unsupported);
        assert_eq!(F80 { se: 0x7fff, sig: 0 }.class(), Class80::Unsupported);
        assert_eq!(F80 { se: 0, sig: 1 << 63 }.class(), Class80::PseudoDenormal);
        assert_eq!(F80::INDEFINITE.class(), Class80::QNan);
        assert_eq!(F80 { se: 0x7fff, sig: 0x8000_0000_0000_0001 }.class(), Class80::SNan);
    }

    #[test]
    fn precision_control_rounds_the_significand() {
        let third = arith(Arith87::Div, F80::ONE, f(3.0), CW).v;
        assert_eq!(third, F80 { se: 0x3ffd, sig: 0xaaaa_aaaa_aaaa_aaab });
        let t53 = arith(Arith87::Div, F80::ONE, f(3.0), Cw(0x027f)).v;
        assert_eq!(to_ieee(&DOUBLE, t53, CW).0, (1.0f64 / 3.0).to_bits());
        let t24 = arith(Arith87::Div, F80::ONE, f(3.0), Cw(0x007f)).v;
        assert_eq!(to_ieee(&SINGLE, t24, CW).0, (1.0f32 / 3.0).to_bits() as u64);
    }

    #[test]
    fn stack_overflow_and_underflow() {
        let mut x = X87::default();
        for _ in 0..8 {
            x.push(F80::ONE, Exc::NONE);
        }
        x.push(F80::ONE, Exc::NONE);
        assert_eq!(x.st(0), F80::INDEFINITE);
        assert_eq!(x.status_word() & (0x41 | sw::C1), 0x41 | sw::C1);
        let mut x = X87::default();
        x.arith(Arith87::Add, 0, Operand::St(1), false);
        assert_eq!(x.status_word() & 0x41, 0x41);
        assert_eq!(x.status_word() & sw::C1, 0);
    }

    #[test]
    fn unmasked_exception_sets_es_and_keeps_destination() {
        let mut x = X87::default();
        x.fldcw(0x037f & !4); // ZM clear
        x.push(F80::ONE, Exc::NONE);
        x.arith(Arith87::Div, 0, Operand::Mem(F80::ZERO, false), false);
        assert_eq!(x.st(0), F80::ONE);
        assert!(x.pending());
        assert_eq!(x.status_word() & 0x80ff, 0x8084);
        x.fnclex();
        assert!(!x.pending());
    }

    #[test]
    fn integer_and_bcd_conversions() {
        assert_eq!(to_int(f(2.5), 16, false, CW), (2, Exc::PE, false));
        assert_eq!(to_int(f(-2.5), 16, true, CW), (0xfffe, Exc::PE, false));
        assert_eq!(to_int(f(40000.0), 16, false, CW), (0x8000, Exc::IE, false));
        assert_eq!(to_int(f(3.5), 32, false, CW), (4, Exc::PE, true));
        let (b, e, _) = to_bcd(f(-1234.0), CW);
        assert_eq!((b[0], b[1], b[9], e), (0x34, 0x12, 0x80, Exc::NONE));
        assert_eq!(from_bcd(b), f(-1234.0));
        assert_eq!(to_bcd(f(1e18), CW).0[7..], [0xc0, 0xff, 0xff]);
    }

    #[test]
    fn remainders() {
        let (r, cc, _) = prem(f(10.0), f(3.0), false);
        let cc = cc.unwrap();
        assert_eq!((r, cc), (f(1.0), sw::C3 | sw::C1));
        let (r, cc, _) = prem(f(11.0), f(3.0), true);
        let cc = cc.unwrap();
        assert_eq!(r, f(-1.0));
        assert_eq!(cc, sw::C0);
        let (r, _, _) = prem(f(5.0), f(2.0), true);
        assert_eq!(r, f(1.0));
        let (_, cc, _) = prem(f(1e300), f(3.0), false);
        let cc = cc.unwrap();
        assert_eq!(cc & sw::C2, sw::C2);
    }

    #[test]
    fn mmx_aliases_the_registers() {
        let mut x = X87::default();
        x.push(F80::ONE, Exc::NONE);
        x.mmx_enter();
        x.set_mm(3, 0x1234);
        assert_eq!((x.top, x.valid, x.mm(3)), (0, 0xff, 0x1234));
        assert_eq!(x.st(3), F80 { se: 0xffff, sig: 0x1234 });
        x.emms();
        assert_eq!(x.tag_word(), 0xffff);
    }

    #[test]
    fn constants_round_by_rc() {
        assert_eq!(constant(Const::Pi, Rc::Nearest), F80 { se: 0x4000, sig: 0xc90f_daa2_2168_c235 });
        assert_eq!(constant(Const::Pi, Rc::Down), F80 { se: 0x4000, sig: 0xc90f_daa2_2168_c234 });
        assert_eq!(constant(Const::Ln2, Rc::Up), F80 { se: 0x3ffe, sig: 0xb172_17f7_d1cf_79ac });
    }
}

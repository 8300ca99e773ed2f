//! MMX, SSE2, SSSE3 and SSE4.1 packed integer, shuffle, blend and move
//! instructions (SDM Vol. 1 §9.4, §11.4.3-11.4.5, §12.7, §12.10.4-12.10.8;
//! Vol. 2 per instruction). Every function is generic over the register
//! width through [`Vector`]: `u64` is an MMX register, `u128` an XMM
//! register, and the instruction's MMX and SSE forms are the same function
//! (PADDB mm and PADDB xmm are `add::<u64, u8>` and `add::<u128, u8>`).
//! Operand order is the SDM's: `a` is the first operand (the destination's
//! old value), `b` the second. None of these raises a floating-point
//! exception; the bitwise instructions (PAND, POR, PXOR, ANDPS...) are the
//! integer operators `&`, `|`, `^`, and PANDN/ANDNPS is [`andn`].

/// A packed-integer register: MMX (`u64`) or XMM (`u128`), lane 0 in the
/// low bits.
pub trait Vector: Copy + Eq + core::fmt::Debug {
    /// Width in bytes: 8 or 16.
    const BYTES: usize;
    /// The value as little-endian bytes (MMX fills the first 8).
    fn to_bytes(self) -> [u8; 16];
    /// A value from little-endian bytes (MMX takes the first 8).
    fn from_bytes(b: [u8; 16]) -> Self;
}

impl Vector for u64 {
    const BYTES: usize = 8;
    #[inline]
    fn to_bytes(self) -> [u8; 16] {
        (self as u128).to_le_bytes()
    }
    #[inline]
    fn from_bytes(b: [u8; 16]) -> u64 {
        u128::from_le_bytes(b) as u64
    }
}

impl Vector for u128 {
    const BYTES: usize = 16;
    #[inline]
    fn to_bytes(self) -> [u8; 16] {
        self.to_le_bytes()
    }
    #[inline]
    fn from_bytes(b: [u8; 16]) -> u128 {
        u128::from_le_bytes(b)
    }
}

/// An integer lane type: `u8`..`u64` and `i8`..`i64`.
pub trait Lane: Copy + Default + PartialOrd + Ord + core::fmt::Debug {
    /// Width in bytes.
    const BYTES: usize;
    /// The lane at byte offset `at` of `b`.
    fn read(b: &[u8; 16], at: usize) -> Self;
    /// Stores the lane at byte offset `at` of `b`.
    fn write(self, b: &mut [u8; 16], at: usize);
    /// The value widened to i128.
    fn wide(self) -> i128;
    /// The value truncated from i128.
    fn narrow(v: i128) -> Self;
    /// The lane type's range.
    const MIN: i128;
    /// The lane type's range.
    const MAX: i128;
}

macro_rules! lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            const BYTES: usize = core::mem::size_of::<$t>();
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: i128 = <$t>::MAX as i128;
            #[inline]
            fn read(b: &[u8; 16], at: usize) -> $t {
                let mut x = [0u8; core::mem::size_of::<$t>()];
                x.copy_from_slice(&b[at..at + core::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(x)
            }
            #[inline]
            fn write(self, b: &mut [u8; 16], at: usize) {
                b[at..at + core::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn wide(self) -> i128 {
                self as i128
            }
            #[inline]
            fn narrow(v: i128) -> $t {
                v as $t
            }
        }
    )*};
}
lane!(u8, i8, u16, i16, u32, i32, u64, i64);

/// Number of `L` lanes in `V`.
#[inline]
pub const fn count<V: Vector, L: Lane>() -> usize {
    V::BYTES / L::BYTES
}

/// Lane `i` of `v`.
#[inline]
pub fn get<V: Vector, L: Lane>(v: V, i: usize) -> L {
    L::read(&v.to_bytes(), i * L::BYTES)
}

/// The lanes of `v` as an array (unused tail lanes zero).
#[inline]
pub fn lanes<V: Vector, L: Lane>(v: V) -> [L; 16] {
    let b = v.to_bytes();
    let mut out = [L::default(); 16];
    for (i, o) in out.iter_mut().enumerate().take(count::<V, L>()) {
        *o = L::read(&b, i * L::BYTES);
    }
    out
}

/// A vector from lanes (only the first `count::<V, L>()` are read).
#[inline]
pub fn from_lanes<V: Vector, L: Lane>(l: &[L]) -> V {
    let mut b = [0u8; 16];
    for (i, x) in l.iter().enumerate().take(count::<V, L>()) {
        x.write(&mut b, i * L::BYTES);
    }
    V::from_bytes(b)
}

/// Lane-wise `f(a[i], b[i])`.
#[inline]
pub fn map2<V: Vector, L: Lane>(a: V, b: V, f: impl Fn(L, L) -> L) -> V {
    let (x, y) = (lanes::<V, L>(a), lanes::<V, L>(b));
    let mut r = [L::default(); 16];
    for i in 0..count::<V, L>() {
        r[i] = f(x[i], y[i]);
    }
    from_lanes(&r)
}

/// Lane-wise `f(a[i])`.
#[inline]
pub fn map1<V: Vector, L: Lane>(a: V, f: impl Fn(L) -> L) -> V {
    let x = lanes::<V, L>(a);
    let mut r = [L::default(); 16];
    for i in 0..count::<V, L>() {
        r[i] = f(x[i]);
    }
    from_lanes(&r)
}

#[inline]
fn sat<L: Lane>(v: i128) -> L {
    L::narrow(v.clamp(L::MIN, L::MAX))
}

/// PANDN/ANDNPS/ANDNPD: `!a & b`.
#[inline]
pub fn andn<V: Vector + core::ops::Not<Output = V> + core::ops::BitAnd<Output = V>>(a: V, b: V) -> V {
    !a & b
}

/// PADDB/W/D/Q: wrapping addition (`L` unsigned or signed alike).
pub fn add<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| L::narrow(x.wide() + y.wide()))
}

/// PSUBB/W/D/Q: wrapping subtraction.
pub fn sub<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| L::narrow(x.wide() - y.wide()))
}

/// PADDSB/PADDSW (`L` = i8/i16) and PADDUSB/PADDUSW (u8/u16): saturating.
pub fn adds<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| sat(x.wide() + y.wide()))
}

/// PSUBSB/PSUBSW and PSUBUSB/PSUBUSW: saturating.
pub fn subs<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| sat(x.wide() - y.wide()))
}

/// PMULLW (`L` = i16), PMULLD (i32): the low half of each product.
pub fn mullo<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| L::narrow(x.wide() * y.wide()))
}

/// PMULHW (`L` = i16) and PMULHUW (u16): the high 16 bits of each product.
pub fn mulhi<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| L::narrow((x.wide() * y.wide()) >> 16))
}

/// PMULHRSW (SSSE3): `(a × b + 0x4000) >> 15` per signed word.
pub fn mulhrs<V: Vector>(a: V, b: V) -> V {
    map2::<V, i16>(a, b, |x, y| (((x as i32 * y as i32) + 0x4000) >> 15) as i16)
}

/// PMULUDQ (`signed` false) and PMULDQ (SSE4.1, `signed`): the even
/// doubleword lanes multiplied into quadwords.
pub fn mul_even<V: Vector>(a: V, b: V, signed: bool) -> V {
    let (x, y) = (lanes::<V, u32>(a), lanes::<V, u32>(b));
    let mut r = [0u64; 2];
    for (i, o) in r.iter_mut().enumerate().take(count::<V, u64>()) {
        *o = if signed {
            (x[2 * i] as i32 as i64).wrapping_mul(y[2 * i] as i32 as i64) as u64
        } else {
            x[2 * i] as u64 * y[2 * i] as u64
        };
    }
    from_lanes(&r)
}

/// PMADDWD: signed word products, adjacent pairs summed into doublewords
/// (0x8000 × 0x8000 twice wraps to 0x80000000, as the SDM notes).
pub fn madd_wd<V: Vector>(a: V, b: V) -> V {
    let (x, y) = (lanes::<V, i16>(a), lanes::<V, i16>(b));
    let mut r = [0i32; 4];
    for (i, o) in r.iter_mut().enumerate().take(count::<V, i32>()) {
        let p = |j: usize| x[j] as i32 * y[j] as i32;
        *o = p(2 * i).wrapping_add(p(2 * i + 1));
    }
    from_lanes(&r)
}

/// PMADDUBSW (SSSE3): unsigned bytes of `a` times signed bytes of `b`,
/// adjacent pairs summed with signed saturation into words.
pub fn madd_ubsw<V: Vector>(a: V, b: V) -> V {
    let (x, y) = (lanes::<V, u8>(a), lanes::<V, i8>(b));
    let mut r = [0i16; 8];
    for (i, o) in r.iter_mut().enumerate().take(count::<V, i16>()) {
        let p = |j: usize| x[j] as i32 * y[j] as i32;
        *o = (p(2 * i) + p(2 * i + 1)).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
    from_lanes(&r)
}

/// PAVGB/PAVGW: `(a + b + 1) >> 1` unsigned.
pub fn avg<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| L::narrow((x.wide() + y.wide() + 1) >> 1))
}

/// PMINUB/PMINSW (SSE), PMINSB/PMINUW/PMINSD/PMINUD (SSE4.1): the lane
/// type's signedness picks the instruction.
pub fn min<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| x.min(y))
}

/// PMAXUB/PMAXSW, PMAXSB/PMAXUW/PMAXSD/PMAXUD.
pub fn max<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| x.max(y))
}

/// PSADBW: sums of absolute byte differences, per 8 bytes, into the low
/// word of each quadword (the rest zero).
pub fn sad<V: Vector>(a: V, b: V) -> V {
    let (x, y) = (lanes::<V, u8>(a), lanes::<V, u8>(b));
    let mut r = [0u64; 2];
    for (q, o) in r.iter_mut().enumerate().take(count::<V, u64>()) {
        *o = (0..8).map(|j| x[8 * q + j].abs_diff(y[8 * q + j]) as u64).sum();
    }
    from_lanes(&r)
}

/// PCMPEQB/W/D, PCMPEQQ (SSE4.1): all-ones lanes where equal.
pub fn cmpeq<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| if x == y { L::narrow(-1) } else { L::default() })
}

/// PCMPGTB/W/D, PCMPGTQ (SSE4.2; `L` signed): all-ones lanes where `a > b`.
pub fn cmpgt<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| if x > y { L::narrow(-1) } else { L::default() })
}

/// PSLLW/D/Q (`L` unsigned): logical left shift of every lane by the
/// 64-bit `count` (the second operand's low quadword or an imm8); a count
/// above the lane width minus one clears the lanes.
pub fn sll<V: Vector, L: Lane>(a: V, count: u64) -> V {
    let bits = 8 * L::BYTES as u64;
    map1::<V, L>(a, |x| if count >= bits { L::default() } else { L::narrow(x.wide() << count) })
}

/// PSRLW/D/Q (`L` unsigned): logical right shift, clearing past the width.
pub fn srl<V: Vector, L: Lane>(a: V, count: u64) -> V {
    let bits = 8 * L::BYTES as u64;
    map1::<V, L>(a, |x| if count >= bits { L::default() } else { L::narrow(x.wide() >> count) })
}

/// PSRAW/PSRAD (`L` signed): arithmetic right shift; a count past the
/// width fills every lane with its sign.
pub fn sra<V: Vector, L: Lane>(a: V, count: u64) -> V {
    let bits = 8 * L::BYTES as u64;
    map1::<V, L>(a, |x| L::narrow(x.wide() >> count.min(bits - 1)))
}

/// PSLLDQ: the whole register shifted left by `imm8` bytes (16 or more
/// clears it).
pub fn slldq(a: u128, imm8: u8) -> u128 {
    if imm8 >= 16 {
        0
    } else {
        a << (8 * imm8 as u32)
    }
}

/// PSRLDQ: the whole register shifted right by `imm8` bytes.
pub fn srldq(a: u128, imm8: u8) -> u128 {
    if imm8 >= 16 {
        0
    } else {
        a >> (8 * imm8 as u32)
    }
}

/// PACKSSWB (`N` = i8, `W` = i16), PACKSSDW (i16, i32), PACKUSWB (u8, i16)
/// and PACKUSDW (SSE4.1: u16, i32): `a`'s lanes then `b`'s, each narrowed
/// with saturation to `N`'s range.
pub fn pack<V: Vector, W: Lane, N: Lane>(a: V, b: V) -> V {
    let (x, y) = (lanes::<V, W>(a), lanes::<V, W>(b));
    let n = count::<V, W>();
    let mut r = [N::default(); 16];
    for i in 0..n {
        r[i] = sat(x[i].wide());
        r[n + i] = sat(y[i].wide());
    }
    from_lanes(&r)
}

/// PUNPCKLBW/WD/DQ/QDQ, UNPCKLPS/PD (`high` false) and the PUNPCKH/UNPCKH
/// forms: lanes of the low (high) halves of `a` and `b` interleaved, `a`'s
/// first.
pub fn unpack<V: Vector, L: Lane>(a: V, b: V, high: bool) -> V {
    let (x, y) = (lanes::<V, L>(a), lanes::<V, L>(b));
    let n = count::<V, L>();
    let base = if high { n / 2 } else { 0 };
    let mut r = [L::default(); 16];
    for i in 0..n / 2 {
        r[2 * i] = x[base + i];
        r[2 * i + 1] = y[base + i];
    }
    from_lanes(&r)
}

/// PSHUFD: doubleword `i` of the result is doubleword `imm8[2i+1:2i]` of
/// `b`.
pub fn pshufd(b: u128, imm8: u8) -> u128 {
    let x = lanes::<u128, u32>(b);
    from_lanes::<u128, u32>(&[0, 1, 2, 3].map(|i| x[(imm8 >> (2 * i)) as usize & 3]))
}

/// PSHUFW (MMX) and PSHUFLW (`high` false) / PSHUFHW: four words shuffled
/// by `imm8` within one 64-bit half, the other half of `b` kept.
pub fn pshufw<V: Vector>(b: V, imm8: u8, high: bool) -> V {
    let mut x = lanes::<V, u16>(b);
    let base = if high { 4 } else { 0 };
    let src = [x[base], x[base + 1], x[base + 2], x[base + 3]];
    for i in 0..4 {
        x[base + i] = src[(imm8 >> (2 * i)) as usize & 3];
    }
    from_lanes(&x)
}

/// SHUFPS: result singles 0-1 from `a`, 2-3 from `b`, each picked by two
/// bits of `imm8`.
pub fn shufps(a: u128, b: u128, imm8: u8) -> u128 {
    let (x, y) = (lanes::<u128, u32>(a), lanes::<u128, u32>(b));
    let s = |i: usize| (imm8 >> (2 * i)) as usize & 3;
    from_lanes::<u128, u32>(&[x[s(0)], x[s(1)], y[s(2)], y[s(3)]])
}

/// SHUFPD: result double 0 from `a` by `imm8` bit 0, double 1 from `b` by
/// bit 1.
pub fn shufpd(a: u128, b: u128, imm8: u8) -> u128 {
    let (x, y) = (lanes::<u128, u64>(a), lanes::<u128, u64>(b));
    from_lanes::<u128, u64>(&[x[imm8 as usize & 1], y[(imm8 >> 1) as usize & 1]])
}

/// PSHUFB (SSSE3): byte `i` is zero when `b[i]` bit 7 is set, else byte
/// `b[i] & (len − 1)` of `a`.
pub fn pshufb<V: Vector>(a: V, b: V) -> V {
    let (x, y) = (lanes::<V, u8>(a), lanes::<V, u8>(b));
    let mut r = [0u8; 16];
    for i in 0..V::BYTES {
        r[i] = if y[i] & 0x80 != 0 { 0 } else { x[y[i] as usize & (V::BYTES - 1)] };
    }
    from_lanes(&r)
}

/// PALIGNR (SSSE3): `a:b` concatenated (`a` high), shifted right by `imm8`
/// bytes, the low register width kept (zeros shift in past `2 × width`).
pub fn palignr<V: Vector>(a: V, b: V, imm8: u8) -> V {
    let n = V::BYTES;
    let (x, y) = (a.to_bytes(), b.to_bytes());
    let mut r = [0u8; 16];
    for (i, o) in r.iter_mut().enumerate().take(n) {
        let k = i + imm8 as usize;
        *o = if k < n {
            y[k]
        } else if k < 2 * n {
            x[k - n]
        } else {
            0
        };
    }
    V::from_bytes(r)
}

/// PHADDW/PHADDD (`sat` false), PHADDSW (`sat`, words): adjacent lane pairs
/// of `a` then of `b` added; PHSUBW/D/SW (`sub`) subtract the odd lane from
/// the even one.
pub fn hadd<V: Vector, L: Lane>(a: V, b: V, sub: bool, sat_: bool) -> V {
    let (x, y) = (lanes::<V, L>(a), lanes::<V, L>(b));
    let n = count::<V, L>();
    let mut r = [L::default(); 16];
    for (i, o) in r.iter_mut().enumerate().take(n) {
        let src = if i < n / 2 { &x } else { &y };
        let j = 2 * (i % (n / 2));
        let v = if sub { src[j].wide() - src[j + 1].wide() } else { src[j].wide() + src[j + 1].wide() };
        *o = if sat_ { sat(v) } else { L::narrow(v) };
    }
    from_lanes(&r)
}

/// PSIGNB/W/D (SSSE3; `L` signed): `a` negated where `b` is negative, zeroed
/// where `b` is zero.
pub fn sign<V: Vector, L: Lane>(a: V, b: V) -> V {
    map2::<V, L>(a, b, |x, y| match y.wide().signum() {
        -1 => L::narrow(-x.wide()),
        0 => L::default(),
        _ => x,
    })
}

/// PABSB/W/D (SSSE3; `L` signed): absolute value, the minimum staying
/// itself (0x80 → 0x80, read unsigned as 128).
pub fn abs<V: Vector, L: Lane>(b: V) -> V {
    map1::<V, L>(b, |x| L::narrow(x.wide().abs()))
}

/// PMOVMSKB: the bytes' top bits, byte 0 in bit 0.
pub fn movmskb<V: Vector>(v: V) -> u32 {
    let b = v.to_bytes();
    (0..V::BYTES).fold(0, |m, i| m | ((b[i] >> 7) as u32) << i)
}

/// MASKMOVQ/MASKMOVDQU: which bytes of `data` the store writes (those whose
/// `mask` byte has its top bit set), as a bit mask like [`movmskb`].
pub fn maskmov<V: Vector>(mask: V) -> u32 {
    movmskb(mask)
}

/// PEXTRB/W/D/Q (`L` u8..u64) and EXTRACTPS (u32): lane `imm8 mod count`,
/// zero-extended.
pub fn extract<V: Vector, L: Lane>(v: V, imm8: u8) -> u64 {
    get::<V, L>(v, imm8 as usize % count::<V, L>()).wide() as u64 & (u64::MAX >> (64 - 8 * L::BYTES))
}

/// PINSRB/W/D/Q: `v` with lane `imm8 mod count` replaced by the low bits of
/// `x`.
pub fn insert<V: Vector, L: Lane>(v: V, x: u64, imm8: u8) -> V {
    let mut l = lanes::<V, L>(v);
    l[imm8 as usize % count::<V, L>()] = L::narrow(x as i128);
    from_lanes(&l)
}

/// INSERTPS (SSE4.1): single `imm8[7:6]` of `b` (for a memory operand,
/// pass the loaded single in lane 0 and `imm8 & 0x3f`) into lane
/// `imm8[5:4]` of `a`, then the lanes set in `imm8[3:0]` zeroed.
pub fn insertps(a: u128, b: u128, imm8: u8) -> u128 {
    let mut x = lanes::<u128, u32>(a);
    x[(imm8 >> 4) as usize & 3] = get::<u128, u32>(b, (imm8 >> 6) as usize);
    for (i, l) in x.iter_mut().enumerate().take(4) {
        if imm8 & (1 << i) != 0 {
            *l = 0;
        }
    }
    from_lanes(&x)
}

/// BLENDPS/BLENDPD/PBLENDW (SSE4.1; `L` u32/u64/u16): lane `i` from `b`
/// where `imm8` bit `i` is set, else from `a`.
pub fn blend<V: Vector, L: Lane>(a: V, b: V, imm8: u8) -> V {
    let (x, y) = (lanes::<V, L>(a), lanes::<V, L>(b));
    let mut r = [L::default(); 16];
    for i in 0..count::<V, L>() {
        r[i] = if imm8 & (1 << i) != 0 { y[i] } else { x[i] };
    }
    from_lanes(&r)
}

/// BLENDVPS/BLENDVPD/PBLENDVB (SSE4.1; `L` u32/u64/u8): lane `i` from `b`
/// where the top bit of lane `i` of `mask` (XMM0) is set.
pub fn blendv<V: Vector, L: Lane>(a: V, b: V, mask: V) -> V {
    let (x, y, m) = (lanes::<V, L>(a), lanes::<V, L>(b), lanes::<V, L>(mask));
    let top = 1i128 << (8 * L::BYTES - 1);
    let mut r = [L::default(); 16];
    for i in 0..count::<V, L>() {
        r[i] = if m[i].wide() & top != 0 { y[i] } else { x[i] };
    }
    from_lanes(&r)
}

/// PMOVSXBW..PMOVSXDQ (`F` signed) and PMOVZXBW..PMOVZXDQ (`F` unsigned)
/// (SSE4.1): the low lanes of `b` of type `F` extended into lanes of `T`.
pub fn movx<F: Lane, T: Lane>(b: u128) -> u128 {
    let x = lanes::<u128, F>(b);
    let mut r = [T::default(); 16];
    for (i, o) in r.iter_mut().enumerate().take(count::<u128, T>()) {
        *o = T::narrow(x[i].wide());
    }
    from_lanes(&r)
}

/// PHMINPOSUW (SSE4.1): the smallest unsigned word of `b` in bits 15:0,
/// its index (the lowest on ties) in bits 18:16, the rest zero.
pub fn phminposuw(b: u128) -> u128 {
    let x = lanes::<u128, u16>(b);
    let (i, m) = (0..8).map(|i| (i, x[i])).min_by_key(|&(i, v)| (v, i)).unwrap_or((0, 0));
    (m as u128) | ((i as u128) << 16)
}

/// MPSADBW (SSE4.1): eight sums of absolute differences between the four
/// bytes of `b` at dword `imm8[1:0]` and the byte windows of `a` starting
/// at `4 × imm8[2] + k` for k = 0..7, as words.
pub fn mpsadbw(a: u128, b: u128, imm8: u8) -> u128 {
    let (x, y) = (lanes::<u128, u8>(a), lanes::<u128, u8>(b));
    let (ao, bo) = (4 * ((imm8 >> 2) & 1) as usize, 4 * (imm8 & 3) as usize);
    let mut r = [0u16; 8];
    for (k, o) in r.iter_mut().enumerate() {
        *o = (0..4).map(|j| x[ao + k + j].abs_diff(y[bo + j]) as u16).sum();
    }
    from_lanes(&r)
}

/// PTEST (SSE4.1): ZF = `(a & b) == 0`, CF = `(!a & b) == 0`; AF, OF, PF
/// and SF are cleared. Returned as the RFLAGS status bits to set.
pub fn ptest(a: u128, b: u128) -> u64 {
    use exitlab_arch::bits::rflags::{CF, ZF};
    (if a & b == 0 { ZF } else { 0 }) | (if !a & b == 0 { CF } else { 0 })
}

/// MOVDDUP (SSE3): the low double of `b` in both halves.
pub fn movddup(b: u128) -> u128 {
    (b as u64 as u128) * (1 | 1 << 64)
}

/// MOVSLDUP (`odd` false) / MOVSHDUP (SSE3): the even (odd) singles of `b`
/// duplicated into each pair.
pub fn movsdup(b: u128, odd: bool) -> u128 {
    let x = lanes::<u128, u32>(b);
    let o = odd as usize;
    from_lanes::<u128, u32>(&[x[o], x[o], x[2 + o], x[2 + o]])
}

/// MOVHLPS: `b`'s high quadword into `a`'s low one.
pub fn movhlps(a: u128, b: u128) -> u128 {
    (a & !(u64::MAX as u128)) | (b >> 64)
}

/// MOVLHPS: `b`'s low quadword into `a`'s high one.
pub fn movlhps(a: u128, b: u128) -> u128 {
    (a & u64::MAX as u128) | (b << 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: [u8; 16]) -> u128 {
        u128::from_le_bytes(v)
    }

    #[test]
    fn saturating_adds_clamp() {
        let a = from_lanes::<u128, i16>(&[0x7fff, -0x8000, 5, -5, 0, 0, 0, 0]);
        let b = from_lanes::<u128, i16>(&[1, -1, 3, 3, 0, 0, 0, 0]);
        assert_eq!(lanes::<u128, i16>(adds::<u128, i16>(a, b))[..4], [0x7fff, -0x8000, 8, -2]);
        let a = from_lanes::<u64, u8>(&[250, 3, 0, 0, 0, 0, 0, 0]);
        let b = from_lanes::<u64, u8>(&[10, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lanes::<u64, u8>(adds::<u64, u8>(a, b))[..2], [255, 8]);
        assert_eq!(lanes::<u64, u8>(subs::<u64, u8>(b, a))[..2], [0, 2]);
    }

    #[test]
    fn packs_saturate() {
        let a = from_lanes::<u128, i16>(&[300, -300, 127, -128, 0, 1, -1, 255]);
        let r = pack::<u128, i16, i8>(a, a);
        assert_eq!(lanes::<u128, i8>(r)[..8], [127, -128, 127, -128, 0, 1, -1, 127]);
        let r = pack::<u128, i16, u8>(a, a);
        assert_eq!(lanes::<u128, u8>(r)[..8], [255, 0, 127, 0, 0, 1, 0, 255]);
    }

    #[test]
    fn shifts_past_width() {
        let a = from_lanes::<u128, i16>(&[-2, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lanes::<u128, i16>(sra::<u128, i16>(a, 99))[..2], [-1, 0]);
        assert_eq!(sll::<u128, u16>(a, 16), 0);
        assert_eq!(lanes::<u128, u16>(srl::<u128, u16>(a, 1))[..2], [0x7fff, 2]);
        assert_eq!(slldq(1, 15), 1 << 120);
        assert_eq!(srldq(u128::MAX, 16), 0);
    }

    #[test]
    fn pshufb_and_palignr() {
        let a = bytes([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
        let b = bytes([15, 0x80, 1, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pshufb(a, b).to_le_bytes()[..4], [25, 0, 11, 11]);
        let r = palignr::<u128>(a, 0, 14);
        assert_eq!(r.to_le_bytes()[..4], [0, 0, 10, 11]);
        assert_eq!(palignr::<u64>(5, 7, 16), 0);
        assert_eq!(palignr::<u64>(5, 7, 8), 5);
    }

    #[test]
    fn madd_and_mulhrs() {
        let a = from_lanes::<u128, i16>(&[-0x8000, -0x8000, -0x8000, -0x8000, 2, 3, 0, 0]);
        assert_eq!(lanes::<u128, i32>(madd_wd(a, a))[..3], [i32::MIN, i32::MIN, 13]);
        let x = from_lanes::<u64, u8>(&[255, 255, 0, 0, 0, 0, 0, 0]);
        let y = from_lanes::<u64, i8>(&[127, 127, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lanes::<u64, i16>(madd_ubsw(x, y))[0], i16::MAX);
        let h = from_lanes::<u64, i16>(&[0x4000, -0x8000, 0, 0]);
        assert_eq!(lanes::<u64, i16>(mulhrs(h, h))[..2], [0x2000, -0x8000]);
    }

    #[test]
    fn sse41_lane_ops() {
        let a = from_lanes::<u128, u16>(&[9, 3, 7, 3, 8, 8, 8, 8]);
        assert_eq!(phminposuw(a), 3 | 1 << 16);
        assert_eq!(insertps(0, 0xdead_beef << 64, 0b1001_0000), 0xdead_beef << 32);
        assert_eq!(insertps(u128::MAX, 0, 0b0000_1110), 0);
        let b = movx::<i8, i32>(0x80_7f);
        assert_eq!(lanes::<u128, i32>(b)[..2], [127, -128]);
        let z = movx::<u8, u32>(0x80_7f);
        assert_eq!(lanes::<u128, u32>(z)[..2], [127, 128]);
        assert_eq!(abs::<u64, i8>(0x80), 0x80);
        let s = sign::<u64, i16>(from_lanes::<u64, i16>(&[5, 5, 5, 0]), from_lanes::<u64, i16>(&[-1, 0, 9, 0]));
        assert_eq!(lanes::<u64, i16>(s)[..3], [-5, 0, 5]);
        assert_eq!(ptest(0b1100, 0b0011), exitlab_arch::bits::rflags::ZF);
        assert_eq!(ptest(0b1111, 0b0011), exitlab_arch::bits::rflags::CF);
    }

    #[test]
    fn mpsadbw_windows() {
        let a = bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let b = bytes([0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let r = lanes::<u128, u16>(mpsadbw(a, b, 0));
        assert_eq!(r[..8], [0, 4, 8, 12, 16, 20, 24, 28]);
        let r = lanes::<u128, u16>(mpsadbw(a, b, 4));
        assert_eq!(r[0], 16);
    }
}

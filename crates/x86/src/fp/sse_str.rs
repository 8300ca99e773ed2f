//! SSE4.2 string and text instructions (SDM Vol. 2 §4.1 "Imm8 Control
//! Byte Operation for PCMPESTRI / PCMPESTRM / PCMPISTRI / PCMPISTRM" and
//! the instruction pages) and CRC32 (SDM Vol. 2 CRC32). POPCNT, also an
//! SSE4.2-level instruction, is an integer instruction the executor
//! already has.
//!
//! One function, [`pcmpstr`], computes IntRes2 and the flags for all four
//! string instructions; [`index`] and [`mask`] turn it into ECX or XMM0.

use exitlab_arch::bits::rflags::{CF, OF, SF, ZF};

/// The aggregation and result of a PCMPxSTRx, before its output step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StrResult {
    /// IntRes2: one bit per element of the second operand (16 bytes or 8
    /// words), after polarity.
    pub int_res2: u16,
    /// RFLAGS status bits to set: CF = IntRes2 ≠ 0, ZF = the second
    /// operand's string ends inside the register, SF = the first operand's
    /// does, OF = IntRes2 bit 0; AF and PF cleared.
    pub flags: u64,
}

/// Element count (16 bytes or 8 words) of an imm8's source format.
#[inline]
pub const fn elements(imm8: u8) -> usize {
    if imm8 & 1 != 0 {
        8
    } else {
        16
    }
}

/// Element `i` of `v` in imm8's format (bits 1:0: unsigned bytes, unsigned
/// words, signed bytes, signed words), widened.
#[inline]
fn element(v: u128, imm8: u8, i: usize) -> i32 {
    match imm8 & 3 {
        0 => (v >> (8 * i)) as u8 as i32,
        1 => (v >> (16 * i)) as u16 as i32,
        2 => (v >> (8 * i)) as u8 as i8 as i32,
        _ => (v >> (16 * i)) as u16 as i16 as i32,
    }
}

/// A string's valid length: explicit (PCMPESTRx: EAX or EDX, RAX or RDX
/// with REX.W, as a signed value whose absolute value saturates at the
/// element count) or implicit (PCMPISTRx: up to the first zero element).
fn length(v: u128, explicit: Option<i64>, imm8: u8) -> usize {
    let n = elements(imm8);
    match explicit {
        Some(l) => (l as i128).unsigned_abs().min(n as u128) as usize,
        None => (0..n).find(|&i| element(v, imm8, i) == 0).unwrap_or(n),
    }
}

/// PCMPESTRI/PCMPESTRM (`la`, `lb` = Some(EAX/RAX), Some(EDX/RDX)) and
/// PCMPISTRI/PCMPISTRM (None, None): `a` is the first operand (xmm1),
/// `b` the second (xmm2/m128). imm8 bits 3:2 choose the aggregation (equal
/// any, ranges, equal each, equal ordered), bits 5:4 the polarity, with
/// the SDM's overrides for elements past either string's end (Table 4-7).
pub fn pcmpstr(a: u128, b: u128, la: Option<i64>, lb: Option<i64>, imm8: u8) -> StrResult {
    let n = elements(imm8);
    let (len1, len2) = (length(a, la, imm8), length(b, lb, imm8));
    let ea: [i32; 16] = core::array::from_fn(|i| if i < n { element(a, imm8, i) } else { 0 });
    let eb: [i32; 16] = core::array::from_fn(|i| if i < n { element(b, imm8, i) } else { 0 });
    // BoolRes[j][i]: element j of b against element i of a, with the
    // aggregation's override for invalid elements.
    let mut res1: u32 = 0;
    for j in 0..n {
        let bit = match (imm8 >> 2) & 3 {
            // Equal any: b[j] equals some valid a[i].
            0 => j < len2 && (0..len1).any(|i| eb[j] == ea[i]),
            // Ranges: a holds (low, high) pairs.
            1 => j < len2 && (0..len1 / 2 * 2).step_by(2).any(|i| ea[i] <= eb[j] && eb[j] <= ea[i + 1]),
            // Equal each: both invalid compare true, one invalid false.
            2 => match (j < len1, j < len2) {
                (true, true) => ea[j] == eb[j],
                (false, false) => true,
                _ => false,
            },
            // Equal ordered: a occurs in b starting at j (a's invalid
            // elements match anything, b's invalid ones nothing).
            _ => (0..n - j).all(|k| k >= len1 || (j + k < len2 && eb[j + k] == ea[k])),
        };
        res1 |= (bit as u32) << j;
    }
    let all = (1u32 << n) - 1;
    let valid2 = (1u32 << len2) - 1;
    let res2 = match (imm8 >> 4) & 3 {
        0 | 2 => res1,
        1 => !res1 & all,
        _ => res1 ^ valid2,
    };
    let mut flags = 0;
    if res2 != 0 {
        flags |= CF;
    }
    if len2 < n {
        flags |= ZF;
    }
    if len1 < n {
        flags |= SF;
    }
    if res2 & 1 != 0 {
        flags |= OF;
    }
    StrResult { int_res2: res2 as u16, flags }
}

/// PCMPESTRI/PCMPISTRI's ECX: the index of IntRes2's least significant set
/// bit (imm8 bit 6 clear) or most significant one (set), or the element
/// count when IntRes2 is zero.
pub fn index(r: StrResult, imm8: u8) -> u32 {
    if r.int_res2 == 0 {
        elements(imm8) as u32
    } else if imm8 & 0x40 != 0 {
        15 - r.int_res2.leading_zeros()
    } else {
        r.int_res2.trailing_zeros()
    }
}

/// PCMPESTRM/PCMPISTRM's XMM0: IntRes2 zero-extended (imm8 bit 6 clear)
/// or expanded to an all-ones byte or word per set bit.
pub fn mask(r: StrResult, imm8: u8) -> u128 {
    if imm8 & 0x40 == 0 {
        return r.int_res2 as u128;
    }
    let n = elements(imm8);
    let w = 128 / n;
    (0..n).filter(|&i| r.int_res2 >> i & 1 != 0).fold(0, |m, i| m | ((1u128 << w) - 1) << (w * i))
}

/// CRC32 (SSE4.2): the CRC-32C (Castagnoli, reflected polynomial
/// 0x82F63B78, no inversion) of the low `bytes` bytes of `data` (1, 2, 4 or
/// 8), continuing from `crc` (the destination's low 32 bits). The result
/// is zero-extended into the destination.
pub fn crc32c(crc: u32, data: u64, bytes: usize) -> u32 {
    let mut c = crc;
    for i in 0..bytes {
        c ^= (data >> (8 * i)) as u8 as u32;
        for _ in 0..8 {
            c = (c >> 1) ^ (0x82f6_3b78 & (c & 1).wrapping_neg());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &[u8]) -> u128 {
        let mut b = [0u8; 16];
        b[..t.len()].copy_from_slice(t);
        u128::from_le_bytes(b)
    }

    #[test]
    fn equal_ordered_finds_substring() {
        // PCMPISTRI "lo" in "hello": index 3, SF (needle ends), ZF (haystack ends).
        let r = pcmpstr(s(b"lo"), s(b"hello"), None, None, 0x0c);
        assert_eq!(index(r, 0x0c), 3);
        assert_eq!(r.flags, CF | ZF | SF);
    }

    #[test]
    fn ranges_and_negative_polarity() {
        // Characters of "a1b2" outside 'a'..'z': bits 1 and 3; with masked
        // negative polarity the bytes past the end stay clear.
        let r = pcmpstr(s(b"az"), s(b"a1b2"), None, None, 0x34);
        assert_eq!(r.int_res2, 0b1010);
        let r = pcmpstr(s(b"az"), s(b"a1b2"), None, None, 0x14);
        assert_eq!(r.int_res2, 0xfffa);
        assert_eq!(mask(r, 0x54), !0u128 ^ 0xff ^ 0xff_0000);
    }

    #[test]
    fn explicit_lengths_saturate() {
        let r = pcmpstr(0, 0, Some(-100), Some(i64::MIN), 0x08);
        assert_eq!(r.int_res2, 0xffff);
        assert_eq!(r.flags, CF | OF);
        assert_eq!(index(pcmpstr(1, 2, Some(1), Some(1), 0x00), 0x00), 16);
    }

    #[test]
    fn crc32c_check_value() {
        // CRC-32C of "123456789" with the usual pre- and post-inversion is
        // 0xE3069283 (RFC 3720 B.4 check value).
        let c = b"123456789".iter().fold(!0u32, |c, &b| crc32c(c, b as u64, 1));
        assert_eq!(!c, 0xe306_9283);
        assert_eq!(crc32c(!0, u64::from_le_bytes(*b"12345678"), 8), crc32c(crc32c(!0, 0x3433_3231, 4), 0x3837_3635, 4));
    }
}

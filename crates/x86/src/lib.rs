//! x86 instruction semantics, written once: arithmetic flags (computed
//! lazily), the ALU, shifts and rotates, multiply and divide, and condition
//! codes. Pure functions over operand values and sizes, so the simulated
//! CPU's fast path and the VMM's exit-time emulator compute identical
//! results.
#![forbid(unsafe_code)]

pub mod alu;
pub mod flags;
pub mod muldiv;
pub mod shift;

pub use flags::{Cond, Flags, FlagsOp};

/// Operand size in bytes: 1, 2, 4 or 8.
pub type Size = u8;

const MASKS: [u64; 16] = {
    let mut t = [u64::MAX; 16];
    let mut s = 0;
    while s < 8 {
        t[s] = (1u64 << (s * 8)) - 1;
        s += 1;
    }
    t
};

/// All ones in the low `size` bytes (a table lookup: this sits on the
/// interpreter's hottest path).
#[inline(always)]
pub const fn mask(size: Size) -> u64 {
    MASKS[(size & 15) as usize]
}

/// The sign bit of a `size`-byte operand.
#[inline(always)]
pub const fn sign_bit(size: Size) -> u64 {
    (mask(size) >> 1) + 1
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline(always)]
pub const fn sign_extend(v: u64, size: Size) -> u64 {
    let shift = 64 - size as u32 * 8;
    (((v << shift) as i64) >> shift) as u64
}

// Floating point and vectors (issue 13): x87, MMX, SSE-SSE4.2, XSAVE.
pub mod fp;

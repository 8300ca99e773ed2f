//! Floating point and vectors: MMX, SSE through SSE4.2 (with POPCNT and
//! CRC32), the x87 FPU, and the FXSAVE/XSAVE state images, as pure
//! functions over values and control/status state (SDM Vol. 1 ch. 4, 8,
//! 9, 10-13; Vol. 2 per instruction). Nothing here knows the simulator:
//! the executor decodes, fetches operands and routes them here.
//!
//! - [`round`]: the x86 rounding core every float result goes through
//!   (precision, exponent range, rounding control, tininess after rounding).
//! - [`mxcsr`]: MXCSR and the SIMD exception procedure (#XM).
//! - [`sse_float`]: packed and scalar single/double arithmetic, compares,
//!   conversions, rounding, dot products, horizontal and approximate ops.
//! - [`sse_int`]: MMX and SSE2/SSSE3/SSE4.1 packed integer operations and
//!   the bitwise, shuffle and move-mask instructions.
//! - [`sse_str`]: SSE4.2 string compares (PCMPxSTRx) and CRC32.
//! - [`x87`]: the x87 register stack, control/status/tag words, loads and
//!   stores of every memory format, arithmetic, compares.
//! - [`x87_trans`]: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.
//! - [`xsave`]: FXSAVE/FXRSTOR and XSAVE-family images, CPUID leaf 0xD.
//! - [`cost`]: latencies per instruction class, each with its source.

pub mod cost;
pub mod mxcsr;
pub mod round;
pub mod sse_float;
pub mod sse_int;
pub mod sse_str;
pub mod x87;
pub mod x87_trans;
pub mod xsave;

use core::ops::{BitOr, BitOrAssign};

/// CPUID feature bits for what these modules model, so the executor
/// advertises exactly that (SDM Vol. 2 CPUID, Tables 3-10 and 3-11; leaf
/// 0DH is [`xsave::cpuid_leaf_d`]). AVX and later stay clear.
pub mod cpuid {
    /// CPUID.01H:EDX: FPU (bit 0), MMX (23), FXSR (24), SSE (25), SSE2 (26).
    pub const LEAF1_EDX: u32 = 1 | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26;
    /// CPUID.01H:ECX: SSE3 (bit 0), SSSE3 (9), SSE4.1 (19), SSE4.2 (20),
    /// POPCNT (23), XSAVE (26). OSXSAVE (27) mirrors CR4.OSXSAVE and is
    /// the executor's to set.
    pub const LEAF1_ECX: u32 = 1 | 1 << 9 | 1 << 19 | 1 << 20 | 1 << 23 | 1 << 26;
}

/// The six floating-point exceptions (SDM Vol. 1 §4.9.1) in the bit
/// positions that MXCSR's flags (bits 0-5), MXCSR's masks (bits 7-12,
/// shifted down by 7), the x87 status word's flags (bits 0-5) and the x87
/// control word's masks (bits 0-5) all share.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Exc(pub u8);

impl Exc {
    /// No exception.
    pub const NONE: Exc = Exc(0);
    /// Invalid operation (#I).
    pub const IE: Exc = Exc(0x01);
    /// Denormal operand (#D).
    pub const DE: Exc = Exc(0x02);
    /// Divide by zero (#Z).
    pub const ZE: Exc = Exc(0x04);
    /// Numeric overflow (#O).
    pub const OE: Exc = Exc(0x08);
    /// Numeric underflow (#U).
    pub const UE: Exc = Exc(0x10);
    /// Inexact result, precision (#P).
    pub const PE: Exc = Exc(0x20);
    /// The pre-computation exceptions (IE, DE, ZE): detected before any
    /// arithmetic (SDM Vol. 1 §11.5.1).
    pub const PRE: Exc = Exc(0x07);
    /// All six.
    pub const ALL: Exc = Exc(0x3f);

    /// Whether every exception of `o` is in `self`.
    #[inline]
    pub const fn contains(self, o: Exc) -> bool {
        self.0 & o.0 == o.0
    }

    /// Whether any exception of `o` is in `self`.
    #[inline]
    pub const fn intersects(self, o: Exc) -> bool {
        self.0 & o.0 != 0
    }

    /// The exceptions of `self` that are also in `o`.
    #[inline]
    pub const fn and(self, o: Exc) -> Exc {
        Exc(self.0 & o.0)
    }

    /// Whether there is none.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Exc {
    type Output = Exc;
    #[inline]
    fn bitor(self, o: Exc) -> Exc {
        Exc(self.0 | o.0)
    }
}

impl BitOrAssign for Exc {
    #[inline]
    fn bitor_assign(&mut self, o: Exc) {
        self.0 |= o.0;
    }
}

/// Rounding control, as MXCSR bits 13-14 and the x87 control word bits
/// 10-11 encode it (SDM Vol. 1 Table 4-8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rc {
    /// Round to nearest, ties to even (the default).
    Nearest = 0,
    /// Round down, toward negative infinity.
    Down = 1,
    /// Round up, toward positive infinity.
    Up = 2,
    /// Round toward zero (truncate).
    Zero = 3,
}

impl Rc {
    /// The mode a two-bit field encodes (only its low two bits are read).
    #[inline]
    pub const fn from_bits(b: u32) -> Rc {
        match b & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

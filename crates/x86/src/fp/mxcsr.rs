//! MXCSR, the SSE control and status register (SDM Vol. 1 §10.2.3), and
//! the SIMD floating-point exception procedure (§11.5.1): LDMXCSR's #GP on
//! reserved bits, the sticky flags, the masks, and when an unmasked
//! exception leaves the destination unchanged.

use super::{Exc, Rc};

/// MXCSR's value after reset and after FNINIT-free XRSTOR init: every
/// exception masked, round to nearest, DAZ and FTZ clear (SDM Vol. 1
/// §10.2.3).
pub const MXCSR_DEFAULT: u32 = 0x1f80;

/// The MXCSR bits this model implements, as FXSAVE's MXCSR_MASK field
/// reports them (SDM Vol. 1 §11.6.6): bits 0-15, DAZ included. Setting any
/// other bit with LDMXCSR, FXRSTOR or XRSTOR raises #GP(0).
pub const MXCSR_MASK: u32 = 0xffff;

/// The 32-bit MXCSR.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mxcsr(pub u32);

impl Default for Mxcsr {
    fn default() -> Mxcsr {
        Mxcsr(MXCSR_DEFAULT)
    }
}

/// LDMXCSR (or FXRSTOR/XRSTOR) tried to set a reserved MXCSR bit: #GP(0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReservedBits {
    /// The value the instruction tried to load.
    pub value: u32,
}

/// A SIMD floating-point exception the instruction raises: #XM, or #UD
/// when CR4.OSXMMEXCPT is clear (SDM Vol. 1 §11.5.1 step 2). MXCSR's flags
/// are already set and the destination must stay unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SimdFault;

impl Mxcsr {
    /// DAZ, bit 6: denormal sources read as zero.
    pub const DAZ: u32 = 1 << 6;
    /// FTZ, bit 15: tiny results flush to zero when underflow is masked.
    pub const FTZ: u32 = 1 << 15;

    /// LDMXCSR: the new value, or #GP(0) when a bit outside [`MXCSR_MASK`]
    /// is set (SDM Vol. 2 LDMXCSR).
    pub fn load(value: u32) -> Result<Mxcsr, ReservedBits> {
        if value & !MXCSR_MASK != 0 {
            Err(ReservedBits { value })
        } else {
            Ok(Mxcsr(value))
        }
    }

    /// The sticky exception flags (bits 0-5).
    #[inline]
    pub const fn flags(self) -> Exc {
        Exc((self.0 & 0x3f) as u8)
    }

    /// The exception masks (bits 7-12), in flag positions.
    #[inline]
    pub const fn masks(self) -> Exc {
        Exc(((self.0 >> 7) & 0x3f) as u8)
    }

    /// Rounding control (bits 13-14).
    #[inline]
    pub const fn rc(self) -> Rc {
        Rc::from_bits(self.0 >> 13)
    }

    /// Denormals are zero.
    #[inline]
    pub const fn daz(self) -> bool {
        self.0 & Self::DAZ != 0
    }

    /// Flush to zero.
    #[inline]
    pub const fn ftz(self) -> bool {
        self.0 & Self::FTZ != 0
    }

    /// Whether `e` holds an exception whose mask bit is clear.
    #[inline]
    pub const fn unmasked(self, e: Exc) -> bool {
        e.0 & !self.masks().0 != 0
    }

    /// Sets sticky flags.
    #[inline]
    pub fn raise(&mut self, e: Exc) {
        self.0 |= e.0 as u32;
    }

    /// The exception procedure of SDM Vol. 1 §11.5.1 for one instruction,
    /// given the exceptions of all its elements split into pre-computation
    /// (IE, DE, ZE) and post-computation (OE, UE, PE) ones: an unmasked
    /// pre-computation exception sets only the pre-computation flags and
    /// faults before any result exists; otherwise every flag is set, and an
    /// unmasked post-computation exception faults. `Ok` means the masked
    /// results may be written.
    pub fn signal(&mut self, exc: Exc) -> Result<(), SimdFault> {
        let pre = exc.and(Exc::PRE);
        if self.unmasked(pre) {
            self.raise(pre);
            return Err(SimdFault);
        }
        self.raise(exc);
        if self.unmasked(exc) {
            Err(SimdFault)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_bits_fault() {
        assert_eq!(Mxcsr::load(0x1f80), Ok(Mxcsr(0x1f80)));
        assert_eq!(Mxcsr::load(0xffff), Ok(Mxcsr(0xffff)));
        assert_eq!(Mxcsr::load(0x10000), Err(ReservedBits { value: 0x10000 }));
    }

    #[test]
    fn fields_decode() {
        let m = Mxcsr(0x1f80 | Mxcsr::DAZ | Mxcsr::FTZ | (3 << 13) | 0x21);
        assert!(m.daz() && m.ftz());
        assert_eq!(m.rc(), Rc::Zero);
        assert_eq!(m.flags(), Exc::IE | Exc::PE);
        assert_eq!(m.masks(), Exc::ALL);
    }

    #[test]
    fn unmasked_pre_computation_sets_only_pre_flags() {
        // ZE unmasked; the instruction also saw PE (masked) in another lane.
        let mut m = Mxcsr(0x1f80 & !(1 << 9));
        assert_eq!(m.signal(Exc::ZE | Exc::PE), Err(SimdFault));
        assert_eq!(m.flags(), Exc::ZE);
    }

    #[test]
    fn unmasked_post_computation_sets_all_flags() {
        let mut m = Mxcsr(0x1f80 & !(1 << 10)); // OM clear
        assert_eq!(m.signal(Exc::DE | Exc::OE | Exc::PE), Err(SimdFault));
        assert_eq!(m.flags(), Exc::DE | Exc::OE | Exc::PE);
        let mut m = Mxcsr::default();
        assert_eq!(m.signal(Exc::DE | Exc::OE | Exc::PE), Ok(()));
        assert_eq!(m.flags(), Exc::DE | Exc::OE | Exc::PE);
    }
}

//! RFLAGS status bits, computed lazily: an instruction records what it did
//! (operation, size, operands, result) and the six status flags are derived
//! only when something reads them. Most flag results are overwritten
//! unread, so this saves the interpreter most of its flag work.

use crate::{mask, sign_bit, Size};
use exitlab_arch::bits::rflags::{AF, CF, OF, PF, SF, STATUS, ZF};

/// What produced the current status flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsOp {
    /// The flags are stored in `Flags::a` as RFLAGS bits.
    Known,
    Add,
    /// Add with carry; the carry-in is bit 0 of `Flags::aux`.
    Adc,
    Sub,
    /// Subtract with borrow; the borrow-in is bit 0 of `Flags::aux`.
    Sbb,
    /// AND, OR, XOR, TEST: CF = OF = 0, AF = 0 (undefined in the SDM;
    /// Intel parts clear it).
    Logic,
    /// INC: as ADD of 1, but CF is kept (in `Flags::aux` bit 0).
    Inc,
    /// DEC: as SUB of 1, but CF is kept (in `Flags::aux` bit 0).
    Dec,
    /// MUL, IMUL: CF = OF = bit 0 of `Flags::aux` (the product did not fit
    /// the low half); SF and PF from the low half in `Flags::res`, ZF and
    /// AF clear. The SDM leaves SF, ZF, AF and PF undefined; this is what
    /// Intel cores produce.
    Mul,
    /// SHL by a masked count of 1 or more: CF (the last bit shifted out)
    /// in bit 0 of `Flags::aux`, OF = CF XOR the result's sign, AF clear
    /// (undefined in the SDM; what `Known` records had), SF, ZF and PF
    /// from `Flags::res`. Lazy like the others: most shifts' flags are
    /// overwritten unread.
    Shl,
}

/// The lazily evaluated status flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub op: FlagsOp,
    pub size: Size,
    pub a: u64,
    pub b: u64,
    pub res: u64,
    pub aux: u8,
}

impl Default for Flags {
    fn default() -> Self {
        Flags::known(0)
    }
}

/// `bit` if `set`, else 0: building RFLAGS from conditions.
#[inline(always)]
pub const fn flag(set: bool, bit: u64) -> u64 {
    if set {
        bit
    } else {
        0
    }
}

/// Even parity of the low byte: PF.
#[inline(always)]
pub fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Flags {
    /// Flags given directly as RFLAGS status bits.
    #[inline(always)]
    pub const fn known(bits: u64) -> Flags {
        Flags { op: FlagsOp::Known, size: 8, a: bits & STATUS, b: 0, res: 0, aux: 0 }
    }

    #[inline(always)]
    pub const fn new(op: FlagsOp, size: Size, a: u64, b: u64, res: u64, aux: u8) -> Flags {
        Flags { op, size, a, b, res, aux }
    }

    #[inline(always)]
    fn res(&self) -> u64 {
        self.res & mask(self.size)
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        match self.op {
            FlagsOp::Known => self.a & ZF != 0,
            FlagsOp::Mul => false,
            _ => self.res() == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        match self.op {
            FlagsOp::Known => self.a & SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        let m = mask(self.size);
        let (a, b, r) = (self.a & m, self.b & m, self.res & m);
        match self.op {
            FlagsOp::Known => self.a & CF != 0,
            FlagsOp::Add => r < a,
            FlagsOp::Adc => r < a || (self.aux & 1 != 0 && r == a),
            FlagsOp::Sub => a < b,
            FlagsOp::Sbb => a < b || (self.aux & 1 != 0 && a == b),
            FlagsOp::Logic => false,
            FlagsOp::Inc | FlagsOp::Dec | FlagsOp::Mul | FlagsOp::Shl => self.aux & 1 != 0,
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        let s = sign_bit(self.size);
        let (a, b, r) = (self.a, self.b, self.res);
        match self.op {
            FlagsOp::Known => self.a & OF != 0,
            FlagsOp::Add | FlagsOp::Adc | FlagsOp::Inc => (a ^ r) & (b ^ r) & s != 0,
            FlagsOp::Sub | FlagsOp::Sbb | FlagsOp::Dec => (a ^ b) & (a ^ r) & s != 0,
            FlagsOp::Logic => false,
            FlagsOp::Mul => self.aux & 1 != 0,
            FlagsOp::Shl => (r & s != 0) != (self.aux & 1 != 0),
        }
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        match self.op {
            FlagsOp::Known => self.a & PF != 0,
            _ => parity(self.res),
        }
    }

    #[inline(always)]
    pub fn af(&self) -> bool {
        match self.op {
            FlagsOp::Known => self.a & AF != 0,
            FlagsOp::Logic | FlagsOp::Mul | FlagsOp::Shl => false,
            _ => (self.a ^ self.b ^ self.res) & 0x10 != 0,
        }
    }

    /// The six status flags as RFLAGS bits.
    pub fn bits(&self) -> u64 {
        if self.op == FlagsOp::Known {
            return self.a;
        }
        flag(self.cf(), CF)
            | flag(self.pf(), PF)
            | flag(self.af(), AF)
            | flag(self.zf(), ZF)
            | flag(self.sf(), SF)
            | flag(self.of(), OF)
    }

    /// Evaluates an x86 condition code (the low nibble of Jcc/SETcc/CMOVcc).
    #[inline(always)]
    pub fn cond(&self, c: Cond) -> bool {
        let v = match c.0 >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || self.sf() != self.of(),
        };
        v != (c.0 & 1 != 0)
    }
}

/// An x86 condition code, 0 (O) to 15 (NLE/G).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond(pub u8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_flags_match_the_sdm() {
        // 0x7f + 1 (8-bit): OF (signed overflow), SF, AF; no CF, not zero.
        let f = Flags::new(FlagsOp::Add, 1, 0x7f, 1, 0x80, 0);
        assert_eq!(f.bits(), OF | SF | AF);
        // 0xff + 1 (8-bit): CF, ZF, AF, PF (zero has even parity).
        let f = Flags::new(FlagsOp::Add, 1, 0xff, 1, 0x100, 0);
        assert_eq!(f.bits(), CF | ZF | AF | PF);
    }

    #[test]
    fn sub_and_compare_conditions() {
        // cmp 3, 5 (32-bit): below, less, not equal.
        let f = Flags::new(FlagsOp::Sub, 4, 3, 5, 3u64.wrapping_sub(5), 0);
        assert!(f.cond(Cond(0x2))); // B
        assert!(f.cond(Cond(0xc))); // L
        assert!(f.cond(Cond(0x5))); // NE
        assert!(!f.cond(Cond(0x7))); // A
        assert_eq!(f.bits() & (CF | SF), CF | SF);
    }

    #[test]
    fn inc_keeps_carry() {
        let f = Flags::new(FlagsOp::Inc, 8, u64::MAX, 1, 0, 1);
        assert!(f.cf() && f.zf());
        let f = Flags::new(FlagsOp::Dec, 4, 0, 1, 0xffff_ffff, 0);
        assert!(!f.cf() && f.sf() && !f.zf());
    }

    #[test]
    fn known_round_trips() {
        for bits in [0, STATUS, CF | ZF, OF | PF] {
            assert_eq!(Flags::known(bits).bits(), bits);
        }
    }
}

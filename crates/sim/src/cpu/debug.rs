//! The debug architecture (SDM Vol. 3B ch. 18): DR0-DR3 with DR7's
//! enables, lengths and conditions (instruction, data write, data read or
//! write, and with CR4.DE I/O), DR6's status, RF, and the pending debug
//! exceptions that blocking by MOV SS holds back for one instruction.
//!
//! Breakpoints cost nothing while DR7 arms none: DR7 is decoded into
//! [`Breakpoints`] when it (or DR0-DR3, or CR4.DE) changes. While one is
//! armed the core runs an instruction at a time, checks instruction
//! breakpoints at each boundary, and keeps pages a data breakpoint watches
//! out of the TLB, so every access to them takes the page walk, where the
//! access is matched (`mmu.rs`); I/O breakpoints are matched in the port
//! hooks.

use super::mmu::Access;
use super::{Running, Stop};
use exitlab_arch::bits::dr6;

/// DR7.GD (bit 13): general detect, a #DB before any MOV to or from a
/// debug register.
pub const DR7_GD: u64 = exitlab_arch::bits::dr7::GD;

/// DR7's R/W field values (bits 16 + 4n).
const RW_EXEC: u64 = 0;
const RW_WRITE: u64 = 1;
const RW_IO: u64 = 2;
const RW_ACCESS: u64 = 3;

/// The breakpoints DR7 arms, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breakpoints {
    /// DRn armed as instruction breakpoints (bit n).
    pub exec: u8,
    /// Armed as data-write breakpoints.
    write: u8,
    /// Armed as data read-or-write breakpoints.
    access: u8,
    /// Armed as I/O breakpoints (R/W = 10 with CR4.DE).
    io: u8,
    /// Bytes each one covers, minus one (LEN: 1, 2, 8 or 4 bytes).
    len_mask: [u64; 4],
}

impl Breakpoints {
    /// Decodes DR7 (with CR4.DE deciding what R/W = 10 means: I/O with it,
    /// undefined without, which this model treats as disarmed).
    pub fn decode(dr7: u64, cr4_de: bool) -> Breakpoints {
        let mut b = Breakpoints::default();
        for n in 0..4 {
            if (dr7 >> (2 * n)) & 3 == 0 {
                continue;
            }
            let rw = (dr7 >> (16 + 4 * n)) & 3;
            b.len_mask[n] = match (dr7 >> (18 + 4 * n)) & 3 {
                0 => 0,
                1 => 1,
                2 => 7,
                _ => 3,
            };
            let bit = 1 << n;
            match rw {
                RW_EXEC => b.exec |= bit,
                RW_WRITE => b.write |= bit,
                RW_IO if cr4_de => b.io |= bit,
                RW_ACCESS => b.access |= bit,
                _ => {}
            }
        }
        b
    }

    /// Whether any breakpoint is armed (the core then steps one
    /// instruction at a time).
    pub fn armed(&self) -> bool {
        self.exec | self.write | self.access | self.io != 0
    }

    /// Whether a data breakpoint is armed.
    pub fn data(&self) -> bool {
        self.write | self.access != 0
    }

    /// DR6 B0-B3 for the instruction breakpoints at `rip` (their LEN is
    /// ignored: an instruction breakpoint covers its byte).
    pub fn exec_hits(&self, dr: &[u64; 4], rip: u64) -> u64 {
        (0..4).filter(|&n| self.exec & (1 << n) != 0 && dr[n] == rip).fold(0, |h, n| h | 1 << n)
    }

    /// B0-B3 for a data access of `size` bytes at `lin`: the breakpoint's
    /// bytes (its address aligned down to its length) overlap the access's.
    pub fn data_hits(&self, dr: &[u64; 4], lin: u64, size: u8, write: bool) -> u64 {
        let armed = if write { self.write | self.access } else { self.access };
        ranges_hit(armed, dr, &self.len_mask, lin, u64::from(size.max(1)))
    }

    /// B0-B3 for an I/O access of `size` bytes at `port`.
    pub fn io_hits(&self, dr: &[u64; 4], port: u16, size: u8) -> u64 {
        ranges_hit(self.io, dr, &self.len_mask, u64::from(port), u64::from(size.max(1)))
    }

    /// Whether a data breakpoint watches a byte of the 4 KiB page at `lin`.
    pub fn watches_page(&self, dr: &[u64; 4], lin: u64) -> bool {
        let armed = self.write | self.access;
        (0..4).any(|n| armed & (1 << n) != 0 && (dr[n] & !self.len_mask[n]) >> 12 == lin >> 12)
    }
}

/// The armed breakpoints among `armed` whose ranges overlap `[at, at+len)`.
fn ranges_hit(armed: u8, dr: &[u64; 4], len_mask: &[u64; 4], at: u64, len: u64) -> u64 {
    (0..4)
        .filter(|&n| {
            let start = dr[n] & !len_mask[n];
            let end = start.wrapping_add(len_mask[n]);
            armed & (1 << n) != 0 && start <= at.wrapping_add(len - 1) && at <= end
        })
        .fold(0, |h, n| h | 1 << n)
}

impl Running<'_> {
    /// DR7, DR0-DR3 or CR4.DE changed: decode the breakpoints again, and
    /// drop the TLB so that pages a data breakpoint now watches are walked.
    pub(super) fn rearm_breakpoints(&mut self) {
        let de = self.core.cr4 & exitlab_arch::bits::cr4::DE != 0;
        let b = Breakpoints::decode(self.core.dr7, de);
        if b.data() {
            self.core.tlb.flush();
        }
        self.core.bp = b;
    }

    /// A data access that missed the TLB while a data breakpoint is armed:
    /// note what it hits, and keep a watched page out of the TLB so the
    /// next access to it is matched too.
    pub(super) fn watch(&mut self, lin: u64, size: u8, access: Access) {
        let bp = self.core.bp;
        if access != Access::Fetch {
            self.core.bp_hits |= bp.data_hits(&self.core.dr, lin, size, access == Access::Write);
        }
        if bp.watches_page(&self.core.dr, lin) {
            self.core.tlb.flush_page(lin);
        }
    }

    /// An I/O access to `port`: note the I/O breakpoints it hits.
    pub(super) fn watch_port(&mut self, port: u16, size: u8) {
        if self.core.bp.io != 0 {
            self.core.bp_hits |= self.core.bp.io_hits(&self.core.dr, port, size);
        }
    }

    /// An instruction breakpoint at RIP, unless RF suppresses it for this
    /// one instruction (or MOV SS blocking holds debug exceptions off):
    /// the fault-class #DB it raises.
    pub(super) fn instruction_breakpoint(&mut self) -> Option<Stop> {
        let rf = self.core.rflags_rest & exitlab_arch::bits::rflags::RF != 0;
        if self.core.bp.exec == 0 || rf || self.core.mov_ss_blocking {
            return None;
        }
        let hits = self.core.bp.exec_hits(&self.core.dr, self.core.rip);
        (hits != 0).then(|| self.raise(super::Event::debug_fault(hits)))
    }

    /// MOV to or from a debug register with DR7.GD set: the general-detect
    /// #DB, a fault (SDM 18.2.4), raised before the access.
    pub(super) fn general_detect(&mut self) -> Result<(), Stop> {
        if self.core.dr7 & DR7_GD != 0 {
            return Err(self.raise(super::Event::debug_fault(dr6::BD)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_decodes_enables_conditions_and_lengths() {
        // kvm-unit-tests debug.c: 0x00d0040a arms DR1 (G1) as a 4-byte write
        // watchpoint (and DR0, G0, as an instruction breakpoint);
        // 0x00f0040a DR1 as a 4-byte read or write watchpoint.
        let dr = [0, 0x1004, 0, 0];
        let w = Breakpoints::decode(0x00d0_040a, false);
        assert!(w.armed() && w.data() && w.exec == 0b1);
        assert_eq!(w.data_hits(&dr, 0x1004, 4, true), 0b10);
        assert_eq!(w.data_hits(&dr, 0x1004, 4, false), 0, "a read does not hit a write watchpoint");
        assert_eq!(w.data_hits(&dr, 0x1007, 1, true), 0b10);
        assert_eq!(w.data_hits(&dr, 0x1000, 8, true), 0b10, "overlap from below");
        assert_eq!(w.data_hits(&dr, 0x1008, 4, true), 0);
        let rw = Breakpoints::decode(0x00f0_040a, false);
        assert_eq!(rw.data_hits(&dr, 0x1006, 2, false), 0b10);
        // An execute breakpoint on DR2 (G2), LEN and R/W 0.
        let x = Breakpoints::decode(0x420, false);
        assert_eq!((x.exec, x.data()), (0b100, false));
        assert_eq!(x.exec_hits(&[0, 0, 0x5000, 0], 0x5000), 0b100);
        // 8-byte length aligns the address down.
        let q = Breakpoints::decode(1 | 1 << 16 | 2 << 18, false);
        assert_eq!(q.data_hits(&[0x2003, 0, 0, 0], 0x2007, 1, true), 1);
        assert!(q.watches_page(&[0x2003, 0, 0, 0], 0x2ff8) && !q.watches_page(&[0x2003, 0, 0, 0], 0x3000));
    }

    #[test]
    fn io_breakpoints_need_cr4_de() {
        let dr7 = 1 | 2 << 16; // L0, R/W = 10, LEN 1
        assert!(!Breakpoints::decode(dr7, false).armed());
        let io = Breakpoints::decode(dr7, true);
        assert_eq!(io.io_hits(&[0x80, 0, 0, 0], 0x80, 1), 1);
        assert_eq!(io.io_hits(&[0x81, 0, 0, 0], 0x80, 2), 1, "a word access covers the next port");
        assert_eq!(io.io_hits(&[0x82, 0, 0, 0], 0x80, 2), 0);
    }
}

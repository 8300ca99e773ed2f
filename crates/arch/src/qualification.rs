//! Exit-qualification layouts (Intel SDM Vol. 3C, section 28.2.1, tables
//! "Exit Qualification for I/O Instructions", "... for Control-Register
//! Accesses" and "... for EPT Violations"). Each type encodes to and decodes
//! from the raw 64-bit field, bit for bit.

use serde::{Deserialize, Serialize};

const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 == 1
}

/// Exit qualification of an IO_INSTRUCTION exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoQual {
    /// Access size in bytes: 1, 2 or 4 (bits 2:0 hold size - 1).
    pub size: u8,
    /// Bit 3: 1 = IN, 0 = OUT.
    pub is_in: bool,
    /// Bit 4: INS/OUTS.
    pub string: bool,
    /// Bit 5: REP prefix.
    pub rep: bool,
    /// Bit 6: the port came from an immediate operand (0 = from DX).
    pub immediate: bool,
    /// Bits 31:16: the port number.
    pub port: u16,
}

impl IoQual {
    /// The qualification as the SDM lays it out.
    pub fn encode(&self) -> u64 {
        (u64::from(self.size.saturating_sub(1)) & 7)
            | u64::from(self.is_in) << 3
            | u64::from(self.string) << 4
            | u64::from(self.rep) << 5
            | u64::from(self.immediate) << 6
            | u64::from(self.port) << 16
    }

    /// Reads a qualification in the SDM layout.
    pub fn decode(q: u64) -> IoQual {
        IoQual {
            size: (q & 7) as u8 + 1,
            is_in: bit(q, 3),
            string: bit(q, 4),
            rep: bit(q, 5),
            immediate: bit(q, 6),
            port: (q >> 16) as u16,
        }
    }
}

/// Bits 5:4 of a CR_ACCESS qualification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrAccessType {
    /// MOV to CR.
    MovToCr = 0,
    /// MOV from CR.
    MovFromCr = 1,
    /// CLTS.
    Clts = 2,
    /// LMSW.
    Lmsw = 3,
}

/// Exit qualification of a CR_ACCESS exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrAccessQual {
    /// Bits 3:0: the control register (0, 3, 4 or 8).
    pub cr: u8,
    /// Bits 5:4: the access type.
    pub access: CrAccessType,
    /// Bit 6: LMSW operand is in memory.
    pub lmsw_memory: bool,
    /// Bits 11:8: the general register of a MOV (0 = RAX ... 15 = R15).
    pub gpr: u8,
    /// Bits 31:16: the LMSW source data.
    pub lmsw_source: u16,
}

impl CrAccessQual {
    /// A MOV to (`to_cr`) or from CR `cr` with general register `gpr`.
    pub fn mov(cr: u8, to_cr: bool, gpr: u8) -> CrAccessQual {
        CrAccessQual {
            cr,
            access: if to_cr { CrAccessType::MovToCr } else { CrAccessType::MovFromCr },
            lmsw_memory: false,
            gpr,
            lmsw_source: 0,
        }
    }

    /// The qualification as the SDM lays it out.
    pub fn encode(&self) -> u64 {
        (u64::from(self.cr) & 0xf)
            | (self.access as u64) << 4
            | u64::from(self.lmsw_memory) << 6
            | (u64::from(self.gpr) & 0xf) << 8
            | u64::from(self.lmsw_source) << 16
    }

    /// Reads a qualification in the SDM layout.
    pub fn decode(q: u64) -> CrAccessQual {
        CrAccessQual {
            cr: (q & 0xf) as u8,
            access: match (q >> 4) & 3 {
                0 => CrAccessType::MovToCr,
                1 => CrAccessType::MovFromCr,
                2 => CrAccessType::Clts,
                _ => CrAccessType::Lmsw,
            },
            lmsw_memory: bit(q, 6),
            gpr: ((q >> 8) & 0xf) as u8,
            lmsw_source: (q >> 16) as u16,
        }
    }
}

/// Exit qualification of an EPT_VIOLATION exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EptViolationQual {
    /// Bit 0: the access was a data read.
    pub read: bool,
    /// Bit 1: the access was a data write.
    pub write: bool,
    /// Bit 2: the access was an instruction fetch.
    pub fetch: bool,
    /// Bit 3: the EPT entries allowed reads (bits 5:3 AND over the walk).
    pub readable: bool,
    /// Bit 4: the EPT entries allowed writes.
    pub writable: bool,
    /// Bit 5: the EPT entries allowed execution.
    pub executable: bool,
    /// Bit 7: the guest-linear-address field is valid.
    pub gla_valid: bool,
    /// Bit 8 (meaningful when bit 7 is set): the access was to the
    /// translated address, not to a guest paging-structure entry.
    pub gla_is_translation: bool,
}

impl EptViolationQual {
    /// The qualification as the SDM lays it out.
    pub fn encode(&self) -> u64 {
        u64::from(self.read)
            | u64::from(self.write) << 1
            | u64::from(self.fetch) << 2
            | u64::from(self.readable) << 3
            | u64::from(self.writable) << 4
            | u64::from(self.executable) << 5
            | u64::from(self.gla_valid) << 7
            | u64::from(self.gla_is_translation) << 8
    }

    /// Reads a qualification in the SDM layout.
    pub fn decode(q: u64) -> EptViolationQual {
        EptViolationQual {
            read: bit(q, 0),
            write: bit(q, 1),
            fetch: bit(q, 2),
            readable: bit(q, 3),
            writable: bit(q, 4),
            executable: bit(q, 5),
            gla_valid: bit(q, 7),
            gla_is_translation: bit(q, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_qualification_bits_follow_the_sdm() {
        // OUT DX, AL to port 0x3f8: size 1 -> 0, direction out, DX operand.
        let q = IoQual { size: 1, is_in: false, string: false, rep: false, immediate: false, port: 0x3f8 };
        assert_eq!(q.encode(), 0x03f8_0000);
        // IN EAX, 0x80: size 4 -> 3, bit 3 in, bit 6 immediate.
        let q = IoQual { size: 4, is_in: true, string: false, rep: false, immediate: true, port: 0x80 };
        assert_eq!(q.encode(), 0x0080_0000 | 3 | 1 << 3 | 1 << 6);
        // REP OUTSW to DX = 0x1f0.
        let q = IoQual { size: 2, is_in: false, string: true, rep: true, immediate: false, port: 0x1f0 };
        assert_eq!(q.encode(), 0x01f0_0000 | 1 | 1 << 4 | 1 << 5);
        assert_eq!(IoQual::decode(q.encode()), q);
    }

    #[test]
    fn cr_qualification_bits_follow_the_sdm() {
        // MOV CR3, RAX: cr 3, type 0, gpr 0.
        assert_eq!(CrAccessQual::mov(3, true, 0).encode(), 0x3);
        // MOV R9, CR8 (from CR): cr 8, type 1 in bits 5:4, gpr 9 in bits 11:8.
        let q = CrAccessQual::mov(8, false, 9);
        assert_eq!(q.encode(), 8 | 1 << 4 | 9 << 8);
        assert_eq!(CrAccessQual::decode(q.encode()), q);
        // LMSW from memory with source 0x1234.
        let q = CrAccessQual { cr: 0, access: CrAccessType::Lmsw, lmsw_memory: true, gpr: 0, lmsw_source: 0x1234 };
        assert_eq!(q.encode(), 3 << 4 | 1 << 6 | 0x1234 << 16);
        assert_eq!(CrAccessQual::decode(q.encode()), q);
    }

    #[test]
    fn ept_violation_bits_follow_the_sdm() {
        // A write to a page whose entry is readable only, with a valid GLA
        // that is the translated address.
        let q = EptViolationQual {
            write: true,
            readable: true,
            gla_valid: true,
            gla_is_translation: true,
            ..Default::default()
        };
        assert_eq!(q.encode(), 1 << 1 | 1 << 3 | 1 << 7 | 1 << 8);
        assert_eq!(EptViolationQual::decode(q.encode()), q);
        let fetch = EptViolationQual { fetch: true, readable: true, writable: true, ..Default::default() };
        assert_eq!(fetch.encode(), 0b1_1100);
    }

    #[test]
    fn decode_is_total_and_round_trips_every_io_field() {
        for size in [1u8, 2, 4] {
            for flags in 0..16u8 {
                let q = IoQual {
                    size,
                    is_in: flags & 1 != 0,
                    string: flags & 2 != 0,
                    rep: flags & 4 != 0,
                    immediate: flags & 8 != 0,
                    port: 0xbeef,
                };
                assert_eq!(IoQual::decode(q.encode()), q);
            }
        }
    }
}

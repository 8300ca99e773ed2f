//! Intel VT-d (Virtualization Technology for Directed I/O, rev. 3.x) as the
//! VMM writes it and the IOMMU reads it: DMA remapping in legacy mode (root
//! table -> context table -> second-level page tables) and interrupt
//! remapping (the interrupt-remapping table, remapped and posted entries),
//! and the fault reasons the hardware records.
//!
//! Second-level paging entries share the EPT layout (read bit 0, write bit
//! 1, page size bit 7, address bits 51:12: [`crate::bits::ept`]), which is
//! why one table builder serves both.

/// Bytes in a root, context or interrupt-remapping table entry.
pub const ENTRY: usize = 16;

/// Present bit of a root, context or interrupt-remapping entry.
const P: u64 = 1 << 0;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// A PCI requester: bus, device and function, as the source ID of a DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u16);

impl SourceId {
    /// The requester ID of PCI function bus:device.function.
    pub fn new(bus: u8, device: u8, function: u8) -> SourceId {
        SourceId(u16::from(bus) << 8 | u16::from(device & 31) << 3 | u16::from(function & 7))
    }

    /// The bus number (bits 15:8).
    pub fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device and function: the index into the bus's context table.
    pub fn devfn(self) -> u8 {
        self.0 as u8
    }
}

/// Root entry (§9.1): present, context-table pointer. Indexed by bus.
pub fn root_entry(context_table: u64) -> [u8; ENTRY] {
    words(context_table & ADDR | P, 0)
}

/// Context-table pointer of a root entry; `None` when not present.
pub fn root_context_table(e: &[u8; ENTRY]) -> Option<u64> {
    let lo = lo(e);
    (lo & P != 0).then_some(lo & ADDR)
}

/// Address widths a context entry may select (AW, bits 66:64): 4-level
/// second-level tables translate 48 bits.
pub const AW_48_BIT_4_LEVEL: u64 = 0b010;

/// Context entry (§9.3), legacy mode, translation type 00b (untranslated
/// requests only): the second-level page-table pointer, AW and domain ID.
pub fn context_entry(second_level: u64, domain: u16) -> [u8; ENTRY] {
    words(second_level & ADDR | P, AW_48_BIT_4_LEVEL | u64::from(domain) << 8)
}

/// What a context entry selects for a requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Host-physical address of the second-level page table (SLPTPTR).
    pub second_level: u64,
    /// Adjusted guest address width (AW): 1 for a 4-level table.
    pub address_width: u64,
    /// Domain identifier (DID).
    pub domain: u16,
}

/// Decodes a context entry; `None` when not present.
pub fn context(e: &[u8; ENTRY]) -> Option<Context> {
    let (lo, hi) = (lo(e), hi(e));
    (lo & P != 0).then_some(Context { second_level: lo & ADDR, address_width: hi & 7, domain: (hi >> 8) as u16 })
}

/// Interrupt-remapping table entry (§9.10, §9.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irte {
    /// Remapped format: a fixed interrupt to an xAPIC destination.
    Remapped {
        /// The vector delivered.
        vector: u8,
        /// The destination xAPIC ID.
        destination: u8,
    },
    /// Posted format (IM = 1): `vector` goes into the posted-interrupt
    /// descriptor at host-physical `descriptor` (64-byte aligned).
    Posted {
        /// The vector posted.
        vector: u8,
        /// Host-physical address of the posted-interrupt descriptor.
        descriptor: u64,
    },
}

/// IM: interrupt mode, 1 = posted.
const IM: u64 = 1 << 15;

impl Irte {
    /// The entry's 16 bytes.
    pub fn to_bytes(self) -> [u8; ENTRY] {
        match self {
            // xAPIC mode: the destination APIC ID sits in bits 47:40.
            Irte::Remapped { vector, destination } => {
                words(P | u64::from(vector) << 16 | u64::from(destination) << 40, 0)
            }
            // PDA_L (descriptor bits 31:6) in bits 63:38, PDA_H (bits 63:32)
            // in bits 127:96.
            Irte::Posted { vector, descriptor } => {
                words(P | IM | u64::from(vector) << 16 | (descriptor & 0xffff_ffc0) << 32, (descriptor >> 32) << 32)
            }
        }
    }

    /// Decodes an entry; `None` when not present.
    pub fn from_bytes(e: &[u8; ENTRY]) -> Option<Irte> {
        let (lo, hi) = (lo(e), hi(e));
        if lo & P == 0 {
            return None;
        }
        let vector = (lo >> 16) as u8;
        Some(if lo & IM != 0 {
            Irte::Posted { vector, descriptor: (lo >> 32) & 0xffff_ffc0 | (hi >> 32) << 32 }
        } else {
            Irte::Remapped { vector, destination: (lo >> 40) as u8 }
        })
    }
}

/// Fault reasons (§7.1.3, table 26 and 29) of the faults exitlab's IOMMU
/// records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// 01h: the root entry for the requester's bus is not present.
    RootNotPresent,
    /// 02h: the context entry for the requester is not present.
    ContextNotPresent,
    /// 04h: the address is above what the domain's address width covers.
    AddressBeyondWidth,
    /// 05h: a write to a page the second-level tables do not make writable.
    WriteDenied,
    /// 06h: a read from a page the second-level tables do not make readable.
    ReadDenied,
    /// 21h: the interrupt index is beyond the interrupt-remapping table.
    IndexBeyondTable,
    /// 22h: the interrupt-remapping entry is not present.
    IrteNotPresent,
}

impl FaultReason {
    /// The fault reason's number in the VT-d specification.
    pub fn code(self) -> u8 {
        match self {
            FaultReason::RootNotPresent => 0x01,
            FaultReason::ContextNotPresent => 0x02,
            FaultReason::AddressBeyondWidth => 0x04,
            FaultReason::WriteDenied => 0x05,
            FaultReason::ReadDenied => 0x06,
            FaultReason::IndexBeyondTable => 0x21,
            FaultReason::IrteNotPresent => 0x22,
        }
    }
}

/// One fault record: who, what address (the page, or for interrupts the
/// interrupt index), why, and whether the request was a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The requester whose DMA or interrupt faulted.
    pub source: SourceId,
    /// The page (DMA) or interrupt index (interrupts) at fault.
    pub address: u64,
    /// Why it faulted.
    pub reason: FaultReason,
    /// Whether the DMA was a write.
    pub write: bool,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.source;
        write!(
            f,
            "IOMMU fault {:02x}h ({:?}) from {:02x}:{:02x}.{} on {} {:#x}",
            self.reason.code(),
            self.reason,
            s.bus(),
            s.devfn() >> 3,
            s.devfn() & 7,
            if self.write { "write" } else { "read" },
            self.address
        )
    }
}

fn words(lo: u64, hi: u64) -> [u8; ENTRY] {
    let mut b = [0u8; ENTRY];
    b[..8].copy_from_slice(&lo.to_le_bytes());
    b[8..].copy_from_slice(&hi.to_le_bytes());
    b
}

fn lo(e: &[u8; ENTRY]) -> u64 {
    u64::from_le_bytes(e[..8].try_into().expect("8 bytes"))
}

fn hi(e: &[u8; ENTRY]) -> u64 {
    u64::from_le_bytes(e[8..].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sit_at_the_vt_d_bit_positions() {
        let r = root_entry(0x1234_5000);
        assert_eq!(lo(&r), 0x1234_5001);
        assert_eq!(root_context_table(&r), Some(0x1234_5000));
        assert_eq!(root_context_table(&[0; ENTRY]), None);
        let c = context_entry(0xabc_d000, 7);
        assert_eq!((lo(&c), hi(&c)), (0xabc_d001, 0b010 | 7 << 8));
        assert_eq!(context(&c), Some(Context { second_level: 0xabc_d000, address_width: 2, domain: 7 }));
        let id = SourceId::new(0, 3, 1);
        assert_eq!((id.0, id.bus(), id.devfn()), (0x19, 0, 0x19));
    }

    #[test]
    fn interrupt_remapping_entries_round_trip() {
        let remapped = Irte::Remapped { vector: 0x41, destination: 2 };
        let b = remapped.to_bytes();
        assert_eq!(lo(&b), 1 | 0x41 << 16 | 2 << 40);
        assert_eq!(Irte::from_bytes(&b), Some(remapped));
        let posted = Irte::Posted { vector: 0x41, descriptor: 0x1000_0000_2040 };
        let b = posted.to_bytes();
        assert_eq!(lo(&b) & (1 << 15), 1 << 15, "IM marks posted format");
        assert_eq!(lo(&b) >> 38, 0x2040 >> 6, "PDA_L is descriptor bits 31:6");
        assert_eq!(hi(&b) >> 32, 0x1000, "PDA_H is descriptor bits 63:32");
        assert_eq!(Irte::from_bytes(&b), Some(posted));
        assert_eq!(Irte::from_bytes(&[0; ENTRY]), None);
    }
}

//! The I/O APIC (Intel 82093AA datasheet, order 290566-001, as the PC's
//! chipsets present it: version 0x20 with 24 redirection entries and the
//! directed-EOI register at offset 0x40, as QEMU's and KVM's IOAPICs do).
//!
//! Two registers in the MMIO window: IOREGSEL (0x00) picks an internal
//! register, IOWIN (0x10) reads or writes it: IOAPICID (0x00), IOAPICVER
//! (0x01), IOAPICARB (0x02) and the redirection table (0x10 + 2n, low and
//! high dwords of entry n). An entry delivers when its pin is asserted
//! (the line's level, inverted for active-low polarity) and it is not
//! masked: an edge entry on each assertion, a level entry while the pin
//! stays asserted and its remote IRR is clear (set at delivery, cleared
//! by an EOI of the entry's vector from the local APIC or through the EOI
//! register).
//!
//! Delivery is a message through the device context: message
//! [`MESSAGE_BASE`] + n for entry n. Whoever hosts the IOAPIC turns it into
//! the MSI the entry describes with [`Ioapic::msi`] before the guest runs
//! again, so the entry cannot have changed in between.

use exitlab_arch::bits::apic::MSI_ADDRESS_BASE;
use exitlab_hv::{device::DeviceCtx, Msi};

/// The PC's IOAPIC address (the MADT's I/O APIC structure).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The MMIO window the IOAPIC decodes.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Memory-mapped registers.
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;
pub const EOI: u64 = 0x40;
/// Indirect registers.
pub const IOAPICID: u8 = 0x00;
pub const IOAPICVER: u8 = 0x01;
pub const IOAPICARB: u8 = 0x02;
pub const IOREDTBL: u8 = 0x10;
/// Version 0x20: the PCH IOxAPIC with the EOI register.
pub const VERSION: u32 = 0x20;
pub const PINS: usize = 24;
/// Messages MESSAGE_BASE..MESSAGE_BASE + 24 are the entries' deliveries,
/// apart from the message numbers other devices use (0-2).
pub const MESSAGE_BASE: u16 = 0x100;

/// Redirection-entry bits (82093AA, 3.2.4).
pub mod rte {
    pub const VECTOR: u64 = 0xff;
    pub const DELIVERY_MODE_SHIFT: u32 = 8;
    /// Destination mode: logical.
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// Delivery status (read-only): always idle here, as delivery is
    /// immediate.
    pub const DELIVS: u64 = 1 << 12;
    /// Interrupt input pin polarity: active low.
    pub const INTPOL: u64 = 1 << 13;
    /// Remote IRR (read-only).
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Trigger mode: level.
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    pub const MASK: u64 = 1 << 16;
    pub const DEST_SHIFT: u32 = 56;
    /// Bits software can write (not DELIVS or REMOTE_IRR; reserved bits
    /// 55:17 read zero).
    pub const WRITABLE: u64 = 0xff00_0000_0001_afff;
}

/// MSI data bits an entry's message sets (SDM Vol. 3A, 11.11.2).
const MSI_LEVEL_ASSERT: u32 = 1 << 14;
const MSI_TRIGGER_LEVEL: u32 = 1 << 15;

#[derive(Debug, Clone)]
pub struct Ioapic {
    id: u32,
    ioregsel: u8,
    table: [u64; PINS],
    /// The pins' input levels as last driven.
    lines: u32,
    delivered: u64,
}

impl Default for Ioapic {
    /// Reset: ID 0, every entry masked.
    fn default() -> Self {
        Ioapic { id: 0, ioregsel: 0, table: [rte::MASK; PINS], lines: 0, delivered: 0 }
    }
}

impl Ioapic {
    /// Redirection entry `pin`.
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.table.get(pin).copied()
    }

    /// Whether an entry waits for EOIs: unmasked and level-triggered, or
    /// holding a remote IRR an EOI must clear.
    pub fn has_level_entries(&self) -> bool {
        self.table.iter().any(|&e| (e & rte::TRIGGER_LEVEL != 0 && e & rte::MASK == 0) || e & rte::REMOTE_IRR != 0)
    }

    /// How many messages the IOAPIC has sent.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn asserted(&self, pin: usize) -> bool {
        let high = self.lines & (1 << pin) != 0;
        high != (self.table[pin] & rte::INTPOL != 0)
    }

    /// Sends entry `pin`'s message if it may: unmasked, and for a level
    /// entry with its remote IRR clear (which delivery then sets).
    fn service(&mut self, pin: usize, ctx: &mut DeviceCtx<'_>) {
        let e = self.table[pin];
        if e & rte::MASK != 0 || !self.asserted(pin) {
            return;
        }
        if e & rte::TRIGGER_LEVEL != 0 {
            if e & rte::REMOTE_IRR != 0 {
                return;
            }
            self.table[pin] |= rte::REMOTE_IRR;
        }
        self.delivered += 1;
        ctx.interrupt(MESSAGE_BASE + pin as u16, ctx.now_ns);
    }

    /// Drives input pin `pin` (0-23; others ignored) to `level`.
    pub fn set_irq(&mut self, pin: usize, level: bool, ctx: &mut DeviceCtx<'_>) {
        if pin >= PINS {
            return;
        }
        let was = self.asserted(pin);
        if level {
            self.lines |= 1 << pin;
        } else {
            self.lines &= !(1 << pin);
        }
        let now = self.asserted(pin);
        let level_entry = self.table[pin] & rte::TRIGGER_LEVEL != 0;
        if now && (level_entry || !was) {
            self.service(pin, ctx);
        }
    }

    /// An EOI for `vector` (a local APIC's EOI broadcast, or a write to
    /// the EOI register): level entries with that vector get their remote
    /// IRR cleared, and deliver again if their pin is still asserted.
    pub fn eoi(&mut self, vector: u8, ctx: &mut DeviceCtx<'_>) {
        for pin in 0..PINS {
            let e = self.table[pin];
            if e & rte::VECTOR == u64::from(vector) && e & rte::REMOTE_IRR != 0 {
                self.table[pin] &= !rte::REMOTE_IRR;
                self.service(pin, ctx);
            }
        }
    }

    /// The MSI that message `message` stands for: the address and data the
    /// entry's destination, vector, delivery and trigger mode give.
    pub fn msi(&self, message: u16) -> Option<Msi> {
        let e = *self.table.get(usize::from(message.checked_sub(MESSAGE_BASE)?))?;
        let dest = (e >> rte::DEST_SHIFT) & 0xff;
        let logical = u64::from(e & rte::DEST_LOGICAL != 0);
        let mut data = (e & (rte::VECTOR | 7 << rte::DELIVERY_MODE_SHIFT)) as u32;
        if e & rte::TRIGGER_LEVEL != 0 {
            data |= MSI_TRIGGER_LEVEL | MSI_LEVEL_ASSERT;
        }
        Some(Msi { address: MSI_ADDRESS_BASE | dest << 12 | logical << 2, data })
    }

    fn read_register(&self) -> u32 {
        match self.ioregsel {
            IOAPICID | IOAPICARB => self.id,
            IOAPICVER => VERSION | ((PINS as u32 - 1) << 16),
            r if r >= IOREDTBL => match self.table.get(usize::from((r - IOREDTBL) / 2)) {
                Some(&e) if r & 1 == 0 => e as u32,
                Some(&e) => (e >> 32) as u32,
                None => 0,
            },
            _ => 0,
        }
    }

    fn write_register(&mut self, v: u32, ctx: &mut DeviceCtx<'_>) {
        match self.ioregsel {
            IOAPICID => self.id = v & 0x0f00_0000,
            r if r >= IOREDTBL => {
                let pin = usize::from((r - IOREDTBL) / 2);
                let Some(&old) = self.table.get(pin) else { return };
                let (lo, hi) = if r & 1 == 0 {
                    (u64::from(v), old & !0xffff_ffff)
                } else {
                    (old & 0xffff_ffff, u64::from(v) << 32)
                };
                let keep = old & rte::REMOTE_IRR;
                self.table[pin] = ((lo | hi) & rte::WRITABLE) | keep;
                // Unmasking a level entry whose pin is asserted delivers.
                if self.table[pin] & rte::TRIGGER_LEVEL != 0 {
                    self.service(pin, ctx);
                }
            }
            _ => {}
        }
    }

    /// An MMIO read at `offset` in the window.
    pub fn read_mmio(&self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            IOREGSEL => u32::from(self.ioregsel),
            IOWIN => self.read_register(),
            _ => 0,
        };
        let b = v.to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = b.get(i).copied().unwrap_or(0);
        }
    }

    /// An MMIO write at `offset` in the window.
    pub fn write_mmio(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            IOREGSEL => self.ioregsel = v as u8,
            IOWIN => self.write_register(v, ctx),
            EOI => self.eoi(v as u8, ctx),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::TestMemory;

    fn write_reg(io: &mut Ioapic, m: &TestMemory, reg: u8, v: u32) -> Vec<(u16, u64)> {
        m.run(0, |ctx| {
            io.write_mmio(IOREGSEL, &[reg], ctx);
            io.write_mmio(IOWIN, &v.to_le_bytes(), ctx);
        })
        .interrupts
    }

    fn read_reg(io: &mut Ioapic, m: &TestMemory, reg: u8) -> u32 {
        m.run(0, |ctx| io.write_mmio(IOREGSEL, &[reg], ctx));
        let mut d = [0u8; 4];
        io.read_mmio(IOWIN, &mut d);
        u32::from_le_bytes(d)
    }

    fn set(io: &mut Ioapic, m: &TestMemory, pin: usize, level: bool) -> Vec<(u16, u64)> {
        m.run(0, |ctx| io.set_irq(pin, level, ctx)).interrupts
    }

    #[test]
    fn id_version_and_arbitration_registers() {
        let (mut io, m) = (Ioapic::default(), TestMemory::new(4096));
        assert_eq!(read_reg(&mut io, &m, IOAPICVER), 0x0017_0020, "version 0x20, 24 entries");
        write_reg(&mut io, &m, IOAPICID, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, &m, IOAPICID), 0x0f00_0000);
        assert_eq!(read_reg(&mut io, &m, IOAPICARB), 0x0f00_0000);
        let mut sel = [0u8; 4];
        io.read_mmio(IOREGSEL, &mut sel);
        assert_eq!(sel, [IOAPICARB, 0, 0, 0]);
    }

    #[test]
    fn entries_reset_masked_and_keep_only_writable_bits() {
        let (mut io, m) = (Ioapic::default(), TestMemory::new(4096));
        assert!(!io.has_level_entries());
        assert_eq!(read_reg(&mut io, &m, IOREDTBL + 4), rte::MASK as u32);
        write_reg(&mut io, &m, IOREDTBL + 4, 0xffff_ffff);
        write_reg(&mut io, &m, IOREDTBL + 5, 0xffff_ffff);
        assert_eq!(io.entry(2), Some(0xff00_0000_0001_afff));
        assert_eq!(read_reg(&mut io, &m, IOREDTBL + 2 * 24), 0, "no entry 24");
    }

    #[test]
    fn edge_entry_delivers_on_each_rising_edge_as_its_msi() {
        let (mut io, m) = (Ioapic::default(), TestMemory::new(4096));
        write_reg(&mut io, &m, IOREDTBL + 2 * 14 + 1, 0x0300_0000); // destination APIC 3
        write_reg(&mut io, &m, IOREDTBL + 2 * 14, 0x0000_0041); // fixed, edge, vector 0x41, unmasked
        assert_eq!(set(&mut io, &m, 14, true), [(MESSAGE_BASE + 14, 0)]);
        assert_eq!(set(&mut io, &m, 14, true), [], "no new edge");
        assert_eq!(set(&mut io, &m, 14, false), []);
        assert_eq!(set(&mut io, &m, 14, true).len(), 1);
        assert_eq!(io.msi(MESSAGE_BASE + 14), Some(Msi { address: 0xfee0_3000, data: 0x41 }));
        assert_eq!(io.msi(3), None);
        assert_eq!(io.msi(MESSAGE_BASE + 24), None);
        assert_eq!(io.delivered(), 2);
    }

    #[test]
    fn level_entry_holds_remote_irr_until_eoi() {
        let (mut io, m) = (Ioapic::default(), TestMemory::new(4096));
        write_reg(&mut io, &m, IOREDTBL + 2 * 9, 0x0000_8051); // level, vector 0x51
        assert_eq!(set(&mut io, &m, 9, true).len(), 1);
        assert_ne!(io.entry(9).unwrap() & rte::REMOTE_IRR, 0);
        assert!(io.has_level_entries());
        assert_eq!(set(&mut io, &m, 9, true), [], "remote IRR blocks");
        let msi = io.msi(MESSAGE_BASE + 9).unwrap();
        assert_eq!(msi.data, 0x51 | 1 << 14 | 1 << 15);
        // EOI of another vector changes nothing; of 0x51, delivers again
        // since the line is still high.
        assert_eq!(m.run(0, |ctx| io.eoi(0x52, ctx)).interrupts, []);
        assert_eq!(m.run(0, |ctx| io.write_mmio(EOI, &[0x51, 0, 0, 0], ctx)).interrupts.len(), 1);
        set(&mut io, &m, 9, false);
        assert_eq!(m.run(0, |ctx| io.eoi(0x51, ctx)).interrupts, []);
        assert_eq!(io.entry(9).unwrap() & rte::REMOTE_IRR, 0);
        // Software cannot write remote IRR.
        write_reg(&mut io, &m, IOREDTBL + 2 * 9, 0x0001_c051);
        assert_eq!(io.entry(9).unwrap() & rte::REMOTE_IRR, 0);
    }

    #[test]
    fn masked_level_entry_delivers_when_unmasked_and_polarity_inverts() {
        let (mut io, m) = (Ioapic::default(), TestMemory::new(4096));
        write_reg(&mut io, &m, IOREDTBL + 2 * 5, 0x0001_8060); // level, masked
        assert_eq!(set(&mut io, &m, 5, true), []);
        assert_eq!(write_reg(&mut io, &m, IOREDTBL + 2 * 5, 0x0000_8060).len(), 1);
        // Active low: asserted while the line is low.
        write_reg(&mut io, &m, IOREDTBL + 2 * 6, 0x0000_2061);
        assert_eq!(set(&mut io, &m, 6, true), []);
        assert_eq!(set(&mut io, &m, 6, false).len(), 1);
        assert_eq!(set(&mut io, &m, 24, true), [], "no pin 24");
    }
}

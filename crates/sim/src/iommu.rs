//! The machine's IOMMU (VT-d, legacy-mode DMA remapping and interrupt
//! remapping) and the devices assigned behind it. The VMM writes the
//! tables in host memory (formats in `exitlab_arch::iommu`) and points the
//! IOMMU at them; from then on every DMA of an assigned device is walked
//! through them and checked, and every interrupt it raises is looked up in
//! the interrupt-remapping table: remapped to a vCPU's APIC, or posted
//! into a posted-interrupt descriptor.
//!
//! An assigned device's registers sit in host-physical space at
//! [`DEVICE_BASE`] and up; the VMM maps them into the guest through its
//! EPT, so the guest's accesses reach the device with no exit.

use crate::apic::Destination;
use crate::blocks::BlockCache;
use crate::host::HostMemory;
use crate::interrupts::Signal;
use crate::machine::Phys;
use crate::ram::Ram;
use exitlab_arch::bits::ept;
use exitlab_arch::iommu::{self, Context, Fault, FaultReason, Irte, SourceId};
use exitlab_hv::device::{Device, Dma, DmaError};
use exitlab_hv::Assignment;

/// Where assigned devices' registers (BARs) start in host-physical space.
pub const DEVICE_BASE: u64 = 1 << 45;

/// The registers the VMM programs: table addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Registers {
    /// RTADDR_REG: the root table.
    pub root: u64,
    /// IRTA_REG: the interrupt-remapping table and its entry count.
    pub irt: u64,
    pub irt_entries: u32,
}

/// A device plugged in behind the IOMMU.
pub struct Assigned {
    /// Host-physical base of its registers.
    pub bar: u64,
    pub len: u64,
    /// Out of its slot while it handles an access (it needs the machine).
    pub device: Option<Box<dyn Device>>,
    pub source: SourceId,
    pub first_irte: u16,
}

/// The IOMMU: its registers once the VMM has programmed them, the fault
/// log, and the devices assigned behind it.
#[derive(Default)]
pub struct Iommu {
    registers: Option<Registers>,
    /// Fault records the VMM has not read yet.
    faults: Vec<Fault>,
    devices: Vec<Assigned>,
}

fn entry(phys: &Phys<'_>, hpa: u64) -> [u8; iommu::ENTRY] {
    let mut b = [0u8; iommu::ENTRY];
    b[..8].copy_from_slice(&phys.read_u64(hpa).unwrap_or(0).to_le_bytes());
    b[8..].copy_from_slice(&phys.read_u64(hpa + 8).unwrap_or(0).to_le_bytes());
    b
}

impl Iommu {
    /// Points the IOMMU at its tables (keeping the fault log).
    pub fn program(&mut self, registers: Registers) {
        self.registers = Some(registers);
    }

    /// Whether the VMM has programmed it.
    pub fn programmed(&self) -> bool {
        self.registers.is_some()
    }

    /// The fault records since the last call.
    pub fn take_faults(&mut self) -> Vec<Fault> {
        std::mem::take(&mut self.faults)
    }

    /// Logs a fault record (a programmed IOMMU only: before that nothing
    /// reaches it).
    fn record(&mut self, fault: Fault) {
        if self.registers.is_some() {
            self.faults.push(fault);
        }
    }

    /// Plugs `device` in after the devices already assigned, page-aligned;
    /// returns the host-physical base of its registers.
    pub fn assign(&mut self, device: Box<dyn Device>, a: Assignment) -> u64 {
        let len = a.bar_len.max(1).next_multiple_of(crate::ram::PAGE);
        let bar = self.devices.last().map_or(DEVICE_BASE, |d| d.bar + d.len);
        self.devices.push(Assigned { bar, len, device: Some(device), source: a.source, first_irte: a.first_irte });
        bar
    }

    /// The assigned device whose registers hold host-physical `hpa`.
    pub fn device_at(&self, hpa: u64) -> Option<usize> {
        self.devices.iter().position(|a| hpa >= a.bar && hpa - a.bar < a.len)
    }

    /// The device in `slot`, out of it while it handles an access; the
    /// register offset of `hpa` in it, its requester ID and its first
    /// interrupt-remapping entry.
    pub fn take_device(&mut self, slot: usize, hpa: u64) -> Option<(Box<dyn Device>, u64, SourceId, u16)> {
        let a = &mut self.devices[slot];
        Some((a.device.take()?, hpa - a.bar, a.source, a.first_irte))
    }

    /// Puts the device taken from `slot` back.
    pub fn put_device(&mut self, slot: usize, device: Box<dyn Device>) {
        self.devices[slot].device = Some(device);
    }

    /// DMA remapping of one address: root entry, context entry, then the
    /// 4-level second-level walk with its R/W permissions.
    fn remap_dma(&self, phys: &Phys<'_>, source: SourceId, addr: u64, write: bool) -> Result<u64, FaultReason> {
        let io = self.registers.as_ref().ok_or(FaultReason::RootNotPresent)?;
        let root = entry(phys, io.root + u64::from(source.bus()) * iommu::ENTRY as u64);
        let table = iommu::root_context_table(&root).ok_or(FaultReason::RootNotPresent)?;
        let ctx = entry(phys, table + u64::from(source.devfn()) * iommu::ENTRY as u64);
        let Some(Context { second_level, address_width, .. }) = iommu::context(&ctx) else {
            return Err(FaultReason::ContextNotPresent);
        };
        if address_width != iommu::AW_48_BIT_4_LEVEL || addr >> 48 != 0 {
            return Err(FaultReason::AddressBeyondWidth);
        }
        let (needed, denied) =
            if write { (ept::W, FaultReason::WriteDenied) } else { (ept::R, FaultReason::ReadDenied) };
        let mut table = second_level;
        for level in (1..=4u32).rev() {
            let shift = 12 + 9 * (level - 1);
            let e = phys.read_u64(table + ((addr >> shift) & 511) * 8).unwrap_or(0);
            if e & needed == 0 {
                return Err(denied);
            }
            if level == 1 || (level <= 3 && e & ept::LARGE != 0) {
                let mask = (1u64 << shift) - 1;
                return Ok(e & ept::ADDR_MASK & !mask | addr & mask);
            }
            table = e & ept::ADDR_MASK;
        }
        Err(denied)
    }

    /// Interrupt remapping of message `index` from `source`: the signal it
    /// becomes, or `None` (and a fault record) when the table refuses it.
    pub fn remap_interrupt(&mut self, phys: &Phys<'_>, source: SourceId, index: u16) -> Option<Signal> {
        let io = self.registers?;
        let fault = |reason| Fault { source, address: u64::from(index), reason, write: true };
        if u32::from(index) >= io.irt_entries {
            self.record(fault(FaultReason::IndexBeyondTable));
            return None;
        }
        let at = io.irt + u64::from(index) * iommu::ENTRY as u64;
        match Irte::from_bytes(&entry(phys, at)) {
            Some(Irte::Remapped { vector, destination }) => {
                Some(Signal::Msi { dest: Destination::Physical(destination), vector })
            }
            Some(Irte::Posted { vector, descriptor }) => Some(Signal::Post { descriptor, vector }),
            None => {
                self.record(fault(FaultReason::IrteNotPresent));
                None
            }
        }
    }
}

/// DMA of an assigned device: page by page through the remapping tables;
/// the first refused page records a fault and stops the transfer (pages
/// before it have moved, as on hardware). Writes drop decoded blocks of
/// the pages they reach, as the CPU's own writes do.
pub struct Remapped<'a> {
    pub ram: &'a mut Ram,
    pub blocks: &'a mut BlockCache,
    pub host: &'a HostMemory,
    pub iommu: &'a mut Iommu,
    pub source: SourceId,
}

impl Remapped<'_> {
    /// Remaps each page of `addr..addr+len` and hands `f` the host-physical
    /// address and the range of the buffer it covers.
    fn each_page(
        &mut self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut Self, u64, std::ops::Range<usize>) -> bool,
    ) -> Result<(), DmaError> {
        let mut done = 0usize;
        while done < len {
            let at = addr.wrapping_add(done as u64);
            let n = ((4096 - (at & 0xfff)) as usize).min(len - done);
            let phys = Phys { ram: self.ram, host: self.host };
            let hpa = match self.iommu.remap_dma(&phys, self.source, at, write) {
                Ok(hpa) => hpa,
                Err(reason) => {
                    self.iommu.record(Fault { source: self.source, address: at & !0xfff, reason, write });
                    return Err(DmaError { addr: at, write });
                }
            };
            // The VMM maps RAM only; anything else is an unsupported
            // request on the bus, not a remapping fault.
            if !f(self, hpa, done..done + n) {
                return Err(DmaError { addr: at, write });
            }
            done += n;
        }
        Ok(())
    }
}

impl Dma for Remapped<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.each_page(addr, buf.len(), false, |d, hpa, r| d.ram.read(hpa, &mut buf[r]))
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.each_page(addr, data.len(), true, |d, hpa, r| {
            let blocks = &mut *d.blocks;
            d.ram.write(hpa, &data[r], |page| blocks.invalidate_page(page))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HOST_BASE;
    use crate::machine::Machine;

    const SOURCE: SourceId = SourceId(3 << 3);

    /// Host memory with a root table, a context entry for [`SOURCE`], and
    /// second-level tables mapping guest page 0x5000 read-only and 0x6000
    /// read-write to themselves; an interrupt-remapping table with a
    /// remapped entry 0, a posted entry 1 and nothing at 2.
    fn machine() -> Machine {
        let mut sh = Machine::new(1 << 20).unwrap();
        sh.host.alloc(8).unwrap();
        let page = |i: u64| HOST_BASE + i * 4096;
        let put = |sh: &mut Machine, at: u64, b: &[u8]| sh.host.slice_mut(at, b.len()).unwrap().copy_from_slice(b);
        put(&mut sh, page(0) + u64::from(SOURCE.bus()) * 16, &iommu::root_entry(page(1)));
        put(&mut sh, page(1) + u64::from(SOURCE.devfn()) * 16, &iommu::context_entry(page(2), 1));
        for (table, next) in [(2, 3), (3, 4), (4, 5)] {
            put(&mut sh, page(table), &(page(next) | ept::R | ept::W).to_le_bytes());
        }
        put(&mut sh, page(5) + 5 * 8, &(0x5000 | ept::R).to_le_bytes());
        put(&mut sh, page(5) + 6 * 8, &(0x6000 | ept::R | ept::W).to_le_bytes());
        put(&mut sh, page(6), &Irte::Remapped { vector: 0x41, destination: 0 }.to_bytes());
        put(&mut sh, page(6) + 16, &Irte::Posted { vector: 0x42, descriptor: page(7) }.to_bytes());
        sh.iommu.program(Registers { root: page(0), irt: page(6), irt_entries: 4 });
        sh
    }

    /// DMA remapping of one address through `sh`'s tables.
    fn remap_dma(sh: &Machine, source: SourceId, addr: u64, write: bool) -> Result<u64, FaultReason> {
        sh.iommu.remap_dma(&sh.phys(), source, addr, write)
    }

    #[test]
    fn dma_is_walked_and_checked_through_the_vmm_tables() {
        let sh = machine();
        assert_eq!(remap_dma(&sh, SOURCE, 0x5123, false), Ok(0x5123));
        assert_eq!(remap_dma(&sh, SOURCE, 0x5123, true), Err(FaultReason::WriteDenied));
        assert_eq!(remap_dma(&sh, SOURCE, 0x6ff8, true), Ok(0x6ff8));
        assert_eq!(remap_dma(&sh, SOURCE, 0x7000, false), Err(FaultReason::ReadDenied));
        assert_eq!(remap_dma(&sh, SOURCE, 1 << 48, false), Err(FaultReason::AddressBeyondWidth));
        assert_eq!(remap_dma(&sh, SourceId(SOURCE.0 + 1), 0x5000, false), Err(FaultReason::ContextNotPresent));
        assert_eq!(remap_dma(&sh, SourceId(0x100), 0x5000, false), Err(FaultReason::RootNotPresent));
    }

    #[test]
    fn a_transfer_stops_at_the_first_refused_page_and_records_it() {
        let mut sh = machine();
        let mut dma = sh.dma(SOURCE);
        assert_eq!(dma.write(0x6ff0, &[0xab; 0x20]), Err(DmaError { addr: 0x7000, write: true }));
        assert_eq!(dma.write(0x5000, &[1]), Err(DmaError { addr: 0x5000, write: true }));
        let mut b = [0u8; 0x10];
        assert_eq!(dma.read(0x6ff0, &mut b), Ok(()));
        assert_eq!(b, [0xab; 0x10], "the page before the refused one moved");
        let mut past = [0u8];
        assert!(sh.ram.read(0x7000, &mut past));
        assert_eq!(past, [0], "nothing past it");
        let faults = &sh.iommu.faults;
        let f = |address, reason| Fault { source: SOURCE, address, reason, write: true };
        assert_eq!(faults, &vec![f(0x7000, FaultReason::WriteDenied), f(0x5000, FaultReason::WriteDenied)]);
    }

    #[test]
    fn interrupts_are_remapped_posted_or_refused_by_their_entry() {
        let mut sh = machine();
        assert_eq!(sh.remap_interrupt(SOURCE, 0), Some(Signal::Msi { dest: Destination::Physical(0), vector: 0x41 }));
        let descriptor = HOST_BASE + 7 * 4096;
        assert_eq!(sh.remap_interrupt(SOURCE, 1), Some(Signal::Post { descriptor, vector: 0x42 }));
        assert_eq!(sh.remap_interrupt(SOURCE, 2), None);
        assert_eq!(sh.remap_interrupt(SOURCE, 4), None);
        let reasons: Vec<_> = sh.iommu.faults.iter().map(|f| (f.reason, f.address)).collect();
        assert_eq!(reasons, vec![(FaultReason::IrteNotPresent, 2), (FaultReason::IndexBeyondTable, 4)]);
    }
}

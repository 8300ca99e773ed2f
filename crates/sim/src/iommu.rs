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

use crate::machine::{Shared, Signal};
use exitlab_arch::bits::ept;
use exitlab_arch::iommu::{self, Context, Fault, FaultReason, Irte, SourceId};
use exitlab_hv::device::{Device, DeviceCtx, Dma, DmaError};

/// Where assigned devices' registers (BARs) start in host-physical space.
pub const DEVICE_BASE: u64 = 1 << 45;

/// The IOMMU's registers: table addresses and the fault log.
#[derive(Debug, Default)]
pub struct Iommu {
    /// RTADDR_REG: the root table.
    pub root: u64,
    /// IRTA_REG: the interrupt-remapping table and its entry count.
    pub irt: u64,
    pub irt_entries: u32,
    /// Fault records the VMM has not read yet.
    pub faults: Vec<Fault>,
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

impl Shared {
    fn entry(&self, hpa: u64) -> [u8; iommu::ENTRY] {
        let mut b = [0u8; iommu::ENTRY];
        b[..8].copy_from_slice(&self.read_hpa(hpa).unwrap_or(0).to_le_bytes());
        b[8..].copy_from_slice(&self.read_hpa(hpa + 8).unwrap_or(0).to_le_bytes());
        b
    }

    /// DMA remapping of one address: root entry, context entry, then the
    /// 4-level second-level walk with its R/W permissions.
    fn remap_dma(&self, source: SourceId, addr: u64, write: bool) -> Result<u64, FaultReason> {
        let io = self.iommu.as_ref().ok_or(FaultReason::RootNotPresent)?;
        let root = self.entry(io.root + u64::from(source.bus()) * iommu::ENTRY as u64);
        let table = iommu::root_context_table(&root).ok_or(FaultReason::RootNotPresent)?;
        let ctx = self.entry(table + u64::from(source.devfn()) * iommu::ENTRY as u64);
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
            let e = self.read_hpa(table + ((addr >> shift) & 511) * 8).unwrap_or(0);
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
    pub fn remap_interrupt(&mut self, source: SourceId, index: u16) -> Option<Signal> {
        let io = self.iommu.as_ref()?;
        let fault = |reason| Fault { source, address: u64::from(index), reason, write: true };
        if u32::from(index) >= io.irt_entries {
            let f = fault(FaultReason::IndexBeyondTable);
            self.iommu.as_mut()?.faults.push(f);
            return None;
        }
        let at = io.irt + u64::from(index) * iommu::ENTRY as u64;
        match Irte::from_bytes(&self.entry(at)) {
            Some(Irte::Remapped { vector, destination }) => Some(Signal::Msi { dest: destination, vector }),
            Some(Irte::Posted { vector, descriptor }) => Some(Signal::Post { descriptor, vector }),
            None => {
                let f = fault(FaultReason::IrteNotPresent);
                self.iommu.as_mut()?.faults.push(f);
                None
            }
        }
    }

    /// The assigned device whose registers hold host-physical `hpa`.
    pub fn assigned_at(&self, hpa: u64) -> Option<usize> {
        self.assigned.iter().position(|a| hpa >= a.bar && hpa - a.bar < a.len)
    }

    /// A CPU access to an assigned device's registers, at `now_ns`: the
    /// device runs with DMA through the IOMMU, and the interrupts it raises
    /// are queued for interrupt remapping at their time.
    pub fn device_access(&mut self, slot: usize, hpa: u64, data: &mut [u8], write: bool, now_ns: u64) {
        let Some(mut device) = self.assigned[slot].device.take() else { return };
        let (offset, source, first_irte) =
            (hpa - self.assigned[slot].bar, self.assigned[slot].source, self.assigned[slot].first_irte);
        let mut dma = Remapped { sh: self, source };
        let mut ctx = DeviceCtx::new(now_ns, &mut dma);
        if write {
            device.write(offset, data, &mut ctx);
        } else {
            device.read(offset, data, &mut ctx);
        }
        let (interrupts, wakes) = (std::mem::take(&mut ctx.interrupts), std::mem::take(&mut ctx.wakes));
        for (message, at) in interrupts {
            self.schedule(at, Signal::Remapped { source, index: first_irte.wrapping_add(message) });
        }
        // A device that tells the hypervisor rather than the guest (a
        // doorbell): the VMM's run call returns then.
        for at in wakes {
            self.schedule(at, Signal::WakeVmm);
        }
        self.assigned[slot].device = Some(device);
    }
}

/// DMA of an assigned device: page by page through the remapping tables;
/// the first refused page records a fault and stops the transfer (pages
/// before it have moved, as on hardware).
struct Remapped<'a> {
    sh: &'a mut Shared,
    source: SourceId,
}

impl Remapped<'_> {
    fn each_page(
        &mut self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut Shared, u64, std::ops::Range<usize>) -> bool,
    ) -> Result<(), DmaError> {
        let mut done = 0usize;
        while done < len {
            let at = addr.wrapping_add(done as u64);
            let n = ((4096 - (at & 0xfff)) as usize).min(len - done);
            let hpa = match self.sh.remap_dma(self.source, at, write) {
                Ok(hpa) => hpa,
                Err(reason) => {
                    let fault = Fault { source: self.source, address: at & !0xfff, reason, write };
                    if let Some(io) = self.sh.iommu.as_mut() {
                        io.faults.push(fault);
                    }
                    return Err(DmaError { addr: at, write });
                }
            };
            // The VMM maps RAM only; anything else is an unsupported
            // request on the bus, not a remapping fault.
            if !f(self.sh, hpa, done..done + n) {
                return Err(DmaError { addr: at, write });
            }
            done += n;
        }
        Ok(())
    }
}

impl Dma for Remapped<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.each_page(addr, buf.len(), false, |sh, hpa, r| sh.read(hpa, &mut buf[r]))
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.each_page(addr, data.len(), true, |sh, hpa, r| sh.write(hpa, &data[r]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::HOST_BASE;

    const SOURCE: SourceId = SourceId(3 << 3);

    /// Host memory with a root table, a context entry for [`SOURCE`], and
    /// second-level tables mapping guest page 0x5000 read-only and 0x6000
    /// read-write to themselves; an interrupt-remapping table with a
    /// remapped entry 0, a posted entry 1 and nothing at 2.
    fn machine() -> Shared {
        let mut sh = Shared::new(1 << 20).unwrap();
        sh.host = vec![0; 8 * 4096];
        let page = |i: u64| HOST_BASE + i * 4096;
        let put = |sh: &mut Shared, at: u64, b: &[u8]| sh.host_mut(at, b.len()).unwrap().copy_from_slice(b);
        put(&mut sh, page(0) + u64::from(SOURCE.bus()) * 16, &iommu::root_entry(page(1)));
        put(&mut sh, page(1) + u64::from(SOURCE.devfn()) * 16, &iommu::context_entry(page(2), 1));
        for (table, next) in [(2, 3), (3, 4), (4, 5)] {
            put(&mut sh, page(table), &(page(next) | ept::R | ept::W).to_le_bytes());
        }
        put(&mut sh, page(5) + 5 * 8, &(0x5000 | ept::R).to_le_bytes());
        put(&mut sh, page(5) + 6 * 8, &(0x6000 | ept::R | ept::W).to_le_bytes());
        put(&mut sh, page(6), &Irte::Remapped { vector: 0x41, destination: 0 }.to_bytes());
        put(&mut sh, page(6) + 16, &Irte::Posted { vector: 0x42, descriptor: page(7) }.to_bytes());
        sh.iommu = Some(Iommu { root: page(0), irt: page(6), irt_entries: 4, faults: Vec::new() });
        sh
    }

    #[test]
    fn dma_is_walked_and_checked_through_the_vmm_tables() {
        let sh = machine();
        assert_eq!(sh.remap_dma(SOURCE, 0x5123, false), Ok(0x5123));
        assert_eq!(sh.remap_dma(SOURCE, 0x5123, true), Err(FaultReason::WriteDenied));
        assert_eq!(sh.remap_dma(SOURCE, 0x6ff8, true), Ok(0x6ff8));
        assert_eq!(sh.remap_dma(SOURCE, 0x7000, false), Err(FaultReason::ReadDenied));
        assert_eq!(sh.remap_dma(SOURCE, 1 << 48, false), Err(FaultReason::AddressBeyondWidth));
        assert_eq!(sh.remap_dma(SourceId(SOURCE.0 + 1), 0x5000, false), Err(FaultReason::ContextNotPresent));
        assert_eq!(sh.remap_dma(SourceId(0x100), 0x5000, false), Err(FaultReason::RootNotPresent));
    }

    #[test]
    fn a_transfer_stops_at_the_first_refused_page_and_records_it() {
        let mut sh = machine();
        let mut dma = Remapped { sh: &mut sh, source: SOURCE };
        assert_eq!(dma.write(0x6ff0, &[0xab; 0x20]), Err(DmaError { addr: 0x7000, write: true }));
        assert_eq!(dma.write(0x5000, &[1]), Err(DmaError { addr: 0x5000, write: true }));
        let mut b = [0u8; 0x10];
        assert_eq!(dma.read(0x6ff0, &mut b), Ok(()));
        assert_eq!(b, [0xab; 0x10], "the page before the refused one moved");
        let mut past = [0u8];
        assert!(sh.read(0x7000, &mut past));
        assert_eq!(past, [0], "nothing past it");
        let faults = &sh.iommu.as_ref().unwrap().faults;
        let f = |address, reason| Fault { source: SOURCE, address, reason, write: true };
        assert_eq!(faults, &vec![f(0x7000, FaultReason::WriteDenied), f(0x5000, FaultReason::WriteDenied)]);
    }

    #[test]
    fn interrupts_are_remapped_posted_or_refused_by_their_entry() {
        let mut sh = machine();
        assert_eq!(sh.remap_interrupt(SOURCE, 0), Some(Signal::Msi { dest: 0, vector: 0x41 }));
        let descriptor = HOST_BASE + 7 * 4096;
        assert_eq!(sh.remap_interrupt(SOURCE, 1), Some(Signal::Post { descriptor, vector: 0x42 }));
        assert_eq!(sh.remap_interrupt(SOURCE, 2), None);
        assert_eq!(sh.remap_interrupt(SOURCE, 4), None);
        let reasons: Vec<_> = sh.iommu.unwrap().faults.iter().map(|f| (f.reason, f.address)).collect();
        assert_eq!(reasons, vec![(FaultReason::IrteNotPresent, 2), (FaultReason::IndexBeyondTable, 4)]);
    }
}

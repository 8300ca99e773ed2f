//! Giving the guest a DMA-capable device. Where the hardware has an IOMMU
//! the VMM assigns it (passthrough): the device goes to the machine, its
//! registers are mapped into the guest through the EPT (no exits), its DMA
//! is confined by VT-d remapping tables the VMM writes in host memory, and
//! its interrupts go through an interrupt-remapping entry, posted to the
//! vCPU when the hardware can. Without an IOMMU the VMM cannot let the
//! device near guest memory unchecked, so it emulates it: every register
//! access exits, and the VMM performs each DMA itself against the same
//! window ([`Checked`]), recording refusals as the IOMMU would.

use crate::ept::Ept;
use crate::error::VmmError;
use crate::interrupts::Posting;
use exitlab_arch::bits::ept;
use exitlab_arch::iommu::{self, Fault, FaultReason, Irte, SourceId};
use exitlab_guest::layout;
use exitlab_hv::device::{Device, Dma, DmaError};
use exitlab_hv::{Assignment, VmxVm};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The block device's requester ID: 00:03.0.
pub const BLK_SOURCE: SourceId = SourceId(3 << 3);

/// Guest-physical memory a device may reach by DMA: the VMM maps exactly
/// this, 1:1, readable and writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    pub start: u64,
    pub len: u64,
}

impl DmaWindow {
    /// How many bytes from `addr` on lie inside the window (of `len`).
    fn inside(&self, addr: u64, len: usize) -> usize {
        if addr < self.start || addr - self.start >= self.len {
            return 0;
        }
        (self.start + self.len - addr).min(len as u64) as usize
    }
}

/// Entries in the interrupt-remapping table the VMM builds (one page).
const IRT_ENTRIES: u32 = 256;

/// The kick doorbell's requester ID: 00:04.0. It has no context entry: it
/// may not DMA at all.
pub const DOORBELL_SOURCE: SourceId = SourceId(4 << 3);

/// Programs the IOMMU: DMA remapping for the block device's requester over
/// `window` (no other requester may DMA), and its interrupt message 0
/// through remapping entry 0 (posted when `posting`).
pub fn program_iommu<M: VmxVm + ?Sized>(
    vm: &mut M,
    window: DmaWindow,
    posting: Option<&Posting>,
) -> Result<(), VmmError> {
    // Second-level tables share the EPT's format: one builder for both.
    let mut dma = Ept::new(vm)?;
    dma.map_identity(vm, window.start, window.len, ept::R | ept::W)?;
    let context = vm.alloc_host_pages(1)?;
    let root = vm.alloc_host_pages(1)?;
    let irt = vm.alloc_host_pages(1)?;
    let entry = |index: u8| index as u64 * iommu::ENTRY as u64;
    vm.write_host(context + entry(BLK_SOURCE.devfn()), &iommu::context_entry(dma.root(), 1))?;
    vm.write_host(root + entry(BLK_SOURCE.bus()), &iommu::root_entry(context))?;
    let irte = match posting {
        Some(p) => Irte::Posted { vector: layout::DEVICE_VECTOR, descriptor: p.descriptor() },
        None => Irte::Remapped { vector: layout::DEVICE_VECTOR, destination: 0 },
    };
    vm.write_host(irt, &irte.to_bytes())?;
    vm.set_iommu(root, irt, IRT_ENTRIES)?;
    Ok(())
}

/// Plugs `device` into the machine behind the (programmed) IOMMU as
/// requester `source`, and maps its `len` bytes of registers at the
/// guest's `gpa` in `ept`: the guest reaches them with no exit.
pub fn plug<M: VmxVm + ?Sized>(
    vm: &mut M,
    ept: &mut Ept,
    device: Box<dyn Device>,
    source: SourceId,
    gpa: u64,
    len: u64,
) -> Result<(), VmmError> {
    let bar = vm.assign_device(device, Assignment { bar_len: len, source, first_irte: 0 })?;
    ept.map_device(vm, gpa, bar, len)
}

/// DMA for a device the VMM emulates: guest RAM, within the window only.
pub struct Checked<'a> {
    pub memory: &'a GuestMemoryMmap,
    pub window: DmaWindow,
    pub source: SourceId,
    pub faults: &'a mut Vec<Fault>,
}

impl Checked<'_> {
    /// The bytes of a DMA that may move; records a fault, as the IOMMU
    /// would, at the first page that may not.
    fn allowed(&mut self, addr: u64, len: usize, write: bool) -> usize {
        let n = self.window.inside(addr, len);
        if n < len {
            let reason = if write { FaultReason::WriteDenied } else { FaultReason::ReadDenied };
            let at = addr.wrapping_add(n as u64);
            self.faults.push(Fault { source: self.source, address: at & !0xfff, reason, write });
        }
        n
    }
}

/// Moves the allowed part of a DMA, then reports the rest refused, so an
/// emulated device sees what an assigned one does (the IOMMU also moves
/// the pages before the first refused one).
impl Dma for Checked<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let n = self.allowed(addr, buf.len(), false);
        let refused = DmaError { addr: addr.wrapping_add(n as u64), write: false };
        self.memory.read_slice(&mut buf[..n], GuestAddress(addr)).map_err(|_| refused)?;
        if n < buf.len() {
            return Err(refused);
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let n = self.allowed(addr, data.len(), true);
        let refused = DmaError { addr: addr.wrapping_add(n as u64), write: true };
        self.memory.write_slice(&data[..n], GuestAddress(addr)).map_err(|_| refused)?;
        if n < data.len() {
            return Err(refused);
        }
        Ok(())
    }
}

//! The machine: what a simulated VM's vCPUs share. Each part has its own
//! type and methods: guest RAM with its code pages ([`Ram`]), the decode
//! cache ([`BlockCache`]), the interrupt queue ([`InterruptQueue`]), host
//! memory ([`HostMemory`]) and the IOMMU with its assigned devices
//! ([`Iommu`]). What is left here is what crosses them: a RAM write drops
//! the decoded blocks it makes stale, a host-physical address is RAM or
//! host memory, and an assigned device's access runs it with DMA through
//! the IOMMU and queues the interrupts it raises.

use crate::blocks::BlockCache;
use crate::devthread::DeviceThread;
use crate::host::{HostMemory, HOST_BASE};
use crate::interrupts::{InterruptQueue, Signal};
use crate::iommu::{Iommu, Remapped};
use crate::ram::Ram;
use exitlab_arch::iommu::SourceId;
use exitlab_hv::device::DeviceCtx;
use exitlab_hv::HvError;

/// Everything the vCPUs of one VM share.
pub struct Machine {
    pub ram: Ram,
    pub blocks: BlockCache,
    pub interrupts: InterruptQueue,
    pub host: HostMemory,
    pub iommu: Iommu,
    /// The host's device thread, where the profile prices one.
    pub device_thread: Option<DeviceThread>,
}

/// Host-physical reads: RAM below [`HOST_BASE`], host memory above.
pub struct Phys<'a> {
    pub ram: &'a Ram,
    pub host: &'a HostMemory,
}

impl Phys<'_> {
    /// The 8 bytes at host-physical `hpa`.
    #[inline]
    pub fn read_u64(&self, hpa: u64) -> Option<u64> {
        if hpa < HOST_BASE {
            let mut b = [0u8; 8];
            return self.ram.read(hpa, &mut b).then(|| u64::from_le_bytes(b));
        }
        self.host.read_u64(hpa)
    }
}

impl Machine {
    /// A machine with `size` bytes of RAM.
    pub fn new(size: usize) -> Result<Machine, HvError> {
        Ok(Machine {
            ram: Ram::new(size)?,
            blocks: BlockCache::default(),
            interrupts: InterruptQueue::default(),
            host: HostMemory::default(),
            iommu: Iommu::default(),
            device_thread: None,
        })
    }

    /// Copies into RAM, dropping decoded blocks of the pages written;
    /// `false` if the range leaves RAM.
    #[inline(always)]
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let blocks = &mut self.blocks;
        self.ram.write(gpa, data, |page| blocks.invalidate_page(page))
    }

    /// Writes the low `size` bytes of `v` into RAM, as [`Machine::write`].
    #[inline(always)]
    pub fn write_value(&mut self, gpa: u64, size: usize, v: u64) -> bool {
        let blocks = &mut self.blocks;
        self.ram.write_value(gpa, size, v, |page| blocks.invalidate_page(page))
    }

    pub fn phys(&self) -> Phys<'_> {
        Phys { ram: &self.ram, host: &self.host }
    }

    /// The 8 bytes at host-physical `hpa`, in RAM or host memory.
    #[inline]
    pub fn read_hpa(&self, hpa: u64) -> Option<u64> {
        self.phys().read_u64(hpa)
    }

    /// Writes 8 bytes at host-physical `hpa`; `false` outside memory.
    pub fn write_hpa(&mut self, hpa: u64, v: u64) -> bool {
        if hpa < HOST_BASE {
            return self.write(hpa, &v.to_le_bytes());
        }
        self.host.write_u64(hpa, v)
    }

    /// Interrupt remapping of message `index` from `source` (see
    /// [`Iommu::remap_interrupt`]).
    pub fn remap_interrupt(&mut self, source: SourceId, index: u16) -> Option<Signal> {
        let phys = Phys { ram: &self.ram, host: &self.host };
        self.iommu.remap_interrupt(&phys, source, index)
    }

    /// DMA by requester `source`, through the IOMMU.
    pub fn dma(&mut self, source: SourceId) -> Remapped<'_> {
        Remapped { ram: &mut self.ram, blocks: &mut self.blocks, host: &self.host, iommu: &mut self.iommu, source }
    }

    /// A CPU access to the registers of the assigned device in `slot`, at
    /// `now_ns`: the device runs with DMA through the IOMMU, and the
    /// interrupts it raises are queued for interrupt remapping at their
    /// time.
    pub fn device_access(&mut self, slot: usize, hpa: u64, data: &mut [u8], write: bool, now_ns: u64) {
        let Some((mut device, offset, source, first_irte)) = self.iommu.take_device(slot, hpa) else { return };
        let mut dma = self.dma(source);
        let mut ctx = DeviceCtx::new(now_ns, &mut dma);
        if write {
            device.write(offset, data, &mut ctx);
        } else {
            device.read(offset, data, &mut ctx);
        }
        let (interrupts, wakes) = (std::mem::take(&mut ctx.interrupts), std::mem::take(&mut ctx.wakes));
        for (message, at) in interrupts {
            self.interrupts.schedule(at, Signal::Remapped { source, index: first_irte.wrapping_add(message) });
        }
        // A device that tells the hypervisor rather than the guest (a
        // doorbell): the VMM's run call returns then.
        for at in wakes {
            self.interrupts.schedule(at, Signal::WakeVmm);
        }
        self.iommu.put_device(slot, device);
    }
}

//! Devices, as code that both sides can host: the VMM puts a device on its
//! buses and traps every register access (emulation), or hands it to the
//! machine as a physical device the guest drives directly (passthrough,
//! [`crate::VmxVm::assign_device`]). Either way the device sees the same
//! context: the time, memory to DMA into, and a way to interrupt.

use std::any::Any;

/// Memory as a device's DMA sees it: through the IOMMU on a passthrough
/// device, through the VMM's checks on an emulated one.
pub trait Dma {
    /// Reads `buf.len()` bytes at bus address `addr`; what moved before a
    /// refused page stays moved, as on hardware.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Writes `data` at bus address `addr`, with the same partial rule.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError>;
}

/// A DMA that did not happen: the first address refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaError {
    /// The first bus address refused.
    pub addr: u64,
    /// Whether the DMA was a write to memory.
    pub write: bool,
}

/// What a device can reach while it handles one register access or a
/// timer.
pub struct DeviceCtx<'a> {
    /// The machine's clock: virtual time on the simulator.
    pub now_ns: u64,
    /// The device's DMA, checked or remapped.
    pub dma: &'a mut dyn Dma,
    /// Guest RAM for devices that hand it to vm-memory users (virtio
    /// queues); `None` behind an IOMMU, where DMA must go through `dma`.
    pub memory: Option<&'a vm_memory::GuestMemoryMmap>,
    /// Interrupts the device raised: (message number, when). Message
    /// numbers are the device's own (an MSI-X table index); whoever hosts
    /// the device routes them: the VMM to a vector, the IOMMU through its
    /// interrupt-remapping table.
    pub interrupts: Vec<(u16, u64)>,
    /// Times at which the device wants [`Device::tick`] called.
    pub wakes: Vec<u64>,
}

impl<'a> DeviceCtx<'a> {
    /// A context at `now_ns` with `dma`, no memory view, nothing raised.
    pub fn new(now_ns: u64, dma: &'a mut dyn Dma) -> DeviceCtx<'a> {
        DeviceCtx { now_ns, dma, memory: None, interrupts: Vec::new(), wakes: Vec::new() }
    }

    /// Asks for a [`Device::tick`] at `at_ns`.
    pub fn wake_at(&mut self, at_ns: u64) {
        self.wakes.push(at_ns.max(self.now_ns));
    }

    /// Raises message `message` at `at_ns` (not before now).
    pub fn interrupt(&mut self, message: u16, at_ns: u64) {
        self.interrupts.push((message, at_ns.max(self.now_ns)));
    }
}

/// A device model: reads and writes at an offset into its register range.
/// `data`'s length is the access size. Devices keep their own state and
/// never panic on guest-chosen offsets, sizes or memory contents.
pub trait Device: Send {
    /// A register read at `offset` into the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>);
    /// A register write at `offset` into the device's range.
    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>);
    /// Work the device asked to do at a time ([`DeviceCtx::wake_at`]); it
    /// may be called early or more often, and must check what is due.
    fn tick(&mut self, _ctx: &mut DeviceCtx<'_>) {}
    /// What the device counts (requests, interrupts, drops), for reports.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// For inspecting a device's state after a run.
    fn as_any(&self) -> &dyn Any;
}

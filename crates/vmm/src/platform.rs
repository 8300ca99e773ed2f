//! The exitlab machine's devices and what ties them to the guest: the port
//! and MMIO buses, the devices an image asks for (the block device, a
//! network card), the DMA window the VMM grants them, the interrupts they
//! raise and the timers they ask for. The run loop hands it each trapped
//! access and each timer that falls due; devices never see the backend.

use crate::assign::{Checked, DmaWindow, BLK_SOURCE};
use crate::bus::{Bus, DeviceCtx};
use crate::devices::{BlockDevice, Coalescing, Doorbell, MmioScratch, Pic, PostPort, Serial, VirtioNet, E1000};
use crate::interrupts::Posting;
use crate::run::VmmError;
use exitlab_arch::iommu::Fault;
use exitlab_guest::{layout, nic, Image};
use exitlab_hv::{Msi, Vm};
use std::collections::BTreeSet;

pub const SERIAL: &str = "serial";
const BLK: &str = "blk";
/// The block device's disk: 1 MiB.
const BLK_SECTORS: u32 = 2048;

pub struct Platform {
    pub pio: Bus,
    pub mmio: Bus,
    /// Guest-physical memory devices may reach by DMA.
    pub window: DmaWindow,
    /// DMA refused so far (by the IOMMU, or the VMM for its own devices).
    pub dma_faults: Vec<Fault>,
    /// Interrupts raised and not yet delivered: (message, when).
    raised: Vec<(u16, u64)>,
    /// Device timers asked for, and those the backend will wake the VMM
    /// for.
    wakes: BTreeSet<u64>,
    asked: BTreeSet<u64>,
}

fn number(image: &Image, key: &str) -> Result<Option<u64>, VmmError> {
    image.requests.get(key).map_or(Ok(None), |v| {
        v.parse().map(Some).map_err(|_| VmmError::Load(format!("`{key}` {v:?} is not a whole number")))
    })
}

impl Platform {
    /// The fixed devices, the network card the image asks for (`net`),
    /// and the block device (`device` = blk), which is returned instead of
    /// plugged in when `assign` says the VMM will give it to the guest
    /// behind the IOMMU.
    pub fn new<V: Vm>(vm: &V, image: &Image, assign: bool) -> Result<(Platform, Option<BlockDevice>), VmmError> {
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let fixed = "device ranges are disjoint by construction";
        pio.insert(SERIAL, u64::from(layout::SERIAL_COM1), 8, Box::<Serial>::default()).expect(fixed);
        pio.insert("post", u64::from(layout::PORT_POST), 1, Box::<PostPort>::default()).expect(fixed);
        pio.insert("doorbell", u64::from(layout::PORT_DOORBELL), 1, Box::<Doorbell>::default()).expect(fixed);
        pio.insert("pic-master", 0x20, 2, Box::<Pic>::default()).expect(fixed);
        pio.insert("pic-slave", 0xa0, 2, Box::<Pic>::default()).expect(fixed);
        mmio.insert("mmio-scratch", layout::MMIO_BENCH, layout::MMIO_BENCH_SIZE, Box::<MmioScratch>::default())
            .expect(fixed);
        let wire_ns = number(image, "wire_ns")?.unwrap_or(0);
        match image.requests.get("net").map(String::as_str) {
            None => {}
            Some("e1000") => {
                let nic = Box::new(E1000::new(wire_ns));
                mmio.insert("e1000", nic::E1000_BAR, nic::E1000_BAR_SIZE, nic).expect(fixed);
            }
            Some("virtio") => {
                let n = number(image, "coalesce_n")?.unwrap_or(0);
                let tau_ns = number(image, "coalesce_us")?.unwrap_or(0).saturating_mul(1000);
                let c = Coalescing { n: u32::try_from(n).unwrap_or(u32::MAX), tau_ns };
                let nic = Box::new(VirtioNet::new(wire_ns, c));
                mmio.insert("virtio-net", nic::VIRTIO_NET_BAR, nic::VIRTIO_NET_BAR_SIZE, nic).expect(fixed);
            }
            Some(other) => return Err(VmmError::Load(format!("unknown network card `{other}` (e1000, virtio)"))),
        }
        let mut window = DmaWindow { start: 0, len: vm.memory_size() };
        let mut to_assign = None;
        if image.requests.get("device").map(String::as_str) == Some("blk") {
            let rate = number(image, "blk_rate")?.filter(|&r| r > 0);
            let rate = rate.ok_or_else(|| VmmError::Load("the block device needs a `blk_rate` above 0".into()))?;
            if let Some(w) = image.requests.get("dma") {
                let (start, len) = crate::monitor::parse_range(w)
                    .ok_or_else(|| VmmError::Load(format!("`dma` {w:?} is not 0xSTART+0xLEN")))?;
                window = DmaWindow { start, len };
            }
            let device = BlockDevice::new(BLK_SECTORS, 1_000_000_000 / rate);
            if assign {
                to_assign = Some(device);
            } else {
                mmio.insert(BLK, layout::BLK_BAR, layout::BLK_BAR_SIZE, Box::new(device)).expect(fixed);
            }
        }
        let platform = Platform {
            pio,
            mmio,
            window,
            dma_faults: Vec::new(),
            raised: Vec::new(),
            wakes: BTreeSet::new(),
            asked: BTreeSet::new(),
        };
        Ok((platform, to_assign))
    }

    /// Runs `f` on the buses with what devices may reach at `now_ns`: DMA
    /// checked against the window, guest memory, and places to raise
    /// interrupts and ask for timers.
    pub fn with<V: Vm, R>(
        &mut self,
        vm: &V,
        now_ns: u64,
        f: impl FnOnce(&mut Bus, &mut Bus, &mut DeviceCtx<'_>) -> R,
    ) -> R {
        let mut dma = Checked { vm, window: self.window, source: BLK_SOURCE, faults: &mut self.dma_faults };
        let mut ctx = DeviceCtx::new(now_ns, &mut dma);
        ctx.memory = Some(vm.guest_memory());
        let r = f(&mut self.pio, &mut self.mmio, &mut ctx);
        self.raised.append(&mut ctx.interrupts);
        self.wakes.extend(ctx.wakes.iter().copied());
        r
    }

    /// Lets the devices do the timer work due by `now_ns`.
    pub fn tick<V: Vm>(&mut self, vm: &V, now_ns: u64) {
        self.asked.retain(|&t| t > now_ns);
        self.with(vm, now_ns, |pio, mmio, ctx| {
            pio.tick(ctx);
            mmio.tick(ctx);
        });
    }

    /// Delivers the interrupts raised (an emulated device's message k is
    /// the kernel's device vector + k) and asks the backend to wake the
    /// VMM for the device timers not yet asked for.
    pub fn flush<V: Vm>(&mut self, vm: &V, posting: Option<&Posting>, now_ns: u64) -> Result<(), VmmError> {
        for (message, at) in self.raised.drain(..) {
            let msi = Msi::fixed(0, layout::DEVICE_VECTOR.wrapping_add(message as u8));
            crate::interrupts::deliver(vm, posting, msi, (at > now_ns).then_some(at))?;
        }
        for t in std::mem::take(&mut self.wakes) {
            if self.asked.insert(t) {
                vm.wake_vmm_at(t)?;
            }
        }
        Ok(())
    }

    /// Every device's counters, and the DMA refused.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut all = self.pio.counters();
        all.extend(self.mmio.counters());
        all.push(("dma_faults".into(), self.dma_faults.len() as u64));
        all
    }
}

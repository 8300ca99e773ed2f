//! The exitlab machine's devices and what ties them to the guest: the port
//! and MMIO buses, the devices an image asks for (the block device, a
//! network card), the DMA window the VMM grants them, the interrupts they
//! raise and the timers they ask for. The run loop hands it each trapped
//! access and each timer that falls due; devices never see the backend.

use crate::assign::{Checked, DmaWindow, BLK_SOURCE};
use crate::bus::{Bus, Device, DeviceCtx};
use crate::devices::{
    BlockDevice, Coalescing, Doorbell, KickDoorbell, KickHandle, MmioScratch, Pic, PostPort, Serial, VirtioNet, E1000,
};
use crate::error::VmmError;
use crate::interrupts::Posting;
use crate::iothread::{IoThread, Notifier, Shared, SharedDevice, Work};
use exitlab_arch::iommu::Fault;
use exitlab_guest::machine::{MachineConfig, Nic};
use exitlab_guest::{layout, nic};
use exitlab_hv::{Msi, Vm};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// How devices reach a KVM guest without the vCPU thread: guest
/// notifications through ioeventfds and interrupts through irqfds (both on
/// by default; off, each notification exits to userspace and each
/// interrupt is an injection call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPath {
    pub ioeventfd: bool,
    pub irqfd: bool,
}

impl Default for FastPath {
    fn default() -> Self {
        FastPath { ioeventfd: true, irqfd: true }
    }
}

/// Interrupt messages devices use (virtio-net's three: receive, transmit,
/// configuration); message k is the kernel's device vector + k.
const MESSAGES: u8 = 3;

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
    /// On a backend in host time, the thread that runs devices' own work.
    thread: Option<IoThread>,
    /// The machine's kick doorbell, when the image asks for one.
    kicks: Option<KickHandle>,
    /// The VMM's own doorbell on KVM, whose kicks the device thread takes.
    batched: Option<KickHandle>,
}

/// Devices the VMM hands to the machine instead of its own buses.
#[derive(Default)]
pub struct ToAssign {
    pub blk: Option<BlockDevice>,
    pub doorbell: Option<KickDoorbell>,
}

impl Platform {
    /// The fixed devices, the network cards and the block device `machine`
    /// asks for. The block device is returned instead of plugged in when
    /// `assign` says the VMM will give it to the guest behind the IOMMU; a
    /// kick doorbell is returned likewise; without an IOMMU it is the VMM's
    /// own on the MMIO bus, which the device thread reads (the caller
    /// refuses a machine that asks for it where neither is possible). On a
    /// backend in host time the devices that keep time get a device thread.
    pub fn new<V: Vm>(
        vm: &mut V,
        machine: &MachineConfig,
        assign: bool,
        fast: FastPath,
    ) -> Result<(Platform, ToAssign), VmmError> {
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
        // Devices that keep their own time: on a host-time backend they are
        // shared with the device thread.
        let epoch = vm.host().map(|h| h.clock_epoch());
        let mut shared: Vec<SharedDevice> = Vec::new();
        let mut virtio = None;
        // Plugs a device in; returns its index among the shared ones.
        let mut plug = |mmio: &mut Bus, name: &'static str, base: u64, len: u64, device: Box<dyn Device>| {
            let (device, index): (Box<dyn Device>, _) = match epoch {
                Some(_) => {
                    let d: SharedDevice = Arc::new(Mutex::new(device));
                    shared.push(d.clone());
                    (Box::new(Shared(d)), Some(shared.len() - 1))
                }
                None => (device, None),
            };
            mmio.insert(name, base, len, device).expect(fixed);
            index
        };
        for nic in &machine.nics {
            match *nic {
                Nic::E1000 { wire_ns } => {
                    plug(&mut mmio, "e1000", nic::E1000_BAR, nic::E1000_BAR_SIZE, Box::new(E1000::new(wire_ns)));
                }
                Nic::VirtioNet { wire_ns, coalesce, .. } => {
                    let c = Coalescing { n: coalesce.frames, tau_ns: coalesce.delay_us.saturating_mul(1000) };
                    let card = Box::new(VirtioNet::new(wire_ns, c));
                    virtio = plug(&mut mmio, "virtio-net", nic::VIRTIO_NET_BAR, nic::VIRTIO_NET_BAR_SIZE, card);
                }
            }
        }
        // E5's doorbell: the machine's (assigned) where there is an IOMMU;
        // on a backend in host time with ioeventfds, the VMM's own: KVM
        // signals an eventfd per guest write and the device thread batches
        // them (n writes or tau) before telling virtio-net. (The caller
        // refuses a machine that asks for one where neither is possible.)
        let mut kicks = None;
        let mut batched = None;
        let mut bell = None;
        if let Some(Nic::VirtioNet { kick_doorbell: Some(k), .. }) = machine.virtio_net() {
            let n = u32::try_from(k.kicks.get()).unwrap_or(u32::MAX);
            let (doorbell, handle) = KickDoorbell::new(n, k.delay_us.saturating_mul(1000));
            if assign {
                bell = Some(doorbell);
                kicks = Some(handle);
            } else {
                let at =
                    plug(&mut mmio, "kick-doorbell", nic::KICK_DOORBELL, nic::KICK_DOORBELL_SIZE, Box::new(doorbell));
                batched = Some((handle, at));
            }
        }
        let mut window = DmaWindow { start: 0, len: vm.memory_size() };
        let mut to_assign = ToAssign::default();
        if let Some(block) = &machine.block {
            if let Some(dma) = block.dma {
                window = DmaWindow { start: dma.start, len: dma.len };
            }
            let device = BlockDevice::new(BLK_SECTORS, 1_000_000_000 / block.rate.get());
            if assign {
                to_assign.blk = Some(device);
            } else {
                plug(&mut mmio, BLK, layout::BLK_BAR, layout::BLK_BAR_SIZE, Box::new(device));
            }
        }
        to_assign.doorbell = bell;
        let thread = match (epoch, vm.host()) {
            (Some(epoch), Some(host)) if !shared.is_empty() => {
                let mut senders = Vec::new();
                for k in 0..MESSAGES {
                    senders.push(host.msi_sender(Msi::fixed(0, layout::DEVICE_VECTOR + k), fast.irqfd)?);
                }
                let mut notifiers = Vec::new();
                if let (Some(card), true) = (virtio, fast.ioeventfd) {
                    // Queue notifications go to the card, or to the VMM's
                    // doorbell, which counts every write.
                    let (at, device, offset) = match &batched {
                        Some((_, Some(bell))) => (nic::KICK_DOORBELL, *bell, 0),
                        _ => (nic::VIRTIO_NET_BAR + nic::virtio::QUEUE_NOTIFY, card, nic::virtio::QUEUE_NOTIFY),
                    };
                    for q in [nic::virtio::RXQ, nic::virtio::TXQ] {
                        let fd = host.notify_eventfd(at, u32::from(q))?;
                        let each = batched.is_some();
                        notifiers.push(Notifier { fd, device, offset, value: q.into(), each });
                    }
                }
                let memory = vm.guest_memory().clone();
                let kicks = batched.as_ref().and_then(|(h, _)| Some((h.clone(), virtio?)));
                let work = Work { devices: shared, notifiers, senders, memory, window, epoch, kicks };
                Some(IoThread::start(work)?)
            }
            _ => None,
        };
        let platform = Platform {
            pio,
            mmio,
            window,
            dma_faults: Vec::new(),
            raised: Vec::new(),
            wakes: BTreeSet::new(),
            asked: BTreeSet::new(),
            thread,
            kicks,
            batched: batched.map(|(h, _)| h),
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
        let memory = vm.guest_memory();
        let mut dma = Checked { memory, window: self.window, source: BLK_SOURCE, faults: &mut self.dma_faults };
        let mut ctx = DeviceCtx::new(now_ns, &mut dma);
        ctx.memory = Some(memory);
        let r = f(&mut self.pio, &mut self.mmio, &mut ctx);
        self.raised.append(&mut ctx.interrupts);
        self.wakes.extend(ctx.wakes.iter().copied());
        r
    }

    /// Lets the devices do the timer work due by `now_ns`, and takes the
    /// queue kicks the machine's doorbell gathered to virtio-net.
    pub fn tick<V: Vm>(&mut self, vm: &V, now_ns: u64) {
        self.asked.retain(|&t| t > now_ns);
        // The hypervisor learns of kicks when the doorbell tells it (n
        // writes or tau), not whenever another device's timer wakes it.
        let kicked = self.kicks.as_ref().map_or(0, |k| k.take_due(now_ns));
        self.with(vm, now_ns, |pio, mmio, ctx| {
            let notify = nic::VIRTIO_NET_BAR + nic::virtio::QUEUE_NOTIFY;
            if let Some(hit) = mmio.find(notify) {
                for q in (0..32u32).filter(|q| kicked & (1 << q) != 0) {
                    mmio.write(hit, &q.to_le_bytes(), ctx);
                }
            }
            pio.tick(ctx);
            mmio.tick(ctx);
        });
    }

    /// Delivers the interrupts raised (an emulated device's message k is
    /// the kernel's device vector + k) and asks the backend to wake the
    /// VMM for the device timers not yet asked for.
    pub fn flush<V: Vm>(&mut self, vm: &V, posting: Option<&Posting>, now_ns: u64) -> Result<(), VmmError> {
        for (message, at) in self.raised.drain(..) {
            if let (Some(t), true) = (&self.thread, at > now_ns) {
                t.interrupt_at(message, at);
                continue;
            }
            let msi = Msi::fixed(0, layout::DEVICE_VECTOR.wrapping_add(message as u8));
            crate::interrupts::deliver(vm, posting, msi, (at > now_ns).then_some(at))?;
        }
        if let Some(t) = &self.thread {
            for at in std::mem::take(&mut self.wakes) {
                t.wake_at(at);
            }
            return Ok(());
        }
        for t in std::mem::take(&mut self.wakes) {
            if self.asked.insert(t) {
                let clock = vm.virtual_clock().ok_or(VmmError::Missing { exit: None, extension: "a virtual clock" })?;
                clock.wake_vmm_at(t)?;
            }
        }
        Ok(())
    }

    /// Stops the device thread, if any, taking in the DMA it refused.
    pub fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            self.dma_faults.extend(t.stop());
        }
    }

    /// Every device's counters, and the DMA refused.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut all = self.pio.counters();
        all.extend(self.mmio.counters());
        if let Some(k) = &self.kicks {
            all.extend(k.counters().into_iter().map(|(n, v)| (format!("kick-doorbell.{n}"), v)));
        }
        if let Some(k) = &self.batched {
            all.extend(k.counters().into_iter().map(|(n, v)| (format!("kick-doorbell.{n}"), v)));
        }
        all.push(("dma_faults".into(), self.dma_faults.len() as u64));
        all
    }
}

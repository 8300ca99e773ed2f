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
use crate::pc::{Pc, Route};
use exitlab_arch::iommu::Fault;
use exitlab_guest::machine::{MachineConfig, Nic, Platform as MachinePlatform};
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

/// virtio-net's queue notifications as the device thread sees them: the
/// card's index among the shared devices, and the VMM's own kick doorbell
/// (its handle and index) when the machine batches kicks.
struct Queues {
    virtio: Option<usize>,
    batched: Option<(KickHandle, Option<usize>)>,
}

/// Starts the device thread on the shared `devices`: an MSI sender per
/// message (irqfds, or injection calls without them) and, for virtio-net
/// with ioeventfds, its queue notifications (to the card, or to the VMM's
/// doorbell, which counts every write).
fn start_thread<V: Vm>(
    vm: &mut V,
    devices: Vec<SharedDevice>,
    queues: Queues,
    window: DmaWindow,
    epoch: std::time::Instant,
    fast: FastPath,
) -> Result<IoThread, VmmError> {
    let memory = vm.guest_memory().clone();
    let host = vm.host().ok_or(VmmError::Missing { exit: None, extension: "a host kernel for devices" })?;
    let mut senders = Vec::new();
    for k in 0..MESSAGES {
        senders.push(host.msi_sender(device_msi(k.into()), fast.irqfd)?);
    }
    let Queues { virtio, batched } = queues;
    let mut notifiers = Vec::new();
    if let (Some(card), true) = (virtio, fast.ioeventfd) {
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
    let kicks = batched.and_then(|(h, _)| Some((h, virtio?)));
    let filter = host.device_thread_filter()?;
    IoThread::start(Work { devices, notifiers, senders, memory, window, epoch, kicks, filter })
}

pub const SERIAL: &str = "serial";
const BLK: &str = "blk";
/// The block device's disk: 1 MiB.
const BLK_SECTORS: u32 = 2048;

/// The MSI of an exitlab device's interrupt message `message`: the
/// kernel's device vector + message, to APIC 0.
pub fn device_msi(message: u16) -> Msi {
    Msi::fixed(0, layout::DEVICE_VECTOR.wrapping_add(message as u8))
}

pub struct Platform {
    pub pio: Bus,
    pub mmio: Bus,
    /// Guest-physical memory devices may reach by DMA.
    pub window: DmaWindow,
    /// DMA refused so far (by the IOMMU, or the VMM for its own devices).
    pub dma_faults: Vec<Fault>,
    /// The PC platform, when the machine is a PC.
    pub pc: Option<Pc>,
    /// Interrupts raised and not yet delivered: (message, when).
    raised: Vec<(u16, u64)>,
    /// The PIC pair's INT rose since the run loop last asked.
    extint: bool,
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

/// The devices that keep their own time: on a host-time backend (`on`)
/// they are shared with the device thread, which ticks them.
struct Sharing {
    on: bool,
    devices: Vec<SharedDevice>,
}

impl Sharing {
    /// `device` as the buses hold it, and its index among the shared ones.
    fn share(&mut self, device: Box<dyn Device>) -> (Box<dyn Device>, Option<usize>) {
        if !self.on {
            return (device, None);
        }
        let d: SharedDevice = Arc::new(Mutex::new(device));
        self.devices.push(d.clone());
        (Box::new(Shared(d)), Some(self.devices.len() - 1))
    }

    /// Plugs `device` into `mmio`; returns its index among the shared ones.
    fn plug(
        &mut self,
        mmio: &mut Bus,
        name: &'static str,
        base: u64,
        len: u64,
        device: Box<dyn Device>,
    ) -> Option<usize> {
        let (device, index) = self.share(device);
        mmio.insert(name, base, len, device).expect(FIXED);
        index
    }
}

const FIXED: &str = "device ranges are disjoint by construction";

impl Platform {
    /// The fixed devices, the PC's when the machine is a PC, the network
    /// cards and the block device `machine` asks for. The block device is
    /// returned instead of plugged in when `assign` says the VMM will give
    /// it to the guest behind the IOMMU; a kick doorbell is returned
    /// likewise; without an IOMMU it is the VMM's own on the MMIO bus,
    /// which the device thread reads (the caller refuses a machine that
    /// asks for it where neither is possible). On a backend in host time
    /// the devices that keep time get a device thread.
    pub fn new<V: Vm>(
        vm: &mut V,
        machine: &MachineConfig,
        assign: bool,
        fast: FastPath,
        console: Option<crate::console::ConsoleWatch>,
    ) -> Result<(Platform, ToAssign), VmmError> {
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        pio.insert("post", u64::from(layout::PORT_POST), 1, Box::<PostPort>::default()).expect(FIXED);
        pio.insert("doorbell", u64::from(layout::PORT_DOORBELL), 1, Box::<Doorbell>::default()).expect(FIXED);
        mmio.insert("mmio-scratch", layout::MMIO_BENCH, layout::MMIO_BENCH_SIZE, Box::<MmioScratch>::default())
            .expect(FIXED);
        let epoch = vm.host().map(|h| h.clock_epoch());
        let mut sharing = Sharing { on: epoch.is_some(), devices: Vec::new() };
        let pc = match machine.platform {
            MachinePlatform::Pc => Some(Pc::install(vm, &mut pio, &mut mmio, &mut |d| sharing.share(d).0)?),
            MachinePlatform::Exitlab => {
                pio.insert("pic-master", 0x20, 2, Box::<Pic>::default()).expect(FIXED);
                pio.insert("pic-slave", 0xa0, 2, Box::<Pic>::default()).expect(FIXED);
                None
            }
        };
        let com1_irq = pc.as_ref().map(|pc| pc.handles.com1_irq.clone());
        pio.insert(SERIAL, u64::from(layout::SERIAL_COM1), 8, Box::new(Serial::new(com1_irq, console))).expect(FIXED);
        let mut virtio = None;
        for nic in &machine.nics {
            match *nic {
                Nic::E1000 { wire_ns } => {
                    let card = Box::new(E1000::new(wire_ns));
                    sharing.plug(&mut mmio, "e1000", nic::E1000_BAR, nic::E1000_BAR_SIZE, card);
                }
                Nic::VirtioNet { wire_ns, coalesce, .. } => {
                    let c = Coalescing { n: coalesce.frames, tau_ns: coalesce.delay_us.saturating_mul(1000) };
                    let card = Box::new(VirtioNet::new(wire_ns, c));
                    virtio = sharing.plug(&mut mmio, "virtio-net", nic::VIRTIO_NET_BAR, nic::VIRTIO_NET_BAR_SIZE, card);
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
                let bell = Box::new(doorbell);
                let at = sharing.plug(&mut mmio, "kick-doorbell", nic::KICK_DOORBELL, nic::KICK_DOORBELL_SIZE, bell);
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
                sharing.plug(&mut mmio, BLK, layout::BLK_BAR, layout::BLK_BAR_SIZE, Box::new(device));
            }
        }
        to_assign.doorbell = bell;
        let thread = match (epoch, vm.host()) {
            (Some(epoch), Some(_)) if !sharing.devices.is_empty() => {
                let queues = Queues { virtio, batched: batched.as_ref().map(|(h, at)| (h.clone(), *at)) };
                Some(start_thread(vm, sharing.devices, queues, window, epoch, fast)?)
            }
            _ => None,
        };
        let platform = Platform {
            pio,
            mmio,
            window,
            dma_faults: Vec::new(),
            pc,
            raised: Vec::new(),
            extint: false,
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
    /// the kernel's device vector + k; the PC's IOAPIC entries are MSIs
    /// of their own, never posted, as an IOAPIC is not behind interrupt
    /// remapping; the PIC's INT is noted for [`Platform::take_extint`])
    /// and asks the backend to wake the VMM for the device timers not yet
    /// asked for.
    pub fn flush<V: Vm>(&mut self, vm: &V, posting: Option<&Posting>, now_ns: u64) -> Result<(), VmmError> {
        for (message, at) in std::mem::take(&mut self.raised) {
            if let (Some(t), true) = (&self.thread, at > now_ns) {
                t.interrupt_at(message, at);
                continue;
            }
            let later = (at > now_ns).then_some(at);
            match self.pc.as_ref().map(|pc| pc.route(message)) {
                None => crate::interrupts::deliver(vm, posting, device_msi(message), later)?,
                Some(Route::Msi(msi)) if message < crate::devices::ioapic::MESSAGE_BASE => {
                    crate::interrupts::deliver(vm, posting, msi, later)?
                }
                Some(Route::Msi(msi)) => crate::interrupts::deliver(vm, None, msi, later)?,
                Some(Route::ExtInt) => self.extint = true,
                Some(Route::Nowhere) => {}
            }
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

    /// A local APIC's EOI of `vector`, broadcast to the PC's IOAPIC.
    pub fn eoi<V: Vm>(&mut self, vm: &V, vector: u8, now_ns: u64) {
        let Some(pc) = self.pc.take() else { return };
        self.with(vm, now_ns, |_, _, ctx| pc.eoi(vector, ctx));
        self.pc = Some(pc);
    }

    /// Whether the PIC pair's INT rose since the last call.
    pub fn take_extint(&mut self) -> bool {
        std::mem::take(&mut self.extint)
    }

    /// Keeps an ExtINT the vCPU could not take yet (LINT0 masked) for the
    /// next exit.
    pub fn keep_extint(&mut self) {
        self.extint = true;
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

//! Device work off the vCPU thread, for a backend whose clock is the host's
//! (KVM). The simulator wakes the VMM at a device's deadline in guest time;
//! on KVM the guest runs while frames cross the wire, so a thread of the
//! VMM's own does what a device does on its own time: it ticks devices at
//! their deadlines (timerfd), takes guest notifications that KVM turns into
//! eventfd signals instead of exits (ioeventfd), and interrupts the guest
//! through irqfds (or, with those off, interrupt-injection calls). The
//! vCPU thread still handles every trapped register access; devices are
//! shared between the two behind a mutex ([`Shared`]).

use crate::assign::{Checked, DmaWindow, BLK_SOURCE};
use crate::bus::{Device, DeviceCtx};
use crate::devices::KickHandle;
use crate::error::VmmError;
use exitlab_arch::iommu::Fault;
use exitlab_hv::{Confine, MsiSender};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

/// A device both threads reach.
pub type SharedDevice = Arc<Mutex<Box<dyn Device>>>;

fn lock(d: &SharedDevice) -> MutexGuard<'_, Box<dyn Device>> {
    // A panic in a device model is a bug; its state is still its state.
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// The vCPU thread's side of a shared device, on the MMIO bus.
pub struct Shared(pub SharedDevice);

impl Device for Shared {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        lock(&self.0).read(offset, data, ctx)
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        lock(&self.0).write(offset, data, ctx)
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        lock(&self.0).tick(ctx)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        lock(&self.0).counters()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Something due at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Let every device do its timer work.
    Tick,
    /// Send interrupt message k.
    Interrupt(u16),
}

type Queue = Arc<Mutex<BinaryHeap<Reverse<(u64, Due)>>>>;

/// A guest notification KVM signals on an eventfd: what register write it
/// stands for, on which device. The eventfd adds up the guest's writes
/// until the thread reads it; `each` replays every one of them (a device
/// that counts writes, the kick doorbell), otherwise one write stands for
/// all (a queue notification: the batching eventfds give for free).
pub struct Notifier {
    pub fd: EventFd,
    pub device: usize,
    pub offset: u64,
    pub value: u32,
    pub each: bool,
}

/// The running thread, as the vCPU thread holds it.
pub struct IoThread {
    queue: Queue,
    poke: EventFd,
    stop: EventFd,
    handle: Option<JoinHandle<Vec<Fault>>>,
}

/// What the thread works with: the devices it serves, the notifications
/// it takes, how it sends interrupt message k (`senders[k]`), the memory
/// and DMA window devices reach, the moment times count from, and the
/// VMM's kick doorbell with the device its queue kicks go to (E5 on KVM:
/// at each tick the kicks it batched become that device's queue
/// notifications), and the system-call filter the thread applies to
/// itself before its loop (`HostVm::device_thread_filter`).
pub struct Work {
    pub devices: Vec<SharedDevice>,
    pub notifiers: Vec<Notifier>,
    pub senders: Vec<MsiSender>,
    pub memory: GuestMemoryMmap,
    pub window: DmaWindow,
    pub epoch: Instant,
    pub kicks: Option<(KickHandle, usize)>,
    pub filter: Option<Confine>,
}

/// What the thread owns.
struct Worker {
    work: Work,
    queue: Queue,
    faults: Vec<Fault>,
}

const STOP: u64 = u64::MAX;
const POKE: u64 = u64::MAX - 1;
const TIMER: u64 = u64::MAX - 2;

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> VmmError {
    move |source| VmmError::DeviceThread { what, source }
}

impl IoThread {
    /// Starts the thread on `work`; returns once it has applied its filter.
    pub fn start(mut work: Work) -> Result<IoThread, VmmError> {
        let queue: Queue = Arc::default();
        let poke = EventFd::new(EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        let epoll = Epoll::new().map_err(io_err("epoll"))?;
        let add = |fd: i32, token: u64| {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token)).map_err(io_err("epoll_ctl"))
        };
        add(stop.as_raw_fd(), STOP)?;
        add(poke.as_raw_fd(), POKE)?;
        let timer = TimerFd::new().map_err(|e| io_err("timerfd")(std::io::Error::from_raw_os_error(e.errno())))?;
        add(timer.as_raw_fd(), TIMER)?;
        for (i, n) in work.notifiers.iter().enumerate() {
            add(n.fd.as_raw_fd(), i as u64)?;
        }
        let filter = work.filter.take();
        let worker = Worker { work, queue: queue.clone(), faults: Vec::new() };
        let (poke2, stop2) =
            (poke.try_clone().map_err(io_err("eventfd"))?, stop.try_clone().map_err(io_err("eventfd"))?);
        let (confined, outcome) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("exitlab-io".into())
            .spawn(move || {
                let applied = filter.map_or(Ok(()), |f| f());
                let ok = applied.is_ok();
                let _ = confined.send(applied);
                if ok {
                    worker.run(epoll, timer, poke2, stop2)
                } else {
                    Vec::new()
                }
            })
            .map_err(io_err("spawn"))?;
        let thread = IoThread { queue, poke, stop, handle: Some(handle) };
        outcome.recv().map_err(|_| {
            VmmError::Backend(exitlab_hv::HvError::Backend("the device thread ended at its start".into()))
        })??;
        Ok(thread)
    }

    fn push(&self, at_ns: u64, due: Due) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(Reverse((at_ns, due)));
        // A full counter only means the thread has pokes to read already.
        let _ = self.poke.write(1);
    }

    /// Ticks the devices at `at_ns`.
    pub fn wake_at(&self, at_ns: u64) {
        self.push(at_ns, Due::Tick);
    }

    /// Sends interrupt message `message` at `at_ns`.
    pub fn interrupt_at(&self, message: u16, at_ns: u64) {
        self.push(at_ns, Due::Interrupt(message));
    }

    /// Stops the thread; returns the DMA it refused.
    pub fn stop(mut self) -> Vec<Fault> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Vec<Fault> {
        let _ = self.stop.write(1);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Worker {
    fn now(&self) -> u64 {
        self.work.epoch.elapsed().as_nanos() as u64
    }

    fn run(mut self, epoll: Epoll, mut timer: TimerFd, poke: EventFd, stop: EventFd) -> Vec<Fault> {
        let mut events = vec![EpollEvent::default(); 16];
        loop {
            let next = self.due();
            let armed = match next {
                Some(at) => timer.reset(Duration::from_nanos(at.saturating_sub(self.now()).max(1)), None),
                None => timer.clear(),
            };
            if armed.is_err() {
                return self.faults;
            }
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return self.faults,
            };
            for ev in &events[..n] {
                match ev.data() {
                    STOP => {
                        let _ = stop.read();
                        return self.faults;
                    }
                    POKE => {
                        let _ = poke.read();
                    }
                    TIMER => {
                        let _ = timer.wait();
                    }
                    i => self.notified(i as usize),
                }
            }
        }
    }

    /// Does what is due; returns when the next thing is.
    fn due(&mut self) -> Option<u64> {
        loop {
            let now = self.now();
            let next = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                match q.peek() {
                    Some(&Reverse((at, _))) if at > now => return Some(at),
                    Some(_) => q.pop().map(|Reverse(d)| d),
                    None => return None,
                }
            };
            match next {
                Some((_, Due::Interrupt(k))) => self.send(k),
                Some((_, Due::Tick)) => {
                    for i in 0..self.work.devices.len() {
                        self.with(i, now, |d, ctx| d.tick(ctx));
                    }
                    self.hand_kicks(now);
                }
                None => return None,
            }
        }
    }

    /// Gives the queue kicks the doorbell batched to their device, as
    /// writes of the queue index to its notification register.
    fn hand_kicks(&mut self, now: u64) {
        let Some((handle, device)) = &self.work.kicks else { return };
        let (kicked, device) = (handle.take_due(now), *device);
        for q in (0..32u32).filter(|q| kicked & (1 << q) != 0) {
            self.with(device, now, |d, ctx| d.write(exitlab_guest::nic::virtio::QUEUE_NOTIFY, &q.to_le_bytes(), ctx));
        }
    }

    fn notified(&mut self, i: usize) {
        let Some(n) = self.work.notifiers.get(i) else { return };
        let Ok(writes) = n.fd.read() else { return };
        let (device, offset, value) = (n.device, n.offset, n.value);
        let times = if n.each { writes } else { 1 };
        let now = self.now();
        self.with(device, now, |d, ctx| {
            for _ in 0..times {
                d.write(offset, &value.to_le_bytes(), ctx);
            }
        });
    }

    /// Runs `f` on device `i` with the thread's context, then sends or
    /// queues what it raised and queues the timers it asked for.
    fn with(&mut self, i: usize, now: u64, f: impl FnOnce(&mut Box<dyn Device>, &mut DeviceCtx<'_>)) {
        let Some(device) = self.work.devices.get(i).cloned() else { return };
        let mut dma = Checked {
            memory: &self.work.memory,
            window: self.work.window,
            source: BLK_SOURCE,
            faults: &mut self.faults,
        };
        let mut ctx = DeviceCtx::new(now, &mut dma);
        ctx.memory = Some(&self.work.memory);
        f(&mut lock(&device), &mut ctx);
        let (raised, wakes) = (std::mem::take(&mut ctx.interrupts), std::mem::take(&mut ctx.wakes));
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for (k, at) in raised {
            if at <= now {
                drop(q);
                self.send(k);
                q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            } else {
                q.push(Reverse((at, Due::Interrupt(k))));
            }
        }
        q.extend(wakes.into_iter().map(|at| Reverse((at, Due::Tick))));
    }

    fn send(&self, message: u16) {
        if let Some(s) = self.work.senders.get(usize::from(message)) {
            // A failed injection has nowhere to go but the guest's wait.
            let _ = s();
        }
    }
}

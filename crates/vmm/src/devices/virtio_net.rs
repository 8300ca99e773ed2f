//! virtio-net over virtio-mmio (virtio 1.2 §4.2, version-2 registers;
//! layouts in [`exitlab_guest::nic::virtio`]): feature negotiation
//! (VERSION_1, NET_F_MAC, RING_EVENT_IDX), a receive and a transmit split
//! virtqueue walked with the virtio-queue crate, notification suppression
//! both ways (event indices), one interrupt message per queue (receive 0,
//! transmit 1, configuration change 2), and interrupt coalescing: one
//! interrupt after `n` completions or `tau` after the first unsignalled
//! one, whichever comes first.
//!
//! A driver that breaks the rules (a ring size that is not a power of
//! two, descriptors outside memory, loops, indices out of range) puts the
//! device in DEVICE_NEEDS_RESET with a configuration interrupt; it does
//! nothing more until the driver resets it.

use super::wire::Wire;
use crate::bus::{Device, DeviceCtx};
use exitlab_guest::nic::{virtio::*, GUEST_MAC};
use std::io::{Read, Write};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

/// Interrupt coalescing: `n` completions (0 or 1: every one) or `tau_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coalescing {
    pub n: u32,
    pub tau_ns: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetStats {
    /// Driver-to-device notifications (QueueNotify writes).
    pub kicks: u64,
    /// Device-to-driver interrupts (used-buffer and configuration).
    pub interrupts: u64,
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Received frames longer than the buffers the driver gave.
    pub rx_dropped: u64,
    /// Times the device had to ask for a reset.
    pub needs_reset: u64,
    pub bad_registers: u64,
}

const FEATURES: u64 = 1 << F_NET_MAC | 1 << F_RING_EVENT_IDX | 1 << F_VERSION_1;
/// Message numbers: one per queue, then configuration change.
const CONFIG_MESSAGE: u16 = 2;
/// The largest frame a transmit chain may carry (no GSO negotiated).
const MAX_FRAME: usize = 65_550;

/// Completions not yet signalled on one queue.
#[derive(Clone, Copy, Default)]
struct Unsignalled {
    count: u32,
    since_ns: Option<u64>,
}

pub struct VirtioNet {
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; 2],
    unsignalled: [Unsignalled; 2],
    interrupt_status: u32,
    config_generation: u32,
    coalescing: Coalescing,
    wire: Wire,
    stats: VirtioNetStats,
}

/// Something the driver did wrong: the device needs a reset.
struct Broken;

impl<E> From<E> for Broken
where
    E: std::error::Error,
{
    fn from(_: E) -> Broken {
        Broken
    }
}

/// A chain the device will use: every buffer in guest memory, and the
/// chain ends by itself (not cut off by a loop, or by a next index past
/// the ring).
fn well_formed(chain: &DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> bool {
    let mut last = None;
    for d in chain.clone() {
        if !mem.check_range(d.addr(), d.len() as usize) {
            return false;
        }
        last = Some(d);
    }
    last.is_some_and(|d| !d.has_next())
}

fn queue() -> Queue {
    Queue::new(QUEUE_MAX).expect("QUEUE_MAX is a power of two")
}

impl VirtioNet {
    pub fn new(wire_delay_ns: u64, coalescing: Coalescing) -> VirtioNet {
        VirtioNet {
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [queue(), queue()],
            unsignalled: [Unsignalled::default(); 2],
            interrupt_status: 0,
            config_generation: 0,
            coalescing,
            wire: Wire::new(wire_delay_ns),
            stats: VirtioNetStats::default(),
        }
    }

    pub fn stats(&self) -> VirtioNetStats {
        self.stats
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    fn reset(&mut self) {
        let (wire, stats, coalescing) = (std::mem::take(&mut self.wire), self.stats, self.coalescing);
        *self = VirtioNet { wire, stats, ..VirtioNet::new(0, coalescing) };
    }

    fn running(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && self.status & S_NEEDS_RESET == 0
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// The driver broke the rules: stop and ask for a reset.
    fn break_down(&mut self, ctx: &mut DeviceCtx<'_>) {
        if self.status & S_NEEDS_RESET != 0 {
            return;
        }
        self.status |= S_NEEDS_RESET;
        self.stats.needs_reset += 1;
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt_status |= 2;
        self.stats.interrupts += 1;
        ctx.interrupt(CONFIG_MESSAGE, ctx.now_ns);
    }

    /// Sends every frame the driver has made available on the transmit
    /// queue, with notifications off while doing so.
    fn transmit(&mut self, mem: &GuestMemoryMmap, ctx: &mut DeviceCtx<'_>) -> Result<(), Broken> {
        let q = &mut self.queues[TXQ as usize];
        loop {
            q.disable_notification(mem)?;
            while let Some(chain) = q.iter(mem)?.next() {
                if !well_formed(&chain, mem) {
                    return Err(Broken);
                }
                let head = chain.head_index();
                let mut frame = Vec::new();
                chain.reader(mem)?.take(MAX_FRAME as u64 + NET_HDR).read_to_end(&mut frame)?;
                if frame.len() as u64 <= NET_HDR {
                    return Err(Broken);
                }
                // The echo's arrival: `receive` asks for the tick.
                self.wire.send(ctx.now_ns, &frame[NET_HDR as usize..]);
                self.stats.tx_frames += 1;
                q.add_used(mem, head, 0)?;
                Self::completed(&mut self.unsignalled[TXQ as usize], self.coalescing, ctx);
            }
            if !q.enable_notification(mem)? {
                return Ok(());
            }
        }
    }

    /// Puts frames that have arrived into the driver's receive buffers; a
    /// frame with no buffer waits on the wire.
    fn receive(&mut self, mem: &GuestMemoryMmap, ctx: &mut DeviceCtx<'_>) -> Result<(), Broken> {
        let q = &mut self.queues[RXQ as usize];
        while let Some(frame) = self.wire.arrived(ctx.now_ns) {
            let Some(chain) = q.iter(mem)?.next() else {
                // Out of buffers: ask for a notification when there are
                // more, and keep the frame.
                self.wire.hold(ctx.now_ns, frame);
                q.enable_notification(mem)?;
                return Ok(());
            };
            if !well_formed(&chain, mem) {
                return Err(Broken);
            }
            let head = chain.head_index();
            let mut w = chain.writer(mem)?;
            let mut written = 0;
            if w.available_bytes() >= NET_HDR as usize + frame.len() {
                let mut hdr = [0u8; NET_HDR as usize];
                hdr[10] = 1; // num_buffers
                w.write_all(&hdr)?;
                w.write_all(&frame)?;
                written = w.bytes_written() as u32;
                self.stats.rx_frames += 1;
            } else {
                self.stats.rx_dropped += 1;
            }
            q.add_used(mem, head, written)?;
            Self::completed(&mut self.unsignalled[RXQ as usize], self.coalescing, ctx);
        }
        if let Some(t) = self.wire.next_arrival() {
            ctx.wake_at(t);
        }
        Ok(())
    }

    /// Counts a completion; asks for a tick when coalescing's time runs.
    fn completed(u: &mut Unsignalled, c: Coalescing, ctx: &mut DeviceCtx<'_>) {
        u.count += 1;
        if u.since_ns.is_none() {
            u.since_ns = Some(ctx.now_ns);
            if c.n > 1 {
                ctx.wake_at(ctx.now_ns + c.tau_ns);
            }
        }
    }

    /// Signals each queue whose completions are due: all of them without
    /// coalescing, else `n` of them or `tau` after the first; the driver's
    /// event index may still say no interrupt is wanted.
    fn signal(&mut self, mem: &GuestMemoryMmap, ctx: &mut DeviceCtx<'_>) -> Result<(), Broken> {
        let c = self.coalescing;
        for q in [RXQ, TXQ] {
            let u = self.unsignalled[q as usize];
            let due =
                u.count > 0 && (c.n <= 1 || u.count >= c.n || u.since_ns.is_some_and(|t| ctx.now_ns >= t + c.tau_ns));
            if !due {
                continue;
            }
            self.unsignalled[q as usize] = Unsignalled::default();
            if self.queues[q as usize].needs_notification(mem)? {
                self.interrupt_status |= 1;
                self.stats.interrupts += 1;
                ctx.interrupt(q, ctx.now_ns);
            }
        }
        Ok(())
    }

    /// Runs the queues: what a notification or a timer starts.
    fn service(&mut self, kick: Option<u32>, ctx: &mut DeviceCtx<'_>) {
        if !self.running() {
            return;
        }
        let Some(mem) = ctx.memory else { return };
        let result = (|| {
            if kick == Some(u32::from(TXQ)) {
                self.transmit(mem, ctx)?;
            }
            self.receive(mem, ctx)?;
            self.signal(mem, ctx)
        })();
        if result.is_err() {
            self.break_down(ctx);
        }
    }

    fn set_status(&mut self, v: u32, ctx: &mut DeviceCtx<'_>) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        if v & S_FEATURES_OK != 0 && self.status & S_FEATURES_OK == 0 {
            let ok = self.driver_features & !FEATURES == 0 && self.driver_features & 1 << F_VERSION_1 != 0;
            if !ok {
                v &= !S_FEATURES_OK;
            }
            let event_idx = self.driver_features & 1 << F_RING_EVENT_IDX != 0;
            for q in &mut self.queues {
                q.set_event_idx(event_idx);
            }
        }
        self.status = v | self.status & S_NEEDS_RESET;
        if v & S_DRIVER_OK != 0 {
            let Some(mem) = ctx.memory else { return self.break_down(ctx) };
            if self.queues.iter().any(|q| q.ready() && !q.is_valid(mem)) {
                self.break_down(ctx);
            }
        }
    }

    fn config(&self, offset: u64) -> u8 {
        let mut space = [0u8; 8];
        space[..6].copy_from_slice(&GUEST_MAC);
        space[6] = 1; // VIRTIO_NET_S_LINK_UP
        space.get(offset as usize).copied().unwrap_or(0)
    }

    fn register(&mut self, offset: u64) -> Option<u32> {
        let sel = self.queue_sel as usize;
        let q = self.queues.get(sel);
        Some(match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => 2,
            DEVICE_ID => DEVICE_NET,
            VENDOR_ID => u32::from_le_bytes(*b"XLAB"),
            DEVICE_FEATURES => match self.device_features_sel {
                0 => FEATURES as u32,
                1 => (FEATURES >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(QUEUE_MAX)),
            QUEUE_READY => q.map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            CONFIG_GENERATION => self.config_generation,
            _ => return None,
        })
    }
}

impl Device for VirtioNet {
    fn read(&mut self, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        if offset >= CONFIG {
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.config(offset - CONFIG + i as u64);
            }
            return;
        }
        match (data.len(), self.register(offset)) {
            (4, Some(v)) => data.copy_from_slice(&v.to_le_bytes()),
            _ => {
                self.stats.bad_registers += 1;
                data.fill(0);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.stats.bad_registers += 1;
            return;
        };
        let v = u32::from_le_bytes(bytes);
        let configuring = self.status & S_DRIVER_OK == 0;
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = v,
            DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            DRIVER_FEATURES if self.status & S_FEATURES_OK == 0 => match self.driver_features_sel {
                0 => self.driver_features = self.driver_features & !0xffff_ffff | u64::from(v),
                1 => self.driver_features = self.driver_features & 0xffff_ffff | u64::from(v) << 32,
                _ => {}
            },
            QUEUE_SEL => self.queue_sel = v,
            QUEUE_NUM if configuring => {
                let size = u16::try_from(v).unwrap_or(0);
                if let Some(q) = self.selected() {
                    if q.try_set_size(size).is_err() {
                        self.break_down(ctx);
                    }
                }
            }
            QUEUE_READY if configuring => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1);
                }
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW
            | QUEUE_DEVICE_HIGH
                if configuring =>
            {
                let Some(q) = self.selected() else { return };
                let (lo, hi) = if offset.is_multiple_of(8) { (Some(v), None) } else { (None, Some(v)) };
                match offset & !7 {
                    QUEUE_DESC_LOW => q.set_desc_table_address(lo, hi),
                    QUEUE_DRIVER_LOW => q.set_avail_ring_address(lo, hi),
                    _ => q.set_used_ring_address(lo, hi),
                }
            }
            QUEUE_NOTIFY => {
                self.stats.kicks += 1;
                self.service(Some(v & 0xffff), ctx);
            }
            INTERRUPT_ACK => self.interrupt_status &= !v,
            STATUS => self.set_status(v, ctx),
            _ => self.stats.bad_registers += 1,
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.service(None, ctx);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("kicks", s.kicks),
            ("interrupts", s.interrupts),
            ("tx_frames", s.tx_frames),
            ("rx_frames", s.rx_frames),
            ("rx_dropped", s.rx_dropped),
            ("needs_reset", s.needs_reset),
            ("bad_registers", s.bad_registers),
        ]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::TestMemory;

    const SIZE: u16 = 8;
    /// Per queue: descriptors, driver area, device area.
    const AREAS: [[u64; 3]; 2] = [[0x1000, 0x2000, 0x3000], [0x5000, 0x6000, 0x7000]];
    const RX_BUF: u64 = 0x10000;
    const TX_BUF: u64 = 0x20000;

    fn set(m: &TestMemory, dev: &mut VirtioNet, reg: u64, v: u32) -> Vec<(u16, u64)> {
        m.write_reg(dev, 0, reg, v).interrupts
    }

    /// Negotiates `features` and sets both queues up; true if FEATURES_OK
    /// stuck.
    fn init(m: &TestMemory, dev: &mut VirtioNet, features: u64) -> bool {
        set(m, dev, STATUS, S_ACKNOWLEDGE | S_DRIVER);
        for sel in 0..2 {
            set(m, dev, DRIVER_FEATURES_SEL, sel);
            set(m, dev, DRIVER_FEATURES, (features >> (32 * sel)) as u32);
        }
        set(m, dev, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        if m.read_reg(dev, 0, STATUS) & S_FEATURES_OK == 0 {
            return false;
        }
        for (q, areas) in AREAS.iter().enumerate() {
            set(m, dev, QUEUE_SEL, q as u32);
            set(m, dev, QUEUE_NUM, u32::from(SIZE));
            for (reg, addr) in [QUEUE_DESC_LOW, QUEUE_DRIVER_LOW, QUEUE_DEVICE_LOW].into_iter().zip(areas) {
                set(m, dev, reg, *addr as u32);
            }
            set(m, dev, QUEUE_READY, 1);
        }
        set(m, dev, STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        true
    }

    fn desc(m: &TestMemory, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        m.put(AREAS[q][0] + u64::from(i) * DESC, &d);
    }

    /// Makes `head` available as the driver's `idx`-th entry.
    fn offer(m: &TestMemory, q: usize, idx: u16, head: u16) {
        m.put(AREAS[q][1] + AVAIL_RING + u64::from(idx % SIZE) * 2, &head.to_le_bytes());
        m.put(AREAS[q][1] + AVAIL_IDX, &(idx + 1).to_le_bytes());
    }

    fn used_idx(m: &TestMemory, q: usize) -> u16 {
        u16::from_le_bytes(m.get(AREAS[q][2] + USED_IDX, 2).try_into().unwrap())
    }

    fn all_features() -> u64 {
        FEATURES
    }

    /// A device with receive buffers 0..SIZE offered, and a frame of
    /// `len` bytes (after the net header) in transmit descriptor `slot`.
    fn ready(m: &TestMemory, coalescing: Coalescing) -> VirtioNet {
        let mut dev = VirtioNet::new(1_000, coalescing);
        assert!(init(m, &mut dev, all_features()));
        for i in 0..SIZE {
            desc(m, RXQ as usize, i, RX_BUF + u64::from(i) * 2048, 2048, DESC_F_WRITE, 0);
            offer(m, RXQ as usize, i, i);
        }
        dev
    }

    fn transmit(m: &TestMemory, dev: &mut VirtioNet, now: u64, idx: u16, frame: &[u8]) -> Vec<u64> {
        let slot = idx % SIZE;
        let buf = TX_BUF + u64::from(slot) * 2048;
        m.put(buf + NET_HDR, frame);
        desc(m, TXQ as usize, slot, buf, NET_HDR as u32 + frame.len() as u32, 0, 0);
        offer(m, TXQ as usize, idx, slot);
        m.write_reg(dev, now, QUEUE_NOTIFY, u32::from(TXQ)).wakes
    }

    #[test]
    fn features_need_version_1_and_stay_within_the_offer() {
        let m = TestMemory::new(1 << 20);
        assert!(!init(&m, &mut VirtioNet::new(0, Coalescing::default()), 1 << F_NET_MAC));
        assert!(!init(&m, &mut VirtioNet::new(0, Coalescing::default()), all_features() | 1 << 6));
        let mut dev = VirtioNet::new(0, Coalescing::default());
        assert!(init(&m, &mut dev, 1 << F_VERSION_1));
        assert_eq!(m.read_reg(&mut dev, 0, MAGIC), MAGIC_VALUE);
        assert_eq!(m.read_reg(&mut dev, 0, VERSION), 2);
        assert_eq!(m.read_reg(&mut dev, 0, DEVICE_ID), DEVICE_NET);
        let mac: Vec<u8> = (0..6).map(|i| m.read_reg(&mut dev, 0, CONFIG + i) as u8).collect();
        assert_eq!(mac, GUEST_MAC);
    }

    #[test]
    fn frames_go_out_and_echoes_come_back_with_one_interrupt_each() {
        let m = TestMemory::new(1 << 20);
        let mut dev = ready(&m, Coalescing::default());
        // The driver wants no transmit interrupts (used_event far away).
        m.put(AREAS[1][1] + AVAIL_RING + 2 * u64::from(SIZE), &0x8000u16.to_le_bytes());
        let frame: Vec<u8> = (0..60).collect();
        let fx = m.write_reg(&mut dev, 0, QUEUE_SEL, 0);
        assert!(fx.interrupts.is_empty());
        assert_eq!(transmit(&m, &mut dev, 100, 0, &frame), vec![2_100]);
        assert_eq!(used_idx(&m, TXQ as usize), 1, "transmit buffer returned");
        let avail_event = m.get(AREAS[1][2] + USED_RING + 8 * u64::from(SIZE), 2);
        assert_eq!(avail_event, [1, 0], "device asks for a notification at the next index");
        let fx = m.tick(&mut dev, 2_100);
        assert_eq!(fx.interrupts, vec![(RXQ, 2_100)], "receive interrupt; transmit suppressed");
        assert_eq!(used_idx(&m, RXQ as usize), 1);
        let used = m.get(AREAS[0][2] + USED_RING, 8);
        assert_eq!(u32::from_le_bytes(used[4..].try_into().unwrap()), NET_HDR as u32 + 60);
        let echo = m.get(RX_BUF + NET_HDR, 60);
        assert_eq!((&echo[..6], &echo[6..12]), (&frame[6..12], &frame[..6]));
        assert_eq!(m.get(RX_BUF + 10, 2), [1, 0], "num_buffers");
        let s = dev.stats();
        assert_eq!((s.kicks, s.tx_frames, s.rx_frames, s.interrupts), (1, 1, 1, 1));
    }

    #[test]
    fn coalescing_waits_for_n_completions_or_tau() {
        let m = TestMemory::new(1 << 20);
        let mut dev = ready(&m, Coalescing { n: 4, tau_ns: 50_000 });
        for i in 0..6u16 {
            transmit(&m, &mut dev, u64::from(i) * 10, i, &[i as u8; 60]);
        }
        let mut irqs = Vec::new();
        for t in (2_000..2_060).step_by(10) {
            irqs.extend(m.tick(&mut dev, t).interrupts);
        }
        assert_eq!(irqs, vec![(RXQ, 2_030)], "the fourth echo interrupts");
        // The driver took those four: it wants an interrupt for the next.
        m.put(AREAS[0][1] + AVAIL_RING + 2 * u64::from(SIZE), &4u16.to_le_bytes());
        assert!(m.tick(&mut dev, 52_039).interrupts.is_empty());
        assert_eq!(m.tick(&mut dev, 52_040).interrupts, vec![(RXQ, 52_040)], "the rest after tau");
        assert_eq!(dev.stats().rx_frames, 6);
    }

    #[test]
    fn broken_drivers_get_needs_reset_not_a_crash() {
        let m = TestMemory::new(1 << 20);
        // A ring size that is not a power of two.
        let mut dev = VirtioNet::new(0, Coalescing::default());
        set(&m, &mut dev, QUEUE_SEL, 0);
        assert_eq!(set(&m, &mut dev, QUEUE_NUM, 3), vec![(CONFIG_MESSAGE, 0)]);
        assert_ne!(dev.status() & S_NEEDS_RESET, 0);
        set(&m, &mut dev, STATUS, 0);
        assert_eq!(dev.status(), 0, "a reset clears it");
        // A transmit descriptor outside memory, a loop, a next index past
        // the ring, an avail index running ahead of the ring.
        type Breaker = fn(&TestMemory);
        let cases: [(&str, Breaker); 4] = [
            ("outside memory", |m| desc(m, 1, 0, 1 << 40, 100, 0, 0)),
            ("loop", |m| desc(m, 1, 0, TX_BUF, 100, 1, 0)),
            ("next past the ring", |m| desc(m, 1, 0, TX_BUF, 100, 1, SIZE + 3)),
            ("avail index ahead", |m| m.put(AREAS[1][1] + AVAIL_IDX, &(SIZE + 5).to_le_bytes())),
        ];
        for (what, breaker) in cases {
            let m = TestMemory::new(1 << 20);
            let mut dev = ready(&m, Coalescing::default());
            desc(&m, 1, 0, TX_BUF, 100, 0, 0);
            offer(&m, 1, 0, 0);
            breaker(&m);
            let fx = m.write_reg(&mut dev, 0, QUEUE_NOTIFY, u32::from(TXQ));
            assert_eq!(fx.interrupts, vec![(CONFIG_MESSAGE, 0)], "{what}");
            assert_ne!(dev.status() & S_NEEDS_RESET, 0, "{what}");
            assert_eq!(dev.stats().tx_frames, 0, "{what}");
            let again = m.write_reg(&mut dev, 0, QUEUE_NOTIFY, u32::from(TXQ));
            assert!(again.interrupts.is_empty(), "{what}: stopped until reset");
        }
    }
}

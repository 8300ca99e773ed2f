//! The exitlab block device (its interface: [`exitlab_guest::layout::blk`]):
//! a disk behind a request ring in guest memory. The device reads each
//! request and moves its data by DMA when the doorbell (TAIL) is written,
//! then completes requests one after another, each taking the device's
//! service time, with an interrupt per completion: a fixed completion
//! rate while the driver keeps the ring full.
//!
//! Data moves at submission; the completion (HEAD and the interrupt) comes
//! at the service time. A driver cannot tell the difference: it may look at
//! a request only after its completion, as with any DMA device.

use crate::bus::{Device, DeviceCtx};
use exitlab_guest::layout::blk::*;
use std::collections::VecDeque;

/// What the device did, for inspection after a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    pub requests: u64,
    pub sectors: u64,
    /// Requests whose DMA was refused (by the IOMMU or the VMM).
    pub dma_faults: u64,
    /// Requests with a bad op, size or disk range.
    pub bad_requests: u64,
    /// Accesses to registers that do not exist, or of the wrong size.
    pub bad_registers: u64,
}

pub struct BlockDevice {
    disk: Vec<u8>,
    service_ns: u64,
    ring: u64,
    ring_size: u32,
    /// Requests taken from the ring (free-running, like TAIL).
    taken: u32,
    head: u32,
    status: u32,
    /// When the last accepted request completes.
    busy_until: u64,
    /// Completion times of requests taken but not yet complete, in order.
    in_flight: VecDeque<u64>,
    stats: BlkStats,
}

/// The byte at `offset` of a fresh disk: a pattern a driver can check.
pub fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(0x9e37_79b9) >> 24) as u8 ^ (offset / SECTOR) as u8
}

impl BlockDevice {
    /// A disk of `sectors` sectors completing one request every
    /// `service_ns`.
    pub fn new(sectors: u32, service_ns: u64) -> BlockDevice {
        BlockDevice {
            disk: (0..u64::from(sectors) * SECTOR).map(pattern).collect(),
            service_ns,
            ring: 0,
            ring_size: 0,
            taken: 0,
            head: 0,
            status: 0,
            busy_until: 0,
            in_flight: VecDeque::new(),
            stats: BlkStats::default(),
        }
    }

    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    fn capacity(&self) -> u64 {
        self.disk.len() as u64 / SECTOR
    }

    /// Takes every request between what was taken and `tail`.
    fn doorbell(&mut self, tail: u32, ctx: &mut DeviceCtx<'_>) {
        if self.ring_size == 0 {
            self.stats.bad_registers += 1;
            return;
        }
        // A driver that claims more than a ring's worth overran it: take
        // one ring's worth.
        let count = tail.wrapping_sub(self.taken).min(self.ring_size);
        for _ in 0..count {
            let at = self.ring + u64::from(self.taken % self.ring_size) * REQUEST;
            self.taken = self.taken.wrapping_add(1);
            self.stats.requests += 1;
            // The status byte goes back by DMA; where the request itself
            // cannot be reached, STATUS.ERROR is all the driver gets.
            let status = self.serve(at, ctx);
            let reported = status.is_some_and(|st| ctx.dma.write(at + REQ_STATUS, &[st]).is_ok());
            if status != Some(ST_OK) || !reported {
                self.status |= STATUS_ERROR;
            }
            let done = ctx.now_ns.max(self.busy_until) + self.service_ns;
            // Unreachable requests were counted above; nothing to stamp.
            let _ = ctx.dma.write(at + REQ_DONE_NS, &done.to_le_bytes());
            self.busy_until = done;
            self.in_flight.push_back(done);
            ctx.interrupt(0, done);
        }
    }

    /// Reads the request at `at` and moves its data; returns its status,
    /// or `None` when the request itself could not be read.
    fn serve(&mut self, at: u64, ctx: &mut DeviceCtx<'_>) -> Option<u8> {
        let mut req = [0u8; REQUEST as usize];
        if ctx.dma.read(at, &mut req).is_err() {
            self.stats.dma_faults += 1;
            return None;
        }
        let field = |o: u64, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&req[o as usize..o as usize + n]);
            u64::from_le_bytes(b)
        };
        let (op, sectors, lba, buf) =
            (req[REQ_OP as usize], field(REQ_SECTORS, 4), field(REQ_LBA, 8), field(REQ_BUF, 8));
        let in_disk = lba.checked_add(sectors).is_some_and(|end| end <= self.capacity());
        if !(1..=u64::from(MAX_SECTORS)).contains(&sectors) || !in_disk || !matches!(op, OP_READ | OP_WRITE) {
            self.stats.bad_requests += 1;
            return Some(ST_BAD_REQUEST);
        }
        let range = (lba * SECTOR) as usize..((lba + sectors) * SECTOR) as usize;
        let moved = if op == OP_READ {
            ctx.dma.write(buf, &self.disk[range])
        } else {
            ctx.dma.read(buf, &mut self.disk[range])
        };
        if moved.is_err() {
            self.stats.dma_faults += 1;
            return Some(ST_DMA_FAULT);
        }
        self.stats.sectors += sectors;
        Some(ST_OK)
    }

    /// Completes what is due by `now`.
    fn advance(&mut self, now_ns: u64) {
        while self.in_flight.front().is_some_and(|&t| t <= now_ns) {
            self.in_flight.pop_front();
            self.head = self.head.wrapping_add(1);
        }
    }
}

impl Device for BlockDevice {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        self.advance(ctx.now_ns);
        let v = match (offset, data.len()) {
            (ID, 4) => ID_VALUE,
            (STATUS, 4) => self.status,
            (RING_LO, 4) => self.ring as u32,
            (RING_HI, 4) => (self.ring >> 32) as u32,
            (RING_SIZE, 4) => self.ring_size,
            (TAIL, 4) => self.taken,
            (HEAD, 4) => self.head,
            (CAPACITY, 4) => self.capacity() as u32,
            _ => {
                self.stats.bad_registers += 1;
                data.fill(0xff);
                return;
            }
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        self.advance(ctx.now_ns);
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.stats.bad_registers += 1;
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            STATUS => self.status &= !v,
            RING_LO => self.ring = self.ring & !0xffff_ffff | u64::from(v),
            RING_HI => self.ring = self.ring & 0xffff_ffff | u64::from(v) << 32,
            RING_SIZE if v.is_power_of_two() && v <= MAX_RING => {
                self.ring_size = v;
                self.taken = 0;
                self.head = 0;
                self.in_flight.clear();
            }
            TAIL => self.doorbell(v, ctx),
            _ => self.stats.bad_registers += 1,
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("requests", s.requests),
            ("sectors", s.sectors),
            ("dma_faults", s.dma_faults),
            ("bad_requests", s.bad_requests),
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

    fn request(m: &TestMemory, at: u64, op: u8, sectors: u32, lba: u64, buf: u64) {
        let mut r = [0u8; REQUEST as usize];
        r[0] = op;
        r[1] = 0xee;
        r[4..8].copy_from_slice(&sectors.to_le_bytes());
        r[8..16].copy_from_slice(&lba.to_le_bytes());
        r[16..24].copy_from_slice(&buf.to_le_bytes());
        m.put(at, &r);
    }

    fn byte(m: &TestMemory, at: u64) -> u8 {
        m.get(at, 1)[0]
    }

    #[test]
    fn reads_and_writes_by_dma_and_completes_at_the_service_rate() {
        let m = TestMemory::new(0x10000);
        let mut dev = BlockDevice::new(16, 10_000);
        assert_eq!(m.read_reg(&mut dev, 0, ID), ID_VALUE);
        m.write_reg(&mut dev, 0, RING_LO, 0x1000);
        m.write_reg(&mut dev, 0, RING_SIZE, 4);
        request(&m, 0x1000, OP_READ, 2, 3, 0x4000);
        m.put(0x5000, &[0x5a; 512]);
        request(&m, 0x1020, OP_WRITE, 1, 0, 0x5000);
        let irqs = m.write_reg(&mut dev, 100, TAIL, 2).interrupts;
        assert_eq!(irqs, vec![(0, 10_100), (0, 20_100)], "one interrupt per request, a service time apart");
        assert_eq!(m.get(0x4000, 0x400), &dev.disk()[3 * 512..5 * 512]);
        assert_eq!(byte(&m, 0x4000), pattern(3 * 512));
        assert_eq!(&dev.disk()[..512], &[0x5a; 512][..]);
        assert_eq!((byte(&m, 0x1001), byte(&m, 0x1021)), (ST_OK, ST_OK));
        assert_eq!(m.read_reg(&mut dev, 10_099, HEAD), 0);
        assert_eq!(m.read_reg(&mut dev, 10_100, HEAD), 1);
        assert_eq!(m.read_reg(&mut dev, 30_000, HEAD), 2);
        assert_eq!(dev.stats(), BlkStats { requests: 2, sectors: 3, ..Default::default() });
    }

    #[test]
    fn refused_dma_and_bad_requests_fail_the_request_not_the_device() {
        let mut m = TestMemory::new(0x10000);
        m.forbidden = 0x8000..0x9000;
        let mut dev = BlockDevice::new(16, 1_000);
        m.write_reg(&mut dev, 0, RING_LO, 0x1000);
        m.write_reg(&mut dev, 0, RING_SIZE, 8);
        request(&m, 0x1000, OP_READ, 1, 0, 0x8000);
        request(&m, 0x1020, OP_READ, 1, 16, 0x4000);
        request(&m, 0x1040, 9, 1, 0, 0x4000);
        request(&m, 0x1060, OP_READ, 0, 0, 0x4000);
        request(&m, 0x1080, OP_READ, 1, u64::MAX, 0x4000);
        let irqs = m.write_reg(&mut dev, 0, TAIL, 5).interrupts;
        assert_eq!(irqs.len(), 5, "failed requests complete too");
        assert_eq!(byte(&m, 0x1001), ST_DMA_FAULT);
        assert!(m.get(0x8000, 0x1000).iter().all(|&b| b == 0), "nothing reached the forbidden range");
        for at in [0x1021, 0x1041, 0x1061, 0x1081] {
            assert_eq!(byte(&m, at), ST_BAD_REQUEST, "request at {at:#x}");
        }
        assert_eq!(m.read_reg(&mut dev, 0, STATUS), STATUS_ERROR);
        m.write_reg(&mut dev, 0, STATUS, STATUS_ERROR);
        assert_eq!(m.read_reg(&mut dev, 0, STATUS), 0, "write 1 to clear");
        assert_eq!(dev.stats().dma_faults, 1);
        assert_eq!(dev.stats().bad_requests, 4);
        // A ring that is not a power of two is refused; one in forbidden
        // memory fails every request.
        m.write_reg(&mut dev, 0, RING_SIZE, 3);
        assert_eq!(m.read_reg(&mut dev, 0, RING_SIZE), 8);
        m.write_reg(&mut dev, 0, RING_LO, 0x8000);
        m.write_reg(&mut dev, 0, RING_SIZE, 2);
        let irqs = m.write_reg(&mut dev, 0, TAIL, u32::MAX).interrupts;
        assert_eq!(irqs.len(), 2, "an overrun takes one ring's worth");
        assert_eq!(dev.stats().dma_faults, 3);
        assert_eq!(m.read_bytes(&mut dev, 0, HEAD, 8), [0xff; 8], "registers are 32 bits wide");
        assert_eq!(dev.stats().bad_registers, 2, "the ring size of 3 and the wide read");
    }

    proptest::proptest! {
        /// Random register traffic over random memory (requests included)
        /// never panics, and DMA stays inside the memory it was given
        /// (the forbidden range holds its marker bytes).
        #[test]
        fn hostile_drivers_never_break_the_device(
            seed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0x2000),
            ops in proptest::collection::vec((0u64..0x24, 0u32..4, proptest::prelude::any::<u32>()), 1..64),
        ) {
            let mut m = TestMemory::new(0x4000);
            m.put(0, &seed);
            m.put(0x3000, &[0xcc; 0x1000]);
            m.forbidden = 0x3000..0x4000;
            let mut dev = BlockDevice::new(64, 100);
            for (i, (offset, kind, value)) in ops.into_iter().enumerate() {
                let now = i as u64 * 50;
                match kind {
                    0 => drop(m.write_reg(&mut dev, now, offset, value)),
                    1 => drop(m.write_bytes(&mut dev, now, offset, &value.to_le_bytes()[..2])),
                    2 => drop(m.read_reg(&mut dev, now, offset)),
                    _ => drop(m.write_reg(&mut dev, now, blk_small_ring(value), value % 5)),
                }
            }
            proptest::prop_assert!(m.get(0x3000, 0x1000).iter().all(|&b| b == 0xcc));
        }
    }

    /// RING_SIZE or TAIL, chosen by `v`: the registers that move the ring.
    fn blk_small_ring(v: u32) -> u64 {
        if v & 1 == 0 {
            RING_SIZE
        } else {
            TAIL
        }
    }
}

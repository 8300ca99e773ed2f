//! Hardware-coalesced queue notifications (experiment E5): a doorbell page
//! the machine itself absorbs. The guest's driver writes a queue index
//! there for every request; nothing exits. The doorbell tells the
//! hypervisor once per batch: after `n` writes, or `tau` after the first
//! write it has not yet told of, whichever comes first; the VMM's device
//! then takes the queues it names. The doorbell is plugged into the
//! machine behind the IOMMU (it may not DMA); the VMM keeps a
//! [`KickHandle`] to read what it has gathered.

use crate::bus::{Device, DeviceCtx};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Kicks {
    /// Queues kicked since the hypervisor last looked (bit per queue).
    pending: u32,
    /// Writes since the hypervisor was last told.
    since: u32,
    /// When the first of those came (ns).
    first_ns: u64,
    writes: u64,
    notifications: u64,
}

fn lock(k: &Mutex<Kicks>) -> MutexGuard<'_, Kicks> {
    k.lock().unwrap_or_else(|e| e.into_inner())
}

/// The doorbell, as the machine hosts it.
pub struct KickDoorbell {
    kicks: Arc<Mutex<Kicks>>,
    n: u32,
    tau_ns: u64,
}

/// The hypervisor's side of a doorbell.
#[derive(Clone)]
pub struct KickHandle {
    kicks: Arc<Mutex<Kicks>>,
    n: u32,
    tau_ns: u64,
}

impl KickDoorbell {
    /// A doorbell that tells the hypervisor after `n` writes or `tau_ns`.
    pub fn new(n: u32, tau_ns: u64) -> (KickDoorbell, KickHandle) {
        let kicks = Arc::new(Mutex::new(Kicks::default()));
        let n = n.max(1);
        (KickDoorbell { kicks: kicks.clone(), n, tau_ns }, KickHandle { kicks, n, tau_ns })
    }
}

impl KickHandle {
    /// The queues kicked since the last call (bit per queue), counting a
    /// notification when there were any.
    pub fn take(&self) -> u32 {
        let mut k = lock(&self.kicks);
        let pending = std::mem::take(&mut k.pending);
        k.since = 0;
        if pending != 0 {
            k.notifications += 1;
        }
        pending
    }

    /// As [`KickHandle::take`], but only once the batch is due (`n`
    /// writes, or `tau` after the first): for a reader that looks at the
    /// doorbell on every timer (KVM's device thread), not only when told.
    pub fn take_due(&self, now_ns: u64) -> u32 {
        let due = {
            let k = lock(&self.kicks);
            k.since >= self.n || (k.since > 0 && now_ns >= k.first_ns.saturating_add(self.tau_ns))
        };
        if due {
            self.take()
        } else {
            0
        }
    }

    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let k = lock(&self.kicks);
        vec![("writes", k.writes), ("notifications", k.notifications)]
    }
}

impl Device for KickDoorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let queue = data.first().copied().unwrap_or(0) % 32;
        let mut k = lock(&self.kicks);
        k.pending |= 1 << queue;
        k.writes += 1;
        k.since += 1;
        if k.since == 1 {
            k.first_ns = ctx.now_ns;
        }
        if k.since >= self.n {
            ctx.wake_at(ctx.now_ns);
        } else if k.since == 1 {
            ctx.wake_at(ctx.now_ns + self.tau_ns);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::TestMemory;

    #[test]
    fn tells_the_hypervisor_after_n_writes_or_tau() {
        let m = TestMemory::new(4096);
        let (mut bell, handle) = KickDoorbell::new(4, 50_000);
        assert_eq!(m.write_reg(&mut bell, 100, 0, 1).wakes, vec![50_100], "the first write starts tau");
        assert!(m.write_reg(&mut bell, 200, 0, 1).wakes.is_empty());
        assert!(m.write_reg(&mut bell, 300, 0, 0).wakes.is_empty());
        assert_eq!(m.write_reg(&mut bell, 400, 0, 1).wakes, vec![400], "the fourth: at once");
        assert_eq!(handle.take(), 0b11, "queues 0 and 1");
        assert_eq!(handle.take(), 0, "nothing new");
        assert_eq!(handle.counters(), vec![("writes", 4), ("notifications", 1)]);
        // Looking early finds nothing due until n writes or tau.
        m.write_reg(&mut bell, 1_000, 0, 1);
        assert_eq!(handle.take_due(50_999), 0);
        assert_eq!(handle.take_due(51_000), 0b10, "tau after the first write");
        for t in [2_000, 2_001, 2_002] {
            m.write_reg(&mut bell, t, 0, 0);
        }
        assert_eq!(handle.take_due(2_003), 0);
        m.write_reg(&mut bell, 2_004, 0, 0);
        assert_eq!(handle.take_due(2_005), 0b1, "the fourth write");
        assert_eq!(handle.counters(), vec![("writes", 9), ("notifications", 3)]);
    }
}

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
pub struct KickHandle(Arc<Mutex<Kicks>>);

impl KickDoorbell {
    /// A doorbell that tells the hypervisor after `n` writes or `tau_ns`.
    pub fn new(n: u32, tau_ns: u64) -> (KickDoorbell, KickHandle) {
        let kicks = Arc::new(Mutex::new(Kicks::default()));
        (KickDoorbell { kicks: kicks.clone(), n: n.max(1), tau_ns }, KickHandle(kicks))
    }
}

impl KickHandle {
    /// The queues kicked since the last call (bit per queue), counting a
    /// notification when there were any.
    pub fn take(&self) -> u32 {
        let mut k = lock(&self.0);
        let pending = std::mem::take(&mut k.pending);
        k.since = 0;
        if pending != 0 {
            k.notifications += 1;
        }
        pending
    }

    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let k = lock(&self.0);
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
    }
}

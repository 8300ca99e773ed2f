//! What stands in for guest memory the VMM isolates (E6): the EPT gives
//! the range no permission at all, so every access from the guest, however
//! it was translated, is an EPT_VIOLATION; the VMM completes the
//! instruction against this device, which drops writes and reads as all
//! ones, and counts both. The memory behind it never changes.

use crate::bus::{Device, DeviceCtx};

#[derive(Debug, Default)]
pub struct Isolated {
    pub blocked_reads: u64,
    pub blocked_writes: u64,
}

impl Device for Isolated {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        self.blocked_reads += 1;
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, _data: &[u8], _: &mut DeviceCtx<'_>) {
        self.blocked_writes += 1;
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("blocked_reads", self.blocked_reads), ("blocked_writes", self.blocked_writes)]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

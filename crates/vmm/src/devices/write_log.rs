//! What completes the guest's writes to a range the VMM watches through a
//! read-only memory slot (E7 on KVM, where the VMM has no EPT of its own):
//! KVM turns each write into an MMIO exit; this device logs the page and
//! makes the write itself in the VMM's mapping of guest memory, so the
//! guest sees its write as on bare metal and the VMM sees every one.

use crate::bus::{Device, DeviceCtx};
use vm_memory::{Bytes, GuestAddress};

#[derive(Debug)]
pub struct WriteLog {
    /// The range's guest-physical base (bus offsets count from it).
    base: u64,
    pub writes: u64,
    /// Writes that could not be made (outside guest memory).
    pub lost: u64,
}

impl WriteLog {
    pub fn new(base: u64) -> WriteLog {
        WriteLog { base, writes: 0, lost: 0 }
    }
}

impl Device for WriteLog {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let read = ctx.memory.is_some_and(|m| m.read_slice(data, GuestAddress(self.base + offset)).is_ok());
        if !read {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        self.writes += 1;
        let done = ctx.memory.is_some_and(|m| m.write_slice(data, GuestAddress(self.base + offset)).is_ok());
        self.lost += u64::from(!done);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("writes", self.writes), ("lost", self.lost)]
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
    fn writes_reach_guest_memory_and_are_counted() {
        let m = TestMemory::new(0x3000);
        let mut log = WriteLog::new(0x1000);
        m.write_reg(&mut log, 0, 0x18, 0x1122_3344);
        let mut b = [0u8; 4];
        m.mem.read_slice(&mut b, GuestAddress(0x1018)).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x1122_3344);
        assert_eq!(log.counters(), vec![("writes", 1), ("lost", 0)]);
        m.write_reg(&mut log, 0, 0x2000, 1);
        assert_eq!(log.counters(), vec![("writes", 2), ("lost", 1)], "past the end of memory");
    }
}

//! QEMU's isa-debug-exit device (hw/misc/debugexit.c) at port 0xf4: a
//! write of `code` asks to end the run with process status
//! `(code << 1) | 1`, so a guest can never report 0. kvm-unit-tests write
//! their result as a dword (1 = pass, 3 = fail, 77 = all skipped, 127 =
//! abort once shifted). Reads return all ones (nothing is decoded).

use crate::bus::{Device, DeviceCtx};
use crate::devices::power::{PowerLatch, PowerRequest};

/// The port QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4` uses.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Its width: a dword write covers 0xf4-0xf7.
pub const DEBUG_EXIT_SIZE: u64 = 4;

/// The process status QEMU exits with for a written `code`.
pub fn exit_status(code: u32) -> u32 {
    (code << 1) | 1
}

pub struct DebugExit {
    power: PowerLatch,
}

impl DebugExit {
    pub fn new(power: PowerLatch) -> DebugExit {
        DebugExit { power }
    }
}

impl Device for DebugExit {
    fn read(&mut self, _: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        // QEMU decodes only the access at the base; a write to a later
        // byte of the window is an access of its own that it ignores.
        if offset != 0 {
            return;
        }
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        self.power.request(PowerRequest::Exit { status: exit_status(u32::from_le_bytes(b)) });
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
    fn status_follows_qemus_convention() {
        // kvm-unit-tests' report: code 0 passes (1), 1 fails (3), 38 skips
        // (77), 63 aborts (127): README of ../shared/kvm-unit-tests.
        for (code, status) in [(0u32, 1u32), (1, 3), (38, 77), (63, 127)] {
            let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
            let mut dev = DebugExit::new(latch.clone());
            m.write_bytes(&mut dev, 0, 0, &code.to_le_bytes());
            assert_eq!(latch.take(), Some(PowerRequest::Exit { status }));
        }
    }

    #[test]
    fn byte_writes_count_and_reads_are_all_ones() {
        let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
        let mut dev = DebugExit::new(latch.clone());
        assert_eq!(m.read_bytes(&mut dev, 0, 0, 4), [0xff; 4]);
        m.write_bytes(&mut dev, 0, 2, &[5]);
        assert_eq!(latch.peek(), None);
        m.write_bytes(&mut dev, 0, 0, &[5]);
        assert_eq!(latch.take(), Some(PowerRequest::Exit { status: 11 }));
    }
}

//! The POST diagnostic port (0x80): latches the last byte written and reads
//! it back. Target of the port-I/O microbenchmarks.

use crate::bus::{Device, DeviceCtx};

#[derive(Debug, Default)]
pub struct PostPort {
    latch: u8,
    writes: u64,
}

impl PostPort {
    pub fn last(&self) -> u8 {
        self.latch
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl Device for PostPort {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(self.latch);
    }

    fn write(&mut self, _offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        if let Some(&b) = data.first() {
            self.latch = b;
            self.writes += 1;
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

//! An MMIO scratch device: one 64-bit register repeated over its page.
//! Reads return the last value written; it counts accesses so tests can
//! check that emulated stores really reached the device.

use crate::bus::{Device, DeviceCtx};

#[derive(Debug, Default)]
pub struct MmioScratch {
    value: u64,
    reads: u64,
    writes: u64,
}

impl MmioScratch {
    pub fn value(&self) -> u64 {
        self.value
    }

    pub fn reads(&self) -> u64 {
        self.reads
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl Device for MmioScratch {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        self.reads += 1;
        let v = self.value.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&v[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        self.writes += 1;
        let mut v = [0u8; 8];
        let n = data.len().min(8);
        v[..n].copy_from_slice(&data[..n]);
        self.value = u64::from_le_bytes(v);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

//! Guest memory for device tests: a vm-memory mapping that a device's DMA
//! reaches too, except for a forbidden range (as an IOMMU would refuse).

use crate::bus::{Device, DeviceCtx};
use exitlab_hv::device::{Dma, DmaError};
use std::ops::Range;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub struct TestMemory {
    pub mem: GuestMemoryMmap,
    pub forbidden: Range<u64>,
}

struct Window<'a> {
    mem: &'a GuestMemoryMmap,
    forbidden: Range<u64>,
}

impl Window<'_> {
    fn check(&self, addr: u64, len: usize, write: bool) -> Result<(), DmaError> {
        let end = addr.checked_add(len as u64).ok_or(DmaError { addr, write })?;
        if addr < self.forbidden.end && self.forbidden.start < end {
            return Err(DmaError { addr, write });
        }
        Ok(())
    }
}

impl Dma for Window<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.check(addr, buf.len(), false)?;
        self.mem.read_slice(buf, GuestAddress(addr)).map_err(|_| DmaError { addr, write: false })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.check(addr, data.len(), true)?;
        self.mem.write_slice(data, GuestAddress(addr)).map_err(|_| DmaError { addr, write: true })
    }
}

/// What one access or tick did: interrupts raised, timers asked for.
pub struct Effects {
    pub interrupts: Vec<(u16, u64)>,
    pub wakes: Vec<u64>,
}

impl TestMemory {
    pub fn new(size: usize) -> TestMemory {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("test memory maps");
        TestMemory { mem, forbidden: 0..0 }
    }

    /// Runs `f` with a device context at `now` and returns what it raised.
    pub fn run(&self, now: u64, f: impl FnOnce(&mut DeviceCtx<'_>)) -> Effects {
        let mut w = Window { mem: &self.mem, forbidden: self.forbidden.clone() };
        let mut ctx = DeviceCtx::new(now, &mut w);
        ctx.memory = Some(&self.mem);
        f(&mut ctx);
        Effects { interrupts: ctx.interrupts, wakes: ctx.wakes }
    }

    pub fn write_reg(&self, dev: &mut dyn Device, now: u64, offset: u64, value: u32) -> Effects {
        self.write_bytes(dev, now, offset, &value.to_le_bytes())
    }

    /// A register write of any width.
    pub fn write_bytes(&self, dev: &mut dyn Device, now: u64, offset: u64, data: &[u8]) -> Effects {
        self.run(now, |ctx| dev.write(offset, data, ctx))
    }

    pub fn read_reg(&self, dev: &mut dyn Device, now: u64, offset: u64) -> u32 {
        let b = self.read_bytes(dev, now, offset, 4);
        u32::from_le_bytes(b.try_into().expect("4 bytes"))
    }

    /// A register read of `len` bytes.
    pub fn read_bytes(&self, dev: &mut dyn Device, now: u64, offset: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.run(now, |ctx| dev.read(offset, &mut b, ctx));
        b
    }

    pub fn tick(&self, dev: &mut dyn Device, now: u64) -> Effects {
        self.run(now, |ctx| dev.tick(ctx))
    }

    pub fn put(&self, gpa: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(gpa)).expect("inside test memory");
    }

    pub fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(gpa)).expect("inside test memory");
        b
    }
}

//! Address-space buses: port I/O (16-bit port space) and MMIO (guest-
//! physical space). A device owns a range and sees offsets into it.

pub use exitlab_hv::device::{Device, DeviceCtx};
use std::fmt;

/// Two devices were given overlapping ranges (a VMM set-up bug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub name: &'static str,
    pub other: &'static str,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bus range of `{}` overlaps `{}`", self.name, self.other)
    }
}

impl std::error::Error for Overlap {}

struct Slot {
    base: u64,
    len: u64,
    name: &'static str,
    device: Box<dyn Device>,
}

/// Which device an access reached: its bus slot and the offset inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub slot: usize,
    pub offset: u64,
}

/// A set of non-overlapping ranges, each owned by one device.
#[derive(Default)]
pub struct Bus {
    slots: Vec<Slot>,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    pub fn insert(&mut self, name: &'static str, base: u64, len: u64, device: Box<dyn Device>) -> Result<(), Overlap> {
        let end = base.saturating_add(len);
        if let Some(s) = self.slots.iter().find(|s| base < s.base + s.len && s.base < end) {
            return Err(Overlap { name, other: s.name });
        }
        let at = self.slots.partition_point(|s| s.base < base);
        self.slots.insert(at, Slot { base, len, name, device });
        Ok(())
    }

    /// The device whose range holds `addr`.
    pub fn find(&self, addr: u64) -> Option<Hit> {
        let i = self.slots.partition_point(|s| s.base <= addr).checked_sub(1)?;
        let s = &self.slots[i];
        (addr - s.base < s.len).then_some(Hit { slot: i, offset: addr - s.base })
    }

    pub fn name(&self, slot: usize) -> &'static str {
        self.slots[slot].name
    }

    /// The base address of a slot.
    pub fn base(&self, slot: usize) -> u64 {
        self.slots[slot].base
    }

    pub fn read(&mut self, hit: Hit, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        self.slots[hit.slot].device.read(hit.offset, data, ctx)
    }

    pub fn write(&mut self, hit: Hit, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        self.slots[hit.slot].device.write(hit.offset, data, ctx)
    }

    /// Runs every device's timer work ([`Device::tick`]).
    pub fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        for s in &mut self.slots {
            s.device.tick(ctx);
        }
    }

    /// Every device's counters, named `<device>.<counter>`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut all = Vec::new();
        for s in &self.slots {
            all.extend(s.device.counters().into_iter().map(|(n, v)| (format!("{}.{n}", s.name), v)));
        }
        all
    }

    /// Every range: (name, base, length).
    pub fn ranges(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        self.slots.iter().map(|s| (s.name, s.base, s.len))
    }

    /// The device called `name`, if it is a `T`.
    pub fn device<T: 'static>(&self, name: &str) -> Option<&T> {
        self.slots.iter().find(|s| s.name == name)?.device.as_any().downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl Device for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
            self.0.push((offset, data.to_vec()));
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn finds_devices_by_range_and_reports_offsets() {
        let mut bus = Bus::new();
        bus.insert("a", 0x3f8, 8, Box::new(Echo(vec![]))).unwrap();
        bus.insert("b", 0x80, 1, Box::new(Echo(vec![]))).unwrap();
        assert_eq!(bus.find(0x3fa), Some(Hit { slot: 1, offset: 2 }));
        assert_eq!(bus.name(1), "a");
        assert_eq!(bus.find(0x80), Some(Hit { slot: 0, offset: 0 }));
        assert_eq!(bus.find(0x81), None);
        assert_eq!(bus.find(0x3f7), None);
        assert_eq!(bus.find(0x400), None);
        assert_eq!(bus.find(0), None);
        let mut d = [0u8; 2];
        let memory = vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 4096)]).unwrap();
        let mut dma = crate::assign::Checked {
            memory: &memory,
            window: crate::assign::DmaWindow { start: 0, len: 0 },
            source: crate::assign::BLK_SOURCE,
            faults: &mut Vec::new(),
        };
        let mut ctx = DeviceCtx::new(0, &mut dma);
        bus.read(bus.find(0x3fd).unwrap(), &mut d, &mut ctx);
        assert_eq!(d, [5, 5]);
    }

    #[test]
    fn rejects_overlap() {
        let mut bus = Bus::new();
        bus.insert("a", 0x100, 0x10, Box::new(Echo(vec![]))).unwrap();
        let e = bus.insert("b", 0x108, 0x10, Box::new(Echo(vec![]))).unwrap_err();
        assert_eq!(e, Overlap { name: "b", other: "a" });
        assert!(bus.insert("c", u64::MAX - 1, 0x10, Box::new(Echo(vec![]))).is_ok());
    }
}

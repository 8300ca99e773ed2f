//! QEMU's pc-testdev (hw/misc/pc-testdev.c) as kvm-unit-tests use it:
//!
//! - ports 0xe0-0xe3: a 32-bit latch written and read in byte lanes (an
//!   access at 0xe0 + k covers lanes k and up; lanes past 3 are dropped);
//!   0xe8-0xeb reach the same latch one byte at a time (the emulator
//!   test's REP INSB/OUTSB);
//! - port 0xe4: "flush page": a dword write of a guest-physical address,
//!   after which QEMU re-protects the page to make the host fault on it.
//!   Guest memory has no host protection to cycle here, so the write is
//!   counted and has no other effect;
//! - ports 0x2000-0x2017: byte writes set interrupt line n (0-23) to
//!   `data != 0` (QEMU accepts only byte accesses there);
//! - MMIO 0xff000000-0xff00ffff: 64 KiB that read back what was written
//!   (the emulator test's MMIO target, x86/ioram.h).

use crate::bus::{Device, DeviceCtx};
use crate::devices::isa_irq::{IsaIrqLine, LINES};

pub const TESTDEV_PORT: u16 = 0xe0;
/// 0xe0-0xeb: the latch, flush-page and byte ports.
pub const TESTDEV_PORTS: u64 = 12;
pub const LATCH: u64 = 0x0;
pub const FLUSH_PAGE: u64 = 0x4;
pub const LATCH_BYTES: u64 = 0x8;
pub const IRQ_PORT: u16 = 0x2000;
pub const IRQ_PORTS: u64 = LINES as u64;
pub const IOMEM_BASE: u64 = 0xff00_0000;
pub const IOMEM_SIZE: usize = 0x1_0000;

/// Ports 0xe0-0xeb.
#[derive(Debug, Default)]
pub struct TestdevPorts {
    latch: [u8; 4],
    flushes: u64,
}

impl TestdevPorts {
    pub fn latch(&self) -> u32 {
        u32::from_le_bytes(self.latch)
    }

    /// Lane `lane` of the latch, if the access reaches one.
    fn lane(&mut self, lane: u64) -> Option<&mut u8> {
        self.latch.get_mut(lane as usize)
    }
}

impl Device for TestdevPorts {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = match offset {
                LATCH..=3 | LATCH_BYTES..=11 => self.lane((offset & 3) + i as u64).map_or(0, |b| *b),
                _ => 0,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        match offset {
            LATCH..=3 | LATCH_BYTES..=11 => {
                for (i, &v) in data.iter().enumerate() {
                    if let Some(b) = self.lane((offset & 3) + i as u64) {
                        *b = v;
                    }
                }
            }
            FLUSH_PAGE if data.len() == 4 => self.flushes += 1,
            _ => {}
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("flush_page", self.flushes)]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Ports 0x2000-0x2017: one interrupt line each.
#[derive(Debug)]
pub struct TestdevIrq {
    lines: Vec<IsaIrqLine>,
    writes: u64,
}

impl TestdevIrq {
    /// `lines[n]` is the line port 0x2000 + n drives (at most 24).
    pub fn new(lines: Vec<IsaIrqLine>) -> TestdevIrq {
        TestdevIrq { lines, writes: 0 }
    }
}

impl Device for TestdevIrq {
    fn read(&mut self, _: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let (Some(line), &[v]) = (self.lines.get(offset as usize), data) else { return };
        self.writes += 1;
        line.set(v != 0, ctx);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("irq_line_writes", self.writes)]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The 64 KiB MMIO window at 0xff000000.
pub struct TestdevMem {
    bytes: Vec<u8>,
}

impl Default for TestdevMem {
    fn default() -> Self {
        TestdevMem { bytes: vec![0; IOMEM_SIZE] }
    }
}

impl Device for TestdevMem {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset).ok().and_then(|o| self.bytes.get(o.checked_add(i)?)).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        for (i, &v) in data.iter().enumerate() {
            if let Some(b) = usize::try_from(offset).ok().and_then(|o| self.bytes.get_mut(o.checked_add(i)?)) {
                *b = v;
            }
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::isa_irq::Recorder;
    use crate::devices::testing::TestMemory;

    #[test]
    fn latch_byte_lanes_and_the_byte_port() {
        let (m, mut d) = (TestMemory::new(4096), TestdevPorts::default());
        m.write_reg(&mut d, 0, LATCH, 0x4433_2211);
        assert_eq!(m.read_bytes(&mut d, 0, LATCH + 2, 2), [0x33, 0x44]);
        m.write_bytes(&mut d, 0, LATCH + 1, &[0xaa]);
        assert_eq!(d.latch(), 0x4433_aa11);
        // A dword at 0xe2 reaches lanes 2 and 3 only.
        m.write_reg(&mut d, 0, LATCH + 2, 0xdddd_cccc);
        assert_eq!(d.latch(), 0xcccc_aa11);
        // 0xe8 + k is lane k of the same latch.
        m.write_bytes(&mut d, 0, LATCH_BYTES + 3, &[0x01]);
        assert_eq!(m.read_reg(&mut d, 0, LATCH_BYTES), 0x01cc_aa11);
    }

    #[test]
    fn flush_page_counts_dword_writes() {
        let (m, mut d) = (TestMemory::new(4096), TestdevPorts::default());
        m.write_reg(&mut d, 0, FLUSH_PAGE, 0x1000);
        m.write_bytes(&mut d, 0, FLUSH_PAGE, &[1]);
        assert_eq!(d.counters(), [("flush_page", 1)]);
        assert_eq!(d.latch(), 0);
    }

    #[test]
    fn irq_ports_set_lines_by_byte() {
        let (rec, line) = Recorder::line(14);
        let m = TestMemory::new(4096);
        let mut lines: Vec<IsaIrqLine> = (0..14).map(|n| Recorder::line(n).1).collect();
        lines.push(line);
        let mut d = TestdevIrq::new(lines);
        m.write_bytes(&mut d, 3, 14, &[1]);
        m.write_bytes(&mut d, 4, 14, &[0]);
        m.write_bytes(&mut d, 5, 14, &[1, 0]);
        m.write_bytes(&mut d, 6, 15, &[1]);
        assert_eq!(Recorder::take(&rec), [(14, true, 3), (14, false, 4)]);
        assert_eq!(d.counters(), [("irq_line_writes", 2)]);
    }

    #[test]
    fn iomem_is_ram_like_and_bounded() {
        let (m, mut d) = (TestMemory::new(4096), TestdevMem::default());
        m.write_reg(&mut d, 0, 0x100, 0xdead_beef);
        assert_eq!(m.read_reg(&mut d, 0, 0x100), 0xdead_beef);
        assert_eq!(m.read_bytes(&mut d, 0, 0x102, 1), [0xad]);
        m.write_reg(&mut d, 0, 0xfffe, 0x1122_3344);
        assert_eq!(m.read_reg(&mut d, 0, 0xfffe), 0x3344, "the bytes past the window are dropped");
        m.write_reg(&mut d, 0, u64::MAX, 1);
        assert_eq!(m.read_reg(&mut d, 0, u64::MAX), 0);
    }
}

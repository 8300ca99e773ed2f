//! The PC's reset paths, each reporting a [`PowerRequest`] the run loop
//! acts on: the reset control register at 0xcf9 (PIIX4 datasheet, RC:
//! SYS_RST bit 1, RST_CPU bit 2, FULL_RST bit 3; a 0-to-1 write of
//! RST_CPU resets), system control port A at 0x92 (bit 0 fast reset on a
//! 0-to-1 write, bit 1 the fast A20 gate) and the 8042 keyboard
//! controller's pulse-output command 0xfe on port 0x64 (see
//! [`crate::devices::i8042`]). The A20 gate is recorded, not applied:
//! guest memory never wraps at 1 MiB here.

use crate::bus::{Device, DeviceCtx};
use crate::devices::power::{PowerLatch, PowerRequest, ResetSource};

/// Reset control register bits.
pub mod rc {
    pub const SYS_RST: u8 = 1 << 1;
    pub const RST_CPU: u8 = 1 << 2;
    pub const FULL_RST: u8 = 1 << 3;
}

/// System control port A bits.
pub mod port_a {
    pub const FAST_RESET: u8 = 1 << 0;
    pub const A20: u8 = 1 << 1;
}

/// The reset control register (port 0xcf9, byte accesses only: a dword at
/// 0xcf8 is PCI's CONFIG_ADDRESS, which is why the PCI host forwards the
/// byte here).
#[derive(Debug)]
pub struct ResetControl {
    value: u8,
    power: PowerLatch,
}

impl ResetControl {
    pub fn new(power: PowerLatch) -> ResetControl {
        ResetControl { value: 0, power }
    }

    pub fn read(&self) -> u8 {
        self.value
    }

    pub fn write(&mut self, v: u8) {
        if self.value & rc::RST_CPU == 0 && v & rc::RST_CPU != 0 {
            self.power.request(PowerRequest::Reset(ResetSource::ResetControl));
        }
        // RST_CPU reads back 0 once the reset it started is done; the
        // others keep what was written.
        self.value = v & (rc::SYS_RST | rc::FULL_RST);
    }
}

/// System control port A (port 0x92).
#[derive(Debug)]
pub struct SystemControlA {
    value: u8,
    power: PowerLatch,
}

impl SystemControlA {
    pub fn new(power: PowerLatch) -> SystemControlA {
        SystemControlA { value: 0, power }
    }

    /// The fast A20 gate.
    pub fn a20(&self) -> bool {
        self.value & port_a::A20 != 0
    }
}

impl Device for SystemControlA {
    fn read(&mut self, _: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(self.value);
    }

    fn write(&mut self, _: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        let Some(&v) = data.first() else { return };
        if self.value & port_a::FAST_RESET == 0 && v & port_a::FAST_RESET != 0 {
            self.power.request(PowerRequest::Reset(ResetSource::FastReset));
        }
        self.value = v & port_a::A20;
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
    fn reset_control_resets_on_a_rising_rst_cpu() {
        let latch = PowerLatch::default();
        let mut rc = ResetControl::new(latch.clone());
        rc.write(rc::SYS_RST);
        assert_eq!((latch.peek(), rc.read()), (None, rc::SYS_RST));
        rc.write(rc::SYS_RST | rc::RST_CPU); // Linux's reboot=pci writes 0x02 then 0x06
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::ResetControl)));
        assert_eq!(rc.read(), rc::SYS_RST);
    }

    #[test]
    fn port_92_fast_reset_and_a20() {
        let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
        let mut a = SystemControlA::new(latch.clone());
        m.write_bytes(&mut a, 0, 0, &[port_a::A20]);
        assert!(a.a20());
        assert_eq!((latch.peek(), m.read_bytes(&mut a, 0, 0, 1)[0]), (None, port_a::A20));
        m.write_bytes(&mut a, 0, 0, &[port_a::A20 | port_a::FAST_RESET]);
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::FastReset)));
    }
}

//! COM1: vm-superio's 16550 model, with everything the guest transmits kept
//! as console output. The exitlab kernel polls the line-status register, so
//! the interrupt line is not wired.

use crate::bus::{Device, DeviceCtx};
use vm_superio::Trigger;

/// The UART's interrupt output, left unconnected.
pub struct Unwired;

impl Trigger for Unwired {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

pub struct Serial {
    uart: vm_superio::Serial<Unwired, vm_superio::serial::NoEvents, Vec<u8>>,
}

impl Default for Serial {
    fn default() -> Self {
        Serial { uart: vm_superio::Serial::new(Unwired, Vec::new()) }
    }
}

impl Serial {
    /// Everything the guest has written to the transmit register.
    pub fn output(&self) -> &[u8] {
        self.uart.writer()
    }
}

impl Device for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        let v = u8::try_from(offset).map(|o| self.uart.read(o)).unwrap_or(0xff);
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        if let (Ok(o), Some(&b)) = (u8::try_from(offset), data.first()) {
            // Writing to an unwired UART cannot fail; a full FIFO drops.
            let _ = self.uart.write(o, b);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

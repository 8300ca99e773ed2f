//! The legacy 8259 PIC pair, as far as exitlab guests use it: the
//! interrupt-mask register on each data port (0x21, 0xa1) reads back what
//! was written. Initialization command words on the command ports are
//! accepted and ignored: no line is ever raised, because exitlab devices
//! interrupt with MSIs (docs/DESIGN.md).

use crate::bus::{Device, DeviceCtx};

#[derive(Debug)]
pub struct Pic {
    imr: u8,
}

impl Default for Pic {
    fn default() -> Self {
        // All lines masked after reset.
        Pic { imr: 0xff }
    }
}

impl Pic {
    pub fn mask(&self) -> u8 {
        self.imr
    }
}

impl Device for Pic {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(if offset == 1 { self.imr } else { 0 });
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        if let (1, Some(&v)) = (offset, data.first()) {
            self.imr = v;
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

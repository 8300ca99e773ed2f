//! A doorbell device: every write is a request it completes at once,
//! interrupting with an MSI on the kernel's device vector. The simplest
//! device with a completion interrupt, for experiments where I/O means
//! "register write, then interrupt".

use crate::bus::Device;
use crate::interrupts::IrqLine;
use exitlab_guest::layout::DEVICE_VECTOR;
use exitlab_hv::Msi;

pub struct Doorbell {
    irq: IrqLine,
    rung: u64,
}

impl Doorbell {
    pub fn new(irq: IrqLine) -> Doorbell {
        Doorbell { irq, rung: 0 }
    }

    pub fn rung(&self) -> u64 {
        self.rung
    }
}

impl Device for Doorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {
        self.rung += 1;
        self.irq.raise(Msi::fixed(0, DEVICE_VECTOR));
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

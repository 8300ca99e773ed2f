//! A doorbell device: every write is a request it completes at once,
//! interrupting with its MSI. The simplest device with a completion
//! interrupt, for experiments where I/O means "register write, then
//! interrupt".

use crate::bus::{Device, DeviceCtx};

#[derive(Default)]
pub struct Doorbell {
    rung: u64,
}

impl Doorbell {
    pub fn rung(&self) -> u64 {
        self.rung
    }
}

impl Device for Doorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8], ctx: &mut DeviceCtx<'_>) {
        self.rung += 1;
        ctx.interrupt(0, ctx.now_ns);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

//! ISA interrupt lines: how a device model that has an IRQ pin (the PIT's
//! OUT0, the RTC, pc-testdev's line ports) reaches the interrupt
//! controllers without knowing which ones the machine has.
//!
//! A device holds an [`IsaIrqLine`]: a line number and the sink its level
//! goes to. The sink is an [`IrqSink`]: on the simulator the PC's PIC pair
//! and IOAPIC ([`crate::devices::PcIrqChip`]); on KVM with its in-kernel
//! irqchip a sink would call KVM_IRQ_LINE. Lines 0-15 are the ISA IRQs;
//! 16-23 reach only the IOAPIC (pc-testdev drives all 24 of its pins).
//! Drivers set a level; edge-triggered inputs see the rising edge, level-
//! triggered ones the level, as on the board.

use crate::bus::DeviceCtx;
use std::sync::{Arc, Mutex};

/// The number of lines: the IOAPIC's 24 pins, the first 16 also the PIC
/// pair's IRQ 0-15.
pub const LINES: u8 = 24;
/// ISA IRQs 0-15 have a PIC input.
pub const ISA_IRQS: u8 = 16;

/// What ISA lines drive: the interrupt controllers.
pub trait IrqSink: Send {
    /// Line `line` (below [`LINES`]; others are ignored) is now at
    /// `level`. Interrupts this causes are raised through `ctx`.
    fn set_level(&mut self, line: u8, level: bool, ctx: &mut DeviceCtx<'_>);
}

/// The IOAPIC pin ISA IRQ `line` reaches on the PC: the MADT's interrupt
/// source override sends IRQ 0 (the PIT) to pin 2; the others are 1:1.
pub fn gsi(line: u8) -> u8 {
    if line == 0 {
        2
    } else {
        line
    }
}

/// One interrupt line, owned by the device whose pin drives it.
#[derive(Clone)]
pub struct IsaIrqLine {
    sink: Arc<Mutex<dyn IrqSink>>,
    line: u8,
}

impl IsaIrqLine {
    pub fn new(sink: Arc<Mutex<dyn IrqSink>>, line: u8) -> IsaIrqLine {
        IsaIrqLine { sink, line }
    }

    pub fn line(&self) -> u8 {
        self.line
    }

    /// Drives the line to `level`.
    pub fn set(&self, level: bool, ctx: &mut DeviceCtx<'_>) {
        // A sink that panicked once is still usable: its state is plain
        // data, so take it back from the poisoned lock.
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).set_level(self.line, level, ctx);
    }
}

impl std::fmt::Debug for IsaIrqLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IsaIrqLine({})", self.line)
    }
}

/// A sink that records every level change, for device tests.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder {
    pub changes: Vec<(u8, bool, u64)>,
}

#[cfg(test)]
impl IrqSink for Recorder {
    fn set_level(&mut self, line: u8, level: bool, ctx: &mut DeviceCtx<'_>) {
        self.changes.push((line, level, ctx.now_ns));
    }
}

#[cfg(test)]
impl Recorder {
    /// A recorder and a line `line` into it.
    pub fn line(line: u8) -> (Arc<Mutex<Recorder>>, IsaIrqLine) {
        let r = Arc::new(Mutex::new(Recorder::default()));
        (r.clone(), IsaIrqLine::new(r, line))
    }

    pub fn take(r: &Arc<Mutex<Recorder>>) -> Vec<(u8, bool, u64)> {
        std::mem::take(&mut r.lock().unwrap().changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq0_goes_to_pin_2_the_rest_one_to_one() {
        assert_eq!((gsi(0), gsi(1), gsi(2), gsi(14), gsi(23)), (2, 1, 2, 14, 23));
    }
}

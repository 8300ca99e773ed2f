//! COM1: vm-superio's 16550 model, with everything the guest transmits kept
//! as console output. On the PC its interrupt output reaches ISA IRQ 4
//! (through the MCR's OUT2 gate, as the PC/AT wires it): Linux's 8250
//! driver sends user-space output by THR-empty interrupts. vm-superio
//! signals an interrupt as an event (it is made for KVM's irqfd), so each
//! one is a pulse on the line, as an irqfd into KVM's PIC is; the exitlab
//! kernel polls the line-status register and never enables one. A
//! [`ConsoleWatch`], when the run has one, sees each byte that reaches
//! the console.

use crate::bus::{Device, DeviceCtx};
use crate::console::ConsoleWatch;
use crate::devices::isa_irq::IsaIrqLine;
use std::sync::atomic::{AtomicBool, Ordering};
use vm_superio::Trigger;

/// The COM1 IRQ on the PC (IBM PC/AT Technical Reference).
pub const COM1_IRQ: u8 = 4;
/// Modem control register offset and its OUT2 bit (16550 datasheet).
const MCR: u64 = 4;
/// The interrupt identification register: reading it acknowledges THRE.
const IIR: u64 = 2;
const MCR_OUT2: u8 = 1 << 3;

/// The UART's interrupt output: latched until the device model pulses the
/// line after the register access that raised it.
#[derive(Default)]
pub struct Raised(AtomicBool);

impl Trigger for Raised {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::Relaxed);
        Ok(())
    }
}

pub struct Serial {
    uart: vm_superio::Serial<Raised, vm_superio::serial::NoEvents, Vec<u8>>,
    irq: Option<IsaIrqLine>,
    /// OUT2 as the guest last wrote it: the PC gates the IRQ with it.
    out2: bool,
    /// An interrupt raised while OUT2 was off, not yet acknowledged (by an
    /// IIR read): OUT2's rising edge passes it on.
    held: bool,
    interrupts: u64,
    /// Lines that end the run, when the run watches for any.
    watch: Option<ConsoleWatch>,
}

impl Serial {
    /// A UART whose interrupt drives `irq` (none: unconnected), its
    /// console output watched by `watch`.
    pub fn new(irq: Option<IsaIrqLine>, watch: Option<ConsoleWatch>) -> Serial {
        Serial {
            uart: vm_superio::Serial::new(Raised::default(), Vec::new()),
            irq,
            out2: false,
            held: false,
            interrupts: 0,
            watch,
        }
    }

    /// Everything the guest has written to the transmit register.
    pub fn output(&self) -> &[u8] {
        self.uart.writer()
    }

    /// Pulses the line for an interrupt the last access raised, or one
    /// held back until OUT2 came on.
    fn deliver(&mut self, ctx: &mut DeviceCtx<'_>) {
        let raised = self.uart.interrupt_evt().0.swap(false, Ordering::Relaxed) || self.held;
        self.held = raised && !self.out2;
        if let (true, true, Some(line)) = (raised, self.out2, &self.irq) {
            line.set(true, ctx);
            line.set(false, ctx);
            self.interrupts += 1;
        }
    }
}

impl Device for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let v = u8::try_from(offset).map(|o| self.uart.read(o)).unwrap_or(0xff);
        data.fill(v);
        if offset == IIR {
            self.held = false;
        }
        self.deliver(ctx);
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        if let (Ok(o), Some(&b)) = (u8::try_from(offset), data.first()) {
            if offset == MCR {
                self.out2 = b & MCR_OUT2 != 0;
            }
            let before = self.uart.writer().len();
            // Writing to the in-memory console cannot fail; a full FIFO
            // drops.
            let _ = self.uart.write(o, b);
            let output = self.uart.writer();
            if let (Some(watch), true) = (&mut self.watch, output.len() > before) {
                watch.wrote(output, output.len() - before);
            }
        }
        self.deliver(ctx);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        if self.irq.is_some() {
            vec![("irq4_pulses", self.interrupts)]
        } else {
            Vec::new()
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

    /// THRI enabled, then OUT2 on, then bytes: each THR-empty interrupt is
    /// one pulse on IRQ 4; one raised while OUT2 is off waits for OUT2;
    /// none before IIR is read (vm-superio raises THRE once until it is
    /// acknowledged).
    #[test]
    fn thr_empty_interrupts_pulse_irq4_through_out2() {
        let (rec, line) = Recorder::line(COM1_IRQ);
        let (m, mut s) = (TestMemory::new(4096), Serial::new(Some(line), None));
        m.write_bytes(&mut s, 10, 1, &[0x02]); // IER THRI, OUT2 off
        assert_eq!(Recorder::take(&rec), []);
        m.write_bytes(&mut s, 40, MCR, &[MCR_OUT2]);
        assert_eq!(Recorder::take(&rec), [(COM1_IRQ, true, 40), (COM1_IRQ, false, 40)]);
        m.write_bytes(&mut s, 50, 0, b"x");
        assert_eq!(Recorder::take(&rec), [], "THRE still pending: no new edge");
        m.read_bytes(&mut s, 60, IIR, 1);
        m.write_bytes(&mut s, 70, 0, b"y");
        assert_eq!(Recorder::take(&rec), [(COM1_IRQ, true, 70), (COM1_IRQ, false, 70)]);
        assert_eq!(s.output(), b"xy");
        assert_eq!(s.counters(), [("irq4_pulses", 2)]);
    }

    /// The watch sees what reaches the console, nothing else: bytes
    /// written to offset 0 while DLAB is set are the divisor latch, and in
    /// loopback mode the transmitter's bytes come back to the receiver.
    #[test]
    fn the_console_watch_sees_only_transmitted_bytes() {
        use crate::console::{ConsoleWatch, StopRule};
        use crate::report::Outcome;
        let (watch, latch) = ConsoleWatch::new(&[StopRule::line("ok")]).unwrap();
        let (m, mut s) = (TestMemory::new(4096), Serial::new(None, Some(watch)));
        let lcr = 3;
        m.write_bytes(&mut s, 1, lcr, &[0x80]); // DLAB
        m.write_bytes(&mut s, 2, 0, b"o");
        m.write_bytes(&mut s, 3, 0, b"k");
        m.write_bytes(&mut s, 4, 0, b"\n");
        m.write_bytes(&mut s, 5, lcr, &[0x03]);
        m.write_bytes(&mut s, 6, MCR, &[0x10]); // loopback
        m.write_bytes(&mut s, 7, 0, b"\n");
        assert_eq!((s.output(), latch.get()), (&b""[..], None));
        m.write_bytes(&mut s, 8, MCR, &[0]);
        for &b in b"ok\n" {
            m.write_bytes(&mut s, 9, 0, &[b]);
        }
        assert_eq!(latch.get(), Some(Outcome::ConsoleStop { line: "ok".into() }));
    }
}

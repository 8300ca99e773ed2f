//! The 8042 keyboard controller of a PC with nothing plugged into its
//! ports: the status register and command port at 0x64, the data port at
//! 0x60 (IBM PC/AT Technical Reference, "Keyboard Controller"; the PS/2
//! controller's AUX commands as Linux's i8042 driver uses them). It
//! answers the controller commands kernels send while probing and
//! resetting: read/write the command byte (0x20/0x60), self test (0xaa ->
//! 0x55), interface tests (0xab, 0xa9 -> 0x00), disable/enable the
//! keyboard and aux interfaces (0xad/0xae, 0xa7/0xa8), read/write the
//! output port (0xd0/0xd1; output bit 0 low is a reset, bit 1 the A20
//! gate), the loop-back writes that place a byte in the output buffer as
//! if the keyboard or the aux device sent it (0xd2/0xd3), and pulse output
//! bits (0xf0-0xff: a bit clear in the low nibble pulses that line, so
//! 0xfe pulses reset). A byte for the keyboard (a data write) or the aux
//! device (0xd4, then data) finds no device: the controller answers 0xfe
//! with the time-out bit set, as one with empty ports does, so a driver's
//! probe fails at once instead of waiting out its timeouts. A byte in the
//! output buffer raises IRQ 1 (keyboard side) or IRQ 12 (aux) while the
//! command byte enables that interrupt.

use crate::bus::{Device, DeviceCtx};
use crate::devices::isa_irq::IsaIrqLine;
use crate::devices::power::{PowerLatch, PowerRequest, ResetSource};
use std::sync::{Arc, Mutex};

/// Port offsets of the two faces' bus ranges.
pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
/// The ISA IRQs of the keyboard and aux sides.
pub const KBD_IRQ: u8 = 1;
pub const AUX_IRQ: u8 = 12;

/// Status register bits.
pub mod status {
    /// Output buffer full: a byte waits on port 0x60.
    pub const OBF: u8 = 1 << 0;
    /// The system flag: set after a passed self test.
    pub const SYS: u8 = 1 << 2;
    /// The last write was a command (0x64), not data.
    pub const CMD: u8 = 1 << 3;
    /// The keyboard inhibit switch: set when not inhibited.
    pub const KEYLOCK: u8 = 1 << 4;
    /// The byte in the output buffer came from the aux device.
    pub const AUXDATA: u8 = 1 << 5;
    /// The device did not answer: the byte is the controller's 0xfe.
    pub const TIMEOUT: u8 = 1 << 6;
}

/// Controller commands.
pub mod cmd {
    pub const READ_CCB: u8 = 0x20;
    pub const WRITE_CCB: u8 = 0x60;
    pub const DISABLE_AUX: u8 = 0xa7;
    pub const ENABLE_AUX: u8 = 0xa8;
    pub const TEST_AUX: u8 = 0xa9;
    pub const SELF_TEST: u8 = 0xaa;
    pub const TEST_KBD: u8 = 0xab;
    pub const DISABLE_KBD: u8 = 0xad;
    pub const ENABLE_KBD: u8 = 0xae;
    pub const READ_OUTPUT: u8 = 0xd0;
    pub const WRITE_OUTPUT: u8 = 0xd1;
    pub const KBD_LOOP: u8 = 0xd2;
    pub const AUX_LOOP: u8 = 0xd3;
    pub const WRITE_AUX: u8 = 0xd4;
    /// 0xf0-0xff: pulse the output bits whose low-nibble bit is clear.
    pub const PULSE: u8 = 0xf0;
}

/// Command byte bits.
const CCB_KBD_INT: u8 = 1 << 0;
const CCB_AUX_INT: u8 = 1 << 1;
const CCB_KBD_DISABLED: u8 = 1 << 4;
const CCB_AUX_DISABLED: u8 = 1 << 5;
/// Output port bits: reset (active low), A20.
const OUT_RESET_N: u8 = 1 << 0;
const OUT_A20: u8 = 1 << 1;
/// What the controller answers for a device that did not.
const NO_DEVICE: u8 = 0xfe;

/// Which side a byte in the output buffer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kbd,
    Aux,
}

#[derive(Debug)]
pub struct I8042 {
    status: u8,
    ccb: u8,
    output_port: u8,
    /// The output buffer: a byte, its side, and whether it is the time-out
    /// answer.
    out: Option<(u8, Side, bool)>,
    /// A command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    power: PowerLatch,
    /// IRQ 1 and IRQ 12 (none: unconnected), and their levels.
    irqs: Option<[IsaIrqLine; 2]>,
    levels: [bool; 2],
}

impl I8042 {
    pub fn new(power: PowerLatch, irqs: Option<[IsaIrqLine; 2]>) -> I8042 {
        I8042 {
            status: status::KEYLOCK,
            ccb: 0,
            output_port: OUT_RESET_N | OUT_A20,
            out: None,
            pending: None,
            power,
            irqs,
            levels: [false; 2],
        }
    }

    fn reply(&mut self, v: u8) {
        self.out = Some((v, Side::Kbd, false));
    }

    fn command(&mut self, c: u8) {
        self.status |= status::CMD;
        match c {
            cmd::READ_CCB => self.reply(self.ccb),
            cmd::WRITE_CCB | cmd::WRITE_OUTPUT | cmd::KBD_LOOP | cmd::AUX_LOOP | cmd::WRITE_AUX => {
                self.pending = Some(c)
            }
            cmd::DISABLE_AUX => self.ccb |= CCB_AUX_DISABLED,
            cmd::ENABLE_AUX => self.ccb &= !CCB_AUX_DISABLED,
            cmd::TEST_AUX | cmd::TEST_KBD => self.reply(0x00),
            cmd::SELF_TEST => {
                self.status |= status::SYS;
                self.reply(0x55);
            }
            cmd::DISABLE_KBD => self.ccb |= CCB_KBD_DISABLED,
            cmd::ENABLE_KBD => self.ccb &= !CCB_KBD_DISABLED,
            cmd::READ_OUTPUT => self.reply(self.output_port),
            c if c >= cmd::PULSE && c & 1 == 0 => {
                self.power.request(PowerRequest::Reset(ResetSource::Keyboard));
            }
            _ => {}
        }
    }

    fn data(&mut self, v: u8) {
        self.status &= !status::CMD;
        match self.pending.take() {
            Some(cmd::WRITE_CCB) => self.ccb = v,
            Some(cmd::WRITE_OUTPUT) => {
                if v & OUT_RESET_N == 0 {
                    self.power.request(PowerRequest::Reset(ResetSource::Keyboard));
                }
                self.output_port = v | OUT_RESET_N;
            }
            Some(cmd::KBD_LOOP) => self.out = Some((v, Side::Kbd, false)),
            Some(cmd::AUX_LOOP) => self.out = Some((v, Side::Aux, false)),
            Some(cmd::WRITE_AUX) => self.out = Some((NO_DEVICE, Side::Aux, true)),
            _ => self.out = Some((NO_DEVICE, Side::Kbd, true)),
        }
    }

    fn read_status(&self) -> u8 {
        let (full, aux, timeout) = match self.out {
            Some((_, side, t)) => (status::OBF, side == Side::Aux, t),
            None => (0, false, false),
        };
        self.status | full | if aux { status::AUXDATA } else { 0 } | if timeout { status::TIMEOUT } else { 0 }
    }

    fn read_data(&mut self) -> u8 {
        self.out.take().map_or(0, |(v, _, _)| v)
    }

    /// Drives IRQ 1 and IRQ 12 from the output buffer and the command
    /// byte's interrupt enables.
    fn update_irqs(&mut self, ctx: &mut DeviceCtx<'_>) {
        let Some(irqs) = &self.irqs else { return };
        let side = self.out.map(|(_, side, _)| side);
        let want = [
            side == Some(Side::Kbd) && self.ccb & CCB_KBD_INT != 0,
            side == Some(Side::Aux) && self.ccb & CCB_AUX_INT != 0,
        ];
        for (i, line) in irqs.iter().enumerate() {
            if want[i] != self.levels[i] {
                line.set(want[i], ctx);
                self.levels[i] = want[i];
            }
        }
    }

    /// The A20 gate as the output port has it.
    pub fn a20(&self) -> bool {
        self.output_port & OUT_A20 != 0
    }
}

/// The controller shared by its two ports.
pub type SharedI8042 = Arc<Mutex<I8042>>;

/// Which port a face is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Data,
    Command,
}

/// Port 0x60 or port 0x64.
pub struct I8042Port {
    pub controller: SharedI8042,
    pub port: Port,
}

impl Device for I8042Port {
    fn read(&mut self, _: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let mut c = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        let v = match self.port {
            Port::Command => c.read_status(),
            Port::Data => c.read_data(),
        };
        data.fill(v);
        c.update_irqs(ctx);
    }

    fn write(&mut self, _: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let Some(&v) = data.first() else { return };
        let mut c = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        match self.port {
            Port::Command => c.command(v),
            Port::Data => c.data(v),
        }
        c.update_irqs(ctx);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::TestMemory;

    fn ports(latch: &PowerLatch) -> (I8042Port, I8042Port) {
        let c: SharedI8042 = Arc::new(Mutex::new(I8042::new(latch.clone(), None)));
        (I8042Port { controller: c.clone(), port: Port::Data }, I8042Port { controller: c, port: Port::Command })
    }

    #[test]
    fn command_0xfe_pulses_reset() {
        let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
        let (_, mut command) = ports(&latch);
        m.write_bytes(&mut command, 0, 0, &[0xfe]);
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::Keyboard)));
        m.write_bytes(&mut command, 0, 0, &[0xff]);
        assert_eq!(latch.take(), None, "0xff pulses nothing");
    }

    #[test]
    fn self_test_command_byte_and_output_port() {
        let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
        let (mut data, mut command) = ports(&latch);
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1), [status::KEYLOCK]);
        m.write_bytes(&mut command, 0, 0, &[cmd::SELF_TEST]);
        let st = status::OBF | status::SYS | status::CMD | status::KEYLOCK;
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1), [st]);
        assert_eq!(m.read_bytes(&mut data, 0, 0, 1), [0x55]);
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1)[0] & status::OBF, 0);
        m.write_bytes(&mut command, 0, 0, &[cmd::WRITE_CCB]);
        m.write_bytes(&mut data, 0, 0, &[0x45]);
        m.write_bytes(&mut command, 0, 0, &[cmd::READ_CCB]);
        assert_eq!(m.read_bytes(&mut data, 0, 0, 1), [0x45]);
        m.write_bytes(&mut command, 0, 0, &[cmd::DISABLE_KBD]);
        m.write_bytes(&mut command, 0, 0, &[cmd::READ_CCB]);
        assert_eq!(m.read_bytes(&mut data, 0, 0, 1), [0x55]);
        // Output port: clear A20, then drop the reset line.
        m.write_bytes(&mut command, 0, 0, &[cmd::WRITE_OUTPUT]);
        m.write_bytes(&mut data, 0, 0, &[OUT_RESET_N]);
        assert!(!data.controller.lock().unwrap().a20());
        assert_eq!(latch.peek(), None);
        m.write_bytes(&mut command, 0, 0, &[cmd::WRITE_OUTPUT]);
        m.write_bytes(&mut data, 0, 0, &[0]);
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::Keyboard)));
    }

    /// Linux's i8042 probe (drivers/input/serio/i8042.c): the AUX loop
    /// (0xd3) echoes its byte as aux data and raises IRQ 12 once the
    /// command byte enables it (`i8042_check_aux`'s IRQ test); a byte for
    /// the absent keyboard or mouse comes back as 0xfe with the time-out
    /// bit (libps2 then fails the command at once).
    #[test]
    fn loop_back_and_absent_devices_as_linux_probes_them() {
        use crate::devices::isa_irq::Recorder;
        let (latch, m) = (PowerLatch::default(), TestMemory::new(4096));
        let (rec, kbd) = Recorder::line(KBD_IRQ);
        let aux = IsaIrqLine::new(rec.clone(), AUX_IRQ);
        let c: SharedI8042 = Arc::new(Mutex::new(I8042::new(latch, Some([kbd, aux]))));
        let mut data = I8042Port { controller: c.clone(), port: Port::Data };
        let mut command = I8042Port { controller: c, port: Port::Command };
        m.write_bytes(&mut command, 0, 0, &[cmd::AUX_LOOP]);
        m.write_bytes(&mut data, 0, 0, &[0x5a]);
        let st = status::OBF | status::KEYLOCK | status::AUXDATA;
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1), [st]);
        assert_eq!(m.read_bytes(&mut data, 0, 0, 1), [0x5a]);
        assert_eq!(Recorder::take(&rec), [], "interrupts not enabled yet");
        m.write_bytes(&mut command, 0, 0, &[cmd::WRITE_CCB]);
        m.write_bytes(&mut data, 0, 0, &[CCB_KBD_INT | CCB_AUX_INT]);
        m.write_bytes(&mut command, 10, 0, &[cmd::AUX_LOOP]);
        m.write_bytes(&mut data, 10, 0, &[0xa5]);
        assert_eq!(Recorder::take(&rec), [(AUX_IRQ, true, 10)]);
        assert_eq!(m.read_bytes(&mut data, 20, 0, 1), [0xa5]);
        assert_eq!(Recorder::take(&rec), [(AUX_IRQ, false, 20)]);
        m.write_bytes(&mut data, 30, 0, &[0xf2]); // ATKBD_CMD_GETID
        assert_eq!(Recorder::take(&rec), [(KBD_IRQ, true, 30)]);
        let st = status::OBF | status::KEYLOCK | status::TIMEOUT;
        assert_eq!(m.read_bytes(&mut command, 30, 0, 1), [st]);
        assert_eq!(m.read_bytes(&mut data, 40, 0, 1), [NO_DEVICE]);
        m.write_bytes(&mut command, 50, 0, &[cmd::WRITE_AUX]);
        m.write_bytes(&mut data, 50, 0, &[0xff]); // PSMOUSE_CMD_RESET_BAT
        let st = status::OBF | status::KEYLOCK | status::AUXDATA | status::TIMEOUT;
        assert_eq!(m.read_bytes(&mut command, 50, 0, 1), [st]);
    }
}

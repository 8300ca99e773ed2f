//! The 8042 keyboard controller as far as a PC guest uses it without a
//! keyboard: the status register and command port at 0x64, the data port
//! at 0x60 (IBM PC/AT Technical Reference, "Keyboard Controller"). It
//! answers the controller commands kernels send while probing and
//! resetting: read/write the command byte (0x20/0x60), self test (0xaa ->
//! 0x55), interface tests (0xab, 0xa9 -> 0x00), disable/enable the
//! keyboard and aux interfaces (0xad/0xae, 0xa7/0xa8), read/write the
//! output port (0xd0/0xd1; output bit 0 low is a reset, bit 1 the A20
//! gate) and pulse output bits (0xf0-0xff: a bit clear in the low nibble
//! pulses that line, so 0xfe pulses reset). Bytes for the keyboard
//! itself are dropped: no keyboard is attached, none answers.

use crate::bus::{Device, DeviceCtx};
use crate::devices::power::{PowerLatch, PowerRequest, ResetSource};
use std::sync::{Arc, Mutex};

/// Port offsets of the two faces' bus ranges.
pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;

/// Status register bits.
pub mod status {
    /// Output buffer full: a byte waits on port 0x60.
    pub const OBF: u8 = 1 << 0;
    /// The system flag: set after a passed self test.
    pub const SYS: u8 = 1 << 2;
    /// The last write was a command (0x64), not data.
    pub const CMD: u8 = 1 << 3;
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
    /// 0xf0-0xff: pulse the output bits whose low-nibble bit is clear.
    pub const PULSE: u8 = 0xf0;
}

/// Command byte bits.
const CCB_KBD_DISABLED: u8 = 1 << 4;
const CCB_AUX_DISABLED: u8 = 1 << 5;
/// Output port bits: reset (active low), A20.
const OUT_RESET_N: u8 = 1 << 0;
const OUT_A20: u8 = 1 << 1;

#[derive(Debug)]
pub struct I8042 {
    status: u8,
    ccb: u8,
    output_port: u8,
    out: Option<u8>,
    /// A command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    power: PowerLatch,
}

impl I8042 {
    pub fn new(power: PowerLatch) -> I8042 {
        I8042 { status: 0, ccb: 0, output_port: OUT_RESET_N | OUT_A20, out: None, pending: None, power }
    }

    fn reply(&mut self, v: u8) {
        self.out = Some(v);
    }

    fn command(&mut self, c: u8) {
        self.status |= status::CMD;
        match c {
            cmd::READ_CCB => self.reply(self.ccb),
            cmd::WRITE_CCB | cmd::WRITE_OUTPUT => self.pending = Some(c),
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
            _ => {} // for the keyboard, which is not there
        }
    }

    fn read_status(&self) -> u8 {
        self.status | u8::from(self.out.is_some())
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
    fn read(&mut self, _: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        let mut c = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        let v = match self.port {
            Port::Command => c.read_status(),
            Port::Data => c.out.take().unwrap_or(0),
        };
        data.fill(v);
    }

    fn write(&mut self, _: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        let Some(&v) = data.first() else { return };
        let mut c = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        match self.port {
            Port::Command => c.command(v),
            Port::Data => c.data(v),
        }
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
        let c: SharedI8042 = Arc::new(Mutex::new(I8042::new(latch.clone())));
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
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1), [0]);
        m.write_bytes(&mut command, 0, 0, &[cmd::SELF_TEST]);
        assert_eq!(m.read_bytes(&mut command, 0, 0, 1), [status::OBF | status::SYS | status::CMD]);
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
}

//! PCI configuration mechanism #1 (PCI Local Bus Specification 3.0,
//! 3.2.2.3.2) on ports 0xcf8-0xcff: CONFIG_ADDRESS (a dword at 0xcf8:
//! enable bit 31, bus 23:16, device 15:11, function 10:8, register 7:2)
//! and CONFIG_DATA (0xcfc-0xcff, any width at the register plus the port's
//! low bits). One function exists: the host bridge at 00:00.0, with the
//! identity of QEMU's i440FX (vendor 8086h, device 1237h, class 060000h);
//! an absent function reads all ones and ignores writes, which is how a
//! guest's scan learns it is absent. A byte access at 0xcf9 is the reset
//! control register ([`ResetControl`]), as the PIIX decodes it.

use crate::bus::{Device, DeviceCtx};
use crate::devices::reset::ResetControl;

pub const CONFIG_ADDRESS: u64 = 0;
/// The reset control register's offset in this range (port 0xcf9).
pub const RESET_CONTROL: u64 = 1;
pub const CONFIG_DATA: u64 = 4;
/// The ports this device decodes: 0xcf8-0xcff.
pub const PCI_IO_BASE: u16 = 0xcf8;
pub const PCI_IO_SIZE: u64 = 8;
pub const ENABLE: u32 = 1 << 31;

/// The host bridge's identity (QEMU hw/pci-host/i440fx.c).
pub const HOST_VENDOR: u16 = 0x8086;
pub const HOST_DEVICE: u16 = 0x1237;
pub const HOST_REVISION: u8 = 0x02;
/// Class code: bridge (06h), host bridge (00h), programming interface 0.
pub const HOST_CLASS: u32 = 0x06_0000;
/// Configuration header registers.
pub const VENDOR_ID: usize = 0x00;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const HEADER_TYPE: usize = 0x0e;
/// Command register bits software may set on a host bridge: I/O space,
/// memory space, bus master, SERR# enable... kept to those three.
const COMMAND_WRITABLE: u16 = 0x0007;

pub struct PciHost {
    address: u32,
    /// The host bridge's 256-byte configuration space.
    config: [u8; 256],
    reset: ResetControl,
}

impl PciHost {
    pub fn new(reset: ResetControl) -> PciHost {
        let mut config = [0u8; 256];
        config[VENDOR_ID..VENDOR_ID + 2].copy_from_slice(&HOST_VENDOR.to_le_bytes());
        config[VENDOR_ID + 2..VENDOR_ID + 4].copy_from_slice(&HOST_DEVICE.to_le_bytes());
        config[COMMAND..COMMAND + 2].copy_from_slice(&0x0006u16.to_le_bytes()); // memory, master
        config[REVISION_ID] = HOST_REVISION;
        config[REVISION_ID + 1..REVISION_ID + 4].copy_from_slice(&HOST_CLASS.to_le_bytes()[..3]);
        config[HEADER_TYPE] = 0; // type 0, single function
        PciHost { address: 0, config, reset }
    }

    /// The configuration-space offset CONFIG_ADDRESS selects for the host
    /// bridge, `None` when disabled or another function.
    fn selected(&self) -> Option<usize> {
        let bdf = (self.address >> 8) & 0xffff;
        (self.address & ENABLE != 0 && bdf == 0).then_some((self.address & 0xfc) as usize)
    }

    fn read_config(&self, at: usize, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.config.get(at + i).copied().unwrap_or(0xff);
        }
    }

    fn write_config(&mut self, at: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let reg = at + i;
            if reg == COMMAND || reg == COMMAND + 1 {
                let shift = 8 * (reg - COMMAND);
                let mask = (COMMAND_WRITABLE >> shift) as u8;
                self.config[reg] = (self.config[reg] & !mask) | (v & mask);
            }
            // Everything else on the host bridge is read-only here.
        }
    }
}

impl Device for PciHost {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        match (offset, data.len()) {
            (CONFIG_ADDRESS, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (RESET_CONTROL, 1) => data[0] = self.reset.read(),
            (CONFIG_DATA..=7, _) => match self.selected() {
                Some(reg) => self.read_config(reg + (offset - CONFIG_DATA) as usize, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        match (offset, data.len()) {
            (CONFIG_ADDRESS, 4) => {
                // Bits 1:0 are reserved and read back zero.
                self.address = u32::from_le_bytes(data.try_into().expect("4 bytes")) & !3;
            }
            (RESET_CONTROL, 1) => self.reset.write(data[0]),
            (CONFIG_DATA..=7, _) => {
                if let Some(reg) = self.selected() {
                    self.write_config(reg + (offset - CONFIG_DATA) as usize, data);
                }
            }
            _ => {}
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::power::{PowerLatch, PowerRequest, ResetSource};
    use crate::devices::testing::TestMemory;

    fn address(bus: u32, dev: u32, func: u32, reg: u32) -> u32 {
        ENABLE | bus << 16 | dev << 11 | func << 8 | reg
    }

    fn host() -> (PciHost, PowerLatch, TestMemory) {
        let latch = PowerLatch::default();
        (PciHost::new(ResetControl::new(latch.clone())), latch, TestMemory::new(4096))
    }

    #[test]
    fn host_bridge_identity_at_00_00_0() {
        let (mut pci, _, m) = host();
        m.write_reg(&mut pci, 0, CONFIG_ADDRESS, address(0, 0, 0, 0));
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0x1237_8086);
        m.write_reg(&mut pci, 0, CONFIG_ADDRESS, address(0, 0, 0, 8));
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0x0600_0002);
        // A byte read of the class's base byte: CONFIG_DATA + 3.
        assert_eq!(m.read_bytes(&mut pci, 0, CONFIG_DATA + 3, 1), [0x06]);
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_ADDRESS), address(0, 0, 0, 8));
    }

    #[test]
    fn absent_functions_and_disabled_cycles_read_all_ones() {
        let (mut pci, _, m) = host();
        for a in [address(0, 1, 0, 0), address(0, 0, 1, 0), address(1, 0, 0, 0), address(0, 0, 0, 0) & !ENABLE] {
            m.write_reg(&mut pci, 0, CONFIG_ADDRESS, a);
            assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0xffff_ffff, "{a:#x}");
            assert_eq!(m.read_bytes(&mut pci, 0, CONFIG_DATA + 2, 2), [0xff, 0xff]);
            m.write_reg(&mut pci, 0, CONFIG_DATA, 0);
        }
        m.write_reg(&mut pci, 0, CONFIG_ADDRESS, address(0, 0, 0, 0));
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0x1237_8086, "writes elsewhere changed nothing");
    }

    #[test]
    fn only_the_command_bits_are_writable() {
        let (mut pci, _, m) = host();
        m.write_reg(&mut pci, 0, CONFIG_ADDRESS, address(0, 0, 0, 4));
        m.write_reg(&mut pci, 0, CONFIG_DATA, 0xffff_ffff);
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0x0000_0007);
        m.write_reg(&mut pci, 0, CONFIG_ADDRESS, address(0, 0, 0, 0));
        m.write_reg(&mut pci, 0, CONFIG_DATA, 0);
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_DATA), 0x1237_8086);
    }

    #[test]
    fn byte_at_0xcf9_is_reset_control() {
        let (mut pci, latch, m) = host();
        m.write_bytes(&mut pci, 0, RESET_CONTROL, &[0x02]);
        m.write_bytes(&mut pci, 0, RESET_CONTROL, &[0x06]);
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::ResetControl)));
        assert_eq!(m.read_reg(&mut pci, 0, CONFIG_ADDRESS), 0, "CONFIG_ADDRESS untouched");
    }
}

//! QEMU's firmware configuration device (docs/specs/fw_cfg.rst) through
//! its legacy x86 I/O ports: a 16-bit write to the selector (0x510) picks
//! an item and rewinds it, byte reads of the data port (0x511) step
//! through it, and reads past its end, or of an unknown item, return 0.
//! The items are those kvm-unit-tests reads (lib/x86/fwcfg.h): the
//! signature "QEMU", FW_CFG_ID (bit 0: the traditional interface; no
//! DMA), FW_CFG_RAM_SIZE, FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS and
//! FW_CFG_MAX_RAM (0x11, kvm-unit-tests' own key), little-endian.

use crate::bus::{Device, DeviceCtx};

pub const FW_CFG_PORT: u16 = 0x510;
pub const FW_CFG_SIZE: u64 = 2;
pub const SELECTOR: u64 = 0;
pub const DATA: u64 = 1;

pub const FW_CFG_SIGNATURE: u16 = 0x00;
pub const FW_CFG_ID: u16 = 0x01;
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
pub const FW_CFG_NB_CPUS: u16 = 0x05;
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
pub const FW_CFG_MAX_RAM: u16 = 0x11;
/// FW_CFG_ID bit 0: the traditional (port) interface.
pub const ID_TRADITIONAL: u32 = 1;

/// What the machine tells its firmware (and kvm-unit-tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwCfgMachine {
    pub ram_size: u64,
    pub cpus: u16,
    /// Highest RAM address + 1 (FW_CFG_MAX_RAM).
    pub max_ram: u64,
}

pub struct FwCfg {
    machine: FwCfgMachine,
    selector: u16,
    offset: usize,
}

impl FwCfg {
    pub fn new(machine: FwCfgMachine) -> FwCfg {
        FwCfg { machine, selector: FW_CFG_SIGNATURE, offset: 0 }
    }

    /// Item `key`'s bytes, empty for an unknown key.
    fn item(&self, key: u16) -> Vec<u8> {
        let m = &self.machine;
        match key {
            FW_CFG_SIGNATURE => b"QEMU".to_vec(),
            FW_CFG_ID => ID_TRADITIONAL.to_le_bytes().to_vec(),
            FW_CFG_RAM_SIZE => m.ram_size.to_le_bytes().to_vec(),
            FW_CFG_NB_CPUS | FW_CFG_MAX_CPUS => m.cpus.to_le_bytes().to_vec(),
            FW_CFG_MAX_RAM => m.max_ram.to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    }
}

impl Device for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        if offset != DATA {
            data.fill(0);
            return;
        }
        let item = self.item(self.selector);
        for d in data.iter_mut() {
            *d = item.get(self.offset).copied().unwrap_or(0);
            self.offset = self.offset.saturating_add(1);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        // The data port is read-only on the legacy interface.
        if offset == SELECTOR {
            let mut b = [0u8; 2];
            let n = data.len().min(2);
            b[..n].copy_from_slice(&data[..n]);
            self.selector = u16::from_le_bytes(b);
            self.offset = 0;
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

    /// kvm-unit-tests' fwcfg_get_u: a 16-bit OUT of the key, then `bytes`
    /// single-byte INs, little-endian.
    fn get(dev: &mut FwCfg, m: &TestMemory, key: u16, bytes: usize) -> u64 {
        m.write_bytes(dev, 0, SELECTOR, &key.to_le_bytes());
        (0..bytes).map(|i| u64::from(m.read_bytes(dev, 0, DATA, 1)[0]) << (8 * i)).sum()
    }

    #[test]
    fn items_read_as_kvm_unit_tests_reads_them() {
        let m = TestMemory::new(4096);
        let mut dev = FwCfg::new(FwCfgMachine { ram_size: 128 << 20, cpus: 1, max_ram: 128 << 20 });
        assert_eq!(get(&mut dev, &m, FW_CFG_SIGNATURE, 4).to_le_bytes()[..4], *b"QEMU");
        assert_eq!(get(&mut dev, &m, FW_CFG_ID, 4), 1);
        assert_eq!(get(&mut dev, &m, FW_CFG_NB_CPUS, 2), 1);
        assert_eq!(get(&mut dev, &m, FW_CFG_RAM_SIZE, 8), 128 << 20);
        assert_eq!(get(&mut dev, &m, FW_CFG_MAX_RAM, 8), 128 << 20);
        assert_eq!(get(&mut dev, &m, 0x1234, 4), 0, "unknown key");
    }

    #[test]
    fn reads_past_the_end_are_zero_and_selecting_rewinds() {
        let m = TestMemory::new(4096);
        let mut dev = FwCfg::new(FwCfgMachine { ram_size: 1, cpus: 2, max_ram: 1 });
        assert_eq!(get(&mut dev, &m, FW_CFG_NB_CPUS, 4), 2, "bytes 2-3 past a u16 item are 0");
        m.write_bytes(&mut dev, 0, DATA, &[9]);
        assert_eq!(get(&mut dev, &m, FW_CFG_NB_CPUS, 1), 2, "data writes change nothing; reselect rewinds");
        assert_eq!(m.read_bytes(&mut dev, 0, SELECTOR, 1), [0]);
    }
}

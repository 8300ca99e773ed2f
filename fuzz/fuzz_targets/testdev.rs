//! pc-testdev: latch, flush page, byte port, IRQ lines and the MMIO window. The whole PC board is built, so
//! what a model raises reaches its neighbours; the offsets aimed at are
//! this model's.
#![no_main]

use exitlab_vmm::devices::hostile;
use exitlab_vmm::devices::pc_board::*;
use exitlab_vmm::devices::testdev::IOMEM_BASE;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[0xe0, 0xe1, 0xe3, 0xe4, 0xe8, 0xeb, 0x2000, 0x200e, 0x2017, IOMEM_BASE, IOMEM_BASE + 0xfffc, IOMEM_BASE + 0xffff];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let config = PcConfig { memory: 128 << 20, cpus: 1, rtc_epoch: 1_700_000_000 };
    hostile::drive(&mut PcBoard::new(&config), REGS, &memory, input);
});

//! The 8259 pair, the ELCR and the IOAPIC, with ISA lines driven through pc-testdev's ports. The whole PC board is built, so
//! what a model raises reaches its neighbours; the offsets aimed at are
//! this model's.
#![no_main]

use exitlab_vmm::devices::hostile;
use exitlab_vmm::devices::ioapic::IOAPIC_BASE;
use exitlab_vmm::devices::pc_board::*;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[PIC_MASTER, PIC_MASTER + 1, PIC_SLAVE, PIC_SLAVE + 1, ELCR, ELCR + 1, 0x2000, 0x2001, 0x2002, 0x2008, 0x200e, 0x2017, IOAPIC_BASE, IOAPIC_BASE + 0x10, IOAPIC_BASE + 0x40];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let config = PcConfig { memory: 128 << 20, cpus: 1, rtc_epoch: 1_700_000_000 };
    hostile::drive(&mut PcBoard::new(&config), REGS, &memory, input);
});

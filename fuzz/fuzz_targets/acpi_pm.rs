//! The ACPI PM1 event, control and timer registers, and isa-debug-exit. The whole PC board is built, so
//! what a model raises reaches its neighbours; the offsets aimed at are
//! this model's.
#![no_main]

use exitlab_vmm::devices::hostile;
use exitlab_vmm::devices::pc_board::*;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[0x600, 0x601, 0x602, 0x604, 0x605, 0x608, 0x60b, 0xf4];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let config = PcConfig { memory: 128 << 20, cpus: 1, rtc_epoch: 1_700_000_000 };
    hostile::drive(&mut PcBoard::new(&config), REGS, &memory, input);
});

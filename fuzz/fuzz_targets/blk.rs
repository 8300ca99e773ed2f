//! Random register and request traffic against the block device.
#![no_main]

use exitlab_guest::layout::blk::*;
use exitlab_vmm::devices::{hostile, BlockDevice};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[STATUS, RING_LO, RING_HI, RING_SIZE, TAIL, HEAD];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    hostile::drive(&mut BlockDevice::new(64, 1_000), REGS, &memory, input);
});

//! Random register and descriptor traffic against the e1000 model.
#![no_main]

use exitlab_guest::nic::e1000::*;
use exitlab_vmm::devices::{hostile, E1000};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[CTRL, ICR, ICS, IMS, IMC, ITR, RCTL, TCTL, RDBAL, RDLEN, RDH, RDT, TDBAL, TDLEN, TDH, TDT, EERD];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    hostile::drive(&mut E1000::new(500), REGS, &memory, input);
});

//! Random register, ring and descriptor traffic against virtio-net.
#![no_main]

use exitlab_guest::nic::virtio::*;
use exitlab_vmm::devices::{hostile, Coalescing, VirtioNet};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const REGS: &[u64] = &[
    STATUS,
    DRIVER_FEATURES_SEL,
    DRIVER_FEATURES,
    QUEUE_SEL,
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_NOTIFY,
    QUEUE_DESC_LOW,
    QUEUE_DRIVER_LOW,
    QUEUE_DEVICE_LOW,
    INTERRUPT_ACK,
];

fuzz_target!(|input: &[u8]| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let mut device = VirtioNet::new(500, Coalescing { n: 2, tau_ns: 1_000 });
    hostile::drive(&mut device, REGS, &memory, input);
});

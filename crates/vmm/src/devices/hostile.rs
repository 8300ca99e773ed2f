//! Hostile-driver traffic for device models: bytes read as a program of
//! register writes and reads, timer ticks, and stores of arbitrary bytes
//! into guest memory (descriptors, rings, indices), run against a device.
//! The device may refuse anything, but must not panic and must keep its
//! DMA inside guest memory. The proptests run it in CI; the cargo-fuzz
//! targets in fuzz/ run it under libFuzzer.

use crate::bus::{Device, DeviceCtx};
use exitlab_hv::device::{Dma, DmaError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// DMA straight into guest memory (what an emulated device gets when the
/// window is all of RAM).
struct Plain<'a>(&'a GuestMemoryMmap);

impl Dma for Plain<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.0.read_slice(buf, GuestAddress(addr)).map_err(|_| DmaError { addr, write: false })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.0.write_slice(data, GuestAddress(addr)).map_err(|_| DmaError { addr, write: true })
    }
}

/// Runs `input` against `device`: each 8-byte step is an op byte, a
/// 16-bit selector and a 32-bit value. Register offsets come mostly from
/// `registers` (the ones that matter), sometimes raw; memory stores land
/// mostly inside `memory`, and values are often small (ring indices,
/// sizes) so the device's deeper paths are reached.
pub fn drive(device: &mut dyn Device, registers: &[u64], memory: &GuestMemoryMmap, input: &[u8]) {
    let size = vm_memory::GuestMemoryBackend::iter(memory).map(vm_memory::GuestMemoryRegion::len).sum::<u64>().max(1);
    let mut now = 0u64;
    for step in input.chunks_exact(8) {
        let sel = u16::from_le_bytes([step[1], step[2]]);
        let raw = u32::from_le_bytes([step[3], step[4], step[5], step[6]]);
        let value = if step[7] & 1 == 0 { raw % 256 } else { raw };
        let offset = if step[7] & 2 == 0 && !registers.is_empty() {
            registers[usize::from(sel) % registers.len()]
        } else {
            u64::from(sel)
        };
        let mut dma = Plain(memory);
        let mut ctx = DeviceCtx::new(now, &mut dma);
        ctx.memory = Some(memory);
        match step[0] % 6 {
            0 | 1 => device.write(offset, &value.to_le_bytes(), &mut ctx),
            2 => device.read(offset, &mut [0u8; 4], &mut ctx),
            3 => {
                now += u64::from(raw % 100_000);
                ctx.now_ns = now;
                device.tick(&mut ctx);
            }
            4 => {
                let at = u64::from(raw) % size;
                let _ = memory.write_slice(&step[1..7], GuestAddress(at));
            }
            _ => device.write(offset, &step[3..5], &mut ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{Coalescing, VirtioNet, E1000};
    use exitlab_guest::nic::{e1000, virtio};
    use proptest::prelude::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    const E1000_REGS: &[u64] = &[
        e1000::CTRL,
        e1000::ICR,
        e1000::ICS,
        e1000::IMS,
        e1000::ITR,
        e1000::RCTL,
        e1000::TCTL,
        e1000::RDBAL,
        e1000::RDLEN,
        e1000::RDH,
        e1000::RDT,
        e1000::TDBAL,
        e1000::TDLEN,
        e1000::TDH,
        e1000::TDT,
        e1000::EERD,
    ];
    const VIRTIO_REGS: &[u64] = &[
        virtio::STATUS,
        virtio::DRIVER_FEATURES_SEL,
        virtio::DRIVER_FEATURES,
        virtio::QUEUE_SEL,
        virtio::QUEUE_NUM,
        virtio::QUEUE_READY,
        virtio::QUEUE_NOTIFY,
        virtio::QUEUE_DESC_LOW,
        virtio::QUEUE_DRIVER_LOW,
        virtio::QUEUE_DEVICE_LOW,
        virtio::INTERRUPT_ACK,
    ];

    proptest! {
        #[test]
        fn e1000_survives_hostile_drivers(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            drive(&mut E1000::new(500), E1000_REGS, &memory(), &input);
        }

        #[test]
        fn virtio_net_survives_hostile_drivers(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut dev = VirtioNet::new(500, Coalescing { n: 2, tau_ns: 1_000 });
            drive(&mut dev, VIRTIO_REGS, &memory(), &input);
        }
    }
}

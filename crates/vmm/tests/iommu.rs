//! The block device behind the IOMMU (modern: assigned, its registers
//! mapped into the guest) and without one (legacy: emulated by the VMM):
//! DMA inside the window moves, DMA outside it is refused and recorded
//! as the same VT-d fault, memory outside the window is untouched, and
//! only the emulated device costs exits.

use exitlab_arch::iommu::{Fault, FaultReason};
use exitlab_arch::ExitReason;
use exitlab_guest::layout::{blk, BLK_BAR};
use exitlab_guest::machine::{Block, GuestRange};
use exitlab_guest::program::{program, Ring, Start};
use exitlab_hv::Vm;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::assign::BLK_SOURCE;
use exitlab_vmm::devices::pattern;
use exitlab_vmm::{run_image, Outcome, RunReport};
use iced_x86::code_asm::*;
use std::num::NonZeroU64;

const WINDOW: u64 = 0x100_0000;
const WINDOW_LEN: u64 = 0x10_0000;
const RING: u64 = WINDOW;
const INSIDE: u64 = WINDOW + 0x1000;
const OUTSIDE: u64 = 0x180_0000;
/// The last 512 bytes of the window: a two-sector read there straddles
/// its end.
const EDGE: u64 = WINDOW + WINDOW_LEN - 512;
const REQUESTS: u32 = 4;

fn request(vm: &SimVm, index: u64, op: u8, sectors: u32, lba: u64, buf: u64) {
    let mut r = [0u8; blk::REQUEST as usize];
    r[blk::REQ_OP as usize] = op;
    r[blk::REQ_STATUS as usize] = 0xee;
    r[4..8].copy_from_slice(&sectors.to_le_bytes());
    r[8..16].copy_from_slice(&lba.to_le_bytes());
    r[16..24].copy_from_slice(&buf.to_le_bytes());
    vm.write_memory(RING + index * blk::REQUEST, &r).unwrap();
}

/// Submits the requests, spins on HEAD until all complete, and exits with
/// the device's STATUS.
fn run(profile: &str) -> (SimVm, RunReport) {
    let start = Start { gpr: [0; 16], rflags: 0 };
    let mut img = program("iommu", Ring::Kernel, &start, |a| {
        let mut spin = a.create_label();
        a.mov(rdi, BLK_BAR)?;
        a.mov(dword_ptr(rdi + blk::RING_LO as i32), RING as u32)?;
        a.mov(dword_ptr(rdi + blk::RING_HI as i32), 0)?;
        a.mov(dword_ptr(rdi + blk::RING_SIZE as i32), 8)?;
        a.mov(dword_ptr(rdi + blk::TAIL as i32), REQUESTS)?;
        a.set_label(&mut spin)?;
        a.pause()?;
        a.cmp(dword_ptr(rdi + blk::HEAD as i32), REQUESTS)?;
        a.jne(spin)?;
        a.mov(eax, dword_ptr(rdi + blk::STATUS as i32))
    })
    .unwrap();
    let rate = NonZeroU64::new(100_000).unwrap();
    img.machine.block = Some(Block { rate, dma: Some(GuestRange { start: WINDOW, len: WINDOW_LEN }) });
    let mut vm = SimVm::with_profile(img.memory_size, Profile::load(profile).unwrap(), 0).unwrap();
    vm.write_memory(OUTSIDE, &[0x77; 4096]).unwrap();
    request(&vm, 0, blk::OP_READ, 2, 5, INSIDE);
    request(&vm, 1, blk::OP_READ, 1, 0, OUTSIDE);
    request(&vm, 2, blk::OP_WRITE, 1, 7, OUTSIDE);
    request(&vm, 3, blk::OP_READ, 2, 9, EDGE);
    let report = run_image(&mut vm, &img).unwrap();
    // The program ends with `out 0xf4, al`: the status is STATUS's low byte.
    assert_eq!(report.outcome, Outcome::Exited { status: blk::STATUS_ERROR }, "{profile}: a request failed");
    (vm, report)
}

fn bytes(vm: &SimVm, gpa: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    vm.read_memory(gpa, &mut b).unwrap();
    b
}

fn disk(from: u64, len: u64) -> Vec<u8> {
    (from..from + len).map(pattern).collect()
}

#[test]
fn dma_outside_the_window_is_blocked_reported_and_leaves_memory_alone() {
    for profile in ["modern", "legacy"] {
        let (vm, r) = run(profile);
        let status = |i: u64| bytes(&vm, RING + i * blk::REQUEST + blk::REQ_STATUS, 1)[0];
        assert_eq!(status(0), blk::ST_OK, "{profile}");
        assert_eq!(bytes(&vm, INSIDE, 1024), disk(5 * 512, 1024), "{profile}: the read landed");
        for i in 1..4 {
            assert_eq!(status(i), blk::ST_DMA_FAULT, "{profile}: request {i}");
        }
        assert_eq!(bytes(&vm, OUTSIDE, 4096), vec![0x77; 4096], "{profile}: nothing reached outside");
        assert_eq!(bytes(&vm, EDGE, 512), disk(9 * 512, 512), "{profile}: the page inside the window moved");
        let fault = |address, reason, write| Fault { source: BLK_SOURCE, address, reason, write };
        assert_eq!(
            r.dma_faults,
            vec![
                fault(OUTSIDE, FaultReason::WriteDenied, true),
                fault(OUTSIDE, FaultReason::ReadDenied, false),
                fault(WINDOW + WINDOW_LEN, FaultReason::WriteDenied, true),
            ],
            "{profile}"
        );
        let all = r.accountant.all();
        let register_exits = all.samples(ExitReason::EptMisconfig) + all.samples(ExitReason::ExceptionNmi);
        if profile == "modern" {
            assert_eq!(register_exits, 0, "an assigned device's registers never exit");
        } else {
            assert!(register_exits >= 6, "every emulated register access exits: {register_exits}");
        }
    }
}

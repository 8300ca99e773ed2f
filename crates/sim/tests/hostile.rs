//! A hostile guest must never crash the simulator: random bytes run as
//! code in ring 0 and ring 3 from random registers, with every exit
//! answered, until the guest ends, faults its way to a report, shuts down,
//! hits something unmodelled, or reaches the instruction limit.

use exitlab_guest::program::{program, Ring, Start};
use exitlab_hv::{Completion, HvError, Vcpu, Vm, VmExit};
use exitlab_sim::{RunLimits, SimVm};
use proptest::prelude::*;

fn run_bytes(ring: Ring, gpr: [u64; 16], rflags: u64, code: &[u8]) {
    let img = program("hostile", ring, &Start { gpr, rflags }, |a| a.db(code)).unwrap();
    let mut vm = SimVm::new(img.memory_size).unwrap();
    vm.set_limits(RunLimits { max_instructions: Some(20_000), max_time_ns: Some(1 << 31) });
    for c in img.boot_layout().chunks {
        vm.write_memory(c.gpa, &c.bytes).unwrap();
    }
    vm.write_memory(img.load_gpa, &img.bytes).unwrap();
    let mut vcpu = vm.create_vcpu(0, &img.boot_layout().state).unwrap();
    for _ in 0..5_000 {
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(HvError::Unsupported(_) | HvError::Limit(_)) => return,
            Err(e) => panic!("backend error from guest code: {e}"),
        };
        match exit {
            VmExit::Io(io) if io.qual.port == exitlab_guest::layout::PORT_DEBUG_EXIT => return,
            VmExit::Io(io) if io.qual.is_in => vcpu.complete_read(&[0xa5; 4]),
            VmExit::Mmio { access, .. } if !access.is_write => vcpu.complete_read(&[0x5a; 8]),
            VmExit::Cpuid { .. } => vcpu.complete(Completion::Cpuid([1, 2, 3, 4])),
            VmExit::MsrRead { msr } => {
                let v = vcpu.read_msr(msr).unwrap();
                vcpu.complete(Completion::MsrRead(v));
            }
            VmExit::MsrWrite { msr, value } => {
                let ok = vcpu.write_msr(msr, value).unwrap();
                vcpu.complete(Completion::MsrWrite(ok));
            }
            VmExit::Hlt => {
                let wake = vcpu.halt().unwrap();
                if wake.is_none() {
                    return;
                }
            }
            VmExit::Shutdown => return,
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_code_never_crashes_the_simulator(
        kernel in any::<bool>(),
        gpr in prop::array::uniform16(any::<u64>()),
        rflags in any::<u64>(),
        code in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        run_bytes(if kernel { Ring::Kernel } else { Ring::User }, gpr, rflags, &code);
    }

    #[test]
    fn random_code_with_small_addresses_never_crashes_the_simulator(
        kernel in any::<bool>(),
        seed in prop::array::uniform16(0u64..0x40_0000),
        code in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        // Registers that point into RAM, page tables and the kernel, so
        // random stores land somewhere that matters.
        run_bytes(if kernel { Ring::Kernel } else { Ring::User }, seed, 0, &code);
    }
}

//! The VMM's instruction emulator (crates/vmm/src/emulate.rs) through its
//! entry point, `emulate_mmio`, over arbitrary instruction bytes,
//! registers, memory and device answers: it decodes bytes a hostile guest
//! chooses. The harness (`emulate::harness`, feature `test-support`) is
//! the one the proptest in crates/vmm/tests/emulate.rs runs; a broken
//! property panics, which libFuzzer reports as a crash.
#![no_main]

use exitlab_vmm::emulate::harness::{Case, Harness};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    /// One simulated VM for the whole run: each case gets a fresh vCPU and
    /// rewrites the memory it uses.
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new());
}

fuzz_target!(|input: &[u8]| {
    let case = Case::from_bytes(input);
    HARNESS.with(|h| {
        let outcome = h.borrow_mut().run(&case);
        if let Err(broken) = outcome.check(&case) {
            panic!("{broken}\ncase: {case:x?}\noutcome: {outcome:x?}");
        }
    });
});

//! The cost of the VMM itself: the same guest run through the full VMM
//! loop (bus dispatch, accounting, histograms) and through a bare loop that
//! only re-enters the vCPU, so their ratio is what exitlab adds per exit.

use crate::builder::load;
use crate::error::VmmError;
use crate::run::run_boot_image;
use exitlab_guest::{layout, BootImage};
use exitlab_hv::{HvError, Vcpu, Vm, VmExit};
use std::time::Instant;

/// Exits taken and the time the loop ran, from the first run call to the
/// end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopTime {
    pub exits: u64,
    pub ns: u64,
}

impl LoopTime {
    pub fn ns_per_exit(&self) -> f64 {
        self.ns as f64 / self.exits.max(1) as f64
    }
}

/// Runs `image` with the least a VMM can do: answer reads with all ones,
/// drop writes, stop at the debug-exit port.
pub fn bare_loop<V: Vm>(vm: &mut V, image: &BootImage) -> Result<LoopTime, VmmError> {
    load(vm, image)?;
    let mut vcpu = vm.create_vcpu(0, &image.boot)?;
    let ones = [0xffu8; 4096];
    let mut exits = 0u64;
    let start = Instant::now();
    loop {
        let exit = vcpu.run()?;
        exits += 1;
        match exit {
            VmExit::Io(io) if io.qual.port == layout::PORT_DEBUG_EXIT && !io.qual.is_in => break,
            VmExit::Io(io) if io.qual.is_in => {
                let len = (usize::from(io.qual.size) * io.count as usize).min(ones.len());
                vcpu.complete_read(&ones[..len]);
            }
            VmExit::Mmio { access, .. } if !access.is_write => vcpu.complete_read(&ones[..usize::from(access.size)]),
            VmExit::Io(_) | VmExit::Mmio { .. } | VmExit::Debug { .. } => {}
            other => return Err(HvError::Backend(format!("bare loop: guest stopped with {:?}", other.reason())).into()),
        }
    }
    Ok(LoopTime { exits, ns: start.elapsed().as_nanos() as u64 })
}

/// Runs `image` through the full VMM loop and reports the same figures.
pub fn vmm_loop<V: Vm>(vm: &mut V, image: &BootImage) -> Result<LoopTime, VmmError> {
    let report = run_boot_image(vm, image, &crate::RunOptions::default())?;
    let all = report.accountant.all();
    Ok(LoopTime { exits: all.total_exits(), ns: all.end_ns.saturating_sub(all.start_ns) })
}

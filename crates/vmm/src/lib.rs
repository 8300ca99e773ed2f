//! The exitlab hypervisor: loads a guest image into a backend VM, runs the
//! vCPU loop, routes port I/O and MMIO to device models, and accounts for
//! every exit. Devices never see the backend; the backend sees a device
//! only when the VMM assigns it to the guest behind an IOMMU.
#![forbid(unsafe_code)]

pub mod account;
pub mod assign;
pub mod bench;
pub mod bus;
pub mod check;
pub mod cpuid;
pub mod devices;
pub mod emulate;
pub mod ept;
pub mod host_tick;
pub mod interrupts;
pub mod iothread;
pub mod monitor;
pub mod packets;
pub mod platform;
pub mod policy;
mod run;
pub mod shadow;
mod table;
pub mod walk;

pub use account::{Accountant, ExitRecord, PhaseStats, ReasonStats, DEVICE_COUNTER_PREFIX, GUEST_COUNTER_PREFIX};
pub use run::{
    run_image, run_image_with, Access, GuestError, Outcome, Protection, RunOptions, RunReport, TraceEntry, VmmError,
};
pub use table::{render_json, render_table, StatView};

//! The exitlab hypervisor: builds a VM from a backend, a guest image and
//! the machine the guest asks for ([`build`]), runs the vCPU loop
//! ([`Vmm::run`]) with one handler module per exit family, routes port I/O
//! and MMIO to device models, and accounts for every exit. Devices never see the backend; the backend sees a device
//! only when the VMM assigns it to the guest behind an IOMMU.
#![forbid(unsafe_code)]

pub mod account;
pub mod assign;
pub mod bench;
mod builder;
pub mod bus;
pub mod check;
pub mod console;
pub mod cpuid;
pub mod devices;
pub mod emulate;
pub mod ept;
mod error;
mod exits;
pub mod firmware;
pub mod host_tick;
pub mod interrupts;
pub mod iothread;
pub mod limits;
pub mod monitor;
pub mod packets;
pub mod pc;
pub mod platform;
pub mod policy;
mod report;
mod run;
pub mod shadow;
pub mod sites;
mod state;
mod table;
pub mod walk;

pub use account::{Accountant, ExitRecord, PhaseStats, ReasonStats, DEVICE_COUNTER_PREFIX, GUEST_COUNTER_PREFIX};
pub use builder::{build, Protection, RunOptions};
pub use error::{Needed, VmmError};
pub use report::{Access, GuestError, Outcome, RunReport, TraceEntry};
pub use run::{run_boot_image, run_image, run_image_with};
pub use state::Vmm;
pub use table::{render_json, render_table, StatView};

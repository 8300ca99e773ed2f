//! The x86-64 and Intel VMX vocabulary exitlab speaks: basic exit reasons,
//! exit-qualification layouts, paging and EPT entry bits, control-register
//! and RFLAGS bits, exception vectors, and the architectural register state
//! a vCPU boots with.
//!
//! Pure data and bit arithmetic: no I/O, no backend. Every name and bit
//! position follows the Intel SDM so code and manual read side by side.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bits;
pub mod cpuid;
pub mod exit_reason;
pub mod input;
pub mod iommu;
pub mod posted;
pub mod qualification;
pub mod state;
pub mod vector;
pub mod vmx;

pub use exit_reason::ExitReason;
pub use qualification::{CrAccessQual, CrAccessType, EptViolationQual, IoQual};
pub use state::{BootState, CpuMode, DescriptorTable, Regs, Segment};

//! Guest images for exitlab, assembled in Rust with iced-x86's
//! CodeAssembler so that every trapping instruction sits exactly where an
//! experiment wants it and no external toolchain is needed.
//!
//! An [`Image`] is plain data: bytes, the guest-physical address they load
//! at, an entry point, symbols and the [`MachineConfig`] the workload asks
//! for. [`boot::BootLayout`] describes the memory and register state the
//! image expects (long mode, identity paging owned by the guest, GDT, TSS,
//! stacks). What the VMM loads is a [`BootImage`]: memory chunks, a boot
//! state, symbols, RAM size and machine, the shape every loader produces.
#![forbid(unsafe_code)]

pub mod anchor;
mod asm;
pub mod boot;
mod image;
mod kernel;
pub mod layout;
pub mod machine;
pub mod nic;
pub mod params;
pub mod pingpong;
pub mod program;
mod workload;

pub use asm::BuildError;
pub use image::{BootImage, Image, MailboxReport};
pub use machine::MachineConfig;
pub use params::{ParamError, ParamKind, ParamSpec, Params};
pub use workload::{find as find_workload, Workload, WORKLOADS};

//! Device models on the exitlab machine's buses. The PC platform's models
//! (acpi, acpi_pm, debug_exit, fw_cfg, i8042, ioapic, irq_chip, isa_irq,
//! pci, pic, pit, power, reset, rtc, testdev) are public modules, so their
//! register names travel with them; none is on the platform's buses yet.

pub mod acpi;
pub mod acpi_pm;
mod blk;
pub mod debug_exit;
mod doorbell;
mod e1000;
pub mod fw_cfg;
// Test helpers, outside the production API: the `test-support` feature turns
// them on for the fuzz targets (fuzz/Cargo.toml) and tests elsewhere.
#[cfg(any(test, feature = "test-support"))]
pub mod hostile;
pub mod i8042;
pub mod ioapic;
pub mod irq_chip;
pub mod isa_irq;
mod isolated;
mod kick;
pub mod pc_board;
pub mod pci;
pub mod pic;
pub mod pit;
mod post;
pub mod power;
pub mod reset;
pub mod rtc;
mod scratch;
mod serial;
pub mod testdev;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod virtio_net;
mod wire;
mod write_log;

pub use blk::{pattern, BlkStats, BlockDevice};
pub use doorbell::Doorbell;
pub use e1000::{E1000Stats, E1000};
pub use isolated::Isolated;
pub use kick::{KickDoorbell, KickHandle};
pub use pic::Pic;
pub use post::PostPort;
pub use scratch::MmioScratch;
pub use serial::Serial;
pub use virtio_net::{Coalescing, VirtioNet, VirtioNetStats};
pub use wire::Wire;
pub use write_log::WriteLog;

//! Device models on the exitlab machine's buses.

mod blk;
mod doorbell;
mod e1000;
pub mod hostile;
mod isolated;
mod kick;
mod pic;
mod post;
mod scratch;
mod serial;
#[cfg(test)]
mod testing;
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

//! Device models on the exitlab machine's buses.

mod blk;
mod doorbell;
mod pic;
mod post;
mod scratch;
mod serial;

pub use blk::{pattern, BlkStats, BlockDevice};
pub use doorbell::Doorbell;
pub use pic::Pic;
pub use post::PostPort;
pub use scratch::MmioScratch;
pub use serial::Serial;

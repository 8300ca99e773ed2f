//! Device models on the exitlab machine's buses.

mod pic;
mod post;
mod scratch;
mod serial;

pub use pic::Pic;
pub use post::PostPort;
pub use scratch::MmioScratch;
pub use serial::Serial;

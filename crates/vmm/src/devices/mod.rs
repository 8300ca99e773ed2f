//! Device models on the exitlab machine's buses.

mod post;
mod scratch;
mod serial;

pub use post::PostPort;
pub use scratch::MmioScratch;
pub use serial::Serial;

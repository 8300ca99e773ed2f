//! Device models on the exitlab machine's buses. The PC platform's models
//! (ioapic, irq_chip, isa_irq, pit, rtc and the rest below pic) are public
//! modules so their register names travel with them.

mod blk;
mod doorbell;
mod e1000;
pub mod hostile;
pub mod ioapic;
pub mod irq_chip;
pub mod isa_irq;
mod isolated;
mod kick;
pub mod pic;
pub mod pit;
mod post;
pub mod rtc;
mod scratch;
mod serial;
#[cfg(test)]
mod testing;
mod virtio_net;
mod wire;

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

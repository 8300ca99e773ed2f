//! The far end of a network device's cable: frames sent take `delay_ns`
//! to reach an echo peer, which sends each straight back (destination and
//! source addresses swapped) over the same delay. In virtual time on the
//! simulator: a frame sent at t arrives back at t + 2 x delay.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Wire {
    delay_ns: u64,
    /// Frames on their way back, in arrival order (one delay: FIFO).
    returning: VecDeque<(u64, Vec<u8>)>,
    pub sent: u64,
    pub received: u64,
    /// Frames sent while [`MAX_IN_FLIGHT`] were on the wire: lost.
    pub lost: u64,
}

/// The most frames on their way back at once. A 1 Gb/s cable carries
/// about 1,500 minimum-size frames per 2 x 1 ms round trip; a guest that
/// sends faster than the echoes drain loses frames, as an overrun link
/// does, instead of growing the VMM's memory without a bound.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Ethernet's smallest frame without the FCS: shorter frames are padded.
const MIN_FRAME: usize = 60;

impl Wire {
    pub fn new(delay_ns: u64) -> Wire {
        Wire { delay_ns, ..Wire::default() }
    }

    /// Puts `frame` on the wire at `now_ns`; returns when its echo arrives,
    /// or `None` when the wire is full and the frame is lost.
    pub fn send(&mut self, now_ns: u64, frame: &[u8]) -> Option<u64> {
        if self.returning.len() >= MAX_IN_FLIGHT {
            self.lost += 1;
            return None;
        }
        self.sent += 1;
        let mut echo = frame.to_vec();
        if echo.len() < MIN_FRAME {
            echo.resize(MIN_FRAME, 0);
        }
        if echo.len() >= 12 {
            let (dst, src) = echo.split_at_mut(6);
            dst.swap_with_slice(&mut src[..6]);
        }
        let at = now_ns.saturating_add(self.delay_ns.saturating_mul(2));
        self.returning.push_back((at, echo));
        Some(at)
    }

    /// When the next echo arrives, if one is on its way.
    pub fn next_arrival(&self) -> Option<u64> {
        self.returning.front().map(|(t, _)| *t)
    }

    /// The next echo that has arrived by `now_ns`.
    pub fn arrived(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        if self.next_arrival()? > now_ns {
            return None;
        }
        self.received += 1;
        self.returning.pop_front().map(|(_, f)| f)
    }

    /// Puts an arrived frame back at the head (the device had no room).
    pub fn hold(&mut self, now_ns: u64, frame: Vec<u8>) {
        self.received -= 1;
        self.returning.push_front((now_ns, frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_come_back_after_two_delays_with_addresses_swapped() {
        let mut w = Wire::new(5_000);
        let frame: Vec<u8> = (0..64).collect();
        assert_eq!(w.send(100, &frame), Some(10_100));
        assert_eq!(w.send(200, &[1, 2, 3]), Some(10_200));
        assert_eq!(w.arrived(10_099), None);
        let echo = w.arrived(10_100).unwrap();
        assert_eq!(&echo[..6], &frame[6..12]);
        assert_eq!(&echo[6..12], &frame[..6]);
        assert_eq!(&echo[12..], &frame[12..]);
        assert_eq!(w.arrived(20_000).unwrap().len(), MIN_FRAME, "runts are padded");
        assert_eq!((w.sent, w.received, w.next_arrival()), (2, 2, None));
    }

    #[test]
    fn a_full_wire_loses_frames_instead_of_growing() {
        let mut w = Wire::new(u64::MAX);
        for _ in 0..MAX_IN_FLIGHT {
            assert_eq!(w.send(1, &[0; 60]), Some(u64::MAX), "saturates, never wraps to an early arrival");
        }
        assert_eq!(w.send(1, &[0; 60]), None);
        assert_eq!((w.sent, w.lost), (MAX_IN_FLIGHT as u64, 1));
    }
}

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
}

/// Ethernet's smallest frame without the FCS: shorter frames are padded.
const MIN_FRAME: usize = 60;

impl Wire {
    pub fn new(delay_ns: u64) -> Wire {
        Wire { delay_ns, ..Wire::default() }
    }

    /// Puts `frame` on the wire at `now_ns`; returns when its echo arrives.
    pub fn send(&mut self, now_ns: u64, frame: &[u8]) -> u64 {
        self.sent += 1;
        let mut echo = frame.to_vec();
        if echo.len() < MIN_FRAME {
            echo.resize(MIN_FRAME, 0);
        }
        if echo.len() >= 12 {
            let (dst, src) = echo.split_at_mut(6);
            dst.swap_with_slice(&mut src[..6]);
        }
        let at = now_ns + 2 * self.delay_ns;
        self.returning.push_back((at, echo));
        at
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
        assert_eq!(w.send(100, &frame), 10_100);
        assert_eq!(w.send(200, &[1, 2, 3]), 10_200);
        assert_eq!(w.arrived(10_099), None);
        let echo = w.arrived(10_100).unwrap();
        assert_eq!(&echo[..6], &frame[6..12]);
        assert_eq!(&echo[6..12], &frame[..6]);
        assert_eq!(&echo[12..], &frame[12..]);
        assert_eq!(w.arrived(20_000).unwrap().len(), MIN_FRAME, "runts are padded");
        assert_eq!((w.sent, w.received, w.next_arrival()), (2, 2, None));
    }
}

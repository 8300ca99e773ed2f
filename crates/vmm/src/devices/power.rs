//! Requests to end or restart the machine that devices make on the
//! guest's behalf (a reset through 0xcf9, 0x92 or the keyboard
//! controller, an ACPI soft-off, a status on isa-debug-exit). A device
//! records the request in a [`PowerLatch`] it shares with the run loop,
//! which acts on it after the access that made it; the first request
//! stands until the run loop takes it.

use std::sync::{Arc, Mutex};

/// Which path asked for a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSource {
    /// The reset control register, port 0xcf9.
    ResetControl,
    /// System control port A (port 0x92) bit 0, fast reset.
    FastReset,
    /// The 8042 keyboard controller pulsing its reset output (0xfe).
    Keyboard,
}

/// What the guest asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRequest {
    /// A system reset.
    Reset(ResetSource),
    /// ACPI S5 (soft off) through PM1 control.
    PowerOff,
    /// isa-debug-exit: the process status QEMU would exit with,
    /// `(code << 1) | 1`.
    Exit { status: u32 },
}

/// A shared slot for the first request.
#[derive(Clone, Debug, Default)]
pub struct PowerLatch(Arc<Mutex<Option<PowerRequest>>>);

impl PowerLatch {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<PowerRequest>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `request` unless one is already waiting.
    pub fn request(&self, request: PowerRequest) {
        self.slot().get_or_insert(request);
    }

    /// The waiting request, if any, leaving none.
    pub fn take(&self) -> Option<PowerRequest> {
        self.slot().take()
    }

    /// The waiting request, left in place.
    pub fn peek(&self) -> Option<PowerRequest> {
        *self.slot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_stands_until_taken() {
        let latch = PowerLatch::default();
        let device_side = latch.clone();
        device_side.request(PowerRequest::Reset(ResetSource::Keyboard));
        device_side.request(PowerRequest::PowerOff);
        assert_eq!(latch.peek(), Some(PowerRequest::Reset(ResetSource::Keyboard)));
        assert_eq!(latch.take(), Some(PowerRequest::Reset(ResetSource::Keyboard)));
        assert_eq!(latch.take(), None);
    }
}

//! The limits the VMM keeps on every run, on every backend, so that no
//! guest (a livelocked driver under an interrupt storm, a loop that never
//! ends) hangs exitlab: host (wall-clock) time and exits without progress.
//! A run stopped by one ends as [`crate::GuestError::Runaway`] with one
//! line saying which limit, where the guest was and what it was doing.
//!
//! Guest time is the backends' own: the simulator keeps it (with its
//! instruction limit) inside its interpreter (exitlab_sim::RunLimits), and
//! KVM, whose guest time is host time, with a watchdog that kicks the vCPU
//! out of KVM_RUN; both stop a guest that never exits, which the VMM,
//! seeing only exits and device wake-ups, cannot.

use exitlab_arch::ExitReason;
use std::time::{Duration, Instant};

/// Limits of one run; `None` is no limit. [`Limits::default`] is
/// [`Limits::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Host time the run may take, checked at each exit and device
    /// wake-up.
    pub host: Option<Duration>,
    /// Consecutive exits with no guest instruction retired between any two
    /// of them, on backends that count retired instructions (the
    /// simulator): a guest that only exits (an interrupt storm that
    /// re-exits on every entry) makes no progress.
    pub stalled_exits: Option<u64>,
}

impl Limits {
    /// The defaults: ten minutes of host time (a built-in full point
    /// takes seconds) and a million exits without an instruction retired.
    pub const DEFAULT: Limits = Limits { host: Some(Duration::from_secs(600)), stalled_exits: Some(1_000_000) };

    /// No limits at all.
    pub const NONE: Limits = Limits { host: None, stalled_exits: None };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// Which limit stopped a run, and what the guest was doing.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// `limit` of host time passed, over `exits` exits.
    HostTime { limit: Duration, exits: u64 },
    /// `exits` exits with no instruction retired between them; `reason`
    /// was the most frequent, `share` of them (0 to 1).
    Stalled { exits: u64, reason: ExitReason, share: f64 },
}

impl Stop {
    /// The line a stopped run ends with, `rip` where the guest was.
    pub fn line(&self, rip: u64) -> String {
        match self {
            Stop::HostTime { limit, exits } => format!(
                "host-time limit of {} reached at rip {rip:#x} after {exits} exits (--max-host-time)",
                seconds(u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX))
            ),
            Stop::Stalled { exits, reason, share } => format!(
                "no progress: {exits} exits with no instruction retired between them, {:.0}% of them {}, at rip {rip:#x} (an interrupt storm or a livelock; --max-stalled-exits)",
                share * 100.0,
                reason.name()
            ),
        }
    }
}

/// `ns` as seconds, without trailing zeros.
fn seconds(ns: u64) -> String {
    let s = format!("{:.9}", ns as f64 / 1e9);
    format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
}

/// Host time is read once per this many exits: an exit costs at least a
/// few hundred nanoseconds, so the limit is kept to within a millisecond.
const HOST_CHECK_EVERY: u64 = 1024;

/// A run's limits as it goes.
pub(crate) struct Watch {
    limits: Limits,
    started: Instant,
    exits: u64,
    /// Retired instructions at the last exit.
    retired: Option<u64>,
    /// Exits since an instruction last retired, by reason number.
    stalled: u64,
    stalled_by_reason: Vec<u64>,
}

impl Watch {
    /// Starts the clock.
    pub(crate) fn new(limits: Limits) -> Watch {
        Watch { limits, started: Instant::now(), exits: 0, retired: None, stalled: 0, stalled_by_reason: Vec::new() }
    }

    /// After an exit of `reason`, with the backend's count of retired
    /// instructions: the limit reached, if any.
    pub(crate) fn exit(&mut self, reason: ExitReason, retired: Option<u64>) -> Option<Stop> {
        self.exits += 1;
        if let (Some(max), Some(now)) = (self.limits.stalled_exits, retired) {
            if self.retired == Some(now) {
                self.stalled += 1;
                let n = reason.number() as usize;
                if self.stalled_by_reason.len() <= n {
                    self.stalled_by_reason.resize(n + 1, 0);
                }
                self.stalled_by_reason[n] += 1;
                if self.stalled >= max {
                    return Some(self.stalled_stop());
                }
            } else if self.stalled > 0 {
                self.stalled = 0;
                self.stalled_by_reason.iter_mut().for_each(|c| *c = 0);
            }
            self.retired = Some(now);
        }
        if self.exits.is_multiple_of(HOST_CHECK_EVERY) {
            return self.wake();
        }
        None
    }

    /// At a device wake-up (no exit) or every few exits: the host-time
    /// limit.
    pub(crate) fn wake(&mut self) -> Option<Stop> {
        match self.limits.host {
            Some(limit) if self.started.elapsed() >= limit => Some(Stop::HostTime { limit, exits: self.exits }),
            _ => None,
        }
    }

    fn stalled_stop(&self) -> Stop {
        let (n, count) = self.stalled_by_reason.iter().enumerate().max_by_key(|(_, c)| **c).unwrap_or((0, &0));
        let reason = ExitReason::ALL.iter().copied().find(|r| r.number() as usize == n).unwrap_or(ExitReason::ALL[0]);
        Stop::Stalled { exits: self.stalled, reason, share: *count as f64 / self.stalled.max(1) as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_without_a_retired_instruction_stop_the_run_naming_the_dominant_reason() {
        let limits = Limits { stalled_exits: Some(10), ..Limits::NONE };
        let mut w = Watch::new(limits);
        // Progress resets the count.
        for i in 0..20 {
            assert_eq!(w.exit(ExitReason::IoInstruction, Some(i)), None);
        }
        let mut stop = None;
        for i in 0..10 {
            let reason = if i % 5 == 0 { ExitReason::InterruptWindow } else { ExitReason::ExternalInterrupt };
            stop = w.exit(reason, Some(19));
        }
        let stop = stop.expect("the tenth exit without progress stops the run");
        assert_eq!(stop, Stop::Stalled { exits: 10, reason: ExitReason::ExternalInterrupt, share: 0.8 });
        assert_eq!(
            stop.line(0x1234),
            "no progress: 10 exits with no instruction retired between them, 80% of them EXTERNAL_INTERRUPT, at rip 0x1234 (an interrupt storm or a livelock; --max-stalled-exits)"
        );
        // Without a count of retired instructions (KVM), never.
        let mut w = Watch::new(limits);
        assert!((0..100).all(|_| w.exit(ExitReason::ExternalInterrupt, None).is_none()));
    }

    #[test]
    fn the_host_time_limit_names_itself() {
        let mut w = Watch::new(Limits { host: Some(Duration::from_secs(3600)), ..Limits::NONE });
        assert_eq!(w.wake(), None);
        let mut w = Watch::new(Limits { host: Some(Duration::ZERO), ..Limits::NONE });
        let stop = w.wake().unwrap();
        assert_eq!(stop, Stop::HostTime { limit: Duration::ZERO, exits: 0 });
        assert_eq!(stop.line(0x20), "host-time limit of 0 s reached at rip 0x20 after 0 exits (--max-host-time)");
    }
}

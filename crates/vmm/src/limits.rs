//! Run limits the VMM holds on every backend, so that no guest (a
//! livelocked driver under an interrupt storm, a fault the VMM reflects
//! forever, a loop that never exits) holds exitlab for ever: exits
//! handled, exits without progress and host time. All three are on by
//! default, far above any experiment exitlab ships. A backend's own limits
//! (the simulator's instructions and guest time, `exitlab_sim::RunLimits`;
//! KVM's wall-clock `--max-time`) stop a guest that runs away in guest
//! code; these stop one that runs away in exits, and, through
//! `Vcpu::set_host_deadline` (the backend returns to the VMM at the
//! deadline), one that never exits at all. A run stopped by one ends as
//! [`crate::GuestError::Runaway`] with one line naming the limit, the RIP,
//! what the guest was doing and the flag that moves the limit.

use exitlab_arch::ExitReason;
use std::time::{Duration, Instant};

/// Exits before a run stops by default: a billion, minutes of a storm on
/// either backend, far above the built-in experiments' full sizes.
pub const DEFAULT_MAX_EXITS: u64 = 1_000_000_000;
/// Exits in a row with no instruction retired before a run stops by
/// default: a million (a built-in point's longest such run, a REP string
/// instruction's elements, is thousands).
pub const DEFAULT_MAX_STALLED_EXITS: u64 = 1_000_000;
/// Host time before a run stops by default: ten minutes (a built-in full
/// point takes seconds).
pub const DEFAULT_MAX_HOST_TIME: Duration = Duration::from_secs(600);

/// The limits; `None` turns one off. `Default` is the defaults above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Exits the VMM handles (every one, phase markers included).
    pub max_exits: Option<u64>,
    /// Consecutive exits with no guest instruction retired between any two
    /// of them, on backends that count retired instructions
    /// (`Vcpu::instructions_retired`: the simulator): a guest that only
    /// exits (an interrupt storm that re-exits on every entry, a REP
    /// string instruction of a billion elements) makes no progress.
    pub max_stalled_exits: Option<u64>,
    /// Host time from the first entry.
    pub max_host_time: Option<Duration>,
}

impl RunLimits {
    /// No limits at all.
    pub const NONE: RunLimits = RunLimits { max_exits: None, max_stalled_exits: None, max_host_time: None };
}

impl Default for RunLimits {
    fn default() -> RunLimits {
        RunLimits {
            max_exits: Some(DEFAULT_MAX_EXITS),
            max_stalled_exits: Some(DEFAULT_MAX_STALLED_EXITS),
            max_host_time: Some(DEFAULT_MAX_HOST_TIME),
        }
    }
}

/// Which limit stopped a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--max-exits`.
    Exits,
    /// `--max-stalled-exits`.
    Stalled,
    /// `--max-host-time`.
    HostTime,
}

/// The run of identical exit reasons a limit stopped, for the report.
#[derive(Clone, Copy, Debug)]
struct Streak {
    reason: ExitReason,
    qualification: u64,
    count: u64,
}

/// Exits counted by reason number.
#[derive(Debug, Default)]
struct ByReason(Vec<u64>);

impl ByReason {
    fn add(&mut self, reason: ExitReason) {
        let n = reason.number() as usize;
        if self.0.len() <= n {
            self.0.resize(n + 1, 0);
        }
        self.0[n] += 1;
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(|c| *c = 0);
    }

    /// The most frequent reason and its share (0 to 1) of `total`.
    fn dominant(&self, total: u64) -> Option<(ExitReason, f64)> {
        let (n, &count) = self.0.iter().enumerate().max_by_key(|&(n, c)| (*c, std::cmp::Reverse(n)))?;
        let reason = ExitReason::ALL.iter().copied().find(|r| r.number() as usize == n)?;
        (count > 0).then(|| (reason, count as f64 / total.max(1) as f64))
    }
}

/// The limits of one run, counting.
#[derive(Debug)]
pub(crate) struct Watch {
    limits: RunLimits,
    started: Instant,
    exits: u64,
    by_reason: ByReason,
    streak: Option<Streak>,
    /// Retired instructions at the last exit.
    retired: Option<u64>,
    /// Exits since an instruction last retired, and their reasons.
    stalled: u64,
    stalled_by_reason: ByReason,
}

impl Watch {
    /// Starts the host clock now.
    pub fn start(limits: RunLimits) -> Watch {
        Watch {
            limits,
            started: Instant::now(),
            exits: 0,
            by_reason: ByReason::default(),
            streak: None,
            retired: None,
            stalled: 0,
            stalled_by_reason: ByReason::default(),
        }
    }

    /// The host time past which a backend must return to the VMM.
    pub fn deadline(&self) -> Option<Instant> {
        self.limits.max_host_time.map(|t| self.started + t)
    }

    /// Counts an exit of `reason` with `qualification`, `retired` the
    /// backend's count of retired instructions (`None` where it keeps
    /// none); the limit reached now, if any.
    pub fn exit(&mut self, reason: ExitReason, qualification: u64, retired: Option<u64>) -> Option<Stop> {
        self.exits += 1;
        self.by_reason.add(reason);
        self.streak = Some(match self.streak {
            Some(s) if s.reason == reason => Streak { reason, qualification, count: s.count + 1 },
            _ => Streak { reason, qualification, count: 1 },
        });
        if let (Some(max), Some(now)) = (self.limits.max_stalled_exits, retired) {
            if self.retired == Some(now) {
                self.stalled += 1;
                self.stalled_by_reason.add(reason);
                if self.stalled >= max {
                    return Some(Stop::Stalled);
                }
            } else if self.stalled > 0 {
                self.stalled = 0;
                self.stalled_by_reason.clear();
            }
            self.retired = Some(now);
        }
        if self.limits.max_exits.is_some_and(|m| self.exits >= m) {
            return Some(Stop::Exits);
        }
        self.host_time_up().then_some(Stop::HostTime)
    }

    /// Whether the host-time limit has passed (checked at each exit and
    /// when a backend returns without one).
    pub fn host_time_up(&self) -> bool {
        self.limits.max_host_time.is_some_and(|t| self.started.elapsed() >= t)
    }

    /// The one line a run `stop` ended ends with, the guest at `rip`: the
    /// limit, where the guest was, what it was doing and the flag.
    pub fn report(&self, stop: Stop, rip: u64) -> String {
        match stop {
            Stop::Exits => format!(
                "exit limit of {} reached at rip {rip:#x}{} (--max-exits)",
                self.limits.max_exits.unwrap_or_default(),
                self.doing()
            ),
            Stop::HostTime => format!(
                "host time limit of {} s reached at rip {rip:#x} after {} exits{} (--max-host-time)",
                self.limits.max_host_time.unwrap_or_default().as_secs_f64(),
                self.exits,
                self.doing()
            ),
            Stop::Stalled => {
                let (reason, share) =
                    self.stalled_by_reason.dominant(self.stalled).unwrap_or((ExitReason::ALL[0], 0.0));
                format!(
                    "no progress: {} exits with no instruction retired between them, {:.0}% of them {}, at rip {rip:#x} (an interrupt storm or a livelock; --max-stalled-exits)",
                    self.stalled,
                    share * 100.0,
                    reason.name()
                )
            }
        }
    }

    /// ": the last N exits were REASON (last qualification Q), P% of all
    /// exits DOMINANT".
    fn doing(&self) -> String {
        let last = match self.streak {
            Some(s) if s.count > 1 => {
                format!(": the last {} exits were {} (last qualification {:#x})", s.count, s.reason, s.qualification)
            }
            Some(s) => format!(": the last exit was {} (qualification {:#x})", s.reason, s.qualification),
            None => return ": no exit yet".to_string(),
        };
        match self.by_reason.dominant(self.exits) {
            Some((reason, share)) => format!("{last}, {:.0}% of all exits {reason}", share * 100.0),
            None => last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_limit_names_the_storm() {
        let mut w = Watch::start(RunLimits { max_exits: Some(3), ..RunLimits::NONE });
        assert_eq!(w.exit(ExitReason::IoInstruction, 0x80, None), None);
        assert_eq!(w.exit(ExitReason::ExceptionNmi, 0x4000_0000_0ff8, None), None);
        assert_eq!(w.exit(ExitReason::ExceptionNmi, 0x4000_0000_0ff8, None), Some(Stop::Exits));
        assert_eq!(
            w.report(Stop::Exits, 0x1000),
            "exit limit of 3 reached at rip 0x1000: the last 2 exits were EXCEPTION_NMI \
             (last qualification 0x400000000ff8), 67% of all exits EXCEPTION_NMI (--max-exits)"
        );
    }

    #[test]
    fn a_host_time_limit_of_zero_is_reached_at_once() {
        let w = Watch::start(RunLimits { max_host_time: Some(Duration::ZERO), ..RunLimits::NONE });
        assert!(w.host_time_up());
        assert_eq!(
            w.report(Stop::HostTime, 0x10_0000),
            "host time limit of 0 s reached at rip 0x100000 after 0 exits: no exit yet (--max-host-time)"
        );
        assert_eq!(w.deadline(), Some(w.started));
        assert!(!Watch::start(RunLimits::default()).host_time_up());
        let mut w = Watch::start(RunLimits { max_host_time: Some(Duration::from_secs(3600)), ..RunLimits::NONE });
        assert!(!w.host_time_up());
        assert_eq!(w.exit(ExitReason::Hlt, 0, None), None);
    }

    #[test]
    fn exits_without_a_retired_instruction_stop_the_run_naming_the_dominant_reason() {
        let limits = RunLimits { max_stalled_exits: Some(10), ..RunLimits::NONE };
        let mut w = Watch::start(limits);
        // Progress resets the count.
        for i in 0..20 {
            assert_eq!(w.exit(ExitReason::IoInstruction, 0, Some(i)), None);
        }
        let mut stop = None;
        for i in 0..10 {
            let reason = if i % 5 == 0 { ExitReason::InterruptWindow } else { ExitReason::ExternalInterrupt };
            stop = w.exit(reason, 0, Some(19));
        }
        assert_eq!(stop, Some(Stop::Stalled), "the tenth exit without progress stops the run");
        assert_eq!(
            w.report(Stop::Stalled, 0x1234),
            "no progress: 10 exits with no instruction retired between them, 80% of them EXTERNAL_INTERRUPT, at rip 0x1234 (an interrupt storm or a livelock; --max-stalled-exits)"
        );
        // Without a count of retired instructions (KVM), never.
        let mut w = Watch::start(limits);
        assert!((0..100).all(|_| w.exit(ExitReason::ExternalInterrupt, 0, None).is_none()));
    }
}

//! Run limits the VMM holds on every backend: exits handled and host time.
//! A backend's own limits (the simulator's instructions and guest time)
//! stop a guest that runs away in guest code; these stop one that runs
//! away in exits, such as a fault the VMM reflects forever while no
//! instruction retires, and one that never exits at all (the backend
//! returns at the host deadline: `Vcpu::set_host_deadline`). Both are on
//! by default, far above any experiment exitlab ships, so that no guest
//! can hold the VMM for ever.

use exitlab_arch::ExitReason;
use std::time::{Duration, Instant};

/// Exits before a run stops by default: a billion, minutes of a storm on
/// either backend, far above the built-in experiments' full sizes.
pub const DEFAULT_MAX_EXITS: u64 = 1_000_000_000;
/// Host time before a run stops by default.
pub const DEFAULT_MAX_HOST_TIME: Duration = Duration::from_secs(600);

/// The limits; `None` turns one off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Exits the VMM handles (every one, phase markers included).
    pub max_exits: Option<u64>,
    /// Host time from the first entry.
    pub max_host_time: Option<Duration>,
}

impl Default for RunLimits {
    fn default() -> RunLimits {
        RunLimits { max_exits: Some(DEFAULT_MAX_EXITS), max_host_time: Some(DEFAULT_MAX_HOST_TIME) }
    }
}

/// What the guest was doing, for the report: the run of identical exit
/// reasons the limit stopped.
#[derive(Clone, Copy, Debug)]
struct Streak {
    reason: ExitReason,
    qualification: u64,
    count: u64,
}

/// The limits of one run, counting.
#[derive(Debug)]
pub(crate) struct Watch {
    limits: RunLimits,
    started: Instant,
    exits: u64,
    streak: Option<Streak>,
}

impl Watch {
    /// Starts the host clock now.
    pub fn start(limits: RunLimits) -> Watch {
        Watch { limits, started: Instant::now(), exits: 0, streak: None }
    }

    /// The host time past which a backend must return to the VMM.
    pub fn deadline(&self) -> Option<Instant> {
        self.limits.max_host_time.map(|t| self.started + t)
    }

    /// Counts an exit; whether a limit is reached now.
    pub fn exit(&mut self, reason: ExitReason, qualification: u64) -> bool {
        self.exits += 1;
        self.streak = Some(match self.streak {
            Some(s) if s.reason == reason => Streak { reason, qualification, count: s.count + 1 },
            _ => Streak { reason, qualification, count: 1 },
        });
        self.limits.max_exits.is_some_and(|m| self.exits >= m) || self.host_time_up()
    }

    /// Whether the host-time limit has passed (checked at each exit and
    /// when a backend returns without one).
    pub fn host_time_up(&self) -> bool {
        self.limits.max_host_time.is_some_and(|t| self.started.elapsed() >= t)
    }

    /// The one-line report of the limit reached, with the guest's RIP and
    /// what it was doing.
    pub fn report(&self, rip: u64) -> String {
        match self.limits.max_exits.filter(|&m| self.exits >= m) {
            Some(max) => format!("exit limit of {max} reached at rip {rip:#x}{}", self.doing()),
            None => format!(
                "host time limit of {} s reached at rip {rip:#x} after {} exits{}",
                self.limits.max_host_time.unwrap_or_default().as_secs_f64(),
                self.exits,
                self.doing()
            ),
        }
    }

    /// ": the last N exits were REASON (last qualification Q)".
    fn doing(&self) -> String {
        match self.streak {
            Some(s) if s.count > 1 => {
                format!(": the last {} exits were {} (last qualification {:#x})", s.count, s.reason, s.qualification)
            }
            Some(s) => format!(": the last exit was {} (qualification {:#x})", s.reason, s.qualification),
            None => ": no exit yet".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_limit_names_the_storm() {
        let mut w = Watch::start(RunLimits { max_exits: Some(3), max_host_time: None });
        assert!(!w.exit(ExitReason::IoInstruction, 0x80));
        assert!(!w.exit(ExitReason::ExceptionNmi, 0x4000_0000_0ff8));
        assert!(w.exit(ExitReason::ExceptionNmi, 0x4000_0000_0ff8));
        assert_eq!(
            w.report(0x1000),
            "exit limit of 3 reached at rip 0x1000: the last 2 exits were EXCEPTION_NMI \
             (last qualification 0x400000000ff8)"
        );
    }

    #[test]
    fn a_host_time_limit_of_zero_is_reached_at_once() {
        let w = Watch::start(RunLimits { max_exits: None, max_host_time: Some(Duration::ZERO) });
        assert!(w.host_time_up());
        assert_eq!(w.report(0x10_0000), "host time limit of 0 s reached at rip 0x100000 after 0 exits: no exit yet");
        assert_eq!(w.deadline(), Some(w.started));
        assert!(!Watch::start(RunLimits::default()).host_time_up());
    }
}

//! The VMM's device thread on a host, as a calibrated profile prices it
//! (`[device_thread]` and `interrupt.irqfd`). On KVM a thread of the
//! VMM's own serves device deadlines and timed interrupts and raises
//! device interrupts through irqfds (crates/vmm/src/iothread.rs): the vCPU
//! thread hands it each new deadline with an eventfd write that wakes it
//! (a poke, which costs the vCPU thread); woken, it serves what is due
//! and sleeps on a timerfd for the rest, waking late. The simulator has no
//! such thread: where a profile has the figures, what the thread would do
//! happens when the thread would do it, and the vCPU pays for its pokes.
//! Without them every method here is the identity, so no other profile's
//! result moves.

use crate::cost::Clock;
use crate::profile::{Draw, Figure, Profile};

/// A draw of `f` in nanoseconds at `clock` (0 without it).
fn late(draw: &mut Draw, clock: Clock, f: Option<&Figure>) -> u64 {
    f.map_or(0, |f| clock.ns(draw.sample(f)))
}

/// The device thread's figures and what it is doing.
#[derive(Clone, Debug)]
pub struct DeviceThread {
    poke: Option<Figure>,
    poke_latency: Option<Figure>,
    timer_latency: Option<Figure>,
    irqfd: Option<Figure>,
    clock: Clock,
    draw: Draw,
    /// When (ns) the vCPU's last run call returned.
    returned_at: u64,
    /// The VMM is serving a device deadline: what it asks for now is the
    /// device thread's own work (no poke), and interrupts raised now come
    /// through an irqfd.
    serving: bool,
    /// Cycles of vCPU time the VMM's pokes have cost since the vCPU last
    /// ran.
    owed: u64,
}

impl DeviceThread {
    /// The thread as `profile` prices it; `seed` drives its draws (a
    /// stream apart from the vCPUs').
    pub fn new(profile: &Profile, seed: u64) -> DeviceThread {
        let d = &profile.device_thread;
        DeviceThread {
            poke: d.poke.clone(),
            poke_latency: d.poke_latency.clone(),
            timer_latency: d.timer_latency.clone(),
            irqfd: profile.interrupt.irqfd.clone(),
            clock: Clock { hz: profile.hz() },
            draw: Draw::new(seed ^ 0xd7e5_1ce7_7e4d_0001),
            returned_at: 0,
            serving: false,
            owed: 0,
        }
    }

    /// When the thread serves work due at `at_ns`: asked by the vCPU
    /// thread (a poke: the thread runs `poke_latency` after the exit that
    /// asked, serves it then if it is due, else sleeps for it), or set by
    /// the thread itself while serving (it sleeps for it).
    fn served(&mut self, at_ns: u64) -> u64 {
        if !self.serving {
            if let Some(f) = &self.poke {
                self.owed += self.draw.sample(f);
            }
            let woken = self.returned_at.saturating_add(late(&mut self.draw, self.clock, self.poke_latency.as_ref()));
            if at_ns <= woken {
                return woken;
            }
        }
        at_ns.saturating_add(late(&mut self.draw, self.clock, self.timer_latency.as_ref()))
    }

    /// When the thread serves a device deadline set for `at_ns`.
    pub fn deadline(&mut self, at_ns: u64) -> u64 {
        self.served(at_ns)
    }

    /// When an interrupt a device raises for `at_ns` is pending at the
    /// vCPU: when the thread serves it, plus the irqfd.
    pub fn timed_interrupt(&mut self, at_ns: u64) -> u64 {
        let t = self.served(at_ns);
        t.saturating_add(late(&mut self.draw, self.clock, self.irqfd.as_ref()))
    }

    /// When an interrupt raised now is pending at the vCPU: `None` for at
    /// once (the vCPU thread injects it), or, while the VMM serves a
    /// deadline, after the irqfd's latency.
    pub fn interrupt_now(&mut self) -> Option<u64> {
        if !self.serving {
            return None;
        }
        let irqfd = self.irqfd.as_ref()?;
        Some(self.returned_at.saturating_add(late(&mut self.draw, self.clock, Some(irqfd))))
    }

    /// The vCPU's run call returned at `now_ns`, for a device deadline
    /// (`serving`) or an exit.
    pub fn returned(&mut self, now_ns: u64, serving: bool) {
        self.returned_at = now_ns;
        self.serving = serving;
    }

    /// The vCPU runs again: the cycles it owes for pokes; resets them.
    pub fn resume(&mut self) -> u64 {
        self.serving = false;
        std::mem::take(&mut self.owed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(v: f64) -> Option<Figure> {
        Some(Figure { value: Some(v), mean: None, spread: None, source: "t".into() })
    }

    #[test]
    fn without_figures_nothing_moves() {
        let mut t = DeviceThread::new(&Profile::load("modern").unwrap(), 0);
        t.returned(500, false);
        assert_eq!(t.deadline(1000), 1000);
        assert_eq!(t.timed_interrupt(1000), 1000);
        t.returned(500, true);
        assert_eq!(t.interrupt_now(), None);
        assert_eq!(t.resume(), 0);
    }

    #[test]
    fn the_thread_serves_late_and_the_vcpu_pays_its_pokes() {
        let mut p = Profile::load("modern").unwrap(); // 2 GHz: 2 cycles a ns
        p.device_thread.poke = fixed(300.0);
        p.device_thread.poke_latency = fixed(8000.0);
        p.device_thread.timer_latency = fixed(2000.0);
        p.interrupt.irqfd = fixed(600.0);
        let mut t = DeviceThread::new(&p, 0);
        t.returned(10_000, false);
        assert_eq!(t.deadline(12_000), 14_000, "due before the poked thread runs: served when it runs");
        assert_eq!(t.deadline(20_000), 21_000, "due later: the thread sleeps for it and wakes late");
        assert_eq!(t.timed_interrupt(20_000), 21_300, "then the irqfd");
        assert_eq!(t.interrupt_now(), None, "an interrupt raised on an exit is injected at once");
        assert_eq!(t.resume(), 900, "three pokes");
        t.returned(30_000, true);
        assert_eq!(t.interrupt_now(), Some(30_300), "raised by the thread: through the irqfd");
        assert_eq!(t.deadline(30_500), 31_500, "the thread's own deadline: no poke, it sleeps for it");
        assert_eq!(t.resume(), 0);
    }
}

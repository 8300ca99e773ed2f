//! The VMM's device thread on a host, as a calibrated profile prices it
//! (`[device_thread]` and `interrupt.irqfd`). On KVM a thread of the
//! VMM's own serves device deadlines and timed interrupts (a timerfd) and
//! raises device interrupts through irqfds (crates/vmm/src/iothread.rs);
//! the vCPU thread wakes it with an eventfd write. The simulator has no
//! such thread: where a profile has the figures, what the thread would do
//! happens as late as the thread would do it, and the vCPU pays for each
//! wake-up it asks for. Without them every method here is the identity,
//! so no other profile's result moves.

use crate::cost::Clock;
use crate::profile::{Draw, Figure, Profile};

/// A draw of `f` in nanoseconds at `clock` (0 without it).
fn late(draw: &mut Draw, clock: Clock, f: Option<&Figure>) -> u64 {
    f.map_or(0, |f| clock.ns(draw.sample(f)))
}

/// The device thread's figures and what it is doing.
#[derive(Clone, Debug)]
pub struct DeviceThread {
    wakeup: Option<Figure>,
    irqfd: Option<Figure>,
    poke: Option<Figure>,
    clock: Clock,
    draw: Draw,
    /// Since when (ns) the VMM is serving a device deadline: interrupts
    /// raised now come from the device thread, through an irqfd.
    serving: Option<u64>,
    /// Cycles of vCPU time the VMM's wake-up requests cost since the vCPU
    /// last ran.
    owed: u64,
}

impl DeviceThread {
    /// The thread as `profile` prices it; `seed` drives its draws (a
    /// stream apart from the vCPUs').
    pub fn new(profile: &Profile, seed: u64) -> DeviceThread {
        DeviceThread {
            wakeup: profile.device_thread.wakeup.clone(),
            irqfd: profile.interrupt.irqfd.clone(),
            poke: profile.device_thread.poke.clone(),
            clock: Clock { hz: profile.hz() },
            draw: Draw::new(seed ^ 0xd7e5_1ce7_7e4d_0001),
            serving: None,
            owed: 0,
        }
    }

    /// The vCPU thread wakes the device thread: a poke the vCPU pays.
    fn poke(&mut self) {
        if let Some(f) = &self.poke {
            self.owed += self.draw.sample(f);
        }
    }

    /// When the thread serves a device deadline set for `at_ns`.
    pub fn deadline(&mut self, at_ns: u64) -> u64 {
        self.poke();
        at_ns.saturating_add(late(&mut self.draw, self.clock, self.wakeup.as_ref()))
    }

    /// When an interrupt a device raises for `at_ns` is pending at the
    /// vCPU: the thread serves it late, then sends it through an irqfd.
    pub fn timed_interrupt(&mut self, at_ns: u64) -> u64 {
        self.poke();
        let thread = late(&mut self.draw, self.clock, self.wakeup.as_ref());
        let irqfd = late(&mut self.draw, self.clock, self.irqfd.as_ref());
        at_ns.saturating_add(thread + irqfd)
    }

    /// When an interrupt raised now is pending at the vCPU: `None` for at
    /// once (the vCPU thread injects it), or, while the VMM serves a
    /// deadline, after the irqfd's latency.
    pub fn interrupt_now(&mut self) -> Option<u64> {
        let since = self.serving?;
        let irqfd = self.irqfd.as_ref()?;
        Some(since.saturating_add(late(&mut self.draw, self.clock, Some(irqfd))))
    }

    /// The run call returned at `now_ns` for a device deadline (`Some`),
    /// or the vCPU runs again (`None`).
    pub fn serving(&mut self, now_ns: Option<u64>) {
        self.serving = now_ns;
    }

    /// The cycles the vCPU owes for wake-up requests; resets them.
    pub fn take_owed(&mut self) -> u64 {
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
        assert_eq!(t.deadline(1000), 1000);
        assert_eq!(t.timed_interrupt(1000), 1000);
        t.serving(Some(500));
        assert_eq!(t.interrupt_now(), None);
        assert_eq!(t.take_owed(), 0);
    }

    #[test]
    fn figures_delay_what_the_thread_does_and_charge_the_pokes() {
        let mut p = Profile::load("modern").unwrap(); // 2 GHz: 2 cycles a ns
        p.device_thread.wakeup = fixed(2000.0);
        p.device_thread.poke = fixed(300.0);
        p.interrupt.irqfd = fixed(600.0);
        let mut t = DeviceThread::new(&p, 0);
        assert_eq!(t.deadline(10_000), 11_000);
        assert_eq!(t.timed_interrupt(10_000), 11_300);
        assert_eq!(t.interrupt_now(), None, "an interrupt raised on an exit is injected at once");
        t.serving(Some(20_000));
        assert_eq!(t.interrupt_now(), Some(20_300));
        assert_eq!(t.take_owed(), 600);
        assert_eq!(t.take_owed(), 0);
    }
}

//! The host's own periodic timer, as a guest feels it: on real hosts the
//! host's tick interrupts a running guest (an exit) whatever the guest is
//! doing; experiment E10 needs that to abort transactions. A machine asks
//! for it with `host_timer_hz`.

use crate::error::VmmError;
use exitlab_hv::VmxVcpu;

/// The host's periodic timer tick, as the VMX-preemption timer programmed
/// before each entry to expire at the next tick of a free-running clock
/// (as KVM arms it from an hrtimer deadline): ticks keep their own phase,
/// whatever the guest and its exits do in between.
pub struct HostTick {
    period_ns: u64,
    next_ns: u64,
    tsc_hz: u64,
}

impl HostTick {
    pub fn new(hz: u64, tsc_hz: u64, now_ns: u64) -> HostTick {
        let period_ns = (1_000_000_000 / hz).max(1);
        HostTick { period_ns, next_ns: now_ns + period_ns, tsc_hz }
    }

    pub fn arm<C: VmxVcpu + ?Sized>(
        &mut self,
        vcpu: &mut C,
        controls: &mut exitlab_arch::vmx::Controls,
    ) -> Result<(), VmmError> {
        let now = vcpu.now_ns();
        if now >= self.next_ns {
            self.next_ns += ((now - self.next_ns) / self.period_ns + 1) * self.period_ns;
        }
        let ticks = u128::from(self.next_ns - now) * u128::from(self.tsc_hz) / 1_000_000_000;
        controls.preemption_timer = Some(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        vcpu.set_controls(controls)?;
        Ok(())
    }
}

//! Real-time scheduling for measurements on a shared host. A vCPU thread
//! under SCHED_OTHER waits behind every other runnable task, and that wait
//! lands in whatever it is timing; under SCHED_FIFO it runs whenever it is
//! runnable (as benchmarks pin and prioritise their vCPUs). On this
//! project's 2-core development host the ring-0 instruction cost read 360
//! to 1,160 ns under SCHED_OTHER from run to run and 359-365 ns under
//! SCHED_FIFO. The kernel's real-time throttling (sched_rt_runtime_us)
//! still leaves other tasks 5% of each CPU.

use std::io;

/// SCHED_FIFO for the calling thread, and for the threads it starts while
/// it holds this (they inherit the policy); the old policy comes back when
/// it drops.
pub struct Realtime {
    policy: libc::c_int,
    param: libc::sched_param,
    priority: i32,
    /// The policy belongs to the thread that entered it: not Send.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Realtime {
    /// Switches the calling thread to SCHED_FIFO at `priority` (1-99).
    /// Errors: the kernel's (EPERM without CAP_SYS_NICE or an RT limit,
    /// EINVAL for a priority out of range).
    pub fn enter(priority: i32) -> io::Result<Realtime> {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid
        // sched_param the call fills.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // SAFETY: as above.
        if policy < 0 || unsafe { libc::sched_getparam(0, &mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let fifo = libc::sched_param { sched_priority: priority };
        // SAFETY: pid 0 is the calling thread; `fifo` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Realtime { policy, param, priority, _thread: std::marker::PhantomData })
    }

    /// The priority it runs at.
    pub fn priority(&self) -> i32 {
        self.priority
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        // SAFETY: restores the policy and parameters read in `enter` for
        // the same (calling) thread. A failure leaves the thread real-time,
        // which is harmless for a measuring command about to end.
        unsafe { libc::sched_setscheduler(0, self.policy, &self.param) };
    }
}

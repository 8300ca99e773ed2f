//! Kicking a vCPU out of KVM_RUN at a host-time deadline, so that a guest
//! that never exits to userspace (ring-0 code looping in KVM's emulator on
//! this host, or any loop without a trapping instruction) cannot hold the
//! VMM past its limit. A watchdog thread sleeps until the deadline, then
//! signals the vCPU's thread with SIGRTMIN (handled by a handler that does
//! nothing), so KVM_RUN returns EINTR; it repeats every few milliseconds
//! in case the signal landed while the thread was outside KVM_RUN, until
//! the deadline is moved or the vCPU dropped. Firecracker kicks its vCPU
//! threads the same way.

use exitlab_hv::{Confine, HvError, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How often the watchdog signals again once the deadline has passed.
const REPEAT: Duration = Duration::from_millis(5);

/// A thread, by its pthread handle, that the watchdog may signal.
struct VcpuThread(libc::pthread_t);

// SAFETY: the handle is `pthread_self()` of the thread that armed the
// watchdog; `Kicker::drop` (which that thread runs, since a vCPU is not
// moved between threads while it runs) stops and joins the watchdog before
// the thread can exit, so the handle is valid whenever it is signalled.
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The watchdog of one vCPU.
pub(crate) struct Kicker {
    deadline: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kicker {
    /// Arms a watchdog that kicks the calling thread at `deadline`; the
    /// watchdog applies `filter` to itself before it starts waiting.
    pub fn arm(deadline: Instant, filter: Option<Confine>) -> Result<Kicker> {
        static HANDLER: Once = Once::new();
        let mut registered = Ok(());
        HANDLER.call_once(|| registered = register_signal_handler(SIGRTMIN(), on_kick));
        registered.map_err(|e| HvError::Backend(format!("registering the vCPU kick signal: {e}")))?;
        // SAFETY: pthread_self has no preconditions and always succeeds.
        let me = VcpuThread(unsafe { libc::pthread_self() });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (confined, outcome) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("exitlab-kick".into())
            .spawn(move || {
                let applied = filter.map_or(Ok(()), |f| f());
                let ok = applied.is_ok();
                let _ = confined.send(applied);
                while ok && !flag.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < deadline {
                        std::thread::sleep((deadline - now).min(REPEAT * 20));
                        continue;
                    }
                    let _ = me.kill(SIGRTMIN());
                    std::thread::sleep(REPEAT);
                }
            })
            .map_err(|e| HvError::Backend(format!("starting the vCPU watchdog: {e}")))?;
        let kicker = Kicker { deadline, stop, thread: Some(thread) };
        outcome.recv().map_err(|_| HvError::Backend("the vCPU watchdog ended at its start".into()))??;
        Ok(kicker)
    }

    /// Whether the deadline has passed.
    pub fn due(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! A wall-clock limit on a vCPU's run calls. KVM_RUN returns to userspace
//! only for the exits KVM cannot finish itself, so a guest that spins, or
//! waits for an interrupt that never comes, keeps its vCPU thread in the
//! kernel for ever. A watchdog thread kicks it out with a signal once the
//! limit has passed (KVM_RUN then fails with EINTR, the way QEMU and
//! Firecracker kick their vCPU threads) and the run call reports the limit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the watchdog and the vCPU thread share.
#[derive(Default)]
struct State {
    /// The thread inside a run call, while one is: the only time a signal
    /// may be sent (it cannot have exited while it is in there).
    running_on: Option<libc::pthread_t>,
    expired: bool,
    done: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The signal that kicks a vCPU thread out of KVM_RUN: the second
/// real-time signal (Firecracker uses the first for the same purpose).
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// A watchdog over one vCPU's run calls.
pub(crate) struct Watchdog {
    shared: Shared,
    limit: Duration,
    handle: Option<JoinHandle<()>>,
}

/// A run call in progress: the watchdog may signal this thread until it
/// drops.
pub(crate) struct InRun<'a> {
    shared: &'a Shared,
}

impl Drop for InRun<'_> {
    fn drop(&mut self) {
        lock(self.shared).running_on = None;
    }
}

impl Watchdog {
    /// Starts a watchdog whose limit passes `limit` from now. Fails only
    /// when the kick signal's handler cannot be installed.
    pub(crate) fn start(limit: Duration) -> std::io::Result<Watchdog> {
        static HANDLER: Once = Once::new();
        let mut installed = Ok(());
        HANDLER.call_once(|| {
            installed = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
        });
        installed?;
        let shared: Shared = Arc::default();
        let deadline = Instant::now() + limit;
        let s = shared.clone();
        let handle = std::thread::Builder::new().name("exitlab-watchdog".into()).spawn(move || watch(&s, deadline))?;
        Ok(Watchdog { shared, limit, handle: Some(handle) })
    }

    /// The limit, for messages.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the limit has passed.
    pub(crate) fn expired(&self) -> bool {
        lock(&self.shared).expired
    }

    /// Marks the calling thread as inside a run call until the guard drops.
    pub(crate) fn enter(&self) -> InRun<'_> {
        // SAFETY: pthread_self has no preconditions and cannot fail.
        let me = unsafe { libc::pthread_self() };
        lock(&self.shared).running_on = Some(me);
        InRun { shared: &self.shared }
    }
}

/// The watchdog thread: waits for the deadline, then signals the vCPU
/// thread every millisecond while it is inside a run call (a signal that
/// lands just before KVM_RUN starts is lost; the next one is not).
fn watch(shared: &Shared, deadline: Instant) {
    let mut state = lock(shared);
    loop {
        if state.done {
            return;
        }
        let now = Instant::now();
        let wait = if now < deadline {
            deadline - now
        } else {
            state.expired = true;
            if let Some(thread) = state.running_on {
                // SAFETY: `thread` is inside a run call (it clears
                // `running_on` under this lock before it returns), so it is
                // alive; the signal has a handler, so it only interrupts
                // the thread's system call.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            Duration::from_millis(1)
        };
        state = shared.1.wait_timeout(state, wait).map(|(s, _)| s).unwrap_or_else(|e| e.into_inner().0);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        lock(&self.shared).done = true;
        self.shared.1.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

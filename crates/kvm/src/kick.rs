//! A time limit for a guest that never exits: a thread of its own that
//! kicks the vCPU out of KVM_RUN at a deadline, the way crosvm and
//! Firecracker stop a vCPU. At the deadline it sets `immediate_exit` in
//! the vCPU's `kvm_run` page and sends a real-time signal (with a handler
//! that does nothing) to the thread inside KVM_RUN: a KVM_RUN already
//! running returns EINTR at once, and one about to start sees
//! `immediate_exit` and returns EINTR without entering the guest
//! (Documentation/virt/kvm/api.rst, `immediate_exit`). The vCPU's run then
//! ends with [`HvError::Limit`](exitlab_hv::HvError::Limit).
//!
//! The signal only ever goes to a thread that is inside
//! [`KvmVcpu::run`](crate::KvmVcpu): the run registers its thread under a
//! lock for the length of the call, and the kicker signals under the same
//! lock, so a thread that left the run (or ended) is never signalled.

use kvm_bindings::kvm_run;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// The kvm_run page, written from the kicker thread.
struct RunPage(*mut kvm_run);

// SAFETY: the page is a shared mapping of the vCPU fd that lives as long
// as the `KvmVcpu`, which stops (joins) the kicker before it lets the
// mapping go; the kicker only stores one byte into it with a volatile
// write, as the kernel expects userspace to.
unsafe impl Send for RunPage {}

/// A thread inside KVM_RUN, as pthread_kill names it.
struct RunningThread(libc::pthread_t);

// SAFETY: the handle is the calling thread's own (pthread_self), and the
// kicker uses it only while that thread is inside `KvmVcpu::run`
// (registered and cleared under `State`'s lock), so it is alive then.
unsafe impl Killable for RunningThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

#[derive(Default)]
struct State {
    /// The thread inside KVM_RUN now, if any.
    running: Option<RunningThread>,
    /// The deadline passed and the vCPU was kicked.
    kicked: bool,
    /// The vCPU is going away: the kicker must stop.
    cancelled: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The real-time signal that interrupts KVM_RUN (SIGRTMIN, as Firecracker
/// uses it).
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn nothing(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

static HANDLER: Once = Once::new();

/// A vCPU's time limit: the kicker thread and what it shares with the run.
pub struct Kicker {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
    /// The limit, for the report.
    pub limit: Duration,
}

impl Kicker {
    /// Starts a kicker that stops the vCPU whose `kvm_run` page is `run`
    /// `limit` from now. The page must outlive the returned value.
    pub(crate) fn start(run: *mut kvm_run, limit: Duration) -> std::io::Result<Kicker> {
        let mut installed = Ok(());
        HANDLER.call_once(|| installed = register_signal_handler(kick_signal(), nothing));
        installed.map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        let shared: Shared = Arc::default();
        let (theirs, page, deadline) = (shared.clone(), RunPage(run), Instant::now() + limit);
        let thread = std::thread::Builder::new().name("exitlab-kick".into()).spawn(move || {
            let page = page;
            let mut s = lock(&theirs);
            loop {
                if s.cancelled {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                s = theirs.1.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            s.kicked = true;
            // SAFETY: `page` points into the vCPU's live kvm_run mapping
            // (the vCPU joins this thread before unmapping it); one byte
            // is stored, volatile, as for a signal handler's write.
            unsafe { std::ptr::addr_of_mut!((*page.0).immediate_exit).write_volatile(1) };
            if let Some(t) = &s.running {
                // A failed kill leaves immediate_exit to stop the next run.
                let _ = t.kill(kick_signal());
            }
        })?;
        Ok(Kicker { shared, thread: Some(thread), limit })
    }

    /// The run is about to enter KVM_RUN on this thread.
    pub(crate) fn entering(&self) {
        // SAFETY: pthread_self has no preconditions and cannot fail.
        let me = unsafe { libc::pthread_self() };
        lock(&self.shared).running = Some(RunningThread(me));
    }

    /// The run left KVM_RUN; returns whether the deadline has kicked it.
    pub(crate) fn left(&self) -> bool {
        let mut s = lock(&self.shared);
        s.running = None;
        s.kicked
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        lock(&self.shared).cancelled = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

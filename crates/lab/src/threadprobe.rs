//! Micro-probes of the mechanisms the VMM's device thread rests on
//! (crates/vmm/src/iothread.rs), measured in this process the way the
//! thread uses them: the vCPU thread's cost of waking the sleeping thread
//! (an eventfd write to a thread blocked in epoll on it: `IoThread::push`'s
//! poke), how long after the write the thread runs, and how late it wakes
//! for a deadline (a timerfd in its epoll set). All are scheduling costs
//! of the host kernel, not of KVM: on a nested host each wake-up of
//! another CPU is an inter-processor interrupt through the outer
//! hypervisor, and each timer a timer of the outer one.

use crate::calibrate::Measured;
use crate::hostinfo::HostInfo;
use crate::probe::{Spread, PRIORITY};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

/// Events per round of each micro-probe.
pub const EVENTS: usize = 200;
/// How far ahead each timer deadline is set, and the pause between pokes:
/// about how long the device thread sleeps between the pokes and deadlines
/// of a ping-pong on a host like the development one (a packet every 60 to
/// 150 us). How long a thread slept changes how fast it wakes there: 20.7
/// us after 50 us, 24.5 us after 200 us (poke latency, SCHED_FIFO).
const GAP: Duration = Duration::from_micros(100);

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// One round of the poke probe: the times of eventfd writes that wake a
/// thread blocked in epoll_wait on it, and the times from each write to
/// that thread running (ns).
fn poke_round() -> Result<(Vec<f64>, Vec<f64>), String> {
    let fd = EventFd::new(0).map_err(io("eventfd"))?;
    let theirs = fd.try_clone().map_err(io("eventfd"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let waiter = std::thread::Builder::new()
        .name("exitlab-probe".into())
        .spawn(move || -> Result<Vec<Instant>, String> {
            let epoll = Epoll::new().map_err(io("epoll"))?;
            epoll
                .ctl(ControlOperation::Add, theirs.as_raw_fd(), EpollEvent::new(EventSet::IN, 0))
                .map_err(io("epoll_ctl"))?;
            let mut events = [EpollEvent::default(); 1];
            let mut woke = Vec::with_capacity(EVENTS);
            while !stopping.load(Ordering::Relaxed) {
                epoll.wait(-1, &mut events).map_err(io("epoll_wait"))?;
                let now = Instant::now();
                // Writes that came before this thread ran are served now.
                let writes = theirs.read().map_err(io("eventfd read"))?;
                woke.extend(std::iter::repeat_n(now, writes as usize));
            }
            Ok(woke)
        })
        .map_err(io("spawn"))?;
    let mut cost = Vec::with_capacity(EVENTS);
    let mut sent = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        std::thread::sleep(GAP);
        let t = Instant::now();
        fd.write(1).map_err(io("eventfd write"))?;
        cost.push(t.elapsed().as_nanos() as f64);
        sent.push(t);
    }
    std::thread::sleep(GAP);
    stop.store(true, Ordering::Relaxed);
    fd.write(1).map_err(io("eventfd write"))?;
    let woke = waiter.join().map_err(|_| "the probe thread panicked".to_string())??;
    if woke.len() != EVENTS + 1 {
        return Err(format!("the poke probe's thread woke {} times for {} writes", woke.len(), EVENTS + 1));
    }
    let latency = sent.iter().zip(&woke).map(|(s, w)| w.saturating_duration_since(*s).as_nanos() as f64).collect();
    Ok((cost, latency))
}

/// One round of the timer probe: the lateness of a thread waiting in
/// epoll on a timerfd armed `GAP` ahead, per event (ns).
fn timer_round() -> Result<Vec<f64>, String> {
    let mut timer = TimerFd::new().map_err(|e| format!("timerfd: {e}"))?;
    let epoll = Epoll::new().map_err(io("epoll"))?;
    epoll.ctl(ControlOperation::Add, timer.as_raw_fd(), EpollEvent::new(EventSet::IN, 0)).map_err(io("epoll_ctl"))?;
    let mut events = [EpollEvent::default(); 1];
    let mut late = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let armed = Instant::now();
        timer.reset(GAP, None).map_err(|e| format!("timerfd_settime: {e}"))?;
        epoll.wait(-1, &mut events).map_err(io("epoll_wait"))?;
        let woke = armed.elapsed();
        timer.wait().map_err(|e| format!("timerfd read: {e}"))?;
        late.push(woke.saturating_sub(GAP).as_nanos() as f64);
    }
    Ok(late)
}

/// One round of the micro-probes: each event, in ns.
#[derive(Clone, Debug, Default)]
pub struct Round {
    pub poke: Vec<f64>,
    pub poke_latency: Vec<f64>,
    pub timer_latency: Vec<f64>,
}

/// Runs one round of each micro-probe, under SCHED_FIFO where the host
/// allows it (as the VMM's threads run during calibration).
pub fn round() -> Result<Round, String> {
    let rt = exitlab_kvm::Realtime::enter(PRIORITY).ok();
    let (poke, poke_latency) = poke_round()?;
    let timer_latency = timer_round()?;
    drop(rt);
    Ok(Round { poke, poke_latency, timer_latency })
}

/// `device_thread.poke`, `.poke_latency` and `.timer_latency` from
/// `rounds`; `sched` says how the threads were scheduled.
pub fn figures(rounds: &[Round], host: &HostInfo, sched: &str, ns_per_cycle: f64) -> Vec<Measured> {
    let pokes: Vec<Vec<f64>> = rounds.iter().map(|r| r.poke.clone()).collect();
    let woken: Vec<Vec<f64>> = rounds.iter().map(|r| r.poke_latency.clone()).collect();
    let timers: Vec<Vec<f64>> = rounds.iter().map(|r| r.timer_latency.clone()).collect();
    let fig = |key: &str, rounds: Vec<Vec<f64>>, what: &str| {
        let medians: Vec<f64> = rounds.iter().map(|r| Spread::of(r).median).collect();
        let per_round = Spread::of(&medians);
        let Spread { median: m, stddev: spread, .. } = Spread::robust(&rounds.concat());
        let source = format!(
            "measured: {}, {sched}, n = {} rounds x {EVENTS} events, median of the events {m:.1} ns, spread = 1.4826 x their median absolute deviation ({spread:.1} ns: the per-event spread, robust to the tail), round medians {:.1}-{:.1} ns; {what}",
            host.short(),
            rounds.len(),
            per_round.min,
            per_round.max
        );
        let ns = Spread { median: m, stddev: spread, min: per_round.min, max: per_round.max, n: rounds.len() };
        Measured { key: key.to_string(), cycles: ns.scaled(1.0 / ns_per_cycle), ns, source }
    };
    vec![
        fig("device_thread.poke", pokes, "an eventfd write that wakes a thread blocked in epoll on it (the VMM's poke of its device thread)"),
        fig("device_thread.poke_latency", woken, "from that write to the woken thread running"),
        fig(
            "device_thread.timer_latency",
            timers,
            &format!("the lateness of a thread woken by a timerfd armed {} us ahead in its epoll set (the device thread's deadlines)", GAP.as_micros()),
        ),
    ]
}

//! Exit accounting: every exit becomes an [`ExitRecord`]; the
//! [`Accountant`] folds records into per-phase, per-reason counters and HDR
//! histograms of two times — the VMM's handling (exit to resume) and the
//! time to the next VM entry, which `perf kvm stat report` calls the
//! event's time (a HLT's includes the time the vCPU then stays halted) —,
//! per-port and per-MMIO-region counts, and the backend's own counters (KVM
//! binary stats) as per-phase deltas.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::Phase;
use exitlab_hv::{Counter, HandlerWork};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Counters the guest keeps (read from its counter slots) travel with the
/// backend's under this prefix.
pub const GUEST_COUNTER_PREFIX: &str = "guest.";
/// The VMM's device models' counters (`device.<device>.<counter>`, and
/// `device.dma_faults`) travel with them under this one.
pub const DEVICE_COUNTER_PREFIX: &str = "device.";

/// Where an exit's access went, for the per-device breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Port { port: u16, device: &'static str },
    Mmio { region: &'static str },
    None,
}

/// One exit, as the VMM saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitRecord {
    pub vcpu: u32,
    pub reason: ExitReason,
    pub qualification: u64,
    pub target: Target,
    /// Backend clock when the exit reached the VMM.
    pub exit_ns: u64,
    /// Backend clock when the VMM resumed the vCPU.
    pub resume_ns: u64,
    /// Length of the run call that ended in this exit (guest execution,
    /// in-backend exits and the transitions).
    pub run_ns: u64,
    /// What the VMM's handler did, in the cost model's units.
    pub work: HandlerWork,
    /// How long the vCPU then stayed halted before its next entry (a HLT
    /// on a backend that halts in the VMM's view: until the wake-up the
    /// machine had scheduled, its timer's or a device's); 0 otherwise.
    pub halted_ns: u64,
}

impl ExitRecord {
    /// Time from exit to resume: the VMM's handling of the exit.
    pub fn handle_ns(&self) -> u64 {
        self.resume_ns.saturating_sub(self.exit_ns)
    }

    /// Time from exit to the next VM entry, what `perf kvm stat report`
    /// calls the event's time (kvm_exit to kvm_entry): the handling plus
    /// any time the vCPU then stayed halted.
    pub fn to_entry_ns(&self) -> u64 {
        self.handle_ns().saturating_add(self.halted_ns)
    }
}

/// A distribution of one kind of time over an exit reason's samples.
#[derive(Clone, Debug)]
pub struct Timing {
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub histogram: Histogram<u64>,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            histogram: Histogram::new(3).expect("3 significant digits is a valid HDR precision"),
        }
    }

    fn add(&mut self, ns: u64) {
        self.total_ns = self.total_ns.saturating_add(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.histogram.saturating_record(ns);
    }

    fn merge(&mut self, o: &Timing) {
        self.total_ns = self.total_ns.saturating_add(o.total_ns);
        self.min_ns = self.min_ns.min(o.min_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        self.histogram.add(&o.histogram).expect("auto-resizing histograms of the same precision always merge");
    }

    /// Mean over `samples` (0 with none).
    pub fn mean_ns(&self, samples: u64) -> f64 {
        if samples == 0 {
            0.0
        } else {
            self.total_ns as f64 / samples as f64
        }
    }
}

/// Samples and time distributions of one exit reason: `total_ns`,
/// `min_ns`, `max_ns` and `histogram` are the VMM's handling (exit to
/// resume); `to_entry` is exit to the next entry, perf kvm stat's time.
#[derive(Clone, Debug)]
pub struct ReasonStats {
    pub samples: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Sum of the run calls that ended in this reason.
    pub run_ns: u64,
    pub histogram: Histogram<u64>,
    /// Exit to the next VM entry.
    pub to_entry: Timing,
    /// Handler work summed over the samples.
    pub work: HandlerWork,
}

impl ReasonStats {
    fn new() -> ReasonStats {
        ReasonStats {
            samples: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            run_ns: 0,
            histogram: Histogram::new(3).expect("3 significant digits is a valid HDR precision"),
            to_entry: Timing::new(),
            work: HandlerWork::default(),
        }
    }

    fn add_work(&mut self, w: &HandlerWork) {
        let t = &mut self.work;
        t.device_ops = t.device_ops.saturating_add(w.device_ops);
        t.bytes_decoded = t.bytes_decoded.saturating_add(w.bytes_decoded);
        t.page_walks = t.page_walks.saturating_add(w.page_walks);
        t.bytes_copied = t.bytes_copied.saturating_add(w.bytes_copied);
    }

    fn add(&mut self, handle_ns: u64, to_entry_ns: u64, run_ns: u64) {
        self.to_entry.add(to_entry_ns);
        self.samples += 1;
        self.total_ns = self.total_ns.saturating_add(handle_ns);
        self.run_ns = self.run_ns.saturating_add(run_ns);
        self.min_ns = self.min_ns.min(handle_ns);
        self.max_ns = self.max_ns.max(handle_ns);
        self.histogram.saturating_record(handle_ns);
    }

    pub fn mean_ns(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.samples as f64
        }
    }
}

/// Exits that reached one port or MMIO region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetStats {
    pub device: &'static str,
    pub exits: u64,
    pub total_ns: u64,
}

/// Everything accounted in one phase (or over the whole run).
#[derive(Clone, Debug, Default)]
pub struct PhaseStats {
    pub reasons: BTreeMap<ExitReason, ReasonStats>,
    pub ports: BTreeMap<u16, TargetStats>,
    pub mmio: BTreeMap<&'static str, TargetStats>,
    pub per_vcpu: BTreeMap<u32, u64>,
    /// Backend counters: increase over the phase.
    pub counters: BTreeMap<String, u64>,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl PhaseStats {
    fn add(&mut self, r: &ExitRecord) {
        let h = r.handle_ns();
        let rs = self.reasons.entry(r.reason).or_insert_with(ReasonStats::new);
        rs.add(h, r.to_entry_ns(), r.run_ns);
        rs.add_work(&r.work);
        *self.per_vcpu.entry(r.vcpu).or_default() += 1;
        let t = match r.target {
            Target::Port { port, device } => {
                Some(self.ports.entry(port).or_insert(TargetStats { device, ..Default::default() }))
            }
            Target::Mmio { region } => {
                Some(self.mmio.entry(region).or_insert(TargetStats { device: region, ..Default::default() }))
            }
            Target::None => None,
        };
        if let Some(t) = t {
            t.exits += 1;
            t.total_ns = t.total_ns.saturating_add(h);
        }
    }

    pub fn total_exits(&self) -> u64 {
        self.reasons.values().map(|s| s.samples).sum()
    }

    pub fn total_handle_ns(&self) -> u64 {
        self.reasons.values().map(|s| s.total_ns).sum()
    }

    /// Exit to next entry, summed over every reason.
    pub fn total_to_entry_ns(&self) -> u64 {
        self.reasons.values().map(|s| s.to_entry.total_ns).sum()
    }

    pub fn total_run_ns(&self) -> u64 {
        self.reasons.values().map(|s| s.run_ns).sum()
    }

    pub fn samples(&self, reason: ExitReason) -> u64 {
        self.reasons.get(&reason).map_or(0, |s| s.samples)
    }

    /// Adds another phase's exits and counters into this one.
    fn merge(&mut self, o: &PhaseStats) {
        for (reason, r) in &o.reasons {
            let m = self.reasons.entry(*reason).or_insert_with(ReasonStats::new);
            m.samples += r.samples;
            m.total_ns = m.total_ns.saturating_add(r.total_ns);
            m.run_ns = m.run_ns.saturating_add(r.run_ns);
            m.min_ns = m.min_ns.min(r.min_ns);
            m.max_ns = m.max_ns.max(r.max_ns);
            m.histogram.add(&r.histogram).expect("auto-resizing histograms of the same precision always merge");
            m.to_entry.merge(&r.to_entry);
            m.add_work(&r.work);
        }
        for (port, t) in &o.ports {
            let m = self.ports.entry(*port).or_insert(TargetStats { device: t.device, ..Default::default() });
            m.exits += t.exits;
            m.total_ns = m.total_ns.saturating_add(t.total_ns);
        }
        for (region, t) in &o.mmio {
            let m = self.mmio.entry(region).or_insert(TargetStats { device: t.device, ..Default::default() });
            m.exits += t.exits;
            m.total_ns = m.total_ns.saturating_add(t.total_ns);
        }
        for (vcpu, n) in &o.per_vcpu {
            *self.per_vcpu.entry(*vcpu).or_default() += n;
        }
        for (name, v) in &o.counters {
            *self.counters.entry(name.clone()).or_default() += v;
        }
    }

    fn add_counters(&mut self, before: &[Counter], after: &[Counter]) {
        for (b, a) in before.iter().zip(after) {
            if a.name == b.name {
                *self.counters.entry(a.name.clone()).or_default() += a.value.saturating_sub(b.value);
            }
        }
    }
}

/// Folds exit records into per-phase statistics. Marker exits, which draw
/// the phase boundaries, count in the whole-run view only, so a phase holds
/// exactly the exits its own code caused. Each exit is folded once, into
/// its phase; the whole-run view is merged on demand.
#[derive(Debug)]
pub struct Accountant {
    phases: [PhaseStats; 4],
    markers: PhaseStats,
    current: Phase,
    last_counters: Vec<Counter>,
}

impl Accountant {
    /// Starts in the boot phase at `now_ns` with the backend's counters.
    pub fn new(now_ns: u64, counters: Vec<Counter>) -> Accountant {
        let mut phases: [PhaseStats; 4] = Default::default();
        phases[Phase::Boot as usize].start_ns = now_ns;
        phases[Phase::Boot as usize].end_ns = now_ns;
        Accountant { phases, markers: PhaseStats::default(), current: Phase::Boot, last_counters: counters }
    }

    pub fn phase(&self) -> Phase {
        self.current
    }

    /// An exit caused by the guest's own work.
    pub fn record(&mut self, r: &ExitRecord) {
        self.phases[self.current as usize].add(r);
    }

    /// A marker exit: counted in the whole run, then `next` begins.
    pub fn boundary(&mut self, r: &ExitRecord, next: Phase, counters: Vec<Counter>) {
        self.markers.add(r);
        self.close(r.exit_ns, counters);
        self.current = next;
        let p = &mut self.phases[next as usize];
        p.start_ns = r.resume_ns;
        p.end_ns = r.resume_ns;
    }

    /// Ends the run at `now_ns`.
    pub fn finish(&mut self, now_ns: u64, counters: Vec<Counter>) {
        self.close(now_ns, counters);
    }

    fn close(&mut self, now_ns: u64, counters: Vec<Counter>) {
        let p = &mut self.phases[self.current as usize];
        p.end_ns = now_ns;
        p.add_counters(&self.last_counters, &counters);
        self.last_counters = counters;
    }

    /// One phase's statistics (empty if the guest never entered it).
    pub fn phase_stats(&self, phase: Phase) -> &PhaseStats {
        &self.phases[phase as usize]
    }

    /// The whole run, markers included.
    pub fn all(&self) -> PhaseStats {
        let mut all = self.markers.clone();
        for p in &self.phases {
            all.merge(p);
        }
        all.start_ns = self.phases[Phase::Boot as usize].start_ns;
        all.end_ns = self.phases.iter().map(|p| p.end_ns).max().unwrap_or(0);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(reason: ExitReason, exit_ns: u64, handle: u64, target: Target) -> ExitRecord {
        ExitRecord {
            vcpu: 0,
            reason,
            qualification: 0,
            target,
            exit_ns,
            resume_ns: exit_ns + handle,
            run_ns: 100,
            work: HandlerWork::default(),
            halted_ns: 0,
        }
    }

    fn counters(exits: u64) -> Vec<Counter> {
        vec![Counter { name: "exits".into(), value: exits }]
    }

    #[test]
    fn markers_split_phases_and_count_only_in_the_whole_run() {
        let post = Target::Port { port: 0x80, device: "post" };
        let marker = Target::Port { port: 0x510, device: "marker" };
        let mut a = Accountant::new(0, counters(0));
        a.record(&rec(ExitReason::IoInstruction, 10, 5, post));
        a.boundary(&rec(ExitReason::IoInstruction, 20, 1, marker), Phase::Measure, counters(7));
        for i in 0..3 {
            a.record(&rec(ExitReason::IoInstruction, 30 + i * 10, 2 + i, post));
        }
        a.record(&rec(ExitReason::EptMisconfig, 70, 9, Target::Mmio { region: "scratch" }));
        a.boundary(&rec(ExitReason::IoInstruction, 80, 1, marker), Phase::Done, counters(12));
        a.finish(100, counters(13));

        let m = a.phase_stats(Phase::Measure);
        assert_eq!(m.samples(ExitReason::IoInstruction), 3);
        assert_eq!(m.samples(ExitReason::EptMisconfig), 1);
        let io = &m.reasons[&ExitReason::IoInstruction];
        assert_eq!((io.min_ns, io.max_ns, io.total_ns), (2, 4, 9));
        assert_eq!(io.histogram.len(), 3);
        assert_eq!(m.ports[&0x80].exits, 3);
        assert_eq!(m.mmio["scratch"].exits, 1);
        assert_eq!(m.counters["exits"], 5);
        assert_eq!((m.start_ns, m.end_ns), (21, 80));

        assert_eq!(a.phase_stats(Phase::Boot).samples(ExitReason::IoInstruction), 1);
        assert_eq!(a.phase_stats(Phase::Boot).counters["exits"], 7);
        assert_eq!(a.phase_stats(Phase::Warmup).total_exits(), 0);
        assert_eq!(a.all().samples(ExitReason::IoInstruction), 6);
        assert_eq!(a.all().ports[&0x510].exits, 2);
        assert_eq!(a.all().counters["exits"], 13);
    }

    #[test]
    fn a_halt_carries_its_halted_time_to_the_next_entry_but_not_into_handling() {
        let mut a = Accountant::new(0, counters(0));
        a.boundary(&rec(ExitReason::IoInstruction, 0, 1, Target::None), Phase::Measure, counters(0));
        for i in 0..2 {
            // 300 ns of handling, then 1 ms halted until the timer.
            let mut hlt = rec(ExitReason::Hlt, 10 + i * 2_000_000, 300, Target::None);
            hlt.halted_ns = 1_000_000;
            a.record(&hlt);
        }
        a.record(&rec(ExitReason::IoInstruction, 5_000_000, 700, Target::None));
        let m = a.phase_stats(Phase::Measure);
        let hlt = &m.reasons[&ExitReason::Hlt];
        assert_eq!((hlt.total_ns, hlt.min_ns, hlt.max_ns), (600, 300, 300));
        assert_eq!(
            (hlt.to_entry.total_ns, hlt.to_entry.min_ns, hlt.to_entry.max_ns),
            (2_000_600, 1_000_300, 1_000_300)
        );
        assert_eq!(hlt.to_entry.mean_ns(hlt.samples), 1_000_300.0);
        let io = &m.reasons[&ExitReason::IoInstruction];
        assert_eq!((io.total_ns, io.to_entry.total_ns), (700, 700));
        assert_eq!((m.total_handle_ns(), m.total_to_entry_ns()), (1_300, 2_001_300));
        assert_eq!(a.all().reasons[&ExitReason::Hlt].to_entry.total_ns, 2_000_600);
    }
}

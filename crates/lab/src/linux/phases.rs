//! A real kernel's run cut into boot phases from its trace alone: the
//! console text is rebuilt from the guest's writes to COM1's transmit
//! holding register (port 0x3f8 with the line control register's DLAB
//! clear, 16550 datasheet), each line remembering the exits that wrote its
//! first and last byte, and a phase ends where a line or the guest's RIP
//! says (a [`Cut`]). Every exit then falls in exactly one phase, counted by
//! reason, port, MMIO region and MSR, with the phase's guest time.

use exitlab_arch::bits::msr;
use exitlab_vmm::account::Target;
use exitlab_vmm::{Access, TraceEntry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where x86-64 Linux maps its kernel image (`__START_KERNEL_map`,
/// Documentation/arch/x86/x86_64/mm.rst): a RIP at or above it is the
/// kernel's own code, never the decompressor's (which runs identity-mapped).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// COM1's transmit holding register (and divisor latch low with DLAB set).
const COM1: u16 = 0x3f8;
/// COM1's line control register; bit 7 is DLAB.
const COM1_LCR: u16 = 0x3fb;
const DLAB: u32 = 0x80;

/// Where a phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Before the first exit from the kernel's own code (a RIP at or above
    /// [`KERNEL_BASE`]) or the first exit of the first console line
    /// holding the text, whichever comes first.
    KernelCode(&'static str),
    /// After the exit that wrote the end of the first console line holding
    /// the text.
    AfterLine(&'static str),
    /// Before the exit that wrote the start of the first console line
    /// holding the text.
    BeforeLine(&'static str),
}

impl Cut {
    /// What the cut waits for, in words.
    pub fn describe(&self) -> String {
        match self {
            Cut::KernelCode(t) => format!("no exit from kernel code and no console line with `{t}`"),
            Cut::AfterLine(t) | Cut::BeforeLine(t) => format!("no console line with `{t}`"),
        }
    }
}

/// The phases of a run: `names[i]` ends at `cuts[i]`; the last phase ends
/// with the run (`names.len() == cuts.len() + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub names: &'static [&'static str],
    pub cuts: &'static [Cut],
}

/// One console line and the exits (trace indices) that wrote its first
/// and last byte; the line's text without its line ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub first: usize,
    pub last: usize,
}

/// The console text the trace's COM1 writes make, and its lines (a last
/// line without its newline included).
pub fn console(trace: &[TraceEntry]) -> (String, Vec<Line>) {
    let mut bytes = Vec::new();
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut first = None;
    let mut dlab = false;
    let end_line = |line: &mut Vec<u8>, first: usize, last: usize, lines: &mut Vec<Line>| {
        let text = String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
        lines.push(Line { text, first, last });
        line.clear();
    };
    for (i, e) in trace.iter().enumerate() {
        let Access::Port { port, is_in: false, data, .. } = e.access else { continue };
        match port {
            COM1_LCR => dlab = data & DLAB != 0,
            COM1 if !dlab => {
                let b = data as u8;
                bytes.push(b);
                let start = *first.get_or_insert(i);
                if b == b'\n' {
                    end_line(&mut line, start, i, &mut lines);
                    first = None;
                } else {
                    line.push(b);
                }
            }
            _ => {}
        }
    }
    if let Some(start) = first {
        let last = trace.iter().rposition(|e| matches!(e.access, Access::Port { port: COM1, is_in: false, .. }));
        end_line(&mut line, start, last.unwrap_or(start), &mut lines);
    }
    (String::from_utf8_lossy(&bytes).into_owned(), lines)
}

/// One phase of a run: its guest time and its exits by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Guest time (backend clock, ns) when the phase began: when the guest
    /// resumed after the last exit of the phase before (0 for the first).
    pub start_ns: u64,
    /// When it ended: the resume after its own last exit.
    pub end_ns: u64,
    pub exits: u64,
    /// The VMM's handling time of its exits (exit to resume, ns).
    pub handle_ns: u64,
    /// Exits by reason (`perf kvm stat` names).
    pub reasons: BTreeMap<String, u64>,
    /// Port I/O exits by port, as "0x3f8 (serial)".
    pub ports: BTreeMap<String, u64>,
    /// MMIO exits by region (the bus's name, else the 4 KiB page).
    pub mmio: BTreeMap<String, u64>,
    /// RDMSR/WRMSR exits by MSR, as "IA32_EFER (0xc0000080)".
    pub msrs: BTreeMap<String, u64>,
}

impl Phase {
    /// The phase's guest time in seconds.
    pub fn guest_s(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// Exits per second of guest time; `None` for a phase of no time.
    pub fn exits_per_s(&self) -> Option<f64> {
        (self.end_ns > self.start_ns).then(|| self.exits as f64 / self.guest_s())
    }

    /// The share of the phase's guest time the VMM spent handling its exits.
    pub fn exit_share(&self) -> Option<f64> {
        (self.end_ns > self.start_ns).then(|| self.handle_ns as f64 / self.end_ns.saturating_sub(self.start_ns) as f64)
    }

    fn add(&mut self, e: &TraceEntry) {
        let r = &e.record;
        self.exits += 1;
        self.handle_ns += r.handle_ns();
        *self.reasons.entry(r.reason.name().to_string()).or_default() += 1;
        match (e.access, r.target) {
            (Access::Port { port, .. }, Target::Port { device, .. }) => {
                *self.ports.entry(format!("{port:#x} ({device})")).or_default() += 1
            }
            (Access::Port { port, .. }, _) => *self.ports.entry(format!("{port:#x} (no device)")).or_default() += 1,
            (_, Target::Mmio { region }) => *self.mmio.entry(region.to_string()).or_default() += 1,
            (Access::Mmio { gpa, .. }, _) => *self.mmio.entry(format!("{:#x}", gpa & !0xfff)).or_default() += 1,
            (Access::Msr { index, .. }, _) => *self.msrs.entry(msr_name(index)).or_default() += 1,
            _ => {}
        }
    }
}

/// An MSR as the SDM names it (Vol. 4, table 2-2), with its index.
pub fn msr_name(index: u32) -> String {
    const NAMES: [(u32, &str); 20] = [
        (msr::IA32_APIC_BASE, "IA32_APIC_BASE"),
        (msr::IA32_TSC, "IA32_TIME_STAMP_COUNTER"),
        (msr::IA32_SYSENTER_CS, "IA32_SYSENTER_CS"),
        (msr::IA32_SYSENTER_ESP, "IA32_SYSENTER_ESP"),
        (msr::IA32_SYSENTER_EIP, "IA32_SYSENTER_EIP"),
        (msr::IA32_TSC_DEADLINE, "IA32_TSC_DEADLINE"),
        (msr::IA32_EFER, "IA32_EFER"),
        (msr::IA32_STAR, "IA32_STAR"),
        (msr::IA32_LSTAR, "IA32_LSTAR"),
        (msr::IA32_CSTAR, "IA32_CSTAR"),
        (msr::IA32_FMASK, "IA32_FMASK"),
        (msr::IA32_FS_BASE, "IA32_FS_BASE"),
        (msr::IA32_GS_BASE, "IA32_GS_BASE"),
        (msr::IA32_KERNEL_GS_BASE, "IA32_KERNEL_GS_BASE"),
        (msr::IA32_TSC_ADJUST, "IA32_TSC_ADJUST"),
        (msr::IA32_SPEC_CTRL, "IA32_SPEC_CTRL"),
        (msr::IA32_MCG_CAP, "IA32_MCG_CAP"),
        (msr::IA32_MISC_ENABLE, "IA32_MISC_ENABLE"),
        (msr::IA32_PAT, "IA32_PAT"),
        (msr::IA32_TSC_AUX, "IA32_TSC_AUX"),
    ];
    // MSRs the VMM has no constant for, as the SDM (Vol. 4) names them.
    const MORE: [(u32, &str); 7] = [
        (0x34, "MSR_SMI_COUNT"),
        (0x3a, "IA32_FEATURE_CONTROL"),
        (0x4e, "IA32_PPIN_CTL"),
        (0x8b, "IA32_BIOS_SIGN_ID"),
        (0x140, "MSR_MISC_FEATURE_ENABLES"),
        (0x64e, "MSR_PPERF"),
        (0xda0, "IA32_XSS"),
    ];
    match NAMES.iter().chain(&MORE).find(|(i, _)| *i == index) {
        Some((_, name)) => format!("{name} ({index:#x})"),
        None => format!("{index:#x}"),
    }
}

/// The trace index where the phase after `from` begins, by `cut`.
fn boundary(trace: &[TraceEntry], lines: &[Line], from: usize, cut: Cut) -> Option<usize> {
    let line = |text: &str, ok: &dyn Fn(&Line) -> bool| lines.iter().find(|l| ok(l) && l.text.contains(text)).cloned();
    match cut {
        Cut::KernelCode(text) => {
            let by_rip = trace.iter().skip(from).position(|e| e.rip >= KERNEL_BASE).map(|i| i + from);
            let by_line = line(text, &|l| l.first >= from).map(|l| l.first);
            match (by_rip, by_line) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Cut::AfterLine(text) => line(text, &|l| l.last >= from).map(|l| l.last + 1),
        Cut::BeforeLine(text) => line(text, &|l| l.first >= from).map(|l| l.first),
    }
}

/// `trace` cut into `plan`'s phases. An error naming the phase and what
/// never came when a cut is not found.
pub fn cut(trace: &[TraceEntry], plan: &Plan) -> Result<Vec<Phase>, String> {
    let (_, lines) = console(trace);
    let mut starts = vec![0usize];
    for (name, c) in plan.names.iter().zip(plan.cuts) {
        let from = *starts.last().unwrap_or(&0);
        let b = boundary(trace, &lines, from, *c)
            .ok_or_else(|| format!("the {name} phase never ended: {}", c.describe()))?;
        starts.push(b);
    }
    starts.push(trace.len());
    let resume = |i: usize| if i == 0 { 0 } else { trace[i - 1].record.resume_ns };
    let mut phases = Vec::new();
    for (k, name) in plan.names.iter().enumerate() {
        let (a, b) = (starts[k], starts[k + 1]);
        let mut p = Phase { name: name.to_string(), start_ns: resume(a), end_ns: resume(b), ..Phase::default() };
        trace[a..b].iter().for_each(|e| p.add(e));
        phases.push(p);
    }
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exitlab_arch::ExitReason;
    use exitlab_vmm::account::ExitRecord;

    /// A synthetic trace: exit `i` reaches the VMM at 1,000 i + 500 ns and
    /// resumes 100 ns later.
    #[derive(Default)]
    struct Trace(Vec<TraceEntry>);

    impl Trace {
        fn exit(&mut self, reason: ExitReason, rip: u64, access: Access, target: Target) {
            let i = self.0.len() as u64;
            let record = ExitRecord {
                vcpu: 0,
                reason,
                qualification: 0,
                target,
                exit_ns: 1000 * i + 500,
                resume_ns: 1000 * i + 600,
                run_ns: 500,
                work: Default::default(),
                halted_ns: 0,
            };
            self.0.push(TraceEntry { record, access, rip });
        }

        fn out(&mut self, port: u16, data: u32, rip: u64, device: &'static str) {
            let access = Access::Port { port, size: 1, is_in: false, data };
            self.exit(ExitReason::IoInstruction, rip, access, Target::Port { port, device });
        }

        /// One exit per byte of `text` written to COM1.
        fn say(&mut self, text: &str, rip: u64) {
            text.bytes().for_each(|b| self.out(COM1, b.into(), rip, "serial"));
        }
    }

    const DECOMPRESSOR_RIP: u64 = 0x10_0000;
    const KERNEL_RIP: u64 = KERNEL_BASE + 0x100_0000;

    /// 8 decompressor exits (3 setting COM1's divisor, 4 printing "Dec\n",
    /// a #PF), 29 kernel exits (CPUID, WRMSR EFER, an APIC access, the
    /// 26 bytes of the init line), 31 user-space exits (the RTC, a HLT,
    /// the 29 bytes of the marker line), the triple fault.
    fn boot() -> Trace {
        let mut t = Trace::default();
        t.out(COM1_LCR, 0x83, DECOMPRESSOR_RIP, "serial");
        t.out(COM1, 0x01, DECOMPRESSOR_RIP, "serial");
        t.out(COM1_LCR, 0x03, DECOMPRESSOR_RIP, "serial");
        t.say("Dec\n", DECOMPRESSOR_RIP);
        t.exit(ExitReason::ExceptionNmi, 0x300_0000, Access::None, Target::None);
        t.exit(ExitReason::Cpuid, KERNEL_RIP, Access::None, Target::None);
        t.exit(ExitReason::MsrWrite, KERNEL_RIP, Access::Msr { index: msr::IA32_EFER, write: true }, Target::None);
        let lapic = Access::Mmio { gpa: 0xfee0_00b0, size: 4, is_write: true, data: 0 };
        t.exit(ExitReason::ApicAccess, KERNEL_RIP, lapic, Target::Mmio { region: "lapic" });
        t.say("Run /init as init process\n", KERNEL_RIP);
        t.out(0x70, 0x0a, 0x40_1000, "rtc");
        t.exit(ExitReason::Hlt, KERNEL_RIP, Access::None, Target::None);
        t.say("EXITLAB-MARKER: powering off\n", KERNEL_RIP);
        t.exit(ExitReason::TripleFault, KERNEL_RIP, Access::None, Target::None);
        t
    }

    const BOOT: Plan = Plan {
        names: &["decompressor", "kernel", "user space", "shutdown"],
        cuts: &[
            Cut::KernelCode("Linux version"),
            Cut::AfterLine(" as init process"),
            Cut::AfterLine("EXITLAB-MARKER: powering off"),
        ],
    };

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_console_is_the_thr_writes_with_dlab_clear() {
        let t = boot();
        let (text, lines) = console(&t.0);
        assert_eq!(text, "Dec\nRun /init as init process\nEXITLAB-MARKER: powering off\n");
        let spans: Vec<(&str, usize, usize)> = lines.iter().map(|l| (l.text.as_str(), l.first, l.last)).collect();
        assert_eq!(
            spans,
            [("Dec", 3, 6), ("Run /init as init process", 11, 36), ("EXITLAB-MARKER: powering off", 39, 67)]
        );
    }

    #[test]
    fn a_boot_is_cut_at_the_kernels_first_exit_and_after_the_init_and_marker_lines() {
        let phases = cut(&boot().0, &BOOT).unwrap();
        let summary: Vec<(&str, u64, u64, u64, u64)> =
            phases.iter().map(|p| (p.name.as_str(), p.exits, p.start_ns, p.end_ns, p.handle_ns)).collect();
        assert_eq!(
            summary,
            [
                ("decompressor", 8, 0, 7_600, 800),
                ("kernel", 29, 7_600, 36_600, 2_900),
                ("user space", 31, 36_600, 67_600, 3_100),
                ("shutdown", 1, 67_600, 68_600, 100),
            ]
        );
        let [d, k, u, s] = &phases[..] else { panic!("{phases:?}") };
        assert_eq!(d.reasons, map(&[("EXCEPTION_NMI", 1), ("IO_INSTRUCTION", 7)]));
        assert_eq!(d.ports, map(&[("0x3f8 (serial)", 5), ("0x3fb (serial)", 2)]));
        assert_eq!(k.reasons, map(&[("APIC_ACCESS", 1), ("CPUID", 1), ("IO_INSTRUCTION", 26), ("MSR_WRITE", 1)]));
        assert_eq!(k.mmio, map(&[("lapic", 1)]));
        assert_eq!(k.msrs, map(&[("IA32_EFER (0xc0000080)", 1)]));
        assert_eq!(u.reasons, map(&[("HLT", 1), ("IO_INSTRUCTION", 30)]));
        assert_eq!(u.ports, map(&[("0x3f8 (serial)", 29), ("0x70 (rtc)", 1)]));
        assert_eq!(s.reasons, map(&[("TRIPLE_FAULT", 1)]));
        assert_eq!(d.exits_per_s(), Some(8.0 / 7.6e-6));
        assert_eq!(s.exit_share(), Some(0.1));
    }

    #[test]
    fn without_a_kernel_rip_the_linux_version_line_ends_the_decompressor() {
        let mut t = Trace::default();
        t.say("Dec\n", DECOMPRESSOR_RIP);
        t.exit(ExitReason::Cpuid, 0x100_0000, Access::None, Target::None);
        t.say("Linux version 6.1\n", 0x100_0000);
        t.say("Run /init as init process\n", 0x100_0000);
        t.say("EXITLAB-MARKER: powering off\n", 0x100_0000);
        let counts: Vec<u64> = cut(&t.0, &BOOT).unwrap().iter().map(|p| p.exits).collect();
        // "Dec\n" and the CPUID; "Linux version 6.1\n" and the init line;
        // the marker; nothing after it.
        assert_eq!(counts, [5, 18 + 26, 29, 0]);
        let last = cut(&t.0, &BOOT).unwrap().pop().unwrap();
        assert_eq!((last.start_ns, last.end_ns, last.exits_per_s()), (77_600, 77_600, None));
    }

    #[test]
    fn an_idle_window_ends_before_the_panic_line() {
        let mut t = Trace::default();
        t.say("Run /bin/busybox as init process\n", KERNEL_RIP);
        for _ in 0..3 {
            t.exit(ExitReason::Hlt, KERNEL_RIP, Access::None, Target::None);
            t.out(0x20, 0x20, KERNEL_RIP, "pic-master");
        }
        t.say("Kernel panic\n", KERNEL_RIP);
        t.exit(ExitReason::TripleFault, KERNEL_RIP, Access::None, Target::None);
        let plan = Plan {
            names: &["boot", "idle", "panic"],
            cuts: &[Cut::AfterLine(" as init process"), Cut::BeforeLine("Kernel panic")],
        };
        let phases = cut(&t.0, &plan).unwrap();
        let counts: Vec<u64> = phases.iter().map(|p| p.exits).collect();
        assert_eq!(counts, [33, 6, 14]);
        assert_eq!(phases[1].reasons, map(&[("HLT", 3), ("IO_INSTRUCTION", 3)]));
        assert_eq!((phases[1].start_ns, phases[1].end_ns), (32_600, 38_600));
    }

    #[test]
    fn a_cut_that_never_comes_is_an_error_naming_the_phase() {
        let mut t = boot();
        t.0.truncate(40);
        let e = cut(&t.0, &BOOT).unwrap_err();
        assert_eq!(e, "the user space phase never ended: no console line with `EXITLAB-MARKER: powering off`");
    }

    #[test]
    fn msrs_are_named_as_the_sdm_names_them() {
        assert_eq!(msr_name(msr::IA32_EFER), "IA32_EFER (0xc0000080)");
        assert_eq!(msr_name(0x8b), "IA32_BIOS_SIGN_ID (0x8b)");
        assert_eq!(msr_name(0x150), "0x150");
    }
}

//! `exitlab`: run guest workloads, see their VM exits.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use exitlab_guest::layout::Phase;
use exitlab_guest::{Image, Workload, WORKLOADS};
use exitlab_lab::backend::{BackendKind, BackendSpec};
use exitlab_vmm::limits::RunLimits;
use exitlab_vmm::{render_json, render_table, Outcome, RunOptions, RunReport, StatView};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` for the command's output, ending the program quietly when
/// the reader has closed stdout (`exitlab list | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

/// `print!` with the same care.
macro_rules! say_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

/// A closed pipe means the reader has enough: exit 0. Anything else is an
/// error the user should see.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("exitlab: cannot write the output: {e}");
    std::process::exit(2)
}

mod bench;
mod calib;
mod sweep;

#[derive(Parser)]
#[command(name = "exitlab", version, about = "See VM exits: where they come from and what they cost")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The deterministic simulated x86-64 machine (virtual time).
    Sim,
    /// The host's KVM (/dev/kvm, or $EXITLAB_KVM_DEVICE).
    Kvm,
}

impl Backend {
    fn kind(self) -> BackendKind {
        match self {
            Backend::Sim => BackendKind::Sim,
            Backend::Kvm => BackendKind::Kvm,
        }
    }

    fn name(self) -> &'static str {
        self.kind().name()
    }
}

/// Where and how to run a guest.
#[derive(clap::Args)]
struct MachineArgs {
    /// Machine to run on.
    #[arg(long, value_enum, default_value = "sim")]
    backend: Backend,
    /// KVM device node (kvm backend).
    #[arg(long, value_name = "PATH")]
    kvm_device: Option<PathBuf>,
    /// Hardware profile (sim backend): legacy, modern, or a TOML file.
    #[arg(long, value_name = "NAME|FILE", default_value = "modern")]
    profile: String,
    /// Seed for the profile's cost distributions (sim backend).
    #[arg(long, value_name = "N", default_value = "0")]
    seed: String,
    /// Answer CPUID leaf LEAF with these registers instead of the built-in
    /// model (sim backend; repeatable): LEAF=EAX:EBX:ECX:EDX, hex or decimal.
    #[arg(long, value_name = "LEAF=EAX:EBX:ECX:EDX")]
    cpuid: Vec<String>,
    /// Stop a runaway guest after this many instructions (sim backend).
    #[arg(long, value_name = "N")]
    max_instructions: Option<String>,
    /// Stop a runaway guest after this much guest time, e.g. 10s, 500ms
    /// (sim backend: virtual time; kvm backend: wall-clock time of the
    /// run calls, a guest spinning inside KVM_RUN included).
    #[arg(long, value_name = "DURATION")]
    max_time: Option<String>,
    /// Stop after the VMM has handled this many exits, or `off` (both
    /// backends; default 1000000000).
    #[arg(long, value_name = "N|off")]
    max_exits: Option<String>,
    /// Stop after this much host time, e.g. 30s, or `off` (both backends;
    /// default 10min).
    #[arg(long, value_name = "DURATION|off")]
    max_host_time: Option<String>,
    /// Let virtio notifications exit to userspace instead of signalling
    /// an ioeventfd (kvm backend).
    #[arg(long)]
    no_ioeventfd: bool,
    /// Inject device interrupts from userspace (KVM_SIGNAL_MSI) instead of
    /// through irqfds (kvm backend).
    #[arg(long)]
    no_irqfd: bool,
}

#[derive(clap::Args)]
struct WorkloadArgs {
    /// Workload name (see `exitlab list`).
    workload: String,
    /// Iterations in the measure phase (same as --set n=N; packets=N for
    /// the ping-pongs).
    #[arg(short = 'n', value_name = "N")]
    n: Option<String>,
    /// Set a workload parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in workloads and their parameters.
    List,
    /// Run a workload and print its exits as `perf kvm stat report` does.
    Stat {
        #[command(flatten)]
        w: WorkloadArgs,
        #[command(flatten)]
        m: MachineArgs,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Only this phase: boot, warmup, measure or done (default: the whole run).
        #[arg(long, value_name = "NAME")]
        phase: Option<String>,
        /// Also print what the guest wrote to its serial console.
        #[arg(long)]
        console: bool,
    },
    /// Run one experiment (a built-in name or a scenario file): every point
    /// of its sweep; writes results.csv, results.json, SVG figures and
    /// summary.md.
    Run {
        /// Scenario name (e1, ...) or TOML file.
        scenario: String,
        /// Run every point on this backend instead of the scenario's.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// Override a workload parameter for every point (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The paper-size run instead of the quick one.
        #[arg(long)]
        full: bool,
        /// Output directory (default: out/<scenario>, or
        /// out/<scenario>-shard-I-of-N with --shard).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run only shard I of N (I from 0 to N-1, as SLURM_ARRAY_TASK_ID
        /// and JOB_COMPLETION_INDEX count) and write it as a part for
        /// `exitlab merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
    },
    /// Run every built-in experiment and write report.md and a
    /// self-contained report.html.
    Report {
        /// Output directory (default: out/report, or
        /// out/report-shard-I-of-N with --shard).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Machines: `sim`, or `sim,kvm` for this host's KVM beside the
        /// simulator (default: the host too where /dev/kvm is usable).
        #[arg(long, value_name = "sim|sim,kvm")]
        backend: Option<String>,
        /// The paper-size runs instead of the quick ones.
        #[arg(long)]
        full: bool,
        /// Run only shard I of N of every experiment's points, E8 and the
        /// host's side together, and write it as a part for `exitlab merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Add this profile (e.g. one `exitlab calibrate` wrote: this host,
        /// calibrated) beside the built-in ones in every experiment that
        /// sweeps profiles (repeatable).
        #[arg(long, value_name = "NAME|FILE")]
        profile: Vec<String>,
    },
    /// Merge the parts that `run --shard` or `report --shard` wrote into
    /// the complete set, as one run without --shard would have written it.
    Merge {
        /// The parts' directories, one per shard.
        #[arg(value_name = "DIR", required = true)]
        parts: Vec<PathBuf>,
        /// Output directory (default: out/<scenario>, or out/report).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Record every exit of a run as Chrome/Perfetto trace-event JSON.
    Trace {
        #[command(flatten)]
        w: WorkloadArgs,
        #[command(flatten)]
        m: MachineArgs,
        /// Where to write the trace.
        #[arg(long, value_name = "FILE", default_value = "trace.json")]
        out: PathBuf,
    },
    /// Run the architectural correctness suite (single-step #DB after
    /// instructions the VMM completes, injected exceptions) on a backend.
    Check {
        /// Machine to run on.
        #[arg(long, value_enum, default_value = "sim")]
        backend: Backend,
        /// Hardware profile (sim); default: every built-in profile.
        #[arg(long, value_name = "NAME|FILE")]
        profile: Option<String>,
        /// KVM device node (kvm backend).
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
    },
    /// List the hardware profiles with every figure and its source.
    Profiles {
        /// Show these profiles (built-in names or files, e.g. a calibrated
        /// one) instead of the built-in ones.
        #[arg(value_name = "NAME|FILE")]
        profiles: Vec<String>,
    },
    /// Measure exitlab itself.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Measure this host's KVM into a hardware profile (every figure with
    /// its machine, date, count and spread), usable at once with
    /// --profile FILE.
    Calibrate {
        /// The host's backend (only kvm has anything to measure).
        #[arg(long, value_enum, default_value = "kvm")]
        backend: Backend,
        /// KVM device node.
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
        /// Write the profile here (default: print it).
        #[arg(long, value_name = "FILE.toml")]
        out: Option<PathBuf>,
        /// Host runs per probe; figures are their median, spreads 1.4826 x
        /// their median absolute deviation.
        #[arg(long, value_name = "N", default_value = "10")]
        rounds: String,
        /// Seconds to spread the rounds over, so that the spreads include
        /// the host's drift (0: back to back).
        #[arg(long, value_name = "SECONDS", default_value = "60")]
        span: String,
        /// The profile's name.
        #[arg(long, default_value = "host")]
        name: String,
        /// Compare with an earlier calibration: exit status 1 when a
        /// measured figure disagrees beyond the two spreads.
        #[arg(long, value_name = "FILE.toml")]
        compare: Option<PathBuf>,
    },
    /// Run a fixed set of workloads on the simulator with a profile and on
    /// this host's KVM: exits, time per iteration and the simulator's error.
    Validate {
        /// The profile to check (a calibrated one, or any).
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// The host's backend.
        #[arg(long, value_enum, default_value = "kvm")]
        backend: Backend,
        /// KVM device node.
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
        /// Host runs per workload (the median is compared).
        #[arg(long, value_name = "N", default_value = "5")]
        rounds: String,
        /// One JSON object with a `workloads` array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Assemble a workload's guest image; print it or write its bytes.
    Image {
        #[command(flatten)]
        w: WorkloadArgs,
        /// Print the disassembly with symbols.
        #[arg(long)]
        disasm: bool,
        /// Write the raw image bytes to FILE.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The simulator's speed on a compute-bound guest loop (guest MIPS)
    /// and the host time of one hour of tickless idle guest time.
    Sim {
        /// Rounds of the compute loop; the median is reported.
        #[arg(long, default_value = "5")]
        rounds: String,
        /// The loop: `dec` or `alu` (the speed anchors' 64-bit bodies,
        /// ../shared/bench-anchors) or `io-mix` (exitlab's own).
        #[arg(long = "loop", value_name = "dec|alu|io-mix", default_value = "io-mix")]
        body: String,
        /// Also time the anchors' dec and alu loops under QEMU TCG and
        /// Bochs (run.sh) in this invocation and print exitlab's ratios.
        #[arg(long)]
        vs: bool,
        /// The bench-anchors folder holding run.sh.
        #[arg(long, value_name = "DIR", default_value = "../shared/bench-anchors")]
        anchors: PathBuf,
    },
    /// The VMM's userspace exit round trip beside a bare KVM_RUN loop on
    /// the same host and guest (pio-out), as a ratio.
    Kvm {
        /// pio-out iterations per round.
        #[arg(short = 'n', value_name = "N", default_value = "20000")]
        n: String,
        /// Rounds of each loop, alternating; the median is reported.
        #[arg(long, default_value = "5")]
        rounds: String,
        /// KVM device node.
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
    },
}

/// Bad input: one line on stderr, exit status 2.
pub(crate) struct UsageError(pub(crate) String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

fn find_workload(name: &str) -> Result<&'static Workload, UsageError> {
    exitlab_guest::find_workload(name).ok_or_else(|| {
        let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
        UsageError(format!("unknown workload `{name}` (try one of: {})", names.join(", ")))
    })
}

fn build(w: &WorkloadArgs) -> Result<(&'static Workload, Image), UsageError> {
    let workload = find_workload(&w.workload)?;
    let mut sets: Vec<String> = Vec::new();
    if let Some(n) = &w.n {
        sets.push(format!("{}={n}", workload.count));
    }
    sets.extend(w.set.iter().cloned());
    let params = workload.resolve(sets.iter().map(String::as_str))?;
    let image = workload.build(&params).map_err(|e| UsageError(format!("internal error: {e}")))?;
    Ok((workload, image))
}

fn list() {
    for w in WORKLOADS {
        say!("{:<12} {}", w.name, w.summary);
        for p in w.params() {
            say!("    {:<12} {:<40} default {}, range {}", p.name, p.help, p.default_text(), p.range_text());
        }
    }
}

fn image(w: &WorkloadArgs, disasm: bool, output: Option<PathBuf>) -> Result<(), UsageError> {
    let (_, img) = build(w)?;
    if let Some(path) = output {
        write_atomically(&path, &img.bytes)?;
    }
    if disasm {
        say_part!("{}", img.disassemble());
    } else {
        say!(
            "image `{}`: {} bytes at {:#x}, entry {:#x}, {} symbols",
            img.name,
            img.bytes.len(),
            img.load_gpa,
            img.entry,
            img.symbols.len()
        );
        for (name, addr) in &img.symbols {
            say!("  {addr:#010x} {name}");
        }
    }
    Ok(())
}

fn check(backend: Backend, profile: Option<String>, kvm_device: Option<PathBuf>) -> Result<ExitCode, UsageError> {
    use exitlab_sim::profile::{Profile, BUILT_IN};
    use exitlab_vmm::check::{run_case, CASES};
    let specs: Vec<(String, BackendSpec)> = match backend {
        Backend::Sim => {
            let profiles: Vec<Profile> = match &profile {
                Some(p) => vec![Profile::load(p)?],
                None => BUILT_IN.iter().map(|(n, _)| Profile::load(n)).collect::<Result<_, _>>()?,
            };
            profiles.into_iter().map(|p| (format!("sim/{}", p.name), BackendSpec::sim(p, 0))).collect()
        }
        Backend::Kvm => vec![("kvm".to_string(), BackendSpec::kvm(kvm_device))],
    };
    let mut failed = 0;
    for (on, spec) in &specs {
        for case in CASES {
            // A backend that cannot be opened is bad input, not a failed
            // case.
            let mut vm = spec.open(case.image().memory_size)?;
            let r = run_case(case, |image| vm.run(image, &RunOptions::default()));
            let verdict = if r.pass { "PASS" } else { "FAIL" };
            failed += usize::from(!r.pass);
            say!("{verdict} {:<26} {on:<12} expected {}; got {}", r.name, r.expected, r.got);
        }
    }
    if failed > 0 {
        say!("{failed} case(s) failed");
        return Ok(ExitCode::from(1));
    }
    say!("all cases passed");
    Ok(ExitCode::SUCCESS)
}

fn profiles(names: &[String]) -> Result<(), UsageError> {
    use exitlab_sim::profile::{Profile, BUILT_IN};
    let list: Vec<Profile> = if names.is_empty() {
        BUILT_IN.iter().map(|(name, _)| Profile::load(name)).collect::<Result<_, _>>()?
    } else {
        names.iter().map(|n| Profile::load(n)).collect::<Result<_, _>>()?
    };
    for p in list {
        let f = p.features;
        say!("{}: {}", p.name, p.summary);
        if let Some(h) = &p.host {
            for (k, v) in [
                ("cpu", &h.cpu),
                ("kernel", &h.kernel),
                ("kvm", &h.kvm),
                ("date", &h.date),
                ("scheduling", &h.scheduling),
                ("notes", &h.notes),
            ] {
                if let Some(v) = v {
                    say!("  host {k}: {v}");
                }
            }
        }
        say!(
            "  features: ept={} vpid={} apicv={} posted_interrupts={} pml={} decode_assist={} tsx={}",
            f.ept,
            f.vpid,
            f.apicv,
            f.posted_interrupts,
            f.pml,
            f.decode_assist,
            f.tsx
        );
        for (key, fig) in p.figures() {
            let value = match fig.spread {
                Some(s) if s > 0.0 => format!("{} +- {}", fig.mean(), s),
                _ => format!("{}", fig.mean()),
            };
            say!("  {key:<28} {value:>16}  {}", fig.source);
        }
        say!();
    }
    Ok(())
}

/// Writes via a temporary file and a rename, so a reader never sees half a
/// file and an old file survives a failed write.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), UsageError> {
    let tmp = path.with_extension("tmp-exitlab");
    let res = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        UsageError(format!("cannot write {}: {e}", path.display()))
    })
}

/// The VMM's limits from `--max-exits` and `--max-host-time` (each a
/// number or duration, or `off`), over the defaults.
fn vmm_limits(m: &MachineArgs) -> Result<RunLimits, UsageError> {
    let mut limits = RunLimits::default();
    if let Some(t) = &m.max_exits {
        limits.max_exits =
            match t.trim() {
                "off" => None,
                n => Some(n.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    UsageError(format!("--max-exits: `{t}` is not a positive whole number or `off`"))
                })?),
            };
    }
    if let Some(t) = &m.max_host_time {
        limits.max_host_time = match t.trim() {
            "off" => None,
            d => Some(std::time::Duration::from_nanos(parse_duration("--max-host-time", d)?)),
        };
    }
    Ok(limits)
}

/// `10s`, `250ms`, `40us`, `7ns` (no unit: seconds) as nanoseconds, for
/// the flag `flag`.
fn parse_duration(flag: &str, text: &str) -> Result<u64, UsageError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" => 1e3,
        "ns" => 1.0,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(UsageError(format!("{flag}: unknown unit `{unit}` in `{text}` (use ns, us, ms, s, min or h)")))
        }
    };
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && (v * scale) < 1.8e19 => Ok((v * scale) as u64),
        _ => Err(UsageError(format!("{flag}: `{text}` is not a positive duration"))),
    }
}

/// `LEAF=EAX:EBX:ECX:EDX`, each number hex (0x...) or decimal.
fn parse_cpuid(text: &str) -> Result<(u32, [u32; 4]), UsageError> {
    let bad = || UsageError(format!("--cpuid: `{text}` is not LEAF=EAX:EBX:ECX:EDX"));
    let num = |s: &str| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let (leaf, regs) = text.split_once('=').ok_or_else(bad)?;
    let regs: Vec<u32> = regs.split(':').map(num).collect::<Option<_>>().ok_or_else(bad)?;
    let regs: [u32; 4] = regs.try_into().map_err(|_| bad())?;
    Ok((num(leaf).ok_or_else(bad)?, regs))
}

/// The backend the machine flags ask for; a flag for the other backend is
/// refused.
fn backend_spec(m: &MachineArgs) -> Result<BackendSpec, UsageError> {
    match m.backend {
        Backend::Sim => {
            let profile = exitlab_sim::profile::Profile::load(&m.profile)?;
            let seed = m
                .seed
                .trim()
                .parse::<u64>()
                .map_err(|_| UsageError(format!("--seed: `{}` is not a whole number", m.seed)))?;
            let max_instructions = match &m.max_instructions {
                Some(t) => Some(
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| UsageError(format!("--max-instructions: `{t}` is not a whole number")))?,
                ),
                None => None,
            };
            let max_time_ns = match &m.max_time {
                Some(t) => Some(parse_duration("--max-time", t)?),
                None => None,
            };
            if m.no_ioeventfd || m.no_irqfd {
                return Err(UsageError("--no-ioeventfd and --no-irqfd are KVM options (use --backend kvm)".into()));
            }
            let limits = exitlab_sim::RunLimits { max_instructions, max_time_ns };
            Ok(BackendSpec::Sim { profile: Box::new(profile), seed, limits })
        }
        Backend::Kvm => {
            let max_time = m.max_time.as_deref().map(|t| parse_duration("--max-time", t)).transpose()?;
            let device = m.kvm_device.clone().unwrap_or_else(exitlab_kvm::device_path);
            Ok(BackendSpec::Kvm { device, max_time: max_time.map(std::time::Duration::from_nanos) })
        }
    }
}

fn run_on(m: &MachineArgs, img: &Image) -> Result<RunReport, UsageError> {
    run_with(m, img, RunOptions::default())
}

fn run_with(m: &MachineArgs, img: &Image, mut options: RunOptions) -> Result<RunReport, UsageError> {
    let spec = backend_spec(m)?;
    options.limits = vmm_limits(m)?;
    match m.backend {
        Backend::Sim => options.cpuid = m.cpuid.iter().map(|t| parse_cpuid(t)).collect::<Result<_, _>>()?,
        Backend::Kvm => {
            options.fast_path = exitlab_vmm::platform::FastPath { ioeventfd: !m.no_ioeventfd, irqfd: !m.no_irqfd }
        }
    }
    let mut vm = spec.open(img.memory_size)?;
    vm.run(&img.boot_image(), &options).map_err(|e| UsageError(format!("run failed: {e}")))
}

fn lab_run(
    name: &str,
    backend: Option<Backend>,
    set: &[String],
    full: bool,
    out: Option<PathBuf>,
    shard: Option<&str>,
) -> Result<(), UsageError> {
    let mut s = exitlab_lab::Scenario::load(name)?;
    if let Some(b) = backend {
        s.backends = vec![b.name().to_string()];
        s.sweep.remove("backend");
    }
    // On KVM, what the host can run: the axes it cannot change dropped.
    if backend == Some(Backend::Kvm) {
        s = exitlab_lab::host::scenario(&s).unwrap_or_else(|| Err(exitlab_lab::host::skipped(&s)))?;
    }
    let mut notes = Vec::new();
    for a in set {
        let (k, v) = a.split_once('=').ok_or_else(|| UsageError(format!("`{a}` is not of the form key=value")))?;
        notes.extend(s.set(k.trim(), toml_value(v)));
    }
    // Re-check the edited scenario as a whole.
    s.check(&format!("{name} with --set"), "")?;
    for n in notes {
        say!("{n}");
    }
    sweep::run(&s, full, shard, out)
}

/// A `--set` value as TOML: a number or boolean when it parses as one.
fn toml_value(v: &str) -> toml::Value {
    let v = v.trim();
    v.parse::<i64>()
        .map(toml::Value::Integer)
        .or_else(|_| v.parse::<f64>().map(toml::Value::Float))
        .or_else(|_| v.parse::<bool>().map(toml::Value::Boolean))
        .unwrap_or_else(|_| toml::Value::String(v.to_string()))
}

fn trace(w: &WorkloadArgs, m: &MachineArgs, out: &std::path::Path) -> Result<(), UsageError> {
    let (workload, img) = build(w)?;
    let report = run_with(m, &img, RunOptions { trace: true, ..Default::default() })?;
    let doc = exitlab_lab::trace::chrome_trace(workload.name, m.backend.name(), &report.trace);
    let bytes = serde_json::to_vec(&doc).expect("trace serializes");
    write_atomically(out, &bytes)?;
    say!("{} exits -> {}", report.trace.len(), out.display());
    Ok(())
}

fn stat(
    w: &WorkloadArgs,
    m: &MachineArgs,
    json: bool,
    phase: Option<String>,
    console: bool,
) -> Result<ExitCode, UsageError> {
    let phase = match phase.as_deref() {
        None | Some("all") => None,
        Some(name) => Some(Phase::from_name(name).ok_or_else(|| {
            UsageError(format!("unknown phase `{name}` (try one of: all, boot, warmup, measure, done)"))
        })?),
    };
    let (workload, img) = build(w)?;
    let report = run_on(m, &img)?;
    let stats = match phase {
        Some(p) => report.accountant.phase_stats(p).clone(),
        None => report.accountant.all(),
    };
    let view = StatView {
        workload: workload.name,
        backend: m.backend.name(),
        phase: phase.map_or("all", Phase::name),
        stats: &stats,
        virtual_time: m.backend == Backend::Sim,
    };
    if console {
        eprint!("{}", report.console());
    }
    let outcome = match &report.outcome {
        Outcome::Exited { status } => serde_json::json!({ "status": status }),
        Outcome::GuestError(e) => serde_json::json!({ "guest_error": e.to_string() }),
    };
    let monitor = report.monitor.as_ref().map(|m| {
        let kind = match m.kind {
            exitlab_guest::machine::MonitorKind::WriteProtect => "write-protect",
            exitlab_guest::machine::MonitorKind::Pml => "pml",
        };
        let in_range = m.log.iter().filter(|g| m.covers(**g)).count();
        (kind, in_range)
    });
    let packets =
        exitlab_vmm::packets::PacketStats::of(report.accountant.phase_stats(Phase::Measure), &report.round_trips_ns);
    if json {
        let mut v = render_json(&view);
        v["outcome"] = outcome;
        if let Some(p) = &packets {
            // Per packet, always over the measure phase (the packets').
            v["packets"] = p.packets.into();
            v["exits_per_packet"] = p.exits_per_packet.into();
            v["exits_per_packet_by_reason"] =
                serde_json::to_value(&p.exits_per_packet_by_reason).expect("plain numbers serialize");
            v["handler_ns_per_packet"] = p.handler_ns_per_packet.into();
            v["interrupts_per_packet"] = p.interrupts_per_packet.into();
            v["latency_ns"] = serde_json::to_value(p.latency_ns).expect("plain numbers serialize");
        }
        if !report.irq_latencies_ns.is_empty() {
            let s = exitlab_vmm::packets::Summary::of(&report.irq_latencies_ns);
            v["irq_latency_ns"] = serde_json::to_value(s).expect("plain numbers serialize");
        }
        if let Some((kind, logged)) = monitor {
            v["monitor"] = serde_json::json!({ "kind": kind, "writes_or_pages_logged": logged });
        }
        say!("{}", serde_json::to_string_pretty(&v).expect("JSON values always serialize"));
    } else {
        say_part!("{}", render_table(&view));
        if let Some(p) = &packets {
            let l = p.latency_ns;
            say!(
                "\nPackets (measure phase): {}; per packet {:.2} exits, {:.2}us in the VMM, {:.2} interrupts",
                p.packets,
                p.exits_per_packet,
                p.handler_ns_per_packet / 1000.0,
                p.interrupts_per_packet
            );
            say!(
                "Round trip: mean {:.2}us, stddev {:.3}us, p50 {:.2}us, p99 {:.2}us",
                l.mean / 1000.0,
                l.stddev / 1000.0,
                l.p50 as f64 / 1000.0,
                l.p99 as f64 / 1000.0
            );
        }
        if !report.irq_latencies_ns.is_empty() {
            let l = exitlab_vmm::packets::Summary::of(&report.irq_latencies_ns);
            say!(
                "\nInterrupt latency, completion to driver ({} completions): mean {:.2}us, stddev {:.3}us, p50 {:.2}us, p99 {:.2}us",
                report.irq_latencies_ns.len(),
                l.mean / 1000.0,
                l.stddev / 1000.0,
                l.p50 as f64 / 1000.0,
                l.p99 as f64 / 1000.0
            );
        }
        if let Some((kind, logged)) = monitor {
            say!("\nWrite monitor ({kind}): {logged} entries logged over the whole run in the watched range.");
        }
    }
    Ok(match report.outcome {
        Outcome::Exited { status: 0 } => ExitCode::SUCCESS,
        Outcome::Exited { status } => {
            eprintln!("exitlab: guest exited with status {status}");
            ExitCode::from(1)
        }
        Outcome::GuestError(e) => {
            eprintln!("exitlab: {e}");
            ExitCode::from(1)
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        Command::Stat { w, m, json, phase, console } => stat(&w, &m, json, phase, console),
        Command::Image { w, disasm, output } => image(&w, disasm, output).map(|_| ExitCode::SUCCESS),
        Command::Run { scenario, backend, set, full, out, shard } => {
            lab_run(&scenario, backend, &set, full, out, shard.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Command::Report { out, full, shard, backend, profile } => {
            sweep::report(full, backend.as_deref(), shard.as_deref(), out, &profile).map(|_| ExitCode::SUCCESS)
        }
        Command::Merge { parts, out } => sweep::merge(&parts, out).map(|_| ExitCode::SUCCESS),
        Command::Trace { w, m, out } => trace(&w, &m, &out).map(|_| ExitCode::SUCCESS),
        Command::Check { backend, profile, kvm_device } => check(backend, profile, kvm_device),
        Command::Profiles { profiles: names } => profiles(&names).map(|_| ExitCode::SUCCESS),
        Command::Calibrate { backend, kvm_device, out, rounds, span, name, compare } => {
            calib::calibrate(backend, kvm_device, out, (&rounds, &span), &name, compare)
        }
        Command::Validate { profile, backend, kvm_device, rounds, json } => {
            calib::validate(&profile, backend, kvm_device, &rounds, json)
        }
        Command::Bench { what: BenchCommand::Sim { rounds, body, vs, anchors } } => {
            bench::sim(&rounds, &body, vs, anchors).map(|_| ExitCode::SUCCESS)
        }
        Command::Bench { what: BenchCommand::Kvm { n, rounds, kvm_device } } => {
            bench::kvm(&n, &rounds, kvm_device).map(|_| ExitCode::SUCCESS)
        }
    };
    match res {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("exitlab: {msg}");
            ExitCode::from(2)
        }
    }
}

//! `exitlab`: run guest workloads, see their VM exits.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use exitlab_guest::{Image, Workload, WORKLOADS};
use exitlab_lab::backend::{BackendKind, BackendSpec};
use exitlab_loader::Format;
use exitlab_vmm::console::StopRule;
use exitlab_vmm::limits::RunLimits;
use exitlab_vmm::{RunOptions, RunReport};
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

mod args;
mod bench;
mod calib;
mod guest;
mod stat;
mod suite;
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
    #[arg(long, value_name = "N", default_value = "0", allow_hyphen_values = true)]
    seed: String,
    /// Answer CPUID leaf LEAF with these registers instead of the built-in
    /// model (sim backend; repeatable): LEAF=EAX:EBX:ECX:EDX, hex or decimal.
    #[arg(long, value_name = "LEAF=EAX:EBX:ECX:EDX")]
    cpuid: Vec<String>,
    /// Stop a runaway guest after this many instructions (sim backend).
    #[arg(long, value_name = "N", default_value = "20000000000", allow_hyphen_values = true)]
    max_instructions: String,
    /// Stop a runaway guest after this much guest time: ns, us, ms, s, min
    /// or h (sim backend: virtual time; kvm backend: wall-clock time of the
    /// run calls, a guest spinning inside KVM_RUN included).
    #[arg(long, value_name = "DURATION", default_value = "1h", allow_hyphen_values = true)]
    max_time: String,
    /// Stop the run after the VMM has handled this many exits, or `off`
    /// (both backends).
    #[arg(long, value_name = "N|off", default_value = "1000000000", allow_hyphen_values = true)]
    max_exits: String,
    /// Stop the run after this many exits in a row with no instruction
    /// retired between them (an interrupt storm or a livelock), or `off`
    /// (sim backend; KVM does not count retired instructions).
    #[arg(long, value_name = "N|off", default_value = "1000000", allow_hyphen_values = true)]
    max_stalled_exits: String,
    /// Stop the run after this much host (wall-clock) time, or `off` (both
    /// backends, a guest that never exits included).
    #[arg(long, value_name = "DURATION|off", default_value = "10min", allow_hyphen_values = true)]
    max_host_time: String,
    /// Let virtio notifications exit to userspace instead of signalling
    /// an ioeventfd (kvm backend).
    #[arg(long)]
    no_ioeventfd: bool,
    /// Inject device interrupts from userspace (KVM_SIGNAL_MSI) instead of
    /// through irqfds (kvm backend).
    #[arg(long)]
    no_irqfd: bool,
    /// Confine the vCPU, device and watchdog threads to the system calls
    /// they make (kvm backend; seccomp): a call outside their list stops
    /// the run with one line naming the thread and the call, exit status
    /// 159. `off` is for debugging a change that makes calls the lists
    /// lack.
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    seccomp: Switch,
    /// End the run at the first console (COM1) line containing TEXT
    /// (repeatable; both backends): status 0, the line on stderr. A Linux
    /// image (bzImage, PVH) always stops at its kernel's panic report.
    #[arg(long, value_name = "TEXT")]
    stop_on_console: Vec<String>,
}

/// A switch a flag turns on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(clap::Args)]
struct WorkloadArgs {
    /// Workload name (see `exitlab list`).
    workload: String,
    /// Iterations in the measure phase (same as --set n=N; packets=N for
    /// the ping-pongs).
    #[arg(short = 'n', value_name = "N", allow_hyphen_values = true)]
    n: Option<String>,
    /// Set a workload parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// A built-in workload or an image file.
#[derive(clap::Args)]
struct GuestArgs {
    /// Workload name (see `exitlab list`).
    #[arg(required_unless_present = "image")]
    workload: Option<String>,
    /// Iterations in the measure phase (same as --set n=N; packets=N for
    /// the ping-pongs).
    #[arg(short = 'n', value_name = "N", allow_hyphen_values = true)]
    n: Option<String>,
    /// Set a workload parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    image: guest::ImageArgs,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in workloads and their parameters.
    List,
    /// Run a workload and print its exits as `perf kvm stat report` does.
    Stat {
        #[command(flatten)]
        g: GuestArgs,
        #[command(flatten)]
        m: MachineArgs,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Only this phase: boot, warmup, measure or done (default: the whole run).
        #[arg(long, value_name = "NAME")]
        phase: Option<String>,
        /// Also print what the guest wrote to its serial console (always
        /// printed, on stdout, for --image).
        #[arg(long)]
        console: bool,
        /// Show the N guest functions with the most exits (0: none; on KVM
        /// each exit then costs a register read, outside its handling time).
        #[arg(long, value_name = "N", default_value = "10")]
        top: String,
    },
    /// Run kvm-unit-tests (a directory with unittests.cfg, the file itself,
    /// or test images) the way QEMU's runner does; one line per test, then
    /// a summary. Exit status 1 when a test fails or times out.
    Suite {
        /// Test directories, unittests.cfg files or images.
        #[arg(value_name = "DIR|FILE", required = true)]
        inputs: Vec<PathBuf>,
        /// Machine to run on.
        #[arg(long, value_enum, default_value = "sim")]
        backend: Backend,
        /// KVM device node (kvm backend).
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
        /// Hardware profile (sim backend): legacy, modern, or a TOML file.
        #[arg(long, value_name = "NAME|FILE", default_value = "modern")]
        profile: String,
        /// Every test's time limit, over unittests.cfg's (as the runner's
        /// TIMEOUT); default: the test's own, else 90s. Host time on both
        /// backends (and guest time too on the simulator).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Tests run at once.
        #[arg(short = 'j', value_name = "N", default_value = "1")]
        jobs: String,
        /// One JSON object with a `tests` array instead of the lines.
        #[arg(long)]
        json: bool,
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
        /// Where Debian's kernel and the busybox initramfs of the Linux
        /// section are (default: $EXITLAB_SHARED/linux, else
        /// ../shared/linux).
        #[arg(long, value_name = "DIR")]
        linux: Option<PathBuf>,
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
        g: GuestArgs,
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
        #[arg(long, default_value = "5", allow_hyphen_values = true)]
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
        #[arg(short = 'n', value_name = "N", default_value = "20000", allow_hyphen_values = true)]
        n: String,
        /// Rounds of each loop, alternating; the median is reported.
        #[arg(long, default_value = "5", allow_hyphen_values = true)]
        rounds: String,
        /// KVM device node.
        #[arg(long, value_name = "PATH")]
        kvm_device: Option<PathBuf>,
    },
}

/// Bad input: one line on stderr, exit status 2.
#[derive(Debug)]
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
        exitlab_lab::output::write_file_atomically(&path, &img.bytes)?;
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
            for (k, v) in h.fields() {
                say!("  host {k}: {v}");
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
            let seed = args::whole("--seed", &m.seed, 0, u64::MAX)?;
            let max_instructions = args::whole("--max-instructions", &m.max_instructions, 1, u64::MAX)?;
            let max_time_ns = args::duration_ns("--max-time", &m.max_time)?;
            // The simulator counts guest time in cycles of the profile's
            // clock: a limit past its last cycle cannot be kept.
            let hz = profile.hz();
            if u128::from(max_time_ns) * u128::from(hz) / 1_000_000_000 > u128::from(u64::MAX) {
                let most = u128::from(u64::MAX) * 1_000_000_000 / u128::from(hz.max(1));
                return Err(UsageError(format!(
                    "--max-time: {max_time_ns} ns is more guest time than the simulator counts at {hz} Hz (at most {most} ns)"
                )));
            }
            if m.no_ioeventfd || m.no_irqfd {
                return Err(UsageError("--no-ioeventfd and --no-irqfd are KVM options (use --backend kvm)".into()));
            }
            if m.seccomp == Switch::Off {
                return Err(UsageError("--seccomp is a KVM option (use --backend kvm)".into()));
            }
            let limits =
                exitlab_sim::RunLimits { max_instructions: Some(max_instructions), max_time_ns: Some(max_time_ns) };
            Ok(BackendSpec::Sim { profile: Box::new(profile), seed, limits })
        }
        Backend::Kvm => {
            let max_time = std::time::Duration::from_nanos(args::duration_ns("--max-time", &m.max_time)?);
            let device = m.kvm_device.clone().unwrap_or_else(exitlab_kvm::device_path);
            Ok(BackendSpec::Kvm { device, max_time: Some(max_time), seccomp: m.seccomp == Switch::On })
        }
    }
}

/// The VMM's limits the machine flags set (guest time and instructions
/// are the backend's: see `backend_spec`).
fn vmm_limits(m: &MachineArgs) -> Result<RunLimits, UsageError> {
    Ok(RunLimits {
        max_exits: args::off_or(&m.max_exits, |t| args::whole("--max-exits", t, 1, u64::MAX))?,
        max_stalled_exits: args::off_or(&m.max_stalled_exits, |t| args::whole("--max-stalled-exits", t, 1, u64::MAX))?,
        max_host_time: args::off_or(&m.max_host_time, |t| args::duration_ns("--max-host-time", t))?
            .map(std::time::Duration::from_nanos),
    })
}

/// The console lines that end the run: a Linux kernel's panic report
/// (a kernel that panics spins until a limit otherwise), then the user's.
fn console_stops(m: &MachineArgs, guest: &guest::Guest) -> Result<Vec<StopRule>, UsageError> {
    let linux = guest.loaded.as_ref().is_some_and(|l| matches!(l.format, Format::BzImage | Format::Pvh));
    let mut rules: Vec<StopRule> = linux.then(StopRule::linux_panic).into_iter().collect();
    for text in &m.stop_on_console {
        StopRule::check_text(text).map_err(|why| UsageError(format!("--stop-on-console: {text:?} {why}")))?;
        rules.push(StopRule::line(text));
    }
    Ok(rules)
}

/// Runs `guest` on the backend the flags ask for.
fn run_with(m: &MachineArgs, guest: &guest::Guest, mut options: RunOptions) -> Result<RunReport, UsageError> {
    let spec = backend_spec(m)?;
    let image = &guest.boot;
    options.limits = vmm_limits(m)?;
    options.console_stops = console_stops(m, guest)?;
    match m.backend {
        Backend::Sim => options.cpuid = m.cpuid.iter().map(|t| parse_cpuid(t)).collect::<Result<_, _>>()?,
        Backend::Kvm if !m.cpuid.is_empty() => {
            return Err(UsageError(
                "--cpuid is a simulator option (KVM answers CPUID itself; use --backend sim)".into(),
            ))
        }
        Backend::Kvm => {
            options.fast_path = exitlab_vmm::platform::FastPath { ioeventfd: !m.no_ioeventfd, irqfd: !m.no_irqfd }
        }
    }
    let mut vm = spec.open(image.memory_size)?;
    vm.run(image, &options).map_err(|e| UsageError(format!("run failed: {e}")))
}

/// The guest `g` names: a built-in workload, or an image file.
fn guest_of(g: &GuestArgs) -> Result<guest::Guest, UsageError> {
    if let Some(path) = &g.image.image {
        return guest::load(&g.image, path);
    }
    let w = WorkloadArgs { workload: g.workload.clone().unwrap_or_default(), n: g.n.clone(), set: g.set.clone() };
    let (_, img) = build(&w)?;
    Ok(guest::Guest { boot: img.boot_image(), loaded: None, labels: Some(img) })
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

fn trace(g: &GuestArgs, m: &MachineArgs, out: &std::path::Path) -> Result<(), UsageError> {
    let guest = guest_of(g)?;
    let report = run_with(m, &guest, RunOptions { trace: true, ..Default::default() })?;
    let doc = exitlab_lab::trace::chrome_trace(&guest.boot.name, m.backend.name(), &report.trace);
    let bytes = serde_json::to_vec(&doc).expect("trace serializes");
    exitlab_lab::output::write_file_atomically(out, &bytes)?;
    say!("{} exits -> {}", report.trace.len(), out.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("exitlab: {}", args::clap_line(&e));
            return ExitCode::from(2);
        }
    };
    let res = match cli.command {
        Command::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        Command::Stat { g, m, json, phase, console, top } => {
            stat::stat(&g, &m, stat::StatFlags { json, phase, console, top: &top })
        }
        Command::Suite { inputs, backend, kvm_device, profile, timeout, jobs, json } => {
            let a = suite::SuiteArgs {
                inputs: &inputs,
                backend,
                kvm_device,
                profile: &profile,
                timeout: timeout.as_deref(),
                jobs: &jobs,
                json,
            };
            suite::suite(&a)
        }
        Command::Image { w, disasm, output } => image(&w, disasm, output).map(|_| ExitCode::SUCCESS),
        Command::Run { scenario, backend, set, full, out, shard } => {
            lab_run(&scenario, backend, &set, full, out, shard.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Command::Report { out, full, shard, backend, profile, linux } => {
            let linux = linux.unwrap_or_else(exitlab_lab::linux::default_dir);
            sweep::report(full, backend.as_deref(), shard.as_deref(), out, &profile, &linux).map(|_| ExitCode::SUCCESS)
        }
        Command::Merge { parts, out } => sweep::merge(&parts, out).map(|_| ExitCode::SUCCESS),
        Command::Trace { g, m, out } => trace(&g, &m, &out).map(|_| ExitCode::SUCCESS),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults `--help` states are the ones the crates define: the
    /// flags' text cannot drift from `RunLimits::default` and the
    /// simulator's `RunLimits::DEFAULT`.
    #[test]
    fn the_flags_defaults_are_the_crates_defaults() {
        let Command::Stat { m, .. } = Cli::try_parse_from(["exitlab", "stat", "idle"]).unwrap().command else {
            panic!("not stat")
        };
        assert_eq!(vmm_limits(&m).unwrap(), RunLimits::default());
        let BackendSpec::Sim { limits, .. } = backend_spec(&m).unwrap() else { panic!("not the simulator") };
        assert_eq!(limits, exitlab_sim::RunLimits::DEFAULT);
        let off =
            ["exitlab", "stat", "idle", "--max-exits", "off", "--max-stalled-exits", "off", "--max-host-time", "off"];
        let Command::Stat { m, .. } = Cli::try_parse_from(off).unwrap().command else { panic!("not stat") };
        assert_eq!(vmm_limits(&m).unwrap(), RunLimits::NONE);
    }
}

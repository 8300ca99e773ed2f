//! The vCPU run loop: load an image, run until the guest ends the run, and
//! account for every exit on the way.

use crate::account::{Accountant, ExitRecord, Target};
use crate::bus::{Bus, DeviceCtx};
use crate::devices::Serial;
use crate::interrupts::{Pending, Posting};
use crate::monitor::{Kind as MonitorKind, Monitor};
use crate::platform::{Platform, SERIAL};
use crate::shadow::FaultResolution;
use exitlab_arch::iommu::Fault;
use exitlab_arch::Regs;
use exitlab_arch::{CrAccessQual, CrAccessType, EptViolationQual};
use exitlab_guest::layout::{self, Phase};
use exitlab_guest::{Image, MailboxReport};
use exitlab_hv::{Completion, HandlerWork, HvError, Injection, IoExit, MmioExit, Vcpu, Vm, VmExit};
use std::fmt;

/// Something the guest did that ends the run without a clean exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// The guest kernel reported an exception or an unexpected interrupt.
    Exception(MailboxReport),
    /// TRIPLE_FAULT: the vCPU shut down.
    TripleFault,
    /// HLT with nothing that could ever wake the vCPU.
    HaltedForever,
    /// The guest broke the exitlab guest <-> VMM protocol.
    Protocol(String),
    /// An exit this VMM does not handle on this backend.
    UnhandledExit(String),
    /// The guest ran an instruction the backend does not implement.
    Unsupported(String),
    /// The guest hit a run limit (instructions or time): a runaway loop.
    Runaway(String),
    /// The guest touched guest-physical memory its EPT permissions forbid,
    /// and no VMM policy allows it.
    EptViolation { gpa: u64, linear: Option<u64>, qual: EptViolationQual },
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::Exception(r) => write!(f, "{r}"),
            GuestError::TripleFault => f.write_str("triple fault: the vCPU shut down"),
            GuestError::HaltedForever => f.write_str("HLT with interrupts masked and no wake-up source"),
            GuestError::Protocol(s) => write!(f, "guest protocol error: {s}"),
            GuestError::UnhandledExit(s) => write!(f, "unhandled exit: {s}"),
            GuestError::Unsupported(s) => write!(f, "unsupported: {s}"),
            GuestError::Runaway(s) => write!(f, "stopped: {s}"),
            GuestError::EptViolation { gpa, linear, qual } => {
                let access = if qual.fetch {
                    "fetch"
                } else if qual.write {
                    "write"
                } else {
                    "read"
                };
                let allows: String = [(qual.readable, 'r'), (qual.writable, 'w'), (qual.executable, 'x')]
                    .iter()
                    .map(|&(b, c)| if b { c } else { '-' })
                    .collect();
                write!(f, "EPT violation: {access} of guest-physical {gpa:#x} (EPT allows {allows})")?;
                if let Some(l) = linear {
                    write!(f, " from linear {l:#x}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `status` to the debug-exit port.
    Exited {
        status: u32,
    },
    GuestError(GuestError),
}

/// The VMM itself could not run the guest.
#[derive(Debug)]
pub enum VmmError {
    Backend(HvError),
    /// The image does not fit the VM.
    Load(String),
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmmError::Backend(e) => write!(f, "{e}"),
            VmmError::Load(s) => write!(f, "cannot load image: {s}"),
        }
    }
}

impl std::error::Error for VmmError {}

impl From<HvError> for VmmError {
    fn from(e: HvError) -> Self {
        VmmError::Backend(e)
    }
}

/// What an exit carried, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A port access and its data (for IN, what the VMM answered).
    Port {
        port: u16,
        size: u8,
        is_in: bool,
        data: u32,
    },
    /// An MMIO access and its data (for reads, what the VMM answered).
    Mmio {
        gpa: u64,
        size: u8,
        is_write: bool,
        data: u64,
    },
    None,
}

/// One exit in a run's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    pub record: ExitRecord,
    pub access: Access,
    /// Guest RIP as the backend reports it when the exit reaches the VMM
    /// (the simulator: the exiting instruction; KVM may already be past
    /// it for port I/O).
    pub rip: u64,
}

/// EPT permissions the VMM gives a guest-physical range (R, W, X bits of
/// an EPT entry), on hardware with EPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    pub gpa: u64,
    pub len: u64,
    pub perms: u64,
}

/// How to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep every exit in [`RunReport::trace`] (costs a register read per
    /// exit on KVM).
    pub trace: bool,
    /// EPT policies over RAM ranges (ignored without EPT).
    pub protect: Vec<Protection>,
    /// CPUID leaves the VMM answers differently from its built-in model:
    /// (leaf, [EAX, EBX, ECX, EDX]).
    pub cpuid: Vec<(u32, [u32; 4])>,
    /// On KVM: devices' notifications and interrupts without userspace.
    pub fast_path: crate::platform::FastPath,
}

/// The result of one run: how it ended, the accounting, and the machine's
/// devices for inspection.
pub struct RunReport {
    pub outcome: Outcome,
    pub accountant: Accountant,
    pub regs: Regs,
    pub pio: Bus,
    pub mmio: Bus,
    /// Every exit in order, when [`RunOptions::trace`] asked for it.
    pub trace: Vec<TraceEntry>,
    /// What the write monitor recorded, when the workload asked for one.
    pub monitor: Option<Monitor>,
    /// DMA the IOMMU (or, for an emulated device, the VMM) refused.
    pub dma_faults: Vec<Fault>,
    /// Round trips a ping-pong guest logged for its measured echoes (ns).
    pub round_trips_ns: Vec<u64>,
    /// Completion-to-driver latencies a device-irq guest logged (ns; on
    /// the simulator, whose TSC and device clock agree).
    pub irq_latencies_ns: Vec<u64>,
}

impl RunReport {
    /// What the guest printed on COM1.
    pub fn console(&self) -> String {
        let serial = self.pio.device::<Serial>(SERIAL);
        String::from_utf8_lossy(serial.map_or(&[][..], |s| s.output())).into_owned()
    }
}

const LOCAL_APIC: &str = "local-apic";
const UNASSIGNED: &str = "unassigned";

pub(crate) fn load<V: Vm>(vm: &V, image: &Image) -> Result<(), VmmError> {
    let end = image.load_gpa.checked_add(image.bytes.len() as u64);
    if end.is_none_or(|e| e > vm.memory_size()) {
        return Err(VmmError::Load(format!(
            "{} bytes at {:#x} do not fit in {} bytes of guest memory",
            image.bytes.len(),
            image.load_gpa,
            vm.memory_size()
        )));
    }
    for c in image.boot_layout().chunks {
        vm.write_memory(c.gpa, &c.bytes)?;
    }
    vm.write_memory(image.load_gpa, &image.bytes)?;
    Ok(())
}

/// Loads `image` into `vm`, runs vCPU 0 until the guest ends the run, and
/// returns what happened.
pub fn run_image<V: Vm>(vm: &mut V, image: &Image) -> Result<RunReport, VmmError> {
    run_image_with(vm, image, &RunOptions::default())
}

/// [`run_image`] with options.
pub fn run_image_with<V: Vm>(vm: &mut V, image: &Image, options: &RunOptions) -> Result<RunReport, VmmError> {
    load(vm, image)?;
    let mut trace = Vec::new();
    let caps = vm.capabilities();
    let mut vcpu = vm.create_vcpu(0, &image.boot_layout().state)?;
    let mut controls = crate::policy::controls(&caps);
    let mut pending = Pending::default();
    let mut ept = None;
    let mut monitor = None;
    if image.requests.get("needs").map(String::as_str) == Some("tsx") && !caps.tsx {
        return Err(VmmError::Load(format!(
            "{} needs RTM (TSX): run it on the simulator with a profile that has tsx = true (modern)",
            image.name
        )));
    }
    let hz = image.requests.get("host_timer_hz").and_then(|v| v.parse::<u64>().ok()).filter(|&h| h > 0);
    let mut host_tick = match hz {
        Some(hz) if caps.vmx_controls && caps.tsc_hz > 0 => {
            Some(crate::host_tick::HostTick::new(hz, caps.tsc_hz, vcpu.now_ns()))
        }
        _ => None,
    };
    let mut posting = None;
    if image.requests.get("posted").map(String::as_str) == Some("false") {
        controls.external_interrupt_exiting = true;
    } else if caps.posted_interrupts && caps.vmx_controls {
        posting = Some(Posting::new(vm, &mut controls, 0)?);
    }
    let passthrough = caps.iommu && caps.ept && caps.vmx_controls;
    let (mut platform, to_assign) = Platform::new(vm, image, passthrough, options.fast_path)?;
    let blk_assigned = to_assign.blk.is_some();
    let isolated = isolation(vm, image, &caps)?;
    let mut protect = options.protect.clone();
    protect.extend(isolated.map(|(gpa, len)| Protection { gpa, len, perms: 0 }));
    if caps.vmx_controls {
        if caps.ept {
            let mut e = build_ept(vm, &platform.mmio, &protect)?;
            controls.eptp = e.eptp();
            monitor = watch(vm, &mut e, &mut controls, image)?;
            if to_assign.blk.is_some() || to_assign.doorbell.is_some() {
                crate::assign::program_iommu(vm, platform.window, posting.as_ref())?;
            }
            if let Some(device) = to_assign.blk {
                let (gpa, len) = (layout::BLK_BAR, layout::BLK_BAR_SIZE);
                crate::assign::plug(vm, &mut e, Box::new(device), crate::assign::BLK_SOURCE, gpa, len)?;
            }
            if let Some(bell) = to_assign.doorbell {
                let (gpa, len) = (exitlab_guest::nic::KICK_DOORBELL, exitlab_guest::nic::KICK_DOORBELL_SIZE);
                crate::assign::plug(vm, &mut e, Box::new(bell), crate::assign::DOORBELL_SOURCE, gpa, len)?;
            }
            ept = Some(e);
        }
        vcpu.set_controls(&controls)?;
    } else {
        crate::monitor::watch_slot(vm, &mut platform.mmio, image)?;
    }
    if let Some((gpa, len)) = isolated {
        // After the EPT is built: the range stays RAM with no permission,
        // and the device only completes the accesses the VMM blocks.
        let free = "the isolated range is guest RAM, outside every device";
        platform.mmio.insert(ISOLATED, gpa, len, Box::<crate::devices::Isolated>::default()).expect(free);
    }
    let mut acc = Accountant::new(vcpu.now_ns(), counters(vm, &mut vcpu, image, &platform)?);

    // One clock read at each exit and one at each resume; a resume is
    // also the start of the next run call.
    let mut start = vcpu.now_ns();
    let outcome = loop {
        if let Some(t) = &mut host_tick {
            t.arm(&mut vcpu, &mut controls)?;
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(HvError::Unsupported(s)) => break Outcome::GuestError(GuestError::Unsupported(s)),
            Err(HvError::Limit(s)) => break Outcome::GuestError(GuestError::Runaway(s)),
            Err(HvError::Interrupted) => {
                // A device timer fell due: not an exit, nothing to account.
                let now = vcpu.now_ns();
                platform.tick(vm, now);
                platform.flush(vm, posting.as_ref(), now)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let exit_ns = vcpu.now_ns();
        let rip = if options.trace { vcpu.regs()?.rip } else { 0 };
        let mut rec = ExitRecord {
            vcpu: vcpu.id(),
            reason: exit.reason(),
            qualification: exit.qualification(),
            target: Target::None,
            exit_ns,
            resume_ns: exit_ns,
            run_ns: exit_ns - start,
            work: HandlerWork::default(),
            halted_ns: 0,
        };
        // A HLT's wake-up, when the machine halts the vCPU in the VMM's view.
        let mut wake_ns = None;
        let mut work = HandlerWork::default();
        let mut traced = match &exit {
            VmExit::Io(io) => port_access(io, io.data),
            _ => Access::None,
        };
        let ended = match &exit {
            VmExit::Io(io) => match (io.qual.port, io.qual.is_in) {
                (layout::PORT_DEBUG_EXIT, false) => {
                    rec.target = Target::Port { port: layout::PORT_DEBUG_EXIT, device: "debug-exit" };
                    Some(Outcome::Exited { status: io.data })
                }
                (layout::PORT_REPORT, false) => {
                    rec.target = Target::Port { port: layout::PORT_REPORT, device: "report" };
                    let mut b = [0u8; MailboxReport::SIZE];
                    vm.read_memory(layout::MAILBOX, &mut b)?;
                    Some(Outcome::GuestError(GuestError::Exception(MailboxReport::from_bytes(&b))))
                }
                (layout::PORT_MARKER, false) => {
                    let Some(next) = Phase::from_code(io.data) else {
                        break Outcome::GuestError(GuestError::Protocol(format!("unknown phase marker {}", io.data)));
                    };
                    rec.target = Target::Port { port: layout::PORT_MARKER, device: "marker" };
                    let counters = counters(vm, &mut vcpu, image, &platform)?;
                    vcpu.account_exit(rec.reason, &HandlerWork { device_ops: 1, ..Default::default() });
                    rec.resume_ns = vcpu.now_ns();
                    acc.boundary(&rec, next, counters);
                    if options.trace {
                        trace.push(TraceEntry { record: rec, access: port_access(io, io.data), rip });
                    }
                    start = rec.resume_ns;
                    continue;
                }
                _ => {
                    let (target, data) = platform.with(vm, exit_ns, |pio, _, ctx| port_io(pio, &mut vcpu, io, ctx));
                    rec.target = target;
                    traced = port_access(io, data);
                    None
                }
            },
            VmExit::Mmio { access, .. } => {
                let (target, data) =
                    platform.with(vm, exit_ns, |_, mmio, ctx| mmio_access(mmio, &mut vcpu, access, ctx));
                rec.target = target;
                traced = Access::Mmio { gpa: access.gpa, size: access.size, is_write: access.is_write, data };
                None
            }
            VmExit::Hlt => match vcpu.halt()? {
                None if pending.is_empty() => Some(Outcome::GuestError(GuestError::HaltedForever)),
                wake => {
                    // An interrupt the VMM injects at the entry wakes it then.
                    wake_ns = wake.filter(|_| pending.is_empty());
                    None
                }
            },
            VmExit::Shutdown => Some(Outcome::GuestError(GuestError::TripleFault)),
            VmExit::Debug { .. } => None,
            VmExit::Cpuid { leaf, subleaf } => {
                let answer = match options.cpuid.iter().find(|(l, _)| l == leaf) {
                    Some((_, regs)) => *regs,
                    None => crate::cpuid::cpuid(*leaf, *subleaf, vcpu.id() as u8, caps.tsx),
                };
                vcpu.complete(Completion::Cpuid(answer));
                single_step_trap(&mut vcpu)?;
                None
            }
            VmExit::MsrRead { msr } => {
                let v = vcpu.read_msr(*msr)?;
                vcpu.complete(Completion::MsrRead(v));
                if v.is_some() {
                    single_step_trap(&mut vcpu)?;
                }
                None
            }
            VmExit::MsrWrite { msr, value } => {
                let ok = vcpu.write_msr(*msr, *value)?;
                vcpu.complete(Completion::MsrWrite(ok));
                if ok {
                    single_step_trap(&mut vcpu)?;
                }
                None
            }
            VmExit::CrAccess(q) => {
                control_register(&mut vcpu, q)?;
                single_step_trap(&mut vcpu)?;
                None
            }
            VmExit::Invlpg { linear } => {
                vcpu.shadow_unmap(Some(*linear))?;
                vcpu.skip_instruction()?;
                single_step_trap(&mut vcpu)?;
                None
            }
            VmExit::Rdtsc => {
                let tsc = vcpu.read_msr(exitlab_arch::bits::msr::IA32_TSC)?.unwrap_or(0);
                let mut r = vcpu.regs()?;
                r.gpr[Regs::RAX] = tsc & 0xffff_ffff;
                r.gpr[Regs::RDX] = tsc >> 32;
                vcpu.set_regs(&r)?;
                vcpu.skip_instruction()?;
                single_step_trap(&mut vcpu)?;
                None
            }
            VmExit::MmioEmulate { .. } | VmExit::ApicAccess { .. } => {
                emulate(vm, &mut vcpu, &mut platform, exit_ns, &mut rec, &mut traced, &mut work)?
            }
            // Isolated memory: blocked, completed against its device.
            VmExit::EptViolation { gpa, .. }
                if isolated.is_some_and(|(start, len)| (start..start + len).contains(gpa)) =>
            {
                emulate(vm, &mut vcpu, &mut platform, exit_ns, &mut rec, &mut traced, &mut work)?
            }
            VmExit::EptViolation { gpa, qual } => match (&mut monitor, &mut ept) {
                (Some(m), Some(e)) if m.kind == MonitorKind::WriteProtect && qual.write && m.covers(*gpa) => {
                    work.page_walks = 1;
                    m.write_fault(vm, &mut vcpu, e, &mut controls, *gpa)?;
                    None
                }
                _ => Some(Outcome::GuestError(GuestError::EptViolation {
                    gpa: *gpa,
                    linear: vcpu.exit_info().guest_linear,
                    qual: *qual,
                })),
            },
            VmExit::PmlFull => match (&mut monitor, &mut ept) {
                (Some(m), Some(e)) => {
                    work.bytes_copied = 8 * m.harvest(vm, &mut vcpu, e)?;
                    None
                }
                _ => Some(Outcome::GuestError(GuestError::UnhandledExit("PML_FULL without a log".into()))),
            },
            VmExit::Exception { vector, error_code, qualification } => {
                if *vector == exitlab_arch::vector::PF {
                    work.page_walks = 1;
                    let fixed = crate::shadow::page_fault(vm, &mut vcpu, *qualification, error_code.unwrap_or(0))?;
                    // A hidden fault during event delivery: deliver the
                    // event again.
                    if let (FaultResolution::Hidden, Some(ev)) = (fixed, vcpu.exit_info().idt_vectoring) {
                        vcpu.inject(ev)?;
                    }
                } else {
                    // Not the VMM's: reflect it into the guest unchanged.
                    vcpu.inject(Injection::exception(*vector, *error_code))?;
                }
                None
            }
            VmExit::ExternalInterrupt { vector } => {
                pending.arrive(*vector);
                None
            }
            VmExit::MonitorTrap => {
                if let (Some(m), Some(e)) = (&mut monitor, &mut ept) {
                    m.stepped(vm, &mut vcpu, e, &mut controls)?;
                }
                None
            }
            VmExit::InterruptWindow | VmExit::PreemptionTimer | VmExit::ApicWrite { .. } => None,
            VmExit::Other { reason, qualification } => Some(Outcome::GuestError(GuestError::UnhandledExit(format!(
                "{reason} (qualification {qualification:#x})"
            )))),
        };
        platform.flush(vm, posting.as_ref(), exit_ns)?;
        if blk_assigned {
            platform.dma_faults.extend(vm.take_iommu_faults());
        }
        if !pending.is_empty() || controls.interrupt_window_exiting {
            pending.service(&mut vcpu, &mut controls)?;
        }
        if work == HandlerWork::default() {
            work.device_ops = u32::from(!matches!(rec.target, Target::None));
        }
        vcpu.account_exit(rec.reason, &work);
        rec.resume_ns = vcpu.now_ns();
        rec.halted_ns = wake_ns.map_or(0, |w| w.saturating_sub(rec.resume_ns));
        rec.work = work;
        acc.record(&rec);
        if options.trace {
            trace.push(TraceEntry { record: rec, access: traced, rip });
        }
        if let Some(o) = ended {
            break o;
        }
        start = rec.resume_ns;
    };
    if blk_assigned {
        platform.dma_faults.extend(vm.take_iommu_faults());
    }
    platform.finish();
    acc.finish(vcpu.now_ns(), counters(vm, &mut vcpu, image, &platform)?);
    if let (Some(m), Some(e)) = (&mut monitor, &mut ept) {
        if m.kind == MonitorKind::Pml {
            m.harvest(vm, &mut vcpu, e)?;
        }
    }
    let regs = vcpu.regs()?;
    let tsc_hz = if caps.tsc_hz > 0 { caps.tsc_hz } else { vcpu.tsc_hz()? };
    let round_trips_ns = crate::packets::round_trips(vm, image, tsc_hz);
    let anchor = if caps.deterministic_time { Some((0, 0)) } else { crate::packets::tsc_anchor(&mut vcpu) };
    let irq_latencies_ns = crate::packets::irq_latencies(vm, image, tsc_hz, anchor);
    let Platform { pio, mmio, dma_faults, .. } = platform;
    Ok(RunReport {
        outcome,
        accountant: acc,
        regs,
        pio,
        mmio,
        trace,
        monitor,
        dma_faults,
        round_trips_ns,
        irq_latencies_ns,
    })
}

/// The backend's counters, the devices' (DMA refused included), and the
/// guest's own: the slots at [`layout::GUEST_COUNTERS`] the image names in
/// its `counters` request.
fn counters<V: Vm>(
    vm: &V,
    vcpu: &mut V::Vcpu,
    image: &Image,
    platform: &Platform,
) -> Result<Vec<exitlab_hv::Counter>, VmmError> {
    let mut all = vcpu.counters()?;
    all.extend(platform.counters().into_iter().map(|(name, value)| exitlab_hv::Counter {
        name: format!("{}{name}", crate::account::DEVICE_COUNTER_PREFIX),
        value,
    }));
    let names = image.requests.get("counters").map(|n| n.split(',').collect::<Vec<_>>()).unwrap_or_default();
    for (slot, name) in names.into_iter().take(layout::GUEST_COUNTER_SLOTS).enumerate() {
        let mut b = [0u8; 8];
        vm.read_memory(layout::GUEST_COUNTERS + 8 * slot as u64, &mut b)?;
        all.push(exitlab_hv::Counter {
            name: format!("{}{name}", crate::account::GUEST_COUNTER_PREFIX),
            value: u64::from_le_bytes(b),
        });
    }
    Ok(all)
}

fn port_access(io: &IoExit, data: u32) -> Access {
    Access::Port { port: io.qual.port, size: io.qual.size, is_in: io.qual.is_in, data }
}

/// Completes the instruction at RIP, whose memory access exited, by
/// emulation against the MMIO bus (the local APIC, a device, the isolating
/// device); records where it went and the work it took.
fn emulate<V: Vm>(
    vm: &V,
    vcpu: &mut V::Vcpu,
    platform: &mut Platform,
    now_ns: u64,
    rec: &mut ExitRecord,
    traced: &mut Access,
    work: &mut HandlerWork,
) -> Result<Option<Outcome>, VmmError> {
    let emulated = platform.with(vm, now_ns, |_, mmio, ctx| crate::emulate::emulate_mmio(vm, vcpu, mmio, ctx))?;
    match emulated {
        Ok(done) => {
            *work = done.work;
            if let Some(d) = done.device {
                let apic = d.gpa & !0xfff == exitlab_arch::bits::apic::DEFAULT_BASE;
                let region = if apic { LOCAL_APIC } else { d.slot.map_or(UNASSIGNED, |s| platform.mmio.name(s)) };
                rec.target = Target::Mmio { region };
                *traced = Access::Mmio { gpa: d.gpa, size: d.size, is_write: d.is_write, data: d.data };
            }
            single_step_trap(vcpu)?;
            Ok(None)
        }
        Err(e) => Ok(Some(Outcome::GuestError(GuestError::Unsupported(e.0)))),
    }
}

/// Guest memory the image asks the VMM to isolate (`isolate` =
/// 0xSTART+0xLEN): through EPT permissions where the VMM sets them (the
/// simulator), else by taking it out of the guest's memory slots (KVM).
fn isolation<V: Vm>(
    vm: &mut V,
    image: &Image,
    caps: &exitlab_hv::Capabilities,
) -> Result<Option<(u64, u64)>, VmmError> {
    let Some(range) = image.requests.get("isolate") else { return Ok(None) };
    let (gpa, len) = crate::monitor::parse_range(range)
        .ok_or_else(|| VmmError::Load(format!("`isolate` {range:?} is not 0xSTART+0xLEN")))?;
    if caps.vmx_controls && !caps.ept {
        return Err(VmmError::Load(format!(
            "{} needs EPT permissions to isolate memory: run it with a profile that has EPT (modern), or on KVM",
            image.name
        )));
    }
    if !caps.vmx_controls {
        vm.unmap(gpa, len).map_err(|e| VmmError::Load(format!("cannot isolate {range}: {e}")))?;
    }
    Ok(Some((gpa, len)))
}

const ISOLATED: &str = "isolated";

/// The write monitor an image asks for (`monitor` = write-protect or pml
/// over `watch`), set up in the EPT and the controls.
fn watch<V: Vm>(
    vm: &mut V,
    ept: &mut crate::ept::Ept,
    controls: &mut exitlab_arch::vmx::Controls,
    image: &Image,
) -> Result<Option<Monitor>, VmmError> {
    let kind = match image.requests.get("monitor").map(String::as_str) {
        Some("write-protect") => MonitorKind::WriteProtect,
        Some("pml") => MonitorKind::Pml,
        _ => return Ok(None),
    };
    let (start, len) = image
        .requests
        .get("watch")
        .and_then(|w| crate::monitor::parse_range(w))
        .ok_or_else(|| VmmError::Load("a monitor needs a `watch` range".into()))?;
    Ok(Some(Monitor::new(vm, ept, controls, kind, start, len)?))
}

/// The EPT for this machine: RAM 1:1 with every permission, the local
/// APIC page 1:1, device MMIO misconfigured; everything else unmapped (an
/// access there is MMIO to nothing, reported as an EPT violation).
fn build_ept<V: Vm>(vm: &mut V, mmio: &Bus, protect: &[Protection]) -> Result<crate::ept::Ept, VmmError> {
    let mut ept = crate::ept::Ept::new(vm)?;
    let ram = vm.memory_size();
    ept.map_identity(vm, 0, ram, crate::ept::RWX)?;
    let apic = exitlab_arch::bits::apic::DEFAULT_BASE;
    ept.map_identity(vm, apic, 4096, exitlab_arch::bits::ept::R | exitlab_arch::bits::ept::W)?;
    for (_, base, len) in mmio.ranges() {
        ept.mark_mmio(vm, base, len)?;
    }
    for p in protect {
        ept.protect(vm, p.gpa, p.len, p.perms)?;
    }
    Ok(ept)
}

/// After the VMM completed an instruction for the guest: if the guest was
/// single-stepping (RFLAGS.TF), the #DB the instruction owes is the VMM's
/// to raise, through event injection with DR6.BS, so the guest's handler
/// sees RIP after the instruction as on bare metal.
fn single_step_trap<C: Vcpu>(vcpu: &mut C) -> Result<(), VmmError> {
    if vcpu.regs()?.rflags & exitlab_arch::bits::rflags::TF != 0 {
        let mut inj = Injection::exception(exitlab_arch::vector::DB, None);
        inj.dr6 = exitlab_arch::bits::dr6::BS;
        vcpu.inject(inj)?;
    }
    Ok(())
}

/// Emulates a trapped MOV to or from a control register. A CR3 load under
/// shadow paging switches address spaces: every shadow entry goes.
fn control_register<C: Vcpu>(vcpu: &mut C, q: &CrAccessQual) -> Result<(), VmmError> {
    let mut r = vcpu.regs()?;
    let gpr = usize::from(q.gpr & 15);
    match q.access {
        CrAccessType::MovToCr => {
            vcpu.write_cr(q.cr, r.gpr[gpr])?;
            if q.cr == 3 {
                vcpu.shadow_unmap(None)?;
            }
        }
        CrAccessType::MovFromCr => {
            r.gpr[gpr] = vcpu.read_cr(q.cr)?;
            vcpu.set_regs(&r)?;
        }
        // CLTS and LMSW are never trapped by this VMM's controls.
        CrAccessType::Clts | CrAccessType::Lmsw => {}
    }
    vcpu.skip_instruction()?;
    Ok(())
}

/// Routes an IN/OUT (or a folded INS/OUTS) to the device on the port;
/// returns where it went and the (first) value transferred.
fn port_io<C: Vcpu>(bus: &mut Bus, vcpu: &mut C, io: &IoExit, ctx: &mut DeviceCtx<'_>) -> (Target, u32) {
    let port = io.qual.port;
    let size = usize::from(io.qual.size).clamp(1, 4);
    let count = io.count.max(1) as usize;
    let hit = bus.find(u64::from(port));
    let device = hit.map_or(UNASSIGNED, |h| bus.name(h.slot));
    if io.qual.is_in {
        let mut data = vec![0xffu8; size * count];
        if let Some(h) = hit {
            for chunk in data.chunks_mut(size) {
                bus.read(h, chunk, ctx);
            }
        }
        vcpu.complete_read(&data);
        let mut first = [0u8; 4];
        first[..size].copy_from_slice(&data[..size]);
        return (Target::Port { port, device }, u32::from_le_bytes(first));
    }
    if let Some(h) = hit {
        if io.bulk.is_empty() {
            bus.write(h, &io.data.to_le_bytes()[..size], ctx);
        } else {
            for chunk in io.bulk.chunks(size) {
                bus.write(h, chunk, ctx);
            }
        }
    }
    (Target::Port { port, device }, io.data)
}

/// Routes an MMIO access; unassigned addresses read as all ones and drop
/// writes, as an unclaimed PCI/memory transaction does. Returns where it
/// went and the value transferred.
fn mmio_access<C: Vcpu>(bus: &mut Bus, vcpu: &mut C, access: &MmioExit, ctx: &mut DeviceCtx<'_>) -> (Target, u64) {
    let size = usize::from(access.size).clamp(1, 8);
    let hit = bus.find(access.gpa);
    let region = hit.map_or(UNASSIGNED, |h| bus.name(h.slot));
    if access.is_write {
        if let Some(h) = hit {
            bus.write(h, &access.data.to_le_bytes()[..size], ctx);
        }
        return (Target::Mmio { region }, access.data);
    }
    let mut data = [0xffu8; 8];
    if let Some(h) = hit {
        bus.read(h, &mut data[..size], ctx);
    }
    vcpu.complete_read(&data[..size]);
    let mut v = [0u8; 8];
    v[..size].copy_from_slice(&data[..size]);
    (Target::Mmio { region }, u64::from_le_bytes(v))
}

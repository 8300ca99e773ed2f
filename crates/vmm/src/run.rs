//! The vCPU run loop: run, record, dispatch, account, until the guest ends
//! the run; then the report. Each exit family's handling lives under
//! `exits/`; the loop only times and accounts for what they did.

use crate::account::{ExitRecord, Target};
use crate::builder::{build, RunOptions};
use crate::error::VmmError;
use crate::exits::{self, Flow, Handling};
use crate::limits::{Stop, Watch};
use crate::report::{GuestError, Outcome, RunReport, TraceEntry};
use crate::state::Vmm;
use exitlab_guest::layout::Phase;
use exitlab_guest::machine::MonitorKind;
use exitlab_guest::{BootImage, Image};
use exitlab_hv::{HandlerWork, HvError, Vcpu, Vm, VmExit, VmxVcpu};

/// The local APIC's LVT LINT0 register, its mask bit and the ExtINT
/// delivery mode (SDM Vol. 3A, 11.5.1), and IA32_APIC_BASE's global enable.
const LVT_LINT0: u16 = 0x350;
const LVT_MASKED: u32 = 1 << 16;
const DELIVERY_EXTINT: u32 = 0b111;
const APIC_BASE_EN: u64 = 1 << 11;

/// Loads `image` into `vm`, runs vCPU 0 until the guest ends the run, and
/// returns what happened.
pub fn run_image<V: Vm>(vm: &mut V, image: &Image) -> Result<RunReport, VmmError> {
    run_image_with(vm, image, &RunOptions::default())
}

/// [`run_image`] with options.
pub fn run_image_with<V: Vm>(vm: &mut V, image: &Image, options: &RunOptions) -> Result<RunReport, VmmError> {
    run_boot_image(vm, &image.boot_image(), options)
}

/// Builds the VM `image` describes on `vm` and runs it to the end: the
/// entry point for images from any loader. On a backend in host time
/// (KVM) the VM is built and run on a thread of its own, the vCPU thread,
/// which [`Vmm::run`] confines to the system calls it makes: the caller's
/// thread stays free to write the results.
pub fn run_boot_image<V: Vm>(vm: &mut V, image: &BootImage, options: &RunOptions) -> Result<RunReport, VmmError> {
    if vm.host().is_none() {
        return build(vm, image, options)?.run();
    }
    std::thread::scope(|scope| {
        let vcpu = std::thread::Builder::new()
            .name("exitlab-vcpu".into())
            .spawn_scoped(scope, || build(vm, image, options)?.run())
            .map_err(|e| HvError::Backend(format!("starting the vCPU thread: {e}")))?;
        vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// An exit that interrupted the delivery of an event (its IDT-vectoring
/// information) leaves that event to the VMM: unless the handler queued
/// something in its place (a fault merged with it), it is delivered again
/// at the next entry, as KVM's `vmx_complete_interrupts` requeues it.
fn reinject<C: VmxVcpu + ?Sized>(vcpu: &mut C) -> Result<(), VmmError> {
    if let Some(ev) = vcpu.exit_info().idt_vectoring {
        if vcpu.injection().is_none() {
            vcpu.inject(ev)?;
        }
    }
    Ok(())
}

/// How a backend's refusal to run on ends the run: as a guest error, or
/// (`Err`) as the VMM's.
fn stopped(e: HvError) -> Result<Outcome, VmmError> {
    match e {
        HvError::Unsupported(u) => Ok(Outcome::GuestError(GuestError::Unmodelled(u))),
        HvError::Limit(s) => Ok(Outcome::GuestError(GuestError::Runaway(s))),
        e => Err(e.into()),
    }
}

impl<V: Vm> Vmm<'_, V> {
    /// Runs vCPU 0 until the guest ends the run. One clock read at each
    /// exit and one at each resume; a resume is also the start of the next
    /// run call. The calling thread is confined to a vCPU thread's system
    /// calls for good before the loop starts, where the backend filters
    /// them (KVM): [`run_boot_image`] gives the run a thread of its own.
    pub fn run(mut self) -> Result<RunReport, VmmError> {
        let mut watch = Watch::start(self.limits);
        self.vcpu.set_host_deadline(watch.deadline())?;
        self.vcpu.confine_thread()?;
        let mut start = self.vcpu.now_ns();
        let outcome = loop {
            self.arm_host_tick()?;
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(HvError::Interrupted) if watch.host_time_up() => break self.runaway(&watch, Stop::HostTime)?,
                Err(HvError::Interrupted) => {
                    self.devices_due()?;
                    continue;
                }
                Err(e) => break stopped(e)?,
            };
            let (mut record, rip) = self.record(&exit, start)?;
            let mut handling = Handling::new(&exit, record.exit_ns);
            let flow = exits::dispatch(&mut self, &exit, &mut handling)?;
            match self.power(flow) {
                Flow::Resume => self.resume(&mut record, handling, rip)?,
                Flow::Boundary(next) => self.boundary(&mut record, next, handling, rip)?,
                Flow::End(outcome) => {
                    self.resume(&mut record, handling, rip)?;
                    break outcome;
                }
                Flow::Abandon(outcome) => break outcome,
            }
            if let Some(stop) = watch.exit(record.reason, record.qualification, self.vcpu.instructions_retired()) {
                break self.runaway(&watch, stop)?;
            }
            start = record.resume_ns;
        };
        self.finish(outcome)
    }

    /// A VMM limit reached: the run ends with the line naming it.
    fn runaway(&mut self, watch: &Watch, stop: Stop) -> Result<Outcome, VmmError> {
        let rip = self.vcpu.regs()?.rip;
        Ok(Outcome::GuestError(GuestError::Runaway(watch.report(stop, rip))))
    }

    /// A device asked to end the run (the PC's isa-debug-exit, reset paths
    /// and ACPI soft-off), or the console watch saw a line that ends it:
    /// the exit that asked (that wrote the line's newline) ends it.
    fn power(&self, flow: Flow) -> Flow {
        if !matches!(flow, Flow::Resume | Flow::Boundary(_)) {
            return flow;
        }
        let asked = self.platform.pc.as_ref().and_then(crate::pc::Pc::power);
        match asked.or_else(|| self.console.as_ref().and_then(crate::console::ConsoleLatch::get)) {
            Some(outcome) => Flow::End(outcome),
            None => flow,
        }
    }

    /// Arms the host timer's next tick, where the machine has one.
    fn arm_host_tick(&mut self) -> Result<(), VmmError> {
        if let Some(vmx) = &mut self.vmx {
            if let (Some(tick), Some(vcpu)) = (&mut vmx.host_tick, self.vcpu.vmx()) {
                tick.arm(vcpu, &mut vmx.controls)?;
            }
        }
        Ok(())
    }

    /// A device timer fell due: not an exit, nothing to account. The
    /// devices work, and what they raised is delivered.
    fn devices_due(&mut self) -> Result<(), VmmError> {
        let now = self.vcpu.now_ns();
        self.platform.tick(&*self.vm, now);
        let posting = self.vmx.as_ref().and_then(|v| v.posting.as_ref());
        self.platform.flush(&*self.vm, posting, now)?;
        // An ExtINT a device raised now may be all that wakes a halted
        // vCPU: inject it without waiting for an exit.
        let queued = self.pc_interrupts()?;
        if let (Some(vmx), Some(vcpu)) = (&mut self.vmx, self.vcpu.vmx()) {
            let window_stale = vmx.pending.is_empty() == vmx.controls.interrupt_window_exiting;
            if queued || window_stale {
                vmx.pending.service(vcpu, &mut vmx.controls)?;
            }
        }
        Ok(())
    }

    /// The exit as it reached the VMM, and the guest RIP where the trace
    /// wants it, or the exit sites on a backend whose time is virtual (a
    /// register read there costs the guest nothing; on KVM the sites'
    /// read waits until the exit's resume time is taken: [`Self::site`]).
    fn record(&mut self, exit: &VmExit, start: u64) -> Result<(ExitRecord, Option<u64>), VmmError> {
        let exit_ns = self.vcpu.now_ns();
        let virtual_sites = self.sites.is_some() && self.caps.deterministic_time;
        let rip = if self.trace.is_some() || virtual_sites { Some(self.vcpu.regs()?.rip) } else { None };
        let record = ExitRecord {
            vcpu: self.vcpu.id(),
            reason: exit.reason(),
            qualification: exit.qualification(),
            target: Target::None,
            exit_ns,
            resume_ns: exit_ns,
            run_ns: exit_ns - start,
            work: HandlerWork::default(),
            halted_ns: 0,
        };
        Ok((record, rip))
    }

    /// After a handled exit: deliver what devices raised, collect DMA the
    /// IOMMU refused, inject what waits, charge the handler's work, and
    /// account the exit.
    fn resume(&mut self, record: &mut ExitRecord, h: Handling, rip: Option<u64>) -> Result<(), VmmError> {
        let posting = self.vmx.as_ref().and_then(|v| v.posting.as_ref());
        self.platform.flush(&*self.vm, posting, record.exit_ns)?;
        self.take_iommu_faults();
        self.pc_interrupts()?;
        if let (Some(vmx), Some(vcpu)) = (&mut self.vmx, self.vcpu.vmx()) {
            reinject(vcpu)?;
            let c = &vmx.controls;
            if !vmx.pending.is_empty() || c.interrupt_window_exiting || c.nmi_window_exiting {
                vmx.pending.service(vcpu, &mut vmx.controls)?;
            }
        }
        let mut work = h.work;
        if work == HandlerWork::default() {
            work.device_ops = u32::from(!matches!(h.target, Target::None));
        }
        self.vcpu.account_exit(record.reason, &work);
        record.target = h.target;
        record.resume_ns = self.vcpu.now_ns();
        record.halted_ns = h.wake_ns.map_or(0, |w| w.saturating_sub(record.resume_ns));
        record.work = work;
        self.site(record.reason, rip)?;
        self.accountant.record(record);
        if let Some(trace) = &mut self.trace {
            trace.push(TraceEntry { record: *record, access: h.access, rip: rip.unwrap_or(0) });
        }
        Ok(())
    }

    /// Counts the exit at its guest RIP, when the options ask for exit
    /// sites. Called after the exit's resume time is taken, so a register
    /// read on KVM is not in its handling time; KVM has not moved RIP
    /// since the exit (it completes an IN or MMIO read at the next run).
    fn site(&mut self, reason: exitlab_arch::ExitReason, rip: Option<u64>) -> Result<(), VmmError> {
        if self.sites.is_some() {
            let rip = match rip {
                Some(r) => r,
                None => self.vcpu.regs()?.rip,
            };
            let phase = self.accountant.phase();
            if let Some(sites) = &mut self.sites {
                sites.record(phase, rip, reason);
            }
        }
        Ok(())
    }

    /// A phase marker: a boundary in the accounting, counted in the whole
    /// run but in no phase; the counters are sampled at it.
    fn boundary(
        &mut self,
        record: &mut ExitRecord,
        next: Phase,
        h: Handling,
        rip: Option<u64>,
    ) -> Result<(), VmmError> {
        record.target = h.target;
        let counters = self.counters()?;
        self.vcpu.account_exit(record.reason, &HandlerWork { device_ops: 1, ..Default::default() });
        record.resume_ns = self.vcpu.now_ns();
        self.site(record.reason, rip)?;
        self.accountant.boundary(record, next, counters);
        if let Some(trace) = &mut self.trace {
            trace.push(TraceEntry { record: *record, access: h.access, rip: rip.unwrap_or(0) });
        }
        Ok(())
    }

    /// The PC's interrupt chip where the VMM models it and drives VMX
    /// itself (the simulator). The PIC's INT is taken as an ExtINT when
    /// the local APIC lets it through (LVT LINT0 unmasked in ExtINT mode,
    /// or the APIC disabled, as KVM's `kvm_apic_accept_pic_intr` decides):
    /// the VMM runs the INTA cycle and injects the vector when the guest's
    /// IF allows; with IF clear the request waits in the PIC and the VMM
    /// asks for an interrupt window. While an IOAPIC
    /// entry waits for EOIs, the local APIC page traps (APIC
    /// virtualization off), so each EOI exits and reaches the IOAPIC; the
    /// simulator has no EOI-exit bitmap to trap only those vectors.
    /// Returns whether an ExtINT was queued for injection.
    fn pc_interrupts(&mut self) -> Result<bool, VmmError> {
        let extint = self.platform.take_extint();
        // The CPU runs the INTA cycle only when it takes the interrupt
        // (SDM Vol. 3A 6.8.1: RFLAGS.IF set): a request that a guest with
        // IF clear masks at the PIC before its STI never arrives.
        let takes = extint && self.vcpu.regs()?.rflags & exitlab_arch::bits::rflags::IF != 0;
        let (Some(pc), Some(vmx), Some(vcpu)) = (&self.platform.pc, &mut self.vmx, self.vcpu.vmx()) else {
            return Ok(false);
        };
        if pc.handles.chip.is_none() {
            return Ok(false);
        }
        let (mut keep, mut queued, mut waits) = (false, false, false);
        if extint && pc.intr() {
            let lvt0 = vcpu.apic_read(LVT_LINT0)?;
            let disabled =
                vcpu.read_msr(exitlab_arch::bits::msr::IA32_APIC_BASE)?.is_some_and(|b| b & APIC_BASE_EN == 0);
            let accepts = disabled || (lvt0 & LVT_MASKED == 0 && (lvt0 >> 8) & 7 == DELIVERY_EXTINT);
            // Accepted but IF clear: an interrupt window brings the VMM
            // back when the guest sets IF (a masked LINT0 waits for the
            // APIC write that unmasks it, which exits on its own).
            waits = accepts && !takes;
            if takes && accepts {
                // Each INTA may leave a higher request pending (nesting).
                for _ in 0..16 {
                    let Some(vector) = pc.acknowledge() else { break };
                    vmx.pending.arrive(vector);
                    queued = true;
                    if !pc.intr() {
                        break;
                    }
                }
            } else {
                keep = true;
            }
        }
        let apicv = self.caps.apicv && !pc.wants_eois();
        if vmx.controls.apic_virtualization != apicv {
            vmx.controls.apic_virtualization = apicv;
            vcpu.set_controls(&vmx.controls)?;
        }
        if keep {
            self.platform.keep_extint();
        }
        vmx.pending.set_pic(waits);
        Ok(queued)
    }

    /// DMA faults the IOMMU recorded for the assigned block device.
    fn take_iommu_faults(&mut self) {
        if let (true, Some(vmx)) = (self.blk_assigned, self.vm.vmx()) {
            self.platform.dma_faults.extend(vmx.take_iommu_faults());
        }
    }

    /// Ends the run: devices stopped, final counters, the rest of the PML
    /// log harvested, and what the guest logged read back.
    fn finish(mut self, outcome: Outcome) -> Result<RunReport, VmmError> {
        self.take_iommu_faults();
        self.platform.finish();
        let counters = self.counters()?;
        self.accountant.finish(self.vcpu.now_ns(), counters);
        if let (Some(vm), Some(vcpu), Some(state)) = (self.vm.vmx_mut(), self.vcpu.vmx(), self.vmx.as_mut()) {
            if let (Some(m), Some(e)) = (&mut state.monitor, &mut state.ept) {
                if m.kind == MonitorKind::Pml {
                    m.harvest(vm, vcpu, e)?;
                }
            }
        }
        let regs = self.vcpu.regs()?;
        let tsc_hz = if self.caps.tsc_hz > 0 { self.caps.tsc_hz } else { self.vcpu.tsc_hz()? };
        let round_trips_ns = crate::packets::round_trips(&*self.vm, self.machine.round_trip_log.as_ref(), tsc_hz);
        let anchor =
            if self.caps.deterministic_time { Some((0, 0)) } else { crate::packets::tsc_anchor(&mut self.vcpu) };
        let irq_latencies_ns =
            crate::packets::irq_latencies(&*self.vm, self.machine.irq_latency_log.as_ref(), tsc_hz, anchor);
        let monitor = self.vmx.and_then(|v| v.monitor);
        let served_by = self.platform.pc.as_ref().map(|pc| pc.served_by.clone()).unwrap_or_default();
        let crate::platform::Platform { pio, mmio, dma_faults, .. } = self.platform;
        Ok(RunReport {
            outcome,
            accountant: self.accountant,
            regs,
            pio,
            mmio,
            trace: self.trace.unwrap_or_default(),
            monitor,
            dma_faults,
            round_trips_ns,
            irq_latencies_ns,
            sites: self.sites.unwrap_or_default(),
            served_by,
        })
    }
}

//! exitlab's default machine: a deterministic simulated x86-64 computer.
//! The same image bytes that run on KVM run here, in virtual time, and the
//! VMM sees every exit the default VMX controls would cause (port I/O, HLT,
//! CPUID, MSR access, MMIO).
//!
//! Same image + parameters = the same exits, registers and virtual time,
//! bit for bit: nothing here reads the host clock or depends on host
//! scheduling.
// Denied, not forbidden: `ram.rs` holds the one `unsafe` block, at the
// mmap boundary.
#![deny(unsafe_code)]

pub mod apic;
mod blocks;
pub mod cost;
pub mod cpu;
pub mod devthread;
mod host;
mod interrupts;
pub mod iommu;
mod machine;
pub mod profile;
mod ram;
mod uop;

use apic::Destination;
use cost::Costs;
use cpu::{Awaiting, Core, Running};
use exitlab_arch::iommu::Fault;
use exitlab_arch::vmx::Controls;
use exitlab_arch::{BootState, ExitReason, Regs};
use exitlab_hv::{
    Assignment, Capabilities, Completion, Counter, Device, ExitInfo, HandlerWork, HvError, Injection, Interruptibility,
    Msi, Result, ShadowFlags, Vcpu, VirtualClock, Vm, VmExit, VmxVcpu, VmxVm, XSAVE_AREA,
};
use exitlab_x86::fp::xsave::{self, SaveOp};
use interrupts::Signal;
use machine::Machine;
use profile::Profile;
use std::sync::{Arc, Mutex, MutexGuard};

use cpu::run::Limits;

/// Run limits that turn a runaway guest into a report, kept inside the
/// interpreter so that a guest that never exits is stopped too.
/// `Default` is no limit; [`RunLimits::DEFAULT`] is what exitlab runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    pub max_instructions: Option<u64>,
    /// Guest time, in virtual nanoseconds.
    pub max_time_ns: Option<u64>,
}

impl RunLimits {
    /// exitlab's defaults: 2 * 10^10 instructions (minutes of host time
    /// at the simulator's tens of MIPS; the built-in experiments retire
    /// well under 10^9 per point) and one hour of guest time.
    pub const DEFAULT: RunLimits =
        RunLimits { max_instructions: Some(20_000_000_000), max_time_ns: Some(3_600_000_000_000) };
}

/// A simulated VM: RAM and vCPUs in virtual time, priced by a hardware
/// profile.
pub struct SimVm {
    machine: Arc<Mutex<Machine>>,
    /// The same RAM as `machine`'s, for the VMM's devices.
    memory: vm_memory::GuestMemoryMmap,
    memory_size: u64,
    limits: RunLimits,
    profile: Profile,
    seed: u64,
    /// vCPUs run one block per pass of their event loop (`set_chaining`).
    unchained: bool,
}

fn lock(m: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    // A panic while holding the lock is a simulator bug; the state is
    // still memory, so keep going rather than poison every later call.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimVm {
    /// A VM with the default (modern) profile and seed 0.
    pub fn new(memory_size: u64) -> Result<SimVm> {
        SimVm::with_profile(memory_size, Profile::default_profile(), 0)
    }

    /// A VM on `profile`'s hardware; `seed` drives every cost distribution.
    pub fn with_profile(memory_size: u64, profile: Profile, seed: u64) -> Result<SimVm> {
        let size = usize::try_from(memory_size).ok().filter(|&s| s <= 1 << 36).ok_or_else(|| {
            HvError::Backend(format!("{memory_size} bytes of guest memory is more than the simulator maps"))
        })?;
        let mut machine = Machine::new(size)?;
        let d = &profile.device_thread;
        let figures = [&d.poke, &d.poke_latency, &d.timer_latency, &profile.interrupt.irqfd];
        if figures.iter().any(|f| f.is_some()) {
            machine.device_thread = Some(devthread::DeviceThread::new(&profile, seed));
        }
        Ok(SimVm {
            memory: machine.ram.memory().clone(),
            machine: Arc::new(Mutex::new(machine)),
            memory_size,
            limits: RunLimits::default(),
            profile,
            seed,
            unchained: false,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Stops runaway guests: each vCPU created afterwards ends its run with
    /// a report at these limits.
    pub fn set_limits(&mut self, limits: RunLimits) {
        self.limits = limits;
    }

    /// Whether vCPUs created afterwards chain decoded blocks (the default)
    /// or go round their event loop after every block: the same results
    /// either way, which the equivalence tests check; off is the slow
    /// reference.
    pub fn set_chaining(&mut self, on: bool) {
        self.unchained = !on;
    }
}

impl Vm for SimVm {
    type Vcpu = SimVcpu;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "sim",
            sees_all_exits: true,
            deterministic_time: true,
            ept: self.profile.features.ept,
            apicv: self.profile.features.apicv,
            decode_assist: self.profile.features.decode_assist,
            vpid: self.profile.features.vpid,
            ept_exec_control: false,
            pml: self.profile.features.pml,
            posted_interrupts: self.profile.features.posted_interrupts,
            tsx: self.profile.features.tsx,
            cpu_features: self.profile.features.cpu(),
            iommu: self.profile.features.iommu,
            tsc_hz: self.profile.hz(),
            backend_counters: true,
        }
    }

    fn memory_size(&self) -> u64 {
        self.memory_size
    }

    fn guest_memory(&self) -> &vm_memory::GuestMemoryMmap {
        &self.memory
    }

    fn write_memory(&self, gpa: u64, data: &[u8]) -> Result<()> {
        lock(&self.machine).write(gpa, data).then_some(()).ok_or(HvError::BadAddress { gpa, len: data.len() })
    }

    fn read_memory(&self, gpa: u64, data: &mut [u8]) -> Result<()> {
        let len = data.len();
        lock(&self.machine).ram.read(gpa, data).then_some(()).ok_or(HvError::BadAddress { gpa, len })
    }

    fn create_vcpu(&mut self, id: u32, boot: &BootState) -> Result<SimVcpu> {
        let apic_id =
            u8::try_from(id).map_err(|_| HvError::Backend(format!("vCPU id {id} exceeds the xAPIC's 8-bit IDs")))?;
        let costs = Costs::new(&self.profile, self.seed.wrapping_add(u64::from(id)));
        let limits = Limits {
            max_instructions: self.limits.max_instructions,
            max_cycles: self.limits.max_time_ns.map(|ns| costs.clock.cycles(ns)),
            host_deadline: None,
            unchained: self.unchained,
        };
        let mut core = Core::new(apic_id, boot, costs);
        core.features = self.profile.features.cpu();
        if let Some(late) = &self.profile.interrupt.timer_latency {
            core.apic.set_timer_latency(late.mean().round() as u64);
        }
        Ok(SimVcpu { id, core, machine: self.machine.clone(), limits })
    }

    fn signal_msi(&self, msi: Msi) -> Result<()> {
        let (dest, vector) = fixed_msi(msi)?;
        let mut m = lock(&self.machine);
        match m.device_thread.as_mut().and_then(|t| t.interrupt_now()) {
            Some(at) => m.interrupts.schedule(at, Signal::Msi { dest, vector }),
            None => m.interrupts.push_msi(dest, vector),
        }
        Ok(())
    }

    fn vmx(&self) -> Option<&dyn VmxVm<Vcpu = SimVcpu>> {
        Some(self)
    }

    fn vmx_mut(&mut self) -> Option<&mut dyn VmxVm<Vcpu = SimVcpu>> {
        Some(self)
    }

    fn virtual_clock(&self) -> Option<&dyn VirtualClock> {
        Some(self)
    }
}

/// The simulated machine's VMX hardware: host memory from 2^44, posted
/// interrupts, the IOMMU and its assigned devices.
impl VmxVm for SimVm {
    fn post_interrupt(&self, descriptor: u64, vector: u8, at_ns: Option<u64>) -> Result<()> {
        let mut m = lock(&self.machine);
        let at_ns = match (m.device_thread.as_mut(), at_ns) {
            (Some(t), Some(at)) => Some(t.timed_interrupt(at)),
            (Some(t), None) => t.interrupt_now(),
            (None, at) => at,
        };
        match at_ns {
            Some(at) => m.interrupts.schedule(at, Signal::Post { descriptor, vector }),
            None => {
                if let Some((dest, vector)) = m.host.post(descriptor, vector)? {
                    m.interrupts.push_msi(Destination::Physical(dest), vector);
                }
            }
        }
        Ok(())
    }

    fn alloc_host_pages(&mut self, pages: usize) -> Result<u64> {
        lock(&self.machine).host.alloc(pages)
    }

    fn write_host(&self, hpa: u64, data: &[u8]) -> Result<()> {
        let mut m = lock(&self.machine);
        let dst = m.host.slice_mut(hpa, data.len()).ok_or(HvError::BadAddress { gpa: hpa, len: data.len() })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn read_host(&self, hpa: u64, data: &mut [u8]) -> Result<()> {
        let m = lock(&self.machine);
        let src = m.host.slice(hpa, data.len()).ok_or(HvError::BadAddress { gpa: hpa, len: data.len() })?;
        data.copy_from_slice(src);
        Ok(())
    }

    fn set_iommu(&mut self, root_table: u64, irt: u64, irt_entries: u32) -> Result<()> {
        if !self.profile.features.iommu {
            return Err(HvError::Unavailable(format!("the {} profile has no IOMMU", self.profile.name)));
        }
        lock(&self.machine).iommu.program(iommu::Registers { root: root_table, irt, irt_entries });
        Ok(())
    }

    fn assign_device(&mut self, device: Box<dyn Device>, a: Assignment) -> Result<u64> {
        let mut m = lock(&self.machine);
        if !m.iommu.programmed() {
            return Err(HvError::Backend("assign a device only behind a programmed IOMMU".into()));
        }
        Ok(m.iommu.assign(device, a))
    }

    fn take_iommu_faults(&self) -> Vec<Fault> {
        lock(&self.machine).iommu.take_faults()
    }
}

/// Device deadlines and timed interrupts are events in virtual time.
impl VirtualClock for SimVm {
    fn wake_vmm_at(&self, at_ns: u64) -> Result<()> {
        let mut m = lock(&self.machine);
        let at = m.device_thread.as_mut().map_or(at_ns, |t| t.deadline(at_ns));
        m.interrupts.schedule(at, Signal::WakeVmm);
        Ok(())
    }

    fn signal_msi_at(&self, msi: Msi, at_ns: u64) -> Result<()> {
        let (dest, vector) = fixed_msi(msi)?;
        let mut m = lock(&self.machine);
        let at = m.device_thread.as_mut().map_or(at_ns, |t| t.timed_interrupt(at_ns));
        m.interrupts.schedule(at, Signal::Msi { dest, vector });
        Ok(())
    }
}

/// (destination, vector) of a fixed-delivery xAPIC MSI: data bits 10:8
/// must be 0; address bits 19:12 are the destination, bit 2 (DM) says
/// logical (SDM Vol. 3A 11.11.1).
fn fixed_msi(msi: Msi) -> Result<(Destination, u8)> {
    if msi.address >> 20 != 0xfee || (msi.data >> 8) & 7 != 0 {
        return Err(HvError::Backend(format!(
            "MSI {:#x}/{:#x} is not a fixed-delivery xAPIC message",
            msi.address, msi.data
        )));
    }
    let id = (msi.address >> 12) as u8;
    let dest = if msi.address & 4 != 0 { Destination::Logical(id) } else { Destination::Physical(id) };
    Ok((dest, msi.data as u8))
}

/// A simulated vCPU.
pub struct SimVcpu {
    id: u32,
    core: Core,
    machine: Arc<Mutex<Machine>>,
    limits: Limits,
}

impl SimVcpu {
    /// The core's state, for tests and the VMM's own emulation.
    pub fn cpu(&self) -> &Core {
        &self.core
    }

    /// Completes the instruction the VMM answered: RIP past it. A single-
    /// step trap it owes (TF) is the VMM's to inject, as on VMX hardware.
    /// The VMM refused an RDMSR or WRMSR: #GP(0) at the instruction, as
    /// an injection (SDM Vol. 3C 26.6 "Event Injection"; KVM's
    /// `kvm_inject_gp`), so that an interrupt the VMM has waiting is not
    /// injected over it and the #GP is not raised at the handler's first
    /// instruction instead.
    fn refuse_msr(&mut self) {
        self.core.awaiting = None;
        self.core.injection = Some(Injection::exception(exitlab_arch::vector::GP, Some(0)));
    }

    fn finish_awaited(&mut self, len: u8) {
        self.core.rip = self.core.rip.wrapping_add(u64::from(len));
        self.core.awaiting = None;
        self.core.stats.instructions += 1;
        self.core.rflags_rest &= !exitlab_arch::bits::rflags::RF;
    }

    fn awaited(&self, what: Awaiting) -> Option<u8> {
        self.core.awaiting.filter(|(a, _)| *a == what).map(|(_, len)| len)
    }
}

impl Vcpu for SimVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VmExit> {
        if let Some((what, _)) = self.core.awaiting {
            return Err(HvError::Backend(format!("run with the {what:?} exit unanswered")));
        }
        if !self.core.controls.enable_vpid {
            // Without VPID, VM entry flushes the TLB (nothing tags guest
            // entries apart from the host's).
            self.core.tlb.flush();
        }
        let mut machine = lock(&self.machine);
        if let Some(t) = machine.device_thread.as_mut() {
            // The pokes the VMM made since the last run delayed it.
            self.core.cycles += t.resume();
        }
        let exit = Running { core: &mut self.core, machine: &mut machine }.run(&self.limits);
        if let Some(t) = machine.device_thread.as_mut() {
            let now = self.core.costs.clock.ns(self.core.cycles);
            t.returned(now, matches!(exit, Err(HvError::Interrupted)));
        }
        exit
    }

    fn complete(&mut self, answer: Completion<'_>) {
        match answer {
            Completion::Read(data) => {
                if let Some(cpu::Replayed::Read(v)) = self.core.replay.log.last_mut() {
                    let mut b = [0u8; 8];
                    let n = data.len().min(8);
                    b[..n].copy_from_slice(&data[..n]);
                    *v = u64::from_le_bytes(b);
                }
            }
            Completion::Cpuid(r) => {
                if let Some(len) = self.awaited(Awaiting::Cpuid) {
                    for (i, reg) in [0usize, 3, 1, 2].into_iter().enumerate() {
                        self.core.gpr[reg] = u64::from(r[i]);
                    }
                    self.finish_awaited(len);
                }
            }
            Completion::MsrRead(v) => {
                if let Some(len) = self.awaited(Awaiting::Rdmsr) {
                    match v {
                        Some(v) => {
                            self.core.gpr[0] = v & 0xffff_ffff;
                            self.core.gpr[2] = v >> 32;
                            self.finish_awaited(len);
                        }
                        None => self.refuse_msr(),
                    }
                }
            }
            Completion::MsrWrite(ok) => {
                if let Some(len) = self.awaited(Awaiting::Wrmsr) {
                    if ok {
                        self.finish_awaited(len);
                    } else {
                        self.refuse_msr();
                    }
                }
            }
        }
    }

    fn halt(&mut self) -> Result<Option<u64>> {
        let Some(len) = self.awaited(Awaiting::Hlt) else { return Ok(None) };
        self.finish_awaited(len);
        self.core.halted = true;
        if !self.core.interrupts_enabled() {
            return Ok(None);
        }
        let now = self.core.cycles;
        let m = lock(&self.machine);
        let device = m.interrupts.next_at();
        Ok(if self.core.apic.deliverable().is_some() || m.interrupts.has_msi() {
            Some(self.core.costs.clock.ns(now))
        } else {
            let timer = self.core.apic.next_event().map(|c| self.core.costs.clock.ns(c));
            timer.into_iter().chain(device).min()
        })
    }

    fn read_msr(&mut self, msr: u32) -> Result<Option<u64>> {
        Ok(self.core.read_msr(msr))
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<bool> {
        Ok(self.core.write_msr(msr, value))
    }

    fn account_exit(&mut self, reason: ExitReason, work: &HandlerWork) {
        self.core.cycles += self.core.costs.exit(reason, work);
    }

    fn regs(&mut self) -> Result<Regs> {
        Ok(self.core.regs())
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.core.set_regs(regs);
        Ok(())
    }

    fn counters(&mut self) -> Result<Vec<Counter>> {
        let s = &self.core.stats;
        let c = |name: &str, value: u64| Counter { name: name.to_string(), value };
        Ok(vec![
            c("instructions", s.instructions),
            c("cycles", self.core.cycles),
            c("idle_cycles", s.cycles_idle),
            c("blocks_decoded", s.blocks_decoded),
            c("block_runs", s.block_runs),
            c("page_walks", s.page_walks),
            c("ept_steps", s.ept_steps),
            c("pml_entries", s.pml_entries),
            c("tlb_misses", s.tlb_misses),
            c("interrupts", s.interrupts),
            c("tx_commits", s.tx_commits),
            c("tx_aborts", s.tx_aborts),
            c("posted_notifications", s.posted_notifications),
            c("exceptions", s.exceptions),
            c("timer_fires", self.core.apic.timer_fires),
        ])
    }

    fn now_ns(&self) -> u64 {
        self.core.costs.clock.ns(self.core.cycles)
    }

    fn nmi(&mut self) -> Result<()> {
        self.core.apic.lint(1);
        Ok(())
    }

    fn set_host_deadline(&mut self, at: Option<std::time::Instant>) -> Result<()> {
        self.limits.host_deadline = at;
        Ok(())
    }

    fn instructions_retired(&self) -> Option<u64> {
        Some(self.core.stats.instructions)
    }

    fn vmx(&mut self) -> Option<&mut dyn VmxVcpu> {
        Some(self)
    }
}

/// The simulated vCPU's VMX hardware: its VMCS fields, guest state, the
/// shadow page table and the TLB.
impl VmxVcpu for SimVcpu {
    fn set_controls(&mut self, controls: &Controls) -> Result<()> {
        if controls.enable_ept != self.core.controls.enable_ept || controls.eptp != self.core.controls.eptp {
            self.core.tlb.flush();
        }
        self.core.controls = controls.clone();
        Ok(())
    }

    fn exit_info(&self) -> ExitInfo {
        self.core.exit_info
    }

    fn skip_instruction(&mut self) -> Result<()> {
        let len = self.core.exit_info.instruction_len;
        if len == 0 {
            return Err(HvError::Backend("the last exit was not an instruction exit".into()));
        }
        self.core.rip = self.core.rip.wrapping_add(u64::from(len));
        self.core.exit_info.instruction_len = 0;
        self.core.stats.instructions += 1;
        self.core.rflags_rest &= !exitlab_arch::bits::rflags::RF;
        Ok(())
    }

    fn read_cr(&mut self, n: u8) -> Result<u64> {
        self.core.guest_cr(n).ok_or_else(|| HvError::Backend(format!("there is no CR{n}")))
    }

    fn segment(&mut self, sreg: u8) -> Result<exitlab_arch::Segment> {
        self.core
            .seg
            .get(usize::from(sreg))
            .copied()
            .ok_or_else(|| HvError::Backend(format!("no segment register {sreg}")))
    }

    fn set_segment(&mut self, sreg: u8, s: exitlab_arch::Segment) -> Result<()> {
        if sreg > 5 {
            return Err(HvError::Backend(format!("no segment register {sreg}")));
        }
        self.core.set_segment(exitlab_x86::Seg::from_number(sreg), s);
        Ok(())
    }

    fn system_segment(&mut self, tr: bool) -> Result<exitlab_arch::Segment> {
        Ok(if tr { self.core.tr } else { self.core.ldtr })
    }

    fn set_system_segment(&mut self, tr: bool, s: exitlab_arch::Segment) -> Result<()> {
        if tr {
            self.core.tr = s;
        } else {
            self.core.ldtr = s;
        }
        Ok(())
    }

    fn descriptor_table(&mut self, idt: bool) -> Result<exitlab_arch::DescriptorTable> {
        Ok(if idt { self.core.idtr } else { self.core.gdtr })
    }

    /// The guest's CR`n` as a VMM completing a trapped MOV to CR sets it:
    /// with its architectural effects (EFER.LMA with paging, PAE's PDPTEs,
    /// the TLB), as KVM's `kvm_set_cr0`/`kvm_set_cr4` apply them.
    fn write_cr(&mut self, n: u8, value: u64) -> Result<()> {
        let mut machine = lock(&self.machine);
        let mut cpu = Running { core: &mut self.core, machine: &mut machine };
        let applied = match n {
            0 => cpu.set_cr0(value),
            2 => {
                cpu.core.cr2 = value;
                Ok(())
            }
            3 => cpu.set_cr3(value),
            4 => cpu.set_cr4(value),
            8 => {
                cpu.core.apic.set_cr8(value);
                Ok(())
            }
            _ => return Err(HvError::Backend(format!("there is no CR{n}"))),
        };
        applied.map_err(|_| HvError::Backend(format!("CR{n} = {value:#x} is refused")))
    }

    fn xsave_area(&mut self) -> Result<[u8; XSAVE_AREA]> {
        let mut area = [0u8; XSAVE_AREA];
        xsave::xsave(&self.core.fpu, SaveOp::Xsave, true, xsave::XCR0_SUPPORTED, u64::MAX, &mut area);
        Ok(area)
    }

    fn set_xsave_area(&mut self, area: &[u8; XSAVE_AREA]) -> Result<()> {
        let mut fpu = self.core.fpu;
        xsave::xrstor(&mut fpu, true, xsave::XCR0_SUPPORTED, 0, u64::MAX, false, area)
            .map_err(|e| HvError::Backend(format!("x87/SSE state refused: {e:?}")))?;
        self.core.fpu = fpu;
        Ok(())
    }

    fn pml_index(&mut self) -> Result<u16> {
        Ok(self.core.pml_index)
    }

    fn set_pml_index(&mut self, index: u16) -> Result<()> {
        self.core.pml_index = index;
        Ok(())
    }

    fn apic_read(&mut self, offset: u16) -> Result<u32> {
        Ok(self.core.apic.read(u64::from(offset & 0xff0), self.core.cycles))
    }

    fn apic_write(&mut self, offset: u16, value: u32) -> Result<()> {
        let now = self.core.cycles;
        self.core.apic.write(u64::from(offset & 0xff0), value, now);
        Ok(())
    }

    fn apic_interrupt(&mut self) -> Result<Option<u8>> {
        Ok(self.core.apic.deliverable())
    }

    fn apic_acknowledge(&mut self, vector: u8) -> Result<()> {
        self.core.apic.accept(vector);
        Ok(())
    }

    fn inject(&mut self, event: Injection) -> Result<()> {
        self.core.injection = Some(event);
        self.core.halted = false;
        Ok(())
    }

    fn injection(&self) -> Option<Injection> {
        self.core.injection
    }

    fn interruptibility(&mut self) -> Result<Interruptibility> {
        let c = &self.core;
        Ok(Interruptibility { sti: c.sti_shadow, mov_ss: c.mov_ss_blocking, nmi: c.nmi_blocked })
    }

    fn set_interruptibility(&mut self, state: Interruptibility) -> Result<()> {
        let c = &mut self.core;
        (c.sti_shadow, c.mov_ss_blocking, c.nmi_blocked) = (state.sti, state.mov_ss, state.nmi);
        Ok(())
    }

    fn set_pending_debug(&mut self, dr6: u64) -> Result<()> {
        self.core.pending_dbg = dr6;
        Ok(())
    }

    fn code_segment(&mut self) -> Result<exitlab_arch::Segment> {
        Ok(*self.core.cs())
    }

    fn shadow_map(&mut self, linear: u64, physical: u64, flags: ShadowFlags) -> Result<()> {
        self.core.shadow.insert(linear >> 12, (physical & !0xfff, flags));
        self.core.tlb.flush_page(linear);
        Ok(())
    }

    fn invept(&mut self) -> Result<()> {
        self.core.tlb.flush();
        Ok(())
    }

    fn shadow_unmap(&mut self, linear: Option<u64>) -> Result<()> {
        match linear {
            Some(l) => {
                self.core.shadow.remove(&(l >> 12));
                self.core.tlb.flush_page(l);
            }
            None => {
                self.core.shadow.clear();
                self.core.tlb.flush();
            }
        }
        Ok(())
    }
}

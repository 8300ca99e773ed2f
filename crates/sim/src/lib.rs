//! exitlab's default machine: a deterministic simulated x86-64 computer.
//! The same image bytes that run on KVM run here, in virtual time, and the
//! VMM sees every exit the default VMX controls would cause (port I/O, HLT,
//! CPUID, MSR access, MMIO).
//!
//! Same image + parameters = the same exits, registers and virtual time,
//! bit for bit: nothing here reads the host clock or depends on host
//! scheduling.
#![forbid(unsafe_code)]

pub mod apic;
pub mod cost;
pub mod cpu;
pub mod iommu;
mod machine;
pub mod profile;

use cost::Costs;
use cpu::{Awaiting, Cpu, Event, Machine};
use exitlab_arch::iommu::Fault;
use exitlab_arch::vmx::Controls;
use exitlab_arch::{BootState, ExitReason, Regs};
use exitlab_hv::{
    Assignment, Capabilities, Completion, Counter, Device, ExitInfo, HandlerWork, HvError, Injection, Msi, Result,
    ShadowFlags, Vcpu, VirtualClock, Vm, VmExit, VmxVcpu, VmxVm,
};
use machine::{Shared, Signal};
use profile::Profile;
use std::sync::{Arc, Mutex, MutexGuard};

use cpu::run::Limits;

/// Run limits that turn a runaway guest into a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    pub max_instructions: Option<u64>,
    /// Guest time, in virtual nanoseconds.
    pub max_time_ns: Option<u64>,
}

/// A simulated VM: RAM and vCPUs in virtual time, priced by a hardware
/// profile.
pub struct SimVm {
    shared: Arc<Mutex<Shared>>,
    /// The same RAM as `shared`'s, for the VMM's devices.
    memory: vm_memory::GuestMemoryMmap,
    memory_size: u64,
    limits: RunLimits,
    profile: Profile,
    seed: u64,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
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
        let shared = Shared::new(size)?;
        Ok(SimVm {
            memory: shared.memory.clone(),
            shared: Arc::new(Mutex::new(shared)),
            memory_size,
            limits: RunLimits::default(),
            profile,
            seed,
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
        lock(&self.shared).write(gpa, data).then_some(()).ok_or(HvError::BadAddress { gpa, len: data.len() })
    }

    fn read_memory(&self, gpa: u64, data: &mut [u8]) -> Result<()> {
        let len = data.len();
        lock(&self.shared).read(gpa, data).then_some(()).ok_or(HvError::BadAddress { gpa, len })
    }

    fn create_vcpu(&mut self, id: u32, boot: &BootState) -> Result<SimVcpu> {
        let apic_id =
            u8::try_from(id).map_err(|_| HvError::Backend(format!("vCPU id {id} exceeds the xAPIC's 8-bit IDs")))?;
        let costs = Costs::new(&self.profile, self.seed.wrapping_add(u64::from(id)));
        let limits = Limits {
            max_instructions: self.limits.max_instructions,
            max_cycles: self.limits.max_time_ns.map(|ns| costs.clock.cycles(ns)),
        };
        let mut cpu = Cpu::new(apic_id, boot, costs);
        cpu.rtm = self.profile.features.tsx;
        Ok(SimVcpu { id, cpu, shared: self.shared.clone(), limits })
    }

    fn signal_msi(&self, msi: Msi) -> Result<()> {
        let m = fixed_msi(msi)?;
        lock(&self.shared).msi.push(m);
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
        let mut sh = lock(&self.shared);
        match at_ns {
            Some(at) => sh.schedule(at, Signal::Post { descriptor, vector }),
            None => {
                if let Some(notification) = sh.post(descriptor, vector)? {
                    sh.msi.push(notification);
                }
            }
        }
        Ok(())
    }

    fn alloc_host_pages(&mut self, pages: usize) -> Result<u64> {
        let mut sh = lock(&self.shared);
        let at = sh.host.len();
        let bytes = pages.checked_mul(machine::PAGE as usize).filter(|&b| at + b <= 1 << 30);
        let Some(bytes) = bytes else {
            return Err(HvError::Backend(format!(
                "{pages} more host pages would pass the simulator's 1 GiB of host memory"
            )));
        };
        sh.host.resize(at + bytes, 0);
        Ok(machine::HOST_BASE + at as u64)
    }

    fn write_host(&self, hpa: u64, data: &[u8]) -> Result<()> {
        let mut sh = lock(&self.shared);
        let dst = sh.host_mut(hpa, data.len()).ok_or(HvError::BadAddress { gpa: hpa, len: data.len() })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn read_host(&self, hpa: u64, data: &mut [u8]) -> Result<()> {
        let mut sh = lock(&self.shared);
        let src = sh.host_mut(hpa, data.len()).ok_or(HvError::BadAddress { gpa: hpa, len: data.len() })?;
        data.copy_from_slice(src);
        Ok(())
    }

    fn set_iommu(&mut self, root_table: u64, irt: u64, irt_entries: u32) -> Result<()> {
        if !self.profile.features.iommu {
            return Err(HvError::Unavailable(format!("the {} profile has no IOMMU", self.profile.name)));
        }
        let mut sh = lock(&self.shared);
        let faults = sh.iommu.take().map(|i| i.faults).unwrap_or_default();
        sh.iommu = Some(iommu::Iommu { root: root_table, irt, irt_entries, faults });
        Ok(())
    }

    fn assign_device(&mut self, device: Box<dyn Device>, a: Assignment) -> Result<u64> {
        let mut sh = lock(&self.shared);
        if sh.iommu.is_none() {
            return Err(HvError::Backend("assign a device only behind a programmed IOMMU".into()));
        }
        let len = a.bar_len.max(1).next_multiple_of(machine::PAGE);
        let bar = sh.assigned.last().map_or(iommu::DEVICE_BASE, |d| d.bar + d.len);
        sh.assigned.push(iommu::Assigned {
            bar,
            len,
            device: Some(device),
            source: a.source,
            first_irte: a.first_irte,
        });
        Ok(bar)
    }

    fn take_iommu_faults(&self) -> Vec<Fault> {
        lock(&self.shared).iommu.as_mut().map(|i| std::mem::take(&mut i.faults)).unwrap_or_default()
    }
}

/// Device deadlines and timed interrupts are events in virtual time.
impl VirtualClock for SimVm {
    fn wake_vmm_at(&self, at_ns: u64) -> Result<()> {
        lock(&self.shared).schedule(at_ns, Signal::WakeVmm);
        Ok(())
    }

    fn signal_msi_at(&self, msi: Msi, at_ns: u64) -> Result<()> {
        let (dest, vector) = fixed_msi(msi)?;
        lock(&self.shared).schedule(at_ns, Signal::Msi { dest, vector });
        Ok(())
    }
}

/// (destination APIC ID, vector) of a fixed-delivery xAPIC MSI: data bits
/// 10:8 must be 0.
fn fixed_msi(msi: Msi) -> Result<(u8, u8)> {
    if msi.address >> 20 != 0xfee || (msi.data >> 8) & 7 != 0 {
        return Err(HvError::Backend(format!(
            "MSI {:#x}/{:#x} is not a fixed-delivery xAPIC message",
            msi.address, msi.data
        )));
    }
    Ok(((msi.address >> 12) as u8, msi.data as u8))
}

/// A simulated vCPU.
pub struct SimVcpu {
    id: u32,
    cpu: Cpu,
    shared: Arc<Mutex<Shared>>,
    limits: Limits,
}

impl SimVcpu {
    /// The architectural state, for tests and the VMM's own emulation.
    pub fn cpu(&self) -> &Cpu {
        &self.cpu
    }

    /// Completes the instruction the VMM answered: RIP past it. A single-
    /// step trap it owes (TF) is the VMM's to inject, as on VMX hardware.
    fn finish_awaited(&mut self, len: u8) {
        self.cpu.rip = self.cpu.rip.wrapping_add(u64::from(len));
        self.cpu.awaiting = None;
        self.cpu.stats.instructions += 1;
    }

    fn awaited(&self, what: Awaiting) -> Option<u8> {
        self.cpu.awaiting.filter(|(a, _)| *a == what).map(|(_, len)| len)
    }
}

impl Vcpu for SimVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VmExit> {
        if let Some((what, _)) = self.cpu.awaiting {
            return Err(HvError::Backend(format!("run with the {what:?} exit unanswered")));
        }
        if !self.cpu.controls.enable_vpid {
            // Without VPID, VM entry flushes the TLB (nothing tags guest
            // entries apart from the host's).
            self.cpu.tlb.flush();
        }
        let mut sh = lock(&self.shared);
        Machine { cpu: &mut self.cpu, sh: &mut sh }.run(&self.limits)
    }

    fn complete(&mut self, answer: Completion<'_>) {
        match answer {
            Completion::Read(data) => {
                if let Some(cpu::Replayed::Read(v)) = self.cpu.replay.log.last_mut() {
                    let mut b = [0u8; 8];
                    let n = data.len().min(8);
                    b[..n].copy_from_slice(&data[..n]);
                    *v = u64::from_le_bytes(b);
                }
            }
            Completion::Cpuid(r) => {
                if let Some(len) = self.awaited(Awaiting::Cpuid) {
                    for (i, reg) in [0usize, 3, 1, 2].into_iter().enumerate() {
                        self.cpu.gpr[reg] = u64::from(r[i]);
                    }
                    self.finish_awaited(len);
                }
            }
            Completion::MsrRead(v) => {
                if let Some(len) = self.awaited(Awaiting::Rdmsr) {
                    match v {
                        Some(v) => {
                            self.cpu.gpr[0] = v & 0xffff_ffff;
                            self.cpu.gpr[2] = v >> 32;
                            self.finish_awaited(len);
                        }
                        None => {
                            self.cpu.awaiting = None;
                            self.cpu.pending = Some(Event::gp(0));
                        }
                    }
                }
            }
            Completion::MsrWrite(ok) => {
                if let Some(len) = self.awaited(Awaiting::Wrmsr) {
                    if ok {
                        self.finish_awaited(len);
                    } else {
                        self.cpu.awaiting = None;
                        self.cpu.pending = Some(Event::gp(0));
                    }
                }
            }
        }
    }

    fn halt(&mut self) -> Result<Option<u64>> {
        let Some(len) = self.awaited(Awaiting::Hlt) else { return Ok(None) };
        self.finish_awaited(len);
        self.cpu.halted = true;
        if !self.cpu.interrupts_enabled() {
            return Ok(None);
        }
        let now = self.cpu.cycles;
        let sh = lock(&self.shared);
        let device = sh.timed.peek().map(|r| (r.0).0);
        Ok(if self.cpu.apic.deliverable().is_some() || !sh.msi.is_empty() {
            Some(self.cpu.costs.clock.ns(now))
        } else {
            let timer = self.cpu.apic.next_event().map(|c| self.cpu.costs.clock.ns(c));
            timer.into_iter().chain(device).min()
        })
    }

    fn read_msr(&mut self, msr: u32) -> Result<Option<u64>> {
        Ok(self.cpu.read_msr(msr))
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<bool> {
        Ok(self.cpu.write_msr(msr, value))
    }

    fn account_exit(&mut self, reason: ExitReason, work: &HandlerWork) {
        self.cpu.cycles += self.cpu.costs.exit(reason, work);
    }

    fn regs(&mut self) -> Result<Regs> {
        Ok(self.cpu.regs())
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.cpu.set_regs(regs);
        Ok(())
    }

    fn counters(&mut self) -> Result<Vec<Counter>> {
        let s = &self.cpu.stats;
        let c = |name: &str, value: u64| Counter { name: name.to_string(), value };
        Ok(vec![
            c("instructions", s.instructions),
            c("cycles", self.cpu.cycles),
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
            c("timer_fires", self.cpu.apic.timer_fires),
        ])
    }

    fn now_ns(&self) -> u64 {
        self.cpu.costs.clock.ns(self.cpu.cycles)
    }

    fn vmx(&mut self) -> Option<&mut dyn VmxVcpu> {
        Some(self)
    }
}

/// The simulated vCPU's VMX hardware: its VMCS fields, guest state, the
/// shadow page table and the TLB.
impl VmxVcpu for SimVcpu {
    fn set_controls(&mut self, controls: &Controls) -> Result<()> {
        if controls.enable_ept != self.cpu.controls.enable_ept || controls.eptp != self.cpu.controls.eptp {
            self.cpu.tlb.flush();
        }
        self.cpu.controls = controls.clone();
        Ok(())
    }

    fn exit_info(&self) -> ExitInfo {
        self.cpu.exit_info
    }

    fn skip_instruction(&mut self) -> Result<()> {
        let len = self.cpu.exit_info.instruction_len;
        if len == 0 {
            return Err(HvError::Backend("the last exit was not an instruction exit".into()));
        }
        self.cpu.rip = self.cpu.rip.wrapping_add(u64::from(len));
        self.cpu.exit_info.instruction_len = 0;
        self.cpu.stats.instructions += 1;
        Ok(())
    }

    fn read_cr(&mut self, n: u8) -> Result<u64> {
        self.cpu.guest_cr(n).ok_or_else(|| HvError::Backend(format!("there is no CR{n}")))
    }

    fn write_cr(&mut self, n: u8, value: u64) -> Result<()> {
        match n {
            0 => self.cpu.cr0 = value,
            2 => self.cpu.cr2 = value,
            3 => self.cpu.cr3 = value,
            4 => self.cpu.cr4 = value,
            8 => self.cpu.apic.set_cr8(value),
            _ => return Err(HvError::Backend(format!("there is no CR{n}"))),
        }
        if n != 2 && n != 8 {
            self.cpu.tlb.flush();
        }
        Ok(())
    }

    fn pml_index(&mut self) -> Result<u16> {
        Ok(self.cpu.pml_index)
    }

    fn set_pml_index(&mut self, index: u16) -> Result<()> {
        self.cpu.pml_index = index;
        Ok(())
    }

    fn apic_read(&mut self, offset: u16) -> Result<u32> {
        Ok(self.cpu.apic.read(u64::from(offset & 0xff0), self.cpu.cycles))
    }

    fn apic_write(&mut self, offset: u16, value: u32) -> Result<()> {
        let now = self.cpu.cycles;
        self.cpu.apic.write(u64::from(offset & 0xff0), value, now);
        Ok(())
    }

    fn inject(&mut self, event: Injection) -> Result<()> {
        self.cpu.injection = Some(event);
        self.cpu.halted = false;
        Ok(())
    }

    fn shadow_map(&mut self, linear: u64, physical: u64, flags: ShadowFlags) -> Result<()> {
        self.cpu.shadow.insert(linear >> 12, (physical & !0xfff, flags));
        self.cpu.tlb.flush_page(linear);
        Ok(())
    }

    fn invept(&mut self) -> Result<()> {
        self.cpu.tlb.flush();
        Ok(())
    }

    fn shadow_unmap(&mut self, linear: Option<u64>) -> Result<()> {
        match linear {
            Some(l) => {
                self.cpu.shadow.remove(&(l >> 12));
                self.cpu.tlb.flush_page(l);
            }
            None => {
                self.cpu.shadow.clear();
                self.cpu.tlb.flush();
            }
        }
        Ok(())
    }
}

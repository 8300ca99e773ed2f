//! The simulated x86-64 core: architectural state ([`Core`]), the MMU with
//! its TLB, the run loop over decoded blocks, event delivery, and the
//! `exitlab_x86::Cpu` implementation through which exitlab-x86's executor
//! runs every instruction ([`Running`]: one core on its machine).

mod chain;
mod debug;
mod event;
mod fast;
mod isa;
pub(crate) mod micro;
mod mmu;
pub mod mode;
mod msrs;
mod rtm;
pub mod run;

use crate::apic::Apic;
use crate::cost::Costs;
use crate::machine::Machine;
use exitlab_arch::bits::{dr6, msr, rflags};
use exitlab_arch::cpuid::FeatureSet;
use exitlab_arch::vmx::Controls;
use exitlab_arch::{BootState, DescriptorTable, Regs, Segment};
use exitlab_hv::{ExitInfo, Injection, MmioExit, ShadowFlags, VmExit};
use exitlab_x86::fp::xsave::FpuState;
use exitlab_x86::Flags;
use std::collections::HashMap;

pub use debug::Breakpoints;
pub use event::{Event, EventKind};
pub use mmu::Tlb;
pub use mode::{Paging, View};

/// Why the interpreter stopped executing guest code. The payloads of
/// `Exit` and `Event` wait in [`Core::exit`] and [`Core::event`], so that
/// every `Result<_, Stop>` on the hot path fits in two registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Hand the exit in [`Core::exit`] to the VMM; the instruction will
    /// run again, replaying what the VMM answered.
    Exit,
    /// The instruction completes (an OUT: nothing follows the write; the
    /// run loop moves RIP past it); hand the exit in [`Core::exit`] to the
    /// VMM.
    ExitAfter,
    /// Raise the exception (or software interrupt) in [`Core::event`].
    Event,
    /// A fault while delivering a double fault.
    Shutdown,
    /// An instruction the model does not implement, at the current RIP.
    Unsupported,
    /// A transaction aborted: state is back at XBEGIN's, RIP at the
    /// fallback; nothing of the instruction remains.
    Aborted,
}

/// An MMIO or port access the VMM performed for the instruction at RIP,
/// replayed when the instruction re-executes after the exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// A read and the data the VMM answered (all ones until it answers).
    Read(u64),
    Write,
}

/// The accesses an instruction made so far that exited to the VMM. An
/// exiting instruction does not complete; after the VMM's answer it runs
/// again from the start and takes its earlier accesses from here, so any
/// instruction form (read-modify-write, string, stack) works with MMIO.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub log: Vec<Replayed>,
    pub pos: usize,
}

/// An answer the VMM owes to a CPUID, RDMSR, WRMSR or HLT exit: the
/// instruction completes when the answer arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaiting {
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
}

/// Counters the simulator keeps about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub instructions: u64,
    pub cycles_idle: u64,
    pub blocks_decoded: u64,
    pub block_runs: u64,
    pub page_walks: u64,
    /// EPT-structure reads (the second dimension of page walks).
    pub ept_steps: u64,
    /// Pages the CPU appended to the page-modification log.
    pub pml_entries: u64,
    pub tlb_misses: u64,
    pub interrupts: u64,
    /// RTM transactions committed and aborted.
    pub tx_commits: u64,
    pub tx_aborts: u64,
    /// Notification vectors taken as posted-interrupt processing, no exit.
    pub posted_notifications: u64,
    pub exceptions: u64,
}

/// One vCPU's core: architectural state, its TLB and local APIC, the VMX
/// controls it runs under, and its virtual clock.
#[derive(Clone, Debug)]
pub struct Core {
    pub gpr: [u64; 16],
    pub rip: u64,
    /// Status flags, lazily evaluated.
    pub flags: Flags,
    /// RFLAGS without the six status flags.
    pub rflags_rest: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// ES, CS, SS, DS, FS, GS in Sreg order (`exitlab_x86::Seg`), each
    /// with its hidden part; FS's and GS's bases are IA32_FS_BASE and
    /// IA32_GS_BASE.
    pub seg: [Segment; 6],
    /// What the mode makes of them (see `mode.rs`).
    pub view: View,
    /// PAE paging's page-directory-pointer-table registers, loaded with
    /// CR3 (SDM Vol. 3A 4.4.1).
    pub pdpte: [u64; 4],
    pub kernel_gs_base: u64,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub ldtr: Segment,
    pub tr: Segment,
    pub dr: [u64; 4],
    pub dr6: u64,
    pub dr7: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub sysenter: [u64; 3],
    pub pat: u64,
    pub tsc_aux: u64,
    /// TSC minus the cycle count (the TSC is the virtual clock, offset by
    /// what the guest wrote to it): writing the TSC never moves time.
    pub tsc_offset: u64,
    /// IA32_TSC_ADJUST: what the guest's TSC writes have added.
    pub tsc_adjust: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    pub apic_base: u64,
    /// The x87, MMX and SSE registers, MXCSR and XINUSE.
    pub fpu: FpuState,
    /// XCR0: the enabled XSAVE state components (x87 always; SSE).
    pub xcr0: u64,
    pub apic: Apic,
    pub tlb: Tlb,
    /// The hardware profile's prices.
    pub costs: Costs,
    /// Virtual time: core cycles since reset. The TSC reads this.
    pub cycles: u64,
    /// An STI just set IF: the next instruction runs before any interrupt.
    pub sti_shadow: bool,
    /// Blocking by MOV SS (SDM 6.8.3): the instruction after a load of SS
    /// runs before any interrupt, NMI or debug trap.
    pub mov_ss_blocking: bool,
    /// The breakpoints DR7 arms (decoded when DR7, DR0-DR3 or CR4.DE
    /// change).
    pub bp: Breakpoints,
    /// DR6 B0-B3 of the data and I/O breakpoints the instruction (or event
    /// delivery) in progress hit; they become pending when it completes.
    pub bp_hits: u64,
    /// Pending debug exceptions (DR6 bits of trap-class #DBs: B0-B3, BS)
    /// recognised but not delivered yet, as VMX's guest-state field of
    /// that name holds them while MOV SS blocks delivery.
    pub pending_dbg: u64,
    /// An NMI is latched, waiting for NMI blocking to end.
    pub nmi_pending: bool,
    /// NMIs are blocked: from the delivery of an NMI to the next IRET.
    pub nmi_blocked: bool,
    /// In the HLT activity state.
    pub halted: bool,
    /// The VMM owes an answer for the instruction at RIP.
    pub awaiting: Option<(Awaiting, u8)>,
    /// An exception to deliver before the next instruction.
    pub pending: Option<Event>,
    pub replay: Replay,
    pub stats: Stats,
    /// The VM-execution controls the VMM loaded.
    pub controls: Controls,
    /// Details of the last exit.
    pub exit_info: ExitInfo,
    /// The event the VMM queued for the next entry.
    pub injection: Option<Injection>,
    /// The VMM's shadow page table (linear page -> physical page), used in
    /// place of the guest's tables while EPT is off.
    pub shadow: HashMap<u64, (u64, ShadowFlags)>,
    /// The guest PML index (VMCS field): next entry, 511 down to 0.
    pub pml_index: u16,
    /// Cycle at which the VMX-preemption timer expires (MAX: off).
    pub preempt_at: u64,
    /// The last instruction may have made an interrupt deliverable (a
    /// local-APIC write): stop the block so it is recognized at the next
    /// instruction boundary, as the architecture does.
    pub recheck: bool,
    /// A write to a local-APIC register that APIC-register virtualization
    /// does not virtualize (the timer's, LVTs, SVR, ...): the write is done,
    /// and an APIC_WRITE exit follows the instruction (trap-like).
    pub apic_write: Option<u16>,
    /// The exit a [`Stop::Exit`] stands for.
    pub exit: Option<VmExit>,
    /// The event a [`Stop::Event`] stands for.
    pub event: Option<Event>,
    /// The CPU model's CPUID features (the profile's): an instruction whose
    /// feature is missing is #UD; RTM is one (without it XBEGIN is #UD).
    pub features: FeatureSet,
    /// The open RTM transaction.
    pub tx: Option<Box<rtm::Transaction>>,
    /// The blocks that ran last and where they led (`chain`).
    pub chain: chain::Chain,
}

impl Core {
    /// A vCPU in `boot`'s state, with APIC ID `id` (a start in PAE paging
    /// would need its PDPTEs from memory; no loader produces one).
    pub fn new(id: u8, boot: &BootState, costs: Costs) -> Core {
        let rf = boot.regs.rflags | rflags::FIXED;
        let mut core = Core {
            gpr: boot.regs.gpr,
            rip: boot.regs.rip,
            flags: Flags::known(rf & rflags::STATUS),
            rflags_rest: rf & !rflags::STATUS,
            cr0: boot.cr0,
            cr2: 0,
            cr3: boot.cr3,
            cr4: boot.cr4,
            efer: boot.efer,
            seg: [boot.es, boot.cs, boot.ss, boot.ds, boot.fs, boot.gs],
            view: View::LONG,
            pdpte: [0; 4],
            kernel_gs_base: 0,
            gdtr: boot.gdt,
            idtr: boot.idt,
            ldtr: boot.ldt,
            tr: boot.tr,
            dr: [0; 4],
            dr6: dr6::INIT,
            dr7: 0x400,
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            sysenter: [0; 3],
            pat: 0x0007_0406_0007_0406,
            tsc_aux: 0,
            tsc_offset: 0,
            tsc_adjust: 0,
            misc_enable: msrs::MISC_ENABLE_RESET,
            apic_base: exitlab_arch::bits::apic::DEFAULT_BASE | 1 << 11 | u64::from(id == 0) << 8,
            // FNINIT's x87 state and MXCSR 1F80H, as KVM gives a new vCPU.
            fpu: FpuState::default(),
            xcr0: 1,
            apic: Apic::new(id, costs.clock.hz),
            costs,
            tlb: Tlb::default(),
            cycles: 0,
            sti_shadow: false,
            mov_ss_blocking: false,
            bp: Breakpoints::default(),
            bp_hits: 0,
            pending_dbg: 0,
            nmi_pending: false,
            nmi_blocked: false,
            halted: false,
            awaiting: None,
            pending: None,
            replay: Replay::default(),
            stats: Stats::default(),
            chain: chain::Chain::default(),
            features: FeatureSet::EMPTY,
            tx: None,
            exit: None,
            event: None,
            controls: Controls::default(),
            exit_info: ExitInfo::default(),
            injection: None,
            shadow: HashMap::new(),
            preempt_at: u64::MAX,
            pml_index: 511,
            recheck: false,
            apic_write: None,
        };
        core.refresh();
        core
    }

    #[inline(always)]
    pub fn cpl(&self) -> u8 {
        self.view.cpl
    }

    pub fn rflags(&self) -> u64 {
        self.rflags_rest | self.flags.bits()
    }

    pub fn set_rflags(&mut self, v: u64) {
        self.flags = Flags::known(v & rflags::STATUS);
        self.rflags_rest = (v & !rflags::STATUS) | rflags::FIXED;
    }

    pub fn iopl(&self) -> u8 {
        ((self.rflags_rest & rflags::IOPL) >> rflags::IOPL_SHIFT) as u8
    }

    pub fn interrupts_enabled(&self) -> bool {
        self.rflags_rest & rflags::IF != 0
    }

    pub fn regs(&self) -> Regs {
        Regs { gpr: self.gpr, rip: self.rip, rflags: self.rflags() }
    }

    pub fn set_regs(&mut self, r: &Regs) {
        self.gpr = r.gpr;
        self.rip = r.rip;
        self.set_rflags(r.rflags);
    }

    /// Whether the local APIC's MMIO page is at `phys` (xAPIC mode on).
    pub fn apic_page(&self, phys: u64) -> bool {
        self.apic_base & (1 << 11) != 0 && phys & !0xfff == self.apic_base & !0xfff
    }

    /// An architectural MSR, as RDMSR would read it; `None` if this CPU has
    /// no such MSR (SPEC_CTRL and PRED_CMD without CPUID's bit, the x2APIC
    /// registers in xAPIC mode, machine-check banks beyond MCG_CAP's zero).
    pub fn read_msr(&self, index: u32) -> Option<u64> {
        Some(match index {
            msr::IA32_TSC => self.tsc(),
            msr::IA32_TSC_ADJUST => self.tsc_adjust,
            msr::IA32_APIC_BASE => self.apic_base,
            msr::IA32_EFER => self.efer,
            msr::IA32_STAR => self.star,
            msr::IA32_LSTAR => self.lstar,
            msr::IA32_CSTAR => self.cstar,
            msr::IA32_FMASK => self.fmask,
            msr::IA32_FS_BASE => self.seg[exitlab_x86::Seg::Fs as usize].base,
            msr::IA32_GS_BASE => self.seg[exitlab_x86::Seg::Gs as usize].base,
            msr::IA32_KERNEL_GS_BASE => self.kernel_gs_base,
            msr::IA32_SYSENTER_CS => self.sysenter[0],
            msr::IA32_SYSENTER_ESP => self.sysenter[1],
            msr::IA32_SYSENTER_EIP => self.sysenter[2],
            msr::IA32_TSC_DEADLINE => self.tsc_deadline(),
            msr::IA32_PAT => self.pat,
            msr::IA32_TSC_AUX => self.tsc_aux,
            msr::IA32_MISC_ENABLE => self.misc_enable,
            msr::IA32_MCG_CAP | msr::IA32_MCG_STATUS => 0,
            // IA32_XSS: no supervisor state component is supported.
            0xda0 => 0,
            i if self.amd_legacy_perf(i) => 0,
            _ => return None,
        })
    }

    /// WRMSR; `false` for an unknown MSR or a value the MSR rejects.
    pub fn write_msr(&mut self, index: u32, v: u64) -> bool {
        let canonical = ((v as i64) << 16 >> 16) as u64 == v;
        match index {
            msr::IA32_TSC => self.write_tsc(v),
            msr::IA32_TSC_ADJUST => self.write_tsc_adjust(v),
            msr::IA32_APIC_BASE => return self.write_apic_base(v),
            msr::IA32_MISC_ENABLE => return self.write_misc_enable(v),
            msr::IA32_PAT => return self.write_pat(v),
            msr::IA32_MCG_STATUS => return v == 0,
            msr::IA32_EFER => {
                // LMA is the processor's (writes of it are ignored); LME
                // cannot change while paging is on (SDM Vol. 3A 9.8.5).
                use exitlab_arch::bits::efer::*;
                let paging = self.cr0 & exitlab_arch::bits::cr0::PG != 0;
                if v & !(SCE | LME | LMA | NXE) != 0 || (paging && (v ^ self.efer) & LME != 0) {
                    return false;
                }
                if (v ^ self.efer) & NXE != 0 {
                    self.tlb.flush();
                }
                self.efer = (v & !LMA) | (self.efer & LMA);
                self.refresh();
            }
            msr::IA32_STAR => self.star = v,
            msr::IA32_LSTAR if canonical => self.lstar = v,
            msr::IA32_CSTAR if canonical => self.cstar = v,
            msr::IA32_FMASK => self.fmask = v & 0xffff_ffff,
            msr::IA32_FS_BASE if canonical => self.set_segment_base(exitlab_x86::Seg::Fs, v),
            msr::IA32_GS_BASE if canonical => self.set_segment_base(exitlab_x86::Seg::Gs, v),
            msr::IA32_KERNEL_GS_BASE if canonical => self.kernel_gs_base = v,
            msr::IA32_SYSENTER_CS => self.sysenter[0] = v & 0xffff,
            msr::IA32_SYSENTER_ESP if canonical => self.sysenter[1] = v,
            msr::IA32_SYSENTER_EIP if canonical => self.sysenter[2] = v,
            msr::IA32_TSC_DEADLINE => self.write_tsc_deadline(v),
            msr::IA32_TSC_AUX if v >> 32 == 0 => self.tsc_aux = v,
            0xda0 if v == 0 => {}
            i if self.amd_legacy_perf(i) => {}
            _ => return false,
        }
        true
    }

    /// Sets FS's or GS's base (IA32_FS_BASE, IA32_GS_BASE, SWAPGS).
    pub fn set_segment_base(&mut self, seg: exitlab_x86::Seg, v: u64) {
        let s = self.seg[seg as usize];
        self.set_segment(seg, Segment { base: v, ..s });
    }

    /// The next cycle at which something this vCPU owns needs attention.
    pub fn next_event(&self) -> u64 {
        self.apic.next_event().unwrap_or(u64::MAX).min(self.preempt_at)
    }

    /// A control register as the guest reads it: host-owned CR0/CR4 bits
    /// come from the read shadows.
    pub fn guest_cr(&self, n: u8) -> Option<u64> {
        let c = &self.controls;
        Some(match n {
            0 => (self.cr0 & !c.cr0_mask) | (c.cr0_shadow & c.cr0_mask),
            2 => self.cr2,
            3 => self.cr3,
            4 => (self.cr4 & !c.cr4_mask) | (c.cr4_shadow & c.cr4_mask),
            8 => self.apic.cr8(),
            _ => return None,
        })
    }
}

/// One core running on its machine, for the length of one run call.
pub struct Running<'a> {
    pub core: &'a mut Core,
    pub machine: &'a mut Machine,
}

impl Running<'_> {
    /// Stops the instruction with exception `e`.
    #[cold]
    pub fn raise(&mut self, e: Event) -> Stop {
        self.core.event = Some(e);
        Stop::Event
    }

    /// Stops the instruction with exit `x` for the VMM.
    #[cold]
    pub fn exit(&mut self, x: VmExit) -> Stop {
        self.core.exit_info = match &x {
            VmExit::Mmio { access: MmioExit { gpa, .. }, .. } | VmExit::MmioEmulate { gpa, .. } => {
                ExitInfo { guest_physical: Some(*gpa), ..ExitInfo::default() }
            }
            _ => ExitInfo::default(),
        };
        self.core.exit = Some(x);
        Stop::Exit
    }
}

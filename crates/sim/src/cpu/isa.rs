//! The simulated core as exitlab-x86's executor sees it: `exitlab_x86::Cpu`
//! for [`Running`]. Registers and flags are the core's fields; memory goes
//! through the TLB fast path (`mmu.rs`), where an MMIO or port access
//! stops the instruction for the VMM and replays the answer when it runs
//! again; the system hooks are where the VMX controls decide to exit.

use super::event::Event;
use super::mmu::Access;
use super::{Awaiting, Running, Stop};
use crate::cost;
use exitlab_arch::bits::{cr0, rflags};
use exitlab_arch::{CrAccessQual, DescriptorTable, IoQual, Segment};
use exitlab_hv::{IoExit, VmExit};
use exitlab_x86::fp::xsave::FpuState;
use exitlab_x86::op::REP_NONE;
use exitlab_x86::{
    Cpu, DescriptorTableKind, Exception, Feature, Flags, Kind, Mode, Op, Opnd, PortIo, Seg, Size, SystemSegment,
};

/// String instructions run at most this many iterations per step, then
/// restart, so a long REP stays interruptible as the SDM allows.
const REP_CHUNK: u64 = 4096;

/// The instruction information of an INS or OUTS exit (SDM Vol. 3C table
/// 28-8): the address size (0, 1, 2 for 16, 32, 64 bits) in bits 9:7 and
/// the segment register in bits 17:15.
fn string_io_info(op: &Op, seg: Seg) -> u32 {
    let asize = match exitlab_x86::string::address_size(op) {
        2 => 0,
        4 => 1,
        _ => 2,
    };
    asize << 7 | (seg as u32) << 15
}

/// The segment of a string operand (ES for INS's destination).
fn operand_segment(o: &Opnd) -> Seg {
    match o {
        Opnd::Mem(m) => m.seg,
        _ => Seg::Ds,
    }
}

impl Running<'_> {
    /// An access through SS to a non-canonical address raises #SS(0), not
    /// the #GP(0) the page walk raised (SDM Vol. 3A 3.3.7.1, and Vol. 2's
    /// 64-bit mode exceptions: "#SS(0) If a memory address referencing the
    /// SS segment is in a non-canonical form"; kvm-unit-tests' emulator
    /// checks it for RSP- and RBP-based operands). Off the fast path: it
    /// looks only at a stopped access.
    #[cold]
    fn stack_fault(&mut self, seg: Seg, lin: u64, stop: Stop) -> Stop {
        let noncanonical = ((lin as i64) << 16 >> 16) as u64 != lin;
        if seg == Seg::Ss && noncanonical && self.core.event == Some(Event::gp(0)) {
            self.core.event = Some(Event::with_code(exitlab_arch::vector::SS, 0));
        }
        stop
    }

    /// The linear address of `offset` in `seg`: in 64-bit mode only FS and
    /// GS have a base and nothing is checked; elsewhere the segment's
    /// limit and type are.
    #[inline(always)]
    fn linear(&mut self, seg: Seg, offset: u64, size: Size, write: bool) -> Result<u64, Stop> {
        if self.core.view.flat {
            return Ok(offset.wrapping_add(self.core.view.base[seg as usize]));
        }
        self.checked_linear(seg, offset, size, write)
    }

    /// Stops at an instruction the controls trap, recording its length for
    /// the VMM's `skip_instruction`.
    fn instruction_exit(&mut self, op: &Op, exit: VmExit) -> Stop {
        let stop = self.exit(exit);
        self.core.exit_info.instruction_len = op.len;
        stop
    }

    /// CR`n` = `v` after MOV to CR passed the VMX checks; the transitions
    /// and their #GP checks are `mode.rs`'s.
    fn write_cr(&mut self, n: u8, v: u64) -> Result<(), Stop> {
        let refused = match n {
            0 => self.set_cr0(v).is_err(),
            2 => {
                self.core.cr2 = v;
                false
            }
            3 => self.set_cr3(v).is_err(),
            4 => self.set_cr4(v).is_err(),
            8 if v > 15 => true,
            8 => {
                self.core.apic.set_cr8(v);
                false
            }
            _ => return Err(self.raise(Event::ud())),
        };
        if refused {
            return Err(self.raise(Event::gp(0)));
        }
        Ok(())
    }
}

/// The general-register number of a register operand (for CR-access
/// qualifications).
fn reg_number(o: &Opnd) -> u8 {
    match o {
        Opnd::Reg(n) => *n,
        _ => 0,
    }
}

/// The IO_INSTRUCTION exit of access `p` (`data`: what OUT writes).
fn io(p: PortIo, is_in: bool, data: u64) -> VmExit {
    let qual = IoQual { size: p.size, is_in, string: p.string, rep: p.rep, immediate: p.immediate, port: p.port };
    VmExit::Io(IoExit { qual, count: 1, data: data as u32, bulk: Vec::new() })
}

impl Cpu for Running<'_> {
    type Stop = Stop;
    const REP_CHUNK: u64 = REP_CHUNK;

    #[inline(always)]
    fn gpr(&self, n: u8) -> u64 {
        self.core.gpr[usize::from(n & 15)]
    }

    #[inline(always)]
    fn set_gpr(&mut self, n: u8, v: u64) {
        self.core.gpr[usize::from(n & 15)] = v;
    }

    #[inline(always)]
    fn rip(&self) -> u64 {
        self.core.rip
    }

    #[inline(always)]
    fn set_rip(&mut self, v: u64) {
        self.core.rip = v;
    }

    #[inline(always)]
    fn flags(&self) -> Flags {
        self.core.flags
    }

    #[inline(always)]
    fn set_flags(&mut self, f: Flags) {
        self.core.flags = f;
    }

    #[inline(always)]
    fn rflags_rest(&self) -> u64 {
        self.core.rflags_rest
    }

    #[inline(always)]
    fn set_rflags_rest(&mut self, v: u64) {
        self.core.rflags_rest = v;
    }

    #[inline(always)]
    fn cpl(&self) -> u8 {
        self.core.cpl()
    }

    #[inline(always)]
    fn read(&mut self, seg: Seg, offset: u64, size: Size) -> Result<u64, Stop> {
        let lin = self.linear(seg, offset, size, false)?;
        match self.load(lin, size) {
            Ok(v) => Ok(v),
            Err(stop) => Err(self.stack_fault(seg, lin, stop)),
        }
    }

    #[inline(always)]
    fn write(&mut self, seg: Seg, offset: u64, size: Size, v: u64) -> Result<(), Stop> {
        let lin = self.linear(seg, offset, size, true)?;
        match self.store(lin, size, v) {
            Ok(()) => Ok(()),
            Err(stop) => Err(self.stack_fault(seg, lin, stop)),
        }
    }

    /// Translates every page of a store that crosses pages, so a fault in
    /// a later page is raised before the first one is written; a store
    /// within one page needs nothing (its first write is the check). The
    /// segment's limit is checked at both ends (a segment is contiguous).
    fn check_write(&mut self, seg: Seg, offset: u64, len: usize) -> Result<(), Stop> {
        let lin = self.linear(seg, offset, 1, true)?;
        let end = offset.wrapping_add(len.max(1) as u64 - 1);
        let last = self.linear(seg, end, 1, true)?;
        if lin >> 12 == last >> 12 {
            return Ok(());
        }
        let user = self.core.cpl() == 3;
        if let Err(stop) = self.translate(lin, Access::Write, user, 1) {
            return Err(self.stack_fault(seg, lin, stop));
        }
        let mut page = lin & !0xfff;
        while page != last & !0xfff {
            page = page.wrapping_add(0x1000);
            self.translate(page, Access::Write, user, 1)?;
        }
        Ok(())
    }

    #[inline]
    fn fpu(&mut self) -> Result<&mut FpuState, Stop> {
        Ok(&mut self.core.fpu)
    }

    fn xcr0(&mut self) -> Result<u64, Stop> {
        Ok(self.core.xcr0)
    }

    /// XSETBV completes in the CPU (VT-x would exit unconditionally: SDM
    /// Vol. 3C 26.1.2; no VMM handler exists for it yet, so the simulated
    /// CPU does what KVM's handler does, loading XCR0).
    fn set_xcr0(&mut self, value: u64) -> Result<(), Stop> {
        self.core.xcr0 = value;
        Ok(())
    }

    /// FERR# with CR0.NE clear: the simulated machine has no IRQ 13 path
    /// (the PC platform's chipset would raise it), so the run stops with
    /// the instruction reported as not modelled.
    fn ferr(&mut self) -> Result<(), Stop> {
        Err(Stop::Unsupported)
    }

    #[cold]
    fn exception(&mut self, e: Exception) -> Stop {
        let ev = match e.error_code {
            Some(code) => Event::with_code(e.vector, code),
            None => Event::fault(e.vector),
        };
        self.raise(ev)
    }

    #[cold]
    fn unsupported(&mut self) -> Stop {
        Stop::Unsupported
    }

    /// A committed element ends the replay of the accesses before it; with
    /// REP, each element costs the op's cycles.
    #[inline]
    fn string_element(&mut self, op: &Op) {
        self.core.replay.log.clear();
        self.core.replay.pos = 0;
        if op.cc != REP_NONE {
            let cpl = self.core.cpl();
            self.core.cycles += self.core.costs.instruction(cost::cycles(op), cpl);
        }
    }

    #[cold]
    fn software_interrupt(&mut self, op: &Op, vector: u8) -> Stop {
        let ev = if op.kind == Kind::Int1 { Event::icebp(op.len) } else { Event::software(vector, op.len) };
        self.raise(ev)
    }

    fn interrupt_shadow(&mut self) {
        self.core.sti_shadow = true;
    }

    #[inline(always)]
    fn mode(&self) -> Mode {
        self.core.view.mode
    }

    #[inline(always)]
    fn stack_address_size(&self) -> Size {
        self.core.view.stack_size
    }

    fn segment(&mut self, s: Seg) -> Result<Segment, Stop> {
        Ok(self.core.seg[s as usize])
    }

    /// A CS or SS load may change the mode and CPL, so the decoded block
    /// in flight ends (the family functions end blocks at every load).
    fn set_segment(&mut self, s: Seg, v: Segment) -> Result<(), Stop> {
        self.core.set_segment(s, v);
        Ok(())
    }

    fn system_segment(&mut self, s: SystemSegment) -> Result<Segment, Stop> {
        Ok(match s {
            SystemSegment::Ldtr => self.core.ldtr,
            SystemSegment::Tr => self.core.tr,
        })
    }

    fn set_system_segment(&mut self, s: SystemSegment, v: Segment) -> Result<(), Stop> {
        match s {
            SystemSegment::Ldtr => self.core.ldtr = v,
            SystemSegment::Tr => self.core.tr = v,
        }
        Ok(())
    }

    fn read_linear(&mut self, linear: u64, size: Size, user: bool) -> Result<u64, Stop> {
        Running::read_linear(self, linear, size, user)
    }

    fn write_linear(&mut self, linear: u64, size: Size, v: u64, user: bool) -> Result<(), Stop> {
        Running::write_linear(self, linear, size, v, user)
    }

    /// The MSR file, read directly: SYSCALL and SYSENTER use the values
    /// without an RDMSR, so no MSR bitmap applies.
    fn msr(&mut self, index: u32) -> Result<u64, Stop> {
        self.core.read_msr(index).ok_or_else(|| self.raise(Event::gp(0)))
    }

    fn flush_line(&mut self, seg: Seg, offset: u64) -> Result<(), Stop> {
        let lin = self.linear(seg, offset, 1, false)?;
        let user = self.core.cpl() == 3;
        self.translate(lin, Access::Read, user, 1).map(|_| ())
    }

    fn ss_load_shadow(&mut self) {
        self.core.mov_ss_blocking = true;
    }

    fn iret_completed(&mut self) {
        self.core.nmi_blocked = false;
    }

    fn rep_chunk(&self) -> u64 {
        if self.core.rflags_rest & rflags::TF != 0 || self.core.bp.armed() {
            1
        } else {
            REP_CHUNK
        }
    }

    /// IN and INS: a port the I/O bitmap does not trap reads as all ones
    /// (no hardware behind it); a trapped one exits, and the answer is
    /// replayed when the instruction runs again.
    fn port_in(&mut self, op: &Op, p: PortIo) -> Result<u64, Stop> {
        self.watch_port(p.port, p.size);
        if !self.core.controls.io_exits(p.port, p.size) {
            return Ok(u64::MAX);
        }
        let v = self.replayed_read(|| io(p, true, 0));
        if p.string {
            let info = string_io_info(op, Seg::Es);
            v.inspect_err(|_| self.core.exit_info.instruction_info = info)
        } else {
            v
        }
    }

    /// OUT completes before its exit (`Stop::ExitAfter`); OUTS exits per
    /// element and replays.
    fn port_out(&mut self, op: &Op, p: PortIo, value: u64) -> Result<(), Stop> {
        self.watch_port(p.port, p.size);
        if !self.core.controls.io_exits(p.port, p.size) {
            return Ok(());
        }
        if p.string {
            let info = string_io_info(op, operand_segment(&op.b));
            return self
                .replayed_write(|| io(p, false, value))
                .inspect_err(|_| self.core.exit_info.instruction_info = info);
        }
        let _ = self.instruction_exit(op, io(p, false, value));
        Err(Stop::ExitAfter)
    }

    /// What the CPU model advertises in CPUID (the profile's features):
    /// FSGSBASE, MOVBE, CLFLUSH and CLFLUSHOPT are implemented but not
    /// advertised, so they are #UD.
    fn has(&self, feature: Feature) -> bool {
        self.core.features.has(feature)
    }

    /// DR6.BS pending, delivered at the next boundary (crates/sim/src/cpu/
    /// run.rs leaves these instructions out of its TF-at-start trap).
    fn single_step_trap(&mut self) {
        self.core.pending_dbg |= exitlab_arch::bits::dr6::BS;
    }

    /// The profile's vendor (`Features::vendor`).
    fn vendor(&self) -> exitlab_x86::Vendor {
        self.core.features.vendor()
    }

    fn tsc_aux(&mut self) -> Result<u64, Stop> {
        Ok(self.core.tsc_aux)
    }

    /// INVPCID: the TLB keeps no PCID tags (every CR3 load flushes it, which
    /// the architecture allows), so one address drops its page and every
    /// other type the whole TLB.
    fn invpcid(&mut self, _op: &Op, kind: u64, _pcid: u16, linear: u64) -> Result<(), Stop> {
        if kind == 0 {
            self.core.tlb.flush_page(linear);
        } else {
            self.core.tlb.flush();
        }
        Ok(())
    }

    /// CPUID always exits under VMX; the VMM answers (`Vcpu::complete`).
    fn cpuid(&mut self, op: &Op, leaf: u32, subleaf: u32) -> Result<[u32; 4], Stop> {
        self.core.awaiting = Some((Awaiting::Cpuid, op.len));
        Err(self.instruction_exit(op, VmExit::Cpuid { leaf, subleaf }))
    }

    fn rdmsr(&mut self, op: &Op, msr: u32) -> Result<u64, Stop> {
        if self.core.controls.msr_exits(msr, false) {
            self.core.awaiting = Some((Awaiting::Rdmsr, op.len));
            return Err(self.instruction_exit(op, VmExit::MsrRead { msr }));
        }
        self.core.read_msr(msr).ok_or_else(|| self.raise(Event::gp(0)))
    }

    fn wrmsr(&mut self, op: &Op, msr: u32, value: u64) -> Result<(), Stop> {
        if self.core.controls.msr_exits(msr, true) {
            self.core.awaiting = Some((Awaiting::Wrmsr, op.len));
            return Err(self.instruction_exit(op, VmExit::MsrWrite { msr, value }));
        }
        if !self.core.write_msr(msr, value) {
            return Err(self.raise(Event::gp(0)));
        }
        Ok(())
    }

    /// The TSC is the core's cycle count.
    fn rdtsc(&mut self, op: &Op) -> Result<(u64, u32), Stop> {
        if self.core.controls.rdtsc_exiting {
            return Err(self.instruction_exit(op, VmExit::Rdtsc));
        }
        Ok((self.core.tsc(), self.core.tsc_aux as u32))
    }

    fn hlt(&mut self, op: &Op) -> Result<(), Stop> {
        if self.core.controls.hlt_exiting {
            self.core.awaiting = Some((Awaiting::Hlt, op.len));
            return Err(self.instruction_exit(op, VmExit::Hlt));
        }
        self.core.halted = true;
        Ok(())
    }

    fn cr(&mut self, n: u8) -> Result<u64, Stop> {
        Ok(match n {
            0 => self.core.cr0,
            2 => self.core.cr2,
            3 => self.core.cr3,
            4 => self.core.cr4,
            8 => self.core.apic.cr8(),
            _ => return Err(self.raise(Event::ud())),
        })
    }

    /// CR3 and CR8 stores exit when the controls say so; CR0 and CR4 read
    /// host-owned bits from their read shadows.
    fn mov_from_cr(&mut self, op: &Op, n: u8) -> Result<u64, Stop> {
        let c = &self.core.controls;
        if (n == 3 && c.cr3_store_exiting) || (n == 8 && c.cr8_store_exiting) {
            let q = CrAccessQual::mov(n, false, reg_number(&op.a));
            return Err(self.instruction_exit(op, VmExit::CrAccess(q)));
        }
        self.core.guest_cr(n).ok_or_else(|| self.raise(Event::ud()))
    }

    /// A load exits when it changes a host-owned CR0/CR4 bit against its
    /// read shadow, or when CR3/CR8 load exiting is on. Host-owned bits
    /// keep their value; the guest sees them through the read shadow.
    fn mov_to_cr(&mut self, op: &Op, n: u8, v: u64) -> Result<(), Stop> {
        let c = &self.core.controls;
        let trapped = match n {
            0 => (v ^ c.cr0_shadow) & c.cr0_mask != 0,
            3 => c.cr3_load_exiting,
            4 => (v ^ c.cr4_shadow) & c.cr4_mask != 0,
            8 => c.cr8_load_exiting,
            _ => false,
        };
        if trapped {
            // A value the CPU refuses faults before any exit.
            let refused = match n {
                0 => self.core.cr0_transition(v).is_err(),
                4 => self.core.cr4_check(v).is_err(),
                _ => false,
            };
            if refused {
                return Err(self.raise(Event::gp(0)));
            }
            let q = CrAccessQual::mov(n, true, reg_number(&op.b));
            return Err(self.instruction_exit(op, VmExit::CrAccess(q)));
        }
        let v = match n {
            0 => (v & !c.cr0_mask) | (self.core.cr0 & c.cr0_mask),
            4 => (v & !c.cr4_mask) | (self.core.cr4 & c.cr4_mask),
            _ => v,
        };
        self.write_cr(n, v)
    }

    fn dr(&mut self, n: u8) -> Result<u64, Stop> {
        Ok(match n {
            0..=3 => self.core.dr[usize::from(n)],
            6 => self.core.dr6,
            _ => self.core.dr7,
        })
    }

    fn set_dr(&mut self, n: u8, v: u64) -> Result<(), Stop> {
        match n {
            0..=3 => self.core.dr[usize::from(n)] = v,
            6 => self.core.dr6 = v,
            _ => self.core.dr7 = v,
        }
        if n != 6 {
            self.rearm_breakpoints();
        }
        Ok(())
    }

    fn general_detect(&mut self) -> Result<(), Stop> {
        Running::general_detect(self)
    }

    fn descriptor_table(&mut self, which: DescriptorTableKind) -> Result<DescriptorTable, Stop> {
        Ok(match which {
            DescriptorTableKind::Gdt => self.core.gdtr,
            DescriptorTableKind::Idt => self.core.idtr,
        })
    }

    fn set_descriptor_table(&mut self, which: DescriptorTableKind, t: DescriptorTable) -> Result<(), Stop> {
        match which {
            DescriptorTableKind::Gdt => self.core.gdtr = t,
            DescriptorTableKind::Idt => self.core.idtr = t,
        }
        Ok(())
    }

    /// INVLPG names a linear address; it checks no segment limit.
    fn invlpg(&mut self, op: &Op, seg: Seg, offset: u64) -> Result<(), Stop> {
        let mut a = offset.wrapping_add(self.core.view.base[seg as usize]);
        if !self.core.view.flat {
            a &= 0xffff_ffff;
        }
        if self.core.controls.invlpg_exiting {
            let stop = self.instruction_exit(op, VmExit::Invlpg { linear: a });
            self.core.exit_info.guest_linear = Some(a);
            return Err(stop);
        }
        self.core.tlb.flush_page(a);
        Ok(())
    }

    fn swapgs(&mut self) -> Result<(), Stop> {
        let gs = self.core.seg[Seg::Gs as usize].base;
        let kernel = std::mem::replace(&mut self.core.kernel_gs_base, gs);
        self.core.set_segment_base(Seg::Gs, kernel);
        Ok(())
    }

    fn clts(&mut self) -> Result<(), Stop> {
        self.core.cr0 &= !cr0::TS;
        Ok(())
    }

    /// VMCALL always exits; the VMM answers (KVM's hypercall ABI) and
    /// skips it.
    fn vmcall(&mut self, op: &Op) -> Result<(), Stop> {
        Err(self.instruction_exit(op, VmExit::Vmcall))
    }

    fn xbegin(&mut self, fallback: u64) {
        self.begin_transaction(fallback);
    }

    fn xend(&mut self) -> Result<(), Stop> {
        self.end_transaction()
    }

    fn xabort(&mut self, status: u32) {
        self.abort(status);
    }

    fn in_transaction(&self) -> bool {
        self.core.tx.is_some()
    }
}

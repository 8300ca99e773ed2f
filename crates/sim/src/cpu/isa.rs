//! The simulated core as exitlab-x86's executor sees it: `exitlab_x86::Cpu`
//! for [`Running`]. Registers and flags are the core's fields; memory goes
//! through the TLB fast path (`mmu.rs`), where an MMIO or port access
//! stops the instruction for the VMM and replays the answer when it runs
//! again; the system hooks are where the VMX controls decide to exit.

use super::event::Event;
use super::{Awaiting, Running, Stop};
use crate::cost;
use exitlab_arch::bits::{cr0, cr4, rflags};
use exitlab_arch::cpuid::{Feature as CpuFeature, FeatureSet};
use exitlab_arch::{CrAccessQual, DescriptorTable, IoQual, Segment};
use exitlab_hv::{IoExit, VmExit};
use exitlab_x86::op::REP_NONE;
use exitlab_x86::{Cpu, DescriptorTableKind, Exception, Feature, Flags, Kind, Op, Opnd, PortIo, Seg, Size};

/// String instructions run at most this many iterations per step, then
/// restart, so a long REP stays interruptible as the SDM allows.
const REP_CHUNK: u64 = 4096;

/// Instruction information of an INS exit: 64-bit address size (2 in bits
/// 9:7), segment ES (0 in bits 17:15).
const STRING_IO_ES: u32 = 2 << 7;
/// Of an OUTS exit: 64-bit addresses, segment DS (3).
const STRING_IO_DS: u32 = 2 << 7 | 3 << 15;

impl Running<'_> {
    /// The linear address of `offset` in `seg`: in 64-bit mode only FS and
    /// GS have a base.
    #[inline(always)]
    fn linear(&self, seg: Seg, offset: u64) -> u64 {
        match seg {
            Seg::Fs => offset.wrapping_add(self.core.fs_base),
            Seg::Gs => offset.wrapping_add(self.core.gs_base),
            _ => offset,
        }
    }

    /// Stops at an instruction the controls trap, recording its length for
    /// the VMM's `skip_instruction`.
    fn instruction_exit(&mut self, op: &Op, exit: VmExit) -> Stop {
        let stop = self.exit(exit);
        self.core.exit_info.instruction_len = op.len;
        stop
    }

    /// MOV SS in 64-bit mode (SDM Vol. 2B "MOV", protected-mode checks):
    /// a null selector only below CPL 3 with RPL = CPL; otherwise RPL and
    /// the descriptor's DPL equal to CPL, a writable data segment (#GP
    /// with the selector), present (#SS).
    fn load_ss(&mut self, selector: u16) -> Result<(), Stop> {
        let cpl = self.core.cpl();
        let rpl = (selector & 3) as u8;
        let code = u32::from(selector & !3);
        if selector & !3 == 0 {
            if cpl == 3 || rpl != cpl {
                return Err(self.raise(Event::gp(0)));
            }
            self.core.ss = Segment { selector, present: false, ..self.core.ss };
            return Ok(());
        }
        if rpl != cpl {
            return Err(self.raise(Event::gp(code)));
        }
        let desc = self.read_descriptor(selector)?;
        let dpl = ((desc >> 45) & 3) as u8;
        let writable_data = desc & (1 << 44) != 0 && desc & (1 << 43) == 0 && desc & (1 << 41) != 0;
        if !writable_data || dpl != cpl {
            return Err(self.raise(Event::gp(code)));
        }
        if desc & (1 << 47) == 0 {
            return Err(self.raise(Event::with_code(exitlab_arch::vector::SS, code)));
        }
        self.core.ss = Segment { selector, dpl, present: true, type_: ((desc >> 40) & 0xf) as u8, ..self.core.ss };
        Ok(())
    }

    /// CR`n` = `v` after MOV to CR passed the VMX checks. Leaving protected
    /// mode or paging, and CR4 bits the model lacks, are #GP.
    fn write_cr(&mut self, n: u8, v: u64) -> Result<(), Stop> {
        match n {
            0 => {
                if v & (cr0::PE | cr0::PG) != cr0::PE | cr0::PG || v >> 32 != 0 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.core.cr0 = v | cr0::ET;
                self.core.tlb.flush();
            }
            2 => self.core.cr2 = v,
            3 => {
                // With CR4.PCIDE, bit 63 asks not to flush (a hint this TLB
                // may ignore) and is not stored; bits above MAXPHYADDR (48)
                // are reserved.
                let v = if self.core.cr4 & cr4::PCIDE != 0 { v & !(1 << 63) } else { v };
                if v >> 48 != 0 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.core.cr3 = v;
                self.core.tlb.flush();
            }
            4 => {
                let set = v & !self.core.cr4;
                let pcid_on = set & cr4::PCIDE != 0
                    && (self.core.cr3 & 0xfff != 0 || self.core.efer & exitlab_arch::bits::efer::LMA == 0);
                if v & cr4::PAE == 0 || v & !cr4_allowed(self.core.features) != 0 || pcid_on {
                    return Err(self.raise(Event::gp(0)));
                }
                self.core.cr4 = v;
                self.core.tlb.flush();
                self.rearm_breakpoints();
            }
            8 => {
                if v > 15 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.core.apic.set_cr8(v);
            }
            _ => return Err(self.raise(Event::ud())),
        }
        Ok(())
    }
}

/// The CR4 bits the CPU model lets software set (SDM Vol. 3A 2.5): those
/// of features it advertises; the rest are reserved (#GP), as KVM's
/// `__cr4_reserved_bits` makes them for a guest without the feature.
fn cr4_allowed(f: FeatureSet) -> u64 {
    let mut ok = cr4::VME | cr4::PVI | cr4::TSD | cr4::DE | cr4::PSE | cr4::PAE | cr4::MCE | cr4::PCE;
    for (feature, bits) in [
        (CpuFeature::Pge, cr4::PGE),
        (CpuFeature::Fxsr, cr4::OSFXSR),
        (CpuFeature::Sse, cr4::OSXMMEXCPT),
        (CpuFeature::Umip, cr4::UMIP),
        (CpuFeature::Fsgsbase, cr4::FSGSBASE),
        (CpuFeature::Pcid, cr4::PCIDE),
        (CpuFeature::Xsave, cr4::OSXSAVE),
    ] {
        if f.has(feature) {
            ok |= bits;
        }
    }
    ok
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
        let lin = self.linear(seg, offset);
        self.load(lin, size)
    }

    #[inline(always)]
    fn write(&mut self, seg: Seg, offset: u64, size: Size, v: u64) -> Result<(), Stop> {
        let lin = self.linear(seg, offset);
        self.store(lin, size, v)
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
            self.core.cycles += u64::from(cost::cycles(op));
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

    fn mov_ss_shadow(&mut self) {
        self.core.mov_ss_blocking = true;
    }

    fn rep_chunk(&self) -> u64 {
        if self.core.rflags_rest & rflags::TF != 0 || self.core.bp.armed() {
            1
        } else {
            REP_CHUNK
        }
    }

    fn iretq(&mut self, _op: &Op) -> Result<(), Stop> {
        self.iret()
    }

    /// IN and INS: a port the I/O bitmap does not trap reads as all ones
    /// (no hardware behind it); a trapped one exits, and the answer is
    /// replayed when the instruction runs again.
    fn port_in(&mut self, _op: &Op, p: PortIo) -> Result<u64, Stop> {
        self.watch_port(p.port, p.size);
        if !self.core.controls.io_exits(p.port, p.size) {
            return Ok(u64::MAX);
        }
        let v = self.replayed_read(|| io(p, true, 0));
        if p.string {
            v.inspect_err(|_| self.core.exit_info.instruction_info = STRING_IO_ES)
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
            return self
                .replayed_write(|| io(p, false, value))
                .inspect_err(|_| self.core.exit_info.instruction_info = STRING_IO_DS);
        }
        let _ = self.instruction_exit(op, io(p, false, value));
        Err(Stop::ExitAfter)
    }

    fn task_register(&mut self) -> Result<Segment, Stop> {
        Ok(self.core.tr)
    }

    fn read_system(&mut self, linear: u64, size: Size) -> Result<u64, Stop> {
        self.read_linear(linear, size, false)
    }

    fn has(&self, feature: Feature) -> bool {
        self.core.features.has(feature)
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

    /// In 64-bit mode only SS is loaded here (the mode-aware loads of every
    /// segment register are the system-ISA work's); SS with its checks.
    fn load_segment(&mut self, seg: Seg, selector: u16) -> Result<(), Stop> {
        match seg {
            Seg::Ss => self.load_ss(selector),
            _ => Err(Stop::Unsupported),
        }
    }

    fn segment_selector(&mut self, seg: Seg) -> Result<u16, Stop> {
        match seg {
            Seg::Cs => Ok(self.core.cs.selector),
            Seg::Ss => Ok(self.core.ss.selector),
            _ => Err(Stop::Unsupported),
        }
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

    fn invlpg(&mut self, op: &Op, seg: Seg, offset: u64) -> Result<(), Stop> {
        let a = self.linear(seg, offset);
        if self.core.controls.invlpg_exiting {
            let stop = self.instruction_exit(op, VmExit::Invlpg { linear: a });
            self.core.exit_info.guest_linear = Some(a);
            return Err(stop);
        }
        self.core.tlb.flush_page(a);
        Ok(())
    }

    fn swapgs(&mut self) -> Result<(), Stop> {
        std::mem::swap(&mut self.core.gs_base, &mut self.core.kernel_gs_base);
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

//! Event delivery and IRET in every mode (SDM Vol. 3A 6.10-6.14, 20.1.4;
//! Vol. 2 "INT n/INTO/INT3/INT1", "IRET/IRETD/IRETQ"): the real-mode
//! interrupt vector table; the protected-mode IDT with 16- and 32-bit
//! interrupt and trap gates and the stack switch through a 16- or 32-bit
//! TSS; the IA-32e IDT with 64-bit gates, the IST and the 16-byte aligned
//! frame. What raises an event, and what a fault during delivery becomes
//! (#DF, shutdown), is the implementation's: it calls [`deliver`] with RIP
//! already what the frame must hold. Task gates and returns with NT set
//! would switch tasks, and virtual-8086 mode is not modelled: both stop
//! as unmodelled.

use crate::cpu::{Cpu, DescriptorTableKind, Exception, Mode};
use crate::exec::{iopl, rflags, set_rflags};
use crate::far::{null_inaccessible_segments, return_code_segment, return_stack_segment, tss_stack};
use crate::op::{Op, Seg};
use crate::segment::{error_code, is_null, read_descriptor, real_mode_segment, rpl, set_accessed, system};
use crate::stack::Frame;
use crate::{mask, Size};
use exitlab_arch::bits::rflags::{AC, DF, ID, IF, IOPL, NT, RF, STATUS, TF, VIF, VIP, VM};

/// An event to deliver through the IDT (or the real-mode IVT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub vector: u8,
    /// Pushed after the return address (exceptions that have one; never
    /// in real mode).
    pub error_code: Option<u32>,
    /// INT n, INT3, INTO: the gate's DPL must be at least CPL.
    pub software: bool,
    /// The EXT bit of error codes a fault during delivery gets: an external
    /// interrupt or a hardware exception (SDM Vol. 3A 6.13).
    pub external: bool,
    /// RFLAGS.RF in the pushed image (faults, so that IRET back to the
    /// instruction does not re-trigger its breakpoint).
    pub resume: bool,
}

/// Delivers `d` in the current mode. RIP is what the frame holds; on an
/// `Err` the registers are as they were (the frame may be half written,
/// as on hardware).
pub fn deliver<C: Cpu>(c: &mut C, d: &Delivery) -> Result<(), C::Stop> {
    match c.mode() {
        Mode::Real => real_mode(c, d),
        Mode::Virtual8086 => Err(c.unsupported()),
        Mode::Protected => protected(c, d),
        Mode::Compatibility | Mode::Long => ia32e(c, d),
    }
}

/// The flags after delivery: TF, NT, RF and VM clear, IF too through an
/// interrupt gate (SDM Vol. 3A 6.12.1.3).
fn handler_flags<C: Cpu>(c: &mut C, interrupt_gate: bool) {
    let mut f = rflags(c) & !(TF | NT | RF | VM);
    if interrupt_gate {
        f &= !IF;
    }
    set_rflags(c, f);
}

/// Real mode: FLAGS, CS and IP pushed (16 bits each), CS:IP from the IVT
/// entry at IDTR.base + 4 x vector; IF, TF and AC clear.
fn real_mode<C: Cpu>(c: &mut C, d: &Delivery) -> Result<(), C::Stop> {
    let idt = c.descriptor_table(DescriptorTableKind::Idt)?;
    let at = u64::from(d.vector) * 4;
    if at + 3 > u64::from(idt.limit) {
        return Err(c.exception(Exception::gp(0)));
    }
    let entry = c.read_system(idt.base.wrapping_add(at), 4)?;
    let cs = c.segment(Seg::Cs)?;
    let mut f = Frame::current(c)?;
    let flags = rflags(c) | if d.resume { RF } else { 0 };
    f.push(c, flags & 0xffff, 2)?;
    f.push(c, u64::from(cs.selector), 2)?;
    f.push(c, c.rip() & 0xffff, 2)?;
    f.commit(c);
    c.set_segment(Seg::Cs, real_mode_segment(cs, (entry >> 16) as u16))?;
    c.set_rip(entry & 0xffff);
    let fl = rflags(c) & !(IF | TF | AC | RF);
    set_rflags(c, fl);
    Ok(())
}

/// An IDT gate after the checks every mode shares: in the table (#GP),
/// of a kind the mode allows (#GP), DPL for software events (#GP), present
/// (#NP); the error codes name the IDT entry (SDM Vol. 3A 6.13).
struct Gate {
    selector: u16,
    offset: u64,
    interrupt: bool,
    size: Size,
    ist: u64,
}

fn read_gate<C: Cpu>(c: &mut C, d: &Delivery, wide: bool) -> Result<Gate, C::Stop> {
    let ext = u32::from(d.external);
    let idt_code = u32::from(d.vector) << 3 | 2 | ext;
    let idt = c.descriptor_table(DescriptorTableKind::Idt)?;
    let entry = if wide { 16 } else { 8 };
    let at = u64::from(d.vector) * entry;
    if at + entry - 1 > u64::from(idt.limit) {
        return Err(c.exception(Exception::gp(idt_code)));
    }
    let lo = c.read_system(idt.base.wrapping_add(at), 8)?;
    let hi = if wide { c.read_system(idt.base.wrapping_add(at + 8), 8)? } else { 0 };
    let t = ((lo >> 40) & 0xf) as u8;
    let (allowed, size) = match t {
        system::INTERRUPT_GATE | system::TRAP_GATE => (true, if wide { 8 } else { 4 }),
        system::INTERRUPT_GATE16 | system::TRAP_GATE16 => (!wide, 2),
        system::TASK_GATE if !wide => return Err(c.unsupported()),
        _ => (false, 0),
    };
    if !allowed || lo & (1 << 44) != 0 {
        return Err(c.exception(Exception::gp(idt_code)));
    }
    if d.software && (((lo >> 45) & 3) as u8) < c.cpl() {
        return Err(c.exception(Exception::gp(idt_code & !1)));
    }
    if lo & (1 << 47) == 0 {
        return Err(c.exception(Exception::np(idt_code)));
    }
    let mut offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi & 0xffff_ffff) << 32;
    if size == 2 {
        offset &= 0xffff;
    }
    let interrupt = t == system::INTERRUPT_GATE || t == system::INTERRUPT_GATE16;
    Ok(Gate { selector: (lo >> 16) as u16, offset, interrupt, size, ist: (lo >> 32) & 7 })
}

/// The handler's code segment: not null, code with DPL <= CPL (#GP), in
/// IA-32e mode 64-bit (#GP), present (#NP); error codes carry EXT.
fn handler_segment<C: Cpu>(
    c: &mut C,
    g: &Gate,
    d: &Delivery,
    ia32e: bool,
) -> Result<crate::segment::Descriptor, C::Stop> {
    let ext = u32::from(d.external);
    if is_null(g.selector) {
        return Err(c.exception(Exception::gp(ext)));
    }
    let cd = read_descriptor(c, g.selector, false, |e| Exception::gp(e | ext))?;
    let long_code = cd.lo & (1 << 53) != 0 && cd.lo & (1 << 54) == 0;
    if !cd.is_code() || cd.dpl() > c.cpl() || (ia32e && !long_code) {
        return Err(c.exception(Exception::gp(error_code(g.selector) | ext)));
    }
    if !cd.present() {
        return Err(c.exception(Exception::np(error_code(g.selector) | ext)));
    }
    Ok(cd)
}

/// Protected mode (SDM Vol. 3A 6.12.1): to a more privileged
/// non-conforming segment on the stack the TSS gives for its DPL, with the
/// old SS:ESP pushed first; otherwise on the current stack.
fn protected<C: Cpu>(c: &mut C, d: &Delivery) -> Result<(), C::Stop> {
    let g = read_gate(c, d, false)?;
    let cd = handler_segment(c, &g, d, false)?;
    let cpl = c.cpl();
    let new_cpl = if cd.conforming() { cpl } else { cd.dpl() };
    let mut cs = cd.segment((g.selector & !3) | u16::from(new_cpl));
    cs.l = false;
    if g.offset > u64::from(cs.limit) {
        return Err(c.exception(Exception::gp(u32::from(d.external))));
    }
    let old_cs = c.segment(Seg::Cs)?.selector;
    let (mut f, new_ss) = if new_cpl < cpl {
        let (ss, sp) = tss_stack(c, new_cpl, false)?;
        let mut f = Frame::new_stack(ss, sp, new_cpl, false);
        let old_ss = c.segment(Seg::Ss)?.selector;
        let old_sp = Frame::current(c)?.sp;
        f.push(c, u64::from(old_ss), g.size)?;
        f.push(c, old_sp, g.size)?;
        (f, Some(ss))
    } else {
        (Frame::current(c)?, None)
    };
    push_frame(c, &mut f, &g, d, old_cs)?;
    set_accessed(c, &cd)?;
    if let Some(ss) = new_ss {
        c.set_segment(Seg::Ss, ss)?;
    }
    f.commit(c);
    c.set_segment(Seg::Cs, cs)?;
    c.set_rip(g.offset);
    handler_flags(c, g.interrupt);
    Ok(())
}

/// (R/E)FLAGS, CS, the return (R/E)IP and the error code, at the gate's
/// size.
fn push_frame<C: Cpu>(c: &mut C, f: &mut Frame, g: &Gate, d: &Delivery, old_cs: u16) -> Result<(), C::Stop> {
    let flags = rflags(c) | if d.resume { RF } else { 0 };
    f.push(c, flags & mask(g.size), g.size)?;
    f.push(c, u64::from(old_cs), g.size)?;
    f.push(c, c.rip() & mask(g.size), g.size)?;
    if let Some(code) = d.error_code {
        f.push(c, u64::from(code), g.size)?;
    }
    Ok(())
}

/// IA-32e mode (SDM Vol. 3A 6.14): 16-byte gates to 64-bit code; the
/// stack is the IST entry's, the TSS's for a more privileged handler, or
/// the current one, aligned down to 16 bytes; SS:RSP is always pushed; a
/// privilege change loads a null SS with RPL = the new CPL.
fn ia32e<C: Cpu>(c: &mut C, d: &Delivery) -> Result<(), C::Stop> {
    let ext = u32::from(d.external);
    let g = read_gate(c, d, true)?;
    let cd = handler_segment(c, &g, d, true)?;
    let cpl = c.cpl();
    let new_cpl = if cd.conforming() { cpl } else { cd.dpl() };
    if ((g.offset as i64) << 16 >> 16) as u64 != g.offset {
        return Err(c.exception(Exception::gp(ext)));
    }
    let old_ss = c.segment(Seg::Ss)?;
    let old_rsp = c.gpr(crate::reg::RSP);
    let rsp = if g.ist != 0 {
        tss_quad(c, 0x24 + (g.ist - 1) * 8, ext)?
    } else if new_cpl < cpl {
        tss_quad(c, 4 + u64::from(new_cpl) * 8, ext)?
    } else {
        old_rsp
    };
    let ss = if new_cpl != cpl { crate::segment::null_segment(u16::from(new_cpl), new_cpl) } else { old_ss };
    let mut f = Frame::new_stack(ss, rsp & !0xf, new_cpl, true);
    let old_cs = c.segment(Seg::Cs)?.selector;
    f.push(c, u64::from(old_ss.selector), 8)?;
    f.push(c, old_rsp, 8)?;
    push_frame(c, &mut f, &g, d, old_cs)?;
    set_accessed(c, &cd)?;
    c.set_segment(Seg::Ss, ss)?;
    c.set_segment(Seg::Cs, cd.segment((g.selector & !3) | u16::from(new_cpl)))?;
    f.commit(c);
    c.set_rip(g.offset);
    handler_flags(c, g.interrupt);
    Ok(())
}

/// A quadword of the 64-bit TSS at `at` (#TS past its limit).
fn tss_quad<C: Cpu>(c: &mut C, at: u64, ext: u32) -> Result<u64, C::Stop> {
    let tr = c.system_segment(crate::cpu::SystemSegment::Tr)?;
    if at + 7 > u64::from(tr.limit) {
        return Err(c.exception(Exception::ts(error_code(tr.selector) | ext)));
    }
    c.read_system(tr.base.wrapping_add(at), 8)
}

/// The RFLAGS an IRET loads from `popped` (SDM Vol. 2A "IRET"): IOPL only
/// at CPL 0, IF only at CPL <= IOPL, VIF and VIP only at CPL 0 with a
/// 32- or 64-bit pop, VM never (virtual-8086 mode is not modelled); a
/// 16-bit pop changes only FLAGS.
fn returned_flags<C: Cpu>(c: &C, popped: u64, size: Size) -> u64 {
    let cpl = c.cpl();
    let mut settable = STATUS | TF | DF | NT | RF | AC | ID;
    if cpl == 0 {
        settable |= IOPL;
        if size > 2 {
            settable |= VIF | VIP;
        }
    }
    if cpl <= iopl(c) {
        settable |= IF;
    }
    settable &= mask(size);
    (rflags(c) & !settable) | (popped & settable)
}

/// IRET, IRETD, IRETQ.
#[inline(never)]
pub fn iret<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    match c.mode() {
        Mode::Real => iret_real(c, op),
        Mode::Virtual8086 => Err(c.unsupported()),
        Mode::Protected => iret_protected(c, op),
        Mode::Compatibility | Mode::Long => iret_ia32e(c, op),
    }?;
    c.iret_completed();
    Ok(())
}

fn iret_real<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let mut f = Frame::current(c)?;
    let ip = f.pop(c, op.size)?;
    let sel = f.pop(c, op.size)? as u16;
    let flags = f.pop(c, op.size)?;
    let cs = c.segment(Seg::Cs)?;
    let new = returned_flags(c, flags, op.size);
    f.commit(c);
    c.set_segment(Seg::Cs, real_mode_segment(cs, sel))?;
    c.set_rip(ip & mask(op.size));
    set_rflags(c, new);
    Ok(())
}

fn iret_protected<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if rflags(c) & NT != 0 {
        // A return from a nested task: a task switch.
        return Err(c.unsupported());
    }
    let size = op.size;
    let mut f = Frame::current(c)?;
    let ip = f.pop(c, size)?;
    let sel = f.pop(c, size)? as u16;
    let flags = f.pop(c, size)?;
    if size == 4 && flags & VM != 0 && c.cpl() == 0 {
        // A return to virtual-8086 mode.
        return Err(c.unsupported());
    }
    let cd = return_code_segment(c, sel)?;
    let r = rpl(sel);
    let mut cs = cd.segment(sel);
    cs.l = false;
    if ip > u64::from(cs.limit) {
        return Err(c.exception(Exception::gp(0)));
    }
    let new_flags = returned_flags(c, flags, size);
    let outer = if r > c.cpl() {
        let sp = f.pop(c, size)?;
        let ss_sel = f.pop(c, size)? as u16;
        let ss = return_stack_segment(c, ss_sel, r, false)?;
        Some(Frame::new_stack(ss, sp, r, false))
    } else {
        None
    };
    set_accessed(c, &cd)?;
    c.set_segment(Seg::Cs, cs)?;
    c.set_rip(ip);
    set_rflags(c, new_flags);
    match outer {
        Some(o) => {
            c.set_segment(Seg::Ss, o.ss)?;
            o.commit(c);
            null_inaccessible_segments(c, r)
        }
        None => {
            f.commit(c);
            Ok(())
        }
    }
}

/// IA-32e mode: from 64-bit mode SS:RSP is always popped, from
/// compatibility mode only on a return to an outer level; a null SS is
/// allowed back into 64-bit code below ring 3.
fn iret_ia32e<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if rflags(c) & NT != 0 {
        return Err(c.exception(Exception::gp(0)));
    }
    let size = op.size;
    let from_64 = c.mode() == Mode::Long;
    let mut f = Frame::current(c)?;
    let ip = f.pop(c, size)?;
    let sel = f.pop(c, size)? as u16;
    let flags = f.pop(c, size)?;
    let cd = return_code_segment(c, sel)?;
    let r = rpl(sel);
    let cs = cd.segment(sel);
    let to_64 = cs.l;
    let canonical = ((ip as i64) << 16 >> 16) as u64 == ip;
    if (to_64 && !canonical) || (!to_64 && ip > u64::from(cs.limit)) {
        return Err(c.exception(Exception::gp(0)));
    }
    let new_flags = returned_flags(c, flags, size) & !VM;
    let stack = if from_64 || r > c.cpl() {
        let sp = f.pop(c, size)?;
        let ss_sel = f.pop(c, size)? as u16;
        Some((return_stack_segment(c, ss_sel, r, to_64)?, sp))
    } else {
        None
    };
    let old_cpl = c.cpl();
    set_accessed(c, &cd)?;
    c.set_segment(Seg::Cs, cs)?;
    c.set_rip(ip);
    set_rflags(c, new_flags);
    match stack {
        Some((ss, sp)) => {
            // Back to a 16-bit stack only SP is loaded: RSP[63:16] stay
            // the kernel's at the IRET (the leak Linux's espfix64 hides,
            // commit 3891a04aafd6; Bochs' long_iret does the same).
            let sp = match size {
                _ if !to_64 && !ss.db => crate::merge(c.gpr(crate::reg::RSP), 2, sp),
                8 => sp,
                _ => sp & mask(size),
            };
            c.set_segment(Seg::Ss, ss)?;
            c.set_gpr(crate::reg::RSP, sp);
        }
        None => f.commit(c),
    }
    if r > old_cpl {
        null_inaccessible_segments(c, r)?;
    }
    Ok(())
}

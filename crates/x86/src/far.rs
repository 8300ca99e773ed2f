//! Far transfers (SDM Vol. 3A 5.8; Vol. 2 "JMP", "CALL", "RET" far
//! forms): in real mode a new CS base; in protected and IA-32e mode the
//! code-segment checks, conforming and non-conforming segments, call gates
//! (16-, 32- and 64-bit) with the privilege-level stack switch through the
//! TSS and the copy of parameters, and far returns to the same or an outer
//! privilege level. Task gates and TSS selectors would switch tasks, which
//! is not modelled (the instruction stops as unmodelled).

use crate::cpu::{Cpu, Exception, SystemSegment};
use crate::exec::{memory, offset};
use crate::op::{Op, Opnd, Seg};
use crate::segment::{error_code, is_null, read_descriptor, rpl, set_accessed, system, ty, Descriptor};
use crate::stack::Frame;
use crate::{mask, Size};
use exitlab_arch::Segment;

/// The far pointer of a far JMP or CALL: immediates, or offset then
/// selector in memory.
fn far_pointer<C: Cpu>(c: &mut C, op: &Op) -> Result<(u16, u64), C::Stop> {
    match (op.a, op.b) {
        (Opnd::Imm(off), Opnd::Imm(sel)) => Ok((sel as u16, off)),
        _ => {
            let m = memory(c, &op.a)?;
            let at = offset(c, &m);
            let off = c.read(m.seg, at, op.size)?;
            let sel = c.read(m.seg, at.wrapping_add(u64::from(op.size)) & mask(m.asize), 2)?;
            Ok((sel as u16, off))
        }
    }
}

/// Whether `s` is a 64-bit code segment (L set, D clear); L with D is
/// reserved in IA-32e mode.
fn code_width_ok(d: &Descriptor, ia32e: bool) -> bool {
    let (l, db) = (d.lo & (1 << 53) != 0, d.lo & (1 << 54) != 0);
    !(ia32e && l && db)
}

/// The CS a transfer installs, with RPL = `cpl`.
fn code_segment(d: &Descriptor, selector: u16, cpl: u8, ia32e: bool) -> Segment {
    let mut s = d.segment((selector & !3) | u16::from(cpl));
    if !ia32e {
        s.l = false;
    }
    s
}

/// Whether a transfer to `s`:`target` stays inside the segment: in 64-bit
/// code the target must be canonical, elsewhere within the limit.
fn target_ok(s: &Segment, target: u64, ia32e: bool) -> bool {
    if ia32e && s.l {
        ((target as i64) << 16 >> 16) as u64 == target
    } else {
        target <= u64::from(s.limit)
    }
}

/// Installs CS and the instruction pointer.
fn go<C: Cpu>(c: &mut C, cs: Segment, target: u64) -> Result<(), C::Stop> {
    c.set_segment(Seg::Cs, cs)?;
    c.set_rip(target);
    Ok(())
}

/// A real-mode far transfer's CS: base = selector x 16, the rest kept.
fn real_mode_cs<C: Cpu>(c: &mut C, selector: u16) -> Result<Segment, C::Stop> {
    let old = c.segment(Seg::Cs)?;
    Ok(crate::segment::real_mode_segment(old, selector))
}

/// A call gate's target (SDM Vol. 3A 5.8.3): the selector, the offset
/// (64 bits from a 16-byte gate in IA-32e mode) and the parameter count.
struct Gate {
    selector: u16,
    offset: u64,
    params: u8,
    size: Size,
}

/// The gate `d` describes, after the gate checks: DPL >= CPL and >= RPL
/// (#GP(selector)), present (#NP(selector)); a task gate or TSS stops as
/// unmodelled; anything else is #GP(selector).
fn call_gate<C: Cpu>(c: &mut C, d: &Descriptor, selector: u16) -> Result<Gate, C::Stop> {
    let ia32e = c.mode().ia32e();
    let t = d.type_();
    match t {
        system::CALL_GATE | system::CALL_GATE16 if !(ia32e && t == system::CALL_GATE16) => {}
        system::TASK_GATE | system::TSS16_AVAILABLE | system::TSS_AVAILABLE if !ia32e => {
            return Err(c.unsupported());
        }
        _ => return Err(c.exception(Exception::gp(error_code(selector)))),
    }
    if d.dpl() < c.cpl() || d.dpl() < rpl(selector) {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    if !d.present() {
        return Err(c.exception(Exception::np(error_code(selector))));
    }
    let lo = d.lo;
    let mut offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000);
    let size = if ia32e {
        let hi = read_descriptor(c, selector, true, Exception::gp)?.hi;
        // The upper half's type field must be 0 (SDM Vol. 3A figure 5-9).
        if (hi >> 40) & 0x1f != 0 {
            return Err(c.exception(Exception::gp(error_code(selector))));
        }
        offset |= (hi & 0xffff_ffff) << 32;
        8
    } else if t == system::CALL_GATE {
        4
    } else {
        offset &= 0xffff;
        2
    };
    Ok(Gate { selector: (lo >> 16) as u16, offset, params: ((lo >> 32) & 0x1f) as u8, size })
}

/// The code segment a gate leads to, after its checks: not null (#GP(0)),
/// a code segment with DPL <= CPL (#GP(target)), present (#NP(target));
/// in IA-32e mode a 64-bit one.
fn gate_target<C: Cpu>(c: &mut C, g: &Gate) -> Result<Descriptor, C::Stop> {
    if is_null(g.selector) {
        return Err(c.exception(Exception::gp(0)));
    }
    let d = read_descriptor(c, g.selector, false, Exception::gp)?;
    let ia32e = c.mode().ia32e();
    let long_code = d.lo & (1 << 53) != 0 && d.lo & (1 << 54) == 0;
    if !d.is_code() || d.dpl() > c.cpl() || (ia32e && !long_code) {
        return Err(c.exception(Exception::gp(error_code(g.selector))));
    }
    if !d.present() {
        return Err(c.exception(Exception::np(error_code(g.selector))));
    }
    Ok(d)
}

/// The direct checks of a far JMP or CALL to a code segment: conforming
/// with DPL <= CPL, or non-conforming with RPL <= CPL and DPL = CPL
/// (#GP(selector)); present (#NP(selector)).
fn check_direct<C: Cpu>(c: &mut C, d: &Descriptor, selector: u16) -> Result<(), C::Stop> {
    let cpl = c.cpl();
    let ok = if d.conforming() { d.dpl() <= cpl } else { rpl(selector) <= cpl && d.dpl() == cpl };
    if !ok || !code_width_ok(d, c.mode().ia32e()) {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    if !d.present() {
        return Err(c.exception(Exception::np(error_code(selector))));
    }
    Ok(())
}

/// JMP ptr16:16/32, JMP m16:16/32/64.
#[inline(never)]
pub fn jmp_far<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (selector, target) = far_pointer(c, op)?;
    let target = target & mask(op.size);
    if !c.mode().protected() {
        let cs = real_mode_cs(c, selector)?;
        return go(c, cs, target);
    }
    if is_null(selector) {
        return Err(c.exception(Exception::gp(0)));
    }
    let d = read_descriptor(c, selector, false, Exception::gp)?;
    let ia32e = c.mode().ia32e();
    let cpl = c.cpl();
    let (d, selector, target) = if d.is_code() {
        check_direct(c, &d, selector)?;
        (d, selector, target)
    } else if d.code_or_data() {
        return Err(c.exception(Exception::gp(error_code(selector))));
    } else {
        let g = call_gate(c, &d, selector)?;
        let t = gate_target(c, &g)?;
        // JMP through a gate never changes privilege.
        if !t.conforming() && t.dpl() != cpl {
            return Err(c.exception(Exception::gp(error_code(g.selector))));
        }
        (t, g.selector, g.offset)
    };
    let cs = code_segment(&d, selector, cpl, ia32e);
    if !target_ok(&cs, target, ia32e) {
        return Err(c.exception(Exception::gp(0)));
    }
    set_accessed(c, &d)?;
    go(c, cs, target)
}

/// CALL ptr16:16/32, CALL m16:16/32/64: the return CS:IP pushed at the
/// operand size, then the transfer; through a call gate to a more
/// privileged segment, the stack switch.
#[inline(never)]
pub fn call_far<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (selector, target) = far_pointer(c, op)?;
    let target = target & mask(op.size);
    let ret = c.rip().wrapping_add(u64::from(op.len));
    let old_cs = c.segment(Seg::Cs)?.selector;
    if !c.mode().protected() {
        let mut f = Frame::current(c)?;
        f.push(c, u64::from(old_cs), op.size)?;
        f.push(c, ret & mask(op.size), op.size)?;
        let cs = real_mode_cs(c, selector)?;
        f.commit(c);
        return go(c, cs, target);
    }
    if is_null(selector) {
        return Err(c.exception(Exception::gp(0)));
    }
    let d = read_descriptor(c, selector, false, Exception::gp)?;
    let ia32e = c.mode().ia32e();
    let cpl = c.cpl();
    if d.is_code() {
        check_direct(c, &d, selector)?;
        let cs = code_segment(&d, selector, cpl, ia32e);
        if !target_ok(&cs, target, ia32e) {
            return Err(c.exception(Exception::gp(0)));
        }
        let mut f = Frame::current(c)?;
        f.push(c, u64::from(old_cs), op.size)?;
        f.push(c, ret & mask(op.size), op.size)?;
        set_accessed(c, &d)?;
        f.commit(c);
        return go(c, cs, target);
    }
    if d.code_or_data() {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    let g = call_gate(c, &d, selector)?;
    let t = gate_target(c, &g)?;
    let new_cpl = if t.conforming() { cpl } else { t.dpl() };
    let cs = code_segment(&t, g.selector, new_cpl, ia32e);
    if !target_ok(&cs, g.offset, ia32e) {
        return Err(c.exception(Exception::gp(0)));
    }
    if new_cpl < cpl {
        return call_gate_inner(c, &g, cs, new_cpl, old_cs, ret);
    }
    let mut f = Frame::current(c)?;
    f.push(c, u64::from(old_cs), g.size)?;
    f.push(c, ret & mask(g.size), g.size)?;
    set_accessed(c, &t)?;
    f.commit(c);
    go(c, cs, g.offset)
}

/// A call through gate `g` to the more privileged `cs`: the new stack from
/// the TSS, the caller's SS:SP, the gate's parameters (legacy modes) and
/// the return CS:IP pushed on it (SDM Vol. 3A 5.8.5, 5.8.6).
fn call_gate_inner<C: Cpu>(
    c: &mut C,
    g: &Gate,
    cs: Segment,
    new_cpl: u8,
    old_cs: u16,
    ret: u64,
) -> Result<(), C::Stop> {
    let ia32e = c.mode().ia32e();
    let (ss, sp) = tss_stack(c, new_cpl, ia32e)?;
    let mut old = Frame::current(c)?;
    let old_ss = c.segment(Seg::Ss)?.selector;
    let old_sp = old.sp;
    let mut f = Frame::new_stack(ss, sp, new_cpl, ia32e);
    f.push(c, u64::from(old_ss), g.size)?;
    f.push(c, old_sp, g.size)?;
    if !ia32e {
        // Parameters, copied in the order they were pushed.
        let count = u64::from(g.params);
        let mut params = Vec::with_capacity(usize::from(g.params));
        for _ in 0..count {
            params.push(old.pop(c, g.size)?);
        }
        for v in params.into_iter().rev() {
            f.push(c, v, g.size)?;
        }
    }
    f.push(c, u64::from(old_cs), g.size)?;
    f.push(c, ret & mask(g.size), g.size)?;
    c.set_segment(Seg::Ss, ss)?;
    f.commit(c);
    go(c, cs, g.offset)
}

/// The stack for privilege `cpl` from the TSS: SS:ESP (16- or 32-bit TSS)
/// after the SS checks, which fault #TS (#SS when not present); in IA-32e
/// mode RSP with a null SS (SDM Vol. 3A 5.8.5, 7.7).
pub fn tss_stack<C: Cpu>(c: &mut C, cpl: u8, ia32e: bool) -> Result<(Segment, u64), C::Stop> {
    let tr = c.system_segment(SystemSegment::Tr)?;
    let n = u64::from(cpl);
    if ia32e {
        let at = 4 + n * 8;
        if at + 7 > u64::from(tr.limit) {
            return Err(c.exception(Exception::ts(error_code(tr.selector))));
        }
        let rsp = c.read_system(tr.base.wrapping_add(at), 8)?;
        return Ok((crate::segment::null_segment(u16::from(cpl), cpl), rsp));
    }
    let tss32 = tr.type_ & 8 != 0;
    let (sp_at, width) = if tss32 { (4 + n * 8, 4) } else { (2 + n * 4, 2) };
    if sp_at + width + 1 > u64::from(tr.limit) {
        return Err(c.exception(Exception::ts(error_code(tr.selector))));
    }
    let sp = c.read_system(tr.base.wrapping_add(sp_at), width as Size)?;
    let sel = c.read_system(tr.base.wrapping_add(sp_at + width), 2)? as u16;
    let ss = stack_segment(c, sel, cpl, Exception::ts)?;
    Ok((ss, sp))
}

/// The checks of a new SS for privilege `cpl` (from the TSS or popped by
/// a return): not null, RPL = DPL = `cpl`, writable data (`fault` with the
/// selector), present (#SS(selector)).
fn stack_segment<C: Cpu>(c: &mut C, sel: u16, cpl: u8, fault: fn(u32) -> Exception) -> Result<Segment, C::Stop> {
    if is_null(sel) {
        return Err(c.exception(fault(error_code(sel))));
    }
    let d = read_descriptor(c, sel, false, fault)?;
    if rpl(sel) != cpl || d.dpl() != cpl || !d.is_data() || d.type_() & ty::WRITABLE == 0 {
        return Err(c.exception(fault(error_code(sel))));
    }
    if !d.present() {
        return Err(c.exception(Exception::ss(error_code(sel))));
    }
    set_accessed(c, &d)?;
    Ok(d.segment(sel))
}

/// The checks of the CS a far RET or IRET returns to (SDM Vol. 2B "RET"):
/// RPL >= CPL, a code segment, conforming with DPL <= RPL or non-conforming
/// with DPL = RPL (#GP(selector)), present (#NP(selector)).
pub fn return_code_segment<C: Cpu>(c: &mut C, sel: u16) -> Result<Descriptor, C::Stop> {
    if is_null(sel) {
        return Err(c.exception(Exception::gp(0)));
    }
    let d = read_descriptor(c, sel, false, Exception::gp)?;
    let r = rpl(sel);
    let dpl_ok = if d.conforming() { d.dpl() <= r } else { d.dpl() == r };
    if r < c.cpl() || !d.is_code() || !dpl_ok || !code_width_ok(&d, c.mode().ia32e()) {
        return Err(c.exception(Exception::gp(error_code(sel))));
    }
    if !d.present() {
        return Err(c.exception(Exception::np(error_code(sel))));
    }
    Ok(d)
}

/// The SS a return to outer privilege `cpl` pops: null only when going
/// back to 64-bit code below ring 3 (SDM Vol. 2B "IRET", "RET").
pub fn return_stack_segment<C: Cpu>(c: &mut C, sel: u16, cpl: u8, to_64: bool) -> Result<Segment, C::Stop> {
    if is_null(sel) && to_64 && cpl < 3 && rpl(sel) == cpl {
        return Ok(crate::segment::null_segment(sel, cpl));
    }
    if is_null(sel) {
        return Err(c.exception(Exception::gp(0)));
    }
    stack_segment(c, sel, cpl, Exception::gp)
}

/// After a return to an outer privilege level: data-segment registers the
/// new CPL may not use (data or non-conforming code with DPL < CPL) become
/// null (SDM Vol. 2B "RET", "IRET"); their bases stay.
pub fn null_inaccessible_segments<C: Cpu>(c: &mut C, cpl: u8) -> Result<(), C::Stop> {
    for seg in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
        let s = c.segment(seg)?;
        let conforming_code = s.type_ & (ty::CODE | ty::CONFORMING) == ty::CODE | ty::CONFORMING;
        if s.present && !conforming_code && s.dpl < cpl {
            c.set_segment(seg, Segment { selector: 0, present: false, ..s })?;
        }
    }
    Ok(())
}

/// RET far, RET far imm16: pops IP and CS (and, to an outer privilege
/// level, SP and SS), releasing `imm16` bytes of parameters from each
/// stack.
#[inline(never)]
pub fn ret_far<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let Opnd::Imm(extra) = op.a else { return Err(c.unsupported()) };
    let size = op.size;
    let mut f = Frame::current(c)?;
    let target = f.pop(c, size)?;
    let sel = f.pop(c, size)? as u16;
    if !c.mode().protected() {
        f.release(extra);
        let cs = real_mode_cs(c, sel)?;
        f.commit(c);
        return go(c, cs, target);
    }
    let d = return_code_segment(c, sel)?;
    let ia32e = c.mode().ia32e();
    let cpl = c.cpl();
    let r = rpl(sel);
    let cs = code_segment(&d, sel, r, ia32e);
    if !target_ok(&cs, target, ia32e) {
        return Err(c.exception(Exception::gp(0)));
    }
    f.release(extra);
    if r == cpl {
        f.commit(c);
        return go(c, cs, target);
    }
    let sp = f.pop(c, size)?;
    let ss_sel = f.pop(c, size)? as u16;
    let to_64 = ia32e && cs.l;
    let ss = return_stack_segment(c, ss_sel, r, to_64)?;
    let mut outer = Frame::new_stack(ss, sp, r, to_64);
    outer.release(extra);
    go(c, cs, target)?;
    c.set_segment(Seg::Ss, ss)?;
    outer.commit(c);
    null_inaccessible_segments(c, r)
}

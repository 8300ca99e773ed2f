//! Segmentation (SDM Vol. 3A ch. 3 and 5.1-5.8; Vol. 2 "MOV" (segment
//! registers), "PUSH", "POP", "LDS/LES/LFS/LGS/LSS", "LAR", "LSL",
//! "VERR/VERW", "ARPL"): selectors and descriptors, the checks of a
//! segment-register load in each mode, and the checks of an access through
//! a segment outside 64-bit mode. Far transfers are in [`crate::far`],
//! gates of events in [`crate::interrupt`].

use crate::cpu::{Cpu, Exception, Mode, SystemSegment};
use crate::exec::{get, memory, next, offset, put, set_reg};
use crate::op::{Op, Seg};
use crate::stack::pop_value;
use crate::{mask, Size};
use exitlab_arch::bits::rflags::ZF;
use exitlab_arch::Segment;

/// Type-field bits of a code or data descriptor (SDM Vol. 3A table 3-1).
pub mod ty {
    /// Set by the processor on a load.
    pub const ACCESSED: u8 = 1;
    /// Data: writable. Code: readable.
    pub const WRITABLE: u8 = 2;
    /// Code: readable.
    pub const READABLE: u8 = 2;
    /// Data: expand-down.
    pub const EXPAND_DOWN: u8 = 4;
    /// Code: conforming.
    pub const CONFORMING: u8 = 4;
    /// A code segment.
    pub const CODE: u8 = 8;
}

/// System-descriptor types (SDM Vol. 3A table 3-2; in IA-32e mode the
/// 32-bit types name the 64-bit forms).
pub mod system {
    pub const TSS16_AVAILABLE: u8 = 1;
    pub const LDT: u8 = 2;
    pub const TSS16_BUSY: u8 = 3;
    pub const CALL_GATE16: u8 = 4;
    pub const TASK_GATE: u8 = 5;
    pub const INTERRUPT_GATE16: u8 = 6;
    pub const TRAP_GATE16: u8 = 7;
    pub const TSS_AVAILABLE: u8 = 9;
    pub const TSS_BUSY: u8 = 0xb;
    pub const CALL_GATE: u8 = 0xc;
    pub const INTERRUPT_GATE: u8 = 0xe;
    pub const TRAP_GATE: u8 = 0xf;
}

/// A selector's requested privilege level.
pub fn rpl(selector: u16) -> u8 {
    (selector & 3) as u8
}

/// A selector's error code (index and TI; SDM Vol. 3A 6.13).
pub fn error_code(selector: u16) -> u32 {
    u32::from(selector & !3)
}

/// Whether a selector is null (index 0 of the GDT).
pub fn is_null(selector: u16) -> bool {
    selector & !3 == 0
}

/// The segment a code, data or system descriptor describes, loaded with
/// `selector`; `high` is the upper half of a 16-byte system descriptor
/// (IA-32e mode), which holds base bits 63:32.
pub fn from_descriptor(selector: u16, lo: u64, high: u64) -> Segment {
    let raw_limit = (lo & 0xffff) as u32 | ((lo >> 32) as u32 & 0xf_0000);
    let g = lo & (1 << 55) != 0;
    let s = lo & (1 << 44) != 0;
    let base = ((lo >> 16) & 0xff_ffff) | ((lo >> 32) & 0xff00_0000) | if s { 0 } else { (high & 0xffff_ffff) << 32 };
    Segment {
        selector,
        base,
        limit: if g { raw_limit << 12 | 0xfff } else { raw_limit },
        type_: ((lo >> 40) & 0xf) as u8,
        s,
        dpl: ((lo >> 45) & 3) as u8,
        present: lo & (1 << 47) != 0,
        avl: lo & (1 << 52) != 0,
        l: lo & (1 << 53) != 0,
        db: lo & (1 << 54) != 0,
        g,
    }
}

/// The register a null selector leaves: unusable (`present` clear), with
/// DPL `dpl` (SS keeps CPL in it) and, as on Intel processors, base 0.
pub fn null_segment(selector: u16, dpl: u8) -> Segment {
    Segment { selector, dpl, present: false, ..Segment::default() }
}

/// A real-mode or virtual-8086 load: selector and base (selector x 16);
/// the limit and attributes stay (SDM Vol. 3A 20.1.1), which is how
/// "unreal mode" keeps a 4 GiB limit.
pub fn real_mode_segment(old: Segment, selector: u16) -> Segment {
    Segment { selector, base: u64::from(selector) << 4, present: true, s: true, ..old }
}

/// A descriptor as read from its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes 7:0.
    pub lo: u64,
    /// Bytes 15:8 (read for 16-byte system descriptors only).
    pub hi: u64,
    /// The linear address of byte 0.
    pub at: u64,
}

impl Descriptor {
    pub fn type_(&self) -> u8 {
        ((self.lo >> 40) & 0xf) as u8
    }

    /// S: a code or data segment (not a system descriptor).
    pub fn code_or_data(&self) -> bool {
        self.lo & (1 << 44) != 0
    }

    pub fn dpl(&self) -> u8 {
        ((self.lo >> 45) & 3) as u8
    }

    pub fn present(&self) -> bool {
        self.lo & (1 << 47) != 0
    }

    pub fn is_code(&self) -> bool {
        self.code_or_data() && self.type_() & ty::CODE != 0
    }

    pub fn is_data(&self) -> bool {
        self.code_or_data() && self.type_() & ty::CODE == 0
    }

    pub fn conforming(&self) -> bool {
        self.is_code() && self.type_() & ty::CONFORMING != 0
    }

    /// The segment it describes, loaded with `selector`.
    pub fn segment(&self, selector: u16) -> Segment {
        from_descriptor(selector, self.lo, self.hi)
    }
}

/// Reads the descriptor `selector` names, from the GDT or (TI set) the
/// LDT; 16 bytes when `wide`. A selector past its table's limit, or into
/// an unusable LDT, raises `fault` with the selector's error code.
pub fn read_descriptor<C: Cpu>(
    c: &mut C,
    selector: u16,
    wide: bool,
    fault: impl Fn(u32) -> Exception,
) -> Result<Descriptor, C::Stop> {
    let (base, limit) = if selector & 4 != 0 {
        let ldt = c.system_segment(SystemSegment::Ldtr)?;
        if !ldt.present {
            return Err(c.exception(fault(error_code(selector))));
        }
        (ldt.base, u64::from(ldt.limit))
    } else {
        let gdt = c.descriptor_table(crate::cpu::DescriptorTableKind::Gdt)?;
        (gdt.base, u64::from(gdt.limit))
    };
    let index = u64::from(selector & !7);
    let last = index + if wide { 15 } else { 7 };
    if last > limit {
        return Err(c.exception(fault(error_code(selector))));
    }
    let at = base.wrapping_add(index);
    let lo = c.read_system(at, 8)?;
    let hi = if wide { c.read_system(at.wrapping_add(8), 8)? } else { 0 };
    Ok(Descriptor { lo, hi, at })
}

/// Sets the accessed bit of a code or data descriptor, as a load does.
pub fn set_accessed<C: Cpu>(c: &mut C, d: &Descriptor) -> Result<(), C::Stop> {
    if d.code_or_data() && d.type_() & ty::ACCESSED == 0 {
        let byte = (d.lo >> 40) as u8 | ty::ACCESSED;
        c.write_linear(d.at.wrapping_add(5), 1, u64::from(byte), false)?;
    }
    Ok(())
}

/// The segment a load of `selector` into data-segment register or SS
/// `seg` gives, after the mode's checks (SDM Vol. 2B "MOV" operation,
/// Vol. 3A 5.5-5.7); the caller installs it. Faults as the SDM lists them:
/// #GP(selector) for a wrong type or privilege, #NP (#SS for SS) for an
/// absent segment, #GP(0) for a null SS where one is not allowed.
pub fn load_data_segment<C: Cpu>(c: &mut C, seg: Seg, selector: u16) -> Result<Segment, C::Stop> {
    let mode = c.mode();
    if !mode.protected() {
        let old = c.segment(seg)?;
        return Ok(real_mode_segment(old, selector));
    }
    let cpl = c.cpl();
    let code = error_code(selector);
    if is_null(selector) {
        // SS may be null only in 64-bit mode, below ring 3, with RPL = CPL.
        if seg == Seg::Ss && !(mode == Mode::Long && cpl < 3 && rpl(selector) == cpl) {
            return Err(c.exception(Exception::gp(0)));
        }
        return Ok(null_segment(selector, if seg == Seg::Ss { cpl } else { 0 }));
    }
    let d = read_descriptor(c, selector, false, Exception::gp)?;
    let (r, dpl) = (rpl(selector), d.dpl());
    if seg == Seg::Ss {
        if r != cpl || !d.is_data() || d.type_() & ty::WRITABLE == 0 || dpl != cpl {
            return Err(c.exception(Exception::gp(code)));
        }
        if !d.present() {
            return Err(c.exception(Exception::ss(code)));
        }
    } else {
        let readable = d.is_data() || (d.is_code() && d.type_() & ty::READABLE != 0);
        if !readable || (!d.conforming() && (r > dpl || cpl > dpl)) {
            return Err(c.exception(Exception::gp(code)));
        }
        if !d.present() {
            return Err(c.exception(Exception::np(code)));
        }
    }
    set_accessed(c, &d)?;
    Ok(d.segment(selector))
}

/// Where an access of `size` bytes at `offset` through segment `s` lands
/// (outside 64-bit mode), or the fault it raises (SDM Vol. 3A 5.3, 5.4):
/// an unusable segment, a write to a code or read-only segment, a read of
/// an execute-only one, or an offset outside the limit (expand-down
/// segments hold the offsets above it) is #GP(0), or #SS(0) through SS.
/// Linear addresses wrap at 4 GiB.
pub fn check_access(s: &Segment, seg: Seg, offset: u64, size: Size, write: bool) -> Result<u64, Exception> {
    let fault = if seg == Seg::Ss { Exception::ss(0) } else { Exception::gp(0) };
    let code = s.type_ & ty::CODE != 0;
    let bad_type = if write { code || s.type_ & ty::WRITABLE == 0 } else { code && s.type_ & ty::READABLE == 0 };
    if !s.present || bad_type {
        return Err(fault);
    }
    let last = offset.wrapping_add(u64::from(size) - 1);
    let limit = u64::from(s.limit);
    let inside = if !code && s.type_ & ty::EXPAND_DOWN != 0 {
        let top = if s.db { 0xffff_ffff } else { 0xffff };
        offset > limit && last <= top && last >= offset
    } else {
        last <= limit && last >= offset
    };
    if !inside {
        return Err(fault);
    }
    Ok(s.base.wrapping_add(offset) & 0xffff_ffff)
}

/// MOV Sreg, r/m16. CS cannot be loaded this way (#UD); loading SS holds
/// interrupts off for one instruction.
#[inline(never)]
pub fn mov_to_seg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let seg = Seg::from_number(op.cc);
    if seg == Seg::Cs {
        return Err(c.exception(Exception::ud()));
    }
    let selector = get(c, &op.b, 2)? as u16;
    let s = load_data_segment(c, seg, selector)?;
    c.set_segment(seg, s)?;
    if seg == Seg::Ss {
        c.ss_load_shadow();
    }
    next(c, op)
}

/// MOV r/m, Sreg: a register destination gets the selector zero-extended
/// to the operand size, memory gets 16 bits.
#[inline(never)]
pub fn mov_from_seg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let selector = c.segment(Seg::from_number(op.cc))?.selector;
    put(c, &op.a, op.size, u64::from(selector))?;
    next(c, op)
}

/// PUSH Sreg: the stack pointer moves by the operand size and the
/// selector is written with a 16-bit move, leaving the rest of the slot as
/// it was, as "all recent Core and Atom processors" do (SDM Vol. 2B
/// "PUSH"; KVM's emulator agrees).
#[inline(never)]
pub fn push_seg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let selector = c.segment(Seg::from_number(op.cc))?.selector;
    let sp = c.gpr(crate::reg::RSP).wrapping_sub(u64::from(op.size)) & mask(c.stack_address_size());
    c.write(Seg::Ss, sp, 2, u64::from(selector))?;
    crate::stack::set_stack_pointer(c, sp);
    next(c, op)
}

/// POP Sreg: the load's checks before the stack pointer moves.
#[inline(never)]
pub fn pop_seg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let seg = Seg::from_number(op.cc);
    let old = c.gpr(crate::reg::RSP);
    let selector = pop_value(c, op.size)? as u16;
    let s = match load_data_segment(c, seg, selector) {
        Ok(s) => s,
        Err(e) => {
            c.set_gpr(crate::reg::RSP, old);
            return Err(e);
        }
    };
    c.set_segment(seg, s)?;
    if seg == Seg::Ss {
        c.ss_load_shadow();
    }
    next(c, op)
}

/// LDS, LES, LFS, LGS, LSS: offset then selector from memory; the segment
/// is checked before either register changes.
#[inline(never)]
pub fn load_far<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.b)?;
    let at = offset(c, &m);
    let off = c.read(m.seg, at, op.size)?;
    let selector = c.read(m.seg, at.wrapping_add(u64::from(op.size)) & mask(m.asize), 2)? as u16;
    let seg = Seg::from_number(op.cc);
    let s = load_data_segment(c, seg, selector)?;
    c.set_segment(seg, s)?;
    put(c, &op.a, op.size, off)?;
    next(c, op)
}

/// What LAR, LSL, VERR and VERW may see of a selector: its descriptor, if
/// it is visible at the current privilege (SDM Vol. 2A "LAR": conforming
/// code always, otherwise DPL >= CPL and DPL >= RPL) and of a type the
/// instruction accepts.
fn visible<C: Cpu>(c: &mut C, selector: u16, system_ok: fn(u8) -> bool) -> Result<Option<Descriptor>, C::Stop> {
    if !c.mode().protected() {
        return Err(c.exception(Exception::ud()));
    }
    if is_null(selector) {
        return Ok(None);
    }
    let Ok(d) = read_descriptor_quiet(c, selector)? else { return Ok(None) };
    if !d.code_or_data() && !system_ok(d.type_()) {
        return Ok(None);
    }
    let (cpl, r) = (c.cpl(), rpl(selector));
    if !d.conforming() && (d.dpl() < cpl || d.dpl() < r) {
        return Ok(None);
    }
    Ok(Some(d))
}

/// A descriptor read that reports an out-of-table selector instead of
/// faulting (LAR and friends clear ZF instead).
fn read_descriptor_quiet<C: Cpu>(c: &mut C, selector: u16) -> Result<Result<Descriptor, ()>, C::Stop> {
    let (base, limit) = if selector & 4 != 0 {
        let ldt = c.system_segment(SystemSegment::Ldtr)?;
        if !ldt.present {
            return Ok(Err(()));
        }
        (ldt.base, u64::from(ldt.limit))
    } else {
        let gdt = c.descriptor_table(crate::cpu::DescriptorTableKind::Gdt)?;
        (gdt.base, u64::from(gdt.limit))
    };
    let index = u64::from(selector & !7);
    if index + 7 > limit {
        return Ok(Err(()));
    }
    let at = base.wrapping_add(index);
    Ok(Ok(Descriptor { lo: c.read_system(at, 8)?, hi: 0, at }))
}

fn set_zf<C: Cpu>(c: &mut C, on: bool) {
    let f = c.flags().bits() & !ZF;
    c.set_flags(crate::Flags::known(f | if on { ZF } else { 0 }));
}

/// LAR, LSL: the access rights or the byte limit of a visible descriptor,
/// ZF set; otherwise ZF clear and the destination unchanged.
#[inline(never)]
pub fn lar_lsl<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let selector = get(c, &op.b, 2)? as u16;
    let lar = op.kind == crate::Kind::Lar;
    let ia32e = c.mode().ia32e();
    // LDT and available/busy TSS everywhere; 16-bit TSSs and (for LAR)
    // call and task gates only outside IA-32e mode.
    let accept: fn(u8) -> bool = match (lar, ia32e) {
        (true, false) => |t| matches!(t, 1..=5 | 9 | 0xb | 0xc),
        (true, true) => |t| matches!(t, 2 | 9 | 0xb | 0xc),
        (false, false) => |t| matches!(t, 1..=3 | 9 | 0xb),
        (false, true) => |t| matches!(t, 2 | 9 | 0xb),
    };
    match visible(c, selector, accept)? {
        Some(d) => {
            let v = if lar { d.lo >> 32 & 0x00f0_ff00 } else { u64::from(d.segment(selector).limit) };
            set_reg_operand(c, op, v)?;
            set_zf(c, true);
        }
        None => set_zf(c, false),
    }
    next(c, op)
}

fn set_reg_operand<C: Cpu>(c: &mut C, op: &Op, v: u64) -> Result<(), C::Stop> {
    match op.a {
        crate::Opnd::Reg(n) => {
            set_reg(c, n, op.size, v);
            Ok(())
        }
        _ => Err(c.unsupported()),
    }
}

/// VERR, VERW: ZF when the segment could be read (written) at the current
/// privilege.
#[inline(never)]
pub fn verr_verw<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let selector = get(c, &op.a, 2)? as u16;
    let ok = match visible(c, selector, |_| false)? {
        Some(d) if op.kind == crate::Kind::Verw => d.is_data() && d.type_() & ty::WRITABLE != 0,
        Some(d) => d.is_data() || d.type_() & ty::READABLE != 0,
        None => false,
    };
    set_zf(c, ok);
    next(c, op)
}

/// ARPL r/m16, r16 (legacy modes): raise the destination's RPL to the
/// source's, ZF when it changed.
#[inline(never)]
pub fn arpl<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.mode().protected() {
        return Err(c.exception(Exception::ud()));
    }
    let d = get(c, &op.a, 2)?;
    let s = get(c, &op.b, 2)?;
    if d & 3 < s & 3 {
        put(c, &op.a, 2, (d & !3) | (s & 3))?;
        set_zf(c, true);
    } else {
        set_zf(c, false);
    }
    next(c, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_decode_as_the_sdm_lays_them_out() {
        // The classic flat 32-bit code descriptor and a 16-bit one.
        let s = from_descriptor(8, 0x00cf_9b00_0000_ffff, 0);
        assert_eq!((s.base, s.limit, s.type_, s.dpl, s.db, s.g, s.l), (0, 0xffff_ffff, 0xb, 0, true, true, false));
        let s = from_descriptor(0x10, 0x0000_9300_0000_ffff, 0);
        assert_eq!((s.base, s.limit, s.db, s.present), (0, 0xffff, false, true));
        // A 64-bit TSS: base bits 63:32 from the second quadword.
        let s = from_descriptor(0x28, 0x0000_8b12_3456_0067, 0x0000_0000_ffff_8000);
        assert_eq!((s.base, s.limit, s.type_, s.s), (0xffff_8000_0012_3456, 0x67, 0xb, false));
        // A segment built by exitlab-arch encodes back to itself.
        let flat = Segment::flat_code(8, true);
        assert_eq!(from_descriptor(8, flat.descriptor(), 0), flat);
    }

    #[test]
    fn accesses_respect_limits_types_and_expand_down() {
        let data =
            Segment { limit: 0xfff, type_: 3, s: true, present: true, db: true, base: 0x1000, ..Default::default() };
        assert_eq!(check_access(&data, Seg::Ds, 0xffc, 4, true), Ok(0x1ffc));
        assert_eq!(check_access(&data, Seg::Ds, 0xffd, 4, false), Err(Exception::gp(0)));
        assert_eq!(check_access(&data, Seg::Ss, 0x1000, 1, false), Err(Exception::ss(0)));
        let ro = Segment { type_: 1, ..data };
        assert_eq!(check_access(&ro, Seg::Es, 0, 1, true), Err(Exception::gp(0)));
        // Expand-down, 16-bit: offsets limit+1 ..= 0xffff.
        let down = Segment { type_: 7, db: false, ..data };
        assert_eq!(check_access(&down, Seg::Ss, 0xfff, 2, true), Err(Exception::ss(0)));
        assert_eq!(check_access(&down, Seg::Ss, 0x1000, 2, true), Ok(0x2000));
        assert_eq!(check_access(&down, Seg::Ss, 0xffff, 2, true), Err(Exception::ss(0)));
        // Execute-only code: no reads through DS; executable reads via CS.
        let xo = Segment { type_: 0x9, ..data };
        assert_eq!(check_access(&xo, Seg::Ds, 0, 1, false), Err(Exception::gp(0)));
        // An unusable segment faults; linear addresses wrap at 4 GiB.
        assert_eq!(check_access(&null_segment(0, 0), Seg::Fs, 0, 1, false), Err(Exception::gp(0)));
        let high = Segment { base: 0xffff_f000, limit: 0xffff_ffff, ..data };
        assert_eq!(check_access(&high, Seg::Ds, 0x2000, 4, false), Ok(0x1000));
    }
}

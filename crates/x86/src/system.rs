//! System instructions (SDM Vol. 3A 2.8; Vol. 2 "HLT", "CPUID", "RDMSR",
//! "WRMSR", "RDTSC", "RDTSCP", "MOV (to/from control registers)", "MOV (to/
//! from debug registers)", "LGDT/LIDT", "SGDT", "SIDT", "LTR", "LLDT",
//! "STR", "SLDT", "SMSW", "LMSW", "INVLPG", "CLTS", "CLFLUSH"). The
//! executor checks privilege, mode and CR4.UMIP and moves operands; the
//! machine's part (a VMX exit, the MSR file, the TLB) is the [`Cpu`]'s
//! hook of the same name.

use crate::cpu::{Cpu, DescriptorTableKind, Exception, Feature, SystemSegment};
use crate::exec::{get, memory, next, offset, put, require_cpl0, set_reg};
use crate::op::{Kind, Op};
use crate::reg::{RAX, RBX, RCX, RDX};
use crate::segment::{error_code, is_null, read_descriptor, system};
use exitlab_arch::bits::{cr0, cr4, dr6};
use exitlab_arch::{DescriptorTable, Segment};

/// HLT (CPL 0).
#[inline(never)]
pub fn hlt<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    c.hlt(op)?;
    next(c, op)
}

/// CPUID: leaf EAX, subleaf ECX; the answer in EAX, EBX, ECX, EDX.
#[inline(never)]
pub fn cpuid<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (leaf, subleaf) = (c.gpr(RAX) as u32, c.gpr(RCX) as u32);
    let r = c.cpuid(op, leaf, subleaf)?;
    for (n, v) in [RAX, RBX, RCX, RDX].into_iter().zip(r) {
        c.set_gpr(n, u64::from(v));
    }
    next(c, op)
}

/// RDMSR (CPL 0): EDX:EAX = MSR[ECX].
#[inline(never)]
pub fn rdmsr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let msr = c.gpr(RCX) as u32;
    let v = c.rdmsr(op, msr)?;
    set_reg(c, RAX, 4, v);
    set_reg(c, RDX, 4, v >> 32);
    next(c, op)
}

/// WRMSR (CPL 0): MSR[ECX] = EDX:EAX.
#[inline(never)]
pub fn wrmsr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let msr = c.gpr(RCX) as u32;
    let value = (c.gpr(RDX) << 32) | (c.gpr(RAX) & 0xffff_ffff);
    c.wrmsr(op, msr, value)?;
    next(c, op)
}

/// RDTSC, RDTSCP: EDX:EAX = TSC (and ECX = IA32_TSC_AUX); #GP(0) at CPL > 0
/// with CR4.TSD.
#[inline(never)]
pub fn rdtsc<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.cr(4)? & cr4::TSD != 0 && c.cpl() > 0 {
        return Err(c.exception(Exception::gp(0)));
    }
    let (t, aux) = c.rdtsc(op)?;
    set_reg(c, RAX, 4, t);
    set_reg(c, RDX, 4, t >> 32);
    if op.kind == Kind::Rdtscp {
        set_reg(c, RCX, 4, u64::from(aux));
    }
    next(c, op)
}

/// MOV CRn, r32/r64 (CPL 0; 32-bit registers outside 64-bit mode).
#[inline(never)]
pub fn mov_to_cr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let v = get(c, &op.b, op.size)?;
    c.mov_to_cr(op, op.cc, v)?;
    next(c, op)
}

/// MOV r32/r64, CRn (CPL 0).
#[inline(never)]
pub fn mov_from_cr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let v = c.mov_from_cr(op, op.cc)?;
    put(c, &op.a, op.size, v)?;
    next(c, op)
}

/// MOV to and from DR0-DR7 (CPL 0). DR4 and DR5 alias DR6 and DR7 unless
/// CR4.DE makes them #UD; DR6 and DR7 keep their fixed bits.
#[inline(never)]
pub fn mov_dr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let n = match op.cc {
        4 | 5 if c.cr(4)? & cr4::DE != 0 => return Err(c.exception(Exception::ud())),
        4 | 5 => op.cc + 2,
        n if n < 8 => n,
        _ => return Err(c.exception(Exception::ud())),
    };
    if op.kind == Kind::MovToDr {
        let v = get(c, &op.b, op.size)?;
        let v = match n {
            0..=3 => v,
            6 => v | dr6::INIT & !0xf,
            _ => v | 0x400,
        };
        c.set_dr(n, v)?;
    } else {
        let v = c.dr(n)?;
        put(c, &op.a, op.size, v)?;
    }
    next(c, op)
}

/// #GP(0) for SGDT, SIDT, SLDT, STR and SMSW above ring 0 with CR4.UMIP
/// (SDM Vol. 3A 2.5).
fn umip<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if c.cpl() > 0 && c.cr(4)? & cr4::UMIP != 0 {
        return Err(c.exception(Exception::gp(0)));
    }
    Ok(())
}

/// LGDT, LIDT (CPL 0) and SGDT, SIDT: a 2-byte limit and the base, 8
/// bytes in 64-bit mode and 4 otherwise (a 16-bit operand size keeps 24
/// bits; SGDT then stores the fourth byte as 0). A 64-bit base must be
/// canonical.
#[inline(never)]
pub fn descriptor_table<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    let which =
        if matches!(op.kind, Kind::Lidt | Kind::Sidt) { DescriptorTableKind::Idt } else { DescriptorTableKind::Gdt };
    let base_at = at.wrapping_add(2) & crate::mask(m.asize);
    let (width, base_mask) = match op.size {
        8 => (8, u64::MAX),
        2 => (4, 0xff_ffff),
        _ => (4, 0xffff_ffff),
    };
    if matches!(op.kind, Kind::Lidt | Kind::Lgdt) {
        require_cpl0(c)?;
        let limit = c.read(m.seg, at, 2)? as u16;
        let base = c.read(m.seg, base_at, width)? & base_mask;
        if ((base as i64) << 16 >> 16) as u64 != base {
            return Err(c.exception(Exception::gp(0)));
        }
        c.set_descriptor_table(which, DescriptorTable { base, limit })?;
    } else {
        umip(c)?;
        let t = c.descriptor_table(which)?;
        c.write(m.seg, at, 2, u64::from(t.limit))?;
        c.write(m.seg, base_at, width, t.base & base_mask)?;
    }
    next(c, op)
}

/// The checks LTR and LLDT share: protected mode (#UD), CPL 0, a GDT
/// selector (#GP(selector)); the descriptor (16 bytes in IA-32e mode) of
/// one of `types` (#GP(selector)), present (#NP(selector)).
fn system_descriptor<C: Cpu>(c: &mut C, selector: u16, types: &[u8]) -> Result<crate::segment::Descriptor, C::Stop> {
    let ia32e = c.mode().ia32e();
    if selector & 4 != 0 {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    let d = read_descriptor(c, selector, ia32e, Exception::gp)?;
    if d.code_or_data() || !types.contains(&d.type_()) {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    if !d.present() {
        return Err(c.exception(Exception::np(error_code(selector))));
    }
    let base = d.segment(selector).base;
    if ia32e && ((base as i64) << 16 >> 16) as u64 != base {
        return Err(c.exception(Exception::gp(error_code(selector))));
    }
    Ok(d)
}

/// LTR: an available TSS (a 64-bit one in IA-32e mode) becomes TR and is
/// marked busy in its descriptor; a null selector is #GP(0).
#[inline(never)]
pub fn ltr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.mode().protected() {
        return Err(c.exception(Exception::ud()));
    }
    require_cpl0(c)?;
    let selector = get(c, &op.a, 2)? as u16;
    if is_null(selector) {
        return Err(c.exception(Exception::gp(0)));
    }
    let types: &[u8] =
        if c.mode().ia32e() { &[system::TSS_AVAILABLE] } else { &[system::TSS_AVAILABLE, system::TSS16_AVAILABLE] };
    let d = system_descriptor(c, selector, types)?;
    let busy = (d.lo >> 40) as u8 | 2;
    c.write_linear(d.at.wrapping_add(5), 1, u64::from(busy), false)?;
    let mut tr = d.segment(selector);
    tr.type_ |= 2;
    c.set_system_segment(SystemSegment::Tr, tr)?;
    next(c, op)
}

/// LLDT: an LDT descriptor becomes LDTR; a null selector leaves LDTR
/// unusable.
#[inline(never)]
pub fn lldt<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.mode().protected() {
        return Err(c.exception(Exception::ud()));
    }
    require_cpl0(c)?;
    let selector = get(c, &op.a, 2)? as u16;
    let ldt = if is_null(selector) {
        Segment { selector, present: false, ..Segment::default() }
    } else {
        system_descriptor(c, selector, &[system::LDT])?.segment(selector)
    };
    c.set_system_segment(SystemSegment::Ldtr, ldt)?;
    next(c, op)
}

/// STR, SLDT: the selector (zero-extended into a register).
#[inline(never)]
pub fn store_system_segment<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.mode().protected() {
        return Err(c.exception(Exception::ud()));
    }
    umip(c)?;
    let which = if op.kind == Kind::Str { SystemSegment::Tr } else { SystemSegment::Ldtr };
    let selector = c.system_segment(which)?.selector;
    put(c, &op.a, op.size, u64::from(selector))?;
    next(c, op)
}

/// SMSW: CR0 as the guest sees it, at the register's size or 16 bits to
/// memory.
#[inline(never)]
pub fn smsw<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    umip(c)?;
    let v = c.mov_from_cr(op, 0)?;
    put(c, &op.a, op.size, v)?;
    next(c, op)
}

/// LMSW (CPL 0): CR0's PE, MP, EM and TS from the source; PE can be set
/// but not cleared.
#[inline(never)]
pub fn lmsw<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let src = get(c, &op.a, 2)?;
    let old = c.mov_from_cr(op, 0)?;
    let low = cr0::PE | cr0::MP | cr0::EM | cr0::TS;
    let v = (old & !low) | (src & low) | (old & cr0::PE);
    c.mov_to_cr(op, 0, v)?;
    next(c, op)
}

/// CLFLUSH, CLFLUSHOPT (#UD unless advertised): the line's address is
/// checked and translated; there is no cache to flush.
#[inline(never)]
pub fn clflush<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let feature = if op.cc == 1 { Feature::Clflushopt } else { Feature::Clflush };
    if !c.has(feature) {
        return Err(c.exception(Exception::ud()));
    }
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    c.flush_line(m.seg, at)?;
    next(c, op)
}

/// INVLPG m (CPL 0).
#[inline(never)]
pub fn invlpg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    c.invlpg(op, m.seg, at)?;
    next(c, op)
}

/// CLTS (CPL 0).
#[inline(never)]
pub fn clts<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    c.clts()?;
    next(c, op)
}

//! System instructions (SDM Vol. 3A 2.8; Vol. 2 "HLT", "CPUID", "RDMSR",
//! "WRMSR", "RDTSC", "RDTSCP", "MOV (to/from control registers)", "MOV (to/
//! from debug registers)", "LGDT/LIDT", "SGDT", "SIDT", "INVLPG",
//! "SWAPGS", "CLTS"). The executor checks privilege and moves operands;
//! the machine's part (a VMX exit, the MSR file, the TLB) is the
//! [`Cpu`]'s hook of the same name.

use crate::cpu::{Cpu, DescriptorTableKind, Exception};
use crate::exec::{get, memory, next, offset, put, require_cpl0, set_reg};
use crate::op::{Kind, Op};
use crate::reg::{RAX, RBX, RCX, RDX};
use exitlab_arch::bits::{cr4, dr6};
use exitlab_arch::DescriptorTable;

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

/// MOV CRn, r64 (CPL 0).
#[inline(never)]
pub fn mov_to_cr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let v = get(c, &op.b, 8)?;
    c.mov_to_cr(op, op.cc, v)?;
    next(c, op)
}

/// MOV r64, CRn (CPL 0).
#[inline(never)]
pub fn mov_from_cr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let v = c.mov_from_cr(op, op.cc)?;
    put(c, &op.a, 8, v)?;
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
        let v = get(c, &op.b, 8)?;
        let v = match n {
            0..=3 => v,
            6 => v | dr6::INIT & !0xf,
            _ => v | 0x400,
        };
        c.set_dr(n, v)?;
    } else {
        let v = c.dr(n)?;
        put(c, &op.a, 8, v)?;
    }
    next(c, op)
}

/// LGDT, LIDT (CPL 0) and SGDT, SIDT: a 2-byte limit and an 8-byte base
/// in memory.
#[inline(never)]
pub fn descriptor_table<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    let which =
        if matches!(op.kind, Kind::Lidt | Kind::Sidt) { DescriptorTableKind::Idt } else { DescriptorTableKind::Gdt };
    if matches!(op.kind, Kind::Lidt | Kind::Lgdt) {
        require_cpl0(c)?;
        let limit = c.read(m.seg, at, 2)? as u16;
        let base = c.read(m.seg, at.wrapping_add(2), 8)?;
        c.set_descriptor_table(which, DescriptorTable { base, limit })?;
    } else {
        let t = c.descriptor_table(which)?;
        c.write(m.seg, at, 2, u64::from(t.limit))?;
        c.write(m.seg, at.wrapping_add(2), 8, t.base)?;
    }
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

/// SWAPGS (CPL 0).
#[inline(never)]
pub fn swapgs<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    c.swapgs()?;
    next(c, op)
}

/// CLTS (CPL 0).
#[inline(never)]
pub fn clts<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    c.clts()?;
    next(c, op)
}

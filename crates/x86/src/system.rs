//! System instructions (SDM Vol. 3A 2.8; Vol. 2 "HLT", "CPUID", "RDMSR",
//! "WRMSR", "RDTSC", "RDTSCP", "MOV (to/from control registers)", "MOV (to/
//! from debug registers)", "LGDT/LIDT", "SGDT", "SIDT", "INVLPG",
//! "SWAPGS", "CLTS"). The executor checks privilege and moves operands;
//! the machine's part (a VMX exit, the MSR file, the TLB) is the
//! [`Cpu`]'s hook of the same name.

use crate::cpu::{Cpu, DescriptorTableKind, Exception};
use crate::exec::{get, memory, next, offset, put, require_cpl0, set_reg};
use crate::op::{Kind, Op, Opnd, Seg, ABSENT_X87};
use crate::reg::{RAX, RBX, RCX, RDX};
use exitlab_arch::bits::{cr0, cr4, dr6, dr7};
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
/// CR4.DE makes them #UD; then DR7.GD's #DB; a value with bits 63:32 set
/// is #GP for DR6 and DR7, which keep their fixed bits.
#[inline(never)]
pub fn mov_dr<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let n = match op.cc {
        4 | 5 if c.cr(4)? & cr4::DE != 0 => return Err(c.exception(Exception::ud())),
        4 | 5 => op.cc + 2,
        n if n < 8 => n,
        _ => return Err(c.exception(Exception::ud())),
    };
    c.general_detect()?;
    if op.kind == Kind::MovToDr {
        let v = get(c, &op.b, 8)?;
        if n >= 6 && v >> 32 != 0 {
            return Err(c.exception(Exception::gp(0)));
        }
        let v = match n {
            0..=3 => v,
            // RTM (bit 16) reads 1 too: it is 0 only after a #DB in an RTM
            // region with RTM debugging on, which this model lacks.
            6 => (v & dr6::VOLATILE) | dr6::INIT,
            _ => (v & dr7::VOLATILE) | dr7::FIXED_1,
        };
        c.set_dr(n, v)?;
    } else {
        let v = c.dr(n)?;
        put(c, &op.a, 8, v)?;
    }
    next(c, op)
}

/// MOV Sreg, r/m16: the machine loads the descriptor; a load of SS holds
/// interrupts and debug traps off for one instruction. CS cannot be loaded
/// this way (#UD).
#[inline(never)]
pub fn mov_to_sreg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let seg = sreg(op.cc);
    if seg == Seg::Cs {
        return Err(c.exception(Exception::ud()));
    }
    let selector = get(c, &op.b, 2)? as u16;
    c.load_segment(seg, selector)?;
    if seg == Seg::Ss {
        c.mov_ss_shadow();
    }
    next(c, op)
}

/// MOV r/m, Sreg: the selector, zero-extended into a 32- or 64-bit
/// register, 16 bits into memory.
#[inline(never)]
pub fn mov_from_sreg<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let selector = c.segment_selector(sreg(op.cc))?;
    let size = if matches!(op.a, Opnd::Mem(_)) { 2 } else { op.size.max(2) };
    put(c, &op.a, size, u64::from(selector))?;
    next(c, op)
}

/// The segment register numbered `n` in the SDM's Sreg encoding.
fn sreg(n: u8) -> Seg {
    match n {
        0 => Seg::Es,
        1 => Seg::Cs,
        2 => Seg::Ss,
        3 => Seg::Ds,
        4 => Seg::Fs,
        _ => Seg::Gs,
    }
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

/// VMCALL: in VMX non-root operation a VM exit at any CPL; the hypervisor
/// answers and completes it (SDM Vol. 3C 26.1.2).
#[inline(never)]
pub fn vmcall<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    c.vmcall(op)?;
    next(c, op)
}

/// RDPID: IA32_TSC_AUX, zero-extended into the 64-bit register.
#[inline(never)]
pub fn rdpid<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = c.tsc_aux()?;
    put(c, &op.a, 8, v & 0xffff_ffff)?;
    next(c, op)
}

/// INVPCID r64, m128 (CPL 0): the type in the register, the descriptor
/// (PCID in bits 11:0, bits 63:12 reserved, a linear address in the high
/// quadword) in memory. #GP(0) for a type above 3, reserved bits set, a
/// non-canonical address for type 0, or a nonzero PCID for types 0 and 1
/// while CR4.PCIDE is clear (SDM Vol. 2A "INVPCID").
#[inline(never)]
pub fn invpcid<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_cpl0(c)?;
    let kind = get(c, &op.a, 8)?;
    let m = memory(c, &op.b)?;
    let at = offset(c, &m);
    let lo = c.read(m.seg, at, 8)?;
    let linear = c.read(m.seg, at.wrapping_add(8), 8)?;
    let pcid = (lo & 0xfff) as u16;
    let canonical = ((linear as i64) << 16 >> 16) as u64 == linear;
    let pcide = c.cr(4)? & cr4::PCIDE != 0;
    if kind > 3 || lo >> 12 != 0 || (kind == 0 && !canonical) || (kind <= 1 && pcid != 0 && !pcide) {
        return Err(c.exception(Exception::gp(0)));
    }
    c.invpcid(op, kind, pcid, linear)?;
    next(c, op)
}

/// WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; else nothing (no
/// x87 exception can be pending on this model).
#[inline(never)]
pub fn wait<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.cr(0)? & (cr0::MP | cr0::TS) == cr0::MP | cr0::TS {
        return Err(c.exception(Exception::nm()));
    }
    next(c, op)
}

/// An instruction of an extension the CPU does not advertise: #UD; x87 is
/// #NM instead while CR0.EM or CR0.TS asks the OS to emulate it.
#[inline(never)]
pub fn absent<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if op.cc == ABSENT_X87 && c.cr(0)? & (cr0::EM | cr0::TS) != 0 {
        return Err(c.exception(Exception::nm()));
    }
    Err(c.exception(Exception::ud()))
}

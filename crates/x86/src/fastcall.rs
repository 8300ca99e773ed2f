//! Fast system calls (SDM Vol. 2B "SYSCALL", "SYSRET", "SYSENTER",
//! "SYSEXIT", "SWAPGS", "RDFSBASE/RDGSBASE", "WRFSBASE/WRGSBASE"; Vol. 3A
//! 5.8.7, 5.8.8): flat segments loaded from the MSRs without reading any
//! descriptor. SYSCALL and SYSRET in 64-bit mode, and on an AMD model
//! SYSCALL also from compatibility mode (to CSTAR) and legacy protected
//! mode (to STAR[31:0]), as the AMD APM Vol. 3 "SYSCALL" describes (Intel:
//! #UD outside 64-bit mode); SYSENTER and SYSEXIT in any protected mode.
//! SYSCALL and SYSRET single-step by TF at their end, not their start: a
//! SYSCALL whose FMASK clears TF does not trap in the kernel, a SYSRET
//! whose R11 sets TF traps at once in user mode (kvm-unit-tests
//! x86/syscall.c `test_syscall_tf`, after KVM's emulator fix for it,
//! Linux commit c8401dda2f0a "KVM: x86: fix singlestepping over
//! syscall").

use crate::cpu::{Cpu, Exception, Feature, Mode, Vendor};
use crate::exec::{get, next, put, require_cpl0, rflags, set_rflags};
use crate::op::{Op, Seg};
use crate::reg::{RCX, RDX, RSP};
use exitlab_arch::bits::rflags::{FIXED, IF, RF, TF, VM};
use exitlab_arch::bits::{cr4, efer, msr};
use exitlab_arch::Segment;

/// The flat code segment SYSCALL and friends load: base 0, 4 GiB,
/// execute/read accessed, 64-bit when `long` (else 32-bit), at `dpl`.
fn flat_code(selector: u16, dpl: u8, long: bool) -> Segment {
    Segment { dpl, ..Segment::flat_code(selector, long) }
}

/// The flat stack segment they load: read/write accessed, 32-bit, at
/// `dpl`.
fn flat_stack(selector: u16, dpl: u8) -> Segment {
    Segment { dpl, ..Segment::flat_data(selector) }
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// SYSCALL: RCX = the next RIP, R11 = RFLAGS; CS and SS from
/// STAR[47:32]; RIP = LSTAR; RFLAGS masked by FMASK, RF clear. Intel
/// raises #UD outside 64-bit mode; AMD goes on in IA-32e compatibility
/// mode with RIP = CSTAR, and in legacy protected mode to a 32-bit CS
/// with EIP = STAR[31:0], ECX = the next EIP and VM, IF and RF clear
/// (R11 and FMASK unused).
#[inline(never)]
pub fn syscall<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let e = c.msr(msr::IA32_EFER)?;
    let mode = c.mode();
    let amd = c.vendor() == Vendor::Amd;
    let allowed = mode == Mode::Long || (amd && matches!(mode, Mode::Compatibility | Mode::Protected));
    if !allowed || e & efer::SCE == 0 {
        return Err(c.exception(Exception::ud()));
    }
    let star = c.msr(msr::IA32_STAR)?;
    let sel = (star >> 32) as u16 & !3;
    let next_rip = c.rip().wrapping_add(u64::from(op.len));
    let flags = rflags(c);
    if mode == Mode::Protected {
        c.set_gpr(RCX, next_rip & 0xffff_ffff);
        c.set_segment(Seg::Ss, flat_stack(sel.wrapping_add(8), 0))?;
        c.set_segment(Seg::Cs, flat_code(sel, 0, false))?;
        set_rflags(c, (flags & !(VM | IF | RF)) | FIXED);
        c.set_rip(star & 0xffff_ffff);
        trap_if_tf(c);
        return Ok(());
    }
    let target = c.msr(if mode == Mode::Long { msr::IA32_LSTAR } else { msr::IA32_CSTAR })?;
    let fmask = c.msr(msr::IA32_FMASK)?;
    c.set_gpr(RCX, next_rip);
    c.set_gpr(11, flags & !RF);
    c.set_segment(Seg::Ss, flat_stack(sel.wrapping_add(8), 0))?;
    c.set_segment(Seg::Cs, flat_code(sel, 0, true))?;
    set_rflags(c, (flags & !fmask & !RF) | FIXED);
    c.set_rip(target);
    trap_if_tf(c);
    Ok(())
}

/// The single-step trap SYSCALL and SYSRET take when TF is set at their
/// end.
fn trap_if_tf<C: Cpu>(c: &mut C) {
    if rflags(c) & TF != 0 {
        c.single_step_trap();
    }
}

/// SYSRET (CPL 0, 64-bit mode): RIP = RCX (ECX to compatibility mode),
/// RFLAGS from R11; CS from STAR[63:48] (+16 for a 64-bit return) and SS
/// from STAR[63:48] + 8, both at RPL 3. A non-canonical RCX is #GP(0) in
/// ring 0 on Intel, which checks it before the switch (SDM "SYSRET";
/// CVE-2012-0217); AMD has no such check (APM Vol. 3 "SYSRET"): it
/// returns to ring 3 and the fetch there takes the #GP.
#[inline(never)]
pub fn sysret<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let e = c.msr(msr::IA32_EFER)?;
    if c.mode() != Mode::Long || e & efer::SCE == 0 {
        return Err(c.exception(Exception::ud()));
    }
    require_cpl0(c)?;
    let long = op.size == 8;
    let target = if long { c.gpr(RCX) } else { c.gpr(RCX) & 0xffff_ffff };
    if !canonical(target) && c.vendor() == Vendor::Intel {
        return Err(c.exception(Exception::gp(0)));
    }
    let base = (c.msr(msr::IA32_STAR)? >> 48) as u16;
    let cs = if long { base.wrapping_add(16) } else { base } | 3;
    let flags = (c.gpr(11) & 0x3c_7fd7 & !(RF | VM)) | FIXED;
    c.set_segment(Seg::Cs, flat_code(cs, 3, long))?;
    c.set_segment(Seg::Ss, flat_stack(base.wrapping_add(8) | 3, 3))?;
    set_rflags(c, flags);
    c.set_rip(target);
    trap_if_tf(c);
    Ok(())
}

/// SYSENTER and SYSEXIT are #UD in IA-32e mode (64-bit and compatibility
/// mode) on AMD, which recognizes them only in legacy mode (APM Vol. 3
/// "SYSENTER", "SYSEXIT"; QEMU's translator and KVM's `em_sysenter` check
/// the vendor so).
fn sysenter_recognized<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if c.vendor() == Vendor::Amd && c.mode().ia32e() {
        return Err(c.exception(Exception::ud()));
    }
    Ok(())
}

/// SYSENTER (protected mode, IA32_SYSENTER_CS not null): CS from
/// SYSENTER_CS, SS = CS + 8, RIP and RSP from SYSENTER_EIP and _ESP (32
/// bits outside IA-32e mode); VM, IF and RF clear.
#[inline(never)]
pub fn sysenter<C: Cpu>(c: &mut C, _op: &Op) -> Result<(), C::Stop> {
    sysenter_recognized(c)?;
    let cs = c.msr(msr::IA32_SYSENTER_CS)? as u16 & !3;
    if !c.mode().protected() || crate::segment::is_null(cs) {
        return Err(c.exception(Exception::gp(0)));
    }
    let ia32e = c.mode().ia32e();
    let width = if ia32e { u64::MAX } else { 0xffff_ffff };
    let rip = c.msr(msr::IA32_SYSENTER_EIP)? & width;
    let rsp = c.msr(msr::IA32_SYSENTER_ESP)? & width;
    let flags = rflags(c) & !(VM | IF | RF);
    c.set_segment(Seg::Cs, flat_code(cs, 0, ia32e))?;
    c.set_segment(Seg::Ss, flat_stack(cs.wrapping_add(8), 0))?;
    set_rflags(c, flags);
    c.set_gpr(RSP, rsp);
    c.set_rip(rip);
    Ok(())
}

/// SYSEXIT (CPL 0, protected mode, SYSENTER_CS not null): to ring 3 with
/// CS = SYSENTER_CS + 16 (+32 for REX.W's 64-bit return), SS = that + 8,
/// RIP = RDX and RSP = RCX (EDX and ECX for the 32-bit form).
#[inline(never)]
pub fn sysexit<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    sysenter_recognized(c)?;
    let base = c.msr(msr::IA32_SYSENTER_CS)? as u16;
    if !c.mode().protected() || crate::segment::is_null(base & !3) {
        return Err(c.exception(Exception::gp(0)));
    }
    require_cpl0(c)?;
    let long = op.size == 8;
    let (rip, rsp) = if long { (c.gpr(RDX), c.gpr(RCX)) } else { (c.gpr(RDX) & 0xffff_ffff, c.gpr(RCX) & 0xffff_ffff) };
    if long && (!canonical(rip) || !canonical(rsp)) {
        return Err(c.exception(Exception::gp(0)));
    }
    let cs = base.wrapping_add(if long { 32 } else { 16 }) | 3;
    c.set_segment(Seg::Cs, flat_code(cs, 3, long))?;
    c.set_segment(Seg::Ss, flat_stack(cs.wrapping_add(8), 3))?;
    c.set_gpr(RSP, rsp);
    c.set_rip(rip);
    Ok(())
}

/// SWAPGS (CPL 0, 64-bit mode only: #UD elsewhere).
#[inline(never)]
pub fn swapgs<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.mode() != Mode::Long {
        return Err(c.exception(Exception::ud()));
    }
    require_cpl0(c)?;
    c.swapgs()?;
    next(c, op)
}

/// The checks of RDFSBASE and friends: advertised, 64-bit mode and
/// CR4.FSGSBASE, or #UD.
fn fsgsbase<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if !c.has(Feature::Fsgsbase) || c.mode() != Mode::Long || c.cr(4)? & cr4::FSGSBASE == 0 {
        return Err(c.exception(Exception::ud()));
    }
    Ok(())
}

/// RDFSBASE, RDGSBASE: the base into a 32- or 64-bit register.
#[inline(never)]
pub fn rd_seg_base<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    fsgsbase(c)?;
    let base = c.segment(Seg::from_number(op.cc))?.base;
    put(c, &op.a, op.size, base)?;
    next(c, op)
}

/// WRFSBASE, WRGSBASE: a 64-bit base must be canonical (#GP(0)).
#[inline(never)]
pub fn wr_seg_base<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    fsgsbase(c)?;
    let v = get(c, &op.a, op.size)?;
    if !canonical(v) {
        return Err(c.exception(Exception::gp(0)));
    }
    let seg = Seg::from_number(op.cc);
    let s = c.segment(seg)?;
    c.set_segment(seg, Segment { base: v, ..s })?;
    next(c, op)
}

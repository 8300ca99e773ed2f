//! Saving and restoring the x87 and SSE state, and XCR0 (SDM Vol. 1 10.5
//! and ch. 13; Vol. 2 FXSAVE, FXRSTOR, XSAVE, XSAVEOPT, XSAVEC, XSAVES,
//! XRSTOR, XRSTORS, XGETBV, XSETBV): the executor checks what needs the
//! machine and moves the area; the images are [`crate::fp::xsave`]'s.
//!
//! FXSAVE/FXRSTOR: CR0.EM or CR0.TS raise #NM, a 512-byte area not
//! 16-byte aligned #GP(0). The XSAVE family: CR4.OSXSAVE clear raises #UD,
//! CR0.TS #NM, an area not 64-byte aligned #GP(0), XSAVES and XRSTORS at
//! CPL > 0 #GP(0); the mask is EDX:EAX. XGETBV and XSETBV need
//! CR4.OSXSAVE; XSETBV needs CPL 0. Every refused header, MXCSR image or
//! XCR0 value is #GP(0), before anything changes. Alignment is checked
//! on the offset (segment bases are not added).

use crate::cpu::{Cpu, Exception};
use crate::exec::{memory, next, offset, require_cpl0, set_reg};
use crate::fp::xsave::{self as img, SaveOp, XSAVE_SIZE};
use crate::op::Op;
use crate::reg::{RAX, RCX, RDX};
use crate::wide;
use exitlab_arch::bits::{cr0, cr4};
use exitlab_arch::vector;

/// A state-save instruction; the `64` forms (REX.W) use the 64-bit
/// pointer layout of the legacy region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum StateOp {
    Fxsave,
    Fxsave64,
    Fxrstor,
    Fxrstor64,
    Xsave,
    Xsave64,
    Xsaveopt,
    Xsaveopt64,
    Xsavec,
    Xsavec64,
    Xsaves,
    Xsaves64,
    Xrstor,
    Xrstor64,
    Xrstors,
    Xrstors64,
    Xgetbv,
    Xsetbv,
}

impl StateOp {
    /// The 64-bit (REX.W) layout.
    fn rex_w(self) -> bool {
        use StateOp::*;
        matches!(self, Fxsave64 | Fxrstor64 | Xsave64 | Xsaveopt64 | Xsavec64 | Xsaves64 | Xrstor64 | Xrstors64)
    }

    /// The save flavour of an XSAVE-family store.
    fn save(self) -> Option<SaveOp> {
        use StateOp::*;
        Some(match self {
            Xsave | Xsave64 => SaveOp::Xsave,
            Xsaveopt | Xsaveopt64 => SaveOp::Xsaveopt,
            Xsavec | Xsavec64 => SaveOp::Xsavec,
            Xsaves | Xsaves64 => SaveOp::Xsaves,
            _ => return None,
        })
    }
}

fn fault<C: Cpu>(c: &mut C, e: Exception) -> C::Stop {
    c.exception(e)
}

/// #GP(0) unless `at` is a multiple of `align`.
fn aligned<C: Cpu>(c: &mut C, at: u64, align: u64) -> Result<(), C::Stop> {
    if !at.is_multiple_of(align) {
        return Err(fault(c, Exception::gp(0)));
    }
    Ok(())
}

/// Executes a state-save instruction.
#[inline(never)]
pub fn state<C: Cpu>(c: &mut C, op: &Op, s: StateOp) -> Result<(), C::Stop> {
    use StateOp::*;
    let cr0 = c.cr(0)?;
    if matches!(s, Fxsave | Fxsave64 | Fxrstor | Fxrstor64) {
        if cr0 & (cr0::EM | cr0::TS) != 0 {
            return Err(fault(c, Exception::fault(vector::NM)));
        }
        return fx(c, op, s);
    }
    if c.cr(4)? & cr4::OSXSAVE == 0 {
        return Err(fault(c, Exception::ud()));
    }
    match s {
        Xgetbv => {
            let xcr0 = c.xcr0()?;
            let index = c.gpr(RCX) as u32;
            let v = img::xgetbv(index, xcr0, c.fpu()?).map_err(|_| fault(c, Exception::gp(0)))?;
            set_reg(c, RAX, 4, v);
            set_reg(c, RDX, 4, v >> 32);
            next(c, op)
        }
        Xsetbv => {
            require_cpl0(c)?;
            let value = (c.gpr(RDX) << 32) | (c.gpr(RAX) & 0xffff_ffff);
            let v = img::xsetbv(c.gpr(RCX) as u32, value).map_err(|_| fault(c, Exception::gp(0)))?;
            c.set_xcr0(v)?;
            next(c, op)
        }
        _ => {
            if cr0 & cr0::TS != 0 {
                return Err(fault(c, Exception::fault(vector::NM)));
            }
            if matches!(s, Xsaves | Xsaves64 | Xrstors | Xrstors64) {
                require_cpl0(c)?;
            }
            x(c, op, s)
        }
    }
}

/// FXSAVE/FXRSTOR: a 16-byte aligned 512-byte area; FXSAVE writes bytes
/// 0-415 and leaves the rest.
fn fx<C: Cpu>(c: &mut C, op: &Op, s: StateOp) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    aligned(c, at, 16)?;
    let mut area = [0u8; 512];
    if matches!(s, StateOp::Fxsave | StateOp::Fxsave64) {
        img::fxsave(c.fpu()?, s.rex_w(), &mut area);
        wide::write(c, m.seg, at, &area[..416])?;
    } else {
        wide::read(c, m.seg, at, &mut area)?;
        let mut st = *c.fpu()?;
        img::fxrstor(&mut st, s.rex_w(), &area).map_err(|_| fault(c, Exception::gp(0)))?;
        // FCS and FDS are deprecated (see crate::x87).
        (st.fcs, st.fds) = (0, 0);
        *c.fpu()? = st;
    }
    next(c, op)
}

/// The XSAVE family on a 64-byte aligned area of [`XSAVE_SIZE`] bytes.
/// A save writes back only the 8-byte pieces its image changed (the bytes
/// it does not write keep their contents).
fn x<C: Cpu>(c: &mut C, op: &Op, s: StateOp) -> Result<(), C::Stop> {
    let m = memory(c, &op.a)?;
    let at = offset(c, &m);
    aligned(c, at, 64)?;
    let mask = (c.gpr(RDX) << 32) | (c.gpr(RAX) & 0xffff_ffff);
    let xcr0 = c.xcr0()?;
    let mut area = [0u8; XSAVE_SIZE as usize];
    wide::read(c, m.seg, at, &mut area)?;
    if let Some(save) = s.save() {
        let old = area;
        img::xsave(c.fpu()?, save, s.rex_w(), xcr0, mask, &mut area);
        c.check_write(m.seg, at, area.len())?;
        for (i, (new, was)) in area.chunks(8).zip(old.chunks(8)).enumerate() {
            if new != was {
                let v = u64::from_le_bytes(new.try_into().unwrap_or([0; 8]));
                c.write(m.seg, at.wrapping_add(8 * i as u64), 8, v)?;
            }
        }
    } else {
        let supervisor = matches!(s, StateOp::Xrstors | StateOp::Xrstors64);
        let mut st = *c.fpu()?;
        img::xrstor(&mut st, s.rex_w(), xcr0, 0, mask, supervisor, &area).map_err(|_| fault(c, Exception::gp(0)))?;
        *c.fpu()? = st;
    }
    next(c, op)
}

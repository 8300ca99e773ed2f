//! The stack (SDM Vol. 1 6.2-6.4; Vol. 2 "PUSH", "POP", "PUSHF/PUSHFQ",
//! "POPF/POPFQ", "LEAVE"): RSP-relative accesses through SS.

use crate::cpu::Cpu;
use crate::exec::{get, iopl, next, put, rflags, set_rflags};
use crate::op::{Op, Seg};
use crate::reg::{RBP, RSP};
use crate::Size;
use exitlab_arch::bits::rflags::{AC, DF, ID, IF, IOPL, NT, RF, STATUS, TF, VM};

/// Pushes the low `size` bytes of `v`: RSP moves only once the write is
/// done.
#[inline(always)]
pub fn push_value<C: Cpu>(c: &mut C, v: u64, size: Size) -> Result<(), C::Stop> {
    let rsp = c.gpr(RSP).wrapping_sub(u64::from(size));
    c.write(Seg::Ss, rsp, size, v)?;
    c.set_gpr(RSP, rsp);
    Ok(())
}

/// Pops `size` bytes.
#[inline(always)]
pub fn pop_value<C: Cpu>(c: &mut C, size: Size) -> Result<u64, C::Stop> {
    let rsp = c.gpr(RSP);
    let v = c.read(Seg::Ss, rsp, size)?;
    c.set_gpr(RSP, rsp.wrapping_add(u64::from(size)));
    Ok(v)
}

/// PUSH r/m/imm (8 bytes, or 2 with an operand-size prefix).
#[inline(always)]
pub fn push<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = get(c, &op.a, op.size)?;
    push_value(c, v, op.size)?;
    next(c, op)
}

/// POP r/m. A memory destination's address uses the incremented RSP; if
/// the store faults, RSP is back where it was.
#[inline(always)]
pub fn pop<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let old = c.gpr(RSP);
    let v = pop_value(c, op.size)?;
    if let Err(e) = put(c, &op.a, op.size, v) {
        c.set_gpr(RSP, old);
        return Err(e);
    }
    next(c, op)
}

/// PUSHFQ: RFLAGS with VM and RF clear.
#[inline(never)]
pub fn pushf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = rflags(c) & !(VM | RF);
    push_value(c, v, 8)?;
    next(c, op)
}

/// POPFQ: IOPL changes only at CPL 0 and IF only at CPL <= IOPL; VM, RF
/// and the reserved bits are not loaded.
#[inline(never)]
pub fn popf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = pop_value(c, 8)?;
    let cpl = c.cpl();
    let mut settable = STATUS | TF | DF | NT | AC | ID;
    if cpl == 0 {
        settable |= IOPL;
    }
    if cpl <= iopl(c) {
        settable |= IF;
    }
    let cur = rflags(c);
    set_rflags(c, (cur & !settable) | (v & settable));
    next(c, op)
}

/// LEAVE: RSP = RBP, then RBP = pop.
#[inline(never)]
pub fn leave<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let rbp = c.gpr(RBP);
    let v = c.read(Seg::Ss, rbp, 8)?;
    c.set_gpr(RSP, rbp.wrapping_add(8));
    c.set_gpr(RBP, v);
    next(c, op)
}

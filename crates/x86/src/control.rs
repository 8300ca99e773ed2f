//! Control transfer (SDM Vol. 1 5.1.7, 6.3; Vol. 2 "JMP", "Jcc",
//! "JCXZ/JECXZ/JRCXZ", "LOOP/LOOPcc", "CALL", "RET", "INT n/INTO/INT3/INT1",
//! "UD"): near transfers at the operand size (a 16-bit one wraps IP at 64
//! KiB), their return addresses on the stack at that size; branch targets
//! were resolved at decode time. Far transfers are in [`crate::far`],
//! IRET in [`crate::interrupt`].

use crate::cpu::{Cpu, Exception};
use crate::exec::{get, next, set_reg};
use crate::flags::Cond;
use crate::mask;
use crate::op::{Kind, Op, Opnd};
use crate::reg::RCX;
use crate::stack::{pop_value, push_value, set_stack_pointer, stack_pointer};
use exitlab_arch::vector;

/// Whether a near branch at operand size `size` may go to `target`: a
/// 64-bit target must be canonical, or the branch itself raises #GP(0)
/// with RIP still on it (SDM Vol. 2 "JMP", "Jcc", "CALL", "RET", "LOOP",
/// "JCXZ": 64-bit mode exceptions). Smaller sizes were masked, and only
/// 64-bit mode has 8-byte near branches.
#[inline(always)]
fn reachable(size: u8, target: u64) -> bool {
    size != 8 || ((target as i64) << 16 >> 16) as u64 == target
}

/// RIP = `target` for a near branch, or #GP(0) (see [`reachable`]).
#[inline(always)]
fn branch<C: Cpu>(c: &mut C, size: u8, target: u64) -> Result<(), C::Stop> {
    if !reachable(size, target) {
        return Err(c.exception(Exception::gp(0)));
    }
    c.set_rip(target);
    Ok(())
}

/// CALL rel/r/m: pushes the return address (after the target's check,
/// so a refused target pushes nothing).
#[inline(always)]
pub fn call<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let target = get(c, &op.a, op.size)?;
    if !reachable(op.size, target) {
        return Err(c.exception(Exception::gp(0)));
    }
    let ret = c.rip().wrapping_add(u64::from(op.len)) & mask(op.size);
    push_value(c, ret, op.size)?;
    c.set_rip(target);
    Ok(())
}

/// RET and RET imm16 (the immediate is released from the stack after the
/// pop).
#[inline(always)]
pub fn ret<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let Opnd::Imm(extra) = op.a else { return Err(c.unsupported()) };
    let before = stack_pointer(c);
    let target = pop_value(c, op.size)?;
    if !reachable(op.size, target) {
        // The fault leaves RSP as it was.
        set_stack_pointer(c, before);
        return Err(c.exception(Exception::gp(0)));
    }
    let sp = stack_pointer(c).wrapping_add(extra);
    set_stack_pointer(c, sp);
    c.set_rip(target);
    Ok(())
}

/// JMP rel/r/m.
#[inline(always)]
pub fn jmp<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let target = get(c, &op.a, op.size)?;
    branch(c, op.size, target)
}

/// Jcc rel.
#[inline(always)]
pub fn jcc<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.flags().cond(Cond(op.cc)) {
        let target = get(c, &op.a, op.size)?;
        branch(c, op.size, target)
    } else {
        next(c, op)
    }
}

/// JCXZ, JECXZ, JRCXZ: taken when the count register the address size
/// names (`size2`) is zero; `67 e3` in 64-bit mode tests ECX only, so
/// RCX = 0x1_0000_0000 takes it (silicon, issue 12).
#[inline(never)]
pub fn jrcxz<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.gpr(RCX) & mask(op.size2) == 0 {
        let target = get(c, &op.a, op.size)?;
        branch(c, op.size, target)
    } else {
        next(c, op)
    }
}

/// LOOP, LOOPE, LOOPNE: decrement the count register (CX, ECX or RCX by
/// address size), taken while it is not zero (and ZF says so).
#[inline(never)]
pub fn loop_<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let count = (c.gpr(RCX) & mask(op.size2)).wrapping_sub(1) & mask(op.size2);
    let zf = c.flags().zf();
    let taken = count != 0
        && match op.kind {
            Kind::Loope => zf,
            Kind::Loopne => !zf,
            _ => true,
        };
    if taken {
        // A refused target faults with the count as it was.
        let target = get(c, &op.a, op.size)?;
        if !reachable(op.size, target) {
            return Err(c.exception(Exception::gp(0)));
        }
        set_reg(c, RCX, op.size2, count);
        c.set_rip(target);
        Ok(())
    } else {
        set_reg(c, RCX, op.size2, count);
        next(c, op)
    }
}

/// INTO: #OF as a software exception when OF is set.
#[inline(never)]
pub fn into<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if !c.flags().of() {
        return next(c, op);
    }
    Err(c.software_interrupt(op, vector::OF))
}

/// INT n, INT3 and ICEBP (INT1): the machine delivers the event, pushing
/// RIP past the instruction.
#[inline(never)]
pub fn int<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = match op.kind {
        Kind::Int3 => vector::BP,
        Kind::Int1 => vector::DB,
        _ => get(c, &op.a, 1)? as u8,
    };
    Err(c.software_interrupt(op, v))
}

/// UD0, UD1, UD2 and undecodable bytes: #UD.
#[inline(never)]
pub fn ud<C: Cpu>(c: &mut C, _op: &Op) -> Result<(), C::Stop> {
    Err(c.exception(Exception::ud()))
}

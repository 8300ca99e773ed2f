//! Control transfer (SDM Vol. 1 5.1.7, 6.3; Vol. 2 "JMP", "Jcc",
//! "JRCXZ", "LOOP/LOOPcc", "CALL", "RET", "INT n/INTO/INT3/INT1", "IRET", "UD"): near
//! transfers in 64-bit mode; branch targets were resolved at decode time.

use crate::cpu::{Cpu, Exception};
use crate::exec::{get, next};
use crate::flags::Cond;
use crate::op::{Kind, Op, Opnd};
use crate::reg::{RCX, RSP};
use crate::stack::{pop_value, push_value};
use exitlab_arch::vector;

/// CALL rel/r/m: pushes the return address.
#[inline(always)]
pub fn call<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let target = get(c, &op.a, 8)?;
    let ret = c.rip().wrapping_add(u64::from(op.len));
    push_value(c, ret, 8)?;
    c.set_rip(target);
    Ok(())
}

/// RET and RET imm16 (the immediate is released from the stack after the
/// pop).
#[inline(always)]
pub fn ret<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let Opnd::Imm(extra) = op.a else { return Err(c.unsupported()) };
    let target = pop_value(c, 8)?;
    let rsp = c.gpr(RSP).wrapping_add(extra);
    c.set_gpr(RSP, rsp);
    c.set_rip(target);
    Ok(())
}

/// JMP rel/r/m.
#[inline(always)]
pub fn jmp<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let target = get(c, &op.a, 8)?;
    c.set_rip(target);
    Ok(())
}

/// Jcc rel.
#[inline(always)]
pub fn jcc<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.flags().cond(Cond(op.cc)) {
        let target = get(c, &op.a, 8)?;
        c.set_rip(target);
        Ok(())
    } else {
        next(c, op)
    }
}

/// JRCXZ, JECXZ: taken when the count register is zero.
#[inline(never)]
pub fn jrcxz<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let width = if op.size2 == 4 || op.size == 4 { 0xffff_ffff } else { u64::MAX };
    if c.gpr(RCX) & width == 0 {
        let target = get(c, &op.a, 8)?;
        c.set_rip(target);
        Ok(())
    } else {
        next(c, op)
    }
}

/// LOOP, LOOPE, LOOPNE: decrement RCX, taken while it is not zero (and ZF
/// says so).
#[inline(never)]
pub fn loop_<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let rcx = c.gpr(RCX).wrapping_sub(1);
    c.set_gpr(RCX, rcx);
    let zf = c.flags().zf();
    let taken = rcx != 0
        && match op.kind {
            Kind::Loope => zf,
            Kind::Loopne => !zf,
            _ => true,
        };
    if taken {
        let target = get(c, &op.a, 8)?;
        c.set_rip(target);
        Ok(())
    } else {
        next(c, op)
    }
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

/// IRETQ: the implementation's ([`Cpu::iretq`]).
#[inline(never)]
pub fn iretq<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    c.iretq(op)
}

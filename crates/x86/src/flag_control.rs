//! Flag control (SDM Vol. 1 5.1.11; Vol. 2 "CLC", "STC", "CMC", "CLD",
//! "STD", "CLI", "STI", "LAHF", "SAHF"). PUSHF and POPF are in
//! [`crate::stack`].

use crate::cpu::{Cpu, Exception};
use crate::exec::{iopl, next, put};
use crate::flags::{flag, Flags};
use crate::op::{Kind, Op, Opnd};
use crate::reg::RAX;
use exitlab_arch::bits::rflags::{AF, CF, DF, FIXED, IF, PF, SF, ZF};

/// The status flags LAHF and SAHF move.
const LOW: u64 = SF | ZF | AF | PF | CF;

/// CLI, STI: #GP(0) at CPL > IOPL. STI that sets IF holds interrupts off
/// for one more instruction.
#[inline(never)]
pub fn cli_sti<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    if c.cpl() > iopl(c) {
        return Err(c.exception(Exception::gp(0)));
    }
    let rest = c.rflags_rest();
    if op.kind == Kind::Cli {
        c.set_rflags_rest(rest & !IF);
    } else {
        if rest & IF == 0 {
            c.interrupt_shadow();
        }
        c.set_rflags_rest(rest | IF);
    }
    next(c, op)
}

/// CLD, STD.
#[inline(never)]
pub fn cld_std<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let rest = c.rflags_rest();
    c.set_rflags_rest(if op.kind == Kind::Cld { rest & !DF } else { rest | DF });
    next(c, op)
}

/// CLC, STC, CMC: only CF changes.
#[inline(never)]
pub fn carry<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let f = c.flags();
    let cf = match op.kind {
        Kind::Clc => false,
        Kind::Stc => true,
        _ => !f.cf(),
    };
    c.set_flags(Flags::known((f.bits() & !CF) | flag(cf, CF)));
    next(c, op)
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
#[inline(never)]
pub fn lahf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let f = c.flags().bits() & LOW;
    put(c, &Opnd::RegHi(RAX), 1, f | FIXED)?;
    next(c, op)
}

/// SAHF: SF, ZF, AF, PF and CF from AH.
#[inline(never)]
pub fn sahf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let ah = (c.gpr(RAX) >> 8) & 0xff;
    let f = (c.flags().bits() & !LOW) | (ah & LOW);
    c.set_flags(Flags::known(f));
    next(c, op)
}

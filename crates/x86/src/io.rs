//! Port I/O (SDM Vol. 1 ch. 19; Vol. 2 "IN", "OUT"): the I/O permission
//! check and the two register forms. INS and OUTS are in [`crate::string`].

use crate::cpu::{Cpu, Exception, PortIo};
use crate::exec::{iopl, next, reg, set_reg};
use crate::op::{Op, Opnd};
use crate::reg::{RAX, RDX};
use crate::Size;

/// The I/O permission check for ports `port..port+size` (Vol. 1 19.5):
/// CPL <= IOPL passes; otherwise every bit in the TSS's I/O bitmap for
/// those ports must be clear, or #GP(0).
pub fn permitted<C: Cpu>(c: &mut C, port: u16, size: Size) -> Result<(), C::Stop> {
    if c.cpl() <= iopl(c) {
        return Ok(());
    }
    let tss = c.task_register()?;
    let limit = u64::from(tss.limit);
    let base = c.read_system(tss.base.wrapping_add(0x66), 2)?;
    let first = base + u64::from(port / 8);
    if first + 1 > limit {
        return Err(c.exception(Exception::gp(0)));
    }
    let bits = c.read_system(tss.base.wrapping_add(first), 2)?;
    let want = ((1u64 << size) - 1) << (port % 8);
    if bits & want != 0 {
        return Err(c.exception(Exception::gp(0)));
    }
    Ok(())
}

/// The port of IN or OUT: an immediate, or DX.
fn port<C: Cpu>(c: &C, o: &Opnd) -> (u16, bool) {
    match o {
        Opnd::Imm(p) => (*p as u16, true),
        _ => (c.gpr(RDX) as u16, false),
    }
}

/// IN AL/AX/EAX, imm8 or DX.
#[inline(never)]
pub fn in_<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (port, immediate) = port(c, &op.b);
    permitted(c, port, op.size)?;
    let io = PortIo { port, size: op.size, string: false, rep: false, immediate };
    let v = c.port_in(op, io)?;
    set_reg(c, RAX, op.size, v);
    next(c, op)
}

/// OUT imm8 or DX, AL/AX/EAX.
#[inline(never)]
pub fn out<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (port, immediate) = port(c, &op.b);
    permitted(c, port, op.size)?;
    let io = PortIo { port, size: op.size, string: false, rep: false, immediate };
    let v = reg(c, RAX, op.size);
    c.port_out(op, io, v)?;
    next(c, op)
}

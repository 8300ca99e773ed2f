//! String instructions (SDM Vol. 1 5.1.8, 7.3.9; Vol. 2 "MOVS", "STOS",
//! "LODS", "CMPS", "SCAS", "INS", "OUTS", "REP/REPE/REPNE"): one element
//! per iteration through seg:[RSI] and ES:[RDI], stepping by the element
//! size backwards when DF is set. Each iteration commits before the next
//! starts, so an instruction stopped part-way resumes at the element it
//! stopped on. RSI, RDI and RCX are used at 64 bits whatever the address
//! size (the 0x67 prefix is not honoured yet).

use crate::arith::sub;
use crate::cpu::{Cpu, PortIo};
use crate::exec::{next, reg, set_reg};
use crate::io::permitted;
use crate::op::{Kind, Op, Opnd, Seg, REP_E, REP_NE, REP_NONE};
use crate::reg::{RAX, RCX, RDI, RDX, RSI};
use exitlab_arch::bits::rflags::DF;

/// The segment of an implicit string operand (ES for the destination).
fn seg(o: &Opnd, default: Seg) -> Seg {
    match o {
        Opnd::Mem(m) => m.seg,
        _ => default,
    }
}

/// MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS, with or without REP: up to
/// [`Cpu::rep_chunk`] iterations, then RIP stays and the instruction
/// resumes when it runs again.
#[inline(never)]
pub fn string<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let step = if c.rflags_rest() & DF != 0 { u64::from(size).wrapping_neg() } else { u64::from(size) };
    let rep = op.cc != REP_NONE;
    let (src, dst) = (seg(&op.b, Seg::Ds), seg(&op.a, Seg::Es));
    let chunk = c.rep_chunk();
    let mut done = 0;
    loop {
        if rep && c.gpr(RCX) == 0 {
            break;
        }
        let (rsi, rdi) = (c.gpr(RSI), c.gpr(RDI));
        let stop_on_zf = element(c, op, src, dst, rsi, rdi)?;
        if matches!(op.kind, Kind::Movs | Kind::Lods | Kind::Cmps | Kind::Outs) {
            c.set_gpr(RSI, rsi.wrapping_add(step));
        }
        if matches!(op.kind, Kind::Movs | Kind::Stos | Kind::Cmps | Kind::Scas | Kind::Ins) {
            c.set_gpr(RDI, rdi.wrapping_add(step));
        }
        if !rep {
            c.string_element(op);
            break;
        }
        let rcx = c.gpr(RCX) - 1;
        c.set_gpr(RCX, rcx);
        c.string_element(op);
        done += 1;
        if stop_on_zf {
            break;
        }
        if done == chunk && rcx != 0 {
            return Ok(());
        }
    }
    next(c, op)
}

/// One element at `rsi`/`rdi`. Returns whether a REPE/REPNE comparison
/// ends the repetition.
#[inline(always)]
fn element<C: Cpu>(c: &mut C, op: &Op, src: Seg, dst: Seg, rsi: u64, rdi: u64) -> Result<bool, C::Stop> {
    let size = op.size;
    match op.kind {
        Kind::Movs => {
            let v = c.read(src, rsi, size)?;
            c.write(dst, rdi, size, v)?;
        }
        Kind::Stos => {
            let v = reg(c, RAX, size);
            c.write(dst, rdi, size, v)?;
        }
        Kind::Lods => {
            let v = c.read(src, rsi, size)?;
            set_reg(c, RAX, size, v);
        }
        Kind::Cmps | Kind::Scas => {
            let a = if op.kind == Kind::Cmps { c.read(src, rsi, size)? } else { reg(c, RAX, size) };
            let b = c.read(dst, rdi, size)?;
            let (_, f) = sub(size, a, b);
            c.set_flags(f);
            return Ok((op.cc == REP_E && !f.zf()) || (op.cc == REP_NE && f.zf()));
        }
        Kind::Ins => {
            let io = io(c, op)?;
            let v = c.port_in(op, io)?;
            c.write(dst, rdi, size, v)?;
        }
        _ => {
            let io = io(c, op)?;
            let v = c.read(src, rsi, size)?;
            c.port_out(op, io, v)?;
        }
    }
    Ok(false)
}

/// The port access of INS or OUTS (port DX), after the permission check.
fn io<C: Cpu>(c: &mut C, op: &Op) -> Result<PortIo, C::Stop> {
    let port = c.gpr(RDX) as u16;
    permitted(c, port, op.size)?;
    Ok(PortIo { port, size: op.size, string: true, rep: op.cc != REP_NONE, immediate: false })
}

//! String instructions (SDM Vol. 1 5.1.8, 7.3.9; Vol. 2 "MOVS", "STOS",
//! "LODS", "CMPS", "SCAS", "INS", "OUTS", "REP/REPE/REPNE"): one element
//! per iteration through seg:[RSI] and ES:[RDI], stepping by the element
//! size backwards when DF is set. Each iteration commits before the next
//! starts, so an instruction stopped part-way resumes at the element it
//! stopped on. The address size (the mode's, or the other one with 0x67)
//! picks SI/ESI/RSI, DI/EDI/RDI and the REP count CX/ECX/RCX: `67 f3 a4`
//! in 64-bit mode with RSI = 0x1_0002_0000 and RCX = 0x1_0000_0002
//! copies two bytes from 0x20000 and leaves RSI = 0x20002, RCX = 0
//! (silicon, issue 12).

use crate::arith::sub;
use crate::cpu::{Cpu, PortIo};
use crate::exec::{next, reg, set_reg};
use crate::io::permitted;
use crate::mask;
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

/// The address size of a string instruction: its implicit operands'.
#[inline(always)]
pub fn address_size(op: &Op) -> u8 {
    match (op.a, op.b) {
        (Opnd::Mem(m), _) | (_, Opnd::Mem(m)) => m.asize,
        _ => 8,
    }
}

/// MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS, with or without REP: up to
/// [`Cpu::REP_CHUNK`] iterations, then RIP stays and the instruction
/// resumes when it runs again.
#[inline(never)]
pub fn string<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let size = op.size;
    let step = if c.rflags_rest() & DF != 0 { u64::from(size).wrapping_neg() } else { u64::from(size) };
    let rep = op.cc != REP_NONE;
    let (src, dst) = (seg(&op.b, Seg::Ds), seg(&op.a, Seg::Es));
    let asize = address_size(op);
    let amask = mask(asize);
    let (uses_si, uses_di) = (
        matches!(op.kind, Kind::Movs | Kind::Lods | Kind::Cmps | Kind::Outs),
        matches!(op.kind, Kind::Movs | Kind::Stos | Kind::Cmps | Kind::Scas | Kind::Ins),
    );
    let mut done = 0;
    loop {
        if rep && c.gpr(RCX) & amask == 0 {
            if done == 0 {
                // Even with no iteration the registers the instruction
                // uses are written at the address size: `67 f3 a4` with
                // ECX = 0 zero-extends ECX, ESI and EDI (this project's
                // AMD EPYC host, crates/vmm/tests/differential.rs).
                set_reg(c, RCX, asize, 0);
                if uses_si {
                    let v = c.gpr(RSI) & amask;
                    set_reg(c, RSI, asize, v);
                }
                if uses_di {
                    let v = c.gpr(RDI) & amask;
                    set_reg(c, RDI, asize, v);
                }
            }
            break;
        }
        let (rsi, rdi) = (c.gpr(RSI) & amask, c.gpr(RDI) & amask);
        let stop_on_zf = element(c, op, src, dst, rsi, rdi)?;
        if uses_si {
            set_reg(c, RSI, asize, rsi.wrapping_add(step));
        }
        if uses_di {
            set_reg(c, RDI, asize, rdi.wrapping_add(step));
        }
        if !rep {
            c.string_element(op);
            break;
        }
        let rcx = (c.gpr(RCX) & amask) - 1;
        set_reg(c, RCX, asize, rcx);
        c.string_element(op);
        done += 1;
        if stop_on_zf {
            break;
        }
        if done == C::REP_CHUNK && rcx != 0 {
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

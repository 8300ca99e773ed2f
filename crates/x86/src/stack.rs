//! The stack (SDM Vol. 1 6.2-6.5; Vol. 2 "PUSH", "POP", "PUSHF/PUSHFQ",
//! "POPF/POPFQ", "LEAVE", "ENTER", "PUSHA/PUSHAD", "POPA/POPAD"):
//! accesses through SS at the stack-address size (RSP, ESP or SP by mode
//! and SS.B), each of the instruction's operand size.

use crate::cpu::{Cpu, Exception, Mode};
use crate::exec::{get, iopl, next, put, rflags, set_reg, set_rflags};
use crate::op::{Op, Opnd, Seg};
use crate::reg::{RBP, RSP};
use crate::segment::check_access;
use crate::{mask, Size};
use exitlab_arch::bits::rflags::{AC, DF, ID, IF, IOPL, NT, RF, STATUS, TF, VIF, VIP, VM};
use exitlab_arch::Segment;

/// The stack pointer at the stack-address size.
#[inline(always)]
pub fn stack_pointer<C: Cpu>(c: &C) -> u64 {
    c.gpr(RSP) & mask(c.stack_address_size())
}

/// Sets the stack pointer's low bytes at the stack-address size.
#[inline(always)]
pub fn set_stack_pointer<C: Cpu>(c: &mut C, v: u64) {
    let size = c.stack_address_size();
    set_reg(c, RSP, size, v);
}

/// Pushes the low `size` bytes of `v`: RSP moves only once the write is
/// done.
#[inline(always)]
pub fn push_value<C: Cpu>(c: &mut C, v: u64, size: Size) -> Result<(), C::Stop> {
    let sp = c.gpr(RSP).wrapping_sub(u64::from(size)) & mask(c.stack_address_size());
    c.write(Seg::Ss, sp, size, v)?;
    set_stack_pointer(c, sp);
    Ok(())
}

/// Pops `size` bytes.
#[inline(always)]
pub fn pop_value<C: Cpu>(c: &mut C, size: Size) -> Result<u64, C::Stop> {
    let sp = stack_pointer(c);
    let v = c.read(Seg::Ss, sp, size)?;
    set_stack_pointer(c, sp.wrapping_add(u64::from(size)));
    Ok(v)
}

/// A stack that far transfers and event delivery push to or pop from
/// before they commit anything: the current one, or the one a privilege
/// change switches to (not yet loaded). Accesses go through `ss` with its
/// limit and the privilege of `cpl`; `fault` is what a limit violation
/// raises (#SS(0) on the current stack, #SS(selector) on a new one).
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub ss: Segment,
    pub sp: u64,
    /// The stack-address size (SS.B, or 8 in 64-bit mode).
    pub asize: Size,
    /// 64-bit mode: no limit checks, no 4 GiB wrap.
    pub flat: bool,
    pub cpl: u8,
    pub fault: Exception,
}

impl Frame {
    /// The current stack.
    pub fn current<C: Cpu>(c: &mut C) -> Result<Frame, C::Stop> {
        let ss = c.segment(Seg::Ss)?;
        let asize = c.stack_address_size();
        let flat = c.mode() == Mode::Long;
        Ok(Frame { ss, sp: c.gpr(RSP) & mask(asize), asize, flat, cpl: c.cpl(), fault: Exception::ss(0) })
    }

    /// A stack `ss`:`sp` that a switch to privilege `cpl` loads; `flat` in
    /// 64-bit mode.
    pub fn new_stack(ss: Segment, sp: u64, cpl: u8, flat: bool) -> Frame {
        let asize = if flat {
            8
        } else if ss.db {
            4
        } else {
            2
        };
        let fault = Exception::ss(crate::segment::error_code(ss.selector));
        Frame { ss, sp: sp & mask(asize), asize, flat, cpl, fault }
    }

    fn linear(&self, offset: u64, size: Size, write: bool) -> Result<u64, Exception> {
        if self.flat {
            return Ok(offset);
        }
        check_access(&self.ss, Seg::Ss, offset, size, write).map_err(|_| self.fault)
    }

    pub fn push<C: Cpu>(&mut self, c: &mut C, v: u64, size: Size) -> Result<(), C::Stop> {
        let sp = self.sp.wrapping_sub(u64::from(size)) & mask(self.asize);
        let lin = self.linear(sp, size, true).map_err(|e| c.exception(e))?;
        c.write_linear(lin, size, v, self.cpl == 3)?;
        self.sp = sp;
        Ok(())
    }

    pub fn pop<C: Cpu>(&mut self, c: &mut C, size: Size) -> Result<u64, C::Stop> {
        let lin = self.linear(self.sp, size, false).map_err(|e| c.exception(e))?;
        let v = c.read_linear(lin, size, self.cpl == 3)?;
        self.sp = self.sp.wrapping_add(u64::from(size)) & mask(self.asize);
        Ok(v)
    }

    /// Releases `n` bytes (RET imm16).
    pub fn release(&mut self, n: u64) {
        self.sp = self.sp.wrapping_add(n) & mask(self.asize);
    }

    /// Makes this the stack: RSP's low bytes at the frame's address size
    /// (the caller has loaded SS).
    pub fn commit<C: Cpu>(&self, c: &mut C) {
        set_reg(c, RSP, self.asize, self.sp);
    }
}

/// PUSH r/m/imm, at the operand size (2, 4 or 8 bytes).
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

/// PUSHF, PUSHFD, PUSHFQ: (R/E)FLAGS with VM and RF clear, at the operand
/// size. Virtual-8086 mode is not modelled, so IOPL sensitivity never
/// applies.
#[inline(never)]
pub fn pushf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = rflags(c) & !(VM | RF);
    push_value(c, v & mask(op.size), op.size)?;
    next(c, op)
}

/// POPF, POPFD, POPFQ: IOPL changes only at CPL 0 and IF only at CPL <=
/// IOPL; VM, RF, VIF, VIP and the reserved bits are not loaded; a 16-bit
/// pop changes only FLAGS (SDM Vol. 2B "POPF", table 4-16).
#[inline(never)]
pub fn popf<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let v = pop_value(c, op.size)?;
    let cpl = c.cpl();
    let mut settable = STATUS | TF | DF | NT | AC | ID;
    if cpl == 0 {
        settable |= IOPL;
    }
    if cpl <= iopl(c) {
        settable |= IF;
    }
    settable &= mask(op.size) & !(VIF | VIP);
    let cur = rflags(c);
    set_rflags(c, (cur & !settable) | (v & settable));
    next(c, op)
}

/// LEAVE: the stack pointer = the frame pointer, then the frame pointer
/// is popped (both at their sizes: SS.B for the first, the operand size
/// for the second).
#[inline(never)]
pub fn leave<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let bp = c.gpr(RBP) & mask(c.stack_address_size());
    let v = c.read(Seg::Ss, bp, op.size)?;
    set_stack_pointer(c, bp.wrapping_add(u64::from(op.size)));
    set_reg(c, RBP, op.size, v);
    next(c, op)
}

/// ENTER imm16, imm8: push the frame pointer, copy `level - 1` outer frame
/// pointers and push the new one, make room for the locals (SDM Vol. 2A
/// "ENTER", with the nesting level taken modulo 32).
#[inline(never)]
pub fn enter<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let (Opnd::Imm(locals), Opnd::Imm(level)) = (op.a, op.b) else { return Err(c.unsupported()) };
    let level = level % 32;
    let size = op.size;
    let asize = c.stack_address_size();
    let mut f = Frame::current(c)?;
    let mut bp = c.gpr(RBP) & mask(asize);
    f.push(c, c.gpr(RBP), size)?;
    let frame_temp = f.sp;
    if level > 0 {
        for _ in 1..level {
            bp = bp.wrapping_sub(u64::from(size)) & mask(asize);
            let lin = f.linear(bp, size, false).map_err(|e| c.exception(e))?;
            let v = c.read_linear(lin, size, f.cpl == 3)?;
            f.push(c, v, size)?;
        }
        f.push(c, frame_temp, size)?;
    }
    // The locals' room is checked like a push of its last byte.
    let top = f.sp.wrapping_sub(locals) & mask(asize);
    if locals > 0 {
        f.linear(top, 1, true).map_err(|e| c.exception(e))?;
    }
    f.sp = top;
    f.commit(c);
    set_reg(c, RBP, size, frame_temp);
    next(c, op)
}

/// PUSHA, PUSHAD (legacy modes): AX..DI in encoding order, SP as it was
/// before the first push.
#[inline(never)]
pub fn pusha<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let mut f = Frame::current(c)?;
    let sp = c.gpr(RSP);
    for n in 0..8 {
        let v = if n == RSP { sp } else { c.gpr(n) };
        f.push(c, v & mask(op.size), op.size)?;
    }
    f.commit(c);
    next(c, op)
}

/// POPA, POPAD (legacy modes): DI..AX, the saved SP skipped.
#[inline(never)]
pub fn popa<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let mut f = Frame::current(c)?;
    let mut v = [0u64; 8];
    for n in (0..8).rev() {
        v[n] = f.pop(c, op.size)?;
    }
    for (n, value) in v.into_iter().enumerate() {
        if n as u8 != RSP {
            set_reg(c, n as u8, op.size, value);
        }
    }
    f.commit(c);
    next(c, op)
}

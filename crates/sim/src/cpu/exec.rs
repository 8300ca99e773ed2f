//! Executes one decoded op against the machine. Every memory access can
//! stop the op (a fault, an MMIO or port exit) before anything is
//! committed, so a stopped instruction restarts cleanly.

use super::event::Event;
use super::op::{Kind, Mem, Op, Opnd, REP_E, REP_NE, REP_NONE};
use super::{Awaiting, Machine, Stop};
use exitlab_arch::bits::{cr0, cr4, rflags};
use exitlab_arch::{vector, CrAccessQual, IoQual};
use exitlab_hv::{IoExit, VmExit};
use exitlab_x86::flags::flag;
use exitlab_x86::{alu, mask, muldiv, shift, sign_extend, Cond, Flags};

/// Instruction information of an INS exit: 64-bit address size (2 in bits
/// 9:7), segment ES (0 in bits 17:15).
const STRING_IO_ES: u32 = 2 << 7;
/// Of an OUTS exit: 64-bit addresses, segment DS (3).
const STRING_IO_DS: u32 = 2 << 7 | 3 << 15;

/// String instructions run at most this many iterations per step, then
/// restart, so a long REP stays interruptible as the SDM allows.
const REP_CHUNK: u64 = 4096;

impl Machine<'_> {
    #[inline(always)]
    fn reg(&self, n: u8, size: u8) -> u64 {
        self.cpu.gpr[usize::from(n & 15)] & mask(size)
    }

    /// Writes a register the way x86 does: 32-bit writes zero-extend,
    /// 8- and 16-bit writes merge.
    #[inline(always)]
    fn set_reg(&mut self, n: u8, size: u8, v: u64) {
        let r = &mut self.cpu.gpr[usize::from(n & 15)];
        *r = match size {
            8 => v,
            4 => v & 0xffff_ffff,
            _ => (*r & !mask(size)) | (v & mask(size)),
        };
    }

    /// The linear address of `m`: its offset plus the FS or GS base.
    #[inline(always)]
    fn ea(&self, m: &Mem) -> u64 {
        let a = self.offset(m);
        match m.seg {
            1 => a.wrapping_add(self.cpu.fs_base),
            2 => a.wrapping_add(self.cpu.gs_base),
            _ => a,
        }
    }

    /// base + index * scale + displacement, truncated for a 32-bit address
    /// size: what LEA computes.
    #[inline(always)]
    fn offset(&self, m: &Mem) -> u64 {
        let mut a = m.disp;
        if m.base != Mem::NONE {
            a = a.wrapping_add(self.cpu.gpr[usize::from(m.base)]);
        }
        if m.index != Mem::NONE {
            a = a.wrapping_add(self.cpu.gpr[usize::from(m.index)].wrapping_mul(u64::from(m.scale)));
        }
        if m.a32 {
            a &= 0xffff_ffff;
        }
        a
    }

    #[inline(always)]
    fn get(&mut self, o: &Opnd, size: u8) -> Result<u64, Stop> {
        match o {
            Opnd::Reg(n) => Ok(self.reg(*n, size)),
            Opnd::RegHi(n) => Ok((self.cpu.gpr[usize::from(*n)] >> 8) & 0xff),
            Opnd::Imm(v) => Ok(*v & mask(size)),
            Opnd::Mem(m) => {
                let a = self.ea(m);
                self.load(a, size)
            }
            Opnd::None => Err(Stop::Unsupported),
        }
    }

    #[inline(always)]
    fn put(&mut self, o: &Opnd, size: u8, v: u64) -> Result<(), Stop> {
        match o {
            Opnd::Reg(n) => {
                self.set_reg(*n, size, v);
                Ok(())
            }
            Opnd::RegHi(n) => {
                let r = &mut self.cpu.gpr[usize::from(*n)];
                *r = (*r & !0xff00) | ((v & 0xff) << 8);
                Ok(())
            }
            Opnd::Mem(m) => {
                let a = self.ea(m);
                self.store(a, size, v)
            }
            Opnd::Imm(_) | Opnd::None => Err(Stop::Unsupported),
        }
    }

    fn push(&mut self, v: u64, size: u8) -> Result<(), Stop> {
        let rsp = self.cpu.gpr[4].wrapping_sub(u64::from(size));
        self.store(rsp, size, v)?;
        self.cpu.gpr[4] = rsp;
        Ok(())
    }

    fn pop(&mut self, size: u8) -> Result<u64, Stop> {
        let rsp = self.cpu.gpr[4];
        let v = self.load(rsp, size)?;
        self.cpu.gpr[4] = rsp.wrapping_add(u64::from(size));
        Ok(v)
    }

    /// Stops at an instruction the controls trap, recording its length for
    /// the VMM's `skip_instruction`.
    fn instruction_exit(&mut self, op: &Op, exit: VmExit) -> Stop {
        let stop = self.exit(exit);
        self.cpu.exit_info.instruction_len = op.len;
        stop
    }

    fn require_cpl0(&mut self) -> Result<(), Stop> {
        if self.cpu.cpl() == 0 {
            Ok(())
        } else {
            Err(self.raise(Event::gp(0)))
        }
    }

    fn cf(&self) -> bool {
        self.cpu.flags.cf()
    }

    /// Sets CF only, keeping the other status flags.
    fn set_cf(&mut self, cf: bool) {
        let bits = self.cpu.flags.bits() & !rflags::CF;
        self.cpu.flags = Flags::known(bits | flag(cf, rflags::CF));
    }

    /// The I/O permission check for ports `port..port+size` (SDM Vol. 1
    /// 19.5): CPL <= IOPL passes; otherwise every bit in the TSS bitmap
    /// must be clear.
    fn io_allowed(&mut self, port: u16, size: u8) -> Result<(), Stop> {
        if self.cpu.cpl() <= self.cpu.iopl() {
            return Ok(());
        }
        let tss = self.cpu.tr.base;
        let limit = u64::from(self.cpu.tr.limit);
        let base = self.read(tss.wrapping_add(0x66), 2, false)?;
        let first = base + u64::from(port / 8);
        if first + 1 > limit {
            return Err(self.raise(Event::gp(0)));
        }
        let bits = self.read(tss.wrapping_add(first), 2, false)?;
        let want = ((1u64 << size) - 1) << (port % 8);
        if bits & want != 0 {
            return Err(self.raise(Event::gp(0)));
        }
        Ok(())
    }

    fn port(&self, o: &Opnd) -> u16 {
        match o {
            Opnd::Imm(p) => *p as u16,
            _ => self.cpu.gpr[2] as u16,
        }
    }

    fn io_qual(port: u16, size: u8, is_in: bool, string: bool, rep: bool, immediate: bool) -> IoQual {
        IoQual { size, is_in, string, rep, immediate, port }
    }

    /// Executes `op` at the current RIP and advances RIP past it (or to a
    /// branch target). The common kinds are here; the rest live in
    /// [`Machine::exec_cold`], which keeps this function's frame small.
    #[inline(always)]
    pub fn exec(&mut self, op: &Op) -> Result<(), Stop> {
        use Kind::*;
        let size = op.size;
        let next = self.cpu.rip.wrapping_add(u64::from(op.len));
        match op.kind {
            Mov => {
                let v = self.get(&op.b, size)?;
                self.put(&op.a, size, v)?;
            }
            Movzx => {
                let v = self.get(&op.b, op.size2)?;
                self.put(&op.a, size, v)?;
            }
            Movsx => {
                let v = sign_extend(self.get(&op.b, op.size2)?, op.size2);
                self.put(&op.a, size, v)?;
            }
            Lea => {
                let Opnd::Mem(m) = op.b else { return Err(self.raise(Event::ud())) };
                let a = self.offset(&m);
                self.put(&op.a, size, a)?;
            }
            Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test => {
                let a = self.get(&op.a, size)?;
                let b = self.get(&op.b, size)?;
                let (r, f) = match op.kind {
                    Add => alu::add(size, a, b),
                    Adc => alu::adc(size, a, b, self.cf()),
                    Sub | Cmp => alu::sub(size, a, b),
                    Sbb => alu::sbb(size, a, b, self.cf()),
                    And | Test => (a & b, alu::logic(size, a & b)),
                    Or => (a | b, alu::logic(size, a | b)),
                    _ => (a ^ b, alu::logic(size, a ^ b)),
                };
                if !matches!(op.kind, Cmp | Test) {
                    self.put(&op.a, size, r)?;
                }
                self.cpu.flags = f;
            }
            Inc | Dec | Neg | Not => {
                let a = self.get(&op.a, size)?;
                let (r, f) = match op.kind {
                    Inc => alu::inc(size, a, self.cf()),
                    Dec => alu::dec(size, a, self.cf()),
                    Neg => alu::neg(size, a),
                    _ => (!a & mask(size), self.cpu.flags),
                };
                self.put(&op.a, size, r)?;
                self.cpu.flags = f;
            }
            Shl | Shr | Sar | Rol | Ror | Rcl | Rcr => {
                let a = self.get(&op.a, size)?;
                let c = self.get(&op.b, 1)?;
                let old = self.cpu.flags;
                let (r, f) = match op.kind {
                    Shl => shift::shl(size, a, c, old),
                    Shr => shift::shr(size, a, c, old),
                    Sar => shift::sar(size, a, c, old),
                    Rol => shift::rol(size, a, c, old),
                    Ror => shift::ror(size, a, c, old),
                    Rcl => shift::rcl(size, a, c, old),
                    _ => shift::rcr(size, a, c, old),
                };
                self.put(&op.a, size, r)?;
                self.cpu.flags = f;
            }
            Imul2 | Imul3 => {
                let (x, y) = if op.kind == Imul2 {
                    (self.get(&op.a, size)?, self.get(&op.b, size)?)
                } else {
                    (self.get(&op.b, size)?, self.get(&op.c, size)?)
                };
                let (_, lo, f) = muldiv::imul(size, x, y);
                self.put(&op.a, size, lo)?;
                self.cpu.flags = f;
            }
            Push => {
                let v = self.get(&op.a, size)?;
                self.push(v, size)?;
            }
            Pop => {
                let old = self.cpu.gpr[4];
                let v = self.pop(size)?;
                // A memory destination's address uses the incremented RSP.
                if let Err(e) = self.put(&op.a, size, v) {
                    self.cpu.gpr[4] = old;
                    return Err(e);
                }
            }
            Call => {
                let target = self.get(&op.a, 8)?;
                self.push(next, 8)?;
                self.cpu.rip = target;
                return Ok(());
            }
            Ret => {
                let Opnd::Imm(extra) = op.a else { return Err(Stop::Unsupported) };
                let target = self.pop(8)?;
                self.cpu.gpr[4] = self.cpu.gpr[4].wrapping_add(extra);
                self.cpu.rip = target;
                return Ok(());
            }
            Jmp => {
                self.cpu.rip = self.get(&op.a, 8)?;
                return Ok(());
            }
            Jcc => {
                self.cpu.rip = if self.cpu.flags.cond(Cond(op.cc)) { self.get(&op.a, 8)? } else { next };
                return Ok(());
            }
            Nop | CacheFlush => {}
            Xbegin | Xend | Xabort | Xtest if !self.cpu.rtm => return Err(self.raise(Event::ud())),
            Xbegin => {
                let fallback = self.get(&op.a, 8)?;
                self.xbegin(fallback);
                if self.cpu.tx.is_none() {
                    return Ok(()); // aborted: nested too deep
                }
            }
            Xend => self.xend()?,
            Xabort => {
                if self.cpu.tx.is_some() {
                    let Opnd::Imm(imm) = op.a else { return Err(Stop::Unsupported) };
                    self.abort(super::rtm::status::XABORT | (imm as u32 & 0xff) << 24);
                    return Ok(());
                }
            }
            Xtest => self.xtest(),
            _ => return self.exec_cold(op),
        }
        self.cpu.rip = next;
        Ok(())
    }

    #[inline(never)]
    fn exec_cold(&mut self, op: &Op) -> Result<(), Stop> {
        use Kind::*;
        let size = op.size;
        let next = self.cpu.rip.wrapping_add(u64::from(op.len));
        match op.kind {
            Xchg => {
                let a = self.get(&op.a, size)?;
                let b = self.get(&op.b, size)?;
                self.put(&op.a, size, b)?;
                self.put(&op.b, size, a)?;
            }
            Cmov => {
                let v = self.get(&op.b, size)?;
                if self.cpu.flags.cond(Cond(op.cc)) {
                    self.put(&op.a, size, v)?;
                } else if size == 4 {
                    let keep = self.get(&op.a, 4)?;
                    self.put(&op.a, 4, keep)?;
                }
            }
            Setcc => {
                let v = self.cpu.flags.cond(Cond(op.cc)) as u64;
                self.put(&op.a, 1, v)?;
            }
            Bswap => {
                let v = self.get(&op.a, size)?;
                let r = if size == 8 { v.swap_bytes() } else { u64::from((v as u32).swap_bytes()) };
                self.put(&op.a, size, r)?;
            }
            Shld | Shrd => {
                let a = self.get(&op.a, size)?;
                let b = self.get(&op.b, size)?;
                let c = self.get(&op.c, 1)?;
                let old = self.cpu.flags;
                let (r, f) =
                    if op.kind == Shld { shift::shld(size, a, b, c, old) } else { shift::shrd(size, a, b, c, old) };
                self.put(&op.a, size, r)?;
                self.cpu.flags = f;
            }
            Mul | Imul1 => {
                let src = self.get(&op.a, size)?;
                let acc = self.reg(0, size);
                let (hi, lo, f) =
                    if op.kind == Mul { muldiv::mul(size, acc, src) } else { muldiv::imul(size, acc, src) };
                if size == 1 {
                    self.set_reg(0, 2, hi << 8 | lo);
                } else {
                    self.set_reg(0, size, lo);
                    self.set_reg(2, size, hi);
                }
                self.cpu.flags = f;
            }
            Div | Idiv => {
                let d = self.get(&op.a, size)?;
                let (hi, lo) = if size == 1 {
                    (self.reg(0, 2) >> 8, self.reg(0, 1))
                } else {
                    (self.reg(2, size), self.reg(0, size))
                };
                let res = if op.kind == Div { muldiv::div(size, hi, lo, d) } else { muldiv::idiv(size, hi, lo, d) };
                let (q, r) = res.map_err(|_| self.raise(Event::fault(vector::DE)))?;
                if size == 1 {
                    self.set_reg(0, 2, r << 8 | q);
                } else {
                    self.set_reg(0, size, q);
                    self.set_reg(2, size, r);
                }
            }
            Bt | Bts | Btr | Btc => self.bit_test(op)?,
            Bsf | Bsr | Popcnt | Tzcnt | Lzcnt => {
                let v = self.get(&op.b, size)?;
                let bits = u32::from(size) * 8;
                let old = self.cpu.flags.bits();
                use rflags::{CF, ZF};
                match op.kind {
                    Bsf | Bsr => {
                        if v == 0 {
                            self.cpu.flags = Flags::known((old & !ZF) | ZF);
                        } else {
                            let r = if op.kind == Bsf { v.trailing_zeros() } else { 63 - v.leading_zeros() };
                            self.put(&op.a, size, u64::from(r))?;
                            self.cpu.flags = Flags::known(old & !ZF);
                        }
                    }
                    Popcnt => {
                        self.put(&op.a, size, u64::from(v.count_ones()))?;
                        self.cpu.flags = Flags::known(if v == 0 { ZF } else { 0 });
                    }
                    _ => {
                        let r = if op.kind == Tzcnt {
                            v.trailing_zeros().min(bits)
                        } else {
                            v.leading_zeros() - (64 - bits)
                        };
                        let r = if op.kind == Lzcnt && v == 0 { bits } else { r };
                        self.put(&op.a, size, u64::from(r))?;
                        let f = (old & !(CF | ZF)) | if v == 0 { CF } else { 0 } | if r == 0 { ZF } else { 0 };
                        self.cpu.flags = Flags::known(f);
                    }
                }
            }
            Xadd => {
                let a = self.get(&op.a, size)?;
                let b = self.get(&op.b, size)?;
                let (r, f) = alu::add(size, a, b);
                // The sum goes to the destination last, so `xadd r, r`
                // leaves the sum; a memory destination is written first so
                // a fault there leaves the register untouched.
                if matches!(op.a, Opnd::Mem(_)) {
                    self.put(&op.a, size, r)?;
                    self.put(&op.b, size, a)?;
                } else {
                    self.put(&op.b, size, a)?;
                    self.put(&op.a, size, r)?;
                }
                self.cpu.flags = f;
            }
            Cmpxchg => {
                let dst = self.get(&op.a, size)?;
                let acc = self.reg(0, size);
                let (_, f) = alu::sub(size, acc, dst);
                if acc == dst {
                    let src = self.get(&op.b, size)?;
                    self.put(&op.a, size, src)?;
                } else {
                    // The destination is written back either way.
                    self.put(&op.a, size, dst)?;
                    self.set_reg(0, size, dst);
                }
                self.cpu.flags = f;
            }
            Cbw => {
                let half = size / 2;
                let v = sign_extend(self.reg(0, half), half);
                self.set_reg(0, size, v);
            }
            Cwd => {
                let neg = self.reg(0, size) & exitlab_x86::sign_bit(size) != 0;
                self.set_reg(2, size, if neg { u64::MAX } else { 0 });
            }
            Pushf => {
                let v = self.cpu.rflags() & !(rflags::VM | rflags::RF);
                self.push(v, 8)?;
            }
            Popf => {
                let v = self.pop(8)?;
                self.popf(v);
            }
            Leave => {
                let rbp = self.cpu.gpr[5];
                let v = self.load(rbp, 8)?;
                self.cpu.gpr[4] = rbp.wrapping_add(8);
                self.cpu.gpr[5] = v;
            }
            Jrcxz => {
                let rcx = self.cpu.gpr[1] & if op.size2 == 4 || size == 4 { 0xffff_ffff } else { u64::MAX };
                self.cpu.rip = if rcx == 0 { self.get(&op.a, 8)? } else { next };
                return Ok(());
            }
            Loop | Loope | Loopne => {
                let rcx = self.cpu.gpr[1].wrapping_sub(1);
                self.cpu.gpr[1] = rcx;
                let zf = self.cpu.flags.zf();
                let taken = rcx != 0
                    && match op.kind {
                        Loope => zf,
                        Loopne => !zf,
                        _ => true,
                    };
                self.cpu.rip = if taken { self.get(&op.a, 8)? } else { next };
                return Ok(());
            }
            Hlt => {
                self.require_cpl0()?;
                if self.cpu.controls.hlt_exiting {
                    self.cpu.awaiting = Some((Awaiting::Hlt, op.len));
                    return Err(self.instruction_exit(op, VmExit::Hlt));
                }
                self.cpu.halted = true;
            }
            Cli | Sti => {
                if self.cpu.cpl() > self.cpu.iopl() {
                    return Err(self.raise(Event::gp(0)));
                }
                if op.kind == Cli {
                    self.cpu.rflags_rest &= !rflags::IF;
                } else {
                    if !self.cpu.interrupts_enabled() {
                        self.cpu.sti_shadow = true;
                    }
                    self.cpu.rflags_rest |= rflags::IF;
                }
            }
            Cld => self.cpu.rflags_rest &= !rflags::DF,
            Std => self.cpu.rflags_rest |= rflags::DF,
            Clc => self.set_cf(false),
            Stc => self.set_cf(true),
            Cmc => {
                let cf = self.cf();
                self.set_cf(!cf);
            }
            Lahf => {
                let f = self.cpu.flags.bits() & (rflags::SF | rflags::ZF | rflags::AF | rflags::PF | rflags::CF);
                self.put(&Opnd::RegHi(0), 1, f | rflags::FIXED)?;
            }
            Sahf => {
                let ah = (self.cpu.gpr[0] >> 8) & 0xff;
                let low = rflags::SF | rflags::ZF | rflags::AF | rflags::PF | rflags::CF;
                let f = (self.cpu.flags.bits() & !low) | (ah & low);
                self.cpu.flags = Flags::known(f);
            }
            Int3 | Int => {
                let v = if op.kind == Int3 { vector::BP } else { self.get(&op.a, 1)? as u8 };
                self.cpu.rip = next;
                return Err(self.raise(Event::software(v)));
            }
            Ud => return Err(self.raise(Event::ud())),
            Iretq => return self.iretq(),
            In | Out => {
                let port = self.port(&op.b);
                self.io_allowed(port, size)?;
                let q = Self::io_qual(port, size, op.kind == In, false, false, matches!(op.b, Opnd::Imm(_)));
                if !self.cpu.controls.io_exits(port, size) {
                    // Not trapped: the access goes to the (absent) hardware
                    // port, which reads as all ones.
                    if op.kind == In {
                        self.set_reg(0, size, u64::MAX);
                    }
                } else if op.kind == In {
                    let v = self.replayed_read(|| io(q, 0))?;
                    self.set_reg(0, size, v);
                } else {
                    // OUT completes before the exit, as VMX handlers and KVM
                    // do: RIP is past it when the VMM looks.
                    let v = self.reg(0, size);
                    self.cpu.rip = next;
                    let _ = self.instruction_exit(op, io(q, v));
                    return Err(Stop::ExitAfter);
                }
            }
            Movs | Stos | Lods | Cmps | Scas | Ins | Outs => {
                if !self.string(op)? {
                    return Ok(());
                }
            }
            Cpuid => {
                self.cpu.awaiting = Some((Awaiting::Cpuid, op.len));
                let (leaf, subleaf) = (self.cpu.gpr[0] as u32, self.cpu.gpr[1] as u32);
                return Err(self.instruction_exit(op, VmExit::Cpuid { leaf, subleaf }));
            }
            Rdmsr => {
                self.require_cpl0()?;
                let msr = self.cpu.gpr[1] as u32;
                if self.cpu.controls.msr_exits(msr, false) {
                    self.cpu.awaiting = Some((Awaiting::Rdmsr, op.len));
                    return Err(self.instruction_exit(op, VmExit::MsrRead { msr }));
                }
                let v = self.cpu.read_msr(msr).ok_or_else(|| self.raise(Event::gp(0)))?;
                self.set_reg(0, 4, v);
                self.set_reg(2, 4, v >> 32);
            }
            Wrmsr => {
                self.require_cpl0()?;
                let msr = self.cpu.gpr[1] as u32;
                let value = (self.cpu.gpr[2] << 32) | (self.cpu.gpr[0] & 0xffff_ffff);
                if self.cpu.controls.msr_exits(msr, true) {
                    self.cpu.awaiting = Some((Awaiting::Wrmsr, op.len));
                    return Err(self.instruction_exit(op, VmExit::MsrWrite { msr, value }));
                }
                if !self.cpu.write_msr(msr, value) {
                    return Err(self.raise(Event::gp(0)));
                }
            }
            Rdtsc | Rdtscp => {
                if self.cpu.cr4 & cr4::TSD != 0 && self.cpu.cpl() > 0 {
                    return Err(self.raise(Event::gp(0)));
                }
                if self.cpu.controls.rdtsc_exiting {
                    return Err(self.instruction_exit(op, VmExit::Rdtsc));
                }
                let t = self.cpu.cycles;
                self.set_reg(0, 4, t);
                self.set_reg(2, 4, t >> 32);
                if op.kind == Rdtscp {
                    let aux = self.cpu.tsc_aux;
                    self.set_reg(1, 4, aux);
                }
            }
            MovToCr => {
                self.require_cpl0()?;
                let v = self.get(&op.b, 8)?;
                let c = &self.cpu.controls;
                let trapped = match op.cc {
                    0 => (v ^ c.cr0_shadow) & c.cr0_mask != 0,
                    3 => c.cr3_load_exiting,
                    4 => (v ^ c.cr4_shadow) & c.cr4_mask != 0,
                    8 => c.cr8_load_exiting,
                    _ => false,
                };
                if trapped {
                    let q = CrAccessQual::mov(op.cc, true, reg_number(&op.b));
                    return Err(self.instruction_exit(op, VmExit::CrAccess(q)));
                }
                // Host-owned bits keep their value; the guest sees them
                // through the read shadow.
                let v = match op.cc {
                    0 => (v & !c.cr0_mask) | (self.cpu.cr0 & c.cr0_mask),
                    4 => (v & !c.cr4_mask) | (self.cpu.cr4 & c.cr4_mask),
                    _ => v,
                };
                self.write_cr(op.cc, v)?;
            }
            MovFromCr => {
                self.require_cpl0()?;
                let c = &self.cpu.controls;
                if (op.cc == 3 && c.cr3_store_exiting) || (op.cc == 8 && c.cr8_store_exiting) {
                    let q = CrAccessQual::mov(op.cc, false, reg_number(&op.a));
                    return Err(self.instruction_exit(op, VmExit::CrAccess(q)));
                }
                let v = self.cpu.guest_cr(op.cc).ok_or_else(|| self.raise(Event::ud()))?;
                self.put(&op.a, 8, v)?;
            }
            MovToDr | MovFromDr => {
                self.require_cpl0()?;
                let n = match op.cc {
                    4 | 5 if self.cpu.cr4 & cr4::DE != 0 => return Err(self.raise(Event::ud())),
                    4 | 5 => op.cc + 2,
                    n if n < 8 => n,
                    _ => return Err(self.raise(Event::ud())),
                };
                if op.kind == MovToDr {
                    let v = self.get(&op.b, 8)?;
                    match n {
                        0..=3 => self.cpu.dr[usize::from(n)] = v,
                        6 => self.cpu.dr6 = v | exitlab_arch::bits::dr6::INIT & !0xf,
                        _ => self.cpu.dr7 = v | 0x400,
                    }
                } else {
                    let v = match n {
                        0..=3 => self.cpu.dr[usize::from(n)],
                        6 => self.cpu.dr6,
                        _ => self.cpu.dr7,
                    };
                    self.put(&op.a, 8, v)?;
                }
            }
            Lidt | Lgdt | Sidt | Sgdt => {
                let Opnd::Mem(m) = op.a else { return Err(self.raise(Event::ud())) };
                let a = self.ea(&m);
                if matches!(op.kind, Lidt | Lgdt) {
                    self.require_cpl0()?;
                    let limit = self.load(a, 2)? as u16;
                    let base = self.load(a.wrapping_add(2), 8)?;
                    let t = exitlab_arch::DescriptorTable { base, limit };
                    if op.kind == Lidt {
                        self.cpu.idtr = t;
                    } else {
                        self.cpu.gdtr = t;
                    }
                } else {
                    let t = if op.kind == Sidt { self.cpu.idtr } else { self.cpu.gdtr };
                    self.store(a, 2, u64::from(t.limit))?;
                    self.store(a.wrapping_add(2), 8, t.base)?;
                }
            }
            Invlpg => {
                self.require_cpl0()?;
                let Opnd::Mem(m) = op.a else { return Err(self.raise(Event::ud())) };
                let a = self.ea(&m);
                if self.cpu.controls.invlpg_exiting {
                    let stop = self.instruction_exit(op, VmExit::Invlpg { linear: a });
                    self.cpu.exit_info.guest_linear = Some(a);
                    return Err(stop);
                }
                self.cpu.tlb.flush_page(a);
            }
            Swapgs => {
                self.require_cpl0()?;
                std::mem::swap(&mut self.cpu.gs_base, &mut self.cpu.kernel_gs_base);
            }
            Clts => {
                self.require_cpl0()?;
                self.cpu.cr0 &= !cr0::TS;
            }
            Unsupported => return Err(Stop::Unsupported),
            // The hot kinds never get here; refusing is the safe answer.
            _ => return Err(Stop::Unsupported),
        }
        self.cpu.rip = next;
        Ok(())
    }

    fn popf(&mut self, v: u64) {
        let cpl = self.cpu.cpl();
        let mut settable = rflags::STATUS | rflags::TF | rflags::DF | rflags::NT | rflags::AC | rflags::ID;
        if cpl == 0 {
            settable |= rflags::IOPL;
        }
        if cpl <= self.cpu.iopl() {
            settable |= rflags::IF;
        }
        let cur = self.cpu.rflags();
        self.cpu.set_rflags((cur & !settable) | (v & settable));
    }

    fn write_cr(&mut self, n: u8, v: u64) -> Result<(), Stop> {
        match n {
            0 => {
                // Leaving protected mode or paging is not modelled: it stays
                // a guest error (#GP) rather than silently misbehaving.
                if v & (cr0::PE | cr0::PG) != cr0::PE | cr0::PG || v >> 32 != 0 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.cpu.cr0 = v | cr0::ET;
                self.cpu.tlb.flush();
            }
            2 => self.cpu.cr2 = v,
            3 => {
                self.cpu.cr3 = v;
                self.cpu.tlb.flush();
            }
            4 => {
                if v & cr4::PAE == 0 || v & (cr4::LA57 | cr4::VMXE | cr4::PCIDE) != 0 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.cpu.cr4 = v;
                self.cpu.tlb.flush();
            }
            8 => {
                if v > 15 {
                    return Err(self.raise(Event::gp(0)));
                }
                self.cpu.apic.set_cr8(v);
            }
            _ => return Err(self.raise(Event::ud())),
        }
        Ok(())
    }

    /// BT/BTS/BTR/BTC: only CF changes (the others the SDM leaves
    /// undefined are kept).
    fn bit_test(&mut self, op: &Op) -> Result<(), Stop> {
        let size = op.size;
        let bits = u64::from(size) * 8;
        let off = self.get(&op.b, if matches!(op.b, Opnd::Imm(_)) { 1 } else { size })?;
        let (target, bit) = match (op.a, op.b) {
            // A register bit offset reaches outside the addressed operand.
            (Opnd::Mem(m), Opnd::Reg(_)) => {
                let signed = sign_extend(off, size) as i64;
                let a = self.ea(&m).wrapping_add(((signed >> bits.trailing_zeros()) * i64::from(size)) as u64);
                (Some(a), off & (bits - 1))
            }
            _ => (None, off & (bits - 1)),
        };
        let v = match target {
            Some(a) => self.load(a, size)?,
            None => self.get(&op.a, size)?,
        };
        let cf = (v >> bit) & 1 != 0;
        let r = match op.kind {
            Kind::Bts => v | 1 << bit,
            Kind::Btr => v & !(1 << bit),
            Kind::Btc => v ^ 1 << bit,
            _ => v,
        };
        if op.kind != Kind::Bt {
            match target {
                Some(a) => self.store(a, size, r)?,
                None => self.put(&op.a, size, r)?,
            }
        }
        self.set_cf(cf);
        Ok(())
    }

    /// One step of a string instruction (up to [`REP_CHUNK`] iterations).
    /// Returns whether the instruction finished (RIP advanced).
    fn string(&mut self, op: &Op) -> Result<bool, Stop> {
        use Kind::*;
        let size = op.size;
        let step = if self.cpu.rflags_rest & rflags::DF != 0 { (size as u64).wrapping_neg() } else { u64::from(size) };
        let rep = op.cc != REP_NONE;
        let mut done = 0;
        loop {
            if rep && self.cpu.gpr[1] == 0 {
                break;
            }
            let (rsi, rdi) = (self.cpu.gpr[6], self.cpu.gpr[7]);
            let mut zf_stop = false;
            match op.kind {
                Movs => {
                    let v = self.load(rsi, size)?;
                    self.store(rdi, size, v)?;
                }
                Stos => {
                    let v = self.reg(0, size);
                    self.store(rdi, size, v)?;
                }
                Lods => {
                    let v = self.load(rsi, size)?;
                    self.set_reg(0, size, v);
                }
                Cmps | Scas => {
                    let a = if op.kind == Cmps { self.load(rsi, size)? } else { self.reg(0, size) };
                    let b = self.load(rdi, size)?;
                    let (_, f) = alu::sub(size, a, b);
                    self.cpu.flags = f;
                    zf_stop = (op.cc == REP_E && !f.zf()) || (op.cc == REP_NE && f.zf());
                }
                Ins => {
                    let port = self.cpu.gpr[2] as u16;
                    self.io_allowed(port, size)?;
                    let q = Self::io_qual(port, size, true, true, rep, false);
                    let v = if self.cpu.controls.io_exits(port, size) {
                        self.replayed_read(|| io(q, 0))
                            .inspect_err(|_| self.cpu.exit_info.instruction_info = STRING_IO_ES)?
                    } else {
                        u64::MAX
                    };
                    self.store(rdi, size, v)?;
                }
                _ => {
                    let port = self.cpu.gpr[2] as u16;
                    self.io_allowed(port, size)?;
                    let v = self.load(rsi, size)?;
                    let q = Self::io_qual(port, size, false, true, rep, false);
                    if self.cpu.controls.io_exits(port, size) {
                        self.replayed_write(|| io(q, v))
                            .inspect_err(|_| self.cpu.exit_info.instruction_info = STRING_IO_DS)?;
                    }
                }
            }
            // Commit this iteration.
            if matches!(op.kind, Movs | Lods | Cmps | Outs) {
                self.cpu.gpr[6] = rsi.wrapping_add(step);
            }
            if matches!(op.kind, Movs | Stos | Cmps | Scas | Ins) {
                self.cpu.gpr[7] = rdi.wrapping_add(step);
            }
            self.cpu.replay.log.clear();
            self.cpu.replay.pos = 0;
            if !rep {
                break;
            }
            self.cpu.gpr[1] -= 1;
            self.cpu.cycles += u64::from(op.cost);
            done += 1;
            if zf_stop {
                break;
            }
            if done == REP_CHUNK && self.cpu.gpr[1] != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The general-register number of a register operand (for CR-access
/// qualifications).
fn reg_number(o: &Opnd) -> u8 {
    match o {
        Opnd::Reg(n) => *n,
        _ => 0,
    }
}

fn io(qual: IoQual, data: u64) -> VmExit {
    VmExit::Io(IoExit { qual, count: 1, data: data as u32, bulk: Vec::new() })
}

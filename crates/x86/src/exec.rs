//! The executor: [`execute`] dispatches a decoded [`Op`] to its family, and
//! the helpers here are how families read and write operands (SDM Vol. 1
//! 3.7: register, immediate and memory operands; Vol. 1 3.4.1.1: how a
//! write to part of a general register merges or zero-extends).
//!
//! Every family function advances RIP itself (past the instruction, or to
//! a branch target) as its last step; an `Err` leaves RIP where it was.
//! Families the simulator runs in its hot loop are `#[inline(always)]`;
//! the rest are `#[inline(never)]`, which keeps the dispatch's frame small.

use crate::cpu::{Cpu, Exception};
use crate::op::{Kind, Mem, Op, Opnd};
use crate::{
    arith, bits, control, far, fastcall, flag_control, interrupt, io, legacy, mask, mov, muldiv, segment, shift, sse,
    stack, string, system, tsx, x87, xsave, Size,
};

/// Executes `op` at the current RIP.
#[inline(always)]
pub fn execute<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    use Kind::*;
    match op.kind {
        Mov => mov::mov(c, op),
        Movzx => mov::movzx(c, op),
        Movsx => mov::movsx(c, op),
        Lea => mov::lea(c, op),
        Xchg => mov::xchg(c, op),
        Cmov => mov::cmov(c, op),
        Bswap => mov::bswap(c, op),
        Xadd => mov::xadd(c, op),
        Cmpxchg => mov::cmpxchg(c, op),
        Cbw => mov::cbw(c, op),
        Cwd => mov::cwd(c, op),
        Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test => arith::binary(c, op),
        Inc | Dec | Neg | Not => arith::unary(c, op),
        Shl | Shr | Sar | Rol | Ror | Rcl | Rcr => shift::shift(c, op),
        Shld | Shrd => shift::double(c, op),
        Imul2 | Imul3 => muldiv::imul_truncating(c, op),
        Mul | Imul1 => muldiv::mul_rdx_rax(c, op),
        Div | Idiv => muldiv::div_rdx_rax(c, op),
        Bt | Bts | Btr | Btc => bits::bit_test(c, op),
        Bsf | Bsr => bits::bit_scan(c, op),
        Popcnt | Tzcnt | Lzcnt => bits::count(c, op),
        Setcc => bits::setcc(c, op),
        Push => stack::push(c, op),
        Pop => stack::pop(c, op),
        Pushf => stack::pushf(c, op),
        Popf => stack::popf(c, op),
        Leave => stack::leave(c, op),
        Call => control::call(c, op),
        Ret => control::ret(c, op),
        Jmp => control::jmp(c, op),
        Jcc => control::jcc(c, op),
        Jrcxz => control::jrcxz(c, op),
        Loop | Loope | Loopne => control::loop_(c, op),
        Int3 | Int | Int1 => control::int(c, op),
        Into => control::into(c, op),
        Ud => control::ud(c, op),
        Iret => interrupt::iret(c, op),
        JmpFar => far::jmp_far(c, op),
        CallFar => far::call_far(c, op),
        RetFar => far::ret_far(c, op),
        MovToSeg => segment::mov_to_seg(c, op),
        MovFromSeg => segment::mov_from_seg(c, op),
        PushSeg => segment::push_seg(c, op),
        PopSeg => segment::pop_seg(c, op),
        LoadFar => segment::load_far(c, op),
        Lar | Lsl => segment::lar_lsl(c, op),
        Verr | Verw => segment::verr_verw(c, op),
        Arpl => segment::arpl(c, op),
        Ltr => system::ltr(c, op),
        Lldt => system::lldt(c, op),
        Str | Sldt => system::store_system_segment(c, op),
        Smsw => system::smsw(c, op),
        Lmsw => system::lmsw(c, op),
        Clflush => system::clflush(c, op),
        Syscall => fastcall::syscall(c, op),
        Sysret => fastcall::sysret(c, op),
        Sysenter => fastcall::sysenter(c, op),
        Sysexit => fastcall::sysexit(c, op),
        RdSegBase => fastcall::rd_seg_base(c, op),
        WrSegBase => fastcall::wr_seg_base(c, op),
        Cmpxchg8b => mov::cmpxchg8b(c, op),
        Xlat => mov::xlat(c, op),
        Movbe => mov::movbe(c, op),
        Enter => stack::enter(c, op),
        Pusha => stack::pusha(c, op),
        Popa => stack::popa(c, op),
        Aaa | Aas | Daa | Das => legacy::adjust(c, op),
        Aad | Aam => legacy::ascii_multiply_divide(c, op),
        Salc => legacy::salc(c, op),
        Bound => legacy::bound(c, op),
        Cli | Sti => flag_control::cli_sti(c, op),
        Cld | Std => flag_control::cld_std(c, op),
        Clc | Stc | Cmc => flag_control::carry(c, op),
        Lahf => flag_control::lahf(c, op),
        Sahf => flag_control::sahf(c, op),
        Movs | Stos | Lods | Cmps | Scas | Ins | Outs => string::string(c, op),
        In => io::in_(c, op),
        Out => io::out(c, op),
        Nop | CacheFlush => next(c, op),
        Hlt => system::hlt(c, op),
        Cpuid => system::cpuid(c, op),
        Rdmsr => system::rdmsr(c, op),
        Wrmsr => system::wrmsr(c, op),
        Rdtsc | Rdtscp => system::rdtsc(c, op),
        MovToCr => system::mov_to_cr(c, op),
        MovFromCr => system::mov_from_cr(c, op),
        MovToDr | MovFromDr => system::mov_dr(c, op),
        Lidt | Lgdt | Sidt | Sgdt => system::descriptor_table(c, op),
        Invlpg => system::invlpg(c, op),
        Swapgs => fastcall::swapgs(c, op),
        Clts => system::clts(c, op),
        Vmcall => system::vmcall(c, op),
        Rdpid => system::rdpid(c, op),
        Invpcid => system::invpcid(c, op),
        Absent => system::absent(c, op),
        Xbegin => tsx::xbegin(c, op),
        Xend => tsx::xend(c, op),
        Xabort => tsx::xabort(c, op),
        Xtest => tsx::xtest(c, op),
        Crc32 => bits::crc32(c, op),
        Sse(v) => sse::sse(c, op, v),
        X87(x) => x87::x87(c, op, x),
        FpState(s) => xsave::state(c, op, s),
        Unsupported => Err(c.unsupported()),
    }
}

/// Completes `op`: RIP past it.
#[inline(always)]
pub fn next<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    let rip = c.rip().wrapping_add(u64::from(op.len));
    c.set_rip(rip);
    Ok(())
}

/// The low `size` bytes of general register `n`.
#[inline(always)]
pub fn reg<C: Cpu>(c: &C, n: u8, size: Size) -> u64 {
    c.gpr(n) & mask(size)
}

/// Writes a register the way x86 does: 32-bit writes zero-extend, 8- and
/// 16-bit writes merge.
#[inline(always)]
pub fn set_reg<C: Cpu>(c: &mut C, n: u8, size: Size, v: u64) {
    let v = crate::merge(c.gpr(n), size, v);
    c.set_gpr(n, v);
}

/// base + index * scale + displacement, truncated to the address size:
/// what LEA computes, and the offset a memory operand names in its
/// segment.
#[inline(always)]
pub fn offset<C: Cpu>(c: &C, m: &Mem) -> u64 {
    m.offset(|n| c.gpr(n))
}

/// Reads operand `o` at `size` bytes.
#[inline(always)]
pub fn get<C: Cpu>(c: &mut C, o: &Opnd, size: Size) -> Result<u64, C::Stop> {
    match o {
        Opnd::Reg(n) => Ok(reg(c, *n, size)),
        Opnd::RegHi(n) => Ok((c.gpr(*n) >> 8) & 0xff),
        Opnd::Imm(v) => Ok(*v & mask(size)),
        Opnd::Mem(m) => {
            let off = offset(c, m);
            c.read(m.seg, off, size)
        }
        Opnd::None | Opnd::Xmm(_) | Opnd::Mm(_) | Opnd::St(_) => Err(c.unsupported()),
    }
}

/// Writes `v` to operand `o` at `size` bytes.
#[inline(always)]
pub fn put<C: Cpu>(c: &mut C, o: &Opnd, size: Size, v: u64) -> Result<(), C::Stop> {
    match o {
        Opnd::Reg(n) => {
            set_reg(c, *n, size, v);
            Ok(())
        }
        Opnd::RegHi(n) => {
            let old = c.gpr(*n);
            c.set_gpr(*n, (old & !0xff00) | ((v & 0xff) << 8));
            Ok(())
        }
        Opnd::Mem(m) => {
            let off = offset(c, m);
            c.write(m.seg, off, size, v)
        }
        Opnd::Imm(_) | Opnd::None | Opnd::Xmm(_) | Opnd::Mm(_) | Opnd::St(_) => Err(c.unsupported()),
    }
}

/// The memory operand `o`, or #UD (an instruction whose ModRM must name
/// memory but names a register).
#[inline]
pub fn memory<C: Cpu>(c: &mut C, o: &Opnd) -> Result<Mem, C::Stop> {
    match o {
        Opnd::Mem(m) => Ok(*m),
        _ => Err(c.exception(Exception::ud())),
    }
}

/// Full RFLAGS.
#[inline]
pub fn rflags<C: Cpu>(c: &C) -> u64 {
    c.rflags_rest() | c.flags().bits()
}

/// Sets all of RFLAGS (the fixed bit 1 stays set).
#[inline]
pub fn set_rflags<C: Cpu>(c: &mut C, v: u64) {
    use exitlab_arch::bits::rflags::{FIXED, STATUS};
    c.set_flags(crate::Flags::known(v & STATUS));
    c.set_rflags_rest((v & !STATUS) | FIXED);
}

/// #GP(0) unless CPL is 0.
#[inline]
pub fn require_cpl0<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if c.cpl() == 0 {
        Ok(())
    } else {
        Err(c.exception(Exception::gp(0)))
    }
}

/// IOPL from RFLAGS.
#[inline]
pub fn iopl<C: Cpu>(c: &C) -> u8 {
    use exitlab_arch::bits::rflags::{IOPL, IOPL_SHIFT};
    ((c.rflags_rest() & IOPL) >> IOPL_SHIFT) as u8
}

#[cfg(test)]
mod tests {
    //! The executor against the smallest `Cpu`: registers, flags and a
    //! sparse memory with an FS base, no system state.
    use super::*;
    use crate::op::Seg;
    use crate::reg::*;
    use crate::Flags;
    use iced_x86::{Decoder, DecoderOptions};
    use std::collections::HashMap;

    #[derive(Debug, PartialEq)]
    enum Stop {
        Fault(Exception),
        Unsupported,
    }

    /// Flat memory; bytes at or above `limit` fault with #GP.
    #[derive(Default)]
    struct Flat {
        gpr: [u64; 16],
        rip: u64,
        flags: Flags,
        rest: u64,
        fs_base: u64,
        mem: HashMap<u64, u8>,
        limit: u64,
        /// CPUID features it advertises, and CR4.
        features: Vec<crate::Feature>,
        cr4: u64,
    }

    impl Cpu for Flat {
        type Stop = Stop;
        const REP_CHUNK: u64 = 3;

        fn gpr(&self, n: u8) -> u64 {
            self.gpr[usize::from(n & 15)]
        }
        fn set_gpr(&mut self, n: u8, v: u64) {
            self.gpr[usize::from(n & 15)] = v;
        }
        fn rip(&self) -> u64 {
            self.rip
        }
        fn set_rip(&mut self, v: u64) {
            self.rip = v;
        }
        fn flags(&self) -> Flags {
            self.flags
        }
        fn set_flags(&mut self, f: Flags) {
            self.flags = f;
        }
        fn rflags_rest(&self) -> u64 {
            self.rest
        }
        fn set_rflags_rest(&mut self, v: u64) {
            self.rest = v;
        }
        fn cpl(&self) -> u8 {
            3
        }
        fn read(&mut self, seg: Seg, offset: u64, size: Size) -> Result<u64, Stop> {
            let lin = if seg == Seg::Fs { offset.wrapping_add(self.fs_base) } else { offset };
            if lin.saturating_add(u64::from(size)) > self.limit {
                return Err(Stop::Fault(Exception::gp(0)));
            }
            Ok((0..u64::from(size)).fold(0, |v, i| v | u64::from(*self.mem.get(&(lin + i)).unwrap_or(&0)) << (8 * i)))
        }
        fn write(&mut self, seg: Seg, offset: u64, size: Size, v: u64) -> Result<(), Stop> {
            let lin = if seg == Seg::Fs { offset.wrapping_add(self.fs_base) } else { offset };
            if lin.saturating_add(u64::from(size)) > self.limit {
                return Err(Stop::Fault(Exception::gp(0)));
            }
            for i in 0..u64::from(size) {
                self.mem.insert(lin + i, (v >> (8 * i)) as u8);
            }
            Ok(())
        }
        fn exception(&mut self, e: Exception) -> Stop {
            Stop::Fault(e)
        }
        fn unsupported(&mut self) -> Stop {
            Stop::Unsupported
        }
        fn has(&self, feature: crate::Feature) -> bool {
            self.features.contains(&feature)
        }
        fn cr(&mut self, n: u8) -> Result<u64, Stop> {
            if n == 4 {
                Ok(self.cr4)
            } else {
                Err(Stop::Unsupported)
            }
        }
        /// FS is the only segment with state: its base.
        fn segment(&mut self, s: Seg) -> Result<exitlab_arch::Segment, Stop> {
            let base = if s == Seg::Fs { self.fs_base } else { 0 };
            Ok(exitlab_arch::Segment { base, ..exitlab_arch::Segment::flat_data(0) })
        }
        fn set_segment(&mut self, s: Seg, v: exitlab_arch::Segment) -> Result<(), Stop> {
            if s != Seg::Fs {
                return Err(Stop::Unsupported);
            }
            self.fs_base = v.base;
            Ok(())
        }
    }

    fn run(c: &mut Flat, bytes: &[u8]) -> Result<(), Stop> {
        let i = Decoder::with_ip(64, bytes, c.rip, DecoderOptions::NONE).decode();
        execute(c, &crate::lower(&i))
    }

    fn flat() -> Flat {
        Flat { rip: 0x1000, rest: exitlab_arch::bits::rflags::FIXED, limit: 0x10_0000, ..Flat::default() }
    }

    #[test]
    fn memory_goes_through_the_segment_and_rip_moves_past() {
        let mut c = flat();
        c.fs_base = 0x2000;
        c.gpr[usize::from(RBX)] = 0x10;
        c.gpr[usize::from(RAX)] = 0xffff_ffff;
        // add fs:[rbx], eax; then add eax, fs:[rbx]
        run(&mut c, &[0x64, 0x01, 0x03]).unwrap();
        assert_eq!(c.read(Seg::Ds, 0x2010, 4), Ok(0xffff_ffff));
        assert_eq!(c.rip, 0x1003);
        run(&mut c, &[0x64, 0x03, 0x03]).unwrap();
        assert_eq!(c.gpr[usize::from(RAX)], 0xffff_fffe);
        assert!(c.flags.cf());
    }

    #[test]
    fn a_fault_leaves_registers_and_rip_alone() {
        let mut c = flat();
        c.gpr[usize::from(RAX)] = 7;
        c.gpr[usize::from(RBX)] = 0x20_0000;
        // xchg [rbx], eax: the read faults, nothing is written
        assert_eq!(run(&mut c, &[0x87, 0x03]), Err(Stop::Fault(Exception::gp(0))));
        assert_eq!((c.gpr[usize::from(RAX)], c.rip), (7, 0x1000));
        // div ebx with ebx = 0 is #DE
        c.gpr[usize::from(RBX)] = 0;
        assert_eq!(run(&mut c, &[0xf7, 0xf3]), Err(Stop::Fault(Exception::de())));
    }

    #[test]
    fn hooks_an_implementation_lacks_refuse() {
        let mut c = flat();
        // cpuid, out dx, al (CPL 3, IOPL 0: the TSS is needed), in al, 0x80
        for bytes in [&[0x0f, 0xa2][..], &[0xee], &[0xe4, 0x80]] {
            assert_eq!(run(&mut c, bytes), Err(Stop::Unsupported), "{bytes:02x?}");
            assert_eq!(c.rip, 0x1000);
        }
        // cli at CPL 3 > IOPL 0 is #GP, before any hook
        assert_eq!(run(&mut c, &[0xfa]), Err(Stop::Fault(Exception::gp(0))));
    }

    #[test]
    fn a_rep_string_yields_after_its_chunk_and_resumes() {
        let mut c = flat();
        c.gpr[usize::from(RCX)] = 5;
        c.gpr[usize::from(RDI)] = 0x3000;
        c.gpr[usize::from(RAX)] = 0xab;
        // rep stosb: three elements (REP_CHUNK), RIP stays; then the rest
        run(&mut c, &[0xf3, 0xaa]).unwrap();
        assert_eq!((c.gpr[usize::from(RCX)], c.gpr[usize::from(RDI)], c.rip), (2, 0x3003, 0x1000));
        run(&mut c, &[0xf3, 0xaa]).unwrap();
        assert_eq!((c.gpr[usize::from(RCX)], c.gpr[usize::from(RDI)], c.rip), (0, 0x3005, 0x1002));
        assert_eq!(c.read(Seg::Es, 0x3000, 8), Ok(0x0000_00ab_abab_abab));
    }

    /// Issue 12's silicon value: `cmpxchg ebx, ecx` with RBX =
    /// 0xAAAAAAAA00000005, EAX = 1, ECX = 7 leaves ZF = 0, RAX = 5 and RBX
    /// whole. The memory form writes the old value back; equal, the source
    /// goes in (zero-extended in a register).
    #[test]
    fn cmpxchg_writes_a_register_destination_only_when_equal() {
        let mut c = flat();
        c.gpr[usize::from(RBX)] = 0xaaaa_aaaa_0000_0005;
        c.gpr[usize::from(RAX)] = 0xffff_ffff_0000_0001;
        c.gpr[usize::from(RCX)] = 7;
        run(&mut c, &[0x0f, 0xb1, 0xcb]).unwrap(); // cmpxchg ebx, ecx
        assert_eq!((c.gpr[usize::from(RBX)], c.gpr[usize::from(RAX)], c.flags.zf()), (0xaaaa_aaaa_0000_0005, 5, false));
        run(&mut c, &[0x0f, 0xb1, 0xcb]).unwrap(); // now EAX = 5: equal
        assert_eq!((c.gpr[usize::from(RBX)], c.gpr[usize::from(RAX)], c.flags.zf()), (7, 5, true));
        // Memory: different, written back (a fault on the write would show).
        c.gpr[usize::from(RDI)] = 0x4000;
        c.write(Seg::Ds, 0x4000, 4, 9).unwrap();
        run(&mut c, &[0x0f, 0xb1, 0x0f]).unwrap(); // cmpxchg [rdi], ecx
        assert_eq!((c.read(Seg::Ds, 0x4000, 4), c.gpr[usize::from(RAX)]), (Ok(9), 9));
        c.limit = 0x4000;
        assert_eq!(run(&mut c, &[0x0f, 0xb1, 0x0f]), Err(Stop::Fault(Exception::gp(0))));
    }

    /// Issue 12's silicon values: `67 f3 a4` in 64-bit mode with RSI =
    /// 0x1_0002_0000, RDI = 0x1_0002_0100, RCX = 0x1_0000_0002 copies two
    /// bytes from 0x20000 to 0x20100 and leaves RSI = 0x20002, RDI =
    /// 0x20102, RCX = 0; `67 e3` (JECXZ) with RCX = 0x1_0000_0000 is taken.
    #[test]
    fn the_address_size_picks_the_implicit_registers() {
        let mut c = flat();
        c.write(Seg::Ds, 0x20000, 2, 0xbeef).unwrap();
        c.gpr[usize::from(RSI)] = 0x1_0002_0000;
        c.gpr[usize::from(RDI)] = 0x1_0002_0100;
        c.gpr[usize::from(RCX)] = 0x1_0000_0002;
        run(&mut c, &[0x67, 0xf3, 0xa4]).unwrap();
        let r = |c: &Flat, n: u8| c.gpr[usize::from(n)];
        assert_eq!((r(&c, RSI), r(&c, RDI), r(&c, RCX), c.rip), (0x20002, 0x20102, 0, 0x1003));
        assert_eq!(c.read(Seg::Ds, 0x20100, 2), Ok(0xbeef));
        // JECXZ +0x10 taken on ECX = 0; JRCXZ not taken on the same RCX.
        c.gpr[usize::from(RCX)] = 0x1_0000_0000;
        c.rip = 0x1000;
        run(&mut c, &[0x67, 0xe3, 0x10]).unwrap();
        assert_eq!(c.rip, 0x1013);
        c.rip = 0x1000;
        run(&mut c, &[0xe3, 0x10]).unwrap();
        assert_eq!(c.rip, 0x1002);
        // addr32 LOOP decrements ECX only (zero-extended): 0 -> 0xffffffff, taken.
        c.gpr[usize::from(RCX)] = 0x7_0000_0000;
        c.rip = 0x1000;
        run(&mut c, &[0x67, 0xe2, 0x10]).unwrap();
        assert_eq!((r(&c, RCX), c.rip), (0xffff_ffff, 0x1013));
        // addr32 XLAT: [EBX + AL].
        c.gpr[usize::from(RBX)] = 0x5_0002_0000;
        c.gpr[usize::from(RAX)] = 0x1234_5601;
        c.rip = 0x1000;
        run(&mut c, &[0x67, 0xd7]).unwrap();
        assert_eq!(r(&c, RAX), 0x1234_56be);
    }

    /// Instructions gated on CPUID: #UD unless advertised (and, for the
    /// FS/GS-base ones, CR4.FSGSBASE); then their semantics.
    #[test]
    fn advertised_instructions_run_and_the_others_are_ud() {
        use crate::Feature::*;
        let mut c = flat();
        c.gpr[usize::from(RAX)] = 0x1_2345_6789;
        let wrfsbase = [0xf3, 0x48, 0x0f, 0xae, 0xd0]; // wrfsbase rax
        let rdfsbase = [0xf3, 0x48, 0x0f, 0xae, 0xc1]; // rdfsbase rcx
        let movbe = [0x0f, 0x38, 0xf1, 0x07]; // movbe [rdi], eax
        let cx16 = [0x48, 0x0f, 0xc7, 0x0f]; // cmpxchg16b [rdi]
        c.gpr[usize::from(RDI)] = 0x5000;
        for bytes in [&wrfsbase[..], &movbe, &cx16] {
            assert_eq!(run(&mut c, bytes), Err(Stop::Fault(Exception::ud())), "{bytes:02x?}");
        }
        c.features = vec![Fsgsbase, Movbe, Cx16];
        assert_eq!(run(&mut c, &wrfsbase), Err(Stop::Fault(Exception::ud())), "CR4.FSGSBASE clear");
        c.cr4 = exitlab_arch::bits::cr4::FSGSBASE;
        run(&mut c, &wrfsbase).unwrap();
        run(&mut c, &rdfsbase).unwrap();
        assert_eq!((c.fs_base, c.gpr[usize::from(RCX)]), (0x1_2345_6789, 0x1_2345_6789));
        c.gpr[usize::from(RAX)] = 0x8000_0000_0000_0000;
        assert_eq!(run(&mut c, &wrfsbase), Err(Stop::Fault(Exception::gp(0))), "non-canonical");
        c.gpr[usize::from(RAX)] = 0x1122_3344;
        run(&mut c, &movbe).unwrap();
        assert_eq!(c.read(Seg::Ds, 0x5000, 4), Ok(0x4433_2211));
        // CMPXCHG16B: a misaligned operand is #GP(0); equal, RCX:RBX stored.
        c.gpr[usize::from(RDI)] = 0x5008;
        assert_eq!(run(&mut c, &cx16), Err(Stop::Fault(Exception::gp(0))));
        c.gpr[usize::from(RDI)] = 0x5000;
        c.gpr[usize::from(RAX)] = 0x4433_2211;
        c.gpr[usize::from(RDX)] = 0;
        c.gpr[usize::from(RBX)] = 0xaaaa;
        c.gpr[usize::from(RCX)] = 0xbbbb;
        run(&mut c, &cx16).unwrap();
        assert!(c.flags.zf());
        assert_eq!((c.read(Seg::Ds, 0x5000, 8), c.read(Seg::Ds, 0x5008, 8)), (Ok(0xaaaa), Ok(0xbbbb)));
    }
}

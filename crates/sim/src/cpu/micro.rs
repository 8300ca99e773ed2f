//! Micro-ops compiled for the fast path: each [`Uop`] of a block becomes
//! a [`Micro`], a handler with its operands. The handler is a function
//! monomorphised for the micro-op's form, operation and operand size (ADD
//! at 8 bytes is a host add and a register store: no match on the
//! operation, no size mask or merge), chosen once when the block is built,
//! and each handler calls the next one's pointer from its own tail
//! (threaded code; Bochs's handler chains do the same per instruction).
//! A handler computes with exitlab-x86's own functions, as the `Uop`
//! says, so registers and lazy flags are the executor's.
//!
//! Handlers do not move RIP: each micro-op knows the address after it
//! (`next`), and the run loop sets RIP once where the run stops; a branch
//! sets it itself and ends the run (branches end blocks).

use super::fast::{load, store, taken, unary};
use super::Core;
use crate::machine::Machine;
use crate::uop::{Src, Uop};
use exitlab_x86::arith::{binary_result, writes_result};
use exitlab_x86::{mask, merge, muldiv, shift, Cond, Kind, Mem, Seg, Size};

/// A handler: runs micro-op `code[i]` on the core and machine (`user`:
/// the code runs at CPL 3), then the ones after it ([`run_from`]): where
/// the run stopped (the index of the branch, the declined op or the
/// store that dropped code; `code.len()` at the end) and why.
pub type Handler = fn(&mut Core, &mut Machine, &[Micro], usize, bool) -> (usize, Flow);

/// What a handler did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Ran to the end of the micro-ops.
    Next,
    /// Ran a branch (RIP set): the block's run is over.
    Branch,
    /// Did nothing: the reference path must run this op.
    Decline,
    /// Ran a store that dropped decoded code: the run ends after it.
    Stale,
}

/// A compiled micro-op: `run` with the operands it reads. Registers are
/// encoding numbers; which fields a handler reads depends on its form.
#[derive(Clone, Copy, Debug)]
pub struct Micro {
    pub run: Handler,
    /// RIP after the op (after both for a fused producer and Jcc).
    pub next: u64,
    /// An immediate source (masked to the size) or a shift count.
    pub imm: u64,
    /// A branch's target.
    pub target: u64,
    /// A load's, store's or LEA's address recipe (`NO_MEM` elsewhere).
    pub mem: Mem,
    /// The destination (or only) register.
    pub a: u8,
    /// A source register.
    pub b: u8,
    /// IMUL's second source register.
    pub c: u8,
    /// A branch's condition code.
    pub cc: u8,
}

/// The binary operations a `Binary` micro-op may carry, by index (a
/// handler's const parameter).
const BINARY: [Kind; 9] =
    [Kind::Add, Kind::Adc, Kind::Sub, Kind::Sbb, Kind::And, Kind::Or, Kind::Xor, Kind::Cmp, Kind::Test];
/// The unary ones (INC, DEC, NEG, NOT) and the shifts, the same way.
const UNARY: [Kind; 4] = [Kind::Inc, Kind::Dec, Kind::Neg, Kind::Not];
const SHIFT: [Kind; 3] = [Kind::Shl, Kind::Shr, Kind::Sar];

/// The address recipe of micro-ops without a memory operand.
const NO_MEM: Mem = Mem { base: Mem::NONE, index: Mem::NONE, scale: 1, seg: Seg::Ds, asize: 8, disp: 0 };

fn index(table: &[Kind], kind: Kind) -> usize {
    table.iter().position(|k| *k == kind).unwrap_or(usize::MAX)
}

/// Runs `$body` with `$k` a constant equal to `$v` (one of `$n`), or
/// gives the `slow` handler for any other value.
macro_rules! constant {
    ($v:expr, $k:ident: $t:ty, [$($n:literal),*] => $body:expr) => {
        match $v {
            $($n => {
                const $k: $t = $n;
                $body
            })*
            _ => slow as Handler,
        }
    };
}

/// Runs `$body` with `$s` the operand size as a constant.
macro_rules! sized {
    ($size:expr, $s:ident => $body:expr) => {
        constant!($size, $s: u8, [1, 2, 4, 8] => $body)
    };
}

impl Micro {
    /// A block's micro-ops (`Uop::lower_block`) compiled; `lens` are the
    /// ops' lengths and `ip` the block's first address.
    pub fn compile(uops: &[Uop], lens: impl Iterator<Item = u8>, ip: u64) -> Vec<Micro> {
        let mut at = ip;
        uops.iter()
            .zip(lens)
            .map(|(u, len)| {
                let m = Micro::of(u, at, len);
                at = at.wrapping_add(u64::from(len));
                m
            })
            .collect()
    }

    /// `u` compiled, its op at `at`, `len` bytes long.
    fn of(u: &Uop, at: u64, len: u8) -> Micro {
        let next = at.wrapping_add(u64::from(len));
        let blank = Micro { run: slow, next, imm: 0, target: 0, mem: NO_MEM, a: 0, b: 0, c: 0, cc: 0 };
        // A register or immediate source: (is an immediate, register, value).
        let split = |s: Src| match s {
            Src::Reg(n) => (false, n, 0),
            Src::Imm(v) => (true, 0, v),
        };
        match *u {
            Uop::Slow => blank,
            Uop::Binary { kind, size, dst, src, flags, .. } => {
                let (imm, b, v) = split(src);
                Micro { run: binary_handler(kind, size, imm, flags), a: dst, b, imm: v, ..blank }
            }
            Uop::BinaryJcc { kind, size, len, dst, src, cc, target } => {
                let (imm, b, v) = split(src);
                let run = sized!(size, S => constant!(index(&BINARY, kind), K: usize, [0, 1, 2, 3, 4, 5, 6, 7, 8] =>
                    if imm { binary_jcc::<K, S, true> as Handler } else { binary_jcc::<K, S, false> }));
                // `len` covers both ops: the fall-through is after the Jcc.
                let next = at.wrapping_add(u64::from(len));
                Micro { run, next, a: dst, b, imm: v, cc, target, ..blank }
            }
            Uop::Unary { kind, size, reg, flags, .. } => {
                let run = sized!(size, S => constant!(index(&UNARY, kind), K: usize, [0, 1, 2, 3] =>
                    if flags { unary_op::<K, S, true> as Handler } else { unary_op::<K, S, false> }));
                Micro { run, a: reg, ..blank }
            }
            Uop::UnaryJcc { kind, size, len, reg, cc, target } => {
                let run = sized!(size, S => constant!(index(&UNARY, kind), K: usize, [0, 1, 2] =>
                    unary_jcc::<K, S> as Handler));
                Micro { run, next: at.wrapping_add(u64::from(len)), a: reg, cc, target, ..blank }
            }
            Uop::Mov { size, dst, src, .. } => {
                let (imm, b, v) = split(src);
                let run = sized!(size, S => if imm { mov::<S, true> as Handler } else { mov::<S, false> });
                Micro { run, a: dst, b, imm: v, ..blank }
            }
            Uop::Lea { size, dst, mem, .. } => {
                Micro { run: sized!(size, S => lea::<S> as Handler), a: dst, mem, ..blank }
            }
            Uop::Imul { size, dst, x, y, flags, .. } => match x {
                Src::Reg(b) => {
                    let (imm, c, v) = split(y);
                    let run = sized!(size, S => match (imm, flags) {
                        (false, false) => imul::<S, false, false> as Handler,
                        (false, true) => imul::<S, false, true>,
                        (true, false) => imul::<S, true, false>,
                        (true, true) => imul::<S, true, true>,
                    });
                    Micro { run, a: dst, b, c, imm: v, ..blank }
                }
                Src::Imm(_) => blank,
            },
            Uop::Shift { kind, size, reg, count, flags, .. } => {
                let run = sized!(size, S => constant!(index(&SHIFT, kind), K: usize, [0, 1, 2] =>
                    if flags { shift_op::<K, S, true> as Handler } else { shift_op::<K, S, false> }));
                Micro { run, a: reg, imm: u64::from(count), ..blank }
            }
            Uop::Load { size, dst, mem, .. } => {
                Micro { run: sized!(size, S => load_op::<S> as Handler), a: dst, mem, ..blank }
            }
            Uop::Store { size, mem, src, .. } => {
                let (imm, b, v) = split(src);
                let run = sized!(size, S => if imm { store_op::<S, true> as Handler } else { store_op::<S, false> });
                Micro { run, b, imm: v, mem, ..blank }
            }
            Uop::Jcc { cc, target, .. } => Micro { run: jcc, cc, target, ..blank },
            Uop::Jmp { target } => Micro { run: jmp, target, ..blank },
        }
    }
}

fn binary_handler(kind: Kind, size: Size, imm: bool, flags: bool) -> Handler {
    sized!(size, S => constant!(index(&BINARY, kind), K: usize, [0, 1, 2, 3, 4, 5, 6, 7, 8] =>
    match (imm, flags) {
        (false, false) => binary::<K, S, false, false> as Handler,
        (false, true) => binary::<K, S, false, true>,
        (true, false) => binary::<K, S, true, false>,
        (true, true) => binary::<K, S, true, true>,
    }))
}

/// The low `S` bytes of general register `n` (`exec::reg`).
#[inline(always)]
fn get<const S: Size>(g: &[u64; 16], n: u8) -> u64 {
    g[usize::from(n & 15)] & mask(S)
}

/// Writes general register `n` at `S` bytes (`exec::set_reg`).
#[inline(always)]
fn put<const S: Size>(g: &mut [u64; 16], n: u8, v: u64) {
    let r = &mut g[usize::from(n & 15)];
    *r = merge(*r, S, v);
}

/// Source `b` or the immediate.
#[inline(always)]
fn src<const S: Size, const IMM: bool>(g: &[u64; 16], reg: u8, m: &Micro) -> u64 {
    if IMM {
        m.imm
    } else {
        get::<S>(g, reg)
    }
}

/// Runs micro-ops `code[i..]`, each handler calling the next from its
/// own tail (its own indirect jump, so the host's predictor learns each
/// op's successor, where one shared call site would have to learn the
/// whole block), until a branch, a decline or the end: where the run
/// stopped and why (`Flow::Next`: ran to the end).
#[inline(always)]
pub fn run_from(core: &mut Core, machine: &mut Machine, code: &[Micro], i: usize, user: bool) -> (usize, Flow) {
    match code.get(i) {
        Some(m) => (m.run)(core, machine, code, i, user),
        None => (i, Flow::Next),
    }
}

fn slow(_: &mut Core, _: &mut Machine, _: &[Micro], i: usize, _: bool) -> (usize, Flow) {
    (i, Flow::Decline)
}

fn binary<const K: usize, const S: Size, const IMM: bool, const F: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let (m, kind) = (&code[i], BINARY[K]);
    let g = &mut core.gpr;
    let (r, f) = binary_result(kind, S, get::<S>(g, m.a), src::<S, IMM>(g, m.b, m), &core.flags);
    if writes_result(kind) {
        put::<S>(g, m.a, r);
    }
    if F {
        core.flags = f;
    }
    run_from(core, machine, code, i + 1, user)
}

fn binary_jcc<const K: usize, const S: Size, const IMM: bool>(
    core: &mut Core,
    _: &mut Machine,
    code: &[Micro],
    i: usize,
    _: bool,
) -> (usize, Flow) {
    let (m, kind) = (&code[i], BINARY[K]);
    let g = &mut core.gpr;
    let (a, b) = (get::<S>(g, m.a), src::<S, IMM>(g, m.b, m));
    let (r, f) = binary_result(kind, S, a, b, &core.flags);
    if writes_result(kind) {
        put::<S>(g, m.a, r);
    }
    core.flags = f;
    let below = matches!(kind, Kind::Sub | Kind::Cmp).then_some(a < b);
    core.rip = if taken(&f, r, below, m.cc) { m.target } else { m.next };
    (i, Flow::Branch)
}

fn unary_op<const K: usize, const S: Size, const F: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let (r, f) = unary(UNARY[K], S, get::<S>(&core.gpr, m.a), &core.flags);
    put::<S>(&mut core.gpr, m.a, r);
    if F {
        core.flags = f;
    }
    run_from(core, machine, code, i + 1, user)
}

fn unary_jcc<const K: usize, const S: Size>(
    core: &mut Core,
    _: &mut Machine,
    code: &[Micro],
    i: usize,
    _: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let (r, f) = unary(UNARY[K], S, get::<S>(&core.gpr, m.a), &core.flags);
    put::<S>(&mut core.gpr, m.a, r);
    core.flags = f;
    core.rip = if taken(&f, r, None, m.cc) { m.target } else { m.next };
    (i, Flow::Branch)
}

fn mov<const S: Size, const IMM: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let v = src::<S, IMM>(&core.gpr, m.b, m);
    put::<S>(&mut core.gpr, m.a, v);
    run_from(core, machine, code, i + 1, user)
}

fn lea<const S: Size>(core: &mut Core, machine: &mut Machine, code: &[Micro], i: usize, user: bool) -> (usize, Flow) {
    let m = &code[i];
    let a = m.mem.offset(|n| get::<8>(&core.gpr, n));
    put::<S>(&mut core.gpr, m.a, a);
    run_from(core, machine, code, i + 1, user)
}

fn imul<const S: Size, const IMM: bool, const F: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let g = &mut core.gpr;
    let (_, lo, f) = muldiv::imul(S, get::<S>(g, m.b), src::<S, IMM>(g, m.c, m));
    put::<S>(g, m.a, lo);
    if F {
        core.flags = f;
    }
    run_from(core, machine, code, i + 1, user)
}

fn shift_op<const K: usize, const S: Size, const F: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let (a, old) = (get::<S>(&core.gpr, m.a), core.flags);
    let (r, f) = match SHIFT[K] {
        Kind::Shl => shift::shl(S, a, m.imm, old),
        Kind::Shr => shift::shr(S, a, m.imm, old),
        _ => shift::sar(S, a, m.imm, old),
    };
    put::<S>(&mut core.gpr, m.a, r);
    if F {
        core.flags = f;
    }
    run_from(core, machine, code, i + 1, user)
}

fn load_op<const S: Size>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let Some(v) = load(core, machine, &m.mem, S, user) else { return (i, Flow::Decline) };
    put::<S>(&mut core.gpr, m.a, v);
    run_from(core, machine, code, i + 1, user)
}

fn store_op<const S: Size, const IMM: bool>(
    core: &mut Core,
    machine: &mut Machine,
    code: &[Micro],
    i: usize,
    user: bool,
) -> (usize, Flow) {
    let m = &code[i];
    let v = src::<S, IMM>(&core.gpr, m.b, m);
    if !store(core, machine, &m.mem, S, v, user) {
        (i, Flow::Decline)
    } else if machine.blocks.stale() {
        (i, Flow::Stale)
    } else {
        run_from(core, machine, code, i + 1, user)
    }
}

fn jcc(core: &mut Core, _: &mut Machine, code: &[Micro], i: usize, _: bool) -> (usize, Flow) {
    let m = &code[i];
    core.rip = if core.flags.cond(Cond(m.cc)) { m.target } else { m.next };
    (i, Flow::Branch)
}

fn jmp(core: &mut Core, _: &mut Machine, code: &[Micro], i: usize, _: bool) -> (usize, Flow) {
    core.rip = code[i].target;
    (i, Flow::Branch)
}

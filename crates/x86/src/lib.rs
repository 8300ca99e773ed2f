//! x86 instruction semantics, written once: the decoded form of an
//! instruction ([`op`]), the [`Cpu`] trait through which an instruction sees
//! a machine, and one executor ([`execute`]) whose instruction families
//! each live in their own module. The simulated CPU (crates/sim) and the
//! VMM's exit-time instruction emulator (crates/vmm/src/emulate.rs) both
//! execute through it, so the architecture is written in one place.
//!
//! The families follow the SDM's grouping (Vol. 1 5.1, Vol. 3A 2.8):
//! [`arith`], [`muldiv`], [`shift`], [`bits`], [`mov`], [`stack`],
//! [`string`], [`io`], [`control`], [`flag_control`], [`system`],
//! [`legacy`] and [`tsx`]; the system architecture of modes and
//! segmentation has [`segment`] (descriptors, segment-register loads),
//! [`far`] (far transfers, call gates), [`interrupt`] (event delivery and
//! IRET in every mode) and [`fastcall`] (SYSCALL, SYSENTER and friends);
//! floating point and vectors have [`sse`] (MMX and SSE-SSE4.2), [`x87`]
//! and [`xsave`] (the state-save instructions) over the pure semantics in
//! [`fp`]. Status flags are lazy ([`flags`]).
#![forbid(unsafe_code)]

pub mod cpu;
pub mod exec;
pub mod flags;
pub mod op;

pub mod arith;
pub mod bits;
pub mod control;
pub mod far;
pub mod fastcall;
pub mod flag_control;
pub mod interrupt;
pub mod io;
pub mod legacy;
pub mod mov;
pub mod muldiv;
pub mod segment;
pub mod shift;
pub mod stack;
pub mod string;
pub mod system;
pub mod tsx;

pub mod sse;
pub mod x87;
pub mod xsave;

mod lower_fp;
pub mod wide;

pub use cpu::{Cpu, DescriptorTableKind, Exception, Feature, Mode, PortIo, SystemSegment, Vendor};
pub use exec::execute;
pub use flags::{Cond, Flags, FlagsOp};
pub use op::{lower, Kind, Mem, Op, Opnd, Seg};

/// Operand size in bytes: 1, 2, 4 or 8.
pub type Size = u8;

/// General-register numbers in ModRM encoding order (SDM Vol. 2A 2.1.5).
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSP: u8 = 4;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
}

const MASKS: [u64; 16] = {
    let mut t = [u64::MAX; 16];
    let mut s = 0;
    while s < 8 {
        t[s] = (1u64 << (s * 8)) - 1;
        s += 1;
    }
    t
};

/// All ones in the low `size` bytes (a table lookup: this sits on the
/// interpreter's hottest path).
#[inline(always)]
pub const fn mask(size: Size) -> u64 {
    MASKS[(size & 15) as usize]
}

/// The sign bit of a `size`-byte operand.
/// General register `old` after a write of `v` at `size` bytes, the way
/// x86 writes registers (SDM Vol. 1 3.4.1.1): 64-bit writes replace,
/// 32-bit writes zero-extend, 8- and 16-bit writes merge.
#[inline(always)]
pub const fn merge(old: u64, size: Size, v: u64) -> u64 {
    match size {
        8 => v,
        4 => v & 0xffff_ffff,
        _ => (old & !mask(size)) | (v & mask(size)),
    }
}

#[inline(always)]
pub const fn sign_bit(size: Size) -> u64 {
    (mask(size) >> 1) + 1
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline(always)]
pub const fn sign_extend(v: u64, size: Size) -> u64 {
    let shift = 64 - size as u32 * 8;
    (((v << shift) as i64) >> shift) as u64
}

// Floating point and vectors (issue 13): x87, MMX, SSE-SSE4.2, XSAVE.
pub mod fp;

//! Micro-ops: the ops of a 64-bit block that the fast path
//! (`cpu::fast`) runs without the executor's dispatch and operand
//! decoding, lowered once when the block is built. Each has its operands
//! resolved (register numbers, immediates already masked to the operand
//! size, address recipes) and stands for exactly one `Op`, which it
//! computes with exitlab-x86's own functions (`arith::add`, `muldiv::imul`,
//! `shift::shl`, ...), so the results and the lazy flags are the
//! executor's by construction. Everything else is [`Uop::Slow`]: the op
//! runs through `exitlab_x86::execute` as in the reference path.
//!
//! Only register, immediate and plain memory forms are lowered: the
//! common integer work of compiled code (QEMU's TCG and Bochs's handler
//! chains single out the same forms).

use exitlab_x86::{mask, Kind, Mem, Op, Opnd};

/// A source operand: a general register (low `size` bytes) or an
/// immediate, already masked to the operand size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Reg(u8),
    Imm(u64),
}

/// One lowered op. `len` is the instruction's length (RIP moves past it);
/// `size` the operand size in bytes; registers are encoding numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uop {
    /// Runs through the executor with the reference bookkeeping.
    Slow,
    /// ADD, ADC, SUB, SBB, AND, OR, XOR, CMP, TEST reg, reg|imm.
    Binary { kind: Kind, size: u8, len: u8, dst: u8, src: Src },
    /// INC, DEC, NEG, NOT reg.
    Unary { kind: Kind, size: u8, len: u8, reg: u8 },
    /// MOV reg, reg|imm.
    Mov { size: u8, len: u8, dst: u8, src: Src },
    /// LEA reg, [recipe].
    Lea { size: u8, len: u8, dst: u8, mem: Mem },
    /// IMUL dst, x * y (two- and three-operand forms, truncating).
    Imul { size: u8, len: u8, dst: u8, x: Src, y: Src },
    /// SHL, SHR, SAR reg, imm8 (`count` as encoded; the family masks it).
    Shift { kind: Kind, size: u8, len: u8, reg: u8, count: u8 },
    /// MOV reg, [mem].
    Load { size: u8, len: u8, dst: u8, mem: Mem },
    /// MOV [mem], reg|imm.
    Store { size: u8, len: u8, mem: Mem, src: Src },
    /// Jcc rel: `target` already truncated to the operand size.
    Jcc { cc: u8, len: u8, target: u64 },
    /// JMP rel.
    Jmp { target: u64 },
}

fn src(o: &Opnd, size: u8) -> Option<Src> {
    match *o {
        Opnd::Reg(n) => Some(Src::Reg(n)),
        Opnd::Imm(v) => Some(Src::Imm(v & mask(size))),
        _ => None,
    }
}

fn reg(o: &Opnd) -> Option<u8> {
    match *o {
        Opnd::Reg(n) => Some(n),
        _ => None,
    }
}

fn mem(o: &Opnd) -> Option<Mem> {
    match *o {
        Opnd::Mem(m) => Some(m),
        _ => None,
    }
}

impl Uop {
    /// `op` lowered, for a block decoded in 64-bit code (`bits` = 64);
    /// other code sizes, and forms not lowered, run [`Uop::Slow`].
    pub fn lower(op: &Op, bits: u32) -> Uop {
        if bits != 64 {
            return Uop::Slow;
        }
        Uop::lowered(op).unwrap_or(Uop::Slow)
    }

    fn lowered(op: &Op) -> Option<Uop> {
        use Kind::*;
        let (size, len) = (op.size, op.len);
        Some(match op.kind {
            Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test => {
                Uop::Binary { kind: op.kind, size, len, dst: reg(&op.a)?, src: src(&op.b, size)? }
            }
            Inc | Dec | Neg | Not => Uop::Unary { kind: op.kind, size, len, reg: reg(&op.a)? },
            Mov => match (op.a, op.b) {
                (Opnd::Reg(dst), Opnd::Mem(m)) => Uop::Load { size, len, dst, mem: m },
                (Opnd::Mem(m), b) => Uop::Store { size, len, mem: m, src: src(&b, size)? },
                (a, b) => Uop::Mov { size, len, dst: reg(&a)?, src: src(&b, size)? },
            },
            Lea => Uop::Lea { size, len, dst: reg(&op.a)?, mem: mem(&op.b)? },
            Imul2 => Uop::Imul { size, len, dst: reg(&op.a)?, x: src(&op.a, size)?, y: src(&op.b, size)? },
            Imul3 => Uop::Imul { size, len, dst: reg(&op.a)?, x: src(&op.b, size)?, y: src(&op.c, size)? },
            Shl | Shr | Sar => match op.b {
                Opnd::Imm(n) => Uop::Shift { kind: op.kind, size, len, reg: reg(&op.a)?, count: n as u8 },
                _ => return None,
            },
            Jcc => match op.a {
                Opnd::Imm(t) => Uop::Jcc { cc: op.cc, len, target: t & mask(size) },
                _ => return None,
            },
            Jmp => match op.a {
                Opnd::Imm(t) => Uop::Jmp { target: t & mask(size) },
                _ => return None,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn lower(bytes: &[u8], bits: u32) -> Uop {
        let i = Decoder::with_ip(bits, bytes, 0x1000, DecoderOptions::NONE).decode();
        Uop::lower(&exitlab_x86::lower(&i), bits)
    }

    #[test]
    fn register_immediate_and_plain_memory_forms_are_lowered() {
        // add rax, rcx
        assert_eq!(
            lower(&[0x48, 0x01, 0xc8], 64),
            Uop::Binary { kind: Kind::Add, size: 8, len: 3, dst: 0, src: Src::Reg(1) }
        );
        // imul rdx, rbx, 9
        assert_eq!(
            lower(&[0x48, 0x6b, 0xd3, 0x09], 64),
            Uop::Imul { size: 8, len: 4, dst: 2, x: Src::Reg(3), y: Src::Imm(9) }
        );
        // cmp eax, -1: the immediate sign-extended, then masked to 32 bits
        assert_eq!(
            lower(&[0x83, 0xf8, 0xff], 64),
            Uop::Binary { kind: Kind::Cmp, size: 4, len: 3, dst: 0, src: Src::Imm(0xffff_ffff) }
        );
        // mov [rsp+8], rdx and mov rsi, [rsp+8]
        assert!(matches!(lower(&[0x48, 0x89, 0x54, 0x24, 0x08], 64), Uop::Store { size: 8, src: Src::Reg(2), .. }));
        assert!(matches!(lower(&[0x48, 0x8b, 0x74, 0x24, 0x08], 64), Uop::Load { size: 8, dst: 6, .. }));
        // jnz -5 from 0x1000: the target resolved
        assert_eq!(lower(&[0x75, 0xf9], 64), Uop::Jcc { cc: 5, len: 2, target: 0xffb });
    }

    #[test]
    fn other_forms_and_other_code_sizes_stay_slow() {
        // add [rax], rcx (read-modify-write), mov ah, 1, shl rax, cl, jmp rax
        for bytes in [&[0x48, 0x01, 0x08][..], &[0xb4, 0x01], &[0x48, 0xd3, 0xe0], &[0xff, 0xe0]] {
            assert_eq!(lower(bytes, 64), Uop::Slow, "{bytes:02x?}");
        }
        // add eax, ecx in 32-bit code
        assert_eq!(lower(&[0x01, 0xc8], 32), Uop::Slow);
    }
}

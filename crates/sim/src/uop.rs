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
/// `flags` says whether the op's flag record is stored: false where the
/// next op of the block overwrites every status flag unread and always
/// runs right after it (a register-only micro-op: it cannot fault, exit
/// or stop), so nothing can see the difference ([`Uop::lower_block`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uop {
    /// Runs through the executor with the reference bookkeeping.
    Slow,
    /// ADD, ADC, SUB, SBB, AND, OR, XOR, CMP, TEST reg, reg|imm.
    Binary { kind: Kind, size: u8, len: u8, dst: u8, src: Src, flags: bool },
    /// INC, DEC, NEG, NOT reg.
    Unary { kind: Kind, size: u8, len: u8, reg: u8, flags: bool },
    /// A `Binary` op and the Jcc after it as one: `len` is both lengths
    /// (the fall-through), `cc` and `target` the Jcc's. It stands for two
    /// ops; the Jcc keeps its own micro-op after it, which runs only when
    /// a run starts there.
    BinaryJcc { kind: Kind, size: u8, len: u8, dst: u8, src: Src, cc: u8, target: u64 },
    /// A `Unary` op other than NOT and the Jcc after it as one (`dec rcx;
    /// jnz`), as `BinaryJcc`.
    UnaryJcc { kind: Kind, size: u8, len: u8, reg: u8, cc: u8, target: u64 },
    /// MOV reg, reg|imm.
    Mov { size: u8, len: u8, dst: u8, src: Src },
    /// LEA reg, [recipe].
    Lea { size: u8, len: u8, dst: u8, mem: Mem },
    /// IMUL dst, x * y (two- and three-operand forms, truncating).
    Imul { size: u8, len: u8, dst: u8, x: Src, y: Src, flags: bool },
    /// SHL, SHR, SAR reg, imm8 (`count` as encoded; the family masks it).
    Shift { kind: Kind, size: u8, len: u8, reg: u8, count: u8, flags: bool },
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
    /// A block's ops lowered (`bits`: its code size), one micro-op each,
    /// then fused and pruned within the block: a `Binary` or `Unary` op
    /// (not NOT, which sets no flag) followed by a Jcc becomes `BinaryJcc`/`UnaryJcc` (the Jcc's own
    /// micro-op stays after it), and a flag producer followed by a
    /// register-only op that overwrites every status flag without reading
    /// them stores no flag record (`flags: false`).
    pub fn lower_block<'a>(ops: impl Iterator<Item = &'a Op>, bits: u32) -> Vec<Uop> {
        let mut uops: Vec<Uop> = ops.map(|op| Uop::lower(op, bits)).collect();
        for i in 0..uops.len() {
            let next = uops.get(i + 1).copied().unwrap_or(Uop::Slow);
            uops[i] = uops[i].before(next);
        }
        uops
    }

    /// This micro-op fused with `next` (a Jcc), or with its flag record
    /// dropped when `next` overwrites all flags unread, or unchanged.
    fn before(self, next: Uop) -> Uop {
        let dead = next.overwrites_flags();
        match (self, next) {
            (Uop::Binary { kind, size, len, dst, src, .. }, Uop::Jcc { cc, len: l, target }) => {
                Uop::BinaryJcc { kind, size, len: len + l, dst, src, cc, target }
            }
            (Uop::Unary { kind, size, len, reg, .. }, Uop::Jcc { cc, len: l, target }) if kind != Kind::Not => {
                Uop::UnaryJcc { kind, size, len: len + l, reg, cc, target }
            }
            (Uop::Binary { kind, size, len, dst, src, .. }, _) if dead => {
                Uop::Binary { kind, size, len, dst, src, flags: false }
            }
            (Uop::Unary { kind, size, len, reg, .. }, _) if dead => Uop::Unary { kind, size, len, reg, flags: false },
            (Uop::Imul { size, len, dst, x, y, .. }, _) if dead => Uop::Imul { size, len, dst, x, y, flags: false },
            (Uop::Shift { kind, size, len, reg, count, .. }, _) if dead => {
                Uop::Shift { kind, size, len, reg, count, flags: false }
            }
            (u, _) => u,
        }
    }

    /// Whether this micro-op sets every status flag without reading the
    /// old ones and can neither fail nor leave the fast path: ADD, SUB,
    /// CMP and the logic ops (not ADC, SBB; not INC and DEC, which keep
    /// CF; not NOT, which keeps all), NEG, IMUL, and shifts whose masked
    /// count is not 0.
    fn overwrites_flags(self) -> bool {
        let full = |kind: Kind| !matches!(kind, Kind::Adc | Kind::Sbb);
        match self {
            Uop::Binary { kind, .. } | Uop::BinaryJcc { kind, .. } => full(kind),
            Uop::Unary { kind, .. } | Uop::UnaryJcc { kind, .. } => kind == Kind::Neg,
            Uop::Imul { .. } => true,
            Uop::Shift { size, count, .. } => exitlab_x86::shift::count(size, u64::from(count)) != 0,
            _ => false,
        }
    }

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
                Uop::Binary { kind: op.kind, size, len, dst: reg(&op.a)?, src: src(&op.b, size)?, flags: true }
            }
            Inc | Dec | Neg | Not => Uop::Unary { kind: op.kind, size, len, reg: reg(&op.a)?, flags: true },
            Mov => match (op.a, op.b) {
                (Opnd::Reg(dst), Opnd::Mem(m)) => Uop::Load { size, len, dst, mem: m },
                (Opnd::Mem(m), b) => Uop::Store { size, len, mem: m, src: src(&b, size)? },
                (a, b) => Uop::Mov { size, len, dst: reg(&a)?, src: src(&b, size)? },
            },
            Lea => Uop::Lea { size, len, dst: reg(&op.a)?, mem: mem(&op.b)? },
            Imul2 => Uop::Imul { size, len, dst: reg(&op.a)?, x: src(&op.a, size)?, y: src(&op.b, size)?, flags: true },
            Imul3 => Uop::Imul { size, len, dst: reg(&op.a)?, x: src(&op.b, size)?, y: src(&op.c, size)?, flags: true },
            Shl | Shr | Sar => match op.b {
                Opnd::Imm(n) => Uop::Shift { kind: op.kind, size, len, reg: reg(&op.a)?, count: n as u8, flags: true },
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
            Uop::Binary { kind: Kind::Add, size: 8, len: 3, dst: 0, src: Src::Reg(1), flags: true }
        );
        // imul rdx, rbx, 9
        assert_eq!(
            lower(&[0x48, 0x6b, 0xd3, 0x09], 64),
            Uop::Imul { size: 8, len: 4, dst: 2, x: Src::Reg(3), y: Src::Imm(9), flags: true }
        );
        // cmp eax, -1: the immediate sign-extended, then masked to 32 bits
        assert_eq!(
            lower(&[0x83, 0xf8, 0xff], 64),
            Uop::Binary { kind: Kind::Cmp, size: 4, len: 3, dst: 0, src: Src::Imm(0xffff_ffff), flags: true }
        );
        // mov [rsp+8], rdx and mov rsi, [rsp+8]
        assert!(matches!(lower(&[0x48, 0x89, 0x54, 0x24, 0x08], 64), Uop::Store { size: 8, src: Src::Reg(2), .. }));
        assert!(matches!(lower(&[0x48, 0x8b, 0x74, 0x24, 0x08], 64), Uop::Load { size: 8, dst: 6, .. }));
        // jnz -5 from 0x1000: the target resolved
        assert_eq!(lower(&[0x75, 0xf9], 64), Uop::Jcc { cc: 5, len: 2, target: 0xffb });
    }

    fn lower_block(code: &[u8]) -> Vec<Uop> {
        let mut d = Decoder::with_ip(64, code, 0x1000, DecoderOptions::NONE);
        let ops: Vec<Op> = d.iter().map(|i| exitlab_x86::lower(&i)).collect();
        Uop::lower_block(ops.iter(), 64)
    }

    #[test]
    fn producers_fuse_with_jcc_and_drop_flags_overwritten_unread() {
        // The anchors' alu body: add rax,rcx; xor rbx,rax; imul rdx,rbx,9;
        // shl rdx,3; mov [rsp+8],rdx; mov rsi,[rsp+8]; cmp rsi,rax; jb +0;
        // dec rcx; jnz back.
        let code = [
            0x48, 0x01, 0xc8, 0x48, 0x31, 0xc3, 0x48, 0x6b, 0xd3, 0x09, 0x48, 0xc1, 0xe2, 0x03, 0x48, 0x89, 0x54, 0x24,
            0x08, 0x48, 0x8b, 0x74, 0x24, 0x08, 0x48, 0x39, 0xc6, 0x72, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xde,
        ];
        let u = lower_block(&code);
        assert_eq!(u.len(), 10);
        let flags: Vec<Option<bool>> = u
            .iter()
            .map(|u| match *u {
                Uop::Binary { flags, .. } | Uop::Imul { flags, .. } | Uop::Shift { flags, .. } => Some(flags),
                _ => None,
            })
            .collect();
        // ADD and XOR are overwritten by the next op, IMUL by the SHL; the
        // SHL's flags live on across the store and the load (either may
        // leave the fast path).
        assert_eq!(&flags[..4], &[Some(false), Some(false), Some(false), Some(true)]);
        assert_eq!(
            u[6],
            Uop::BinaryJcc { kind: Kind::Cmp, size: 8, len: 5, dst: 6, src: Src::Reg(0), cc: 2, target: 0x101d }
        );
        assert_eq!(u[7], Uop::Jcc { cc: 2, len: 2, target: 0x101d });
        assert_eq!(u[8], Uop::UnaryJcc { kind: Kind::Dec, size: 8, len: 5, reg: 1, cc: 5, target: 0x1000 });
    }

    #[test]
    fn flags_stay_where_the_next_op_reads_or_keeps_some() {
        // add rax,rcx; adc rbx,rax (reads CF); inc rax; dec rbx (keep CF);
        // shl rax,0x40 (masks to 0: keeps all); not rax (keeps all); neg rax
        let code = [
            0x48, 0x01, 0xc8, 0x48, 0x11, 0xc3, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xcb, 0x48, 0xc1, 0xe0, 0x40, 0x48, 0xf7,
            0xd0, 0x48, 0xf7, 0xd8,
        ];
        let u = lower_block(&code);
        assert!(u[..5].iter().all(|u| matches!(
            u,
            Uop::Binary { flags: true, .. } | Uop::Unary { flags: true, .. } | Uop::Shift { flags: true, .. }
        )));
        // NOT's record (the old flags) is overwritten by NEG; NEG is last.
        assert!(matches!(u[5], Uop::Unary { kind: Kind::Not, flags: false, .. }));
        assert!(matches!(u[6], Uop::Unary { kind: Kind::Neg, flags: true, .. }));
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

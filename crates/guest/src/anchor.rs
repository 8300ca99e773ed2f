//! The speed anchors' loops (../shared/bench-anchors/mkimg.py): the same
//! 64-bit loop bodies QEMU TCG and Bochs are timed on, so `exitlab bench
//! sim --loop dec|alu` compares like with like. The registers start as the
//! anchors set them; the loop runs between the `measure` and `done`
//! markers, then the image exits with status 0.

use crate::asm::{Asm, BuildError};
use crate::image::Image;
use crate::kernel::{debug_exit, marker, Kernel};
use crate::layout::{Phase, DEFAULT_MEMORY, IMAGE_BASE, KERNEL_STACK_TOP};
use iced_x86::code_asm::*;

/// One of the anchors' loop bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorLoop {
    /// `dec rcx; jnz loop`: 2 instructions per iteration.
    Dec,
    /// `add rax,rcx; xor rbx,rax; imul rdx,rbx,9; shl rdx,3;
    /// mov [rsp+8],rdx; mov rsi,[rsp+8]; cmp rsi,rax; jb next;
    /// next: dec rcx; jnz loop`: 10 instructions per iteration, the stack
    /// slot on another page than the code.
    Alu,
}

impl AnchorLoop {
    /// Instructions one iteration retires (mkimg.py's `PER_ITER`).
    pub fn per_iteration(self) -> u64 {
        match self {
            AnchorLoop::Dec => 2,
            AnchorLoop::Alu => 10,
        }
    }

    /// The body's name in the anchors' table.
    pub fn name(self) -> &'static str {
        match self {
            AnchorLoop::Dec => "dec",
            AnchorLoop::Alu => "alu",
        }
    }
}

/// The image that runs `body` `n` times (n >= 1, as the anchors' loops
/// test RCX only at the bottom). The loop's first instruction is the
/// symbol `anchor_loop`.
pub fn image(body: AnchorLoop, n: u64) -> std::result::Result<Image, BuildError> {
    let mut asm = Asm::new()?;
    let kernel = Kernel::emit_init(&mut asm, body.name())?;
    // The anchors' RSP: 0x7fff0, [rsp+8] on the stack's page, below the
    // kernel stack's top and 1 MiB away from the code.
    asm.a.mov(rsp, KERNEL_STACK_TOP - 0x10)?;
    marker(&mut asm, Phase::Measure)?;
    asm.a.mov(eax, 0x1234_5678u32)?;
    asm.a.mov(ebx, 0x9abc_def1u32)?;
    asm.a.xor(edx, edx)?;
    asm.a.xor(esi, esi)?;
    asm.a.mov(rcx, n.max(1))?;
    let top = asm.symbol("anchor_loop")?;
    if body == AnchorLoop::Alu {
        let mut next = asm.label();
        asm.a.add(rax, rcx)?;
        asm.a.xor(rbx, rax)?;
        asm.a.imul_3(rdx, rbx, 9)?;
        asm.a.shl(rdx, 3)?;
        asm.a.mov(qword_ptr(rsp + 8), rdx)?;
        asm.a.mov(rsi, qword_ptr(rsp + 8))?;
        asm.a.cmp(rsi, rax)?;
        asm.a.jb(next)?;
        asm.set(&mut next)?;
    }
    asm.a.dec(rcx)?;
    asm.a.jnz(top)?;
    marker(&mut asm, Phase::Done)?;
    debug_exit(&mut asm, 0)?;
    kernel.emit_runtime(&mut asm)?;
    asm.finish(body.name(), IMAGE_BASE, DEFAULT_MEMORY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    /// The loop decodes to exactly the anchors' instructions, in order, the
    /// last one jumping back to the first.
    #[test]
    fn loops_are_the_anchors_bodies() {
        use Mnemonic::*;
        for (body, want) in [
            (AnchorLoop::Dec, vec![Dec, Jne]),
            (AnchorLoop::Alu, vec![Add, Xor, Imul, Shl, Mov, Mov, Cmp, Jb, Dec, Jne]),
        ] {
            let img = image(body, 5).unwrap();
            let top = img.symbol("anchor_loop").unwrap();
            let off = (top - img.load_gpa) as usize;
            let mut d = Decoder::with_ip(64, &img.bytes[off..], top, DecoderOptions::NONE);
            let got: Vec<_> = (0..want.len()).map(|_| d.decode()).collect();
            assert_eq!(got.iter().map(|i| i.mnemonic()).collect::<Vec<_>>(), want);
            assert_eq!(got.last().unwrap().near_branch64(), top);
            assert_eq!(u64::try_from(want.len()).unwrap(), body.per_iteration());
            // The stack slot [rsp+8] = 0x7fff8 is not on the code's page.
            assert_ne!((KERNEL_STACK_TOP - 8) >> 12, top >> 12);
        }
    }
}

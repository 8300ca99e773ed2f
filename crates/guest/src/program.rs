//! Custom guest programs for tests and experiments that need exact control
//! of the code: the exitlab kernel boots, then runs `body` (in ring 3 with
//! the given registers and flags, or in ring 0), and the run ends with
//! `out 0xf4, al`, which touches no register or flag, so the state the VMM
//! reads afterwards is exactly what `body` left.

use crate::asm::{Asm, BuildError};
use crate::image::Image;
use crate::kernel::Kernel;
use crate::layout::{DEFAULT_MEMORY, IMAGE_BASE, PORT_DEBUG_EXIT};
use exitlab_arch::bits::rflags;
use iced_x86::code_asm::{registers::gpr64, CodeAssembler, CodeLabel};
use iced_x86::IcedError;

/// The state `body` starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// General registers in encoding order; RSP is ignored (the stack is
    /// the kernel's user or kernel stack).
    pub gpr: [u64; 16],
    /// RFLAGS status bits and DF; IF, IOPL and the reserved bits are set by
    /// the builder (IF clear, IOPL 3 in ring 3).
    pub rflags: u64,
}

/// Which privilege level `body` runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    Kernel,
    User,
}

/// Named labels a body wants in the image's symbol table.
pub type Marks = Vec<(&'static str, CodeLabel)>;

/// What a body that brings its own handlers gives back: its named labels,
/// and the vectors whose IDT gates point at its own code (64-bit
/// interrupt gates, DPL 0, in place of the kernel's reporting stubs).
#[derive(Debug, Default)]
pub struct Body {
    pub marks: Marks,
    pub gates: Vec<(u8, CodeLabel)>,
}

fn emit(
    asm: &mut Asm,
    start: &Start,
    body: impl FnOnce(&mut CodeAssembler) -> Result<Body, IcedError>,
) -> Result<(), BuildError> {
    let settable = rflags::STATUS | rflags::DF;
    let base = rflags::FIXED | if asm.has_user_body() { rflags::IOPL } else { 0 };
    asm.a.push((base | (start.rflags & settable)) as i32)?;
    asm.a.popfq()?;
    let regs = [
        gpr64::rax,
        gpr64::rcx,
        gpr64::rdx,
        gpr64::rbx,
        gpr64::rsp,
        gpr64::rbp,
        gpr64::rsi,
        gpr64::rdi,
        gpr64::r8,
        gpr64::r9,
        gpr64::r10,
        gpr64::r11,
        gpr64::r12,
        gpr64::r13,
        gpr64::r14,
        gpr64::r15,
    ];
    for (i, r) in regs.into_iter().enumerate() {
        if i != 4 {
            asm.a.mov(r, start.gpr[i])?;
        }
    }
    asm.symbol("body")?;
    let body = body(&mut asm.a)?;
    for (name, label) in body.marks {
        asm.name(name, label);
    }
    for (vector, handler) in body.gates {
        asm.gate(vector, handler);
    }
    asm.symbol("body_end")?;
    asm.a.out(u32::from(PORT_DEBUG_EXIT), iced_x86::code_asm::registers::gpr8::al)?;
    let mut spin = asm.label();
    asm.set(&mut spin)?;
    asm.a.jmp(spin)?;
    Ok(())
}

/// Assembles a program: kernel boot, then `body` at `ring` from `start`.
/// The symbols `body` and `body_end` bracket the caller's code.
pub fn program(
    name: &str,
    ring: Ring,
    start: &Start,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<Image, BuildError> {
    program_marked(name, ring, start, |a| body(a).map(|_| Vec::new()))
}

/// As [`program`], with labels the body names added to the symbols.
pub fn program_marked(
    name: &str,
    ring: Ring,
    start: &Start,
    body: impl FnOnce(&mut CodeAssembler) -> Result<Marks, IcedError>,
) -> Result<Image, BuildError> {
    program_with_handlers(name, ring, start, |a| body(a).map(|marks| Body { marks, gates: Vec::new() }))
}

/// As [`program_marked`], with the body's own interrupt handlers: code the
/// body emits (and jumps over) that its gates route vectors to.
pub fn program_with_handlers(
    name: &str,
    ring: Ring,
    start: &Start,
    body: impl FnOnce(&mut CodeAssembler) -> Result<Body, IcedError>,
) -> Result<Image, BuildError> {
    let mut asm = Asm::new()?;
    let kernel = Kernel::emit_init(&mut asm, name)?;
    if ring == Ring::User {
        let mut user = asm.label();
        asm.a.lea(gpr64::rdi, iced_x86::code_asm::ptr(user))?;
        asm.a.jmp(kernel.enter_user)?;
        asm.set(&mut user)?;
        asm.name("user_body", user);
        asm.mark_user_body();
    }
    emit(&mut asm, start, body)?;
    kernel.emit_runtime(&mut asm)?;
    asm.finish(name, IMAGE_BASE, DEFAULT_MEMORY)
}

//! The small guest kernel every image carries: IDT with a handler for every
//! vector, 8259 PIC masked, local APIC enabled, a polled serial console,
//! a LAPIC timer handler, and entry to ring 3 with IOPL 3.
//!
//! Register conventions for workload code: r15 is the loop counter, r14
//! and r13 belong to the workload, and the kernel routines clobber only
//! what their doc comment says.

use crate::asm::{Asm, Result};
use crate::layout::*;
use exitlab_arch::bits::apic;
use exitlab_arch::vector;
use iced_x86::code_asm::*;

/// Byte offsets inside the mailbox (see [`crate::MailboxReport`]).
pub(crate) mod mailbox {
    pub const VECTOR: i32 = 0;
    pub const ERROR_CODE: i32 = 8;
    pub const RIP: i32 = 16;
    pub const CR2: i32 = 24;
    pub const CS: i32 = 32;
    pub const RFLAGS: i32 = 40;
    pub const RSP: i32 = 48;
    pub const DR6: i32 = 56;
    /// Timer and device interrupts taken so far.
    pub const TICKS: i32 = 64;
    pub const SIZE: usize = 72;
}

/// Labels of the kernel routines workloads call.
pub(crate) struct Kernel {
    /// puts(rsi = text, rcx = length): polled write to COM1; clobbers rax,
    /// rcx, rdx, rsi.
    pub puts: CodeLabel,
    /// enter_user(rdi = entry): IRETQ to ring 3 with IOPL 3 and the user
    /// stack; does not return.
    pub enter_user: CodeLabel,
    report: CodeLabel,
    idtr: CodeLabel,
    banner: CodeLabel,
    banner_text: Vec<u8>,
}

impl Kernel {
    /// Emits the boot path at the current position (the image entry):
    /// load the IDT, mask the PIC, enable the local APIC, print a banner.
    pub fn emit_init(asm: &mut Asm, name: &str) -> Result<Kernel> {
        let k = Kernel {
            puts: asm.label(),
            enter_user: asm.label(),
            report: asm.label(),
            idtr: asm.label(),
            banner: asm.label(),
            banner_text: format!("exitlab guest: {name}\n").into_bytes(),
        };
        asm.symbol("_start")?;
        let a = &mut asm.a;
        a.lidt(ptr(k.idtr))?;
        a.mov(al, 0xffu32)?;
        a.out(PIC_MASTER_DATA as u32, al)?;
        a.out(PIC_SLAVE_DATA as u32, al)?;
        a.mov(rdi, apic::DEFAULT_BASE)?;
        a.mov(dword_ptr(rdi + apic::SVR as i32), apic::SVR_ENABLE | u32::from(SPURIOUS_VECTOR))?;
        a.lea(rsi, ptr(k.banner))?;
        a.mov(ecx, k.banner_text.len() as u32)?;
        a.call(k.puts)?;
        asm.symbol("kernel_ready")?;
        Ok(k)
    }

    /// Emits the kernel's routines, handlers and data after the workload.
    pub fn emit_runtime(mut self, asm: &mut Asm) -> Result<()> {
        // puts
        let mut puts = self.puts;
        asm.set(&mut puts)?;
        asm.name("puts", puts);
        {
            let a = &mut asm.a;
            let mut done = a.create_label();
            let mut next = a.create_label();
            let mut wait = a.create_label();
            a.test(rcx, rcx)?;
            a.jz(done)?;
            a.set_label(&mut next)?;
            a.mov(dx, (SERIAL_COM1 + 5) as u32)?; // LSR
            a.set_label(&mut wait)?;
            a.in_(al, dx)?;
            a.test(al, 0x20)?; // THR empty
            a.jz(wait)?;
            a.mov(al, byte_ptr(rsi))?;
            a.mov(dx, SERIAL_COM1 as u32)?;
            a.out(dx, al)?;
            a.inc(rsi)?;
            a.dec(rcx)?;
            a.jnz(next)?;
            a.set_label(&mut done)?;
            a.ret()?;
        }

        // enter_user
        let mut enter = self.enter_user;
        asm.set(&mut enter)?;
        asm.name("enter_user", enter);
        {
            let a = &mut asm.a;
            a.push(i32::from(USER_DS))?;
            a.push(USER_STACK_TOP as i32)?;
            a.push((exitlab_arch::bits::rflags::IOPL | exitlab_arch::bits::rflags::FIXED) as i32)?;
            a.push(i32::from(USER_CS))?;
            a.push(rdi)?;
            a.iretq()?;
        }

        // Timer and device completions: count the interrupt, EOI, return.
        if !asm.has_gate(TIMER_VECTOR) {
            let timer = asm.symbol("timer_isr")?;
            let a = &mut asm.a;
            a.push(rax)?;
            a.push(rdi)?;
            a.mov(rdi, MAILBOX)?;
            a.inc(qword_ptr(rdi + mailbox::TICKS))?;
            a.mov(rdi, apic::DEFAULT_BASE)?;
            a.mov(dword_ptr(rdi + apic::EOI as i32), 0)?;
            a.pop(rdi)?;
            a.pop(rax)?;
            a.iretq()?;
            asm.gate(TIMER_VECTOR, timer);
            if !asm.has_gate(DEVICE_VECTOR) {
                asm.gate(DEVICE_VECTOR, timer);
            }
        }
        if !asm.has_gate(SPURIOUS_VECTOR) {
            let spurious = asm.symbol("spurious_isr")?;
            asm.a.iretq()?;
            asm.gate(SPURIOUS_VECTOR, spurious);
        }

        // Every other vector reports itself through the mailbox.
        for v in 0..=255u8 {
            if asm.has_gate(v) {
                continue;
            }
            let mut stub = asm.label();
            asm.set(&mut stub)?;
            if !(v < 32 && vector::has_error_code(v)) {
                asm.a.push(0)?;
            }
            asm.a.push(i32::from(v))?;
            asm.a.jmp(self.report)?;
            asm.gate(v, stub);
        }

        // report: stack holds vector, error code, then the CPU's frame.
        let mut report = self.report;
        asm.set(&mut report)?;
        asm.name("report", report);
        {
            let a = &mut asm.a;
            a.mov(rdi, MAILBOX)?;
            a.pop(rax)?;
            a.mov(qword_ptr(rdi + mailbox::VECTOR), rax)?;
            a.pop(rax)?;
            a.mov(qword_ptr(rdi + mailbox::ERROR_CODE), rax)?;
            for (slot, off) in [(0, mailbox::RIP), (8, mailbox::CS), (16, mailbox::RFLAGS), (24, mailbox::RSP)] {
                a.mov(rax, qword_ptr(rsp + slot))?;
                a.mov(qword_ptr(rdi + off), rax)?;
            }
            a.mov(rax, cr2)?;
            a.mov(qword_ptr(rdi + mailbox::CR2), rax)?;
            a.mov(rax, dr6)?;
            a.mov(qword_ptr(rdi + mailbox::DR6), rax)?;
            a.mov(eax, dword_ptr(rdi + mailbox::VECTOR))?;
            a.mov(dx, PORT_REPORT as u32)?;
            a.out(dx, eax)?;
            let mut stop = a.create_label();
            a.set_label(&mut stop)?;
            a.cli()?;
            a.hlt()?;
            a.jmp(stop)?;
        }

        asm.begin_data(self.banner)?;
        let text = std::mem::take(&mut self.banner_text);
        asm.a.db(&text)?;
        asm.reserve_idt(self.idtr)?;
        Ok(())
    }
}

/// Emits `out PORT_MARKER, phase`; clobbers eax and dx.
pub(crate) fn marker(asm: &mut Asm, phase: Phase) -> Result<()> {
    asm.a.mov(dx, u32::from(PORT_MARKER))?;
    asm.a.mov(eax, phase as u32)?;
    asm.a.out(dx, eax)?;
    Ok(())
}

/// Emits the end of a run: `out PORT_DEBUG_EXIT, status`, then spins (the
/// VMM stops at the OUT; the spin only guards a VMM that does not).
pub(crate) fn debug_exit(asm: &mut Asm, status: u32) -> Result<()> {
    asm.symbol("exit")?;
    asm.a.mov(dx, u32::from(PORT_DEBUG_EXIT))?;
    asm.a.mov(eax, status)?;
    asm.a.out(dx, eax)?;
    let mut spin = asm.label();
    asm.set(&mut spin)?;
    asm.a.pause()?;
    asm.a.jmp(spin)?;
    Ok(())
}

//! The built-in workloads: microbenchmarks in the spirit of kvm-unit-tests'
//! `x86/vmexit.c`. Each one runs its iteration `warmup` times, then `n`
//! times between the `measure` and `done` markers, then exits with status 0.
//! The instruction that exits is named `<phase>_trap` in the symbol table.

use crate::asm::{Asm, BuildError, Result};
use crate::image::Image;
use crate::kernel::{debug_exit, marker, Kernel};
use crate::layout::*;
use crate::machine::{Block, CpuFeature, GuestLog, GuestRange, MachineConfig, MonitorKind, WriteMonitor};
use crate::params::{ParamError, ParamSpec, Params};
use exitlab_arch::bits::{apic, msr};
use iced_x86::code_asm::*;
use std::num::NonZeroU64;

type Emit = fn(&mut Asm, &Params) -> Result<()>;
type Iteration = fn(&mut Asm, &Params, &str) -> Result<()>;
type Machine = fn(&Params) -> MachineConfig;

/// A named guest program with declared parameters.
pub struct Workload {
    pub name: &'static str,
    pub summary: &'static str,
    /// Parameters beyond the common `n` and `warmup`.
    own_params: &'static [ParamSpec],
    /// Different defaults for the common parameters.
    common_defaults: &'static [(&'static str, u64)],
    /// The parameter that counts the measured loop's iterations: `n`, or
    /// the workload's own (`packets`), which then replaces `n`.
    pub count: &'static str,
    /// Runs once in ring 0 before the first marker.
    setup: Emit,
    /// One iteration of the measured loop; names its exiting instruction.
    iteration: Iteration,
    /// The machine it asks the VMM for.
    machine: Machine,
}

const N: ParamSpec = ParamSpec::int("n", 1, 1_000_000_000, 1000, "iterations in the measure phase");
const WARMUP: ParamSpec = ParamSpec::int("warmup", 0, 1_000_000, 10, "iterations in the warm-up phase");
const RING3: ParamSpec = ParamSpec::int("ring3", 0, 1, 0, "1: run the loops in ring 3 (IOPL 3)");

/// Parameters whose code runs privileged instructions (STI/HLT, MOV to
/// CR3), which #GP in ring 3 even at IOPL 3 (SDM Vol. 2: HLT, MOV CR):
/// refused beside `ring3=1` rather than run into a guest fault.
const RING0_ONLY: [&str; 2] = ["irq", "switch_every"];

impl Workload {
    /// Every parameter the workload takes, common ones first.
    pub fn params(&self) -> Vec<ParamSpec> {
        let mut v = if self.count == N.name { vec![N, WARMUP] } else { vec![WARMUP] };
        for spec in &mut v {
            if let (Some((_, d)), crate::params::ParamKind::Int { min, max, .. }) =
                (self.common_defaults.iter().find(|(n, _)| *n == spec.name), spec.kind)
            {
                spec.kind = crate::params::ParamKind::Int { min, max, default: *d };
            }
        }
        v.extend_from_slice(self.own_params);
        v
    }

    /// Defaults overridden by `key=value` assignments.
    pub fn resolve<'a>(
        &self,
        assignments: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Params, ParamError> {
        let specs = self.params();
        let mut p = Params::defaults(&specs);
        p.apply(self.name, &specs, assignments)?;
        if self.own_params.contains(&RING3) && p.int("ring3") == 1 {
            if let Some(key) = RING0_ONLY.iter().find(|k| specs.iter().any(|s| s.name == **k) && p.int(k) != 0) {
                return Err(ParamError::Conflict {
                    key: key.to_string(),
                    other: "ring3=1".into(),
                    why: "its code runs privileged instructions, which fault in ring 3",
                });
            }
        }
        Ok(p)
    }

    /// Assembles the image for these parameters.
    pub fn build(&self, p: &Params) -> std::result::Result<Image, BuildError> {
        let mut asm = Asm::new()?;
        let kernel = Kernel::emit_init(&mut asm, self.name)?;
        (self.setup)(&mut asm, p)?;
        if self.own_params.contains(&RING3) && p.int("ring3") == 1 {
            let mut body = asm.label();
            asm.a.lea(rdi, ptr(body))?;
            asm.a.jmp(kernel.enter_user)?;
            asm.set(&mut body)?;
            asm.name("user_body", body);
        }
        for (phase, count) in [(Phase::Warmup, p.int("warmup")), (Phase::Measure, p.int(self.count))] {
            marker(&mut asm, phase)?;
            counted_loop(&mut asm, phase.name(), count, |asm| (self.iteration)(asm, p, phase.name()))?;
        }
        marker(&mut asm, Phase::Done)?;
        debug_exit(&mut asm, 0)?;
        kernel.emit_runtime(&mut asm)?;
        let mut image = asm.finish(self.name, IMAGE_BASE, DEFAULT_MEMORY)?;
        image.machine = (self.machine)(p);
        Ok(image)
    }
}

/// `r15 = count; r14 = 0; while r15 != 0 { body; r15 -= 1 }`, with the top
/// of the loop named `<name>_loop`.
fn counted_loop(asm: &mut Asm, name: &str, count: u64, body: impl Fn(&mut Asm) -> Result<()>) -> Result<()> {
    let mut end = asm.label();
    asm.a.mov(r15, count)?;
    asm.a.xor(r14d, r14d)?;
    asm.a.test(r15, r15)?;
    asm.a.jz(end)?;
    let top = asm.symbol(&format!("{name}_loop"))?;
    body(asm)?;
    asm.a.dec(r15)?;
    asm.a.jnz(top)?;
    asm.set(&mut end)?;
    Ok(())
}

pub(crate) fn trap(asm: &mut Asm, phase: &str) -> Result<()> {
    asm.symbol(&format!("{phase}_trap")).map(|_| ())
}

fn no_setup(_: &mut Asm, _: &Params) -> Result<()> {
    Ok(())
}

/// The plain exitlab machine.
fn plain(_: &Params) -> MachineConfig {
    MachineConfig::default()
}

/// OUT of the loop counter's low byte to the POST port.
fn pio_out(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    asm.a.mov(dx, u32::from(PORT_POST))?;
    asm.a.mov(eax, r15d)?;
    trap(asm, phase)?;
    asm.a.out(dx, al)?;
    Ok(())
}

fn pio_in(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    asm.a.mov(dx, u32::from(PORT_POST))?;
    trap(asm, phase)?;
    asm.a.in_(al, dx)?;
    Ok(())
}

fn mmio_read(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rdi, MMIO_BENCH)?;
    trap(asm, phase)?;
    asm.a.mov(eax, dword_ptr(rdi))?;
    Ok(())
}

/// Stores the loop counter to the MMIO scratch device, in the instruction
/// form `form` picks: the longer the form, the more an emulating VMM must
/// fetch and decode (experiment E9): `mov [rdi], eax` (2 bytes),
/// `mov [rdi+0x10], eax` (3), `mov [rdi+rcx*8+0x7f0], rax` (8: REX, SIB,
/// disp32), `mov dword [rdi+rcx*4+0x7f0], imm32` (11).
fn mmio_write(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rdi, MMIO_BENCH)?;
    asm.a.mov(eax, r15d)?;
    asm.a.xor(ecx, ecx)?;
    trap(asm, phase)?;
    match p.int("form") {
        0 => asm.a.mov(dword_ptr(rdi), eax)?,
        1 => asm.a.mov(dword_ptr(rdi + 0x10), eax)?,
        2 => asm.a.mov(qword_ptr(rdi + rcx * 8 + 0x7f0), rax)?,
        _ => asm.a.mov(dword_ptr(rdi + rcx * 4 + 0x7f0), 0x1234_5678)?,
    }
    Ok(())
}

fn cpuid(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(eax, p.int("leaf") as u32)?;
    asm.a.xor(ecx, ecx)?;
    trap(asm, phase)?;
    asm.a.cpuid()?;
    Ok(())
}

fn rdmsr(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(ecx, p.int("msr") as u32)?;
    trap(asm, phase)?;
    asm.a.rdmsr()?;
    Ok(())
}

/// Reads the MSR once into r13 so every write stores its current value.
fn wrmsr_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    asm.a.mov(ecx, p.int("msr") as u32)?;
    asm.a.rdmsr()?;
    asm.a.shl(rdx, 32)?;
    asm.a.or(rax, rdx)?;
    asm.a.mov(r13, rax)?;
    Ok(())
}

fn wrmsr(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(ecx, p.int("msr") as u32)?;
    asm.a.mov(rax, r13)?;
    asm.a.mov(rdx, r13)?;
    asm.a.shr(rdx, 32)?;
    trap(asm, phase)?;
    asm.a.wrmsr()?;
    Ok(())
}

fn cr3_setup(asm: &mut Asm, _: &Params) -> Result<()> {
    asm.a.mov(r13, cr3)?;
    Ok(())
}

/// Reloads the same CR3: a TLB flush and, under shadow paging, an exit.
fn cr3_write(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rax, r13)?;
    trap(asm, phase)?;
    asm.a.mov(cr3, rax)?;
    Ok(())
}

/// Divide by 1, one-shot mode on the kernel's timer vector.
fn hlt_setup(asm: &mut Asm, _: &Params) -> Result<()> {
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    asm.a.mov(dword_ptr(rdi + apic::TIMER_DIVIDE as i32), apic::DIVIDE_BY_1)?;
    asm.a.mov(dword_ptr(rdi + apic::LVT_TIMER as i32), apic::TIMER_ONE_SHOT | u32::from(TIMER_VECTOR))?;
    Ok(())
}

/// Arms the one-shot timer, then `sti; hlt` (the STI shadow covers the
/// HLT, so the wake-up cannot be lost) and `cli` after the interrupt.
fn hlt(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    asm.a.mov(dword_ptr(rdi + apic::TIMER_INITIAL_COUNT as i32), p.int("timer_count") as u32)?;
    asm.a.sti()?;
    trap(asm, phase)?;
    asm.a.hlt()?;
    asm.a.cli()?;
    Ok(())
}

/// Where io-mix touches fresh pages: from 4 MiB to the end of RAM.
const FRESH_BASE: u64 = 4 << 20;

/// Counters for io-mix's page touches (r12, r13) and address-space
/// switches (r11).
fn io_mix_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    asm.a.mov(r13, FRESH_BASE)?;
    asm.a.mov(r12d, p.int("fresh_every").max(1) as u32)?;
    asm.a.mov(r11d, p.int("switch_every").max(1) as u32)?;
    Ok(())
}

/// Fixed-point 16.16 accumulator in r14: an iteration does I/O when the
/// accumulator crosses 1.0, so exactly floor(n * p) iterations of a phase
/// exit (with p rounded to 1/65536), the rest compute. Every
/// `fresh_every` iterations it writes a page it has not touched before
/// (wrapping at the end of RAM), every `switch_every` it reloads CR3 (an
/// address-space switch): what a real guest does between I/Os, and what
/// shadow paging must intercept.
fn io_mix(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    let step = (p.float("p") * 65536.0).round() as u32;
    let mut compute = asm.label();
    let mut next = asm.label();
    asm.a.add(r14d, step)?;
    asm.a.cmp(r14d, 0x1_0000)?;
    asm.a.jb(compute)?;
    asm.a.sub(r14d, 0x1_0000)?;
    if p.int("irq") == 1 {
        // A request to the doorbell device, then wait for its completion
        // interrupt.
        asm.a.mov(dx, u32::from(PORT_DOORBELL))?;
        asm.a.mov(eax, r15d)?;
        trap(asm, phase)?;
        asm.a.out(dx, al)?;
        asm.a.sti()?;
        asm.a.hlt()?;
        asm.a.cli()?;
    } else {
        asm.a.mov(dx, u32::from(PORT_POST))?;
        asm.a.mov(eax, r15d)?;
        trap(asm, phase)?;
        asm.a.out(dx, al)?;
    }
    asm.a.jmp(next)?;
    asm.set(&mut compute)?;
    asm.a.mov(ecx, p.int("work") as u32)?;
    asm.a.test(ecx, ecx)?;
    asm.a.jz(next)?;
    let mut work = asm.label();
    asm.set(&mut work)?;
    asm.a.imul_3(rax, rax, 0x5bd1_e995)?;
    asm.a.add(rax, rcx)?;
    asm.a.dec(ecx)?;
    asm.a.jnz(work)?;
    asm.set(&mut next)?;
    asm.a.nop()?;
    let fresh = p.int("fresh_every");
    if fresh > 0 {
        let mut skip = asm.label();
        let mut store = asm.label();
        asm.a.dec(r12d)?;
        asm.a.jnz(skip)?;
        asm.a.mov(r12d, fresh as u32)?;
        asm.a.add(r13, 4096)?;
        asm.a.mov(rax, DEFAULT_MEMORY)?;
        asm.a.cmp(r13, rax)?;
        asm.a.jb(store)?;
        asm.a.mov(r13, FRESH_BASE)?;
        asm.set(&mut store)?;
        asm.a.mov(byte_ptr(r13), 1)?;
        asm.set(&mut skip)?;
        asm.a.nop()?;
    }
    let switch = p.int("switch_every");
    if switch > 0 {
        let mut skip = asm.label();
        asm.a.dec(r11d)?;
        asm.a.jnz(skip)?;
        asm.a.mov(r11d, switch as u32)?;
        asm.a.mov(rax, cr3)?;
        asm.a.mov(cr3, rax)?;
        asm.set(&mut skip)?;
        asm.a.nop()?;
    }
    Ok(())
}

/// Periodic tick: the LAPIC timer in periodic mode at `tick_hz` (divide
/// by 1, the count in 1 GHz bus ticks). Tickless: divide by 128, one-shot,
/// armed per idle period.
fn idle_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    match 1_000_000_000u64.checked_div(p.int("tick_hz")) {
        None => {
            asm.a.mov(dword_ptr(rdi + apic::TIMER_DIVIDE as i32), 0b1010u32)?; // divide by 128
            asm.a.mov(dword_ptr(rdi + apic::LVT_TIMER as i32), apic::TIMER_ONE_SHOT | u32::from(TIMER_VECTOR))?;
        }
        Some(period) => {
            asm.a.mov(dword_ptr(rdi + apic::TIMER_DIVIDE as i32), apic::DIVIDE_BY_1)?;
            asm.a.mov(dword_ptr(rdi + apic::LVT_TIMER as i32), apic::TIMER_PERIODIC | u32::from(TIMER_VECTOR))?;
            asm.a.mov(dword_ptr(rdi + apic::TIMER_INITIAL_COUNT as i32), period as u32)?;
        }
    }
    Ok(())
}

/// One idle period of `period_ms`. Tickless: arm the one-shot timer for
/// the whole period (in 2^32-tick chunks of 128 ns) and halt; one wake-up
/// per chunk. Periodic: halt until the tick count has advanced by
/// `period_ms * tick_hz / 1000`; every tick wakes the vCPU.
fn idle(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    let hz = p.int("tick_hz");
    let ms = p.int("period_ms");
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    asm.a.mov(rsi, MAILBOX)?;
    let mut wait = asm.label();
    let mut done = asm.label();
    if hz == 0 {
        // r13 = ticks of 128 ns left in the period.
        asm.a.mov(r13, ms * 1_000_000 / 128)?;
        asm.set(&mut wait)?;
        asm.a.test(r13, r13)?;
        asm.a.jz(done)?;
        asm.a.mov(eax, 0xffff_ffffu32)?;
        asm.a.cmp(r13, rax)?;
        asm.a.cmovb(rax, r13)?;
        asm.a.sub(r13, rax)?;
        asm.a.mov(dword_ptr(rdi + apic::TIMER_INITIAL_COUNT as i32), eax)?;
    } else {
        // r13 = the tick count that ends the period.
        asm.a.mov(r13, qword_ptr(rsi + crate::kernel::mailbox::TICKS))?;
        asm.a.add(r13, (ms * hz / 1000).max(1) as i32)?;
        asm.set(&mut wait)?;
        asm.a.cmp(qword_ptr(rsi + crate::kernel::mailbox::TICKS), r13)?;
        asm.a.jae(done)?;
    }
    asm.a.sti()?;
    trap(asm, phase)?;
    asm.a.hlt()?;
    asm.a.cli()?;
    asm.a.jmp(wait)?;
    asm.set(&mut done)?;
    asm.a.nop()?;
    Ok(())
}

const BOOLS: &[&str] = &["true", "false"];

fn interrupts_on(asm: &mut Asm, _: &Params) -> Result<()> {
    asm.a.sti()?;
    Ok(())
}

/// A self-IPI on the device vector; the kernel's handler takes it and
/// acknowledges it with an EOI. Two local-APIC writes per iteration.
fn apic_eoi(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    trap(asm, phase)?;
    asm.a.mov(dword_ptr(rdi + apic::ICR_LOW as i32), 1 << 18 | u32::from(DEVICE_VECTOR))?;
    asm.a.nop()?;
    Ok(())
}

/// The block device's DMA window, 16 MiB up: its request ring, then one
/// 512-byte buffer per ring entry.
const BLK_DMA: u64 = 16 << 20;
const BLK_DMA_LEN: u64 = 1 << 20;
const BLK_RING: u64 = BLK_DMA;
const BLK_BUFS: u64 = BLK_DMA + 0x1000;
/// Entries in the ring, and the requests the driver keeps in flight by
/// default: the whole ring, so the device is never idle and completes at
/// its own rate.
const BLK_DEPTH: u32 = 16;
/// Per completion taken: the TSC when the driver took it and the device's
/// completion time (ns), 16 bytes, in order: the VMM turns the pairs into
/// interrupt latencies.
pub const IRQ_LATENCY_LOG: u64 = 18 << 20;
const IRQ_LATENCY_ENTRIES: u32 = 0x1_0000;

/// The block device at `rate` over its DMA window, interrupts posted or
/// not, the completion counters and the latency log of the measured
/// completions.
fn device_irq_machine(p: &Params) -> MachineConfig {
    let rate = NonZeroU64::new(p.int("rate")).expect("`rate` is at least 1");
    MachineConfig {
        block: Some(Block { rate, dma: Some(GuestRange { start: BLK_DMA, len: BLK_DMA_LEN }) }),
        posted_interrupts: BOOLS[p.choice("posted")] == "true",
        counters: vec!["blk_completions".into(), "blk_errors".into()],
        irq_latency_log: Some(GuestLog { gpa: IRQ_LATENCY_LOG, first: p.int("warmup"), count: p.int("n") }),
        ..MachineConfig::default()
    }
}

/// Points the block device at its ring, fills every entry with a one-
/// sector read into its own buffer, submits `depth` of them and enables
/// interrupts. r12d: requests submitted; r13d: completions processed;
/// r11d: the device's HEAD as last read; r10: the interrupt count taken
/// before that read; rdi: the device's registers.
fn blk_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    let a = &mut asm.a;
    a.mov(rsi, MAILBOX)?;
    a.mov(r10, qword_ptr(rsi + crate::kernel::mailbox::TICKS))?;
    a.mov(rdi, BLK_BAR)?;
    a.mov(dword_ptr(rdi + blk::RING_LO as i32), BLK_RING as u32)?;
    a.mov(dword_ptr(rdi + blk::RING_HI as i32), 0)?;
    a.mov(dword_ptr(rdi + blk::RING_SIZE as i32), BLK_DEPTH)?;
    a.mov(rbx, BLK_RING)?;
    for i in 0..u64::from(BLK_DEPTH) {
        let at = (i * blk::REQUEST) as i32;
        a.mov(byte_ptr(rbx + at + blk::REQ_OP as i32), u32::from(blk::OP_READ))?;
        a.mov(dword_ptr(rbx + at + blk::REQ_SECTORS as i32), 1)?;
        a.mov(qword_ptr(rbx + at + blk::REQ_LBA as i32), i as i32)?;
        a.mov(rax, BLK_BUFS + i * blk::SECTOR)?;
        a.mov(qword_ptr(rbx + at + blk::REQ_BUF as i32), rax)?;
    }
    a.mov(r12d, p.int("depth") as u32)?;
    a.xor(r13d, r13d)?;
    a.xor(r11d, r11d)?;
    a.mov(dword_ptr(rdi + blk::TAIL as i32), r12d)?;
    a.sti()?;
    Ok(())
}

/// Takes one completed request: waits (spinning) for the device's
/// interrupt and reads HEAD when none is known, checks the request's
/// status (counting completions and errors in guest counters 0 and 1),
/// and submits it again. One completion per iteration. The interrupt
/// count is taken before each HEAD read and the wait is for it to move
/// past that, so a completion that lands between the read and the wait
/// is not slept through (with every request completed, no later
/// interrupt would come: on KVM, whose device runs beside a slow guest,
/// that hung the run).
fn device_irq(asm: &mut Asm, _: &Params, phase: &str) -> Result<()> {
    let mut top = asm.label();
    let mut have = asm.label();
    let mut wait = asm.label();
    let mut ok = asm.label();
    asm.a.mov(rsi, MAILBOX)?;
    asm.set(&mut top)?;
    asm.a.cmp(r13d, r11d)?;
    asm.a.jne(have)?;
    asm.set(&mut wait)?;
    asm.a.pause()?;
    asm.a.cmp(qword_ptr(rsi + crate::kernel::mailbox::TICKS), r10)?;
    asm.a.je(wait)?;
    asm.a.mov(r10, qword_ptr(rsi + crate::kernel::mailbox::TICKS))?;
    asm.a.mov(r11d, dword_ptr(rdi + blk::HEAD as i32))?;
    asm.a.jmp(top)?;
    asm.set(&mut have)?;
    asm.a.mov(eax, r13d)?;
    asm.a.and(eax, BLK_DEPTH - 1)?;
    asm.a.shl(eax, 5)?;
    asm.a.mov(rbx, BLK_RING)?;
    asm.a.add(rbx, rax)?;
    let mut full = asm.label();
    asm.a.cmp(r13d, IRQ_LATENCY_ENTRIES)?;
    asm.a.jae(full)?;
    asm.a.rdtsc()?;
    asm.a.shl(rdx, 32)?;
    asm.a.or(rax, rdx)?;
    asm.a.mov(ecx, r13d)?;
    asm.a.shl(rcx, 4)?;
    asm.a.mov(rdx, IRQ_LATENCY_LOG)?;
    asm.a.add(rcx, rdx)?;
    asm.a.mov(qword_ptr(rcx), rax)?;
    asm.a.mov(rax, qword_ptr(rbx + blk::REQ_DONE_NS as i32))?;
    asm.a.mov(qword_ptr(rcx + 8), rax)?;
    asm.set(&mut full)?;
    asm.a.mov(rax, GUEST_COUNTERS)?;
    asm.a.inc(qword_ptr(rax))?;
    asm.a.cmp(byte_ptr(rbx + blk::REQ_STATUS as i32), u32::from(blk::ST_OK))?;
    asm.a.je(ok)?;
    asm.a.inc(qword_ptr(rax + 8))?;
    asm.set(&mut ok)?;
    asm.a.mov(byte_ptr(rbx + blk::REQ_STATUS as i32), 0xff)?;
    asm.a.inc(r13d)?;
    asm.a.inc(r12d)?;
    trap(asm, phase)?;
    asm.a.mov(dword_ptr(rdi + blk::TAIL as i32), r12d)?;
    Ok(())
}

/// Where page-writes writes: 8 MiB up, one write per page in turn.
const WATCH_BASE: u64 = 8 << 20;
/// The VMM's ways of recording page-writes' writes.
const MONITORS: &[&str] = &["none", "write-protect", "pml"];

/// The monitor over the pages written.
fn page_writes_machine(p: &Params) -> MachineConfig {
    let kind = match MONITORS[p.choice("monitor")] {
        "write-protect" => Some(MonitorKind::WriteProtect),
        "pml" => Some(MonitorKind::Pml),
        _ => None,
    };
    let range = GuestRange { start: WATCH_BASE, len: p.int("pages") * 4096 };
    MachineConfig { monitor: kind.map(|kind| WriteMonitor { kind, range }), ..MachineConfig::default() }
}

fn page_writes_setup(asm: &mut Asm, _: &Params) -> Result<()> {
    asm.a.mov(r13, WATCH_BASE)?;
    Ok(())
}

/// `writes` stores of a quadword, page after page through `pages` pages,
/// wrapping to the first page after the last.
fn page_writes(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    let (pages, writes) = (p.int("pages"), p.int("writes"));
    let mut top = asm.label();
    let mut done = asm.label();
    let mut store = asm.label();
    asm.a.mov(r12, writes)?;
    asm.a.test(r12, r12)?;
    asm.a.jz(done)?;
    asm.set(&mut top)?;
    asm.a.mov(rax, r12)?;
    trap(asm, phase)?;
    asm.a.mov(qword_ptr(r13), rax)?;
    asm.a.add(r13, 4096)?;
    asm.a.mov(rax, WATCH_BASE + pages * 4096)?;
    asm.a.cmp(r13, rax)?;
    asm.a.jb(store)?;
    asm.a.mov(r13, WATCH_BASE)?;
    asm.set(&mut store)?;
    asm.a.dec(r12)?;
    asm.a.jnz(top)?;
    asm.set(&mut done)?;
    asm.a.nop()?;
    Ok(())
}

/// The page the VMM isolates for `isolation` (a sensitive driver's data,
/// 7 MiB up), and the virtual address the untrusted code aliases onto it
/// by rewriting a page-directory entry: 2 GiB + 1 MiB, in the 2 MiB page
/// the alias maps at guest-physical 6 MiB.
const SECRET: u64 = 7 << 20;
const ALIAS: u64 = 0x8010_0000;

/// The secret page isolated, and the attempts counted.
fn isolation_machine(_: &Params) -> MachineConfig {
    MachineConfig {
        isolate: vec![GuestRange { start: SECRET, len: 0x1000 }],
        counters: vec!["attempts".into()],
        ..MachineConfig::default()
    }
}

/// Rewrites the page-directory entry of the 2 MiB page at 2 GiB (the third
/// page directory, entry 0) to map guest-physical 6 MiB, writable, and
/// drops the old translation: ALIAS now reaches SECRET through the guest's
/// own tables.
fn isolation_setup(asm: &mut Asm, _: &Params) -> Result<()> {
    use exitlab_arch::bits::pte;
    asm.a.mov(rdi, PD + 2 * 0x1000)?;
    asm.a.mov(rax, (6u64 << 20) | pte::P | pte::RW | pte::PS)?;
    asm.a.mov(qword_ptr(rdi), rax)?;
    asm.a.mov(rdi, ALIAS)?;
    asm.a.invlpg(byte_ptr(rdi))?;
    Ok(())
}

/// One attempt on the isolated page, counted in guest counter 0: `trick`
/// 0 writes it through the kernel's identity map, 1 writes it through the
/// alias, 2 reads it through the alias.
fn isolation(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    asm.a.mov(rsi, GUEST_COUNTERS)?;
    asm.a.inc(qword_ptr(rsi))?;
    asm.a.mov(rdi, if p.int("trick") == 0 { SECRET } else { ALIAS })?;
    asm.a.mov(eax, 0x6666_6666)?;
    trap(asm, phase)?;
    match p.int("trick") {
        0 | 1 => asm.a.mov(dword_ptr(rdi), eax)?,
        _ => asm.a.mov(eax, dword_ptr(rdi))?,
    }
    Ok(())
}

/// Where tsx's transactions write: 12 MiB up, one cache line per step.
const TX_BASE: u64 = 12 << 20;

/// RTM, the commit and abort counters, and the host timer.
fn tsx_machine(p: &Params) -> MachineConfig {
    MachineConfig {
        needs: vec![CpuFeature::Tsx],
        counters: vec!["tx_commits".into(), "tx_aborts".into()],
        host_timer_hz: NonZeroU64::new(p.int("timer_hz")),
        ..MachineConfig::default()
    }
}

/// One RTM transaction writing `len` consecutive cache lines; the guest
/// counts commits and aborts in its counter slots 0 and 1.
fn tsx(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    let mut fallback = asm.label();
    let mut top = asm.label();
    let mut done = asm.label();
    asm.a.mov(rsi, GUEST_COUNTERS)?;
    asm.a.mov(rdi, TX_BASE)?;
    asm.a.mov(ecx, p.int("len") as u32)?;
    trap(asm, phase)?;
    asm.a.xbegin(fallback)?;
    asm.set(&mut top)?;
    asm.a.mov(qword_ptr(rdi), rcx)?;
    asm.a.add(rdi, 64)?;
    asm.a.dec(ecx)?;
    asm.a.jnz(top)?;
    asm.a.xend()?;
    asm.a.inc(qword_ptr(rsi))?;
    asm.a.jmp(done)?;
    asm.set(&mut fallback)?;
    asm.a.inc(qword_ptr(rsi + 8))?;
    asm.set(&mut done)?;
    asm.a.nop()?;
    Ok(())
}

/// Faults on purpose so the kernel's report path can be checked: kind 0
/// executes UD2 (#UD), 1 reads 4 GiB, past the identity map (#PF, error
/// code 0, CR2 = 4 GiB), 2 reads a non-canonical address (#GP(0)).
fn fault(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    match p.int("kind") {
        0 => {
            asm.a.nop()?; // the loop label needs an instruction of its own
            trap(asm, phase)?;
            asm.a.ud2()?;
        }
        kind => {
            let addr: u64 = if kind == 1 { 1 << 32 } else { 1 << 63 };
            asm.a.mov(rax, addr)?;
            trap(asm, phase)?;
            asm.a.mov(al, byte_ptr(rax))?;
        }
    }
    Ok(())
}

/// The workloads `exitlab list` shows, in its order.
const PACKETS: ParamSpec = ParamSpec::int("packets", 1, 100_000, 1000, "echoes measured (the measure phase)");
const SIZE: ParamSpec = ParamSpec::int("size", 60, 1514, 64, "frame bytes, Ethernet header included");
const WINDOW: ParamSpec = ParamSpec::int("window", 1, crate::pingpong::MAX_WINDOW, 1, "frames in flight at once");
const WIRE_NS: ParamSpec = ParamSpec::int("wire_ns", 0, 10_000_000, 5_000, "one-way wire delay to the echo peer (ns)");
const COALESCE_N: ParamSpec =
    ParamSpec::int("coalesce_n", 0, 64, 0, "interrupt after this many completions (0 or 1: every one)");
const COALESCE_US: ParamSpec =
    ParamSpec::int("coalesce_us", 0, 10_000, 0, "...or this long after the first unsignalled one (us)");
const COALESCE_US_ITR: ParamSpec = ParamSpec::int(
    "coalesce_us",
    0,
    16_000,
    0,
    "interrupt throttling: at least this long between interrupts (ITR, us)",
);
const DRAIN: ParamSpec = ParamSpec::int(
    "drain",
    0,
    1,
    0,
    "1: end setup and each phase only once every frame sent came back and its interrupt was taken (window=1)",
);

pub static WORKLOADS: &[Workload] = &[
    Workload {
        name: "pio-out",
        summary: "OUT to the POST port 0x80: one IO_INSTRUCTION exit per iteration",
        own_params: &[RING3],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: pio_out,
        machine: plain,
    },
    Workload {
        name: "pio-in",
        summary: "IN from the POST port 0x80: one IO_INSTRUCTION exit per iteration",
        own_params: &[RING3],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: pio_in,
        machine: plain,
    },
    Workload {
        name: "mmio-read",
        summary: "32-bit load from the MMIO scratch device at 0xd0000000 (no RAM: every access exits)",
        own_params: &[RING3],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: mmio_read,
        machine: plain,
    },
    Workload {
        name: "mmio-write",
        summary: "store to the MMIO scratch device at 0xd0000000 (no RAM: every access exits)",
        own_params: &[RING3, ParamSpec::int("form", 0, 3, 0, "instruction form: 0-3, 2 to 11 bytes long")],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: mmio_write,
        machine: plain,
    },
    Workload {
        name: "cpuid",
        summary: "CPUID (always intercepted under VMX; KVM answers it in the kernel)",
        own_params: &[RING3, ParamSpec::int("leaf", 0, 0xffff_ffff, 0, "CPUID leaf (EAX)")],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: cpuid,
        machine: plain,
    },
    Workload {
        name: "rdmsr",
        summary: "RDMSR of an intercepted MSR (default IA32_APIC_BASE)",
        own_params: &[ParamSpec::int("msr", 0, 0xffff_ffff, msr::IA32_APIC_BASE as u64, "MSR index (ECX)")],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: rdmsr,
        machine: plain,
    },
    Workload {
        name: "wrmsr",
        summary: "WRMSR of an MSR's own value (default IA32_EFER, never passed through)",
        own_params: &[ParamSpec::int("msr", 0, 0xffff_ffff, msr::IA32_EFER as u64, "MSR index (ECX)")],
        common_defaults: &[],
        count: "n",
        setup: wrmsr_setup,
        iteration: wrmsr,
        machine: plain,
    },
    Workload {
        name: "cr3-write",
        summary: "MOV to CR3 of the current page-table root: exits under shadow paging, not with EPT",
        own_params: &[],
        common_defaults: &[],
        count: "n",
        setup: cr3_setup,
        iteration: cr3_write,
        machine: plain,
    },
    Workload {
        name: "hlt",
        summary: "HLT woken by a one-shot LAPIC timer interrupt",
        own_params: &[ParamSpec::int(
            "timer_count",
            1,
            1_000_000_000,
            10_000,
            "LAPIC timer initial count (divide by 1)",
        )],
        common_defaults: &[],
        count: "n",
        setup: hlt_setup,
        iteration: hlt,
        machine: plain,
    },
    Workload {
        name: "io-mix",
        summary: "fraction p of iterations OUT to port 0x80, the rest run a compute loop",
        own_params: &[
            RING3,
            ParamSpec::float("p", 0.0, 1.0, 0.5, "fraction of iterations that do port I/O"),
            ParamSpec::int("work", 0, 1_000_000, 50, "compute-loop trips in a non-I/O iteration"),
            ParamSpec::int("fresh_every", 0, 1_000_000, 0, "write a never-touched page every N iterations (0: never)"),
            ParamSpec::int("switch_every", 0, 1_000_000, 0, "reload CR3 every N iterations, ring 0 only (0: never)"),
            ParamSpec::int(
                "irq",
                0,
                1,
                0,
                "1: I/O goes to the doorbell device and waits for its completion interrupt (ring 0)",
            ),
        ],
        common_defaults: &[],
        count: "n",
        setup: io_mix_setup,
        iteration: io_mix,
        machine: plain,
    },
    Workload {
        name: "idle",
        summary: "idle periods of period_ms: periodic tick at tick_hz, or tickless (tick_hz=0, one timer per period)",
        own_params: &[
            ParamSpec::int("period_ms", 1, 3_600_000, 1000, "length of one idle period in milliseconds"),
            ParamSpec::int("tick_hz", 0, 10_000, 0, "periodic tick rate in Hz; 0 = tickless"),
        ],
        common_defaults: &[],
        count: "n",
        setup: idle_setup,
        iteration: idle,
        machine: plain,
    },
    Workload {
        name: "apic-eoi",
        summary: "self-IPIs acknowledged with EOI: local-APIC accesses, which exit without APIC virtualization",
        own_params: &[],
        common_defaults: &[],
        count: "n",
        setup: interrupts_on,
        iteration: apic_eoi,
        machine: plain,
    },
    Workload {
        name: "device-irq",
        summary: "keeps a block device's ring full and takes its completion interrupts (`rate` per second)",
        own_params: &[
            ParamSpec::int(
                "rate",
                1,
                1_000_000,
                100_000,
                "requests the block device completes per second of guest time",
            ),
            ParamSpec::int(
                "depth",
                1,
                BLK_DEPTH as u64,
                BLK_DEPTH as u64,
                "requests in flight; 1: every HEAD read finds exactly one completion, whatever the timing",
            ),
            ParamSpec::choice(
                "posted",
                BOOLS,
                0,
                "posted interrupts (when the hardware has them); false: every interrupt exits",
            ),
        ],
        common_defaults: &[],
        count: "n",
        setup: blk_setup,
        iteration: device_irq,
        machine: device_irq_machine,
    },
    Workload {
        name: "page-writes",
        summary: "writes pages in turn while the VMM watches them (write-protect traps or PML)",
        own_params: &[
            ParamSpec::int("pages", 1, 4096, 512, "distinct 4 KiB pages written, from 8 MiB"),
            ParamSpec::int("writes", 0, 10_000_000, 2048, "writes per iteration, one page after another"),
            ParamSpec::choice("monitor", MONITORS, 0, "how the VMM records the writes"),
        ],
        common_defaults: &[("n", 1), ("warmup", 0)],
        count: "n",
        setup: page_writes_setup,
        iteration: page_writes,
        machine: page_writes_machine,
    },
    Workload {
        name: "tsx",
        summary: "RTM transactions writing `len` cache lines under a host timer of timer_hz; counts commits and aborts",
        own_params: &[
            ParamSpec::int("len", 1, 4096, 64, "cache lines written per transaction"),
            ParamSpec::int("timer_hz", 0, 10_000_000, 1000, "host timer interrupts per second (0: none)"),
        ],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: tsx,
        machine: tsx_machine,
    },
    Workload {
        name: "fault",
        summary: "raises an exception on its first iteration, to show how guest errors are reported",
        own_params: &[
            RING3,
            ParamSpec::int("kind", 0, 2, 0, "0: #UD (UD2), 1: #PF (read past 4 GiB), 2: #GP (non-canonical read)"),
        ],
        common_defaults: &[],
        count: "n",
        setup: no_setup,
        iteration: fault,
        machine: plain,
    },
    Workload {
        name: "isolation",
        summary: "untrusted code writes (or reads) a page the VMM isolates in the EPT, directly or through an aliasing page-table entry it forged",
        own_params: &[ParamSpec::int("trick", 0, 2, 1, "0: write through the identity map, 1: write through a forged alias, 2: read through it")],
        common_defaults: &[],
        count: "n",
        setup: isolation_setup,
        iteration: isolation,
        machine: isolation_machine,
    },
    Workload {
        name: "e1000-pingpong",
        summary: "echoes `packets` frames through an emulated e1000, `window` in flight; logs round trips",
        own_params: &[PACKETS, SIZE, WINDOW, WIRE_NS, COALESCE_US_ITR, DRAIN],
        common_defaults: &[],
        count: "packets",
        setup: crate::pingpong::e1000_setup,
        iteration: crate::pingpong::e1000_iteration,
        machine: crate::pingpong::e1000_machine,
    },
    Workload {
        name: "virtio-pingpong",
        summary: "echoes `packets` frames through virtio-net (virtio-mmio), `window` in flight; logs round trips",
        own_params: &[
            PACKETS,
            SIZE,
            WINDOW,
            WIRE_NS,
            COALESCE_N,
            COALESCE_US,
            ParamSpec::choice("kicks", crate::pingpong::KICKS, 0, "notifying the device: event-idx, every frame, or the coalescing doorbell"),
            ParamSpec::int("kick_n", 1, 64, 4, "doorbell: tell the VMM after this many kicks..."),
            ParamSpec::int("kick_us", 0, 10_000, 50, "...or this long after the first untold one (us)"),
        ],
        common_defaults: &[],
        count: "packets",
        setup: crate::pingpong::virtio_setup,
        iteration: crate::pingpong::virtio_iteration,
        machine: crate::pingpong::virtio_machine,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn e1000_drain_needs_one_frame_in_flight() {
        let w = find("e1000-pingpong").unwrap();
        let plain = w.build(&w.resolve([]).unwrap()).unwrap();
        let drained = w.build(&w.resolve(["drain=1"]).unwrap()).unwrap();
        assert!(drained.bytes.len() > plain.bytes.len(), "drain=1 adds the wait and the ISR's count");
        let e = w.build(&w.resolve(["drain=1", "window=2"]).unwrap()).unwrap_err();
        assert_eq!(e.0, "e1000-pingpong: drain=1 needs window=1 (one interrupt per echo)");
    }

    fn decode_at(img: &Image, addr: u64) -> iced_x86::Instruction {
        let off = (addr - img.load_gpa) as usize;
        Decoder::with_ip(64, &img.bytes[off..], addr, DecoderOptions::NONE).decode()
    }

    #[test]
    fn every_workload_builds_with_defaults() {
        for w in WORKLOADS {
            let img = w.build(&w.resolve([]).unwrap()).unwrap();
            assert_eq!(img.entry, IMAGE_BASE);
            assert!(img.symbol("measure_trap").is_some(), "{}", w.name);
            assert!(img.symbol("exit").is_some());
            assert!(img.code_len < img.bytes.len());
        }
    }

    #[test]
    fn trap_symbols_name_the_exiting_instruction() {
        let expect = [
            ("pio-out", Mnemonic::Out),
            ("pio-in", Mnemonic::In),
            ("mmio-read", Mnemonic::Mov),
            ("mmio-write", Mnemonic::Mov),
            ("cpuid", Mnemonic::Cpuid),
            ("rdmsr", Mnemonic::Rdmsr),
            ("wrmsr", Mnemonic::Wrmsr),
            ("cr3-write", Mnemonic::Mov),
            ("hlt", Mnemonic::Hlt),
            ("io-mix", Mnemonic::Out),
            ("fault", Mnemonic::Ud2),
            ("idle", Mnemonic::Hlt),
            ("page-writes", Mnemonic::Mov),
            ("apic-eoi", Mnemonic::Mov),
            ("device-irq", Mnemonic::Mov),
            ("isolation", Mnemonic::Mov),
            ("e1000-pingpong", Mnemonic::Mov),
            ("virtio-pingpong", Mnemonic::Mov),
        ];
        for (name, m) in expect {
            let w = find(name).unwrap();
            let img = w.build(&w.resolve([]).unwrap()).unwrap();
            let i = decode_at(&img, img.symbol("measure_trap").unwrap());
            assert_eq!(i.mnemonic(), m, "{name}");
        }
    }

    #[test]
    fn idt_gates_point_at_handlers() {
        let w = find("hlt").unwrap();
        let img = w.build(&w.resolve([]).unwrap()).unwrap();
        let idt = (img.symbol("idt").unwrap() - img.load_gpa) as usize;
        let gate = |v: usize| {
            let g = &img.bytes[idt + v * 16..][..16];
            let lo = u64::from(u16::from_le_bytes([g[0], g[1]]));
            let mid = u64::from(u16::from_le_bytes([g[6], g[7]]));
            let hi = u64::from(u32::from_le_bytes([g[8], g[9], g[10], g[11]]));
            assert_eq!(g[5], 0x8e);
            assert_eq!(u16::from_le_bytes([g[2], g[3]]), KERNEL_CS);
            lo | mid << 16 | hi << 32
        };
        assert_eq!(gate(TIMER_VECTOR as usize), img.symbol("timer_isr").unwrap());
        assert_eq!(gate(SPURIOUS_VECTOR as usize), img.symbol("spurious_isr").unwrap());
        // #UD has no error code: its stub pushes 0, then the vector.
        let ud = decode_at(&img, gate(6));
        assert_eq!(ud.mnemonic(), Mnemonic::Push);
        assert_eq!(ud.immediate32(), 0);
        // #GP has one: its stub pushes only the vector.
        let gp = decode_at(&img, gate(13));
        assert_eq!(gp.immediate32(), 13);
    }

    #[test]
    fn ring3_variant_enters_user_mode() {
        let w = find("pio-out").unwrap();
        let img = w.build(&w.resolve(["ring3=1"]).unwrap()).unwrap();
        assert!(img.symbol("user_body").is_some());
        let plain = w.build(&w.resolve([]).unwrap()).unwrap();
        assert!(plain.symbol("user_body").is_none());
    }

    #[test]
    fn ring0_only_parameters_are_refused_in_ring3_before_anything_runs() {
        let w = find("io-mix").unwrap();
        for (set, key) in [(["ring3=1", "irq=1"], "irq"), (["switch_every=4", "ring3=1"], "switch_every")] {
            let e = w.resolve(set).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("parameter `{key}` cannot be set with `ring3=1`: its code runs privileged instructions, which fault in ring 3")
            );
        }
        assert!(w.resolve(["ring3=1", "irq=0", "switch_every=0"]).is_ok());
        assert!(w.resolve(["ring3=0", "irq=1", "switch_every=4"]).is_ok());
    }

    #[test]
    fn disassembly_shows_symbols_and_instructions() {
        let w = find("cpuid").unwrap();
        let text = w.build(&w.resolve([]).unwrap()).unwrap().disassemble();
        assert!(text.contains("measure_trap:\n"));
        assert!(text.contains("cpuid"));
        assert!(text.contains("lidt"));
        assert!(text.contains("idt: data at"));
    }
}

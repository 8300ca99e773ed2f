//! The simulator against the host's KVM, an independent x86 implementation.
//!
//! 1. Every built-in workload runs on both: the userspace-visible exits
//!    (port I/O and MMIO: reason, port or address, direction, data) must
//!    come in the same order with the same values, and the final registers
//!    must match.
//! 2. Random straight-line instruction sequences run in ring 3, where this
//!    host's KVM executes guest code on the CPU itself: registers, the
//!    architecturally defined RFLAGS bits and memory must match silicon.
//!    `EXITLAB_DIFF_CASES` sets the case count (default 24).
//!
//! Without a usable KVM the tests print why and pass.

use exitlab_arch::bits::rflags::{AF, CF, OF, PF, SF, STATUS, ZF};
use exitlab_arch::ExitReason;
use exitlab_guest::layout::USER_STACK_TOP;
use exitlab_guest::program::{program, Ring, Start};
use exitlab_guest::Image;
use exitlab_hv::Vm;
use exitlab_kvm::KvmVm;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image_with, Access, GuestError, Outcome, RunOptions, RunReport};
use iced_x86::code_asm::*;
use proptest::prelude::*;

#[path = "differential/fp.rs"]
mod fp;

fn kvm(img: &Image) -> Option<KvmVm> {
    match KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) {
        Ok(vm) => Some(vm),
        Err(e) => {
            eprintln!("skipping differential test: {e}");
            None
        }
    }
}

fn traced<V: Vm>(vm: &mut V, img: &Image) -> RunReport {
    run_image_with(vm, img, &RunOptions { trace: true, ..RunOptions::default() }).unwrap()
}

/// Ports KVM's in-kernel irqchip claims (the 8259 pair): their accesses
/// never reach userspace on KVM, while the simulator's VMM models them.
fn in_kernel_on_kvm(a: &Access) -> bool {
    matches!(a, Access::Port { port: 0x20 | 0x21 | 0xa0 | 0xa1, .. })
}

/// The exits KVM hands to userspace, as (reason, access).
fn visible(r: &RunReport) -> Vec<(ExitReason, Access)> {
    r.trace
        .iter()
        .filter(|t| matches!(t.record.reason, ExitReason::IoInstruction | ExitReason::EptMisconfig))
        .filter(|t| !in_kernel_on_kvm(&t.access))
        .map(|t| (t.record.reason, t.access))
        .collect()
}

/// The first place two exit sequences differ, if any.
fn first_difference(a: &[(ExitReason, Access)], b: &[(ExitReason, Access)]) -> Option<String> {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    (a.len() != b.len() || i < a.len())
        .then(|| format!("exit #{i} of {}/{}: sim {:?}, kvm {:?}", a.len(), b.len(), a.get(i), b.get(i)))
}

/// This host's KVM reports IOPL 0 for ring-3 code that IRETQ'd to IOPL 3
/// (docs/DESIGN.md, Host findings), also in the RFLAGS an exception pushes;
/// IOPL is left out of those comparisons.
fn without_iopl(o: &Outcome) -> Outcome {
    match o {
        Outcome::GuestError(GuestError::Exception(r)) => {
            let mut r = *r;
            r.rflags &= !exitlab_arch::bits::rflags::IOPL;
            Outcome::GuestError(GuestError::Exception(r))
        }
        other => other.clone(),
    }
}

#[test]
fn every_workload_gives_the_same_visible_exits_and_registers() {
    let cases: &[(&str, &[&str])] = &[
        ("pio-out", &["n=200", "warmup=3"]),
        ("pio-out", &["n=50", "ring3=1"]),
        ("pio-in", &["n=200", "warmup=3"]),
        ("mmio-read", &["n=200", "warmup=3"]),
        ("mmio-write", &["n=200", "warmup=3"]),
        ("mmio-write", &["n=20", "ring3=1"]),
        ("cpuid", &["n=100", "warmup=3"]),
        ("rdmsr", &["n=100", "warmup=3"]),
        ("wrmsr", &["n=100", "warmup=3"]),
        ("cr3-write", &["n=100", "warmup=3"]),
        ("hlt", &["n=50", "warmup=3"]),
        ("io-mix", &["n=300", "p=0.37", "work=5"]),
        ("io-mix", &["n=300", "p=0.5", "work=20", "ring3=1"]),
        ("io-mix", &["n=200", "p=0.5", "irq=1", "fresh_every=8", "switch_every=16"]),
        ("idle", &["n=2", "warmup=0", "period_ms=2", "tick_hz=1000"]),
        ("idle", &["n=2", "warmup=0", "period_ms=2"]),
        ("fault", &["kind=0", "warmup=0"]),
        ("fault", &["kind=1", "warmup=0", "ring3=1"]),
        ("fault", &["kind=2", "warmup=0"]),
    ];
    for (name, sets) in cases {
        let w = exitlab_guest::find_workload(name).unwrap();
        let img = w.build(&w.resolve(sets.iter().copied()).unwrap()).unwrap();
        let Some(mut kvm_vm) = kvm(&img) else { return };
        let on_kvm = traced(&mut kvm_vm, &img);
        let on_sim = traced(&mut SimVm::new(img.memory_size).unwrap(), &img);
        let what = format!("{name} {sets:?}");
        assert_eq!(without_iopl(&on_sim.outcome), without_iopl(&on_kvm.outcome), "{what}: outcome");
        if let Some(d) = first_difference(&visible(&on_sim), &visible(&on_kvm)) {
            panic!("{what}: userspace-visible exits differ: {d}");
        }
        // CPUID's outputs describe the CPU model, which differs by design.
        let model_specific: &[usize] = if *name == "cpuid" { &[0, 1, 2, 3] } else { &[] };
        for i in (0..16).filter(|i| !model_specific.contains(i)) {
            assert_eq!(on_sim.regs.gpr[i], on_kvm.regs.gpr[i], "{what}: {}", exitlab_arch::Regs::NAMES[i]);
        }
        if matches!(on_kvm.outcome, Outcome::Exited { .. }) {
            assert_eq!(on_sim.regs.rip, on_kvm.regs.rip, "{what}: rip");
            // IOPL: see `without_iopl`.
            let iopl = exitlab_arch::bits::rflags::IOPL;
            assert_eq!(on_sim.regs.rflags & !iopl, on_kvm.regs.rflags & !iopl, "{what}: rflags");
        }
    }
}

/// Where the random programs' memory operands point: rbx holds it.
const SCRATCH: u64 = 0x20_0000;
const SCRATCH_LEN: usize = 256;
const STACK_WINDOW: usize = 256;

/// Registers the generator may write: everything but rbx (the scratch
/// base) and rsp.
const R64: [AsmRegister64; 14] = [rax, rcx, rdx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
const R32: [AsmRegister32; 14] = [eax, ecx, edx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d];
const R16: [AsmRegister16; 14] = [ax, cx, dx, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w];
const R8: [AsmRegister8; 14] = [al, cl, dl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b];

fn mem(size: u8, disp: u64) -> AsmMemoryOperand {
    let d = (disp % (SCRATCH_LEN as u64 - 8)) as i32;
    match size {
        1 => byte_ptr(rbx + d),
        2 => word_ptr(rbx + d),
        4 => dword_ptr(rbx + d),
        _ => qword_ptr(rbx + d),
    }
}

/// `$body` with `$r` bound to register `$i` of size `$size`.
macro_rules! reg {
    ($size:expr, $i:expr, |$r:ident| $body:expr) => {
        match $size {
            1 => {
                let $r = R8[$i];
                $body
            }
            2 => {
                let $r = R16[$i];
                $body
            }
            4 => {
                let $r = R32[$i];
                $body
            }
            _ => {
                let $r = R64[$i];
                $body
            }
        }
    };
}

macro_rules! regs2 {
    ($size:expr, $i:expr, $j:expr, |$d:ident, $s:ident| $body:expr) => {
        match $size {
            1 => {
                let ($d, $s) = (R8[$i], R8[$j]);
                $body
            }
            2 => {
                let ($d, $s) = (R16[$i], R16[$j]);
                $body
            }
            4 => {
                let ($d, $s) = (R32[$i], R32[$j]);
                $body
            }
            _ => {
                let ($d, $s) = (R64[$i], R64[$j]);
                $body
            }
        }
    };
}

/// As `reg!`/`regs2!` for instructions without a byte form.
macro_rules! regw {
    ($size:expr, $i:expr, |$r:ident| $body:expr) => {
        match $size {
            2 => {
                let $r = R16[$i];
                $body
            }
            4 => {
                let $r = R32[$i];
                $body
            }
            _ => {
                let $r = R64[$i];
                $body
            }
        }
    };
}

macro_rules! regs2w {
    ($size:expr, $i:expr, $j:expr, |$d:ident, $s:ident| $body:expr) => {
        match $size {
            2 => {
                let ($d, $s) = (R16[$i], R16[$j]);
                $body
            }
            4 => {
                let ($d, $s) = (R32[$i], R32[$j]);
                $body
            }
            _ => {
                let ($d, $s) = (R64[$i], R64[$j]);
                $body
            }
        }
    };
}

/// The eight classic ALU operations on any operand pair.
macro_rules! alu {
    ($a:expr, $op:expr, $d:expr, $s:expr) => {
        match $op {
            0 => $a.add($d, $s),
            1 => $a.or($d, $s),
            2 => $a.adc($d, $s),
            3 => $a.sbb($d, $s),
            4 => $a.and($d, $s),
            5 => $a.sub($d, $s),
            6 => $a.xor($d, $s),
            _ => $a.cmp($d, $s),
        }
    };
}

/// Tracks which status flags hold architecturally defined values.
struct Defined(u64);

impl Defined {
    fn set(&mut self, defined: u64, undefined: u64) {
        self.0 = (self.0 | defined) & !undefined;
    }
}

const CONDITION_FLAGS: u64 = CF | OF | ZF | SF | PF;

/// One generated instruction (or short idiom) from a selector and two
/// words of randomness; `def` follows the flags it defines.
fn emit_one(a: &mut CodeAssembler, def: &mut Defined, kind: u8, x: u64, y: u64) -> Result<(), IcedError> {
    let size = [1u8, 2, 4, 8][(x & 3) as usize];
    let i = ((x >> 2) % 14) as usize;
    let j = ((x >> 8) % 14) as usize;
    let op = ((x >> 14) & 7) as u8;
    let imm = y as i32;
    // Instructions that read flags get defined inputs first.
    let needs_flags = matches!(kind, 0..=3 if matches!(op, 2 | 3)) || matches!(kind, 7 | 18 | 19 | 26);
    if needs_flags && def.0 & CONDITION_FLAGS != CONDITION_FLAGS {
        reg!(4, j, |r| a.test(r, r))?;
        def.set(CONDITION_FLAGS, AF);
    }
    let arith = |op: u8| if matches!(op, 1 | 4 | 6) { (STATUS & !AF, AF) } else { (STATUS, 0) };
    match kind {
        0 => {
            regs2!(size, i, j, |d, s| alu!(a, op, d, s))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        1 => {
            match size {
                1 => alu!(a, op, R8[i], imm as i8 as i32)?,
                2 => alu!(a, op, R16[i], imm as i16 as i32)?,
                4 => alu!(a, op, R32[i], imm)?,
                _ => alu!(a, op, R64[i], imm)?,
            }
            let (d, u) = arith(op);
            def.set(d, u);
        }
        2 => {
            reg!(size, i, |r| alu!(a, op, r, mem(size, y)))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        3 => {
            reg!(size, i, |r| alu!(a, op, mem(size, y), r))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        4 => {
            if op & 1 == 0 {
                reg!(size, i, |r| a.inc(r))?;
            } else {
                reg!(size, i, |r| a.dec(r))?;
            }
            def.set(STATUS & !CF, 0);
        }
        5 => {
            if op & 1 == 0 {
                reg!(size, i, |r| a.neg(r))?;
                def.set(STATUS, 0);
            } else {
                reg!(size, i, |r| a.not(r))?;
            }
        }
        6 | 7 => {
            // Shifts and rotates by an immediate (6) or CL (7).
            let bits = u64::from(size) * 8;
            let (count, by_cl) = if kind == 6 { (1 + (y % (bits - 1)) as u32, false) } else { (0, true) };
            let shifty = matches!(op, 4..=7);
            macro_rules! shift {
                ($r:expr, $c:expr) => {
                    match op {
                        0 => a.rol($r, $c),
                        1 => a.ror($r, $c),
                        2 => a.rcl($r, $c),
                        3 => a.rcr($r, $c),
                        4 | 6 => a.shl($r, $c),
                        5 => a.shr($r, $c),
                        _ => a.sar($r, $c),
                    }
                };
            }
            if by_cl {
                reg!(size, i, |r| shift!(r, cl))?;
                // The count is only known at run time.
                def.set(0, STATUS);
            } else {
                reg!(size, i, |r| shift!(r, count))?;
                let of = if count == 1 { OF } else { 0 };
                let of_undef = if count == 1 { 0 } else { OF };
                if shifty {
                    def.set(CF | SF | ZF | PF | of, AF | of_undef);
                } else {
                    def.set(CF | of, of_undef);
                }
            }
        }
        8 => {
            let size = size.max(2);
            regs2w!(size, i, j, |d, s| a.imul_2(d, s))?;
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        9 => {
            let size = size.max(2);
            match size {
                2 => a.imul_3(R16[i], R16[j], imm as i16 as i32)?,
                4 => a.imul_3(R32[i], R32[j], imm)?,
                _ => a.imul_3(R64[i], R64[j], imm)?,
            }
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        10 => {
            if op & 1 == 0 {
                reg!(size, i, |r| a.mul(r))?;
            } else {
                reg!(size, i, |r| a.imul(r))?;
            }
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        11 => {
            // Divide without #DE: unsigned by (divisor | 1) with a zero
            // high half; signed by a positive 31-bit divisor after CQO.
            let d = 3 + (i % 11); // not rax, rcx or rdx
            if op & 1 == 0 {
                a.xor(edx, edx)?;
                a.or(R64[d], 1)?;
                a.div(R64[d])?;
            } else {
                a.cqo()?;
                a.mov(R32[d], (y as u32 & 0x7fff_ffff).max(1))?;
                a.idiv(R64[d])?;
            }
            def.set(0, STATUS);
        }
        12 => regs2!(size, i, j, |d, s| a.mov(d, s))?,
        13 => a.mov(R64[i], y)?,
        14 => reg!(size, i, |r| a.mov(r, mem(size, y)))?,
        15 => reg!(size, i, |r| a.mov(mem(size, y), r))?,
        16 => match op & 3 {
            0 => a.movzx(R32[i], R8[j])?,
            1 => a.movsx(R64[i], R16[j])?,
            2 => a.movsxd(R64[i], R32[j])?,
            _ => a.movzx(R64[i], word_ptr(rbx + (y % 200) as i32))?,
        },
        17 => a.lea(
            R64[i],
            qword_ptr(R64[j] + R64[(i + j) % 14] * [1, 2, 4, 8][(y & 3) as usize] + (y >> 8) as i8 as i32),
        )?,
        18 => {
            let size = size.max(2);
            macro_rules! cmov {
                ($d:expr, $s:expr) => {
                    match op {
                        0 => a.cmove($d, $s),
                        1 => a.cmovne($d, $s),
                        2 => a.cmovb($d, $s),
                        3 => a.cmova($d, $s),
                        4 => a.cmovl($d, $s),
                        5 => a.cmovge($d, $s),
                        6 => a.cmovs($d, $s),
                        _ => a.cmovo($d, $s),
                    }
                };
            }
            regs2w!(size, i, j, |d, s| cmov!(d, s))?;
        }
        19 => match op {
            0 => a.sete(R8[i])?,
            1 => a.setb(R8[i])?,
            2 => a.setbe(R8[i])?,
            3 => a.setl(R8[i])?,
            4 => a.setle(R8[i])?,
            5 => a.setp(R8[i])?,
            6 => a.sets(R8[i])?,
            _ => a.setno(R8[i])?,
        },
        20 => regs2!(size, i, j, |d, s| a.xchg(d, s))?,
        21 => {
            if op & 1 == 0 {
                a.bswap(R32[i])?
            } else {
                a.bswap(R64[i])?
            }
        }
        22 => {
            let size = size.max(2);
            let bit = (y % (u64::from(size) * 8)) as i32;
            macro_rules! bt {
                ($r:expr) => {
                    match op & 3 {
                        0 => a.bt($r, bit),
                        1 => a.bts($r, bit),
                        2 => a.btr($r, bit),
                        _ => a.btc($r, bit),
                    }
                };
            }
            regw!(size, i, |r| bt!(r))?;
            def.set(CF, OF | SF | AF | PF);
        }
        23 => {
            let size = size.max(2);
            // A zero source leaves the destination architecturally undefined:
            // make it non-zero first.
            regw!(size, j, |s| a.or(s, 0x100))?;
            if op & 1 == 0 {
                regs2w!(size, i, j, |d, s| a.bsf(d, s))?;
            } else {
                regs2w!(size, i, j, |d, s| a.bsr(d, s))?;
            }
            def.set(ZF, CF | OF | SF | AF | PF);
        }
        24 => {
            if op & 1 == 0 {
                a.push(R64[i])?;
            } else {
                a.push(imm)?;
            }
            a.pop(R64[j])?;
        }
        25 => match op & 3 {
            0 => a.cwde()?,
            1 => a.cdqe()?,
            2 => a.cdq()?,
            _ => a.cqo()?,
        },
        26 => {
            match op % 3 {
                0 => a.clc()?,
                1 => a.stc()?,
                _ => a.cmc()?,
            }
            def.set(CF, 0);
        }
        27 => {
            if op & 1 == 0 {
                regs2!(size, i, j, |d, s| a.xadd(d, s))?;
            } else {
                reg!(size, i, |r| a.cmpxchg(mem(size, y), r))?;
            }
            def.set(STATUS, 0);
        }
        28 => {
            a.lea(rsi, qword_ptr(rbx + (y % 128) as i32))?;
            a.lea(rdi, qword_ptr(rbx + ((y >> 8) % 128) as i32))?;
            a.mov(ecx, ((y >> 16) % 64) as u32)?;
            a.cld()?;
            a.rep().movsb()?;
        }
        29 => {
            a.lea(rdi, qword_ptr(rbx + (y % 120) as i32))?;
            a.mov(ecx, ((y >> 8) % 16) as u32)?;
            a.cld()?;
            if op & 1 == 0 {
                a.rep().stosb()?;
            } else {
                a.rep().stosq()?;
            }
        }
        30 => {
            let size: u8 = if size == 8 { 8 } else { 4 };
            let count = 1 + (y % (u64::from(size) * 8 - 1)) as i32;
            if op & 1 == 0 {
                regs2w!(size, i, j, |d, s| a.shld(d, s, count))?;
            } else {
                regs2w!(size, i, j, |d, s| a.shrd(d, s, count))?;
            }
            let (of, of_undef) = if count == 1 { (OF, 0) } else { (0, OF) };
            def.set(CF | SF | ZF | PF | of, AF | of_undef);
        }
        31 => {
            let size = size.max(2);
            regs2w!(size, i, j, |d, s| a.popcnt(d, s))?;
            def.set(STATUS, 0);
        }
        _ => {
            regs2!(size, i, j, |d, s| a.test(d, s))?;
            def.set(STATUS & !AF, AF);
        }
    }
    Ok(())
}

const KINDS: u8 = 33;

/// Runs one random program on both backends and compares; `None` when KVM
/// is unusable.
fn compare(regs: [u64; 16], flags: u64, insns: &[(u8, u64, u64)]) -> Option<Result<(), String>> {
    let mut start = Start { gpr: regs, rflags: flags };
    start.gpr[3] = SCRATCH;
    let mut def = Defined(STATUS);
    let img = program("diff", Ring::User, &start, |a| {
        for &(k, x, y) in insns {
            emit_one(a, &mut def, k, x, y)?;
        }
        Ok(())
    })
    .expect("generated programs assemble");
    let mut kvm_vm = kvm(&img)?;
    let mut sim_vm = SimVm::new(img.memory_size).unwrap();
    let pattern: Vec<u8> = (0..SCRATCH_LEN).map(|i| (i as u8).wrapping_mul(0x9d) ^ 0x5a).collect();
    kvm_vm.write_memory(SCRATCH, &pattern).unwrap();
    sim_vm.write_memory(SCRATCH, &pattern).unwrap();
    let k = run_image_with(&mut kvm_vm, &img, &RunOptions::default()).unwrap();
    let s = run_image_with(&mut sim_vm, &img, &RunOptions::default()).unwrap();
    let listing = || {
        img.disassemble()
            .lines()
            .skip_while(|l| *l != "body:")
            .take_while(|l| *l != "body_end:")
            .collect::<Vec<_>>()
            .join("\n")
    };
    if k.outcome != s.outcome {
        return Some(Err(format!("outcome: kvm {:?}, sim {:?}\n{}", k.outcome, s.outcome, listing())));
    }
    for i in 0..16 {
        if k.regs.gpr[i] != s.regs.gpr[i] {
            return Some(Err(format!(
                "{}: kvm {:#x}, sim {:#x}\n{}",
                exitlab_arch::Regs::NAMES[i],
                k.regs.gpr[i],
                s.regs.gpr[i],
                listing()
            )));
        }
    }
    let mask = def.0 | exitlab_arch::bits::rflags::DF;
    if k.regs.rflags & mask != s.regs.rflags & mask || k.regs.rip != s.regs.rip {
        return Some(Err(format!(
            "rflags (defined bits {mask:#x}): kvm {:#x}, sim {:#x}; rip kvm {:#x} sim {:#x}\n{}",
            k.regs.rflags,
            s.regs.rflags,
            k.regs.rip,
            s.regs.rip,
            listing()
        )));
    }
    for (base, len) in [(SCRATCH, SCRATCH_LEN), (USER_STACK_TOP - STACK_WINDOW as u64, STACK_WINDOW)] {
        let (mut a, mut b) = (vec![0; len], vec![0; len]);
        kvm_vm.read_memory(base, &mut a).unwrap();
        sim_vm.read_memory(base, &mut b).unwrap();
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
            return Some(Err(format!(
                "memory at {:#x}: kvm {:#x}, sim {:#x}\n{}",
                base + at as u64,
                a[at],
                b[at],
                listing()
            )));
        }
    }
    Some(Ok(()))
}

fn cases() -> u32 {
    std::env::var("EXITLAB_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_ring3_sequences_match_silicon(
        regs in prop::array::uniform16(any::<u64>()),
        flags in any::<u64>(),
        insns in prop::collection::vec((0..KINDS, any::<u64>(), any::<u64>()), 1..40),
    ) {
        if let Some(result) = compare(regs, flags, &insns) {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }
}

//! The simulator against the host's KVM, an independent x86 implementation.
//!
//! 1. Every built-in workload runs on both: the userspace-visible exits
//!    (port I/O and MMIO: reason, port or address, direction, data) must
//!    come in the same order with the same values, and the final registers
//!    must match.
//! 2. Random straight-line instruction sequences run in ring 3, in 64-bit
//!    mode (where this host's KVM executes guest code on the CPU itself) and
//!    in 32-bit compatibility mode (which this host's KVM runs in its
//!    instruction emulator, ~1 us per instruction: an independent
//!    implementation, not silicon; docs/DESIGN.md, Host findings), with
//!    operand- and address-size prefixes and register and memory
//!    destinations: registers, the architecturally defined RFLAGS bits and
//!    memory must match. `EXITLAB_DIFF_CASES` sets the case count per mode
//!    (default 24).
//! 3. Issue 12's inputs from public emulator bug reports, with the
//!    silicon answers the issue gives.
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
/// Where a compatibility-mode program's 32-bit code is written (beside
/// the scratch page; the boot identity map reaches it from ring 3).
const COMPAT_CODE: u64 = 0x20_1000;
/// The ring-3 32-bit code segment a compatibility-mode program adds to the
/// GDT, after the 16-byte TSS descriptor (Linux calls it __USER32_CS).
const USER32_CS: u16 = 0x38 | 3;
/// Where it builds the GDTR image for LGDT.
const GDTR_IMAGE: u64 = 0x5c0;

/// Where a random program runs: 64-bit mode, or 32-bit compatibility
/// mode (ring 3 both; ring-3 code runs on the host CPU under this host's
/// KVM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    Long,
    Compat,
}

/// The registers the generator may write: everything but rbx (the scratch
/// base) and rsp; compatibility mode has six.
struct Regs {
    n: usize,
    r64: [AsmRegister64; 14],
    r32: [AsmRegister32; 14],
    r16: [AsmRegister16; 14],
    r8: [AsmRegister8; 14],
}

const LONG: Regs = Regs {
    n: 14,
    r64: [rax, rcx, rdx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15],
    r32: [eax, ecx, edx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d],
    r16: [ax, cx, dx, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w],
    r8: [al, cl, dl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b],
};

/// Compatibility mode: the first six entries are used; byte registers are
/// the legacy ones (no REX), AH..DH included.
const COMPAT: Regs = Regs {
    n: 6,
    r64: LONG.r64,
    r32: LONG.r32,
    r16: LONG.r16,
    r8: [al, cl, dl, ah, ch, dh, al, cl, dl, ah, ch, dh, al, cl],
};

/// The generator's view of one mode.
struct Gen {
    width: Width,
    regs: &'static Regs,
}

impl Gen {
    fn new(width: Width) -> Gen {
        Gen { width, regs: if width == Width::Long { &LONG } else { &COMPAT } }
    }

    /// The largest operand size: 8, or 4 in compatibility mode.
    fn clamp(&self, size: u8) -> u8 {
        if self.width == Width::Compat {
            size.min(4)
        } else {
            size
        }
    }

    /// A memory operand of `size` at scratch + `disp`: through RBX, or in
    /// 64-bit mode sometimes through EBX (the 0x67 address-size prefix;
    /// RBX < 4 GiB, so both name the same bytes).
    fn mem(&self, size: u8, disp: u64) -> AsmMemoryOperand {
        let d = (disp % (SCRATCH_LEN as u64 - 16)) as i32;
        let a32 = self.width == Width::Compat || (disp >> 20) & 1 != 0;
        let base = if a32 { ebx + d } else { rbx + d };
        match size {
            1 => byte_ptr(base),
            2 => word_ptr(base),
            4 => dword_ptr(base),
            _ => qword_ptr(base),
        }
    }
}

/// `$body` with `$r` bound to register `$i` of size `$size` in `$g`'s
/// mode.
macro_rules! reg {
    ($g:expr, $size:expr, $i:expr, |$r:ident| $body:expr) => {{
        let (t, i) = ($g.regs, $i % $g.regs.n);
        match $g.clamp($size) {
            1 => {
                let $r = t.r8[i];
                $body
            }
            2 => {
                let $r = t.r16[i];
                $body
            }
            4 => {
                let $r = t.r32[i];
                $body
            }
            _ => {
                let $r = t.r64[i];
                $body
            }
        }
    }};
}

macro_rules! regs2 {
    ($g:expr, $size:expr, $i:expr, $j:expr, |$d:ident, $s:ident| $body:expr) => {{
        let (t, i, j) = ($g.regs, $i % $g.regs.n, $j % $g.regs.n);
        match $g.clamp($size) {
            1 => {
                let ($d, $s) = (t.r8[i], t.r8[j]);
                $body
            }
            2 => {
                let ($d, $s) = (t.r16[i], t.r16[j]);
                $body
            }
            4 => {
                let ($d, $s) = (t.r32[i], t.r32[j]);
                $body
            }
            _ => {
                let ($d, $s) = (t.r64[i], t.r64[j]);
                $body
            }
        }
    }};
}

/// As `reg!`/`regs2!` for instructions without a byte form (a byte size
/// takes 16 bits).
macro_rules! regw {
    ($g:expr, $size:expr, $i:expr, |$r:ident| $body:expr) => {{
        let (t, i) = ($g.regs, $i % $g.regs.n);
        match $g.clamp($size) {
            1 | 2 => {
                let $r = t.r16[i];
                $body
            }
            4 => {
                let $r = t.r32[i];
                $body
            }
            _ => {
                let $r = t.r64[i];
                $body
            }
        }
    }};
}

macro_rules! regs2w {
    ($g:expr, $size:expr, $i:expr, $j:expr, |$d:ident, $s:ident| $body:expr) => {{
        let (t, i, j) = ($g.regs, $i % $g.regs.n, $j % $g.regs.n);
        match $g.clamp($size) {
            1 | 2 => {
                let ($d, $s) = (t.r16[i], t.r16[j]);
                $body
            }
            4 => {
                let ($d, $s) = (t.r32[i], t.r32[j]);
                $body
            }
            _ => {
                let ($d, $s) = (t.r64[i], t.r64[j]);
                $body
            }
        }
    }};
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
fn emit_one(g: &Gen, a: &mut CodeAssembler, def: &mut Defined, kind: u8, x: u64, y: u64) -> Result<(), IcedError> {
    let size = g.clamp([1u8, 2, 4, 8][(x & 3) as usize]);
    let i = ((x >> 2) % 14) as usize;
    let j = ((x >> 8) % 14) as usize;
    let op = ((x >> 14) & 7) as u8;
    let imm = y as i32;
    let long = g.width == Width::Long;
    // Instructions that read flags get defined inputs first.
    let needs_flags = matches!(kind, 0..=3 if matches!(op, 2 | 3)) || matches!(kind, 7 | 18 | 19 | 26 | 37 | 39);
    if needs_flags && def.0 & CONDITION_FLAGS != CONDITION_FLAGS {
        reg!(g, 4, j, |r| a.test(r, r))?;
        def.set(CONDITION_FLAGS, AF);
    }
    let arith = |op: u8| if matches!(op, 1 | 4 | 6) { (STATUS & !AF, AF) } else { (STATUS, 0) };
    match kind {
        0 => {
            regs2!(g, size, i, j, |d, s| alu!(a, op, d, s))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        1 => {
            reg!(g, size, i, |r| alu!(
                a,
                op,
                r,
                match size {
                    1 => imm as i8 as i32,
                    2 => imm as i16 as i32,
                    _ => imm,
                }
            ))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        2 => {
            reg!(g, size, i, |r| alu!(a, op, r, g.mem(size, y)))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        3 => {
            reg!(g, size, i, |r| alu!(a, op, g.mem(size, y), r))?;
            let (d, u) = arith(op);
            def.set(d, u);
        }
        4 => {
            if op & 1 == 0 {
                reg!(g, size, i, |r| a.inc(r))?;
            } else {
                reg!(g, size, i, |r| a.dec(r))?;
            }
            def.set(STATUS & !CF, 0);
        }
        5 => {
            if op & 1 == 0 {
                reg!(g, size, i, |r| a.neg(r))?;
                def.set(STATUS, 0);
            } else {
                reg!(g, size, i, |r| a.not(r))?;
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
                reg!(g, size, i, |r| shift!(r, cl))?;
                // The count is only known at run time.
                def.set(0, STATUS);
            } else {
                reg!(g, size, i, |r| shift!(r, count))?;
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
            regs2w!(g, size, i, j, |d, s| a.imul_2(d, s))?;
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        9 => {
            match g.clamp(size.max(2)) {
                2 => a.imul_3(g.regs.r16[i % g.regs.n], g.regs.r16[j % g.regs.n], imm as i16 as i32)?,
                4 => a.imul_3(g.regs.r32[i % g.regs.n], g.regs.r32[j % g.regs.n], imm)?,
                _ => a.imul_3(g.regs.r64[i], g.regs.r64[j], imm)?,
            }
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        10 => {
            if op & 1 == 0 {
                reg!(g, size, i, |r| a.mul(r))?;
            } else {
                reg!(g, size, i, |r| a.imul(r))?;
            }
            def.set(CF | OF, SF | ZF | AF | PF);
        }
        11 => {
            // Divide without #DE: unsigned by (divisor | 1) with a zero
            // high half; signed by a positive 31-bit divisor after the sign
            // extension. Not rax, rcx or rdx.
            let d = 3 + i % (g.regs.n - 3);
            let wide = g.clamp(8);
            if op & 1 == 0 {
                a.xor(edx, edx)?;
                reg!(g, wide, d, |r| a.or(r, 1))?;
                reg!(g, wide, d, |r| a.div(r))?;
            } else {
                if long {
                    a.cqo()?;
                } else {
                    a.cdq()?;
                }
                a.mov(g.regs.r32[d], (y as u32 & 0x7fff_ffff).max(1))?;
                reg!(g, wide, d, |r| a.idiv(r))?;
            }
            def.set(0, STATUS);
        }
        12 => regs2!(g, size, i, j, |d, s| a.mov(d, s))?,
        13 => {
            if long {
                a.mov(g.regs.r64[i], y)?
            } else {
                a.mov(g.regs.r32[i % g.regs.n], y as u32)?
            }
        }
        14 => reg!(g, size, i, |r| a.mov(r, g.mem(size, y)))?,
        15 => reg!(g, size, i, |r| a.mov(g.mem(size, y), r))?,
        16 => {
            let (d32, s8, s16) = (g.regs.r32[i % g.regs.n], g.regs.r8[j % g.regs.n], g.regs.r16[j % g.regs.n]);
            match (op & 3, long) {
                (0, _) => a.movzx(d32, s8)?,
                (1, true) => a.movsx(g.regs.r64[i], s16)?,
                (2, true) => a.movsxd(g.regs.r64[i], g.regs.r32[j])?,
                (1 | 2, false) => a.movsx(d32, s16)?,
                (_, true) => a.movzx(g.regs.r64[i], word_ptr(rbx + (y % 200) as i32))?,
                (_, false) => a.movzx(d32, word_ptr(ebx + (y % 200) as i32))?,
            }
        }
        17 => {
            let scale = [1, 2, 4, 8][(y & 3) as usize];
            let d8 = (y >> 8) as i8 as i32;
            let t = g.regs;
            let (n, k) = (t.n, (i + j) % t.n);
            match (long, op & 3) {
                (true, 0) => a.lea(t.r64[i], qword_ptr(t.r64[j] + t.r64[k] * scale + d8))?,
                // 32-bit address size in 64-bit mode (0x67): the sum wraps at 4 GiB.
                (true, 1) => a.lea(t.r64[i], qword_ptr(t.r32[j] + t.r32[k] * scale + d8))?,
                (true, _) => a.lea(t.r32[i], dword_ptr(t.r64[j] + t.r64[k] * scale + d8))?,
                // 16-bit addressing in compatibility mode (0x67): [BX|BP + SI|DI + d].
                (false, 0) => {
                    let base = if y & 4 == 0 { bx } else { bp };
                    let index = if y & 8 == 0 { si } else { di };
                    a.lea(t.r32[i % n], dword_ptr(base + index + d8))?
                }
                (false, _) => a.lea(t.r32[i % n], dword_ptr(t.r32[j % n] + t.r32[k] * scale + d8))?,
            }
        }
        18 => {
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
            regs2w!(g, size, i, j, |d, s| cmov!(d, s))?;
        }
        19 => {
            let r = g.regs.r8[i % g.regs.n];
            match op {
                0 => a.sete(r)?,
                1 => a.setb(r)?,
                2 => a.setbe(r)?,
                3 => a.setl(r)?,
                4 => a.setle(r)?,
                5 => a.setp(r)?,
                6 => a.sets(r)?,
                _ => a.setno(r)?,
            }
        }
        20 => regs2!(g, size, i, j, |d, s| a.xchg(d, s))?,
        21 => {
            if op & 1 == 0 || !long {
                a.bswap(g.regs.r32[i % g.regs.n])?
            } else {
                a.bswap(g.regs.r64[i])?
            }
        }
        22 => {
            let bits = u64::from(g.clamp(size.max(2))) * 8;
            let bit = (y % bits) as i32;
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
            regw!(g, size, i, |r| bt!(r))?;
            def.set(CF, OF | SF | AF | PF);
        }
        23 => {
            // A zero source leaves the destination architecturally undefined:
            // make it non-zero first.
            regw!(g, size, j, |s| a.or(s, 0x100))?;
            if op & 1 == 0 {
                regs2w!(g, size, i, j, |d, s| a.bsf(d, s))?;
            } else {
                regs2w!(g, size, i, j, |d, s| a.bsr(d, s))?;
            }
            def.set(ZF, CF | OF | SF | AF | PF);
        }
        24 => {
            // PUSH and POP of the stack width, and of 16 bits (0x66).
            let wide = g.clamp(8);
            match op & 3 {
                0 => regw!(g, wide, i, |r| a.push(r))?,
                1 => a.push(imm)?,
                2 => regw!(g, 2, i, |r| a.push(r))?,
                _ => a.push(word_ptr(rbx_or_ebx(g) + (y % 200) as i32))?,
            }
            if op & 3 >= 2 {
                regw!(g, 2, j, |r| a.pop(r))?;
            } else {
                regw!(g, wide, j, |r| a.pop(r))?;
            }
        }
        25 => match (op & 3, long) {
            (0, _) => a.cwde()?,
            (1, true) => a.cdqe()?,
            (1, false) => a.cbw()?,
            (2, _) => a.cdq()?,
            (_, true) => a.cqo()?,
            (_, false) => a.cwd()?,
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
                regs2!(g, size, i, j, |d, s| a.xadd(d, s))?;
            } else {
                reg!(g, size, i, |r| a.cmpxchg(g.mem(size, y), r))?;
            }
            def.set(STATUS, 0);
        }
        28 => {
            lea_scratch(g, a, SI, y % 128)?;
            lea_scratch(g, a, DI, (y >> 8) % 128)?;
            a.mov(ecx, ((y >> 16) % 64) as u32)?;
            a.cld()?;
            a.rep().movsb()?;
        }
        29 => {
            lea_scratch(g, a, DI, y % 120)?;
            a.mov(ecx, ((y >> 8) % 16) as u32)?;
            a.cld()?;
            match (op & 1, long) {
                (0, _) => a.rep().stosb()?,
                (_, true) => a.rep().stosq()?,
                (_, false) => a.rep().stosd()?,
            }
        }
        30 => {
            let size = if g.clamp(size) == 8 { 8 } else { 4 };
            let count = 1 + (y % (u64::from(size) * 8 - 1)) as i32;
            if op & 1 == 0 {
                regs2w!(g, size, i, j, |d, s| a.shld(d, s, count))?;
            } else {
                regs2w!(g, size, i, j, |d, s| a.shrd(d, s, count))?;
            }
            let (of, of_undef) = if count == 1 { (OF, 0) } else { (0, OF) };
            def.set(CF | SF | ZF | PF | of, AF | of_undef);
        }
        // KVM's instruction emulator, which runs compatibility-mode code on
        // this host, has no POPCNT (#UD): 64-bit mode only.
        31 if long => {
            regs2w!(g, size, i, j, |d, s| a.popcnt(d, s))?;
            def.set(STATUS, 0);
        }
        31 | 32 => {
            regs2!(g, size, i, j, |d, s| a.test(d, s))?;
            def.set(STATUS & !AF, AF);
        }
        _ => emit_system(g, a, def, kind, x, y)?,
    }
    Ok(())
}

fn rbx_or_ebx(g: &Gen) -> AsmMemoryOperand {
    if g.width == Width::Long {
        rbx + 0
    } else {
        ebx + 0
    }
}

const SI: usize = 4;
const DI: usize = 5;

/// RSI or RDI (`which`, a register-table index) = scratch + `off`.
fn lea_scratch(g: &Gen, a: &mut CodeAssembler, which: usize, off: u64) -> Result<(), IcedError> {
    if g.width == Width::Long {
        a.lea(g.regs.r64[which], qword_ptr(rbx + off as i32))
    } else {
        a.lea(g.regs.r32[which], dword_ptr(ebx + off as i32))
    }
}

/// The forms issue 12 adds: register-destination CMPXCHG, the address
/// size of implicit registers (strings, JrCXZ, LOOP, XLAT) with upper bits
/// set where the other width would see them, CMPXCHG8B, LAHF/SAHF,
/// segment-register reads and pushes, ENTER, and in compatibility mode
/// the BCD instructions, SALC and PUSHA/POPA.
fn emit_system(g: &Gen, a: &mut CodeAssembler, def: &mut Defined, kind: u8, x: u64, y: u64) -> Result<(), IcedError> {
    let size = g.clamp([1u8, 2, 4, 8][(x & 3) as usize]);
    let i = ((x >> 2) % 14) as usize;
    let j = ((x >> 8) % 14) as usize;
    let op = ((x >> 14) & 7) as u8;
    let long = g.width == Width::Long;
    // High bits a 32-bit address size must ignore: above bit 31 in 64-bit
    // mode, above bit 15 in compatibility mode with 0x67.
    let junk = if long { (y >> 40 | 1) << 32 } else { (y >> 48 | 1) << 16 };
    match kind {
        33 => {
            // CMPXCHG with a register destination (issue 12: the
            // destination is written only when equal).
            if op & 1 == 0 {
                regs2!(g, size, 0, j, |acc, s| a.mov(acc, s))?;
            }
            regs2!(g, size, i, j, |d, s| a.cmpxchg(d, s))?;
            def.set(STATUS, 0);
        }
        34 if long => {
            // addr32 REP MOVSB/STOSB: ESI, EDI and ECX, with RSI, RDI and
            // RCX carrying high bits (issue 12's `67 f3 a4`).
            a.lea(rsi, qword_ptr(rbx + (y % 128) as i32))?;
            a.lea(rdi, qword_ptr(rbx + ((y >> 8) % 128) as i32))?;
            a.mov(rcx, junk | ((y >> 16) % 64))?;
            a.mov(rax, junk)?;
            a.or(rsi, rax)?;
            a.or(rdi, rax)?;
            a.cld()?;
            a.db(if op & 1 == 0 { &[0x67, 0xf3, 0xa4] } else { &[0x67, 0xf3, 0xaa] })?;
            def.set(0, STATUS);
        }
        34 | 35 => {
            // addr32 (addr16 in compatibility mode) JrCXZ and LOOP over an
            // INC: the count register is the address size's (issue 12's
            // `67 e3`).
            let count = if y & 1 == 0 { junk } else { junk | ((y >> 8) % 3) };
            if long {
                a.mov(rcx, count)?;
            } else {
                a.mov(ecx, count as u32)?;
            }
            let inc_eax = [0xff, 0xc0];
            let branch = if op & 1 == 0 { 0xe3 } else { 0xe2 };
            // Either path leaves defined flags: the INC's, or the ones
            // before (LOOP and JrCXZ change none).
            a.db(&[0x67, branch, 2])?;
            a.db(&inc_eax)?;
        }
        36 => {
            // XLAT, with 0x67 in 64-bit mode where RBX's high bits then
            // do not count (they are zero here, so both agree).
            if long && op & 1 == 1 {
                a.db(&[0x67, 0xd7])?;
            } else {
                a.xlatb()?;
            }
        }
        37 => {
            if op & 1 == 0 {
                a.lahf()?;
            } else {
                a.sahf()?;
                def.set(SF | ZF | AF | PF | CF, 0);
            }
        }
        38 => {
            // CMPXCHG8B: EDX:EAX from the operand half the time (equal).
            let m = qword_ptr(rbx_or_ebx(g) + (y % 240) as i32);
            if op & 1 == 0 {
                a.mov(eax, dword_ptr(rbx_or_ebx(g) + (y % 240) as i32))?;
                a.mov(edx, dword_ptr(rbx_or_ebx(g) + (y % 240) as i32 + 4))?;
            }
            a.cmpxchg8b(m)?;
        }
        39 if !long => {
            // Decimal adjustment (legacy modes only), with the flags the
            // SDM defines. Compatibility-mode code runs in KVM's
            // instruction emulator on this host, which lacks AAA, AAS and
            // DAA (#UD) and takes AAD's and AAM's SF, ZF and PF from AX,
            // not AL (docs/DESIGN.md, Host findings): their results are
            // compared here, their flags and the missing ones in
            // kvm-unit-tests' realmode test (which checks DAS against a
            // silicon table too).
            match op {
                0..=2 => {
                    a.das()?;
                    def.set(STATUS & !OF, OF);
                }
                3 => {
                    a.aad(1 + (y % 20) as i32)?;
                    def.set(0, STATUS);
                }
                4 | 5 => {
                    a.aam(1 + (y % 20) as i32)?;
                    def.set(0, STATUS);
                }
                _ => a.db(&[0xd6])?, // SALC
            }
        }
        40 if !long => {
            // PUSHA then POPA (ESP skipped), or PUSHA and a POP of one slot.
            if op & 1 == 0 {
                a.pushad()?;
                a.popad()?;
            } else {
                a.pusha()?;
                a.pop(g.regs.r16[i % g.regs.n])?;
                a.add(esp, 14)?;
                def.set(0, STATUS);
            }
        }
        41 => {
            // Segment registers: the selector into a register, or pushed.
            // Not CS and SS in 64-bit mode, where this host's KVM shows the
            // host's selectors, nor FS and GS in compatibility mode, which
            // it does not null on the IRETQ to ring 3 (docs/DESIGN.md, Host
            // findings).
            let wide = g.clamp(8);
            let sreg = if long { [ds, es, fs, gs][(y % 4) as usize] } else { [ds, es, ss, cs][(y % 4) as usize] };
            match op & 3 {
                0 => regw!(g, 4, i, |r| a.mov(r, sreg))?,
                1 => {
                    // PUSH DS/ES/SS/CS are invalid in 64-bit mode. A pushed
                    // selector is a 16-bit store on Intel cores (the
                    // simulator), a full-slot one on this AMD host: the slot
                    // is cleared first so that both give the same value.
                    let pushed = if long { [fs, gs][(y % 2) as usize] } else { [ds, es, ss, cs][(y % 4) as usize] };
                    a.push(0)?;
                    regw!(g, wide, j, |r| a.pop(r))?;
                    a.push(pushed)?;
                    regw!(g, wide, j, |r| a.pop(r))?;
                }
                2 => regw!(g, 2, i, |r| a.mov(r, sreg))?,
                _ => a.mov(word_ptr(rbx_or_ebx(g) + (y % 200) as i32), sreg)?,
            }
        }
        42 => {
            // ENTER with a nesting level copies frame pointers from the
            // stack: give RBP the stack pointer first; LEAVE undoes it.
            // A nesting level in compatibility mode is #UD under this host's
            // KVM (docs/DESIGN.md, Host findings): level 0 there.
            let level = if long { (y % 4) as i32 } else { 0 };
            let locals = ((y >> 8) % 64) as i32;
            if long {
                a.mov(rbp, rsp)?;
            } else {
                a.mov(ebp, esp)?;
            }
            a.enter(locals, level)?;
            if long {
                a.mov(g.regs.r64[i], rsp)?;
            } else {
                a.mov(g.regs.r32[i % g.regs.n], esp)?;
            }
            a.leave()?;
        }
        _ => {
            regs2!(g, size, i, j, |d, s| a.test(d, s))?;
            def.set(STATUS & !AF, AF);
        }
    }
    Ok(())
}

const KINDS: u8 = 43;

/// The ring-0 prologue of a compatibility-mode program: a ring-3 32-bit
/// code segment in GDT slot 7 (LGDT with the limit past it), DS and ES
/// loaded with the user data segment, then IRETQ to the code at
/// COMPAT_CODE with the user stack and RFLAGS as the program's start left
/// them (IOPL 3 added, for the final OUT). Nothing here changes a general
/// register or a status flag.
fn enter_compat(a: &mut CodeAssembler) -> Result<(), IcedError> {
    use exitlab_guest::layout::GDT;
    a.mov(dword_ptr(GDT + 0x38), 0x0000_ffff)?;
    a.mov(dword_ptr(GDT + 0x3c), 0x00cf_fb00)?;
    a.mov(word_ptr(GDTR_IMAGE), 0x3f)?;
    a.mov(dword_ptr(GDTR_IMAGE + 2), GDT as u32)?;
    a.mov(dword_ptr(GDTR_IMAGE + 6), 0)?;
    a.lgdt(ptr(GDTR_IMAGE))?;
    a.push(rax)?;
    a.mov(eax, u32::from(exitlab_guest::layout::USER_DS))?;
    a.mov(ds, eax)?;
    a.mov(es, eax)?;
    a.pop(rax)?;
    a.push(i32::from(exitlab_guest::layout::USER_DS))?;
    a.push(USER_STACK_TOP as i32)?;
    a.pushfq()?;
    a.or(byte_ptr(rsp + 1), 0x30)?;
    a.push(i32::from(USER32_CS))?;
    a.push(COMPAT_CODE as i32)?;
    a.iretq()
}

/// Runs one random program on both backends and compares; `None` when KVM
/// is unusable.
fn compare(width: Width, regs: [u64; 16], flags: u64, insns: &[(u8, u64, u64)]) -> Option<Result<(), String>> {
    let mut start = Start { gpr: regs, rflags: flags };
    start.gpr[3] = SCRATCH;
    let g = Gen::new(width);
    let mut def = Defined(STATUS);
    let (img, compat_code) = match width {
        Width::Long => {
            let img = program("diff", Ring::User, &start, |a| {
                for &(k, x, y) in insns {
                    emit_one(&g, a, &mut def, k, x, y)?;
                }
                Ok(())
            });
            (img, Vec::new())
        }
        Width::Compat => {
            let mut c = CodeAssembler::new(32).expect("32-bit assembler");
            for &(k, x, y) in insns {
                emit_one(&g, &mut c, &mut def, k, x, y).expect("generated instructions assemble");
            }
            c.out(0xf4, al).expect("out assembles");
            let code = c.assemble(COMPAT_CODE).expect("generated programs assemble");
            (program("diff32", Ring::Kernel, &start, enter_compat), code)
        }
    };
    let img = img.expect("generated programs assemble");
    let mut kvm_vm = kvm(&img)?;
    let mut sim_vm = SimVm::new(img.memory_size).unwrap();
    let pattern: Vec<u8> = (0..SCRATCH_LEN).map(|i| (i as u8).wrapping_mul(0x9d) ^ 0x5a).collect();
    kvm_vm.write_memory(SCRATCH, &pattern).unwrap();
    sim_vm.write_memory(SCRATCH, &pattern).unwrap();
    if !compat_code.is_empty() {
        kvm_vm.write_memory(COMPAT_CODE, &compat_code).unwrap();
        sim_vm.write_memory(COMPAT_CODE, &compat_code).unwrap();
    }
    let k = run_image_with(&mut kvm_vm, &img, &RunOptions::default()).unwrap();
    let s = run_image_with(&mut sim_vm, &img, &RunOptions::default()).unwrap();
    let listing = || match width {
        Width::Long => img
            .disassemble()
            .lines()
            .skip_while(|l| *l != "body:")
            .take_while(|l| *l != "body_end:")
            .collect::<Vec<_>>()
            .join("\n"),
        Width::Compat => disassemble32(&compat_code),
    };
    if k.outcome != s.outcome {
        return Some(Err(format!("outcome: kvm {:?}, sim {:?}\n{}", k.outcome, s.outcome, listing())));
    }
    // After a switch to compatibility mode the upper halves of the
    // registers, and R8-R15 entirely, are undefined (SDM Vol. 1 3.4.1.1):
    // the low 32 bits of the legacy eight are compared.
    let (count, width_mask) = if width == Width::Compat { (8, 0xffff_ffff) } else { (16, u64::MAX) };
    for i in 0..count {
        if k.regs.gpr[i] & width_mask != s.regs.gpr[i] & width_mask {
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

/// A listing of 32-bit code at COMPAT_CODE.
fn disassemble32(code: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut out = String::new();
    let mut f = IntelFormatter::new();
    for i in Decoder::with_ip(32, code, COMPAT_CODE, DecoderOptions::NONE) {
        let mut t = String::new();
        f.format(&i, &mut t);
        out.push_str(&format!("{:08x} {t}\n", i.ip()));
    }
    out
}

fn cases() -> u32 {
    std::env::var("EXITLAB_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

/// Issue 12's inputs from public emulator bug reports, with silicon's
/// answers (the issue gives them; this host's CPU runs them in ring 3):
/// `cmpxchg ebx, ecx` (RBX kept whole when unequal), `67 f3 a4` with high
/// bits in RSI, RDI and RCX, and `67 e3` with RCX = 0x1_0000_0000.
#[test]
fn issue_12_inputs_match_silicon() {
    let mut regs = [0u64; 16];
    regs[0] = 1;
    regs[1] = 7;
    let program = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        // RBX is the scratch base in these programs: use RDX for the
        // CMPXCHG destination with the issue's value.
        a.mov(rdx, 0xaaaa_aaaa_0000_0005u64)?;
        a.cmpxchg(edx, ecx)?;
        a.mov(r8, rax)?;
        a.mov(r9, rdx)?;
        a.mov(rsi, 0x1_0000_0000 | SCRATCH)?;
        a.mov(rdi, 0x1_0000_0000 | (SCRATCH + 0x80))?;
        a.mov(rcx, 0x1_0000_0002u64)?;
        a.db(&[0x67, 0xf3, 0xa4])?;
        a.mov(r10, rcx)?;
        a.mov(rcx, 0x1_0000_0000u64)?;
        a.xor(eax, eax)?;
        a.db(&[0x67, 0xe3, 0x02])?;
        a.db(&[0xff, 0xc0])?; // inc eax: skipped when JECXZ is taken
        Ok(())
    };
    let mut start = Start { gpr: regs, rflags: 0 };
    start.gpr[3] = SCRATCH;
    let img = exitlab_guest::program::program("issue12", Ring::User, &start, program).unwrap();
    let mut sim = SimVm::new(img.memory_size).unwrap();
    let s = run_image_with(&mut sim, &img, &RunOptions::default()).unwrap();
    let r = |n: usize| s.regs.gpr[n];
    assert_eq!((r(8), r(9)), (5, 0xaaaa_aaaa_0000_0005), "cmpxchg edx, ecx");
    assert_eq!((r(6), r(7), r(10)), (SCRATCH + 2, SCRATCH + 0x82, 0), "addr32 rep movsb");
    assert_eq!(r(0), 0, "jecxz taken on ECX = 0");
    let Some(mut kvm_vm) = kvm(&img) else { return };
    let k = run_image_with(&mut kvm_vm, &img, &RunOptions::default()).unwrap();
    assert_eq!(k.regs.gpr, s.regs.gpr, "the host CPU agrees");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_ring3_sequences_match_silicon(
        regs in prop::array::uniform16(any::<u64>()),
        flags in any::<u64>(),
        insns in prop::collection::vec((0..KINDS, any::<u64>(), any::<u64>()), 1..40),
    ) {
        if let Some(result) = compare(Width::Long, regs, flags, &insns) {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    #[test]
    fn random_compatibility_mode_sequences_match_silicon(
        regs in prop::array::uniform16(any::<u64>()),
        flags in any::<u64>(),
        insns in prop::collection::vec((0..KINDS, any::<u64>(), any::<u64>()), 1..40),
    ) {
        if let Some(result) = compare(Width::Compat, regs, flags, &insns) {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }
}

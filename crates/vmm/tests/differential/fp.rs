//! x87, MMX and SSE-SSE4.2 sequences against silicon (issue 13).
//!
//! Each image holds a batch of random ring-3 sequences. A sequence loads
//! its x87/SSE state with FXRSTOR64 from a random image (register contents
//! of every class: zeros of both signs, denormals, pseudo-denormals,
//! unnormals, infinities, QNaNs, SNaNs and pseudo-NaNs, integers, values
//! near conversion limits; random control words, MXCSR, tags and TOP),
//! sets its general registers and flags, runs up to `MAX_LEN` random
//! instructions, then stores everything: FXSAVE64 (x87 registers, FCW,
//! FSW, FTW, FOP, FIP, FDP, MXCSR, XMM0-15), the general registers and
//! RFLAGS. An exception (#MF, #XM, #GP, #UD) goes to a small ring-0
//! handler patched into the IDT, which records the vector, RIP and error
//! code and resumes at the sequence's store, so the state at the fault
//! is compared too. The same bytes run on this host's KVM (ring-3 code
//! runs natively) and on the simulator; everything is compared exactly.
//!
//! Masked, because the SDM leaves them open: the last bit of a result of
//! FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X and FYL2XP1 and the
//! C1 they set ("less than 1 ulp", SDM Vol. 1 8.3.10). To keep that mask
//! local, a transcendental instruction is the last instruction of its
//! sequence that touches x87 or MMX state; its registers may then differ
//! by one unit in the last place and FSW by C1.
//!
//! `EXITLAB_FP_DIFF_SEQUENCES` sets the count (default 512),
//! `EXITLAB_FP_DIFF_SEED` the seed.

use super::kvm;
use exitlab_guest::layout::KERNEL_CS;
use exitlab_guest::program::{program_marked, Ring, Start};
use exitlab_guest::Image;
use exitlab_hv::Vm;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image_with, RunOptions};
use iced_x86::code_asm::*;
use std::collections::BTreeMap;

/// Sequences per image.
const BATCH: usize = 256;
/// Most instructions in a sequence.
const MAX_LEN: u64 = 24;
/// Where the handler finds the current sequence's resume address, and
/// where it records the exception.
const RESUME: u64 = 0x3f_0000;
const REC: u64 = 0x3f_0040;
/// The input FXSAVE images (512 bytes each).
const INPUT: u64 = 0x40_0000;
/// The outputs: FXSAVE image, general registers, RFLAGS, exception
/// record (`OUT_STRIDE` bytes each).
const OUTPUT: u64 = 0x80_0000;
const OUT_STRIDE: u64 = 1024;
/// Each sequence's memory operands: [rbx + 0, 256) for operands, [rbx +
/// 512, 1024) for FXSAVE/FXRSTOR areas.
const SCRATCH: u64 = 0xc0_0000;
const SCRATCH_LEN: u64 = 1024;

const R64: [AsmRegister64; 13] = [rax, rcx, rdx, rsi, rbp, r8, r9, r10, r11, r12, r13, r14, r15];
const R32: [AsmRegister32; 13] = [eax, ecx, edx, esi, ebp, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d];
const XMM: [AsmRegisterXmm; 16] =
    [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];
const MM: [AsmRegisterMm; 8] = [mm0, mm1, mm2, mm3, mm4, mm5, mm6, mm7];
const ST: [AsmRegisterSt; 8] = [st0, st1, st2, st3, st4, st5, st6, st7];

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn xmm(&mut self) -> AsmRegisterXmm {
        XMM[self.below(16) as usize]
    }
    fn mm(&mut self) -> AsmRegisterMm {
        MM[self.below(8) as usize]
    }
    fn st(&mut self) -> AsmRegisterSt {
        ST[self.below(8) as usize]
    }
    fn r(&mut self) -> usize {
        self.below(13) as usize
    }
    /// An operand offset in [0, 256 - size].
    fn off(&mut self, size: u64) -> i32 {
        self.below(257 - size) as i32
    }
    /// A 16-byte aligned offset, misaligned by 8 once in 50 draws (#GP).
    fn aligned(&mut self) -> i32 {
        16 * self.below(15) as i32 + if self.chance(2) { 8 } else { 0 }
    }

    /// A float of `exp_bits` exponent and `frac` fraction bits from every
    /// class, near the interesting boundaries.
    fn ieee(&mut self, exp_bits: u32, frac: u32) -> u64 {
        let bias = (1u64 << (exp_bits - 1)) - 1;
        let max_exp = (1u64 << exp_bits) - 1;
        let sign = self.next() & 1;
        let f = self.next() & ((1 << frac) - 1);
        let (e, f) = match self.below(16) {
            0 => (0, 0),
            1 => (0, f | 1),
            2 => (max_exp, 0),
            3 => (max_exp, f | 1 << (frac - 1)),
            4 => (max_exp, (f & !(1 << (frac - 1))) | 1),
            5 => (bias, 0),
            6 => (bias + self.below(4), f & (0xffu64 << (frac - 8))),
            7 => (bias + 30 + self.below(4), f),
            8 => (bias + 62 + self.below(3), f),
            9 => (1 + self.below(3), f),
            10 => (max_exp - 1 - self.below(3), f),
            11 => (bias - 1 - self.below(3), f & (3u64 << (frac - 2))),
            _ => (1 + self.below(max_exp - 1), f),
        };
        sign << (exp_bits + frac) | e << frac | f
    }

    /// An XMM value: four singles, two doubles, integers or text.
    fn vector(&mut self) -> u128 {
        match self.below(6) {
            0 | 1 => (0..4).fold(0, |v, i| v | (self.ieee(8, 23) as u128) << (32 * i)),
            2 | 3 => (self.ieee(11, 52) as u128) | (self.ieee(11, 52) as u128) << 64,
            4 => (self.next() as u128) | (self.next() as u128) << 64,
            _ => (0..16).fold(0, |v, i| {
                let c = [0, b'a', b'b', b'c', b'z', 0x80, 0xff][self.below(7) as usize];
                v | (c as u128) << (8 * i)
            }),
        }
    }

    /// An 80-bit register value (exponent and sign, significand).
    fn f80(&mut self) -> (u16, u64) {
        let sign = (self.next() & 1) as u16 * 0x8000;
        let sig = self.next();
        let (e, s) = match self.below(14) {
            0 => (0, 0),
            1 => (0, sig >> 1),
            2 => (0, sig | 1 << 63),
            3 => (0x3fff + self.below(20) as u16, sig >> 1),
            4 => (0x7fff, 1 << 63),
            5 => (0x7fff, sig | 3 << 62),
            6 => (0x7fff, (sig | 1 << 63) & !(1 << 62) | 1),
            7 => (0x7fff, sig >> 1),
            8 => (0x3fff + self.below(64) as u16, (sig | 1 << 63) & !(u64::MAX >> self.below(64))),
            9 => (0x3fff - self.below(70) as u16, sig | 1 << 63),
            10 => (1 + self.below(3) as u16, sig | 1 << 63),
            11 => (0x7ffe - self.below(3) as u16, sig | 1 << 63),
            12 => (0x3ffe + self.below(3) as u16, (sig | 1 << 63) & !0xffff),
            _ => return (0xffff, sig),
        };
        (sign | e, s)
    }
}

/// A control word: every precision and rounding control, all masked in
/// most sequences, some unmasked exceptions in the rest.
fn control_word(g: &mut Rng) -> u16 {
    let masks = if g.chance(70) { 0x3f } else { (g.next() & 0x3f) as u16 | 0x20 };
    0x40 | masks | ((g.below(4) as u16) << 8) | ((g.below(4) as u16) << 10)
}

/// An MXCSR: every rounding mode, DAZ and FTZ, sticky flags, and all
/// exceptions masked in most sequences.
fn mxcsr(g: &mut Rng) -> u32 {
    let masks = if g.chance(70) { 0x3f } else { (g.next() & 0x3f) as u32 | 0x20 };
    let flags = if g.chance(70) { 0 } else { (g.next() & 0x3f) as u32 };
    flags | ((g.next() & 1) as u32 * 0x40) | masks << 7 | (g.below(4) as u32) << 13 | ((g.next() & 1) as u32 * 0x8000)
}

/// The input FXSAVE64 image of a sequence.
fn input_image(g: &mut Rng) -> [u8; 512] {
    let mut b = [0u8; 512];
    let cw = control_word(g);
    let flags = if g.chance(80) { 0 } else { (g.next() & 0x3f) as u16 };
    let unmasked = flags & !cw & 0x3f != 0;
    let sw = flags | (g.next() & 0x4700) as u16 | (g.below(8) as u16) << 11 | if unmasked { 0x8080 } else { 0 };
    b[0..2].copy_from_slice(&cw.to_le_bytes());
    b[2..4].copy_from_slice(&sw.to_le_bytes());
    b[4] = g.next() as u8;
    b[6..8].copy_from_slice(&((g.next() & 0x7ff) as u16).to_le_bytes());
    b[8..16].copy_from_slice(&(g.next() & 0xffff_ffff).to_le_bytes());
    b[16..24].copy_from_slice(&(g.next() & 0xffff_ffff).to_le_bytes());
    b[24..28].copy_from_slice(&mxcsr(g).to_le_bytes());
    for i in 0..8 {
        let (se, sig) = g.f80();
        b[32 + 16 * i..40 + 16 * i].copy_from_slice(&sig.to_le_bytes());
        b[40 + 16 * i..42 + 16 * i].copy_from_slice(&se.to_le_bytes());
    }
    for i in 0..16 {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(&g.vector().to_le_bytes());
    }
    b
}

/// A general register's starting value.
fn gpr_value(g: &mut Rng) -> u64 {
    match g.below(5) {
        0 => g.below(40).wrapping_sub(20),
        1 => g.ieee(11, 52),
        2 => g.ieee(8, 23),
        _ => g.next(),
    }
}

/// What a sequence needs to remember while it is generated.
#[derive(Default)]
struct Seq {
    /// The last x87/MMX instruction was transcendental: nothing may touch
    /// that state again.
    closed: bool,
    /// An FXSAVE to [rbx + 512] happened (FXRSTOR may follow).
    saved: bool,
}

/// The transcendental instructions whose last bit and C1 are masked.
const TRANSCENDENTAL: [&str; 8] = ["fsin", "fcos", "fsincos", "fptan", "fpatan", "f2xm1", "fyl2x", "fyl2xp1"];

/// Emits one instruction (or a short idiom); returns its form's name.
fn emit(a: &mut CodeAssembler, g: &mut Rng, s: &mut Seq) -> Result<&'static str, IcedError> {
    loop {
        let family = g.below(100);
        if s.closed && family < 40 {
            continue;
        }
        return match family {
            0..=27 => x87(a, g, s),
            28..=39 => mmx(a, g),
            40..=69 => sse_float(a, g, s.closed),
            70..=89 => sse_int(a, g),
            _ => other(a, g, s),
        };
    }
}

/// Binary XMM forms: register or (aligned) memory source.
macro_rules! xbin {
    ($a:ident, $g:ident, $name:literal, $m:ident, $mem:expr) => {{
        let d = $g.xmm();
        if $g.chance(70) {
            $a.$m(d, $g.xmm())?
        } else {
            $a.$m(d, $mem)?
        }
        $name
    }};
}

/// Binary MMX forms.
macro_rules! mbin {
    ($a:ident, $g:ident, $name:literal, $m:ident) => {{
        let d = $g.mm();
        if $g.chance(70) {
            $a.$m(d, $g.mm())?
        } else {
            $a.$m(d, qword_ptr(rbx + $g.off(8)))?
        }
        $name
    }};
}

/// `closed`: MMX state may not be touched (see [`Seq`]).
fn sse_float(a: &mut CodeAssembler, g: &mut Rng, closed: bool) -> Result<&'static str, IcedError> {
    let m128 = |g: &mut Rng| xmmword_ptr(rbx + g.aligned());
    let m64 = |g: &mut Rng| qword_ptr(rbx + g.off(8));
    let m32 = |g: &mut Rng| dword_ptr(rbx + g.off(4));
    let imm = g.next() as i32 & 0xff;
    Ok(match g.below(62) {
        0 => xbin!(a, g, "addps", addps, m128(g)),
        1 => xbin!(a, g, "addpd", addpd, m128(g)),
        2 => xbin!(a, g, "addss", addss, m32(g)),
        3 => xbin!(a, g, "addsd", addsd, m64(g)),
        4 => xbin!(a, g, "subps", subps, m128(g)),
        5 => xbin!(a, g, "subsd", subsd, m64(g)),
        6 => xbin!(a, g, "mulps", mulps, m128(g)),
        7 => xbin!(a, g, "mulsd", mulsd, m64(g)),
        8 => xbin!(a, g, "mulss", mulss, m32(g)),
        9 => xbin!(a, g, "divps", divps, m128(g)),
        10 => xbin!(a, g, "divpd", divpd, m128(g)),
        11 => xbin!(a, g, "divss", divss, m32(g)),
        12 => xbin!(a, g, "divsd", divsd, m64(g)),
        13 => xbin!(a, g, "minps", minps, m128(g)),
        14 => xbin!(a, g, "maxpd", maxpd, m128(g)),
        15 => xbin!(a, g, "minss", minss, m32(g)),
        16 => xbin!(a, g, "maxsd", maxsd, m64(g)),
        17 => xbin!(a, g, "sqrtps", sqrtps, m128(g)),
        18 => xbin!(a, g, "sqrtpd", sqrtpd, m128(g)),
        19 => xbin!(a, g, "sqrtss", sqrtss, m32(g)),
        20 => xbin!(a, g, "sqrtsd", sqrtsd, m64(g)),
        21 => {
            let d = g.xmm();
            match g.below(4) {
                0 => a.cmpps(d, g.xmm(), imm & 7)?,
                1 => a.cmppd(d, m128(g), imm & 7)?,
                2 => a.cmpss(d, g.xmm(), imm & 7)?,
                _ => a.cmpsd_3(d, m64(g), imm & 7)?,
            }
            "cmpps/pd/ss/sd"
        }
        22 => xbin!(a, g, "comiss", comiss, m32(g)),
        23 => xbin!(a, g, "comisd", comisd, m64(g)),
        24 => xbin!(a, g, "ucomiss", ucomiss, m32(g)),
        25 => xbin!(a, g, "ucomisd", ucomisd, m64(g)),
        26 => xbin!(a, g, "rcpps", rcpps, m128(g)),
        27 => xbin!(a, g, "rsqrtss", rsqrtss, m32(g)),
        28 => {
            let d = g.xmm();
            match g.below(4) {
                0 => a.roundps(d, g.xmm(), imm & 15)?,
                1 => a.roundpd(d, m128(g), imm & 15)?,
                2 => a.roundss(d, g.xmm(), imm & 15)?,
                _ => a.roundsd(d, m64(g), imm & 15)?,
            }
            "roundps/pd/ss/sd"
        }
        29 => {
            let d = g.xmm();
            if g.chance(50) {
                a.dpps(d, g.xmm(), imm)?
            } else {
                a.dppd(d, g.xmm(), imm)?
            }
            "dpps/dppd"
        }
        30 => xbin!(a, g, "addsubps", addsubps, m128(g)),
        31 => xbin!(a, g, "addsubpd", addsubpd, m128(g)),
        32 => xbin!(a, g, "haddps", haddps, m128(g)),
        33 => xbin!(a, g, "hsubpd", hsubpd, m128(g)),
        34 => xbin!(a, g, "cvtss2sd", cvtss2sd, m32(g)),
        35 => xbin!(a, g, "cvtsd2ss", cvtsd2ss, m64(g)),
        36 => xbin!(a, g, "cvtps2pd", cvtps2pd, m64(g)),
        37 => xbin!(a, g, "cvtpd2ps", cvtpd2ps, m128(g)),
        38 => xbin!(a, g, "cvtdq2ps", cvtdq2ps, m128(g)),
        39 => xbin!(a, g, "cvtdq2pd", cvtdq2pd, m64(g)),
        40 => xbin!(a, g, "cvtps2dq", cvtps2dq, m128(g)),
        41 => xbin!(a, g, "cvttps2dq", cvttps2dq, m128(g)),
        42 => xbin!(a, g, "cvtpd2dq", cvtpd2dq, m128(g)),
        43 => xbin!(a, g, "cvttpd2dq", cvttpd2dq, m128(g)),
        44 => {
            let d = g.xmm();
            match g.below(4) {
                0 => a.cvtsi2ss(d, R32[g.r()])?,
                1 => a.cvtsi2ss(d, R64[g.r()])?,
                2 => a.cvtsi2sd(d, R32[g.r()])?,
                _ => a.cvtsi2sd(d, qword_ptr(rbx + g.off(8)))?,
            }
            "cvtsi2ss/sd"
        }
        45 => {
            let (r, x) = (g.r(), g.xmm());
            match g.below(6) {
                0 => a.cvtss2si(R32[r], x)?,
                1 => a.cvttss2si(R64[r], x)?,
                2 => a.cvtsd2si(R64[r], x)?,
                3 => a.cvttsd2si(R32[r], x)?,
                4 => a.cvtss2si(R64[r], m32(g))?,
                _ => a.cvttsd2si(R64[r], m64(g))?,
            }
            "cvt(t)ss2si/sd2si"
        }
        46 => {
            let (r, x) = (g.r(), g.xmm());
            if g.chance(50) {
                a.movmskps(R32[r], x)?
            } else {
                a.movmskpd(R64[r], x)?
            }
            "movmskps/pd"
        }
        47 => xbin!(a, g, "andps", andps, m128(g)),
        48 => xbin!(a, g, "andnpd", andnpd, m128(g)),
        49 => xbin!(a, g, "orps", orps, m128(g)),
        50 => xbin!(a, g, "xorpd", xorpd, m128(g)),
        51 => xbin!(a, g, "unpcklps", unpcklps, m128(g)),
        52 => xbin!(a, g, "unpckhpd", unpckhpd, m128(g)),
        53 => {
            let d = g.xmm();
            if g.chance(50) {
                a.shufps(d, g.xmm(), imm)?
            } else {
                a.shufpd(d, m128(g), imm & 3)?
            }
            "shufps/pd"
        }
        54 => {
            let d = g.xmm();
            match g.below(4) {
                0 => a.blendps(d, g.xmm(), imm & 15)?,
                1 => a.blendpd(d, m128(g), imm & 3)?,
                2 => a.blendvps(d, g.xmm())?,
                _ => a.blendvpd(d, m128(g))?,
            }
            "blend(v)ps/pd"
        }
        55 => {
            let d = g.xmm();
            if g.chance(60) {
                a.insertps(d, g.xmm(), imm)?
            } else {
                a.insertps(d, m32(g), imm)?
            }
            "insertps"
        }
        56 => {
            let x = g.xmm();
            if g.chance(60) {
                a.extractps(R32[g.r()], x, imm & 3)?
            } else {
                a.extractps(dword_ptr(rbx + g.off(4)), x, imm & 3)?
            }
            "extractps"
        }
        57 => xbin!(a, g, "movsldup", movsldup, m128(g)),
        58 => xbin!(a, g, "movshdup", movshdup, m128(g)),
        59 => xbin!(a, g, "movddup", movddup, m64(g)),
        60 if !closed => {
            let cvt = g.below(6);
            let x = g.xmm();
            match cvt {
                0 => a.cvtpi2ps(x, g.mm())?,
                1 => a.cvtpi2pd(x, qword_ptr(rbx + g.off(8)))?,
                2 => a.cvtps2pi(g.mm(), x)?,
                3 => a.cvttps2pi(g.mm(), qword_ptr(rbx + g.off(8)))?,
                4 => a.cvtpd2pi(g.mm(), x)?,
                _ => a.cvttpd2pi(g.mm(), m128(g))?,
            }
            return Ok("cvt(t)pi/ps/pd (mmx)");
        }
        _ => moves(a, g)?,
    })
}

/// Every move form, both directions.
fn moves(a: &mut CodeAssembler, g: &mut Rng) -> Result<&'static str, IcedError> {
    let (x, y) = (g.xmm(), g.xmm());
    let u = |g: &mut Rng| xmmword_ptr(rbx + g.off(16));
    let a16 = |g: &mut Rng| xmmword_ptr(rbx + g.aligned());
    Ok(match g.below(22) {
        0 => xbin!(a, g, "movaps load", movaps, a16(g)),
        1 => {
            a.movaps(a16(g), x)?;
            "movaps store"
        }
        2 => xbin!(a, g, "movupd load", movupd, u(g)),
        3 => {
            a.movups(u(g), x)?;
            "movups store"
        }
        4 => xbin!(a, g, "movdqa load", movdqa, a16(g)),
        5 => {
            a.movdqu(u(g), x)?;
            "movdqu store"
        }
        6 => {
            a.lddqu(x, u(g))?;
            "lddqu"
        }
        7 => {
            match g.below(3) {
                0 => a.movss(x, y)?,
                1 => a.movss(x, dword_ptr(rbx + g.off(4)))?,
                _ => a.movss(dword_ptr(rbx + g.off(4)), x)?,
            }
            "movss"
        }
        8 => {
            match g.below(3) {
                0 => a.movsd_2(x, y)?,
                1 => a.movsd_2(x, qword_ptr(rbx + g.off(8)))?,
                _ => a.movsd_2(qword_ptr(rbx + g.off(8)), x)?,
            }
            "movsd"
        }
        9 => {
            match g.below(4) {
                0 => a.movlps(x, qword_ptr(rbx + g.off(8)))?,
                1 => a.movhps(qword_ptr(rbx + g.off(8)), x)?,
                2 => a.movlpd(qword_ptr(rbx + g.off(8)), x)?,
                _ => a.movhpd(x, qword_ptr(rbx + g.off(8)))?,
            }
            "movlps/hps/lpd/hpd"
        }
        10 => {
            if g.chance(50) {
                a.movhlps(x, y)?
            } else {
                a.movlhps(x, y)?
            }
            "movhlps/movlhps"
        }
        11 => {
            match g.below(3) {
                0 => a.movq(x, y)?,
                1 => a.movq(x, qword_ptr(rbx + g.off(8)))?,
                _ => a.movq(qword_ptr(rbx + g.off(8)), x)?,
            }
            "movq xmm"
        }
        12 => {
            let r = g.r();
            match g.below(4) {
                0 => a.movd(x, R32[r])?,
                1 => a.movq(x, R64[r])?,
                2 => a.movd(R32[r], x)?,
                _ => a.movq(R64[r], x)?,
            }
            "movd/movq xmm<->gpr"
        }
        13 => {
            match g.below(4) {
                0 => a.movntdq(a16(g), x)?,
                1 => a.movntps(a16(g), x)?,
                2 => a.movnti(qword_ptr(rbx + g.off(8)), R64[g.r()])?,
                _ => a.movntdqa(x, a16(g))?,
            }
            "movnt*"
        }
        14 => {
            a.lea(rdi, qword_ptr(rbx + 64 + g.below(48) as i32))?;
            a.maskmovdqu(x, y)?;
            "maskmovdqu"
        }
        15 => {
            a.stmxcsr(dword_ptr(rbx + g.off(4)))?;
            "stmxcsr"
        }
        16 => {
            let off = g.off(4);
            let v = if g.chance(3) { 1 << (16 + g.below(16)) } else { mxcsr(g) };
            a.mov(dword_ptr(rbx + off), v)?;
            a.ldmxcsr(dword_ptr(rbx + off))?;
            "ldmxcsr"
        }
        _ => {
            a.movapd(x, y)?;
            "movapd"
        }
    })
}

fn sse_int(a: &mut CodeAssembler, g: &mut Rng) -> Result<&'static str, IcedError> {
    let m128 = |g: &mut Rng| xmmword_ptr(rbx + g.aligned());
    let imm = g.next() as i32 & 0xff;
    Ok(match g.below(48) {
        0 => xbin!(a, g, "paddb", paddb, m128(g)),
        1 => xbin!(a, g, "paddq", paddq, m128(g)),
        2 => xbin!(a, g, "psubw", psubw, m128(g)),
        3 => xbin!(a, g, "paddsw", paddsw, m128(g)),
        4 => xbin!(a, g, "psubusb", psubusb, m128(g)),
        5 => xbin!(a, g, "pmullw", pmullw, m128(g)),
        6 => xbin!(a, g, "pmulld", pmulld, m128(g)),
        7 => xbin!(a, g, "pmulhuw", pmulhuw, m128(g)),
        8 => xbin!(a, g, "pmuldq", pmuldq, m128(g)),
        9 => xbin!(a, g, "pmuludq", pmuludq, m128(g)),
        10 => xbin!(a, g, "pmaddwd", pmaddwd, m128(g)),
        11 => xbin!(a, g, "pmaddubsw", pmaddubsw, m128(g)),
        12 => xbin!(a, g, "pmulhrsw", pmulhrsw, m128(g)),
        13 => xbin!(a, g, "pavgb", pavgb, m128(g)),
        14 => xbin!(a, g, "psadbw", psadbw, m128(g)),
        15 => xbin!(a, g, "pminsb", pminsb, m128(g)),
        16 => xbin!(a, g, "pmaxud", pmaxud, m128(g)),
        17 => xbin!(a, g, "pminuw", pminuw, m128(g)),
        18 => xbin!(a, g, "pcmpeqq", pcmpeqq, m128(g)),
        19 => xbin!(a, g, "pcmpgtq", pcmpgtq, m128(g)),
        20 => xbin!(a, g, "pcmpgtb", pcmpgtb, m128(g)),
        21 => xbin!(a, g, "phaddsw", phaddsw, m128(g)),
        22 => xbin!(a, g, "phsubd", phsubd, m128(g)),
        23 => xbin!(a, g, "psignb", psignb, m128(g)),
        24 => xbin!(a, g, "pabsw", pabsw, m128(g)),
        25 => xbin!(a, g, "pshufb", pshufb, m128(g)),
        26 => xbin!(a, g, "packsswb", packsswb, m128(g)),
        27 => xbin!(a, g, "packusdw", packusdw, m128(g)),
        28 => xbin!(a, g, "punpckhbw", punpckhbw, m128(g)),
        29 => xbin!(a, g, "punpcklqdq", punpcklqdq, m128(g)),
        30 => xbin!(a, g, "pand", pand, m128(g)),
        31 => xbin!(a, g, "pandn", pandn, m128(g)),
        32 => xbin!(a, g, "ptest", ptest, m128(g)),
        33 => xbin!(a, g, "phminposuw", phminposuw, m128(g)),
        34 => {
            let (d, x) = (g.xmm(), g.xmm());
            match g.below(8) {
                0 => a.psllw(d, x)?,
                1 => a.psrld(d, m128(g))?,
                2 => a.psraw(d, imm & 31)?,
                3 => a.psrlq(d, imm & 127)?,
                4 => a.pslldq(d, imm & 31)?,
                5 => a.psrldq(d, imm & 31)?,
                6 => a.psrad(d, x)?,
                _ => a.psllq(d, imm & 127)?,
            }
            "psll/psrl/psra (xmm)"
        }
        35 => {
            let (d, x) = (g.xmm(), g.xmm());
            match g.below(4) {
                0 => a.pshufd(d, x, imm)?,
                1 => a.pshufhw(d, m128(g), imm)?,
                2 => a.pshuflw(d, x, imm)?,
                _ => a.palignr(d, x, imm & 31)?,
            }
            "pshufd/hw/lw, palignr"
        }
        36 => {
            let d = g.xmm();
            match g.below(3) {
                0 => a.pblendw(d, g.xmm(), imm)?,
                1 => a.pblendvb(d, m128(g))?,
                _ => a.mpsadbw(d, g.xmm(), imm & 7)?,
            }
            "pblendw/pblendvb/mpsadbw"
        }
        37 => {
            let (d, r) = (g.xmm(), g.r());
            match g.below(5) {
                0 => a.pinsrb(d, R32[r], imm & 15)?,
                1 => a.pinsrw(d, R32[r], imm & 7)?,
                2 => a.pinsrd(d, dword_ptr(rbx + g.off(4)), imm & 3)?,
                3 => a.pinsrq(d, R64[r], imm & 1)?,
                _ => a.pinsrb(d, byte_ptr(rbx + g.off(1)), imm & 15)?,
            }
            "pinsrb/w/d/q"
        }
        38 => {
            let (x, r) = (g.xmm(), g.r());
            match g.below(5) {
                0 => a.pextrb(R32[r], x, imm & 15)?,
                1 => a.pextrw(R32[r], x, imm & 7)?,
                2 => a.pextrd(dword_ptr(rbx + g.off(4)), x, imm & 3)?,
                3 => a.pextrq(R64[r], x, imm & 1)?,
                _ => a.pextrb(byte_ptr(rbx + g.off(1)), x, imm & 15)?,
            }
            "pextrb/w/d/q"
        }
        39 => {
            a.pmovmskb(R32[g.r()], g.xmm())?;
            "pmovmskb xmm"
        }
        40 => {
            let d = g.xmm();
            match g.below(6) {
                0 => a.pmovsxbw(d, g.xmm())?,
                1 => a.pmovzxbd(d, dword_ptr(rbx + g.off(4)))?,
                2 => a.pmovsxbq(d, word_ptr(rbx + g.off(2)))?,
                3 => a.pmovzxwd(d, qword_ptr(rbx + g.off(8)))?,
                4 => a.pmovsxwq(d, g.xmm())?,
                _ => a.pmovzxdq(d, g.xmm())?,
            }
            "pmovsx/zx"
        }
        41 | 42 => {
            let (d, x) = (g.xmm(), g.xmm());
            let mem = xmmword_ptr(rbx + g.off(16));
            let imm = imm & 0x7f;
            match g.below(6) {
                0 => a.pcmpestri(d, x, imm)?,
                1 => a.pcmpestrm(d, mem, imm)?,
                2 => a.pcmpistri(d, x, imm)?,
                3 => a.pcmpistrm(d, mem, imm)?,
                4 => a.pcmpestri64(d, mem, imm)?,
                _ => a.pcmpestrm64(d, x, imm)?,
            }
            "pcmpestri/m, pcmpistri/m"
        }
        43 => xbin!(a, g, "packssdw", packssdw, m128(g)),
        44 => xbin!(a, g, "punpcklwd", punpcklwd, m128(g)),
        45 => xbin!(a, g, "psubsb", psubsb, m128(g)),
        46 => xbin!(a, g, "pmaxsw", pmaxsw, m128(g)),
        _ => xbin!(a, g, "pxor", pxor, m128(g)),
    })
}

fn mmx(a: &mut CodeAssembler, g: &mut Rng) -> Result<&'static str, IcedError> {
    let imm = g.next() as i32 & 0xff;
    Ok(match g.below(30) {
        0 => mbin!(a, g, "paddb mm", paddb),
        1 => mbin!(a, g, "paddd mm", paddd),
        2 => mbin!(a, g, "psubq mm", psubq),
        3 => mbin!(a, g, "paddusw mm", paddusw),
        4 => mbin!(a, g, "psubsb mm", psubsb),
        5 => mbin!(a, g, "pmulhw mm", pmulhw),
        6 => mbin!(a, g, "pmaddwd mm", pmaddwd),
        7 => mbin!(a, g, "pcmpeqw mm", pcmpeqw),
        8 => mbin!(a, g, "pcmpgtd mm", pcmpgtd),
        9 => mbin!(a, g, "packuswb mm", packuswb),
        10 => mbin!(a, g, "punpckhdq mm", punpckhdq),
        11 => {
            let d = g.mm();
            a.punpcklbw(d, dword_ptr(rbx + g.off(4)))?;
            "punpcklbw mm, m32"
        }
        12 => mbin!(a, g, "pand/por mm", por),
        13 => mbin!(a, g, "pxor mm", pxor),
        14 => {
            let (d, s) = (g.mm(), g.mm());
            match g.below(4) {
                0 => a.psllw(d, s)?,
                1 => a.psrad(d, imm & 63)?,
                2 => a.psrlq(d, qword_ptr(rbx + g.off(8)))?,
                _ => a.pslld(d, imm & 63)?,
            }
            "psll/psrl/psra mm"
        }
        15 => mbin!(a, g, "pavgw mm", pavgw),
        16 => mbin!(a, g, "psadbw mm", psadbw),
        17 => mbin!(a, g, "pminub mm", pminub),
        18 => mbin!(a, g, "pmulhuw mm", pmulhuw),
        19 => {
            let d = g.mm();
            a.pshufw(d, g.mm(), imm)?;
            "pshufw"
        }
        20 => mbin!(a, g, "pshufb mm", pshufb),
        21 => {
            let d = g.mm();
            a.palignr(d, g.mm(), imm & 15)?;
            "palignr mm"
        }
        22 => mbin!(a, g, "phaddw mm", phaddw),
        23 => mbin!(a, g, "pabsd mm", pabsd),
        24 => mbin!(a, g, "pmulhrsw mm", pmulhrsw),
        25 => {
            let (m, r) = (g.mm(), g.r());
            match g.below(6) {
                0 => a.movd(m, R32[r])?,
                1 => a.movq(R64[r], m)?,
                2 => a.movq(m, qword_ptr(rbx + g.off(8)))?,
                3 => a.movq(qword_ptr(rbx + g.off(8)), m)?,
                4 => a.movq2dq(g.xmm(), m)?,
                _ => a.movdq2q(m, g.xmm())?,
            }
            "movd/movq mm"
        }
        26 => {
            let (m, r) = (g.mm(), g.r());
            match g.below(3) {
                0 => a.pextrw(R32[r], m, imm & 3)?,
                1 => a.pinsrw(m, R32[r], imm & 3)?,
                _ => a.pmovmskb(R32[r], m)?,
            }
            "pextrw/pinsrw/pmovmskb mm"
        }
        27 => {
            a.lea(rdi, qword_ptr(rbx + 64 + g.below(48) as i32))?;
            a.maskmovq(g.mm(), g.mm())?;
            "maskmovq"
        }
        28 => {
            a.movntq(qword_ptr(rbx + g.off(8)), g.mm())?;
            "movntq"
        }
        _ => {
            a.emms()?;
            "emms"
        }
    })
}

fn x87(a: &mut CodeAssembler, g: &mut Rng, s: &mut Seq) -> Result<&'static str, IcedError> {
    let (i, j) = (g.st(), g.st());
    let m = |g: &mut Rng, n: u64| rbx + g.off(n);
    Ok(match g.below(40) {
        0 => {
            match g.below(4) {
                0 => a.fld(dword_ptr(m(g, 4)))?,
                1 => a.fld(qword_ptr(m(g, 8)))?,
                2 => a.fld(tword_ptr(m(g, 10)))?,
                _ => a.fld(i)?,
            }
            "fld"
        }
        1 => {
            match g.below(4) {
                0 => a.fild(word_ptr(m(g, 2)))?,
                1 => a.fild(dword_ptr(m(g, 4)))?,
                2 => a.fild(qword_ptr(m(g, 8)))?,
                _ => a.fbld(tword_ptr(m(g, 10)))?,
            }
            "fild/fbld"
        }
        2 => {
            match g.below(6) {
                0 => a.fst(dword_ptr(m(g, 4)))?,
                1 => a.fstp(qword_ptr(m(g, 8)))?,
                2 => a.fstp(tword_ptr(m(g, 10)))?,
                3 => a.fst(i)?,
                4 => a.fstp(i)?,
                _ => a.fst(qword_ptr(m(g, 8)))?,
            }
            "fst/fstp"
        }
        3 => {
            match g.below(8) {
                0 => a.fist(word_ptr(m(g, 2)))?,
                1 => a.fist(dword_ptr(m(g, 4)))?,
                2 => a.fistp(qword_ptr(m(g, 8)))?,
                3 => a.fistp(word_ptr(m(g, 2)))?,
                4 => a.fisttp(dword_ptr(m(g, 4)))?,
                5 => a.fisttp(qword_ptr(m(g, 8)))?,
                6 => a.fisttp(word_ptr(m(g, 2)))?,
                _ => a.fbstp(tword_ptr(m(g, 10)))?,
            }
            "fist/fistp/fisttp/fbstp"
        }
        4..=9 => {
            let op = g.below(6);
            macro_rules! arith {
                ($f:ident, $f2:ident, $fp:ident, $fi:ident) => {
                    match g.below(6) {
                        0 => a.$f(dword_ptr(m(g, 4)))?,
                        1 => a.$f(qword_ptr(m(g, 8)))?,
                        2 => a.$f2(st0, i)?,
                        3 => a.$f2(i, st0)?,
                        4 => a.$fp(i, st0)?,
                        _ => {
                            if g.chance(50) {
                                a.$fi(word_ptr(m(g, 2)))?
                            } else {
                                a.$fi(dword_ptr(m(g, 4)))?
                            }
                        }
                    }
                };
            }
            match op {
                0 => arith!(fadd, fadd_2, faddp, fiadd),
                1 => arith!(fsub, fsub_2, fsubp, fisub),
                2 => arith!(fsubr, fsubr_2, fsubrp, fisubr),
                3 => arith!(fmul, fmul_2, fmulp, fimul),
                4 => arith!(fdiv, fdiv_2, fdivp, fidiv),
                _ => arith!(fdivr, fdivr_2, fdivrp, fidivr),
            }
            "fadd/fsub/fsubr/fmul/fdiv/fdivr (all forms)"
        }
        10 | 11 => {
            match g.below(12) {
                0 => a.fcom(dword_ptr(m(g, 4)))?,
                1 => a.fcomp(qword_ptr(m(g, 8)))?,
                2 => a.fcom_2(st0, i)?,
                3 => a.fcomp_2(st0, i)?,
                4 => a.fcompp()?,
                5 => a.fucom(st0, i)?,
                6 => a.fucomp(st0, i)?,
                7 => a.fucompp()?,
                8 => a.ficom(word_ptr(m(g, 2)))?,
                9 => a.ficomp(dword_ptr(m(g, 4)))?,
                10 => a.ftst()?,
                _ => a.fxam()?,
            }
            "fcom/fucom/ficom/ftst/fxam"
        }
        12 => {
            match g.below(4) {
                0 => a.fcomi(st0, i)?,
                1 => a.fcomip(st0, i)?,
                2 => a.fucomi(st0, i)?,
                _ => a.fucomip(st0, i)?,
            }
            "fcomi/fucomi(p)"
        }
        13 | 14 => {
            match g.below(8) {
                0 => a.fchs()?,
                1 => a.fabs()?,
                2 => a.fsqrt()?,
                3 => a.frndint()?,
                4 => a.fscale()?,
                5 => a.fxtract()?,
                6 => a.fprem()?,
                _ => a.fprem1()?,
            }
            "fchs/fabs/fsqrt/frndint/fscale/fxtract/fprem/fprem1"
        }
        15 => {
            let k = g.below(8) as usize;
            match k {
                0 => a.fsin()?,
                1 => a.fcos()?,
                2 => a.fsincos()?,
                3 => a.fptan()?,
                4 => a.fpatan()?,
                5 => a.f2xm1()?,
                6 => a.fyl2x()?,
                _ => a.fyl2xp1()?,
            }
            s.closed = true;
            TRANSCENDENTAL[k]
        }
        16 => {
            match g.below(8) {
                0 => a.fcmovb(st0, i)?,
                1 => a.fcmove(st0, i)?,
                2 => a.fcmovbe(st0, i)?,
                3 => a.fcmovu(st0, i)?,
                4 => a.fcmovnb(st0, i)?,
                5 => a.fcmovne(st0, i)?,
                6 => a.fcmovnbe(st0, i)?,
                _ => a.fcmovnu(st0, i)?,
            }
            "fcmovcc"
        }
        17 => {
            match g.below(6) {
                0 => a.fxch(st0, i)?,
                1 => a.ffree(j)?,
                2 => a.fincstp()?,
                3 => a.fdecstp()?,
                4 => a.fnop()?,
                _ => a.ffreep(j)?,
            }
            "fxch/ffree/ffreep/fincstp/fdecstp/fnop"
        }
        18 | 19 => {
            match g.below(7) {
                0 => a.fld1()?,
                1 => a.fldl2t()?,
                2 => a.fldl2e()?,
                3 => a.fldpi()?,
                4 => a.fldlg2()?,
                5 => a.fldln2()?,
                _ => a.fldz()?,
            }
            "fld1/fldl2t/fldl2e/fldpi/fldlg2/fldln2/fldz"
        }
        20 => {
            let off = g.off(2);
            a.mov(word_ptr(rbx + off), u32::from(control_word(g)))?;
            a.fldcw(word_ptr(rbx + off))?;
            "fldcw"
        }
        21 => {
            match g.below(5) {
                0 => a.fnstcw(word_ptr(m(g, 2)))?,
                1 => a.fnstsw(ax)?,
                2 => a.fnstsw(word_ptr(m(g, 2)))?,
                3 => a.fnclex()?,
                _ => a.wait()?,
            }
            "fnstcw/fnstsw/fnclex/fwait"
        }
        22 => {
            match g.below(4) {
                0 => a.fnstenv(ptr(m(g, 28)))?,
                1 => a.fldenv(ptr(m(g, 28)))?,
                2 => a.fnsave(ptr(rbx + 128 + g.below(20) as i32))?,
                _ => a.frstor(ptr(rbx + 128 + g.below(20) as i32))?,
            }
            "fnstenv/fldenv/fnsave/frstor"
        }
        23 => {
            a.fninit()?;
            "fninit"
        }
        24 => {
            if s.saved && g.chance(60) {
                if g.chance(50) {
                    a.fxrstor64(ptr(rbx + 512))?
                } else {
                    a.fxrstor(ptr(rbx + 512))?
                }
                "fxrstor/fxrstor64"
            } else {
                if g.chance(50) {
                    a.fxsave64(ptr(rbx + 512))?
                } else {
                    a.fxsave(ptr(rbx + 512))?
                }
                s.saved = true;
                "fxsave/fxsave64"
            }
        }
        _ => {
            // Arithmetic on the stack's top two more often: the forms
            // compilers emit.
            match g.below(4) {
                0 => a.faddp(st1, st0)?,
                1 => a.fmul_2(st0, st1)?,
                2 => a.fdivrp(st1, st0)?,
                _ => a.fsubp(st1, st0)?,
            }
            "faddp/fmul/fdivrp/fsubp st(1)"
        }
    })
}

/// POPCNT, CRC32, CMPXCHG8B/16B, LAHF/SAHF, prefetches and fences.
fn other(a: &mut CodeAssembler, g: &mut Rng, _s: &mut Seq) -> Result<&'static str, IcedError> {
    let (d, r) = (g.r(), g.r());
    Ok(match g.below(7) {
        0 => {
            if g.chance(50) {
                a.popcnt(R64[d], R64[r])?
            } else {
                a.popcnt(R32[d], dword_ptr(rbx + g.off(4)))?
            }
            "popcnt"
        }
        1 => {
            match g.below(4) {
                0 => a.crc32(R32[d], byte_ptr(rbx + g.off(1)))?,
                1 => a.crc32(R32[d], R32[r])?,
                2 => a.crc32(R64[d], qword_ptr(rbx + g.off(8)))?,
                _ => a.crc32(R32[d], word_ptr(rbx + g.off(2)))?,
            }
            "crc32"
        }
        2 | 3 => {
            let off = if g.chance(90) { g.aligned() } else { g.off(16) };
            if g.chance(50) {
                a.mov(rax, qword_ptr(rbx + off))?;
                a.mov(rdx, qword_ptr(rbx + off + 8))?;
            }
            if g.chance(70) {
                a.cmpxchg16b(xmmword_ptr(rbx + off))?
            } else {
                a.cmpxchg8b(qword_ptr(rbx + off))?
            }
            "cmpxchg8b/16b"
        }
        4 => {
            if g.chance(50) {
                a.lahf()?
            } else {
                a.sahf()?
            }
            "lahf/sahf"
        }
        5 => {
            match g.below(5) {
                0 => a.prefetchnta(byte_ptr(rbx + g.off(1)))?,
                1 => a.prefetcht0(byte_ptr(rbx + g.off(1)))?,
                2 => a.prefetchw(byte_ptr(rbx + g.off(1)))?,
                3 => a.prefetcht2(byte_ptr(rbx + g.off(1)))?,
                _ => a.prefetcht1(byte_ptr(rbx + g.off(1)))?,
            }
            "prefetch*"
        }
        _ => {
            match g.below(3) {
                0 => a.sfence()?,
                1 => a.lfence()?,
                _ => a.mfence()?,
            }
            "sfence/lfence/mfence"
        }
    })
}

/// The ring-0 handler of `vector`: records the vector, the faulting RIP
/// and the error code (if the vector has one) at REC and returns to the
/// address at RESUME.
fn handler(a: &mut CodeAssembler, vector: u8, error_code: bool) -> Result<CodeLabel, IcedError> {
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    let rip = if error_code { 16 } else { 8 };
    a.push(rax)?;
    a.mov(rax, qword_ptr(rsp + rip))?;
    a.mov(qword_ptr(REC + 8), rax)?;
    if error_code {
        a.mov(rax, qword_ptr(rsp + 8))?;
        a.mov(qword_ptr(REC + 16), rax)?;
    }
    a.mov(qword_ptr(REC), i32::from(vector))?;
    a.mov(rax, qword_ptr(RESUME))?;
    a.mov(qword_ptr(rsp + rip), rax)?;
    a.pop(rax)?;
    if error_code {
        a.add(rsp, 8)?;
    }
    a.iretq()?;
    Ok(l)
}

/// The vectors the handler takes, and whether they push an error code.
const CAUGHT: [(u8, bool, &str); 5] =
    [(6, false, "h6"), (7, false, "h7"), (13, true, "h13"), (16, false, "h16"), (19, false, "h19")];

/// One sequence to generate: its input image and scratch memory, the
/// seed of its registers, flags and instructions, and how many
/// instructions it has (a prefix of a longer one keeps the seed).
#[derive(Clone)]
struct Plan {
    input: [u8; 512],
    scratch: Vec<u8>,
    seed: u64,
    len: u64,
}

fn plan(g: &mut Rng) -> Plan {
    let input = input_image(g);
    let scratch = (0..SCRATCH_LEN / 8)
        .flat_map(|_| {
            match g.below(3) {
                0 => g.ieee(11, 52),
                1 => g.ieee(8, 23) | g.ieee(8, 23) << 32,
                _ => g.next(),
            }
            .to_le_bytes()
        })
        .collect();
    Plan { input, scratch, seed: g.next(), len: 1 + g.below(MAX_LEN) }
}

/// One batch: the image, each sequence's forms and whether it ended on a
/// transcendental, and the plans it was built from.
struct Batch {
    img: Image,
    seqs: Vec<(Vec<&'static str>, bool)>,
    plans: Vec<Plan>,
}

/// Sequence `k`: load the state, run the instructions, store everything.
fn sequence(a: &mut CodeAssembler, k: usize, p: &Plan) -> Result<(Vec<&'static str>, bool), IcedError> {
    let g = &mut Rng(p.seed);
    let mut recover = a.create_label();
    a.lea(rax, ptr(recover))?;
    a.mov(qword_ptr(RESUME), rax)?;
    a.fxrstor64(ptr(INPUT + 512 * k as u64))?;
    for r in R64 {
        let v = gpr_value(g);
        a.mov(r, v)?;
    }
    a.mov(rbx, SCRATCH + SCRATCH_LEN * k as u64)?;
    a.lea(rdi, qword_ptr(rbx + 64))?;
    // Status flags, DF sometimes, IOPL 3 (as the kernel enters ring 3),
    // IF clear.
    let df = if g.chance(20) { 0x400 } else { 0 };
    let flags = (g.next() & 0x8d5) | df | 0x3002;
    a.push(flags as i32)?;
    a.popfq()?;
    let mut s = Seq::default();
    let mut forms = Vec::new();
    for _ in 0..p.len {
        forms.push(emit(a, g, &mut s)?);
    }
    a.set_label(&mut recover)?;
    let out = OUTPUT + OUT_STRIDE * k as u64;
    a.fxsave64(ptr(out))?;
    let all = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
    for (i, r) in all.iter().enumerate() {
        if i != 4 {
            a.mov(qword_ptr(out + 512 + 8 * i as u64), *r)?;
        }
    }
    a.pushfq()?;
    a.pop(qword_ptr(out + 640))?;
    for w in 0..3u64 {
        a.mov(rax, qword_ptr(REC + 8 * w))?;
        a.mov(qword_ptr(out + 648 + 8 * w), rax)?;
        a.mov(qword_ptr(REC + 8 * w), 0)?;
    }
    Ok((forms, s.closed))
}

fn build(plans: Vec<Plan>) -> Batch {
    let mut seqs = Vec::new();
    let mut img = program_marked("fp-diff", Ring::User, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        let mut body = a.create_label();
        a.jmp(body)?;
        let mut marks = Vec::new();
        for (v, ec, name) in CAUGHT {
            let l = handler(a, v, ec)?;
            marks.push((name, l));
        }
        a.set_label(&mut body)?;
        for (k, p) in plans.iter().enumerate() {
            seqs.push(sequence(a, k, p)?);
        }
        // The exit status is AL.
        a.xor(eax, eax)?;
        Ok(marks)
    })
    .expect("generated programs assemble");
    for (v, _, name) in CAUGHT {
        let h = img.symbol(name).expect("handler symbol");
        let at = (img.symbol("idt").expect("idt") - img.load_gpa) as usize + 16 * usize::from(v);
        let gate = &mut img.bytes[at..at + 16];
        gate[0..2].copy_from_slice(&(h as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&KERNEL_CS.to_le_bytes());
        gate[4] = 0;
        gate[5] = 0x8e;
        gate[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
    }
    Batch { img, seqs, plans }
}

/// The memory a batch leaves: outputs and scratch.
fn outcome<V: Vm>(vm: &mut V, b: &Batch) -> Result<(Vec<u8>, Vec<u8>), String> {
    let inputs: Vec<u8> = b.plans.iter().flat_map(|p| p.input).collect();
    let scratch: Vec<u8> = b.plans.iter().flat_map(|p| p.scratch.clone()).collect();
    vm.write_memory(INPUT, &inputs).map_err(|e| e.to_string())?;
    vm.write_memory(SCRATCH, &scratch).map_err(|e| e.to_string())?;
    let r = run_image_with(vm, &b.img, &RunOptions::default()).map_err(|e| e.to_string())?;
    if !matches!(r.outcome, exitlab_vmm::Outcome::Exited { status: 0 }) {
        return Err(format!("run ended with {:?}", r.outcome));
    }
    let n = b.seqs.len() as u64;
    let mut out = vec![0u8; (n * OUT_STRIDE) as usize];
    let mut scratch = vec![0u8; (n * SCRATCH_LEN) as usize];
    vm.read_memory(OUTPUT, &mut out).map_err(|e| e.to_string())?;
    vm.read_memory(SCRATCH, &mut scratch).map_err(|e| e.to_string())?;
    Ok((out, scratch))
}

/// Whether two 80-bit register images differ by at most one unit in the
/// last place (same sign).
fn one_ulp(a: &[u8], b: &[u8]) -> bool {
    let v = |x: &[u8]| {
        let sig = u64::from_le_bytes(x[..8].try_into().unwrap_or([0; 8]));
        let se = u16::from_le_bytes([x[8], x[9]]);
        (se >> 15, ((se as u128 & 0x7fff) << 63) | (sig & !(1 << 63)) as u128)
    };
    let ((sa, ka), (sb, kb)) = (v(a), v(b));
    sa == sb && ka.abs_diff(kb) <= 1
}

/// The first difference between two sequence outputs, after the masks.
/// This host's KVM turns a #GP(0) that ring-3 code takes on the CPU
/// (misaligned SSE operands, a reserved MXCSR bit, CMPXCHG16B) into #UD:
/// the nested hypervisor intercepts #GP and hands the instruction to
/// KVM's emulator, which cannot emulate it (DESIGN.md, Host findings), so
/// a KVM #UD where the simulator raised #GP(0) at the same RIP counts as
/// equal.
fn difference(k: &[u8], s: &[u8], trans: bool) -> Option<String> {
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut s = s.to_vec();
    if word(k, 648) == 6 && word(&s, 648) == 13 && word(&s, 664) == 0 {
        s[648] = 6;
    }
    let s = &s[..];
    let field = |at: usize| -> &'static str {
        match at {
            0..=1 => "FCW",
            2..=3 => "FSW",
            4 => "FTW",
            6..=7 => "FOP",
            8..=15 => "FIP",
            16..=23 => "FDP",
            24..=27 => "MXCSR",
            28..=31 => "MXCSR_MASK",
            32..=159 => "ST",
            160..=415 => "XMM",
            416..=511 => "FXSAVE reserved",
            512..=639 => "GPR",
            640..=647 => "RFLAGS",
            648..=655 => "exception vector",
            656..=663 => "exception RIP",
            _ => "exception error code",
        }
    };
    for at in 0..k.len() {
        let (mut x, mut y) = (k[at], s[at]);
        if trans && at == 3 {
            (x, y) = (x & !2, y & !2); // C1
        }
        if (640..648).contains(&at) {
            // Status flags and DF; IOPL as KVM reports it differs (DESIGN, Host findings).
            let m = (0x0cd5u64 >> (8 * (at - 640))) as u8;
            (x, y) = (x & m, y & m);
        }
        if x == y {
            continue;
        }
        if trans && (32..160).contains(&at) {
            let slot = 32 + (at - 32) / 16 * 16;
            if (at - slot) < 10 && one_ulp(&k[slot..slot + 10], &s[slot..slot + 10]) {
                continue;
            }
        }
        return Some(format!("{} (byte {at}): kvm {x:#04x}, sim {y:#04x}", field(at)));
    }
    None
}

/// Sequence `k`'s instructions, disassembled from the image.
fn listing(img: &Image, k: usize) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic};
    let start = img.symbol("body").unwrap_or(img.load_gpa);
    let off = (start - img.load_gpa) as usize;
    let mut d = Decoder::with_ip(64, &img.bytes[off..], start, DecoderOptions::NONE);
    let (mut text, mut on) = (String::new(), false);
    let mut f = IntelFormatter::new();
    while d.can_decode() {
        let i = d.decode();
        let disp = i.memory_displacement64();
        if i.mnemonic() == Mnemonic::Fxsave64 && disp == OUTPUT + OUT_STRIDE * k as u64 {
            break;
        }
        if on {
            let mut t = String::new();
            f.format(&i, &mut t);
            text += &format!("    {:#x} {t}\n", i.ip());
        }
        if i.mnemonic() == Mnemonic::Fxrstor64 && disp == INPUT + 512 * k as u64 {
            on = true;
        }
    }
    text
}

/// A sequence's input and both outputs, field by field.
fn detail(b: &Batch, k: usize, kvm: &[u8], sim: &[u8]) -> String {
    let hex = |x: &[u8]| x.iter().rev().map(|b| format!("{b:02x}")).collect::<String>();
    let input = &b.plans[k].input;
    let code = listing(&b.img, k);
    let mut t = code.clone();
    let fields: [(&str, usize, usize); 9] = [
        ("FCW", 0, 2),
        ("FSW", 2, 4),
        ("FTW", 4, 5),
        ("FOP", 6, 8),
        ("FIP", 8, 16),
        ("FDP", 16, 24),
        ("MXCSR", 24, 28),
        ("RFLAGS", 640, 648),
        ("exception", 648, 672),
    ];
    for (name, lo, hi) in fields {
        let inp = if hi <= 512 { hex(&input[lo..hi]) } else { String::from("-") };
        t += &format!("    {name:9} in {inp:>16} kvm {:>16} sim {:>16}\n", hex(&kvm[lo..hi]), hex(&sim[lo..hi]));
    }
    for r in 0..8 {
        let (lo, hi) = (32 + 16 * r, 42 + 16 * r);
        t += &format!("    ST{r}  in {} kvm {} sim {}\n", hex(&input[lo..hi]), hex(&kvm[lo..hi]), hex(&sim[lo..hi]));
    }
    for r in 0..16 {
        let (lo, hi) = (160 + 16 * r, 176 + 16 * r);
        let named = code.contains(&format!("xmm{r},")) || code.contains(&format!("xmm{r}\n"));
        if kvm[lo..hi] != sim[lo..hi] || input[lo..hi] != kvm[lo..hi] || named {
            t += &format!(
                "    XMM{r:<2} in {} kvm {} sim {}\n",
                hex(&input[lo..hi]),
                hex(&kvm[lo..hi]),
                hex(&sim[lo..hi])
            );
        }
    }
    for r in 0..16 {
        let (lo, hi) = (512 + 8 * r, 520 + 8 * r);
        if kvm[lo..hi] != sim[lo..hi] {
            t += &format!("    GPR{r:<2} kvm {} sim {}\n", hex(&kvm[lo..hi]), hex(&sim[lo..hi]));
        }
    }
    t
}

fn cases() -> usize {
    std::env::var("EXITLAB_FP_DIFF_SEQUENCES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

/// How many differing sequences to show in full (`EXITLAB_FP_DIFF_SHOW`).
fn shown() -> usize {
    std::env::var("EXITLAB_FP_DIFF_SHOW").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn seed() -> u64 {
    std::env::var("EXITLAB_FP_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x1337_0013)
}

/// Each sequence's first difference (if any), then the KVM and the
/// simulator outputs, byte for byte.
type BatchOutcome = (Vec<Option<String>>, Vec<u8>, Vec<u8>);

/// Runs a batch on both machines (`None` when KVM is unusable).
fn run_batch(b: &Batch) -> Option<BatchOutcome> {
    let mut kvm_vm = kvm(&b.img)?;
    let mut sim_vm = SimVm::new(b.img.memory_size).unwrap();
    let (k_out, k_mem) = outcome(&mut kvm_vm, b).expect("kvm run");
    let (s_out, s_mem) = outcome(&mut sim_vm, b).unwrap_or_else(|e| panic!("simulator: {e}"));
    let diffs = (0..b.seqs.len())
        .map(|i| {
            let (o, m) = (i * OUT_STRIDE as usize, i * SCRATCH_LEN as usize);
            let stride = OUT_STRIDE as usize;
            difference(&k_out[o..o + stride], &s_out[o..o + stride], b.seqs[i].1).or_else(|| {
                let (x, y) = (&k_mem[m..m + SCRATCH_LEN as usize], &s_mem[m..m + SCRATCH_LEN as usize]);
                x.iter()
                    .zip(y)
                    .position(|(p, q)| p != q)
                    .map(|at| format!("memory [rbx+{at}]: kvm {:#04x}, sim {:#04x}", x[at], y[at]))
            })
        })
        .collect();
    Some((diffs, k_out, s_out))
}

/// The shortest prefix of plan `p` that differs, in full.
fn bisect(p: &Plan) -> String {
    let plans: Vec<Plan> = (1..=p.len).map(|len| Plan { len, ..p.clone() }).collect();
    let b = build(plans);
    let Some((diffs, k_out, s_out)) = run_batch(&b) else { return String::new() };
    match diffs.iter().position(Option::is_some) {
        Some(j) => {
            let o = j * OUT_STRIDE as usize;
            format!(
                "  first differing prefix: {} instructions: {}\n{}",
                j + 1,
                diffs[j].as_deref().unwrap_or(""),
                detail(&b, j, &k_out[o..], &s_out[o..])
            )
        }
        None => String::from("  (no prefix differs alone)\n"),
    }
}

#[test]
fn random_fp_sequences_match_silicon() {
    let total = cases();
    let mut g = Rng(seed());
    let (mut done, mut instructions, mut faults) = (0usize, 0usize, BTreeMap::<u64, usize>::new());
    let mut forms = BTreeMap::<&str, usize>::new();
    let mut failures = Vec::new();
    while done < total {
        let n = BATCH.min(total - done);
        let batch = build((0..n).map(|_| plan(&mut g)).collect());
        let Some((diffs, k_out, s_out)) = run_batch(&batch) else { return };
        for (i, (seq_forms, _)) in batch.seqs.iter().enumerate() {
            instructions += seq_forms.len();
            for f in seq_forms {
                *forms.entry(f).or_default() += 1;
            }
            let o = i * OUT_STRIDE as usize;
            *faults.entry(u64::from_le_bytes(k_out[o + 648..o + 656].try_into().unwrap())).or_default() += 1;
            if let Some(d) = &diffs[i] {
                let more = if failures.len() < shown() {
                    let o = i * OUT_STRIDE as usize;
                    format!("{}{}", bisect(&batch.plans[i]), detail(&batch, i, &k_out[o..], &s_out[o..]))
                } else {
                    String::new()
                };
                failures.push(format!("sequence {} of batch at {done}: {d}\n{more}", i));
            }
        }
        done += n;
    }
    println!(
        "{done} sequences, {instructions} instructions, {} forms; exceptions by vector (0: none): {faults:?}",
        forms.len()
    );
    for (f, c) in &forms {
        println!("  {c:>7} {f}");
    }
    let shown = &failures[..failures.len().min(20)];
    assert!(failures.is_empty(), "{} of {done} sequences differ:\n{}", failures.len(), shown.join("\n"));
}

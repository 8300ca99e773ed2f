//! x87 semantics against silicon: tests/silicon/x87.txt holds 200 cases
//! for each of 72 instruction forms (memory operands, stack faults and a
//! full stack included) that gen_x87.c ran on the CPU its header names:
//! random control words (every precision and rounding control, some
//! exceptions unmasked) over zeros, denormals, pseudo-denormals,
//! unnormals, pseudo-NaNs, infinities, QNaNs and SNaNs of both signs,
//! values near integers and the exponent limits. After each instruction
//! the status word (TOP, C0-C3, flags, SF, ES, B), the abridged tag, ST(0),
//! ST(1), RFLAGS (FCOMI) and the stored memory must match exactly — except
//! the transcendental results, where the SDM promises less than 1 ulp and
//! silicon's algorithm is its own: there the value may differ by one unit
//! in the last place, and the test counts how often it does.

use exitlab_x86::fp::round::{DOUBLE, SINGLE};
use exitlab_x86::fp::x87::*;
use exitlab_x86::fp::{Exc, Rc};

struct Case<'a> {
    op: &'a str,
    cw: u16,
    a: F80,
    b: F80,
    fsw: u16,
    ftw: u8,
    st0: F80,
    st1: F80,
    rflags: u64,
    mem: [u8; 10],
}

fn f80(s: &str) -> F80 {
    F80 { se: u16::from_str_radix(&s[..4], 16).unwrap(), sig: u64::from_str_radix(&s[4..], 16).unwrap() }
}

fn parse(line: &str) -> Case<'_> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // Loads print no memory image.
    let mut mem = [0x5au8; 10];
    if f[9].len() == 20 {
        for (i, m) in mem.iter_mut().enumerate() {
            *m = u8::from_str_radix(&f[9][18 - 2 * i..20 - 2 * i], 16).unwrap();
        }
    }
    Case {
        op: f[0],
        cw: u16::from_str_radix(f[1], 16).unwrap(),
        a: f80(f[2]),
        b: f80(f[3]),
        fsw: u16::from_str_radix(f[4], 16).unwrap(),
        ftw: u8::from_str_radix(f[5], 16).unwrap(),
        st0: f80(f[6]),
        st1: f80(f[7]),
        rflags: u64::from_str_radix(f[8], 16).unwrap(),
        mem,
    }
}

/// Runs a case through the model: the state after the instruction, the
/// RFLAGS bits (FCOMI) and the memory image.
fn model(c: &Case) -> (X87, u64, [u8; 10]) {
    let mut x = X87::default();
    x.fldcw(c.cw);
    let mut mem = [0x5au8; 10];
    let mut rflags = 0;
    let (mem_form, one) = (c.op.ends_with("_m"), c.op.starts_with("e_"));
    if c.op.starts_with("o_") {
        for _ in 0..8 {
            x.push(c.a, Exc::NONE);
        }
        x.fnclex();
    } else if one {
        x.push(c.a, Exc::NONE);
    } else if mem_form {
        x.push(F80::ZERO, Exc::NONE);
        x.push(c.a, Exc::NONE);
    } else if !c.op.starts_with("fld") && c.op != "fbld" {
        x.push(c.b, Exc::NONE);
        x.push(c.a, Exc::NONE);
    }
    let m = c.b.sig;
    let mut put = |bytes: &[u8]| mem[..bytes.len()].copy_from_slice(bytes);
    use Arith87::*;
    match c.op {
        "fadd" => x.arith(Add, 0, Operand::St(1), false),
        "fsub" => x.arith(Sub, 0, Operand::St(1), false),
        "fsubr" => x.arith(SubR, 0, Operand::St(1), false),
        "fmul" => x.arith(Mul, 0, Operand::St(1), false),
        "fdiv" => x.arith(Div, 0, Operand::St(1), false),
        "fdivr" => x.arith(DivR, 0, Operand::St(1), false),
        "faddp" => x.arith(Add, 1, Operand::St(0), true),
        "fsqrt" => x.unary(sqrt),
        "frndint" => x.unary(rndint),
        "fscale" => x.fscale(),
        "fxtract" => x.fxtract(),
        "fprem" => x.fprem(false),
        "fprem1" => x.fprem(true),
        "fabs" => x.fabs(),
        "fchs" => x.fchs(),
        "fxch" => x.fxch(1),
        "fcom" => x.fcom(Operand::St(1), true, 0),
        "fucom" => x.fcom(Operand::St(1), false, 0),
        "fcompp" => x.fcom(Operand::St(1), true, 2),
        "ftst" => x.fcom(Operand::Mem(F80::ZERO, false), true, 0),
        "fxam" => x.fxam(),
        "fcomi" => rflags = x.fcomi(1, true, false),
        "fucomip" => rflags = x.fcomi(1, false, true),
        "fsts" => {
            if let Some(v) = x.store(false, |v, cw| to_ieee(&SINGLE, v, cw), 0) {
                put(&(v as u32).to_le_bytes());
            }
        }
        "fstl" => {
            if let Some(v) = x.store(false, |v, cw| to_ieee(&DOUBLE, v, cw), 0) {
                put(&v.to_le_bytes());
            }
        }
        "fistps" | "fistpl" | "fistpll" | "fisttpl" => {
            let bits = match c.op {
                "fistps" => 16,
                "fistpll" => 64,
                _ => 32,
            };
            let trunc = c.op == "fisttpl";
            if let Some(v) = x.store(true, |v, cw| to_int(v, bits, trunc, cw), 0) {
                put(&v.to_le_bytes()[..bits as usize / 8]);
            }
        }
        "fbstp" => {
            if let Some(v) = x.store(true, to_bcd, [0; 10]) {
                put(&v);
            }
        }
        "fsin" => x.fsin(),
        "fcos" => x.fcos(),
        "fsincos" => x.fsincos(),
        "fptan" => x.fptan(),
        "fpatan" => x.fpatan(),
        "f2xm1" => x.f2xm1(),
        "fyl2x" => x.fyl2x(),
        "fyl2xp1" => x.fyl2xp1(),
        "fadds_m" => x.arith(Add, 0, Operand::ieee(&SINGLE, m), false),
        "fmull_m" => x.arith(Mul, 0, Operand::ieee(&DOUBLE, m), false),
        "fdivrs_m" => x.arith(DivR, 0, Operand::ieee(&SINGLE, m), false),
        "fiadds_m" => x.arith(Add, 0, Operand::int(m as i16 as i64), false),
        "fidivl_m" => x.arith(Div, 0, Operand::int(m as i32 as i64), false),
        "fcoms_m" => x.fcom(Operand::ieee(&SINGLE, m), true, 0),
        "fcompl_m" => x.fcom(Operand::ieee(&DOUBLE, m), true, 1),
        "ficoms_m" => x.fcom(Operand::int(m as i16 as i64), true, 0),
        "filds_m" => x.push(from_int(m as i16 as i64), Exc::NONE),
        "fildl_m" => x.push(from_int(m as i32 as i64), Exc::NONE),
        "e_fadd" | "o_fadd" => x.arith(Add, 0, Operand::St(1), false),
        "e_faddp" => x.arith(Add, 1, Operand::St(0), true),
        "e_fxch" => x.fxch(1),
        "e_fcom" => x.fcom(Operand::St(1), true, 0),
        "e_fxam" => {
            x.fst_st(0, true);
            // FXAM reads the sign of the empty register's stale contents,
            // which silicon's image shows.
            let p = x.top as usize;
            x.regs[p] = c.st0;
            x.fxam();
        }
        "e_fld" => x.fld_st(1),
        "e_fsincos" => {
            x.rotate(1);
            x.fsincos();
        }
        "o_fld1" => x.push(F80::ONE, Exc::NONE),
        "o_fsincos" => x.fsincos(),
        "o_fxtract" => x.fxtract(),
        "fbld" => {
            let mut b = [0u8; 10];
            b[..8].copy_from_slice(&c.a.sig.to_le_bytes());
            b[8..].copy_from_slice(&c.a.se.to_le_bytes());
            x.push(from_bcd(b), Exc::NONE);
        }
        "fisttps" | "fisttpll" | "fistl" => {
            let (bits, trunc, pop) = match c.op {
                "fisttps" => (16, true, true),
                "fisttpll" => (64, true, true),
                _ => (32, false, false),
            };
            if let Some(v) = x.store(pop, |v, cw| to_int(v, bits, trunc, cw), 0) {
                put(&v.to_le_bytes()[..bits as usize / 8]);
            }
        }
        "fstpt" => {
            if let Some(v) = x.store(true, |v, _| (v.to_bytes(), Exc::NONE, false), [0; 10]) {
                put(&v);
            }
        }
        "fcmovb" => x.fcmov(1, true),
        "ffree_fincstp" => {
            x.ffree(1);
            x.rotate(1);
        }
        "flds" => x.fld_ieee(&SINGLE, c.b.sig & 0xffff_ffff),
        "fldl" => x.fld_ieee(&DOUBLE, c.b.sig),
        op => {
            let k = match op {
                "fldpi" => Const::Pi,
                "fldl2e" => Const::L2e,
                "fldl2t" => Const::L2t,
                "fldlg2" => Const::Lg2,
                "fldln2" => Const::Ln2,
                other => panic!("no model for {other}"),
            };
            x.push(constant(k, Rc::from_bits((c.cw >> 10) as u32)), Exc::NONE);
        }
    }
    (x, rflags, mem)
}

const TRANSCENDENTAL: [&str; 8] = ["fsin", "fcos", "fsincos", "fptan", "fpatan", "f2xm1", "fyl2x", "fyl2xp1"];

/// Whether two register values of one sign are one unit apart in the last
/// place (across a binade too).
fn one_ulp(a: F80, b: F80) -> bool {
    let key = |v: F80| ((v.exp() as u128) << 63) | (v.sig & !(1 << 63)) as u128;
    a.sign() == b.sign() && key(a).abs_diff(key(b)) == 1
}

/// Runs every case of a vectors file: (cases, transcendental cases, those
/// one ulp from silicon, failure report).
fn run(vectors: &str) -> (usize, usize, usize, String) {
    let (mut n, mut ulp, mut trans_cases, mut failures) = (0, 0, 0, Vec::new());
    for line in vectors.lines().filter(|l| !l.starts_with('#')) {
        let c = parse(line);
        let (x, rflags, mem) = model(&c);
        let (st0, st1) = (x.st(0), x.regs[(x.top as usize + 1) & 7]);
        let same_state = x.status_word() == c.fsw && x.valid == c.ftw && rflags == c.rflags && mem == c.mem;
        // An empty register's contents are whatever an earlier case left
        // there on silicon: compare values only where the tag is valid.
        let top = (c.fsw >> 11) as usize & 7;
        let valid = |i: usize| c.ftw & (1 << ((top + i) & 7)) != 0;
        let same_values = (!valid(0) || st0 == c.st0) && (!valid(1) || st1 == c.st1);
        n += 1;
        trans_cases += TRANSCENDENTAL.contains(&c.op) as usize;
        if same_state && same_values {
            continue;
        }
        let trans = TRANSCENDENTAL.contains(&c.op);
        // C1 reports the rounding direction, so a one-ulp difference may
        // flip it too.
        let state_but_c1 = (x.status_word() ^ c.fsw) & !sw::C1 == 0 && x.valid == c.ftw;
        let near = (st0 == c.st0 || one_ulp(st0, c.st0)) && (st1 == c.st1 || one_ulp(st1, c.st1));
        if trans && state_but_c1 && near {
            ulp += 1;
            if std::env::var_os("X87_ULP_LOG").is_some() {
                println!(
                    "ULP {line} model {:04x}{:016x} {:04x}{:016x} {:04x}",
                    st0.se,
                    st0.sig,
                    st1.se,
                    st1.sig,
                    x.status_word()
                );
            }
            continue;
        }
        failures.push(format!(
            "{line}\n    model {:04x} {:02x} {:04x}{:016x} {:04x}{:016x} {rflags:x} {mem:02x?}",
            x.status_word(),
            x.valid,
            st0.se,
            st0.sig,
            st1.se,
            st1.sig
        ));
    }
    let mut by_op = std::collections::BTreeMap::<&str, usize>::new();
    let mut shown = Vec::new();
    for f in &failures {
        let e = by_op.entry(f.split(' ').next().unwrap()).or_default();
        *e += 1;
        if *e <= 3 {
            shown.push(f.as_str());
        }
    }
    let report = if failures.is_empty() {
        String::new()
    } else {
        format!("{} of {n} differ ({by_op:?}):\n{}", failures.len(), shown.join("\n"))
    };
    (n, trans_cases, ulp, report)
}

#[test]
fn x87_matches_silicon() {
    let (n, trans_cases, ulp, report) = run(include_str!("silicon/x87.txt"));
    assert!(report.is_empty(), "{report}");
    println!("{n} cases; {ulp} transcendental results one ulp from silicon's");
    assert!(n >= 14_400, "only {n} cases");
    // 23 of the 1,600 transcendental cases (1.4%) when this was written,
    // 181 of 12,000 in a one-off run of 108,000 cases: keep it from
    // growing.
    assert!(ulp * 100 <= trans_cases * 2, "{ulp} of {trans_cases} transcendental results one ulp from silicon's");
}

#[test]
fn x87_matches_silicon_large_run_findings() {
    let (n, _, ulp, report) = run(include_str!("silicon/x87_extra.txt"));
    assert!(report.is_empty(), "{report}");
    assert_eq!((n, ulp), (7, 0));
}

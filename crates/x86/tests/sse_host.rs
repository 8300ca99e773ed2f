//! SSE float lanes against two independent references, with operands drawn
//! to hit every class (zeros and denormals of both signs, infinities, quiet
//! and signalling NaNs, values near overflow and underflow):
//! - this host's own SSE unit, through Rust's `f32`/`f64` arithmetic (x86-64
//!   compiles it to ADDSS/MULSD/SQRTSS/CVTSD2SS... under the default MXCSR:
//!   round to nearest, all masked, no DAZ/FTZ) — exact for every non-NaN
//!   result; a NaN result only has to be a NaN, since the compiler may swap
//!   the operands of a commutative operation;
//! - rustc_apfloat's IEEE single and double in all four rounding modes, for
//!   the value and the inexact flag (apfloat does not flag an overflow that
//!   rounds to the largest finite number, so OE is left to the silicon
//!   vectors).

use exitlab_x86::fp::mxcsr::Mxcsr;
use exitlab_x86::fp::round::{Ieee, DOUBLE, SINGLE};
use exitlab_x86::fp::sse_float::{self as sf, Arith};
use exitlab_x86::fp::{Exc, Rc};
use proptest::prelude::*;
use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, Round, Status};
use std::hint::black_box;

fn f32_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            0u32,
            0x8000_0000,
            1,
            0x8000_0001,
            0x007f_ffff,
            0x0080_0000,
            0x3f80_0000,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0000,
            0x7f80_0001,
            0xff80_0001,
            0x0ff0_0000,
            0x7000_0000,
        ]),
        any::<u32>().prop_map(|v| v & 0x807f_ffff),
        (any::<u32>(), 90u32..165).prop_map(|(v, e)| (v & 0x807f_ffff) | e << 23),
        any::<u32>(),
    ]
}

fn f64_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0u64,
            1 << 63,
            1,
            0x000f_ffff_ffff_ffff,
            0x0010_0000_0000_0000,
            0x3ff0_0000_0000_0000,
            0x7fef_ffff_ffff_ffff,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff0_0000_0000_0001,
            0x47ef_ffff_e000_0000,
            0x36a0_0000_0000_0000,
        ]),
        any::<u64>().prop_map(|v| v & 0x800f_ffff_ffff_ffff),
        (any::<u64>(), 700u64..1300).prop_map(|(v, e)| (v & 0x800f_ffff_ffff_ffff) | e << 52),
        any::<u64>(),
    ]
}

fn op_strategy() -> impl Strategy<Value = Arith> {
    prop::sample::select(vec![Arith::Add, Arith::Sub, Arith::Mul, Arith::Div])
}

fn host32(op: Arith, a: f32, b: f32) -> f32 {
    let (a, b) = (black_box(a), black_box(b));
    match op {
        Arith::Add => a + b,
        Arith::Sub => a - b,
        Arith::Mul => a * b,
        Arith::Div => a / b,
    }
}

fn host64(op: Arith, a: f64, b: f64) -> f64 {
    let (a, b) = (black_box(a), black_box(b));
    match op {
        Arith::Add => a + b,
        Arith::Sub => a - b,
        Arith::Mul => a * b,
        Arith::Div => a / b,
    }
}

/// Exact for non-NaN results, NaN for NaN.
fn same(f: &Ieee, model: u64, host: u64) -> bool {
    if f.is_nan(host) {
        f.is_nan(model)
    } else {
        model == host
    }
}

const DEFAULT: Mxcsr = Mxcsr(0x1f80);

fn apf_round(rc: Rc) -> Round {
    match rc {
        Rc::Nearest => Round::NearestTiesToEven,
        Rc::Down => Round::TowardNegative,
        Rc::Up => Round::TowardPositive,
        Rc::Zero => Round::TowardZero,
    }
}

fn apf<F: Float>(op: Arith, a: F, b: F, r: Round) -> rustc_apfloat::StatusAnd<F> {
    match op {
        Arith::Add => a.add_r(b, r),
        Arith::Sub => a.sub_r(b, r),
        Arith::Mul => a.mul_r(b, r),
        Arith::Div => a.div_r(b, r),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn single_arithmetic_matches_host(op in op_strategy(), a in f32_bits(), b in f32_bits()) {
        let (r, _) = sf::arith(&SINGLE, op, a as u64, b as u64, DEFAULT);
        let h = host32(op, f32::from_bits(a), f32::from_bits(b)).to_bits() as u64;
        prop_assert!(same(&SINGLE, r, h), "{op:?} {a:08x} {b:08x}: model {r:08x} host {h:08x}");
    }

    #[test]
    fn double_arithmetic_matches_host(op in op_strategy(), a in f64_bits(), b in f64_bits()) {
        let (r, _) = sf::arith(&DOUBLE, op, a, b, DEFAULT);
        let h = host64(op, f64::from_bits(a), f64::from_bits(b)).to_bits();
        prop_assert!(same(&DOUBLE, r, h), "{op:?} {a:016x} {b:016x}: model {r:016x} host {h:016x}");
    }

    #[test]
    fn sqrt_and_conversions_match_host(a in f32_bits(), d in f64_bits(), i in any::<i64>()) {
        let (r, _) = sf::sqrt(&SINGLE, a as u64, DEFAULT);
        prop_assert!(same(&SINGLE, r, black_box(f32::from_bits(a)).sqrt().to_bits() as u64));
        let (r, _) = sf::sqrt(&DOUBLE, d, DEFAULT);
        prop_assert!(same(&DOUBLE, r, black_box(f64::from_bits(d)).sqrt().to_bits()));
        let (r, _) = sf::convert(&DOUBLE, &SINGLE, d, DEFAULT);
        prop_assert!(same(&SINGLE, r, (black_box(f64::from_bits(d)) as f32).to_bits() as u64));
        let (r, _) = sf::convert(&SINGLE, &DOUBLE, a as u64, DEFAULT);
        prop_assert!(same(&DOUBLE, r, (black_box(f32::from_bits(a)) as f64).to_bits()));
        prop_assert_eq!(sf::from_int(&SINGLE, i, DEFAULT).0, (black_box(i) as f32).to_bits() as u64);
        prop_assert_eq!(sf::from_int(&DOUBLE, i, DEFAULT).0, (black_box(i) as f64).to_bits());
    }

    #[test]
    fn every_rounding_mode_matches_apfloat(op in op_strategy(), a in f64_bits(), b in f64_bits(), rc in 0u32..4, sa in f32_bits(), sb in f32_bits()) {
        let mx = Mxcsr(0x1f80 | rc << 13);
        let rc = Rc::from_bits(rc);
        let (r, e) = sf::arith(&DOUBLE, op, a, b, mx);
        let want = apf(op, Double::from_bits(a as u128), Double::from_bits(b as u128), apf_round(rc));
        let w = want.value.to_bits() as u64;
        prop_assert!(same(&DOUBLE, r, w), "{op:?} {rc:?} {a:016x} {b:016x}: model {r:016x} apfloat {w:016x}");
        if !DOUBLE.is_nan(w) && DOUBLE.class(a) != exitlab_x86::fp::round::Class::Denormal && DOUBLE.class(b) != exitlab_x86::fp::round::Class::Denormal {
            prop_assert_eq!(e.contains(Exc::PE), want.status.intersects(Status::INEXACT));
        }
        let (r, _) = sf::arith(&SINGLE, op, sa as u64, sb as u64, mx);
        let want = apf(op, Single::from_bits(sa as u128), Single::from_bits(sb as u128), apf_round(rc));
        prop_assert!(same(&SINGLE, r, want.value.to_bits() as u64));
    }
}

//! Host cost of one emulated floating-point or vector instruction: the
//! host-float fast path (round to nearest, PE already set), the apfloat
//! path (PE still clear, so inexactness must be found), a division, the
//! x87 arithmetic and a transcendental, and the packed-integer and string
//! forms. Ratios between these, measured in one run, say what each path
//! costs relative to the others.

use criterion::{criterion_group, criterion_main, Criterion};
use exitlab_x86::fp::mxcsr::Mxcsr;
use exitlab_x86::fp::sse_float::{self as sf, Arith, Shape};
use exitlab_x86::fp::sse_int as si;
use exitlab_x86::fp::sse_str;
use exitlab_x86::fp::x87::{Arith87, Operand, F80, X87};
use exitlab_x86::fp::Exc;
use std::hint::black_box;

fn ps(v: [f32; 4]) -> u128 {
    v.iter().enumerate().fold(0, |r, (i, x)| r | (x.to_bits() as u128) << (32 * i))
}

fn sse(c: &mut Criterion) {
    let a = ps([1.1, 2.2, 3.3, 4.4]);
    let b = ps([0.7, 1.9, 2.5, 9.1]);
    c.bench_function("addps_fast_path", |bch| {
        let mut mx = Mxcsr(0x1f80 | 0x20);
        bch.iter(|| sf::arith_op(&mut mx, Shape::Ps, Arith::Add, black_box(a), black_box(b)))
    });
    c.bench_function("addps_apfloat_path", |bch| {
        bch.iter(|| {
            let mut mx = Mxcsr(0x1f80);
            sf::arith_op(&mut mx, Shape::Ps, Arith::Add, black_box(a), black_box(b))
        })
    });
    c.bench_function("divsd_apfloat_path", |bch| {
        bch.iter(|| {
            let mut mx = Mxcsr(0x1f80 | (1 << 13));
            sf::arith_op(&mut mx, Shape::Sd, Arith::Div, black_box(a), black_box(b))
        })
    });
    c.bench_function("paddb", |bch| bch.iter(|| si::add::<u128, u8>(black_box(a), black_box(b))));
    c.bench_function("pshufb", |bch| bch.iter(|| si::pshufb(black_box(a), black_box(b))));
    c.bench_function("pcmpistri_equal_ordered", |bch| {
        bch.iter(|| sse_str::pcmpstr(black_box(a), black_box(b), None, None, 0x0c))
    });
}

fn x87(c: &mut Criterion) {
    let v = F80 { se: 0x3fff, sig: 0xb504_f333_f9de_6484 };
    c.bench_function("x87_fadd", |bch| {
        bch.iter(|| {
            let mut x = X87::default();
            x.push(black_box(v), Exc::NONE);
            x.arith(Arith87::Add, 0, Operand::Mem(black_box(v), false), false);
            x
        })
    });
    c.bench_function("x87_fsin", |bch| {
        bch.iter(|| {
            let mut x = X87::default();
            x.push(black_box(v), Exc::NONE);
            x.fsin();
            x
        })
    });
}

criterion_group!(benches, sse, x87);
criterion_main!(benches);

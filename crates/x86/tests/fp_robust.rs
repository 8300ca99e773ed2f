//! A guest controls every operand, immediate, control word and save image,
//! so no input may make the floating-point and vector semantics panic or
//! leave MXCSR/x87 state outside what the architecture allows. Arbitrary
//! bits for everything, every entry point.

use exitlab_x86::fp::mxcsr::{Mxcsr, MXCSR_MASK};
use exitlab_x86::fp::round::{DOUBLE, SINGLE};
use exitlab_x86::fp::sse_float::{self as sf, Arith, Shape};
use exitlab_x86::fp::sse_int as si;
use exitlab_x86::fp::sse_str;
use exitlab_x86::fp::x87::*;
use exitlab_x86::fp::xsave::*;
use exitlab_x86::fp::Exc;
use proptest::prelude::*;

fn shapes() -> [Shape; 4] {
    [Shape::Ps, Shape::Ss, Shape::Pd, Shape::Sd]
}

fn f80() -> impl Strategy<Value = F80> {
    (any::<u16>(), any::<u64>()).prop_map(|(se, sig)| F80 { se, sig })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn sse_float_never_panics(a in any::<u128>(), b in any::<u128>(), m in any::<u16>(), imm in any::<u8>(), i in any::<i64>()) {
        let m0 = Mxcsr(m as u32 & MXCSR_MASK);
        for shape in shapes() {
            for op in [Arith::Add, Arith::Sub, Arith::Mul, Arith::Div] {
                let mut mx = m0;
                let r = sf::arith_op(&mut mx, shape, op, a, b);
                prop_assert_eq!(mx.0 & !MXCSR_MASK, 0);
                // Flags only ever accumulate.
                prop_assert_eq!(mx.0 & m0.0, m0.0);
                let _ = r;
            }
            let mut mx = m0;
            let _ = sf::sqrt_op(&mut mx, shape, a, b);
            let _ = sf::minmax_op(&mut mx, shape, imm & 1 != 0, a, b);
            let _ = sf::cmp_op(&mut mx, shape, imm, a, b);
            let _ = sf::round_op(&mut mx, shape, imm, a, b);
            let double = shape.ieee().frac == 52;
            let _ = sf::horizontal(&mut mx, double, imm & 1 != 0, a, b);
            let _ = sf::addsub(&mut mx, double, a, b);
            let _ = sf::dp(&mut mx, double, imm, a, b);
            let _ = sf::to_int_scalar(&mut mx, shape, if imm & 1 != 0 { 64 } else { 32 }, imm & 2 != 0, b);
            let _ = sf::from_int_scalar(&mut mx, shape, a, i);
            let _ = sf::comi_op(&mut mx, shape, imm & 1 != 0, a, b);
            let _ = sf::to_int_packed(&mut mx, shape, imm & 1 != 0, b);
            let _ = sf::from_int_packed(&mut mx, shape, b);
            let _ = sf::movmsk(shape, a);
            prop_assert_eq!(mx.0 & !MXCSR_MASK, 0);
        }
        let mut mx = m0;
        let _ = sf::convert_scalar(&mut mx, Shape::Ss, Shape::Sd, a, b);
        let _ = sf::convert_scalar(&mut mx, Shape::Sd, Shape::Ss, a, b);
        let _ = sf::convert_packed(&mut mx, imm & 1 != 0, b);
        let _ = sf::approx_op(Shape::Ps, imm & 1 != 0, a, b);
        let _ = sf::from_int_lanes(&mut mx, &SINGLE, 2, a, b);
        let _ = sf::from_int_lanes(&mut mx, &DOUBLE, 2, a, b);
    }

    #[test]
    fn sse_int_and_strings_never_panic(a in any::<u128>(), b in any::<u128>(), c in any::<u128>(), imm in any::<u8>(), n in any::<u64>(), la in any::<i64>(), lb in any::<i64>()) {
        let _ = si::sll::<u128, u16>(a, n);
        let _ = si::srl::<u64, u64>(a as u64, n);
        let _ = si::sra::<u128, i32>(a, n);
        let _ = si::slldq(a, imm);
        let _ = si::srldq(a, imm);
        let _ = si::palignr::<u128>(a, b, imm);
        let _ = si::palignr::<u64>(a as u64, b as u64, imm);
        let _ = si::pshufb::<u128>(a, b);
        let _ = si::pshufb::<u64>(a as u64, b as u64);
        let _ = si::insertps(a, b, imm);
        let _ = si::extract::<u128, u8>(a, imm);
        let _ = si::insert::<u128, u16>(a, n, imm);
        let _ = si::blendv::<u128, u8>(a, b, c);
        let _ = si::mpsadbw(a, b, imm);
        let _ = si::phminposuw(a);
        let _ = si::pshufd(a, imm);
        let _ = si::pshufw::<u64>(a as u64, imm, false);
        let _ = si::shufps(a, b, imm);
        let _ = si::hadd::<u128, i16>(a, b, imm & 1 != 0, imm & 2 != 0);
        let _ = si::pack::<u128, i32, u16>(a, b);
        for e in [Some(la), None] {
            let r = sse_str::pcmpstr(a, b, e, e.map(|_| lb), imm);
            prop_assert!(sse_str::index(r, imm) <= 16);
            let _ = sse_str::mask(r, imm);
        }
        let _ = sse_str::crc32c(a as u32, n, (imm as usize % 8) + 1);
    }

    #[test]
    fn x87_never_panics(regs in prop::array::uniform8(f80()), top in any::<u8>(), valid in any::<u8>(), cw in any::<u16>(), sw in any::<u16>(), op in 0u8..40, bcd in any::<[u8; 10]>(), m in any::<u64>()) {
        let mut x = X87 { regs, top: top & 7, valid, cw, sw, ..X87::default() };
        match op {
            0..=5 => {
                let ops = [Arith87::Add, Arith87::Sub, Arith87::SubR, Arith87::Mul, Arith87::Div, Arith87::DivR];
                x.arith(ops[op as usize], (m % 8) as usize, Operand::St((m as usize >> 3) % 8), m & 64 != 0);
                x.arith(ops[op as usize], 0, Operand::ieee(&DOUBLE, m), false);
            }
            6 => x.unary(sqrt),
            7 => x.unary(rndint),
            8 => x.fscale(),
            9 => x.fxtract(),
            10 => x.fprem(false),
            11 => x.fprem(true),
            12 => x.fsin(),
            13 => x.fcos(),
            14 => x.fsincos(),
            15 => x.fptan(),
            16 => x.fpatan(),
            17 => x.f2xm1(),
            18 => x.fyl2x(),
            19 => x.fyl2xp1(),
            20 => x.fxch((m % 8) as usize),
            21 => x.fcom(Operand::St((m % 8) as usize), m & 8 != 0, (m as u8 >> 4) % 3),
            22 => { let _ = x.fcomi((m % 8) as usize, true, m & 8 != 0); }
            23 => x.fxam(),
            24 => { let _ = x.store(m & 1 != 0, |v, c| to_ieee(&SINGLE, v, c), 0); }
            25 => { let _ = x.store(m & 1 != 0, |v, c| to_int(v, 16, m & 2 != 0, c), 0); }
            26 => { let _ = x.store(true, to_bcd, [0; 10]); }
            27 => x.push(from_bcd(bcd), Exc::NONE),
            28 => x.fld_ieee(&SINGLE, m),
            29 => x.fld_st((m % 8) as usize),
            30 => x.fcmov((m % 8) as usize, m & 8 != 0),
            31 => x.fabs(),
            32 => x.fchs(),
            33 => x.rotate((m % 8) as u8),
            34 => x.ffree((m % 8) as usize),
            35 => x.fldcw(m as u16),
            36 => { x.mmx_enter(); x.set_mm((m % 8) as usize, m); }
            37 => x.fnclex(),
            38 => { let _ = x.store(false, |v, c| to_int(v, 64, false, c), 0); }
            _ => x.push(constant(Const::Lg2, Cw(cw).rc()), Exc::NONE),
        }
        prop_assert!(x.top < 8);
        let _ = x.tag_word();
        let _ = x.status_word();
    }

    #[test]
    fn save_images_never_panic(bytes in prop::collection::vec(any::<u8>(), 576), xcr0 in any::<u64>(), mask in any::<u64>(), op in 0u8..4) {
        let area: [u8; 576] = bytes.try_into().unwrap();
        let mut s = FpuState::default();
        let fx: [u8; 512] = area[..512].try_into().unwrap();
        let _ = fxrstor(&mut s, mask & 1 != 0, &fx);
        prop_assert_eq!(s.mxcsr.0 & !MXCSR_MASK, 0);
        let _ = xrstor(&mut s, true, xcr0, 0, mask, op == 3, &area);
        prop_assert_eq!(s.mxcsr.0 & !MXCSR_MASK, 0);
        let mut out = area;
        let ops = [SaveOp::Xsave, SaveOp::Xsaveopt, SaveOp::Xsavec, SaveOp::Xsaves];
        xsave(&s, ops[op as usize], mask & 2 != 0, xcr0, mask, &mut out);
        let env: [u8; 28] = area[..28].try_into().unwrap();
        fldenv(&mut s, &env);
        let _ = fnstenv(&mut s);
        let img: [u8; 108] = area[..108].try_into().unwrap();
        frstor(&mut s, &img);
        let _ = fnsave(&mut s);
        let _ = xsetbv((mask >> 32) as u32, xcr0);
        let _ = xgetbv(mask as u32, xcr0, &s);
    }
}

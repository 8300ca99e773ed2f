//! Packed-integer, shuffle, blend and move semantics against silicon:
//! tests/silicon/int.txt holds 40 cases per instruction form (SSE2, SSSE3,
//! SSE4.1, SSE4.2 and MMX forms) that gen_int.c ran on the Intel Xeon named
//! in tests/silicon/sse.txt, with random operands and lane-boundary values
//! (0, −1, 0x80.., 0x7f..). Each result must match bit for bit.

use exitlab_arch::bits::rflags::{CF, ZF};
use exitlab_x86::fp::sse_float::{movmsk, Shape};
use exitlab_x86::fp::sse_int::*;

const VECTORS: &str = include_str!("silicon/int.txt");

/// The model's result for one generated case (`a`, `b`, `c` as gen_int.c
/// passed them; `c` is XMM0 for BLENDV).
fn model(op: &str, a: u128, b: u128, c: u128) -> u128 {
    let (ma, mb) = (a as u64, b as u64);
    let mmx = |r: u64| r as u128;
    match op {
        "paddb" => add::<u128, u8>(a, b),
        "paddw" => add::<u128, u16>(a, b),
        "paddd" => add::<u128, u32>(a, b),
        "paddq" => add::<u128, u64>(a, b),
        "psubb" => sub::<u128, u8>(a, b),
        "psubq" => sub::<u128, u64>(a, b),
        "paddsb" => adds::<u128, i8>(a, b),
        "paddsw" => adds::<u128, i16>(a, b),
        "paddusb" => adds::<u128, u8>(a, b),
        "paddusw" => adds::<u128, u16>(a, b),
        "psubsb" => subs::<u128, i8>(a, b),
        "psubsw" => subs::<u128, i16>(a, b),
        "psubusb" => subs::<u128, u8>(a, b),
        "psubusw" => subs::<u128, u16>(a, b),
        "pmullw" => mullo::<u128, i16>(a, b),
        "pmulhw" => mulhi::<u128, i16>(a, b),
        "pmulhuw" => mulhi::<u128, u16>(a, b),
        "pmulld" => mullo::<u128, i32>(a, b),
        "pmuludq" => mul_even(a, b, false),
        "pmuldq" => mul_even(a, b, true),
        "pmaddwd" => madd_wd(a, b),
        "pmaddubsw" => madd_ubsw(a, b),
        "pmulhrsw" => mulhrs(a, b),
        "pavgb" => avg::<u128, u8>(a, b),
        "pavgw" => avg::<u128, u16>(a, b),
        "pminub" => min::<u128, u8>(a, b),
        "pminsw" => min::<u128, i16>(a, b),
        "pminsb" => min::<u128, i8>(a, b),
        "pminuw" => min::<u128, u16>(a, b),
        "pminsd" => min::<u128, i32>(a, b),
        "pminud" => min::<u128, u32>(a, b),
        "pmaxub" => max::<u128, u8>(a, b),
        "pmaxsw" => max::<u128, i16>(a, b),
        "pmaxsb" => max::<u128, i8>(a, b),
        "pmaxuw" => max::<u128, u16>(a, b),
        "pmaxsd" => max::<u128, i32>(a, b),
        "pmaxud" => max::<u128, u32>(a, b),
        "psadbw" => sad(a, b),
        "pcmpeqb" => cmpeq::<u128, u8>(a, b),
        "pcmpeqw" => cmpeq::<u128, u16>(a, b),
        "pcmpeqd" => cmpeq::<u128, u32>(a, b),
        "pcmpeqq" => cmpeq::<u128, u64>(a, b),
        "pcmpgtb" => cmpgt::<u128, i8>(a, b),
        "pcmpgtw" => cmpgt::<u128, i16>(a, b),
        "pcmpgtd" => cmpgt::<u128, i32>(a, b),
        "pcmpgtq" => cmpgt::<u128, i64>(a, b),
        "psllw" => sll::<u128, u16>(a, mb),
        "pslld" => sll::<u128, u32>(a, mb),
        "psllq" => sll::<u128, u64>(a, mb),
        "psrlw" => srl::<u128, u16>(a, mb),
        "psrld" => srl::<u128, u32>(a, mb),
        "psrlq" => srl::<u128, u64>(a, mb),
        "psraw" => sra::<u128, i16>(a, mb),
        "psrad" | "psrad_big" => sra::<u128, i32>(a, mb),
        "pslldq5" => slldq(a, 5),
        "psrldq11" => srldq(a, 11),
        "packsswb" => pack::<u128, i16, i8>(a, b),
        "packssdw" => pack::<u128, i32, i16>(a, b),
        "packuswb" => pack::<u128, i16, u8>(a, b),
        "packusdw" => pack::<u128, i32, u16>(a, b),
        "punpcklbw" => unpack::<u128, u8>(a, b, false),
        "punpckhbw" => unpack::<u128, u8>(a, b, true),
        "punpcklwd" => unpack::<u128, u16>(a, b, false),
        "punpckhwd" => unpack::<u128, u16>(a, b, true),
        "punpckldq" => unpack::<u128, u32>(a, b, false),
        "punpckhdq" => unpack::<u128, u32>(a, b, true),
        "punpcklqdq" => unpack::<u128, u64>(a, b, false),
        "punpckhqdq" => unpack::<u128, u64>(a, b, true),
        "pshufd1b" => pshufd(a, 0x1b),
        "pshufde4" => pshufd(a, 0xe4),
        "pshuflw93" => pshufw(a, 0x93, false),
        "pshufhw39" => pshufw(a, 0x39, true),
        "shufps4e" => shufps(a, b, 0x4e),
        "shufpd2" => shufpd(a, b, 2),
        "pshufb" => pshufb(a, b),
        "palignr3" => palignr(a, b, 3),
        "palignr17" => palignr(a, b, 17),
        "phaddw" => hadd::<u128, i16>(a, b, false, false),
        "phaddd" => hadd::<u128, i32>(a, b, false, false),
        "phaddsw" => hadd::<u128, i16>(a, b, false, true),
        "phsubw" => hadd::<u128, i16>(a, b, true, false),
        "phsubd" => hadd::<u128, i32>(a, b, true, false),
        "phsubsw" => hadd::<u128, i16>(a, b, true, true),
        "psignb" => sign::<u128, i8>(a, b),
        "psignw" => sign::<u128, i16>(a, b),
        "psignd" => sign::<u128, i32>(a, b),
        "pabsb" => abs::<u128, i8>(b),
        "pabsw" => abs::<u128, i16>(b),
        "pabsd" => abs::<u128, i32>(b),
        "pmovmskb" => movmskb(a) as u128,
        "pextrb13" => extract::<u128, u8>(a, 13) as u128,
        "pextrw6" => extract::<u128, u16>(a, 6) as u128,
        "pextrd2" => extract::<u128, u32>(a, 2) as u128,
        "pextrq1" => extract::<u128, u64>(a, 1) as u128,
        "pinsrb9" => insert::<u128, u8>(a, mb, 9),
        "pinsrw3" => insert::<u128, u16>(a, mb, 3),
        "pinsrd3" => insert::<u128, u32>(a, mb, 3),
        "pinsrq0" => insert::<u128, u64>(a, mb, 0),
        "insertps9a" => insertps(a, b, 0x9a),
        "insertpsc1" => insertps(a, b, 0xc1),
        "extractps3" => extract::<u128, u32>(a, 3) as u128,
        "blendps5" => blend::<u128, u32>(a, b, 5),
        "blendpd2" => blend::<u128, u64>(a, b, 2),
        "pblendwa5" => blend::<u128, u16>(a, b, 0xa5),
        "blendvps" => blendv::<u128, u32>(a, b, c),
        "blendvpd" => blendv::<u128, u64>(a, b, c),
        "pblendvb" => blendv::<u128, u8>(a, b, c),
        "pmovsxbw" => movx::<i8, i16>(b),
        "pmovsxbd" => movx::<i8, i32>(b),
        "pmovsxbq" => movx::<i8, i64>(b),
        "pmovsxwd" => movx::<i16, i32>(b),
        "pmovsxwq" => movx::<i16, i64>(b),
        "pmovsxdq" => movx::<i32, i64>(b),
        "pmovzxbw" => movx::<u8, u16>(b),
        "pmovzxbd" => movx::<u8, u32>(b),
        "pmovzxbq" => movx::<u8, u64>(b),
        "pmovzxwd" => movx::<u16, u32>(b),
        "pmovzxwq" => movx::<u16, u64>(b),
        "pmovzxdq" => movx::<u32, u64>(b),
        "phminposuw" => phminposuw(b),
        "mpsadbw0" => mpsadbw(a, b, 0),
        "mpsadbw7" => mpsadbw(a, b, 7),
        "mpsadbw6" => mpsadbw(a, b, 6),
        "ptest" => {
            let f = ptest(a, b);
            ((f & ZF != 0) as u128) | ((f & CF != 0) as u128) << 1
        }
        "movddup" => movddup(b),
        "movshdup" => movsdup(b, true),
        "movsldup" => movsdup(b, false),
        "movhlps" => movhlps(a, b),
        "movlhps" => movlhps(a, b),
        "movmskps" => movmsk(Shape::Ps, a) as u128,
        "movmskpd" => movmsk(Shape::Pd, a) as u128,
        "mmx_paddsw" => mmx(adds::<u64, i16>(ma, mb)),
        "mmx_pmaddwd" => mmx(madd_wd(ma, mb)),
        "mmx_pshufb" => mmx(pshufb(ma, mb)),
        "mmx_palignr5" => mmx(palignr(ma, mb, 5)),
        "mmx_phaddsw" => mmx(hadd::<u64, i16>(ma, mb, false, true)),
        "mmx_packuswb" => mmx(pack::<u64, i16, u8>(ma, mb)),
        "mmx_punpckhbw" => mmx(unpack::<u64, u8>(ma, mb, true)),
        "mmx_pshufw72" => mmx(pshufw(ma, 0x72, false)),
        "mmx_psadbw" => mmx(sad(ma, mb)),
        "mmx_pmuludq" => mmx(mul_even(ma, mb, false)),
        "mmx_psrlq" => mmx(srl::<u64, u64>(ma, mb)),
        other => panic!("no model for {other}"),
    }
}

#[test]
fn packed_integer_matches_silicon() {
    let mut failures = Vec::new();
    let mut n = 0;
    for line in VECTORS.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let h = |s: &str| u128::from_str_radix(s, 16).unwrap();
        let (a, b, c, want) = (h(f[1]), h(f[2]), h(f[3]), h(f[4]));
        let got = model(f[0], a, b, c);
        if got != want {
            failures.push(format!("{line}\n    model {got:032x}"));
        }
        n += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    assert!(n >= 5720, "only {n} cases");
}

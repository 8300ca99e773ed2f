//! SSE4.2 string instructions and CRC32 against silicon: tests/silicon/
//! str.txt holds, for every imm8 from 0x00 to 0x7f, six random string pairs
//! (a small alphabet with embedded zeros, explicit lengths from −20 to 20)
//! run through PCMPESTRI, PCMPESTRM, PCMPISTRI and PCMPISTRM, plus 200
//! CRC32 cases of every width, from gen_str.c on the Intel Xeon named in
//! tests/silicon/sse.txt. ECX, XMM0 and the status flags must match.

use exitlab_x86::fp::sse_str::{crc32c, index, mask, pcmpstr};

#[test]
fn string_compares_and_crc32_match_silicon() {
    let (mut n, mut failures) = (0, Vec::new());
    for line in include_str!("silicon/str.txt").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let h = |s: &str| u128::from_str_radix(s, 16).unwrap();
        let d = |s: &str| s.parse::<i64>().unwrap();
        n += 1;
        if f[0] == "crc32" {
            let got = crc32c(h(f[2]) as u32, h(f[3]) as u64, d(f[1]) as usize);
            if got as u128 != h(f[4]) {
                failures.push(format!("{line}\n    model {got:08x}"));
            }
            continue;
        }
        let imm = h(f[1]) as u8;
        let (la, lb) = if f[0] == "pcmpestr" { (Some(d(f[4])), Some(d(f[5]))) } else { (None, None) };
        let r = pcmpstr(h(f[2]), h(f[3]), la, lb, imm);
        let (ecx, xmm0, flags) = (index(r, imm), mask(r, imm), r.flags);
        if ecx as i64 != d(f[6]) || xmm0 != h(f[7]) || flags as u128 != h(f[8]) {
            failures.push(format!("{line}\n    model {ecx} {xmm0:032x} {flags:x}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(n >= 1736, "only {n} cases");
}

//! Save-area layouts against silicon: tests/silicon/xsave.txt holds the
//! images FXSAVE, FXSAVE64, XSAVE(64), XSAVEC, XSAVEOPT, FNSTENV and FNSAVE
//! wrote on the CPU its header names for one state (three x87 values, a
//! pending PE, MXCSR 0x1FA0, XMMi = byte i·0x11), and FXSAVE64, FNSTENV
//! and FNSAVE for a stack holding every tag kind, into buffers prefilled
//! with 0x5A. The model reads the state back from the FXSAVE64 image and
//! must write every image byte for byte, leaving the same bytes alone.

use exitlab_x86::fp::xsave::*;

fn images() -> Vec<(String, Vec<u8>)> {
    include_str!("silicon/xsave.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (n, h) = l.split_once(' ').unwrap();
            let b = (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
            (n.to_string(), b)
        })
        .collect()
}

/// The state an FXSAVE64 image holds.
fn state_of(imgs: &[(String, Vec<u8>)], name: &str) -> FpuState {
    let fx64: [u8; 512] = imgs.iter().find(|(n, _)| n == name).unwrap().1[..].try_into().unwrap();
    let mut s = FpuState::default();
    fxrstor(&mut s, true, &fx64).unwrap();
    s
}

#[test]
fn save_images_match_silicon() {
    let imgs = images();
    let plain = state_of(&imgs, "fxsave64");
    let tags = state_of(&imgs, "tags_fxsave64");
    for (full_name, want) in &imgs {
        let (mut s, name) = match full_name.strip_prefix("tags_") {
            Some(n) => (tags, n),
            None => (plain, full_name.as_str()),
        };
        let mut got = vec![0x5au8; want.len()];
        match name {
            "fxsave" | "fxsave64" => {
                let mut a = [0x5au8; 512];
                fxsave(&s, name == "fxsave64", &mut a);
                got.copy_from_slice(&a);
            }
            "fnstenv" => got.copy_from_slice(&fnstenv(&mut s)),
            "fnsave" => got.copy_from_slice(&fnsave(&mut s)),
            _ => {
                let (op, mask) = name.split_once('_').unwrap();
                let (op, rex_w) = match op {
                    "xsave" => (SaveOp::Xsave, false),
                    "xsave64" => (SaveOp::Xsave, true),
                    "xsavec" => (SaveOp::Xsavec, false),
                    _ => (SaveOp::Xsaveopt, false),
                };
                // Silicon's image covers 64 bytes past the 576-byte area,
                // which it must leave alone.
                let mut area = [0x5au8; 576];
                xsave(&s, op, rex_w, 3, mask.parse().unwrap(), &mut area);
                got[..576].copy_from_slice(&area);
            }
        }
        assert_eq!(&got, want, "{full_name}");
    }
}

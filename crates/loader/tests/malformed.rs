//! Malformed images of every format: the project's own images with bytes
//! changed and cut, and arbitrary bytes forced through each loader. Every
//! result is an error or a guest whose chunks fit in memory without
//! overlapping; nothing panics. The fuzz targets in fuzz/ run the same
//! check under libFuzzer.

use exitlab_loader::{load, testimage, CpuMode, FlatOptions, Format, LoadedGuest, Module, Options};
use proptest::prelude::*;

const MEMORY: u64 = 16 << 20;

fn options(format: Option<Format>) -> Options {
    let mut o = Options::new(MEMORY);
    o.format = format;
    o.cmdline = "guest arg".into();
    o.modules = vec![Module { bytes: b"NR_CPUS=1\n".to_vec(), cmdline: "env".into() }];
    o.initrd = Some(vec![0x1f; 0x2000]);
    o.flat = Some(FlatOptions { load: 0x10_0000, entry: 0x10_0000, mode: CpuMode::Long });
    o
}

/// What every loaded guest must satisfy.
fn check(g: &LoadedGuest) {
    let mut end = 0;
    for c in &g.chunks {
        assert!(c.gpa >= end, "{c:?} overlaps the chunk before it");
        end = c.end();
        assert!(end <= MEMORY, "{c:?} is past memory");
    }
    assert!(g.memory_needed <= MEMORY);
    assert!(g.memory_needed >= end);
}

const FORMATS: [Option<Format>; 6] =
    [None, Some(Format::Flat), Some(Format::Elf), Some(Format::Multiboot), Some(Format::BzImage), Some(Format::Pvh)];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_images_load_or_fail_cleanly(
        seed in 0usize..6,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8),
        cut in any::<u16>(),
        format in 0usize..6,
    ) {
        let mut image = testimage::seeds()[seed].clone();
        let len = image.len();
        for (at, v) in edits {
            image[usize::from(at) % len] = v;
        }
        image.truncate(usize::from(cut).max(1).min(len));
        if let Ok(g) = load(&image, &options(FORMATS[format])) {
            check(&g);
        }
    }

    #[test]
    fn arbitrary_bytes_in_every_format(bytes in proptest::collection::vec(any::<u8>(), 0..4096), format in 0usize..6) {
        if let Ok(g) = load(&bytes, &options(FORMATS[format])) {
            check(&g);
        }
    }

    /// Header words set to boundary values (0, all ones, just past the
    /// file) where each format keeps its offsets and sizes.
    #[test]
    fn absurd_offsets_and_sizes(seed in 0usize..6, at in 0usize..0x280, value in prop_oneof![
        Just(0u64), Just(u64::MAX), Just(0xffff_ffff), Just(0x8000_0000), Just(0x1000), any::<u64>()
    ]) {
        let mut image = testimage::seeds()[seed].clone();
        let at = (at & !3).min(image.len() - 8);
        image[at..at + 8].copy_from_slice(&value.to_le_bytes());
        for format in [None, Some(Format::Pvh)] {
            if let Ok(g) = load(&image, &options(format)) {
                check(&g);
            }
        }
    }
}

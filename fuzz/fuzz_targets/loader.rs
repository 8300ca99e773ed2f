//! Images through every loader: each input is loaded as detected, flat,
//! ELF, multiboot, bzImage and PVH. An input whose first byte is below 12
//! edits one of the project's own images instead (`testimage`: ELF64,
//! ELF32 multiboot, a.out kludge, bzImage, a PVH vmlinux, a bzImage with
//! that vmlinux XZ-compressed): then 3-byte steps of (offset, value)
//! overwrite its bytes, so the search starts past the magic numbers (and
//! reaches the PVH notes and the XZ decoder). A load either fails with an
//! error or returns chunks that fit in memory without overlapping.
#![no_main]

use exitlab_loader::{load, testimage, CpuMode, FlatOptions, Format, Module, Options};
use libfuzzer_sys::fuzz_target;

const MEMORY: u64 = 16 << 20;


fn image(input: &[u8]) -> Vec<u8> {
    let Some((&first, rest)) = input.split_first() else { return Vec::new() };
    let n = testimage::seeds().len();
    let Some(seed) = testimage::seeds().get(usize::from(first) % n).filter(|_| usize::from(first) < 2 * n) else {
        return input.to_vec();
    };
    let mut image = seed.clone();
    for step in rest.chunks_exact(3) {
        let (at, len) = (usize::from(u16::from_le_bytes([step[0], step[1]])), image.len().max(1));
        if usize::from(first) >= n && at >= len {
            // Past the end: cut the image there instead.
            image.truncate(at % len);
        } else if let Some(b) = image.get_mut(at % len) {
            *b = step[2];
        }
    }
    image
}

fuzz_target!(|input: &[u8]| {
    let image = image(input);
    let formats =
        [None, Some(Format::Flat), Some(Format::Elf), Some(Format::Multiboot), Some(Format::BzImage), Some(Format::Pvh)];
    for format in formats {
        let mut o = Options::new(MEMORY);
        o.format = format;
        o.cmdline = "fuzz".into();
        o.modules = vec![Module { bytes: b"NR_CPUS=1\n".to_vec(), cmdline: "env".into() }];
        o.initrd = Some(vec![0; 0x1000]);
        o.flat = Some(FlatOptions { load: 0x10_0000, entry: 0x10_0000, mode: CpuMode::Long });
        if let Ok(g) = load(&image, &o) {
            let mut end = 0;
            for c in &g.chunks {
                assert!(c.gpa >= end && c.end() <= MEMORY, "{c:?}");
                end = c.end();
            }
        }
    }
});

//! The uncompressed kernel inside a bzImage: the setup header's
//! `payload_offset` and `payload_length` (protocol 2.08+,
//! Documentation/arch/x86/boot.rst) name the compressed vmlinux in the
//! protected-mode code, which is decompressed here instead of by the
//! kernel's own decompressor (billions of guest instructions, see
//! ../shared/linux/README.md), so the vmlinux can boot through its PVH
//! entry.
//!
//! XZ is the format read: Debian's and most distributions' kernels use it
//! (CONFIG_KERNEL_XZ), and scripts/xz_wrap.sh compresses with the x86 BCJ
//! filter in front of LZMA2, which a plain LZMA2 decoder cannot undo.
//! lzma-rust2 (a port of XZ for Java, safe Rust without its `optimization`
//! feature) decodes the container, the BCJ filter and the checks. The
//! kernel's Makefile appends the uncompressed size as 4 little-endian
//! bytes after the stream (`size_append` in scripts/Makefile.lib); it must
//! equal what the stream decodes to. An uncompressed payload (an ELF) is
//! taken as it is; the other compressors are named and refused.

use crate::bzimage::{setup_header, setup_len};
use crate::{Format, LoadError};
use lzma_rust2::XzReader;
use std::io::Read;

/// Protocol 2.08 introduced `payload_offset` and `payload_length`.
const MIN_VERSION: u16 = 0x0208;
/// The XZ stream header's magic (the .xz file format 1.2.1, 2.1.1.1).
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
/// The other compressors the kernel's Makefile offers, by their magic
/// (arch/x86/boot/compressed/Makefile, lib/decompress.c's table).
const OTHER_MAGICS: [(&[u8], &str); 6] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "LZMA"),
    (b"\x89LZO", "LZO"),
    (b"\x02\x21\x4c\x18", "LZ4"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
];
/// The largest dictionary the decoder allocates: xz_wrap.sh uses 32 MiB,
/// twice that leaves room for other builds while a forged header cannot
/// make the loader allocate gigabytes.
const DICT_LIMIT_KIB: u32 = 64 << 10;

fn bad(field: &'static str, value: u64, why: &'static str) -> LoadError {
    LoadError::BadField { format: Format::BzImage, field, value, why }
}

/// The uncompressed kernel (an ELF vmlinux) in bzImage `image`, at most
/// `limit` bytes (the guest's memory: a larger kernel would not fit).
pub fn extract(image: &[u8], limit: u64) -> Result<Vec<u8>, LoadError> {
    let hdr = setup_header(image)?;
    let version = hdr.version;
    if version < MIN_VERSION {
        let what = format!("boot protocol {}.{:02} predates payload_offset (2.08)", version >> 8, version & 0xff);
        return Err(LoadError::Unsupported { format: Format::BzImage, what });
    }
    let (payload_offset, payload_length) = (u64::from(hdr.payload_offset), u64::from(hdr.payload_length));
    let offset = setup_len(&hdr) + payload_offset;
    let file_len = image.len() as u64;
    if offset + payload_length > file_len {
        let what = "compressed kernel (payload_offset, payload_length)";
        return Err(LoadError::Truncated { what, offset, len: payload_length, file_len });
    }
    let payload = &image[offset as usize..(offset + payload_length) as usize];
    if payload.starts_with(crate::elf::MAGIC) {
        return Ok(payload.to_vec());
    }
    if !payload.starts_with(XZ_MAGIC) {
        let what = match OTHER_MAGICS.iter().find(|(magic, _)| payload.starts_with(magic)) {
            Some((_, name)) => format!("the kernel is {name}-compressed; exitlab decompresses XZ only"),
            None => format!("the payload at {offset:#x} is neither XZ nor an ELF vmlinux"),
        };
        return Err(LoadError::Unsupported { format: Format::BzImage, what });
    }
    xz(payload, offset, limit)
}

/// Decodes the XZ stream in `payload` (at file offset `offset`), followed
/// by its 4-byte uncompressed size.
fn xz(payload: &[u8], offset: u64, limit: u64) -> Result<Vec<u8>, LoadError> {
    let Some(split) = payload.len().checked_sub(4) else {
        return Err(bad("payload_length", payload.len() as u64, "too short for an XZ stream and its size"));
    };
    let (stream, size) = payload.split_at(split);
    let size = u64::from(u32::from_le_bytes(size.try_into().expect("4 bytes")));
    if size > limit {
        return Err(bad("the payload's uncompressed size", size, "larger than guest memory"));
    }
    let mut out = Vec::with_capacity(size as usize);
    let reader = XzReader::new_mem_limit(stream, false, DICT_LIMIT_KIB);
    reader
        .take(size + 1)
        .read_to_end(&mut out)
        .map_err(|e| LoadError::Decompress { offset, why: e.to_string().replace('\n', " ") })?;
    if out.len() as u64 != size {
        return Err(LoadError::Decompress {
            offset,
            why: format!("the stream decodes to {} bytes, its appended size says {size}", out.len()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage::{self, BzImage, Elf};

    #[test]
    fn extracts_the_vmlinux_through_xz_and_bcj() {
        let vmlinux = testimage::pvh_elf(0x20_0000);
        let image = testimage::bzimage_with_vmlinux(&vmlinux);
        assert_eq!(extract(&image, 16 << 20).unwrap(), vmlinux);
    }

    #[test]
    fn an_uncompressed_payload_is_taken_as_it_is() {
        let vmlinux = testimage::elf(&Elf::hello(0x20_0000));
        let mut b = BzImage::default();
        b.payload_offset = b.payload.len() as u32;
        b.payload_length = vmlinux.len() as u32;
        b.payload.extend_from_slice(&vmlinux);
        assert_eq!(extract(&testimage::bzimage(&b), 16 << 20).unwrap(), vmlinux);
    }

    #[test]
    fn bad_payloads_are_one_line_errors() {
        let vmlinux = testimage::pvh_elf(0x20_0000);
        let image = testimage::bzimage_with_vmlinux(&vmlinux);
        let hdr = setup_header(&image).unwrap();
        let offset = setup_len(&hdr) + u64::from(hdr.payload_offset);
        let len = u64::from(hdr.payload_length);
        // payload_length past the end of the file.
        let mut long = image.clone();
        long[0x24c..0x250].copy_from_slice(&(hdr.payload_length + 1).to_le_bytes());
        let e = extract(&long, 16 << 20).unwrap_err();
        let file_len = image.len() as u64;
        let what = "compressed kernel (payload_offset, payload_length)";
        assert_eq!(e, LoadError::Truncated { what, offset, len: len + 1, file_len });
        // A flipped byte in the compressed data: the decoder or the check
        // catches it.
        let mut corrupt = image.clone();
        corrupt[(offset + len / 2) as usize] ^= 0x55;
        let e = extract(&corrupt, 16 << 20).unwrap_err();
        assert!(matches!(e, LoadError::Decompress { offset: o, .. } if o == offset), "{e}");
        // A size that disagrees with the stream.
        let mut size = image.clone();
        let at = (offset + len - 4) as usize;
        size[at..at + 4].copy_from_slice(&(vmlinux.len() as u32 - 1).to_le_bytes());
        let e = extract(&size, 16 << 20).unwrap_err();
        assert!(e.to_string().contains(&format!("its appended size says {}", vmlinux.len() - 1)), "{e}");
        assert!(matches!(extract(&image, 0x100), Err(LoadError::BadField { .. })));
        // gzip is named; the old protocol is refused.
        let mut gz = image.clone();
        gz[offset as usize..offset as usize + 2].copy_from_slice(b"\x1f\x8b");
        assert_eq!(
            extract(&gz, 16 << 20).unwrap_err().to_string(),
            "unsupported bzImage image: the kernel is gzip-compressed; exitlab decompresses XZ only"
        );
        let old = testimage::bzimage(&BzImage { version: 0x0207, ..Default::default() });
        assert!(matches!(extract(&old, 16 << 20), Err(LoadError::Unsupported { .. })));
        for e in [extract(&corrupt, 16 << 20).unwrap_err(), extract(&long, 16 << 20).unwrap_err()] {
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
    }
}

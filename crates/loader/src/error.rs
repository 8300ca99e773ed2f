//! Why an image did not load. Every variant names the problem with the
//! numbers a user can check against the file (offsets, addresses, sizes);
//! `Display` is one line, for the command line's "one line, exit 2".

use crate::Format;
use std::fmt;

/// A guest-physical range the loader placed or was asked to place, named
/// for messages ("ELF segment 1", "multiboot information").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub what: String,
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x}-{:#x})", self.what, self.start, self.end)
    }
}

/// An image that cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// No format recognised: not ELF, no bzImage setup header, no
    /// multiboot header in the first 8 KiB.
    UnknownFormat { first_bytes: Vec<u8> },
    /// A flat binary has no header: its load address, entry and start
    /// mode must be given.
    FlatNeedsOptions,
    /// A structure the format defines lies (partly) past the end of the
    /// file.
    Truncated { what: &'static str, offset: u64, len: u64, file_len: u64 },
    /// A header field holds a value the format does not allow or that
    /// makes no sense (an absurd size or offset).
    BadField { format: Format, field: &'static str, value: u64, why: &'static str },
    /// A valid image of a kind exitlab does not load (big-endian ELF, a
    /// 16-bit-only bzImage, a multiboot image that needs video).
    Unsupported { format: Format, what: String },
    /// Two things the loader would place overlap in guest memory.
    Overlap { a: Region, b: Region },
    /// Something would be placed past the end of guest memory, or
    /// where the platform has no RAM (the legacy hole 0x9fc00-0x100000).
    OutsideMemory { region: Region, memory: u64 },
    /// The entry point is not inside any loaded byte.
    EntryOutside { entry: u64 },
    /// The command line does not fit what the format allows.
    CmdlineTooLong { len: u64, max: u64 },
    /// The guest memory size is one the loader cannot describe.
    BadMemorySize { memory: u64, why: &'static str },
    /// A bzImage's compressed kernel (at file `offset`) does not decode:
    /// the decoder's or the checks' complaint.
    Decompress { offset: u64, why: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::UnknownFormat { first_bytes } => {
                write!(f, "unknown image format (first bytes")?;
                for b in first_bytes {
                    write!(f, " {b:02x}")?;
                }
                write!(f, "): not ELF, not a bzImage, no multiboot header; a raw binary needs --format flat")
            }
            LoadError::FlatNeedsOptions => {
                write!(f, "a flat binary needs its load address, entry point and start mode")
            }
            LoadError::Truncated { what, offset, len, file_len } => write!(
                f,
                "truncated image: the {what} ({len} bytes at offset {offset:#x}) runs past the end of the {file_len}-byte file"
            ),
            LoadError::BadField { format, field, value, why } => {
                write!(f, "bad {format} image: {field} = {value:#x}: {why}")
            }
            LoadError::Unsupported { format, what } => write!(f, "unsupported {format} image: {what}"),
            LoadError::Overlap { a, b } => write!(f, "{a} overlaps {b}"),
            LoadError::OutsideMemory { region, memory } => {
                write!(f, "{region} does not fit in guest RAM ({memory:#x} bytes, no RAM at 0x9fc00-0x100000)")
            }
            LoadError::EntryOutside { entry } => write!(f, "entry point {entry:#x} is outside the loaded bytes"),
            LoadError::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes is longer than the image accepts ({max} bytes)")
            }
            LoadError::BadMemorySize { memory, why } => write!(f, "guest memory of {memory:#x} bytes: {why}"),
            LoadError::Decompress { offset, why } => {
                write!(f, "the bzImage's compressed kernel at offset {offset:#x} does not decompress: {why}")
            }
        }
    }
}

impl std::error::Error for LoadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_the_numbers() {
        let errors = [
            LoadError::UnknownFormat { first_bytes: vec![0x7f, 0x45, 0x4c, 0x47] },
            LoadError::FlatNeedsOptions,
            LoadError::Truncated { what: "ELF program header table", offset: 0x40, len: 56, file_len: 80 },
            LoadError::BadField { format: Format::Elf, field: "e_phentsize", value: 12, why: "not 56" },
            LoadError::Unsupported { format: Format::BzImage, what: "no 64-bit entry".into() },
            LoadError::Overlap {
                a: Region { what: "ELF segment 1".into(), start: 0x1000, end: 0x2000 },
                b: Region { what: "ELF segment 0".into(), start: 0x1800, end: 0x1900 },
            },
            LoadError::OutsideMemory { region: Region { what: "x".into(), start: 0, end: 1 }, memory: 0x100 },
            LoadError::EntryOutside { entry: 0xdead },
            LoadError::CmdlineTooLong { len: 300, max: 255 },
            LoadError::BadMemorySize { memory: 0, why: "zero" },
            LoadError::Decompress { offset: 0x4f2c, why: "corrupt LZMA2 data".into() },
        ];
        for e in &errors {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
        }
        assert_eq!(
            errors[2].to_string(),
            "truncated image: the ELF program header table (56 bytes at offset 0x40) runs past the end of the 80-byte file"
        );
        assert_eq!(errors[5].to_string(), "ELF segment 1 (0x1000-0x2000) overlaps ELF segment 0 (0x1800-0x1900)");
        assert_eq!(errors[0].to_string().split(':').next().unwrap(), "unknown image format (first bytes 7f 45 4c 47)");
    }
}

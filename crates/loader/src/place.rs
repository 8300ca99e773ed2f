//! Placing things in guest memory: every range is checked against the
//! guest's RAM and against everything placed before it, so a loader cannot
//! return overlapping or out-of-memory chunks.

use crate::layout::{EBDA, HIGH_MEMORY};
use crate::{Chunk, Format, LoadError, LoadedGuest, Region, Symbols};
use exitlab_arch::BootState;

pub(crate) struct Placer {
    memory: u64,
    /// Everything placed: chunks' ranges and ranges only reserved.
    taken: Vec<Region>,
    chunks: Vec<Chunk>,
    /// The image's own bytes (the entry point must be in one of them).
    image_ranges: Vec<(u64, u64)>,
}

impl Placer {
    pub fn new(memory: u64) -> Placer {
        Placer { memory, taken: Vec::new(), chunks: Vec::new(), image_ranges: Vec::new() }
    }

    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Claims `[start, start + len)` for `what`: inside RAM, outside the
    /// legacy hole, overlapping nothing claimed before.
    pub fn reserve(&mut self, what: String, start: u64, len: u64) -> Result<(), LoadError> {
        let memory = self.memory;
        let Some(end) = start.checked_add(len) else {
            return Err(LoadError::OutsideMemory { region: Region { what, start, end: u64::MAX }, memory });
        };
        let region = Region { what, start, end };
        if end > memory || (start < HIGH_MEMORY && EBDA < end) {
            return Err(LoadError::OutsideMemory { region, memory });
        }
        if len == 0 {
            return Ok(());
        }
        if let Some(other) = self.taken.iter().find(|t| t.start < end && start < t.end) {
            return Err(LoadError::Overlap { a: region, b: other.clone() });
        }
        self.taken.push(region);
        Ok(())
    }

    /// Places bytes the loader built (tables, strings, modules).
    pub fn data(&mut self, what: String, gpa: u64, bytes: Vec<u8>) -> Result<(), LoadError> {
        self.reserve(what.clone(), gpa, bytes.len() as u64)?;
        if !bytes.is_empty() {
            self.chunks.push(Chunk { what, gpa, bytes, zeros: 0 });
        }
        Ok(())
    }

    /// Places the image's own bytes, followed by `zeros` zero bytes; the
    /// entry point must fall in the bytes of one of these. The bytes are
    /// copied only once the range is known to fit.
    pub fn image(&mut self, what: String, gpa: u64, bytes: &[u8], zeros: u64) -> Result<(), LoadError> {
        let len = (bytes.len() as u64).saturating_add(zeros);
        self.reserve(what.clone(), gpa, len)?;
        let bytes = bytes.to_vec();
        if !bytes.is_empty() {
            self.image_ranges.push((gpa, gpa + bytes.len() as u64));
        }
        if len != 0 {
            self.chunks.push(Chunk { what, gpa, bytes, zeros });
        }
        Ok(())
    }

    /// Checks that `entry` is one of the image's loaded bytes.
    pub fn entry(&self, entry: u64) -> Result<(), LoadError> {
        match self.image_ranges.iter().any(|&(s, e)| s <= entry && entry < e) {
            true => Ok(()),
            false => Err(LoadError::EntryOutside { entry }),
        }
    }

    /// The end of the highest range claimed so far.
    pub fn end(&self) -> u64 {
        self.taken.iter().map(|t| t.end).max().unwrap_or(0)
    }

    pub fn finish(mut self, format: Format, boot: BootState, symbols: Symbols) -> LoadedGuest {
        self.chunks.sort_by_key(|c| c.gpa);
        let memory_needed = self.end();
        LoadedGuest { format, chunks: self.chunks, boot, symbols, memory_needed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overlap_hole_memory_end_and_wrap() {
        let mut p = Placer::new(0x40_0000);
        p.data("a".into(), 0x10_0000, vec![1; 0x1000]).unwrap();
        let e = p.data("b".into(), 0x10_0800, vec![2; 16]).unwrap_err();
        assert_eq!(
            e,
            LoadError::Overlap {
                a: Region { what: "b".into(), start: 0x10_0800, end: 0x10_0810 },
                b: Region { what: "a".into(), start: 0x10_0000, end: 0x10_1000 },
            }
        );
        assert!(matches!(p.data("c".into(), 0xf_0000, vec![0; 1]), Err(LoadError::OutsideMemory { .. })));
        assert!(matches!(p.data("d".into(), 0x3f_ffff, vec![0; 2]), Err(LoadError::OutsideMemory { .. })));
        assert!(matches!(p.image("e".into(), u64::MAX, &[0; 2], 0), Err(LoadError::OutsideMemory { .. })));
        assert!(matches!(p.image("f".into(), 0x20_0000, &[], u64::MAX), Err(LoadError::OutsideMemory { .. })));
        p.data("g".into(), 0x9_f000, vec![0; 0xc00]).unwrap();
        assert_eq!(p.end(), 0x10_1000);
    }

    #[test]
    fn entry_must_be_in_image_bytes_not_bss_or_tables() {
        let mut p = Placer::new(0x40_0000);
        p.image("seg".into(), 0x10_0000, &[0x90; 16], 16).unwrap();
        p.data("table".into(), 0x1000, vec![0; 16]).unwrap();
        assert!(p.entry(0x10_000f).is_ok());
        assert_eq!(p.entry(0x10_0010), Err(LoadError::EntryOutside { entry: 0x10_0010 }));
        assert_eq!(p.entry(0x1000), Err(LoadError::EntryOutside { entry: 0x1000 }));
    }
}

//! Guest RAM and the pages of it that hold decoded code.
//!
//! RAM is one anonymous mapping made by vm-memory, so the VMM's devices
//! (virtio queues through the virtio-queue crate) reach the same memory
//! through [`crate::SimVm`]'s `GuestMemoryMmap`, as on KVM. The CPU reads
//! and writes it through the region's safe `Bytes` API, but for aligned
//! quadwords, which go through a view of the mapping as atomics
//! (`Ram::quads`, the crate's one `unsafe` block: a call into
//! vm-memory per access was a tenth of the fast path's time).

use exitlab_hv::HvError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MemoryRegionAddress};

/// The page size of RAM bookkeeping (and of the TLB's translations).
pub const PAGE: u64 = 4096;

/// Guest RAM from guest-physical 0, and one bit per page saying whether a
/// cached block was decoded from it.
pub struct Ram {
    /// RAM as the VMM's devices see it.
    memory: GuestMemoryMmap,
    /// Its one region, for the CPU's accesses.
    region: Arc<GuestRegionMmap>,
    /// The region's host address (see [`Ram::quads`]).
    host: usize,
    len: u64,
    code_pages: Vec<u64>,
}

impl Ram {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: usize) -> Result<Ram, HvError> {
        let failed = |e: &dyn std::fmt::Display| HvError::Backend(format!("guest RAM mapping: {e}"));
        let region = Arc::new(GuestRegionMmap::from_range(GuestAddress(0), size, None).map_err(|e| failed(&e))?);
        let memory = GuestMemoryMmap::from_arc_regions(vec![region.clone()]).map_err(|e| failed(&e))?;
        let pages = size.div_ceil(PAGE as usize);
        let host = region.as_ptr() as usize;
        Ok(Ram { memory, region, host, len: size as u64, code_pages: vec![0; pages.div_ceil(64)] })
    }

    /// The same RAM as a vm-memory `GuestMemoryMmap` (for devices).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Bytes of RAM.
    #[inline(always)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// RAM as aligned quadwords, for single accesses with no call: a
    /// relaxed atomic load or store is a plain move on x86, and atomic as
    /// vm-memory's own `load` and `store` (which devices' threads may use
    /// at the same time) are.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn quads(&self) -> &[AtomicU64] {
        // SAFETY: `host` is the start of the region's mapping, `len` bytes
        // long, page-aligned (so aligned for AtomicU64), mapped read-write
        // for as long as `self.region` (an Arc this struct holds) lives,
        // which outlives the borrow of `self`; AtomicU64 has the size and
        // alignment of u64 and every access through it is atomic.
        unsafe { std::slice::from_raw_parts(self.host as *const AtomicU64, (self.len / 8) as usize) }
    }

    /// The aligned quadword at `gpa`, if `gpa` is 8-aligned and in RAM.
    #[inline(always)]
    fn quad(&self, gpa: u64) -> Option<&AtomicU64> {
        if gpa & 7 != 0 {
            return None;
        }
        self.quads().get(usize::try_from(gpa / 8).ok()?)
    }

    /// Copies RAM out; `false` if the range leaves RAM.
    #[inline(always)]
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        if let Ok(q) = <&mut [u8; 8]>::try_from(&mut *out) {
            if let Some(v) = self.quad(gpa) {
                *q = v.load(Ordering::Relaxed).to_ne_bytes();
                return true;
            }
        }
        self.region.read_slice(out, MemoryRegionAddress(gpa)).is_ok()
    }

    /// The `size`-byte (1 to 8) little-endian value at `gpa`; `None` if
    /// it leaves RAM. One within an aligned quadword is read from it; a
    /// value, not a buffer, so the fast path's handlers keep nothing on
    /// their stack and jump to the next handler from their tails.
    #[inline(always)]
    pub fn read_value(&self, gpa: u64, size: usize) -> Option<u64> {
        let at = gpa & 7;
        if at as usize + size <= 8 {
            if let Some(q) = self.quad(gpa - at) {
                let v = u64::from_le(q.load(Ordering::Relaxed)) >> (at * 8);
                return Some(if size == 8 { v } else { v & ((1 << (size * 8)) - 1) });
            }
        }
        self.read_value_copied(gpa, size)
    }

    #[cold]
    #[inline(never)]
    fn read_value_copied(&self, gpa: u64, size: usize) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, b.get_mut(..size)?).then(|| u64::from_le_bytes(b))
    }

    /// Writes the low `size` bytes (1 to 8) of `v` at `gpa`, little-endian,
    /// as [`Ram::write`] (an aligned quadword in one store).
    #[inline(always)]
    pub fn write_value(&mut self, gpa: u64, size: usize, v: u64, stale: impl FnMut(u64)) -> bool {
        match self.quad(gpa) {
            Some(q) if size == 8 => q.store(v.to_le(), Ordering::Relaxed),
            _ => {
                if !self.write_value_copied(gpa, size, v) {
                    return false;
                }
            }
        }
        self.unmark(gpa, size as u64, stale);
        true
    }

    #[cold]
    #[inline(never)]
    fn write_value_copied(&self, gpa: u64, size: usize, v: u64) -> bool {
        let b = v.to_le_bytes();
        b.get(..size).is_some_and(|d| self.region.write_slice(d, MemoryRegionAddress(gpa)).is_ok())
    }

    /// Copies `data` into RAM; `false` if the range leaves RAM. Each page
    /// written that held decoded code is unmarked and passed to `stale`.
    #[inline(always)]
    pub fn write(&mut self, gpa: u64, data: &[u8], stale: impl FnMut(u64)) -> bool {
        let quad = <[u8; 8]>::try_from(data).ok().and_then(|q| Some((q, self.quad(gpa)?)));
        match quad {
            Some((q, to)) => to.store(u64::from_ne_bytes(q), Ordering::Relaxed),
            None => {
                if self.region.write_slice(data, MemoryRegionAddress(gpa)).is_err() {
                    return false;
                }
            }
        }
        self.unmark(gpa, data.len() as u64, stale);
        true
    }

    /// Unmarks the code pages `len` bytes written at `gpa` touch, passing
    /// each to `stale`.
    #[inline(always)]
    fn unmark(&mut self, gpa: u64, len: u64, mut stale: impl FnMut(u64)) {
        let end = gpa + len;
        let mut p = gpa & !(PAGE - 1);
        while p < end {
            let page = (p / PAGE) as usize;
            if let Some(w) = self.code_pages.get_mut(page / 64) {
                if *w & (1 << (page % 64)) != 0 {
                    *w &= !(1 << (page % 64));
                    stale(page as u64);
                }
            }
            p += PAGE;
        }
    }

    /// Notes that a block was decoded from the page holding `phys`.
    pub fn mark_code(&mut self, phys: u64) {
        let p = (phys / PAGE) as usize;
        if let Some(w) = self.code_pages.get_mut(p / 64) {
            *w |= 1 << (p % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_value` and `write_value` agree with the byte copies at every
    /// offset in and across quadwords, every size, and at RAM's end.
    #[test]
    fn values_agree_with_byte_copies() {
        let mut ram = Ram::new(2 * PAGE as usize).unwrap();
        let bytes: Vec<u8> = (0..2 * PAGE).map(|i| (i * 37 + 11) as u8).collect();
        assert!(ram.write(0, &bytes, |_| {}));
        let end = 2 * PAGE;
        for gpa in (0..24).chain(end - 12..end) {
            for size in 1..=8usize {
                let mut b = [0u8; 8];
                let copied = ram.read(gpa, &mut b[..size]).then(|| u64::from_le_bytes(b));
                assert_eq!(ram.read_value(gpa, size), copied, "{gpa:#x} {size}");
                let v = 0x8877_6655_4433_2211u64.rotate_left(gpa as u32);
                let mut other = Ram::new(2 * PAGE as usize).unwrap();
                assert!(other.write(0, &bytes, |_| {}));
                let fits = gpa + size as u64 <= end;
                assert_eq!(ram.write_value(gpa, size, v, |_| {}), fits);
                assert_eq!(other.write(gpa, &v.to_le_bytes()[..size], |_| {}), fits);
                let (mut x, mut y) = (vec![0u8; end as usize], vec![0u8; end as usize]);
                assert!(ram.read(0, &mut x) && other.read(0, &mut y));
                assert!(x == y, "{gpa:#x} {size}");
                assert!(ram.write(0, &bytes, |_| {}));
            }
        }
    }

    /// A value written to a page holding decoded code names that page once.
    #[test]
    fn values_written_to_code_pages_unmark_them() {
        let mut ram = Ram::new(2 * PAGE as usize).unwrap();
        ram.mark_code(PAGE + 5);
        let mut pages = Vec::new();
        assert!(ram.write_value(PAGE + 0x10, 8, 1, |p| pages.push(p)));
        assert!(ram.write_value(PAGE + 0x20, 4, 1, |p| pages.push(p)));
        assert_eq!(pages, [1]);
    }
}

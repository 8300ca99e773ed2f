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

    /// Copies `data` into RAM; `false` if the range leaves RAM. Each page
    /// written that held decoded code is unmarked and passed to `stale`.
    #[inline(always)]
    pub fn write(&mut self, gpa: u64, data: &[u8], mut stale: impl FnMut(u64)) -> bool {
        let quad = <[u8; 8]>::try_from(data).ok().and_then(|q| Some((q, self.quad(gpa)?)));
        match quad {
            Some((q, to)) => to.store(u64::from_ne_bytes(q), Ordering::Relaxed),
            None => {
                if self.region.write_slice(data, MemoryRegionAddress(gpa)).is_err() {
                    return false;
                }
            }
        }
        let end = gpa + data.len() as u64;
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
        true
    }

    /// Notes that a block was decoded from the page holding `phys`.
    pub fn mark_code(&mut self, phys: u64) {
        let p = (phys / PAGE) as usize;
        if let Some(w) = self.code_pages.get_mut(p / 64) {
            *w |= 1 << (p % 64);
        }
    }
}

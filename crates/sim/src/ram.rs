//! Guest RAM and the pages of it that hold decoded code.
//!
//! RAM is one anonymous mapping made by vm-memory, so the VMM's devices
//! (virtio queues through the virtio-queue crate) reach the same memory
//! through [`crate::SimVm`]'s `GuestMemoryMmap`, as on KVM. The CPU reads
//! and writes it through the region's safe `Bytes` API.

use exitlab_hv::HvError;
use std::sync::atomic::Ordering;
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
        Ok(Ram { memory, region, len: size as u64, code_pages: vec![0; pages.div_ceil(64)] })
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

    /// Copies RAM out; `false` if the range leaves RAM.
    #[inline(always)]
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        // An aligned quadword in one access (vm-memory's atomic load, a
        // plain move on x86): `read_slice` copies through a call.
        if let Ok(q) = <&mut [u8; 8]>::try_from(&mut *out) {
            if let Ok(v) = self.region.load::<u64>(MemoryRegionAddress(gpa), Ordering::Relaxed) {
                *q = v.to_ne_bytes();
                return true;
            }
        }
        self.region.read_slice(out, MemoryRegionAddress(gpa)).is_ok()
    }

    /// Copies `data` into RAM; `false` if the range leaves RAM. Each page
    /// written that held decoded code is unmarked and passed to `stale`.
    #[inline(always)]
    pub fn write(&mut self, gpa: u64, data: &[u8], mut stale: impl FnMut(u64)) -> bool {
        let quad = <[u8; 8]>::try_from(data).ok().filter(|_| gpa & 7 == 0);
        let done = match quad {
            Some(q) => self.region.store(u64::from_ne_bytes(q), MemoryRegionAddress(gpa), Ordering::Relaxed),
            None => self.region.write_slice(data, MemoryRegionAddress(gpa)),
        };
        if done.is_err() {
            return false;
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

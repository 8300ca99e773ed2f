//! What a simulated VM's vCPUs share: guest RAM, the cache of decoded
//! blocks (with the pages it was decoded from, for self-modifying code),
//! and interrupts signalled from outside the vCPUs (MSIs).
//!
//! Guest RAM is one anonymous mapping made by vm-memory, so the VMM's
//! devices (virtio queues through the virtio-queue crate) reach the same
//! memory through [`crate::SimVm`]'s `GuestMemoryMmap`, as on KVM.

use crate::cpu::op::Op;
use crate::iommu::{Assigned, Iommu};
use exitlab_arch::iommu::SourceId;
use exitlab_arch::posted;
use exitlab_hv::HvError;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MemoryRegionAddress};

pub const PAGE: u64 = 4096;

/// Where host memory (the VMM's structures for the hardware: EPT tables)
/// starts in the host-physical address space; below it, host-physical
/// equals guest-physical for RAM.
pub const HOST_BASE: u64 = 1 << 44;

/// A run of decoded instructions from one page, entered at `lin`.
#[derive(Debug)]
pub struct Block {
    /// The linear address the block was decoded at (RIP-relative operands
    /// were resolved against it).
    pub lin: u64,
    pub phys: u64,
    pub ops: Vec<Op>,
}

const CACHE_SLOTS: usize = 1 << 13;

/// Direct-mapped cache of decoded blocks, keyed by physical address.
#[derive(Debug)]
pub struct BlockCache {
    slots: Vec<Option<Arc<Block>>>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache { slots: vec![None; CACHE_SLOTS] }
    }
}

fn slot(phys: u64) -> usize {
    ((phys ^ (phys >> 13)) as usize) & (CACHE_SLOTS - 1)
}

impl BlockCache {
    pub fn get(&self, phys: u64, lin: u64) -> Option<&Arc<Block>> {
        self.slots[slot(phys)].as_ref().filter(|b| b.phys == phys && b.lin == lin)
    }

    pub fn insert(&mut self, block: Arc<Block>) {
        let i = slot(block.phys);
        self.slots[i] = Some(block);
    }

    /// Drops every block decoded from physical page `page`.
    pub fn invalidate_page(&mut self, page: u64) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|b| b.phys / PAGE == page) {
                *s = None;
            }
        }
    }
}

/// How a device interrupt reaches the vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// A fixed MSI: destination APIC ID, vector.
    Msi { dest: u8, vector: u8 },
    /// Interrupt remapping in posted mode: `vector` into the descriptor at
    /// host-physical `descriptor`.
    Post { descriptor: u64, vector: u8 },
    /// A device's message `index` (its interrupt-remapping entry) from
    /// requester `source`, looked up in the interrupt-remapping table when
    /// it arrives.
    Remapped { source: SourceId, index: u16 },
    /// A deadline the VMM set: the run call returns so its devices can work.
    WakeVmm,
}

/// Guest RAM and the state the vCPUs share.
pub struct Shared {
    /// Guest RAM as the VMM's devices see it.
    pub memory: GuestMemoryMmap,
    /// Its one region, for the CPU's accesses.
    ram: Arc<GuestRegionMmap>,
    ram_len: u64,
    /// One bit per RAM page: a cached block was decoded from it.
    code_pages: Vec<u64>,
    pub cache: BlockCache,
    /// A write hit a page holding decoded code: the running block is stale.
    pub code_written: bool,
    /// MSIs signalled from outside: (destination APIC ID, vector).
    pub msi: Vec<(u8, u8)>,
    /// Interrupts a device scheduled for a moment of guest time: (virtual
    /// ns, order of signalling, what), earliest first.
    pub timed: BinaryHeap<Reverse<(u64, u64, Signal)>>,
    pub timed_seq: u64,
    /// Host memory the VMM allocated, at [`HOST_BASE`].
    pub host: Vec<u8>,
    /// The IOMMU, once the VMM has programmed it.
    pub iommu: Option<Iommu>,
    pub assigned: Vec<Assigned>,
}

impl Shared {
    pub fn new(size: usize) -> Result<Shared, HvError> {
        let pages = size.div_ceil(PAGE as usize);
        let failed = |e: vm_memory::mmap::FromRangesError| HvError::Backend(format!("guest RAM mapping: {e}"));
        let ram = Arc::new(GuestRegionMmap::from_range(GuestAddress(0), size, None).map_err(failed)?);
        let memory = GuestMemoryMmap::from_arc_regions(vec![ram.clone()])
            .map_err(|e| HvError::Backend(format!("guest RAM mapping: {e}")))?;
        Ok(Shared {
            memory,
            ram,
            ram_len: size as u64,
            code_pages: vec![0; pages.div_ceil(64)],
            cache: BlockCache::default(),
            code_written: false,
            msi: Vec::new(),
            timed: BinaryHeap::new(),
            timed_seq: 0,
            host: Vec::new(),
            iommu: None,
            assigned: Vec::new(),
        })
    }

    /// Bytes of guest RAM.
    #[inline(always)]
    pub fn ram_len(&self) -> u64 {
        self.ram_len
    }

    pub fn mark_code(&mut self, phys: u64) {
        let p = (phys / PAGE) as usize;
        if let Some(w) = self.code_pages.get_mut(p / 64) {
            *w |= 1 << (p % 64);
        }
    }

    /// Called on every RAM write: invalidates decoded code on the page.
    #[inline(always)]
    pub fn note_write(&mut self, phys: u64) {
        let p = (phys / PAGE) as usize;
        if let Some(w) = self.code_pages.get_mut(p / 64) {
            if *w & (1 << (p % 64)) != 0 {
                *w &= !(1 << (p % 64));
                self.cache.invalidate_page(p as u64);
                self.code_written = true;
            }
        }
    }

    /// Queues `signal` for `at_ns` of guest time, after anything already
    /// queued for the same moment.
    pub fn schedule(&mut self, at_ns: u64, signal: Signal) {
        let seq = self.timed_seq;
        self.timed_seq += 1;
        self.timed.push(Reverse((at_ns, seq, signal)));
    }

    /// `len` bytes of host memory at host-physical `hpa`.
    pub fn host_mut(&mut self, hpa: u64, len: usize) -> Option<&mut [u8]> {
        let at = usize::try_from(hpa.checked_sub(HOST_BASE)?).ok()?;
        self.host.get_mut(at..at.checked_add(len)?)
    }

    /// Posts `vector` into the descriptor at `descriptor`: `Some((NDST,
    /// NV))` when that vCPU must now be notified, `None` when an
    /// outstanding notification covers it or notifications are suppressed.
    pub fn post(&mut self, descriptor: u64, vector: u8) -> Result<Option<(u8, u8)>, HvError> {
        self.update_descriptor(descriptor, |d| d.post(vector).then_some((d.ndst, d.nv)))
    }

    /// Posted-interrupt processing on the CPU side: clears ON and takes the
    /// requested vectors out of the descriptor.
    pub fn take_posted(&mut self, descriptor: u64) -> Result<Vec<u8>, HvError> {
        self.update_descriptor(descriptor, posted::Descriptor::take)
    }

    /// Read-modify-write of the descriptor at `hpa` (a locked operation on
    /// hardware); Err when it is not in host memory.
    fn update_descriptor<T>(&mut self, hpa: u64, f: impl FnOnce(&mut posted::Descriptor) -> T) -> Result<T, HvError> {
        let bad = HvError::BadAddress { gpa: hpa, len: posted::SIZE };
        let bytes: &mut [u8; posted::SIZE] = self.host_mut(hpa, posted::SIZE).ok_or(bad)?.try_into().expect("64 bytes");
        let mut d = posted::Descriptor::from_bytes(bytes);
        let out = f(&mut d);
        *bytes = d.to_bytes();
        Ok(out)
    }

    /// The 8 bytes at host-physical `hpa`, in RAM or host memory.
    pub fn read_hpa(&self, hpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        if hpa < HOST_BASE {
            return self.read(hpa, &mut b).then(|| u64::from_le_bytes(b));
        }
        let at = usize::try_from(hpa - HOST_BASE).ok()?;
        Some(u64::from_le_bytes(self.host.get(at..at.checked_add(8)?)?.try_into().ok()?))
    }

    /// Writes 8 bytes at host-physical `hpa`; `false` outside memory.
    pub fn write_hpa(&mut self, hpa: u64, v: u64) -> bool {
        if hpa < HOST_BASE {
            return self.write(hpa, &v.to_le_bytes());
        }
        match self.host_mut(hpa, 8) {
            Some(b) => {
                b.copy_from_slice(&v.to_le_bytes());
                true
            }
            None => false,
        }
    }

    /// Copies guest memory out; `false` if the range leaves RAM.
    #[inline(always)]
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        self.ram.read_slice(out, MemoryRegionAddress(gpa)).is_ok()
    }

    /// Copies into guest memory; `false` if the range leaves RAM.
    #[inline(always)]
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if self.ram.write_slice(data, MemoryRegionAddress(gpa)).is_err() {
            return false;
        }
        let end = gpa + data.len() as u64;
        let mut p = gpa & !(PAGE - 1);
        while p < end {
            self.note_write(p);
            p += PAGE;
        }
        true
    }
}

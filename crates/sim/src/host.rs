//! Host memory: what the VMM allocates for the hardware's structures (EPT
//! and VT-d tables, posted-interrupt descriptors, the PML log), at
//! host-physical [`HOST_BASE`] and up. Below it, host-physical equals
//! guest-physical for RAM.

use exitlab_arch::posted;
use exitlab_hv::HvError;

/// Where host memory starts in the host-physical address space.
pub const HOST_BASE: u64 = 1 << 44;

/// The most host memory the VMM may allocate.
const LIMIT: usize = 1 << 30;

/// Host memory, grown a page at a time by the VMM.
#[derive(Debug, Default)]
pub struct HostMemory {
    bytes: Vec<u8>,
}

impl HostMemory {
    /// `pages` more zeroed pages; returns the host-physical address of the
    /// first.
    pub fn alloc(&mut self, pages: usize) -> Result<u64, HvError> {
        let at = self.bytes.len();
        let bytes = pages.checked_mul(crate::ram::PAGE as usize).filter(|&b| at + b <= LIMIT);
        let Some(bytes) = bytes else {
            return Err(HvError::Backend(format!(
                "{pages} more host pages would pass the simulator's 1 GiB of host memory"
            )));
        };
        self.bytes.resize(at + bytes, 0);
        Ok(HOST_BASE + at as u64)
    }

    /// `len` bytes at host-physical `hpa`, if all of them are host memory.
    pub fn slice(&self, hpa: u64, len: usize) -> Option<&[u8]> {
        let at = usize::try_from(hpa.checked_sub(HOST_BASE)?).ok()?;
        self.bytes.get(at..at.checked_add(len)?)
    }

    pub fn slice_mut(&mut self, hpa: u64, len: usize) -> Option<&mut [u8]> {
        let at = usize::try_from(hpa.checked_sub(HOST_BASE)?).ok()?;
        self.bytes.get_mut(at..at.checked_add(len)?)
    }

    /// The 8 bytes at `hpa`.
    pub fn read_u64(&self, hpa: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.slice(hpa, 8)?.try_into().ok()?))
    }

    /// Writes 8 bytes at `hpa`; `false` outside host memory.
    pub fn write_u64(&mut self, hpa: u64, v: u64) -> bool {
        match self.slice_mut(hpa, 8) {
            Some(b) => {
                b.copy_from_slice(&v.to_le_bytes());
                true
            }
            None => false,
        }
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
        let bytes: &mut [u8; posted::SIZE] =
            self.slice_mut(hpa, posted::SIZE).ok_or(bad)?.try_into().expect("64 bytes");
        let mut d = posted::Descriptor::from_bytes(bytes);
        let out = f(&mut d);
        *bytes = d.to_bytes();
        Ok(out)
    }
}

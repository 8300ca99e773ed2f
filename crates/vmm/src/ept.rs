//! The EPT the VMM builds for hardware that has it: 4-level tables in host
//! memory, in the SDM's entry format (Vol. 3C 29.3.2), with RAM mapped 1:1
//! and writable-executable, device MMIO ranges misconfigured (writable but
//! not readable, so every access is an EPT_MISCONFIG exit, as KVM marks
//! MMIO), and per-range policies that take read, write or execute away
//! (E6 isolation, E7 write monitoring).

use crate::error::VmmError;
use exitlab_arch::bits::ept;
use exitlab_arch::vmx::{EPTP_AD, EPTP_WB_4LEVEL};
use exitlab_hv::{HvError, VmxVm};

const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;

/// Read, write and execute permission bits of an EPT entry.
pub const RWX: u64 = ept::R | ept::W | ept::X;

/// The VMM's EPT.
#[derive(Debug)]
pub struct Ept {
    pml4: u64,
}

fn entry<M: VmxVm + ?Sized>(vm: &M, hpa: u64) -> Result<u64, VmmError> {
    let mut b = [0u8; 8];
    vm.read_host(hpa, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn set_entry<M: VmxVm + ?Sized>(vm: &M, hpa: u64, e: u64) -> Result<(), VmmError> {
    vm.write_host(hpa, &e.to_le_bytes()).map_err(VmmError::from)
}

impl Ept {
    /// An EPT with nothing mapped.
    pub fn new<M: VmxVm + ?Sized>(vm: &mut M) -> Result<Ept, VmmError> {
        Ok(Ept { pml4: vm.alloc_host_pages(1)? })
    }

    /// The EPT pointer to load: write-back, 4-level, A/D flags on.
    pub fn eptp(&self) -> u64 {
        self.pml4 | EPTP_WB_4LEVEL | EPTP_AD
    }

    /// The table one level below entry `at`, created if missing; a 2 MiB
    /// leaf there is split into 512 4 KiB leaves with its permissions.
    fn next_table<M: VmxVm + ?Sized>(&self, vm: &mut M, at: u64, level: u32) -> Result<u64, VmmError> {
        let e = entry(vm, at)?;
        if e & RWX != 0 && e & ept::LARGE == 0 {
            return Ok(e & ept::ADDR_MASK);
        }
        let table = vm.alloc_host_pages(1)?;
        if e & ept::LARGE != 0 && level == 2 {
            let base = e & ept::ADDR_MASK;
            let flags = e & !(ept::ADDR_MASK | ept::LARGE);
            for i in 0..512 {
                set_entry(vm, table + i * 8, (base + i * PAGE) | flags)?;
            }
        }
        set_entry(vm, at, table | RWX)?;
        Ok(table)
    }

    /// Sets the leaf for `gpa` at 4 KiB (`large` false) or 2 MiB.
    fn set_leaf<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64, value: u64, large: bool) -> Result<(), VmmError> {
        let mut table = self.pml4;
        let bottom = if large { 2 } else { 1 };
        for level in (bottom + 1..=4).rev() {
            let at = table + ((gpa >> (12 + 9 * (level - 1))) & 511) * 8;
            table = self.next_table(vm, at, level)?;
        }
        let at = table + ((gpa >> (12 + 9 * (bottom - 1))) & 511) * 8;
        set_entry(vm, at, value | if large { ept::LARGE } else { 0 })
    }

    /// The top-level table: what an IOMMU context entry points at when
    /// these tables serve as second-level DMA tables.
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// Maps `len` bytes of guest-physical memory at `gpa` to the same
    /// host-physical addresses with `perms`, write-back, in 2 MiB leaves
    /// where aligned.
    pub fn map_identity<M: VmxVm + ?Sized>(
        &mut self,
        vm: &mut M,
        gpa: u64,
        len: u64,
        perms: u64,
    ) -> Result<(), VmmError> {
        self.map(vm, gpa, gpa, len, perms | ept::MEMTYPE_WB)
    }

    /// Maps a device's registers at `gpa` to host-physical `hpa`,
    /// readable and writable, uncacheable (memory type 0).
    pub fn map_device<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64, hpa: u64, len: u64) -> Result<(), VmmError> {
        self.map(vm, gpa, hpa, len, ept::R | ept::W)
    }

    /// Maps `len` bytes at `gpa` to `hpa` with leaf `flags`, in 2 MiB leaves
    /// where both sides are aligned.
    fn map<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64, hpa: u64, len: u64, flags: u64) -> Result<(), VmmError> {
        let end = gpa.checked_add(len).ok_or_else(|| HvError::Backend("EPT range wraps".into()))?;
        let (mut at, mut to) = (gpa, hpa);
        while at < end {
            let large = at.is_multiple_of(LARGE) && to.is_multiple_of(LARGE) && end - at >= LARGE;
            self.set_leaf(vm, at, to | flags, large)?;
            let step = if large { LARGE } else { PAGE };
            at += step;
            to += step;
        }
        Ok(())
    }

    /// Marks `len` bytes at `gpa` as MMIO: writable-not-readable leaves,
    /// which the CPU reports as EPT_MISCONFIG on any access.
    pub fn mark_mmio<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64, len: u64) -> Result<(), VmmError> {
        let mut at = gpa & !(PAGE - 1);
        while at < gpa + len {
            self.set_leaf(vm, at, at | ept::W, false)?;
            at += PAGE;
        }
        Ok(())
    }

    /// Sets the permissions of the RAM pages in `gpa..gpa+len` (4 KiB
    /// granularity; a 2 MiB leaf is split). The caller must INVEPT.
    pub fn protect<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64, len: u64, perms: u64) -> Result<(), VmmError> {
        let mut at = gpa & !(PAGE - 1);
        while at < gpa + len {
            self.set_leaf(vm, at, at | (perms & RWX) | ept::MEMTYPE_WB, false)?;
            at += PAGE;
        }
        Ok(())
    }

    /// Clears the dirty flag of the leaf mapping `gpa` (a PML harvest).
    pub fn clear_dirty<M: VmxVm + ?Sized>(&mut self, vm: &mut M, gpa: u64) -> Result<(), VmmError> {
        let mut table = self.pml4;
        for level in (1..=4u32).rev() {
            let at = table + ((gpa >> (12 + 9 * (level - 1))) & 511) * 8;
            let e = entry(vm, at)?;
            if e & RWX == 0 {
                return Ok(());
            }
            if level == 1 || e & ept::LARGE != 0 {
                return set_entry(vm, at, e & !ept::D);
            }
            table = e & ept::ADDR_MASK;
        }
        Ok(())
    }

    /// The leaf entry for `gpa`, if mapped (for tests and PML harvesting).
    pub fn leaf<M: VmxVm + ?Sized>(&self, vm: &M, gpa: u64) -> Result<Option<u64>, VmmError> {
        let mut table = self.pml4;
        for level in (1..=4u32).rev() {
            let e = entry(vm, table + ((gpa >> (12 + 9 * (level - 1))) & 511) * 8)?;
            if e & RWX == 0 {
                return Ok(None);
            }
            if level == 1 || e & ept::LARGE != 0 {
                return Ok(Some(e));
            }
            table = e & ept::ADDR_MASK;
        }
        Ok(None)
    }
}

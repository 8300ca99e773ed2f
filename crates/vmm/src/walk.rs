//! The VMM's software walk of the guest's 4-level page tables: what the
//! shadow-paging fault handler and the instruction emulator both need.
//! Each walk is one unit of `HandlerWork::page_walks`.

use crate::error::VmmError;
use exitlab_arch::bits::pte;
use exitlab_hv::Vm;

/// A completed translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The guest-physical address of the linear address walked.
    pub gpa: u64,
    /// Permissions over every level.
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
    /// The entries read, top level first: (guest-physical address, value).
    pub entries: Vec<(u64, u64)>,
    /// log2 of the page size (12, 21 or 30).
    pub page_shift: u32,
}

/// Walks `linear` from `cr3`; `Ok(None)` when a level is not present.
pub fn walk<V: Vm>(vm: &V, cr3: u64, nxe: bool, linear: u64) -> Result<Option<Walk>, VmmError> {
    let mut table = cr3 & pte::ADDR_MASK;
    let mut w =
        Walk { gpa: 0, writable: true, user: true, executable: true, entries: Vec::with_capacity(4), page_shift: 12 };
    for level in (1..=4u32).rev() {
        let shift = 12 + 9 * (level - 1);
        let addr = table + ((linear >> shift) & 511) * 8;
        let mut b = [0u8; 8];
        if vm.read_memory(addr, &mut b).is_err() {
            return Ok(None);
        }
        let e = u64::from_le_bytes(b);
        if e & pte::P == 0 {
            return Ok(None);
        }
        w.writable &= e & pte::RW != 0;
        w.user &= e & pte::US != 0;
        w.executable &= !(nxe && e & pte::NX != 0);
        w.entries.push((addr, e));
        if level == 1 || (level <= 3 && e & pte::PS != 0) {
            let mask = (1u64 << shift) - 1;
            w.gpa = (e & pte::ADDR_MASK & !mask) | (linear & mask);
            w.page_shift = shift;
            return Ok(Some(w));
        }
        table = e & pte::ADDR_MASK;
    }
    Ok(None)
}

//! The VMM's software walk of the guest's page tables in whatever paging
//! mode the guest is in (SDM Vol. 3A ch. 4): none, 32-bit (4 MiB pages
//! with CR4.PSE), PAE, 4-level. The shadow-paging fault handler and the
//! instruction emulator both need it. Each walk is one unit of
//! `HandlerWork::page_walks`.

use crate::error::VmmError;
use exitlab_arch::bits::{cr0, cr4, efer, msr, pte};
use exitlab_hv::{Vm, VmxVcpu};

/// The guest's paging registers, as a walk needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPaging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl GuestPaging {
    /// The vCPU's current paging registers.
    pub fn of<C: VmxVcpu + ?Sized>(vcpu: &mut C) -> Result<GuestPaging, VmmError> {
        Ok(GuestPaging {
            cr0: vcpu.read_cr(0)?,
            cr3: vcpu.read_cr(3)?,
            cr4: vcpu.read_cr(4)?,
            efer: vcpu.read_msr(msr::IA32_EFER)?.unwrap_or(0),
        })
    }
}

/// A completed translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The guest-physical address of the linear address walked.
    pub gpa: u64,
    /// Permissions over every level.
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
    /// The entries read, top level first: (guest-physical address, value);
    /// none without paging. PAE's PDPTEs are not among them (they have no
    /// accessed bit).
    pub entries: Vec<(u64, u64)>,
    /// The size of each entry: 8, or 4 in 32-bit paging.
    pub entry_size: usize,
    /// log2 of the page size (12, 21, 22 or 30).
    pub page_shift: u32,
}

/// Walks `linear` in `p`'s paging mode; `Ok(None)` when a level is not
/// present. PAE's PDPTEs are read from memory at CR3 (hardware holds them
/// in registers loaded with CR3; a guest that edits them without reloading
/// CR3 sees the difference).
pub fn walk<V: Vm>(vm: &V, p: &GuestPaging, linear: u64) -> Result<Option<Walk>, VmmError> {
    let mut w = Walk {
        gpa: linear,
        writable: true,
        user: true,
        executable: true,
        entries: Vec::with_capacity(4),
        entry_size: 8,
        page_shift: 12,
    };
    if p.cr0 & cr0::PG == 0 {
        return Ok(Some(w));
    }
    let read = |addr: u64, size: usize| -> Option<u64> {
        let mut b = [0u8; 8];
        vm.read_memory(addr, &mut b[..size]).ok().map(|_| u64::from_le_bytes(b))
    };
    let (mut table, levels, wide) = if p.efer & efer::LMA != 0 {
        (p.cr3 & pte::ADDR_MASK, 4, true)
    } else if p.cr4 & cr4::PAE != 0 {
        let Some(e) = read((p.cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8, 8) else { return Ok(None) };
        if e & pte::P == 0 {
            return Ok(None);
        }
        (e & pte::ADDR_MASK, 2, true)
    } else {
        (p.cr3 & 0xffff_f000, 2, false)
    };
    let nxe = wide && p.efer & efer::NXE != 0;
    let pse = p.cr4 & cr4::PSE != 0;
    w.entry_size = if wide { 8 } else { 4 };
    for level in (1..=levels).rev() {
        let shift = if wide { 12 + 9 * (level - 1) } else { 12 + 10 * (level - 1) };
        let index = (linear >> shift) & if wide { 511 } else { 1023 };
        let addr = table + index * w.entry_size as u64;
        let Some(e) = read(addr, w.entry_size) else { return Ok(None) };
        if e & pte::P == 0 {
            return Ok(None);
        }
        w.writable &= e & pte::RW != 0;
        w.user &= e & pte::US != 0;
        w.executable &= !(nxe && e & pte::NX != 0);
        w.entries.push((addr, e));
        let leaf = level == 1 || (e & pte::PS != 0 && if wide { level <= 3 } else { pse });
        if leaf {
            let mask = (1u64 << shift) - 1;
            let frame = if wide || level == 1 {
                e & pte::ADDR_MASK & !mask
            } else {
                (e & 0xffc0_0000) | ((e >> 13) & 0xff) << 32
            };
            w.gpa = frame | (linear & mask);
            w.page_shift = shift;
            return Ok(Some(w));
        }
        table = if wide { e & pte::ADDR_MASK } else { e & 0xffff_f000 };
    }
    Ok(None)
}

//! Shadow paging, for hardware without EPT (the `legacy` profile): the MMU
//! translates through the VMM's shadow page table, filled lazily from the
//! guest's own tables in whatever paging mode the guest is in (identity
//! without paging, 32-bit, PAE or 4-level; `crate::walk`). Turning paging
//! on or off and changing CR4.PAE, PSE or PGE change what every entry
//! means, so those CR0 and CR4 bits are the VMM's (the guest/host masks)
//! and their writes exit and drop the shadow, as KVM's shadow MMU does.
//!
//! Coherence is by re-walk on fault, not by write-protecting guest page
//! tables: a #PF the shadow cannot satisfy exits (the exception bitmap has
//! #PF), the VMM walks the guest's tables in software and either installs
//! the translation (a hidden fault; the guest never sees it) or reflects
//! the #PF into the guest with the error code the guest's tables give. A
//! guest that edits its page tables must INVLPG or reload CR3, as the
//! architecture requires of it anyway; both exit and drop shadow entries.
//! Shadow entries are read-only until the first write, so the guest's
//! dirty bits stay exact.

use crate::error::VmmError;
use crate::walk::{walk, GuestPaging};
use exitlab_arch::bits::{cr0, pf_error, pte};
use exitlab_hv::{Injection, ShadowFlags, Vm, VmxVcpu};

/// What the VMM did with a #PF exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultResolution {
    /// The shadow lacked a translation the guest's tables allow: installed.
    Hidden,
    /// The guest's own tables fault: reflected into the guest.
    Guest,
}

/// Handles a #PF exit at `linear` with the hardware's `error_code`.
pub fn page_fault<V: Vm, C: VmxVcpu + ?Sized>(
    vm: &V,
    vcpu: &mut C,
    linear: u64,
    error_code: u32,
) -> Result<FaultResolution, VmmError> {
    let write = u64::from(error_code) & pf_error::W != 0;
    let user = u64::from(error_code) & pf_error::U != 0;
    let fetch = u64::from(error_code) & pf_error::I != 0;
    let paging = GuestPaging::of(vcpu)?;
    let reflect = |vcpu: &mut C, present: bool| -> Result<FaultResolution, VmmError> {
        let mut code = u64::from(error_code) & (pf_error::W | pf_error::U | pf_error::I);
        if present {
            code |= pf_error::P;
        }
        let mut inj = Injection::exception(exitlab_arch::vector::PF, Some(code as u32));
        inj.cr2 = Some(linear);
        vcpu.inject(inj)?;
        Ok(FaultResolution::Guest)
    };
    let Some(w) = walk(vm, &paging, linear)? else { return reflect(vcpu, false) };
    let denied =
        (user && !w.user) || (write && !w.writable && (user || paging.cr0 & cr0::WP != 0)) || (fetch && !w.executable);
    if denied {
        return reflect(vcpu, true);
    }
    // The hardware would set A on every level and D on a written leaf;
    // the VMM does it for the guest's tables (none without paging).
    let last = w.entries.len().saturating_sub(1);
    for (i, (addr, e)) in w.entries.iter().enumerate() {
        let mut set = pte::A;
        if i == last && write {
            set |= pte::D;
        }
        if e & set != set {
            vm.write_memory(*addr, &(e | set).to_le_bytes()[..w.entry_size])?;
        }
    }
    let dirty = write || w.entries.last().is_none_or(|(_, e)| e & pte::D != 0);
    let flags = ShadowFlags { writable: w.writable && dirty, user: w.user, executable: w.executable };
    vcpu.shadow_map(linear & !0xfff, w.gpa & !0xfff, flags)?;
    Ok(FaultResolution::Hidden)
}

//! Which VMX controls the VMM sets, from what the hardware offers: the
//! choices KVM makes. With EPT the guest owns its paging outright; without
//! it, CR3 accesses, INVLPG and #PF exit so the VMM can shadow the guest's
//! tables (see `shadow`), and so do the CR0 and CR4 bits that change the
//! paging mode.

use exitlab_arch::bits::{cr0, cr4};
use exitlab_arch::vector;
use exitlab_arch::vmx::{exception_bit, Controls};
use exitlab_arch::BootState;
use exitlab_hv::Capabilities;

/// The CR0 and CR4 bits shadow paging owns: paging on or off, and the
/// entry formats and global pages (KVM's shadow MMU keeps the same).
pub const SHADOW_CR0: u64 = cr0::PG;
pub const SHADOW_CR4: u64 = cr4::PAE | cr4::PSE | cr4::PGE;

/// The controls for hardware with `caps`, for a guest starting in `boot`
/// (whose CR0 and CR4 the read shadows start with).
pub fn controls(caps: &Capabilities, boot: &BootState) -> Controls {
    let shadow = !caps.ept;
    let (cr0_mask, cr4_mask) = if shadow { (SHADOW_CR0, SHADOW_CR4) } else { (0, 0) };
    Controls {
        hlt_exiting: true,
        unconditional_io_exiting: true,
        enable_ept: caps.ept,
        enable_vpid: caps.vpid,
        decode_assist: caps.decode_assist,
        apic_virtualization: caps.apicv,
        // Without posted interrupts every device interrupt exits and the VMM
        // injects it.
        external_interrupt_exiting: !caps.posted_interrupts,
        cr3_load_exiting: shadow,
        cr3_store_exiting: shadow,
        invlpg_exiting: shadow,
        exception_bitmap: if shadow { exception_bit(vector::PF) } else { 0 },
        cr0_mask,
        cr0_shadow: boot.cr0 & cr0_mask,
        cr4_mask,
        cr4_shadow: boot.cr4 & cr4_mask,
        ..Controls::default()
    }
}

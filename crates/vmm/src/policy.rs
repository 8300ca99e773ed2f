//! Which VMX controls the VMM sets, from what the hardware offers: the
//! choices KVM makes. With EPT the guest owns its paging outright; without
//! it, CR3 accesses, INVLPG and #PF exit so the VMM can shadow the guest's
//! tables (see `shadow`).

use exitlab_arch::vector;
use exitlab_arch::vmx::{exception_bit, Controls};
use exitlab_hv::Capabilities;

/// The controls for hardware with `caps`.
pub fn controls(caps: &Capabilities) -> Controls {
    let shadow = !caps.ept;
    Controls {
        hlt_exiting: true,
        unconditional_io_exiting: true,
        enable_ept: caps.ept,
        enable_vpid: caps.vpid,
        decode_assist: caps.decode_assist,
        apic_virtualization: caps.apicv,
        // Without posted interrupts every device interrupt exits and the VMM
        // injects it; NMIs too, with virtual NMIs so the CPU tracks their
        // blocking and NMI-window exits say when the guest can take one, as
        // KVM sets them. With APIC virtualization the simulated CPU's APIC
        // delivers NMIs itself.
        external_interrupt_exiting: !caps.posted_interrupts,
        nmi_exiting: !caps.posted_interrupts,
        virtual_nmis: !caps.posted_interrupts,
        cr3_load_exiting: shadow,
        cr3_store_exiting: shadow,
        invlpg_exiting: shadow,
        exception_bitmap: if shadow { exception_bit(vector::PF) } else { 0 },
        ..Controls::default()
    }
}

//! MMIO: accesses the CPU decoded (KVM's KVM_EXIT_MMIO, the simulator with
//! a decode assist) go straight to the device; the rest (an EPT exit with
//! only an address, an APIC_ACCESS, a blocked access to isolated memory)
//! are completed by emulating the instruction at RIP against the MMIO bus
//! and the vCPU's local APIC (`crate::emulate`).

use super::{Flow, Handling};
use crate::account::Target;
use crate::bus::{Bus, DeviceCtx};
use crate::error::VmmError;
use crate::report::{Access, GuestError, Outcome};
use crate::state::Vmm;
use exitlab_arch::ExitReason;
use exitlab_hv::{MmioExit, Vcpu, Vm, VmxVcpu};

/// The region name of the local-APIC page.
const LOCAL_APIC: &str = "local-apic";
/// The name of an address no device claims.
pub(super) const UNASSIGNED: &str = "unassigned";

/// An access the CPU decoded.
pub(super) fn access<V: Vm>(vmm: &mut Vmm<'_, V>, access: &MmioExit, h: &mut Handling) -> Result<Flow, VmmError> {
    let vcpu = &mut vmm.vcpu;
    let (target, data) = vmm.platform.with(&*vmm.vm, h.now_ns, |_, mmio, ctx| to_device(mmio, vcpu, access, ctx));
    h.target = target;
    h.access = Access::Mmio { gpa: access.gpa, size: access.size, is_write: access.is_write, data };
    Ok(Flow::Resume)
}

/// Routes an MMIO access; unassigned addresses read as all ones and drop
/// writes, as an unclaimed PCI/memory transaction does. Returns where it
/// went and the value transferred.
fn to_device<C: Vcpu>(bus: &mut Bus, vcpu: &mut C, access: &MmioExit, ctx: &mut DeviceCtx<'_>) -> (Target, u64) {
    let size = usize::from(access.size).clamp(1, 8);
    let hit = bus.find(access.gpa);
    let region = hit.map_or(UNASSIGNED, |h| bus.name(h.slot));
    if access.is_write {
        if let Some(h) = hit {
            bus.write(h, &access.data.to_le_bytes()[..size], ctx);
        }
        return (Target::Mmio { region }, access.data);
    }
    let mut data = [0xffu8; 8];
    if let Some(h) = hit {
        bus.read(h, &mut data[..size], ctx);
    }
    vcpu.complete_read(&data[..size]);
    let mut v = [0u8; 8];
    v[..size].copy_from_slice(&data[..size]);
    (Target::Mmio { region }, u64::from_le_bytes(v))
}

/// An access to the local-APIC page (no APIC virtualization): emulated
/// against the vCPU's APIC. An EOI there is also the APIC's EOI message
/// to the PC's IOAPIC, where the VMM models it: the vector in service
/// (the highest ISR bit, read before the EOI clears it) goes to the
/// IOAPIC, whose level entries of that vector may deliver again.
pub(super) fn apic_access<V: Vm>(
    vmm: &mut Vmm<'_, V>,
    offset: u16,
    write: bool,
    h: &mut Handling,
) -> Result<Flow, VmmError> {
    let modelled = vmm.platform.pc.as_ref().is_some_and(|pc| pc.handles.chip.is_some());
    let eoi = write && modelled && u64::from(offset & 0xff0) == exitlab_arch::bits::apic::EOI;
    let vector = if eoi { in_service(vmm.vmx_vcpu(ExitReason::ApicAccess)?)? } else { None };
    let flow = emulate(vmm, ExitReason::ApicAccess, h)?;
    if let (Some(v), Flow::Resume) = (vector, &flow) {
        vmm.platform.eoi(&*vmm.vm, v, h.now_ns);
    }
    Ok(flow)
}

/// The highest vector in the local APIC's in-service register.
fn in_service(vcpu: &mut dyn exitlab_hv::VmxVcpu) -> Result<Option<u8>, VmmError> {
    for i in (0..8u16).rev() {
        let isr = vcpu.apic_read(0x100 + 0x10 * i)?;
        if isr != 0 {
            return Ok(Some((i * 32 + 31 - isr.leading_zeros() as u16) as u8));
        }
    }
    Ok(None)
}

/// Completes the instruction at RIP, whose memory access exited (`exit`),
/// by emulation against the MMIO bus (the local APIC, a device, the
/// isolating device); records where it went and the work it took.
pub(super) fn emulate<V: Vm>(vmm: &mut Vmm<'_, V>, exit: ExitReason, h: &mut Handling) -> Result<Flow, VmmError> {
    let vm = &*vmm.vm;
    let vcpu = vmm.vcpu.vmx().ok_or(VmmError::Missing { exit: Some(exit), extension: "VMX" })?;
    if let Some(ev) = vcpu.exit_info().idt_vectoring {
        // The CPU's own access while delivering an event (its IDT, GDT,
        // TSS or stack is MMIO): there is no instruction to emulate. KVM
        // stops the same way (KVM_INTERNAL_ERROR_DELIVERY_EV).
        let rip = vcpu.regs()?.rip;
        let why = format!("delivering vector {:#x} touched MMIO at {:#x}", ev.vector, exit_gpa(vcpu));
        return Ok(Flow::End(Outcome::GuestError(GuestError::NotEmulated { rip, why })));
    }
    let emulated =
        vmm.platform.with(vm, h.now_ns, |pio, mmio, ctx| crate::emulate::emulate_mmio(vm, vcpu, pio, mmio, ctx))?;
    match emulated {
        Ok(done) => {
            h.work = done.work;
            if let Some(ex) = done.fault {
                return super::events::reflect(vcpu, exitlab_hv::Injection::exception(ex.vector, ex.error_code));
            }
            if let Some(d) = done.device {
                let apic = d.gpa & !0xfff == exitlab_arch::bits::apic::DEFAULT_BASE;
                let mmio = &vmm.platform.mmio;
                let region = if apic { LOCAL_APIC } else { d.slot.map_or(UNASSIGNED, |s| mmio.name(s)) };
                h.target = Target::Mmio { region };
                h.access = Access::Mmio { gpa: d.gpa, size: d.size, is_write: d.is_write, data: d.data };
            }
            if done.mov_ss {
                super::events::mov_ss_blocking(vcpu)?;
            } else {
                super::events::single_step_trap(vcpu)?;
            }
            Ok(Flow::Resume)
        }
        Err(e) => {
            let rip = vcpu.regs()?.rip;
            Ok(Flow::End(Outcome::GuestError(GuestError::NotEmulated { rip, why: e.0 })))
        }
    }
}

/// The guest-physical address of the last exit, where it has one.
fn exit_gpa<C: VmxVcpu + ?Sized>(vcpu: &C) -> u64 {
    vcpu.exit_info().guest_physical.unwrap_or(0)
}

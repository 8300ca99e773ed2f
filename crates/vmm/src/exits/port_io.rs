//! IO_INSTRUCTION: the guest <-> VMM protocol ports (debug exit, report,
//! phase markers) and every other port, routed to the device on it.

use super::{Flow, Handling};
use crate::account::Target;
use crate::bus::{Bus, DeviceCtx};
use crate::error::VmmError;
use crate::report::{Access, GuestError, Outcome};
use crate::state::Vmm;
use exitlab_guest::layout::{self, Phase};
use exitlab_guest::MailboxReport;
use exitlab_hv::{IoExit, Vcpu, Vm};

/// What a port access carried, for the trace.
pub(super) fn access(io: &IoExit, data: u32) -> Access {
    Access::Port { port: io.qual.port, size: io.qual.size, is_in: io.qual.is_in, data }
}

/// A port access: the protocol ports end the run or mark a phase; any
/// other goes to its device. On the PC the debug-exit port is the
/// isa-debug-exit device's, which ends the run through the power latch.
pub(super) fn handle<V: Vm>(vmm: &mut Vmm<'_, V>, io: &IoExit, h: &mut Handling) -> Result<Flow, VmmError> {
    let protocol = |device| Target::Port { port: io.qual.port, device };
    let exitlab_machine = vmm.platform.pc.is_none();
    match (io.qual.port, io.qual.is_in) {
        (layout::PORT_DEBUG_EXIT, false) if exitlab_machine => {
            h.target = protocol("debug-exit");
            Ok(Flow::End(Outcome::Exited { status: io.data }))
        }
        (layout::PORT_REPORT, false) => {
            h.target = protocol("report");
            let mut b = [0u8; MailboxReport::SIZE];
            vmm.vm.read_memory(layout::MAILBOX, &mut b)?;
            Ok(Flow::End(Outcome::GuestError(GuestError::Exception(MailboxReport::from_bytes(&b)))))
        }
        (layout::PORT_MARKER, false) => match Phase::from_code(io.data) {
            Some(next) => {
                h.target = protocol("marker");
                Ok(Flow::Boundary(next))
            }
            None => {
                let e = GuestError::Protocol(format!("unknown phase marker {}", io.data));
                Ok(Flow::Abandon(Outcome::GuestError(e)))
            }
        },
        _ => {
            let vcpu = &mut vmm.vcpu;
            let (target, data) = vmm.platform.with(&*vmm.vm, h.now_ns, |pio, _, ctx| to_device(pio, vcpu, io, ctx));
            h.target = target;
            h.access = access(io, data);
            Ok(Flow::Resume)
        }
    }
}

/// Routes an IN/OUT (or a folded INS/OUTS) to the device on the port;
/// returns where it went and the (first) value transferred. A port with no
/// device reads all ones and drops writes.
fn to_device<C: Vcpu>(bus: &mut Bus, vcpu: &mut C, io: &IoExit, ctx: &mut DeviceCtx<'_>) -> (Target, u32) {
    let port = io.qual.port;
    let size = usize::from(io.qual.size).clamp(1, 4);
    let count = io.count.max(1) as usize;
    let hit = bus.find(u64::from(port));
    let device = hit.map_or(super::mmio::UNASSIGNED, |h| bus.name(h.slot));
    if io.qual.is_in {
        let mut data = vec![0xffu8; size * count];
        if let Some(h) = hit {
            for chunk in data.chunks_mut(size) {
                bus.read(h, chunk, ctx);
            }
        }
        vcpu.complete_read(&data);
        let mut first = [0u8; 4];
        first[..size].copy_from_slice(&data[..size]);
        return (Target::Port { port, device }, u32::from_le_bytes(first));
    }
    if let Some(h) = hit {
        if io.bulk.is_empty() {
            bus.write(h, &io.data.to_le_bytes()[..size], ctx);
        } else {
            for chunk in io.bulk.chunks(size) {
                bus.write(h, chunk, ctx);
            }
        }
    }
    (Target::Port { port, device }, io.data)
}

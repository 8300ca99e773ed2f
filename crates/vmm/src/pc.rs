//! The PC platform on the machine, for images that ask for it
//! (`platform = "pc"`): the models of `devices::pc_board` on the buses,
//! the ACPI tables at 0xe0000, where the models' interrupts go, and the
//! power latch the run loop reads after each exit.
//!
//! Who serves what depends on the backend, as it would for a VMM on it.
//! Where the VMM drives the hardware itself (the simulator) every PC
//! device is exitlab's model and every access an exit: ISA lines drive
//! the PIC pair and the IOAPIC, whose deliveries become MSIs, and the
//! PIC's INT becomes an external interrupt the VMM injects (an ExtINT
//! through the local APIC's LINT0). On a host-time backend (KVM) the PIC
//! pair, the IOAPIC, the local APIC and the PIT are the kernel's
//! (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2), as in QEMU and Firecracker, and
//! the lines of the VMM's own devices (the RTC, pc-testdev) reach them
//! through KVM_IRQ_LINE.

use crate::bus::{Bus, Device, DeviceCtx};
use crate::devices::acpi::{self, AcpiMachine, ACPI_BASE, ACPI_END};
use crate::devices::ioapic;
use crate::devices::irq_chip::{SharedIrqChip, EXTINT_MESSAGE};
use crate::devices::isa_irq::IrqSink;
use crate::devices::pc_board::{self, Chips, PcConfig, PcHandles};
use crate::devices::power::{PowerRequest, ResetSource};
use crate::error::VmmError;
use crate::report::Outcome;
use exitlab_hv::{IrqLineSetter, Msi, Vm};
use std::sync::{Arc, Mutex};

/// The RTC's time at device time 0 on a backend in virtual time: fixed, so
/// runs repeat (2023-11-14 22:13:20 UTC).
pub const FIXED_RTC_EPOCH: u64 = 1_700_000_000;

/// ISA lines into the host kernel's interrupt controllers: line n is GSI n
/// (the routing sends GSI 0 to IOAPIC pin 2, as the MADT says).
struct HostLines(IrqLineSetter);

impl IrqSink for HostLines {
    fn set_level(&mut self, line: u8, level: bool, _: &mut DeviceCtx<'_>) {
        // A line the kernel refuses changes nothing the guest could see
        // later either; the device's own counters still show the write.
        let _ = (self.0)(u32::from(line), level);
    }
}

/// Where an interrupt message a device raised goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// An MSI: an exitlab device's message k (the kernel's device vector
    /// + k), or an IOAPIC entry's delivery.
    Msi(Msi),
    /// The PIC pair's INT rose: an ExtINT for the vCPU to take.
    ExtInt,
    /// A message nothing delivers (a masked or reprogrammed entry).
    Nowhere,
}

/// The PC platform of one machine.
pub struct Pc {
    pub handles: PcHandles,
    /// Who serves each device (exitlab's model or the host kernel).
    pub served_by: Vec<(&'static str, &'static str)>,
}

impl Pc {
    /// Puts the PC's devices on `pio` and `mmio` for a guest with `memory`
    /// bytes of RAM: exitlab's models of everything, or, where the backend
    /// has the host kernel's (`vm.host()`), those of its PIC pair, IOAPIC
    /// and PIT. `share` wraps the models that keep time (see
    /// [`pc_board::install`]).
    pub fn install<V: Vm>(
        vm: &mut V,
        pio: &mut Bus,
        mmio: &mut Bus,
        share: &mut dyn FnMut(Box<dyn Device>) -> Box<dyn Device>,
    ) -> Result<Pc, VmmError> {
        let memory = vm.memory_size();
        let (chips, rtc_epoch) = match vm.host() {
            Some(host) => {
                let sink: Arc<Mutex<dyn IrqSink>> = Arc::new(Mutex::new(HostLines(host.in_kernel_pc()?)));
                (Chips::InKernel(sink), wall_clock_seconds())
            }
            None => (Chips::Models, FIXED_RTC_EPOCH),
        };
        let served_by = pc_board::served_by(&chips);
        let config = PcConfig { memory, cpus: 1, rtc_epoch };
        let handles = pc_board::install(pio, mmio, &config, chips, share)
            .map_err(|o| VmmError::Machine { key: "platform", message: format!("the PC's devices collide: {o}") })?;
        Ok(Pc { handles, served_by })
    }

    /// Where message `message` goes: below [`ioapic::MESSAGE_BASE`] an
    /// exitlab device's (the kernel's device vector + message), then the
    /// IOAPIC's entries, then the PIC's INT.
    pub fn route(&self, message: u16) -> Route {
        let chip = self.handles.chip.as_ref();
        match message {
            EXTINT_MESSAGE => Route::ExtInt,
            m if m >= ioapic::MESSAGE_BASE => {
                chip.and_then(|c| lock(c).ioapic.msi(m)).map_or(Route::Nowhere, Route::Msi)
            }
            m => Route::Msi(crate::platform::device_msi(m)),
        }
    }

    /// The INTA cycle, for an ExtINT the vCPU takes: the PIC's vector, or
    /// `None` when its INT has fallen since.
    pub fn acknowledge(&self) -> Option<u8> {
        let chip = self.handles.chip.as_ref()?;
        let mut c = lock(chip);
        c.pic.intr().then(|| c.pic.acknowledge())
    }

    /// Whether the PIC pair's INT is high.
    pub fn intr(&self) -> bool {
        self.handles.chip.as_ref().is_some_and(|c| lock(c).pic.intr())
    }

    /// A local APIC's EOI of `vector`, as the APIC broadcasts it to the
    /// IOAPIC: level entries of that vector may deliver again.
    pub fn eoi(&self, vector: u8, ctx: &mut DeviceCtx<'_>) {
        if let Some(chip) = &self.handles.chip {
            lock(chip).ioapic.eoi(vector, ctx);
        }
    }

    /// Whether an unmasked level-triggered IOAPIC entry needs the local
    /// APIC's EOIs (where the VMM models the IOAPIC).
    pub fn wants_eois(&self) -> bool {
        self.handles.chip.as_ref().is_some_and(|c| lock(c).ioapic.has_level_entries())
    }

    /// The run's end a device asked for, if any: isa-debug-exit's status,
    /// a reset or a power-off.
    pub fn power(&self) -> Option<Outcome> {
        Some(match self.handles.power.take()? {
            PowerRequest::Exit { status } => Outcome::DebugExit { code: status >> 1, status },
            PowerRequest::Reset(source) => Outcome::Reset { source },
            PowerRequest::PowerOff => Outcome::PowerOff,
        })
    }
}

fn lock(chip: &SharedIrqChip) -> std::sync::MutexGuard<'_, crate::devices::irq_chip::PcIrqChip> {
    chip.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since 1970 now, for the RTC of a machine in host time.
fn wall_clock_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(FIXED_RTC_EPOCH, |d| d.as_secs())
}

/// Writes the ACPI tables at 0xe0000, after checking that no chunk of the
/// image is there.
pub fn write_acpi<V: Vm>(vm: &V, chunks: &[exitlab_guest::boot::Chunk]) -> Result<(), VmmError> {
    let tables = acpi::build(&AcpiMachine::default());
    let end = tables.gpa + tables.bytes.len() as u64;
    debug_assert!(tables.gpa == ACPI_BASE && end <= ACPI_END);
    if let Some(c) = chunks.iter().find(|c| c.gpa < end && c.gpa + c.bytes.len() as u64 > tables.gpa) {
        return Err(VmmError::Machine {
            key: "platform",
            message: format!(
                "the image's {} bytes at {:#x} overlap the PC's ACPI tables at {:#x}-{end:#x}",
                c.bytes.len(),
                c.gpa,
                tables.gpa
            ),
        });
    }
    vm.write_memory(tables.gpa, &tables.bytes)?;
    Ok(())
}

/// How a reset path is named in reports.
pub fn reset_name(source: ResetSource) -> &'static str {
    match source {
        ResetSource::ResetControl => "reset control register 0xcf9",
        ResetSource::FastReset => "fast reset through port 0x92",
        ResetSource::Keyboard => "keyboard controller reset (0x64 <- 0xfe)",
    }
}

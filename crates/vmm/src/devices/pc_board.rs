//! The PC platform's models wired together the way phase 2 of the
//! loaders issue puts them on the machine's buses: [`install`] places each
//! at its port or address, connects the PIT's OUT0 (IRQ 0), the RTC (IRQ
//! 8) and pc-testdev's 24 lines to the PIC pair and IOAPIC, and hands the
//! reset paths, isa-debug-exit and the ACPI PM block one power latch. The
//! ACPI tables that describe it come from [`crate::devices::acpi::build`].
//! [`PcBoard`] is all of it as one device (ports at their numbers, MMIO
//! at its addresses) for hostile-driver tests and fuzzing.

use crate::bus::{Bus, Device, DeviceCtx, Overlap};
use crate::devices::acpi;
use crate::devices::acpi_pm::{AcpiPm, PM_BASE, PM_SIZE};
use crate::devices::debug_exit::{DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE};
use crate::devices::fw_cfg::{FwCfg, FwCfgMachine, FW_CFG_PORT, FW_CFG_SIZE};
use crate::devices::i8042::{self, I8042Port, I8042};
use crate::devices::ioapic::{IOAPIC_BASE, IOAPIC_SIZE};
use crate::devices::irq_chip::{ElcrPorts, IoapicMmio, PicPorts, SharedIrqChip};
use crate::devices::isa_irq::{IrqSink, IsaIrqLine, LINES};
use crate::devices::pci::{PciHost, PCI_IO_BASE, PCI_IO_SIZE};
use crate::devices::pic::Chip;
use crate::devices::pit::{Pit, PitPorts, PortB, SharedPit};
use crate::devices::power::PowerLatch;
use crate::devices::reset::{ResetControl, SystemControlA};
use crate::devices::rtc::Rtc;
use crate::devices::testdev::{
    TestdevIrq, TestdevMem, TestdevPorts, IOMEM_BASE, IOMEM_SIZE, IRQ_PORT, IRQ_PORTS, TESTDEV_PORT, TESTDEV_PORTS,
};
use std::sync::{Arc, Mutex};

/// Ports of the models that sit at one fixed place.
pub const PIC_MASTER: u64 = 0x20;
pub const PIC_SLAVE: u64 = 0xa0;
pub const ELCR: u64 = 0x4d0;
pub const PIT: u64 = 0x40;
pub const PORT_B: u64 = 0x61;
pub const RTC: u64 = 0x70;
pub const PORT_A: u64 = 0x92;
/// The ISA IRQs of the PIT and the RTC.
pub const PIT_IRQ: u8 = 0;
pub const RTC_IRQ: u8 = 8;

/// What the machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcConfig {
    pub memory: u64,
    pub cpus: u16,
    /// The RTC's time at device time 0, seconds since 1970.
    pub rtc_epoch: u64,
}

/// Where the PC's interrupt controllers and PIT are.
pub enum Chips {
    /// exitlab's models, on the buses (the simulator): the 8259 pair, the
    /// ELCR, the IOAPIC, the 8254 and port 0x61, every access an exit.
    Models,
    /// The host kernel's (KVM's in-kernel irqchip and PIT), outside the
    /// buses; the lines of the VMM's own devices (the RTC's IRQ 8,
    /// pc-testdev's 24) go to this sink instead.
    InKernel(Arc<Mutex<dyn IrqSink>>),
}

/// What the run loop keeps to act on the models: the interrupt chip (for
/// INTA and EOIs) and the PIT where they are models, and the power latch.
pub struct PcHandles {
    pub chip: Option<SharedIrqChip>,
    /// ISA IRQ 4, for COM1 (which the platform installs on every machine).
    pub com1_irq: IsaIrqLine,
    pub pit: Option<SharedPit>,
    pub power: PowerLatch,
}

/// Who serves each of the PC's devices: "model" (exitlab's, on the
/// buses) or the host kernel's, as the run's report shows it.
pub fn served_by(chips: &Chips) -> Vec<(&'static str, &'static str)> {
    let chip = match chips {
        Chips::Models => "exitlab model",
        Chips::InKernel(_) => "KVM in-kernel (KVM_CREATE_IRQCHIP)",
    };
    let pit = match chips {
        Chips::Models => "exitlab model",
        Chips::InKernel(_) => "KVM in-kernel (KVM_CREATE_PIT2)",
    };
    let lines = match chips {
        Chips::Models => "exitlab model (PIC pair and IOAPIC)",
        Chips::InKernel(_) => "KVM_IRQ_LINE into the in-kernel irqchip",
    };
    vec![
        ("8259 PIC pair, ELCR 0x4d0", chip),
        ("IOAPIC 0xfec00000", chip),
        ("local APIC", if matches!(chips, Chips::Models) { "the simulated CPU" } else { "KVM in-kernel" }),
        ("8254 PIT, port 0x61", pit),
        ("ISA IRQ lines (RTC, pc-testdev)", lines),
        ("MC146818 RTC 0x70", "exitlab model"),
        ("isa-debug-exit 0xf4", "exitlab model"),
        ("fw_cfg 0x510", "exitlab model"),
        ("PCI host 0xcf8, reset 0xcf9", "exitlab model"),
        ("port 0x92, i8042 0x60/0x64", "exitlab model"),
        ("ACPI PM 0x600, tables 0xe0000", "exitlab model"),
        ("pc-testdev 0xe0, 0x2000, 0xff000000", "exitlab model"),
        ("COM1 16550 0x3f8", "exitlab model (vm-superio)"),
    ]
}

/// Puts every PC model `chips` leaves to the VMM on `pio` and `mmio`.
/// `share` wraps the models that keep their own time (the PIT, the RTC),
/// so that a device thread can tick them on a host-time backend.
pub fn install(
    pio: &mut Bus,
    mmio: &mut Bus,
    c: &PcConfig,
    chips: Chips,
    share: &mut dyn FnMut(Box<dyn Device>) -> Box<dyn Device>,
) -> Result<PcHandles, Overlap> {
    let power = PowerLatch::default();
    let (sink, chip): (Arc<Mutex<dyn IrqSink>>, _) = match chips {
        Chips::Models => {
            let chip = SharedIrqChip::default();
            (chip.clone(), Some(chip))
        }
        Chips::InKernel(sink) => (sink, None),
    };
    let line = |n: u8| IsaIrqLine::new(sink.clone(), n);
    let kbc = Arc::new(Mutex::new(I8042::new(power.clone(), Some([line(i8042::KBD_IRQ), line(i8042::AUX_IRQ)]))));
    let fw = FwCfgMachine { ram_size: c.memory, cpus: c.cpus, max_ram: c.memory };
    let mut ports: Vec<(&'static str, u64, u64, Box<dyn Device>)> = vec![
        ("rtc", RTC, 2, share(Box::new(Rtc::new(c.rtc_epoch, Some(line(RTC_IRQ)))))),
        (
            "i8042-data",
            i8042::DATA_PORT.into(),
            1,
            Box::new(I8042Port { controller: kbc.clone(), port: i8042::Port::Data }),
        ),
        (
            "i8042-command",
            i8042::COMMAND_PORT.into(),
            1,
            Box::new(I8042Port { controller: kbc, port: i8042::Port::Command }),
        ),
        ("port-a", PORT_A, 1, Box::new(SystemControlA::new(power.clone()))),
        ("debug-exit", DEBUG_EXIT_PORT.into(), DEBUG_EXIT_SIZE, Box::new(DebugExit::new(power.clone()))),
        ("fw-cfg", FW_CFG_PORT.into(), FW_CFG_SIZE, Box::new(FwCfg::new(fw))),
        ("pci", PCI_IO_BASE.into(), PCI_IO_SIZE, Box::new(PciHost::new(ResetControl::new(power.clone())))),
        ("acpi-pm", PM_BASE.into(), PM_SIZE, Box::new(AcpiPm::new(power.clone(), Some(line(acpi::SCI_IRQ as u8))))),
        ("testdev", TESTDEV_PORT.into(), TESTDEV_PORTS, Box::<TestdevPorts>::default()),
        ("testdev-irq", IRQ_PORT.into(), IRQ_PORTS, Box::new(TestdevIrq::new((0..LINES).map(line).collect()))),
    ];
    let mut pit = None;
    if let Some(chip) = &chip {
        let shared: SharedPit = Arc::new(Mutex::new(Pit::new(Some(line(PIT_IRQ)))));
        ports.extend([
            (
                "pic-master",
                PIC_MASTER,
                2,
                Box::new(PicPorts { chip: chip.clone(), which: Chip::Master }) as Box<dyn Device>,
            ),
            ("pic-slave", PIC_SLAVE, 2, Box::new(PicPorts { chip: chip.clone(), which: Chip::Slave })),
            ("elcr", ELCR, 2, Box::new(ElcrPorts(chip.clone()))),
            ("pit", PIT, 4, share(Box::new(PitPorts(shared.clone())))),
            ("port-b", PORT_B, 1, Box::new(PortB(shared.clone()))),
        ]);
        mmio.insert("ioapic", IOAPIC_BASE, IOAPIC_SIZE, Box::new(IoapicMmio(chip.clone())))?;
        pit = Some(shared);
    }
    for (name, base, len, device) in ports {
        pio.insert(name, base, len, device)?;
    }
    mmio.insert("testdev-iomem", IOMEM_BASE, IOMEM_SIZE as u64, Box::<TestdevMem>::default())?;
    Ok(PcHandles { chip, pit, power, com1_irq: line(crate::devices::serial::COM1_IRQ) })
}

/// Every model as one device: offsets below 0x10000 are ports, the rest
/// guest-physical addresses.
pub struct PcBoard {
    pub pio: Bus,
    pub mmio: Bus,
    pub handles: PcHandles,
}

impl PcBoard {
    pub fn new(c: &PcConfig) -> PcBoard {
        let (mut pio, mut mmio) = (Bus::new(), Bus::new());
        let handles = install(&mut pio, &mut mmio, c, Chips::Models, &mut |d| d).expect("the PC's ranges are disjoint");
        PcBoard { pio, mmio, handles }
    }

    /// The ports and addresses worth aiming at.
    pub fn registers() -> Vec<u64> {
        let mut r = vec![PIC_MASTER, PIC_MASTER + 1, PIC_SLAVE, PIC_SLAVE + 1, ELCR, ELCR + 1, PORT_B, RTC, RTC + 1];
        r.extend((0..4).map(|i| PIT + i));
        r.extend([0x60, 0x64, PORT_A, 0xf4, 0x510, 0x511, 0xcf8, 0xcf9, 0xcfc, 0xcfe, 0x600, 0x602, 0x604, 0x608]);
        r.extend([0xe0, 0xe2, 0xe4, 0xe8, 0x2000, 0x2002, 0x200e, 0x2017]);
        r.extend([IOAPIC_BASE, IOAPIC_BASE + 0x10, IOAPIC_BASE + 0x40, IOMEM_BASE, IOMEM_BASE + 0xfffe]);
        r
    }

    fn bus(&mut self, offset: u64) -> &mut Bus {
        if offset < 0x1_0000 {
            &mut self.pio
        } else {
            &mut self.mmio
        }
    }
}

impl Device for PcBoard {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let bus = self.bus(offset);
        match bus.find(offset) {
            Some(hit) => bus.read(hit, data, ctx),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let bus = self.bus(offset);
        if let Some(hit) = bus.find(offset) {
            bus.write(hit, data, ctx);
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.pio.tick(ctx);
        self.mmio.tick(ctx);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::hostile::drive;
    use crate::devices::ioapic::{IOREDTBL, IOREGSEL, IOWIN, MESSAGE_BASE};
    use crate::devices::pit::{control, CONTROL};
    use crate::devices::power::PowerRequest;
    use crate::devices::testing::TestMemory;
    use proptest::prelude::*;

    const CONFIG: PcConfig = PcConfig { memory: 128 << 20, cpus: 1, rtc_epoch: 1_700_000_000 };

    #[test]
    fn the_pit_interrupts_through_ioapic_pin_2_and_testdev_lines_reach_their_pins() {
        let (m, mut b) = (TestMemory::new(4096), PcBoard::new(&CONFIG));
        for (pin, vector) in [(2u8, 0x30u32), (14, 0x3e)] {
            m.write_bytes(&mut b, 0, IOAPIC_BASE + IOREGSEL, &[IOREDTBL + 2 * pin]);
            m.write_bytes(&mut b, 0, IOAPIC_BASE + IOWIN, &vector.to_le_bytes());
        }
        // Mode 2 sets OUT0 high at the control word: the first edge.
        let e = m.write_bytes(&mut b, 0, PIT + CONTROL, &[control::RW_LSB << 4 | 2 << 1]);
        assert_eq!(e.interrupts, [(MESSAGE_BASE + 2, 0)]);
        let e = m.write_bytes(&mut b, 0, PIT, &[100]);
        assert_eq!(e.interrupts, []);
        let at = e.wakes[0];
        assert_eq!(m.tick(&mut b, at).interrupts, [(MESSAGE_BASE + 2, at)]);
        assert_eq!(m.write_bytes(&mut b, 9, 0x200e, &[1]).interrupts, [(MESSAGE_BASE + 14, 9)]);
        let chip = b.handles.chip.as_ref().unwrap().lock().unwrap();
        assert_eq!(chip.ioapic.msi(MESSAGE_BASE + 14).unwrap().data, 0x3e);
    }

    #[test]
    fn every_path_to_reset_and_exit_reaches_the_power_latch() {
        let (m, mut b) = (TestMemory::new(4096), PcBoard::new(&CONFIG));
        let power = b.handles.power.clone();
        m.write_reg(&mut b, 0, 0xf4, 1);
        assert_eq!(power.take(), Some(PowerRequest::Exit { status: 3 }));
        for (port, v) in [(0xcf9u64, 0x06u8), (PORT_A, 1), (0x64, 0xfe)] {
            m.write_bytes(&mut b, 0, port, &[v]);
            assert!(matches!(power.take(), Some(PowerRequest::Reset(_))), "port {port:#x}");
        }
        m.write_bytes(&mut b, 0, 0x604, &(1u16 << 13).to_le_bytes());
        assert_eq!(power.take(), Some(PowerRequest::PowerOff));
        assert_eq!(m.read_bytes(&mut b, 0, 0x1234, 1), [0xff], "no device");
    }

    proptest! {
        #[test]
        fn the_pc_models_survive_hostile_drivers(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let memory = vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap();
            drive(&mut PcBoard::new(&CONFIG), &PcBoard::registers(), &memory, &input);
        }
    }
}

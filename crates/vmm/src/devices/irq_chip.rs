//! The PC's interrupt controllers as one shared piece: the 8259 pair and
//! the IOAPIC, both driven by the ISA lines ([`IrqSink`]), and the bus
//! faces the guest programs them through (ports 0x20/0xa0, ELCR at 0x4d0,
//! the IOAPIC's MMIO window). The devices that drive lines and the bus
//! faces share it behind one lock, so a line change and a register access
//! never interleave.
//!
//! Outputs: the IOAPIC's deliveries are messages `ioapic::MESSAGE_BASE +
//! n` ([`Ioapic::msi`] gives the MSI); the PIC pair's INT output rising is
//! message [`EXTINT_MESSAGE`], after which the host runs the INTA cycle
//! ([`PicPair::acknowledge`]) when the vCPU can take an ExtINT (the local
//! APIC's LINT0 in virtual-wire mode), and asks [`PicPair::intr`] again
//! after each.

use crate::bus::{Device, DeviceCtx};
use crate::devices::ioapic::Ioapic;
use crate::devices::isa_irq::{gsi, IrqSink, ISA_IRQS, LINES};
use crate::devices::pic::{Chip, PicPair};
use std::sync::{Arc, Mutex, MutexGuard};

/// The message that says the PIC pair's INT output went high.
pub const EXTINT_MESSAGE: u16 = 0x118;

#[derive(Debug, Default, Clone)]
pub struct PcIrqChip {
    pub pic: PicPair,
    pub ioapic: Ioapic,
}

impl PcIrqChip {
    /// Runs `f` on the pair, raising [`EXTINT_MESSAGE`] if INT rose.
    fn on_pic(&mut self, ctx: &mut DeviceCtx<'_>, f: impl FnOnce(&mut PicPair)) {
        let before = self.pic.intr();
        f(&mut self.pic);
        if !before && self.pic.intr() {
            ctx.interrupt(EXTINT_MESSAGE, ctx.now_ns);
        }
    }
}

impl IrqSink for PcIrqChip {
    fn set_level(&mut self, line: u8, level: bool, ctx: &mut DeviceCtx<'_>) {
        if line >= LINES {
            return;
        }
        if line < ISA_IRQS {
            self.on_pic(ctx, |p| p.set_irq(line, level));
        }
        self.ioapic.set_irq(usize::from(gsi(line)), level, ctx);
    }
}

/// The chip, shared between the lines and the bus faces.
pub type SharedIrqChip = Arc<Mutex<PcIrqChip>>;

fn lock(chip: &SharedIrqChip) -> MutexGuard<'_, PcIrqChip> {
    chip.lock().unwrap_or_else(|e| e.into_inner())
}

/// One 8259's two ports (0x20-0x21 master, 0xa0-0xa1 slave).
pub struct PicPorts {
    pub chip: SharedIrqChip,
    pub which: Chip,
}

impl Device for PicPorts {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let mut v = 0;
        lock(&self.chip).on_pic(ctx, |p| v = p.read_port(self.which, offset));
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        if let Some(&v) = data.first() {
            lock(&self.chip).on_pic(ctx, |p| p.write_port(self.which, offset, v));
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// ELCR1 and ELCR2 (ports 0x4d0-0x4d1).
pub struct ElcrPorts(pub SharedIrqChip);

impl Device for ElcrPorts {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        let chip = lock(&self.0);
        for (i, d) in data.iter_mut().enumerate() {
            *d = chip.pic.read_elcr(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let mut chip = lock(&self.0);
        for (i, &v) in data.iter().enumerate().take(2) {
            chip.on_pic(ctx, |p| p.write_elcr(offset + i as u64, v));
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The IOAPIC's MMIO window (0xfec00000).
pub struct IoapicMmio(pub SharedIrqChip);

impl Device for IoapicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        lock(&self.0).ioapic.read_mmio(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        lock(&self.0).ioapic.write_mmio(offset, data, ctx);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ioapic::{self, IOREDTBL, IOREGSEL, IOWIN};
    use crate::devices::isa_irq::IsaIrqLine;
    use crate::devices::pic::{icw1, icw4, COMMAND, DATA};
    use crate::devices::testing::TestMemory;

    fn program(m: &TestMemory, chip: &SharedIrqChip) {
        for (which, base, icw3) in [(Chip::Master, 0x20u8, 4u8), (Chip::Slave, 0x28, 2)] {
            let mut ports = PicPorts { chip: chip.clone(), which };
            for (port, v) in
                [(COMMAND, icw1::INIT | icw1::IC4), (DATA, base), (DATA, icw3), (DATA, icw4::UPM), (DATA, 0)]
            {
                m.write_bytes(&mut ports, 0, port, &[v]);
            }
        }
        let mut io = IoapicMmio(chip.clone());
        m.write_bytes(&mut io, 0, IOREGSEL, &[IOREDTBL + 2 * 2]);
        m.write_bytes(&mut io, 0, IOWIN, &0x30u32.to_le_bytes());
    }

    #[test]
    fn irq0_reaches_the_pic_and_ioapic_pin_2() {
        let (m, chip) = (TestMemory::new(4096), SharedIrqChip::default());
        program(&m, &chip);
        let line = IsaIrqLine::new(chip.clone(), 0);
        let raised = m.run(5, |ctx| line.set(true, ctx)).interrupts;
        assert_eq!(raised, [(EXTINT_MESSAGE, 5), (ioapic::MESSAGE_BASE + 2, 5)]);
        let mut c = lock(&chip);
        assert_eq!(c.pic.acknowledge(), 0x20);
        assert_eq!(c.ioapic.msi(ioapic::MESSAGE_BASE + 2).unwrap().data, 0x30);
    }

    #[test]
    fn lines_above_15_reach_only_the_ioapic() {
        let (m, chip) = (TestMemory::new(4096), SharedIrqChip::default());
        program(&m, &chip);
        let raised = m.run(0, |ctx| IsaIrqLine::new(chip.clone(), 20).set(true, ctx)).interrupts;
        assert_eq!(raised, [], "pin 20 is masked");
        assert!(!lock(&chip).pic.intr());
        assert_eq!(m.run(0, |ctx| IsaIrqLine::new(chip.clone(), 99).set(true, ctx)).interrupts, []);
    }

    #[test]
    fn unmasking_a_pending_line_raises_extint() {
        let (m, chip) = (TestMemory::new(4096), SharedIrqChip::default());
        program(&m, &chip);
        let mut master = PicPorts { chip: chip.clone(), which: Chip::Master };
        m.write_bytes(&mut master, 0, DATA, &[0x02]);
        assert_eq!(m.run(0, |ctx| IsaIrqLine::new(chip.clone(), 1).set(true, ctx)).interrupts, []);
        assert_eq!(m.write_bytes(&mut master, 7, DATA, &[0]).interrupts, [(EXTINT_MESSAGE, 7)]);
        let mut elcr = ElcrPorts(chip.clone());
        m.write_bytes(&mut elcr, 0, 0, &[0x20, 0x80]);
        assert_eq!(m.read_bytes(&mut elcr, 0, 0, 2), [0x20, 0x80]);
    }
}

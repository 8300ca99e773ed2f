//! The 8259A programmable interrupt controller (Intel 8259A datasheet,
//! order 231468-003), one chip ([`Pic`]) and the PC's cascaded pair
//! ([`PicPair`]: the slave's INT on the master's IR2, PIIX's edge/level
//! control registers ELCR1/ELCR2 at 0x4d0/0x4d1).
//!
//! A chip keeps IRR, ISR and IMR; the initialization sequence ICW1-ICW4
//! (LTIM level mode, single or cascade, auto-EOI, special fully nested);
//! OCW1 (the mask), OCW2 (non-specific and specific EOI, rotation,
//! set-priority) and OCW3 (read IRR or ISR, poll, special mask mode).
//! Priority is fully nested with a rotating lowest priority. Edge-triggered
//! lines set IRR on a rising edge; level-triggered lines hold IRR while
//! high, as QEMU's i8259 and the datasheet's level mode do. A `Pic` on its
//! own answers its two ports; the pair is what the PC has.

use crate::bus::{Device, DeviceCtx};

/// ICW1 (written to the command port with bit 4 set).
pub mod icw1 {
    /// ICW4 follows.
    pub const IC4: u8 = 1 << 0;
    /// Single chip: no ICW3.
    pub const SNGL: u8 = 1 << 1;
    /// Level-triggered mode for every line.
    pub const LTIM: u8 = 1 << 3;
    /// Marks the byte as ICW1.
    pub const INIT: u8 = 1 << 4;
}

/// ICW4.
pub mod icw4 {
    /// 8086/8088 mode (the vector is ICW2's T7-T3 plus the line).
    pub const UPM: u8 = 1 << 0;
    /// Automatic end of interrupt.
    pub const AEOI: u8 = 1 << 1;
    /// Special fully nested mode.
    pub const SFNM: u8 = 1 << 4;
}

/// OCW2 (command port, bits 4:3 = 00): R, SL, EOI in bits 7:5, the level
/// in bits 2:0.
pub mod ocw2 {
    pub const NON_SPECIFIC_EOI: u8 = 0b001;
    pub const SPECIFIC_EOI: u8 = 0b011;
    pub const ROTATE_NON_SPECIFIC_EOI: u8 = 0b101;
    pub const ROTATE_AEOI_SET: u8 = 0b100;
    pub const ROTATE_AEOI_CLEAR: u8 = 0b000;
    pub const ROTATE_SPECIFIC_EOI: u8 = 0b111;
    pub const SET_PRIORITY: u8 = 0b110;
}

/// OCW3 (command port, bits 4:3 = 01).
pub mod ocw3 {
    /// Marks the byte as OCW3.
    pub const SELECT: u8 = 1 << 3;
    /// Poll command.
    pub const P: u8 = 1 << 2;
    /// RR, RIS: read register; RIS picks ISR over IRR.
    pub const RR: u8 = 1 << 1;
    pub const RIS: u8 = 1 << 0;
    /// ESMM, SMM: enable and set special mask mode.
    pub const ESMM: u8 = 1 << 6;
    pub const SMM: u8 = 1 << 5;
}

/// Port offsets: the command port (A0 = 0) and the data port (A0 = 1).
pub const COMMAND: u64 = 0;
pub const DATA: u64 = 1;

/// Where the initialization sequence is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
pub struct Pic {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Input lines as last driven, for edge detection.
    lines: u8,
    /// The vector base (ICW2 T7-T3).
    base: u8,
    icw1: u8,
    icw3: u8,
    icw4: u8,
    init: Init,
    /// The line with the lowest priority is `lowest`; `lowest + 1` (mod 8)
    /// has the highest.
    lowest: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    rotate_in_aeoi: bool,
    /// Per-line level triggering (PIIX's ELCR), on top of ICW1.LTIM.
    elcr: u8,
    /// On a master, the lines with a slave (ICW3); kept for SFNM.
    is_master: bool,
}

impl Default for Pic {
    /// The state after reset: all lines masked (the state exitlab's own
    /// kernel relies on, and what a firmware leaves before an OS sets it
    /// up), IR7 lowest priority, IRR selected for reads.
    fn default() -> Self {
        Pic {
            irr: 0,
            isr: 0,
            imr: 0xff,
            lines: 0,
            base: 0,
            icw1: 0,
            icw3: 0,
            icw4: 0,
            init: Init::Ready,
            lowest: 7,
            read_isr: false,
            poll: false,
            special_mask: false,
            rotate_in_aeoi: false,
            elcr: 0,
            is_master: false,
        }
    }
}

impl Pic {
    /// The interrupt-mask register (OCW1).
    pub fn mask(&self) -> u8 {
        self.imr
    }

    pub fn irr(&self) -> u8 {
        self.irr
    }

    pub fn isr(&self) -> u8 {
        self.isr
    }

    fn level_triggered(&self, bit: u8) -> bool {
        self.icw1 & icw1::LTIM != 0 || self.elcr & bit != 0
    }

    /// Drives input line `irq` (0-7) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << (irq & 7);
        if self.level_triggered(bit) {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// Lines in priority order, highest first.
    fn by_priority(&self) -> impl Iterator<Item = u8> {
        let first = self.lowest.wrapping_add(1);
        (0..8).map(move |i| (first + i) & 7)
    }

    /// The highest-priority line in service that blocks others: in special
    /// mask mode a masked line does not, and with SFNM a master's slave
    /// line does not block its own slave's requests.
    fn in_service(&self) -> Option<u8> {
        let mut isr = self.isr;
        if self.special_mask {
            isr &= !self.imr;
        }
        if self.is_master && self.icw4 & icw4::SFNM != 0 {
            isr &= !self.icw3;
        }
        self.by_priority().find(|&i| isr & (1 << i) != 0)
    }

    /// The line the chip would interrupt for now, if any (INT high).
    pub fn pending(&self) -> Option<u8> {
        let requested = self.irr & !self.imr;
        let candidate = self.by_priority().find(|&i| requested & (1 << i) != 0)?;
        let rank = |irq: u8| irq.wrapping_sub(self.lowest.wrapping_add(1)) & 7;
        match self.in_service() {
            Some(s) if rank(s) <= rank(candidate) => {
                // SFNM lets a master take another request from the slave
                // it is serving.
                let nested = self.is_master && self.icw4 & icw4::SFNM != 0 && s == candidate;
                nested.then_some(candidate)
            }
            _ => Some(candidate),
        }
    }

    /// The first INTA pulse for line `irq`: ISR set (unless auto-EOI), an
    /// edge request consumed. Returns the vector.
    pub fn acknowledge(&mut self, irq: u8) -> u8 {
        let bit = 1u8 << (irq & 7);
        if !self.level_triggered(bit) {
            self.irr &= !bit;
        }
        if self.icw4 & icw4::AEOI != 0 {
            if self.rotate_in_aeoi {
                self.lowest = irq & 7;
            }
        } else {
            self.isr |= bit;
        }
        self.base | (irq & 7)
    }

    /// The vector for a spurious interrupt (IR7 with nothing requested).
    pub fn spurious(&self) -> u8 {
        self.base | 7
    }

    fn eoi(&mut self, command: u8) {
        let level = command & 7;
        match command >> 5 {
            ocw2::NON_SPECIFIC_EOI | ocw2::ROTATE_NON_SPECIFIC_EOI => {
                if let Some(irq) = self.by_priority().find(|&i| self.isr & (1 << i) != 0) {
                    self.isr &= !(1 << irq);
                    if command >> 5 == ocw2::ROTATE_NON_SPECIFIC_EOI {
                        self.lowest = irq;
                    }
                }
            }
            ocw2::SPECIFIC_EOI => self.isr &= !(1 << level),
            ocw2::ROTATE_SPECIFIC_EOI => {
                self.isr &= !(1 << level);
                self.lowest = level;
            }
            ocw2::SET_PRIORITY => self.lowest = level,
            ocw2::ROTATE_AEOI_SET => self.rotate_in_aeoi = true,
            ocw2::ROTATE_AEOI_CLEAR => self.rotate_in_aeoi = false,
            _ => {} // 010: no operation
        }
    }

    /// A write to the command (0) or data (1) port.
    pub fn write_port(&mut self, port: u64, v: u8) {
        match (port & 1, self.init) {
            (COMMAND, _) if v & icw1::INIT != 0 => {
                // ICW1 resets the chip's state (datasheet, "Initialization
                // Command Words"): edge detection, IMR, priority, special
                // mask mode, IRR reads, and ICW4's functions if no ICW4.
                let keep = Pic { elcr: self.elcr, is_master: self.is_master, lines: self.lines, ..Pic::default() };
                *self = Pic { icw1: v, init: Init::Icw2, imr: 0, ..keep };
            }
            (COMMAND, _) if v & ocw3::SELECT != 0 => {
                if v & ocw3::P != 0 {
                    self.poll = true;
                }
                if v & ocw3::RR != 0 {
                    self.read_isr = v & ocw3::RIS != 0;
                }
                if v & ocw3::ESMM != 0 {
                    self.special_mask = v & ocw3::SMM != 0;
                }
            }
            (COMMAND, _) => self.eoi(v),
            (_, Init::Icw2) => {
                self.base = v & 0xf8;
                self.init = if self.icw1 & icw1::SNGL == 0 {
                    Init::Icw3
                } else if self.icw1 & icw1::IC4 != 0 {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            (_, Init::Icw3) => {
                self.icw3 = v;
                self.init = if self.icw1 & icw1::IC4 != 0 { Init::Icw4 } else { Init::Ready };
            }
            (_, Init::Icw4) => {
                self.icw4 = v;
                self.init = Init::Ready;
            }
            (_, Init::Ready) => self.imr = v,
        }
    }

    /// A read of the command port (IRR, ISR or the poll word) or the data
    /// port (IMR).
    pub fn read_port(&mut self, port: u64) -> u8 {
        if port & 1 == DATA {
            return self.imr;
        }
        if std::mem::take(&mut self.poll) {
            // The poll word: bit 7 set and the line, acknowledged, when a
            // request is pending; 0 otherwise.
            return match self.pending() {
                Some(irq) => {
                    self.acknowledge(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }
}

impl Device for Pic {
    fn read(&mut self, offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        let v = self.read_port(offset);
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        if let Some(&v) = data.first() {
            self.write_port(offset, v);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Which chip of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chip {
    Master,
    Slave,
}

/// The master's line the slave's INT drives.
pub const CASCADE_IRQ: u8 = 2;
/// ELCR bits that must stay edge-triggered: IRQ 0, 1, 2 and 8, 13
/// (PIIX4 datasheet, ELCR1/ELCR2; QEMU's i8259 masks 0xf8 and 0xde).
const ELCR_WRITABLE: [u8; 2] = [0xf8, 0xde];

/// The PC's two 8259As: master on ports 0x20-0x21, slave on 0xa0-0xa1,
/// the slave's INT on the master's IR2.
#[derive(Debug, Clone)]
pub struct PicPair {
    pub master: Pic,
    pub slave: Pic,
}

impl Default for PicPair {
    fn default() -> Self {
        PicPair { master: Pic { is_master: true, ..Pic::default() }, slave: Pic::default() }
    }
}

impl PicPair {
    fn cascade(&mut self) {
        let slave_int = self.slave.pending().is_some();
        self.master.set_irq(CASCADE_IRQ, slave_int);
    }

    /// Drives ISA IRQ `line` (0-15; others ignored) to `level`.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 => self.master.set_irq(line, level),
            8..=15 => self.slave.set_irq(line - 8, level),
            _ => return,
        }
        self.cascade();
    }

    /// The master's INT output: the CPU has an interrupt to take.
    pub fn intr(&self) -> bool {
        self.master.pending().is_some()
    }

    /// The INTA cycle: the vector of the highest-priority request, through
    /// the slave when the master picks the cascade line; a spurious IRQ7
    /// (or IRQ15) vector when the request went away.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending() {
            None => self.master.spurious(),
            Some(CASCADE_IRQ) => {
                self.master.acknowledge(CASCADE_IRQ);
                match self.slave.pending() {
                    Some(irq) => self.slave.acknowledge(irq),
                    None => self.slave.spurious(),
                }
            }
            Some(irq) => self.master.acknowledge(irq),
        };
        self.cascade();
        vector
    }

    pub fn chip(&mut self, which: Chip) -> &mut Pic {
        match which {
            Chip::Master => &mut self.master,
            Chip::Slave => &mut self.slave,
        }
    }

    pub fn write_port(&mut self, which: Chip, port: u64, v: u8) {
        self.chip(which).write_port(port, v);
        self.cascade();
    }

    pub fn read_port(&mut self, which: Chip, port: u64) -> u8 {
        let v = self.chip(which).read_port(port);
        self.cascade();
        v
    }

    /// ELCR1 (offset 0) or ELCR2 (offset 1).
    pub fn read_elcr(&self, offset: u64) -> u8 {
        if offset & 1 == 0 {
            self.master.elcr
        } else {
            self.slave.elcr
        }
    }

    pub fn write_elcr(&mut self, offset: u64, v: u8) {
        let i = (offset & 1) as usize;
        let chip = if i == 0 { &mut self.master } else { &mut self.slave };
        chip.elcr = v & ELCR_WRITABLE[i];
        self.cascade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ICW sequence Linux's init_8259A writes: ICW1 0x11 (edge,
    /// cascade, ICW4), ICW2 base, ICW3 (master 0x04, slave 2), ICW4 0x01.
    fn linux_init(p: &mut PicPair) {
        for (chip, base, icw3) in [(Chip::Master, 0x30, 0x04), (Chip::Slave, 0x38, 0x02)] {
            p.write_port(chip, COMMAND, icw1::INIT | icw1::IC4);
            p.write_port(chip, DATA, base);
            p.write_port(chip, DATA, icw3);
            p.write_port(chip, DATA, icw4::UPM);
            p.write_port(chip, DATA, 0);
        }
    }

    #[test]
    fn reset_state_masks_everything_and_the_mask_reads_back() {
        let mut pic = Pic::default();
        assert_eq!((pic.read_port(DATA), pic.read_port(COMMAND)), (0xff, 0));
        pic.write_port(DATA, 0xfb);
        assert_eq!((pic.mask(), pic.read_port(DATA)), (0xfb, 0xfb));
        pic.set_irq(1, true);
        assert_eq!(pic.pending(), None, "IR1 is masked");
        assert_eq!(pic.read_port(COMMAND), 0x02, "but requested (IRR)");
    }

    #[test]
    fn icw_sequence_sets_vector_base_and_clears_the_mask() {
        let mut p = PicPair::default();
        linux_init(&mut p);
        p.set_irq(0, true);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x30);
        assert_eq!(p.master.isr(), 1);
        assert!(!p.intr(), "IR0 in service, nothing else");
    }

    #[test]
    fn single_mode_without_icw4_skips_icw3_and_icw4() {
        let mut pic = Pic::default();
        pic.write_port(COMMAND, icw1::INIT | icw1::SNGL);
        pic.write_port(DATA, 0x48);
        pic.write_port(DATA, 0xf7); // OCW1 already: only IR3 unmasked
        assert_eq!(pic.mask(), 0xf7);
        pic.set_irq(3, true);
        let irq = pic.pending().unwrap();
        assert_eq!(pic.acknowledge(irq), 0x4b);
    }

    #[test]
    fn fully_nested_priority_and_non_specific_eoi() {
        let mut p = PicPair::default();
        linux_init(&mut p);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31, "IR1 preempts IR4");
        p.set_irq(3, true);
        assert!(!p.intr(), "IR3 waits: IR1 and IR4 are in service");
        p.write_port(Chip::Master, COMMAND, ocw2::NON_SPECIFIC_EOI << 5);
        assert_eq!(p.master.isr(), 0x10, "EOI ends the highest in service, IR1");
        assert_eq!(p.acknowledge(), 0x33, "IR3 beats IR4 in service");
        p.write_port(Chip::Master, COMMAND, (ocw2::SPECIFIC_EOI << 5) | 4);
        assert_eq!(p.master.isr(), 0x08);
    }

    #[test]
    fn edge_lines_need_a_new_rising_edge_level_lines_follow_the_line() {
        let mut p = PicPair::default();
        linux_init(&mut p);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        p.write_port(Chip::Master, COMMAND, ocw2::NON_SPECIFIC_EOI << 5);
        assert!(!p.intr(), "still high, but no new edge");
        p.set_irq(5, false);
        p.set_irq(5, true);
        assert!(p.intr());
        // Level: ELCR bit 5; IRR stays while the line is high, goes with it.
        let mut p = PicPair::default();
        linux_init(&mut p);
        p.write_elcr(0, 0xff);
        assert_eq!(p.read_elcr(0), 0xf8, "IRQ 0-2 cannot be level");
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        p.write_port(Chip::Master, COMMAND, ocw2::NON_SPECIFIC_EOI << 5);
        assert!(p.intr(), "a level line still high asks again");
        p.set_irq(5, false);
        assert!(!p.intr());
        assert_eq!(p.master.irr(), 0);
    }

    #[test]
    fn slave_lines_cascade_through_ir2() {
        let mut p = PicPair::default();
        linux_init(&mut p);
        p.set_irq(14, true);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x3e);
        assert_eq!((p.master.isr(), p.slave.isr()), (0x04, 0x40));
        // Mask the slave line: nothing more from the slave.
        p.write_port(Chip::Slave, COMMAND, ocw2::NON_SPECIFIC_EOI << 5);
        p.write_port(Chip::Master, COMMAND, ocw2::NON_SPECIFIC_EOI << 5);
        p.write_port(Chip::Slave, DATA, 0xff);
        p.set_irq(9, true);
        assert!(!p.intr());
    }

    #[test]
    fn spurious_irq7_when_the_request_went_away() {
        let mut p = PicPair::default();
        linux_init(&mut p);
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.master.isr(), 0, "a spurious IRQ7 is not in service");
    }

    #[test]
    fn ocw3_selects_isr_reads_and_poll() {
        let mut pic = Pic::default();
        pic.write_port(COMMAND, icw1::INIT | icw1::SNGL | icw1::IC4);
        pic.write_port(DATA, 0x20);
        pic.write_port(DATA, icw4::UPM);
        pic.write_port(DATA, 0);
        pic.set_irq(6, true);
        pic.write_port(COMMAND, ocw3::SELECT | ocw3::P);
        assert_eq!(pic.read_port(COMMAND), 0x86, "poll: I bit and the level, acknowledged");
        pic.write_port(COMMAND, ocw3::SELECT | ocw3::RR | ocw3::RIS);
        assert_eq!(pic.read_port(COMMAND), 0x40, "ISR");
        pic.write_port(COMMAND, ocw3::SELECT | ocw3::RR);
        assert_eq!(pic.read_port(COMMAND), 0x00, "IRR: the edge was consumed");
        pic.write_port(COMMAND, ocw3::SELECT | ocw3::P);
        assert_eq!(pic.read_port(COMMAND), 0, "poll with nothing pending");
    }

    #[test]
    fn auto_eoi_rotation_and_set_priority() {
        let mut pic = Pic::default();
        pic.write_port(COMMAND, icw1::INIT | icw1::SNGL | icw1::IC4);
        pic.write_port(DATA, 0x20);
        pic.write_port(DATA, icw4::UPM | icw4::AEOI);
        pic.write_port(DATA, 0);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(pic.pending().unwrap()), 0x20);
        assert_eq!(pic.isr(), 0, "auto-EOI leaves nothing in service");
        pic.write_port(COMMAND, (ocw2::SET_PRIORITY << 5) | 3);
        pic.set_irq(2, true);
        pic.set_irq(5, true);
        assert_eq!(pic.pending(), Some(5), "IR3 lowest makes IR4 highest, then IR5");
    }

    #[test]
    fn special_mask_mode_lets_lower_lines_in() {
        let mut pic = Pic::default();
        pic.write_port(COMMAND, icw1::INIT | icw1::SNGL | icw1::IC4);
        pic.write_port(DATA, 0x20);
        pic.write_port(DATA, icw4::UPM);
        pic.write_port(DATA, 0);
        pic.set_irq(1, true);
        pic.acknowledge(pic.pending().unwrap());
        pic.set_irq(6, true);
        assert_eq!(pic.pending(), None);
        pic.write_port(DATA, 0x02);
        pic.write_port(COMMAND, ocw3::SELECT | ocw3::ESMM | ocw3::SMM);
        assert_eq!(pic.pending(), Some(6));
    }
}

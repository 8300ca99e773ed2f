//! The ACPI fixed-hardware power-management registers the FADT points at
//! (ACPI 6.5, 4.8 "ACPI Hardware Model" fixed registers), at QEMU's PIIX4
//! PM base 0x600:
//!
//! - PM1a_EVT_BLK (0x600): PM1_STS (TMR_STS, PWRBTN_STS, WAK_STS; write 1
//!   to clear) and PM1_EN, which holds the enable bits of the fixed events
//!   the FADT does not declare absent (TMR_EN, GBL_EN, PWRBTN_EN, RTC_EN;
//!   Table 4.16): ACPICA reads each back when it enables the event and
//!   logs an error where the bit does not stick;
//! - PM1a_CNT_BLK (0x604): PM1_CNT (SCI_EN reads 1: the FADT has no
//!   SMI_CMD, so the machine is always in ACPI mode; SLP_TYP and SLP_EN:
//!   sleep type 0, the DSDT's \_S5, asks to power off);
//! - PM_TMR_BLK (0x608): the 24-bit power-management timer counting at
//!   3.579545 MHz (4.8.3.3) on the device clock; TMR_STS is set each time
//!   its bit 23 changes.
//!
//! The SCI is ISA IRQ 9, level-triggered and active high (the MADT's
//! interrupt source override says so): high while an enabled event's
//! status bit is set (4.8.3.1). Of the events only the timer's can occur
//! on this machine (no power button, no firmware to set GBL_STS, no RTC
//! alarm wired to RTC_STS); with TMR_EN set the model wakes at the timer's
//! next bit-23 change to raise it.

use crate::bus::{Device, DeviceCtx};
use crate::devices::isa_irq::IsaIrqLine;
use crate::devices::power::{PowerLatch, PowerRequest};

pub const PM_BASE: u16 = 0x600;
/// PM1 event (4), PM1 control (2, padded to 4) and timer (4) blocks.
pub const PM_SIZE: u64 = 12;
pub const PM1_STS: u64 = 0x0;
pub const PM1_EN: u64 = 0x2;
pub const PM1_CNT: u64 = 0x4;
pub const PM_TMR: u64 = 0x8;
/// The timer's frequency, Hz (ACPI 6.5, 4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The timer is 24 bits wide (FADT TMR_VAL_EXT clear).
pub const PM_TIMER_MASK: u32 = 0xff_ffff;

pub mod pm1_sts {
    pub const TMR_STS: u16 = 1 << 0;
    pub const PWRBTN_STS: u16 = 1 << 8;
    pub const WAK_STS: u16 = 1 << 15;
}

/// PM1_EN bits (ACPI 6.5, Table 4.16), each at its status bit's place.
pub mod pm1_en {
    pub const TMR_EN: u16 = 1 << 0;
    pub const GBL_EN: u16 = 1 << 5;
    pub const PWRBTN_EN: u16 = 1 << 8;
    pub const RTC_EN: u16 = 1 << 10;
    /// The bits this machine implements (no SLPBTN_EN: the FADT's
    /// SLP_BUTTON flag says there is no fixed sleep button).
    pub const IMPLEMENTED: u16 = TMR_EN | GBL_EN | PWRBTN_EN | RTC_EN;
}

pub mod pm1_cnt {
    pub const SCI_EN: u16 = 1 << 0;
    pub const SLP_TYP_SHIFT: u32 = 10;
    pub const SLP_TYP_MASK: u16 = 7 << 10;
    pub const SLP_EN: u16 = 1 << 13;
    /// The \_S5 sleep type value the DSDT gives.
    pub const S5: u16 = 0;
}

/// The timer's count at device time `ns`.
pub fn pm_timer(ns: u64) -> u32 {
    (u128::from(ns) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u32 & PM_TIMER_MASK
}

pub struct AcpiPm {
    status: u16,
    enable: u16,
    control: u16,
    /// The timer's bit-23 period number when TMR_STS was last cleared.
    timer_epoch: u64,
    power: PowerLatch,
    /// The SCI's line and the level it was last driven to.
    sci: Option<IsaIrqLine>,
    sci_level: bool,
}

impl AcpiPm {
    /// The block, with the SCI on `sci` (None: not wired).
    pub fn new(power: PowerLatch, sci: Option<IsaIrqLine>) -> AcpiPm {
        AcpiPm { status: 0, enable: 0, control: pm1_cnt::SCI_EN, timer_epoch: 0, power, sci, sci_level: false }
    }

    fn half_periods(ns: u64) -> u64 {
        ((u128::from(ns) * u128::from(PM_TIMER_HZ) / 1_000_000_000) >> 23) as u64
    }

    /// The first ns of half period `n`: when bit 23 next changes.
    fn half_period_start(n: u64) -> u64 {
        (u128::from(n << 23) * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ)) as u64
    }

    fn status_at(&self, now: u64) -> u16 {
        self.status | if Self::half_periods(now) != self.timer_epoch { pm1_sts::TMR_STS } else { 0 }
    }

    /// Drives the SCI to whether an enabled event is pending, and with the
    /// timer's event enabled and not yet pending asks for a wake-up when
    /// it will be.
    fn update_sci(&mut self, ctx: &mut DeviceCtx<'_>) {
        let status = self.status_at(ctx.now_ns);
        let level = status & self.enable != 0;
        if let (Some(line), true) = (&self.sci, level != self.sci_level) {
            line.set(level, ctx);
        }
        self.sci_level = level;
        if self.enable & pm1_en::TMR_EN != 0 && status & pm1_sts::TMR_STS == 0 {
            ctx.wake_at(Self::half_period_start(self.timer_epoch + 1));
        }
    }

    fn register(&self, offset: u64, now: u64) -> u32 {
        let sts = self.status_at(now);
        let words = u64::from(sts) | u64::from(self.enable) << 16 | u64::from(self.control) << 32;
        match offset {
            PM_TMR..=11 => pm_timer(now) >> (8 * (offset - PM_TMR)),
            0..=7 => (words >> (8 * offset)) as u32,
            _ => 0,
        }
    }
}

impl Device for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let v = self.register(offset, ctx.now_ns).to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = v.get(i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let mut b = [0u8; 2];
        let n = data.len().min(2);
        b[..n].copy_from_slice(&data[..n]);
        let v = u16::from_le_bytes(b);
        match offset {
            PM1_STS => {
                if v & pm1_sts::TMR_STS != 0 {
                    self.timer_epoch = Self::half_periods(ctx.now_ns);
                }
                self.status &= !v;
            }
            PM1_EN => self.enable = v & pm1_en::IMPLEMENTED,
            PM1_CNT => {
                if v & pm1_cnt::SLP_EN != 0 && (v & pm1_cnt::SLP_TYP_MASK) >> pm1_cnt::SLP_TYP_SHIFT == pm1_cnt::S5 {
                    self.power.request(PowerRequest::PowerOff);
                }
                // SLP_EN reads 0; SCI_EN stays set.
                self.control = (v & pm1_cnt::SLP_TYP_MASK) | pm1_cnt::SCI_EN;
            }
            _ => {} // the timer is read-only
        }
        self.update_sci(ctx);
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.update_sci(ctx);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::isa_irq::Recorder;
    use crate::devices::testing::TestMemory;

    #[test]
    fn timer_counts_at_3_579545_mhz_and_wraps_at_24_bits() {
        let (m, mut pm) = (TestMemory::new(4096), AcpiPm::new(PowerLatch::default(), None));
        assert_eq!(m.read_reg(&mut pm, 0, PM_TMR), 0);
        assert_eq!(m.read_reg(&mut pm, 1_000_000_000, PM_TMR), 3_579_545 & 0xff_ffff);
        assert_eq!(m.read_reg(&mut pm, 1_000_000, PM_TMR), 3_579);
        // 2^24 ticks: 4.687 s; one tick later the count is 0 again.
        let wrap = (1u64 << 24) * 1_000_000_000 / PM_TIMER_HZ + 1;
        assert_eq!(m.read_reg(&mut pm, wrap, PM_TMR), 0);
    }

    #[test]
    fn tmr_sts_sets_when_bit_23_changes_and_clears_by_writing_1() {
        let (m, mut pm) = (TestMemory::new(4096), AcpiPm::new(PowerLatch::default(), None));
        let half = (1u64 << 23) * 1_000_000_000 / PM_TIMER_HZ + 1;
        assert_eq!(m.read_bytes(&mut pm, half - 2, PM1_STS, 2), [0, 0]);
        assert_eq!(m.read_bytes(&mut pm, half, PM1_STS, 2), [1, 0]);
        m.write_bytes(&mut pm, half, PM1_STS, &pm1_sts::TMR_STS.to_le_bytes());
        assert_eq!(m.read_bytes(&mut pm, half + 1, PM1_STS, 2), [0, 0]);
    }

    #[test]
    fn sci_en_reads_set_and_s5_powers_off() {
        let latch = PowerLatch::default();
        let (m, mut pm) = (TestMemory::new(4096), AcpiPm::new(latch.clone(), None));
        assert_eq!(m.read_bytes(&mut pm, 0, PM1_CNT, 2), [1, 0]);
        m.write_bytes(&mut pm, 0, PM1_CNT, &(3u16 << 10).to_le_bytes());
        assert_eq!(latch.peek(), None, "no SLP_EN");
        m.write_bytes(&mut pm, 0, PM1_EN, &0xffffu16.to_le_bytes());
        assert_eq!(m.read_bytes(&mut pm, 0, PM1_EN, 2), [0x21, 0x05], "TMR_EN, GBL_EN, PWRBTN_EN, RTC_EN");
        m.write_bytes(&mut pm, 0, PM1_CNT, &pm1_cnt::SLP_EN.to_le_bytes());
        assert_eq!(latch.take(), Some(PowerRequest::PowerOff));
        assert_eq!(m.read_bytes(&mut pm, 0, PM1_CNT, 2), [1, 0], "SLP_EN reads 0");
    }

    #[test]
    fn the_sci_follows_enabled_events_and_the_timer_wakes_the_model_to_raise_it() {
        let (rec, line) = Recorder::line(9);
        let (m, mut pm) = (TestMemory::new(4096), AcpiPm::new(PowerLatch::default(), Some(line)));
        // GBL_EN and RTC_EN stick (ACPICA reads them back); no event is
        // pending, so the SCI stays low and nothing needs a wake-up.
        let e = m.write_bytes(&mut pm, 0, PM1_EN, &(pm1_en::GBL_EN | pm1_en::RTC_EN).to_le_bytes());
        assert_eq!((e.wakes, Recorder::take(&rec)), (vec![], vec![]));
        // TMR_EN: bit 23 of the count first changes at 2^23 ticks =
        // 2,343,484,437.3 ns, so the model asks to be woken at 2,343,484,438.
        let e = m.write_bytes(&mut pm, 1_000, PM1_EN, &pm1_en::TMR_EN.to_le_bytes());
        assert_eq!(e.wakes, [2_343_484_438]);
        assert_eq!(Recorder::take(&rec), []);
        assert_eq!(m.tick(&mut pm, 2_343_484_437).wakes, [2_343_484_438], "not yet");
        m.tick(&mut pm, 2_343_484_438);
        assert_eq!(Recorder::take(&rec), [(9, true, 2_343_484_438)]);
        // Clearing TMR_STS drops the SCI and arms the next change, 2^24
        // ticks from 0.
        let e = m.write_bytes(&mut pm, 2_400_000_000, PM1_STS, &pm1_sts::TMR_STS.to_le_bytes());
        assert_eq!(e.wakes, [4_686_968_875]);
        assert_eq!(Recorder::take(&rec), [(9, false, 2_400_000_000)]);
    }
}

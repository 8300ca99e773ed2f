//! The CMOS real-time clock (Motorola MC146818A datasheet, as the PC has
//! it): port 0x70 selects a register (bits 6:0) and holds the NMI-disable
//! bit (bit 7), port 0x71 reads or writes it.
//!
//! Registers 0x00-0x09 are the time, alarm and date, in BCD or binary and
//! 12- or 24-hour form as register B's DM and 24/12 bits say; A holds UIP
//! (update in progress: the 244 us before each second's update) and the
//! divider and rate bits; B the SET, PIE, AIE, UIE, DM and 24/12 bits; C
//! the interrupt flags (IRQF, PF, AF, UF; reading clears them); D the
//! valid-RAM bit; 0x0e-0x7f are battery-backed RAM (0x32: the century, as
//! PCs keep it). The time runs on the device clock from a start time the
//! machine gives (fixed on the simulator, so runs repeat); with SET the
//! guest writes a new time, which runs from when SET is cleared. Periodic
//! and update-ended interrupts go out on IRQ 8 at wake-ups; the alarm
//! registers are kept but the alarm interrupt (AF) is not modelled.

use crate::bus::{Device, DeviceCtx};
use crate::devices::isa_irq::IsaIrqLine;

pub const SECONDS: u8 = 0x00;
pub const MINUTES: u8 = 0x02;
pub const HOURS: u8 = 0x04;
pub const DAY_OF_WEEK: u8 = 0x06;
pub const DAY_OF_MONTH: u8 = 0x07;
pub const MONTH: u8 = 0x08;
pub const YEAR: u8 = 0x09;
pub const REG_A: u8 = 0x0a;
pub const REG_B: u8 = 0x0b;
pub const REG_C: u8 = 0x0c;
pub const REG_D: u8 = 0x0d;
pub const CENTURY: u8 = 0x32;
/// Port offsets: index (0x70) and data (0x71).
pub const INDEX: u64 = 0;
pub const DATA: u64 = 1;
/// Port 0x70 bit 7: NMI disabled.
pub const NMI_DISABLE: u8 = 0x80;

pub mod reg_a {
    pub const UIP: u8 = 1 << 7;
    /// DV2-0 = 010: the 32.768 kHz time base, running.
    pub const DV_32KHZ: u8 = 0b010 << 4;
    pub const RS_MASK: u8 = 0x0f;
    /// UIP is set this long before each update (datasheet: 244 us).
    pub const UIP_NS: u64 = 244_000;
}

pub mod reg_b {
    pub const SET: u8 = 1 << 7;
    pub const PIE: u8 = 1 << 6;
    pub const AIE: u8 = 1 << 5;
    pub const UIE: u8 = 1 << 4;
    /// Data mode: binary (else BCD).
    pub const DM: u8 = 1 << 2;
    /// 24-hour mode (else 12-hour, PM in hours bit 7).
    pub const HOURS_24: u8 = 1 << 1;
}

pub mod reg_c {
    pub const IRQF: u8 = 1 << 7;
    pub const PF: u8 = 1 << 6;
    pub const AF: u8 = 1 << 5;
    pub const UF: u8 = 1 << 4;
}

pub mod reg_d {
    pub const VRT: u8 = 1 << 7;
}

const NS: u64 = 1_000_000_000;

/// Days since 1970-01-01 of a civil date (Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day count since
/// 1970-01-01, negative before it (Howard Hinnant's algorithm); also what
/// exitlab dates a calibration with.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn to_bcd(v: u8) -> u8 {
    (v / 10) << 4 | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4).min(9) * 10 + (v & 0xf).min(9)
}

/// The MC146818A.
#[derive(Debug)]
pub struct Rtc {
    index: u8,
    nmi_disabled: bool,
    ram: [u8; 128],
    /// Seconds since 1970 at device time `anchor_ns`.
    epoch: u64,
    anchor_ns: u64,
    /// Flags raised since register C was last read.
    flags: u8,
    /// Device time up to which update and periodic events are counted.
    checked_ns: u64,
    irq8: Option<IsaIrqLine>,
    interrupts: u64,
}

impl Rtc {
    /// A clock reading `epoch` (seconds since 1970-01-01 UTC) at device
    /// time 0; BCD, 24-hour, the 32.768 kHz divider and 1024 Hz rate.
    pub fn new(epoch: u64, irq8: Option<IsaIrqLine>) -> Rtc {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = reg_a::DV_32KHZ | 0x6;
        ram[usize::from(REG_B)] = reg_b::HOURS_24;
        ram[usize::from(REG_D)] = reg_d::VRT;
        let mut rtc = Rtc {
            index: 0,
            nmi_disabled: false,
            ram,
            epoch,
            anchor_ns: 0,
            flags: 0,
            checked_ns: 0,
            irq8,
            interrupts: 0,
        };
        rtc.ram[usize::from(CENTURY)] = rtc.encode((rtc.time(0).0 / 100) as u8);
        rtc
    }

    /// Whether the guest last disabled NMIs through port 0x70.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    fn b(&self) -> u8 {
        self.ram[usize::from(REG_B)]
    }

    fn encode(&self, v: u8) -> u8 {
        if self.b() & reg_b::DM != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.b() & reg_b::DM != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn seconds(&self, now: u64) -> u64 {
        self.epoch + now.saturating_sub(self.anchor_ns) / NS
    }

    /// (year, month, day, hour, minute, second, day of week 1-7 Sunday=1).
    fn time(&self, now: u64) -> (i64, u32, u32, u8, u8, u8, u8) {
        let s = self.seconds(now);
        let days = (s / 86_400) as i64;
        let (y, m, d) = civil_from_days(days);
        let sod = s % 86_400;
        let dow = ((days + 4).rem_euclid(7) + 1) as u8; // 1970-01-01 was a Thursday
        (y, m, d, (sod / 3600) as u8, (sod / 60 % 60) as u8, (sod % 60) as u8, dow)
    }

    fn hours_out(&self, h: u8) -> u8 {
        if self.b() & reg_b::HOURS_24 != 0 {
            return self.encode(h);
        }
        let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
        self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
    }

    fn hours_in(&self, v: u8) -> u8 {
        if self.b() & reg_b::HOURS_24 != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    fn read_time_register(&self, reg: u8, now: u64) -> u8 {
        let (y, m, d, h, min, s, dow) = self.time(now);
        match reg {
            SECONDS => self.encode(s),
            MINUTES => self.encode(min),
            HOURS => self.hours_out(h),
            DAY_OF_WEEK => self.encode(dow),
            DAY_OF_MONTH => self.encode(d as u8),
            MONTH => self.encode(m as u8),
            _ => self.encode(y.rem_euclid(100) as u8),
        }
    }

    /// SET cleared: the time registers the guest wrote become the time.
    fn take_written_time(&mut self, now: u64) {
        let r = |reg: u8| self.decode(self.ram[usize::from(reg)]);
        let century = i64::from(self.decode(self.ram[usize::from(CENTURY)]));
        let (month, day) = (u32::from(r(MONTH)).clamp(1, 12), u32::from(r(DAY_OF_MONTH)).clamp(1, 31));
        let days = days_from_civil(century * 100 + i64::from(r(YEAR)), month, day);
        let sod = u64::from(self.hours_in(self.ram[usize::from(HOURS)]).min(23)) * 3600
            + u64::from(r(MINUTES).min(59)) * 60
            + u64::from(r(SECONDS).min(59));
        self.epoch = (days.max(0) as u64) * 86_400 + sod;
        self.anchor_ns = now;
        self.checked_ns = now;
    }

    /// The periodic interrupt's period for rate bits RS (datasheet table:
    /// 32.768 kHz >> (RS - 1); RS 1 and 2 repeat 8 and 9), ns.
    fn period_ns(&self) -> Option<u64> {
        let rs = u32::from(self.ram[usize::from(REG_A)] & reg_a::RS_MASK);
        let shift = match rs {
            0 => return None,
            1 | 2 => rs + 6,
            _ => rs - 1,
        };
        Some((NS << shift) / 32_768)
    }

    /// Raises UF and PF for the updates and periods between the last check
    /// and `now`, and IRQF when an enabled one is set; returns the next
    /// time one is due, if an interrupt is enabled.
    fn catch_up(&mut self, now: u64) -> Option<u64> {
        let running = self.b() & reg_b::SET == 0;
        let from = self.checked_ns;
        if now > from && running {
            let second = |t: u64| t.saturating_sub(self.anchor_ns) / NS;
            if second(now) > second(from) {
                self.flags |= reg_c::UF;
            }
            if let Some(p) = self.period_ns() {
                if now / p > from / p {
                    self.flags |= reg_c::PF;
                }
            }
        }
        self.checked_ns = self.checked_ns.max(now);
        let b = self.b();
        let enabled = self.flags & b & (reg_b::PIE | reg_b::UIE);
        if enabled != 0 {
            self.flags |= reg_c::IRQF;
        }
        let next_update =
            (b & reg_b::UIE != 0 && running).then(|| (second_of(now, self.anchor_ns) + 1) * NS + self.anchor_ns);
        let next_period = self.period_ns().filter(|_| b & reg_b::PIE != 0).map(|p| (now / p + 1) * p);
        next_update.into_iter().chain(next_period).min()
    }

    fn update_irq(&mut self, ctx: &mut DeviceCtx<'_>) {
        let before = self.flags & reg_c::IRQF != 0;
        if let Some(at) = self.catch_up(ctx.now_ns) {
            ctx.wake_at(at);
        }
        let after = self.flags & reg_c::IRQF != 0;
        if let (Some(line), true) = (&self.irq8, before != after) {
            if after {
                self.interrupts += 1;
            }
            line.set(after, ctx);
        }
    }

    fn read_data(&mut self, ctx: &mut DeviceCtx<'_>) -> u8 {
        let now = ctx.now_ns;
        let reg = self.index;
        let set = self.b() & reg_b::SET != 0;
        match reg {
            r if is_time(r) && !set => self.read_time_register(r, now),
            REG_A => {
                let into_second = now.saturating_sub(self.anchor_ns) % NS;
                let uip = !set && into_second >= NS - reg_a::UIP_NS;
                self.ram[usize::from(REG_A)] | if uip { reg_a::UIP } else { 0 }
            }
            REG_C => {
                self.update_irq(ctx);
                let v = std::mem::take(&mut self.flags);
                if v & reg_c::IRQF != 0 {
                    if let Some(line) = &self.irq8 {
                        line.set(false, ctx);
                    }
                }
                v
            }
            _ => self.ram[usize::from(reg)],
        }
    }

    /// Copies the running time into the time registers' RAM.
    fn snapshot(&mut self, now: u64) {
        for r in [SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR] {
            self.ram[usize::from(r)] = self.read_time_register(r, now);
        }
    }

    fn write_data(&mut self, v: u8, ctx: &mut DeviceCtx<'_>) {
        let now = ctx.now_ns;
        let reg = self.index;
        let set = self.b() & reg_b::SET != 0;
        match reg {
            r if is_time(r) && !set => {
                // Writing the running time sets it from now on.
                self.snapshot(now);
                self.ram[usize::from(r)] = v;
                self.take_written_time(now);
            }
            REG_A => self.ram[usize::from(REG_A)] = v & !reg_a::UIP,
            REG_B => {
                // SET also clears UIE (datasheet, register B).
                let v = if v & reg_b::SET != 0 { v & !reg_b::UIE } else { v };
                if !set && v & reg_b::SET != 0 {
                    self.snapshot(now);
                }
                self.ram[usize::from(REG_B)] = v;
                if set && v & reg_b::SET == 0 {
                    self.take_written_time(now);
                }
                self.update_irq(ctx);
            }
            REG_C | REG_D => {} // read-only
            _ => self.ram[usize::from(reg)] = v,
        }
    }
}

/// The registers that hold the running time and date.
fn is_time(reg: u8) -> bool {
    matches!(reg, SECONDS | MINUTES | HOURS | DAY_OF_WEEK..=YEAR)
}

fn second_of(now: u64, anchor: u64) -> u64 {
    now.saturating_sub(anchor) / NS
}

impl Device for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let v = match offset {
            INDEX => 0xff, // the index register is write-only
            _ => self.read_data(ctx),
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let Some(&v) = data.first() else { return };
        match offset {
            INDEX => {
                self.index = v & 0x7f;
                self.nmi_disabled = v & NMI_DISABLE != 0;
            }
            _ => self.write_data(v, ctx),
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.update_irq(ctx);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("irq8", self.interrupts)]
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

    /// 2024-02-29 23:59:58 UTC, a Thursday.
    const LEAP: u64 = 1_709_251_198;

    fn read(m: &TestMemory, rtc: &mut Rtc, now: u64, reg: u8) -> u8 {
        m.write_bytes(rtc, now, INDEX, &[reg]);
        m.read_bytes(rtc, now, DATA, 1)[0]
    }

    fn write(m: &TestMemory, rtc: &mut Rtc, now: u64, reg: u8, v: u8) {
        m.write_bytes(rtc, now, INDEX, &[reg]);
        m.write_bytes(rtc, now, DATA, &[v]);
    }

    #[test]
    fn calendar_arithmetic_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2100, 3, 1)), (2100, 3, 1));
        assert_eq!((to_bcd(59), from_bcd(0x59)), (0x59, 59));
    }

    #[test]
    fn time_and_date_in_bcd_then_binary_and_12_hour() {
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, None));
        let regs = [SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY];
        let bcd: Vec<u8> = regs.iter().map(|&r| read(&m, &mut rtc, 0, r)).collect();
        assert_eq!(bcd, [0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20]);
        // Two seconds later it is March 1st, a Friday.
        let later: Vec<u8> = regs[..7].iter().map(|&r| read(&m, &mut rtc, 2 * NS, r)).collect();
        assert_eq!(later, [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24]);
        write(&m, &mut rtc, 0, REG_B, reg_b::DM);
        assert_eq!(read(&m, &mut rtc, 0, SECONDS), 58, "binary");
        assert_eq!(read(&m, &mut rtc, 0, HOURS), 0x80 | 11, "12-hour: 11 PM");
    }

    #[test]
    fn set_freezes_the_clock_and_the_written_time_runs_from_its_release() {
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, None));
        write(&m, &mut rtc, 0, REG_B, reg_b::SET | reg_b::HOURS_24);
        for (reg, v) in
            [(HOURS, 0x08), (MINUTES, 0x30), (SECONDS, 0x00), (DAY_OF_MONTH, 0x15), (MONTH, 0x06), (YEAR, 0x25)]
        {
            write(&m, &mut rtc, NS, reg, v);
        }
        assert_eq!(read(&m, &mut rtc, 5 * NS, SECONDS), 0x00, "frozen while SET");
        write(&m, &mut rtc, 10 * NS, REG_B, reg_b::HOURS_24);
        assert_eq!(read(&m, &mut rtc, 13 * NS, SECONDS), 0x03);
        assert_eq!(read(&m, &mut rtc, 13 * NS, HOURS), 0x08);
        assert_eq!(read(&m, &mut rtc, 13 * NS, DAY_OF_WEEK), 0x01, "2025-06-15 is a Sunday");
    }

    #[test]
    fn uip_is_set_in_the_last_244_us_of_each_second() {
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, None));
        assert_eq!(read(&m, &mut rtc, NS - 244_001, REG_A), 0x26);
        assert_eq!(read(&m, &mut rtc, NS - 244_000, REG_A), 0x26 | reg_a::UIP);
        assert_eq!(read(&m, &mut rtc, NS, REG_A), 0x26);
        assert_eq!(read(&m, &mut rtc, 0, REG_D), reg_d::VRT);
    }

    #[test]
    fn index_port_keeps_the_nmi_bit_and_cmos_ram_reads_back() {
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, None));
        m.write_bytes(&mut rtc, 0, INDEX, &[NMI_DISABLE | 0x40]);
        assert!(rtc.nmi_disabled());
        m.write_bytes(&mut rtc, 0, DATA, &[0xa5]);
        assert_eq!(read(&m, &mut rtc, 0, 0x40), 0xa5);
        assert!(!rtc.nmi_disabled());
        write(&m, &mut rtc, 0, REG_D, 0);
        assert_eq!(read(&m, &mut rtc, 0, REG_D), reg_d::VRT, "read-only");
    }

    #[test]
    fn update_ended_interrupt_on_irq8_until_register_c_is_read() {
        let (rec, line) = Recorder::line(8);
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, Some(line)));
        m.write_bytes(&mut rtc, 0, INDEX, &[REG_B]);
        let e = m.write_bytes(&mut rtc, NS / 2, DATA, &[reg_b::UIE | reg_b::HOURS_24]);
        assert_eq!(e.wakes, [NS]);
        m.tick(&mut rtc, NS);
        assert_eq!(Recorder::take(&rec), [(8, true, NS)]);
        // PF is set whatever PIE says; only UF is enabled here.
        assert_eq!(read(&m, &mut rtc, NS + 1, REG_C), reg_c::IRQF | reg_c::PF | reg_c::UF);
        assert_eq!(Recorder::take(&rec), [(8, false, NS + 1)]);
        assert_eq!(read(&m, &mut rtc, NS + 2, REG_C), 0, "reading C cleared it");
    }

    #[test]
    fn periodic_flag_follows_the_rate_bits() {
        let (m, mut rtc) = (TestMemory::new(4096), Rtc::new(LEAP, None));
        // RS = 0110: 1024 Hz, 976562 ns.
        assert_eq!(rtc.period_ns(), Some(976_562));
        assert_eq!(read(&m, &mut rtc, 900_000, REG_C), 0);
        assert_eq!(read(&m, &mut rtc, 1_000_000, REG_C), reg_c::PF, "PF without PIE: no IRQF");
        write(&m, &mut rtc, 0, REG_A, reg_a::DV_32KHZ | 3);
        assert_eq!(rtc.period_ns(), Some(122_070), "RS 3: 8192 Hz");
    }
}

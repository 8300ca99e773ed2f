//! The 8254 programmable interval timer (Intel 8254 datasheet, order
//! 231164-005) as the PC wires it: three counters clocked at 1.193182 MHz
//! on ports 0x40-0x42, the control word register at 0x43; counter 0's OUT
//! drives ISA IRQ 0; counter 2's GATE and OUT are bits 0 and 5 of port
//! 0x61 (PC "port B": NMI status and control), with the speaker enable in
//! bit 1 and the refresh toggle in bit 4. Kernels calibrate the TSC by
//! counting down counter 2 and watching OUT2 there.
//!
//! Counting is a function of the device clock (`DeviceCtx::now_ns`): a
//! counter remembers when it was loaded, so reads are exact at any time
//! and nothing runs between accesses. Modes 0-5, binary and BCD, the
//! LSB/MSB/LSB-then-MSB access modes, the counter latch command and the
//! read-back command (count and status) are modelled. Counter 0 asks for a
//! wake-up at OUT's next rising edge and pulses IRQ 0 then (one pulse per
//! wake-up: periods a late wake-up skipped are lost, as interrupts are on
//! a PIC that was masked).

use crate::bus::{Device, DeviceCtx};
use crate::devices::isa_irq::IsaIrqLine;
use std::sync::{Arc, Mutex, MutexGuard};

/// The input clock, Hz (PC: 14.31818 MHz / 12).
pub const PIT_HZ: u64 = 1_193_182;
/// Port offsets from 0x40.
pub const COUNTER0: u64 = 0;
pub const COUNTER2: u64 = 2;
pub const CONTROL: u64 = 3;

/// Control word fields (datasheet, "Control Word Format").
pub mod control {
    pub const SC_SHIFT: u32 = 6;
    /// SC = 11: the read-back command.
    pub const READ_BACK: u8 = 3;
    pub const RW_SHIFT: u32 = 4;
    /// RW = 00: the counter latch command.
    pub const LATCH: u8 = 0;
    pub const RW_LSB: u8 = 1;
    pub const RW_MSB: u8 = 2;
    pub const RW_WORD: u8 = 3;
    pub const MODE_SHIFT: u32 = 1;
    pub const BCD: u8 = 1;
    /// Read-back: COUNT and STATUS are active low; bits 3:1 pick counters.
    pub const RB_NOT_COUNT: u8 = 1 << 5;
    pub const RB_NOT_STATUS: u8 = 1 << 4;
}

/// Status byte bits (read-back).
pub mod status {
    pub const OUTPUT: u8 = 1 << 7;
    pub const NULL_COUNT: u8 = 1 << 6;
}

/// Port 0x61 bits.
pub mod port_b {
    pub const GATE2: u8 = 1 << 0;
    pub const SPEAKER: u8 = 1 << 1;
    /// Toggles every refresh cycle, 15.085 us (PC/AT).
    pub const REFRESH: u8 = 1 << 4;
    pub const OUT2: u8 = 1 << 5;
    pub const WRITABLE: u8 = 0x0f;
    pub const REFRESH_NS: u64 = 15_085;
}

/// Nanoseconds for `clocks` input clocks, rounded up.
fn ns_for(clocks: u64) -> u64 {
    ((u128::from(clocks) * 1_000_000_000).div_ceil(u128::from(PIT_HZ))) as u64
}

fn clocks_in(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / 1_000_000_000) as u64
}

fn bcd_to_bin(v: u16) -> u64 {
    (0..4).rev().fold(0, |acc, i| acc * 10 + u64::from((v >> (4 * i)) & 0xf).min(9))
}

fn bin_to_bcd(v: u64) -> u16 {
    (0..4).fold(0, |acc, i| acc | (((v / 10u64.pow(i)) % 10) as u16) << (4 * i))
}

/// One counter.
#[derive(Debug, Clone, Default)]
struct Counter {
    mode: u8,
    rw: u8,
    bcd: bool,
    /// The count register as written (CR).
    count: u16,
    /// A count is loaded and counting (CE running).
    loaded: bool,
    /// When counting started (or a gate trigger restarted it), ns.
    start: u64,
    /// While GATE is low in a mode it suspends: when it went low.
    paused: Option<u64>,
    gate: bool,
    /// Modes 1 and 5 count only after a GATE trigger.
    triggered: bool,
    /// Modes 4 and 5: this count's one-clock strobe has reached IRQ 0.
    strobed: bool,
    /// LSB/MSB sequencing of writes and of unlatched reads.
    write_msb: bool,
    read_msb: bool,
    /// The low byte written first in LSB-then-MSB mode.
    low: u8,
    latched: Option<u16>,
    latched_msb: bool,
    status: Option<u8>,
}

impl Counter {
    /// The count's length in clocks: 0 means 2^16 (10^4 in BCD).
    fn period(&self) -> u64 {
        match (self.bcd, self.count) {
            (false, 0) => 0x1_0000,
            (true, 0) => 10_000,
            (false, n) => u64::from(n),
            (true, n) => bcd_to_bin(n).max(1),
        }
    }

    /// Clocks counted since loading (or the last trigger), not counting
    /// time with GATE low in modes 0 and 4.
    fn elapsed(&self, now: u64) -> Option<u64> {
        if !self.loaded || (matches!(self.mode, 1 | 5) && !self.triggered) {
            return None;
        }
        let until = self.paused.unwrap_or(now).max(self.start);
        Some(clocks_in(until - self.start))
    }

    /// The counting element's value at `now`.
    fn value(&self, now: u64) -> u16 {
        let n = self.period();
        let Some(d) = self.elapsed(now) else { return self.count };
        let v = match self.mode {
            2 => n - d % n,
            3 => n - (2 * d) % n,
            // Modes 0, 1, 4, 5 count on past zero, wrapping.
            _ => (i128::from(n) - i128::from(d)).rem_euclid(if self.bcd { 10_000 } else { 0x1_0000 }) as u64,
        };
        if self.bcd {
            bin_to_bcd(v % 10_000)
        } else {
            v as u16
        }
    }

    /// OUT at `now` (datasheet, "Mode Definitions").
    fn out(&self, now: u64) -> bool {
        let n = self.period();
        let Some(d) = self.elapsed(now) else {
            // Before a count (or a trigger): mode 0 holds OUT low, the
            // others high.
            return self.mode != 0;
        };
        match self.mode {
            0 => d >= n,
            1 => d >= n,
            2 => !self.gate || n == 1 || d % n != n - 1,
            3 => !self.gate || d % n < n.div_ceil(2),
            _ => d != n, // 4, 5: one clock low at terminal count
        }
    }

    /// Modes 4 and 5: the one-clock low strobe at terminal count is over
    /// and not yet delivered. Sampled OUT is high again by then, so the
    /// caller must pulse the line itself; each count strobes once.
    fn take_strobe(&mut self, now: u64) -> bool {
        let due = matches!(self.mode, 4 | 5) && !self.strobed && self.paused.is_none();
        let over = due && self.elapsed(now).is_some_and(|d| d > self.period());
        self.strobed |= over;
        over
    }

    /// When OUT next rises after `now`, ns.
    fn next_rising_edge(&self, now: u64) -> Option<u64> {
        let n = self.period();
        let d = self.elapsed(now)?;
        if self.paused.is_some() {
            return None;
        }
        let at = match self.mode {
            0 | 1 if d < n => n,
            2 | 3 if self.gate => (d / n + 1) * n,
            4 | 5 if d <= n => n + 1,
            _ => return None,
        };
        Some(self.start.saturating_add(ns_for(at)))
    }

    fn status_byte(&self, now: u64) -> u8 {
        let out = if self.out(now) { status::OUTPUT } else { 0 };
        let null = if self.loaded { 0 } else { status::NULL_COUNT };
        out | null | self.rw << control::RW_SHIFT | self.mode << control::MODE_SHIFT | u8::from(self.bcd)
    }

    fn program(&mut self, word: u8) {
        let gate = self.gate;
        *self = Counter {
            rw: (word >> control::RW_SHIFT) & 3,
            // Modes 6 and 7 are modes 2 and 3 (X10, X11).
            mode: match (word >> control::MODE_SHIFT) & 7 {
                6 => 2,
                7 => 3,
                m => m,
            },
            bcd: word & control::BCD != 0,
            gate,
            ..Counter::default()
        };
    }

    fn latch(&mut self, now: u64) {
        if self.latched.is_none() {
            self.latched = Some(self.value(now));
            self.latched_msb = false;
        }
    }

    fn load(&mut self, count: u16, now: u64) {
        self.count = count;
        self.loaded = true;
        self.start = now;
        self.strobed = false;
        self.paused = (!self.gate && matches!(self.mode, 0 | 4)).then_some(now);
    }

    fn write(&mut self, v: u8, now: u64) {
        match self.rw {
            control::RW_LSB => self.load(u16::from(v), now),
            control::RW_MSB => self.load(u16::from(v) << 8, now),
            _ if !self.write_msb => {
                self.low = v;
                self.write_msb = true;
                if self.mode == 0 {
                    // Writing the first byte stops the count in mode 0.
                    self.loaded = false;
                }
            }
            _ => {
                self.write_msb = false;
                self.load(u16::from(v) << 8 | u16::from(self.low), now);
            }
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        let (value, msb) = match self.latched {
            Some(v) => (v, &mut self.latched_msb),
            None => (self.value(now), &mut self.read_msb),
        };
        let byte = match self.rw {
            control::RW_LSB => value as u8,
            control::RW_MSB => (value >> 8) as u8,
            _ => {
                let b = if *msb { (value >> 8) as u8 } else { value as u8 };
                *msb = !*msb;
                b
            }
        };
        let done = self.rw != control::RW_WORD || !self.latched_msb;
        if self.latched.is_some() && done {
            self.latched = None;
        }
        byte
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        match (self.gate, gate) {
            (false, true) => {
                if let Some(at) = self.paused.take() {
                    self.start = self.start.saturating_add(now.saturating_sub(at));
                // modes 0 and 4 resume
                } else if self.loaded {
                    // Modes 1, 2, 3, 5: a rising GATE (re)starts the count.
                    self.start = now;
                    self.triggered = true;
                    self.strobed = false;
                }
            }
            (true, false) if self.loaded && matches!(self.mode, 0 | 4) => self.paused = Some(now),
            _ => {}
        }
        self.gate = gate;
    }
}

/// The three counters and port 0x61's own bits.
#[derive(Debug)]
pub struct Pit {
    counters: [Counter; 3],
    speaker: bool,
    irq0: Option<IsaIrqLine>,
    /// IRQ 0's level as last driven.
    irq_level: bool,
    ticks: u64,
}

impl Pit {
    /// A PIT whose counter 0 drives `irq0` (none: unconnected). Counters 0
    /// and 1 have GATE tied high; counter 2's GATE starts low.
    pub fn new(irq0: Option<IsaIrqLine>) -> Pit {
        let mut counters: [Counter; 3] = Default::default();
        counters[0].gate = true;
        counters[1].gate = true;
        Pit { counters, speaker: false, irq0, irq_level: false, ticks: 0 }
    }

    /// Counter `i`'s count at `now` as a read would see it.
    pub fn count(&self, i: usize, now: u64) -> u16 {
        self.counters[i % 3].value(now)
    }

    /// Counter `i`'s OUT at `now`.
    pub fn out(&self, i: usize, now: u64) -> bool {
        self.counters[i % 3].out(now)
    }

    fn write_control(&mut self, word: u8, now: u64) {
        let sc = word >> control::SC_SHIFT;
        if sc == control::READ_BACK {
            for i in (0..3).filter(|i| word & (2 << i) != 0) {
                let c = &mut self.counters[i];
                if word & control::RB_NOT_STATUS == 0 && c.status.is_none() {
                    c.status = Some(c.status_byte(now));
                }
                if word & control::RB_NOT_COUNT == 0 {
                    c.latch(now);
                }
            }
        } else if (word >> control::RW_SHIFT) & 3 == control::LATCH {
            self.counters[usize::from(sc)].latch(now);
        } else {
            self.counters[usize::from(sc)].program(word);
        }
    }

    /// Drives IRQ 0 from counter 0's OUT: a pulse for a rising edge due by
    /// now, then OUT's level; asks for the next edge.
    fn update_irq(&mut self, ctx: &mut DeviceCtx<'_>) {
        let Some(line) = self.irq0.clone() else { return };
        let now = ctx.now_ns;
        let out = self.counters[0].out(now);
        if out && !self.irq_level {
            self.ticks += 1;
        }
        if out != self.irq_level {
            line.set(out, ctx);
            self.irq_level = out;
        }
        if let Some(at) = self.counters[0].next_rising_edge(now) {
            ctx.wake_at(at);
        }
    }

    fn tick_irq(&mut self, ctx: &mut DeviceCtx<'_>) {
        let Some(line) = self.irq0.clone() else { return };
        let c = &mut self.counters[0];
        let periodic = matches!(c.mode, 2 | 3) && c.elapsed(ctx.now_ns).is_some_and(|d| d >= c.period());
        let strobe = c.take_strobe(ctx.now_ns);
        if (periodic || strobe) && self.irq_level && c.out(ctx.now_ns) {
            // A whole period (or a mode 4/5 strobe) passed: OUT fell and
            // rose in between.
            line.set(false, ctx);
            self.irq_level = false;
        }
        self.update_irq(ctx);
    }

    pub fn read_port(&mut self, port: u64, ctx: &mut DeviceCtx<'_>) -> u8 {
        match port {
            0..=2 => self.counters[port as usize].read(ctx.now_ns),
            _ => 0xff, // the control word register is write-only
        }
    }

    pub fn write_port(&mut self, port: u64, v: u8, ctx: &mut DeviceCtx<'_>) {
        match port {
            0..=2 => self.counters[port as usize].write(v, ctx.now_ns),
            CONTROL => self.write_control(v, ctx.now_ns),
            _ => return,
        }
        self.update_irq(ctx);
    }

    pub fn read_port_b(&self, now: u64) -> u8 {
        let c2 = &self.counters[2];
        let refresh = if (now / port_b::REFRESH_NS) & 1 != 0 { port_b::REFRESH } else { 0 };
        let out2 = if c2.out(now) { port_b::OUT2 } else { 0 };
        u8::from(c2.gate) | u8::from(self.speaker) << 1 | refresh | out2
    }

    pub fn write_port_b(&mut self, v: u8, now: u64) {
        self.speaker = v & port_b::SPEAKER != 0;
        self.counters[2].set_gate(v & port_b::GATE2 != 0, now);
    }
}

/// The PIT shared between its two faces.
pub type SharedPit = Arc<Mutex<Pit>>;

fn lock(p: &SharedPit) -> MutexGuard<'_, Pit> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ports 0x40-0x43; the face that runs counter 0's timer.
pub struct PitPorts(pub SharedPit);

impl Device for PitPorts {
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let mut pit = lock(&self.0);
        for (i, d) in data.iter_mut().enumerate() {
            *d = pit.read_port(offset + i as u64, ctx);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let mut pit = lock(&self.0);
        for (i, &v) in data.iter().enumerate() {
            pit.write_port(offset + i as u64, v, ctx);
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        lock(&self.0).tick_irq(ctx);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("irq0_edges", lock(&self.0).ticks)]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Port 0x61.
pub struct PortB(pub SharedPit);

impl Device for PortB {
    fn read(&mut self, _: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let v = lock(&self.0).read_port_b(ctx.now_ns);
        data.fill(v);
    }

    fn write(&mut self, _: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        if let Some(&v) = data.first() {
            lock(&self.0).write_port_b(v & port_b::WRITABLE, ctx.now_ns);
        }
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

    fn word(sc: u8, rw: u8, mode: u8, bcd: bool) -> u8 {
        sc << 6 | rw << 4 | mode << 1 | u8::from(bcd)
    }

    fn setup() -> (TestMemory, PitPorts, PortB) {
        let pit = Arc::new(Mutex::new(Pit::new(None)));
        (TestMemory::new(4096), PitPorts(pit.clone()), PortB(pit))
    }

    /// Byte writes to one port (a wider access would reach the next
    /// ports, as on the ISA bus).
    fn out(m: &TestMemory, p: &mut dyn Device, now: u64, port: u64, bytes: &[u8]) -> crate::devices::testing::Effects {
        let mut last = None;
        for &b in bytes {
            last = Some(m.write_bytes(p, now, port, &[b]));
        }
        last.expect("at least one byte")
    }

    /// Clocks to ns, exactly as the model counts.
    fn t(clocks: u64) -> u64 {
        ns_for(clocks)
    }

    #[test]
    fn mode0_counts_down_from_the_written_count_in_lsb_msb_order() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_WORD, 0, false)]);
        m.write_bytes(&mut p, 0, COUNTER0, &[0x34]);
        m.write_bytes(&mut p, 0, COUNTER0, &[0x12]);
        let (lo, hi) = (m.read_bytes(&mut p, t(0x34), COUNTER0, 1)[0], m.read_bytes(&mut p, t(0x34), COUNTER0, 1)[0]);
        assert_eq!(u16::from_le_bytes([lo, hi]), 0x1200);
        let pit = lock(&p.0);
        assert!(!pit.out(0, t(0x1233)));
        assert!(pit.out(0, t(0x1234)), "OUT rises at terminal count and stays");
        assert_eq!(pit.count(0, t(0x1235)), 0xffff, "and the count wraps");
    }

    #[test]
    fn counter_latch_freezes_the_value_until_both_bytes_are_read() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_WORD, 2, false)]);
        out(&m, &mut p, 0, COUNTER0, &[0x00, 0x10]); // 0x1000
        m.write_bytes(&mut p, t(0x100), CONTROL, &[word(0, control::LATCH, 0, false)]);
        assert_eq!(m.read_bytes(&mut p, t(0x800), COUNTER0, 1), [0x00]);
        assert_eq!(m.read_bytes(&mut p, t(0x900), COUNTER0, 1), [0x0f], "latched 0x0f00");
        assert_eq!(m.read_bytes(&mut p, t(0x900), COUNTER0, 1), [0x00], "live again: 0x0700");
        assert_eq!(m.read_bytes(&mut p, t(0x900), COUNTER0, 1), [0x07]);
    }

    #[test]
    fn mode2_rate_generator_reloads_and_pulses_out_low_for_one_clock() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_LSB, 2, false)]);
        m.write_bytes(&mut p, 0, COUNTER0, &[100]);
        let pit = lock(&p.0);
        assert_eq!((pit.count(0, t(0)), pit.count(0, t(99)), pit.count(0, t(100))), (100, 1, 100));
        assert!(pit.out(0, t(98)) && !pit.out(0, t(99)) && pit.out(0, t(100)));
    }

    #[test]
    fn mode3_square_wave_is_high_for_the_first_half() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_LSB, 3, false)]);
        m.write_bytes(&mut p, 0, COUNTER0, &[10]);
        let pit = lock(&p.0);
        let outs: Vec<bool> = (0..12).map(|c| pit.out(0, t(c))).collect();
        assert_eq!(outs, [true, true, true, true, true, false, false, false, false, false, true, true]);
        assert_eq!((pit.count(0, t(0)), pit.count(0, t(1)), pit.count(0, t(4))), (10, 8, 2), "counts by two");
    }

    #[test]
    fn msb_only_and_bcd_counting() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_MSB, 0, true)]);
        m.write_bytes(&mut p, 0, COUNTER0, &[0x12]); // BCD 1200
        assert_eq!(m.read_bytes(&mut p, t(1), COUNTER0, 1), [0x11], "1199: MSB 0x11");
        assert!(!lock(&p.0).out(0, t(1199)) && lock(&p.0).out(0, t(1200)));
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let (m, mut p, _) = setup();
        m.write_bytes(&mut p, 0, CONTROL, &[word(2, control::RW_WORD, 0, false)]);
        // Status before a count: OUT low (mode 0), NULL COUNT set.
        m.write_bytes(&mut p, 0, CONTROL, &[0xc0 | control::RB_NOT_COUNT | 0x08]);
        assert_eq!(m.read_bytes(&mut p, 0, COUNTER2, 1), [status::NULL_COUNT | 0x30]);
        out(&m, &mut p, 0, COUNTER2, &[0xff, 0xff]);
        let mut b = PortB(p.0.clone());
        m.write_bytes(&mut b, 0, 0, &[port_b::GATE2]);
        m.write_bytes(&mut p, t(5), CONTROL, &[0xc0 | 0x08]); // count and status
        assert_eq!(m.read_bytes(&mut p, t(9), COUNTER2, 1), [0x30], "status first, count loaded");
        let count = [m.read_bytes(&mut p, t(9), COUNTER2, 1)[0], m.read_bytes(&mut p, t(9), COUNTER2, 1)[0]];
        assert_eq!(count, [0xfa, 0xff], "then the count at the latch");
    }

    #[test]
    fn port_0x61_gates_counter_2_and_shows_out2() {
        let (m, mut p, mut b) = setup();
        m.write_bytes(&mut b, 0, 0, &[0]);
        m.write_bytes(&mut p, 0, CONTROL, &[word(2, control::RW_WORD, 0, false)]);
        out(&m, &mut p, 0, COUNTER2, &[0x10, 0x00]); // 16 clocks
        assert_eq!(lock(&p.0).count(2, t(50)), 16, "GATE low: counting suspended");
        m.write_bytes(&mut b, t(50), 0, &[port_b::GATE2 | port_b::SPEAKER | 0xf0]);
        assert_eq!(m.read_bytes(&mut b, t(60), 0, 1)[0] & 0x2f, port_b::GATE2 | port_b::SPEAKER);
        assert_eq!(m.read_bytes(&mut b, t(70), 0, 1)[0] & port_b::OUT2, port_b::OUT2);
        // The refresh bit toggles every 15.085 us.
        let a = m.read_bytes(&mut b, 0, 0, 1)[0] & port_b::REFRESH;
        let c = m.read_bytes(&mut b, 15_085, 0, 1)[0] & port_b::REFRESH;
        assert_ne!(a, c);
    }

    #[test]
    fn counter0_pulses_irq0_each_period_at_its_wake_ups() {
        let (rec, line) = Recorder::line(0);
        let pit = Arc::new(Mutex::new(Pit::new(Some(line))));
        let (m, mut p) = (TestMemory::new(4096), PitPorts(pit.clone()));
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_WORD, 2, false)]);
        let e = out(&m, &mut p, 0, COUNTER0, &[0xa9, 0x04]); // 1193: ~1 kHz
        assert_eq!(e.wakes, [t(1193)]);
        assert_eq!(Recorder::take(&rec), [(0, true, 0)], "OUT high once counting");
        let e = m.tick(&mut p, t(1193));
        assert_eq!(Recorder::take(&rec), [(0, false, t(1193)), (0, true, t(1193))]);
        assert_eq!(e.wakes, [t(2 * 1193)]);
        assert_eq!(p.counters(), [("irq0_edges", 2)]);
    }

    #[test]
    fn mode0_one_shot_raises_irq0_once() {
        let (rec, line) = Recorder::line(0);
        let pit = Arc::new(Mutex::new(Pit::new(Some(line))));
        let (m, mut p) = (TestMemory::new(4096), PitPorts(pit));
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_LSB, 0, false)]);
        let e = m.write_bytes(&mut p, 0, COUNTER0, &[50]);
        assert_eq!(e.wakes, [t(50)]);
        assert_eq!(m.tick(&mut p, t(50)).wakes, Vec::<u64>::new());
        assert_eq!(Recorder::take(&rec), [(0, true, t(50))]);
        assert_eq!(m.tick(&mut p, t(500)).wakes, Vec::<u64>::new());
        assert_eq!(Recorder::take(&rec), []);
    }

    /// Linux's PIT clockevent in one-shot mode (drivers/clocksource/i8253.c,
    /// `pit_set_oneshot` then `pit_next_event`): mode 4, a new count per
    /// event. Each count's strobe is a rising edge on IRQ 0, though OUT is
    /// already high again whenever the VMM looks.
    #[test]
    fn mode4_strobes_irq0_once_per_count_written() {
        let (rec, line) = Recorder::line(0);
        let pit = Arc::new(Mutex::new(Pit::new(Some(line))));
        let (m, mut p) = (TestMemory::new(4096), PitPorts(pit));
        m.write_bytes(&mut p, 0, CONTROL, &[word(0, control::RW_WORD, 4, false)]);
        let e = out(&m, &mut p, 0, COUNTER0, &[100, 0]);
        assert_eq!(e.wakes, [t(101)]);
        assert_eq!(Recorder::take(&rec), [(0, true, 0)]);
        assert_eq!(m.tick(&mut p, t(101)).wakes, Vec::<u64>::new());
        assert_eq!(Recorder::take(&rec), [(0, false, t(101)), (0, true, t(101))]);
        let e = out(&m, &mut p, t(200), COUNTER0, &[50, 0]);
        assert_eq!(e.wakes, [t(200) + t(51)]);
        m.tick(&mut p, t(200) + t(51));
        assert_eq!(Recorder::take(&rec), [(0, false, t(200) + t(51)), (0, true, t(200) + t(51))]);
        m.tick(&mut p, t(1000));
        assert_eq!(Recorder::take(&rec), [], "one strobe per count");
        assert_eq!(p.counters(), [("irq0_edges", 3)]);
    }
}

//! An Intel 82540EM (e1000) as a minimal driver sees it (register and
//! descriptor layouts: [`exitlab_guest::nic::e1000`]): legacy transmit and
//! receive descriptor rings, the EEPROM word reads that give the MAC, the
//! interrupt cause registers with throttling (ITR), and the link. Every
//! register access the guest makes is a trapped MMIO exit: this is full
//! emulation, the slow path of experiment E2.
//!
//! A bad descriptor (its buffer outside memory, a frame too long) is
//! dropped and counted, as the hardware drops what it cannot transfer;
//! writes to registers the model does not have are ignored and counted.

use super::wire::Wire;
use crate::bus::{Device, DeviceCtx};
use exitlab_guest::nic::{e1000::*, GUEST_MAC};

/// Frames longer than this (jumbo) are not supported by the model: dropped.
const MAX_FRAME: usize = 16 * 1024;

/// Transmit descriptors processed per doorbell or tick: the 82540EM's
/// on-chip transmit descriptor cache holds 64 (8254x Software Developer's
/// Manual, 3.4). The rest of a ring the guest chose (up to 65,536
/// descriptors of 16 KiB each) waits for the next tick, so no single exit
/// does work proportional to TDLEN.
const TX_BURST: u32 = 64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E1000Stats {
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Frames that found no free receive descriptor (MPC).
    pub rx_missed: u64,
    /// Descriptors dropped: unreachable, or frames too long.
    pub dropped: u64,
    pub interrupts: u64,
    pub bad_registers: u64,
}

#[derive(Default)]
struct Ring {
    base: u64,
    len: u32,
    head: u32,
    tail: u32,
}

impl Ring {
    /// Descriptors in the ring; 0 when it is not set up.
    fn entries(&self) -> u32 {
        self.len / DESC as u32
    }

    fn desc(&self, index: u32) -> u64 {
        self.base + u64::from(index) * DESC
    }
}

pub struct E1000 {
    ctrl: u32,
    icr: u32,
    ims: u32,
    itr: u32,
    rctl: u32,
    tctl: u32,
    tipg: u32,
    eerd: u32,
    mpc: u32,
    ral: u32,
    rah: u32,
    mta: [u32; (MTA_LEN / 4) as usize],
    tx: Ring,
    rx: Ring,
    eeprom: [u16; 64],
    /// A frame gathered from descriptors without EOP so far.
    gathering: Vec<u8>,
    last_interrupt_ns: Option<u64>,
    /// An interrupt ITR held back.
    throttled: bool,
    wire: Wire,
    stats: E1000Stats,
}

impl E1000 {
    /// A NIC whose cable has `wire_delay_ns` to the echo peer.
    pub fn new(wire_delay_ns: u64) -> E1000 {
        let mut eeprom = [0u16; 64];
        for (i, w) in GUEST_MAC.chunks(2).enumerate() {
            eeprom[i] = u16::from_le_bytes([w[0], w[1]]);
        }
        E1000 {
            ctrl: 0,
            icr: 0,
            ims: 0,
            itr: 0,
            rctl: 0,
            tctl: 0,
            tipg: 0,
            eerd: 0,
            mpc: 0,
            ral: 0,
            rah: 0,
            mta: [0; (MTA_LEN / 4) as usize],
            tx: Ring::default(),
            rx: Ring::default(),
            eeprom,
            gathering: Vec::new(),
            last_interrupt_ns: None,
            throttled: false,
            wire: Wire::new(wire_delay_ns),
            stats: E1000Stats::default(),
        }
    }

    pub fn stats(&self) -> E1000Stats {
        self.stats
    }

    fn reset(&mut self) {
        let wire = std::mem::take(&mut self.wire);
        let stats = self.stats;
        *self = E1000 { wire, stats, ..E1000::new(0) };
    }

    /// Whether descriptors wait between TDH and TDT in a ring that can send.
    fn tx_pending(&self) -> bool {
        let n = self.tx.entries();
        n != 0 && self.tctl & TCTL_EN != 0 && self.tx.head < n && self.tx.tail < n && self.tx.head != self.tx.tail
    }

    /// Sends the descriptors between TDH and TDT, at most [`TX_BURST`] of
    /// them; with more left, asks for a tick now to go on.
    fn transmit(&mut self, ctx: &mut DeviceCtx<'_>) {
        if !self.tx_pending() {
            return;
        }
        let n = self.tx.entries();
        let mut sent = false;
        for _ in 0..TX_BURST {
            if self.tx.head == self.tx.tail {
                break;
            }
            let at = self.tx.desc(self.tx.head);
            self.tx.head = (self.tx.head + 1) % n;
            sent = true;
            let mut d = [0u8; DESC as usize];
            if ctx.dma.read(at, &mut d).is_err() {
                self.stats.dropped += 1;
                continue;
            }
            let buffer = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            let len = usize::from(u16::from_le_bytes([d[8], d[9]]));
            let cmd = d[TX_CMD as usize];
            let start = self.gathering.len();
            if start + len > MAX_FRAME {
                self.gathering.clear();
                self.stats.dropped += 1;
                continue;
            }
            self.gathering.resize(start + len, 0);
            if ctx.dma.read(buffer, &mut self.gathering[start..]).is_err() {
                self.gathering.clear();
                self.stats.dropped += 1;
                continue;
            }
            if cmd & CMD_EOP != 0 {
                if let Some(arrival) = self.wire.send(ctx.now_ns, &self.gathering) {
                    ctx.wake_at(arrival);
                }
                self.gathering.clear();
                self.stats.tx_frames += 1;
            }
            if cmd & CMD_RS != 0 && ctx.dma.write(at + TX_STA, &[STA_DD]).is_err() {
                self.stats.dropped += 1;
            }
        }
        if sent {
            self.cause(ICR_TXDW, ctx);
        }
        if self.tx_pending() {
            ctx.wake_at(ctx.now_ns);
        }
    }

    /// Takes the frames that have arrived into free receive descriptors;
    /// true when any was (the interrupt is then dealt with).
    fn receive(&mut self, ctx: &mut DeviceCtx<'_>) -> bool {
        let mut any = false;
        while let Some(frame) = self.wire.arrived(ctx.now_ns) {
            let n = self.rx.entries();
            if self.rctl & RCTL_EN == 0 || n == 0 || self.rx.head >= n || self.rx.head == self.rx.tail {
                self.mpc = self.mpc.saturating_add(1);
                self.stats.rx_missed += 1;
                continue;
            }
            let at = self.rx.desc(self.rx.head);
            self.rx.head = (self.rx.head + 1) % n;
            let mut buffer = [0u8; 8];
            let len = frame.len().min(RX_BUFFER as usize);
            let ok = ctx.dma.read(at, &mut buffer).is_ok()
                && frame.len() <= RX_BUFFER as usize
                && ctx.dma.write(u64::from_le_bytes(buffer), &frame[..len]).is_ok();
            if !ok {
                self.stats.dropped += 1;
                continue;
            }
            let mut wb = [0u8; 8];
            wb[..2].copy_from_slice(&(len as u16).to_le_bytes());
            wb[4] = STA_DD | RX_EOP;
            if ctx.dma.write(at + DESC_LEN, &wb).is_err() {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.rx_frames += 1;
            any = true;
        }
        if any {
            self.cause(ICR_RXT0, ctx);
        }
        if let Some(t) = self.wire.next_arrival() {
            ctx.wake_at(t);
        }
        any
    }

    /// Records interrupt causes and interrupts if they are unmasked.
    fn cause(&mut self, bits: u32, ctx: &mut DeviceCtx<'_>) {
        self.icr |= bits;
        self.interrupt(ctx);
    }

    /// Sends the interrupt message now, or when ITR's minimum interval
    /// (in 256 ns units) since the last one has passed.
    fn interrupt(&mut self, ctx: &mut DeviceCtx<'_>) {
        if self.icr & self.ims == 0 {
            self.throttled = false;
            return;
        }
        let interval = u64::from(self.itr & 0xffff) * 256;
        if let Some(last) = self.last_interrupt_ns.filter(|&l| ctx.now_ns < l + interval) {
            self.throttled = true;
            ctx.wake_at(last + interval);
            return;
        }
        self.throttled = false;
        self.last_interrupt_ns = Some(ctx.now_ns);
        self.stats.interrupts += 1;
        ctx.interrupt(0, ctx.now_ns);
    }

    fn register(&mut self, offset: u64) -> Option<u32> {
        Some(match offset {
            CTRL => self.ctrl,
            STATUS => STATUS_FD | STATUS_LU,
            EERD => self.eerd,
            ICR => std::mem::take(&mut self.icr),
            ITR => self.itr,
            IMS => self.ims,
            RCTL => self.rctl,
            TCTL => self.tctl,
            TIPG => self.tipg,
            RDBAL => self.rx.base as u32,
            RDBAH => (self.rx.base >> 32) as u32,
            RDLEN => self.rx.len,
            RDH => self.rx.head,
            RDT => self.rx.tail,
            TDBAL => self.tx.base as u32,
            TDBAH => (self.tx.base >> 32) as u32,
            TDLEN => self.tx.len,
            TDH => self.tx.head,
            TDT => self.tx.tail,
            MPC => std::mem::take(&mut self.mpc),
            RAL0 => self.ral,
            RAH0 => self.rah,
            o if (MTA..MTA + MTA_LEN).contains(&o) => self.mta[((o - MTA) / 4) as usize],
            _ => return None,
        })
    }
}

fn low(base: u64, v: u32) -> u64 {
    base & !0xffff_ffff | u64::from(v)
}

fn high(base: u64, v: u32) -> u64 {
    base & 0xffff_ffff | u64::from(v) << 32
}

impl Device for E1000 {
    fn read(&mut self, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        match (offset % 4, data.len(), self.register(offset)) {
            (0, 4, Some(v)) => data.copy_from_slice(&v.to_le_bytes()),
            _ => {
                self.stats.bad_registers += 1;
                data.fill(0xff);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.stats.bad_registers += 1;
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            CTRL if v & CTRL_RST != 0 => self.reset(),
            CTRL => self.ctrl = v,
            EERD if v & EERD_START != 0 => {
                let addr = (v >> 8) & 0xff;
                let word = self.eeprom.get(addr as usize).copied().unwrap_or(0);
                self.eerd = u32::from(word) << 16 | addr << 8 | EERD_DONE;
            }
            EERD => {}
            ICS => self.cause(v, ctx),
            ITR => self.itr = v & 0xffff,
            IMS => {
                self.ims |= v;
                self.interrupt(ctx);
            }
            IMC => self.ims &= !v,
            ICR => self.icr &= !v,
            RCTL => {
                self.rctl = v;
                self.receive(ctx);
            }
            TCTL => self.tctl = v,
            TIPG => self.tipg = v,
            RDBAL => self.rx.base = low(self.rx.base, v & !0xf),
            RDBAH => self.rx.base = high(self.rx.base, v),
            RDLEN => self.rx.len = v & 0x000f_ff80,
            RDH => self.rx.head = v & 0xffff,
            RDT => {
                self.rx.tail = v & 0xffff;
                self.receive(ctx);
            }
            TDBAL => self.tx.base = low(self.tx.base, v & !0xf),
            TDBAH => self.tx.base = high(self.tx.base, v),
            TDLEN => self.tx.len = v & 0x000f_ff80,
            TDH => self.tx.head = v & 0xffff,
            TDT => {
                self.tx.tail = v & 0xffff;
                self.transmit(ctx);
            }
            RAL0 => self.ral = v,
            RAH0 => self.rah = v,
            o if (MTA..MTA + MTA_LEN).contains(&o) && o.is_multiple_of(4) => self.mta[((o - MTA) / 4) as usize] = v,
            _ => self.stats.bad_registers += 1,
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.transmit(ctx);
        if !self.receive(ctx) && self.throttled {
            self.interrupt(ctx);
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("tx_frames", s.tx_frames),
            ("rx_frames", s.rx_frames),
            ("rx_missed", s.rx_missed),
            ("dropped", s.dropped),
            ("interrupts", s.interrupts),
            ("bad_registers", s.bad_registers),
        ]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::TestMemory;

    const TX_RING: u64 = 0x1000;
    const RX_RING: u64 = 0x2000;
    const TX_BUF: u64 = 0x4000;
    const RX_BUF: u64 = 0x8000;

    /// A card with 8-entry rings, receive buffers given, interrupts on
    /// receive; the wire's delay is 1 us.
    fn card(m: &TestMemory) -> E1000 {
        let mut nic = E1000::new(1_000);
        for i in 0..8u64 {
            m.put(RX_RING + i * DESC, &(RX_BUF + i * 2048).to_le_bytes());
        }
        for (reg, v) in [
            (TDBAL, TX_RING as u32),
            (TDLEN, 8 * DESC as u32),
            (RDBAL, RX_RING as u32),
            (RDLEN, 8 * DESC as u32),
            (RDT, 7),
            (TCTL, TCTL_EN),
            (RCTL, RCTL_EN),
            (IMS, ICR_RXT0),
        ] {
            m.write_reg(&mut nic, 0, reg, v);
        }
        nic
    }

    fn send(m: &TestMemory, nic: &mut E1000, now: u64, slot: u64, frame: &[u8], cmd: u8) -> Vec<u64> {
        let buf = TX_BUF + slot * 2048;
        m.put(buf, frame);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&buf.to_le_bytes());
        d[8..10].copy_from_slice(&(frame.len() as u16).to_le_bytes());
        d[TX_CMD as usize] = cmd;
        m.put(TX_RING + slot * DESC, &d);
        m.write_reg(nic, now, TDT, slot as u32 + 1).wakes
    }

    #[test]
    fn a_frame_goes_out_comes_back_and_interrupts_once() {
        let m = TestMemory::new(1 << 20);
        let mut nic = card(&m);
        let frame: Vec<u8> = (0..64).collect();
        assert_eq!(send(&m, &mut nic, 100, 0, &frame, CMD_EOP | CMD_RS), vec![2_100], "back after two delays");
        assert_eq!(m.get(TX_RING + TX_STA, 1), [STA_DD], "RS: status written back");
        assert_eq!(m.read_reg(&mut nic, 200, TDH), 1);
        assert!(m.tick(&mut nic, 2_099).interrupts.is_empty(), "not yet");
        let fx = m.tick(&mut nic, 2_100);
        assert_eq!(fx.interrupts, vec![(0, 2_100)]);
        let echo = m.get(RX_BUF, 64);
        assert_eq!((&echo[..6], &echo[6..12], &echo[12..]), (&frame[6..12], &frame[..6], &frame[12..]));
        assert_eq!(m.get(RX_RING + DESC_LEN, 5), [64, 0, 0, 0, STA_DD | RX_EOP]);
        assert_eq!(m.read_reg(&mut nic, 2_200, ICR), ICR_TXDW | ICR_RXT0, "both causes, TXDW masked");
        assert_eq!(m.read_reg(&mut nic, 2_200, ICR), 0, "reading ICR clears it");
        assert_eq!(m.read_reg(&mut nic, 2_200, RDH), 1);
        let s = nic.stats();
        assert_eq!((s.tx_frames, s.rx_frames, s.interrupts, s.dropped), (1, 1, 1, 0));
    }

    #[test]
    fn frames_gather_across_descriptors_until_eop() {
        let m = TestMemory::new(1 << 20);
        let mut nic = card(&m);
        m.put(TX_BUF + 2048, &[0xbb; 40]);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&(TX_BUF + 2048).to_le_bytes());
        d[8] = 40;
        m.put(TX_RING, &d);
        let frame = [0xaa; 30];
        assert_eq!(send(&m, &mut nic, 0, 1, &frame, CMD_EOP), vec![2_000]);
        m.tick(&mut nic, 2_000);
        assert_eq!(m.get(RX_RING + DESC_LEN, 2), [70, 0], "one frame of both buffers");
        assert_eq!(nic.stats().tx_frames, 1);
    }

    #[test]
    fn itr_spaces_interrupts() {
        let m = TestMemory::new(1 << 20);
        let mut nic = card(&m);
        m.write_reg(&mut nic, 0, ITR, 40); // 40 x 256 ns = 10.24 us
        send(&m, &mut nic, 0, 0, &[1; 60], CMD_EOP);
        send(&m, &mut nic, 1_000, 1, &[2; 60], CMD_EOP);
        assert_eq!(m.tick(&mut nic, 2_000).interrupts, vec![(0, 2_000)]);
        let held = m.tick(&mut nic, 3_000);
        assert!(held.interrupts.is_empty(), "within the interval");
        assert_eq!(held.wakes, vec![12_240], "asks to come back when it ends");
        assert_eq!(m.tick(&mut nic, 12_240).interrupts, vec![(0, 12_240)]);
    }

    #[test]
    fn bad_descriptors_are_dropped_and_counted() {
        let mut m = TestMemory::new(1 << 20);
        m.forbidden = 0x6000..0x7000;
        let mut nic = card(&m);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&0x6000u64.to_le_bytes());
        d[8] = 60;
        d[TX_CMD as usize] = CMD_EOP;
        m.put(TX_RING, &d);
        m.write_reg(&mut nic, 0, TDT, 1);
        assert_eq!((nic.stats().dropped, nic.stats().tx_frames), (1, 0));
        // A tail beyond the ring moves nothing; a reserved register is
        // ignored and counted.
        m.write_reg(&mut nic, 0, TDT, 99);
        assert_eq!(m.read_reg(&mut nic, 0, TDH), 1);
        m.write_reg(&mut nic, 0, 0x0f00, 5);
        assert_eq!(m.read_reg(&mut nic, 0, 0x0f00), u32::MAX);
        assert_eq!(nic.stats().bad_registers, 2);
        // No receive descriptor free: the frame is missed (MPC).
        m.write_reg(&mut nic, 0, RDT, 0);
        m.write_reg(&mut nic, 0, TDT, 2); // slot 1 holds zeros: a 0-byte frame, no EOP
        send(&m, &mut nic, 0, 2, &[3; 60], CMD_EOP);
        m.tick(&mut nic, 2_000);
        assert_eq!(m.read_reg(&mut nic, 2_000, MPC), 1);
        assert_eq!(nic.stats().rx_missed, 1);
    }

    #[test]
    fn a_ring_the_guest_made_huge_is_sent_a_burst_per_doorbell_and_tick() {
        let m = TestMemory::new(1 << 22);
        let mut nic = card(&m);
        // The slow fuzz input's TDLEN (57,304 descriptors, all zeros:
        // 0-byte buffers without EOP), and TDT one behind TDH.
        m.write_reg(&mut nic, 0, TDLEN, 0xfdfd_fdfd);
        assert_eq!(m.read_reg(&mut nic, 0, TDLEN), 0x000d_fd80);
        m.write_reg(&mut nic, 0, TDH, 1);
        let fx = m.write_reg(&mut nic, 0, TDT, 0);
        assert_eq!(m.read_reg(&mut nic, 0, TDH), 1 + TX_BURST, "one burst per doorbell");
        assert_eq!(fx.wakes, vec![0], "and a tick now for the rest");
        let fx = m.tick(&mut nic, 10);
        assert_eq!(m.read_reg(&mut nic, 10, TDH), 1 + 2 * TX_BURST, "one burst per tick");
        assert_eq!(fx.wakes, vec![10]);
        // A ring within a burst goes in one doorbell, and asks for no tick.
        let mut small = card(&m);
        m.write_reg(&mut small, 0, TDLEN, 0x80);
        let fx = m.write_reg(&mut small, 0, TDT, 7);
        assert_eq!(m.read_reg(&mut small, 0, TDH), 7);
        assert!(fx.wakes.is_empty(), "{:?}", fx.wakes);
    }

    #[test]
    fn the_eeprom_gives_the_mac() {
        let m = TestMemory::new(1 << 16);
        let mut nic = E1000::new(0);
        let mut mac = Vec::new();
        for word in 0..3u32 {
            m.write_reg(&mut nic, 0, EERD, word << 8 | EERD_START);
            let v = m.read_reg(&mut nic, 0, EERD);
            assert_ne!(v & EERD_DONE, 0);
            mac.extend_from_slice(&((v >> 16) as u16).to_le_bytes());
        }
        assert_eq!(mac, GUEST_MAC);
        assert_eq!(m.read_reg(&mut nic, 0, STATUS) & STATUS_LU, STATUS_LU);
    }
}

//! Network ping-pong over the two cards of experiment E2, with a minimal
//! driver for each: the guest keeps `window` frames in flight to the
//! VMM's echo peer, and for every echo it takes it records the round trip
//! (RDTSC at send, carried in the frame, against RDTSC at receive), gives
//! the buffer back and sends the next frame. It sleeps in HLT while
//! nothing has arrived, so the receive path is the interrupt path.
//!
//! Registers while the loops run: rdi the card's registers, r12 frames
//! sent, r13 frames received (r14/r15 belong to the workload's loop).

use crate::asm::{Asm, BuildError, Result};
use crate::layout::{DEVICE_VECTOR, PORT_DEBUG_EXIT};
use crate::machine::{Coalescing, GuestLog, KickDoorbell, MachineConfig, Nic};
use crate::nic::{self, e1000, virtio, ETHERTYPE, GUEST_MAC, PEER_MAC};
use crate::params::Params;
use exitlab_arch::bits::apic;
use iced_x86::code_asm::*;
use std::num::NonZeroU64;

/// Descriptors in every ring, and buffers per direction.
pub const RING: u64 = 64;
/// The most frames a driver keeps in flight (half the ring: receive
/// buffers never run out).
pub const MAX_WINDOW: u64 = RING / 2;
/// Guest-physical memory the drivers use, 20 MiB up.
const NET_BASE: u64 = 20 << 20;
/// e1000: the transmit and receive descriptor rings.
const E1000_TX_RING: u64 = NET_BASE;
const E1000_RX_RING: u64 = NET_BASE + 0x1000;
/// virtio: each queue's descriptor table, driver area and device area.
const RXQ_DESC: u64 = NET_BASE;
const RXQ_AVAIL: u64 = NET_BASE + 0x1000;
const RXQ_USED: u64 = NET_BASE + 0x2000;
const TXQ_DESC: u64 = NET_BASE + 0x4000;
const TXQ_AVAIL: u64 = NET_BASE + 0x5000;
const TXQ_USED: u64 = NET_BASE + 0x6000;
/// used_event in the driver area, avail_event in the device area.
const USED_EVENT: u64 = virtio::AVAIL_RING + 2 * RING;
const AVAIL_EVENT: u64 = virtio::USED_RING + virtio::USED_ELEM * RING;
/// One 2 KiB buffer per descriptor.
const BUFFER: u64 = 2048;
const TX_BUFFERS: u64 = NET_BASE + 0x1_0000;
const RX_BUFFERS: u64 = NET_BASE + 0x4_0000;
/// Round trips in TSC ticks, one u64 per frame received, in order.
pub const LATENCY_LOG: u64 = NET_BASE + 0x10_0000;
pub const LATENCY_LOG_ENTRIES: u64 = 0x2_0000;
/// e1000 with `drain=1`: the receive interrupts the driver has taken (u64).
const DRAIN_IRQS: u64 = NET_BASE + 0x8000;
/// Where a frame carries its sequence number and send timestamp.
const SEQ: i32 = 14;
const STAMP: i32 = 22;
/// The status a driver exits with when its card refuses it.
pub const STATUS_CARD_FAILED: u32 = 3;
pub const STATUS_CARD_RESET: u32 = 4;

/// The measured round trips in the log: the warm-up's come first.
fn round_trip_log(p: &Params) -> GuestLog {
    GuestLog { gpa: LATENCY_LOG, first: p.int("warmup"), count: p.int("packets") }
}

/// An e1000 on a wire of `wire_ns` each way. (Its interrupt throttling,
/// `coalesce_us`, is the driver's to program in ITR.)
pub(crate) fn e1000_machine(p: &Params) -> MachineConfig {
    MachineConfig {
        nics: vec![Nic::E1000 { wire_ns: p.int("wire_ns") }],
        round_trip_log: Some(round_trip_log(p)),
        ..MachineConfig::default()
    }
}

/// virtio-net on a wire of `wire_ns` each way, coalescing as the
/// parameters say, with the kick doorbell when the driver kicks through it.
pub(crate) fn virtio_machine(p: &Params) -> MachineConfig {
    let frames = u32::try_from(p.int("coalesce_n")).unwrap_or(u32::MAX);
    let kick_doorbell = (KICKS[p.choice("kicks")] == "doorbell").then(|| KickDoorbell {
        kicks: NonZeroU64::new(p.int("kick_n")).expect("`kick_n` is at least 1"),
        delay_us: p.int("kick_us"),
    });
    MachineConfig {
        nics: vec![Nic::VirtioNet {
            wire_ns: p.int("wire_ns"),
            coalesce: Coalescing { frames, delay_us: p.int("coalesce_us") },
            kick_doorbell,
        }],
        round_trip_log: Some(round_trip_log(p)),
        ..MachineConfig::default()
    }
}

/// Which card a ping-pong drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    E1000,
    Virtio,
}

impl Card {
    /// Bytes in front of a frame in its buffer (virtio's net header).
    fn header(self) -> u64 {
        match self {
            Card::E1000 => 0,
            Card::Virtio => virtio::NET_HDR,
        }
    }
}

/// rsi = `base` + (`slot` mod RING) x the buffer size.
fn buffer(asm: &mut Asm, base: u64, slot: AsmRegister32) -> Result<()> {
    asm.a.mov(esi, slot)?;
    asm.a.and(esi, (RING - 1) as u32)?;
    asm.a.shl(rsi, 11)?;
    asm.a.mov(rdx, base)?;
    asm.a.add(rsi, rdx)?;
    Ok(())
}

/// RDTSC into rax, whole.
fn tsc(asm: &mut Asm) -> Result<()> {
    asm.a.rdtsc()?;
    asm.a.shl(rdx, 32)?;
    asm.a.or(rax, rdx)?;
    Ok(())
}

/// Writes every transmit buffer's Ethernet header once, after `header`
/// bytes of card header: destination the peer, source the guest, type.
fn frame_headers(asm: &mut Asm, card: Card) -> Result<()> {
    let mut top = asm.label();
    let mac = |m: [u8; 6]| u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]);
    asm.a.mov(rsi, TX_BUFFERS + card.header())?;
    asm.a.mov(ecx, RING as u32)?;
    asm.set(&mut top)?;
    asm.a.mov(rax, mac(PEER_MAC) | mac(GUEST_MAC) << 48)?;
    asm.a.mov(qword_ptr(rsi), rax)?;
    asm.a.mov(eax, (mac(GUEST_MAC) >> 16) as u32)?;
    asm.a.mov(dword_ptr(rsi + 8), eax)?;
    asm.a.mov(word_ptr(rsi + 12), u32::from(ETHERTYPE.swap_bytes()))?;
    asm.a.add(rsi, BUFFER as i32)?;
    asm.a.dec(ecx)?;
    asm.a.jnz(top)?;
    Ok(())
}

/// Stamps the frame at rsi with r12 and the TSC.
fn stamp(asm: &mut Asm) -> Result<()> {
    asm.a.mov(qword_ptr(rsi + SEQ), r12)?;
    tsc(asm)?;
    asm.a.mov(qword_ptr(rsi + STAMP), rax)?;
    Ok(())
}

/// Logs the round trip of the echo at rsi (received frame r13).
fn record(asm: &mut Asm) -> Result<()> {
    let mut full = asm.label();
    tsc(asm)?;
    asm.a.sub(rax, qword_ptr(rsi + STAMP))?;
    asm.a.cmp(r13, LATENCY_LOG_ENTRIES as i32)?;
    asm.a.jae(full)?;
    asm.a.mov(rdx, LATENCY_LOG)?;
    asm.a.mov(qword_ptr(rdx + r13 * 8), rax)?;
    asm.set(&mut full)?;
    Ok(())
}

/// An interrupt handler: `body`, EOI, return; registers it for `vector`.
fn isr(asm: &mut Asm, vector: u8, body: impl FnOnce(&mut Asm) -> Result<()>) -> Result<()> {
    let mut handler = asm.label();
    asm.set(&mut handler)?;
    asm.a.push(rax)?;
    asm.a.push(rdi)?;
    body(asm)?;
    asm.a.mov(rdi, apic::DEFAULT_BASE)?;
    asm.a.mov(dword_ptr(rdi + apic::EOI as i32), 0)?;
    asm.a.pop(rdi)?;
    asm.a.pop(rax)?;
    asm.a.iretq()?;
    asm.gate(vector, handler);
    Ok(())
}

/// Out-of-line code in the setup path: jumps over it.
fn out_of_line(asm: &mut Asm, emit: impl FnOnce(&mut Asm) -> Result<()>) -> Result<()> {
    let mut after = asm.label();
    asm.a.jmp(after)?;
    emit(asm)?;
    asm.set(&mut after)?;
    Ok(())
}

/// Sends `window` frames and enables interrupts.
fn start(asm: &mut Asm, p: &Params, send: CodeLabel) -> Result<()> {
    asm.a.xor(r12d, r12d)?;
    asm.a.xor(r13d, r13d)?;
    for _ in 0..p.int("window") {
        asm.a.call(send)?;
    }
    asm.a.sti()?;
    Ok(())
}

/// Sleeps until `ready` (which sets ZF clear when a frame is waiting)
/// says so, without losing a wake-up between the check and HLT.
fn wait(asm: &mut Asm, ready: impl Fn(&mut Asm) -> Result<()>) -> Result<()> {
    let mut top = asm.label();
    let mut go = asm.label();
    let mut got = asm.label();
    ready(asm)?;
    asm.a.jnz(got)?;
    asm.set(&mut top)?;
    asm.a.cli()?;
    ready(asm)?;
    asm.a.jnz(go)?;
    asm.a.sti()?;
    asm.a.hlt()?;
    asm.a.jmp(top)?;
    asm.set(&mut go)?;
    asm.a.sti()?;
    asm.set(&mut got)?;
    Ok(())
}

// ---- e1000 ----

/// With `drain=1`, sleeps until the driver has taken an interrupt for
/// every frame sent (r12): nothing is in flight and no interrupt of the
/// card is pending, so the marker that follows splits the run at the same
/// point of the guest's progress on every backend, whenever the echo and
/// its interrupt came. One interrupt per echo needs `window=1` (an echo
/// is sent only after the last one was taken); with more frames in
/// flight one interrupt may cover several.
fn e1000_drain(asm: &mut Asm, p: &Params) -> Result<()> {
    if p.int("drain") == 0 {
        return Ok(());
    }
    if p.int("window") != 1 {
        return Err(BuildError("e1000-pingpong: drain=1 needs window=1 (one interrupt per echo)".into()));
    }
    let mut top = asm.label();
    let mut go = asm.label();
    asm.set(&mut top)?;
    asm.a.cli()?;
    asm.a.mov(rax, DRAIN_IRQS)?;
    asm.a.cmp(qword_ptr(rax), r12)?;
    asm.a.jae(go)?;
    asm.a.sti()?;
    asm.a.hlt()?;
    asm.a.jmp(top)?;
    asm.set(&mut go)?;
    asm.a.sti()?;
    Ok(())
}

/// Resets nothing it need not: reads the MAC from the EEPROM into the
/// receive address, clears the multicast table, sets up both rings with
/// every receive buffer given to the card, enables receive interrupts (and
/// ITR throttling from `coalesce_us`), then starts the stream.
pub(crate) fn e1000_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    use e1000::*;
    let reg = |r: u64| dword_ptr(rdi + r as i32);
    let mut send = asm.label();
    out_of_line(asm, |asm| {
        asm.set(&mut send)?;
        e1000_send(asm, p)?;
        asm.a.ret()?;
        isr(asm, DEVICE_VECTOR, |asm| {
            asm.a.mov(rdi, nic::E1000_BAR)?;
            asm.a.mov(eax, reg(ICR))?;
            if p.int("drain") == 1 {
                asm.a.mov(rax, DRAIN_IRQS)?;
                asm.a.inc(qword_ptr(rax))?;
            }
            Ok(())
        })
    })?;
    asm.a.mov(rdi, nic::E1000_BAR)?;
    asm.a.mov(reg(IMC), u32::MAX)?;
    asm.a.mov(eax, reg(ICR))?;
    // MAC words 0..2 from the EEPROM, into RAL0/RAH0 (r8d, r9d).
    asm.a.xor(r8d, r8d)?;
    asm.a.xor(r9d, r9d)?;
    for word in 0..3u32 {
        let mut poll = asm.label();
        asm.a.mov(reg(EERD), word << 8 | EERD_START)?;
        asm.set(&mut poll)?;
        asm.a.mov(eax, reg(EERD))?;
        asm.a.test(eax, EERD_DONE)?;
        asm.a.jz(poll)?;
        asm.a.shr(eax, 16)?;
        match word {
            0 => asm.a.or(r8d, eax)?,
            1 => {
                asm.a.shl(eax, 16)?;
                asm.a.or(r8d, eax)?;
            }
            _ => asm.a.or(r9d, eax)?,
        }
    }
    asm.a.or(r9d, RAH_AV)?;
    asm.a.mov(reg(RAL0), r8d)?;
    asm.a.mov(reg(RAH0), r9d)?;
    let mut mta = asm.label();
    asm.a.xor(ecx, ecx)?;
    asm.set(&mut mta)?;
    asm.a.mov(dword_ptr(rdi + rcx * 4 + MTA as i32), 0)?;
    asm.a.inc(ecx)?;
    asm.a.cmp(ecx, (MTA_LEN / 4) as u32)?;
    asm.a.jb(mta)?;
    // Receive descriptors: buffer i for descriptor i, status clear.
    let mut fill = asm.label();
    asm.a.mov(rsi, E1000_RX_RING)?;
    asm.a.mov(rax, RX_BUFFERS)?;
    asm.a.mov(ecx, RING as u32)?;
    asm.set(&mut fill)?;
    asm.a.mov(qword_ptr(rsi), rax)?;
    asm.a.mov(qword_ptr(rsi + 8), 0)?;
    asm.a.add(rsi, DESC as i32)?;
    asm.a.add(rax, BUFFER as i32)?;
    asm.a.dec(ecx)?;
    asm.a.jnz(fill)?;
    asm.a.mov(reg(RDBAL), E1000_RX_RING as u32)?;
    asm.a.mov(reg(RDBAH), 0)?;
    asm.a.mov(reg(RDLEN), (RING * DESC) as u32)?;
    asm.a.mov(reg(RDH), 0)?;
    asm.a.mov(reg(RDT), (RING - 1) as u32)?;
    asm.a.mov(reg(TDBAL), E1000_TX_RING as u32)?;
    asm.a.mov(reg(TDBAH), 0)?;
    asm.a.mov(reg(TDLEN), (RING * DESC) as u32)?;
    asm.a.mov(reg(TDH), 0)?;
    asm.a.mov(reg(TDT), 0)?;
    asm.a.mov(reg(TIPG), 0x0060_200a)?;
    asm.a.mov(reg(ITR), (p.int("coalesce_us") * 1000 / 256) as u32)?;
    asm.a.mov(reg(TCTL), TCTL_EN | TCTL_PSP)?;
    asm.a.mov(reg(RCTL), RCTL_EN | RCTL_BAM | RCTL_SECRC)?;
    asm.a.mov(reg(IMS), ICR_RXT0)?;
    frame_headers(asm, Card::E1000)?;
    start(asm, p, send)?;
    e1000_drain(asm, p)
}

/// Fills the next transmit descriptor (end of packet, report status) and
/// moves TDT past it: one trapped register write per frame.
fn e1000_send(asm: &mut Asm, p: &Params) -> Result<()> {
    use e1000::*;
    buffer(asm, TX_BUFFERS, r12d)?;
    stamp(asm)?;
    asm.a.mov(ecx, r12d)?;
    asm.a.and(ecx, (RING - 1) as u32)?;
    asm.a.shl(ecx, 4)?;
    asm.a.mov(rdx, E1000_TX_RING)?;
    asm.a.add(rcx, rdx)?;
    asm.a.mov(qword_ptr(rcx), rsi)?;
    let cmd = u32::from(CMD_EOP | CMD_IFCS | CMD_RS);
    asm.a.mov(dword_ptr(rcx + 8), p.int("size") as u32 | cmd << 24)?;
    asm.a.mov(dword_ptr(rcx + 12), 0)?;
    asm.a.inc(r12)?;
    asm.a.mov(eax, r12d)?;
    asm.a.and(eax, (RING - 1) as u32)?;
    asm.a.mov(dword_ptr(rdi + TDT as i32), eax)?;
    Ok(())
}

/// Takes the next echo: waits for its descriptor's DD, logs the round
/// trip, gives the descriptor back (RDT) and sends the next frame.
pub(crate) fn e1000_iteration(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    use e1000::*;
    let desc = |asm: &mut Asm| -> Result<()> {
        asm.a.mov(ecx, r13d)?;
        asm.a.and(ecx, (RING - 1) as u32)?;
        asm.a.shl(ecx, 4)?;
        asm.a.mov(rdx, E1000_RX_RING)?;
        asm.a.add(rcx, rdx)?;
        asm.a.test(byte_ptr(rcx + RX_STATUS as i32), u32::from(STA_DD))?;
        Ok(())
    };
    wait(asm, desc)?;
    buffer(asm, RX_BUFFERS, r13d)?;
    record(asm)?;
    asm.a.mov(byte_ptr(rcx + RX_STATUS as i32), 0)?;
    asm.a.mov(eax, r13d)?;
    asm.a.and(eax, (RING - 1) as u32)?;
    crate::workload::trap(asm, phase)?;
    asm.a.mov(dword_ptr(rdi + RDT as i32), eax)?;
    asm.a.inc(r13)?;
    e1000_send(asm, p)?;
    if p.int("drain") == 1 {
        // The phase's last iteration (r15 counts down to 1).
        let mut more = asm.label();
        asm.a.cmp(r15, 1)?;
        asm.a.jne(more)?;
        e1000_drain(asm, p)?;
        asm.set(&mut more)?;
    }
    Ok(())
}

// ---- virtio-net ----

/// The virtio initialization sequence (§3.1.1): reset, ACKNOWLEDGE,
/// DRIVER, features (VERSION_1, MAC, EVENT_IDX), FEATURES_OK checked, both
/// queues set up, every receive buffer made available, DRIVER_OK; then the
/// stream.
pub(crate) fn virtio_setup(asm: &mut Asm, p: &Params) -> Result<()> {
    use virtio::*;
    let reg = |r: u64| dword_ptr(rdi + r as i32);
    let mut send = asm.label();
    let mut failed = asm.label();
    out_of_line(asm, |asm| {
        asm.set(&mut send)?;
        virtio_send(asm, p, None)?;
        asm.a.ret()?;
        isr(asm, DEVICE_VECTOR, |_| Ok(()))?;
        isr(asm, DEVICE_VECTOR + 1, |_| Ok(()))?;
        // A configuration interrupt is the card asking for a reset.
        isr(asm, DEVICE_VECTOR + 2, |asm| {
            asm.a.mov(al, STATUS_CARD_RESET)?;
            asm.a.out(PORT_DEBUG_EXIT as u32, al)?;
            Ok(())
        })?;
        asm.set(&mut failed)?;
        asm.a.mov(al, STATUS_CARD_FAILED)?;
        asm.a.out(PORT_DEBUG_EXIT as u32, al)?;
        Ok(())
    })?;
    asm.a.mov(rdi, nic::VIRTIO_NET_BAR)?;
    asm.a.mov(reg(STATUS), 0)?;
    asm.a.mov(reg(STATUS), S_ACKNOWLEDGE)?;
    asm.a.mov(reg(STATUS), S_ACKNOWLEDGE | S_DRIVER)?;
    asm.a.mov(reg(DEVICE_FEATURES_SEL), 0)?;
    asm.a.mov(eax, reg(DEVICE_FEATURES))?;
    asm.a.mov(reg(DRIVER_FEATURES_SEL), 0)?;
    asm.a.mov(reg(DRIVER_FEATURES), 1 << F_NET_MAC | 1 << F_RING_EVENT_IDX)?;
    asm.a.mov(reg(DRIVER_FEATURES_SEL), 1)?;
    asm.a.mov(reg(DRIVER_FEATURES), 1 << (F_VERSION_1 - 32))?;
    asm.a.mov(reg(STATUS), S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK)?;
    asm.a.mov(eax, reg(STATUS))?;
    asm.a.test(eax, S_FEATURES_OK)?;
    asm.a.jz(failed)?;
    for (q, desc, avail, used) in [(RXQ, RXQ_DESC, RXQ_AVAIL, RXQ_USED), (TXQ, TXQ_DESC, TXQ_AVAIL, TXQ_USED)] {
        asm.a.mov(reg(QUEUE_SEL), u32::from(q))?;
        asm.a.mov(reg(QUEUE_NUM), RING as u32)?;
        for (lo, addr) in [(QUEUE_DESC_LOW, desc), (QUEUE_DRIVER_LOW, avail), (QUEUE_DEVICE_LOW, used)] {
            asm.a.mov(reg(lo), addr as u32)?;
            asm.a.mov(reg(lo + 4), 0)?;
        }
        asm.a.mov(reg(QUEUE_READY), 1)?;
    }
    // Descriptor i of each queue owns buffer i; every receive buffer is
    // made available at once.
    let mut fill = asm.label();
    asm.a.xor(ecx, ecx)?;
    asm.set(&mut fill)?;
    asm.a.mov(eax, ecx)?;
    asm.a.shl(eax, 4)?;
    asm.a.mov(rsi, RXQ_DESC)?;
    asm.a.add(rsi, rax)?;
    asm.a.mov(edx, ecx)?;
    asm.a.shl(edx, 11)?;
    asm.a.lea(rax, ptr(rdx + RX_BUFFERS as i32))?;
    asm.a.mov(qword_ptr(rsi), rax)?;
    asm.a.mov(dword_ptr(rsi + 8), BUFFER as u32)?;
    asm.a.mov(dword_ptr(rsi + 12), u32::from(DESC_F_WRITE))?;
    asm.a.add(rsi, (TXQ_DESC - RXQ_DESC) as i32)?;
    asm.a.lea(rax, ptr(rdx + TX_BUFFERS as i32))?;
    asm.a.mov(qword_ptr(rsi), rax)?;
    asm.a.mov(dword_ptr(rsi + 8), (NET_HDR + p.int("size")) as u32)?;
    asm.a.mov(dword_ptr(rsi + 12), 0)?;
    asm.a.mov(rsi, RXQ_AVAIL + AVAIL_RING)?;
    asm.a.mov(word_ptr(rsi + rcx * 2), cx)?;
    asm.a.inc(ecx)?;
    asm.a.cmp(ecx, RING as u32)?;
    asm.a.jb(fill)?;
    asm.a.mov(rsi, RXQ_AVAIL)?;
    asm.a.mov(word_ptr(rsi + AVAIL_IDX as i32), RING as u32)?;
    // Transmit completions need no interrupt: used_event far away.
    asm.a.mov(rsi, TXQ_AVAIL)?;
    asm.a.mov(word_ptr(rsi + USED_EVENT as i32), 0x8000)?;
    asm.a.mov(reg(STATUS), S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)?;
    frame_headers(asm, Card::Virtio)?;
    start(asm, p, send)
}

/// How the virtio driver notifies the device of a new transmit buffer:
/// only when the device's avail_event asks for exactly this index (event-
/// index suppression, §2.7.10: one trapped write per frame while the
/// device waits for each); for every frame, trapped; or for every frame,
/// on the machine's coalescing kick doorbell (E5), which never exits.
pub const KICKS: &[&str] = &["event-idx", "every", "doorbell"];

/// Makes the next transmit buffer available and notifies the device as
/// `kicks` says. `phase` names the notification as the phase's trap.
fn virtio_send(asm: &mut Asm, p: &Params, phase: Option<&str>) -> Result<()> {
    use virtio::*;
    let mut quiet = asm.label();
    buffer(asm, TX_BUFFERS + NET_HDR, r12d)?;
    stamp(asm)?;
    asm.a.mov(eax, r12d)?;
    asm.a.and(eax, (RING - 1) as u32)?;
    asm.a.mov(rsi, TXQ_AVAIL)?;
    asm.a.mov(word_ptr(rsi + rax * 2 + AVAIL_RING as i32), ax)?;
    asm.a.inc(r12)?;
    asm.a.mov(word_ptr(rsi + AVAIL_IDX as i32), r12w)?;
    asm.a.mfence()?;
    let kicks = KICKS[p.choice("kicks")];
    if kicks == "event-idx" {
        asm.a.mov(rsi, TXQ_USED)?;
        asm.a.movzx(eax, word_ptr(rsi + AVAIL_EVENT as i32))?;
        asm.a.lea(edx, ptr(r12 - 1))?;
        asm.a.cmp(ax, dx)?;
        asm.a.jne(quiet)?;
    }
    let bell = if kicks == "doorbell" { nic::KICK_DOORBELL - nic::VIRTIO_NET_BAR } else { QUEUE_NOTIFY };
    if let Some(phase) = phase {
        crate::workload::trap(asm, phase)?;
    }
    asm.a.mov(dword_ptr(rdi + bell as i32), u32::from(TXQ))?;
    asm.set(&mut quiet)?;
    Ok(())
}

/// Takes the next echo: waits for the receive queue's used index to pass
/// what was taken (asking, through used_event, for an interrupt at the
/// next one), logs the round trip, makes the buffer available again
/// (notifying only if the device asked) and sends the next frame.
pub(crate) fn virtio_iteration(asm: &mut Asm, p: &Params, phase: &str) -> Result<()> {
    use virtio::*;
    let mut quiet = asm.label();
    let used = |asm: &mut Asm| -> Result<()> {
        asm.a.mov(rsi, RXQ_AVAIL)?;
        asm.a.mov(word_ptr(rsi + USED_EVENT as i32), r13w)?;
        asm.a.mfence()?;
        asm.a.mov(rsi, RXQ_USED)?;
        asm.a.cmp(word_ptr(rsi + USED_IDX as i32), r13w)?;
        Ok(())
    };
    wait(asm, used)?;
    // The used element's id is the descriptor (and buffer) index.
    asm.a.mov(eax, r13d)?;
    asm.a.and(eax, (RING - 1) as u32)?;
    asm.a.mov(rsi, RXQ_USED)?;
    asm.a.mov(ebx, dword_ptr(rsi + rax * 8 + USED_RING as i32))?;
    asm.a.and(ebx, (RING - 1) as u32)?;
    buffer(asm, RX_BUFFERS + NET_HDR, ebx)?;
    record(asm)?;
    // Available again at index RING + r13.
    asm.a.lea(eax, ptr(r13 + RING as i32))?;
    asm.a.and(eax, (RING - 1) as u32)?;
    asm.a.mov(rsi, RXQ_AVAIL)?;
    asm.a.mov(word_ptr(rsi + rax * 2 + AVAIL_RING as i32), bx)?;
    asm.a.lea(eax, ptr(r13 + RING as i32))?;
    asm.a.inc(r13)?;
    asm.a.lea(edx, ptr(r13 + RING as i32))?;
    asm.a.mov(word_ptr(rsi + AVAIL_IDX as i32), dx)?;
    asm.a.mfence()?;
    asm.a.mov(rsi, RXQ_USED)?;
    asm.a.cmp(word_ptr(rsi + AVAIL_EVENT as i32), ax)?;
    asm.a.jne(quiet)?;
    asm.a.mov(dword_ptr(rdi + QUEUE_NOTIFY as i32), u32::from(RXQ))?;
    asm.set(&mut quiet)?;
    asm.a.mov(rsi, TXQ_AVAIL)?;
    virtio_send(asm, p, Some(phase))
}

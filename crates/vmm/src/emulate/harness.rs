//! Drives [`emulate_mmio`] with arbitrary instruction bytes, registers,
//! memory and device answers, on a simulated vCPU whose page tables map
//! the low 4 GiB 1:1, and checks what must hold whatever the bytes: the
//! call returns (no panic, bounded work), a refused instruction changes no
//! register, and an emulated one decodes exactly its own bytes, moves RIP
//! past itself (or to a branch's target, or keeps it for a REP with
//! elements left or at a fault it hands the guest) and leaves RFLAGS'
//! control bits alone. The cargo-fuzz target
//! (fuzz/fuzz_targets/emulate.rs) and the proptest in
//! crates/vmm/tests/emulate.rs both run it. Behind the `test-support`
//! feature: not part of the VMM's production API.

use super::{emulate_mmio, CannotEmulate, Emulated, REP_CHUNK};
use crate::assign::{Checked, DmaWindow};
use crate::bus::{Bus, Device, DeviceCtx};
use crate::devices::MmioScratch;
use exitlab_arch::bits::{cr0, cr4, efer, pte, rflags};
use exitlab_arch::iommu::SourceId;
use exitlab_arch::{BootState, Regs, Segment};
use exitlab_hv::{Vcpu, Vm};
use exitlab_sim::{SimVcpu, SimVm};
use std::any::Any;

/// Guest RAM of the harness's VM (rewritten whole for every case, so
/// cases do not see each other's writes).
pub const RAM: u64 = 64 << 10;
/// The page tables: PML4 and a PDPT of 1 GiB pages.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
/// Where the instruction starts (or ends, when it crosses a page).
pub const CODE: u64 = 0x4000;
/// RAM the case fills.
pub const DATA: u64 = 0x8000;
pub const DATA_LEN: usize = 0x2000;
/// The device that answers reads from the case.
pub const ANSWERING: u64 = 0xd000_0000;
/// A real device model (the MMIO scratch register) next to it.
pub const SCRATCH: u64 = 0xd000_1000;
/// The ports where an answering device serves INS and OUTS (a register
/// of class 2 lands on them).
pub const ANSWERING_PORTS: u16 = 0xe0;

/// One input: what the guest's state and the devices' answers are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Case {
    pub code: [u8; 15],
    /// The instruction crosses into the next page after this many bytes
    /// (0: it does not).
    pub cross: u8,
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub nxe: bool,
    /// 1 GiB pages of the low 4 GiB the page tables leave unmapped (bit i:
    /// GiB i; code and data live in GiB 0).
    pub unmapped: u8,
    /// RAM from [`DATA`] on (repeated to fill it).
    pub data: Vec<u8>,
    /// What the answering device's reads return, byte after byte, round.
    pub answers: Vec<u8>,
}

/// Reads a fuzzer's raw bytes as fields, zero when they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.u8()) << (8 * i))
    }

    /// A register value: raw, small (a count or an index), or steered (by
    /// its first byte) into RAM data, the answering device, the scratch
    /// device or the local APIC, where memory operands find something.
    fn register(&mut self) -> u64 {
        let class = self.u8();
        let v = self.u64();
        match class % 8 {
            0 | 1 => v,
            2 => v & 0xff,
            3 | 4 => DATA + (v & 0x1fff),
            5 => ANSWERING + (v & 0xfff),
            6 => SCRATCH + (v & 0xfff),
            _ => exitlab_arch::bits::apic::DEFAULT_BASE + (v & 0xfff),
        }
    }
}

impl Case {
    /// A case from arbitrary bytes (a fuzzer's input): every byte string
    /// is a case.
    pub fn from_bytes(bytes: &[u8]) -> Case {
        let mut b = Bytes(bytes);
        let mut code = [0u8; 15];
        code.iter_mut().for_each(|c| *c = b.u8());
        let shape = b.u8();
        let cross = if shape & 1 != 0 { 1 + b.u8() % 14 } else { 0 };
        let mut gpr = [0u64; 16];
        gpr.iter_mut().for_each(|r| *r = b.register());
        let rflags = b.u64();
        let (fs_base, gs_base) = (b.register(), b.register());
        let rest = b.0;
        let (data, answers) = rest.split_at(rest.len() / 2);
        Case {
            code,
            cross,
            gpr,
            rflags,
            fs_base,
            gs_base,
            nxe: shape & 2 != 0,
            unmapped: (shape >> 2) & 0xe,
            data: data.to_vec(),
            answers: answers.to_vec(),
        }
    }

    /// Where the instruction starts.
    pub fn rip(&self) -> u64 {
        if self.cross == 0 {
            CODE
        } else {
            CODE + 0x1000 - u64::from(self.cross)
        }
    }
}

/// A device whose reads return the case's answers and which keeps what
/// was written to it.
struct Answering {
    answers: Vec<u8>,
    next: usize,
    written: Vec<(u64, Vec<u8>)>,
}

impl Device for Answering {
    fn read(&mut self, _offset: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        for d in data {
            *d = self.answers.get(self.next % self.answers.len().max(1)).copied().unwrap_or(0);
            self.next += 1;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _: &mut DeviceCtx<'_>) {
        // Bounded: a REP chunk writes at most REP_CHUNK elements.
        self.written.push((offset, data.to_vec()));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What one case did.
#[derive(Debug)]
pub struct Outcome {
    pub before: Regs,
    pub after: Regs,
    pub result: Result<Emulated, CannotEmulate>,
}

impl Outcome {
    /// The properties every case must have; the first one broken, named.
    pub fn check(&self, case: &Case) -> Result<(), String> {
        let done = match &self.result {
            Err(_) if self.after != self.before => {
                return Err(format!("a refused instruction changed registers: {:x?} -> {:x?}", self.before, self.after))
            }
            Err(_) => return Ok(()),
            Ok(done) => done,
        };
        let len = u64::from(done.work.bytes_decoded);
        if !(1..=15).contains(&len) {
            return Err(format!("{len} bytes decoded"));
        }
        let rip = case.rip();
        if done.fault.is_some() {
            // A fault leaves RIP at the instruction, for the guest's handler.
            return match self.after.rip == rip {
                true => Ok(()),
                false => Err(format!("RIP {:#x} after a fault at {rip:#x}", self.after.rip)),
            };
        }
        let decoded = iced_x86::Decoder::with_ip(64, &case.code, rip, iced_x86::DecoderOptions::NONE).decode();
        let branch = decoded.flow_control() != iced_x86::FlowControl::Next;
        let rep_left = self.after.rip == rip && self.after.gpr[Regs::RCX] != 0;
        if self.after.rip != rip.wrapping_add(len) && !rep_left && !branch {
            return Err(format!("RIP {:#x} after a {len}-byte instruction at {rip:#x}", self.after.rip));
        }
        let control = !rflags::STATUS;
        if (self.after.rflags ^ self.before.rflags) & control != 0 {
            return Err(format!("RFLAGS control bits {:#x} -> {:#x}", self.before.rflags, self.after.rflags));
        }
        if u64::from(done.work.bytes_copied) > 8 * REP_CHUNK || u64::from(done.work.device_ops) > 4 * REP_CHUNK + 4 {
            return Err(format!("unbounded work in one exit: {:?}", done.work));
        }
        Ok(())
    }
}

/// A VM to run cases on, kept between them (each case gets a new vCPU and
/// rewrites all of RAM).
pub struct Harness {
    vm: SimVm,
    zeros: Vec<u8>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness { vm: SimVm::new(RAM).expect("a small simulated VM"), zeros: vec![0; RAM as usize] }
    }

    /// Emulates `case`'s instruction as the VMM does at an MMIO exit.
    pub fn run(&mut self, case: &Case) -> Outcome {
        self.load(case);
        let mut vcpu = self.vm.create_vcpu(0, &boot(case)).expect("a vCPU");
        let mut bus = Bus::new();
        let answering = Answering { answers: case.answers.clone(), next: 0, written: Vec::new() };
        bus.insert("answering", ANSWERING, 0x1000, Box::new(answering)).expect("free range");
        bus.insert("mmio-scratch", SCRATCH, 0x1000, Box::new(MmioScratch::default())).expect("free range");
        let mut ports = Bus::new();
        let answering = Answering { answers: case.answers.clone(), next: 0, written: Vec::new() };
        ports.insert("answering", u64::from(ANSWERING_PORTS), 4, Box::new(answering)).expect("free range");
        let before = vcpu.regs().expect("registers");
        let result = self.emulate(&mut vcpu, &mut ports, &mut bus);
        let after = vcpu.regs().expect("registers");
        Outcome { before, after, result }
    }

    fn emulate(&mut self, vcpu: &mut SimVcpu, ports: &mut Bus, bus: &mut Bus) -> Result<Emulated, CannotEmulate> {
        let mut faults = Vec::new();
        let memory = self.vm.guest_memory();
        let window = DmaWindow { start: 0, len: 0 };
        let mut dma = Checked { memory, window, source: SourceId(0), faults: &mut faults };
        let mut ctx = DeviceCtx::new(0, &mut dma);
        match emulate_mmio(&self.vm, vcpu, ports, bus, &mut ctx) {
            Ok(r) => r,
            Err(e) => Err(CannotEmulate(format!("backend: {e}"))),
        }
    }

    /// Zeroed RAM with page tables, code and data for `case`.
    fn load(&mut self, case: &Case) {
        let w = |vm: &SimVm, gpa: u64, b: &[u8]| vm.write_memory(gpa, b).expect("inside RAM");
        w(&self.vm, 0, &self.zeros);
        let table = pte::P | pte::RW | pte::US;
        w(&self.vm, PML4, &(PDPT | table).to_le_bytes());
        for gib in 0..4u64 {
            let present = case.unmapped & (1 << gib) == 0;
            let e = if present { gib << 30 | table | pte::PS } else { 0 };
            w(&self.vm, PDPT + gib * 8, &e.to_le_bytes());
        }
        w(&self.vm, case.rip(), &case.code);
        let mut data = vec![0u8; DATA_LEN];
        if !case.data.is_empty() {
            data.iter_mut().zip(case.data.iter().cycle()).for_each(|(d, s)| *d = *s);
        }
        w(&self.vm, DATA, &data);
    }
}

/// 64-bit mode with paging, ring 0, the case's registers.
fn boot(case: &Case) -> BootState {
    let code = Segment { selector: 8, l: true, present: true, s: true, type_: 0xb, ..Segment::default() };
    let data = Segment { selector: 0x10, present: true, s: true, type_: 0x3, ..Segment::default() };
    BootState {
        regs: Regs { gpr: case.gpr, rip: case.rip(), rflags: case.rflags | rflags::FIXED },
        cs: code,
        ds: data,
        es: data,
        ss: data,
        fs: Segment { base: case.fs_base, ..data },
        gs: Segment { base: case.gs_base, ..data },
        cr0: cr0::PE | cr0::PG | cr0::ET,
        cr3: PML4,
        cr4: cr4::PAE,
        efer: efer::LME | efer::LMA | if case.nxe { efer::NXE } else { 0 },
        ..BootState::default()
    }
}

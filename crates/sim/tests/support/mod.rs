//! Shared driver for the simulator's integration tests: runs a guest
//! image on a SimVm, answering every exit as a minimal VMM would.

#![allow(dead_code)]

use exitlab_arch::vmx::Controls;
use exitlab_guest::layout::{self, MAILBOX, PORT_DEBUG_EXIT, PORT_REPORT};
use exitlab_guest::program::{program, Ring, Start};
use exitlab_guest::{Image, MailboxReport};
use exitlab_hv::{Completion, HvError, Injection, InjectionKind, Vcpu, Vm, VmExit, VmxVcpu};
use exitlab_sim::{SimVcpu, SimVm};
use iced_x86::code_asm::*;

/// How a test program's run ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// `out 0xf4, al` (the program's end).
    Done,
    /// The kernel reported an exception or interrupt.
    Report(MailboxReport),
    Shutdown,
    Unsupported(String),
}

pub struct Run {
    pub vm: SimVm,
    pub vcpu: SimVcpu,
    /// Every exit except the serial banner's.
    pub exits: Vec<VmExit>,
    pub end: End,
}

pub fn start() -> Start {
    Start { gpr: [0; 16], rflags: 0 }
}

/// Runs `img`, answering reads with `read_value` (and the UART's LSR with
/// "transmitter empty"), CPUID with zeros, MSRs from the CPU model.
pub fn run_with(img: &Image, read_value: u64) -> Run {
    run_controlled(img, read_value, None)
}

/// As `run_with`, with `controls` loaded before the first entry. Exits the
/// controls add are recorded and resumed; trapped exceptions are injected
/// back; external interrupts are injected.
pub fn run_controlled(img: &Image, read_value: u64, controls: Option<&Controls>) -> Run {
    run_on(SimVm::new(img.memory_size).unwrap(), img, read_value, controls)
}

/// As `run_controlled`, on a VM the caller built (another profile).
pub fn run_on(mut vm: SimVm, img: &Image, read_value: u64, controls: Option<&Controls>) -> Run {
    for c in img.boot_layout().chunks {
        vm.write_memory(c.gpa, &c.bytes).unwrap();
    }
    vm.write_memory(img.load_gpa, &img.bytes).unwrap();
    let mut vcpu = vm.create_vcpu(0, &img.boot_layout().state).unwrap();
    if let Some(c) = controls {
        vcpu.set_controls(c).unwrap();
    }
    let mut exits = Vec::new();
    let end = loop {
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(HvError::Unsupported(u)) => break End::Unsupported(u.to_string()),
            Err(e) => panic!("{e}"),
        };
        match &exit {
            VmExit::Io(io) if io.qual.port == PORT_DEBUG_EXIT => break End::Done,
            VmExit::Io(io) if io.qual.port == PORT_REPORT => {
                let mut b = [0u8; MailboxReport::SIZE];
                vm.read_memory(MAILBOX, &mut b).unwrap();
                break End::Report(MailboxReport::from_bytes(&b));
            }
            VmExit::Io(io) if io.qual.port & !7 == layout::SERIAL_COM1 => {
                if io.qual.is_in {
                    vcpu.complete_read(&[0x20]);
                }
                continue;
            }
            VmExit::Io(io) if io.qual.is_in => vcpu.complete_read(&read_value.to_le_bytes()),
            VmExit::Mmio { access, .. } if !access.is_write => vcpu.complete_read(&read_value.to_le_bytes()),
            VmExit::Cpuid { .. } => vcpu.complete(Completion::Cpuid([0; 4])),
            VmExit::MsrRead { msr } => {
                let v = vcpu.read_msr(*msr).unwrap();
                vcpu.complete(Completion::MsrRead(v));
            }
            VmExit::MsrWrite { msr, value } => {
                let ok = vcpu.write_msr(*msr, *value).unwrap();
                vcpu.complete(Completion::MsrWrite(ok));
            }
            VmExit::Hlt => assert!(vcpu.halt().unwrap().is_some(), "halted forever"),
            VmExit::Shutdown => break End::Shutdown,
            VmExit::Exception { vector, error_code, .. } => {
                vcpu.inject(Injection::exception(*vector, *error_code)).unwrap();
            }
            VmExit::ExternalInterrupt { vector } => {
                vcpu.apic_acknowledge(*vector).unwrap();
                vcpu.inject(Injection { kind: InjectionKind::External, ..Injection::exception(*vector, None) })
                    .unwrap();
            }
            VmExit::CrAccess(_) | VmExit::Invlpg { .. } | VmExit::Rdtsc => vcpu.skip_instruction().unwrap(),
            _ => {}
        }
        exits.push(exit);
    };
    Run { vm, vcpu, exits, end }
}

pub fn run(ring: Ring, body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> (Run, Image) {
    run_reading(ring, 0, body)
}

/// As `run`, with MMIO and port reads answered with `value`.
pub fn run_reading(
    ring: Ring,
    value: u64,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> (Run, Image) {
    let img = program("test", ring, &start(), body).unwrap();
    (run_with(&img, value), img)
}

pub fn sym(img: &Image, name: &str) -> u64 {
    img.symbol(name).unwrap()
}

/// The address after the instruction at `addr`.
pub fn after(img: &Image, addr: u64) -> u64 {
    let off = (addr - img.load_gpa) as usize;
    iced_x86::Decoder::with_ip(64, &img.bytes[off..], addr, iced_x86::DecoderOptions::NONE).decode().next_ip()
}

pub fn report(r: &Run) -> MailboxReport {
    match &r.end {
        End::Report(rep) => *rep,
        other => panic!("expected a report, got {other:?}"),
    }
}

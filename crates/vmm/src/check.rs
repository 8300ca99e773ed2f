//! `exitlab check`: an architectural correctness suite in the style of
//! kvm-unit-tests' x86/debug.c. Each case runs one instruction the VMM may
//! have to handle (an exit it completes, emulates, or replays) with
//! RFLAGS.TF set by the POPF before it, and checks that the single-step #DB
//! arrives where the architecture puts it: RIP after the instruction,
//! DR6.BS set. Two cases check exceptions the VMM raises through event
//! injection instead. Run on the simulator (both profiles, so MOV CR3 is
//! really trapped and emulated under `legacy`) and on KVM, where a failing
//! case is a finding about the host.

use crate::error::VmmError;
use crate::report::{GuestError, Outcome, RunReport};
use exitlab_arch::bits::{dr6, msr, rflags};
use exitlab_arch::vector;
use exitlab_guest::layout::{MMIO_BENCH, PORT_POST};
use exitlab_guest::program::{program_marked, Ring, Start};
use exitlab_guest::{BootImage, Image};
use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions};

/// What a case expects the guest's handler to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// #DB with DR6.BS, RIP after the instruction under test.
    SingleStep,
    /// Exception `vector` with `error_code`, RIP at the instruction.
    Fault { vector: u8, error_code: u64 },
    /// A trap-like exception (#BP): RIP after the instruction.
    Trap { vector: u8 },
}

type Setup = fn(&mut CodeAssembler) -> Result<(), IcedError>;
type Test = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// One case: registers set up, then the instruction under test.
pub struct Case {
    pub name: &'static str,
    setup: Setup,
    insn: Test,
    expect: Expect,
    /// Set TF with POPF just before the instruction.
    single_step: bool,
}

fn none(_: &mut CodeAssembler) -> Result<(), IcedError> {
    Ok(())
}

pub static CASES: &[Case] = &[
    Case { name: "tf-after-nop", setup: none, insn: |a| a.nop(), expect: Expect::SingleStep, single_step: true },
    Case {
        name: "tf-after-cpuid",
        setup: |a| a.xor(eax, eax),
        insn: |a| a.cpuid(),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-out",
        setup: none,
        insn: |a| a.out(u32::from(PORT_POST), al),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-in",
        setup: none,
        insn: |a| a.in_(al, u32::from(PORT_POST)),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-mmio-write",
        setup: |a| a.mov(rdi, MMIO_BENCH),
        insn: |a| a.mov(dword_ptr(rdi), eax),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-mmio-read",
        setup: |a| a.mov(rdi, MMIO_BENCH),
        insn: |a| a.mov(eax, dword_ptr(rdi)),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-rdmsr",
        setup: |a| a.mov(ecx, msr::IA32_APIC_BASE),
        insn: |a| a.rdmsr(),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-wrmsr",
        setup: |a| {
            a.mov(ecx, msr::IA32_EFER)?;
            a.rdmsr()
        },
        insn: |a| a.wrmsr(),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "tf-after-mov-cr3",
        setup: |a| a.mov(rax, cr3),
        insn: |a| a.mov(cr3, rax),
        expect: Expect::SingleStep,
        single_step: true,
    },
    Case {
        name: "gp-from-rdmsr-of-no-msr",
        setup: |a| a.mov(ecx, 0x4b56_0001u32),
        insn: |a| a.rdmsr(),
        expect: Expect::Fault { vector: vector::GP, error_code: 0 },
        single_step: false,
    },
    Case {
        name: "bp-from-int3",
        setup: none,
        insn: |a| a.int3(),
        expect: Expect::Trap { vector: vector::BP },
        single_step: false,
    },
];

/// Where the instruction under test sits in the image, and its successor.
fn bounds(img: &Image) -> (u64, u64) {
    let at = img.symbol("check_insn").expect("every check image names its instruction");
    let off = (at - img.load_gpa) as usize;
    let next = Decoder::with_ip(64, &img.bytes[off..], at, DecoderOptions::NONE).decode().next_ip();
    (at, next)
}

impl Case {
    /// The case's guest program; `check_insn` names the instruction under
    /// test.
    pub fn image(&self) -> Image {
        let start = Start { gpr: [0; 16], rflags: 0 };
        let (setup, insn, tf) = (self.setup, self.insn, self.single_step);
        program_marked(self.name, Ring::Kernel, &start, |a| {
            setup(a)?;
            if tf {
                a.pushfq()?;
                a.or(qword_ptr(rsp), rflags::TF as i32)?;
                a.popfq()?;
            } else {
                a.nop()?; // the body's own label needs an instruction
            }
            let mut l = a.create_label();
            a.set_label(&mut l)?;
            insn(a)?;
            // A case that does not trap falls through to the program's end
            // and is reported as "no exception".
            Ok(vec![("check_insn", l)])
        })
        .expect("check programs assemble")
    }
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub name: &'static str,
    pub expected: String,
    pub got: String,
    pub pass: bool,
}

/// Runs `case` with `run` (which builds and runs an image on a backend of
/// the caller's choice). A backend failure is the case's result too (on
/// KVM it is a finding about the host), so the suite always runs to the
/// end.
pub fn run_case(case: &Case, run: impl FnOnce(&BootImage) -> Result<RunReport, VmmError>) -> CaseResult {
    let img = case.image();
    let (at, next) = bounds(&img);
    let expected = match case.expect {
        Expect::SingleStep => format!("#DB at rip {next:#x}, DR6.BS"),
        Expect::Fault { vector, error_code } => format!("vector {vector} at rip {at:#x}, error code {error_code:#x}"),
        Expect::Trap { vector } => format!("vector {vector} at rip {next:#x}"),
    };
    let outcome = match run(&img.boot_image()) {
        Ok(report) => report.outcome,
        Err(e) => return CaseResult { name: case.name, expected, got: format!("the run failed: {e}"), pass: false },
    };
    let (got, pass) = match &outcome {
        Outcome::GuestError(GuestError::Exception(r)) => {
            let pass = match case.expect {
                Expect::SingleStep => r.vector == vector::DB && r.rip == next && r.dr6 & (dr6::BS | 0xf) == dr6::BS,
                Expect::Fault { vector, error_code } => r.vector == vector && r.rip == at && r.error_code == error_code,
                Expect::Trap { vector } => r.vector == vector && r.rip == next,
            };
            let got = match case.expect {
                Expect::SingleStep => format!("vector {} at rip {:#x}, DR6 {:#x}", r.vector, r.rip, r.dr6),
                _ => format!("vector {} at rip {:#x}, error code {:#x}", r.vector, r.rip, r.error_code),
            };
            (got, pass)
        }
        other => (format!("no exception ({other:?})"), false),
    };
    CaseResult { name: case.name, expected, got, pass }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_names_its_instruction() {
        for case in CASES {
            let img = case.image();
            let (at, next) = bounds(&img);
            assert!(next > at, "{}", case.name);
            assert!(at < img.symbol("body_end").unwrap(), "{}", case.name);
        }
    }
}

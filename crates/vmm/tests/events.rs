//! Faults during event delivery (SDM Vol. 3A table 6-5) on both simulator
//! profiles: the modern profile's CPU escalates them itself, the legacy
//! profile's shadow paging traps the #PF and the VMM merges it with the
//! event being delivered (IDT-vectoring information), as KVM does. Both
//! must end the same way. And the VMM's run limits.

use exitlab_arch::{vector, ExitReason};
use exitlab_guest::program::{program_marked, Ring, Start};
use exitlab_guest::{Image, MailboxReport};
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::limits::RunLimits;
use exitlab_vmm::{run_image_with, GuestError, Outcome, RunOptions, RunReport};
use iced_x86::code_asm::*;

const PROFILES: [&str; 2] = ["modern", "legacy"];

fn start() -> Start {
    Start { gpr: [0; 16], rflags: 0 }
}

fn run(img: &Image, profile: &str, options: &RunOptions) -> RunReport {
    let mut vm = SimVm::with_profile(img.memory_size, Profile::load(profile).unwrap(), 1).unwrap();
    run_image_with(&mut vm, img, options).unwrap()
}

/// Where this host's KVM (ring 0 in KVM's instruction emulator, see
/// docs/DESIGN.md, "Host findings") does not deliver events as the
/// architecture says, by image name. A case not listed must match.
const KVM_FINDINGS: &[&str] = &[
    // The emulator delivers through a gate whose selector names a data
    // segment (no #GP), and runs the handler with it.
    "de-gp-df", // INT3 in ring 0: KVM_EXIT_INTERNAL_ERROR.
    "bp-gp",    // The emulator delivers through a not-present code segment (no #NP).
    "ud-np",
    // The emulator runs STI; NOP; CLI through without opening an
    // interrupt window: neither self-IPI is taken (0 of 2).
    "ipi-32-33",
];

/// Compares `img`'s run on this host's KVM (where it has one) by `what`
/// with `want`, unless it is a known finding.
fn compare_on_kvm<T: PartialEq + std::fmt::Debug>(img: &Image, want: T, what: impl FnOnce(&RunReport) -> T) {
    let mut vm = match exitlab_kvm::KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) {
        Ok(vm) => vm,
        Err(e) => return eprintln!("{}: not compared on KVM: {e}", img.name),
    };
    let got = run_image_with(&mut vm, img, &RunOptions::default()).map(|r| what(&r)).map_err(|e| e.to_string());
    if KVM_FINDINGS.contains(&img.name.as_str()) {
        eprintln!("{} on KVM (a known host finding): {got:?}, the architecture: {want:?}", img.name);
    } else {
        assert_eq!(got, Ok(want), "{} on KVM", img.name);
    }
}

/// The report's vector, error code and RIP, or the outcome if not a report.
fn vector_code_rip(r: &RunReport) -> Result<(u8, u64, u64), String> {
    match &r.outcome {
        Outcome::GuestError(GuestError::Exception(rep)) => Ok((rep.vector, rep.error_code, rep.rip)),
        other => Err(format!("{other:?}")),
    }
}

fn traced() -> RunOptions {
    RunOptions { trace: true, ..RunOptions::default() }
}

fn report(r: &RunReport) -> MailboxReport {
    match &r.outcome {
        Outcome::GuestError(GuestError::Exception(rep)) => *rep,
        other => panic!("expected a guest exception report, got {other:?}"),
    }
}

/// A program whose body is `body`, with `at` naming the instruction under
/// test.
fn image(name: &str, body: impl FnOnce(&mut CodeAssembler, &mut CodeLabel) -> Result<(), IcedError>) -> Image {
    program_marked(name, Ring::Kernel, &start(), |a| {
        let mut at = a.create_label();
        body(a, &mut at)?;
        Ok(vec![("at", at)])
    })
    .unwrap()
}

/// Rewrites IDT gate `vector`'s code-segment selector to `selector` (the
/// IDT's base from SIDT).
fn gate_selector(a: &mut CodeAssembler, vector: u8, selector: u16) -> Result<(), IcedError> {
    a.sub(rsp, 16)?;
    a.sidt(ptr(rsp))?;
    a.mov(rbx, qword_ptr(rsp + 2))?;
    a.add(rsp, 16)?;
    a.mov(word_ptr(rbx + i32::from(vector) * 16 + 2), u32::from(selector))
}

/// The public report's case: RSP at 0x4000_0000_1000, which the guest's
/// tables do not map, then a read of 0x4000_0000_2000. Silicon: the #PF's
/// delivery faults on the stack (#DF), and the #DF's gate uses the same
/// stack: shutdown. The legacy profile used to reflect a plain #PF for
/// ever.
#[test]
fn a_page_fault_whose_delivery_faults_on_the_stack_shuts_down_on_every_profile() {
    let img = image("stack-df", |a, at| {
        a.mov(rsp, 0x4000_0000_1000u64)?;
        a.set_label(at)?;
        a.mov(rax, qword_ptr(0x4000_0000_2000u64))
    });
    for profile in PROFILES {
        let r = run(&img, profile, &traced());
        assert_eq!(r.outcome, Outcome::GuestError(GuestError::TripleFault), "{profile}");
        assert_eq!(r.regs.rip, img.symbol("at").unwrap(), "{profile}: the faulting instruction");
        if profile == "legacy" {
            // The read (reflected), the GDT's first use by a delivery (a
            // hidden fault: the #PF is delivered again), the #PF's push
            // (merged into #DF), the #DF's push (merged into shutdown).
            let from = r.trace.iter().position(|t| t.record.qualification == 0x4000_0000_2000).unwrap();
            let exits: Vec<(ExitReason, u64)> =
                r.trace[from..].iter().map(|t| (t.record.reason, t.record.qualification)).collect();
            let pf = ExitReason::ExceptionNmi;
            assert_eq!(exits, [(pf, 0x4000_0000_2000), (pf, 0x508), (pf, 0x4000_0000_0ff8), (pf, 0x4000_0000_0ff8)]);
        }
    }
    compare_on_kvm(&img, Outcome::GuestError(GuestError::TripleFault), |r| r.outcome.clone());
}

/// #GP while delivering #DE (contributory, contributory): #DF with error
/// code 0, delivered through the kernel's #DF gate.
#[test]
fn a_contributory_fault_during_a_contributory_one_is_a_double_fault() {
    let img = image("de-gp-df", |a, at| {
        gate_selector(a, vector::DE, 0x18)?; // #DE's gate names a data segment
        a.xor(ecx, ecx)?;
        a.set_label(at)?;
        a.div(ecx)
    });
    for profile in PROFILES {
        let rep = report(&run(&img, profile, &RunOptions::default()));
        assert_eq!((rep.vector, rep.error_code), (vector::DF, 0), "{profile}");
    }
    compare_on_kvm(&img, Ok((vector::DF, 0)), |r| vector_code_rip(r).map(|(v, c, _)| (v, c)));
}

/// #GP while delivering INT3 (benign, contributory): handled serially, the
/// #GP pushing the INT3's own address (delivery never completed) and an
/// error code of the selector without EXT (a software interrupt).
#[test]
fn a_fault_during_a_software_interrupt_is_delivered_serially_at_the_instruction() {
    let img = image("bp-gp", |a, at| {
        gate_selector(a, vector::BP, 0x18)?;
        a.set_label(at)?;
        a.int3()
    });
    let want = (vector::GP, 0x18, img.symbol("at").unwrap());
    for profile in PROFILES {
        let rep = report(&run(&img, profile, &RunOptions::default()));
        assert_eq!((rep.vector, rep.error_code, rep.rip), want, "{profile}");
    }
    compare_on_kvm(&img, Ok(want), vector_code_rip);
}

/// A gate whose code segment is not present: #NP with the selector and EXT
/// set (a hardware exception was being delivered), the case of
/// kvm-unit-tests eventinj's "NP exception".
#[test]
fn a_not_present_handler_segment_is_np_with_the_selector_and_ext() {
    let img = image("ud-np", |a, at| {
        // A copy of the GDT at 6 MiB + 4 KiB with one more entry, 0x38: the
        // kernel's code segment with P clear; #UD's gate names it.
        a.mov(rsi, 0x500u64)?;
        a.mov(rdi, 0x0060_1000u64)?;
        a.mov(ecx, 7)?;
        a.rep().movsq()?;
        a.mov(rax, qword_ptr(0x508u64))?;
        a.btr(rax, 47)?;
        a.mov(qword_ptr(rdi), rax)?;
        a.sub(rsp, 16)?;
        a.mov(word_ptr(rsp), 0x3f)?;
        a.mov(rax, 0x0060_1000u64)?;
        a.mov(qword_ptr(rsp + 2), rax)?;
        a.lgdt(ptr(rsp))?;
        a.add(rsp, 16)?;
        gate_selector(a, vector::UD, 0x38)?;
        a.set_label(at)?;
        a.ud2()
    });
    let want = (vector::NP, 0x39, img.symbol("at").unwrap());
    for profile in PROFILES {
        let rep = report(&run(&img, profile, &RunOptions::default()));
        assert_eq!((rep.vector, rep.error_code, rep.rip), want, "{profile}");
    }
    compare_on_kvm(&img, Ok(want), vector_code_rip);
}

/// A shadow miss on the stack while delivering INT3 (legacy): the VMM
/// fills the shadow and delivers the INT3 again from the IDT-vectoring
/// information, return address past the instruction; modern never exits.
#[test]
fn a_hidden_fault_during_delivery_delivers_the_event_again() {
    let img = image("bp-fresh-stack", |a, at| {
        a.mov(rsp, 0x0060_0000u64)?; // a page nothing has touched
        a.set_label(at)?;
        a.int3()
    });
    let at = img.symbol("at").unwrap();
    for profile in PROFILES {
        let r = run(&img, profile, &traced());
        let rep = report(&r);
        assert_eq!((rep.vector, rep.rip, rep.rsp), (vector::BP, at + 1, 0x0060_0000), "{profile}");
        let fills = r.trace.iter().filter(|t| t.record.qualification == 0x005f_fff8).count();
        assert_eq!(fills, usize::from(profile == "legacy"), "{profile}: the push's hidden #PF");
    }
}

/// The VMM's exit limit stops an exit storm with a report that names it.
#[test]
fn the_exit_limit_stops_a_storm_and_says_what_the_guest_was_doing() {
    let img = image("out-storm", |a, at| {
        a.nop()?;
        a.set_label(at)?;
        a.out(0x80, al)?;
        a.jmp(*at)
    });
    for profile in PROFILES {
        let limits = RunLimits { max_exits: Some(1000), ..RunLimits::default() };
        let r = run(&img, profile, &RunOptions { limits, ..RunOptions::default() });
        let Outcome::GuestError(GuestError::Runaway(s)) = &r.outcome else { panic!("{profile}: {:?}", r.outcome) };
        assert!(s.starts_with("exit limit of 1000 reached at rip 0x"), "{s}");
        assert!(s.contains("exits were IO_INSTRUCTION (last qualification 0x800040)"), "{s}");
    }
    let limits = RunLimits { max_exits: Some(1000), ..RunLimits::default() };
    if let Ok(mut vm) = exitlab_kvm::KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) {
        let r = run_image_with(&mut vm, &img, &RunOptions { limits, ..RunOptions::default() }).unwrap();
        let Outcome::GuestError(GuestError::Runaway(s)) = &r.outcome else { panic!("KVM: {:?}", r.outcome) };
        assert!(s.starts_with("exit limit of 1000 reached at rip 0x"), "KVM: {s}");
    }
}

/// A guest that never exits cannot hold the VMM past its host-time limit.
#[test]
fn the_host_time_limit_holds_for_a_guest_that_never_exits() {
    let img = image("spin", |a, at| {
        a.nop()?;
        a.set_label(at)?;
        a.jmp(*at)
    });
    let limits = RunLimits { max_host_time: Some(std::time::Duration::from_millis(50)), ..RunLimits::default() };
    let options = RunOptions { limits, ..RunOptions::default() };
    let at = img.symbol("at").unwrap();
    let r = run(&img, "modern", &options);
    let Outcome::GuestError(GuestError::Runaway(s)) = &r.outcome else { panic!("{:?}", r.outcome) };
    assert!(s.starts_with(&format!("host time limit of 0.05 s reached at rip {at:#x}")), "{s}");
    // On KVM the loop never leaves KVM_RUN: the watchdog's signal ends it.
    if let Ok(mut vm) = exitlab_kvm::KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) {
        let r = run_image_with(&mut vm, &img, &options).unwrap();
        let Outcome::GuestError(GuestError::Runaway(s)) = &r.outcome else { panic!("KVM: {:?}", r.outcome) };
        assert!(s.starts_with("host time limit of 0.05 s reached at rip 0x"), "KVM: {s}");
    }
}

/// COUNT counts NMIs; SEEN is what the first NMI handler saw of COUNT
/// after sending itself another NMI.
const COUNT: u64 = 0x0060_0000;
const SEEN: u64 = 0x0060_0008;

/// An NMI handler that counts, and on its first run sends itself an NMI
/// through the ICR and looks at the count a few instructions later.
fn nmi_handler(a: &mut CodeAssembler) -> Result<CodeLabel, IcedError> {
    let mut handler = a.create_label();
    let mut out = a.create_label();
    a.set_label(&mut handler)?;
    a.push(rax)?;
    a.push(rdi)?;
    a.inc(qword_ptr(COUNT))?;
    a.cmp(qword_ptr(COUNT), 1)?;
    a.jne(out)?;
    self_nmi(a)?;
    a.nop()?;
    a.nop()?;
    a.mov(rax, qword_ptr(COUNT))?;
    a.mov(qword_ptr(SEEN), rax)?;
    a.set_label(&mut out)?;
    a.pop(rdi)?;
    a.pop(rax)?;
    a.iretq()?;
    Ok(handler)
}

/// ICR: destination shorthand self, delivery mode NMI, level assert; then
/// eventinj's io_delay (a port write, an exit on every backend, where KVM
/// takes pending events).
fn self_nmi(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rdi, 0xfee0_0000u64)?;
    a.mov(dword_ptr(rdi + 0x300), 1 << 18 | 1 << 14 | 4 << 8)?;
    a.out(0x80, al)
}

/// kvm-unit-tests eventinj's self-NMI: an NMI sent to itself reaches the
/// handler; one sent from inside the handler waits for its IRET (NMI
/// blocking), then arrives.
#[test]
fn a_self_nmi_arrives_and_nmis_are_blocked_until_iret() {
    let img = exitlab_guest::program::program_with_handlers("self-nmi", Ring::Kernel, &start(), |a| {
        let mut over = a.create_label();
        a.jmp(over)?;
        let handler = nmi_handler(a)?;
        a.set_label(&mut over)?;
        self_nmi(a)?;
        // Another exit before the count is read: this host's KVM takes the
        // NMI that waited for the handler's IRET only at its next entry
        // (the simulator and silicon at the IRET).
        a.out(0x80, al)?;
        a.mov(rax, qword_ptr(COUNT))?;
        a.mov(rbx, qword_ptr(SEEN))?;
        Ok(exitlab_guest::program::Body { marks: Vec::new(), gates: vec![(vector::NMI, handler)] })
    })
    .unwrap();
    for profile in PROFILES {
        let r = run(&img, profile, &traced());
        assert!(matches!(r.outcome, Outcome::Exited { .. }), "{profile}: {:?}", r.outcome);
        assert_eq!((r.regs.gpr[0], r.regs.gpr[3]), (2, 1), "{profile}: two NMIs, the second after IRET");
        if profile == "legacy" {
            // NMI exiting: each NMI exits, and the second waits in the VMM
            // for an NMI-window exit at the first handler's IRET.
            // (EXCEPTION_NMI with qualification 0: the shadow-paging #PF
            // exits share the reason and carry their linear address.)
            let count = |reason, q: Option<u64>| {
                r.trace
                    .iter()
                    .filter(|t| t.record.reason == reason && q.is_none_or(|q| t.record.qualification == q))
                    .count()
            };
            assert_eq!((count(ExitReason::ExceptionNmi, Some(0)), count(ExitReason::NmiWindow, None)), (2, 1));
        }
    }
    compare_on_kvm(&img, Ok((2, 1)), |r| match r.outcome {
        Outcome::Exited { .. } => Ok((r.regs.gpr[0], r.regs.gpr[3])),
        ref other => Err(format!("{other:?}")),
    });
}

/// Where [`irq_handler`]s log their vectors, in the order they ran.
const LOG: u64 = 0x0060_0010;

/// A fixed-interrupt handler that logs `vector` at LOG[COUNT], counts, and
/// writes the EOI.
fn irq_handler(a: &mut CodeAssembler, vector: u8) -> Result<CodeLabel, IcedError> {
    let mut handler = a.create_label();
    a.set_label(&mut handler)?;
    a.push(rax)?;
    a.push(rdi)?;
    a.mov(rax, qword_ptr(COUNT))?;
    a.mov(qword_ptr(rax * 8 + LOG), i32::from(vector))?;
    a.inc(qword_ptr(COUNT))?;
    a.mov(rdi, 0xfee0_0000u64)?;
    a.mov(dword_ptr(rdi + 0xb0), 0)?;
    a.pop(rdi)?;
    a.pop(rax)?;
    a.iretq()?;
    Ok(handler)
}

/// kvm-unit-tests eventinj's "vec 32/33": two fixed self-IPIs sent with IF
/// clear, then STI; NOP; CLI. The higher vector is taken after the NOP,
/// its handler's IRET sets IF (no shadow), so the lower one is taken
/// before the CLI: both, 33 first (SDM Vol. 3A 11.8.3). The legacy
/// profile's VMM used to acknowledge 32 at its EXTERNAL_INTERRUPT exit,
/// which left 33 behind 32's in-service bit until after the CLI.
#[test]
fn two_self_ipis_sent_with_if_clear_arrive_higher_first_in_one_sti_window() {
    let img = exitlab_guest::program::program_with_handlers("ipi-32-33", Ring::Kernel, &start(), |a| {
        let mut over = a.create_label();
        a.jmp(over)?;
        let h32 = irq_handler(a, 32)?;
        let h33 = irq_handler(a, 33)?;
        a.set_label(&mut over)?;
        a.mov(rdi, 0xfee0_0000u64)?;
        a.mov(dword_ptr(rdi + 0xf0), 0x1ff)?; // SVR: software-enabled
        for v in [32i32, 33] {
            a.mov(dword_ptr(rdi + 0x300), 1 << 18 | 1 << 14 | v)?; // self, fixed
        }
        a.out(0x80, al)?;
        a.sti()?;
        a.nop()?;
        a.cli()?;
        a.mov(rax, qword_ptr(COUNT))?;
        a.mov(rbx, qword_ptr(LOG))?;
        a.mov(rcx, qword_ptr(LOG + 8))?;
        Ok(exitlab_guest::program::Body { marks: Vec::new(), gates: vec![(32, h32), (33, h33)] })
    })
    .unwrap();
    let got = |r: &RunReport| match r.outcome {
        Outcome::Exited { .. } => Ok((r.regs.gpr[0], r.regs.gpr[3], r.regs.gpr[1])),
        ref other => Err(format!("{other:?}")),
    };
    for profile in PROFILES {
        assert_eq!(got(&run(&img, profile, &RunOptions::default())), Ok((2, 33, 32)), "{profile}");
    }
    compare_on_kvm(&img, Ok((2, 33, 32)), got);
}

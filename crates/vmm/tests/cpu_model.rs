//! The CPU model on both simulator profiles: CPUID is the contract (what
//! it advertises runs, what it does not is #UD), the MSRs real guests
//! touch (kvm-unit-tests msr.c, tsc.c, pcid.c, apic.c's reset_apic),
//! PCID and INVPCID (pcid.c), and VMCALL with KVM's hypercall ABI
//! (hypercall.c, vmexit.c's vmcall).

use exitlab_arch::bits::msr;
use exitlab_arch::{vector, ExitReason, Regs};
use exitlab_guest::program::{program, Ring, Start};
use exitlab_guest::Image;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image_with, Access, GuestError, Outcome, RunOptions, RunReport};
use iced_x86::code_asm::*;

type Body = fn(&mut CodeAssembler) -> Result<(), IcedError>;

fn image(ring: Ring, body: Body) -> Image {
    program("cpu-model", ring, &Start { gpr: [0; 16], rflags: 0 }, body).unwrap()
}

fn run(img: &Image, profile: &str) -> RunReport {
    let mut vm = SimVm::with_profile(img.memory_size, Profile::load(profile).unwrap(), 1).unwrap();
    let options = RunOptions { trace: true, ..RunOptions::default() };
    run_image_with(&mut vm, img, &options).unwrap()
}

/// The registers at the end, or the exception (vector, error code) the
/// kernel reported.
fn outcome(r: &RunReport) -> Result<Regs, (u8, u64)> {
    match &r.outcome {
        Outcome::Exited { .. } => Ok(r.regs),
        Outcome::GuestError(GuestError::Exception(rep)) => Err((rep.vector, rep.error_code)),
        other => panic!("{other:?}"),
    }
}

/// `body` in ring 0 on `profile`.
fn on(profile: &str, body: Body) -> Result<Regs, (u8, u64)> {
    outcome(&run(&image(Ring::Kernel, body), profile))
}

const GP: Result<Regs, (u8, u64)> = Err((vector::GP, 0));

fn rdmsr(a: &mut CodeAssembler, index: u32) -> Result<(), IcedError> {
    a.mov(ecx, index)?;
    a.rdmsr()
}

fn wrmsr(a: &mut CodeAssembler, index: u32, v: u64) -> Result<(), IcedError> {
    a.mov(ecx, index)?;
    a.mov(eax, v as u32)?;
    a.mov(edx, (v >> 32) as u32)?;
    a.wrmsr()
}

fn edx_eax(r: &Regs) -> u64 {
    r.gpr[Regs::RDX] << 32 | (r.gpr[Regs::RAX] & 0xffff_ffff)
}

#[test]
fn vmcall_answers_with_kvms_hypercall_abi_and_exits_once() {
    for profile in ["modern", "legacy"] {
        let r = run(
            &image(Ring::Kernel, |a| {
                a.mov(rax, u64::MAX)?;
                a.vmcall()?;
                a.mov(rbx, rax)?;
                a.mov(eax, 1)?; // KVM_HC_VAPIC_POLL_IRQ
                a.vmcall()
            }),
            profile,
        );
        let regs = outcome(&r).unwrap();
        assert_eq!((regs.gpr[Regs::RBX], regs.gpr[Regs::RAX]), (-1000i64 as u64, 0), "{profile}: -KVM_ENOSYS, then 0");
        assert_eq!(r.trace.iter().filter(|t| t.record.reason == ExitReason::Vmcall).count(), 2, "{profile}");
        let user = outcome(&run(
            &image(Ring::User, |a| {
                a.mov(eax, 1)?;
                a.vmcall()
            }),
            profile,
        ))
        .unwrap();
        assert_eq!(user.gpr[Regs::RAX], u64::MAX, "{profile}: -KVM_EPERM from ring 3");
    }
}

#[test]
fn vmcall_at_the_edge_of_the_canonical_space_completes_then_the_fetch_faults() {
    // hypercall.c test_edge: VMCALL in the last three bytes below 2^47;
    // it completes (RIP = 0x800000000000), and the next fetch is #GP(0)
    // there. The guest maps the page with its own tables: PML4[255] ->
    // PDPT at 0x610000 -> PD at 0x611000 -> PT at 0x612000 -> 0x613000.
    let body: Body = |a| {
        for (table, index, next) in [
            (0x1000u64, 255u64, 0x61_0000u64),
            (0x61_0000, 511, 0x61_1000),
            (0x61_1000, 511, 0x61_2000),
            (0x61_2000, 511, 0x61_3000),
        ] {
            a.mov(rax, next | 3)?;
            a.mov(qword_ptr(table + index * 8), rax)?;
        }
        a.mov(dword_ptr(0x61_3ffdu64), 0x00c1_010f)?; // 0f 01 c1: vmcall
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.mov(rbx, 0x7fff_ffff_fffdu64)?;
        a.mov(rax, u64::MAX)?;
        a.jmp(rbx)
    };
    for profile in ["modern", "legacy"] {
        let r = run(&image(Ring::Kernel, body), profile);
        let Outcome::GuestError(GuestError::Exception(rep)) = &r.outcome else { panic!("{profile}: {:?}", r.outcome) };
        assert_eq!((rep.vector, rep.error_code, rep.rip), (vector::GP, 0, 0x8000_0000_0000), "{profile}");
        let vmcall = r.trace.iter().find(|t| t.record.reason == ExitReason::Vmcall).unwrap();
        assert_eq!(vmcall.rip, 0x7fff_ffff_fffd, "{profile}");
    }
}

#[test]
fn misc_enable_keeps_read_only_bits_and_refuses_reserved_ones() {
    // msr.c: MISC_ENABLE written with 0x400c50809, bits 7, 11 and 12 kept.
    for profile in ["modern", "legacy"] {
        let r = on(profile, |a| {
            rdmsr(a, msr::IA32_MISC_ENABLE)?;
            a.mov(r8, rax)?;
            wrmsr(a, msr::IA32_MISC_ENABLE, 0x4_00c5_0009 | 0x1800)?;
            rdmsr(a, msr::IA32_MISC_ENABLE)
        })
        .unwrap();
        assert_eq!((r.gpr[8], edx_eax(&r)), (0x1801, 0x4_00c5_1809), "{profile}");
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_MISC_ENABLE, 1 << 1)), GP, "{profile}: bit 1 is reserved");
    }
}

#[test]
fn machine_check_and_mitigation_msrs_are_as_a_cpu_without_them() {
    for profile in ["modern", "legacy"] {
        // MCG_CAP: no banks (msr.c reads it with no fault handler).
        let r = on(profile, |a| {
            rdmsr(a, msr::IA32_MCG_CAP)?;
            a.mov(rbx, rax)?;
            rdmsr(a, msr::IA32_MCG_STATUS)
        })
        .unwrap();
        assert_eq!((r.gpr[Regs::RBX], edx_eax(&r)), (0, 0), "{profile}");
        assert_eq!(on(profile, |a| rdmsr(a, 0x400)), GP, "{profile}: MC0_CTL, no bank 0");
        // No CPUID.07H:EDX[26]: SPEC_CTRL and PRED_CMD are #GP.
        assert_eq!(on(profile, |a| rdmsr(a, msr::IA32_SPEC_CTRL)), GP, "{profile}");
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_PRED_CMD, 1)), GP, "{profile}");
        // xAPIC mode: the x2APIC MSRs are #GP.
        assert_eq!(on(profile, |a| rdmsr(a, msr::X2APIC_FIRST + 2)), GP, "{profile}: x2APIC ID");
        assert_eq!(on(profile, |a| wrmsr(a, msr::X2APIC_FIRST + 0x30, 0)), GP, "{profile}: x2APIC ICR");
    }
}

#[test]
fn pat_tsc_aux_and_base_msrs_check_their_values() {
    for profile in ["modern", "legacy"] {
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_PAT, 0x0007_0406_0007_0206)), GP, "{profile}: type 2");
        let r = on(profile, |a| {
            wrmsr(a, msr::IA32_PAT, 0x0707_0707)?;
            rdmsr(a, msr::IA32_PAT)
        });
        assert_eq!(r.map(|r| edx_eax(&r)), Ok(0x0707_0707), "{profile}");
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_TSC_AUX, 1 << 32)), GP, "{profile}");
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_FS_BASE, 1 << 47)), GP, "{profile}: non-canonical");
    }
}

/// The trace names each RDMSR's and WRMSR's MSR (ECX): SDM Vol. 3C
/// 26.1.3 gives these exits no qualification, so the index is the access.
#[test]
fn msr_exits_carry_their_index_in_the_trace() {
    for profile in ["modern", "legacy"] {
        let r = run(
            &image(Ring::Kernel, |a| {
                wrmsr(a, msr::IA32_TSC_AUX, 5)?;
                rdmsr(a, msr::IA32_TSC_AUX)?;
                rdmsr(a, msr::IA32_PAT)
            }),
            profile,
        );
        let msrs: Vec<(ExitReason, Access)> = r
            .trace
            .iter()
            .filter(|e| matches!(e.record.reason, ExitReason::MsrRead | ExitReason::MsrWrite))
            .map(|e| (e.record.reason, e.access))
            .collect();
        assert_eq!(
            msrs,
            [
                (ExitReason::MsrWrite, Access::Msr { index: msr::IA32_TSC_AUX, write: true }),
                (ExitReason::MsrRead, Access::Msr { index: msr::IA32_TSC_AUX, write: false }),
                (ExitReason::MsrRead, Access::Msr { index: msr::IA32_PAT, write: false }),
            ],
            "{profile}"
        );
    }
}

#[test]
fn apic_base_enable_toggles_and_x2apic_is_refused_without_cpuid() {
    // reset_apic(): EN and EXTD cleared, then EN set again; the APIC is
    // back in its reset state (SVR 0xff, software-disabled).
    for profile in ["modern", "legacy"] {
        let r = on(profile, |a| {
            a.mov(rdi, 0xfee0_0000u64)?;
            a.mov(dword_ptr(rdi + 0xf0), 0x1ff)?;
            wrmsr(a, msr::IA32_APIC_BASE, 0xfee0_0000)?;
            rdmsr(a, msr::IA32_APIC_BASE)?;
            a.mov(rbx, rax)?;
            wrmsr(a, msr::IA32_APIC_BASE, 0xfee0_0800)?;
            a.mov(esi, dword_ptr(rdi + 0xf0))
        })
        .unwrap();
        assert_eq!(
            (r.gpr[Regs::RBX], r.gpr[Regs::RSI]),
            (0xfee0_0100, 0xff),
            "{profile}: BSP stays, EN off; SVR reset"
        );
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_APIC_BASE, 0xfee0_0c00)), GP, "{profile}: EXTD");
        assert_eq!(on(profile, |a| wrmsr(a, msr::IA32_APIC_BASE, 0xfed0_0800)), GP, "{profile}: relocation");
    }
}

#[test]
fn tsc_writes_move_tsc_adjust_and_not_time() {
    // SDM 18.17.3: a TSC write adds its difference to IA32_TSC_ADJUST; a
    // TSC_ADJUST write moves the TSC. tsc.c writes the TSC to 0 and 1e11.
    for profile in ["modern", "legacy"] {
        let r = on(profile, |a| {
            wrmsr(a, msr::IA32_TSC_ADJUST, 1_000_000)?;
            a.rdtsc()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(r8, rax)?;
            wrmsr(a, msr::IA32_TSC, 100_000_000_000)?;
            a.rdtsc()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)?;
            a.mov(r9, rax)?;
            rdmsr(a, msr::IA32_TSC_ADJUST)
        })
        .unwrap();
        assert!(r.gpr[8] >= 1_000_000, "{profile}: the adjustment is in the TSC");
        assert!((100_000_000_000..100_000_100_000).contains(&r.gpr[9]), "{profile}: TSC {}", r.gpr[9]);
        // 1e6, plus the write's jump from the TSC it found (a few cycles
        // after the RDTSC that read r8) to 1e11.
        let jump = (100_000_000_000 + 1_000_000 - r.gpr[8]) - edx_eax(&r);
        assert!(jump < 1_000, "{profile}: TSC_ADJUST {:#x}, r8 {:#x}", edx_eax(&r), r.gpr[8]);
    }
}

/// INVPCID of type RAX for the descriptor (PCID RCX, address 0) at
/// 0x600000.
fn invpcid(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rdi, 0x60_0000u64)?;
    a.mov(qword_ptr(rdi), rcx)?;
    a.mov(qword_ptr(rdi + 8), 0)?;
    a.invpcid(rax, xmmword_ptr(rdi))
}

#[test]
fn pcid_and_invpcid_follow_the_profile_and_the_cr4_rules() {
    // pcid.c on modern (PCID and INVPCID advertised) and legacy (neither).
    let cpuid_bits: Body = |a| {
        a.mov(eax, 1)?;
        a.cpuid()?;
        a.mov(r8, rcx)?;
        a.mov(eax, 7)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.mov(r9, rbx)
    };
    let set_pcide: Body = |a| {
        a.mov(rax, cr4)?;
        a.bts(rax, 17)?;
        a.mov(cr4, rax)
    };
    let pcide_with_cr3_pcid: Body = |a| {
        a.mov(rax, cr3)?;
        a.or(rax, 1)?;
        a.mov(cr3, rax)?;
        a.mov(rax, cr4)?;
        a.bts(rax, 17)?;
        a.mov(cr4, rax)
    };
    let r = on("modern", cpuid_bits).unwrap();
    assert_eq!((r.gpr[8] >> 17 & 1, r.gpr[9] >> 10 & 1), (1, 1), "modern: PCID, INVPCID");
    let r = on("legacy", cpuid_bits).unwrap();
    assert_eq!((r.gpr[8] >> 17 & 1, r.gpr[9] >> 10 & 1), (0, 0), "legacy: neither");
    assert!(on("modern", set_pcide).is_ok());
    assert_eq!(on("legacy", set_pcide), GP, "PCIDE without PCID");
    assert_eq!(on("modern", pcide_with_cr3_pcid), GP, "PCIDE with CR3[11:0] != 0");
    let with = |kind: u32, pcid: u32| -> Body {
        match (kind, pcid) {
            (2, 0) => |a| {
                a.mov(eax, 2)?;
                a.xor(ecx, ecx)?;
                invpcid(a)
            },
            (0, 1) => |a| {
                a.xor(eax, eax)?;
                a.mov(ecx, 1)?;
                invpcid(a)
            },
            _ => |a| {
                a.mov(eax, 4)?;
                a.xor(ecx, ecx)?;
                invpcid(a)
            },
        }
    };
    assert!(on("modern", with(2, 0)).is_ok(), "INVPCID all contexts");
    assert_eq!(on("modern", with(0, 1)), GP, "PCID 1 while CR4.PCIDE = 0");
    assert_eq!(on("modern", with(4, 0)), GP, "type 4");
    assert_eq!(on("legacy", with(2, 0)), Err((vector::UD, 0)), "INVPCID not advertised");
}
#[test]
fn vmcall_on_kvm_answers_like_the_simulator_or_is_ended_by_the_host_time_limit() {
    // KVM answers VMCALL in the kernel with the same ABI (-KVM_ENOSYS for
    // RAX = -1). This host's nested KVM livelocks on it instead (docs/
    // DESIGN.md, "Host findings"): the VMM's host-time limit ends the run
    // with RIP still at the VMCALL.
    let img = image(Ring::Kernel, |a| {
        a.mov(rax, u64::MAX)?;
        a.vmcall()
    });
    let Ok(mut vm) = exitlab_kvm::KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) else {
        return eprintln!("no usable KVM: not compared");
    };
    let limits =
        exitlab_vmm::limits::RunLimits { max_host_time: Some(std::time::Duration::from_secs(1)), ..Default::default() };
    let r = run_image_with(&mut vm, &img, &RunOptions { limits, ..RunOptions::default() }).unwrap();
    match &r.outcome {
        Outcome::Exited { .. } => assert_eq!(r.regs.gpr[Regs::RAX], -1000i64 as u64),
        Outcome::GuestError(GuestError::Runaway(s)) => {
            let vmcall = img.symbol("body").unwrap() + 10; // after mov rax, imm64
            assert!(s.starts_with(&format!("host time limit of 1 s reached at rip {vmcall:#x}")), "{s}");
            eprintln!("VMCALL livelocked on this host's KVM: {s}");
        }
        other => panic!("{other:?}"),
    }
}

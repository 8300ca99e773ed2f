//! Each VM-execution control: the exit it causes (or the exit it removes),
//! with its qualification and exit information.

mod support;

use exitlab_arch::bits::msr;
use exitlab_arch::vmx::{exception_bit, Controls, IoBitmap, MsrBitmap};
use exitlab_arch::{vector, CrAccessQual};
use exitlab_guest::layout::{self, PORT_DEBUG_EXIT};
use exitlab_guest::program::{program, Ring};
use exitlab_guest::Image;
use exitlab_hv::{Injection, Vcpu, Vm, VmExit, VmxVcpu, VmxVm};
use exitlab_sim::{SimVcpu, SimVm};
use iced_x86::code_asm::*;
use support::*;

fn image(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Image {
    program("controls", Ring::Kernel, &start(), body).unwrap()
}

/// A booted vCPU with `controls`, for tests that drive exits one by one.
fn boot(img: &Image, controls: &Controls) -> (SimVm, SimVcpu) {
    let mut vm = SimVm::new(img.memory_size).unwrap();
    for c in img.boot_layout().chunks {
        vm.write_memory(c.gpa, &c.bytes).unwrap();
    }
    vm.write_memory(img.load_gpa, &img.bytes).unwrap();
    let mut vcpu = vm.create_vcpu(0, &img.boot_layout().state).unwrap();
    vcpu.set_controls(controls).unwrap();
    (vm, vcpu)
}

/// The next exit that is not the kernel's boot-time port I/O or local-APIC
/// setup (APIC_WRITE exits under APIC virtualization).
fn next_exit(vcpu: &mut SimVcpu) -> VmExit {
    loop {
        let e = vcpu.run().unwrap();
        match &e {
            VmExit::ApicWrite { .. } => {}
            VmExit::Io(io) if io.qual.port & !7 == layout::SERIAL_COM1 || matches!(io.qual.port, 0x21 | 0xa1) => {
                if io.qual.is_in {
                    vcpu.complete_read(&[0x20]);
                }
            }
            _ => return e,
        }
    }
}

fn count(r: &Run, f: impl Fn(&VmExit) -> bool) -> usize {
    r.exits.iter().filter(|e| f(e)).count()
}

#[test]
fn hlt_exiting_decides_whether_hlt_reaches_the_vmm() {
    let img = exitlab_guest::find_workload("hlt").unwrap();
    let img = img.build(&img.resolve(["n=5", "warmup=0"]).unwrap()).unwrap();
    let on = run_controlled(&img, 0, Some(&Controls::default()));
    assert_eq!(on.end, End::Done);
    assert_eq!(count(&on, |e| matches!(e, VmExit::Hlt)), 5);
    let off = run_controlled(&img, 0, Some(&Controls { hlt_exiting: false, ..Controls::default() }));
    assert_eq!(off.end, End::Done);
    assert_eq!(count(&off, |e| matches!(e, VmExit::Hlt)), 0);
    // The guest woke five times either way.
    assert_eq!(off.vcpu.cpu().apic.timer_fires, 5);
}

#[test]
fn io_bitmap_traps_chosen_ports_and_the_rest_reads_as_open_bus() {
    let mut bitmap = IoBitmap::default();
    bitmap.set(0x80, false);
    let c = Controls { io_bitmap: Some(bitmap), ..Controls::default() };
    let r = run_controlled(
        &image(|a| {
            a.out(0x80, al)?;
            a.in_(al, 0x80)?;
            a.out(0x81, al)
        }),
        7,
        Some(&c),
    );
    let ports: Vec<u16> = r
        .exits
        .iter()
        .filter_map(|e| match e {
            VmExit::Io(io) if io.qual.port < 0x100 => Some(io.qual.port),
            _ => None,
        })
        .collect();
    assert_eq!(ports, vec![0x21, 0xa1, 0x81]);
    assert_eq!(r.vcpu.cpu().gpr[0] & 0xff, 0xff);
}

#[test]
fn msr_bitmap_passes_chosen_msrs_through() {
    let mut bitmap = MsrBitmap::default();
    bitmap.set(msr::IA32_APIC_BASE, false, false);
    let c = Controls { msr_bitmap: Some(bitmap), ..Controls::default() };
    let r = run_controlled(
        &image(|a| {
            a.mov(ecx, msr::IA32_APIC_BASE)?;
            a.rdmsr()?;
            a.mov(r12, rax)?;
            a.mov(ecx, msr::IA32_EFER)?;
            a.rdmsr()
        }),
        0,
        Some(&c),
    );
    assert_eq!(r.vcpu.cpu().gpr[12], 0xfee0_0900);
    let msrs: Vec<u32> = r
        .exits
        .iter()
        .filter_map(|e| match e {
            VmExit::MsrRead { msr } => Some(*msr),
            _ => None,
        })
        .collect();
    assert_eq!(msrs, vec![msr::IA32_EFER]);
}

#[test]
fn cr3_and_cr0_accesses_exit_with_sdm_qualifications_and_lengths() {
    let c = Controls { cr3_load_exiting: true, cr3_store_exiting: true, cr0_mask: 1 << 3, ..Controls::default() };
    let img = image(|a| {
        a.mov(r10, cr3)?;
        a.mov(cr3, r9)?;
        a.mov(rax, cr0)?;
        a.or(rax, 1 << 3)?;
        a.mov(cr0, rax)
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    let mut quals = Vec::new();
    loop {
        match next_exit(&mut vcpu) {
            VmExit::CrAccess(q) => {
                quals.push((q, vcpu.exit_info().instruction_len));
                vcpu.skip_instruction().unwrap();
            }
            VmExit::Io(io) if io.qual.port == PORT_DEBUG_EXIT => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        quals,
        vec![
            (CrAccessQual::mov(3, false, 10), 4), // mov r10, cr3: REX + 0f 20 /r
            (CrAccessQual::mov(3, true, 9), 4),
            (CrAccessQual::mov(0, true, 0), 3), // setting the host-owned TS bit
        ]
    );
    assert_eq!(quals[0].0.encode(), 3 | 1 << 4 | 10 << 8);
}

#[test]
fn invlpg_and_rdtsc_exiting() {
    let c = Controls { invlpg_exiting: true, rdtsc_exiting: true, ..Controls::default() };
    let img = image(|a| {
        a.mov(rsi, 0x12_3456u64)?;
        a.invlpg(ptr(rsi))?;
        a.rdtsc()
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    assert_eq!(next_exit(&mut vcpu), VmExit::Invlpg { linear: 0x12_3456 });
    assert_eq!(vcpu.exit_info().guest_linear, Some(0x12_3456));
    vcpu.skip_instruction().unwrap();
    assert_eq!(next_exit(&mut vcpu), VmExit::Rdtsc);
    assert_eq!(vcpu.exit_info().instruction_len, 2);
}

#[test]
fn exception_bitmap_traps_the_exception_and_injection_delivers_it() {
    let c = Controls { exception_bitmap: exception_bit(vector::UD), ..Controls::default() };
    let img = image(|a| a.ud2());
    let (vm, mut vcpu) = boot(&img, &c);
    let e = next_exit(&mut vcpu);
    assert_eq!(e, VmExit::Exception { vector: vector::UD, error_code: None, qualification: 0 });
    let at = vcpu.regs().unwrap().rip;
    assert_eq!(at, img.symbol("body").unwrap(), "RIP stays at the faulting UD2");
    vcpu.inject(Injection::exception(vector::UD, None)).unwrap();
    let _ = vm;
    let r = run_controlled(&img, 0, Some(&c));
    let rep = report(&r);
    assert_eq!((rep.vector, rep.rip), (vector::UD, img.symbol("body").unwrap()));
}

#[test]
fn injected_exception_arrives_with_its_error_code_at_the_entry_rip() {
    let img = image(|a| a.nop());
    let (vm, mut vcpu) = boot(&img, &Controls::default());
    // Let the kernel boot, then inject #GP(0x18) before the body's first
    // instruction: the handler must see that RIP and error code.
    let body = img.symbol("body").unwrap();
    let mut r = vcpu.regs().unwrap();
    let boot_rip = r.rip;
    assert_ne!(boot_rip, body);
    vcpu.set_controls(&Controls { monitor_trap_flag: true, ..Controls::default() }).unwrap();
    while r.rip != body {
        next_exit(&mut vcpu);
        r = vcpu.regs().unwrap();
    }
    vcpu.set_controls(&Controls::default()).unwrap();
    vcpu.inject(Injection::exception(vector::GP, Some(0x18))).unwrap();
    match next_exit(&mut vcpu) {
        VmExit::Io(io) if io.qual.port == layout::PORT_REPORT => {}
        other => panic!("{other:?}"),
    }
    let mut b = [0u8; exitlab_guest::MailboxReport::SIZE];
    vm.read_memory(layout::MAILBOX, &mut b).unwrap();
    let rep = exitlab_guest::MailboxReport::from_bytes(&b);
    assert_eq!((rep.vector, rep.error_code, rep.rip), (vector::GP, 0x18, body));
}

#[test]
fn interrupt_window_exits_once_interrupts_are_open_after_the_sti_shadow() {
    let c = Controls { interrupt_window_exiting: true, ..Controls::default() };
    let img = image(|a| {
        a.sti()?;
        a.nop()?;
        a.nop()
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    assert_eq!(next_exit(&mut vcpu), VmExit::InterruptWindow);
    let sti = img.symbol("body").unwrap();
    // STI (1 byte) and the NOP in its shadow ran; the window opens after.
    assert_eq!(vcpu.regs().unwrap().rip, sti + 2);
}

#[test]
fn monitor_trap_flag_exits_after_every_instruction() {
    let c = Controls { monitor_trap_flag: true, ..Controls::default() };
    let img = image(|a| {
        a.nop()?;
        a.xor(eax, eax)?;
        a.inc(eax)
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    let body = img.symbol("body").unwrap();
    let mut rips = Vec::new();
    while rips.len() < 4 {
        if let VmExit::MonitorTrap = next_exit(&mut vcpu) {
            let rip = vcpu.regs().unwrap().rip;
            if rip > body && rip <= body + 5 {
                rips.push(rip);
            }
        }
        if rips.last() == Some(&(body + 5)) {
            break;
        }
    }
    assert_eq!(rips, vec![body + 1, body + 3, body + 5]);
}

#[test]
fn external_interrupt_exiting_hands_interrupts_to_the_vmm_even_with_if_clear() {
    let c = Controls { external_interrupt_exiting: true, ..Controls::default() };
    let img = image(|a| {
        a.mov(rdi, 0xfee0_0000u64)?;
        a.mov(dword_ptr(rdi + 0x300), 1 << 18 | 0x50)?;
        a.nop()
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    assert_eq!(next_exit(&mut vcpu), VmExit::ExternalInterrupt { vector: 0x50 });
    let r = run_controlled(&img, 0, Some(&c));
    assert_eq!(report(&r).vector, 0x50, "the driver injected it back");
}

#[test]
fn preemption_timer_expires_in_guest_cycles() {
    let c = Controls { preemption_timer: Some(20_000), ..Controls::default() };
    let img = image(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 1_000_000)?;
        a.set_label(&mut top)?;
        a.dec(ecx)?;
        a.jnz(top)
    });
    let (_vm, mut vcpu) = boot(&img, &c);
    assert_eq!(next_exit(&mut vcpu), VmExit::PreemptionTimer);
    let count = vcpu.regs().unwrap().gpr[1];
    assert!(count > 0 && count < 1_000_000, "stopped inside the loop: rcx = {count}");
}

#[test]
fn string_io_exits_carry_instruction_information() {
    let img = image(|a| {
        a.mov(rsi, 0x30_0000u64)?;
        a.mov(ecx, 1)?;
        a.mov(edx, 0x80)?;
        a.rep().outsb()
    });
    let (_vm, mut vcpu) = boot(&img, &Controls::default());
    loop {
        if let VmExit::Io(io) = next_exit(&mut vcpu) {
            if io.qual.port == 0x80 {
                assert!(io.qual.string && io.qual.rep);
                // 64-bit address size (2 in 9:7), DS (3 in 17:15).
                assert_eq!(vcpu.exit_info().instruction_info, 2 << 7 | 3 << 15);
                break;
            }
        }
    }
}

#[test]
fn posted_interrupts_arrive_without_an_exit_before_entry_or_in_guest_mode() {
    use exitlab_arch::posted::{Descriptor, SIZE};
    use exitlab_arch::vmx::PostedInterrupts;
    let img = image(|a| {
        let mut top = a.create_label();
        a.out(0x80, al)?;
        a.sti()?;
        a.mov(ecx, 200_000)?;
        a.set_label(&mut top)?;
        a.dec(ecx)?;
        a.jnz(top)
    });
    let (mut vm, mut vcpu) = boot(&img, &Controls::default());
    let descriptor = vm.alloc_host_pages(1).unwrap();
    vm.write_host(descriptor, &Descriptor { nv: 0xf2, ndst: 0, ..Descriptor::default() }.to_bytes()).unwrap();
    let pi = PostedInterrupts { notification_vector: 0xf2, descriptor };
    vcpu.set_controls(&Controls { posted_interrupts: Some(pi), ..Controls::default() }).unwrap();
    let read = |vm: &SimVm| {
        let mut b = [0u8; SIZE];
        vm.read_host(descriptor, &mut b).unwrap();
        Descriptor::from_bytes(&b)
    };

    assert!(matches!(next_exit(&mut vcpu), VmExit::Io(io) if io.qual.port == 0x80));
    // Outside guest mode: the first post notifies, the second finds ON set
    // and rides on the same notification.
    vm.post_interrupt(descriptor, 0x41, None).unwrap();
    vm.post_interrupt(descriptor, 0x40, None).unwrap();
    let d = read(&vm);
    assert!(d.on);
    assert_eq!(d.pir[1], 1 << 0 | 1 << 1, "PIR holds vectors 0x40 and 0x41");
    // And one posted while the guest runs.
    vm.post_interrupt(descriptor, 0x41, Some(vcpu.now_ns() + 10_000)).unwrap();

    let exit = next_exit(&mut vcpu);
    assert!(matches!(&exit, VmExit::Io(io) if io.qual.port == PORT_DEBUG_EXIT), "no exit before the end: {exit:?}");
    let counters = vcpu.counters().unwrap();
    let counter = |name: &str| counters.iter().find(|c| c.name == name).unwrap().value;
    assert_eq!(counter("posted_notifications"), 2);
    assert_eq!(counter("interrupts"), 3);
    assert_eq!(read(&vm), Descriptor { nv: 0xf2, ..Descriptor::default() }, "processing cleared ON and PIR");
    assert!(vm.post_interrupt(1, 0x41, None).is_err(), "a descriptor outside host memory is an error, not a panic");
}

/// With APIC virtualization, writes to TPR, EOI and a fixed self-IPI are
/// virtualized; a write to any other register (here the timer's initial
/// count) lands and is followed by a trap-like APIC_WRITE exit, RIP past
/// the write (SDM Vol. 3C, APIC-write emulation). Without it every access
/// is an APIC_ACCESS exit before the instruction.
#[test]
fn apic_register_writes_the_cpu_does_not_virtualize_exit_as_apic_write_after_the_write() {
    use exitlab_arch::bits::apic;
    let base = apic::DEFAULT_BASE;
    let img = image(|a| {
        a.mov(rdi, base)?;
        a.mov(dword_ptr(rdi + apic::TPR as i32), 0x10u32)?;
        a.mov(dword_ptr(rdi + apic::EOI as i32), 0u32)?;
        a.mov(dword_ptr(rdi + apic::ICR_LOW as i32), 1u32 << 18 | 0x41)?;
        a.mov(dword_ptr(rdi + apic::TIMER_INITIAL_COUNT as i32), 12345u32)?;
        a.nop()
    });
    let r = run_controlled(&img, 0, Some(&Controls::default()));
    assert_eq!(r.end, End::Done);
    let writes: Vec<u16> = r
        .exits
        .iter()
        .filter_map(|e| match e {
            VmExit::ApicWrite { offset } => Some(*offset),
            _ => None,
        })
        .collect();
    // The kernel's own set-up writes come first; the body's only the timer's.
    assert_eq!(writes.last(), Some(&(apic::TIMER_INITIAL_COUNT as u16)), "{writes:?}");
    assert!(!writes.contains(&(apic::TPR as u16)) && !writes.contains(&(apic::EOI as u16)), "{writes:?}");
    assert!(!writes.contains(&(apic::ICR_LOW as u16)), "the fixed self-IPI is virtualized: {writes:?}");
    assert_eq!(r.vcpu.cpu().apic.read(apic::TIMER_INITIAL_COUNT, 0), 12345, "the write landed");
}

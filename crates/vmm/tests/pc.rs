//! The PC platform's interrupt paths end to end, on the simulator (every
//! PC model exitlab's, every access an exit) and on KVM (the PIC pair,
//! IOAPIC, local APIC and PIT in the kernel): the 8254 through the IOAPIC
//! (IRQ 0 to pin 2, as the MADT says), the 8254 through the 8259 and the
//! local APIC's LINT0 as ExtINTs, and pc-testdev's level-triggered line
//! whose redelivery waits for the local APIC's EOI to reach the IOAPIC.
//! The guests are exitlab kernels (`program`) on `platform = "pc"`; each
//! counts its interrupts, and the exits of its body are counted exactly.
//! KVM cases skip, with the reason printed, without a usable KVM.

use exitlab_arch::ExitReason;
use exitlab_guest::layout::MAILBOX;
use exitlab_guest::machine::Platform;
use exitlab_guest::program::{program, Ring, Start};
use exitlab_guest::{Image, MailboxReport};
use exitlab_hv::Vm;
use exitlab_kvm::KvmVm;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_image, Outcome, RunReport};
use iced_x86::code_asm::*;

/// The kernel's timer ISR counts vector 0x40 here (mailbox TICKS).
const TICKS: u64 = MAILBOX + 64;
const IOAPIC: u64 = 0xfec0_0000;
const LAPIC_EOI: u64 = 0xfee0_00b0;
const LAPIC_LVT0: u64 = 0xfee0_0350;
/// Interrupts each test waits for.
const WANTED: u64 = 5;

fn pc(mut img: Image) -> Image {
    img.machine.platform = Platform::Pc;
    img
}

/// IOAPIC redirection entry `pin` = `low` (vector, mode, trigger, mask),
/// destination APIC 0.
fn redirect(a: &mut CodeAssembler, pin: u32, low: u32) -> Result<(), IcedError> {
    a.mov(rdi, IOAPIC)?;
    a.mov(dword_ptr(rdi), 0x10 + 2 * pin)?;
    a.mov(dword_ptr(rdi + 0x10), low)?;
    a.mov(dword_ptr(rdi), 0x11 + 2 * pin)?;
    a.mov(dword_ptr(rdi + 0x10), 0)
}

fn out(a: &mut CodeAssembler, port: u16, v: u8) -> Result<(), IcedError> {
    a.mov(dx, u32::from(port))?;
    a.mov(al, u32::from(v))?;
    a.out(dx, al)
}

/// PIT counter 0 in mode 2 (rate generator) at 1193182 / 1193 Hz: 1 ms.
fn pit_1ms(a: &mut CodeAssembler) -> Result<(), IcedError> {
    out(a, 0x43, 0x34)?;
    out(a, 0x40, 0xa9)?;
    out(a, 0x40, 0x04)
}

/// `sti; hlt; cli` until the kernel's tick count reaches [`WANTED`].
fn wait_ticks(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut again = a.create_label();
    a.set_label(&mut again)?;
    a.sti()?;
    a.hlt()?;
    a.cli()?;
    a.mov(rsi, TICKS)?;
    a.cmp(qword_ptr(rsi), WANTED as i32)?;
    a.jb(again)
}

/// The PIT's IRQ 0 through IOAPIC pin 2 to vector 0x40; the entry is
/// masked again before the exit.
fn pit_through_ioapic() -> Image {
    pc(program("pit-ioapic", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        redirect(a, 2, 0x40)?;
        pit_1ms(a)?;
        wait_ticks(a)?;
        redirect(a, 2, 0x1_0040)?;
        a.mov(al, 0)
    })
    .unwrap())
}

/// The PIT's IRQ 0 through the master 8259 (vector base 0x40, auto-EOI)
/// and LINT0 in ExtINT mode.
fn pit_through_pic() -> Image {
    pc(program("pit-pic", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        for (port, v) in [(0x20, 0x11), (0x21, 0x40), (0x21, 0x04), (0x21, 0x03), (0x21, 0xfe)] {
            out(a, port, v)?;
        }
        a.mov(rdi, LAPIC_LVT0)?;
        a.mov(dword_ptr(rdi), 0x700)?;
        pit_1ms(a)?;
        wait_ticks(a)?;
        out(a, 0x21, 0xff)?;
        a.mov(al, 0)
    })
    .unwrap())
}

/// Linux's PIT tick in one-shot mode (mode 4, one count per event) through
/// the 8259 as ExtINTs: the first count runs out while the guest spins
/// with IF clear, and it then spins with IF set and no exit, so only an
/// interrupt window brings the waiting ExtINT in; the second count wakes
/// a `sti; hlt`. The exit code is the tick count seen after each wait.
fn pit_one_shot_while_if_clear() -> Image {
    pc(program("pit-one-shot", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        for (port, v) in [(0x20, 0x11), (0x21, 0x40), (0x21, 0x04), (0x21, 0x03), (0x21, 0xfe)] {
            out(a, port, v)?;
        }
        a.mov(rdi, LAPIC_LVT0)?;
        a.mov(dword_ptr(rdi), 0x700)?;
        out(a, 0x43, 0x38)?; // counter 0, LSB then MSB, mode 4
        out(a, 0x40, 0xa9)?;
        out(a, 0x40, 0x04)?; // 1193 clocks: 1 ms
        let (mut spin, mut poll, mut seen) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(ecx, 20_000_000u32)?; // far past 1 ms, IF clear
        a.set_label(&mut spin)?;
        a.dec(ecx)?;
        a.jnz(spin)?;
        a.sti()?;
        a.mov(ecx, 20_000_000u32)?;
        a.mov(rsi, TICKS)?;
        a.set_label(&mut poll)?;
        a.cmp(qword_ptr(rsi), 1)?;
        a.jae(seen)?;
        a.dec(ecx)?;
        a.jnz(poll)?;
        a.set_label(&mut seen)?;
        a.cli()?;
        a.mov(rbx, qword_ptr(rsi))?;
        out(a, 0x40, 0xa9)?;
        out(a, 0x40, 0x04)?; // a second count
        a.sti()?;
        a.hlt()?;
        a.cli()?;
        out(a, 0x21, 0xff)?;
        a.mov(rax, qword_ptr(rsi))?;
        a.shl(rax, 4)?;
        a.or(rax, rbx)
    })
    .unwrap())
}

/// pc-testdev's line 10, level-triggered on IOAPIC pin 10 (vector 0x50),
/// raised three times; the guest's own handler (an IDT of its own at
/// 0x30000) lowers the line, counts in r15 and EOIs. The exit code is the
/// count: a second delivery needs the EOI to have cleared the entry's
/// remote IRR.
fn testdev_level_line() -> Image {
    pc(program("testdev-level", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| {
        let mut isr = a.create_label();
        let mut over = a.create_label();
        a.jmp(over)?;
        a.set_label(&mut isr)?;
        a.push(rax)?;
        a.push(rdx)?;
        a.push(rdi)?;
        out(a, 0x200a, 0)?;
        a.inc(r15)?;
        a.mov(rdi, LAPIC_EOI)?;
        a.mov(dword_ptr(rdi), 0)?;
        a.pop(rdi)?;
        a.pop(rdx)?;
        a.pop(rax)?;
        a.iretq()?;
        a.set_label(&mut over)?;
        // The gate for vector 0x50: offset, selector 0x08, present
        // 64-bit interrupt gate (0x8e).
        a.lea(rax, ptr(isr))?;
        a.mov(rcx, rax)?;
        a.and(rcx, 0xffff)?;
        a.mov(rdx, 0x0000_8e00_0008_0000u64)?;
        a.or(rcx, rdx)?;
        a.mov(rdx, rax)?;
        a.shr(rdx, 16)?;
        a.and(rdx, 0xffff)?;
        a.shl(rdx, 48)?;
        a.or(rcx, rdx)?;
        a.mov(rdi, 0x3_0000u64 + 0x50 * 16)?;
        a.mov(qword_ptr(rdi), rcx)?;
        a.shr(rax, 32)?;
        a.mov(qword_ptr(rdi + 8), rax)?;
        a.mov(rdi, 0x2_fff0u64)?;
        a.mov(word_ptr(rdi), 0xfff)?;
        a.mov(rax, 0x3_0000u64)?;
        a.mov(qword_ptr(rdi + 2), rax)?;
        a.lidt(ptr(rdi))?;
        redirect(a, 10, 0x8050)?;
        a.xor(r15, r15)?;
        for _ in 0..3 {
            out(a, 0x200a, 1)?;
            a.sti()?;
            a.hlt()?;
            a.cli()?;
        }
        a.mov(rax, r15)
    })
    .unwrap())
}

/// The kernel and an empty body, for the kernel's own exits.
fn empty() -> Image {
    pc(program("empty", Ring::Kernel, &Start { gpr: [0; 16], rflags: 0 }, |a| a.mov(al, 0)).unwrap())
}

fn on_sim(img: &Image, profile: &str) -> (RunReport, SimVm) {
    let mut vm = SimVm::with_profile(img.memory_size, Profile::load(profile).unwrap(), 0).unwrap();
    // A second of guest time is 200 times what the guests need.
    vm.set_limits(exitlab_sim::RunLimits { max_time_ns: Some(1_000_000_000), max_instructions: None });
    let r = run_image(&mut vm, img).unwrap();
    (r, vm)
}

fn on_kvm(img: &Image) -> Option<(RunReport, KvmVm)> {
    let mut vm = match KvmVm::new(&exitlab_kvm::device_path(), img.memory_size) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("skipping KVM case: {e}");
            return None;
        }
    };
    vm.set_time_limit(Some(std::time::Duration::from_secs(60)));
    let r = run_image(&mut vm, img).unwrap();
    Some((r, vm))
}

fn ticks<V: Vm>(vm: &V) -> u64 {
    let mut b = [0u8; MailboxReport::SIZE];
    vm.read_memory(MAILBOX, &mut b).unwrap();
    MailboxReport::ticks(&b)
}

/// The exits between the body's first and last instruction.
fn body_exits(r: &RunReport, reason: ExitReason) -> u64 {
    r.accountant.all().samples(reason)
}

#[test]
fn the_pit_interrupts_through_ioapic_pin_2_on_both_backends() {
    let img = pit_through_ioapic();
    for profile in ["modern", "legacy"] {
        let (r, vm) = on_sim(&img, profile);
        assert_eq!(r.outcome, Outcome::DebugExit { code: 0, status: 1 }, "{profile}");
        assert_eq!(ticks(&vm), WANTED, "{profile}");
        let all = r.accountant.all();
        // Three PIT writes in the body; the kernel's PIC masks and banner
        // before it; isa-debug-exit after.
        assert_eq!(all.ports[&0x40].exits + all.ports[&0x43].exits, 3, "{profile}");
        assert_eq!(all.mmio["ioapic"].exits, 8, "{profile}: two entries of two dwords, twice");
        assert_eq!(body_exits(&r, ExitReason::Hlt), WANTED, "{profile}: one HLT per tick");
    }
    let Some((r, vm)) = on_kvm(&img) else { return };
    assert_eq!(r.outcome, Outcome::DebugExit { code: 0, status: 1 });
    assert_eq!(ticks(&vm), WANTED);
    let all = r.accountant.all();
    assert!(!all.ports.contains_key(&0x43) && !all.mmio.contains_key("ioapic"), "the PIT and IOAPIC are KVM's");
    assert_eq!(body_exits(&r, ExitReason::Hlt), 0, "KVM's irqchip halts in the kernel");
}

#[test]
fn the_pit_interrupts_through_the_pic_as_extint_on_both_backends() {
    let img = pit_through_pic();
    for profile in ["modern", "legacy"] {
        let (r, vm) = on_sim(&img, profile);
        assert_eq!(r.outcome, Outcome::DebugExit { code: 0, status: 1 }, "{profile}");
        assert_eq!(ticks(&vm), WANTED, "{profile}");
        let all = r.accountant.all();
        // The kernel masks both PICs (2 writes); the body initializes the
        // master (4), unmasks IRQ 0 and masks it again (2).
        assert_eq!(all.ports[&0x20].exits + all.ports[&0x21].exits, 7, "{profile}");
        assert_eq!(body_exits(&r, ExitReason::Hlt), WANTED, "{profile}");
    }
    let Some((r, vm)) = on_kvm(&img) else { return };
    assert_eq!(r.outcome, Outcome::DebugExit { code: 0, status: 1 });
    assert_eq!(ticks(&vm), WANTED);
    assert!(!r.accountant.all().ports.contains_key(&0x21), "the PIC is KVM's");
}

#[test]
fn a_level_line_is_delivered_again_only_after_the_eoi_reaches_the_ioapic() {
    let img = testdev_level_line();
    for profile in ["modern", "legacy"] {
        let (r, _) = on_sim(&img, profile);
        assert_eq!(r.outcome, Outcome::DebugExit { code: 3, status: 7 }, "{profile}: three deliveries");
        let all = r.accountant.all();
        assert_eq!(all.ports[&0x200a].exits, 6, "{profile}: three raises, three lowers");
        // Each EOI exits while the level entry waits for it (the local
        // APIC page traps on modern too): three from the handler, beside
        // the kernel's own APIC accesses (none on modern, where the page
        // traps only from the unmasking of the level entry on).
        let (empty, _) = on_sim(&empty(), profile);
        let kernel = empty.accountant.all().samples(ExitReason::ApicAccess);
        assert_eq!(all.samples(ExitReason::ApicAccess), kernel + 3, "{profile}");
    }
    let Some((r, _)) = on_kvm(&img) else { return };
    assert_eq!(r.outcome, Outcome::DebugExit { code: 3, status: 7 });
    assert_eq!(r.accountant.all().ports[&0x200a].exits, 6);
}

#[test]
fn a_one_shot_pit_tick_raised_while_if_is_clear_arrives_when_the_guest_sets_if() {
    let img = pit_one_shot_while_if_clear();
    for profile in ["modern", "legacy"] {
        let (r, vm) = on_sim(&img, profile);
        // One tick seen by the IF-set spin, two after the HLT.
        assert_eq!(r.outcome, Outcome::DebugExit { code: 0x21, status: 0x43 }, "{profile}");
        assert_eq!(ticks(&vm), 2, "{profile}");
        assert_eq!(body_exits(&r, ExitReason::InterruptWindow), 1, "{profile}: the window for the first tick");
    }
}

//! The simulated CPU's operating modes and the transitions between them
//! (issue 12): real mode, 16- and 32-bit protected mode with segmentation,
//! 32-bit and PAE paging, IA-32e compatibility and 64-bit mode; far
//! transfers, call gates, events through the IVT and through 32- and
//! 64-bit IDTs, SYSCALL and SYSENTER. Each test boots raw code from a
//! hand-made state and checks registers, memory and the mode exactly.

use exitlab_arch::bits::{cr0, efer};
use exitlab_arch::cpuid::Vendor;
use exitlab_arch::{BootState, DescriptorTable, Regs, Segment};
use exitlab_hv::{Completion, HvError, Vcpu, Vm, VmExit, VmxVcpu};
use exitlab_sim::profile::Profile;
use exitlab_sim::{SimVcpu, SimVm};
use exitlab_x86::Mode;
use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction};

/// How a run ended.
#[derive(Debug, PartialEq)]
enum End {
    /// `out 0xf4, al`.
    Done,
    Shutdown,
    Unsupported(String),
}

struct Run {
    vm: SimVm,
    vcpu: SimVcpu,
    end: End,
}

impl Run {
    fn read(&self, gpa: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        self.vm.read_memory(gpa, &mut b[..size]).unwrap();
        u64::from_le_bytes(b)
    }

    fn gpr(&self, n: usize) -> u64 {
        self.vcpu.cpu().gpr[n]
    }

    fn mode(&self) -> Mode {
        self.vcpu.cpu().view.mode
    }
}

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RBP: usize = 5;
const RSI: usize = 6;
const RDI: usize = 7;

/// Boots `state` with `chunks` in 16 MiB of RAM and answers exits as a
/// minimal VMM: MSRs from the CPU's own file, CPUID zeros, the run ends at
/// an OUT to 0xf4.
fn boot(state: BootState, chunks: &[(u64, Vec<u8>)]) -> Run {
    boot_on(Vendor::Intel, state, chunks)
}

/// As [`boot`], on the default profile with `vendor`'s CPU.
fn boot_on(vendor: Vendor, state: BootState, chunks: &[(u64, Vec<u8>)]) -> Run {
    let mut profile = Profile::default_profile();
    profile.features.vendor = vendor;
    let mut vm = SimVm::with_profile(16 << 20, profile, 0).unwrap();
    for (gpa, bytes) in chunks {
        vm.write_memory(*gpa, bytes).unwrap();
    }
    let mut vcpu = vm.create_vcpu(0, &state).unwrap();
    let end = loop {
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(HvError::Unsupported(u)) => break End::Unsupported(u.to_string()),
            Err(e) => panic!("{e}"),
        };
        match exit {
            VmExit::Io(io) if io.qual.port == 0xf4 => break End::Done,
            VmExit::Io(io) if io.qual.is_in => vcpu.complete_read(&[0; 4]),
            VmExit::MsrRead { msr } => {
                let v = vcpu.read_msr(msr).unwrap();
                vcpu.complete(Completion::MsrRead(v));
            }
            VmExit::MsrWrite { msr, value } => {
                let ok = vcpu.write_msr(msr, value).unwrap();
                vcpu.complete(Completion::MsrWrite(ok));
            }
            VmExit::Cpuid { .. } => vcpu.complete(Completion::Cpuid([0; 4])),
            VmExit::Shutdown => break End::Shutdown,
            VmExit::Hlt => panic!("HLT at {:#x}", vcpu.cpu().rip),
            _ => {}
        }
    };
    Run { vm, vcpu, end }
}

/// Assembles `body` as `bits`-bit code at `ip`.
fn code(bits: u32, ip: u64, body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> (u64, Vec<u8>) {
    marked(bits, ip, |a| body(a).map(|_| Vec::new())).0
}

/// As [`code`], with the addresses of the labels `body` returns.
fn marked(
    bits: u32,
    ip: u64,
    body: impl FnOnce(&mut CodeAssembler) -> Result<Vec<CodeLabel>, IcedError>,
) -> ((u64, Vec<u8>), Vec<u64>) {
    let mut a = CodeAssembler::new(bits).unwrap();
    let labels = body(&mut a).unwrap();
    let r = a.assemble_options(ip, iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let at = labels.iter().map(|l| r.label_ip(l).unwrap()).collect();
    ((ip, r.inner.code_buffer), at)
}

/// A label at the next instruction.
fn here(a: &mut CodeAssembler) -> Result<CodeLabel, IcedError> {
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    Ok(l)
}

/// The state at reset's end, as an AP trampoline or a boot sector starts:
/// real mode, CS:IP = 0:`ip`, 64 KiB segments, IVT at 0.
fn real_mode(ip: u64) -> BootState {
    let data = Segment::real_mode(0, false);
    BootState {
        regs: Regs {
            rip: ip,
            rflags: 2,
            gpr: {
                let mut g = [0; 16];
                g[RSP] = 0x7000;
                g
            },
        },
        cs: Segment::real_mode(0, true),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment::busy_tss(0, 0, 0xffff),
        ldt: Segment::no_ldt(),
        gdt: DescriptorTable { base: 0, limit: 0xffff },
        idt: DescriptorTable { base: 0, limit: 0x3ff },
        cr0: cr0::ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
    }
}

/// A flat 32-bit protected-mode start at `ip` (what multiboot gives):
/// ring 0, paging off, the GDT at 0x800 and an IDT at 0x1000 (256 8-byte
/// gates).
fn protected_mode(ip: u64) -> BootState {
    let data = Segment::flat_data(KERNEL_DS);
    BootState {
        regs: Regs {
            rip: ip,
            rflags: 2,
            gpr: {
                let mut g = [0; 16];
                g[RSP] = 0x7000;
                g
            },
        },
        cs: Segment::flat_code(KERNEL_CS32, false),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment::busy_tss(TSS32, 0x600, 0x67),
        ldt: Segment::no_ldt(),
        gdt: DescriptorTable { base: 0x800, limit: 0x67 },
        idt: DescriptorTable { base: 0x1000, limit: 0x7ff },
        cr0: cr0::PE | cr0::ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
    }
}

/// Descriptors by index, from 0x800, in Linux's order: null, 32-bit code
/// (0x08), 64-bit code (0x10), data (0x18), ring-3 32-bit code (0x20),
/// ring-3 data (0x28), ring-3 64-bit code (0x30), a 32-bit TSS at 0x600
/// (0x38), a 16-bit data segment with base 0x20000 and limit 0xff (0x40),
/// a call gate slot (0x48), a 64-bit TSS at 0x680 (0x50, 16 bytes), and
/// an expand-down 32-bit data segment with limit 0xfff (0x60).
const KERNEL_CS32: u16 = 0x08;
const KERNEL_CS: u16 = 0x10;
const KERNEL_DS: u16 = 0x18;
const USER32_CS: u16 = 0x23;
const USER_DS: u16 = 0x2b;
const USER_CS: u16 = 0x33;
const TSS32: u16 = 0x38;
const SMALL_DS: u16 = 0x40;
const GATE: u16 = 0x48;
const TSS64: u16 = 0x50;
const DOWN_DS: u16 = 0x60;

fn gdt_with(gate: u64) -> (u64, Vec<u8>) {
    let d = [
        0u64,
        0x00cf_9b00_0000_ffff,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_fb00_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x00af_fb00_0000_ffff,
        0x0000_8900_0600_0067,
        0x0000_9302_0000_00ff,
        gate,
        0x0000_8900_0680_0067,
        0,
        0x00c0_9700_0000_0000,
    ];
    (0x800, d.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn gdt() -> (u64, Vec<u8>) {
    gdt_with(0)
}

/// A 32-bit interrupt gate (or trap gate) to `sel`:`offset` at `dpl`.
fn gate32(sel: u16, offset: u32, dpl: u8, trap: bool) -> u64 {
    let ty = if trap { 0xf } else { 0xe };
    u64::from(offset & 0xffff)
        | u64::from(sel) << 16
        | (0x80 | u64::from(dpl) << 5 | ty) << 40
        | u64::from(offset >> 16) << 48
}

/// 4-level tables at 0x10000 mapping the first GiB with 2 MiB pages.
fn long_mode_tables() -> Vec<(u64, Vec<u8>)> {
    let pml4 = (0x11000u64 | 7).to_le_bytes().to_vec();
    let pdpt = (0x12000u64 | 7).to_le_bytes().to_vec();
    let pd: Vec<u8> = (0..512u64).flat_map(|i| ((i << 21) | 0x87).to_le_bytes()).collect();
    vec![(0x10000, pml4), (0x11000, pdpt), (0x12000, pd)]
}

/// From the reset state to 64-bit mode the way boot code goes: a real-mode
/// segment store and INT through the IVT, LGDT and CR0.PE, a far JMP into
/// 32-bit code, data-segment loads and an INT through a 32-bit IDT, then
/// PAE, CR3, EFER.LME and CR0.PG (compatibility mode) and a far JMP into
/// 64-bit code.
#[test]
fn reset_to_real_to_protected_to_long_mode() {
    let real = code(16, 0x7c00, |a| {
        a.mov(ax, 0x100)?;
        a.mov(ds, ax)?;
        a.mov(word_ptr(0x10), 0xabcd)?; // linear 0x1010
        a.int(0x21)?; // BX = 0x4242
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.lgdt(ptr(0x7b00))?;
        a.mov(eax, cr0)?;
        a.or(al, 1)?;
        a.mov(cr0, eax)?;
        a.add_instruction(Instruction::with_far_branch(Code::Jmp_ptr1632, KERNEL_CS32, 0x9000)?)
    });
    let handler16 = code(16, 0x7e00, |a| {
        a.mov(bx, 0x4242)?;
        a.iret()
    });
    let gdtr = (0x7b00, [&0x67u16.to_le_bytes()[..], &0x800u32.to_le_bytes()].concat());
    let idtr32 = (0x7b10, [&0x7ffu16.to_le_bytes()[..], &0x1000u32.to_le_bytes()].concat());
    let ivt = (0x21 * 4, 0x0000_7e00u32.to_le_bytes().to_vec());
    let prot = code(32, 0x9000, |a| {
        a.mov(ax, KERNEL_DS as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x7000)?;
        a.lidt(ptr(0x7b10))?;
        a.int(0x30)?; // ESI = 0x5555
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?;
        a.mov(cr4, eax)?;
        a.mov(eax, 0x10000)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x100)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(edi, 0x7777)?; // compatibility mode: 32-bit code still
        a.jmp_far(KERNEL_CS, 0xa000)
    });
    let handler32 = code(32, 0x9800, |a| {
        a.mov(esi, 0x5555)?;
        a.iretd()
    });
    let idt = (0x1000 + 0x30 * 8, gate32(KERNEL_CS32, 0x9800, 0, false).to_le_bytes().to_vec());
    let long = code(64, 0xa000, |a| {
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(qword_ptr(0x3000), rax)?;
        a.out(0xf4, al)
    });
    let end = 0xa000 + long.1.len() as u64;
    let mut chunks = vec![real, handler16, gdtr, idtr32, ivt, gdt(), prot, handler32, idt, long];
    chunks.extend(long_mode_tables());
    let r = boot(real_mode(0x7c00), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.read(0x1010, 2), 0xabcd, "DS = 0x100 put offset 0x10 at 0x1010");
    assert_eq!(r.gpr(RBX) & 0xffff, 0x4242, "INT 0x21 through the IVT");
    assert_eq!(r.gpr(RSI), 0x5555, "INT 0x30 through the 32-bit IDT");
    assert_eq!(r.gpr(RDI), 0x7777);
    assert_eq!(r.read(0x3000, 8), 0x1122_3344_5566_7788);
    assert_eq!(r.mode(), Mode::Long);
    let core = r.vcpu.cpu();
    assert_ne!(core.efer & efer::LMA, 0, "CR0.PG with EFER.LME activated IA-32e mode");
    // OUT completes before its exit: RIP is past it.
    assert_eq!((core.cs().selector, core.ss().selector, core.rip), (KERNEL_CS, KERNEL_DS, end));
}

/// A handler that ends the run with the frame in registers: EBX = the
/// error code, ECX = CR2, EDX = the faulting EIP, EDI = CS.
fn report_fault32(ip: u64) -> (u64, Vec<u8>) {
    code(32, ip, |a| {
        a.pop(ebx)?;
        a.mov(ecx, cr2)?;
        a.mov(edx, dword_ptr(esp))?;
        a.mov(edi, dword_ptr(esp + 4))?;
        a.out(0xf4, al)
    })
}

/// 32-bit paging: a 4 MiB identity page (CR4.PSE) and a 4 KiB page at
/// 1 GiB; accessed and dirty bits; then PAE paging with its PDPTEs
/// through the same switch back and forth; then a #PF delivered through a
/// 32-bit interrupt gate with the SDM's error code and CR2.
#[test]
fn thirty_two_bit_and_pae_paging() {
    // 32-bit: PD at 0x20000, PT for 1 GiB at 0x21000 mapping 0x4000_0000 -> 0x30_0000.
    let mut pd32 = vec![0u8; 4096];
    pd32[..4].copy_from_slice(&0x0000_0087u32.to_le_bytes()); // 4 MiB, P RW US PS
    pd32[256 * 4..][..4].copy_from_slice(&0x0002_1007u32.to_le_bytes());
    let pt32 = 0x0030_0007u32.to_le_bytes().to_vec();
    // PAE: PDPT at 0x22000; PD 0 (0x23000) identity 2 MiB pages; PD 1 (0x24000) -> PT 0x25000 -> 0x40_0000.
    let pdpt = [0x23001u64, 0x24001, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let pd0: Vec<u8> = (0..2u64).flat_map(|i| ((i << 21) | 0x87).to_le_bytes()).collect();
    let pd1 = 0x25007u64.to_le_bytes().to_vec();
    let pt1 = 0x40_0007u64.to_le_bytes().to_vec();
    let body = code(32, 0x9000, |a| {
        a.mov(eax, cr4)?;
        a.or(eax, 0x10)?; // PSE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x20000)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(dword_ptr(0x4000_0010), 0x1234)?;
        // Back off, to PAE.
        a.mov(eax, cr0)?;
        a.and(eax, 0x7fff_ffff)?;
        a.mov(cr0, eax)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?; // PAE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x22000)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(dword_ptr(0x4000_0020), 0x5678)?;
        a.mov(esi, dword_ptr(0x4000_0020))?;
        // PDPTE 2 is not present: a write at 2 GiB faults.
        a.mov(dword_ptr(0x8000_0004u64), eax)
    });
    let chunks = vec![
        gdt(),
        body,
        (0x20000, pd32),
        (0x21000, pt32),
        (0x22000, pdpt),
        (0x23000, pd0),
        (0x24000, pd1),
        (0x25000, pt1),
        (0x1000 + 14 * 8, gate32(KERNEL_CS32, 0x9800, 0, false).to_le_bytes().to_vec()),
        report_fault32(0x9800),
    ];
    let r = boot(protected_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.read(0x30_0010, 4), 0x1234, "through the 32-bit PT");
    assert_eq!(r.read(0x21000, 4), 0x0030_0067, "the 4-byte PTE got A and D");
    assert_eq!(r.read(0x40_0020, 4), 0x5678, "through PAE's PDPTE 1");
    assert_eq!(r.gpr(RSI), 0x5678);
    // A write of a not-present page at CPL 0: error code W, CR2 the address.
    assert_eq!((r.gpr(RBX), r.gpr(RCX), r.gpr(RDI)), (2, 0x8000_0004, u64::from(KERNEL_CS32)));
    assert_eq!(r.vcpu.cpu().view.paging, exitlab_sim::cpu::Paging::Pae);
}

/// Segment limits and types in 32-bit protected mode: a 16-bit data
/// segment of 256 bytes at 0x20000 takes a word at 0xfe and faults #GP(0)
/// at 0xff; an expand-down segment holds only the offsets above its limit;
/// a null DS faults on use; a far JMP to a data segment is #GP(selector).
#[test]
fn segment_limits_and_types_fault_with_the_sdms_codes() {
    type Body<'a> = &'a dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>;
    // `setup`, then `faulting`, whose address the #GP must report.
    let probe = |setup: Body, faulting: Body| {
        let (body, at) = marked(32, 0x9000, |a| {
            setup(a)?;
            let l = here(a)?;
            faulting(a)?;
            Ok(vec![l])
        });
        let chunks = vec![
            gdt(),
            body,
            (0x1000 + 13 * 8, gate32(KERNEL_CS32, 0x9800, 0, false).to_le_bytes().to_vec()),
            report_fault32(0x9800),
        ];
        let r = boot(protected_mode(0x9000), &chunks);
        assert_eq!(r.end, End::Done);
        assert_eq!(r.gpr(RDX), at[0], "the faulting EIP");
        (r.gpr(RBX), r.read(0x200fe, 2), r.read(0x2f000, 4))
    };
    let (error, word, _) = probe(
        &|a| {
            a.mov(eax, u32::from(SMALL_DS))?;
            a.mov(es, ax)?;
            a.mov(ax, 0xbeef)?;
            a.mov(word_ptr(0xfe).es(), ax)
        },
        &|a| a.mov(word_ptr(0xff).es(), ax),
    );
    assert_eq!((error, word), (0, 0xbeef));
    // Expand-down with limit 0xfff: 0x2f000 is above it; 0x800 is not.
    let (error, _, dword) = probe(
        &|a| {
            a.mov(eax, u32::from(DOWN_DS))?;
            a.mov(fs, ax)?;
            a.mov(dword_ptr(0x2f000).fs(), 0x600d)
        },
        &|a| a.mov(dword_ptr(0x800).fs(), eax),
    );
    assert_eq!((error, dword), (0, 0x600d));
    let (error, ..) = probe(
        &|a| {
            a.xor(eax, eax)?;
            a.mov(ds, ax)
        },
        &|a| a.mov(eax, dword_ptr(0x100)),
    );
    assert_eq!(error, 0);
    let (error, ..) = probe(&|a| a.nop(), &|a| a.jmp_far(KERNEL_DS, 0x1234));
    assert_eq!(error, u64::from(KERNEL_DS));
}

/// A 32-bit call gate (type 0xc) to `sel`:`offset` at `dpl`, copying
/// `params` dwords.
fn call_gate32(sel: u16, offset: u32, dpl: u8, params: u8) -> u64 {
    u64::from(offset & 0xffff)
        | u64::from(sel) << 16
        | u64::from(params) << 32
        | (0x80 | u64::from(dpl) << 5 | 0xc) << 40
        | u64::from(offset >> 16) << 48
}

/// Privilege levels in 32-bit protected mode: LTR, IRETD to ring 3 (which
/// nulls DS, a ring-0 segment), a far CALL through a call gate to ring 0
/// with the stack switch and one parameter copied, RETF 4 back to ring 3
/// on both stacks, and INT 0x40 through a DPL-3 gate to ring 0 on the
/// TSS's stack.
#[test]
fn ring_3_and_back_through_gates_in_protected_mode() {
    let mut tss = vec![0u8; 0x68];
    tss[4..8].copy_from_slice(&0x6000u32.to_le_bytes());
    tss[8..10].copy_from_slice(&KERNEL_DS.to_le_bytes());
    let kernel = code(32, 0x9000, |a| {
        a.mov(ax, u32::from(TSS32))?;
        a.ltr(ax)?;
        a.push(u32::from(USER_DS))?;
        a.push(0x5000)?;
        a.push(0x3002)?; // IOPL 3
        a.push(u32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretd()
    });
    let user = code(32, 0xa000, |a| {
        a.mov(edi, ds)?; // 0: IRETD to ring 3 nulled the DPL-0 DS
        a.mov(eax, u32::from(USER_DS))?;
        a.mov(ds, ax)?;
        a.push(0x77)?;
        a.call_far(GATE, 0)?; // through the gate: the offset is the gate's
        a.mov(dword_ptr(0x5100), esp)?;
        a.int(0x40)
    });
    let gate_target = code(32, 0x9a00, |a| {
        a.mov(ebp, dword_ptr(esp + 8))?; // the copied parameter
        a.mov(ecx, ss)?;
        a.mov(dword_ptr(0x5104), esp)?;
        a.retf_1(4)
    });
    let handler = code(32, 0x9800, |a| {
        a.mov(ebx, esp)?;
        a.mov(edx, dword_ptr(esp + 16))?; // the old SS
        a.mov(esi, dword_ptr(esp + 4))?; // the old CS
        a.mov(eax, ss)?;
        a.out(0xf4, al)
    });
    let chunks = vec![
        gdt_with(call_gate32(KERNEL_CS32, 0x9a00, 3, 1)),
        (0x600, tss),
        kernel,
        user,
        gate_target,
        handler,
        (0x1000 + 0x40 * 8, gate32(KERNEL_CS32, 0x9800, 3, false).to_le_bytes().to_vec()),
    ];
    let r = boot(protected_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.gpr(RDI), 0, "DS nulled on the way to ring 3");
    assert_eq!(r.gpr(RBP), 0x77, "the gate copied the parameter");
    assert_eq!(r.gpr(RCX), u64::from(KERNEL_DS), "SS from the TSS for ring 0");
    // The gate's frame: SS, ESP, the parameter, CS, EIP on the ring-0 stack.
    assert_eq!(r.read(0x5104, 4), 0x6000 - 20);
    assert_eq!(r.read(0x5100, 4), 0x5000, "RETF 4 released the parameter on the ring-3 stack");
    // INT 0x40 from ring 3: SS, ESP, EFLAGS, CS, EIP on the TSS's stack.
    assert_eq!(
        (r.gpr(RBX), r.gpr(RDX), r.gpr(RSI), r.gpr(RAX) & 0xffff),
        (0x6000 - 20, u64::from(USER_DS), u64::from(USER32_CS), u64::from(KERNEL_DS))
    );
    assert_eq!(r.read(0x800 + u64::from(TSS32) + 5, 1), 0x8b, "LTR marked the TSS busy");
}

/// A 64-bit interrupt gate to `sel`:`offset` at `dpl`, on IST `ist`.
fn gate64(sel: u16, offset: u64, dpl: u8, ist: u8) -> Vec<u8> {
    let lo = (offset & 0xffff)
        | u64::from(sel) << 16
        | u64::from(ist) << 32
        | (0x80 | u64::from(dpl) << 5 | 0xe) << 40
        | ((offset >> 16) & 0xffff) << 48;
    [lo.to_le_bytes(), (offset >> 32).to_le_bytes()].concat()
}

/// A 64-bit ring-0 start at `ip`: the GDT at 0x800, a 64-bit TSS at
/// 0x680 (RSP0 0x6000), an IDT of 16-byte gates at 0x1000, the first GiB
/// identity-mapped.
fn long_mode(ip: u64) -> BootState {
    let data = Segment::flat_data(KERNEL_DS);
    BootState {
        cs: Segment::flat_code(KERNEL_CS, true),
        tr: Segment::busy_tss(TSS64, 0x680, 0x67),
        idt: DescriptorTable { base: 0x1000, limit: 0xfff },
        cr0: cr0::PE | cr0::ET | cr0::PG,
        cr3: 0x10000,
        cr4: exitlab_arch::bits::cr4::PAE,
        efer: efer::LME | efer::LMA,
        ..protected_mode(ip)
    }
    .with_data(data)
}

trait WithData {
    fn with_data(self, data: Segment) -> Self;
}

impl WithData for BootState {
    fn with_data(self, data: Segment) -> Self {
        BootState { ds: data, es: data, fs: data, gs: data, ss: data, ..self }
    }
}

fn long_mode_chunks(mut more: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    let mut tss = vec![0u8; 0x68];
    tss[4..12].copy_from_slice(&0x6000u64.to_le_bytes());
    more.push(gdt());
    more.push((0x680, tss));
    more.extend(long_mode_tables());
    more
}

/// WRMSR of `value` to `msr` in 64-bit code.
fn wrmsr(a: &mut CodeAssembler, msr: u32, value: u64) -> Result<(), IcedError> {
    a.mov(ecx, msr)?;
    a.mov(eax, value as u32)?;
    a.mov(edx, (value >> 32) as u32)?;
    a.wrmsr()
}

/// SYSRET (32-bit form) to ring-3 compatibility-mode code, where SYSCALL
/// is #UD on Intel processors (delivered through the 64-bit IDT on the
/// TSS's RSP0 with a null SS); IRETQ from there to ring-3 64-bit code,
/// whose SYSCALL enters LSTAR with RCX and R11 and whose return is
/// SYSRETQ.
#[test]
fn syscall_and_sysret_in_and_out_of_compatibility_mode() {
    let kernel = code(64, 0x9000, |a| {
        wrmsr(a, 0xc000_0081, (u64::from(USER32_CS & !3) << 48) | (u64::from(KERNEL_CS) << 32))?;
        wrmsr(a, 0xc000_0082, 0x9400)?;
        wrmsr(a, 0xc000_0084, 0x200)?; // FMASK: IF
        wrmsr(a, 0xc000_0080, efer::LME | efer::LMA | efer::SCE)?;
        a.mov(rsp, 0x7000u64)?;
        a.mov(rcx, 0xa000u64)?;
        a.mov(r11, 0x3202u64)?; // IF, IOPL 3
        a.db(&[0x0f, 0x07]) // SYSRET with a 32-bit operand size
    });
    let (user32, at32) = marked(32, 0xa000, |a| {
        a.mov(esp, 0x5000)?;
        a.mov(edi, cs)?;
        a.mov(esi, ss)?;
        let l = here(a)?;
        a.syscall()?;
        Ok(vec![l])
    });
    let ud = code(64, 0x9800, |a| {
        a.mov(rbx, qword_ptr(rsp))?; // RIP of the SYSCALL
        a.mov(rbp, qword_ptr(rsp + 8))?; // CS
        a.mov(r8, qword_ptr(rsp + 32))?; // SS
        a.mov(r9, qword_ptr(rsp + 24))?; // RSP
        a.mov(r10, rsp)?;
        a.mov(eax, ss)?;
        a.mov(dword_ptr(0x5200), eax)?;
        // On to ring-3 64-bit code.
        a.push(i32::from(USER_DS))?;
        a.push(0x5800)?;
        a.push(0x3002)?;
        a.push(i32::from(USER_CS))?;
        a.push(0xb000)?;
        a.iretq()
    });
    let (user64, at64) = marked(64, 0xb000, |a| {
        a.syscall()?;
        let l = here(a)?;
        a.out(0xf4, al)?;
        Ok(vec![l])
    });
    let entry = code(64, 0x9400, |a| {
        a.mov(r13, rcx)?;
        a.mov(r14, r11)?;
        a.mov(r15, cs)?;
        a.mov(r12, rsp)?; // SYSCALL does not switch stacks
        a.sysretq()
    });
    let chunks =
        long_mode_chunks(vec![kernel, user32, ud, user64, entry, (0x1000 + 6 * 16, gate64(KERNEL_CS, 0x9800, 0, 0))]);
    let r = boot(long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!((r.gpr(RDI), r.gpr(RSI)), (u64::from(USER32_CS), u64::from(USER_DS)), "SYSRETL's selectors");
    // #UD from compatibility mode: the frame names the SYSCALL at ring 3.
    let g = |n| r.gpr(n);
    assert_eq!((g(RBX), g(RBP), g(8), g(9)), (at32[0], u64::from(USER32_CS), u64::from(USER_DS), 0x5000));
    assert_eq!(g(10), 0x6000 - 40, "RSP0, five quadwords pushed");
    assert_eq!(r.read(0x5200, 4), 0, "a privilege change loads a null SS");
    // R11 is RFLAGS as IRETQ left it (IOPL 3, IF clear).
    assert_eq!((g(13), g(14) & 0x3202, g(15)), (at64[0], 0x3002, u64::from(KERNEL_CS)), "SYSCALL's RCX, R11, CS");
    assert_eq!(g(12), 0x5800);
    let core = r.vcpu.cpu();
    assert_eq!((core.cs().selector, core.ss().selector, core.view.cpl), (USER_CS, USER_DS, 3));
    assert_eq!(r.mode(), Mode::Long);
}

/// Far transfers in IA-32e mode: IRETQ at ring 0 into 32-bit code
/// (compatibility mode), JMP m16:32 back to 64-bit code, REX.W JMP m16:64,
/// RETFQ; MOV SS with a null selector at CPL 0 and with RPL != CPL
/// (#GP(0)), as kvm-unit-tests' emulator64 checks.
#[test]
fn far_transfers_and_null_ss_in_ia32e_mode() {
    let kernel = code(64, 0x9000, |a| {
        a.mov(rsp, 0x7000u64)?;
        a.push(i32::from(KERNEL_DS))?;
        a.push(0x7000)?;
        a.push(2)?;
        a.push(i32::from(KERNEL_CS32))?;
        a.push(0xa000)?;
        a.iretq()
    });
    let compat = code(32, 0xa000, |a| {
        a.mov(edi, 0xc0de)?;
        a.db(&[0xff, 0x2d, 0x00, 0x50, 0x00, 0x00]) // jmp far [0x5000]: m16:32 -> KERNEL_CS:0xb000
    });
    let long2 = code(64, 0xb000, |a| {
        a.mov(esi, 0x64)?;
        a.db(&[0x48, 0xff, 0x2c, 0x25, 0x10, 0x50, 0x00, 0x00]) // rex.w jmp far [0x5010]: m16:64
    });
    let long3 = code(64, 0xb800, |a| {
        a.push(i32::from(KERNEL_CS))?;
        a.push(0xbc00)?;
        a.db(&[0x48, 0xcb]) // retfq
    });
    let (last, atl) = marked(64, 0xbc00, |a| {
        a.xor(eax, eax)?;
        a.mov(ss, ax)?; // null SS at CPL 0 in 64-bit mode: allowed
        a.mov(ebp, ss)?;
        a.mov(eax, 3)?;
        let l = here(a)?;
        a.mov(ss, ax)?; // RPL 3 != CPL 0: #GP(0)
        Ok(vec![l])
    });
    let gp = code(64, 0x9800, |a| {
        a.pop(rbx)?; // error code
        a.mov(rdx, qword_ptr(rsp))?; // RIP
        a.out(0xf4, al)
    });
    let far32 = [&0xb000u32.to_le_bytes()[..], &KERNEL_CS.to_le_bytes()].concat();
    let far64 = [&0xb800u64.to_le_bytes()[..], &KERNEL_CS.to_le_bytes()].concat();
    let chunks = long_mode_chunks(vec![
        kernel,
        compat,
        long2,
        long3,
        last,
        gp,
        (0x5000, far32),
        (0x5010, far64),
        (0x1000 + 13 * 16, gate64(KERNEL_CS, 0x9800, 0, 0)),
    ]);
    let r = boot(long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!((r.gpr(RDI), r.gpr(RSI), r.gpr(RBP)), (0xc0de, 0x64, 0));
    assert_eq!((r.gpr(RBX), r.gpr(RDX)), (0, atl[0]));
}

/// SYSENTER and SYSEXIT in 32-bit protected mode: flat segments from
/// IA32_SYSENTER_CS (+8 for SS; SYSEXIT +16 and +24 at RPL 3), EIP and ESP
/// from their MSRs and from EDX and ECX.
#[test]
fn sysenter_and_sysexit_in_protected_mode() {
    let kernel = code(32, 0x9000, |a| {
        a.mov(ecx, 0x174)?;
        a.mov(eax, u32::from(KERNEL_CS32))?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, 0x175)?;
        a.mov(eax, 0x6000)?;
        a.wrmsr()?;
        a.mov(ecx, 0x176)?;
        a.mov(eax, 0x9400)?;
        a.wrmsr()?;
        a.mov(edx, 0xa000)?;
        a.mov(ecx, 0x5000)?;
        a.sysexit()
    });
    let user = code(32, 0xa000, |a| {
        a.mov(edi, cs)?;
        a.mov(esi, ss)?;
        a.mov(ebp, esp)?;
        a.sysenter()
    });
    let entry = code(32, 0x9400, |a| {
        a.mov(ebx, cs)?;
        a.mov(eax, esp)?;
        a.out(0xf4, al)
    });
    let r = boot(protected_mode(0x9000), &[gdt(), kernel, user, entry]);
    assert_eq!(r.end, End::Done);
    let base = u64::from(KERNEL_CS32);
    assert_eq!((r.gpr(RDI), r.gpr(RSI), r.gpr(RBP)), ((base + 16) | 3, (base + 24) | 3, 0x5000));
    assert_eq!((r.gpr(RBX), r.gpr(RAX)), (base, 0x6000));
    assert_eq!(r.vcpu.cpu().ss().selector, KERNEL_CS32 + 8);
}

/// CR4.UMIP in ring 3: SGDT is #GP(0) (SMSW in ring 0 is not); LAR,
/// LSL and VERW on descriptors the GDT holds; ARPL raising an RPL.
#[test]
fn umip_and_descriptor_inspection() {
    let mut tss = vec![0u8; 0x68];
    tss[4..8].copy_from_slice(&0x6000u32.to_le_bytes());
    tss[8..10].copy_from_slice(&KERNEL_DS.to_le_bytes());
    let kernel = code(32, 0x9000, |a| {
        a.mov(eax, u32::from(SMALL_DS))?;
        a.lar(ebx, eax)?; // access rights of a ring-0 16-bit data segment
        a.mov(dword_ptr(0x5200), ebx)?;
        a.lsl(ecx, eax)?; // its byte limit
        a.mov(dword_ptr(0x5204), ecx)?;
        a.mov(eax, u32::from(KERNEL_CS32))?;
        a.verw(ax)?; // code: not writable
        a.setz(byte_ptr(0x5208))?;
        a.verr(ax)?; // readable code
        a.setz(byte_ptr(0x5209))?;
        a.mov(ax, 0x11)?;
        a.mov(si, 0x13)?;
        a.arpl(ax, si)?; // RPL 1 -> 3
        a.mov(word_ptr(0x520a), ax)?;
        a.smsw(eax)?; // ring 0: allowed under UMIP
        a.mov(dword_ptr(0x520c), eax)?;
        a.mov(eax, cr4)?;
        a.or(eax, 1 << 11)?; // UMIP
        a.mov(cr4, eax)?;
        a.mov(ax, u32::from(TSS32))?;
        a.ltr(ax)?;
        a.push(u32::from(USER_DS))?;
        a.push(0x5000)?;
        a.push(0x3002)?;
        a.push(u32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretd()
    });
    let (user, at) = marked(32, 0xa000, |a| {
        let l = here(a)?;
        a.sgdt(ptr(0x5100))?;
        Ok(vec![l])
    });
    let chunks = vec![
        gdt(),
        (0x600, tss),
        kernel,
        user,
        (0x1000 + 13 * 8, gate32(KERNEL_CS32, 0x9800, 0, false).to_le_bytes().to_vec()),
        report_fault32(0x9800),
    ];
    let r = boot(protected_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    // The SGDT at ring 3 faulted #GP(0) at its own address, from USER32_CS.
    assert_eq!((r.gpr(RBX), r.gpr(RDX), r.gpr(RDI)), (0, at[0], u64::from(USER32_CS)));
    // LAR: bits 23:8 of the descriptor's high dword masked 0x00f0ff00
    // (type 3, S, DPL 0, P; G and D clear); LSL: the byte limit.
    assert_eq!((r.read(0x5200, 4), r.read(0x5204, 4)), (0x9300, 0xff));
    assert_eq!((r.read(0x5208, 1), r.read(0x5209, 1), r.read(0x520a, 2)), (0, 1, 0x13));
    assert_eq!(r.read(0x520c, 4) & 0xffff, cr0::PE | cr0::ET);
}

/// INT from ring-3 compatibility-mode code through a 64-bit gate (RSP0
/// from the TSS, a null SS) and IRETQ back into it; then from ring 0 the
/// way out of IA-32e mode: a far JMP to 32-bit code, CR0.PG cleared
/// (EFER.LMA follows), EFER.LME cleared. Clearing CR0.PG in 64-bit mode
/// is #GP(0).
#[test]
fn interrupts_in_compatibility_mode_and_leaving_long_mode() {
    let kernel = code(64, 0x9000, |a| {
        a.push(i32::from(USER_DS))?;
        a.push(0x5000)?;
        a.push(0x3002)?;
        a.push(i32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretq()
    });
    let user = code(32, 0xa000, |a| {
        a.mov(esi, 0x1234)?;
        a.int(0x80)?;
        a.mov(edi, esi)?; // the handler doubled ESI
        a.int(0x81)?; // on to ring 0 for the rest
        a.hlt()
    });
    let doubler = code(64, 0x9400, |a| {
        a.add(esi, esi)?;
        a.mov(rbp, rsp)?;
        a.iretq()
    });
    let (leave, at) = marked(64, 0x9600, |a| {
        a.mov(rax, cr0)?;
        a.mov(rbx, rax)?;
        a.btr(rbx, 31)?;
        let l = here(a)?;
        a.mov(cr0, rbx)?; // #GP(0): paging cannot go in 64-bit mode
        Ok(vec![l])
    });
    let gp = code(64, 0x9800, |a| {
        a.pop(rcx)?; // error code
        a.pop(rdx)?; // RIP
        a.mov(qword_ptr(0x5300), rcx)?;
        a.mov(qword_ptr(0x5308), rdx)?;
        a.mov(rsp, 0x7000u64)?;
        a.push(i32::from(KERNEL_CS32))?;
        a.push(0xb000)?;
        a.db(&[0x48, 0xcb]) // retfq into 32-bit code
    });
    let prot = code(32, 0xb000, |a| {
        a.mov(eax, cr0)?;
        a.and(eax, 0x7fff_ffff)?;
        a.mov(cr0, eax)?; // out of IA-32e mode: LMA clears
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.mov(ebx, eax)?;
        a.and(eax, !0x100)?;
        a.wrmsr()?; // LME may change now
        a.mov(eax, u32::from(KERNEL_DS))?;
        a.mov(ss, ax)?;
        a.out(0xf4, al)
    });
    let chunks = long_mode_chunks(vec![
        kernel,
        user,
        doubler,
        leave,
        gp,
        prot,
        (0x1000 + 0x80 * 16, gate64(KERNEL_CS, 0x9400, 3, 0)),
        (0x1000 + 0x81 * 16, gate64(KERNEL_CS, 0x9600, 3, 0)),
        (0x1000 + 13 * 16, gate64(KERNEL_CS, 0x9800, 0, 0)),
    ]);
    let r = boot(long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!(r.gpr(RDI), 0x2468, "IRETQ back into compatibility mode");
    assert_eq!(r.gpr(RBP), 0x6000 - 40, "the 64-bit frame on RSP0");
    assert_eq!((r.read(0x5300, 8), r.read(0x5308, 8)), (0, at[0]), "#GP(0) at the MOV to CR0");
    assert_eq!(r.gpr(RBX) & (efer::LME | efer::LMA), efer::LME, "LMA cleared with PG");
    let core = r.vcpu.cpu();
    assert_eq!(core.efer & (efer::LME | efer::LMA), 0);
    assert_eq!((r.mode(), core.view.paging), (Mode::Protected, exitlab_sim::cpu::Paging::Off));
}

/// Every instruction that decodes either runs or is #UD (CPUID is the
/// contract, docs/INSTRUCTIONS.md); what the model does not implement is
/// architecture an instruction reaches at run time. IRET with NT set in
/// protected mode returns to the previous task, a task switch: the run
/// stops with the instruction's RIP, bytes and disassembly.
#[test]
fn a_task_switch_stops_the_run_with_rip_bytes_and_disassembly() {
    let (body, at) = marked(32, 0x9000, |a| {
        a.pushfd()?;
        a.or(dword_ptr(esp), 0x4000)?; // NT
        a.popfd()?;
        let iret = here(a)?;
        a.iretd()?;
        Ok(vec![iret])
    });
    let r = boot(protected_mode(0x9000), &[gdt(), body]);
    let End::Unsupported(msg) = &r.end else { panic!("{:?}", r.end) };
    assert!(msg.contains(&format!("rip {:#x}", at[0])), "{msg}");
    assert!(msg.contains("cf") && msg.contains("iret"), "{msg}");
}

/// A 64-bit handler that ends the run with its frame in registers: RBX =
/// the error code (`code`; else u64::MAX), RDX = RIP, RBP = CS, RSI =
/// RFLAGS, RDI = RSP, R8 = SS, R9 = the handler's RSP after the error code.
fn report64(ip: u64, code: bool) -> (u64, Vec<u8>) {
    self::code(64, ip, |a| {
        if code {
            a.pop(rbx)?;
        } else {
            a.mov(rbx, -1i64)?;
        }
        a.mov(rdx, qword_ptr(rsp))?;
        a.mov(rbp, qword_ptr(rsp + 8))?;
        a.mov(rsi, qword_ptr(rsp + 16))?;
        a.mov(rdi, qword_ptr(rsp + 24))?;
        a.mov(r8, qword_ptr(rsp + 32))?;
        a.mov(r9, rsp)?;
        a.out(0xf4, al)
    })
}

/// The frame [`report64`] left: (error code, RIP, CS, RFLAGS, RSP, SS,
/// handler RSP).
fn frame64(r: &Run) -> (u64, u64, u64, u64, u64, u64, u64) {
    (r.gpr(RBX), r.gpr(RDX), r.gpr(RBP), r.gpr(RSI), r.gpr(RDI), r.gpr(8), r.gpr(9))
}

/// STAR for the GDT above: SYSCALL to KERNEL_CS/KERNEL_DS, SYSRET to
/// USER32_CS (SYSRETL) or USER_CS (SYSRETQ) with USER_DS.
const STAR: u64 = (((USER32_CS & !3) as u64) << 48) | ((KERNEL_CS as u64) << 32);

/// SYSRETQ with a non-canonical RCX (0x8000_0000_0000). Intel checks RCX
/// before leaving ring 0 (SDM Vol. 2B "SYSRET": "IF RCX is not canonical
/// THEN #GP(0)"), which is why a kernel that returns to a user-chosen RIP
/// that way runs its #GP handler on the user's RSP (CVE-2012-0217, Xen
/// XSA-7, FreeBSD-SA-12:04). AMD has no such check (APM Vol. 3 "SYSRET":
/// the return target is not checked; the #GP comes with the fetch after
/// the switch to CPL 3), so its #GP frame is a ring-3 one on RSP0.
#[test]
fn sysret_to_a_non_canonical_rip_faults_in_ring_0_on_intel_and_ring_3_on_amd() {
    let (kernel, at) = marked(64, 0x9000, |a| {
        wrmsr(a, 0xc000_0081, STAR)?;
        wrmsr(a, 0xc000_0080, efer::LME | efer::LMA | efer::SCE)?;
        a.mov(rsp, 0x7000u64)?;
        a.mov(rcx, 0x8000_0000_0000u64)?;
        a.mov(r11, 0x202u64)?;
        let l = here(a)?;
        a.sysretq()?;
        Ok(vec![l])
    });
    let gp = (0x1000 + 13 * 16, gate64(KERNEL_CS, 0x9800, 0, 0));
    let chunks = long_mode_chunks(vec![kernel, gp, report64(0x9800, true)]);
    let (kcs, kds, user_cs, user_ss) = (KERNEL_CS as u64, KERNEL_DS as u64, USER_CS as u64, USER_DS as u64);
    let r = boot_on(Vendor::Intel, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    // Ring 0 on the kernel's own stack; RF set in the image of a fault.
    assert_eq!(frame64(&r), (0, at[0], kcs, 0x1_0002, 0x7000, kds, 0x7000 - 40));
    assert_eq!((r.gpr(RCX), r.gpr(11)), (0x8000_0000_0000, 0x202), "RCX and R11 as they were");
    let r = boot_on(Vendor::Amd, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    // SYSRET completed: the fault is at the non-canonical RIP in ring 3,
    // RFLAGS from R11, the user's RSP, on the TSS's RSP0.
    assert_eq!(frame64(&r), (0, 0x8000_0000_0000, user_cs, 0x1_0202, 0x7000, user_ss, 0x6000 - 40));
}

/// SYSCALL from ring-3 compatibility-mode code (entered by SYSRETL): on
/// AMD it enters CSTAR in 64-bit mode with RCX = the next RIP, R11 =
/// RFLAGS, CS and SS from STAR[47:32], RFLAGS masked by FMASK and no
/// stack switch (AMD APM Vol. 3 "SYSCALL": "IF (Long Mode) ... IF
/// (Compatibility Mode) temp_RIP = MSR_CSTAR"); on Intel it is #UD (SDM
/// "SYSCALL": #UD "If not in 64-Bit Mode"). kvm-unit-tests' syscall test
/// skips its compatibility-mode case on Intel for that reason.
#[test]
fn compatibility_mode_syscall_goes_to_cstar_on_amd_and_is_ud_on_intel() {
    let kernel = code(64, 0x9000, |a| {
        wrmsr(a, 0xc000_0081, STAR)?;
        wrmsr(a, 0xc000_0082, 0x9400)?; // LSTAR
        wrmsr(a, 0xc000_0083, 0x9600)?; // CSTAR
        wrmsr(a, 0xc000_0084, 0x0100)?; // FMASK: TF
        wrmsr(a, 0xc000_0080, efer::LME | efer::LMA | efer::SCE)?;
        a.mov(rsp, 0x7000u64)?;
        a.mov(rcx, 0xa000u64)?;
        a.mov(r11, 0x3202u64)?; // IF, IOPL 3
        a.db(&[0x0f, 0x07]) // SYSRETL
    });
    let (user32, at) = marked(32, 0xa000, |a| {
        a.mov(esp, 0x5000)?;
        let l = here(a)?;
        a.syscall()?;
        let next = here(a)?;
        a.hlt()?;
        Ok(vec![l, next])
    });
    let lstar = code(64, 0x9400, |a| a.hlt());
    let (cstar, end) = marked(64, 0x9600, |a| {
        a.mov(r13, rcx)?;
        a.mov(r14, r11)?;
        a.mov(r15, cs)?;
        a.mov(r12, rsp)?;
        a.mov(ebp, ss)?;
        a.pushfq()?;
        a.pop(rsi)?;
        let l = here(a)?;
        a.out(0xf4, al)?;
        Ok(vec![l])
    });
    let ud = (0x1000 + 6 * 16, gate64(KERNEL_CS, 0x9800, 0, 0));
    let chunks = long_mode_chunks(vec![kernel, user32, lstar, cstar, ud, report64(0x9800, false)]);
    let r = boot_on(Vendor::Intel, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    let (u32cs, uds) = (USER32_CS as u64, USER_DS as u64);
    assert_eq!(frame64(&r), (u64::MAX, at[0], u32cs, 0x1_3202, 0x5000, uds, 0x6000 - 40), "#UD in ring 3");
    let r = boot_on(Vendor::Amd, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    let g = |n| r.gpr(n);
    assert_eq!((g(13), g(14), g(15), g(RBP), g(12)), (at[1], 0x3202, KERNEL_CS as u64, KERNEL_DS as u64, 0x5000));
    assert_eq!(g(RSI), 0x3202, "FMASK cleared nothing set; RF clear");
    let core = r.vcpu.cpu();
    assert_eq!((r.mode(), core.view.cpl, core.rip), (Mode::Long, 0, end[0] + 2), "past the OUT");
}

/// A ring-3 16-bit data segment (base 0, limit 0xffff, B clear) in the
/// GDT's spare slot, selector GATE | 3.
const USER_SS16: u16 = GATE | 3;
const SS16_DESCRIPTOR: u64 = 0x0000_f300_0000_ffff;

/// IRET to ring 3 on a 16-bit stack segment loads only SP: RSP[63:16]
/// (ESP[31:16] on a 32-bit kernel) keep the kernel's stack pointer of the
/// IRET, which leaks it to user space. Linux commit 3891a04aafd6
/// ("x86-64, espfix: Don't leak bits 31:16 of %esp returning to 16-bit
/// stack"): "The IRET instruction, when returning to a 16-bit segment,
/// only restores the bottom 16 bits of the user space stack pointer";
/// the 32-bit kernel's espfix is older, and CVE-2014-8133 bypassed it.
/// Bochs' iret (`SP = new_rsp` for a 16-bit SS) agrees.
#[test]
fn iret_to_a_16_bit_stack_keeps_the_kernels_upper_stack_pointer_bits() {
    let user = code(32, 0xa000, |a| {
        a.mov(ebx, esp)?;
        a.mov(ecx, ss)?;
        a.out(0xf4, al)
    });
    let frame64 = code(64, 0x9000, |a| {
        a.mov(rsp, 0x3f_8000u64)?;
        a.push(i32::from(USER_SS16))?;
        a.mov(rax, 0x1111_2222_3333_5ff0u64)?;
        a.push(rax)?;
        a.push(0x3002)?; // IOPL 3 for the OUT
        a.push(i32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretq()
    });
    let mut chunks = long_mode_chunks(vec![frame64, user.clone()]);
    chunks.push(gdt_with(SS16_DESCRIPTOR));
    let r = boot(long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    // The IRETQ ran with RSP = 0x3f_8000 - 40: bits 63:16 are 0x3f.
    assert_eq!((r.gpr(RSP), r.gpr(RBX), r.gpr(RCX)), (0x3f_5ff0, 0x3f_5ff0, u64::from(USER_SS16)));
    let core = r.vcpu.cpu();
    assert_eq!((r.mode(), core.view.cpl, core.cs().selector), (Mode::Compatibility, 3, USER32_CS));
    // The same on a 32-bit kernel: IRETD keeps ESP[31:16].
    let frame32 = code(32, 0x9000, |a| {
        a.mov(esp, 0x3f_8000)?;
        a.push(u32::from(USER_SS16))?;
        a.push(0x1234_5ff0)?;
        a.push(0x3002)?;
        a.push(u32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretd()
    });
    let r = boot(protected_mode(0x9000), &[gdt_with(SS16_DESCRIPTOR), frame32, user]);
    assert_eq!(r.end, End::Done);
    assert_eq!((r.gpr(RSP), r.gpr(RBX)), (0x3f_5ff0, 0x3f_5ff0));
    assert_eq!((r.mode(), r.vcpu.cpu().view.cpl), (Mode::Protected, 3));
}

/// SYSENTER from ring-3 compatibility-mode code: Intel enters the 64-bit
/// kernel at SYSENTER_EIP on SYSENTER_ESP with CS = SYSENTER_CS and SS =
/// CS + 8; AMD recognizes SYSENTER only in legacy mode, #UD in long mode
/// (APM Vol. 3 "SYSENTER"; KVM's em_sysenter: "Intel's architecture allows
/// SYSENTER in compatibility mode, but AMD does not"; QEMU's translator
/// makes it #UD in 64-bit code unless the vendor is Intel).
#[test]
fn compatibility_mode_sysenter_enters_the_kernel_on_intel_and_is_ud_on_amd() {
    let kernel = code(64, 0x9000, |a| {
        wrmsr(a, 0x174, u64::from(KERNEL_CS))?;
        wrmsr(a, 0x175, 0x6800)?;
        wrmsr(a, 0x176, 0x9400)?;
        a.push(i32::from(USER_DS))?;
        a.push(0x5000)?;
        a.push(0x3002)?;
        a.push(i32::from(USER32_CS))?;
        a.push(0xa000)?;
        a.iretq()
    });
    let (user, at) = marked(32, 0xa000, |a| {
        let l = here(a)?;
        a.sysenter()?;
        a.hlt()?;
        Ok(vec![l])
    });
    let entry = code(64, 0x9400, |a| {
        a.mov(r15, cs)?;
        a.mov(ebp, ss)?;
        a.mov(r12, rsp)?;
        a.out(0xf4, al)
    });
    let ud = (0x1000 + 6 * 16, gate64(KERNEL_CS, 0x9800, 0, 0));
    let chunks = long_mode_chunks(vec![kernel, user, entry, ud, report64(0x9800, false)]);
    let r = boot_on(Vendor::Intel, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    assert_eq!((r.gpr(15), r.gpr(RBP), r.gpr(12)), (KERNEL_CS as u64, KERNEL_DS as u64, 0x6800));
    assert_eq!((r.mode(), r.vcpu.cpu().view.cpl), (Mode::Long, 0));
    let r = boot_on(Vendor::Amd, long_mode(0x9000), &chunks);
    assert_eq!(r.end, End::Done);
    let (u32cs, uds) = (USER32_CS as u64, USER_DS as u64);
    assert_eq!(frame64(&r), (u64::MAX, at[0], u32cs, 0x1_3002, 0x5000, uds, 0x6000 - 40));
}

/// SYSENTER with IA32_SYSENTER_CS null (its reset value) is #GP(0) at the
/// SYSENTER (SDM Vol. 2B "SYSENTER"; KVM's em_sysenter checks
/// `(msr_data & 0xfffc) == 0`, a fix for guests that probed it).
#[test]
fn sysenter_with_a_null_sysenter_cs_is_gp0() {
    let (kernel, at) = marked(32, 0x9000, |a| {
        a.mov(esp, 0x7000)?;
        let l = here(a)?;
        a.sysenter()?;
        a.hlt()?;
        Ok(vec![l])
    });
    let gate = (0x1000 + 13 * 8, gate32(KERNEL_CS32, 0x9800, 0, false).to_le_bytes().to_vec());
    let r = boot(protected_mode(0x9000), &[gdt(), kernel, gate, report_fault32(0x9800)]);
    assert_eq!(r.end, End::Done);
    assert_eq!((r.gpr(RBX), r.gpr(RDX), r.gpr(RDI)), (0, at[0], u64::from(KERNEL_CS32)));
    assert_eq!(r.gpr(RSP), 0x7000 - 12, "EIP, CS, EFLAGS left after the error code");
}

/// A WRMSR the VMM refuses is #GP(0) as an injection the VMM can see, as
/// KVM's `kvm_inject_gp` queues it: a VMM that injects an interrupt only
/// when nothing is queued then waits, and the #GP is delivered at the
/// WRMSR, not at an interrupt handler's first instruction (Debian's kernel
/// on the legacy profile met a PIT tick at `early_init_intel`'s WRMSR to
/// 0x8b, which no model has, and oopsed in the IRQ stub).
#[test]
fn a_refused_wrmsr_is_a_gp_injection_at_the_instruction() {
    let ((at, bytes), labels) = marked(64, 0x9000, |a| {
        let w = here(a)?;
        wrmsr(a, 0x8b, 0)?;
        Ok(vec![w])
    });
    let mut vm = SimVm::with_profile(16 << 20, Profile::default_profile(), 0).unwrap();
    for (gpa, b) in long_mode_chunks(vec![(at, bytes)]) {
        vm.write_memory(gpa, &b).unwrap();
    }
    let mut vcpu = vm.create_vcpu(0, &long_mode(at)).unwrap();
    let VmExit::MsrWrite { msr: 0x8b, value: 0 } = vcpu.run().unwrap() else { panic!("no WRMSR exit") };
    assert!(!vcpu.write_msr(0x8b, 0).unwrap(), "no model has MSR 0x8b's write");
    vcpu.complete(Completion::MsrWrite(false));
    let gp = exitlab_hv::Injection::exception(exitlab_arch::vector::GP, Some(0));
    assert_eq!(vcpu.injection(), Some(gp));
    // The WRMSR is the third instruction (two MOVs set ECX and EAX/EDX).
    assert_eq!(vcpu.cpu().rip, labels[0] + 5 + 5 + 5);
}

//! The VMM with guests in every paging mode (issue 12): a 32-bit
//! protected-mode guest turns on 32-bit paging (a 4 MiB page and a 4 KiB
//! page), then PAE paging, then IA-32e mode, writing through a mapping in
//! each. With EPT (modern) the simulated MMU walks the guest's tables;
//! under shadow paging (legacy) the VMM's shadow follows the guest's mode:
//! CR0.PG and CR4.PAE/PSE/PGE writes exit and drop the shadow, and each
//! hidden fault walks the guest's tables in their current format.

use exitlab_arch::bits::{cr0, efer};
use exitlab_arch::{BootState, DescriptorTable, Regs, Segment};
use exitlab_guest::boot::Chunk;
use exitlab_guest::{BootImage, MachineConfig};
use exitlab_hv::Vm;
use exitlab_sim::profile::Profile;
use exitlab_sim::SimVm;
use exitlab_vmm::{run_boot_image, Outcome, RunOptions};
use iced_x86::code_asm::*;

const MEMORY: u64 = 16 << 20;
/// Where each mode's write lands (physical) and the linear address that
/// maps it.
const WRITES: [(u64, u64, u32); 3] =
    [(0x30_0010, 0x4000_0010, 0x3232), (0x40_0020, 0x4000_0020, 0xaeae), (0x50_0030, 0x4000_0030, 0x6464)];

fn code(bits: u32, ip: u64, body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Chunk {
    let mut a = CodeAssembler::new(bits).unwrap();
    body(&mut a).unwrap();
    Chunk { gpa: ip, bytes: a.assemble(ip).unwrap() }
}

fn chunk(gpa: u64, words: &[u64], size: usize) -> Chunk {
    Chunk { gpa, bytes: words.iter().flat_map(|w| w.to_le_bytes()[..size].to_vec()).collect() }
}

/// The guest: the GDT (32-bit code 0x08, data 0x10, 64-bit code 0x18),
/// the three sets of tables, and the code.
fn image() -> BootImage {
    let gdt = chunk(0x800, &[0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x00af_9b00_0000_ffff], 8);
    // 32-bit: PD at 0x20000 (4 MiB identity page; 1 GiB -> PT 0x21000 -> 0x30_0000).
    let mut pd32 = vec![0u64; 1024];
    pd32[0] = 0x87;
    pd32[1] = 0x2a007; // linear 4 MiB -> PT 0x2a000 -> 0x30_0000 too
    pd32[256] = 0x21007;
    // PAE: PDPT 0x22000 -> PD 0x23000 (2 MiB identity) and PD 0x24000 -> PT 0x25000 -> 0x40_0000.
    // 4-level: PML4 0x26000 -> PDPT 0x27000 -> PD 0x23000 (shared) and PD 0x28000 -> PT 0x29000 -> 0x50_0000.
    let body = code(32, 0x9000, |a| {
        let write = |a: &mut CodeAssembler, (_, lin, v): (u64, u64, u32)| a.mov(dword_ptr(lin), v);
        a.mov(eax, 0x10)?; // CR4.PSE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x20000)?;
        a.mov(cr3, eax)?;
        a.mov(eax, (cr0::PE | cr0::ET | cr0::PG) as u32)?;
        a.mov(cr0, eax)?;
        write(a, WRITES[0])?;
        // Linear 0x40_0010 is 0x30_0010 with paging on, itself with it off:
        // the shadow must not keep the first translation.
        a.mov(ebx, dword_ptr(0x40_0010))?;
        a.mov(eax, (cr0::PE | cr0::ET) as u32)?;
        a.mov(cr0, eax)?;
        a.mov(esi, dword_ptr(0x40_0010))?;
        a.mov(dword_ptr(0x6000), ebx)?;
        a.mov(dword_ptr(0x6004), esi)?;
        a.mov(eax, 0x20)?; // CR4.PAE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x22000)?;
        a.mov(cr3, eax)?;
        a.mov(eax, (cr0::PE | cr0::ET | cr0::PG) as u32)?;
        a.mov(cr0, eax)?;
        write(a, WRITES[1])?;
        a.mov(eax, (cr0::PE | cr0::ET) as u32)?;
        a.mov(cr0, eax)?;
        a.mov(eax, 0x26000)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.mov(eax, efer::LME as u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(eax, (cr0::PE | cr0::ET | cr0::PG) as u32)?;
        a.mov(cr0, eax)?;
        a.jmp_far(0x18, 0xa000)
    });
    let long = code(64, 0xa000, |a| {
        a.mov(dword_ptr(WRITES[2].1), WRITES[2].2)?;
        a.mov(eax, dword_ptr(WRITES[0].1))?; // now the 4-level mapping: 0x50_0010
        a.out(0xf4, eax)
    });
    let chunks = vec![
        gdt,
        body,
        long,
        chunk(0x20000, &pd32, 4),
        chunk(0x21000, &[0x30_0007], 4),
        chunk(0x2a000, &[0x30_0007], 4),
        chunk(0x22000, &[0x23001, 0x24001], 8),
        chunk(0x23000, &[0x87, 0x20_0087], 8),
        chunk(0x24000, &[0x25007], 8),
        chunk(0x25000, &[0x40_0007], 8),
        chunk(0x26000, &[0x27007], 8),
        chunk(0x27000, &[0x23007, 0x28007], 8),
        chunk(0x28000, &[0x29007], 8),
        chunk(0x29000, &[0x50_0007], 8),
        chunk(0x50_0010, &[0x5010_5010], 4),
    ];
    let data = Segment::flat_data(0x10);
    let boot = BootState {
        regs: Regs { rip: 0x9000, rflags: 2, gpr: [0; 16] },
        cs: Segment::flat_code(0x08, false),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment::busy_tss(0, 0, 0x67),
        ldt: Segment::no_ldt(),
        gdt: DescriptorTable { base: 0x800, limit: 0x1f },
        idt: DescriptorTable::default(),
        cr0: cr0::PE | cr0::ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
    };
    BootImage {
        name: "paging-modes".into(),
        chunks,
        boot,
        symbols: Default::default(),
        memory_size: MEMORY,
        machine: MachineConfig::default(),
    }
}

#[test]
fn every_paging_mode_on_both_profiles() {
    for profile in ["modern", "legacy"] {
        let mut vm = SimVm::with_profile(MEMORY, Profile::load(profile).unwrap(), 1).unwrap();
        let r = run_boot_image(&mut vm, &image(), &RunOptions::default()).unwrap();
        assert_eq!(r.outcome, Outcome::Exited { status: 0x5010_5010 }, "{profile}: 4-level read");
        let mut b = [0u8; 4];
        for (phys, _, v) in WRITES {
            vm.read_memory(phys, &mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), v, "{profile}: the write for {phys:#x}");
        }
        let mut both = [0u8; 8];
        vm.read_memory(0x6000, &mut both).unwrap();
        assert_eq!(u64::from_le_bytes(both), 0x3232, "{profile}: paging on, then off");
        // The guest's own 32-bit PTE got A and D, in its 4-byte format.
        vm.read_memory(0x21000, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x30_0067, "{profile}");
    }
}

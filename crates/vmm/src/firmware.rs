//! The PC firmware's hand-over: the platform state a BIOS leaves before it
//! starts a boot loader's 32-bit protected-mode entry (QEMU's `-kernel`
//! multiboot path runs after SeaBIOS's POST), for code that relies on it
//! (kvm-unit-tests' realmode test takes the BIOS's timer interrupt through
//! the IVT to leave an STI;HLT).
//!
//! The state, from SeaBIOS's POST (src/hw/pic.c `pic_reset`, src/hw/timer.c
//! `pit_setup`, src/clock.c `clock_setup`, src/fw/smp.c `smp_scan`,
//! src/post.c `ivt_init`):
//! - the 8259A pair initialised as the PC/AT has it: ICW1 0x11 (edge,
//!   cascade, ICW4), vectors 0x08-0x0f and 0x70-0x77, the slave on IR2,
//!   8086 mode; every line masked but IRQ 0 (the timer), the cascade and
//!   IRQ 8 (the RTC);
//! - 8254 counter 0 in mode 2 (rate generator), binary, count 0 (65536):
//!   IRQ 0 at 18.2 Hz;
//! - the local APIC software-enabled (SVR 0x1ff), LINT0 ExtINT (0x8700)
//!   and LINT1 NMI (0x8400), so the PIC's INT reaches the CPU;
//! - the real-mode IVT at 0: every vector an IRET at F000:FF53 (the
//!   PC/AT's dummy interrupt entry, SeaBIOS's `entry_iret_official`), the
//!   hardware vectors handlers that acknowledge their PIC (SeaBIOS's
//!   `handle_hwpic1`/`handle_hwpic2`).
//!
//! Not kept: the BIOS data area (no tick count at 0x46c, no INT 1Ch from
//! the timer), BIOS services (INT 10h, 13h, 15h, ...: an IRET), the PIIX
//! ELCR (every ISA line stays edge-triggered), and the devices SeaBIOS
//! would also unmask (keyboard, mouse, disks), which exitlab's PC lacks
//! or leaves to the guest.
//!
//! The programming is guest code, the firmware's own OUTs and APIC
//! writes, run before the image's entry ([`post`]): it reaches exitlab's
//! models on the simulator and the host kernel's PIC, PIT and APIC on
//! KVM alike, and the run's exits show it, as they would a real BIOS's.

use crate::error::VmmError;
use exitlab_arch::BootState;
use exitlab_guest::boot::Chunk;
use exitlab_hv::Vm;
use iced_x86::code_asm::*;

/// The BIOS segment F000h: where the POST code and the handlers live.
pub const ROM_BASE: u64 = 0xf_0000;
/// The real-mode interrupt vector table: 256 far pointers at 0.
pub const IVT: u64 = 0;
/// The POST code's first byte: ROM_BASE + 0.
pub const POST: u64 = ROM_BASE;
/// The PC/AT's dummy interrupt handler, an IRET (F000:FF53).
pub const IRET_OFFSET: u16 = 0xff53;
/// The master PIC's IRQ handler: EOI to 0x20, IRET (F000:E000).
pub const HWPIC1_OFFSET: u16 = 0xe000;
/// The slave PIC's IRQ handler: EOI to 0xa0 and 0x20, IRET (F000:E010).
pub const HWPIC2_OFFSET: u16 = 0xe010;
/// The vectors the BIOS gives the PIC pair (ICW2).
pub const MASTER_VECTOR: u8 = 0x08;
pub const SLAVE_VECTOR: u8 = 0x70;
/// The interrupt masks the POST leaves (OCW1): IRQ 0 and the cascade
/// (IRQ 2) on the master, IRQ 8 on the slave.
pub const MASTER_MASK: u8 = !0b101;
pub const SLAVE_MASK: u8 = !0b1;
/// Local APIC register values the POST writes (SDM Vol. 3A 11.4.3, 11.5.1).
pub const APIC_SVR: u32 = 0x1ff;
pub const APIC_LINT0: u32 = 0x8700;
pub const APIC_LINT1: u32 = 0x8400;
const APIC_MMIO: u64 = exitlab_arch::bits::apic::DEFAULT_BASE;

/// Handler bytes: `push ax; mov al, 0x20; out 0x20, al; pop ax; iret`.
const HWPIC1: [u8; 7] = [0x50, 0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf];
/// `push ax; mov al, 0x20; out 0xa0, al; out 0x20, al; pop ax; iret`.
const HWPIC2: [u8; 9] = [0x50, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x58, 0xcf];
const IRET: u8 = 0xcf;

/// Whether an image with `boot` gets the firmware's hand-over: a 32-bit
/// protected-mode entry (multiboot and ELF32 images), the one a BIOS
/// boot loader makes. Real-mode and 64-bit entries are direct boots.
pub fn applies(boot: &BootState) -> bool {
    boot.mode() == exitlab_arch::CpuMode::Protected && boot.cr0 & exitlab_arch::bits::cr0::PG == 0
}

/// The IVT's 1 KiB: vector v's far pointer (offset, then segment F000h).
pub fn ivt() -> Vec<u8> {
    (0..=255u8)
        .flat_map(|v| {
            let offset = match v {
                v if v & !7 == MASTER_VECTOR => HWPIC1_OFFSET,
                v if v & !7 == SLAVE_VECTOR => HWPIC2_OFFSET,
                _ => IRET_OFFSET,
            };
            let segment = (ROM_BASE >> 4) as u16;
            [offset.to_le_bytes(), segment.to_le_bytes()].concat()
        })
        .collect()
}

/// The POST code for `boot`'s entry: the PIC pair, the PIT and the local
/// APIC programmed, then EAX restored and a jump to the entry. It runs in
/// the entry's own 32-bit flat state and changes only AL and the flags
/// before it gives EAX back.
pub fn post_code(boot: &BootState) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let out = |a: &mut CodeAssembler, port: u8, value: u8| -> Result<(), IcedError> {
        a.mov(al, i32::from(value))?;
        a.out(i32::from(port), al)
    };
    // ICW1-ICW4 to each PIC, then OCW1 (pic_reset, enable_hwirq).
    for (port, value) in [(0x20, 0x11), (0xa0, 0x11), (0x21, MASTER_VECTOR), (0xa1, SLAVE_VECTOR)] {
        out(&mut a, port, value)?;
    }
    for (port, value) in [(0x21, 0x04), (0xa1, 0x02), (0x21, 0x01), (0xa1, 0x01)] {
        out(&mut a, port, value)?;
    }
    out(&mut a, 0x21, MASTER_MASK)?;
    out(&mut a, 0xa1, SLAVE_MASK)?;
    // Counter 0: LSB then MSB, mode 2, binary (0x34); count 0 (pit_setup).
    out(&mut a, 0x43, 0x34)?;
    out(&mut a, 0x40, 0)?;
    out(&mut a, 0x40, 0)?;
    for (offset, value) in [(0xf0, APIC_SVR), (0x350, APIC_LINT0), (0x360, APIC_LINT1)] {
        a.mov(dword_ptr(APIC_MMIO + offset), value)?;
    }
    a.mov(eax, boot.regs.gpr[0] as u32)?;
    a.jmp(boot.regs.rip)?;
    a.assemble(POST)
}

/// Writes the IVT, the POST code and the handlers into guest memory, after
/// checking that no chunk of the image is there, and returns the state the
/// vCPU starts in: `boot` at the POST code.
pub fn post<V: Vm>(vm: &V, chunks: &[Chunk], boot: &BootState) -> Result<BootState, VmmError> {
    let code = post_code(boot)
        .map_err(|e| VmmError::Machine { key: "platform", message: format!("the firmware's POST code: {e}") })?;
    let mut rom = vec![0u8; 0x1_0000];
    rom[..code.len()].copy_from_slice(&code);
    rom[usize::from(HWPIC1_OFFSET)..][..HWPIC1.len()].copy_from_slice(&HWPIC1);
    rom[usize::from(HWPIC2_OFFSET)..][..HWPIC2.len()].copy_from_slice(&HWPIC2);
    rom[usize::from(IRET_OFFSET)] = IRET;
    for (gpa, bytes) in [(IVT, ivt()), (ROM_BASE, rom)] {
        let end = gpa + bytes.len() as u64;
        if let Some(c) = chunks.iter().find(|c| c.gpa < end && c.gpa + c.bytes.len() as u64 > gpa) {
            return Err(VmmError::Machine {
                key: "platform",
                message: format!(
                    "the image's {} bytes at {:#x} overlap the firmware's {gpa:#x}-{end:#x}",
                    c.bytes.len(),
                    c.gpa
                ),
            });
        }
        vm.write_memory(gpa, &bytes)?;
    }
    let mut state = boot.clone();
    state.regs.rip = POST;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn disassemble(bytes: &[u8], bitness: u32, ip: u64) -> Vec<String> {
        let mut f = IntelFormatter::new();
        Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE)
            .into_iter()
            .map(|i| {
                let mut s = String::new();
                f.format(&i, &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn the_ivt_points_hardware_vectors_at_their_pic_handlers_and_the_rest_at_the_iret() {
        let t = ivt();
        assert_eq!(t.len(), 1024);
        let at =
            |v: usize| (u16::from_le_bytes([t[4 * v], t[4 * v + 1]]), u16::from_le_bytes([t[4 * v + 2], t[4 * v + 3]]));
        assert_eq!(at(0x00), (0xff53, 0xf000));
        assert_eq!(at(0x07), (0xff53, 0xf000));
        assert_eq!((at(0x08), at(0x0f)), ((0xe000, 0xf000), (0xe000, 0xf000)));
        assert_eq!(at(0x10), (0xff53, 0xf000));
        assert_eq!((at(0x70), at(0x77)), ((0xe010, 0xf000), (0xe010, 0xf000)));
        assert_eq!((at(0x78), at(0xff)), ((0xff53, 0xf000), (0xff53, 0xf000)));
    }

    #[test]
    fn the_handlers_acknowledge_their_pics() {
        assert_eq!(disassemble(&HWPIC1, 16, 0xe000), ["push ax", "mov al,20h", "out 20h,al", "pop ax", "iret"]);
        assert_eq!(
            disassemble(&HWPIC2, 16, 0xe010),
            ["push ax", "mov al,20h", "out 0A0h,al", "out 20h,al", "pop ax", "iret"]
        );
    }

    #[test]
    fn the_post_code_programs_the_pics_the_pit_and_the_apic_then_enters_the_image() {
        let mut boot =
            BootState { regs: exitlab_arch::Regs { rip: 0x40_00bc, ..Default::default() }, ..Default::default() };
        boot.regs.gpr[0] = 0x2bad_b002;
        let code = post_code(&boot).unwrap();
        let text = disassemble(&code, 32, POST);
        let outs: Vec<String> = text.chunks(2).take(13).map(|p| format!("{} / {}", p[0], p[1])).collect();
        assert_eq!(
            outs,
            [
                "mov al,11h / out 20h,al",
                "mov al,11h / out 0A0h,al",
                "mov al,8 / out 21h,al",
                "mov al,70h / out 0A1h,al",
                "mov al,4 / out 21h,al",
                "mov al,2 / out 0A1h,al",
                "mov al,1 / out 21h,al",
                "mov al,1 / out 0A1h,al",
                "mov al,0FAh / out 21h,al",
                "mov al,0FEh / out 0A1h,al",
                "mov al,34h / out 43h,al",
                "mov al,0 / out 40h,al",
                "mov al,0 / out 40h,al",
            ]
        );
        assert_eq!(
            text[26..],
            [
                "mov dword ptr [0FEE000F0h],1FFh",
                "mov dword ptr [0FEE00350h],8700h",
                "mov dword ptr [0FEE00360h],8400h",
                "mov eax,2BADB002h",
                "jmp 004000BCh",
            ]
        );
    }
}

//! A guest image: bytes, where they load, where execution starts, symbols.

use crate::boot::{BootLayout, Chunk};
use crate::kernel::mailbox;
use crate::machine::MachineConfig;
use exitlab_arch::{vector, BootState};
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// Bytes + load GPA + entry + symbols: the one format both backends run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    /// Guest-physical address of `bytes[0]`.
    pub load_gpa: u64,
    pub entry: u64,
    pub bytes: Vec<u8>,
    /// `bytes[..code_len]` is code; the rest is data (strings, the IDT).
    pub code_len: usize,
    pub symbols: BTreeMap<String, u64>,
    /// Guest RAM the image expects, in bytes.
    pub memory_size: u64,
    /// The machine the workload asks the VMM for.
    pub machine: MachineConfig,
}

/// What the VMM loads, whoever built it: memory contents, the vCPU's
/// first state, symbols, the RAM size and the machine asked for. A
/// built-in workload's [`Image`] becomes one with [`Image::boot_image`];
/// a loader for ELF, multiboot or bzImage files produces the chunks, the
/// boot state and the symbols, and the user's flags or TOML file the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImage {
    /// A name for reports and errors.
    pub name: String,
    /// Guest memory to write before the first instruction, in order.
    pub chunks: Vec<Chunk>,
    /// The vCPU's registers, segments, descriptor tables and control
    /// registers at the first instruction.
    pub boot: BootState,
    /// Symbol names by guest address, for reports.
    pub symbols: BTreeMap<String, u64>,
    /// Guest RAM, in bytes from guest-physical 0.
    pub memory_size: u64,
    /// The machine the guest asks for.
    pub machine: MachineConfig,
}

impl Image {
    /// What the VMM loads: the boot layout's tables, then the image's bytes
    /// at their load address; registers as the boot layout starts them.
    pub fn boot_image(&self) -> BootImage {
        let layout = self.boot_layout();
        let mut chunks = layout.chunks;
        chunks.push(Chunk { gpa: self.load_gpa, bytes: self.bytes.clone() });
        BootImage {
            name: self.name.clone(),
            chunks,
            boot: layout.state,
            symbols: self.symbols.clone(),
            memory_size: self.memory_size,
            machine: self.machine.clone(),
        }
    }

    /// The address of symbol `name`.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// The memory and registers the image starts from.
    pub fn boot_layout(&self) -> BootLayout {
        BootLayout::new(self.entry)
    }

    /// The nearest symbol at or below `addr`, with the offset from it.
    pub fn symbolize(&self, addr: u64) -> Option<(&str, u64)> {
        self.symbols.iter().filter(|(_, &a)| a <= addr).max_by_key(|(_, &a)| a).map(|(n, &a)| (n.as_str(), addr - a))
    }

    /// The code decoded back to Intel syntax with symbol labels, followed
    /// by a summary of the data section.
    pub fn disassemble(&self) -> String {
        let mut by_addr: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (n, &a) in &self.symbols {
            by_addr.entry(a).or_default().push(n);
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "; image `{}`: {} bytes at {:#x} ({} code, {} data), entry {:#x}",
            self.name,
            self.bytes.len(),
            self.load_gpa,
            self.code_len,
            self.bytes.len() - self.code_len,
            self.entry
        );
        let mut decoder = Decoder::with_ip(64, &self.bytes[..self.code_len], self.load_gpa, DecoderOptions::NONE);
        let mut formatter = IntelFormatter::new();
        formatter.options_mut().set_first_operand_char_index(8);
        let mut instr = Instruction::default();
        let mut text = String::new();
        while decoder.can_decode() {
            decoder.decode_out(&mut instr);
            if let Some(names) = by_addr.get(&instr.ip()) {
                for n in names {
                    let _ = writeln!(out, "{n}:");
                }
            }
            text.clear();
            formatter.format(&instr, &mut text);
            let start = (instr.ip() - self.load_gpa) as usize;
            let hex: String = self.bytes[start..start + instr.len()].iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "  {:016x}  {:<24} {}", instr.ip(), hex, text);
        }
        for (n, &a) in &self.symbols {
            let off = a.wrapping_sub(self.load_gpa) as usize;
            if off >= self.code_len && off <= self.bytes.len() {
                let _ = writeln!(out, "{n}: data at {a:#x}");
            }
        }
        out
    }
}

/// What the guest kernel wrote to the mailbox before reporting an
/// exception or an unexpected interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxReport {
    pub vector: u8,
    pub error_code: u64,
    pub rip: u64,
    pub cr2: u64,
    pub cs: u16,
    pub rflags: u64,
    pub rsp: u64,
    /// DR6 as the handler read it (what a #DB reports).
    pub dr6: u64,
}

impl MailboxReport {
    /// Bytes of guest memory the report occupies at [`crate::layout::MAILBOX`].
    pub const SIZE: usize = mailbox::SIZE;

    pub fn from_bytes(b: &[u8; mailbox::SIZE]) -> MailboxReport {
        let q = |off: i32| u64::from_le_bytes(b[off as usize..off as usize + 8].try_into().expect("8 bytes"));
        MailboxReport {
            vector: q(mailbox::VECTOR) as u8,
            error_code: q(mailbox::ERROR_CODE),
            rip: q(mailbox::RIP),
            cr2: q(mailbox::CR2),
            cs: q(mailbox::CS) as u16,
            rflags: q(mailbox::RFLAGS),
            rsp: q(mailbox::RSP),
            dr6: q(mailbox::DR6),
        }
    }

    /// Timer ticks the kernel counted, from the same mailbox bytes.
    pub fn ticks(b: &[u8; mailbox::SIZE]) -> u64 {
        let off = mailbox::TICKS as usize;
        u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
    }
}

impl fmt::Display for MailboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match vector::mnemonic(self.vector) {
            Some(m) => write!(f, "guest exception {m} (vector {})", self.vector)?,
            None => write!(f, "unexpected interrupt, vector {:#x}", self.vector)?,
        }
        write!(f, " at rip {:#x} (cpl {})", self.rip, self.cs & 3)?;
        if self.vector < 32 && vector::has_error_code(self.vector) {
            write!(f, ", error code {:#x}", self.error_code)?;
        }
        if self.vector == vector::PF {
            write!(f, ", cr2 {:#x}", self.cr2)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_boot_image_is_the_boot_layout_then_the_bytes() {
        let w = crate::find_workload("cpuid").unwrap();
        let img = w.build(&w.resolve([]).unwrap()).unwrap();
        let boot = img.boot_image();
        let layout = img.boot_layout();
        let (last, tables) = boot.chunks.split_last().unwrap();
        assert_eq!(tables, &layout.chunks[..]);
        assert_eq!((last.gpa, &last.bytes), (img.load_gpa, &img.bytes));
        assert_eq!(boot.boot, layout.state);
        assert_eq!((boot.symbols, boot.memory_size, boot.machine), (img.symbols, img.memory_size, img.machine));
    }
}

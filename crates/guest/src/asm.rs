//! A thin layer over iced-x86's CodeAssembler: named symbols, IDT entries
//! bound to labels, and the final assembly into an [`Image`].

use crate::image::Image;
use crate::layout::KERNEL_CS;
use crate::machine::MachineConfig;
use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::{BlockEncoderOptions, IcedError};
use std::collections::BTreeMap;
use std::fmt;

/// An image could not be assembled (a bug in a workload definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot assemble guest image: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

impl From<IcedError> for BuildError {
    fn from(e: IcedError) -> Self {
        BuildError(e.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, BuildError>;

/// Size of the IDT the kernel carries: 256 16-byte gates.
pub(crate) const IDT_BYTES: usize = 256 * 16;

pub(crate) struct Asm {
    pub a: CodeAssembler,
    symbols: Vec<(String, CodeLabel)>,
    gates: Vec<(u8, CodeLabel)>,
    idt: Option<CodeLabel>,
    idtr: Option<CodeLabel>,
    data: Option<CodeLabel>,
    user_body: bool,
}

impl Asm {
    pub fn new() -> Result<Asm> {
        Ok(Asm {
            a: CodeAssembler::new(64)?,
            symbols: Vec::new(),
            gates: Vec::new(),
            idt: None,
            idtr: None,
            data: None,
            user_body: false,
        })
    }

    /// A fresh label, placed later with [`Asm::set`].
    pub fn label(&mut self) -> CodeLabel {
        self.a.create_label()
    }

    pub fn set(&mut self, label: &mut CodeLabel) -> Result<()> {
        Ok(self.a.set_label(label)?)
    }

    /// A named label at the current position; it appears in the image's
    /// symbol table and in disassembly.
    pub fn symbol(&mut self, name: &str) -> Result<CodeLabel> {
        let mut l = self.a.create_label();
        self.a.set_label(&mut l)?;
        self.symbols.push((name.to_string(), l));
        Ok(l)
    }

    /// Names a label that is (or will be) placed elsewhere.
    pub fn name(&mut self, name: &str, label: CodeLabel) {
        self.symbols.push((name.to_string(), label));
    }

    /// Routes interrupt `vector` to `handler` (a 64-bit interrupt gate).
    pub fn gate(&mut self, vector: u8, handler: CodeLabel) {
        self.gates.retain(|(v, _)| *v != vector);
        self.gates.push((vector, handler));
    }

    /// Notes that the code from here on runs in ring 3.
    pub fn mark_user_body(&mut self) {
        self.user_body = true;
    }

    pub fn has_user_body(&self) -> bool {
        self.user_body
    }

    pub fn has_gate(&self, vector: u8) -> bool {
        self.gates.iter().any(|(v, _)| *v == vector)
    }

    /// Places `first` (the first data item) and starts the data section
    /// there: nothing after this point is code.
    pub fn begin_data(&mut self, mut first: CodeLabel) -> Result<()> {
        self.set(&mut first)?;
        self.name("data", first);
        self.data = Some(first);
        Ok(())
    }

    /// Reserves the IDT and the IDTR image in the data section; their bytes
    /// are filled in by [`Asm::finish`] once handler addresses are known.
    pub fn reserve_idt(&mut self, idtr: CodeLabel) -> Result<()> {
        let mut idtr = idtr;
        self.set(&mut idtr)?;
        self.a.db(&[0u8; 10])?;
        self.idtr = Some(idtr);
        self.idt = Some(self.symbol("idt")?);
        self.a.db(&[0u8; IDT_BYTES])?;
        Ok(())
    }

    pub fn finish(mut self, name: &str, load_gpa: u64, memory_size: u64) -> Result<Image> {
        let res = self.a.assemble_options(load_gpa, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let mut bytes = res.inner.code_buffer.clone();
        let ip = |l: &CodeLabel| -> Result<u64> { Ok(res.label_ip(l)?) };

        if let (Some(idt), Some(idtr)) = (self.idt, self.idtr) {
            let idt_ip = ip(&idt)?;
            let base = (idt_ip - load_gpa) as usize;
            for (vector, handler) in &self.gates {
                let h = ip(handler)?;
                let gate = &mut bytes[base + usize::from(*vector) * 16..][..16];
                gate[0..2].copy_from_slice(&(h as u16).to_le_bytes());
                gate[2..4].copy_from_slice(&KERNEL_CS.to_le_bytes());
                gate[4] = 0; // IST
                gate[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
                gate[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
                gate[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
            }
            let r = (ip(&idtr)? - load_gpa) as usize;
            bytes[r..r + 2].copy_from_slice(&(IDT_BYTES as u16 - 1).to_le_bytes());
            bytes[r + 2..r + 10].copy_from_slice(&idt_ip.to_le_bytes());
        }

        let mut symbols = BTreeMap::new();
        for (name, l) in &self.symbols {
            symbols.insert(name.clone(), ip(l)?);
        }
        let code_len = match &self.data {
            Some(d) => (ip(d)? - load_gpa) as usize,
            None => bytes.len(),
        };
        Ok(Image {
            name: name.to_string(),
            load_gpa,
            entry: load_gpa,
            bytes,
            code_len,
            symbols,
            memory_size,
            machine: MachineConfig::default(),
        })
    }
}

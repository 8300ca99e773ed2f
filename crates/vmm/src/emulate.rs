//! The VMM's instruction emulator for MMIO exits the CPU does not decode
//! (Intel VT-x never does): fetch the instruction at RIP through a software
//! walk of the guest's page tables, decode it with iced-x86, and carry it
//! out against guest registers, guest memory and the device bus, with
//! exitlab-x86's semantics (the same the simulated CPU uses). Everything it
//! does is counted as handler work for the cost model: bytes decoded, page
//! walks, device register operations, bytes copied.

use crate::bus::{Bus, DeviceCtx, Hit};
use crate::error::VmmError;
use crate::walk::walk;
use exitlab_arch::bits::apic::DEFAULT_BASE as APIC_BASE;
use exitlab_arch::bits::{efer, msr, rflags};
use exitlab_arch::Regs;
use exitlab_hv::{HandlerWork, Vm, VmxVcpu};
use exitlab_x86::{alu, mask, sign_extend, Flags};
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind, Register};

/// The first device access an emulated instruction made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAccess {
    pub gpa: u64,
    pub size: u8,
    pub is_write: bool,
    pub data: u64,
    /// The bus slot it reached, if a device claims the address.
    pub slot: Option<usize>,
}

/// What emulating one instruction did.
#[derive(Clone, Debug, Default)]
pub struct Emulated {
    pub work: HandlerWork,
    pub device: Option<DeviceAccess>,
}

/// Why the VMM could not emulate the instruction (a guest error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannotEmulate(pub String);

struct Emulator<'a, 'c, V: Vm, C: VmxVcpu + ?Sized> {
    vm: &'a V,
    vcpu: &'a mut C,
    bus: &'a mut Bus,
    ctx: &'a mut DeviceCtx<'c>,
    regs: Regs,
    cr3: u64,
    nxe: bool,
    done: Emulated,
}

fn gpr(r: Register) -> Option<(usize, u8, bool)> {
    let high = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    let full = r.full_register();
    full.is_gpr64().then(|| ((full as usize) - (Register::RAX as usize), r.size() as u8, high))
}

impl<V: Vm, C: VmxVcpu + ?Sized> Emulator<'_, '_, V, C> {
    fn fail<T>(&self, msg: String) -> Result<T, CannotEmulate> {
        Err(CannotEmulate(msg))
    }

    /// Guest-physical address of `lin`, walking the guest's tables.
    fn translate(&mut self, lin: u64) -> Result<u64, CannotEmulate> {
        self.done.work.page_walks += 1;
        match walk(self.vm, self.cr3, self.nxe, lin) {
            Ok(Some(w)) => Ok(w.gpa),
            _ => self.fail(format!("linear {lin:#x} is not mapped by the guest's page tables")),
        }
    }

    fn device(&self, gpa: u64) -> Option<Hit> {
        self.bus.find(gpa)
    }

    /// A register offset if `gpa` is in the local-APIC page.
    fn apic(gpa: u64) -> Option<u16> {
        (gpa & !0xfff == APIC_BASE).then_some((gpa & 0xfff) as u16)
    }

    fn read_mem(&mut self, lin: u64, size: u8) -> Result<u64, CannotEmulate> {
        let gpa = self.translate(lin)?;
        let mut b = [0u8; 8];
        let n = usize::from(size);
        if let Some(offset) = Self::apic(gpa) {
            let v = self.vcpu.apic_read(offset).map_err(|e| CannotEmulate(e.to_string()))?;
            self.note_device(gpa, size, false, u64::from(v), None);
            return Ok(u64::from(v) >> ((offset & 3) * 8) & mask(size));
        }
        if let Some(hit) = self.device(gpa) {
            self.bus.read(hit, &mut b[..n], self.ctx);
            self.note_device(gpa, size, false, u64::from_le_bytes(b), Some(hit.slot));
        } else if self.vm.read_memory(gpa, &mut b[..n]).is_err() {
            // MMIO with no device behind it reads as all ones.
            b = [0xff; 8];
            self.note_device(gpa, size, false, u64::from_le_bytes(b) & mask(size), None);
        }
        Ok(u64::from_le_bytes(b) & mask(size))
    }

    fn write_mem(&mut self, lin: u64, size: u8, v: u64) -> Result<(), CannotEmulate> {
        let gpa = self.translate(lin)?;
        let bytes = v.to_le_bytes();
        let n = usize::from(size);
        if let Some(offset) = Self::apic(gpa) {
            // The xAPIC takes aligned 32-bit writes; others are dropped.
            if offset & 0xf == 0 && size == 4 {
                self.vcpu.apic_write(offset, v as u32).map_err(|e| CannotEmulate(e.to_string()))?;
            }
            self.note_device(gpa, size, true, v & mask(size), None);
            return Ok(());
        }
        if let Some(hit) = self.device(gpa) {
            self.bus.write(hit, &bytes[..n], self.ctx);
            self.note_device(gpa, size, true, v & mask(size), Some(hit.slot));
        } else if self.vm.write_memory(gpa, &bytes[..n]).is_err() {
            self.note_device(gpa, size, true, v & mask(size), None);
        }
        Ok(())
    }

    fn note_device(&mut self, gpa: u64, size: u8, is_write: bool, data: u64, slot: Option<usize>) {
        self.done.work.device_ops += 1;
        if self.done.device.is_none() {
            self.done.device = Some(DeviceAccess { gpa, size, is_write, data, slot });
        }
    }

    fn reg(&self, r: Register) -> Result<u64, CannotEmulate> {
        let (i, size, high) = gpr(r).ok_or_else(|| CannotEmulate(format!("register {r:?}")))?;
        let v = self.regs.gpr[i];
        Ok(if high { (v >> 8) & 0xff } else { v & mask(size) })
    }

    fn set_reg(&mut self, r: Register, v: u64) -> Result<(), CannotEmulate> {
        let (i, size, high) = gpr(r).ok_or_else(|| CannotEmulate(format!("register {r:?}")))?;
        let old = self.regs.gpr[i];
        self.regs.gpr[i] = match (size, high) {
            (1, true) => (old & !0xff00) | ((v & 0xff) << 8),
            (8, _) => v,
            (4, _) => v & 0xffff_ffff,
            _ => (old & !mask(size)) | (v & mask(size)),
        };
        Ok(())
    }

    /// The effective (linear) address of the instruction's memory operand.
    fn ea(&mut self, i: &Instruction) -> Result<u64, CannotEmulate> {
        let mut a = i.memory_displacement64();
        if !i.is_ip_rel_memory_operand() {
            if i.memory_base() != Register::None {
                a = a.wrapping_add(self.reg(i.memory_base().full_register())?);
            }
            if i.memory_index() != Register::None {
                a = a.wrapping_add(
                    self.reg(i.memory_index().full_register())?.wrapping_mul(u64::from(i.memory_index_scale())),
                );
            }
        }
        let base = match i.segment_prefix() {
            Register::FS => self.vcpu.read_msr(msr::IA32_FS_BASE).ok().flatten().unwrap_or(0),
            Register::GS => self.vcpu.read_msr(msr::IA32_GS_BASE).ok().flatten().unwrap_or(0),
            _ => 0,
        };
        Ok(a.wrapping_add(base))
    }

    fn operand(&mut self, i: &Instruction, n: u32, size: u8) -> Result<u64, CannotEmulate> {
        match i.op_kind(n) {
            OpKind::Register => self.reg(i.op_register(n)),
            OpKind::Memory => {
                let ea = self.ea(i)?;
                self.read_mem(ea, size)
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Ok(i.immediate(n) & mask(size)),
            k => self.fail(format!("operand kind {k:?}")),
        }
    }

    fn set_operand(&mut self, i: &Instruction, n: u32, size: u8, v: u64) -> Result<(), CannotEmulate> {
        match i.op_kind(n) {
            OpKind::Register => self.set_reg(i.op_register(n), v),
            OpKind::Memory => {
                let ea = self.ea(i)?;
                self.write_mem(ea, size, v)
            }
            k => self.fail(format!("destination kind {k:?}")),
        }
    }

    fn size_of(i: &Instruction, n: u32) -> u8 {
        match i.op_kind(n) {
            OpKind::Register => i.op_register(n).size() as u8,
            _ => i.memory_size().size() as u8,
        }
    }

    fn flags(&self) -> Flags {
        Flags::known(self.regs.rflags & rflags::STATUS)
    }

    fn set_flags(&mut self, f: Flags) {
        self.regs.rflags = (self.regs.rflags & !rflags::STATUS) | f.bits();
    }

    fn execute(&mut self, i: &Instruction) -> Result<(), CannotEmulate> {
        let size = Self::size_of(i, 0);
        match i.mnemonic() {
            Mnemonic::Mov => {
                let v = self.operand(i, 1, size)?;
                self.set_operand(i, 0, size, v)
            }
            Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => {
                let from = Self::size_of(i, 1);
                let mut v = self.operand(i, 1, from)?;
                if i.mnemonic() != Mnemonic::Movzx {
                    v = sign_extend(v, from);
                }
                self.set_operand(i, 0, size, v)
            }
            m @ (Mnemonic::Add
            | Mnemonic::Or
            | Mnemonic::Adc
            | Mnemonic::Sbb
            | Mnemonic::And
            | Mnemonic::Sub
            | Mnemonic::Xor
            | Mnemonic::Cmp
            | Mnemonic::Test) => {
                let a = self.operand(i, 0, size)?;
                let b = self.operand(i, 1, size)?;
                let cf = self.flags().cf();
                let (r, f) = match m {
                    Mnemonic::Add => alu::add(size, a, b),
                    Mnemonic::Adc => alu::adc(size, a, b, cf),
                    Mnemonic::Sub | Mnemonic::Cmp => alu::sub(size, a, b),
                    Mnemonic::Sbb => alu::sbb(size, a, b, cf),
                    Mnemonic::And | Mnemonic::Test => (a & b, alu::logic(size, a & b)),
                    Mnemonic::Or => (a | b, alu::logic(size, a | b)),
                    _ => (a ^ b, alu::logic(size, a ^ b)),
                };
                if !matches!(m, Mnemonic::Cmp | Mnemonic::Test) {
                    self.set_operand(i, 0, size, r)?;
                }
                self.set_flags(f);
                Ok(())
            }
            m @ (Mnemonic::Inc | Mnemonic::Dec | Mnemonic::Neg | Mnemonic::Not) => {
                let a = self.operand(i, 0, size)?;
                let cf = self.flags().cf();
                let (r, f) = match m {
                    Mnemonic::Inc => alu::inc(size, a, cf),
                    Mnemonic::Dec => alu::dec(size, a, cf),
                    Mnemonic::Neg => alu::neg(size, a),
                    _ => (!a & mask(size), self.flags()),
                };
                self.set_operand(i, 0, size, r)?;
                self.set_flags(f);
                Ok(())
            }
            Mnemonic::Xchg => {
                let a = self.operand(i, 0, size)?;
                let b = self.operand(i, 1, size)?;
                self.set_operand(i, 0, size, b)?;
                self.set_operand(i, 1, size, a)
            }
            m @ (Mnemonic::Movsb
            | Mnemonic::Movsw
            | Mnemonic::Movsd
            | Mnemonic::Movsq
            | Mnemonic::Stosb
            | Mnemonic::Stosw
            | Mnemonic::Stosd
            | Mnemonic::Stosq) => self.string(i, m),
            m => {
                let mut text = String::new();
                IntelFormatter::new().format(i, &mut text);
                self.fail(format!("the VMM's emulator has no {m:?} ({text})"))
            }
        }
    }

    /// MOVS and STOS, with REP: every element in this one exit.
    fn string(&mut self, i: &Instruction, m: Mnemonic) -> Result<(), CannotEmulate> {
        let size = match m {
            Mnemonic::Movsb | Mnemonic::Stosb => 1,
            Mnemonic::Movsw | Mnemonic::Stosw => 2,
            Mnemonic::Movsd | Mnemonic::Stosd => 4,
            _ => 8,
        };
        let rep = i.has_rep_prefix();
        let step = if self.regs.rflags & rflags::DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
        let moving = matches!(m, Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq);
        let mut count = if rep { self.regs.gpr[Regs::RCX] } else { 1 };
        while count > 0 {
            let v = if moving {
                self.read_mem(self.regs.gpr[Regs::RSI], size)?
            } else {
                self.regs.gpr[Regs::RAX] & mask(size)
            };
            self.write_mem(self.regs.gpr[Regs::RDI], size, v)?;
            self.done.work.bytes_copied += u32::from(size);
            if moving {
                self.regs.gpr[Regs::RSI] = self.regs.gpr[Regs::RSI].wrapping_add(step);
            }
            self.regs.gpr[Regs::RDI] = self.regs.gpr[Regs::RDI].wrapping_add(step);
            count -= 1;
            if rep {
                self.regs.gpr[Regs::RCX] = count;
            }
        }
        Ok(())
    }
}

/// Emulates the instruction at RIP, whose access to MMIO exited, and moves
/// RIP past it. `Ok(Err(..))` is an instruction the VMM cannot emulate.
pub fn emulate_mmio<V: Vm, C: VmxVcpu + ?Sized>(
    vm: &V,
    vcpu: &mut C,
    bus: &mut Bus,
    ctx: &mut DeviceCtx<'_>,
) -> Result<Result<Emulated, CannotEmulate>, VmmError> {
    let regs = vcpu.regs()?;
    let cr3 = vcpu.read_cr(3)?;
    let nxe = vcpu.read_msr(msr::IA32_EFER)?.unwrap_or(0) & efer::NXE != 0;
    let mut e = Emulator { vm, vcpu, bus, ctx, regs, cr3, nxe, done: Emulated::default() };
    let result = (|| {
        // Fetch up to 15 bytes, across a page boundary if need be.
        let rip = e.regs.rip;
        let mut bytes = Vec::with_capacity(15);
        let mut at = rip;
        while bytes.len() < 15 {
            let gpa = e.translate(at)?;
            let room = (4096 - (at & 0xfff)).min(15 - bytes.len() as u64) as usize;
            let mut chunk = vec![0u8; room];
            if e.vm.read_memory(gpa, &mut chunk).is_err() {
                return e.fail(format!("instruction bytes at {at:#x} are not in RAM"));
            }
            bytes.extend_from_slice(&chunk);
            at += room as u64;
        }
        let i = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NONE).decode();
        if i.is_invalid() {
            return e.fail(format!("undecodable bytes at {rip:#x}"));
        }
        e.done.work.bytes_decoded += i.len() as u32;
        e.execute(&i)?;
        e.regs.rip = i.next_ip();
        Ok(())
    })();
    match result {
        Ok(()) => {
            e.vcpu.set_regs(&e.regs)?;
            Ok(Ok(e.done))
        }
        Err(err) => Ok(Err(err)),
    }
}

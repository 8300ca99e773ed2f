//! The VMM's instruction emulator for MMIO exits the CPU does not decode
//! (Intel VT-x never does): fetch the instruction at RIP through a software
//! walk of the guest's page tables, decode it with iced-x86, lower it to
//! exitlab-x86's `Op` and run it through exitlab-x86's executor, the one
//! the simulated CPU uses, with this module's `exitlab_x86::Cpu`: guest
//! registers, guest memory through the walk, the device bus and the local
//! APIC. Everything it does is counted as handler work for the cost model:
//! bytes decoded, page walks, device register operations, bytes copied.
//!
//! It emulates the forms whose memory operand or stack can be MMIO (see
//! `emulated`): the moves, ALU and bit read-modify-writes, multiply and
//! divide, the stack and near branches, the string instructions with REP
//! (up to [`REP_CHUNK`] elements per exit; RIP stays on the instruction
//! until RCX runs out, so a hostile count cannot hold the VMM), segment
//! loads through the guest-state area, INS and OUTS (their ports through
//! the port bus), and the SSE and MMX moves (MOVAPS,
//! MOVUPS, MOVDQA, MOVDQU, MOVD, MOVQ and their aliases), whose XMM and
//! MMX registers it reads from the vCPU's XSAVE area and writes back. An
//! exception the instruction raises goes back in [`Emulated::fault`] for
//! the VMM to inject. Anything else is a guest error naming the
//! instruction.

use crate::bus::{Bus, DeviceCtx, Hit};
use crate::error::VmmError;
use crate::walk::{walk, GuestPaging};
use exitlab_arch::bits::apic::DEFAULT_BASE as APIC_BASE;
use exitlab_arch::bits::{cr0, efer, rflags};
use exitlab_arch::Regs;
use exitlab_guest::layout;
use exitlab_hv::{HandlerWork, Vm, VmxVcpu};
use exitlab_x86::fp::xsave::{self as img, FpuState, SaveOp, XCR0_SUPPORTED};
use exitlab_x86::{
    lower, mask, DescriptorTableKind, Exception, Flags, Kind, Mode, Op, PortIo, Seg, Size, SystemSegment,
};
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};

#[cfg(feature = "test-support")]
pub mod harness;

/// Elements of a REP MOVS/STOS one exit emulates; the rest wait for the
/// instruction's next exit. KVM's emulator re-enters the guest every 1,024
/// iterations too (arch/x86/kvm/emulate.c, `x86_emulate_insn`).
pub const REP_CHUNK: u64 = 1024;

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
    /// The exception the instruction raised, for the VMM to deliver to
    /// the guest, as KVM's emulator injects the faults it finds (a #DE of
    /// a DIV whose divisor is MMIO, a #GP of a misaligned MOVAPS). RIP is
    /// still at the instruction; what it committed before the fault (a
    /// REP string's earlier elements) stays.
    pub fault: Option<Exception>,
    /// The instruction loaded SS (MOV SS, POP SS): events wait one more
    /// instruction (blocking by MOV SS).
    pub mov_ss: bool,
}

/// Why the VMM could not emulate the instruction (a guest error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannotEmulate(pub String);

/// Whether the emulator takes instructions of `kind`: the ones whose
/// memory operand (or stack) can be MMIO and whose semantics need only
/// registers, memory, CR0 and the x87/SSE state. kvm-unit-tests'
/// emulator test runs each of them against MMIO (x86/emulator.c,
/// emulator64.c).
fn emulated(kind: Kind) -> bool {
    use Kind::*;
    matches!(
        kind,
        Mov | Movzx
            | Movsx
            | Movbe
            | Add
            | Adc
            | Sub
            | Sbb
            | And
            | Or
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Neg
            | Not
            | Xchg
            | Xadd
            | Cmpxchg
            | Cmov
            | Setcc
            | Shl
            | Shr
            | Sar
            | Rol
            | Ror
            | Rcl
            | Rcr
            | Shld
            | Shrd
            | Imul2
            | Imul3
            | Mul
            | Imul1
            | Div
            | Idiv
            | Bt
            | Bts
            | Btr
            | Btc
            | Bsf
            | Bsr
            | Popcnt
            | Tzcnt
            | Lzcnt
            | Push
            | Pop
            | Leave
            | Enter
            | Call
            | Ret
            | Jmp
            | Smsw
            | Ltr
            | Lldt
            | MovToSeg
            | MovFromSeg
            | PushSeg
            | PopSeg
            | LoadFar
            | JmpFar
            | CallFar
            | RetFar
            | Movs
            | Stos
            | Lods
            | Cmps
            | Scas
            | Ins
            | Outs
    ) || matches!(kind, Sse(v) if v.is_plain_move())
}

/// What the segment registers (with CR0, EFER and RFLAGS.VM) make of the
/// guest's mode (SDM Vol. 3A 2.2).
#[derive(Clone, Copy)]
struct View {
    /// The segment bases an offset adds (in 64-bit mode FS's and GS's
    /// only) and whether linear addresses wrap at 4 GiB (outside 64-bit
    /// mode). The CPU checked the limits before the access exited.
    bases: [u64; 6],
    wrap32: bool,
    /// The decoder's mode: 16, 32 or 64.
    bits: u32,
    mode: Mode,
    /// CS.RPL, and the stack's address size (SS.B outside 64-bit mode).
    cpl: u8,
    stack_size: Size,
}

impl View {
    fn of(segs: &[exitlab_arch::Segment; 6], paging: &GuestPaging, rf: u64) -> View {
        let (cs, ss) = (segs[Seg::Cs as usize], segs[Seg::Ss as usize]);
        let lma = paging.efer & efer::LMA != 0;
        let long = lma && cs.l;
        let mode = match () {
            _ if long => Mode::Long,
            _ if lma => Mode::Compatibility,
            _ if paging.cr0 & cr0::PE == 0 => Mode::Real,
            _ if rf & rflags::VM != 0 => Mode::Virtual8086,
            _ => Mode::Protected,
        };
        let mut bases = segs.map(|s| s.base);
        if long {
            bases[..4].fill(0);
        }
        let (bits, stack_size) = match (long, cs.db, ss.db) {
            (true, _, _) => (64, 8),
            (false, d, b) => (if d { 32 } else { 16 }, if b { 4 } else { 2 }),
        };
        View { bases, wrap32: !long, bits, mode, cpl: (cs.selector & 3) as u8, stack_size }
    }
}

/// The guest as the executor sees it during one emulation.
struct Emulator<'a, 'c, V: Vm, C: VmxVcpu + ?Sized> {
    vm: &'a V,
    vcpu: &'a mut C,
    /// The MMIO bus, and the port bus INS and OUTS reach.
    bus: &'a mut Bus,
    ports: &'a mut Bus,
    ctx: &'a mut DeviceCtx<'c>,
    regs: Regs,
    flags: Flags,
    paging: GuestPaging,
    /// The segment registers, and what they make of the mode.
    segs: [exitlab_arch::Segment; 6],
    view: View,
    /// The instruction, for messages.
    instruction: Instruction,
    /// The vCPU's x87/MMX/SSE state, read on first use: (as read, as the
    /// instruction leaves it).
    fpu: Option<(FpuState, FpuState)>,
    /// The CPUID features of the backend's CPU model.
    features: exitlab_arch::cpuid::FeatureSet,
    done: Emulated,
}

impl<V: Vm, C: VmxVcpu + ?Sized> Emulator<'_, '_, V, C> {
    /// Guest-physical address of `lin`, walking the guest's tables.
    fn translate(&mut self, lin: u64) -> Result<u64, CannotEmulate> {
        self.done.work.page_walks += 1;
        match walk(self.vm, &self.paging, lin) {
            Ok(Some(w)) => Ok(w.gpa),
            _ => Err(CannotEmulate(format!("linear {lin:#x} is not mapped by the guest's page tables"))),
        }
    }

    /// The instruction in Intel syntax.
    fn text(&self) -> String {
        let mut text = String::new();
        IntelFormatter::new().format(&self.instruction, &mut text);
        text
    }

    /// A register offset if `gpa` is in the local-APIC page.
    fn apic(gpa: u64) -> Option<u16> {
        (gpa & !0xfff == APIC_BASE).then_some((gpa & 0xfff) as u16)
    }

    /// The linear address of `offset` in `seg`.
    fn linear(&mut self, seg: Seg, offset: u64) -> u64 {
        let lin = offset.wrapping_add(self.view.bases[seg as usize]);
        if self.view.wrap32 {
            lin & 0xffff_ffff
        } else {
            lin
        }
    }

    /// The guest-physical pieces of `size` bytes at `lin`: one, or two
    /// when the access crosses a page (both translated before either is
    /// touched).
    fn pieces(&mut self, lin: u64, size: Size) -> Result<[(u64, usize); 2], CannotEmulate> {
        let first = (4096 - (lin & 0xfff)).min(u64::from(size)) as usize;
        let gpa = self.translate(lin)?;
        let rest = usize::from(size) - first;
        let second = if rest > 0 { self.translate((lin | 0xfff).wrapping_add(1))? } else { 0 };
        Ok([(gpa, first), (second, rest)])
    }

    fn read_piece(&mut self, gpa: u64, n: usize) -> Result<u64, CannotEmulate> {
        let size = n as u8;
        let mut b = [0u8; 8];
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

    fn write_piece(&mut self, gpa: u64, n: usize, v: u64) -> Result<(), CannotEmulate> {
        let size = n as u8;
        let bytes = v.to_le_bytes();
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

    fn device(&self, gpa: u64) -> Option<Hit> {
        self.bus.find(gpa)
    }

    /// The device on `port` for INS/OUTS. A port with none reads all ones
    /// and drops writes, as at an IO_INSTRUCTION exit; the VMM's own
    /// protocol ports (debug exit, report, marker) end a run there, which
    /// an emulated string instruction cannot, so it is refused.
    fn port_device(&mut self, port: u16) -> Result<Option<Hit>, CannotEmulate> {
        self.done.work.device_ops += 1;
        let hit = self.ports.find(u64::from(port));
        if hit.is_none() && [layout::PORT_DEBUG_EXIT, layout::PORT_REPORT, layout::PORT_MARKER].contains(&port) {
            return Err(CannotEmulate(format!("{} reaches the VMM's protocol port {port:#x}", self.text())));
        }
        Ok(hit)
    }

    fn note_device(&mut self, gpa: u64, size: u8, is_write: bool, data: u64, slot: Option<usize>) {
        self.done.work.device_ops += 1;
        if self.done.device.is_none() {
            self.done.device = Some(DeviceAccess { gpa, size, is_write, data, slot });
        }
    }
}

impl<V: Vm, C: VmxVcpu + ?Sized> exitlab_x86::Cpu for Emulator<'_, '_, V, C> {
    type Stop = CannotEmulate;
    const REP_CHUNK: u64 = REP_CHUNK;

    /// The backend's CPU model, which the guest's CPUID reports
    /// (crates/vmm/src/cpuid.rs) and the CPU checked before the access
    /// exited.
    fn has(&self, feature: exitlab_x86::Feature) -> bool {
        self.features.has(feature)
    }

    fn vendor(&self) -> exitlab_x86::Vendor {
        self.features.vendor()
    }

    fn gpr(&self, n: u8) -> u64 {
        self.regs.gpr[usize::from(n & 15)]
    }

    fn set_gpr(&mut self, n: u8, v: u64) {
        self.regs.gpr[usize::from(n & 15)] = v;
    }

    fn rip(&self) -> u64 {
        self.regs.rip
    }

    fn set_rip(&mut self, v: u64) {
        self.regs.rip = v;
    }

    fn flags(&self) -> Flags {
        self.flags
    }

    fn set_flags(&mut self, f: Flags) {
        self.flags = f;
    }

    fn rflags_rest(&self) -> u64 {
        self.regs.rflags & !rflags::STATUS
    }

    fn set_rflags_rest(&mut self, v: u64) {
        self.regs.rflags = (self.regs.rflags & rflags::STATUS) | (v & !rflags::STATUS);
    }

    /// Guest memory is reached through the guest's own tables with no
    /// permission check (the CPU checked the access before it exited);
    /// the privilege level is for the executor's own checks (UMIP).
    fn cpl(&self) -> u8 {
        self.view.cpl
    }

    fn mode(&self) -> Mode {
        self.view.mode
    }

    fn stack_address_size(&self) -> Size {
        self.view.stack_size
    }

    fn read(&mut self, seg: Seg, offset: u64, size: Size) -> Result<u64, CannotEmulate> {
        let lin = self.linear(seg, offset);
        self.read_linear(lin, size, false)
    }

    fn write(&mut self, seg: Seg, offset: u64, size: Size, v: u64) -> Result<(), CannotEmulate> {
        let lin = self.linear(seg, offset);
        self.write_linear(lin, size, v, false)
    }

    /// Through the guest's tables like every access here: the CPU checked
    /// the privilege of the access that exited.
    fn read_linear(&mut self, lin: u64, size: Size, _user: bool) -> Result<u64, CannotEmulate> {
        let [(gpa, n), (gpa2, rest)] = self.pieces(lin, size)?;
        let mut v = self.read_piece(gpa, n)?;
        if rest > 0 {
            v |= self.read_piece(gpa2, rest)? << (8 * n);
        }
        Ok(v)
    }

    fn write_linear(&mut self, lin: u64, size: Size, v: u64, _user: bool) -> Result<(), CannotEmulate> {
        let [(gpa, n), (gpa2, rest)] = self.pieces(lin, size)?;
        self.write_piece(gpa, n, v)?;
        if rest > 0 {
            self.write_piece(gpa2, rest, v >> (8 * n))?;
        }
        Ok(())
    }

    fn segment(&mut self, s: Seg) -> Result<exitlab_arch::Segment, CannotEmulate> {
        Ok(self.segs[s as usize])
    }

    /// Straight into the guest-state area (the executor has checked the
    /// descriptor); a CS or SS load changes the mode the rest of the
    /// instruction sees.
    fn set_segment(&mut self, s: Seg, v: exitlab_arch::Segment) -> Result<(), CannotEmulate> {
        self.vcpu.set_segment(s as u8, v).map_err(|e| CannotEmulate(e.to_string()))?;
        self.segs[s as usize] = v;
        self.view = View::of(&self.segs, &self.paging, self.regs.rflags);
        Ok(())
    }

    fn system_segment(&mut self, s: SystemSegment) -> Result<exitlab_arch::Segment, CannotEmulate> {
        self.vcpu.system_segment(s == SystemSegment::Tr).map_err(|e| CannotEmulate(e.to_string()))
    }

    fn set_system_segment(&mut self, s: SystemSegment, v: exitlab_arch::Segment) -> Result<(), CannotEmulate> {
        self.vcpu.set_system_segment(s == SystemSegment::Tr, v).map_err(|e| CannotEmulate(e.to_string()))
    }

    fn descriptor_table(&mut self, which: DescriptorTableKind) -> Result<exitlab_arch::DescriptorTable, CannotEmulate> {
        self.vcpu.descriptor_table(which == DescriptorTableKind::Idt).map_err(|e| CannotEmulate(e.to_string()))
    }

    /// The exception is the guest's: `emulate_mmio` returns it in
    /// [`Emulated::fault`] for the VMM to inject.
    fn exception(&mut self, e: Exception) -> CannotEmulate {
        self.done.fault = Some(e);
        let name = exitlab_arch::vector::mnemonic(e.vector).unwrap_or("an exception");
        CannotEmulate(format!("{} raises {name}", self.text()))
    }

    fn unsupported(&mut self) -> CannotEmulate {
        CannotEmulate(format!("the VMM's emulator cannot execute {}", self.text()))
    }

    fn cr(&mut self, n: u8) -> Result<u64, CannotEmulate> {
        self.vcpu.read_cr(n).map_err(|e| CannotEmulate(e.to_string()))
    }

    /// SMSW's CR0 (the only CR read the emulator takes; MOV from CR
    /// never touches memory).
    fn mov_from_cr(&mut self, _op: &Op, n: u8) -> Result<u64, CannotEmulate> {
        if n != 0 {
            return Err(self.unsupported());
        }
        self.cr(0)
    }

    fn fpu(&mut self) -> Result<&mut FpuState, CannotEmulate> {
        if self.fpu.is_none() {
            let area = self.vcpu.xsave_area().map_err(|e| CannotEmulate(e.to_string()))?;
            let mut s = FpuState::default();
            img::xrstor(&mut s, true, XCR0_SUPPORTED, 0, u64::MAX, false, &area)
                .map_err(|e| CannotEmulate(format!("the vCPU's XSAVE area is refused: {e:?}")))?;
            self.fpu = Some((s, s));
        }
        match self.fpu.as_mut() {
            Some((_, now)) => Ok(now),
            None => Err(CannotEmulate("no x87/SSE state".into())),
        }
    }

    /// INS's element from the port bus (the CPU's exit for the port came
    /// first; this reads the port once more, as the instruction runs again
    /// here whole).
    fn port_in(&mut self, _op: &Op, io: PortIo) -> Result<u64, CannotEmulate> {
        let n = usize::from(io.size).clamp(1, 4);
        let mut b = [0xffu8; 8];
        if let Some(hit) = self.port_device(io.port)? {
            self.ports.read(hit, &mut b[..n], self.ctx);
        }
        Ok(u64::from_le_bytes(b) & mask(io.size))
    }

    /// OUTS's element to the port bus.
    fn port_out(&mut self, _op: &Op, io: PortIo, v: u64) -> Result<(), CannotEmulate> {
        let n = usize::from(io.size).clamp(1, 4);
        if let Some(hit) = self.port_device(io.port)? {
            self.ports.write(hit, &v.to_le_bytes()[..n], self.ctx);
        }
        Ok(())
    }

    /// MOV SS or POP SS completed: the VMM sets blocking by MOV SS.
    fn ss_load_shadow(&mut self) {
        self.done.mov_ss = true;
    }

    /// Each element a string instruction moves is copied bytes.
    fn string_element(&mut self, op: &Op) {
        self.done.work.bytes_copied += u32::from(op.size);
    }
}

/// Fetches up to 15 instruction bytes at RIP, across a page boundary if
/// need be, and decodes them.
fn fetch<V: Vm, C: VmxVcpu + ?Sized>(e: &mut Emulator<'_, '_, V, C>) -> Result<Instruction, CannotEmulate> {
    let rip = e.regs.rip;
    let mut bytes = Vec::with_capacity(15);
    let mut at = e.linear(Seg::Cs, rip);
    while bytes.len() < 15 {
        let gpa = e.translate(at)?;
        let room = (4096 - (at & 0xfff)).min(15 - bytes.len() as u64) as usize;
        let mut chunk = vec![0u8; room];
        if e.vm.read_memory(gpa, &mut chunk).is_err() {
            return Err(CannotEmulate(format!("instruction bytes at {at:#x} are not in RAM")));
        }
        bytes.extend_from_slice(&chunk);
        at = at.wrapping_add(room as u64);
    }
    let i = Decoder::with_ip(e.view.bits, &bytes, rip, DecoderOptions::NONE).decode();
    if i.is_invalid() {
        return Err(CannotEmulate(format!("undecodable bytes at {rip:#x}")));
    }
    e.done.work.bytes_decoded += i.len() as u32;
    Ok(i)
}

/// Emulates the instruction at RIP, whose access to MMIO exited, and moves
/// RIP past it (a REP instruction with elements left keeps RIP). `Ok(Err(..))`
/// is an instruction the VMM cannot emulate.
pub fn emulate_mmio<V: Vm, C: VmxVcpu + ?Sized>(
    vm: &V,
    vcpu: &mut C,
    ports: &mut Bus,
    bus: &mut Bus,
    ctx: &mut DeviceCtx<'_>,
) -> Result<Result<Emulated, CannotEmulate>, VmmError> {
    let regs = vcpu.regs()?;
    let paging = GuestPaging::of(vcpu)?;
    let mut segs = [exitlab_arch::Segment::default(); 6];
    for (n, s) in segs.iter_mut().enumerate() {
        *s = vcpu.segment(n as u8)?;
    }
    let view = View::of(&segs, &paging, regs.rflags);
    let flags = Flags::known(regs.rflags & rflags::STATUS);
    let instruction = Instruction::default();
    let mut e = Emulator {
        vm,
        vcpu,
        bus,
        ports,
        ctx,
        regs,
        flags,
        paging,
        segs,
        view,
        instruction,
        fpu: None,
        features: vm.capabilities().cpu_features,
        done: Emulated::default(),
    };
    let result = (|| {
        e.instruction = fetch(&mut e)?;
        let op = lower(&e.instruction);
        if !emulated(op.kind) {
            return Err(CannotEmulate(format!(
                "the VMM's emulator has no {:?} ({})",
                e.instruction.mnemonic(),
                e.text()
            )));
        }
        exitlab_x86::execute(&mut e, &op)
    })();
    match result {
        Err(_) if e.done.fault.is_some() => {
            // Registers as the fault left them (RIP at the instruction);
            // the x87/SSE state is written only after the last access.
            e.regs.rflags = (e.regs.rflags & !rflags::STATUS) | e.flags.bits();
            e.vcpu.set_regs(&e.regs)?;
            Ok(Ok(e.done))
        }
        Ok(()) => {
            e.regs.rflags = (e.regs.rflags & !rflags::STATUS) | e.flags.bits();
            e.vcpu.set_regs(&e.regs)?;
            if let Some((_, now)) = e.fpu.filter(|(read, now)| read != now) {
                let mut area = [0u8; exitlab_hv::XSAVE_AREA];
                img::xsave(&now, SaveOp::Xsave, true, XCR0_SUPPORTED, u64::MAX, &mut area);
                e.vcpu.set_xsave_area(&area)?;
            }
            Ok(Ok(e.done))
        }
        Err(err) => Ok(Err(err)),
    }
}

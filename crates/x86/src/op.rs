//! The decoded form of an instruction: iced-x86 decodes, [`lower`] turns
//! the result into an [`Op`] (what to do, operand size, operands as register
//! numbers, immediates and address recipes with their segment register and
//! address size), and [`crate::execute`] runs it against a [`crate::Cpu`].
//! The simulator caches ops in decoded blocks, so a loop is decoded once;
//! the VMM's emulator lowers the one instruction an exit stopped at.
//! Lowering does not price: the simulator's cost model prices ops where it
//! builds blocks.

use crate::cpu::Feature;
use crate::sse::SseOp;
use crate::x87::X87Op;
use crate::xsave::StateOp;
use iced_x86::{Code, CodeSize, ConditionCode, Instruction, Mnemonic, OpKind, Register};

/// What an op does. Names follow the SDM mnemonics; where one name covers
/// several encodings (IMUL), the suffix says which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mov,
    Movzx,
    Movsx,
    Lea,
    Xchg,
    Cmov,
    Setcc,
    Bswap,
    Add,
    Adc,
    Sub,
    Sbb,
    And,
    Or,
    Xor,
    Cmp,
    Test,
    Inc,
    Dec,
    Neg,
    Not,
    Shl,
    Shr,
    Sar,
    Rol,
    Ror,
    Rcl,
    Rcr,
    Shld,
    Shrd,
    Mul,
    Imul1,
    Imul2,
    Imul3,
    Div,
    Idiv,
    Bt,
    Bts,
    Btr,
    Btc,
    Bsf,
    Bsr,
    Popcnt,
    Tzcnt,
    Lzcnt,
    Xadd,
    Cmpxchg,
    /// CBW / CWDE / CDQE by operand size.
    Cbw,
    /// CWD / CDQ / CQO by operand size.
    Cwd,
    Push,
    Pop,
    Pushf,
    Popf,
    Leave,
    Call,
    Ret,
    Jmp,
    Jcc,
    Jrcxz,
    Loop,
    Loope,
    Loopne,
    Nop,
    Hlt,
    Cli,
    Sti,
    Cld,
    Std,
    Clc,
    Stc,
    Cmc,
    Lahf,
    Sahf,
    Int3,
    Int,
    /// INTO: #OF when OF is set (legacy modes only).
    Into,
    /// ICEBP (INT1, opcode F1): a trap-like #DB.
    Int1,
    Ud,
    /// IRET, IRETD, IRETQ by operand size.
    Iret,
    In,
    Out,
    Ins,
    Outs,
    Movs,
    Stos,
    Lods,
    Cmps,
    Scas,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Rdtsc,
    Rdtscp,
    MovToCr,
    MovFromCr,
    MovToDr,
    MovFromDr,
    Lidt,
    Lgdt,
    Sidt,
    Sgdt,
    Invlpg,
    Swapgs,
    Clts,
    /// VMCALL: a call to the hypervisor (always a VM exit in VMX non-root
    /// operation).
    Vmcall,
    /// WBINVD, INVD: no caches to flush in the model.
    CacheFlush,
    /// RTM (TSX): see `rtm`.
    Xbegin,
    Xend,
    Xabort,
    Xtest,
    /// MOV Sreg, r/m16 (`cc` = the segment register).
    MovToSeg,
    /// MOV r/m, Sreg (`cc` = the segment register).
    MovFromSeg,
    /// PUSH and POP of a segment register (`cc`), by operand size.
    PushSeg,
    PopSeg,
    /// LDS, LES, LFS, LGS, LSS (`cc` = the segment register): `a` = the
    /// offset's register, `b` = the far pointer in memory.
    LoadFar,
    /// Far JMP and CALL: `a` = offset and `b` = selector immediates, or
    /// `a` = the far pointer in memory; `size` = the offset's size.
    JmpFar,
    CallFar,
    /// Far RET (`a` = bytes to release).
    RetFar,
    Lar,
    Lsl,
    Verr,
    Verw,
    Arpl,
    Ltr,
    Lldt,
    Str,
    Sldt,
    Smsw,
    Lmsw,
    Syscall,
    /// SYSRET (`size` 4: to compatibility mode; 8: to 64-bit mode).
    Sysret,
    Sysenter,
    /// SYSEXIT (`size` 4 or 8, as SYSRET).
    Sysexit,
    /// RDFSBASE, RDGSBASE (`cc` = FS or GS).
    RdSegBase,
    /// WRFSBASE, WRGSBASE (`cc` = FS or GS).
    WrSegBase,
    /// CMPXCHG8B (`size` 8) and CMPXCHG16B (`size` 16).
    Cmpxchg8b,
    Xlat,
    /// ENTER: `a` = bytes of locals, `b` = nesting level.
    Enter,
    Pusha,
    Popa,
    Aaa,
    Aas,
    Daa,
    Das,
    /// AAD, AAM: `a` = the base (10 for the plain forms).
    Aad,
    Aam,
    Salc,
    Bound,
    Movbe,
    /// CLFLUSH, CLFLUSHOPT.
    Clflush,
    /// CRC32 (SSE4.2, on general registers).
    Crc32,
    /// An MMX or SSE-SSE4.2 instruction (crate::sse).
    Sse(SseOp),
    /// An x87 instruction (crate::x87).
    X87(X87Op),
    /// FXSAVE/FXRSTOR, the XSAVE family, XGETBV, XSETBV (crate::xsave).
    FpState(StateOp),
    /// RDPID: IA32_TSC_AUX into a register.
    Rdpid,
    /// INVPCID: invalidate TLB entries by PCID.
    Invpcid,
    /// An instruction of an extension the CPU model does not advertise
    /// (AVX and later, VMX but VMCALL, SVM, ...; x87, MMX, SSE-SSE4.2 and
    /// XSAVE where a model lacks them): #UD, or for x87 (`cc` =
    /// [`ABSENT_X87`]) #NM when CR0.EM or CR0.TS is set, so an OS can
    /// emulate it (SDM Vol. 3A 2.5, CR0.EM).
    Absent,
    /// Decoded by iced but not modelled: the run stops with a report.
    Unsupported,
}

/// `Op::cc` of an [`Kind::Absent`] x87 instruction.
pub const ABSENT_X87: u8 = 1;

/// A segment register, numbered as the SDM encodes them (Vol. 2A 3.1.1.3,
/// "Sreg").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl Seg {
    /// The six segment registers in encoding order.
    pub const ALL: [Seg; 6] = [Seg::Es, Seg::Cs, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs];

    /// The register an Sreg encoding (or `Op::cc`) names.
    pub fn from_number(n: u8) -> Seg {
        Seg::ALL[usize::from(n % 6)]
    }
}

/// A memory operand's address recipe: the offset is base + index * scale +
/// displacement truncated to the address size (what LEA computes); the
/// [`crate::Cpu`] turns segment and offset into a linear address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// Register number of the base, or [`Mem::NONE`].
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    /// The segment the access goes through: the prefix's, else DS (SS for
    /// an RSP or RBP base), as the SDM's default-segment rules say (Vol. 1
    /// 3.7.4).
    pub seg: Seg,
    /// Address size in bytes: 2, 4 or 8 (the mode's default, or the
    /// other one with the 0x67 prefix); the offset wraps at it.
    pub asize: u8,
    /// Displacement; for RIP-relative operands the absolute address.
    pub disp: u64,
}

impl Mem {
    pub const NONE: u8 = 0xff;

    /// base + index * scale + displacement, truncated to the address
    /// size, with general register `n` read as `gpr(n)`.
    #[inline(always)]
    pub fn offset(&self, gpr: impl Fn(u8) -> u64) -> u64 {
        let mut a = self.disp;
        if self.base != Mem::NONE {
            a = a.wrapping_add(gpr(self.base));
        }
        if self.index != Mem::NONE {
            a = a.wrapping_add(gpr(self.index).wrapping_mul(u64::from(self.scale)));
        }
        if self.asize != 8 {
            a &= crate::mask(self.asize);
        }
        a
    }
}

/// An operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opnd {
    None,
    /// General register by encoding number (low 8/16/32/64 bits by size).
    Reg(u8),
    /// AH, CH, DH, BH: bits 15:8 of register 0..3.
    RegHi(u8),
    Imm(u64),
    Mem(Mem),
    /// XMM register (0-15).
    Xmm(u8),
    /// MMX register (MM0-MM7: physical x87 register R0-R7).
    Mm(u8),
    /// x87 stack register ST(i).
    St(u8),
}

/// REP prefix of a string op.
pub const REP_NONE: u8 = 0;
pub const REP_E: u8 = 1;
pub const REP_NE: u8 = 2;

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: Kind,
    /// Operand size in bytes (the destination's for moves and extensions).
    pub size: u8,
    /// Size of the second operand (MOVZX/MOVSX source); for LOOPcc and
    /// JrCXZ, the address size, which picks CX, ECX or RCX.
    pub size2: u8,
    pub len: u8,
    /// Condition code (Jcc, SETcc, CMOVcc), REP kind (string ops), control
    /// or debug register number (MOV CR/DR), segment register (MOV Sreg,
    /// PUSH/POP Sreg, LDS and friends, RDFSBASE and friends).
    pub cc: u8,
    /// Operands in the SDM's order (destination first). String
    /// instructions carry their implicit operands: `a` = ES:[rDI], `b` =
    /// seg:[rSI].
    pub a: Opnd,
    pub b: Opnd,
    pub c: Opnd,
}

impl Op {
    /// Whether the block must end after this op: control transfers and
    /// anything that may exit, change modes or interrupt state, or fault by
    /// design.
    pub fn ends_block(&self) -> bool {
        use Kind::*;
        matches!(
            self.kind,
            Call | Ret
                | Jmp
                | Jcc
                | Jrcxz
                | Loop
                | Loope
                | Loopne
                | Hlt
                | Cli
                | Sti
                | Popf
                | Int3
                | Int
                | Into
                | Int1
                | Ud
                | Iret
                | JmpFar
                | CallFar
                | RetFar
                | MovToSeg
                | PopSeg
                | LoadFar
                | Ltr
                | Lldt
                | Lmsw
                | Syscall
                | Sysret
                | Sysenter
                | Sysexit
                | Bound
                | In
                | Out
                | Ins
                | Outs
                | Cpuid
                | Rdmsr
                | Wrmsr
                | MovToCr
                | MovToDr
                | Lidt
                | Lgdt
                | Invlpg
                | Swapgs
                | Clts
                | Vmcall
                | Xabort
                | Invpcid
                | Absent
                | Unsupported
        ) || (self.cc != REP_NONE && matches!(self.kind, Movs | Stos | Lods | Cmps | Scas))
    }
}

pub(crate) fn gpr(r: Register) -> Option<Opnd> {
    if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
        return Some(Opnd::RegHi((r as u32 - Register::AH as u32) as u8));
    }
    let full = r.full_register();
    if full.is_gpr64() {
        Some(Opnd::Reg((full as u32 - Register::RAX as u32) as u8))
    } else {
        None
    }
}

fn reg_num(r: Register) -> u8 {
    if r == Register::None {
        return Mem::NONE;
    }
    let full = r.full_register();
    (full as u32 - Register::RAX as u32) as u8
}

pub(crate) fn mem(i: &Instruction) -> Option<Opnd> {
    let base = i.memory_base();
    let index = i.memory_index();
    let ok =
        |r: Register| r == Register::None || r.full_register().is_gpr64() || r == Register::RIP || r == Register::EIP;
    if !ok(base) || !ok(index) {
        return None;
    }
    let rip_rel = i.is_ip_rel_memory_operand();
    Some(Opnd::Mem(Mem {
        base: if rip_rel { Mem::NONE } else { reg_num(base) },
        index: reg_num(index),
        scale: i.memory_index_scale() as u8,
        seg: seg(i.memory_segment()),
        asize: address_size(i, base, index),
        disp: if rip_rel { i.ip_rel_memory_address() } else { i.memory_displacement64() },
    }))
}

/// The address size of a memory operand: the width of its base or index
/// register (EIP for RIP-relative with 0x67); with neither, the mode's
/// default (the displacement is then the whole offset, already of the
/// right width).
fn address_size(i: &Instruction, base: Register, index: Register) -> u8 {
    let named = if base != Register::None { base } else { index };
    match named {
        Register::None => code_bytes(i),
        Register::EIP => 4,
        Register::RIP => 8,
        r => r.size() as u8,
    }
}

/// The default operand and address size of the code `i` was decoded as:
/// 2, 4 or 8 bytes (CS.D and CS.L, SDM Vol. 1 3.6).
fn code_bytes(i: &Instruction) -> u8 {
    match i.code_size() {
        CodeSize::Code16 => 2,
        CodeSize::Code32 => 4,
        _ => 8,
    }
}

pub(crate) fn seg(r: Register) -> Seg {
    match r {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => Seg::Ds,
    }
}

/// The implicit memory operand of a string instruction: ES:[rDI] or
/// seg:[rSI], with the address size its register names.
fn string_operand(i: &Instruction, k: OpKind) -> Option<Opnd> {
    let (base, asize, seg) = match k {
        OpKind::MemoryESRDI => (7, 8, Seg::Es),
        OpKind::MemoryESEDI => (7, 4, Seg::Es),
        OpKind::MemoryESDI => (7, 2, Seg::Es),
        OpKind::MemorySegRSI => (6, 8, self::seg(i.memory_segment())),
        OpKind::MemorySegESI => (6, 4, self::seg(i.memory_segment())),
        OpKind::MemorySegSI => (6, 2, self::seg(i.memory_segment())),
        _ => return None,
    };
    Some(Opnd::Mem(Mem { base, index: Mem::NONE, scale: 1, seg, asize, disp: 0 }))
}

fn operand(i: &Instruction, n: u32) -> Option<Opnd> {
    match i.op_kind(n) {
        OpKind::Register => gpr(i.op_register(n)),
        OpKind::Memory => mem(i),
        OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16 => Some(Opnd::Imm(i.near_branch_target())),
        OpKind::FarBranch16 | OpKind::FarBranch32 => Some(Opnd::Imm(u64::from(i.far_branch32()))),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64
        | OpKind::Immediate8_2nd => Some(Opnd::Imm(i.immediate(n))),
        k => string_operand(i, k),
    }
}

fn cond(i: &Instruction) -> u8 {
    match i.condition_code() {
        ConditionCode::o => 0,
        ConditionCode::no => 1,
        ConditionCode::b => 2,
        ConditionCode::ae => 3,
        ConditionCode::e => 4,
        ConditionCode::ne => 5,
        ConditionCode::be => 6,
        ConditionCode::a => 7,
        ConditionCode::s => 8,
        ConditionCode::ns => 9,
        ConditionCode::p => 10,
        ConditionCode::np => 11,
        ConditionCode::l => 12,
        ConditionCode::ge => 13,
        ConditionCode::le => 14,
        _ => 15,
    }
}

/// Size in bytes of operand `n` (register or memory).
pub(crate) fn op_size(i: &Instruction, n: u32) -> u8 {
    match i.op_kind(n) {
        OpKind::Register => i.op_register(n).size() as u8,
        OpKind::Memory => i.memory_size().size() as u8,
        _ => 0,
    }
}

/// The REP kind of a string instruction.
fn rep(i: &Instruction) -> u8 {
    if i.has_rep_prefix() || i.has_repe_prefix() {
        REP_E
    } else if i.has_repne_prefix() {
        REP_NE
    } else {
        REP_NONE
    }
}

/// Element size of a string instruction, from its mnemonic's suffix.
fn string_size(i: &Instruction) -> u8 {
    match i.mnemonic() {
        Mnemonic::Movsb
        | Mnemonic::Stosb
        | Mnemonic::Lodsb
        | Mnemonic::Cmpsb
        | Mnemonic::Scasb
        | Mnemonic::Insb
        | Mnemonic::Outsb => 1,
        Mnemonic::Movsw
        | Mnemonic::Stosw
        | Mnemonic::Lodsw
        | Mnemonic::Cmpsw
        | Mnemonic::Scasw
        | Mnemonic::Insw
        | Mnemonic::Outsw => 2,
        Mnemonic::Movsd
        | Mnemonic::Stosd
        | Mnemonic::Lodsd
        | Mnemonic::Cmpsd
        | Mnemonic::Scasd
        | Mnemonic::Insd
        | Mnemonic::Outsd => 4,
        _ => 8,
    }
}

/// Lowers one decoded instruction. Bytes that do not decode are #UD;
/// anything decoded but not modelled is [`Kind::Unsupported`].
pub fn lower(i: &Instruction) -> Op {
    let mut op = Op {
        kind: Kind::Unsupported,
        size: 0,
        size2: 0,
        len: i.len() as u8,
        cc: 0,
        a: Opnd::None,
        b: Opnd::None,
        c: Opnd::None,
    };
    if i.code() == Code::INVALID {
        return Op { kind: Kind::Ud, ..op };
    }
    if let Some(fp) = crate::lower_fp::lower(i, op) {
        return fp;
    }
    let Some(kind) = kind(i) else {
        return match needs(i) {
            Needs::Nothing | Needs::Feature(_) => op,
            Needs::Unmodelled { x87 } => Op { kind: Kind::Absent, cc: if x87 { ABSENT_X87 } else { 0 }, ..op },
        };
    };
    let n = i.op_count();
    let mut ops = [Opnd::None; 3];
    for k in 0..n.min(3) {
        // Segment registers, control registers and the like stay None:
        // only kinds that read them themselves accept that.
        ops[k as usize] = operand(i, k).unwrap_or(Opnd::None);
    }
    let size = if n > 0 { op_size(i, 0) } else { 0 };
    let size2 = if n > 1 { op_size(i, 1) } else { 0 };
    let lowered = Op { kind, size, size2, a: ops[0], b: ops[1], c: ops[2], ..op };
    if let Some(shaped) = shape(i, lowered) {
        op = shaped;
    }
    op
}

/// The kind of `i`: a dispatch on the mnemonic; `None` when not modelled.
fn kind(i: &Instruction) -> Option<Kind> {
    use Kind::*;
    Some(match i.mnemonic() {
        Mnemonic::Mov => return mov_kind(i),
        Mnemonic::Movzx => Movzx,
        Mnemonic::Movsx | Mnemonic::Movsxd => Movsx,
        Mnemonic::Lea => Lea,
        Mnemonic::Xchg => Xchg,
        Mnemonic::Bswap => Bswap,
        Mnemonic::Add => Add,
        Mnemonic::Adc => Adc,
        Mnemonic::Sub => Sub,
        Mnemonic::Sbb => Sbb,
        Mnemonic::And => And,
        Mnemonic::Or => Or,
        Mnemonic::Xor => Xor,
        Mnemonic::Cmp => Cmp,
        Mnemonic::Test => Test,
        Mnemonic::Inc => Inc,
        Mnemonic::Dec => Dec,
        Mnemonic::Neg => Neg,
        Mnemonic::Not => Not,
        Mnemonic::Shl | Mnemonic::Sal => Shl,
        Mnemonic::Shr => Shr,
        Mnemonic::Sar => Sar,
        Mnemonic::Rol => Rol,
        Mnemonic::Ror => Ror,
        Mnemonic::Rcl => Rcl,
        Mnemonic::Rcr => Rcr,
        Mnemonic::Shld => Shld,
        Mnemonic::Shrd => Shrd,
        Mnemonic::Mul => Mul,
        Mnemonic::Imul => [Imul1, Imul2, Imul3][(i.op_count().clamp(1, 3) - 1) as usize],
        Mnemonic::Div => Div,
        Mnemonic::Idiv => Idiv,
        Mnemonic::Bt => Bt,
        Mnemonic::Bts => Bts,
        Mnemonic::Btr => Btr,
        Mnemonic::Btc => Btc,
        Mnemonic::Bsf => Bsf,
        Mnemonic::Bsr => Bsr,
        Mnemonic::Popcnt => Popcnt,
        Mnemonic::Tzcnt => Tzcnt,
        Mnemonic::Lzcnt => Lzcnt,
        Mnemonic::Xadd => Xadd,
        Mnemonic::Cmpxchg => Cmpxchg,
        Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => Cbw,
        Mnemonic::Cwd | Mnemonic::Cdq | Mnemonic::Cqo => Cwd,
        Mnemonic::Push if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() => PushSeg,
        Mnemonic::Pop if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() => PopSeg,
        Mnemonic::Push => Push,
        Mnemonic::Pop => Pop,
        Mnemonic::Lds | Mnemonic::Les | Mnemonic::Lfs | Mnemonic::Lgs | Mnemonic::Lss => LoadFar,
        Mnemonic::Lar => Lar,
        Mnemonic::Lsl => Lsl,
        Mnemonic::Verr => Verr,
        Mnemonic::Verw => Verw,
        Mnemonic::Arpl => Arpl,
        Mnemonic::Ltr => Ltr,
        Mnemonic::Lldt => Lldt,
        Mnemonic::Str => Str,
        Mnemonic::Sldt => Sldt,
        Mnemonic::Smsw => Smsw,
        Mnemonic::Lmsw => Lmsw,
        Mnemonic::Syscall => Syscall,
        Mnemonic::Sysret | Mnemonic::Sysretq => Sysret,
        Mnemonic::Sysenter => Sysenter,
        Mnemonic::Sysexit | Mnemonic::Sysexitq => Sysexit,
        Mnemonic::Rdfsbase | Mnemonic::Rdgsbase => RdSegBase,
        Mnemonic::Wrfsbase | Mnemonic::Wrgsbase => WrSegBase,
        Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b => Cmpxchg8b,
        Mnemonic::Xlatb => Xlat,
        Mnemonic::Enter => Enter,
        Mnemonic::Aaa => Aaa,
        Mnemonic::Aas => Aas,
        Mnemonic::Daa => Daa,
        Mnemonic::Das => Das,
        Mnemonic::Aad => Aad,
        Mnemonic::Aam => Aam,
        Mnemonic::Salc => Salc,
        Mnemonic::Bound => Bound,
        Mnemonic::Movbe => Movbe,
        Mnemonic::Clflush | Mnemonic::Clflushopt => Clflush,
        Mnemonic::Pushfq | Mnemonic::Pushfd | Mnemonic::Pushf => Pushf,
        Mnemonic::Popfq | Mnemonic::Popfd | Mnemonic::Popf => Popf,
        Mnemonic::Pusha | Mnemonic::Pushad => Pusha,
        Mnemonic::Popa | Mnemonic::Popad => Popa,
        Mnemonic::Leave => Leave,
        Mnemonic::Call if i.is_call_far() || i.is_call_far_indirect() => CallFar,
        Mnemonic::Call => Call,
        Mnemonic::Ret => Ret,
        Mnemonic::Retf => RetFar,
        Mnemonic::Jmp if i.is_jmp_far() || i.is_jmp_far_indirect() => JmpFar,
        Mnemonic::Jmp => Jmp,
        Mnemonic::Jrcxz | Mnemonic::Jecxz | Mnemonic::Jcxz => Jrcxz,
        Mnemonic::Loop => Loop,
        Mnemonic::Loope => Loope,
        Mnemonic::Loopne => Loopne,
        Mnemonic::Movnti => Mov,
        Mnemonic::Crc32 => Crc32,
        Mnemonic::Nop
        | Mnemonic::Prefetch
        | Mnemonic::Prefetchnta
        | Mnemonic::Prefetcht0
        | Mnemonic::Prefetcht1
        | Mnemonic::Prefetcht2
        | Mnemonic::Prefetchw
        | Mnemonic::Pause
        | Mnemonic::Lfence
        | Mnemonic::Sfence
        | Mnemonic::Mfence
        | Mnemonic::Endbr64
        | Mnemonic::Endbr32
        | Mnemonic::Reservednop => Nop,
        Mnemonic::Hlt => Hlt,
        Mnemonic::Cli => Cli,
        Mnemonic::Sti => Sti,
        Mnemonic::Cld => Cld,
        Mnemonic::Std => Std,
        Mnemonic::Clc => Clc,
        Mnemonic::Stc => Stc,
        Mnemonic::Cmc => Cmc,
        Mnemonic::Lahf => Lahf,
        Mnemonic::Sahf => Sahf,
        Mnemonic::Int3 => Int3,
        Mnemonic::Int => Int,
        Mnemonic::Into => Into,
        Mnemonic::Int1 => Int1,
        Mnemonic::Ud2 | Mnemonic::Ud0 | Mnemonic::Ud1 => Ud,
        Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq => Iret,
        Mnemonic::In => In,
        Mnemonic::Out => Out,
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => Ins,
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => Outs,
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq if !is_sse_movsd(i) => Movs,
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => Stos,
        Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => Lods,
        Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq if !is_sse_cmpsd(i) => Cmps,
        Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => Scas,
        Mnemonic::Cpuid => Cpuid,
        Mnemonic::Xbegin => Xbegin,
        Mnemonic::Xend => Xend,
        Mnemonic::Xabort => Xabort,
        Mnemonic::Xtest => Xtest,
        Mnemonic::Rdmsr => Rdmsr,
        Mnemonic::Wrmsr => Wrmsr,
        Mnemonic::Rdtsc => Rdtsc,
        Mnemonic::Rdtscp => Rdtscp,
        Mnemonic::Lidt => Lidt,
        Mnemonic::Lgdt => Lgdt,
        Mnemonic::Sidt => Sidt,
        Mnemonic::Sgdt => Sgdt,
        Mnemonic::Invlpg => Invlpg,
        Mnemonic::Swapgs => Swapgs,
        Mnemonic::Clts => Clts,
        Mnemonic::Vmcall => Vmcall,
        Mnemonic::Rdpid => Rdpid,
        Mnemonic::Invpcid => Invpcid,
        Mnemonic::Wbinvd | Mnemonic::Invd => CacheFlush,
        _ if i.condition_code() != ConditionCode::None => return conditional(i),
        _ => return None,
    })
}

/// MOV, MOV to/from a control register, MOV to/from a debug register.
fn mov_kind(i: &Instruction) -> Option<Kind> {
    Some(match i.code() {
        Code::Mov_r64_cr | Code::Mov_r32_cr => Kind::MovFromCr,
        Code::Mov_cr_r64 | Code::Mov_cr_r32 => Kind::MovToCr,
        Code::Mov_r64_dr | Code::Mov_r32_dr => Kind::MovFromDr,
        Code::Mov_dr_r64 | Code::Mov_dr_r32 => Kind::MovToDr,
        Code::Mov_Sreg_rm16 | Code::Mov_Sreg_r32m16 | Code::Mov_Sreg_r64m16 => Kind::MovToSeg,
        Code::Mov_rm16_Sreg | Code::Mov_r32m16_Sreg | Code::Mov_r64m16_Sreg => Kind::MovFromSeg,
        _ => Kind::Mov,
    })
}

/// Jcc, CMOVcc and SETcc.
fn conditional(i: &Instruction) -> Option<Kind> {
    use Kind::*;
    if i.is_jcc_short_or_near() {
        return Some(Jcc);
    }
    Some(match i.mnemonic() {
        Mnemonic::Cmovo
        | Mnemonic::Cmovno
        | Mnemonic::Cmovb
        | Mnemonic::Cmovae
        | Mnemonic::Cmove
        | Mnemonic::Cmovne
        | Mnemonic::Cmovbe
        | Mnemonic::Cmova
        | Mnemonic::Cmovs
        | Mnemonic::Cmovns
        | Mnemonic::Cmovp
        | Mnemonic::Cmovnp
        | Mnemonic::Cmovl
        | Mnemonic::Cmovge
        | Mnemonic::Cmovle
        | Mnemonic::Cmovg => Cmov,
        Mnemonic::Seto
        | Mnemonic::Setno
        | Mnemonic::Setb
        | Mnemonic::Setae
        | Mnemonic::Sete
        | Mnemonic::Setne
        | Mnemonic::Setbe
        | Mnemonic::Seta
        | Mnemonic::Sets
        | Mnemonic::Setns
        | Mnemonic::Setp
        | Mnemonic::Setnp
        | Mnemonic::Setl
        | Mnemonic::Setge
        | Mnemonic::Setle
        | Mnemonic::Setg => Setcc,
        _ => return None,
    })
}

/// The per-kind finishing of a lowered op: condition codes, REP kinds,
/// implicit sizes and operands. `None` when an operand the kind needs did
/// not lower (an unusual address form).
fn shape(i: &Instruction, mut op: Op) -> Option<Op> {
    use Kind::*;
    let n = i.op_count();
    let reg_index = |r: Register, base: Register| (r as u32 - base as u32) as u8;
    match op.kind {
        // MOV to and from CRn and DRn move 32-bit registers outside 64-bit mode.
        MovFromCr => (op.cc, op.size) = (reg_index(i.op1_register(), Register::CR0), i.op0_register().size() as u8),
        MovToCr => (op.cc, op.size) = (reg_index(i.op0_register(), Register::CR0), i.op1_register().size() as u8),
        MovFromDr => (op.cc, op.size) = (reg_index(i.op1_register(), Register::DR0), i.op0_register().size() as u8),
        MovToDr => (op.cc, op.size) = (reg_index(i.op0_register(), Register::DR0), i.op1_register().size() as u8),
        Lgdt | Lidt | Sgdt | Sidt => {
            use Code::*;
            op.size = match i.code() {
                Lgdt_m1632_16 | Lidt_m1632_16 | Sgdt_m1632_16 | Sidt_m1632_16 => 2,
                Lgdt_m1632 | Lidt_m1632 | Sgdt_m1632 | Sidt_m1632 => 4,
                _ => 8,
            };
        }
        Clflush => op.cc = u8::from(i.mnemonic() == Mnemonic::Clflushopt),
        Cbw | Cwd => op.size = accumulator_size(i.mnemonic()),
        Cmov | Setcc => op.cc = cond(i),
        Movs | Stos | Lods | Cmps | Scas | Ins | Outs => return Some(string_op(i, op)),
        In | Out => {
            // IN AL/AX/EAX, port; OUT port, AL/AX/EAX: a = the register, b = port.
            let (reg, port) = if op.kind == In { (0, 1) } else { (1, 0) };
            op.size = i.op_register(reg).size() as u8;
            op.a = Opnd::Reg(0);
            op.b = if i.op_kind(port) == OpKind::Register { Opnd::Reg(2) } else { Opnd::Imm(i.immediate(port)) };
            return Some(op);
        }
        MovToSeg | MovFromSeg | PushSeg | PopSeg | LoadFar | RdSegBase | WrSegBase => return segment_op(i, op),
        Push | Pop | Pushf | Popf | Pusha | Popa | Call | Ret | Leave | Enter | Iret | RetFar | JmpFar | CallFar
        | Jmp | Jcc | Loop | Loope | Loopne | Jrcxz => return stack_or_branch_op(i, op),
        Xlat => {
            // XLAT: AL = seg:[rBX + AL]; the address size is the base's.
            op.a = Opnd::Mem(Mem { index: Mem::NONE, ..as_mem(mem(i)?)? });
            return Some(op);
        }
        Sysret | Sysexit => op.size = if i.code() == Code::Sysretq || i.code() == Code::Sysexitq { 8 } else { 4 },
        Cmpxchg8b => op.size = i.memory_size().size() as u8,
        _ => {}
    }
    let lowered = [op.a, op.b, op.c];
    if lowered[..n.min(3) as usize].contains(&Opnd::None)
        && !matches!(op.kind, MovToCr | MovFromCr | MovToDr | MovFromDr)
    {
        return None;
    }
    Some(op)
}

fn as_mem(o: Opnd) -> Option<Mem> {
    match o {
        Opnd::Mem(m) => Some(m),
        _ => None,
    }
}

/// String instructions: the REP kind, the element size, and the implicit
/// operands whatever order the SDM lists them in: `a` = ES:[rDI], `b` =
/// seg:[rSI].
fn string_op(i: &Instruction, mut op: Op) -> Op {
    op.cc = rep(i);
    op.size = string_size(i);
    (op.a, op.b, op.c) = (Opnd::None, Opnd::None, Opnd::None);
    for k in 0..i.op_count() {
        match string_operand(i, i.op_kind(k)) {
            Some(Opnd::Mem(m)) if m.base == 7 => op.a = Opnd::Mem(m),
            Some(m) => op.b = m,
            None => {}
        }
    }
    op
}

/// Instructions that name a segment register: it goes in `cc`.
fn segment_op(i: &Instruction, mut op: Op) -> Option<Op> {
    use Kind::*;
    let sreg = |r: Register| (r as u32 - Register::ES as u32) as u8;
    match op.kind {
        MovToSeg => {
            op.cc = sreg(i.op0_register());
            op.size = 2;
            op.b = operand(i, 1)?;
        }
        MovFromSeg => {
            op.cc = sreg(i.op1_register());
            op.a = operand(i, 0)?;
            // A register destination takes the operand size, a memory one 16 bits.
            op.size = if i.op0_kind() == OpKind::Register { i.op0_register().size() as u8 } else { 2 };
            op.b = Opnd::None;
        }
        PushSeg | PopSeg => {
            op.cc = sreg(i.op0_register());
            op.size = i.stack_pointer_increment().unsigned_abs() as u8;
            op.a = Opnd::None;
        }
        LoadFar => {
            op.cc = match i.mnemonic() {
                Mnemonic::Les => Seg::Es,
                Mnemonic::Lss => Seg::Ss,
                Mnemonic::Lfs => Seg::Fs,
                Mnemonic::Lgs => Seg::Gs,
                _ => Seg::Ds,
            } as u8;
            op.size = i.op0_register().size() as u8;
            as_mem(op.b)?;
        }
        _ => {
            op.cc =
                if matches!(i.mnemonic(), Mnemonic::Rdfsbase | Mnemonic::Wrfsbase) { Seg::Fs } else { Seg::Gs } as u8;
        }
    }
    Some(op)
}

/// Stack and branch instructions: `size` is the operand size, which sets
/// how much the stack moves and how wide a branch target is (SDM Vol. 1
/// 6.2.5, 6.3.1); for LOOPcc and JrCXZ `size2` is the count register's
/// width (the address size).
fn stack_or_branch_op(i: &Instruction, mut op: Op) -> Option<Op> {
    use Kind::*;
    let sp = i.stack_pointer_increment().unsigned_abs() as u8;
    let by_code = |w: &[Code], d: &[Code]| {
        if w.contains(&i.code()) {
            2
        } else if d.contains(&i.code()) {
            4
        } else {
            8
        }
    };
    match op.kind {
        Push | Pop | Pushf | Popf => op.size = sp,
        Pusha | Popa => op.size = sp / 8,
        Ret => {
            op.size = by_code(&[Code::Retnw, Code::Retnw_imm16], &[Code::Retnd, Code::Retnd_imm16]);
            if i.op_count() == 0 {
                op.a = Opnd::Imm(0);
            }
        }
        RetFar => {
            op.size = by_code(&[Code::Retfw, Code::Retfw_imm16], &[Code::Retfd, Code::Retfd_imm16]);
            if i.op_count() == 0 {
                op.a = Opnd::Imm(0);
            }
        }
        Leave => op.size = by_code(&[Code::Leavew], &[Code::Leaved]),
        Enter => op.size = by_code(&[Code::Enterw_imm16_imm8], &[Code::Enterd_imm16_imm8]),
        Iret => op.size = by_code(&[Code::Iretw], &[Code::Iretd]),
        JmpFar | CallFar => {
            op.size = by_code(
                &[Code::Jmp_ptr1616, Code::Jmp_m1616, Code::Call_ptr1616, Code::Call_m1616],
                &[Code::Jmp_ptr1632, Code::Jmp_m1632, Code::Call_ptr1632, Code::Call_m1632],
            );
            if matches!(i.op0_kind(), OpKind::FarBranch16 | OpKind::FarBranch32) {
                op.b = Opnd::Imm(u64::from(i.far_branch_selector()));
            }
        }
        _ => {
            // Near JMP, CALL, Jcc, LOOPcc, JrCXZ: a relative target is
            // already the absolute one, of the operand's width.
            op.size = match i.op0_kind() {
                OpKind::NearBranch16 => 2,
                OpKind::NearBranch32 => 4,
                OpKind::NearBranch64 => 8,
                _ => op.size,
            };
            if matches!(op.kind, Loop | Loope | Loopne | Jrcxz) {
                op.size2 = count_register_size(i);
            }
            if op.kind == Jcc {
                op.cc = cond(i);
            }
        }
    }
    let n = i.op_count().min(3) as usize;
    if [op.a, op.b, op.c][..n].contains(&Opnd::None) && !matches!(op.kind, Pusha | Popa) {
        return None;
    }
    Some(op)
}

/// The count register of LOOPcc and JrCXZ: CX, ECX or RCX by address size.
fn count_register_size(i: &Instruction) -> u8 {
    use Code::*;
    match i.code() {
        Jcxz_rel8_16 | Jcxz_rel8_32 | Loop_rel8_16_CX | Loop_rel8_32_CX | Loope_rel8_16_CX | Loope_rel8_32_CX
        | Loopne_rel8_16_CX | Loopne_rel8_32_CX => 2,
        Jrcxz_rel8_16 | Jrcxz_rel8_64 | Loop_rel8_16_RCX | Loop_rel8_64_RCX | Loope_rel8_16_RCX | Loope_rel8_64_RCX
        | Loopne_rel8_16_RCX | Loopne_rel8_64_RCX => 8,
        _ => 4,
    }
}

/// The accumulator size of CBW/CWDE/CDQE and CWD/CDQ/CQO.
fn accumulator_size(m: Mnemonic) -> u8 {
    match m {
        Mnemonic::Cbw | Mnemonic::Cwd => 2,
        Mnemonic::Cwde | Mnemonic::Cdq => 4,
        _ => 8,
    }
}

fn is_sse_movsd(i: &Instruction) -> bool {
    i.op_count() == 2 && i.op0_kind() == OpKind::Register && i.op0_register().is_xmm()
        || i.op_count() == 2 && i.op1_kind() == OpKind::Register && i.op1_register().is_xmm()
}

fn is_sse_cmpsd(i: &Instruction) -> bool {
    i.op_count() >= 2 && i.op0_kind() == OpKind::Register && i.op0_register().is_xmm()
}

/// What CPUID must advertise for an instruction to execute (SDM Vol. 2:
/// each instruction's "CPUID Feature Flag" column, as iced-x86 lists it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Every x86-64 processor has it.
    Nothing,
    /// An optional feature: without it in CPUID the instruction is #UD
    /// (the machine checks when it builds the op: [`absent`]).
    Feature(Feature),
    /// An extension this CPU model does not implement and so never
    /// advertises: always absent.
    Unmodelled {
        /// An x87 instruction (#NM with CR0.EM or CR0.TS).
        x87: bool,
    },
}

/// The feature instruction `i` needs. VMCALL is the exception among VMX
/// instructions: in a guest it exits to the hypervisor whatever CPUID says.
pub fn needs(i: &Instruction) -> Needs {
    use iced_x86::CpuidFeature as C;
    // VMCALL exits in a guest whatever CPUID says; ENDBR64/32 are NOPs
    // wherever CET is not on (they sit in the reserved-NOP space).
    match i.mnemonic() {
        Mnemonic::Vmcall | Mnemonic::Endbr64 | Mnemonic::Endbr32 => return Needs::Nothing,
        // XTEST needs HLE or RTM (iced-x86 lists both); only RTM is modelled.
        Mnemonic::Xtest => return Needs::Feature(Feature::Rtm),
        _ => {}
    }
    let mut need = Needs::Nothing;
    for f in i.cpuid_features() {
        let this = match f {
            C::INTEL8086
            | C::INTEL186
            | C::INTEL286
            | C::INTEL386
            | C::INTEL486
            | C::X64
            | C::CPUID
            | C::PAUSE
            | C::MULTIBYTENOP => continue,
            C::TSC => Needs::Feature(Feature::Tsc),
            C::MSR => Needs::Feature(Feature::Msr),
            C::CMOV => Needs::Feature(Feature::Cmov),
            C::CX8 => Needs::Feature(Feature::Cx8),
            C::SEP => Needs::Feature(Feature::Sep),
            C::CLFSH => Needs::Feature(Feature::Clfsh),
            C::POPCNT => Needs::Feature(Feature::Popcnt),
            C::MOVBE => Needs::Feature(Feature::Movbe),
            C::FSGSBASE => Needs::Feature(Feature::Fsgsbase),
            C::BMI1 => Needs::Feature(Feature::Bmi1),
            C::LZCNT => Needs::Feature(Feature::Abm),
            C::INVPCID => Needs::Feature(Feature::Invpcid),
            C::RTM => Needs::Feature(Feature::Rtm),
            C::RDPID => Needs::Feature(Feature::Rdpid),
            C::RDTSCP => Needs::Feature(Feature::Rdtscp),
            C::SYSCALL => Needs::Feature(Feature::Syscall),
            // FNENI, FNDISI (8087) and FNSETPM (287) run as FNOP.
            C::FPU | C::FPU287 | C::FPU387 => Needs::Feature(Feature::Fpu),
            C::MMX => Needs::Feature(Feature::Mmx),
            C::FXSR => Needs::Feature(Feature::Fxsr),
            C::SSE => Needs::Feature(Feature::Sse),
            C::SSE2 => Needs::Feature(Feature::Sse2),
            C::SSE3 => Needs::Feature(Feature::Sse3),
            C::SSSE3 => Needs::Feature(Feature::Ssse3),
            C::SSE4_1 => Needs::Feature(Feature::Sse41),
            C::SSE4_2 => Needs::Feature(Feature::Sse42),
            C::CMPXCHG16B => Needs::Feature(Feature::Cx16),
            C::CLFLUSHOPT => Needs::Feature(Feature::Clflushopt),
            C::PREFETCHW => Needs::Feature(Feature::Prefetchw),
            C::XSAVE => Needs::Feature(Feature::Xsave),
            C::XSAVEOPT => Needs::Feature(Feature::Xsaveopt),
            C::XSAVEC => Needs::Feature(Feature::Xsavec),
            C::XSAVES => Needs::Feature(Feature::Xsaves),
            C::FPU287XL_ONLY | C::FPU387SL_ONLY | C::CYRIX_FPU => return Needs::Unmodelled { x87: true },
            _ => return Needs::Unmodelled { x87: false },
        };
        need = this;
    }
    need
}

/// `op` as the CPU runs it without `feature`: TZCNT and LZCNT are the
/// older BSF and BSR with an ignored REP prefix (their encodings are F3 0F
/// BC and F3 0F BD); an x87 instruction is #NM under CR0.EM or CR0.TS,
/// else #UD; anything else is #UD.
pub fn absent(op: Op, feature: Feature) -> Op {
    match (op.kind, feature) {
        (Kind::Tzcnt, Feature::Bmi1) => Op { kind: Kind::Bsf, ..op },
        (Kind::Lzcnt, Feature::Abm) => Op { kind: Kind::Bsr, ..op },
        (_, Feature::Fpu) => Op { kind: Kind::Absent, cc: ABSENT_X87, ..op },
        _ => Op { kind: Kind::Absent, cc: 0, ..op },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn lower_bytes(bytes: &[u8]) -> Op {
        lower(&Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode())
    }

    #[test]
    fn lowers_common_forms() {
        // mov eax, [rdi+8]
        let op = lower_bytes(&[0x8b, 0x47, 0x08]);
        assert_eq!(op.kind, Kind::Mov);
        assert_eq!(op.size, 4);
        assert_eq!(op.a, Opnd::Reg(0));
        assert_eq!(op.b, Opnd::Mem(Mem { base: 7, index: Mem::NONE, scale: 1, seg: Seg::Ds, asize: 8, disp: 8 }));
        // out dx, al
        let op = lower_bytes(&[0xee]);
        assert_eq!((op.kind, op.size, op.b), (Kind::Out, 1, Opnd::Reg(2)));
        // in eax, 0x80
        let op = lower_bytes(&[0xe5, 0x80]);
        assert_eq!((op.kind, op.size, op.b), (Kind::In, 4, Opnd::Imm(0x80)));
        // mov ah, bl
        let op = lower_bytes(&[0x88, 0xdc]);
        assert_eq!((op.a, op.b), (Opnd::RegHi(0), Opnd::Reg(3)));
        // jne short back to 0x1000
        let op = lower_bytes(&[0x75, 0xfe]);
        assert_eq!((op.kind, op.cc, op.a), (Kind::Jcc, 5, Opnd::Imm(0x1000)));
        // mov cr3, rax
        let op = lower_bytes(&[0x0f, 0x22, 0xd8]);
        assert_eq!((op.kind, op.cc, op.b), (Kind::MovToCr, 3, Opnd::Reg(0)));
        // rep movsb
        let op = lower_bytes(&[0xf3, 0xa4]);
        assert_eq!((op.kind, op.cc, op.size), (Kind::Movs, REP_E, 1));
        // lea rsi, [rip+0x10] -> absolute
        let op = lower_bytes(&[0x48, 0x8d, 0x35, 0x10, 0, 0, 0]);
        assert_eq!(
            op.b,
            Opnd::Mem(Mem { base: Mem::NONE, index: Mem::NONE, scale: 1, seg: Seg::Ds, asize: 8, disp: 0x1017 })
        );
    }

    #[test]
    fn invalid_and_unmodelled() {
        assert_eq!(lower_bytes(&[0x0f, 0x0b]).kind, Kind::Ud); // ud2
        assert_eq!(lower_bytes(&[0x06]).kind, Kind::Ud); // push es: invalid in 64-bit mode
        assert_eq!(lower_bytes(&[0xc5, 0xf0, 0x58, 0xc2]).kind, Kind::Absent, "vaddps: AVX, never advertised");
        assert_eq!(lower_bytes(&[0x62, 0xf1, 0x74, 0x48, 0x58, 0xc2]).kind, Kind::Absent, "vaddps zmm: AVX-512");
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xc1]).kind, Kind::Vmcall);
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xd9]).kind, Kind::Absent, "vmmcall: SVM");
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xfd]).kind, Kind::Absent, "rdpru");
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xc4]).kind, Kind::Absent, "vmxoff: VMX");
        let i = Decoder::with_ip(64, &[0xf3, 0x0f, 0xc7, 0xf8], 0, DecoderOptions::NONE).decode();
        assert_eq!((lower(&i).kind, needs(&i)), (Kind::Rdpid, Needs::Feature(Feature::Rdpid)));
        let tzcnt = lower_bytes(&[0xf3, 0x0f, 0xbc, 0xc1]);
        assert_eq!(absent(tzcnt, Feature::Bmi1).kind, Kind::Bsf, "TZCNT is BSF on a CPU without BMI1");
        // The x87, SSE and XSAVE instructions lower to their ops and name
        // the feature the machine checks.
        let fld1 = Decoder::with_ip(64, &[0xd9, 0xe8], 0, DecoderOptions::NONE).decode();
        assert!(matches!(lower(&fld1).kind, Kind::X87(_)));
        assert_eq!(needs(&fld1), Needs::Feature(Feature::Fpu));
        let fld1_absent = absent(lower(&fld1), Feature::Fpu);
        assert_eq!((fld1_absent.kind, fld1_absent.cc), (Kind::Absent, ABSENT_X87), "#NM under CR0.EM/TS");
        let addps = Decoder::with_ip(64, &[0x0f, 0x58, 0xc1], 0, DecoderOptions::NONE).decode();
        assert!(matches!(lower(&addps).kind, Kind::Sse(_)));
        assert_eq!(needs(&addps), Needs::Feature(Feature::Sse));
        let xgetbv = Decoder::with_ip(64, &[0x0f, 0x01, 0xd0], 0, DecoderOptions::NONE).decode();
        assert_eq!(needs(&xgetbv), Needs::Feature(Feature::Xsave));
        let lfence = lower_bytes(&[0x0f, 0xae, 0xe8]);
        assert_eq!(lfence.kind, Kind::Nop, "LFENCE: SSE2, advertised");
    }

    #[test]
    fn operands_carry_segment_and_address_size() {
        let m = |base, seg, asize| Opnd::Mem(Mem { base, index: Mem::NONE, scale: 1, seg, asize, disp: 0 });
        // mov eax, fs:[rbx]
        assert_eq!(lower_bytes(&[0x64, 0x8b, 0x03]).b, m(3, Seg::Fs, 8));
        // mov eax, [rbp]: SS by default (disp8 0)
        assert_eq!(lower_bytes(&[0x8b, 0x45, 0x00]).b, m(5, Seg::Ss, 8));
        // mov eax, [ebx]: 32-bit address size
        assert_eq!(lower_bytes(&[0x67, 0x8b, 0x03]).b, m(3, Seg::Ds, 4));
        // gs movsb: a = ES:[rdi], b = GS:[rsi]
        let op = lower_bytes(&[0x65, 0xa4]);
        assert_eq!((op.a, op.b), (m(7, Seg::Es, 8), m(6, Seg::Gs, 8)));
        // cmpsb lists DS:[rsi] first; lods has only a source; a32 scasb
        let op = lower_bytes(&[0xa6]);
        assert_eq!((op.a, op.b), (m(7, Seg::Es, 8), m(6, Seg::Ds, 8)));
        assert_eq!((lower_bytes(&[0xac]).a, lower_bytes(&[0xac]).b), (Opnd::None, m(6, Seg::Ds, 8)));
        assert_eq!(lower_bytes(&[0x67, 0xae]).a, m(7, Seg::Es, 4));
    }
}

//! The decoded form of an instruction: iced-x86 decodes, [`lower`] turns
//! the result into an [`Op`] (what to do, operand size, operands as register
//! numbers, immediates and address recipes with their segment register and
//! address size), and [`crate::execute`] runs it against a [`crate::Cpu`].
//! The simulator caches ops in decoded blocks, so a loop is decoded once;
//! the VMM's emulator lowers the one instruction an exit stopped at.
//! Lowering does not price: the simulator's cost model prices ops where it
//! builds blocks.

use crate::cpu::Feature;
use iced_x86::{Code, ConditionCode, Instruction, Mnemonic, OpKind, Register};

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
    /// ICEBP (INT1, opcode F1): a trap-like #DB.
    Int1,
    Ud,
    Iretq,
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
    /// MOV Sreg, r/m16 (`cc`: the segment register, Sreg encoding).
    MovToSreg,
    /// MOV r/m, Sreg.
    MovFromSreg,
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
    /// RDPID: IA32_TSC_AUX into a register.
    Rdpid,
    /// INVPCID: invalidate TLB entries by PCID.
    Invpcid,
    /// WAIT/FWAIT: #NM with CR0.MP and CR0.TS; no x87 exception can be
    /// pending on this FPU-less model, so otherwise nothing.
    Wait,
    /// An instruction of an extension the CPU model never advertises
    /// (x87, MMX, SSE and later, XSAVE, VMX but VMCALL, SVM, ...): #UD,
    /// or for x87 (`cc` = [`ABSENT_X87`]) #NM when CR0.EM or CR0.TS is set,
    /// so an OS can emulate it (SDM Vol. 3A 2.5, CR0.EM). Also what an
    /// optional feature's instruction becomes where the CPU lacks it.
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
    /// Address size in bytes: 8, or 4 with the 0x67 prefix (the offset
    /// wraps at 4 GiB).
    pub asize: u8,
    /// Displacement; for RIP-relative operands the absolute address.
    pub disp: u64,
}

impl Mem {
    pub const NONE: u8 = 0xff;
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
    /// Size of the second operand (MOVZX/MOVSX source).
    pub size2: u8,
    pub len: u8,
    /// Condition code (Jcc, SETcc, CMOVcc), REP kind (string ops), control
    /// or debug register number (MOV CR/DR).
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
                | Int1
                | Ud
                | Iretq
                | In
                | Out
                | Ins
                | Outs
                | Cpuid
                | Rdmsr
                | Wrmsr
                | MovToCr
                | MovToDr
                | MovToSreg
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

fn gpr(r: Register) -> Option<Opnd> {
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

fn mem(i: &Instruction) -> Option<Opnd> {
    let base = i.memory_base();
    let index = i.memory_index();
    let ok =
        |r: Register| r == Register::None || r.full_register().is_gpr64() || r == Register::RIP || r == Register::EIP;
    if !ok(base) || !ok(index) {
        return None;
    }
    let rip_rel = i.is_ip_rel_memory_operand();
    let a32 = base.is_gpr32() || index.is_gpr32() || base == Register::EIP;
    Some(Opnd::Mem(Mem {
        base: if rip_rel { Mem::NONE } else { reg_num(base) },
        index: reg_num(index),
        scale: i.memory_index_scale() as u8,
        seg: seg(i.memory_segment()),
        asize: if a32 { 4 } else { 8 },
        disp: if rip_rel { i.ip_rel_memory_address() } else { i.memory_displacement64() },
    }))
}

fn seg(r: Register) -> Seg {
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
fn op_size(i: &Instruction, n: u32) -> u8 {
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
    let Some(kind) = kind(i) else {
        return match needs(i) {
            Needs::Nothing => op,
            Needs::Feature(f) => absent(op, f),
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
        Mnemonic::Push => Push,
        Mnemonic::Pop => Pop,
        Mnemonic::Pushfq | Mnemonic::Pushf => Pushf,
        Mnemonic::Popfq | Mnemonic::Popf => Popf,
        Mnemonic::Leave => Leave,
        // Far calls are far transfers (not modelled yet), not near ones.
        Mnemonic::Call if i.is_call_far() || i.is_call_far_indirect() => return None,
        Mnemonic::Call => Call,
        Mnemonic::Ret => Ret,
        Mnemonic::Jmp if i.is_jmp_far() || i.is_jmp_far_indirect() => return None,
        Mnemonic::Jmp => Jmp,
        Mnemonic::Jrcxz | Mnemonic::Jecxz => Jrcxz,
        Mnemonic::Loop => Loop,
        Mnemonic::Loope => Loope,
        Mnemonic::Loopne => Loopne,
        Mnemonic::Nop
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
        Mnemonic::Int1 => Int1,
        Mnemonic::Ud2 | Mnemonic::Ud0 | Mnemonic::Ud1 => Ud,
        Mnemonic::Iretq => Iretq,
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
        Mnemonic::Wait => Wait,
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
        Code::Mov_Sreg_rm16 | Code::Mov_Sreg_r32m16 | Code::Mov_Sreg_r64m16 => Kind::MovToSreg,
        Code::Mov_rm16_Sreg | Code::Mov_r32m16_Sreg | Code::Mov_r64m16_Sreg => Kind::MovFromSreg,
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
/// not lower (a segment register, an unusual address form).
fn shape(i: &Instruction, mut op: Op) -> Option<Op> {
    use Kind::*;
    let n = i.op_count();
    let reg_index = |r: Register, base: Register| (r as u32 - base as u32) as u8;
    match op.kind {
        MovFromCr => (op.cc, op.size) = (reg_index(i.op1_register(), Register::CR0), 8),
        MovToCr => (op.cc, op.size) = (reg_index(i.op0_register(), Register::CR0), 8),
        MovFromDr => (op.cc, op.size) = (reg_index(i.op1_register(), Register::DR0), 8),
        MovToDr => (op.cc, op.size) = (reg_index(i.op0_register(), Register::DR0), 8),
        MovToSreg => (op.cc, op.size) = (reg_index(i.op0_register(), Register::ES), 2),
        MovFromSreg => op.cc = reg_index(i.op1_register(), Register::ES),
        Cbw | Cwd => op.size = accumulator_size(i.mnemonic()),
        // PUSH imm pushes a full 8 bytes; PUSH r/m16 pushes 2.
        Push => op.size = if op.size == 2 { 2 } else { 8 },
        Jcc | Cmov | Setcc => op.cc = cond(i),
        Movs | Stos | Lods | Cmps | Scas | Ins | Outs => {
            op.cc = rep(i);
            op.size = string_size(i);
            // Whatever order the SDM lists them in: a = ES:[rDI], b = seg:[rSI].
            (op.a, op.b, op.c) = (Opnd::None, Opnd::None, Opnd::None);
            for k in 0..n {
                match string_operand(i, i.op_kind(k)) {
                    Some(Opnd::Mem(m)) if m.base == 7 => op.a = Opnd::Mem(m),
                    Some(m) => op.b = m,
                    None => {}
                }
            }
            return Some(op);
        }
        Ret if n == 0 => op.a = Opnd::Imm(0),
        In | Out => {
            // IN AL/AX/EAX, port; OUT port, AL/AX/EAX: a = the register, b = port.
            let (reg, port) = if op.kind == In { (0, 1) } else { (1, 0) };
            op.size = i.op_register(reg).size() as u8;
            op.a = Opnd::Reg(0);
            op.b = if i.op_kind(port) == OpKind::Register { Opnd::Reg(2) } else { Opnd::Imm(i.immediate(port)) };
            return Some(op);
        }
        _ => {}
    }
    let implicit = matches!(op.kind, MovToCr | MovFromCr | MovToDr | MovFromDr | MovToSreg | MovFromSreg);
    let lowered = [op.a, op.b, op.c];
    if !implicit && lowered[..n.min(3) as usize].contains(&Opnd::None) {
        return None;
    }
    Some(op)
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
            C::FPU | C::FPU287 | C::FPU287XL_ONLY | C::FPU387 | C::FPU387SL_ONLY | C::CYRIX_FPU => {
                return Needs::Unmodelled { x87: true }
            }
            _ => return Needs::Unmodelled { x87: false },
        };
        need = this;
    }
    need
}

/// `op` as the CPU runs it without `feature`: TZCNT and LZCNT are the
/// older BSF and BSR with an ignored REP prefix (their encodings are F3 0F
/// BC and F3 0F BD); anything else is #UD.
pub fn absent(op: Op, feature: Feature) -> Op {
    match (op.kind, feature) {
        (Kind::Tzcnt, Feature::Bmi1) => Op { kind: Kind::Bsf, ..op },
        (Kind::Lzcnt, Feature::Abm) => Op { kind: Kind::Bsr, ..op },
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
        assert_eq!(lower_bytes(&[0x0f, 0x58, 0xc1]).kind, Kind::Absent); // addps: SSE, never advertised
        let fld1 = lower_bytes(&[0xd9, 0xe8]);
        assert_eq!((fld1.kind, fld1.cc), (Kind::Absent, ABSENT_X87));
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xc1]).kind, Kind::Vmcall);
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xd9]).kind, Kind::Absent, "vmmcall: SVM");
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xfd]).kind, Kind::Absent, "rdpru");
        assert_eq!(lower_bytes(&[0x0f, 0x01, 0xd0]).kind, Kind::Absent, "xgetbv: XSAVE");
        let i = Decoder::with_ip(64, &[0xf3, 0x0f, 0xc7, 0xf8], 0, DecoderOptions::NONE).decode();
        assert_eq!((lower(&i).kind, needs(&i)), (Kind::Rdpid, Needs::Feature(Feature::Rdpid)));
        let tzcnt = lower_bytes(&[0xf3, 0x0f, 0xbc, 0xc1]);
        assert_eq!(absent(tzcnt, Feature::Bmi1).kind, Kind::Bsf, "TZCNT is BSF on a CPU without BMI1");
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

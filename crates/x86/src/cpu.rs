//! The [`Cpu`] trait: everything an instruction sees of the machine it runs
//! on. The executor ([`crate::execute`]) is generic over it, so each
//! implementation gets its own monomorphised copy with the trait calls
//! inlined: the simulator's over its TLB fast path, the VMM's emulator's
//! over a software page walk and the device bus.
//!
//! The required methods are what every instruction family needs: general
//! registers, RIP, RFLAGS (status flags lazily), the privilege level,
//! memory through a segment, and the two ways an instruction stops early
//! (an exception, or something the implementation does not model). The
//! rest are system hooks, each named after what the SDM calls it; their
//! defaults refuse ([`Cpu::unsupported`]), so an implementation that does
//! not model a part of the system (the VMM's emulator models none of it)
//! leaves them out. A hook is where the implementation decides something
//! the architecture leaves to the machine: a VMX control that makes the
//! instruction exit, the MSR file, the TLB.
//!
//! Every method that can stop an instruction returns `Self::Stop`, and an
//! instruction stops before it commits anything the restart would redo:
//! registers are written after the last access that can fail.

use crate::fp::xsave::FpuState;
use crate::op::{Op, Seg};
use crate::{Flags, Size};
pub use exitlab_arch::cpuid::{Feature, Vendor};
use exitlab_arch::{DescriptorTable, Segment};

/// An exception the instruction raises, as a fault (RIP at the instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The vector (SDM Vol. 3A table 6-1; `exitlab_arch::vector`).
    pub vector: u8,
    pub error_code: Option<u32>,
}

impl Exception {
    /// #UD: invalid opcode.
    pub const fn ud() -> Exception {
        Exception { vector: exitlab_arch::vector::UD, error_code: None }
    }

    /// #GP with `code`.
    pub const fn gp(code: u32) -> Exception {
        Exception { vector: exitlab_arch::vector::GP, error_code: Some(code) }
    }

    /// #DE: divide error.
    pub const fn de() -> Exception {
        Exception { vector: exitlab_arch::vector::DE, error_code: None }
    }
    /// #SS with `code`.
    pub const fn ss(code: u32) -> Exception {
        Exception { vector: exitlab_arch::vector::SS, error_code: Some(code) }
    }

    /// #NP with `code`.
    pub const fn np(code: u32) -> Exception {
        Exception { vector: exitlab_arch::vector::NP, error_code: Some(code) }
    }

    /// #TS with `code`.
    pub const fn ts(code: u32) -> Exception {
        Exception { vector: exitlab_arch::vector::TS, error_code: Some(code) }
    }

    /// #NM: device not available.
    pub const fn nm() -> Exception {
        Exception::fault(exitlab_arch::vector::NM)
    }

    /// A fault without an error code: #NM, #MF, #XM.
    pub const fn fault(vector: u8) -> Exception {
        Exception { vector, error_code: None }
    }
}

/// A port access as the SDM's I/O instructions make it (Vol. 1 ch. 19),
/// with what a VMX exit qualification reports about it (Vol. 3C table
/// 28-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIo {
    pub port: u16,
    pub size: Size,
    /// INS or OUTS.
    pub string: bool,
    /// With a REP prefix.
    pub rep: bool,
    /// The port came from an immediate, not DX.
    pub immediate: bool,
}

/// The processor's operating mode (SDM Vol. 3A 2.2, figure 2-3): CR0.PE,
/// RFLAGS.VM, IA32_EFER.LMA and CS.L decide it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real-address mode (CR0.PE clear).
    Real,
    /// Protected mode, 16- or 32-bit code by CS.D.
    Protected,
    /// Virtual-8086 mode (RFLAGS.VM in protected mode).
    Virtual8086,
    /// IA-32e compatibility mode (EFER.LMA, CS.L clear).
    Compatibility,
    /// 64-bit mode (EFER.LMA, CS.L set).
    Long,
}

impl Mode {
    /// IA-32e mode: 64-bit or compatibility mode.
    pub fn ia32e(self) -> bool {
        matches!(self, Mode::Long | Mode::Compatibility)
    }

    /// Segments are checked through descriptors (not real or virtual-8086
    /// mode).
    pub fn protected(self) -> bool {
        matches!(self, Mode::Protected | Mode::Compatibility | Mode::Long)
    }
}

/// LDTR or TR: the system-segment registers (SDM Vol. 3A 2.4.4, 2.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemSegment {
    Ldtr,
    Tr,
}
/// Which descriptor-table register LGDT/LIDT/SGDT/SIDT name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorTableKind {
    Gdt,
    Idt,
}

/// The machine an instruction executes on. See the module documentation
/// for which methods are required and which are hooks.
pub trait Cpu {
    /// Why an instruction stopped before completing (an exception, an exit
    /// to a VMM, an instruction that is not modelled). The executor only
    /// passes it on.
    type Stop;

    /// Iterations a REP string instruction runs before it yields with RIP
    /// unchanged, so that it resumes from where it stopped (the SDM lets an
    /// implementation take interrupts between iterations, Vol. 2B "REP").
    const REP_CHUNK: u64 = u64::MAX;

    // ---- Registers (SDM Vol. 1 3.4) ----

    /// General register `n` (0 = RAX ... 15 = R15), all 64 bits.
    fn gpr(&self, n: u8) -> u64;
    fn set_gpr(&mut self, n: u8, v: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, v: u64);
    /// The six status flags, lazily evaluated.
    fn flags(&self) -> Flags;
    fn set_flags(&mut self, f: Flags);
    /// RFLAGS without the six status flags: TF, IF, DF, IOPL, NT, RF, AC,
    /// ID and the fixed bit 1.
    fn rflags_rest(&self) -> u64;
    fn set_rflags_rest(&mut self, v: u64);
    /// The current privilege level (CS.RPL).
    fn cpl(&self) -> u8;

    // ---- Memory ----

    /// Reads `size` bytes (1, 2, 4 or 8) at `offset` in segment `seg`,
    /// with the current privilege. The implementation applies the
    /// segment's base (and, outside 64-bit mode, its limit and type) and
    /// paging.
    fn read(&mut self, seg: Seg, offset: u64, size: Size) -> Result<u64, Self::Stop>;
    /// Writes the low `size` bytes of `v` at `offset` in segment `seg`.
    fn write(&mut self, seg: Seg, offset: u64, size: Size, v: u64) -> Result<(), Self::Stop>;

    // ---- Stopping ----

    /// Stops the instruction with exception `e`.
    fn exception(&mut self, e: Exception) -> Self::Stop;
    /// Stops at an instruction (or operand form) this implementation does
    /// not model.
    fn unsupported(&mut self) -> Self::Stop;

    /// Checks that `len` bytes at `offset` in `seg` can be written
    /// (translation and permissions) without writing them, before a store
    /// made of several writes (a 16-byte vector, an 80-bit float, a save
    /// area), so that a fault leaves memory untouched. The default has
    /// nothing to check: an implementation whose writes cannot fault part
    /// of the way.
    fn check_write(&mut self, _seg: Seg, _offset: u64, _len: usize) -> Result<(), Self::Stop> {
        Ok(())
    }

    // ---- x87, MMX and SSE state (SDM Vol. 1 ch. 8-13) ----

    /// The x87 and MMX registers, the XMM registers, MXCSR and XINUSE, for
    /// the executor to read and change (it changes them after the last
    /// access that can fail).
    fn fpu(&mut self) -> Result<&mut FpuState, Self::Stop> {
        Err(self.unsupported())
    }

    /// XCR0, the enabled XSAVE state components (SDM Vol. 1 13.3).
    fn xcr0(&mut self) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// XSETBV of an XCR0 value the executor has checked.
    fn set_xcr0(&mut self, _value: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// A waiting x87 or MMX instruction found an unmasked x87 exception
    /// pending with CR0.NE clear: the processor asserts FERR# and the
    /// platform decides what follows (SDM Vol. 1 8.7, D.2.1). `Ok` lets
    /// the instruction run (IGNNE# asserted).
    fn ferr(&mut self) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    // ---- Hooks: instruction bookkeeping ----

    /// One element of the string instruction `op` was committed (RSI, RDI
    /// and, with REP, RCX have moved past it).
    fn string_element(&mut self, _op: &Op) {}

    /// Iterations a REP string instruction runs now before it yields with
    /// RIP unchanged: [`Cpu::REP_CHUNK`], or 1 while single-stepping, since
    /// TF traps after each iteration (and a data breakpoint after the one
    /// that hit it).
    fn rep_chunk(&self) -> u64 {
        Self::REP_CHUNK
    }

    // ---- Hooks: events and interrupt state (SDM Vol. 3A ch. 6) ----

    /// Stops with the event `op` raises: INT n, INT3 and INTO (software
    /// interrupt `vector`), or ICEBP (INT1: a #DB, `vector` 1, with no DPL
    /// check). RIP is still at the instruction: the implementation pushes
    /// RIP + `op.len` when it delivers the event, and leaves RIP at the
    /// instruction if delivery faults, as VMX's instruction-length field
    /// does (SDM 25.8.3).
    fn software_interrupt(&mut self, _op: &Op, _vector: u8) -> Self::Stop {
        self.unsupported()
    }

    /// STI set IF: hold interrupts off until after the next instruction.
    fn interrupt_shadow(&mut self) {}

    /// MOV SS or POP SS completed: hold interrupts, NMIs and debug traps
    /// off until after the next instruction (SDM Vol. 3A 6.8.3, "blocking
    /// by MOV SS"; LSS does not).
    fn ss_load_shadow(&mut self) {
        self.interrupt_shadow();
    }

    /// IRET completed: it ends the blocking of NMIs that taking an NMI
    /// began (SDM Vol. 3A 6.7.1).
    fn iret_completed(&mut self) {}

    // ---- Hooks: modes and segments (SDM Vol. 3A ch. 2, 3, 5) ----
    // The executor does the architecture (descriptor checks, far
    // transfers, gates); the implementation holds the registers and says
    // which mode their values put the processor in. An implementation
    // that keeps no segment state (the VMM's emulator) runs in 64-bit
    // mode and refuses the rest.

    /// The current operating mode.
    fn mode(&self) -> Mode {
        Mode::Long
    }

    /// The stack-address size in bytes: 8 in 64-bit mode, else 4 or 2 by
    /// SS.B (SDM Vol. 1 6.2.3).
    fn stack_address_size(&self) -> Size {
        8
    }

    /// Segment register `s`: its selector and hidden part.
    fn segment(&mut self, _s: Seg) -> Result<Segment, Self::Stop> {
        Err(self.unsupported())
    }

    /// Loads segment register `s` with a selector and hidden part the
    /// executor has checked; loading CS or SS may change the mode and CPL
    /// (CPL is SS.DPL; SDM Vol. 3C 26.3.1.2 keeps them equal).
    fn set_segment(&mut self, _s: Seg, _v: Segment) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// LDTR or TR.
    fn system_segment(&mut self, _s: SystemSegment) -> Result<Segment, Self::Stop> {
        Err(self.unsupported())
    }

    fn set_system_segment(&mut self, _s: SystemSegment, _v: Segment) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// A read at a linear address with the privilege `user` says (a
    /// supervisor access for descriptor tables and the TSS, SDM Vol. 3A
    /// 4.6: "implicit supervisor-mode accesses").
    fn read_linear(&mut self, _linear: u64, _size: Size, _user: bool) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// A write at a linear address (descriptor accessed and busy bits,
    /// stack frames pushed at a new privilege level).
    fn write_linear(&mut self, _linear: u64, _size: Size, _v: u64, _user: bool) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// The value of an MSR as the processor itself uses it (SYSCALL's
    /// STAR, SYSENTER's MSRs, EFER): no RDMSR, so nothing a VMM traps.
    fn msr(&mut self, _index: u32) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    // ---- Hooks: I/O (SDM Vol. 1 ch. 19) ----

    /// An input from `io.port`; the value in the low `io.size` bytes.
    fn port_in(&mut self, _op: &Op, _io: PortIo) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// An output to `io.port`.
    fn port_out(&mut self, _op: &Op, _io: PortIo, _value: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// The task register (the TSS's base and limit, for the I/O permission
    /// bitmap).
    fn task_register(&mut self) -> Result<Segment, Self::Stop> {
        self.system_segment(SystemSegment::Tr)
    }

    /// An implicit supervisor-mode read at a linear address (the TSS,
    /// descriptor tables), whatever the CPL.
    fn read_system(&mut self, linear: u64, size: Size) -> Result<u64, Self::Stop> {
        self.read_linear(linear, size, false)
    }

    // ---- Hooks: system instructions (SDM Vol. 3A 2.8, Vol. 2) ----
    // Privilege checks that the SDM lists before anything else (#GP at
    // CPL > 0) are the executor's; each hook may still exit or fault.

    /// Whether the CPU advertises `feature` in CPUID (an instruction whose
    /// optional feature is absent raises #UD; see [`crate::op::needs`]).
    fn has(&self, _feature: Feature) -> bool {
        false
    }

    /// Whose architecture the CPU follows where Intel's and AMD's differ
    /// (SYSCALL outside 64-bit mode: [`crate::fastcall::syscall`]).
    fn vendor(&self) -> Vendor {
        Vendor::Intel
    }

    /// CPUID for `leaf`, `subleaf`: EAX, EBX, ECX, EDX.
    fn cpuid(&mut self, _op: &Op, _leaf: u32, _subleaf: u32) -> Result<[u32; 4], Self::Stop> {
        Err(self.unsupported())
    }

    /// RDMSR of `msr` (#GP for an MSR the CPU does not have).
    fn rdmsr(&mut self, _op: &Op, _msr: u32) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// WRMSR of `value` to `msr` (#GP for an MSR or value it refuses).
    fn wrmsr(&mut self, _op: &Op, _msr: u32, _value: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// RDTSC, RDTSCP: the time-stamp counter and IA32_TSC_AUX.
    fn rdtsc(&mut self, _op: &Op) -> Result<(u64, u32), Self::Stop> {
        Err(self.unsupported())
    }

    /// The single-step trap of an instruction that decides it by TF at its
    /// end rather than its start (SYSCALL, SYSRET: [`crate::fastcall`]):
    /// DR6.BS pending after it retires. The caller of such an instruction
    /// takes no TF-at-start trap for it.
    fn single_step_trap(&mut self) {}

    /// RDPID: IA32_TSC_AUX.
    fn tsc_aux(&mut self) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// INVPCID of `kind` (0: one address, 1: one PCID, 2: all including
    /// globals, 3: all but globals) for `pcid` and `linear`, after the
    /// executor's checks of the descriptor.
    fn invpcid(&mut self, _op: &Op, _kind: u64, _pcid: u16, _linear: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// HLT: enter the HLT state (or exit to a VMM that traps it).
    fn hlt(&mut self, _op: &Op) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// The value control register `n` holds (no VMX read shadows), for
    /// architectural checks such as CR4.TSD and CR4.DE.
    fn cr(&mut self, _n: u8) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// MOV from CR`n` (#UD for a register that does not exist).
    fn mov_from_cr(&mut self, _op: &Op, _n: u8) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// MOV to CR`n`: checks the value (#GP) and applies it.
    fn mov_to_cr(&mut self, _op: &Op, _n: u8, _value: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// Before an access to a debug register: #DB (general detect) if
    /// DR7.GD is set (SDM 18.2.4).
    fn general_detect(&mut self) -> Result<(), Self::Stop> {
        Ok(())
    }

    /// Debug register `n` (0-3, 6 or 7: the executor resolves DR4/DR5).
    fn dr(&mut self, _n: u8) -> Result<u64, Self::Stop> {
        Err(self.unsupported())
    }

    /// Stores `value` in debug register `n` (the executor has applied the
    /// fixed bits of DR6 and DR7).
    fn set_dr(&mut self, _n: u8, _value: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// GDTR or IDTR.
    fn descriptor_table(&mut self, _which: DescriptorTableKind) -> Result<DescriptorTable, Self::Stop> {
        Err(self.unsupported())
    }

    fn set_descriptor_table(&mut self, _which: DescriptorTableKind, _t: DescriptorTable) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// INVLPG of the page holding `offset` in segment `seg`.
    fn invlpg(&mut self, _op: &Op, _seg: Seg, _offset: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// SWAPGS: exchange the GS base with IA32_KERNEL_GS_BASE.
    fn swapgs(&mut self) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// CLTS: clear CR0.TS.
    fn clts(&mut self) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// CLFLUSH, CLFLUSHOPT of the line holding `offset` in `seg`: the
    /// address is translated (it may fault) and nothing is read.
    fn flush_line(&mut self, _seg: Seg, _offset: u64) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// VMCALL: exit to the hypervisor, which completes the instruction.
    fn vmcall(&mut self, _op: &Op) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    // ---- Hooks: transactional memory (SDM Vol. 1 ch. 16) ----

    /// XBEGIN with its fallback address: open (or nest) a transaction. An
    /// implementation that aborts instead leaves RIP at the fallback and
    /// no transaction open.
    fn xbegin(&mut self, _fallback: u64) {}

    /// XEND: commit the outermost transaction (#GP outside one).
    fn xend(&mut self) -> Result<(), Self::Stop> {
        Err(self.unsupported())
    }

    /// Abort the open transaction with `status` in EAX (RIP to the
    /// fallback).
    fn xabort(&mut self, _status: u32) {}

    /// Whether a transaction is open.
    fn in_transaction(&self) -> bool {
        false
    }
}

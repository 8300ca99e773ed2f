//! The core's operating mode and what it makes of the segment registers
//! (SDM Vol. 3A 2.2, ch. 3, 9.8-9.9): real, protected, compatibility and
//! 64-bit mode, the transitions CR0.PE/PG, CR4.PAE and EFER.LME/LMA make
//! (with the SDM's #GP checks), the PAE page-directory-pointer registers,
//! and the linear address of a segment and offset. The fast path reads
//! one precomputed [`View`]: in 64-bit mode an access adds a base from a
//! six-entry array and checks nothing, as before segmentation existed;
//! outside it the segment's limit and type are checked.

use super::{Core, Running, Stop};
use exitlab_arch::bits::{cr0, cr4, efer, rflags};
use exitlab_arch::Segment;
use exitlab_x86::segment::check_access;
use exitlab_x86::{Mode, Seg};

/// The paging structure the MMU walks (SDM Vol. 3A 4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// CR0.PG clear: linear = physical.
    Off,
    /// 32-bit paging: two levels of 4-byte entries, 4 MiB pages with
    /// CR4.PSE.
    Bits32,
    /// PAE paging: four PDPTE registers, then two levels.
    Pae,
    /// 4-level paging (IA-32e mode).
    Level4,
}

/// What the mode makes of the registers, recomputed whenever CR0, CR4,
/// EFER, CS or SS change ([`Core::refresh`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub mode: Mode,
    /// 64-bit mode: offsets need no checks and no 4 GiB wrap.
    pub flat: bool,
    /// The base each segment register adds (in 64-bit mode only FS's and
    /// GS's are not 0).
    pub base: [u64; 6],
    /// The current privilege level: 0 in real mode, else SS.DPL (SDM
    /// Vol. 3C 26.3.1.2 keeps it equal to CS.RPL).
    pub cpl: u8,
    /// The decoder's default: 16, 32 or 64 (CS.D, CS.L).
    pub code_bits: u32,
    /// The stack-address size: 2, 4 or 8 bytes.
    pub stack_size: u8,
    pub paging: Paging,
}

impl View {
    /// The view of 64-bit mode with flat segments (before the first
    /// [`Core::refresh`]).
    pub const LONG: View = View {
        mode: Mode::Long,
        flat: true,
        base: [0; 6],
        cpl: 0,
        code_bits: 64,
        stack_size: 8,
        paging: Paging::Level4,
    };
}

impl Core {
    pub fn cs(&self) -> &Segment {
        &self.seg[Seg::Cs as usize]
    }

    pub fn ss(&self) -> &Segment {
        &self.seg[Seg::Ss as usize]
    }

    /// Recomputes the [`View`] from CR0, CR4, EFER, RFLAGS.VM, CS and SS.
    pub fn refresh(&mut self) {
        let lma = self.efer & efer::LMA != 0;
        let (cs, ss) = (*self.cs(), *self.ss());
        let mode = if self.cr0 & cr0::PE == 0 {
            Mode::Real
        } else if lma && cs.l {
            Mode::Long
        } else if lma {
            Mode::Compatibility
        } else if self.rflags_rest & rflags::VM != 0 {
            Mode::Virtual8086
        } else {
            Mode::Protected
        };
        let flat = mode == Mode::Long;
        let mut base = [0; 6];
        for (b, s) in base.iter_mut().zip(&self.seg) {
            *b = s.base;
        }
        if flat {
            base[..4].fill(0);
        }
        self.view = View {
            mode,
            flat,
            base,
            cpl: match mode {
                Mode::Real => 0,
                Mode::Virtual8086 => 3,
                _ => ss.dpl,
            },
            code_bits: if flat {
                64
            } else if cs.db {
                32
            } else {
                16
            },
            stack_size: if flat {
                8
            } else if ss.db {
                4
            } else {
                2
            },
            paging: if self.cr0 & cr0::PG == 0 {
                Paging::Off
            } else if lma {
                Paging::Level4
            } else if self.cr4 & cr4::PAE != 0 {
                Paging::Pae
            } else {
                Paging::Bits32
            },
        };
    }

    /// Loads segment register `seg` and recomputes the view.
    pub fn set_segment(&mut self, seg: Seg, s: Segment) {
        self.seg[seg as usize] = s;
        self.refresh();
    }
}

/// Why a control-register or EFER value is refused: #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// CR4 bits this core implements; the others are reserved (#GP). LA57,
/// VMXE, SMXE, PCIDE, FSGSBASE, SMEP, SMAP and PKE name features the
/// model lacks; OSXSAVE enables the XSAVE family CPUID advertises.
pub const CR4_KNOWN: u64 = cr4::VME
    | cr4::PVI
    | cr4::TSD
    | cr4::DE
    | cr4::PSE
    | cr4::PAE
    | cr4::MCE
    | cr4::PGE
    | cr4::PCE
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT
    | cr4::UMIP
    | cr4::OSXSAVE;

impl Core {
    /// The checks of a CR0 load and the EFER it leaves: bits 63:32 and PG
    /// without PE are #GP, as are NW without CD, turning paging on with
    /// EFER.LME but without CR4.PAE (or from a 64-bit CS), and turning it
    /// off in 64-bit mode.
    pub fn cr0_transition(&self, v: u64) -> Result<u64, Refused> {
        if v >> 32 != 0 || (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) {
            return Err(Refused);
        }
        let paging_on = v & cr0::PG != 0 && self.cr0 & cr0::PG == 0;
        let paging_off = v & cr0::PG == 0 && self.cr0 & cr0::PG != 0;
        let mut efer = self.efer;
        if paging_on && efer & efer::LME != 0 {
            if self.cr4 & cr4::PAE == 0 || self.cs().l {
                return Err(Refused);
            }
            efer |= efer::LMA;
        }
        if paging_off && efer & efer::LMA != 0 {
            if self.view.mode == Mode::Long {
                return Err(Refused);
            }
            efer &= !efer::LMA;
        }
        Ok(efer)
    }

    /// The checks of a CR4 load: reserved bits, and clearing PAE in IA-32e
    /// mode.
    pub fn cr4_check(&self, v: u64) -> Result<(), Refused> {
        if v & !CR4_KNOWN != 0 || (self.efer & efer::LMA != 0 && v & cr4::PAE == 0) {
            return Err(Refused);
        }
        Ok(())
    }
}

impl Running<'_> {
    /// MOV to CR0 (SDM Vol. 2B "MOV (control registers)", Vol. 3A 9.8.5):
    /// applies `v` after [`Core::cr0_transition`]'s checks. Paging on with
    /// LME activates IA-32e mode (EFER.LMA); off, deactivates it; PAE
    /// paging loads the PDPTEs. `Err` when refused (#GP).
    pub fn set_cr0(&mut self, v: u64) -> Result<(), Refused> {
        let efer = self.core.cr0_transition(v)?;
        let core = &*self.core;
        let pae_now = v & cr0::PG != 0 && core.cr4 & cr4::PAE != 0 && efer & efer::LMA == 0;
        let paging_on = v & cr0::PG != 0 && core.cr0 & cr0::PG == 0;
        if pae_now && (paging_on || (v ^ core.cr0) & (cr0::CD | cr0::NW) != 0) {
            self.load_pdptes(self.core.cr3)?;
        }
        let core = &mut *self.core;
        core.cr0 = v | cr0::ET;
        core.efer = efer;
        core.tlb.flush();
        core.refresh();
        Ok(())
    }

    /// MOV to CR4 after [`Core::cr4_check`]; a PAE, PGE or PSE change
    /// under PAE paging reloads the PDPTEs.
    pub fn set_cr4(&mut self, v: u64) -> Result<(), Refused> {
        self.core.cr4_check(v)?;
        let core = &*self.core;
        let pae_paging = core.cr0 & cr0::PG != 0 && v & cr4::PAE != 0 && core.efer & efer::LMA == 0;
        let pdpte_bits = cr4::PAE | cr4::PGE | cr4::PSE;
        if pae_paging && (v ^ core.cr4) & pdpte_bits != 0 {
            self.load_pdptes(self.core.cr3)?;
        }
        let core = &mut *self.core;
        core.cr4 = v;
        core.tlb.flush();
        core.refresh();
        Ok(())
    }

    /// MOV to CR3: in PAE paging the four PDPTEs load from the 32-byte
    /// aligned table it names.
    pub fn set_cr3(&mut self, v: u64) -> Result<(), Refused> {
        if self.core.view.paging == Paging::Pae {
            self.load_pdptes(v)?;
        }
        self.core.cr3 = v;
        self.core.tlb.flush();
        Ok(())
    }

    /// Loads the PAE PDPTE registers from the table at CR3 bits 31:5 (SDM
    /// Vol. 3A 4.4.1): a present entry with reserved bits set (2:1, 8:5,
    /// above the physical-address width) is #GP.
    fn load_pdptes(&mut self, cr3: u64) -> Result<(), Refused> {
        let table = cr3 & 0xffff_ffe0;
        let mut pdpte = [0u64; 4];
        for (i, e) in pdpte.iter_mut().enumerate() {
            let gpa = table + i as u64 * 8;
            let Ok((addr, _)) = self.ept(gpa, super::mmu::Access::Read, None, false) else { return Err(Refused) };
            let mut b = [0u8; 8];
            if !self.machine.ram.read(addr, &mut b) {
                return Err(Refused);
            }
            *e = u64::from_le_bytes(b);
            let reserved = 0x1e6 | 0xfff0_0000_0000_0000;
            if *e & 1 != 0 && *e & reserved != 0 {
                return Err(Refused);
            }
        }
        self.core.pdpte = pdpte;
        Ok(())
    }

    /// The linear address of `offset` in `seg` for an access of `size`
    /// bytes outside 64-bit mode: the segment's checks, a 4 GiB wrap. Real
    /// mode checks only the limit.
    #[cold]
    pub fn checked_linear(&mut self, seg: Seg, offset: u64, size: u8, write: bool) -> Result<u64, Stop> {
        let s = self.core.seg[seg as usize];
        let r = if matches!(self.core.view.mode, Mode::Real | Mode::Virtual8086) {
            let last = offset.wrapping_add(u64::from(size) - 1);
            if last <= u64::from(s.limit) && last >= offset {
                Ok(s.base.wrapping_add(offset) & 0xffff_ffff)
            } else if seg == Seg::Ss {
                Err(exitlab_x86::Exception::ss(0))
            } else {
                Err(exitlab_x86::Exception::gp(0))
            }
        } else {
            check_access(&s, seg, offset, size, write)
        };
        r.map_err(|e| exitlab_x86::Cpu::exception(self, e))
    }

    /// The linear address of an instruction at `rip`: CS.base + EIP
    /// outside 64-bit mode, where EIP must be inside CS's limit (#GP(0)).
    #[inline(always)]
    pub fn fetch_linear(&mut self, rip: u64) -> Result<u64, Stop> {
        if self.core.view.flat {
            return Ok(rip);
        }
        let cs = *self.core.cs();
        if rip > u64::from(cs.limit) {
            return Err(self.raise(super::Event::gp(0)));
        }
        Ok(cs.base.wrapping_add(rip) & 0xffff_ffff)
    }
}

//! Linear-to-physical translation (SDM Vol. 3A ch. 4: no paging, 32-bit
//! paging with 4 MiB pages, PAE paging, 4-level paging) with accessed/
//! dirty bits and #PF error codes, a software TLB with the architecture's
//! staleness (entries live until CR3 writes, mode changes or INVLPG), and
//! the physical access paths: RAM, the local APIC page, and MMIO exits.

use super::event::Event;
use super::{Core, Paging, Replayed, Running, Stop};
use crate::ram::PAGE;
use exitlab_arch::bits::{cr0, efer, ept, pf_error, pte};
use exitlab_arch::vmx::EPTP_AD;
use exitlab_arch::{EptViolationQual, ExitReason};
use exitlab_hv::{MmioExit, VmExit};

/// The kind of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// Virtual page number + 1 (0: empty).
    tag: u64,
    /// Physical page base.
    frame: u64,
    writable: bool,
    user: bool,
    exec: bool,
    /// The leaf's dirty bit is set (a write may skip the walk).
    dirty: bool,
}

const TLB_ENTRIES: usize = 256;

/// The TLB slot of a virtual page number: folded so that pages 1 MiB or
/// more apart (code at 1 MiB, MMIO at 3.25 GiB) do not collide.
#[inline(always)]
fn slot(vpn: u64) -> usize {
    ((vpn ^ (vpn >> 8) ^ (vpn >> 16)) as usize) % TLB_ENTRIES
}

/// A direct-mapped, 256-entry TLB of 4 KiB translations.
#[derive(Clone, Debug)]
pub struct Tlb {
    e: Box<[Entry; TLB_ENTRIES]>,
    /// Changes whenever an entry is filled or flushed: while it stays the
    /// same, every lookup answers as it did (what lets a chained block
    /// skip its successor's fetch translation, `cpu::chain`).
    generation: u64,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb { e: Box::new([Entry::default(); TLB_ENTRIES]), generation: 0 }
    }
}

impl Tlb {
    pub fn flush(&mut self) {
        self.e.fill(Entry::default());
        self.generation += 1;
    }

    pub fn flush_page(&mut self, lin: u64) {
        let vpn = lin >> 12;
        let e = &mut self.e[slot(vpn)];
        if e.tag == vpn + 1 {
            *e = Entry::default();
        }
        self.generation += 1;
    }

    /// The translation of virtual page `vpn`, replacing its slot's entry.
    fn fill(&mut self, vpn: u64, e: Entry) {
        self.e[slot(vpn)] = e;
        self.generation += 1;
    }

    /// See [`Tlb::generation`].
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn canonical(lin: u64) -> bool {
    ((lin as i64) << 16 >> 16) as u64 == lin
}

/// A #PF error code (SDM Vol. 3A 4.7): P for a protection violation, W,
/// U, and I for a fetch where the paging mode has execute-disable.
fn pf_code(present: bool, access: Access, user: bool, nx: bool) -> u32 {
    let mut code = 0;
    if present {
        code |= pf_error::P;
    }
    if access == Access::Write {
        code |= pf_error::W;
    }
    if user {
        code |= pf_error::U;
    }
    if access == Access::Fetch && nx {
        code |= pf_error::I;
    }
    code as u32
}

impl Core {
    /// `lin`'s physical address if the TLB holds a translation that allows
    /// the access (a write also needs the leaf's dirty bit already set);
    /// `None` where [`Running::translate`] would walk. Changes nothing.
    #[inline(always)]
    pub fn tlb_hit(&self, lin: u64, access: Access, user: bool) -> Option<u64> {
        let vpn = lin >> 12;
        let e = &self.tlb.e[slot(vpn)];
        let allowed = e.tag == vpn + 1
            && (!user || e.user)
            && match access {
                Access::Read => true,
                Access::Write => e.dirty && (e.writable || (!user && self.cr0 & cr0::WP == 0)),
                Access::Fetch => e.exec,
            };
        allowed.then_some(e.frame | (lin & 0xfff))
    }
}

impl Running<'_> {
    /// Translates `lin` for an access of `size` bytes at privilege `user`.
    #[inline(always)]
    pub fn translate(&mut self, lin: u64, access: Access, user: bool, size: u8) -> Result<u64, Stop> {
        match self.core.tlb_hit(lin, access, user) {
            Some(phys) => Ok(phys),
            None => self.miss(lin, access, user, size),
        }
    }

    /// A TLB miss: the walk, then, while a data breakpoint is armed, the
    /// match (pages it watches never enter the TLB, so every access to
    /// them comes here).
    fn miss(&mut self, lin: u64, access: Access, user: bool, size: u8) -> Result<u64, Stop> {
        let phys = self.walk(lin, access, user)?;
        if self.core.bp.data() {
            self.watch(lin, size, access);
        }
        Ok(phys)
    }

    /// A paging-structure entry of `size` bytes (8, or 4 in 32-bit paging).
    fn read_pte(&self, addr: u64, size: usize) -> Option<u64> {
        let mut b = [0u8; 8];
        self.machine.ram.read(addr, &mut b[..size]).then(|| u64::from_le_bytes(b))
    }

    fn write_pte(&mut self, addr: u64, v: u64, size: usize) {
        self.machine.write(addr, &v.to_le_bytes()[..size]);
    }

    /// Without paging, a linear address is guest-physical (SDM Vol. 3A
    /// 4.1.1); it still goes through the EPT.
    fn unpaged(&mut self, lin: u64, access: Access) -> Result<u64, Stop> {
        let (hpa, perms) = self.ept(lin, access, Some(lin), true)?;
        let frame = hpa & !0xfff;
        let vpn = lin >> 12;
        self.core.tlb.fill(
            vpn,
            Entry {
                tag: vpn + 1,
                frame,
                writable: perms & ept::W != 0,
                user: true,
                exec: perms & ept::X != 0,
                dirty: true,
            },
        );
        Ok(frame | (lin & 0xfff))
    }

    /// The page walk of the current paging mode, setting A (and D on
    /// writes) as it goes; with EPT off, a lookup in the VMM's shadow page
    /// table instead (the VMM follows the guest's mode when it fills it).
    fn walk(&mut self, lin: u64, access: Access, user: bool) -> Result<u64, Stop> {
        if !canonical(lin) {
            return Err(self.raise(Event::gp(0)));
        }
        self.core.stats.tlb_misses += 1;
        if !self.core.controls.enable_ept {
            return self.shadow_walk(lin, access, user);
        }
        self.core.stats.page_walks += 1;
        // 32-bit paging has 4-byte entries, 10 index bits per level, no NX
        // and 4 MiB pages under CR4.PSE; PAE starts from a PDPTE register.
        let (mut table, mut level, wide) = match self.core.view.paging {
            Paging::Off => return self.unpaged(lin, access),
            Paging::Level4 => (self.core.cr3 & pte::ADDR_MASK, 4, true),
            Paging::Bits32 => (self.core.cr3 & 0xffff_f000, 2, false),
            Paging::Pae => {
                let e = self.core.pdpte[((lin >> 30) & 3) as usize];
                if e & pte::P == 0 {
                    let nxe = self.core.efer & efer::NXE != 0;
                    let code = pf_code(false, access, user, nxe);
                    return Err(self.raise(Event::page_fault(code, lin)));
                }
                (e & pte::ADDR_MASK, 2, true)
            }
        };
        let nxe = wide && self.core.efer & efer::NXE != 0;
        let pse = self.core.cr4 & exitlab_arch::bits::cr4::PSE != 0;
        let (mut writable, mut usr, mut exec) = (true, true, true);
        let write = access == Access::Write;
        let fault = |present: bool| Event::page_fault(pf_code(present, access, user, nxe), lin);
        let entry = if wide { 8 } else { 4 };
        loop {
            self.core.cycles += self.core.costs.walk_step;
            let shift = if wide { 12 + 9 * (level - 1) } else { 12 + 10 * (level - 1) };
            let index = (lin >> shift) & if wide { 511 } else { 1023 };
            // The entry's address is guest-physical: it goes through the
            // EPT too (the second dimension of the walk).
            let gpa = table + index * entry as u64;
            let (addr, _) = self.ept(gpa, Access::Read, Some(lin), false)?;
            let Some(mut e) = self.read_pte(addr, entry) else { return Err(self.raise(fault(false))) };
            if e & pte::P == 0 {
                return Err(self.raise(fault(false)));
            }
            writable &= e & pte::RW != 0;
            usr &= e & pte::US != 0;
            exec &= !(nxe && e & pte::NX != 0);
            let leaf = level == 1 || (e & pte::PS != 0 && if wide { level <= 3 } else { pse });
            let denied = (user && !usr)
                || (write && !writable && (user || self.core.cr0 & cr0::WP != 0))
                || (access == Access::Fetch && !exec);
            if denied {
                return Err(self.raise(fault(true)));
            }
            let mut set = pte::A;
            if leaf && write {
                set |= pte::D;
            }
            if e & set != set {
                e |= set;
                self.write_pte(addr, e, entry);
            }
            if leaf {
                let page_mask = (1u64 << shift) - 1;
                let frame = if wide || level == 1 {
                    e & pte::ADDR_MASK & !page_mask
                } else {
                    // A 4 MiB page: bits 31:22, and PSE-36's 39:32 from bits 20:13.
                    (e & 0xffc0_0000) | ((e >> 13) & 0xff) << 32
                };
                let gpa = frame | (lin & page_mask);
                let (hpa, perms) = self.ept(gpa, access, Some(lin), true)?;
                let frame = hpa & !0xfff;
                let vpn = lin >> 12;
                // The TLB keeps what both dimensions allow.
                self.core.tlb.fill(
                    vpn,
                    Entry {
                        tag: vpn + 1,
                        frame,
                        writable: writable && perms & ept::W != 0,
                        user: usr,
                        exec: exec && perms & ept::X != 0,
                        dirty: e & pte::D != 0,
                    },
                );
                return Ok(frame | (lin & 0xfff));
            }
            table = if wide { e & pte::ADDR_MASK } else { e & 0xffff_f000 };
            level -= 1;
        }
    }

    /// Guest-physical to host-physical through the EPT (SDM 29.3). Every
    /// EPT-structure read costs a walk step. Returns the host-physical
    /// address and the permissions (R, W, X bits) the walk allows.
    ///
    /// A GPA the EPT does not map and that has no RAM behind it is MMIO: it
    /// translates to itself and the access exits as MMIO. A misconfigured
    /// entry (writable but not readable) also means MMIO. Anything else the
    /// EPT does not permit is an EPT_VIOLATION with the SDM qualification.
    pub fn ept(&mut self, gpa: u64, access: Access, lin: Option<u64>, translation: bool) -> Result<(u64, u64), Stop> {
        let eptp = self.core.controls.eptp;
        if !self.core.controls.enable_ept || eptp == 0 {
            return Ok((gpa, ept::R | ept::W | ept::X));
        }
        let ad = eptp & EPTP_AD != 0;
        let mut table = eptp & ept::ADDR_MASK;
        let mut perms = ept::R | ept::W | ept::X;
        let ram = gpa < self.machine.ram.len();
        for level in (1..=4u32).rev() {
            self.core.cycles += self.core.costs.walk_step;
            self.core.stats.ept_steps += 1;
            let shift = 12 + 9 * (level - 1);
            let addr = table + ((gpa >> shift) & 511) * 8;
            let e = self.machine.read_hpa(addr).unwrap_or(0);
            let rwx = e & (ept::R | ept::W | ept::X);
            // Host-physical device space is reached through an EPT leaf
            // only, never by a guest-physical address that aliases it.
            let device_alias = gpa >= crate::iommu::DEVICE_BASE;
            if rwx == 0 {
                if !ram && !device_alias {
                    return Ok((gpa, ept::R | ept::W | ept::X));
                }
                return Err(self.ept_violation(gpa, access, lin, translation, 0));
            }
            if e & ept::W != 0 && e & ept::R == 0 && !device_alias {
                // Misconfigured: the VMM's way of marking MMIO.
                return Ok((gpa, ept::R | ept::W | ept::X));
            }
            perms &= rwx;
            let leaf = level == 1 || (level <= 3 && e & ept::LARGE != 0);
            if ad {
                let mut set = ept::A;
                let dirtying = leaf && access == Access::Write && e & ept::D == 0;
                if dirtying {
                    set |= ept::D;
                    if self.core.controls.enable_pml {
                        self.log_page(gpa)?;
                    }
                }
                if e & set != set {
                    self.machine.write_hpa(addr, e | set);
                }
            }
            if leaf {
                let needed = match access {
                    Access::Read => ept::R,
                    Access::Write => ept::W,
                    Access::Fetch => ept::X,
                };
                if perms & needed == 0 {
                    return Err(self.ept_violation(gpa, access, lin, translation, perms));
                }
                let page_mask = (1u64 << shift) - 1;
                return Ok(((e & ept::ADDR_MASK & !page_mask) | (gpa & page_mask), perms));
            }
            table = e & ept::ADDR_MASK;
        }
        Err(self.ept_violation(gpa, access, lin, translation, 0))
    }

    /// Page-modification logging: append `gpa`'s page to the log, or exit
    /// PML_FULL (before the write) if the log has no room.
    fn log_page(&mut self, gpa: u64) -> Result<(), Stop> {
        let index = self.core.pml_index;
        if index > 511 {
            return Err(self.exit(VmExit::PmlFull));
        }
        let at = self.core.controls.pml_address + u64::from(index) * 8;
        self.machine.write_hpa(at, gpa & !0xfff);
        self.core.pml_index = index.wrapping_sub(1);
        self.core.stats.pml_entries += 1;
        Ok(())
    }

    fn ept_violation(&mut self, gpa: u64, access: Access, lin: Option<u64>, translation: bool, perms: u64) -> Stop {
        let qual = EptViolationQual {
            read: access == Access::Read,
            write: access == Access::Write,
            fetch: access == Access::Fetch,
            readable: perms & ept::R != 0,
            writable: perms & ept::W != 0,
            executable: perms & ept::X != 0,
            gla_valid: lin.is_some(),
            gla_is_translation: lin.is_some() && translation,
        };
        let stop = self.exit(VmExit::EptViolation { gpa, qual });
        self.core.exit_info.guest_physical = Some(gpa);
        self.core.exit_info.guest_linear = lin;
        stop
    }

    /// Translation through the shadow page table: a missing or too weak
    /// entry is a #PF, which the exception bitmap sends to the VMM (a hidden
    /// fault it fixes, or a guest fault it reflects).
    fn shadow_walk(&mut self, lin: u64, access: Access, user: bool) -> Result<u64, Stop> {
        let vpn = lin >> 12;
        self.core.cycles += self.core.costs.walk_step * 4;
        let entry = self.core.shadow.get(&vpn).copied();
        let allowed = entry.is_some_and(|(_, f)| {
            (!user || f.user)
                && match access {
                    Access::Read => true,
                    Access::Write => f.writable || (!user && self.core.cr0 & cr0::WP == 0),
                    Access::Fetch => f.executable,
                }
        });
        let Some((frame, f)) = entry.filter(|_| allowed) else {
            let mut code = 0;
            if entry.is_some() {
                code |= pf_error::P;
            }
            if access == Access::Write {
                code |= pf_error::W;
            }
            if user {
                code |= pf_error::U;
            }
            if access == Access::Fetch && self.core.efer & efer::NXE != 0 {
                code |= pf_error::I;
            }
            return Err(self.raise(Event::page_fault(code as u32, lin)));
        };
        self.core.tlb.fill(
            vpn,
            Entry { tag: vpn + 1, frame, writable: f.writable, user: f.user, exec: f.executable, dirty: true },
        );
        Ok(frame | (lin & 0xfff))
    }

    /// Reads `size` bytes at physical `phys`: RAM, the APIC page, or an
    /// MMIO exit (answered through the replay log).
    pub fn read_phys(&mut self, phys: u64, size: u8) -> Result<u64, Stop> {
        let mut v = [0u8; 8];
        if self.machine.ram.read(phys, &mut v[..usize::from(size)]) {
            return Ok(u64::from_le_bytes(v));
        }
        if let Some(slot) = self.assigned_device(phys) {
            let mut v = [0u8; 8];
            let now = self.core.costs.clock.ns(self.core.cycles);
            self.machine.device_access(slot, phys, &mut v[..usize::from(size)], false, now);
            return Ok(u64::from_le_bytes(v));
        }
        if self.core.apic_page(phys) {
            if !self.core.controls.apic_virtualization {
                return Err(self.exit(VmExit::ApicAccess { offset: (phys & 0xfff) as u16, write: false }));
            }
            let v = self.core.apic.read(phys & 0xff0, self.core.cycles);
            return Ok(u64::from(v) >> ((phys & 3) * 8));
        }
        let reason = self.mmio_reason(phys);
        if !self.core.controls.decode_assist {
            return Err(self.exit(VmExit::MmioEmulate { reason, gpa: phys }));
        }
        self.replayed_read(|| mmio(reason, phys, size, false, 0))
    }

    pub fn write_phys(&mut self, phys: u64, size: u8, v: u64) -> Result<(), Stop> {
        let n = usize::from(size);
        if phys.checked_add(n as u64).is_some_and(|e| e <= self.machine.ram.len()) {
            if self.core.tx.is_some() {
                self.log_write(phys, size)?;
            }
            self.machine.write(phys, &v.to_le_bytes()[..n]);
            return Ok(());
        }
        if let Some(slot) = self.assigned_device(phys) {
            let now = self.core.costs.clock.ns(self.core.cycles);
            self.machine.device_access(slot, phys, &mut v.to_le_bytes()[..n], true, now);
            // The device may have scheduled interrupts: look again.
            self.core.recheck = true;
            return Ok(());
        }
        if self.core.apic_page(phys) {
            if !self.core.controls.apic_virtualization {
                return Err(self.exit(VmExit::ApicAccess { offset: (phys & 0xfff) as u16, write: true }));
            }
            if phys & 0xf == 0 {
                let now = self.core.cycles;
                let offset = phys & 0xff0;
                self.core.apic.write(offset, v as u32, now);
                self.core.recheck = true;
                if !virtualized_apic_write(offset, v as u32) {
                    self.core.apic_write = Some(offset as u16);
                }
            }
            return Ok(());
        }
        let reason = self.mmio_reason(phys);
        if !self.core.controls.decode_assist {
            return Err(self.exit(VmExit::MmioEmulate { reason, gpa: phys }));
        }
        self.replayed_write(|| mmio(reason, phys, size, true, v))
    }

    /// The assigned device (passthrough, behind the IOMMU) whose registers
    /// hold host-physical `phys`: reached with no exit.
    fn assigned_device(&self, phys: u64) -> Option<usize> {
        if phys < crate::iommu::DEVICE_BASE || !self.core.controls.enable_ept {
            return None;
        }
        self.machine.iommu.device_at(phys)
    }

    /// How an MMIO access reaches the VMM: with EPT, the MMIO range is
    /// misconfigured in the EPT (EPT_MISCONFIG); under shadow paging the
    /// shadow entry is reserved, so the access is a #PF the VMM traps
    /// (EXCEPTION_NMI), as KVM arranges both.
    fn mmio_reason(&self, gpa: u64) -> ExitReason {
        let c = &self.core.controls;
        if !c.enable_ept {
            return ExitReason::ExceptionNmi;
        }
        if c.eptp == 0 {
            return ExitReason::EptMisconfig;
        }
        // Misconfigured somewhere on the walk, or simply not mapped.
        let mut table = c.eptp & ept::ADDR_MASK;
        for level in (1..=4u32).rev() {
            let e = self.machine.read_hpa(table + ((gpa >> (12 + 9 * (level - 1))) & 511) * 8).unwrap_or(0);
            if e & ept::W != 0 && e & ept::R == 0 {
                return ExitReason::EptMisconfig;
            }
            if e & (ept::R | ept::W | ept::X) == 0 {
                break;
            }
            table = e & ept::ADDR_MASK;
        }
        ExitReason::EptViolation
    }

    /// A read the VMM answers: from the replay log if this instruction
    /// already exited for it, else a new exit.
    pub fn replayed_read(&mut self, exit: impl FnOnce() -> VmExit) -> Result<u64, Stop> {
        let r = &mut self.core.replay;
        if let Some(&Replayed::Read(v)) = r.log.get(r.pos) {
            r.pos += 1;
            return Ok(v);
        }
        r.log.push(Replayed::Read(u64::MAX));
        Err(self.exit(exit()))
    }

    pub fn replayed_write(&mut self, exit: impl FnOnce() -> VmExit) -> Result<(), Stop> {
        let r = &mut self.core.replay;
        if r.log.get(r.pos) == Some(&Replayed::Write) {
            r.pos += 1;
            return Ok(());
        }
        r.log.push(Replayed::Write);
        Err(self.exit(exit()))
    }

    /// Reads `size` bytes at linear `lin` (a page-crossing access translates
    /// both pages before touching either).
    #[inline(always)]
    pub fn read_linear(&mut self, lin: u64, size: u8, user: bool) -> Result<u64, Stop> {
        if (lin & 0xfff) + u64::from(size) <= PAGE {
            let phys = self.translate(lin, Access::Read, user, size)?;
            return self.read_phys(phys, size);
        }
        let mut v = 0u64;
        let split = (PAGE - (lin & 0xfff)) as u8;
        let first = self.translate(lin, Access::Read, user, split)?;
        let second = self.translate((lin | 0xfff).wrapping_add(1), Access::Read, user, size - split)?;
        for i in 0..size {
            let phys = if i < split { first + u64::from(i) } else { second + u64::from(i - split) };
            v |= self.read_phys(phys, 1)? << (8 * i);
        }
        Ok(v)
    }

    #[inline(always)]
    pub fn write_linear(&mut self, lin: u64, size: u8, v: u64, user: bool) -> Result<(), Stop> {
        if (lin & 0xfff) + u64::from(size) <= PAGE {
            let phys = self.translate(lin, Access::Write, user, size)?;
            return self.write_phys(phys, size, v);
        }
        let split = (PAGE - (lin & 0xfff)) as u8;
        let first = self.translate(lin, Access::Write, user, split)?;
        let second = self.translate((lin | 0xfff).wrapping_add(1), Access::Write, user, size - split)?;
        for i in 0..size {
            let phys = if i < split { first + u64::from(i) } else { second + u64::from(i - split) };
            self.write_phys(phys, 1, v >> (8 * i))?;
        }
        Ok(())
    }

    /// A read with the current privilege.
    #[inline(always)]
    pub fn load(&mut self, lin: u64, size: u8) -> Result<u64, Stop> {
        let user = self.core.cpl() == 3;
        self.read_linear(lin, size, user)
    }

    #[inline(always)]
    pub fn store(&mut self, lin: u64, size: u8, v: u64) -> Result<(), Stop> {
        let user = self.core.cpl() == 3;
        self.write_linear(lin, size, v, user)
    }
}

fn mmio(reason: ExitReason, gpa: u64, size: u8, is_write: bool, data: u64) -> VmExit {
    VmExit::Mmio { reason, access: MmioExit { gpa, size, is_write, data } }
}

/// Whether APIC virtualization (APIC-register virtualization with
/// virtual-interrupt delivery) completes a write to local-APIC register
/// `offset` without an exit: TPR, EOI, ICR high, and an ICR-low write that
/// is a fixed self-IPI with vector 16 or above (self-IPI virtualization).
/// Any other write — the timer's registers, the LVTs, SVR — lands on the
/// virtual-APIC page and is followed by a trap-like APIC_WRITE exit for
/// the VMM to emulate its effect (SDM Vol. 3C, "APIC-Write Emulation";
/// Bochs cpu/vapic.cc does the same).
fn virtualized_apic_write(offset: u64, value: u32) -> bool {
    use exitlab_arch::bits::apic;
    match offset {
        apic::TPR | apic::EOI | apic::ICR_HIGH => true,
        // Reserved bits, trigger mode, delivery status and delivery mode 0;
        // destination shorthand 01b (self).
        apic::ICR_LOW => value & 0xfff3_b700 == 0 && (value >> 18) & 3 == 1 && value & 0xff >= 16,
        _ => false,
    }
}

//! Watching guest writes to a range of guest-physical memory (E7's
//! introspection), two ways:
//!
//! - write protection: the range loses EPT write permission; each write is
//!   an EPT_VIOLATION; the VMM logs it, gives the page write permission
//!   back, lets the one write complete under the monitor trap flag, and
//!   takes the permission away again at the MONITOR_TRAP_FLAG exit. Every
//!   write is seen, at two exits each.
//! - page-modification logging: the range stays writable (in 4 KiB EPT
//!   leaves, so each page has its own dirty flag); the CPU logs the first
//!   write to each page and exits only when its 512-entry log is full. The
//!   VMM harvests the log, clears the dirty flags it reported and resets
//!   the index: it sees the first write per page per harvest.
//!
//! On KVM, whose EPT the VMM does not write, a VMM watches through memory
//! slots instead ([`watch_slot`]): write protection is a read-only slot
//! (each write an MMIO exit to userspace, completed by a
//! [`crate::devices::WriteLog`]), and logging is KVM's dirty-page log (no
//! exit to userspace; KVM write-protects the pages itself and logs the
//! first write to each, harvested at each phase boundary).

use crate::ept::{Ept, RWX};
use crate::run::VmmError;
use exitlab_arch::bits::ept;
use exitlab_arch::vmx::Controls;
use exitlab_hv::{HvError, Vcpu, Vm};

/// How the VMM records writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    WriteProtect,
    Pml,
}

/// The monitor's state and what it saw.
#[derive(Clone, Debug)]
pub struct Monitor {
    pub kind: Kind,
    pub start: u64,
    pub len: u64,
    pml_page: u64,
    stepping: Option<u64>,
    /// Every write (write-protect) or page (PML) recorded, as guest-physical
    /// page addresses, in order.
    pub log: Vec<u64>,
}

/// Parses an image's `watch` request: `0xSTART+0xLEN`.
pub fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('+')?;
    let num = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    Some((num(a)?, num(b)?))
}

impl Monitor {
    /// Sets the range up in `ept` and `controls`.
    pub fn new<V: Vm>(
        vm: &mut V,
        ept: &mut Ept,
        controls: &mut Controls,
        kind: Kind,
        start: u64,
        len: u64,
    ) -> Result<Monitor, VmmError> {
        let mut pml_page = 0;
        match kind {
            Kind::WriteProtect => ept.protect(vm, start, len, ept::R | ept::X)?,
            Kind::Pml => {
                if !vm.capabilities().pml {
                    return Err(HvError::Backend("this hardware profile has no PML".into()).into());
                }
                ept.protect(vm, start, len, RWX)?;
                pml_page = vm.alloc_host_pages(1)?;
                controls.enable_pml = true;
                controls.pml_address = pml_page;
            }
        }
        Ok(Monitor { kind, start, len, pml_page, stepping: None, log: Vec::new() })
    }

    pub fn covers(&self, gpa: u64) -> bool {
        gpa >= self.start && gpa - self.start < self.len
    }

    /// A write to a protected page: log it and let it through once.
    pub fn write_fault<V: Vm, C: Vcpu>(
        &mut self,
        vm: &mut V,
        vcpu: &mut C,
        ept: &mut Ept,
        controls: &mut Controls,
        gpa: u64,
    ) -> Result<(), VmmError> {
        let page = gpa & !0xfff;
        self.log.push(page);
        ept.protect(vm, page, 4096, RWX)?;
        vcpu.invept()?;
        controls.monitor_trap_flag = true;
        vcpu.set_controls(controls)?;
        self.stepping = Some(page);
        Ok(())
    }

    /// The monitor-trap exit after the write: protect the page again.
    /// Returns whether this exit was the monitor's.
    pub fn stepped<V: Vm, C: Vcpu>(
        &mut self,
        vm: &mut V,
        vcpu: &mut C,
        ept: &mut Ept,
        controls: &mut Controls,
    ) -> Result<bool, VmmError> {
        let Some(page) = self.stepping.take() else { return Ok(false) };
        ept.protect(vm, page, 4096, ept::R | ept::X)?;
        vcpu.invept()?;
        controls.monitor_trap_flag = false;
        vcpu.set_controls(controls)?;
        Ok(true)
    }

    /// Harvests the page-modification log: records its entries, clears the
    /// dirty flags they name, resets the index. Returns the entry count.
    pub fn harvest<V: Vm, C: Vcpu>(&mut self, vm: &mut V, vcpu: &mut C, ept: &mut Ept) -> Result<u32, VmmError> {
        let index = vcpu.pml_index()?;
        // Entries fill from 511 down; the next free one is `index`.
        let first = if index > 511 { 0 } else { u32::from(index) + 1 };
        let mut n = 0;
        for i in (first..512).rev() {
            let mut b = [0u8; 8];
            vm.read_host(self.pml_page + u64::from(i) * 8, &mut b)?;
            let gpa = u64::from_le_bytes(b);
            self.log.push(gpa);
            ept.clear_dirty(vm, gpa)?;
            n += 1;
        }
        vcpu.set_pml_index(511)?;
        vcpu.invept()?;
        Ok(n)
    }
}

/// On a backend without VMX controls (KVM): asks it to watch the image's
/// `watch` range through a memory slot, and puts a [`WriteLog`] over the
/// range when every write will exit. Nothing when the image asks for no
/// monitor.
///
/// [`WriteLog`]: crate::devices::WriteLog
pub fn watch_slot<V: Vm>(vm: &mut V, mmio: &mut crate::bus::Bus, image: &exitlab_guest::Image) -> Result<(), VmmError> {
    let how = match image.requests.get("monitor").map(String::as_str) {
        Some("write-protect") => exitlab_hv::WriteWatch::ReadOnly,
        Some("pml") => exitlab_hv::WriteWatch::DirtyLog,
        _ => return Ok(()),
    };
    let (start, len) = image
        .requests
        .get("watch")
        .and_then(|w| parse_range(w))
        .ok_or_else(|| VmmError::Load("a monitor needs a `watch` range".into()))?;
    vm.watch_writes(start, len, how)?;
    if how == exitlab_hv::WriteWatch::ReadOnly {
        mmio.insert("write-log", start, len, Box::new(crate::devices::WriteLog::new(start)))
            .map_err(|e| VmmError::Load(format!("the watched range {start:#x}+{len:#x}: {e}")))?;
    }
    Ok(())
}

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

use crate::bus::Bus;
use crate::ept::{Ept, RWX};
use crate::error::VmmError;
use exitlab_arch::bits::ept;
use exitlab_arch::vmx::Controls;
use exitlab_guest::machine::{GuestRange, MonitorKind, WriteMonitor};
use exitlab_hv::{HostVm, VmxVcpu, VmxVm, WriteWatch};

/// The monitor's state and what it saw.
#[derive(Clone, Debug)]
pub struct Monitor {
    pub kind: MonitorKind,
    pub start: u64,
    pub len: u64,
    pml_page: u64,
    stepping: Option<u64>,
    /// Every write (write-protect) or page (PML) recorded, as guest-physical
    /// page addresses, in order.
    pub log: Vec<u64>,
}

impl Monitor {
    /// Sets `range` up in `ept` and `controls`. A PML monitor needs
    /// hardware with PML (`Capabilities::pml`), which the caller checks.
    pub fn new<M: VmxVm + ?Sized>(
        vm: &mut M,
        ept: &mut Ept,
        controls: &mut Controls,
        kind: MonitorKind,
        range: GuestRange,
    ) -> Result<Monitor, VmmError> {
        let GuestRange { start, len } = range;
        let mut pml_page = 0;
        match kind {
            MonitorKind::WriteProtect => ept.protect(vm, start, len, ept::R | ept::X)?,
            MonitorKind::Pml => {
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
    pub fn write_fault<M: VmxVm + ?Sized, C: VmxVcpu + ?Sized>(
        &mut self,
        vm: &mut M,
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
    pub fn stepped<M: VmxVm + ?Sized, C: VmxVcpu + ?Sized>(
        &mut self,
        vm: &mut M,
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
    pub fn harvest<M: VmxVm + ?Sized, C: VmxVcpu + ?Sized>(
        &mut self,
        vm: &mut M,
        vcpu: &mut C,
        ept: &mut Ept,
    ) -> Result<u32, VmmError> {
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

/// On a backend whose memory slots the VMM arranges (KVM, without VMX
/// controls of the VMM's): asks it to watch `monitor`'s range through a
/// memory slot, and puts a [`WriteLog`] over the range on the MMIO bus
/// when every write will exit.
///
/// [`WriteLog`]: crate::devices::WriteLog
pub(crate) fn watch_slot(host: &mut dyn HostVm, mmio: &mut Bus, monitor: &WriteMonitor) -> Result<(), VmmError> {
    let how = match monitor.kind {
        MonitorKind::WriteProtect => WriteWatch::ReadOnly,
        MonitorKind::Pml => WriteWatch::DirtyLog,
    };
    let range = monitor.range;
    host.watch_writes(range.start, range.len, how).map_err(|source| VmmError::Watch { range, source })?;
    if how == WriteWatch::ReadOnly {
        let log = Box::new(crate::devices::WriteLog::new(range.start));
        mmio.insert("write-log", range.start, range.len, log)
            .map_err(|e| VmmError::Machine { key: "monitor", message: format!("the watched range {range}: {e}") })?;
    }
    Ok(())
}

//! How devices keep time with the guest, one extension per kind of clock.
//!
//! A backend in virtual time (the simulator) implements [`VirtualClock`]:
//! the VMM's device deadlines and timed interrupts are events in the
//! backend's own clock. A backend in host time (KVM) implements
//! [`HostVm`]: devices run on a thread of the VMM's own, which reaches the
//! guest through the host kernel (irqfds, ioeventfds) while the vCPU runs;
//! its guest memory sits in memory slots the VMM can rearrange.

use crate::error::Result;
use crate::Msi;

/// Sends one interrupt; callable from any thread.
pub type MsiSender = std::sync::Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// Sets the level of an input of the host's interrupt controllers: GSI
/// (ISA IRQ 0-15, IOAPIC-only pins 16-23) and level; callable from any
/// thread.
pub type IrqLineSetter = std::sync::Arc<dyn Fn(u32, bool) -> Result<()> + Send + Sync>;

/// Applies a thread's system-call filter to the thread that calls it:
/// made where the VMM may still allocate and open freely, sent to the
/// thread it is for.
pub type Confine = Box<dyn FnOnce() -> Result<()> + Send>;

/// A backend whose clock is virtual: device work happens at moments of it.
pub trait VirtualClock {
    /// Makes the vCPU's run call return [`crate::HvError::Interrupted`]
    /// once the backend's clock reaches `at_ns` (a device's timer: a packet
    /// arriving from the wire), so the VMM can let its devices work then.
    fn wake_vmm_at(&self, at_ns: u64) -> Result<()>;

    /// Delivers an MSI at a moment of the backend's clock (a device whose
    /// interrupts keep their own time).
    fn signal_msi_at(&self, msi: Msi, at_ns: u64) -> Result<()>;
}

/// A backend in host time whose kernel does I/O work for the VMM (KVM).
pub trait HostVm {
    /// The moment the backend's clock counts from: a device thread reads
    /// the same clock from it.
    fn clock_epoch(&self) -> std::time::Instant;

    /// A way for a device thread to send `msi`: through an irqfd (the
    /// kernel injects it with no userspace on the way) or, with `irqfd`
    /// false, an interrupt-injection call from userspace.
    fn msi_sender(&mut self, msi: Msi, irqfd: bool) -> Result<MsiSender>;

    /// An ioeventfd: guest writes of `datamatch` (32 bits) to MMIO `gpa`
    /// signal the returned eventfd instead of exiting to userspace.
    fn notify_eventfd(&mut self, gpa: u64, datamatch: u32) -> Result<vmm_sys_util::eventfd::EventFd>;

    /// The PC's interrupt controllers and timer in the host kernel, as a
    /// VMM on that kernel would have them: the 8254 PIT on ports
    /// 0x40-0x43 and 0x61 beside the PIC pair and IOAPIC the backend
    /// already has, GSIs routed as on the PC (ISA IRQ n to PIC input n and
    /// IOAPIC pin n; IRQ 0 to pin 2, as the MADT's override says), and a
    /// way for the VMM's own devices to drive those lines.
    fn in_kernel_pc(&mut self) -> Result<IrqLineSetter>;

    /// Takes guest RAM `gpa..gpa+len` out of the guest's view (the memory
    /// slot is split around it): every access there is then MMIO, which
    /// exits to the VMM. The VMM's own view of the memory stays.
    fn unmap(&mut self, gpa: u64, len: u64) -> Result<()>;

    /// Watches guest writes to RAM `gpa..gpa+len` the way a VMM without
    /// EPT of its own does on KVM, through a memory slot of its own:
    /// [`WriteWatch::ReadOnly`] makes every write an MMIO exit the VMM
    /// completes; [`WriteWatch::DirtyLog`] lets writes through and logs the
    /// first to each page, which the backend harvests each time it samples
    /// its counters (`dirty_pages_logged`). Once per VM.
    fn watch_writes(&mut self, gpa: u64, len: u64, how: WriteWatch) -> Result<()>;

    /// The filter of the VMM's device thread: the system calls it makes
    /// once running (a seccomp filter on KVM), for the thread to apply to
    /// itself before its loop; `None` where the VM runs unfiltered
    /// (turned off, or a kernel without seccomp).
    fn device_thread_filter(&self) -> Result<Option<Confine>>;
}

/// How [`HostVm::watch_writes`] watches a range: a read-only memory slot
/// (KVM_MEM_READONLY) or the dirty-page log (KVM_MEM_LOG_DIRTY_PAGES,
/// harvested with KVM_GET_DIRTY_LOG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteWatch {
    /// Every write exits as MMIO; the VMM completes it.
    ReadOnly,
    /// Writes go through; the first to each page is logged.
    DirtyLog,
}

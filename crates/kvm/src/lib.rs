//! The KVM backend: runs exitlab images on the host's /dev/kvm through
//! kvm-ioctls and vm-memory. The only crate that issues ioctls; every
//! `unsafe` block sits at that boundary and says why it is sound.
//!
//! KVM hands userspace only the exits it cannot finish itself (port I/O,
//! MMIO, debug, shutdown); the rest are visible through KVM's binary
//! statistics, which [`KvmVcpu::counters`] reads.

mod kick;
mod sched;
mod seccomp;
mod stats;
mod syscall_names;

use exitlab_arch::{BootState, DescriptorTable, ExitReason, IoQual, Regs, Segment};
use exitlab_hv::{
    Capabilities, Completion, Counter, HostVm, HvError, IoExit, IrqLineSetter, MmioExit, Msi, Result, Unmodelled, Vcpu,
    Vm, VmExit, WriteWatch,
};
use kvm_bindings::{
    kvm_dtable, kvm_fpu, kvm_irq_routing_entry, kvm_msi, kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_segment,
    kvm_userspace_memory_region, CpuId, KvmIrqRouting, Msrs, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_MMIO,
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_CPUID_ENTRIES,
    KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuExit, VcpuFd, VmFd};
pub use sched::Realtime;
pub use seccomp::FORBIDDEN_CALL_STATUS;
pub use stats::StatsFile;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The device exitlab opens unless told otherwise.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// Environment variable naming another KVM device node (tests point it at a
/// path that does not exist to exercise the "no KVM" path).
pub const DEVICE_ENV: &str = "EXITLAB_KVM_DEVICE";

/// KVM's TSS for real-mode emulation must live somewhere unused; this is
/// the address Firecracker and QEMU use, just under the 4 GiB BIOS area.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);

/// The KVM device to use: `$EXITLAB_KVM_DEVICE`, else /dev/kvm.
pub fn device_path() -> PathBuf {
    std::env::var_os(DEVICE_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE))
}

/// Whether KVM can be used here, and if not, why (for tests that must skip
/// with a printed reason rather than fail).
pub fn probe(path: &Path) -> std::result::Result<(), String> {
    open_kvm(path).map(|_| ()).map_err(|e| e.to_string())
}

fn open_kvm(path: &Path) -> Result<Kvm> {
    let unavailable = |why: String| HvError::Unavailable(format!("cannot use KVM device {}: {why}", path.display()));
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| unavailable("path contains NUL".into()))?;
    let kvm =
        Kvm::new_with_path(&c).map_err(|e| unavailable(std::io::Error::from_raw_os_error(e.errno()).to_string()))?;
    if kvm.get_api_version() != 12 {
        return Err(unavailable(format!("KVM API version {} (expected 12)", kvm.get_api_version())));
    }
    Ok(kvm)
}

/// GSIs below this belong to the in-kernel IOAPIC and PIC pins.
const FIRST_MSI_GSI: u32 = 24;

/// The PC's routing of GSIs 0-23 to the in-kernel PIC pair and IOAPIC, as
/// QEMU's `kvm_pc_setup_irq_routing` sets it: ISA IRQ n (0-15, not the
/// cascade line 2) to PIC input n, and GSI n to IOAPIC pin n except GSI 0,
/// which goes to pin 2 (the MADT's interrupt source override for the
/// PIT); GSI 2 has no route.
fn pc_irqchip_routes() -> Vec<kvm_irq_routing_entry> {
    let route = |gsi: u32, chip: u32, pin: u32| {
        let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
        e.u.irqchip.irqchip = chip;
        e.u.irqchip.pin = pin;
        e
    };
    let mut routes = Vec::new();
    for gsi in (0..16).filter(|&g| g != 2) {
        let chip = if gsi < 8 { KVM_IRQCHIP_PIC_MASTER } else { KVM_IRQCHIP_PIC_SLAVE };
        routes.push(route(gsi, chip, gsi % 8));
    }
    routes.push(route(0, KVM_IRQCHIP_IOAPIC, 2));
    routes.extend((1..24).filter(|&g| g != 2).map(|g| route(g, KVM_IRQCHIP_IOAPIC, g)));
    routes
}

fn kvm_msi_of(msi: Msi) -> kvm_msi {
    kvm_msi {
        address_lo: msi.address as u32,
        address_hi: (msi.address >> 32) as u32,
        data: msi.data,
        ..Default::default()
    }
}

/// The error of ioctl `ioctl`, with the errno it returned.
fn backend(ioctl: &'static str) -> impl Fn(kvm_ioctls::Error) -> HvError {
    move |e| HvError::Ioctl { ioctl, errno: e.errno() }
}

/// A KVM virtual machine with guest RAM at guest-physical 0.
pub struct KvmVm {
    kvm: Kvm,
    vm: Arc<VmFd>,
    memory: GuestMemoryMmap,
    /// MSI routes for irqfds, from GSI [`FIRST_MSI_GSI`] up.
    routes: Vec<kvm_irq_routing_entry>,
    /// The PC's routes of GSIs 0-23, once the VMM asked for the PC's
    /// in-kernel devices; KVM's own default routing until then (it is
    /// replaced by the first KVM_SET_GSI_ROUTING).
    irqchip_routes: Vec<kvm_irq_routing_entry>,
    memory_size: u64,
    /// RAM taken out of the guest's view ([`HostVm::unmap`]) or given a
    /// slot of its own ([`HostVm::watch_writes`]), if any.
    hole: Option<(u64, u64)>,
    /// The dirty-logged slot, once there is one, shared with the vCPUs
    /// that harvest it.
    dirty: Arc<OnceLock<DirtyLog>>,
    epoch: Instant,
    /// The wall-clock limit on each vCPU's run calls, from its first.
    time_limit: Option<Duration>,
    /// Whether the run's threads are filtered (`seccomp`).
    jail: seccomp::Jail,
}

/// A memory slot KVM logs writes to, and the pages harvested from it.
struct DirtyLog {
    vm: Arc<VmFd>,
    slot: u32,
    len: u64,
    pages: std::sync::atomic::AtomicU64,
}

impl DirtyLog {
    /// Harvests the log (KVM clears it and protects the pages again) and
    /// returns every page logged so far.
    fn harvest(&self) -> Result<u64> {
        let bitmap = self.vm.get_dirty_log(self.slot, self.len as usize).map_err(backend("KVM_GET_DIRTY_LOG"))?;
        let new: u64 = bitmap.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(self.pages.fetch_add(new, std::sync::atomic::Ordering::Relaxed) + new)
    }
}

/// The memory slot [`HostVm::watch_writes`] gives its range.
const WATCH_SLOT: u32 = 2;

impl KvmVm {
    /// Opens `path`, creates a VM with an in-kernel irqchip (LAPIC, IOAPIC,
    /// PIC) and `memory_size` bytes of RAM.
    pub fn new(path: &Path, memory_size: u64) -> Result<KvmVm> {
        let kvm = open_kvm(path)?;
        let vm = kvm.create_vm().map_err(backend("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDRESS).map_err(backend("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(backend("KVM_CREATE_IRQCHIP"))?;
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), memory_size as usize)])
            .map_err(|e| HvError::Backend(format!("cannot map {memory_size} bytes of guest memory: {e}")))?;
        let vm = KvmVm {
            kvm,
            vm: Arc::new(vm),
            memory,
            routes: Vec::new(),
            irqchip_routes: Vec::new(),
            memory_size,
            hole: None,
            dirty: Arc::default(),
            epoch: Instant::now(),
            time_limit: None,
            jail: seccomp::Jail::default(),
        };
        vm.set_slot(0, 0, memory_size)?;
        Ok(vm)
    }

    /// Limits the run calls of the vCPUs created afterwards to `limit` of
    /// wall-clock time from each one's first: past it, a run call ends
    /// with `HvError::Limit` even while the guest is inside KVM_RUN.
    pub fn set_time_limit(&mut self, limit: Option<Duration>) {
        self.time_limit = limit;
    }

    /// Turns the system-call filters of the run's threads (vCPU, device
    /// thread, watchdog; `seccomp`) on or off for the vCPUs created
    /// afterwards and the device thread. On unless turned off.
    pub fn set_seccomp(&mut self, on: bool) {
        self.jail.on = on;
    }

    /// How many threads of this VM's runs have applied their system-call
    /// filter so far (each vCPU, the device thread, each watchdog).
    pub fn filtered_threads(&self) -> u32 {
        self.jail.applied()
    }

    /// Loads the GSI routing table: the PC's irqchip routes (if asked
    /// for) and the MSI routes of the irqfds.
    fn commit_routes(&self) -> Result<()> {
        let all: Vec<kvm_irq_routing_entry> = self.irqchip_routes.iter().chain(&self.routes).copied().collect();
        let mut table =
            KvmIrqRouting::new(all.len()).map_err(|e| HvError::Backend(format!("irq routing table: {e:?}")))?;
        table.as_mut_slice().copy_from_slice(&all);
        self.vm.set_gsi_routing(&table).map_err(backend("KVM_SET_GSI_ROUTING"))
    }

    /// Maps guest RAM `gpa..gpa+len` into the VM as memory slot `slot`
    /// (`len` 0 deletes the slot).
    fn set_slot(&self, slot: u32, gpa: u64, len: u64) -> Result<()> {
        self.set_slot_flags(slot, gpa, len, 0)
    }

    /// Splits slot 0 around the page-aligned range `gpa..gpa+len` (the part
    /// above it becomes slot 1), once.
    fn split_around(&mut self, gpa: u64, len: u64) -> Result<()> {
        let end = gpa.checked_add(len).filter(|&e| e <= self.memory_size && gpa.is_multiple_of(4096));
        if self.hole.is_some() || end.is_none() || !len.is_multiple_of(4096) || len == 0 {
            return Err(HvError::Backend(format!(
                "can set apart one page-aligned range inside guest memory once, not {gpa:#x}+{len:#x}"
            )));
        }
        // A slot cannot shrink: delete it, then map what stays around the range.
        self.set_slot(0, 0, 0)?;
        self.set_slot(0, 0, gpa)?;
        self.set_slot(1, gpa + len, self.memory_size - gpa - len)?;
        self.hole = Some((gpa, len));
        Ok(())
    }

    /// [`KvmVm::set_slot`] with KVM_MEM_* `flags`.
    fn set_slot_flags(&self, slot: u32, gpa: u64, len: u64, flags: u32) -> Result<()> {
        let host = self
            .memory
            .get_host_address(GuestAddress(gpa))
            .map_err(|e| HvError::Backend(format!("guest memory: {e}")))?;
        if gpa.checked_add(len).is_none_or(|end| end > self.memory_size) {
            return Err(HvError::BadAddress { gpa, len: len as usize });
        }
        let r = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host as u64,
        };
        // SAFETY: `host` is the address of guest-physical `gpa` in the live
        // mapping `self.memory` owns, and `gpa + len` lies inside it (checked
        // above); this KvmVm keeps the mapping alive as long as the VM fd,
        // and so the slot, exists.
        unsafe { self.vm.set_user_memory_region(r) }.map_err(backend("KVM_SET_USER_MEMORY_REGION"))
    }
}

impl Vm for KvmVm {
    type Vcpu = KvmVcpu;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "kvm",
            sees_all_exits: false,
            deterministic_time: false,
            ept: false,
            apicv: true,
            decode_assist: true,
            vpid: false,
            ept_exec_control: false,
            pml: false,
            posted_interrupts: false,
            tsx: false,
            cpu_features: exitlab_arch::cpuid::FeatureSet::EMPTY,
            iommu: false,
            tsc_hz: 0,
            backend_counters: true,
        }
    }

    fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    fn memory_size(&self) -> u64 {
        self.memory_size
    }

    fn write_memory(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.memory.write_slice(data, GuestAddress(gpa)).map_err(|_| HvError::BadAddress { gpa, len: data.len() })
    }

    fn read_memory(&self, gpa: u64, data: &mut [u8]) -> Result<()> {
        let len = data.len();
        self.memory.read_slice(data, GuestAddress(gpa)).map_err(|_| HvError::BadAddress { gpa, len })
    }

    fn create_vcpu(&mut self, id: u32, boot: &BootState) -> Result<KvmVcpu> {
        let fd = self.vm.create_vcpu(u64::from(id)).map_err(backend("KVM_CREATE_VCPU"))?;
        let mut cpuid: CpuId =
            self.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(backend("KVM_GET_SUPPORTED_CPUID"))?;
        for e in cpuid.as_mut_slice() {
            if e.function == 1 {
                // Initial APIC ID in EBX[31:24].
                e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24);
            }
        }
        fd.set_cpuid2(&cpuid).map_err(backend("KVM_SET_CPUID2"))?;

        let mut sregs = fd.get_sregs().map_err(backend("KVM_GET_SREGS"))?;
        sregs.cs = segment(&boot.cs);
        sregs.ds = segment(&boot.ds);
        sregs.es = segment(&boot.es);
        sregs.fs = segment(&boot.fs);
        sregs.gs = segment(&boot.gs);
        sregs.ss = segment(&boot.ss);
        sregs.tr = segment(&boot.tr);
        sregs.ldt = segment(&boot.ldt);
        sregs.gdt = dtable(&boot.gdt);
        sregs.idt = dtable(&boot.idt);
        sregs.cr0 = boot.cr0;
        sregs.cr3 = boot.cr3;
        sregs.cr4 = boot.cr4;
        sregs.efer = boot.efer;
        fd.set_sregs(&sregs).map_err(backend("KVM_SET_SREGS"))?;
        let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
        fd.set_fpu(&fpu).map_err(backend("KVM_SET_FPU"))?;
        fd.set_regs(&to_kvm_regs(&boot.regs)).map_err(backend("KVM_SET_REGS"))?;

        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd
        // or -1; `fd` is a valid vCPU fd.
        let raw = unsafe { vmm_sys_util::ioctl::ioctl(&fd, KVM_GET_STATS_FD()) };
        let stats = if raw >= 0 {
            // SAFETY: `raw` is a fresh fd the kernel just gave us and that
            // nothing else owns; File takes ownership and closes it.
            let file = unsafe { File::from_raw_fd(raw) };
            Some(StatsFile::new(file).map_err(|e| HvError::Backend(format!("KVM stats fd: {e}")))?)
        } else {
            None
        };
        Ok(KvmVcpu {
            id,
            fd,
            stats,
            dirty: self.dirty.clone(),
            epoch: self.epoch,
            time_limit: self.time_limit,
            limit_at: None,
            host_deadline: None,
            kicker: None,
            jail: self.jail.clone(),
            schedstat: None,
        })
    }

    fn signal_msi(&self, msi: Msi) -> Result<()> {
        self.vm.signal_msi(kvm_msi_of(msi)).map(|_| ()).map_err(backend("KVM_SIGNAL_MSI"))
    }

    fn host(&mut self) -> Option<&mut dyn HostVm> {
        Some(self)
    }
}

/// KVM carries device I/O for the VMM: the device thread's clock, irqfds
/// bound to MSI routes, ioeventfds and memory slots.
impl HostVm for KvmVm {
    fn clock_epoch(&self) -> Instant {
        self.epoch
    }

    fn msi_sender(&mut self, msi: Msi, irqfd: bool) -> Result<exitlab_hv::MsiSender> {
        if !irqfd {
            let vm = self.vm.clone();
            let m = kvm_msi_of(msi);
            return Ok(Arc::new(move || vm.signal_msi(m).map(|_| ()).map_err(backend("KVM_SIGNAL_MSI"))));
        }
        // A GSI routed to the MSI, and an eventfd bound to the GSI: a write
        // to the eventfd is the interrupt, injected by KVM itself.
        let gsi = FIRST_MSI_GSI + self.routes.len() as u32;
        let mut entry = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
        entry.u.msi.address_lo = msi.address as u32;
        entry.u.msi.address_hi = (msi.address >> 32) as u32;
        entry.u.msi.data = msi.data;
        self.routes.push(entry);
        self.commit_routes()?;
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| HvError::Backend(format!("eventfd: {e}")))?;
        self.vm.register_irqfd(&fd, gsi).map_err(backend("KVM_IRQFD"))?;
        Ok(Arc::new(move || fd.write(1).map_err(|e| HvError::Backend(format!("irqfd write: {e}")))))
    }

    fn in_kernel_pc(&mut self) -> Result<IrqLineSetter> {
        // The speaker port 0x61 in the kernel too, beside the PIT whose
        // counter 2 it gates (Firecracker's choice).
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        self.vm.create_pit2(pit).map_err(backend("KVM_CREATE_PIT2"))?;
        self.irqchip_routes = pc_irqchip_routes();
        self.commit_routes()?;
        let vm = self.vm.clone();
        Ok(Arc::new(move |gsi, level| vm.set_irq_line(gsi, level).map_err(backend("KVM_IRQ_LINE"))))
    }

    fn unmap(&mut self, gpa: u64, len: u64) -> Result<()> {
        self.split_around(gpa, len)
    }

    fn watch_writes(&mut self, gpa: u64, len: u64, how: WriteWatch) -> Result<()> {
        self.split_around(gpa, len)?;
        let flags = match how {
            WriteWatch::ReadOnly => KVM_MEM_READONLY,
            WriteWatch::DirtyLog => KVM_MEM_LOG_DIRTY_PAGES,
        };
        self.set_slot_flags(WATCH_SLOT, gpa, len, flags)?;
        if how == WriteWatch::DirtyLog {
            let pages = std::sync::atomic::AtomicU64::new(0);
            let log = DirtyLog { vm: self.vm.clone(), slot: WATCH_SLOT, len, pages };
            if self.dirty.set(log).is_err() {
                return Err(HvError::Backend("the VM already has a dirty-logged slot".into()));
            }
        }
        Ok(())
    }

    fn notify_eventfd(&mut self, gpa: u64, datamatch: u32) -> Result<EventFd> {
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| HvError::Backend(format!("eventfd: {e}")))?;
        self.vm.register_ioevent(&fd, &IoEventAddress::Mmio(gpa), datamatch).map_err(backend("KVM_IOEVENTFD"))?;
        Ok(fd)
    }

    fn device_thread_filter(&self) -> Result<Option<exitlab_hv::Confine>> {
        self.jail.filter(seccomp::Role::Device)
    }
}

fn segment(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: u8::from(s.present),
        dpl: s.dpl,
        db: u8::from(s.db),
        s: u8::from(s.s),
        l: u8::from(s.l),
        g: u8::from(s.g),
        avl: u8::from(s.avl),
        unusable: u8::from(!s.present),
        padding: 0,
    }
}

fn dtable(t: &DescriptorTable) -> kvm_dtable {
    kvm_dtable { base: t.base, limit: t.limit, padding: [0; 3] }
}

fn to_kvm_regs(r: &Regs) -> kvm_regs {
    let g = &r.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn from_kvm_regs(k: &kvm_regs) -> Regs {
    Regs {
        gpr: [
            k.rax, k.rcx, k.rdx, k.rbx, k.rsp, k.rbp, k.rsi, k.rdi, k.r8, k.r9, k.r10, k.r11, k.r12, k.r13, k.r14,
            k.r15,
        ],
        rip: k.rip,
        rflags: k.rflags,
    }
}

/// A KVM vCPU.
pub struct KvmVcpu {
    id: u32,
    fd: VcpuFd,
    stats: Option<StatsFile>,
    /// The VM's dirty-logged slot, harvested at each counter sample.
    dirty: Arc<OnceLock<DirtyLog>>,
    epoch: Instant,
    /// The VM's wall-clock limit on this vCPU's run calls, counted from
    /// the first; `limit_at` is when it passes, once running.
    time_limit: Option<Duration>,
    limit_at: Option<Instant>,
    /// The VMM's host-time deadline (`Vcpu::set_host_deadline`).
    host_deadline: Option<Instant>,
    /// The watchdog, armed at the earlier of the two.
    kicker: Option<kick::Kicker>,
    /// Whether this vCPU's threads are filtered.
    jail: seccomp::Jail,
    /// /proc/thread-self/schedstat of the thread that first sampled the
    /// counters (the vCPU's), kept open: a filtered thread cannot open
    /// files. `Some(None)` where the kernel has none.
    schedstat: Option<Option<File>>,
}

impl KvmVcpu {
    /// Arms the watchdog at the earlier of the wall-clock limit and the
    /// VMM's deadline (none when neither is set).
    fn rearm(&mut self) -> Result<()> {
        self.kicker = None;
        let at = match (self.limit_at, self.host_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.kicker = Some(kick::Kicker::arm(at, self.jail.filter(seccomp::Role::Watchdog)?)?);
        }
        Ok(())
    }

    /// Starts the wall-clock limit's count at the first run call (or
    /// before the thread is filtered, which is as close to it).
    fn start_limit(&mut self) -> Result<()> {
        if let (None, Some(limit)) = (self.limit_at, self.time_limit) {
            self.limit_at = Some(Instant::now() + limit);
            self.rearm()?;
        }
        Ok(())
    }

    /// The calling thread's time on a CPU (the first field of
    /// /proc/thread-self/schedstat, ns), read from the file the first call
    /// opened; `None` where the kernel does not keep it.
    fn thread_cpu_ns(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self.schedstat.get_or_insert_with(|| File::open("/proc/thread-self/schedstat").ok()).as_ref()?;
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().next()?.parse().ok()
    }
}

/// The error of a run call that met its wall-clock limit, naming where the
/// guest was.
fn limit_reached(fd: &VcpuFd, limit: Duration) -> HvError {
    let rip = fd.get_regs().map_or("unknown".to_string(), |r| format!("{:#x}", r.rip));
    HvError::Limit(format!("time limit of {} reached (host time) at rip {rip}", show_duration(limit)))
}

/// The size and repeat count of the port I/O exit KVM just reported.
fn io_size_count(fd: &mut VcpuFd) -> (u8, u32) {
    let run = fd.get_kvm_run();
    // SAFETY: called only right after KVM_RUN returned KVM_EXIT_IO, so
    // `io` is the active member of the exit union.
    let io = unsafe { run.__bindgen_anon_1.io };
    (io.size, io.count)
}

impl KvmVcpu {
    /// KVM_EXIT_INTERNAL_ERROR as the VMM reports it. An emulation
    /// failure (suberror 1: KVM's instruction emulator could not run the
    /// instruction at RIP, as happens to ring-0 code on a nested host) is
    /// [`HvError::Unsupported`] with the instruction's bytes, which KVM
    /// hands over since Linux 5.14 (`emulation_failure`).
    fn internal_error(&mut self) -> HvError {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so
        // `emulation_failure` (which shares `internal`'s first fields) is the
        // active member of the exit union.
        let e = unsafe { run.__bindgen_anon_1.emulation_failure };
        if e.suberror != KVM_INTERNAL_ERROR_EMULATION {
            return HvError::Backend(format!("KVM_EXIT_INTERNAL_ERROR, suberror {}", e.suberror));
        }
        let bytes = if e.ndata >= 3 && e.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 {
            // SAFETY: the flag says the instruction bytes are filled in.
            let i = unsafe { e.__bindgen_anon_1.__bindgen_anon_1 };
            i.insn_bytes[..usize::from(i.insn_size).min(15)].to_vec()
        } else {
            Vec::new()
        };
        let (rip, bitness) = match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(r), Ok(s)) => (
                r.rip,
                if s.cs.l != 0 {
                    64
                } else if s.cs.db != 0 {
                    32
                } else {
                    16
                },
            ),
            (Err(e), _) | (_, Err(e)) => return backend("KVM_GET_REGS")(e),
        };
        let mut decoder = iced_x86::Decoder::with_ip(bitness, &bytes, rip, iced_x86::DecoderOptions::NONE);
        let disassembly = if bytes.is_empty() {
            "KVM gave no instruction bytes".to_string()
        } else {
            let mut text = String::new();
            iced_x86::Formatter::format(&mut iced_x86::IntelFormatter::new(), &decoder.decode(), &mut text);
            text
        };
        HvError::Unsupported(Unmodelled { rip, bytes, disassembly, by: "KVM's instruction emulator" })
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VmExit> {
        self.start_limit()?;
        loop {
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR && self.limit_at.is_some_and(|t| Instant::now() >= t) => {
                    return Err(limit_reached(&self.fd, self.time_limit.unwrap_or_default()))
                }
                Err(e) if e.errno() == libc::EINTR && self.kicker.as_ref().is_some_and(|k| k.due()) => {
                    return Err(HvError::Interrupted)
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(backend("KVM_RUN")(e)),
            };
            return Ok(match exit {
                VcpuExit::IoOut(port, data) => {
                    let mut v = [0u8; 4];
                    let n = data.len().min(4);
                    v[..n].copy_from_slice(&data[..n]);
                    let bulk = if data.len() > 4 { data.to_vec() } else { Vec::new() };
                    let (size, count) = io_size_count(&mut self.fd);
                    VmExit::Io(io_exit(port, size, false, count, u32::from_le_bytes(v), bulk))
                }
                VcpuExit::IoIn(port, _) => {
                    let (size, count) = io_size_count(&mut self.fd);
                    VmExit::Io(io_exit(port, size, true, count, 0, Vec::new()))
                }
                VcpuExit::MmioRead(gpa, data) => VmExit::Mmio {
                    reason: ExitReason::EptMisconfig,
                    access: MmioExit { gpa, size: data.len() as u8, is_write: false, data: 0 },
                },
                VcpuExit::MmioWrite(gpa, data) => {
                    let mut v = [0u8; 8];
                    let n = data.len().min(8);
                    v[..n].copy_from_slice(&data[..n]);
                    VmExit::Mmio {
                        reason: ExitReason::EptMisconfig,
                        access: MmioExit { gpa, size: n as u8, is_write: true, data: u64::from_le_bytes(v) },
                    }
                }
                VcpuExit::Hlt => VmExit::Hlt,
                VcpuExit::Shutdown | VcpuExit::SystemEvent(..) => VmExit::Shutdown,
                VcpuExit::Debug(d) => VmExit::Debug { rip: d.pc, dr6: d.dr6 },
                VcpuExit::Intr => continue,
                VcpuExit::FailEntry(reason, cpu) => {
                    return Err(HvError::Backend(format!(
                        "KVM_EXIT_FAIL_ENTRY on cpu {cpu}: hardware entry failure reason {reason:#x}"
                    )))
                }
                VcpuExit::InternalError => return Err(self.internal_error()),
                other => return Err(HvError::Backend(format!("unexpected KVM exit {other:?}"))),
            });
        }
    }

    fn complete(&mut self, answer: Completion<'_>) {
        // KVM answers CPUID and MSR accesses in the kernel; only reads
        // come back to userspace.
        let Completion::Read(data) = answer else { return };
        let run = self.fd.get_kvm_run();
        match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: the last exit was KVM_EXIT_IO, so `io` is the active
                // union member.
                let io = unsafe { run.__bindgen_anon_1.io };
                if io.direction as u32 != KVM_EXIT_IO_IN {
                    return;
                }
                let len = (usize::from(io.size) * io.count as usize).min(data.len());
                let base = (run as *mut kvm_bindings::kvm_run).cast::<u8>();
                // SAFETY: KVM places IN data at `data_offset` inside the vCPU's
                // kvm_run mapping, which is `size * count` bytes long there;
                // we write at most that many and the mapping lives as long as
                // `self.fd`.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(io.data_offset as usize), len) };
            }
            KVM_EXIT_MMIO => {
                // SAFETY: the last exit was KVM_EXIT_MMIO, so `mmio` is the
                // active union member; `len` is at most its 8-byte buffer.
                unsafe {
                    let mmio = &mut run.__bindgen_anon_1.mmio;
                    let len = (mmio.len as usize).min(8).min(data.len());
                    mmio.data[..len].copy_from_slice(&data[..len]);
                }
            }
            _ => {}
        }
    }

    fn halt(&mut self) -> Result<Option<u64>> {
        // With the in-kernel irqchip KVM handles HLT itself; a HLT exit
        // never reaches userspace, so nothing here can wake the vCPU.
        Ok(None)
    }

    fn read_msr(&mut self, msr: u32) -> Result<Option<u64>> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index: msr, ..Default::default() }])
            .map_err(|e| HvError::Backend(format!("KVM_GET_MSRS: {e:?}")))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(backend("KVM_GET_MSRS"))?;
        Ok((n == 1).then(|| msrs.as_slice()[0].data))
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Result<bool> {
        let msrs = Msrs::from_entries(&[kvm_msr_entry { index: msr, data: value, ..Default::default() }])
            .map_err(|e| HvError::Backend(format!("KVM_SET_MSRS: {e:?}")))?;
        let n = self.fd.set_msrs(&msrs).map_err(backend("KVM_SET_MSRS"))?;
        Ok(n == 1)
    }

    fn regs(&mut self) -> Result<Regs> {
        self.fd.get_regs().map(|r| from_kvm_regs(&r)).map_err(backend("KVM_GET_REGS"))
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.fd.set_regs(&to_kvm_regs(regs)).map_err(backend("KVM_SET_REGS"))
    }

    fn counters(&mut self) -> Result<Vec<Counter>> {
        let mut out = match &mut self.stats {
            Some(s) => s.sample().map_err(|e| HvError::Backend(format!("reading KVM stats: {e}")))?,
            None => Vec::new(),
        };
        // The VMM samples counters on the vCPU's own thread.
        if let Some(ns) = self.thread_cpu_ns() {
            out.push(Counter { name: VCPU_THREAD_CPU_NS.into(), value: ns });
        }
        if let Some(d) = self.dirty.get() {
            out.push(Counter { name: DIRTY_PAGES_LOGGED.into(), value: d.harvest()? });
        }
        Ok(out)
    }

    fn tsc_hz(&mut self) -> Result<u64> {
        Ok(u64::from(self.fd.get_tsc_khz().map_err(backend("KVM_GET_TSC_KHZ"))?) * 1000)
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// LINT1 as the KVM_NMI documentation says to emulate it with the
    /// in-kernel irqchip: read the local APIC's LVT LINT1 (KVM_GET_LAPIC)
    /// and issue KVM_NMI only if it is unmasked with NMI delivery. (Fixed
    /// delivery on LINT1 is not modelled: a platform NMI line is wired for
    /// NMI.)
    fn nmi(&mut self) -> Result<()> {
        let lapic = self.fd.get_lapic().map_err(backend("KVM_GET_LAPIC"))?;
        let lvt = &lapic.regs[0x360..0x364];
        let lvt = u32::from_le_bytes([lvt[0] as u8, lvt[1] as u8, lvt[2] as u8, lvt[3] as u8]);
        if lvt & 1 << 16 == 0 && (lvt >> 8) & 7 == 4 {
            self.fd.nmi().map_err(backend("KVM_NMI"))?;
        }
        Ok(())
    }

    /// A watchdog thread kicks KVM_RUN with a signal from `at` on; the
    /// interrupted run returns `Interrupted` (see `kick`).
    fn set_host_deadline(&mut self, at: Option<Instant>) -> Result<()> {
        self.host_deadline = at;
        self.rearm()
    }

    /// The watchdog starts (a filtered thread cannot start one), the
    /// schedstat file opens, then the vCPU filter applies (`seccomp`).
    fn confine_thread(&mut self) -> Result<()> {
        let Some(confine) = self.jail.filter(seccomp::Role::Vcpu)? else { return Ok(()) };
        self.start_limit()?;
        self.thread_cpu_ns();
        confine()
    }
}

/// The counter of host CPU time the calling (vCPU) thread has used, in
/// ns: guest execution, KVM's in-kernel exits and halt polling, and the
/// VMM's handling, everything one VM costs its host core but the device
/// thread's work.
pub const VCPU_THREAD_CPU_NS: &str = "vcpu_thread_cpu_ns";

/// The counter of pages the dirty log recorded, harvested at each sample:
/// a page counts once per harvest however often it was written.
pub const DIRTY_PAGES_LOGGED: &str = "dirty_pages_logged";

fn io_exit(port: u16, size: u8, is_in: bool, count: u32, data: u32, bulk: Vec<u8>) -> IoExit {
    IoExit {
        qual: IoQual { size, is_in, string: count > 1, rep: count > 1, immediate: false, port },
        count,
        data,
        bulk,
    }
}

/// `90s`, `1.5s`, `250ms`: a limit as a user wrote it.
fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

impl AsRawFd for KvmVcpu {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

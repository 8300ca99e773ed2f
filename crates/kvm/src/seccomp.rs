//! System-call filters for the threads of a KVM run, as Firecracker jails
//! its vCPU and device threads: once the VM is set up, each thread may
//! make only the system calls its work needs (seccomp-bpf, built with
//! seccompiler), so a guest that subverts the VMM through a device model
//! or the exit path cannot reach the rest of the kernel's interface. A
//! call outside the list traps (SECCOMP_RET_TRAP): the SIGSYS handler
//! writes one line naming the thread and the call, and ends the process
//! with [`FORBIDDEN_CALL_STATUS`].
//!
//! The lists are what the threads were seen to call under `strace -f`
//! over every KVM workload and test (see DESIGN.md, "seccomp on KVM"),
//! each entry with the work it serves; `ioctl` is allowed only with the
//! KVM requests each thread issues.

use crate::syscall_names::NAMES;
use exitlab_hv::{Confine, HvError, Result};
use kvm_bindings::{kvm_dirty_log, kvm_irq_level, kvm_lapic_state, kvm_msi, kvm_msrs, kvm_regs, kvm_sregs, KVMIO};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, OnceLock};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

/// The exit status of a process a forbidden system call stopped: 128 +
/// SIGSYS, what a shell shows for a process SIGSYS ended.
pub const FORBIDDEN_CALL_STATUS: i32 = 128 + libc::SIGSYS;

// The KVM requests the threads issue (Linux's include/uapi/linux/kvm.h).
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
ioctl_io_nr!(KVM_NMI, KVMIO, 0x9a);
ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);
ioctl_iow_nr!(KVM_IRQ_LINE, KVMIO, 0x61, kvm_irq_level);
ioctl_iow_nr!(KVM_GET_DIRTY_LOG, KVMIO, 0x42, kvm_dirty_log);

/// The threads of a KVM run, each with its own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs KVM_RUN and handles every exit that reaches userspace.
    Vcpu,
    /// The VMM's device thread: timers, ioeventfds, irqfds.
    Device,
    /// The watchdog that kicks KVM_RUN at a deadline (`kick`).
    Watchdog,
}

/// The calls every thread makes (seen on all three unless marked): the
/// allocator, locks and joins, its signal stack and its end, and the
/// SIGSYS report.
const COMMON: &[i64] = &[
    libc::SYS_mprotect, // a thread arena growing
    libc::SYS_munmap,   // freed blocks; the signal stack at the thread's end
    libc::SYS_madvise,  // the thread's stack at its end
    libc::SYS_futex,    // mutexes shared with the other threads, joins
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_exit,
    libc::SYS_write, // eventfds (irqfds, doorbells; not the watchdog's); the SIGSYS report
    // Not seen here, allowed by reading: a new or large block (mmap,
    // mremap: a trace growing past glibc's mmap threshold, 128 KiB); the
    // clock where the vDSO falls back to the kernel (a clock source
    // without a vDSO read); the SIGSYS report's end (exit_group).
    libc::SYS_mmap,
    libc::SYS_mremap,
    libc::SYS_clock_gettime,
    libc::SYS_exit_group,
    // glibc's malloc sizing its arena count (once per process, at a first
    // allocation that finds no arena free once there are eight).
    libc::SYS_sched_getaffinity,
    // glibc's main arena growing or shrinking: a thread that finds every
    // other arena locked allocates from it (seen in `exitlab report`, whose
    // host runs share the process with the simulator's rayon workers).
    libc::SYS_brk,
];

impl Role {
    /// The role's name in the report of a forbidden call.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Vcpu => "vCPU",
            Role::Device => "device",
            Role::Watchdog => "watchdog",
        }
    }

    /// The calls the role makes beside [`COMMON`].
    fn calls(self) -> &'static [i64] {
        match self {
            Role::Vcpu => &[
                libc::SYS_ioctl,        // KVM requests: `ioctls`
                libc::SYS_pread64,      // KVM's binary stats, the thread's schedstat
                libc::SYS_close,        // the vCPU, its stats and eventfds at the end
                libc::SYS_rt_sigreturn, // the end of the kick's handler
            ],
            Role::Device => &[
                libc::SYS_ioctl,           // KVM_SIGNAL_MSI without irqfds
                libc::SYS_epoll_wait,      // the thread's wait
                libc::SYS_read,            // eventfds and the timerfd
                libc::SYS_timerfd_settime, // the next device deadline
                libc::SYS_close,           // its descriptors at its end
            ],
            Role::Watchdog => &[
                libc::SYS_clock_nanosleep, // the sleep to the deadline
                libc::SYS_getpid,          // pthread_kill's tgkill
                libc::SYS_tgkill,          // the kick
            ],
        }
    }

    /// The KVM requests the role's `ioctl` may carry: on the vCPU thread,
    /// those seen (KVM_RUN, KVM_GET_REGS, KVM_GET_MSRS, KVM_GET_TSC_KHZ,
    /// KVM_GET_SREGS, KVM_IRQ_LINE) and those the `Vcpu` methods the VMM
    /// calls in its loop issue (KVM_SET_REGS, KVM_SET_MSRS, KVM_GET_LAPIC
    /// and KVM_NMI for the NMI line, KVM_SIGNAL_MSI, KVM_GET_DIRTY_LOG at
    /// a counter sample); on the device thread, KVM_SIGNAL_MSI.
    fn ioctls(self) -> Vec<u64> {
        match self {
            Role::Vcpu => vec![
                KVM_RUN(),
                KVM_GET_REGS(),
                KVM_SET_REGS(),
                KVM_GET_SREGS(),
                KVM_GET_MSRS(),
                KVM_SET_MSRS(),
                KVM_GET_LAPIC(),
                KVM_NMI(),
                KVM_GET_TSC_KHZ(),
                KVM_SIGNAL_MSI(),
                KVM_IRQ_LINE(),
                KVM_GET_DIRTY_LOG(),
            ],
            Role::Device => vec![KVM_SIGNAL_MSI()],
            Role::Watchdog => Vec::new(),
        }
    }
}

/// A role's filter, compiled: `refuse` makes every `openat` fail with
/// EACCES (glibc's malloc opens /proc/sys/vm/overcommit_memory the first
/// time a thread's heap shrinks, and /sys/devices/system/cpu/online where
/// it cannot size its arenas otherwise, and does without either); `allow`
/// is the role's list, `openat` on it so that the refusal (which takes
/// precedence over an allow, seccomp(2)) decides, everything else off it
/// a trap.
pub(crate) struct Filter {
    role: Role,
    refuse: BpfProgram,
    allow: BpfProgram,
}

fn failed(what: &str) -> impl Fn(seccompiler::Error) -> HvError + '_ {
    move |e| HvError::Backend(format!("seccomp: {what}: {e}"))
}

impl Filter {
    /// The filter of `role`: its calls and [`COMMON`] allowed, `ioctl`
    /// only with the role's requests, anything else a trap.
    pub(crate) fn new(role: Role) -> Result<Filter> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            COMMON.iter().chain(role.calls()).map(|&nr| (nr, Vec::new())).collect();
        if let Some(ioctl) = rules.get_mut(&libc::SYS_ioctl) {
            *ioctl = role
                .ioctls()
                .into_iter()
                .map(|r| {
                    let request = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, r)
                        .map_err(|e| failed("an ioctl condition")(e.into()))?;
                    SeccompRule::new(vec![request]).map_err(|e| failed("an ioctl rule")(e.into()))
                })
                .collect::<Result<Vec<_>>>()?;
        }
        rules.insert(libc::SYS_openat, Vec::new());
        let allow = compile(rules, SeccompAction::Trap, SeccompAction::Allow)?;
        let openat = BTreeMap::from([(libc::SYS_openat, Vec::new())]);
        let refuse = compile(openat, SeccompAction::Allow, SeccompAction::Errno(libc::EACCES as u32))?;
        Ok(Filter { role, refuse, allow })
    }

    /// Applies the filter to the calling thread, for good: from here on a
    /// call outside it ends the process with the report.
    pub(crate) fn apply(&self) -> Result<()> {
        static HANDLER: Once = Once::new();
        let mut registered = Ok(());
        HANDLER.call_once(|| registered = vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys));
        registered.map_err(|e| HvError::Backend(format!("seccomp: registering the SIGSYS handler: {e}")))?;
        ROLE.with(|r| r.set(Some(self.role)));
        // The refusal first: the list does not allow installing another.
        seccompiler::apply_filter(&self.refuse).map_err(failed("applying the openat refusal"))?;
        seccompiler::apply_filter(&self.allow).map_err(failed("applying the filter"))
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram> {
    let filter =
        SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64).map_err(|e| failed("the filter")(e.into()))?;
    BpfProgram::try_from(filter).map_err(|e| failed("compiling the filter")(e.into()))
}

/// Whether a VM's threads are filtered (on unless turned off), and how
/// many of them have applied their filter.
#[derive(Clone, Debug)]
pub(crate) struct Jail {
    pub on: bool,
    applied: Arc<AtomicU32>,
}

impl Default for Jail {
    fn default() -> Jail {
        Jail { on: true, applied: Arc::default() }
    }
}

impl Jail {
    /// The filter of `role`, compiled now, for the thread it is for to
    /// apply to itself; `None` where the VM runs unfiltered.
    pub(crate) fn filter(&self, role: Role) -> Result<Option<Confine>> {
        if !self.on || !available() {
            return Ok(None);
        }
        let filter = Filter::new(role)?;
        let applied = self.applied.clone();
        Ok(Some(Box::new(move || {
            filter.apply()?;
            applied.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })))
    }

    /// How many threads have applied their filter.
    pub(crate) fn applied(&self) -> u32 {
        self.applied.load(Ordering::Relaxed)
    }
}

/// Whether this kernel filters system calls. Asked once; where it does
/// not, one line says so and runs go unfiltered.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: PR_GET_SECCOMP takes no pointer; it returns the calling
        // thread's mode, or fails with EINVAL where the kernel has no seccomp.
        let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
        if mode < 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("exitlab: seccomp: this kernel does not filter system calls ({e}); KVM runs go unfiltered");
        }
        mode >= 0
    })
}

thread_local! {
    /// The calling thread's role, once filtered: what the report names.
    static ROLE: Cell<Option<Role>> = const { Cell::new(None) };
}

/// The fields of a SIGSYS `siginfo_t` (Linux's `_sigsys`: the address of
/// the call, its number and the audit architecture).
#[repr(C)]
struct SigsysInfo {
    _signo: libc::c_int,
    _errno: libc::c_int,
    _code: libc::c_int,
    _call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    _arch: libc::c_uint,
}

/// The report of a forbidden call: "exitlab: seccomp: the vCPU thread made
/// a forbidden system call 41 (socket); the run is stopped", written into
/// `buf` without allocating (the handler's only way); returns its length.
pub(crate) fn report(role: Option<Role>, nr: i64, buf: &mut [u8; 160]) -> usize {
    let mut at = 0;
    let mut put = |s: &[u8]| {
        let n = s.len().min(buf.len() - at);
        buf[at..at + n].copy_from_slice(&s[..n]);
        at += n;
    };
    put(b"exitlab: seccomp: the ");
    put(role.map_or("unfiltered", Role::name).as_bytes());
    put(b" thread made a forbidden system call ");
    let mut digits = [0u8; 20];
    let (mut i, mut v) = (digits.len(), nr.unsigned_abs());
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if nr < 0 {
        put(b"-");
    }
    put(&digits[i..]);
    let name = usize::try_from(nr).ok().and_then(|n| NAMES.get(n)).copied().unwrap_or("");
    put(b" (");
    put(if name.is_empty() { "unnamed".as_bytes() } else { name.as_bytes() });
    put(b"); the run is stopped\n");
    at
}

/// SIGSYS from a filter: one line to stderr, then the process ends. Only
/// async-signal-safe calls (write, _exit), both on every list.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands a SA_SIGINFO handler a valid siginfo_t,
    // whose layout for SIGSYS is `SigsysInfo` (include/uapi/asm-generic/
    // siginfo.h) and which is at least as large.
    let info = unsafe { &*(info as *const SigsysInfo) };
    let role = ROLE.try_with(Cell::get).ok().flatten();
    let mut buf = [0u8; 160];
    let n = report(role, i64::from(info.syscall), &mut buf);
    // SAFETY: write and _exit are async-signal-safe; `buf` holds `n` bytes.
    unsafe {
        libc::write(libc::STDERR_FILENO, buf.as_ptr().cast(), n);
        libc::_exit(FORBIDDEN_CALL_STATUS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: Option<Role>, nr: i64) -> String {
        let mut buf = [0u8; 160];
        let n = report(role, nr, &mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn the_report_names_the_thread_and_the_call() {
        assert_eq!(
            line(Some(Role::Vcpu), 41),
            "exitlab: seccomp: the vCPU thread made a forbidden system call 41 (socket); the run is stopped\n"
        );
        assert_eq!(
            line(Some(Role::Watchdog), 59),
            "exitlab: seccomp: the watchdog thread made a forbidden system call 59 (execve); the run is stopped\n"
        );
        // Unassigned and newer than the table: the number alone.
        assert!(line(Some(Role::Device), 400).contains("call 400 (unnamed);"));
        assert!(line(None, 462).starts_with("exitlab: seccomp: the unfiltered thread made a forbidden system call 462"));
    }

    #[test]
    fn the_names_are_the_kernel_numbers() {
        for (nr, name) in [(libc::SYS_read, "read"), (libc::SYS_ioctl, "ioctl"), (libc::SYS_openat, "openat")] {
            assert_eq!(NAMES[nr as usize], name);
        }
        assert_eq!(NAMES[450], "set_mempolicy_home_node");
    }

    #[test]
    fn every_role_compiles_and_only_the_vcpu_and_device_threads_may_issue_ioctls() {
        for role in [Role::Vcpu, Role::Device, Role::Watchdog] {
            let f = Filter::new(role).unwrap();
            assert!(!f.allow.is_empty() && !f.refuse.is_empty());
            assert_eq!(role.calls().contains(&libc::SYS_ioctl), !role.ioctls().is_empty(), "{role:?}");
        }
    }
}

//! The KVM run's system-call filters at work: a thread confined as a vCPU
//! or device thread has `openat` refused and ends the process, with one
//! line naming the thread and the call and exit status 159, at a call off
//! its list. The confined thread must take the process down, so each case
//! runs this test binary again as a child (`CHILD` names the case) and
//! checks what the child left. Skipped, with the reason printed, on a host
//! without a usable KVM.

use exitlab_arch::BootState;
use exitlab_hv::{HostVm, Vcpu, Vm};
use exitlab_kvm::{KvmVm, FORBIDDEN_CALL_STATUS};
use std::process::Command;

/// The environment variable that makes a run of this binary the child of
/// a case: its value is the thread to confine (`vcpu`, `device`).
const CHILD: &str = "EXITLAB_SECCOMP_CHILD";

fn vm() -> Option<KvmVm> {
    match KvmVm::new(&exitlab_kvm::device_path(), 1 << 20) {
        Ok(vm) => Some(vm),
        Err(e) => {
            eprintln!("skipping KVM test: {e}");
            None
        }
    }
}

/// In the child: confines a fresh thread as `role` (through the VMM's own
/// calls), checks that `openat` is refused, then makes a call off every
/// list (socket). Returns only if that call was let through.
fn forbidden_call(role: &str) {
    let Some(mut vm) = vm() else { return };
    let mut vcpu = vm.create_vcpu(0, &BootState::default()).unwrap();
    let device = vm.device_thread_filter().unwrap().expect("seccomp is on by default");
    let vcpu_thread = role == "vcpu";
    std::thread::spawn(move || {
        if vcpu_thread {
            vcpu.confine_thread().unwrap();
        } else {
            device().unwrap();
        }
        let open = std::fs::File::open("/proc/self/status").map(|_| ());
        assert_eq!(open.map_err(|e| e.kind()), Err(std::io::ErrorKind::PermissionDenied));
        let _ = std::net::UdpSocket::bind("127.0.0.1:0");
    })
    .join()
    .unwrap();
    panic!("the {} thread made a call off its list and went on", role_name(role));
}

fn role_name(role: &str) -> &'static str {
    if role == "vcpu" {
        "vCPU"
    } else {
        "device"
    }
}

/// Runs `test` of this binary as the child of case `role`; checks its
/// status and its last line.
fn check_child(test: &str, role: &str) {
    if vm().is_none() {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let out = Command::new(me).args(["--exact", test, "--nocapture"]).env(CHILD, role).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FORBIDDEN_CALL_STATUS), "{stderr}");
    let socket = libc::SYS_socket;
    let line = format!(
        "exitlab: seccomp: the {} thread made a forbidden system call {socket} (socket); the run is stopped",
        role_name(role)
    );
    assert_eq!(stderr.lines().last(), Some(line.as_str()), "{stderr}");
}

#[test]
fn a_vcpu_thread_that_calls_off_its_list_ends_the_run_with_one_line() {
    match std::env::var(CHILD) {
        Ok(role) => forbidden_call(&role),
        Err(_) => check_child("a_vcpu_thread_that_calls_off_its_list_ends_the_run_with_one_line", "vcpu"),
    }
}

#[test]
fn a_device_thread_that_calls_off_its_list_ends_the_run_with_one_line() {
    match std::env::var(CHILD) {
        Ok(role) => forbidden_call(&role),
        Err(_) => check_child("a_device_thread_that_calls_off_its_list_ends_the_run_with_one_line", "device"),
    }
}

#[test]
fn a_vm_with_seccomp_off_hands_out_no_filter() {
    let Some(mut vm) = vm() else { return };
    vm.set_seccomp(false);
    assert!(vm.device_thread_filter().unwrap().is_none());
    let mut vcpu = vm.create_vcpu(0, &BootState::default()).unwrap();
    // Unconfined, this thread may go on opening files.
    std::thread::spawn(move || {
        vcpu.confine_thread().unwrap();
        std::fs::File::open("/proc/self/status").unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(vm.filtered_threads(), 0);
}

//! The backend interface: what the VMM needs from a machine that runs guest
//! code, and nothing else. A backend (the simulated CPU, KVM) implements
//! the core, [`Vm`] and [`Vcpu`]; the VMM drives them and never asks which
//! one it has, only what its [`Capabilities`] offer and which extensions
//! it implements: [`VmxVm`]/[`VmxVcpu`] where the VMM plays the
//! hypervisor's whole VMX part itself, [`VirtualClock`] where time is
//! simulated, [`HostVm`] where the host kernel carries device I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod device;
mod error;
mod exit;
mod host;
mod vmx;

pub use device::{Device, DeviceCtx, Dma, DmaError};
pub use error::{HvError, Result, Unmodelled};
pub use exit::{IoExit, MmioExit, VmExit};
pub use host::{Confine, HostVm, IrqLineSetter, MsiSender, VirtualClock, WriteWatch};
pub use vmx::{
    Assignment, ExitInfo, Injection, InjectionKind, Interruptibility, ShadowFlags, VmxVcpu, VmxVm, XSAVE_AREA,
};

use exitlab_arch::{BootState, ExitReason, Regs};
use serde::Serialize;

/// What a backend can show and do. An experiment cell that needs a missing
/// capability is reported as "n/a (reason)", never faked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Backend name as users select it (`sim`, `kvm`).
    pub backend: &'static str,
    /// Every exit reaches the VMM (sim). KVM shows only userspace exits;
    /// the rest appear in [`Vcpu::counters`].
    pub sees_all_exits: bool,
    /// Same inputs give the same exits, registers and time, bit for bit.
    pub deterministic_time: bool,
    /// The hardware has EPT (second-level address translation); without
    /// it the VMM shadows the guest's page tables.
    pub ept: bool,
    /// The hardware tags TLB entries with a VPID, so VM entries and exits
    /// need not flush it.
    pub vpid: bool,
    /// MMIO exits can carry the decoded access (see
    /// `exitlab_arch::vmx::Controls::decode_assist`).
    pub decode_assist: bool,
    /// APIC virtualization: the guest's APIC accesses need no exit.
    pub apicv: bool,
    /// Per-page execute permission in the second-level tables.
    pub ept_exec_control: bool,
    /// Page-modification logging (the CPU logs the first write to each
    /// page in a buffer the VMM harvests).
    pub pml: bool,
    /// Posted interrupts: device interrupts reach a running guest without
    /// an exit.
    pub posted_interrupts: bool,
    /// Restricted transactional memory (XBEGIN/XEND/XABORT).
    pub tsx: bool,
    /// The CPUID features of the CPU model, where the VMM answers CPUID
    /// (the simulator, whose CPU raises #UD for an instruction whose
    /// feature is missing from this same set); empty on KVM, which answers
    /// CPUID itself from the host's.
    #[serde(skip)]
    pub cpu_features: exitlab_arch::cpuid::FeatureSet,
    /// An IOMMU (VT-d DMA and interrupt remapping) through which the VMM
    /// can assign a device to the guest ([`VmxVm::assign_device`]).
    pub iommu: bool,
    /// TSC ticks per second, where the VMM may know it (the VMX-preemption
    /// timer counts in them); 0 when it does not.
    pub tsc_hz: u64,
    /// The backend reports counters for exits it handles itself.
    pub backend_counters: bool,
}

/// An MSI: the address/data pair a device writes to interrupt a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// The message address (0xfeexxxxx, destination in bits 19:12).
    pub address: u64,
    /// The message data (vector in bits 7:0, delivery mode in 10:8).
    pub data: u32,
}

impl Msi {
    /// A fixed-delivery, edge-triggered MSI of `vector` to APIC ID `dest`.
    pub fn fixed(dest: u8, vector: u8) -> Msi {
        Msi { address: exitlab_arch::bits::apic::MSI_ADDRESS_BASE | u64::from(dest) << 12, data: u32::from(vector) }
    }
}

/// The VMM's answer to an exit that needs one, given before the next run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion<'a> {
    /// The bytes an IN or MMIO read returns.
    Read(&'a [u8]),
    /// EAX, EBX, ECX, EDX for a CPUID.
    Cpuid([u32; 4]),
    /// The value an RDMSR returns, or `None` to raise #GP(0).
    MsrRead(Option<u64>),
    /// Whether a WRMSR was accepted; `false` raises #GP(0).
    MsrWrite(bool),
}

/// Work a VMM exit handler did, in units a cost model can price (the
/// simulator turns them into virtual time; KVM's real time already passed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerWork {
    /// Device register reads and writes.
    pub device_ops: u32,
    /// Guest instruction bytes fetched and decoded.
    pub bytes_decoded: u32,
    /// Guest page-table walks.
    pub page_walks: u32,
    /// Bytes copied to or from guest memory.
    pub bytes_copied: u32,
}

/// A counter the backend keeps for events the VMM may not see (KVM's
/// binary stats: `exits`, `io_exits`, `halt_exits`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// The counter's name as the backend spells it.
    pub name: String,
    /// Its cumulative value.
    pub value: u64,
}

/// A virtual machine: guest memory, vCPUs, interrupt delivery. `Send`:
/// the VMM runs a VM in host time on a vCPU thread of its own.
pub trait Vm: Send {
    /// The backend's vCPU.
    type Vcpu: Vcpu;

    /// What the backend can show and do.
    fn capabilities(&self) -> Capabilities;

    /// Bytes of guest RAM, mapped from guest-physical address 0.
    fn memory_size(&self) -> u64;

    /// Guest RAM as vm-memory sees it, for devices that walk guest
    /// structures themselves (virtio queues through virtio-queue).
    fn guest_memory(&self) -> &vm_memory::GuestMemoryMmap;

    /// Writes guest RAM at `gpa`; [`HvError::BadAddress`] outside it.
    fn write_memory(&self, gpa: u64, data: &[u8]) -> Result<()>;

    /// Reads guest RAM at `gpa`; [`HvError::BadAddress`] outside it.
    fn read_memory(&self, gpa: u64, data: &mut [u8]) -> Result<()>;

    /// Creates vCPU `id` in the given architectural state.
    fn create_vcpu(&mut self, id: u32, boot: &BootState) -> Result<Self::Vcpu>;

    /// Delivers an MSI to the guest's local APICs.
    fn signal_msi(&self, msi: Msi) -> Result<()>;

    /// The VMX hardware, where the VMM drives it itself; `None` where the
    /// backend keeps it (KVM).
    fn vmx(&self) -> Option<&dyn VmxVm<Vcpu = Self::Vcpu>> {
        None
    }

    /// [`Vm::vmx`], for the operations that change the machine.
    fn vmx_mut(&mut self) -> Option<&mut dyn VmxVm<Vcpu = Self::Vcpu>> {
        None
    }

    /// The backend's virtual clock, where its time is simulated.
    fn virtual_clock(&self) -> Option<&dyn VirtualClock> {
        None
    }

    /// The host kernel's I/O services, where the backend runs in host time.
    fn host(&mut self) -> Option<&mut dyn HostVm> {
        None
    }
}

/// One virtual CPU.
pub trait Vcpu {
    /// The vCPU's index (its xAPIC ID).
    fn id(&self) -> u32;

    /// Runs guest code until the next exit the VMM must handle.
    fn run(&mut self) -> Result<VmExit>;

    /// Answers the last exit; the answer reaches the guest on the next
    /// [`Vcpu::run`].
    fn complete(&mut self, answer: Completion<'_>);

    /// Supplies the value an IN or MMIO-read exit asked for.
    fn complete_read(&mut self, data: &[u8]) {
        self.complete(Completion::Read(data))
    }

    /// Completes a HLT exit: the vCPU enters the HLT activity state. Returns
    /// the backend-clock time at which something the vCPU owns (its local
    /// APIC timer) will wake it, or `None` if nothing it owns can.
    fn halt(&mut self) -> Result<Option<u64>>;

    /// An MSR of the vCPU's architectural state, or `None` if the CPU has
    /// no such MSR.
    fn read_msr(&mut self, msr: u32) -> Result<Option<u64>>;

    /// Writes an MSR; `false` if the CPU has no such MSR or rejects the
    /// value (the guest then gets #GP).
    fn write_msr(&mut self, msr: u32, value: u64) -> Result<bool>;

    /// Charges the exit the VMM just handled to the backend's clock. Only a
    /// backend with virtual time has anything to do.
    fn account_exit(&mut self, _reason: ExitReason, _work: &HandlerWork) {}

    /// The general-purpose registers, RIP and RFLAGS.
    fn regs(&mut self) -> Result<Regs>;

    /// Sets the general-purpose registers, RIP and RFLAGS.
    fn set_regs(&mut self, regs: &Regs) -> Result<()>;

    /// TSC ticks per second as the guest sees them, where the capability
    /// does not say (KVM asks the vCPU); 0 when unknown.
    fn tsc_hz(&mut self) -> Result<u64> {
        Ok(0)
    }

    /// The backend's own counters, cumulative since the vCPU was created.
    fn counters(&mut self) -> Result<Vec<Counter>>;

    /// Guest instructions retired since the vCPU was created, where the
    /// backend counts them (the simulator); `None` where it does not
    /// (KVM). The VMM's no-progress limit reads it at every exit.
    fn instructions_retired(&self) -> Option<u64> {
        None
    }

    /// Nanoseconds on this backend's clock: host monotonic time on KVM,
    /// virtual time on the simulator.
    fn now_ns(&self) -> u64;

    /// Raises the platform's NMI line, which reaches the vCPU through its
    /// local APIC's LINT1 input: delivered as its LVT entry says (an NMI
    /// where it is programmed for NMI delivery, nothing while masked), as
    /// KVM_NMI models it.
    fn nmi(&mut self) -> Result<()>;

    /// From host time `at` on, a run call that has not exited returns
    /// [`HvError::Interrupted`] (KVM_RUN interrupted by a signal, on KVM),
    /// so that a guest that never exits cannot hold the VMM past its
    /// host-time limit; `None` clears it.
    fn set_host_deadline(&mut self, at: Option<std::time::Instant>) -> Result<()>;

    /// Restricts the calling thread, which runs this vCPU from now on, to
    /// the system calls a vCPU thread makes once its VM is set up (a
    /// seccomp filter on KVM; nothing on a backend without one). For the
    /// VMM to call right before its run loop, after
    /// [`Vcpu::set_host_deadline`]: a filtered thread cannot start the
    /// watchdog that deadline needs, nor be unfiltered.
    fn confine_thread(&mut self) -> Result<()> {
        Ok(())
    }

    /// The VMX hardware of this vCPU, where the VMM drives it itself.
    fn vmx(&mut self) -> Option<&mut dyn VmxVcpu> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_address_carries_the_destination() {
        let m = Msi::fixed(3, 0x41);
        assert_eq!(m.address, 0xfee0_3000);
        assert_eq!(m.data, 0x41);
    }
}

//! Why a backend call failed, with the fields a caller can act on.

use std::fmt;

/// An instruction the backend does not model: where it was, its bytes and
/// their disassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmodelled {
    /// Guest RIP of the instruction.
    pub rip: u64,
    /// The instruction's bytes as fetched (up to 15; fewer where the fetch
    /// stopped at an unmapped page).
    pub bytes: Vec<u8>,
    /// The bytes decoded, in Intel syntax.
    pub disassembly: String,
    /// Who does not model it ("the simulator").
    pub by: &'static str,
}

impl fmt::Display for Unmodelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "instruction at rip {:#x} not modelled by {}: bytes {} ({})",
            self.rip,
            self.by,
            hex.join(" "),
            self.disassembly
        )
    }
}

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HvError {
    /// The backend cannot be used on this host (e.g. no usable /dev/kvm).
    Unavailable(String),
    /// A guest-physical range outside guest memory.
    BadAddress {
        /// First address of the range.
        gpa: u64,
        /// Its length in bytes.
        len: usize,
    },
    /// An ioctl on a KVM file descriptor failed.
    Ioctl {
        /// The ioctl's name as the kernel headers spell it (`KVM_RUN`).
        ioctl: &'static str,
        /// The errno it returned.
        errno: i32,
    },
    /// The backend failed otherwise (an entry failure, a call out of order).
    Backend(String),
    /// The guest executed an instruction the backend does not implement.
    Unsupported(Unmodelled),
    /// A run limit (instructions, virtual time) was reached.
    Limit(String),
    /// The run call returned before any exit because a deadline the VMM
    /// set ([`crate::VirtualClock::wake_vmm_at`]) passed: its devices have
    /// work due (KVM's analogue is KVM_RUN returning EINTR to a signal).
    /// Not a VM exit.
    Interrupted,
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HvError::Unavailable(s) => write!(f, "backend unavailable: {s}"),
            HvError::Interrupted => f.write_str("run interrupted at a VMM deadline"),
            HvError::BadAddress { gpa, len } => {
                write!(f, "guest-physical range {gpa:#x}+{len:#x} is outside guest memory")
            }
            HvError::Ioctl { ioctl, errno } => write!(f, "{ioctl}: {}", std::io::Error::from_raw_os_error(*errno)),
            HvError::Unsupported(u) => write!(f, "{u}"),
            HvError::Backend(s) | HvError::Limit(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for HvError {}

/// A backend call's result.
pub type Result<T> = std::result::Result<T, HvError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_their_fields() {
        let e = HvError::Ioctl { ioctl: "KVM_RUN", errno: 4 };
        assert_eq!(e.to_string(), "KVM_RUN: Interrupted system call (os error 4)");
        let u = Unmodelled { rip: 0x1000, bytes: vec![0x0f, 0x0b], disassembly: "ud2".into(), by: "the simulator" };
        assert_eq!(
            HvError::Unsupported(u).to_string(),
            "instruction at rip 0x1000 not modelled by the simulator: bytes 0f 0b (ud2)"
        );
    }
}

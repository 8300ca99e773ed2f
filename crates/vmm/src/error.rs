//! Why the VMM itself could not run a guest (as opposed to the guest
//! ending its run badly, which is a [`crate::GuestError`]): each variant
//! carries what a caller needs to say what went wrong, and the failure
//! under it through [`std::error::Error::source`].

use exitlab_arch::ExitReason;
use exitlab_guest::machine::GuestRange;
use exitlab_hv::HvError;
use std::fmt;

/// Hardware a guest's machine asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    /// RTM, for a guest whose machine needs TSX.
    Tsx,
    /// EPT permissions, to isolate memory on a backend whose EPT the VMM
    /// writes.
    EptToIsolate,
    /// An IOMMU, for a kick doorbell the machine hosts (or, on KVM,
    /// ioeventfds for the VMM's own).
    IommuForDoorbell,
    /// Page-modification logging, for a PML write monitor.
    Pml,
}

/// The VMM could not run the guest.
#[derive(Debug)]
pub enum VmmError {
    /// A backend call failed.
    Backend(HvError),
    /// A chunk of the image lies outside guest memory.
    DoesNotFit {
        /// Where the chunk loads.
        gpa: u64,
        /// Its length in bytes.
        len: u64,
        /// Guest RAM in bytes.
        memory: u64,
    },
    /// The machine description does not hold together for this guest.
    Machine {
        /// The key at fault.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The machine asks for hardware this backend or profile lacks.
    Lacks {
        /// The image's name.
        image: String,
        /// What it needs.
        needed: Needed,
    },
    /// The backend would not take a range out of the guest's view.
    Isolate {
        /// The range.
        range: GuestRange,
        /// Why not.
        source: HvError,
    },
    /// The backend would not watch writes to a range through a memory
    /// slot of its own.
    Watch {
        /// The range.
        range: GuestRange,
        /// Why not.
        source: HvError,
    },
    /// The device thread could not be set up.
    DeviceThread {
        /// The step that failed (`epoll`, `timerfd`, `spawn`, ...).
        what: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// An operation only a backend with a given extension has, on one
    /// without it: the VMM asked for something the backend's type says it
    /// cannot do.
    Missing {
        /// The exit being handled, when there was one.
        exit: Option<ExitReason>,
        /// The extension (`VMX`, `a virtual clock`).
        extension: &'static str,
    },
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmmError::Backend(e) => write!(f, "{e}"),
            VmmError::DoesNotFit { gpa, len, memory } => {
                write!(f, "cannot load image: {len} bytes at {gpa:#x} do not fit in {memory} bytes of guest memory")
            }
            VmmError::Machine { key, message } => write!(f, "cannot load image: machine `{key}`: {message}"),
            VmmError::Lacks { image, needed } => match needed {
                Needed::Tsx => write!(
                    f,
                    "cannot load image: {image} needs RTM (TSX): run it on the simulator with a profile that has tsx = true (modern)"
                ),
                Needed::EptToIsolate => write!(
                    f,
                    "cannot load image: {image} needs EPT permissions to isolate memory: run it with a profile that has EPT (modern), or on KVM"
                ),
                Needed::IommuForDoorbell => f.write_str(
                    "cannot load image: a coalescing kick doorbell is for virtio-net, on the simulator's modern profile (an IOMMU) or on KVM with ioeventfds",
                ),
                Needed::Pml => f.write_str("this hardware profile has no PML"),
            },
            VmmError::Isolate { range, source } => write!(f, "cannot load image: cannot isolate {range}: {source}"),
            VmmError::Watch { range, source } => write!(f, "cannot load image: cannot watch writes to {range}: {source}"),
            VmmError::DeviceThread { what, source } => write!(f, "cannot load image: device thread: {what}: {source}"),
            VmmError::Missing { exit: Some(r), extension } => {
                write!(f, "{r} exit from a backend without {extension}")
            }
            VmmError::Missing { exit: None, extension } => write!(f, "the backend has no {extension}"),
        }
    }
}

impl std::error::Error for VmmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VmmError::Backend(e) | VmmError::Isolate { source: e, .. } | VmmError::Watch { source: e, .. } => Some(e),
            VmmError::DeviceThread { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<HvError> for VmmError {
    fn from(e: HvError) -> Self {
        VmmError::Backend(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn errors_keep_their_fields_and_causes() {
        let e = VmmError::from(HvError::Ioctl { ioctl: "KVM_RUN", errno: 14 });
        assert_eq!(e.to_string(), "KVM_RUN: Bad address (os error 14)");
        let cause = e.source().and_then(|s| s.downcast_ref::<HvError>());
        assert_eq!(cause, Some(&HvError::Ioctl { ioctl: "KVM_RUN", errno: 14 }));
        let e = VmmError::DoesNotFit { gpa: 0x10_0000, len: 0x2000, memory: 4096 };
        assert_eq!(e.to_string(), "cannot load image: 8192 bytes at 0x100000 do not fit in 4096 bytes of guest memory");
        let e = VmmError::Lacks { image: "isolation".into(), needed: Needed::EptToIsolate };
        assert!(e.to_string().starts_with("cannot load image: isolation needs EPT permissions"), "{e}");
    }
}

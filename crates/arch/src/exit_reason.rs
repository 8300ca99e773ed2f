//! Basic exit reasons (Intel SDM Vol. 3C, Appendix C), named as Linux's
//! `VMX_EXIT_REASONS` table names them, which is what `perf kvm stat` prints.

use serde::{Deserialize, Serialize};

macro_rules! exit_reasons {
    ($($name:ident = $num:literal, $text:literal;)*) => {
        /// A VMX basic exit reason: bits 15:0 of the exit-reason field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        #[allow(non_camel_case_types)]
        pub enum ExitReason {
            $(#[doc = concat!("`", $text, "`: basic exit reason ", stringify!($num), ".")] $name = $num,)*
        }

        impl ExitReason {
            /// Every reason, in SDM order.
            pub const ALL: &'static [ExitReason] = &[$(ExitReason::$name,)*];

            /// The SDM number of this basic exit reason.
            pub const fn number(self) -> u16 {
                self as u16
            }

            /// The reason with SDM number `n`, if the SDM defines one.
            pub const fn from_number(n: u16) -> Option<ExitReason> {
                match n {
                    $($num => Some(ExitReason::$name),)*
                    _ => None,
                }
            }

            /// The name `perf kvm stat` prints for this reason.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ExitReason::$name => $text,)*
                }
            }
        }
    };
}

exit_reasons! {
    ExceptionNmi = 0, "EXCEPTION_NMI";
    ExternalInterrupt = 1, "EXTERNAL_INTERRUPT";
    TripleFault = 2, "TRIPLE_FAULT";
    InitSignal = 3, "INIT_SIGNAL";
    SipiSignal = 4, "SIPI_SIGNAL";
    IoSmi = 5, "IO_SMI";
    OtherSmi = 6, "OTHER_SMI";
    InterruptWindow = 7, "INTERRUPT_WINDOW";
    NmiWindow = 8, "NMI_WINDOW";
    TaskSwitch = 9, "TASK_SWITCH";
    Cpuid = 10, "CPUID";
    Getsec = 11, "GETSEC";
    Hlt = 12, "HLT";
    Invd = 13, "INVD";
    Invlpg = 14, "INVLPG";
    Rdpmc = 15, "RDPMC";
    Rdtsc = 16, "RDTSC";
    Rsm = 17, "RSM";
    Vmcall = 18, "VMCALL";
    Vmclear = 19, "VMCLEAR";
    Vmlaunch = 20, "VMLAUNCH";
    Vmptrld = 21, "VMPTRLD";
    Vmptrst = 22, "VMPTRST";
    Vmread = 23, "VMREAD";
    Vmresume = 24, "VMRESUME";
    Vmwrite = 25, "VMWRITE";
    Vmoff = 26, "VMOFF";
    Vmon = 27, "VMON";
    CrAccess = 28, "CR_ACCESS";
    DrAccess = 29, "DR_ACCESS";
    IoInstruction = 30, "IO_INSTRUCTION";
    MsrRead = 31, "MSR_READ";
    MsrWrite = 32, "MSR_WRITE";
    InvalidState = 33, "INVALID_STATE";
    MsrLoadFail = 34, "MSR_LOAD_FAIL";
    MwaitInstruction = 36, "MWAIT_INSTRUCTION";
    MonitorTrapFlag = 37, "MONITOR_TRAP_FLAG";
    MonitorInstruction = 39, "MONITOR_INSTRUCTION";
    PauseInstruction = 40, "PAUSE_INSTRUCTION";
    MceDuringVmentry = 41, "MCE_DURING_VMENTRY";
    TprBelowThreshold = 43, "TPR_BELOW_THRESHOLD";
    ApicAccess = 44, "APIC_ACCESS";
    EoiInduced = 45, "EOI_INDUCED";
    GdtrIdtr = 46, "GDTR_IDTR";
    LdtrTr = 47, "LDTR_TR";
    EptViolation = 48, "EPT_VIOLATION";
    EptMisconfig = 49, "EPT_MISCONFIG";
    Invept = 50, "INVEPT";
    Rdtscp = 51, "RDTSCP";
    PreemptionTimer = 52, "PREEMPTION_TIMER";
    Invvpid = 53, "INVVPID";
    Wbinvd = 54, "WBINVD";
    Xsetbv = 55, "XSETBV";
    ApicWrite = 56, "APIC_WRITE";
    Rdrand = 57, "RDRAND";
    Invpcid = 58, "INVPCID";
    Vmfunc = 59, "VMFUNC";
    Encls = 60, "ENCLS";
    Rdseed = 61, "RDSEED";
    PmlFull = 62, "PML_FULL";
    Xsaves = 63, "XSAVES";
    Xrstors = 64, "XRSTORS";
    Umwait = 67, "UMWAIT";
    Tpause = 68, "TPAUSE";
    BusLock = 74, "BUS_LOCK";
    Notify = 75, "NOTIFY";
}

impl ExitReason {
    /// Looks a reason up by its `perf kvm stat` name (case-insensitive).
    pub fn from_name(name: &str) -> Option<ExitReason> {
        Self::ALL.iter().copied().find(|r| r.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ExitReason> for &'static str {
    fn from(r: ExitReason) -> &'static str {
        r.name()
    }
}

impl TryFrom<String> for ExitReason {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ExitReason::from_name(&s).ok_or_else(|| format!("unknown exit reason `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_sdm_appendix() {
        assert_eq!(ExitReason::ExceptionNmi.number(), 0);
        assert_eq!(ExitReason::Cpuid.number(), 10);
        assert_eq!(ExitReason::Hlt.number(), 12);
        assert_eq!(ExitReason::CrAccess.number(), 28);
        assert_eq!(ExitReason::IoInstruction.number(), 30);
        assert_eq!(ExitReason::MsrRead.number(), 31);
        assert_eq!(ExitReason::MsrWrite.number(), 32);
        assert_eq!(ExitReason::MonitorTrapFlag.number(), 37);
        assert_eq!(ExitReason::ApicAccess.number(), 44);
        assert_eq!(ExitReason::EptViolation.number(), 48);
        assert_eq!(ExitReason::EptMisconfig.number(), 49);
        assert_eq!(ExitReason::PreemptionTimer.number(), 52);
        assert_eq!(ExitReason::PmlFull.number(), 62);
    }

    #[test]
    fn number_and_name_round_trip() {
        for &r in ExitReason::ALL {
            assert_eq!(ExitReason::from_number(r.number()), Some(r));
            assert_eq!(ExitReason::from_name(r.name()), Some(r));
        }
        assert_eq!(ExitReason::from_number(35), None);
        assert_eq!(ExitReason::from_name("io_instruction"), Some(ExitReason::IoInstruction));
    }

    #[test]
    fn serializes_as_the_perf_name() {
        let json = serde_json::to_string(&ExitReason::EptViolation).unwrap();
        assert_eq!(json, "\"EPT_VIOLATION\"");
        let back: ExitReason = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ExitReason::EptViolation);
    }
}

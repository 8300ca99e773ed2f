//! CPUID feature flags (Intel SDM Vol. 2A "CPUID", tables 3-10, 3-11 and
//! the leaf 07H and 80000001H tables; AMD APM Vol. 3 appendix E): where
//! each flag lives, and a set of them. A CPU model is one [`FeatureSet`]:
//! its vendor and its flags. The VMM answers CPUID from it and the
//! simulated CPU raises #UD for an instruction whose feature it lacks, and
//! follows its vendor where Intel and AMD differ, so the two cannot
//! disagree.

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

macro_rules! features {
    ($($(#[$doc:meta])* $name:ident = ($leaf:expr, $subleaf:expr, $reg:ident, $bit:expr),)*) => {
        /// A CPUID feature flag.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Feature {
            $($(#[$doc])* $name,)*
        }

        impl Feature {
            /// Every feature exitlab names.
            pub const ALL: &'static [Feature] = &[$(Feature::$name,)*];

            /// Where CPUID reports it: leaf, subleaf, register, bit.
            pub const fn location(self) -> (u32, u32, Reg, u8) {
                match self {
                    $(Feature::$name => ($leaf, $subleaf, Reg::$reg, $bit),)*
                }
            }
        }
    };
}

features! {
    /// x87 FPU on chip.
    Fpu = (1, 0, Edx, 0),
    /// RDTSC and CR4.TSD.
    Tsc = (1, 0, Edx, 4),
    /// RDMSR and WRMSR.
    Msr = (1, 0, Edx, 5),
    /// Physical address extension.
    Pae = (1, 0, Edx, 6),
    /// CMPXCHG8B.
    Cx8 = (1, 0, Edx, 8),
    /// A local APIC.
    Apic = (1, 0, Edx, 9),
    /// SYSENTER and SYSEXIT.
    Sep = (1, 0, Edx, 11),
    /// Global pages (CR4.PGE).
    Pge = (1, 0, Edx, 13),
    /// CMOVcc.
    Cmov = (1, 0, Edx, 15),
    /// The page attribute table (IA32_PAT).
    Pat = (1, 0, Edx, 16),
    /// CLFLUSH.
    Clfsh = (1, 0, Edx, 19),
    /// MMX.
    Mmx = (1, 0, Edx, 23),
    /// FXSAVE, FXRSTOR and CR4.OSFXSR.
    Fxsr = (1, 0, Edx, 24),
    /// SSE.
    Sse = (1, 0, Edx, 25),
    /// SSE2.
    Sse2 = (1, 0, Edx, 26),
    /// SSE3.
    Sse3 = (1, 0, Ecx, 0),
    /// SSSE3.
    Ssse3 = (1, 0, Ecx, 9),
    /// CMPXCHG16B.
    Cx16 = (1, 0, Ecx, 13),
    /// Process-context identifiers (CR4.PCIDE).
    Pcid = (1, 0, Ecx, 17),
    /// SSE4.1.
    Sse41 = (1, 0, Ecx, 19),
    /// SSE4.2.
    Sse42 = (1, 0, Ecx, 20),
    /// x2APIC mode.
    X2apic = (1, 0, Ecx, 21),
    /// MOVBE.
    Movbe = (1, 0, Ecx, 22),
    /// POPCNT.
    Popcnt = (1, 0, Ecx, 23),
    /// The local APIC timer's TSC-deadline mode.
    TscDeadline = (1, 0, Ecx, 24),
    /// XSAVE family, XGETBV/XSETBV and CR4.OSXSAVE.
    Xsave = (1, 0, Ecx, 26),
    /// Running under a hypervisor.
    Hypervisor = (1, 0, Ecx, 31),
    /// RDFSBASE and friends, CR4.FSGSBASE.
    Fsgsbase = (7, 0, Ebx, 0),
    /// IA32_TSC_ADJUST.
    TscAdjust = (7, 0, Ebx, 1),
    /// BMI1: ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT.
    Bmi1 = (7, 0, Ebx, 3),
    /// The x87 FPU data pointer is updated only on unmasked exceptions
    /// (FDP_EXCPTN_ONLY).
    FdpExcptnOnly = (7, 0, Ebx, 6),
    /// INVPCID.
    Invpcid = (7, 0, Ebx, 10),
    /// Restricted transactional memory.
    Rtm = (7, 0, Ebx, 11),
    /// FCS and FDS are deprecated (stored as zero).
    FcsFdsDeprecated = (7, 0, Ebx, 13),
    /// CLFLUSHOPT.
    Clflushopt = (7, 0, Ebx, 23),
    /// User-mode instruction prevention (CR4.UMIP).
    Umip = (7, 0, Ecx, 2),
    /// RDPID.
    Rdpid = (7, 0, Ecx, 22),
    /// XSAVEOPT.
    Xsaveopt = (0xd, 1, Eax, 0),
    /// XSAVEC and the compacted format.
    Xsavec = (0xd, 1, Eax, 1),
    /// XGETBV with ECX = 1 (XINUSE).
    XgetbvEcx1 = (0xd, 1, Eax, 2),
    /// XSAVES, XRSTORS and IA32_XSS.
    Xsaves = (0xd, 1, Eax, 3),
    /// IA32_SPEC_CTRL (IBRS) and IA32_PRED_CMD (IBPB).
    SpecCtrl = (7, 0, Edx, 26),
    /// LAHF and SAHF in 64-bit mode.
    LahfLm = (0x8000_0001, 0, Ecx, 0),
    /// LZCNT (AMD's ABM).
    Abm = (0x8000_0001, 0, Ecx, 5),
    /// PREFETCHW.
    Prefetchw = (0x8000_0001, 0, Ecx, 8),
    /// SYSCALL and SYSRET.
    Syscall = (0x8000_0001, 0, Edx, 11),
    /// Execute-disable (EFER.NXE).
    Nx = (0x8000_0001, 0, Edx, 20),
    /// RDTSCP and IA32_TSC_AUX.
    Rdtscp = (0x8000_0001, 0, Edx, 27),
    /// Long mode.
    Lm = (0x8000_0001, 0, Edx, 29),
    /// RDPRU (AMD).
    Rdpru = (0x8000_0008, 0, Ebx, 4),
}

/// Whose architecture a CPU model follows where the SDM and the AMD APM
/// differ (CPUID leaf 0's vendor string).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum Vendor {
    /// "GenuineIntel": the Intel SDM.
    #[default]
    #[serde(rename = "GenuineIntel")]
    Intel,
    /// "AuthenticAMD": the AMD APM.
    #[serde(rename = "AuthenticAMD")]
    Amd,
}

impl Vendor {
    /// CPUID leaf 0's 12 bytes (EBX, EDX, ECX in that order).
    pub const fn signature(self) -> &'static [u8; 12] {
        match self {
            Vendor::Intel => b"GenuineIntel",
            Vendor::Amd => b"AuthenticAMD",
        }
    }

    /// The vendor whose signature is `text`, as QEMU's `-cpu ...,vendor=`
    /// spells it.
    pub fn from_signature(text: &str) -> Option<Vendor> {
        [Vendor::Intel, Vendor::Amd].into_iter().find(|v| v.signature() == text.as_bytes())
    }
}

/// A set of features and the vendor: a CPU model. Bit n is [`Feature`] n;
/// bit 63, never a feature's, says AMD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(u64);

/// The bit of [`FeatureSet`] that holds [`Vendor::Amd`].
const AMD_BIT: u64 = 1 << 63;

impl FeatureSet {
    /// No features.
    pub const EMPTY: FeatureSet = FeatureSet(0);

    /// The set of `features`.
    pub const fn of(features: &[Feature]) -> FeatureSet {
        let mut s = FeatureSet(0);
        let mut i = 0;
        while i < features.len() {
            s = s.with(features[i]);
            i += 1;
        }
        s
    }

    /// This set and `f`.
    pub const fn with(self, f: Feature) -> FeatureSet {
        FeatureSet(self.0 | 1 << f as u8)
    }

    /// The features of both sets.
    pub const fn union(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 | other.0)
    }

    /// This set without `f`.
    pub const fn without(self, f: Feature) -> FeatureSet {
        FeatureSet(self.0 & !(1 << f as u8))
    }

    /// This model with `vendor`'s architecture.
    pub const fn with_vendor(self, vendor: Vendor) -> FeatureSet {
        match vendor {
            Vendor::Intel => FeatureSet(self.0 & !AMD_BIT),
            Vendor::Amd => FeatureSet(self.0 | AMD_BIT),
        }
    }

    /// The model's vendor.
    #[inline(always)]
    pub const fn vendor(self) -> Vendor {
        if self.0 & AMD_BIT != 0 {
            Vendor::Amd
        } else {
            Vendor::Intel
        }
    }

    /// Whether `f` is in the set.
    #[inline(always)]
    pub const fn has(self, f: Feature) -> bool {
        self.0 & 1 << f as u8 != 0
    }

    /// The bits of register `reg` of leaf `leaf`/`subleaf` this set's
    /// features report.
    pub fn register(self, leaf: u32, subleaf: u32, reg: Reg) -> u32 {
        Feature::ALL
            .iter()
            .filter(|f| self.has(**f))
            .map(|f| f.location())
            .filter(|&(l, s, r, _)| l == leaf && s == subleaf && r == reg)
            .fold(0, |v, (_, _, _, bit)| v | 1 << bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_rides_beside_the_features() {
        let s = FeatureSet::of(&[Feature::Tsc, Feature::Lm]);
        assert_eq!(s.vendor(), Vendor::Intel);
        let amd = s.with_vendor(Vendor::Amd);
        assert_eq!((amd.vendor(), amd.has(Feature::Lm), amd.has(Feature::Rdpru)), (Vendor::Amd, true, false));
        assert_eq!(amd.register(0x8000_0001, 0, Reg::Edx), 1 << 29);
        assert_eq!(amd.with_vendor(Vendor::Intel), s);
        assert_eq!(Vendor::from_signature("AuthenticAMD"), Some(Vendor::Amd));
        assert_eq!(Vendor::from_signature("GenuineIntel"), Some(Vendor::Intel));
        assert_eq!(Vendor::from_signature("HygonGenuine"), None);
    }

    #[test]
    fn features_land_on_their_sdm_bits() {
        assert!(Feature::ALL.len() < 63, "bit 63 is the vendor's");
        let s = FeatureSet::of(&[Feature::Tsc, Feature::Pcid, Feature::Rtm, Feature::Rdtscp, Feature::Invpcid]);
        assert_eq!(s.register(1, 0, Reg::Edx), 1 << 4);
        assert_eq!(s.register(1, 0, Reg::Ecx), 1 << 17);
        assert_eq!(s.register(7, 0, Reg::Ebx), 1 << 11 | 1 << 10);
        assert_eq!(s.register(7, 1, Reg::Ebx), 0);
        assert_eq!(s.register(0x8000_0001, 0, Reg::Edx), 1 << 27);
        assert!(s.has(Feature::Pcid) && !s.without(Feature::Pcid).has(Feature::Pcid));
        // No two features share a bit.
        for (i, a) in Feature::ALL.iter().enumerate() {
            for b in &Feature::ALL[i + 1..] {
                assert_ne!(a.location(), b.location(), "{a:?} and {b:?}");
            }
        }
    }
}

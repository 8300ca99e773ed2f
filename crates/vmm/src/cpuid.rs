//! The CPUID the VMM presents on a backend where CPUID exits reach it (the
//! simulator). A small, Intel-flavoured model: the feature flags are the
//! backend's CPU model (`Capabilities::cpu_features`, with its vendor), the same set the
//! simulated CPU checks before it runs an instruction, so CPUID never
//! advertises what the CPU would refuse, nor hides what it runs; the rest
//! (signature, address sizes, the XSAVE layout, the hypervisor
//! leaf) is fixed here, and OSXSAVE mirrors the guest's CR4.

use exitlab_arch::bits;
use exitlab_arch::bits::cr4;
use exitlab_arch::cpuid::{Feature, FeatureSet, Reg, Vendor};
use exitlab_x86::fp;

fn text(s: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    [w(0), w(4), w(8)]
}

/// The feature-flag registers of `leaf`/`subleaf`.
fn flags(f: FeatureSet, leaf: u32, subleaf: u32) -> [u32; 4] {
    [Reg::Eax, Reg::Ebx, Reg::Ecx, Reg::Edx].map(|r| f.register(leaf, subleaf, r))
}

/// The highest basic leaf: 0DH, the XSAVE layout.
const MAX_BASIC_LEAF: u32 = 0xd;

/// The bits of `leaf`'s answer `r` that mirror guest state: OSXSAVE
/// (leaf 1 ECX bit 27) is CR4.OSXSAVE (SDM Vol. 2 CPUID), which the VMM
/// reads from the vCPU at each CPUID exit, as KVM does.
pub fn with_os_bits(leaf: u32, mut r: [u32; 4], cr4: u64) -> [u32; 4] {
    if leaf == 1 && cr4 & cr4::OSXSAVE != 0 {
        r[2] |= 1 << 27;
    }
    r
}

/// EAX, EBX, ECX, EDX for `leaf`/`subleaf` on vCPU `apic_id` of a CPU with
/// `features`. Leaves without a model (2 to 6, and beyond the maximum)
/// return zeros (Intel returns the highest basic leaf past the maximum;
/// zeros are what a guest probing for a feature needs to see "absent").
/// Leaf 0DH is the XSAVE layout where the set has XSAVE, its subleaf 1
/// EAX the set's XSAVE extensions.
pub fn cpuid(leaf: u32, subleaf: u32, apic_id: u8, features: FeatureSet) -> [u32; 4] {
    let [a, b, c, d] = flags(features, leaf, subleaf);
    match leaf {
        0 => {
            let [b, d, c] = text(features.vendor().signature());
            [MAX_BASIC_LEAF, b, c, d]
        }
        // Family 6, model 0x55, stepping 4 (a Skylake-SP signature); EBX:
        // APIC ID, one logical processor, CLFLUSH line 8 x 8 bytes.
        1 => [0x0005_0654, u32::from(apic_id) << 24 | 1 << 16 | 8 << 8, c, d],
        7 if subleaf == 0 => [0, b, c, d],
        0xd if features.has(Feature::Xsave) => {
            let [la, lb, lc, ld] = fp::xsave::cpuid_leaf_d(subleaf);
            [if subleaf == 1 { a } else { la }, lb, lc, ld]
        }
        0x4000_0000 => {
            let [b, c, d] = text(b"exitlab-sim ");
            [0x4000_0000, b, c, d]
        }
        // AMD repeats the vendor string here (APM Vol. 3 appendix E.4.1);
        // Intel's EBX-EDX are reserved, zero.
        0x8000_0000 => match features.vendor() {
            Vendor::Amd => {
                let [b, d, c] = text(Vendor::Amd.signature());
                [0x8000_0008, b, c, d]
            }
            Vendor::Intel => [0x8000_0008, 0, 0, 0],
        },
        0x8000_0001 => [0, 0, c, d],
        // 48 physical and 48 linear address bits.
        0x8000_0008 => [0x3030, b, 0, 0],
        _ => [0; 4],
    }
}

/// Whether this CPU model reports the APIC at its default base.
pub fn apic_base_default(bsp: bool) -> u64 {
    bits::apic::DEFAULT_BASE | 1 << 11 | u64::from(bsp) << 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_features() {
        let f = FeatureSet::of(&[Feature::Lm, Feature::Tsc]);
        let [max, b, c, d] = cpuid(0, 0, 0, f);
        assert_eq!(max, 0xd);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(v, b"GenuineIntel");
        assert_eq!(cpuid(0x8000_0000, 0, 0, f), [0x8000_0008, 0, 0, 0]);
        let amd = f.with_vendor(Vendor::Amd);
        for leaf in [0, 0x8000_0000] {
            let [_, b, c, d] = cpuid(leaf, 0, 0, amd);
            let v: Vec<u8> = [b, d, c].iter().flat_map(|r| r.to_le_bytes()).collect();
            assert_eq!(v, b"AuthenticAMD", "leaf {leaf:#x}");
        }
        assert_eq!(cpuid(1, 0, 3, amd), cpuid(1, 0, 3, f), "the same features");
        assert_eq!(cpuid(1, 0, 3, f)[1] >> 24, 3);
        assert_eq!(cpuid(1, 0, 3, f)[3], 1 << 4, "TSC, and nothing the set lacks (no FPU, no SSE)");
        assert_ne!(cpuid(0x8000_0001, 0, 0, f)[3] & 1 << 29, 0, "long mode");
        assert_eq!(cpuid(7, 0, 0, f), [0; 4]);
        assert_eq!(cpuid(7, 0, 0, f.with(Feature::Rtm)), [0, 1 << 11, 0, 0], "RTM in leaf 7 EBX bit 11");
        assert_eq!(cpuid(7, 1, 0, f.with(Feature::Rtm)), [0; 4]);
        assert_eq!(cpuid(0xd, 0, 0, f), [0; 4], "no XSAVE layout without XSAVE");
        assert_eq!(apic_base_default(true), 0xfee0_0900);
    }

    #[test]
    fn x86_64_v2_and_the_xsave_layout() {
        // The simulator's CPU model with what exitlab-x86's FP models.
        let f = fp::cpuid::FEATURES.with(Feature::Cx8).with(Feature::Cx16).with(Feature::LahfLm);
        // SDM Vol. 2 CPUID Table 3-10/3-11 bit positions.
        let [_, _, c, d] = cpuid(1, 0, 0, f);
        for (bit, name) in [(0, "SSE3"), (9, "SSSE3"), (13, "CX16"), (19, "SSE4.1"), (20, "SSE4.2"), (23, "POPCNT")] {
            assert_ne!(c & 1 << bit, 0, "{name}");
        }
        assert_eq!(c & (1 << 26 | 1 << 27 | 1 << 28), 1 << 26, "XSAVE, no OSXSAVE before CR4 says so, no AVX");
        for (bit, name) in [(0, "FPU"), (8, "CX8"), (23, "MMX"), (24, "FXSR"), (25, "SSE"), (26, "SSE2")] {
            assert_ne!(d & 1 << bit, 0, "{name}");
        }
        assert_eq!(with_os_bits(1, [0; 4], cr4::OSXSAVE)[2], 1 << 27);
        assert_eq!(with_os_bits(7, [0; 4], cr4::OSXSAVE), [0; 4]);
        let x87_pointers = 1 << 6 | 1 << 13;
        assert_eq!(cpuid(7, 0, 0, f), [0, x87_pointers, 0, 0], "FDP_EXCPTN_ONLY, FCS/FDS deprecated");
        assert_eq!(cpuid(0x8000_0001, 0, 0, f)[2], 1, "LAHF/SAHF in 64-bit mode");
        assert_eq!(cpuid(0xd, 0, 0, f), [3, 576, 576, 0], "x87 and SSE, 576-byte area");
        assert_eq!(cpuid(0xd, 1, 0, f), [0b1111, 576, 0, 0]);
        assert_eq!(cpuid(0xd, 1, 0, f), fp::xsave::cpuid_leaf_d(1), "the set's XSAVE extensions are the layout's");
        assert_eq!(cpuid(0xd, 2, 0, f), [0; 4], "no AVX component");
    }
}

//! The CPUID the VMM presents on a backend where CPUID exits reach it (the
//! simulator). A small, Intel-flavoured model: the feature flags are the
//! backend's CPU model (`Capabilities::cpu_features`), the same set the
//! simulated CPU checks before it runs an instruction, so CPUID never
//! advertises what the CPU would refuse, nor hides what it runs; the rest
//! (vendor, signature, address sizes, the hypervisor leaf) is fixed here.

use exitlab_arch::bits;
use exitlab_arch::cpuid::{FeatureSet, Reg};

fn text(s: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    [w(0), w(4), w(8)]
}

/// The feature-flag registers of `leaf`/`subleaf`.
fn flags(f: FeatureSet, leaf: u32, subleaf: u32) -> [u32; 4] {
    [Reg::Eax, Reg::Ebx, Reg::Ecx, Reg::Edx].map(|r| f.register(leaf, subleaf, r))
}

/// EAX, EBX, ECX, EDX for `leaf`/`subleaf` on vCPU `apic_id` of a CPU with
/// `features`. Leaves without a model (2 to 6, and beyond the maximum)
/// return zeros (Intel returns the highest basic leaf past the maximum;
/// zeros are what a guest probing for a feature needs to see "absent").
pub fn cpuid(leaf: u32, subleaf: u32, apic_id: u8, features: FeatureSet) -> [u32; 4] {
    let [_, b, c, d] = flags(features, leaf, subleaf);
    match leaf {
        0 => {
            let [b, d, c] = text(b"GenuineIntel");
            [7, b, c, d]
        }
        // Family 6, model 0x55, stepping 4 (a Skylake-SP signature); EBX:
        // APIC ID, one logical processor, CLFLUSH line 8 x 8 bytes.
        1 => [0x0005_0654, u32::from(apic_id) << 24 | 1 << 16 | 8 << 8, c, d],
        7 if subleaf == 0 => [0, b, c, d],
        0x4000_0000 => {
            let [b, c, d] = text(b"exitlab-sim ");
            [0x4000_0000, b, c, d]
        }
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
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
    use exitlab_arch::cpuid::Feature;

    #[test]
    fn vendor_and_features() {
        let f = FeatureSet::of(&[Feature::Lm, Feature::Tsc]);
        let [max, b, c, d] = cpuid(0, 0, 0, f);
        assert_eq!(max, 7);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(v, b"GenuineIntel");
        assert_eq!(cpuid(1, 0, 3, f)[1] >> 24, 3);
        assert_eq!(cpuid(1, 0, 3, f)[3], 1 << 4, "TSC, and nothing the set lacks (no FPU, no SSE)");
        assert_ne!(cpuid(0x8000_0001, 0, 0, f)[3] & 1 << 29, 0, "long mode");
        assert_eq!(cpuid(7, 0, 0, f), [0; 4]);
        assert_eq!(cpuid(7, 0, 0, f.with(Feature::Rtm)), [0, 1 << 11, 0, 0], "RTM in leaf 7 EBX bit 11");
        assert_eq!(cpuid(7, 1, 0, f.with(Feature::Rtm)), [0; 4]);
        assert_eq!(apic_base_default(true), 0xfee0_0900);
    }
}

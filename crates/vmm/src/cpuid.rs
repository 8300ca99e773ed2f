//! The CPUID the VMM presents on a backend where CPUID exits reach it (the
//! simulator). A small, Intel-flavoured model: exactly the features the
//! simulated CPU implements, with the hypervisor bit set.

use exitlab_arch::bits;

/// Leaf 1 EDX: FPU, TSC, MSR, PAE, APIC, CMOV, FXSR, SSE, SSE2.
const LEAF1_EDX: u32 = 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 9 | 1 << 15 | 1 << 24 | 1 << 25 | 1 << 26;
/// Leaf 1 ECX: POPCNT (23), TSC-deadline timer (24), hypervisor (31).
const LEAF1_ECX: u32 = 1 << 23 | 1 << 24 | 1 << 31;
/// Extended leaf 1 EDX: SYSCALL (11), NX (20), long mode (29).
const EXT1_EDX: u32 = 1 << 11 | 1 << 20 | 1 << 29;

fn text(s: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    [w(0), w(4), w(8)]
}

/// Leaf 7 subleaf 0 EBX: RTM (11).
const LEAF7_EBX_RTM: u32 = 1 << 11;

/// EAX, EBX, ECX, EDX for `leaf`/`subleaf` on vCPU `apic_id`, on a CPU
/// that has RTM when `rtm`. Leaves without a model (2 to 6, and beyond the
/// maximum) return zeros (Intel returns the highest basic leaf past the
/// maximum; zeros are what a guest probing for a feature needs to see
/// "absent").
pub fn cpuid(leaf: u32, subleaf: u32, apic_id: u8, rtm: bool) -> [u32; 4] {
    match leaf {
        0 => {
            let [b, d, c] = text(b"GenuineIntel");
            [7, b, c, d]
        }
        // Family 6, model 0x55, stepping 4 (a Skylake-SP signature); EBX:
        // APIC ID, one logical processor, CLFLUSH line 8 x 8 bytes.
        1 => [0x0005_0654, u32::from(apic_id) << 24 | 1 << 16 | 8 << 8, LEAF1_ECX, LEAF1_EDX],
        7 if subleaf == 0 => [0, if rtm { LEAF7_EBX_RTM } else { 0 }, 0, 0],
        0x4000_0000 => {
            let [b, c, d] = text(b"exitlab-sim ");
            [0x4000_0000, b, c, d]
        }
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [0, 0, 0, EXT1_EDX],
        // 48 physical and 48 linear address bits.
        0x8000_0008 => [0x3030, 0, 0, 0],
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
        let [max, b, c, d] = cpuid(0, 0, 0, false);
        assert_eq!(max, 7);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(v, b"GenuineIntel");
        assert_eq!(cpuid(1, 0, 3, false)[1] >> 24, 3);
        assert_ne!(cpuid(0x8000_0001, 0, 0, false)[3] & 1 << 29, 0, "long mode");
        assert_eq!(cpuid(7, 0, 0, false), [0; 4]);
        assert_eq!(cpuid(7, 0, 0, true), [0, 1 << 11, 0, 0], "RTM in leaf 7 EBX bit 11");
        assert_eq!(cpuid(7, 1, 0, true), [0; 4]);
        assert_eq!(apic_base_default(true), 0xfee0_0900);
    }
}

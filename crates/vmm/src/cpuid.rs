//! The CPUID the VMM presents on a backend where CPUID exits reach it (the
//! simulator). A small, Intel-flavoured model: exactly the features the
//! simulated CPU implements, with the hypervisor bit set.

use exitlab_arch::bits;
use exitlab_arch::bits::cr4;
use exitlab_x86::fp;

/// Leaf 1 EDX: FPU, TSC, MSR, PAE, APIC, CMOV, FXSR, SSE, SSE2 (the rest
/// of the x86-64-v2 level is [`x86_64_v2`]'s).
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

/// The highest basic leaf: 0DH, the XSAVE layout.
const MAX_BASIC_LEAF: u32 = 0xd;

/// What the simulated CPU's floating point and vectors add (issue 13), in
/// one place, ORed into the model's answer: the x86-64-v2 level (SDM Vol.
/// 2 CPUID, Tables 3-10, 3-11: FPU, MMX, FXSR, SSE, SSE2, CX8 in leaf 1
/// EDX; SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT, XSAVE in leaf 1 ECX;
/// LAHF/SAHF in 64-bit mode in leaf 8000_0001H ECX bit 0), the XSAVE
/// layout of leaf 0DH, and the x87 pointer behaviour the model copies
/// from the Intel part it was measured on (leaf 7 EBX: FDP_EXCPTN_ONLY,
/// bit 6; FCS and FDS deprecated, bit 13). AVX and later stay clear.
fn x86_64_v2(leaf: u32, subleaf: u32) -> [u32; 4] {
    const CX8: u32 = 1 << 8;
    const CX16: u32 = 1 << 13;
    match leaf {
        1 => [0, 0, fp::cpuid::LEAF1_ECX | CX16, fp::cpuid::LEAF1_EDX | CX8],
        7 if subleaf == 0 => [0, 1 << 6 | 1 << 13, 0, 0],
        0xd => fp::xsave::cpuid_leaf_d(subleaf),
        0x8000_0001 => [0, 0, 1, 0],
        _ => [0; 4],
    }
}

/// The bits of `leaf`'s answer `r` that mirror guest state: OSXSAVE
/// (leaf 1 ECX bit 27) is CR4.OSXSAVE (SDM Vol. 2 CPUID), which the VMM
/// reads from the vCPU at each CPUID exit, as KVM does.
pub fn with_os_bits(leaf: u32, mut r: [u32; 4], cr4: u64) -> [u32; 4] {
    if leaf == 1 && cr4 & cr4::OSXSAVE != 0 {
        r[2] |= 1 << 27;
    }
    r
}

/// EAX, EBX, ECX, EDX for `leaf`/`subleaf` on vCPU `apic_id`, on a CPU
/// that has RTM when `rtm`. Leaves without a model (2 to 6, and beyond the
/// maximum) return zeros (Intel returns the highest basic leaf past the
/// maximum; zeros are what a guest probing for a feature needs to see
/// "absent").
pub fn cpuid(leaf: u32, subleaf: u32, apic_id: u8, rtm: bool) -> [u32; 4] {
    let model = match leaf {
        0 => {
            let [b, d, c] = text(b"GenuineIntel");
            [MAX_BASIC_LEAF, b, c, d]
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
    };
    let v2 = x86_64_v2(leaf, subleaf);
    [0, 1, 2, 3].map(|i| model[i] | v2[i])
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
        assert_eq!(max, 0xd);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(v, b"GenuineIntel");
        assert_eq!(cpuid(1, 0, 3, false)[1] >> 24, 3);
        assert_ne!(cpuid(0x8000_0001, 0, 0, false)[3] & 1 << 29, 0, "long mode");
        let x87_pointers = 1 << 6 | 1 << 13;
        assert_eq!(cpuid(7, 0, 0, false), [0, x87_pointers, 0, 0]);
        assert_eq!(cpuid(7, 0, 0, true), [0, 1 << 11 | x87_pointers, 0, 0], "RTM in leaf 7 EBX bit 11");
        assert_eq!(cpuid(7, 1, 0, true), [0; 4]);
        assert_eq!(apic_base_default(true), 0xfee0_0900);
    }

    #[test]
    fn x86_64_v2_and_the_xsave_layout() {
        // SDM Vol. 2 CPUID Table 3-10/3-11 bit positions.
        let [_, _, c, d] = cpuid(1, 0, 0, false);
        for (bit, name) in [(0, "SSE3"), (9, "SSSE3"), (13, "CX16"), (19, "SSE4.1"), (20, "SSE4.2"), (23, "POPCNT")] {
            assert_ne!(c & 1 << bit, 0, "{name}");
        }
        assert_eq!(c & (1 << 26 | 1 << 27 | 1 << 28), 1 << 26, "XSAVE, no OSXSAVE before CR4 says so, no AVX");
        for (bit, name) in [(0, "FPU"), (8, "CX8"), (23, "MMX"), (24, "FXSR"), (25, "SSE"), (26, "SSE2")] {
            assert_ne!(d & 1 << bit, 0, "{name}");
        }
        assert_eq!(with_os_bits(1, [0; 4], cr4::OSXSAVE)[2], 1 << 27);
        assert_eq!(with_os_bits(7, [0; 4], cr4::OSXSAVE), [0; 4]);
        assert_eq!(cpuid(0x8000_0001, 0, 0, false)[2], 1, "LAHF/SAHF in 64-bit mode");
        assert_eq!(cpuid(0xd, 0, 0, false), [3, 576, 576, 0], "x87 and SSE, 576-byte area");
        assert_eq!(cpuid(0xd, 1, 0, false), [0b1111, 576, 0, 0]);
        assert_eq!(cpuid(0xd, 2, 0, false), [0; 4], "no AVX component");
    }
}

//! MSRs whose writes do more than store a value: the TSC and
//! IA32_TSC_ADJUST (SDM Vol. 3B 18.17), the TSC deadline in TSC units,
//! IA32_APIC_BASE's enable and x2APIC bits (SDM 11.4.4, 11.12.5),
//! IA32_MISC_ENABLE's writable and read-only bits (SDM Vol. 4 table 2-2)
//! the PAT's memory types (SDM 12.12.2), and an AMD model's legacy
//! performance counters. The plain ones are in `Core::read_msr`/`write_msr`.

use super::Core;
use crate::apic::Apic;
use exitlab_arch::bits::apic::DEFAULT_BASE;
use exitlab_arch::cpuid::Feature;

/// IA32_APIC_BASE: BSP (8, read-only), x2APIC enable EXTD (10), global
/// enable EN (11).
const APIC_BSP: u64 = 1 << 8;
const APIC_EXTD: u64 = 1 << 10;
const APIC_EN: u64 = 1 << 11;

/// IA32_MISC_ENABLE at reset: fast strings (0) on, BTS and PEBS
/// unavailable (11, 12), as KVM resets it (with fast strings).
pub const MISC_ENABLE_RESET: u64 = 1 | 1 << 11 | 1 << 12;
/// Its bits software may change: fast strings (0), automatic thermal
/// control (3), enhanced SpeedStep (16), MONITOR FSM (18), limit CPUID
/// maxval (22), xTPR disable (23), XD disable (34). Bits 7, 11 and 12 are
/// read-only; the rest are reserved (kvm-unit-tests msr.c's list).
const MISC_ENABLE_WRITABLE: u64 = 1 | 1 << 3 | 1 << 16 | 1 << 18 | 1 << 22 | 1 << 23 | 1 << 34;
const MISC_ENABLE_READ_ONLY: u64 = 1 << 7 | 1 << 11 | 1 << 12;

/// PerfEvtSel0-3 and PerfCtr0-3 (MSRC001_0000-0007), which every AMD64
/// processor has without a CPUID bit (AMD APM Vol. 2 13.2.1).
const AMD_LEGACY_PERF: std::ops::RangeInclusive<u32> = 0xc001_0000..=0xc001_0007;

impl Core {
    /// Whether `index` is an AMD model's legacy performance MSR. The
    /// simulated CPU has no PMU, so they read 0 and drop writes, as KVM
    /// answers them without a virtual PMU (arch/x86/kvm/x86.c
    /// `kvm_get_msr_common`/`kvm_set_msr_common`, MSR_K7_EVNTSEL0-3 and
    /// MSR_K7_PERFCTR0-3); an Intel model has no such MSRs (#GP).
    pub(super) fn amd_legacy_perf(&self, index: u32) -> bool {
        self.features.vendor() == exitlab_arch::cpuid::Vendor::Amd && AMD_LEGACY_PERF.contains(&index)
    }

    /// The time-stamp counter: the cycle count plus the guest's offset.
    pub fn tsc(&self) -> u64 {
        self.cycles.wrapping_add(self.tsc_offset)
    }

    /// WRMSR TSC: the offset moves, and IA32_TSC_ADJUST with it.
    pub(super) fn write_tsc(&mut self, v: u64) {
        let delta = v.wrapping_sub(self.tsc());
        self.tsc_offset = self.tsc_offset.wrapping_add(delta);
        self.tsc_adjust = self.tsc_adjust.wrapping_add(delta);
        self.rearm_tsc_deadline();
    }

    /// WRMSR IA32_TSC_ADJUST: the TSC moves by the change.
    pub(super) fn write_tsc_adjust(&mut self, v: u64) {
        self.tsc_offset = self.tsc_offset.wrapping_add(v.wrapping_sub(self.tsc_adjust));
        self.tsc_adjust = v;
        self.rearm_tsc_deadline();
    }

    /// IA32_TSC_DEADLINE as written (TSC units; 0 when disarmed).
    pub(super) fn tsc_deadline(&self) -> u64 {
        match self.apic.tsc_deadline() {
            0 => 0,
            d => d.wrapping_add(self.tsc_offset),
        }
    }

    /// WRMSR IA32_TSC_DEADLINE: the APIC counts in cycles.
    pub(super) fn write_tsc_deadline(&mut self, v: u64) {
        let at = if v == 0 { 0 } else { v.wrapping_sub(self.tsc_offset).max(1) };
        self.apic.set_tsc_deadline(at, self.cycles);
    }

    /// A TSC write moves an armed deadline's cycle in step.
    fn rearm_tsc_deadline(&mut self) {
        let d = self.tsc_deadline();
        if d != 0 {
            self.write_tsc_deadline(d);
        }
    }

    /// WRMSR IA32_APIC_BASE: EN toggles the APIC (disabled, it decodes no
    /// MMIO and takes no interrupts; enabled again, it starts from its
    /// reset state), EXTD only where x2APIC is advertised and never with EN
    /// clear or back to xAPIC; the base stays at 0xfee00000 (relocation is
    /// not modelled); BSP is read-only; reserved bits are #GP.
    pub(super) fn write_apic_base(&mut self, v: u64) -> bool {
        let x2apic = self.features.has(Feature::X2apic);
        let extd_ok = x2apic || v & APIC_EXTD == 0;
        let valid_mode = !(v & APIC_EXTD != 0 && v & APIC_EN == 0);
        let leaves_x2apic = self.apic_base & APIC_EXTD != 0 && v & APIC_EXTD == 0 && v & APIC_EN != 0;
        let reserved = v & !(APIC_BSP | APIC_EXTD | APIC_EN | !0xfff) != 0 || v & !0xfff != DEFAULT_BASE;
        if !extd_ok || !valid_mode || leaves_x2apic || reserved {
            return false;
        }
        let v = (v & !APIC_BSP) | (self.apic_base & APIC_BSP);
        if (self.apic_base ^ v) & APIC_EN != 0 {
            let fires = self.apic.timer_fires;
            self.apic = Apic::new(self.apic.id, self.costs.clock.hz);
            self.apic.timer_fires = fires;
            self.apic.set_hardware_enabled(v & APIC_EN != 0);
        }
        self.apic_base = v;
        true
    }

    /// WRMSR IA32_MISC_ENABLE: #GP for reserved bits; read-only bits keep
    /// their value.
    pub(super) fn write_misc_enable(&mut self, v: u64) -> bool {
        if v & !(MISC_ENABLE_WRITABLE | MISC_ENABLE_READ_ONLY) != 0 {
            return false;
        }
        self.misc_enable = (v & MISC_ENABLE_WRITABLE) | (self.misc_enable & MISC_ENABLE_READ_ONLY);
        true
    }

    /// WRMSR IA32_PAT: each byte a memory type the PAT allows (UC 0, WC 1,
    /// WT 4, WP 5, WB 6, UC- 7), else #GP.
    pub(super) fn write_pat(&mut self, v: u64) -> bool {
        if v.to_le_bytes().iter().any(|&t| !matches!(t, 0 | 1 | 4..=7)) {
            return false;
        }
        self.pat = v;
        true
    }
}

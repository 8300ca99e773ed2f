//! Where the loaders put what they build, and the PC memory map they
//! describe to the guest (multiboot `mmap`, Linux e820).
//!
//! Low memory follows Firecracker's x86 layout: GDT at 0x500, the
//! identity-map page tables from 0x1000, the Linux zero page at 0x7000 and
//! its command line at 0x20000. RAM is one range from 0 to the guest's
//! memory size, less the legacy hole (EBDA, VGA, option and BIOS ROMs:
//! 0x9fc00-0x100000), where the platform's firmware tables live.

use crate::LoadError;

/// The GDT the loader writes for protected- and long-mode entries: null,
/// null, code at [`BOOT_CS`], data at [`BOOT_DS`], TSS at [`BOOT_TSS`].
pub const GDT: u64 = 0x500;
/// The Linux boot protocol's `__BOOT_CS` and `__BOOT_DS`
/// (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// A busy TSS descriptor (VM entry needs a usable TR); 16 bytes, since a
/// long-mode system descriptor is.
pub const BOOT_TSS: u16 = 0x20;
/// Long-mode entries: PML4, one PDPT and four page directories mapping
/// the low 4 GiB 1:1 with 2 MiB pages.
pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
pub const PD_COUNT: u64 = 4;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// The Linux command line.
pub const LINUX_CMDLINE: u64 = 0x2_0000;
/// End of conventional memory: the EBDA starts here.
pub const EBDA: u64 = 0x9_fc00;
/// Start of extended memory.
pub const HIGH_MEMORY: u64 = 0x10_0000;
/// Guest RAM is one range from 0; above this the PC has its 32-bit PCI
/// hole (the IOAPIC at 0xfec00000, the local APIC at 0xfee00000).
pub const MAX_MEMORY: u64 = 0xc000_0000;
/// Below 2 MiB a long-mode entry's tables and a kernel do not fit.
pub const MIN_MEMORY: u64 = 0x20_0000;

/// A memory-map entry's type (ACPI address range types, shared by the
/// e820 and multiboot maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeType {
    Ram = 1,
    Reserved = 2,
}

/// The guest's physical memory map: RAM below the EBDA, the legacy hole,
/// RAM from 1 MiB to the end of memory.
pub fn memory_map(memory: u64) -> [(u64, u64, RangeType); 3] {
    [
        (0, EBDA, RangeType::Ram),
        (EBDA, HIGH_MEMORY - EBDA, RangeType::Reserved),
        (HIGH_MEMORY, memory - HIGH_MEMORY, RangeType::Ram),
    ]
}

pub(crate) fn check_memory(memory: u64) -> Result<(), LoadError> {
    if memory < MIN_MEMORY {
        return Err(LoadError::BadMemorySize { memory, why: "less than the 2 MiB a loaded guest needs" });
    }
    if memory > MAX_MEMORY {
        return Err(LoadError::BadMemorySize {
            memory,
            why: "more than 3 GiB would reach the PCI hole; guest RAM is one range from 0",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_covers_memory_without_gaps() {
        let m = memory_map(128 << 20);
        assert_eq!(m[0].0, 0);
        assert_eq!(m[0].0 + m[0].1, m[1].0);
        assert_eq!(m[1].0 + m[1].1, m[2].0);
        assert_eq!(m[2].0 + m[2].1, 128 << 20);
        assert!(check_memory(MIN_MEMORY - 1).is_err());
        assert!(check_memory(MAX_MEMORY + 1).is_err());
        assert!(check_memory(MAX_MEMORY).is_ok());
    }
}

//! The ACPI tables a PC guest finds in its BIOS area (ACPI 6.5, chapter
//! 5): the RSDP at 0xe0000 (where a guest's scan of 0xe0000-0xfffff on
//! 16-byte boundaries finds it), an RSDT and an XSDT listing a FADT and a
//! MADT; the FADT points at a FACS, a DSDT and the fixed PM registers of
//! [`crate::devices::acpi_pm`] (PM timer at 0x608) and the reset register
//! (0xcf9, value 6); the MADT lists the local APICs, the IOAPIC at
//! 0xfec00000 with GSI base 0, the interrupt source overrides of ISA IRQ 0
//! to GSI 2 and of the SCI (IRQ 9: level-triggered, active high, as
//! QEMU's MADT says; without it Linux takes the SCI as active low, ACPI's
//! default, and an idle line interrupts forever) and LINT1 as NMI; the DSDT holds `\_S5` (sleep type 0, which
//! `AcpiPm` takes as power off).
//!
//! rust-vmm's acpi_tables crate builds the FADT, FACS, XSDT and the
//! DSDT's AML and checksums the generic tables (`Sdt`). The RSDP, RSDT
//! and MADT are laid out here: the crate's RSDP has no RSDT address
//! (revision 2, XSDT only), it has no RSDT, and its MADT has no interrupt
//! source override or local APIC NMI structure.

use acpi_tables::aml::{Name, Package, ZERO};
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

/// Where the tables start: the BIOS area's first byte a guest scans.
pub const ACPI_BASE: u64 = 0xe0000;
/// The end of the BIOS area; the tables must fit below it.
pub const ACPI_END: u64 = 0x10_0000;
pub const OEM_ID: [u8; 6] = *b"EXITLB";
pub const OEM_TABLE_ID: [u8; 8] = *b"EXITLAB ";
/// The SCI's ISA IRQ, as on PIIX4.
pub const SCI_IRQ: u16 = 9;
/// FADT IA-PC boot architecture flags: LEGACY_DEVICES, 8042.
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
const IAPC_8042: u16 = 1 << 1;
/// MADT flags: PCAT_COMPAT (a dual 8259 is present).
const MADT_PCAT_COMPAT: u32 = 1;
/// MPS INTI flags (ACPI 6.5, Table 5.26): polarity active high (01b),
/// trigger mode level (11b << 2).
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0x1 | 0x3 << 2;

/// What the tables describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiMachine {
    /// vCPUs, with local APIC IDs 0..cpus.
    pub cpus: u8,
    pub local_apic: u32,
    pub ioapic: u32,
    pub ioapic_id: u8,
    /// PM1a event, PM1a control and PM timer ports.
    pub pm_base: u16,
    pub reset_port: u16,
    pub reset_value: u8,
}

impl Default for AcpiMachine {
    /// One vCPU, the PC's addresses: local APIC 0xfee00000, IOAPIC
    /// 0xfec00000 (ID 0), PM base 0x600, reset register 0xcf9 = 6.
    fn default() -> Self {
        AcpiMachine {
            cpus: 1,
            local_apic: 0xfee0_0000,
            ioapic: crate::devices::ioapic::IOAPIC_BASE as u32,
            ioapic_id: 0,
            pm_base: crate::devices::acpi_pm::PM_BASE,
            reset_port: 0xcf9,
            reset_value: 0x06,
        }
    }
}

/// The tables as one block of guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// Guest-physical address of `bytes` (the RSDP is first).
    pub gpa: u64,
    pub bytes: Vec<u8>,
    /// (signature, guest-physical address, length) of each table.
    pub tables: Vec<([u8; 4], u64, usize)>,
}

impl AcpiTables {
    /// The bytes of the table with `signature` ("RSD " for the RSDP).
    pub fn table(&self, signature: &[u8; 4]) -> Option<&[u8]> {
        let &(_, gpa, len) = self.tables.iter().find(|t| &t.0 == signature)?;
        let at = (gpa - self.gpa) as usize;
        self.bytes.get(at..at + len)
    }
}

fn aml_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Lays tables out from [`ACPI_BASE`] on 16-byte boundaries (64 for the
/// FACS, which ACPI requires).
struct Layout {
    bytes: Vec<u8>,
    tables: Vec<([u8; 4], u64, usize)>,
}

impl Layout {
    /// The address the next table aligned to `align` gets.
    fn next(&self, align: usize) -> u64 {
        ACPI_BASE + self.bytes.len().next_multiple_of(align) as u64
    }

    fn put(&mut self, signature: [u8; 4], align: usize, bytes: Vec<u8>) -> u64 {
        let gpa = self.next(align);
        self.bytes.resize((gpa - ACPI_BASE) as usize, 0);
        self.tables.push((signature, gpa, bytes.len()));
        self.bytes.extend_from_slice(&bytes);
        gpa
    }
}

fn rsdp(rsdt: u64, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum of the first 20 bytes
    r.extend_from_slice(&OEM_ID);
    r.push(2); // revision: ACPI 2.0 and later
    r.extend_from_slice(&(rsdt as u32).to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

fn madt(m: &AcpiMachine) -> Vec<u8> {
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, 1);
    t.write_u32(36, m.local_apic);
    t.write_u32(40, MADT_PCAT_COMPAT);
    for id in 0..m.cpus {
        // Processor Local APIC: type 0, length 8, UID, APIC ID, enabled.
        t.append_slice(&[0, 8, id, id, 1, 0, 0, 0]);
    }
    // I/O APIC: type 1, length 12, ID, reserved, address, GSI base 0.
    let mut ioapic = vec![1, 12, m.ioapic_id, 0];
    ioapic.extend_from_slice(&m.ioapic.to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes());
    t.append_slice(&ioapic);
    // Interrupt Source Override: type 2, length 10, bus 0 (ISA), IRQ 0,
    // GSI 2, flags 0 (conforming polarity and trigger).
    t.append_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    // The SCI: ISA IRQ 9 to GSI 9, level, active high.
    let sci = SCI_IRQ as u8;
    let [f0, f1] = INTI_ACTIVE_HIGH_LEVEL.to_le_bytes();
    t.append_slice(&[2, 10, 0, sci, sci, 0, 0, 0, f0, f1]);
    // Local APIC NMI: type 4, length 6, all processors (0xff), flags 0,
    // LINT1.
    t.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    t.as_slice().to_vec()
}

fn fadt(m: &AcpiMachine, facs: u64, dsdt: u64) -> Vec<u8> {
    let pm = u32::from(m.pm_base);
    let io = |width: u8, size: AccessSize, port: u32| GAS::new(AddressSpace::SystemIo, width, 0, size, port.into());
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
        .dsdt_64(dsdt)
        .firmware_ctrl_32(facs as u32)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    f.sci_int = SCI_IRQ.into();
    f.pm1a_evt_blk = pm.into();
    f.pm1a_cnt_blk = (pm + 4).into();
    f.pm_tmr_blk = (pm + 8).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    f.century = crate::devices::rtc::CENTURY;
    f.iapc_boot_arch = (IAPC_LEGACY_DEVICES | IAPC_8042).into();
    f.reset_reg = io(8, AccessSize::ByteAccess, m.reset_port.into());
    f.reset_value = m.reset_value;
    f.x_pm1a_evt_blk = io(32, AccessSize::WordAccess, pm);
    f.x_pm1a_cnt_blk = io(16, AccessSize::WordAccess, pm + 4);
    f.x_pm_tmr_blk = io(32, AccessSize::DwordAccess, pm + 8);
    aml_bytes(&f.finalize())
}

/// Builds the tables for `m`.
pub fn build(m: &AcpiMachine) -> AcpiTables {
    let mut l = Layout { bytes: Vec::new(), tables: Vec::new() };
    // The RSDP first: its size is fixed, its addresses are known once the
    // rest are laid out, so it is written last over its placeholder.
    l.put(*b"RSD ", 16, vec![0; 36]);
    let facs = l.put(*b"FACS", 64, aml_bytes(&FACS::new()));
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, 1);
    dsdt.append_slice(&aml_bytes(&Name::new("_S5_".into(), &Package::new(vec![&ZERO, &ZERO, &ZERO, &ZERO]))));
    let dsdt = l.put(*b"DSDT", 16, dsdt.as_slice().to_vec());
    let fadt = l.put(*b"FACP", 16, fadt(m, facs, dsdt));
    let madt = l.put(*b"APIC", 16, madt(m));
    let mut rsdt = Sdt::new(*b"RSDT", 36, 1, OEM_ID, OEM_TABLE_ID, 1);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    for t in [fadt, madt] {
        rsdt.append_slice(&(t as u32).to_le_bytes());
        xsdt.add_entry(t);
    }
    let rsdt = l.put(*b"RSDT", 16, rsdt.as_slice().to_vec());
    let xsdt = l.put(*b"XSDT", 16, aml_bytes(&xsdt));
    l.bytes[..36].copy_from_slice(&rsdp(rsdt, xsdt));
    AcpiTables { gpa: ACPI_BASE, bytes: l.bytes, tables: l.tables }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    /// The table at guest-physical `gpa`, found the way a guest would:
    /// through its header's length.
    fn at(t: &AcpiTables, gpa: u64) -> &[u8] {
        let off = (gpa - t.gpa) as usize;
        let len = u32_at(&t.bytes, off + 4) as usize;
        &t.bytes[off..off + len]
    }

    #[test]
    fn a_guest_finds_every_table_from_the_rsdp_with_good_checksums() {
        let t = build(&AcpiMachine::default());
        assert!(t.gpa + t.bytes.len() as u64 <= ACPI_END);
        // The scan: "RSD PTR " on a 16-byte boundary in 0xe0000-0xfffff.
        let rsdp = &t.bytes[..36];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!((sum(&rsdp[..20]), sum(rsdp), rsdp[15]), (0, 0, 2));
        let (rsdt, xsdt) = (at(&t, u32_at(rsdp, 16).into()), at(&t, u64_at(rsdp, 24)));
        assert_eq!((&rsdt[..4], &xsdt[..4]), (&b"RSDT"[..], &b"XSDT"[..]));
        let from_rsdt: Vec<u64> = rsdt[36..].chunks(4).map(|c| u32_at(c, 0).into()).collect();
        let from_xsdt: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
        assert_eq!(from_rsdt, from_xsdt);
        let sigs: Vec<&[u8]> = from_xsdt.iter().map(|&a| &at(&t, a)[..4]).collect();
        assert_eq!(sigs, [&b"FACP"[..], &b"APIC"[..]]);
        for &a in &from_xsdt {
            assert_eq!(sum(at(&t, a)), 0, "checksum of {:?}", &at(&t, a)[..4]);
        }
        assert_eq!((sum(rsdt), sum(xsdt)), (0, 0));
    }

    #[test]
    fn fadt_points_at_the_pm_timer_reset_register_facs_and_dsdt() {
        let t = build(&AcpiMachine::default());
        let f = t.table(b"FACP").unwrap();
        // ACPI 6.5 Table 5.9 offsets.
        assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
        assert_eq!((f[91], u32_at(f, 56), u32_at(f, 64)), (4, 0x600, 0x604));
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
        assert_eq!(u32_at(f, 112) & (1 << 8), 0, "TMR_VAL_EXT clear: a 24-bit timer");
        assert_ne!(u32_at(f, 112) & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!((f[116], u64_at(f, 120), f[128]), (1, 0xcf9, 6), "reset register: I/O 0xcf9, value 6");
        assert_eq!(u64_at(f, 208 + 4), 0x608, "X_PM_TMR_BLK");
        let facs = t.table(b"FACS").unwrap();
        assert_eq!(u32_at(f, 36) as u64, t.tables.iter().find(|x| &x.0 == b"FACS").unwrap().1);
        assert_eq!((&facs[..4], facs.len()), (&b"FACS"[..], 64));
        let dsdt = at(&t, u64_at(f, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(dsdt), 0);
        // Name(_S5_, Package(4) {0, 0, 0, 0}).
        assert_eq!(&dsdt[36..], [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]);
    }

    #[test]
    fn madt_lists_local_apics_the_ioapic_and_the_irq0_and_sci_overrides() {
        let t = build(&AcpiMachine { cpus: 2, ..AcpiMachine::default() });
        let m = t.table(b"APIC").unwrap();
        assert_eq!((u32_at(m, 36), u32_at(m, 40)), (0xfee0_0000, 1));
        let mut entries = Vec::new();
        let mut at = 44;
        while at < m.len() {
            entries.push(m[at..at + usize::from(m[at + 1])].to_vec());
            at += usize::from(m[at + 1]);
        }
        assert_eq!(entries[0], [0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(entries[1], [0, 8, 1, 1, 1, 0, 0, 0]);
        assert_eq!(entries[2], [1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
        assert_eq!(entries[3], [2, 10, 0, 0, 2, 0, 0, 0, 0, 0], "IRQ 0 -> GSI 2");
        assert_eq!(entries[4], [2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0], "SCI: IRQ 9 -> GSI 9, level, active high");
        assert_eq!(entries[5], [4, 6, 0xff, 0, 0, 1]);
        assert_eq!(at, m.len());
    }
}

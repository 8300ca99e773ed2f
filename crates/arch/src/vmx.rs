//! VMX execution controls (Intel SDM Vol. 3C, 25.6): what a hypervisor asks
//! the processor to trap. Plain data; the simulated CPU enforces it and the
//! VMM fills it from a hardware profile's features.

/// EPTP bit 6: the CPU sets accessed and dirty flags in EPT entries.
pub const EPTP_AD: u64 = 1 << 6;
/// EPTP: write-back memory type and a 4-level walk.
pub const EPTP_WB_4LEVEL: u64 = 6 | 3 << 3;

/// Exception-bitmap bit for `vector`.
pub const fn exception_bit(vector: u8) -> u32 {
    1 << vector
}

/// The MSR bitmaps (SDM 25.6.9): one bit per MSR in 0..0x1fff and in
/// 0xc000_0000..0xc000_1fff, for reads and for writes. A set bit makes the
/// access exit; MSRs outside both ranges always exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrBitmap {
    /// read-low, read-high, write-low, write-high: 1 KiB each.
    bits: Box<[u8; 4096]>,
}

impl Default for MsrBitmap {
    /// Every MSR access exits.
    fn default() -> Self {
        MsrBitmap { bits: Box::new([0xff; 4096]) }
    }
}

impl MsrBitmap {
    fn slot(msr: u32, write: bool) -> Option<(usize, u8)> {
        let (half, index) = match msr {
            0..=0x1fff => (0, msr),
            0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
            _ => return None,
        };
        let base = half + if write { 2048 } else { 0 };
        Some((base + (index / 8) as usize, 1 << (index % 8)))
    }

    /// Whether an access to `msr` exits.
    pub fn exits(&self, msr: u32, write: bool) -> bool {
        Self::slot(msr, write).is_none_or(|(i, b)| self.bits[i] & b != 0)
    }

    /// Lets the guest access `msr` without an exit (or makes it exit).
    pub fn set(&mut self, msr: u32, write: bool, exit: bool) {
        if let Some((i, b)) = Self::slot(msr, write) {
            if exit {
                self.bits[i] |= b;
            } else {
                self.bits[i] &= !b;
            }
        }
    }
}

/// The I/O bitmaps A and B (SDM 25.6.4): one bit per port, set = exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoBitmap {
    bits: Box<[u8; 8192]>,
}

impl Default for IoBitmap {
    /// Every port exits.
    fn default() -> Self {
        IoBitmap { bits: Box::new([0xff; 8192]) }
    }
}

impl IoBitmap {
    /// Whether an access of `size` bytes at `port` exits (any of its ports
    /// set, or wrapping past 0xffff).
    pub fn exits(&self, port: u16, size: u8) -> bool {
        (0..u32::from(size)).any(|i| {
            let p = u32::from(port) + i;
            p > 0xffff || self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0
        })
    }

    /// Makes accesses to `port` exit (or not).
    pub fn set(&mut self, port: u16, exit: bool) {
        let (i, b) = (usize::from(port / 8), 1u8 << (port % 8));
        if exit {
            self.bits[i] |= b;
        } else {
            self.bits[i] &= !b;
        }
    }
}

/// The posted-interrupt VMCS fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedInterrupts {
    /// The posted-interrupt notification vector.
    pub notification_vector: u8,
    /// Host-physical address of the descriptor ([`crate::posted`]).
    pub descriptor: u64,
}

/// The VM-execution controls the simulator models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controls {
    // Pin-based controls.
    /// External interrupts exit (EXTERNAL_INTERRUPT) instead of being
    /// delivered through the guest IDT.
    pub external_interrupt_exiting: bool,
    /// "NMI exiting" (SDM 25.6.1): NMIs exit (EXCEPTION_NMI, vector 2)
    /// instead of being delivered through the guest IDT.
    pub nmi_exiting: bool,
    /// "Virtual NMIs" (needs NMI exiting): the CPU tracks virtual-NMI
    /// blocking for the NMIs the VMM injects: set by their delivery,
    /// cleared by the guest's IRET (SDM 25.3, 26.7.1).
    pub virtual_nmis: bool,
    /// The VMX-preemption timer: exits PREEMPTION_TIMER after this many
    /// guest cycles from VM entry.
    pub preemption_timer: Option<u64>,
    /// "Process posted interrupts" (SDM 29.6): an interrupt carrying the
    /// notification vector is not delivered or exited on; the CPU moves
    /// the requests in the descriptor into the virtual APIC instead.
    pub posted_interrupts: Option<PostedInterrupts>,

    // Primary processor-based controls.
    /// Exit (INTERRUPT_WINDOW) as soon as the guest can take an interrupt.
    pub interrupt_window_exiting: bool,
    /// Exit (NMI_WINDOW) before any instruction once there is no virtual-
    /// NMI blocking and no blocking by MOV SS (needs virtual NMIs; SDM
    /// 26.7.6).
    pub nmi_window_exiting: bool,
    /// HLT exits.
    pub hlt_exiting: bool,
    /// INVLPG exits.
    pub invlpg_exiting: bool,
    /// RDTSC exits.
    pub rdtsc_exiting: bool,
    /// MOV to CR3 exits.
    pub cr3_load_exiting: bool,
    /// MOV from CR3 exits.
    pub cr3_store_exiting: bool,
    /// MOV to CR8 exits.
    pub cr8_load_exiting: bool,
    /// MOV from CR8 exits.
    pub cr8_store_exiting: bool,
    /// Without I/O bitmaps: every IN/OUT exits when set, none when clear.
    pub unconditional_io_exiting: bool,
    /// "Use I/O bitmaps": decides per port (overrides the line above).
    pub io_bitmap: Option<IoBitmap>,
    /// "Use MSR bitmaps": decides per MSR; `None` means every RDMSR and
    /// WRMSR exits.
    pub msr_bitmap: Option<MsrBitmap>,
    /// Monitor trap flag: exit (MONITOR_TRAP_FLAG) after one guest instruction.
    pub monitor_trap_flag: bool,

    // Secondary controls.
    /// Guest-physical addresses translate through the EPT.
    pub enable_ept: bool,
    /// The EPT pointer (SDM 25.6.11): host-physical address of the EPT
    /// PML4 table, memory type in bits 2:0, walk length - 1 in 5:3, and
    /// bit 6 enabling accessed and dirty flags. 0 with EPT on means the
    /// guest-physical space maps 1:1 onto RAM with every permission.
    pub eptp: u64,
    /// TLB entries are tagged with a VPID, so entries and exits need not flush.
    pub enable_vpid: bool,
    /// Page-modification logging: every write that sets an EPT dirty flag
    /// appends its guest-physical page to the 512-entry log at
    /// `pml_address` (host-physical); a full log is a PML_FULL exit.
    pub enable_pml: bool,
    /// Host-physical address of the page-modification log (4 KiB).
    pub pml_address: u64,
    /// APIC virtualization (APICv: virtualize APIC accesses, APIC-register
    /// virtualization, virtual-interrupt delivery): the guest's local-APIC
    /// page is served by the CPU. Without it every access to the page is an
    /// APIC_ACCESS exit the VMM emulates (EOI, TPR and timer writes
    /// included).
    pub apic_virtualization: bool,
    /// The CPU describes an MMIO access in the exit (address, size,
    /// direction, data), as a RISC syndrome register or a decode assist
    /// does; without it the VMM fetches, decodes and emulates the
    /// instruction itself, as on Intel VT-x. Needs the profile feature.
    pub decode_assist: bool,

    /// Exceptions with their bit set exit (EXCEPTION_NMI) instead of being
    /// delivered.
    pub exception_bitmap: u32,
    /// CR0/CR4 bits the host owns: guest writes that change them from the
    /// read shadow exit, guest reads of them return the shadow (CR0's).
    pub cr0_mask: u64,
    /// CR0 read shadow: what the guest reads for the bits the host owns.
    pub cr0_shadow: u64,
    /// CR4 guest/host mask, as `cr0_mask`.
    pub cr4_mask: u64,
    /// CR4 read shadow.
    pub cr4_shadow: u64,
}

impl Default for Controls {
    /// What KVM-like hypervisors trap at minimum: HLT, all port I/O, all
    /// MSRs (no bitmaps), nothing else.
    fn default() -> Self {
        Controls {
            external_interrupt_exiting: false,
            nmi_exiting: false,
            virtual_nmis: false,
            preemption_timer: None,
            posted_interrupts: None,
            interrupt_window_exiting: false,
            nmi_window_exiting: false,
            hlt_exiting: true,
            invlpg_exiting: false,
            rdtsc_exiting: false,
            cr3_load_exiting: false,
            cr3_store_exiting: false,
            cr8_load_exiting: false,
            cr8_store_exiting: false,
            unconditional_io_exiting: true,
            io_bitmap: None,
            msr_bitmap: None,
            monitor_trap_flag: false,
            enable_ept: true,
            eptp: 0,
            enable_vpid: false,
            enable_pml: false,
            pml_address: 0,
            decode_assist: true,
            apic_virtualization: true,
            exception_bitmap: 0,
            cr0_mask: 0,
            cr0_shadow: 0,
            cr4_mask: 0,
            cr4_shadow: 0,
        }
    }
}

impl Controls {
    /// Whether an IN/OUT of `size` at `port` exits.
    pub fn io_exits(&self, port: u16, size: u8) -> bool {
        match &self.io_bitmap {
            Some(b) => b.exits(port, size),
            None => self.unconditional_io_exiting,
        }
    }

    /// Whether RDMSR (or WRMSR) of `msr` exits.
    pub fn msr_exits(&self, msr: u32, write: bool) -> bool {
        self.msr_bitmap.as_ref().is_none_or(|b| b.exits(msr, write))
    }

    /// Whether exception `vector` exits under the exception bitmap.
    pub fn exception_exits(&self, vector: u8) -> bool {
        vector < 32 && self.exception_bitmap & exception_bit(vector) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_bitmap_layout_follows_the_sdm() {
        let mut b = MsrBitmap::default();
        assert!(b.exits(0x10, false) && b.exits(0xc000_0080, true) && b.exits(0x4000_0000, false));
        b.set(0xc000_0080, false, false);
        assert!(!b.exits(0xc000_0080, false));
        assert!(b.exits(0xc000_0080, true), "reads and writes have separate bits");
        // Read-high starts at byte 1024: EFER (0xc0000080) is bit 0 of byte 1024 + 16.
        assert_eq!(b.bits[1024 + 16] & 1, 0);
        b.set(0x1b, true, false);
        assert_eq!(b.bits[2048 + 3] & (1 << 3), 0);
        // Outside the two ranges an access always exits.
        b.set(0x4000_0000, false, false);
        assert!(b.exits(0x4000_0000, false));
    }

    #[test]
    fn io_bitmap_checks_every_byte_of_the_access() {
        let mut b = IoBitmap::default();
        for p in 0x80..0x84 {
            b.set(p, false);
        }
        assert!(!b.exits(0x80, 4));
        assert!(b.exits(0x81, 4), "port 0x84 still exits");
        assert!(b.exits(0xffff, 2), "wrapping past 0xffff exits");
        let c = Controls { unconditional_io_exiting: false, ..Controls::default() };
        assert!(!c.io_exits(0x3f8, 1));
        assert!(Controls::default().io_exits(0x3f8, 1));
    }
}

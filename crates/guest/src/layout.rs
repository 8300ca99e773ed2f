//! The guest-physical memory map and the guest <-> VMM conventions every
//! exitlab image follows. Port I/O is the channel because it exits to
//! userspace on every backend.

/// GDT: null, kernel code, kernel data, user data, user code, TSS (16 bytes).
pub const GDT: u64 = 0x0500;
/// 64-bit TSS: 104 bytes, then an I/O permission bitmap that allows every
/// port (8 KiB of zeros and the terminating 0xff byte); RSP0 is the kernel
/// stack top.
pub const TSS: u64 = 0x8000;
/// Offset of the I/O permission bitmap inside the TSS.
pub const TSS_IO_BITMAP: u64 = 0x68;
/// TSS limit: the last byte of the bitmap's terminator.
pub const TSS_LIMIT: u32 = 0x68 + 8192;
/// Mailbox the guest kernel fills before reporting an event (see
/// [`crate::MailboxReport`]).
pub const MAILBOX: u64 = 0x0700;
/// Counters the guest keeps for the VMM to read (u64 slots, up to
/// [`GUEST_COUNTER_SLOTS`]); an image names them in its `counters` request,
/// slot by slot.
pub const GUEST_COUNTERS: u64 = 0x0780;
pub const GUEST_COUNTER_SLOTS: usize = 8;
/// 4-level identity page tables: PML4, PDPT, and four page directories of
/// 2 MiB pages covering the low 4 GiB (RAM, MMIO holes and the local APIC).
pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
pub const PD_COUNT: u64 = 4;
/// The ring-0 stack grows down from here.
pub const KERNEL_STACK_TOP: u64 = 0x8_0000;
/// The ring-3 stack grows down from here.
pub const USER_STACK_TOP: u64 = 0x9_0000;
/// Where images load.
pub const IMAGE_BASE: u64 = 0x10_0000;
/// Default guest RAM size.
pub const DEFAULT_MEMORY: u64 = 32 << 20;

/// GDT selectors.
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;
pub const TSS_SELECTOR: u16 = 0x28;

/// COM1, a 16550 UART: the guest console.
pub const SERIAL_COM1: u16 = 0x3f8;
/// Writing a dword here ends the run. On the exitlab machine the dword is
/// the status itself (0: success); on the PC machine the port is QEMU's
/// isa-debug-exit, whose status is `(code << 1) | 1`.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
/// Writing a [`Phase`] code here marks a measurement-phase boundary. Not
/// a PC port (fw_cfg has 0x510-0x51b, its DMA interface included), so the
/// exitlab protocol and the PC platform live side by side.
pub const PORT_MARKER: u16 = 0x5f0;
/// Writing here reports the event described in the mailbox (an exception
/// or an unexpected interrupt); the run ends with a guest error.
pub const PORT_REPORT: u16 = 0x5f1;
/// The POST diagnostic port: the target of the port-I/O microbenchmarks.
pub const PORT_POST: u16 = 0x80;
/// 8259 PIC data ports (the kernel masks every line).
pub const PIC_MASTER_DATA: u16 = 0x21;
pub const PIC_SLAVE_DATA: u16 = 0xa1;

/// The MMIO scratch device the MMIO microbenchmarks access: no RAM there,
/// so every access exits.
pub const MMIO_BENCH: u64 = 0xd000_0000;
pub const MMIO_BENCH_SIZE: u64 = 0x1000;

/// The local APIC timer's vector in every exitlab kernel.
pub const TIMER_VECTOR: u8 = 0x40;
/// The completion interrupt of the doorbell device (an MSI).
pub const DEVICE_VECTOR: u8 = 0x41;
/// Writing here rings the doorbell device: it completes the request at
/// once and interrupts with an MSI on [`DEVICE_VECTOR`].
pub const PORT_DOORBELL: u16 = 0x81;
/// Where the exitlab block device's registers sit in guest-physical space
/// (one 4 KiB BAR): mapped straight to the device when the VMM assigns it
/// through an IOMMU, trapped and emulated when it cannot.
pub const BLK_BAR: u64 = 0xd010_0000;
pub const BLK_BAR_SIZE: u64 = 0x1000;

/// The exitlab block device's interface: a ring of 32-byte requests in
/// guest memory that the device reads by DMA, a producer index the driver
/// writes (the doorbell), a completion index the device advances, and one
/// interrupt (message 0) per completed request. Registers are 32 bits.
pub mod blk {
    /// Reads "XBLK".
    pub const ID: u64 = 0x00;
    pub const ID_VALUE: u32 = u32::from_le_bytes(*b"XBLK");
    /// Bit 0: a request failed (its status says why); write 1 to clear.
    pub const STATUS: u64 = 0x04;
    pub const STATUS_ERROR: u32 = 1;
    /// Ring address (as the device's DMA sees it), low and high halves.
    pub const RING_LO: u64 = 0x08;
    pub const RING_HI: u64 = 0x0c;
    /// Entries in the ring: a power of two up to [`MAX_RING`]; writing it
    /// resets both indices to 0.
    pub const RING_SIZE: u64 = 0x10;
    pub const MAX_RING: u32 = 256;
    /// Producer index (free-running): requests up to here are submitted.
    pub const TAIL: u64 = 0x14;
    /// Completion index (free-running, read-only).
    pub const HEAD: u64 = 0x18;
    /// Disk size in 512-byte sectors (read-only).
    pub const CAPACITY: u64 = 0x1c;

    /// Bytes in one request.
    pub const REQUEST: u64 = 32;
    /// Request layout: op (u8), status (u8, written by the device), two
    /// reserved bytes, sectors (u32), lba (u64), buffer address (u64), and
    /// the completion's time on the device's clock in ns (u64, written by
    /// the device: how a driver measures its interrupt latency).
    pub const REQ_OP: u64 = 0;
    pub const REQ_STATUS: u64 = 1;
    pub const REQ_SECTORS: u64 = 4;
    pub const REQ_LBA: u64 = 8;
    pub const REQ_BUF: u64 = 16;
    pub const REQ_DONE_NS: u64 = 24;
    /// Ops: disk to memory, memory to disk.
    pub const OP_READ: u8 = 1;
    pub const OP_WRITE: u8 = 2;
    /// Statuses the device writes back.
    pub const ST_OK: u8 = 0;
    pub const ST_DMA_FAULT: u8 = 1;
    pub const ST_BAD_REQUEST: u8 = 2;
    pub const SECTOR: u64 = 512;
    /// The most sectors one request moves.
    pub const MAX_SECTORS: u32 = 128;
}

/// The spurious-interrupt vector programmed into the APIC SVR.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Measurement phases a guest marks on [`PORT_MARKER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// From reset until the first marker.
    Boot = 0,
    Warmup = 1,
    Measure = 2,
    /// After the measured loop, until the run ends.
    Done = 3,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Boot, Phase::Warmup, Phase::Measure, Phase::Done];

    pub fn from_code(code: u32) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| *p as u32 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Boot => "boot",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Done => "done",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }
}

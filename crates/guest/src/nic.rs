//! The register and descriptor layouts of the two network devices, as a
//! driver and the device model both need them: the Intel 82540EM (e1000,
//! "PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
//! Manual", ch. 3 and 13) and virtio-net over virtio-mmio (virtio 1.2,
//! §4.2.2 version-2 registers, §2.7 split virtqueues, §5.1 net device).

/// Where the devices' registers sit in guest-physical space (PCI
/// enumeration is a later step: fixed addresses for now).
pub const E1000_BAR: u64 = 0xd020_0000;
pub const E1000_BAR_SIZE: u64 = 0x2_0000;
pub const VIRTIO_NET_BAR: u64 = 0xd030_0000;
pub const VIRTIO_NET_BAR_SIZE: u64 = 0x1000;
/// The page of the machine's coalescing kick doorbell (E5), right after
/// virtio-net's registers: the driver writes a queue index there.
pub const KICK_DOORBELL: u64 = VIRTIO_NET_BAR + VIRTIO_NET_BAR_SIZE;
pub const KICK_DOORBELL_SIZE: u64 = 0x1000;

/// The guest's MAC address (both devices report it) and the echo peer's.
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
/// The EtherType of exitlab's ping-pong frames (IEEE local experimental).
pub const ETHERTYPE: u16 = 0x88b5;

pub mod e1000 {
    pub const CTRL: u64 = 0x0000;
    pub const CTRL_RST: u32 = 1 << 26;
    pub const STATUS: u64 = 0x0008;
    pub const STATUS_FD: u32 = 1 << 0;
    pub const STATUS_LU: u32 = 1 << 1;
    /// EEPROM read: START (bit 0), address (bits 15:8); DONE (bit 4) and
    /// data (bits 31:16) come back.
    pub const EERD: u64 = 0x0014;
    pub const EERD_START: u32 = 1 << 0;
    pub const EERD_DONE: u32 = 1 << 4;
    pub const ICR: u64 = 0x00c0;
    pub const ITR: u64 = 0x00c4;
    pub const ICS: u64 = 0x00c8;
    pub const IMS: u64 = 0x00d0;
    pub const IMC: u64 = 0x00d8;
    /// Interrupt causes (ICR, ICS, IMS, IMC bits).
    pub const ICR_TXDW: u32 = 1 << 0;
    pub const ICR_LSC: u32 = 1 << 2;
    pub const ICR_RXT0: u32 = 1 << 7;
    pub const RCTL: u64 = 0x0100;
    pub const RCTL_EN: u32 = 1 << 1;
    pub const RCTL_BAM: u32 = 1 << 15;
    pub const RCTL_SECRC: u32 = 1 << 26;
    pub const TCTL: u64 = 0x0400;
    pub const TCTL_EN: u32 = 1 << 1;
    pub const TCTL_PSP: u32 = 1 << 3;
    pub const TIPG: u64 = 0x0410;
    pub const RDBAL: u64 = 0x2800;
    pub const RDBAH: u64 = 0x2804;
    pub const RDLEN: u64 = 0x2808;
    pub const RDH: u64 = 0x2810;
    pub const RDT: u64 = 0x2818;
    pub const TDBAL: u64 = 0x3800;
    pub const TDBAH: u64 = 0x3804;
    pub const TDLEN: u64 = 0x3808;
    pub const TDH: u64 = 0x3810;
    pub const TDT: u64 = 0x3818;
    /// Multicast table array: 128 32-bit entries.
    pub const MTA: u64 = 0x5200;
    pub const MTA_LEN: u64 = 0x200;
    pub const RAL0: u64 = 0x5400;
    pub const RAH0: u64 = 0x5404;
    /// Address valid, in RAH.
    pub const RAH_AV: u32 = 1 << 31;
    /// Missed packets count (a statistics register; reads clear it).
    pub const MPC: u64 = 0x4010;

    /// Legacy descriptors, 16 bytes, for both rings: buffer address (8),
    /// length (2), then TX: CSO, CMD, STA, CSS, special; RX: checksum (2),
    /// status, errors, special.
    pub const DESC: u64 = 16;
    pub const DESC_LEN: u64 = 8;
    pub const TX_CMD: u64 = 11;
    pub const TX_STA: u64 = 12;
    pub const RX_STATUS: u64 = 12;
    pub const CMD_EOP: u8 = 1 << 0;
    pub const CMD_IFCS: u8 = 1 << 1;
    pub const CMD_RS: u8 = 1 << 3;
    pub const STA_DD: u8 = 1 << 0;
    pub const RX_EOP: u8 = 1 << 1;
    /// Receive buffer size with RCTL.BSIZE = 00b.
    pub const RX_BUFFER: u64 = 2048;
}

pub mod virtio {
    pub const MAGIC: u64 = 0x000;
    pub const MAGIC_VALUE: u32 = u32::from_le_bytes(*b"virt");
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const DEVICE_NET: u32 = 1;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Device configuration: the MAC (6 bytes), then the status (u16).
    pub const CONFIG: u64 = 0x100;

    /// Feature bits (§6 and §5.1.3).
    pub const F_NET_MAC: u32 = 5;
    pub const F_RING_EVENT_IDX: u32 = 29;
    pub const F_VERSION_1: u32 = 32;

    /// Device status bits (§2.1).
    pub const S_ACKNOWLEDGE: u32 = 1;
    pub const S_DRIVER: u32 = 2;
    pub const S_DRIVER_OK: u32 = 4;
    pub const S_FEATURES_OK: u32 = 8;
    pub const S_NEEDS_RESET: u32 = 64;
    pub const S_FAILED: u32 = 128;

    /// Queues: receive, transmit.
    pub const RXQ: u16 = 0;
    pub const TXQ: u16 = 1;
    /// The largest queue the device offers.
    pub const QUEUE_MAX: u16 = 256;
    /// struct virtio_net_hdr with VERSION_1: 12 bytes before each frame.
    pub const NET_HDR: u64 = 12;

    /// Split-ring layout (§2.7): descriptors of 16 bytes (address, length,
    /// flags, next); the driver area (flags, idx, ring[], used_event); the
    /// device area (flags, idx, ring[] of 8-byte elements, avail_event).
    pub const DESC: u64 = 16;
    pub const DESC_F_WRITE: u16 = 2;
    pub const AVAIL_IDX: u64 = 2;
    pub const AVAIL_RING: u64 = 4;
    pub const USED_IDX: u64 = 2;
    pub const USED_RING: u64 = 4;
    pub const USED_ELEM: u64 = 8;
}

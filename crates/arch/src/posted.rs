//! The posted-interrupt descriptor (SDM vol. 3C 29.6, and the VT-d
//! specification's posted-interrupt descriptor, which shares the layout):
//! 64 bytes in host memory that a device's interrupt remapping, or the VMM,
//! writes to hand a vector to a vCPU without stopping it.
//!
//! | bits    | field |
//! |---------|-------|
//! | 255:0   | PIR: one request bit per vector |
//! | 256     | ON: outstanding notification |
//! | 257     | SN: suppress notification |
//! | 279:272 | NV: notification vector |
//! | 319:288 | NDST: notification destination (xAPIC ID in bits 15:8) |

/// Bytes in a descriptor; it must be 64-byte aligned.
pub const SIZE: usize = 64;

const ON: u8 = 1 << 0;
const SN: u8 = 1 << 1;

/// A descriptor, as plain fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Posted-interrupt requests: one bit per vector, bits 255:0.
    pub pir: [u64; 4],
    /// Outstanding notification (bit 256).
    pub on: bool,
    /// Suppress notification (bit 257).
    pub sn: bool,
    /// Notification vector (bits 279:272).
    pub nv: u8,
    /// xAPIC ID of the CPU to notify.
    pub ndst: u8,
}

impl Descriptor {
    /// Reads a descriptor from its 64 bytes.
    pub fn from_bytes(b: &[u8; SIZE]) -> Descriptor {
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Descriptor {
            pir: [word(0), word(1), word(2), word(3)],
            on: b[32] & ON != 0,
            sn: b[32] & SN != 0,
            nv: b[34],
            ndst: b[37],
        }
    }

    /// The descriptor's 64 bytes.
    pub fn to_bytes(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        for (i, w) in self.pir.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[32] = if self.on { ON } else { 0 } | if self.sn { SN } else { 0 };
        b[34] = self.nv;
        b[37] = self.ndst;
        b
    }

    /// Posts `vector`: sets its PIR bit, and ON unless a notification is
    /// already outstanding or suppressed. True when the poster must send
    /// the notification vector now; false when an earlier one covers it.
    pub fn post(&mut self, vector: u8) -> bool {
        self.pir[usize::from(vector / 64)] |= 1 << (vector % 64);
        if self.on || self.sn {
            return false;
        }
        self.on = true;
        true
    }

    /// Posted-interrupt processing's first steps: clears ON and hands over
    /// (and clears) the requested vectors, lowest first.
    pub fn take(&mut self) -> Vec<u8> {
        self.on = false;
        let pir = std::mem::take(&mut self.pir);
        (0..=255u8).filter(|&v| pir[usize::from(v / 64)] & (1 << (v % 64)) != 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_at_the_sdm_bit_positions() {
        let d = Descriptor { pir: [1, 0, 0, 1 << 63], on: true, sn: false, nv: 0xf2, ndst: 3 };
        let b = d.to_bytes();
        assert_eq!(b[0], 1, "PIR bit 0 is vector 0");
        assert_eq!(b[31], 0x80, "PIR bit 255 is vector 255");
        assert_eq!(b[32], 1, "ON is bit 256");
        assert_eq!(b[34], 0xf2, "NV is bits 279:272");
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 3 << 8, "xAPIC NDST is bits 303:296");
        assert_eq!(Descriptor::from_bytes(&b), d);
        let sn = Descriptor { sn: true, ..Descriptor::default() }.to_bytes();
        assert_eq!(sn[32], 2, "SN is bit 257");
    }

    #[test]
    fn only_the_first_post_notifies_until_processing() {
        let mut d = Descriptor { nv: 0xf2, ..Descriptor::default() };
        assert!(d.post(0x41));
        assert!(!d.post(0x42), "ON already set: the pending notification covers it");
        assert!(!d.post(0x41));
        assert_eq!(d.take(), vec![0x41, 0x42]);
        assert_eq!((d.on, d.pir), (false, [0; 4]));
        assert!(d.post(0x41), "after processing a new post notifies again");
        let mut quiet = Descriptor { sn: true, ..Descriptor::default() };
        assert!(!quiet.post(0x30), "SN suppresses the notification");
        assert_eq!(quiet.take(), vec![0x30], "but the request is recorded");
    }
}

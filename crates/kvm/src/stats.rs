//! KVM's binary statistics (KVM_GET_STATS_FD, Documentation/virt/kvm/api.rst
//! section 4.133), which kvm-ioctls does not wrap. The file holds a header,
//! one descriptor per statistic and a data block of u64 values; we parse the
//! descriptors once and re-read only the data block per sample.

use exitlab_hv::Counter;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// `flags` bits 3:0 of a descriptor: the statistic's type.
const TYPE_MASK: u32 = 0xf;
/// A monotonically increasing count: the only kind whose deltas mean
/// "events in this interval".
const TYPE_CUMULATIVE: u32 = 0;
/// Size of `struct kvm_stats_desc` without its trailing name.
const DESC_FIXED: usize = 16;
const HEADER_SIZE: usize = 24;

/// One scalar statistic: its name and where its value lives.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stat {
    name: String,
    /// Byte offset inside the data block.
    offset: usize,
}

/// A vCPU's (or VM's) statistics file, parsed.
#[derive(Debug)]
pub struct StatsFile {
    file: File,
    data_offset: u64,
    data_len: usize,
    stats: Vec<Stat>,
    buf: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// Parses the header and descriptor block (everything before the data
/// block): cumulative scalar statistics, with the data block's offset and
/// length. `None` when the bytes do not hold a well-formed stats file.
fn parse_descriptors(b: &[u8]) -> Option<(u64, usize, Vec<Stat>)> {
    let name_size = u32_at(b, 4)? as usize;
    let num_desc = u32_at(b, 8)? as usize;
    let desc_offset = u32_at(b, 16)? as usize;
    let data_offset = u32_at(b, 20)? as u64;
    let stride = DESC_FIXED + name_size;
    let mut stats = Vec::new();
    let mut data_len = 0usize;
    for i in 0..num_desc {
        let d = b.get(desc_offset + i * stride..desc_offset + (i + 1) * stride)?;
        let flags = u32_at(d, 0)?;
        let size = u16_at(d, 6)? as usize;
        let offset = u32_at(d, 8)? as usize;
        data_len = data_len.max(offset + size * 8);
        if flags & TYPE_MASK != TYPE_CUMULATIVE || size != 1 {
            continue;
        }
        let raw = &d[DESC_FIXED..];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        let name = String::from_utf8_lossy(&raw[..end]).into_owned();
        stats.push(Stat { name, offset });
    }
    Some((data_offset, data_len, stats))
}

impl StatsFile {
    /// Parses the file behind a stats fd.
    pub fn new(file: File) -> std::io::Result<StatsFile> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed KVM stats file");
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0)?;
        let data_offset = u64::from(u32_at(&header, 20).ok_or_else(bad)?);
        let mut head = vec![0u8; data_offset as usize];
        file.read_exact_at(&mut head, 0)?;
        let (data_offset, data_len, stats) = parse_descriptors(&head).ok_or_else(bad)?;
        Ok(StatsFile { file, data_offset, data_len, stats, buf: vec![0; data_len] })
    }

    /// The current value of every cumulative statistic.
    pub fn sample(&mut self) -> std::io::Result<Vec<Counter>> {
        self.file.read_exact_at(&mut self.buf[..self.data_len], self.data_offset)?;
        Ok(self
            .stats
            .iter()
            .map(|s| Counter {
                name: s.name.clone(),
                value: u64::from_le_bytes(self.buf[s.offset..s.offset + 8].try_into().expect("8 bytes")),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a stats header + descriptors as the kernel lays them out.
    fn image(descs: &[(u32, u16, u32, &str)], name_size: usize) -> Vec<u8> {
        let desc_offset = HEADER_SIZE + 8; // an id string sits between
        let data_offset = desc_offset + descs.len() * (DESC_FIXED + name_size);
        let mut b = vec![0u8; data_offset];
        b[4..8].copy_from_slice(&(name_size as u32).to_le_bytes());
        b[8..12].copy_from_slice(&(descs.len() as u32).to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(desc_offset as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(data_offset as u32).to_le_bytes());
        for (i, (flags, size, offset, name)) in descs.iter().enumerate() {
            let d = &mut b[desc_offset + i * (DESC_FIXED + name_size)..];
            d[0..4].copy_from_slice(&flags.to_le_bytes());
            d[6..8].copy_from_slice(&size.to_le_bytes());
            d[8..12].copy_from_slice(&offset.to_le_bytes());
            d[DESC_FIXED..DESC_FIXED + name.len()].copy_from_slice(name.as_bytes());
        }
        b
    }

    #[test]
    fn keeps_cumulative_scalars_only() {
        let b = image(
            &[
                (TYPE_CUMULATIVE, 1, 0, "exits"),
                (1, 1, 8, "halt_poll_fail_ns"), // instant
                (3, 32, 16, "halt_wait_hist"),  // histogram
                (TYPE_CUMULATIVE, 1, 16 + 256, "io_exits"),
            ],
            48,
        );
        let (data_offset, data_len, stats) = parse_descriptors(&b).unwrap();
        assert_eq!(data_offset as usize, b.len());
        assert_eq!(data_len, 16 + 256 + 8);
        assert_eq!(
            stats,
            vec![Stat { name: "exits".into(), offset: 0 }, Stat { name: "io_exits".into(), offset: 272 }]
        );
    }

    #[test]
    fn truncated_files_are_rejected_not_panicked_on() {
        let b = image(&[(TYPE_CUMULATIVE, 1, 0, "exits")], 48);
        for cut in [0, 10, 30, b.len() - 1] {
            assert!(parse_descriptors(&b[..cut]).is_none(), "cut at {cut}");
        }
    }
}

//! Memory operands wider than the [`Cpu`]'s 8-byte accesses: 16-byte
//! vectors, 10-byte x87 values and the save areas, read and written as
//! little-endian pieces of at most 8 bytes. A wide store first asks the
//! machine whether all of it can be written ([`Cpu::check_write`]), so a
//! fault in a later piece leaves memory as it was (SDM Vol. 3A 6.5: a
//! faulting instruction is restartable).

use crate::cpu::Cpu;
use crate::op::Seg;

/// Reads `buf.len()` bytes at `offset` in `seg`, 8 at a time.
pub fn read<C: Cpu>(c: &mut C, seg: Seg, offset: u64, buf: &mut [u8]) -> Result<(), C::Stop> {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let at = offset.wrapping_add(8 * i as u64);
        let v = c.read(seg, at, chunk.len() as u8)?;
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

/// Writes `bytes` at `offset` in `seg`, 8 at a time, after checking that
/// the whole range is writable.
pub fn write<C: Cpu>(c: &mut C, seg: Seg, offset: u64, bytes: &[u8]) -> Result<(), C::Stop> {
    if bytes.len() > 8 {
        c.check_write(seg, offset, bytes.len())?;
    }
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut v = [0u8; 8];
        v[..chunk.len()].copy_from_slice(chunk);
        c.write(seg, offset.wrapping_add(8 * i as u64), chunk.len() as u8, u64::from_le_bytes(v))?;
    }
    Ok(())
}

/// A value of `size` bytes (1, 2, 4, 8, 10 or 16), zero-extended.
pub fn load<C: Cpu>(c: &mut C, seg: Seg, offset: u64, size: u8) -> Result<u128, C::Stop> {
    if size <= 8 {
        return Ok(u128::from(c.read(seg, offset, size)?));
    }
    let mut b = [0u8; 16];
    read(c, seg, offset, &mut b[..usize::from(size.min(16))])?;
    Ok(u128::from_le_bytes(b))
}

/// Stores the low `size` bytes (1, 2, 4, 8, 10 or 16) of `v`.
pub fn store<C: Cpu>(c: &mut C, seg: Seg, offset: u64, size: u8, v: u128) -> Result<(), C::Stop> {
    if size <= 8 {
        return c.write(seg, offset, size, v as u64);
    }
    write(c, seg, offset, &v.to_le_bytes()[..usize::from(size.min(16))])
}

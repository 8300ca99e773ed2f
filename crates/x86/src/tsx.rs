//! Restricted transactional memory (SDM Vol. 1 ch. 16; Vol. 2 "XBEGIN",
//! "XEND", "XABORT", "XTEST"): #UD without the RTM feature; the
//! transaction itself (the write log, the abort) is the [`Cpu`]'s.

use crate::cpu::{Cpu, Exception, Feature};
use crate::exec::{get, next};
use crate::flags::Flags;
use crate::op::{Op, Opnd};
use exitlab_arch::bits::rflags::ZF;

/// Abort status bits in EAX (SDM Vol. 1 table 16-1).
pub mod status {
    /// XABORT ran; its immediate is in bits 31:24.
    pub const XABORT: u32 = 1 << 0;
    /// The write set outgrew what the cache can track.
    pub const CAPACITY: u32 = 1 << 3;
    /// A debug breakpoint (#DB or #BP) was hit.
    pub const DEBUG: u32 = 1 << 4;
    /// The abort happened in a nested transaction.
    pub const NESTED: u32 = 1 << 5;
}

fn require_rtm<C: Cpu>(c: &mut C) -> Result<(), C::Stop> {
    if c.has(Feature::Rtm) {
        Ok(())
    } else {
        Err(c.exception(Exception::ud()))
    }
}

/// XBEGIN rel: opens a transaction whose abort resumes at the target. If
/// the CPU aborts it at once (nesting too deep) RIP is already there.
#[inline(always)]
pub fn xbegin<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_rtm(c)?;
    let fallback = get(c, &op.a, 8)?;
    c.xbegin(fallback);
    if !c.in_transaction() {
        return Ok(());
    }
    next(c, op)
}

/// XEND: commits (#GP outside a transaction).
#[inline(always)]
pub fn xend<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_rtm(c)?;
    c.xend()?;
    next(c, op)
}

/// XABORT imm8: aborts with the immediate in EAX bits 31:24; a no-op
/// outside a transaction.
#[inline(always)]
pub fn xabort<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_rtm(c)?;
    if c.in_transaction() {
        let Opnd::Imm(imm) = op.a else { return Err(c.unsupported()) };
        c.xabort(status::XABORT | (imm as u32 & 0xff) << 24);
        return Ok(());
    }
    next(c, op)
}

/// XTEST: ZF clear inside a transaction, set outside; the other status
/// flags clear.
#[inline(always)]
pub fn xtest<C: Cpu>(c: &mut C, op: &Op) -> Result<(), C::Stop> {
    require_rtm(c)?;
    let inside = c.in_transaction();
    c.set_flags(Flags::known(if inside { 0 } else { ZF }));
    next(c, op)
}

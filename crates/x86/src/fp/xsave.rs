//! Saving and restoring x87 and SSE state (SDM Vol. 1 §8.1.10 and Figures
//! 8-9/8-10 for FNSTENV/FNSAVE, §10.5 and Vol. 2 FXSAVE Tables 3-46/3-47
//! for FXSAVE/FXRSTOR, ch. 13 for the XSAVE feature set; Vol. 2 XSETBV,
//! XGETBV, CPUID leaf 0DH): memory images built from and loaded into
//! [`FpuState`], the checks that raise #GP, XCR0 and the CPUID layout.
//! This model supports state components 0 (x87) and 1 (SSE) only: XCR0 may
//! be 1 or 3, and the XSAVE area is 576 bytes in both formats.
//!
//! The executor checks what needs the machine: CR4.OSFXSR/OSXSAVE (#UD),
//! CR0.TS/EM (#NM), alignment (16 bytes for FXSAVE, 64 for XSAVE: #GP),
//! CPL 0 for XSETBV, XSAVES and XRSTORS (#GP), and the memory accesses.

use super::mxcsr::{Mxcsr, ReservedBits, MXCSR_DEFAULT, MXCSR_MASK};
use super::x87::{F80, X87};

/// The architectural x87 and SSE state the save instructions see.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FpuState {
    /// x87 registers, control, status, tags, last-instruction pointers.
    pub x87: X87,
    /// MXCSR.
    pub mxcsr: Mxcsr,
    /// XMM0-XMM15.
    pub xmm: [u128; 16],
    /// FPU instruction pointer selector (FCS); CPUs that deprecate it store
    /// 0 (CPUID.(EAX=7,ECX=0):`EBX[13]`).
    pub fcs: u16,
    /// FPU data pointer selector (FDS).
    pub fds: u16,
    /// XINUSE for components 0 and 1 (SDM Vol. 1 §13.6), tracked as the
    /// processor tracks it: the executor sets bit 0 when an instruction
    /// writes x87/MMX state and bit 1 when one writes an XMM register;
    /// only reset and an XRSTOR that initializes a component clear a bit.
    /// Silicon keeps x87 in use after FNINIT and SSE in use after zeroing
    /// every XMM register (measured on the CPU tests/silicon names), so
    /// the state's contents cannot stand in for it.
    pub xinuse: u8,
}

/// State components this model supports: x87 (bit 0) and SSE (bit 1).
pub const XCR0_SUPPORTED: u64 = 0b11;
/// The XSAVE area size for every supported XCR0, standard and compacted:
/// the 512-byte legacy region and the 64-byte header.
pub const XSAVE_SIZE: u32 = 576;

/// Which save instruction (SDM Vol. 1 §13.7, §13.9-13.11).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SaveOp {
    /// XSAVE: every requested component, `XSTATE_BV[i]` = `XINUSE[i]`.
    Xsave,
    /// XSAVEOPT: as XSAVE but components in their initial configuration
    /// are not written (the init optimization; the modified optimization
    /// is not modelled, which the SDM allows).
    Xsaveopt,
    /// XSAVEC: the compacted format, only components in use written.
    Xsavec,
    /// XSAVES: as XSAVEC (no supervisor component is supported).
    Xsaves,
}

/// Why an XRSTOR, XRSTORS or XSETBV raises #GP(0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XFault {
    /// MXCSR with reserved bits.
    Mxcsr(ReservedBits),
    /// Standard form: XSTATE_BV sets a bit outside XCR0, or header bytes
    /// 8-23 are not zero.
    StandardHeader {
        /// XSTATE_BV.
        xstate_bv: u64,
        /// XCOMP_BV.
        xcomp_bv: u64,
    },
    /// Compacted form: XCOMP_BV sets a bit outside XCR0 (| IA32_XSS),
    /// XSTATE_BV a bit outside XCOMP_BV, or header bytes 16-63 are not
    /// zero; or XRSTORS on the standard form.
    CompactedHeader {
        /// XSTATE_BV.
        xstate_bv: u64,
        /// XCOMP_BV.
        xcomp_bv: u64,
    },
    /// XSETBV with ECX ≠ 0 or an invalid XCR0 value; XGETBV with an
    /// unsupported ECX.
    Xcr {
        /// ECX.
        index: u32,
        /// The value.
        value: u64,
    },
}

fn put(area: &mut [u8], at: usize, bytes: &[u8]) {
    area[at..at + bytes.len()].copy_from_slice(bytes);
}

fn u16_at(a: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([a[at], a[at + 1]])
}

fn u32_at(a: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(a[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(a: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(a[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Writes the x87 part of the legacy region (bytes 0-23 and 32-159):
/// FCW, FSW, abridged FTW, FOP, FIP and FDP in the REX.W layout (64-bit
/// pointers) or the default one (32-bit offsets with FCS and FDS), and the
/// registers in stack order, their six reserved bytes zero.
fn put_x87(s: &FpuState, rex_w: bool, area: &mut [u8]) {
    let x = &s.x87;
    put(area, 0, &x.cw.to_le_bytes());
    put(area, 2, &x.status_word().to_le_bytes());
    area[4] = x.valid;
    area[5] = 0;
    put(area, 6, &(x.fop & 0x7ff).to_le_bytes());
    if rex_w {
        put(area, 8, &x.fip.to_le_bytes());
        put(area, 16, &x.fdp.to_le_bytes());
    } else {
        put(area, 8, &(x.fip as u32).to_le_bytes());
        put(area, 12, &(s.fcs as u32).to_le_bytes());
        put(area, 16, &(x.fdp as u32).to_le_bytes());
        put(area, 20, &(s.fds as u32).to_le_bytes());
    }
    for i in 0..8 {
        let mut slot = [0u8; 16];
        slot[..10].copy_from_slice(&x.st(i).to_bytes());
        put(area, 32 + 16 * i, &slot);
    }
}

fn put_mxcsr(s: &FpuState, area: &mut [u8]) {
    put(area, 24, &s.mxcsr.0.to_le_bytes());
    put(area, 28, &MXCSR_MASK.to_le_bytes());
}

fn put_xmm(s: &FpuState, area: &mut [u8]) {
    for (i, v) in s.xmm.iter().enumerate() {
        put(area, 160 + 16 * i, &v.to_le_bytes());
    }
}

fn get_x87(s: &mut FpuState, rex_w: bool, area: &[u8]) {
    let x = &mut s.x87;
    x.cw = super::x87::Cw::stored(u16_at(area, 0));
    x.set_status_word(u16_at(area, 2));
    x.valid = area[4];
    x.fop = u16_at(area, 6) & 0x7ff;
    if rex_w {
        x.fip = u64_at(area, 8);
        x.fdp = u64_at(area, 16);
    } else {
        x.fip = u32_at(area, 8) as u64;
        s.fcs = u16_at(area, 12);
        x.fdp = u32_at(area, 16) as u64;
        s.fds = u16_at(area, 20);
    }
    for i in 0..8 {
        let mut b = [0u8; 10];
        b.copy_from_slice(&area[32 + 16 * i..42 + 16 * i]);
        let p = (x.top as usize + i) & 7;
        x.regs[p] = F80::from_bytes(b);
    }
}

fn get_xmm(s: &mut FpuState, area: &[u8]) {
    for (i, v) in s.xmm.iter_mut().enumerate() {
        *v = u128::from_le_bytes(area[160 + 16 * i..176 + 16 * i].try_into().unwrap_or([0; 16]));
    }
}

/// FXSAVE (`rex_w` false) or FXSAVE64: writes bytes 0-415 of the 512-byte
/// area (bytes 416-511 are left alone, as silicon leaves them; tests/
/// silicon/xsave.txt). MXCSR_MASK is [`MXCSR_MASK`].
pub fn fxsave(s: &FpuState, rex_w: bool, area: &mut [u8; 512]) {
    put_x87(s, rex_w, area);
    put_mxcsr(s, area);
    put_xmm(s, area);
}

/// FXRSTOR/FXRSTOR64: the whole state from the area; #GP(0) before any
/// change when the MXCSR image sets a reserved bit.
pub fn fxrstor(s: &mut FpuState, rex_w: bool, area: &[u8; 512]) -> Result<(), XFault> {
    let mx = Mxcsr::load(u32_at(area, 24)).map_err(XFault::Mxcsr)?;
    get_x87(s, rex_w, area);
    s.mxcsr = mx;
    get_xmm(s, area);
    s.xinuse |= 3;
    Ok(())
}

/// XINUSE for the supported components.
pub fn xinuse(s: &FpuState) -> u64 {
    (s.xinuse & 3) as u64
}

/// XSAVE, XSAVEOPT, XSAVEC and XSAVES (`rex_w`: the 64-bit pointer layout)
/// with instruction mask EDX:EAX = `mask` into the [`XSAVE_SIZE`]-byte
/// `area` (bytes the instruction does not write keep their contents).
/// RFBM = mask & XCR0.
///
/// - XSAVE/XSAVEOPT write `XSTATE_BV[i]` = `XINUSE[i]` for RFBM bits and keep
///   its other bits and the rest of the header; MXCSR and MXCSR_MASK are
///   written when `RFBM[1]` (or `RFBM[2]`) is set.
/// - XSAVEC/XSAVES write XSTATE_BV = XINUSE & RFBM and XCOMP_BV = bit 63 |
///   RFBM, and only components in use; MXCSR with `RFBM[1]` even when SSE is
///   not in use.
pub fn xsave(s: &FpuState, op: SaveOp, rex_w: bool, xcr0: u64, mask: u64, area: &mut [u8; 576]) {
    let rfbm = mask & xcr0 & XCR0_SUPPORTED;
    let inuse = xinuse(s);
    let compacted = matches!(op, SaveOp::Xsavec | SaveOp::Xsaves);
    let write = match op {
        SaveOp::Xsave => rfbm,
        _ => rfbm & inuse,
    };
    if write & 1 != 0 {
        put_x87(s, rex_w, area);
    }
    if rfbm & 2 != 0 {
        put_mxcsr(s, area);
    }
    if write & 2 != 0 {
        put_xmm(s, area);
    }
    if compacted {
        put(area, 512, &(inuse & rfbm).to_le_bytes());
        put(area, 520, &(rfbm | 1 << 63).to_le_bytes());
    } else {
        let bv = (u64_at(area, 512) & !rfbm) | (inuse & rfbm);
        put(area, 512, &bv.to_le_bytes());
    }
}

/// The initial configuration of component 0 (SDM Vol. 1 §13.6).
fn init_x87(s: &mut FpuState) {
    s.x87 = X87::default();
    s.fcs = 0;
    s.fds = 0;
}

/// XRSTOR (`supervisor` false) and XRSTORS with mask EDX:EAX = `mask`:
/// the header's form (XCOMP_BV bit 63) selects standard or compacted;
/// every check happens before any state changes (SDM Vol. 1 §13.8,
/// §13.12). A requested component whose XSTATE_BV bit is clear is
/// initialized. The standard form loads MXCSR whenever `RFBM[1]` (or
/// `RFBM[2]`) is set; the compacted form loads it with component 1 and
/// otherwise sets 1F80H.
pub fn xrstor(
    s: &mut FpuState,
    rex_w: bool,
    xcr0: u64,
    xss: u64,
    mask: u64,
    supervisor: bool,
    area: &[u8],
) -> Result<(), XFault> {
    let (xstate_bv, xcomp_bv) = (u64_at(area, 512), u64_at(area, 520));
    let compacted = xcomp_bv >> 63 != 0;
    let enabled = if supervisor { xcr0 | xss } else { xcr0 };
    let rfbm = mask & enabled;
    if compacted {
        let rest_zero = area[528..576].iter().all(|b| *b == 0);
        let comp = xcomp_bv & !(1 << 63);
        if comp & !enabled != 0 || xstate_bv & !comp != 0 || !rest_zero {
            return Err(XFault::CompactedHeader { xstate_bv, xcomp_bv });
        }
    } else {
        let rest_zero = area[520..536].iter().all(|b| *b == 0);
        if supervisor || xstate_bv & !xcr0 != 0 || !rest_zero {
            return Err(if supervisor {
                XFault::CompactedHeader { xstate_bv, xcomp_bv }
            } else {
                XFault::StandardHeader { xstate_bv, xcomp_bv }
            });
        }
    }
    let load_sse = rfbm & 2 != 0 && xstate_bv & 2 != 0;
    let mxcsr_from_memory = if compacted { load_sse } else { rfbm & 6 != 0 };
    let mx = if mxcsr_from_memory { Some(Mxcsr::load(u32_at(area, 24)).map_err(XFault::Mxcsr)?) } else { None };
    if rfbm & 1 != 0 {
        if xstate_bv & 1 != 0 {
            get_x87(s, rex_w, area);
        } else {
            init_x87(s);
        }
    }
    if rfbm & 2 != 0 {
        if load_sse {
            get_xmm(s, area);
        } else {
            s.xmm = [0; 16];
        }
    }
    // A loaded component is in use, an initialized one is not.
    let rfbm = rfbm as u8 & 3;
    s.xinuse = (s.xinuse & !rfbm) | (xstate_bv as u8 & rfbm);
    match mx {
        Some(m) => s.mxcsr = m,
        None if compacted && rfbm & 2 != 0 => s.mxcsr = Mxcsr(MXCSR_DEFAULT),
        None => {}
    }
    Ok(())
}

/// XSETBV: the new XCR0 for ECX = `index`, or #GP(0): ECX ≠ 0, bit 0
/// clear, or a bit outside [`XCR0_SUPPORTED`] (SDM Vol. 2 XSETBV).
pub fn xsetbv(index: u32, value: u64) -> Result<u64, XFault> {
    if index != 0 || value & 1 == 0 || value & !XCR0_SUPPORTED != 0 {
        return Err(XFault::Xcr { index, value });
    }
    Ok(value)
}

/// XGETBV: XCR0 for ECX = 0; XINUSE & XCR0 for ECX = 1 (this model
/// advertises it in CPUID.(EAX=0DH,ECX=1):`EAX[2]`); #GP(0) otherwise.
pub fn xgetbv(index: u32, xcr0: u64, s: &FpuState) -> Result<u64, XFault> {
    match index {
        0 => Ok(xcr0),
        1 => Ok(xinuse(s) & xcr0),
        _ => Err(XFault::Xcr { index, value: 0 }),
    }
}

/// CPUID leaf 0DH sub-leaf `sub` as [EAX, EBX, ECX, EDX] (SDM Vol. 2
/// CPUID, Table 3-8): sub-leaf 0 lists the supported XCR0 bits and the
/// area sizes (576 bytes whatever XCR0 enables, since components 0 and 1
/// live in the legacy region), sub-leaf 1 advertises XSAVEOPT, XSAVEC,
/// XGETBV with ECX = 1 and XSAVES/XRSTORS (bits 0-3) with no IA32_XSS
/// component; higher sub-leaves are zero.
pub fn cpuid_leaf_d(sub: u32) -> [u32; 4] {
    match sub {
        0 => [XCR0_SUPPORTED as u32, XSAVE_SIZE, XSAVE_SIZE, 0],
        1 => [0b1111, XSAVE_SIZE, 0, 0],
        _ => [0; 4],
    }
}

/// FNSTENV in the 32-bit protected-mode format 64-bit mode uses (SDM Vol.
/// 1 Figure 8-9): 28 bytes, the upper halves of the FCW, FSW, FTW and FDS
/// dwords all ones as silicon writes them (tests/silicon/xsave.txt), the
/// full tag word computed from the registers. Afterwards every exception
/// is masked, as the instruction does, and so ES and B clear (silicon:
/// crates/vmm/tests/differential/fp.rs).
pub fn fnstenv(s: &mut FpuState) -> [u8; 28] {
    let x = &mut s.x87;
    let mut b = [0u8; 28];
    let dw = |v: u16| ((v as u32) | 0xffff_0000).to_le_bytes();
    b[0..4].copy_from_slice(&dw(x.cw));
    b[4..8].copy_from_slice(&dw(x.status_word()));
    b[8..12].copy_from_slice(&dw(x.tag_word()));
    b[12..16].copy_from_slice(&(x.fip as u32).to_le_bytes());
    b[16..20].copy_from_slice(&((s.fcs as u32) | ((x.fop as u32 & 0x7ff) << 16)).to_le_bytes());
    b[20..24].copy_from_slice(&(x.fdp as u32).to_le_bytes());
    b[24..28].copy_from_slice(&dw(s.fds));
    x.fldcw(x.cw | 0x3f);
    b
}

/// FLDENV: the environment from the 28-byte image (the tag word keeps only
/// empty or not; SW.ES follows the loaded flags and masks).
pub fn fldenv(s: &mut FpuState, b: &[u8; 28]) {
    let x = &mut s.x87;
    x.set_status_word(u16_at(b, 4));
    x.fldcw(u16_at(b, 0));
    x.set_tag_word(u16_at(b, 8));
    x.fip = u32_at(b, 12) as u64;
    s.fcs = u16_at(b, 16);
    x.fop = u16_at(b, 18) & 0x7ff;
    x.fdp = u32_at(b, 20) as u64;
    s.fds = u16_at(b, 24);
}

/// FNSAVE: the environment then ST(0)-ST(7), 108 bytes, followed by
/// FNINIT.
pub fn fnsave(s: &mut FpuState) -> [u8; 108] {
    let mut b = [0u8; 108];
    let regs: [[u8; 10]; 8] = core::array::from_fn(|i| s.x87.st(i).to_bytes());
    b[..28].copy_from_slice(&fnstenv(s));
    for (i, r) in regs.iter().enumerate() {
        b[28 + 10 * i..38 + 10 * i].copy_from_slice(r);
    }
    s.x87.fninit();
    s.fcs = 0;
    s.fds = 0;
    b
}

/// FRSTOR: the environment and registers from a 108-byte image.
pub fn frstor(s: &mut FpuState, b: &[u8; 108]) {
    let mut env = [0u8; 28];
    env.copy_from_slice(&b[..28]);
    fldenv(s, &env);
    for i in 0..8 {
        let mut r = [0u8; 10];
        r.copy_from_slice(&b[28 + 10 * i..38 + 10 * i]);
        let p = (s.x87.top as usize + i) & 7;
        s.x87.regs[p] = F80::from_bytes(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FpuState {
        let mut s = FpuState::default();
        s.x87.push(F80::ONE, super::super::Exc::NONE);
        s.mxcsr = Mxcsr(0x1fa0);
        s.xmm[3] = 0x1234;
        s.xinuse = 3;
        s
    }

    #[test]
    fn fxsave_round_trips() {
        let s = state();
        for rex_w in [false, true] {
            let mut a = [0x5a; 512];
            fxsave(&s, rex_w, &mut a);
            assert_eq!(a[416..], [0x5a; 96]);
            let mut t = FpuState::default();
            fxrstor(&mut t, rex_w, &a).unwrap();
            assert_eq!(t, s);
        }
    }

    #[test]
    fn fxrstor_refuses_reserved_mxcsr_bits() {
        let mut a = [0u8; 512];
        a[24..28].copy_from_slice(&0x1_0000u32.to_le_bytes());
        let mut s = state();
        let before = s;
        assert_eq!(fxrstor(&mut s, true, &a), Err(XFault::Mxcsr(ReservedBits { value: 0x1_0000 })));
        assert_eq!(s, before);
    }

    #[test]
    fn xsave_and_xrstor_forms() {
        let s = state();
        let mut a = [0u8; 576];
        xsave(&s, SaveOp::Xsave, true, 3, u64::MAX, &mut a);
        assert_eq!(u64_at(&a, 512), 3);
        let mut t = FpuState::default();
        xrstor(&mut t, true, 3, 0, u64::MAX, false, &a).unwrap();
        assert_eq!(t, s);
        let mut c = [0u8; 576];
        xsave(&FpuState::default(), SaveOp::Xsavec, true, 3, 3, &mut c);
        assert_eq!((u64_at(&c, 512), u64_at(&c, 520)), (0, 1 << 63 | 3));
        // Restoring it initializes both components and clears XINUSE.
        let mut t = s;
        xrstor(&mut t, true, 3, 0, 3, false, &c).unwrap();
        assert_eq!(t, FpuState::default());
        assert_eq!(xgetbv(1, 3, &t), Ok(0));
        // A standard header with XCOMP_BV bits set is refused.
        a[520] = 1;
        assert!(matches!(xrstor(&mut t, true, 3, 0, 3, false, &a), Err(XFault::StandardHeader { .. })));
    }

    #[test]
    fn xcr0_rules() {
        assert_eq!(xsetbv(0, 3), Ok(3));
        assert_eq!(xsetbv(0, 1), Ok(1));
        assert!(xsetbv(0, 2).is_err());
        assert!(xsetbv(0, 7).is_err());
        assert!(xsetbv(1, 3).is_err());
        assert_eq!(cpuid_leaf_d(0), [3, 576, 576, 0]);
        assert_eq!(cpuid_leaf_d(2), [0; 4]);
    }

    #[test]
    fn fnsave_then_frstor() {
        let mut s = state();
        let before = s;
        let img = fnsave(&mut s);
        // FNINIT after the save: registers keep their contents, all empty.
        assert_eq!((s.x87.cw, s.x87.status_word(), s.x87.valid), (0x037f, 0, 0));
        frstor(&mut s, &img);
        // FNSTENV masked every exception in the saved control word's
        // register copy only; the image holds the original.
        assert_eq!(s.x87.regs, before.x87.regs);
        assert_eq!(s.x87.cw, before.x87.cw);
        assert_eq!(s.x87.status_word(), before.x87.status_word());
    }
}

//! Latencies of the floating-point and vector instruction classes, as data
//! the hardware profiles can take (DESIGN.md "Time and cost"; the project's
//! rule that every figure carries its source or says it is modelled). The
//! figures are core-clock cycles from an instruction's inputs to its
//! result. Sources were read through the stored-copy search tool:
//!
//! - "Agner P5": A. Fog, instruction tables, Pentium/Pentium MMX x87 table
//!   (copy at xiaohui.com/dev/mmx/mmx_p_28_2.htm), read as text: verified.
//! - "uops.info": the instruction's uops.info page, Alder Lake-P column:
//!   verified.
//! - "Cordes/Agner": figures from A. Fog's tables quoted in Peter Cordes's
//!   Stack Overflow answers (sqrtsd latency, MULPS latency, Skylake sqrtps;
//!   fsin on Haswell): secondary.

/// How a figure is known (docs/SOURCES.md's vocabulary).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// Read in the source text.
    Verified,
    /// Read as someone else's quotation of the source.
    Secondary,
    /// No source gives it; the reasoning is in `source`.
    Modelled,
}

/// An instruction class of this module.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// ADD/SUB/MUL/MIN/MAX/CMP/ADDSUB on PS/PD/SS/SD, (U)COMIS.
    SimdFloatArith,
    /// DIVPS/DIVSS.
    SimdDivSingle,
    /// DIVPD/DIVSD.
    SimdDivDouble,
    /// SQRTPS/SQRTSS.
    SimdSqrtSingle,
    /// SQRTPD/SQRTSD.
    SimdSqrtDouble,
    /// HADD/HSUB PS/PD.
    SimdHorizontal,
    /// DPPS/DPPD.
    SimdDotProduct,
    /// CVT* between floats and integers or formats, ROUND*.
    SimdConvert,
    /// RCPPS/RCPSS/RSQRTPS/RSQRTSS.
    SimdApprox,
    /// Packed integer add/sub/compare/min/max/abs/sign/avg, logic, shifts,
    /// shuffles, unpacks, packs, blends, inserts/extracts, PSHUFB, PALIGNR,
    /// moves, MOVMSK, PTEST.
    SimdIntSimple,
    /// PMULLW/PMULHW/PMULHUW/PMULUDQ/PMULDQ/PMADDWD/PMADDUBSW/PMULHRSW,
    /// PSADBW, MPSADBW, PHMINPOSUW.
    SimdIntMul,
    /// PMULLD.
    SimdMulLd,
    /// PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM.
    SimdString,
    /// CRC32.
    Crc32,
    /// FADD/FSUB(R)/FIADD..., FCOM/FUCOM/FTST/FCOMI, FABS/FCHS, FXCH, FLD/FST.
    X87Add,
    /// FMUL/FIMUL.
    X87Mul,
    /// FDIV(R)/FIDIV(R) at 64-bit precision.
    X87Div,
    /// FSQRT.
    X87Sqrt,
    /// FSIN, FCOS.
    X87SinCos,
    /// FSINCOS.
    X87SinCosBoth,
    /// FPTAN, FPATAN.
    X87Tan,
    /// F2XM1.
    X87Exp,
    /// FYL2X, FYL2XP1.
    X87Log,
    /// FPREM, FPREM1.
    X87Rem,
    /// FRNDINT, FSCALE, FXTRACT.
    X87Misc,
    /// FBLD.
    X87Bld,
    /// FBSTP.
    X87Bstp,
    /// FLDPI, FLDL2E, FLDL2T, FLDLG2, FLDLN2.
    X87Const,
    /// FLDCW, FNSTSW, FNSTCW, FNCLEX, FNINIT.
    X87Control,
    /// FXSAVE/FXRSTOR, XSAVE family, FNSAVE/FRSTOR.
    StateSave,
}

/// One row of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Latency {
    /// The class.
    pub class: Class,
    /// Typical latency in core cycles.
    pub cycles: u32,
    /// The largest latency the source gives (data-dependent classes).
    pub max: u32,
    /// Where the figure comes from, or the modelling reasoning.
    pub source: &'static str,
    /// How it is known.
    pub status: Status,
}

const fn row(class: Class, cycles: u32, max: u32, status: Status, source: &'static str) -> Latency {
    Latency { class, cycles, max, source, status }
}

use Class::*;
use Status::*;

/// The table, one row per class.
pub const LATENCIES: &[Latency] = &[
    row(SimdFloatArith, 4, 4, Secondary, "Cordes/Agner: MULPS latency 4 on Skylake (3 on Broadwell); add, compare and min/max run on the same FMA units"),
    row(SimdDivSingle, 11, 11, Modelled, "modelled: the divide/sqrt unit's single-precision figure, as SQRTPS (11-12 on Skylake, Cordes/Agner)"),
    row(SimdDivDouble, 14, 14, Modelled, "modelled: between single-precision divide (11) and double sqrt (15-16), as the shared radix-1024 divider suggests"),
    row(SimdSqrtSingle, 12, 12, Secondary, "Cordes/Agner: sqrtps/sqrtss latency 11 or 12 on Skylake, throughput one per 3 cycles"),
    row(SimdSqrtDouble, 16, 18, Secondary, "Cordes/Agner: sqrtsd 15-16 cycles on Skylake; instlatx64 Skylake-X 13 (simple values) to 18"),
    row(SimdHorizontal, 6, 6, Modelled, "modelled: two shuffles (1 each) feeding one add (4)"),
    row(SimdDotProduct, 13, 13, Modelled, "modelled: multiply (4) then two dependent adds (4 + 4) plus one shuffle"),
    row(SimdConvert, 5, 5, Modelled, "modelled: one FP-unit conversion (4) plus a domain crossing (1)"),
    row(SimdApprox, 4, 4, Modelled, "modelled: a table lookup on the FP unit, no longer than an add"),
    row(SimdIntSimple, 1, 1, Modelled, "modelled: single-uop vector ALU operations complete in one cycle on every Intel core since Core 2"),
    row(SimdIntMul, 5, 5, Modelled, "modelled: the vector integer multiplier's pipeline depth on Skylake-class cores"),
    row(SimdMulLd, 10, 10, Modelled, "modelled: PMULLD is two dependent multiplier uops (2 x 5)"),
    row(SimdString, 11, 16, Verified, "uops.info PCMPESTRM (XMM, XMM, I8), Alder Lake-P: 11 to XMM0, up to 16 from EAX/EDX, 9 uops"),
    row(Crc32, 3, 3, Modelled, "modelled: the integer multiply-class unit (3-cycle pipeline)"),
    row(X87Add, 3, 3, Verified, "Agner P5: FADD/FSUB(R) 3 clocks"),
    row(X87Mul, 3, 3, Verified, "Agner P5: FMUL 3 clocks"),
    row(X87Div, 39, 39, Verified, "Agner P5: FDIV 19/33/39 clocks at precision 24/53/64"),
    row(X87Sqrt, 70, 70, Verified, "Agner P5: FSQRT 70 clocks"),
    row(X87SinCos, 65, 100, Verified, "Agner P5: FSIN/FCOS 65-100 clocks (Haswell 47-106, Cordes/Agner)"),
    row(X87SinCosBoth, 89, 112, Verified, "Agner P5: FSINCOS 89-112 clocks"),
    row(X87Tan, 89, 112, Modelled, "modelled: no row read; as FSINCOS, whose two results FPTAN's quotient needs"),
    row(X87Exp, 53, 59, Verified, "Agner P5: F2XM1 53-59 clocks"),
    row(X87Log, 103, 105, Verified, "Agner P5: FYL2X 103, FYL2XP1 105 clocks"),
    row(X87Rem, 16, 70, Verified, "Agner P5: FPREM 16-64, FPREM1 20-70 clocks"),
    row(X87Misc, 20, 66, Verified, "Agner P5: FRNDINT 9-20, FSCALE 20-32, FXTRACT 12-66 clocks"),
    row(X87Bld, 48, 58, Verified, "Agner P5: FBLD 48-58 clocks"),
    row(X87Bstp, 148, 154, Verified, "Agner P5: FBSTP 148-154 clocks"),
    row(X87Const, 5, 5, Verified, "Agner P5: FLDPI, FLDL2E etc. 5 clocks"),
    row(X87Control, 8, 8, Verified, "Agner P5: FLDCW 8, FNSTSW 6, FNSTCW 2 clocks"),
    row(StateSave, 100, 100, Modelled, "modelled: 26 16-byte stores (416 bytes) plus microcode sequencing; no source read"),
];

/// The row of a class.
pub fn latency(class: Class) -> &'static Latency {
    LATENCIES.iter().find(|l| l.class == class).expect("every class has a row (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_one_sourced_row() {
        let classes = [
            SimdFloatArith,
            SimdDivSingle,
            SimdDivDouble,
            SimdSqrtSingle,
            SimdSqrtDouble,
            SimdHorizontal,
            SimdDotProduct,
            SimdConvert,
            SimdApprox,
            SimdIntSimple,
            SimdIntMul,
            SimdMulLd,
            SimdString,
            Crc32,
            X87Add,
            X87Mul,
            X87Div,
            X87Sqrt,
            X87SinCos,
            X87SinCosBoth,
            X87Tan,
            X87Exp,
            X87Log,
            X87Rem,
            X87Misc,
            X87Bld,
            X87Bstp,
            X87Const,
            X87Control,
            StateSave,
        ];
        assert_eq!(classes.len(), LATENCIES.len());
        for c in classes {
            let rows: Vec<_> = LATENCIES.iter().filter(|l| l.class == c).collect();
            assert_eq!(rows.len(), 1, "{c:?}");
            let l = rows[0];
            assert!(l.cycles >= 1 && l.max >= l.cycles, "{c:?}");
            assert_eq!(l.status == Modelled, l.source.starts_with("modelled:"), "{c:?}");
        }
        assert_eq!(latency(X87Div).cycles, 39);
    }
}

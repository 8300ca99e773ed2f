//! Exception vectors (Intel SDM Vol. 3A, table 6-1).

/// Divide error.
pub const DE: u8 = 0;
/// Debug.
pub const DB: u8 = 1;
/// Non-maskable interrupt.
pub const NMI: u8 = 2;
/// Breakpoint (INT3).
pub const BP: u8 = 3;
/// Overflow (INTO).
pub const OF: u8 = 4;
/// BOUND range exceeded.
pub const BR: u8 = 5;
/// Invalid opcode.
pub const UD: u8 = 6;
/// Device not available.
pub const NM: u8 = 7;
/// Double fault.
pub const DF: u8 = 8;
/// Invalid TSS.
pub const TS: u8 = 10;
/// Segment not present.
pub const NP: u8 = 11;
/// Stack-segment fault.
pub const SS: u8 = 12;
/// General protection.
pub const GP: u8 = 13;
/// Page fault.
pub const PF: u8 = 14;
/// x87 floating-point error.
pub const MF: u8 = 16;
/// Alignment check.
pub const AC: u8 = 17;
/// Machine check.
pub const MC: u8 = 18;
/// SIMD floating-point exception.
pub const XM: u8 = 19;
/// Virtualization exception.
pub const VE: u8 = 20;
/// Control-protection exception.
pub const CP: u8 = 21;

/// Whether the CPU pushes an error code for exception `vector`.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, DF | TS | NP | SS | GP | PF | AC | CP)
}

/// The mnemonic of an exception vector (`#PF`), or `None` above 31.
pub fn mnemonic(vector: u8) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF",
        "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX",
        "#31",
    ];
    NAMES.get(usize::from(vector)).copied()
}

/// The classes SDM Vol. 3A table 6-4 sorts exceptions into, which decide
/// what a second exception during the delivery of a first one becomes
/// (table 6-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// #DB, NMI, #BP, #OF, #BR, #UD, #NM, #MF, #AC, #MC, #XM, #VE, #CP,
    /// every INT n and every external interrupt.
    Benign,
    /// #DE, #TS, #NP, #SS, #GP.
    Contributory,
    /// #PF.
    PageFault,
    /// #DF: a fault while delivering it shuts the processor down.
    DoubleFault,
}

/// The class of hardware exception `vector` (table 6-4). Interrupts and
/// software interrupts are benign whatever their vector; the caller asks
/// only about hardware exceptions.
pub const fn class(vector: u8) -> Class {
    match vector {
        DE | TS | NP | SS | GP => Class::Contributory,
        PF => Class::PageFault,
        DF => Class::DoubleFault,
        _ => Class::Benign,
    }
}

/// What the processor does when exception `second` arises while it
/// delivers an event of class `first` (SDM Vol. 3A table 6-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalation {
    /// Deliver the second exception; the first is dropped (a fault
    /// restarts its instruction, which raises it again).
    Serial,
    /// Deliver #DF with error code 0.
    DoubleFault,
    /// A fault while delivering #DF: the processor shuts down (a VMM sees
    /// TRIPLE_FAULT).
    Shutdown,
}

/// Table 6-5: contributory after contributory, and contributory or #PF
/// after #PF, make #DF; anything during #DF is shutdown; every other pair
/// is handled serially. KVM applies the same table when an exception it
/// injects meets one already pending (`kvm_multiple_exception`).
pub const fn escalate(first: Class, second: Class) -> Escalation {
    match (first, second) {
        (Class::DoubleFault, _) => Escalation::Shutdown,
        (Class::Contributory, Class::Contributory)
        | (Class::PageFault, Class::Contributory)
        | (Class::PageFault, Class::PageFault) => Escalation::DoubleFault,
        _ => Escalation::Serial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_6_5() {
        use Escalation::*;
        let all = [DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC, MC, XM, VE, CP];
        for first in all {
            for second in all {
                let got = escalate(class(first), class(second));
                let contributory = |v| matches!(v, DE | TS | NP | SS | GP);
                let want = if first == DF {
                    Shutdown
                } else if (contributory(first) || first == PF) && (contributory(second) || second == first) {
                    DoubleFault
                } else {
                    Serial
                };
                assert_eq!(got, want, "{first} then {second}");
            }
        }
        // A #PF while delivering a contributory exception is serial (the
        // table's top-right cell), not a double fault.
        assert_eq!(escalate(Class::Contributory, Class::PageFault), Serial);
    }

    #[test]
    fn error_code_vectors() {
        let with: Vec<u8> = (0..32).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, vec![8, 10, 11, 12, 13, 14, 17, 21]);
        assert_eq!(mnemonic(PF), Some("#PF"));
        assert_eq!(mnemonic(32), None);
    }
}

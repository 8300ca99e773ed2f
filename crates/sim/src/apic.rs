//! The local APIC (xAPIC, SDM Vol. 3A ch. 11): interrupt request and
//! in-service registers with priority, TPR/PPR, EOI, self-IPIs through
//! the ICR, and the timer in one-shot, periodic and TSC-deadline modes, all
//! in virtual time (cycles of the vCPU's clock).

use crate::cost::APIC_BUS_HZ;
use exitlab_arch::bits::apic::*;

/// LVT mask bit.
const LVT_MASKED: u32 = 1 << 16;
/// Delivery modes (ICR and LVT bits 10:8).
const DELIVERY_FIXED: u32 = 0;
const DELIVERY_LOWEST: u32 = 1;
const DELIVERY_NMI: u32 = 4;
const TIMER_MODE_MASK: u32 = 3 << 17;

#[derive(Clone, Debug)]
pub struct Apic {
    pub id: u8,
    /// Core clock, to turn bus ticks into cycles.
    hz: u64,
    svr: u32,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    esr: u32,
    irr: [u32; 8],
    isr: [u32; 8],
    icr: [u32; 2],
    /// LVT timer, thermal, performance, LINT0, LINT1, error.
    lvt: [u32; 6],
    timer_initial: u32,
    timer_divide: u32,
    /// Cycle at which the timer fires next.
    deadline: Option<u64>,
    /// Cycle at which the current period started (for the count register).
    period_start: u64,
    tsc_deadline: u64,
    /// Timer interrupts raised so far.
    pub timer_fires: u64,
    /// Cycles after its deadline the timer's interrupt is raised: a host
    /// whose timers fire late (a calibrated profile's
    /// `interrupt.timer_latency`); 0 otherwise. The deadlines, and so a
    /// periodic timer's phase and the count register, stay nominal.
    late: u64,
    /// An NMI the APIC accepted (ICR or LINT with delivery mode NMI), for
    /// the core to take.
    nmi: bool,
    /// IA32_APIC_BASE.EN is clear: the APIC accepts no interrupts.
    hw_disabled: bool,
    /// The vector [`Apic::newly_deliverable`] last saw presented.
    presented: Option<u8>,
}

/// Where a fixed interrupt message goes (SDM Vol. 3A 11.6.2; an MSI's
/// address bit 2 picks the mode, 11.11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// Physical mode: the APIC with this ID; 0xff: every APIC.
    Physical(u8),
    /// Logical mode: a message destination address that each APIC
    /// matches against its LDR under its DFR's model; 0xff: every APIC.
    Logical(u8),
}

const LVT_OFFSETS: [u64; 6] = [LVT_TIMER, 0x330, 0x340, 0x350, 0x360, 0x370];

impl Apic {
    pub fn new(id: u8, hz: u64) -> Apic {
        Apic {
            id,
            hz,
            svr: 0xff,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            esr: 0,
            irr: [0; 8],
            isr: [0; 8],
            icr: [0; 2],
            lvt: [LVT_MASKED; 6],
            timer_initial: 0,
            timer_divide: 0,
            deadline: None,
            period_start: 0,
            tsc_deadline: 0,
            timer_fires: 0,
            late: 0,
            nmi: false,
            hw_disabled: false,
            presented: None,
        }
    }

    /// IA32_APIC_BASE.EN set or cleared (SDM 11.4.3): disabled, the APIC
    /// accepts no interrupts.
    pub fn set_hardware_enabled(&mut self, on: bool) {
        self.hw_disabled = !on;
    }

    fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    fn divisor(&self) -> u64 {
        let d = (self.timer_divide & 3) | ((self.timer_divide & 8) >> 1);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    fn timer_mode(&self) -> u32 {
        self.lvt[0] & TIMER_MODE_MASK
    }

    /// Core cycles for `ticks` of the divided bus clock.
    fn ticks_to_cycles(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * u128::from(self.divisor()) * u128::from(self.hz) / u128::from(APIC_BUS_HZ)) as u64
    }

    fn period_cycles(&self) -> u64 {
        self.ticks_to_cycles(u64::from(self.timer_initial))
    }

    /// Requests `vector` (an MSI, a self-IPI, the timer). Vectors below 16
    /// are illegal for fixed delivery and are dropped with an ESR bit.
    pub fn request(&mut self, vector: u8) {
        if vector < 16 {
            self.esr |= 1 << 6; // received illegal vector
            return;
        }
        if !self.software_enabled() || self.hw_disabled {
            return;
        }
        self.irr[usize::from(vector >> 5)] |= 1 << (vector & 31);
    }

    /// Whether this APIC takes a message sent to `d` (SDM Vol. 3A
    /// 11.6.2.1-11.6.2.2): physical, its ID; logical flat model (DFR bits
    /// 31:28 = 1111b), a bit shared with LDR bits 31:24; cluster model
    /// (0000b), the same cluster (bits 7:4) and a shared bit in 3:0.
    pub fn accepts(&self, d: Destination) -> bool {
        match d {
            Destination::Physical(id) => id == self.id || id == 0xff,
            Destination::Logical(0xff) => true,
            Destination::Logical(mda) => {
                let ldr = (self.ldr >> 24) as u8;
                match self.dfr >> 28 {
                    0xf => ldr & mda != 0,
                    0x0 => ldr >> 4 == mda >> 4 && ldr & mda & 0xf != 0,
                    _ => false,
                }
            }
        }
    }

    fn highest(bits: &[u32; 8]) -> Option<u8> {
        (0..8).rev().find(|&i| bits[i] != 0).map(|i| (i as u8) * 32 + (31 - bits[i].leading_zeros() as u8))
    }

    fn ppr(&self) -> u32 {
        let isr_class = Self::highest(&self.isr).map_or(0, |v| u32::from(v) & 0xf0);
        if self.tpr & 0xf0 >= isr_class {
            self.tpr & 0xff
        } else {
            isr_class
        }
    }

    /// Whether any interrupt is requested (cheap: checked before every
    /// block).
    #[inline(always)]
    pub fn any_requested(&self) -> bool {
        self.irr != [0; 8]
    }

    /// The vector the APIC would present to the core now, if any.
    pub fn deliverable(&self) -> Option<u8> {
        let v = Self::highest(&self.irr)?;
        (u32::from(v) & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The vector the APIC presents now, when it is not the one it
    /// presented at the last call (each newly presented interrupt once):
    /// under external-interrupt exiting the core exits once per interrupt
    /// and leaves it requested until the VMM acknowledges it.
    pub fn newly_deliverable(&mut self) -> Option<u8> {
        let v = self.deliverable();
        if v == self.presented {
            return None;
        }
        self.presented = v;
        v
    }

    /// The core accepted `vector`: IRR to ISR.
    pub fn accept(&mut self, vector: u8) {
        let (i, b) = (usize::from(vector >> 5), 1u32 << (vector & 31));
        self.irr[i] &= !b;
        self.isr[i] |= b;
        if self.presented == Some(vector) {
            self.presented = None;
        }
    }

    fn eoi(&mut self) {
        if let Some(v) = Self::highest(&self.isr) {
            self.isr[usize::from(v >> 5)] &= !(1 << (v & 31));
        }
    }

    /// The next cycle at which the timer fires.
    pub fn next_event(&self) -> Option<u64> {
        self.deadline.map(|d| d + self.late)
    }

    /// Makes the timer's interrupts `cycles` late.
    pub fn set_timer_latency(&mut self, cycles: u64) {
        self.late = cycles;
    }

    /// Fires the timer if its deadline (plus its lateness) is at or before
    /// `now`.
    pub fn tick(&mut self, now: u64) {
        let Some(d) = self.deadline else { return };
        if d + self.late > now {
            return;
        }
        self.timer_fires += 1;
        if self.lvt[0] & LVT_MASKED == 0 {
            self.request(self.lvt[0] as u8);
        }
        match self.timer_mode() {
            TIMER_PERIODIC if self.period_cycles() > 0 => {
                // Keep the phase: the next period starts at the deadline.
                let p = self.period_cycles();
                let missed = (now - self.late - d) / p;
                self.period_start = d + missed * p;
                self.deadline = Some(self.period_start + p);
            }
            TIMER_TSC_DEADLINE => {
                self.deadline = None;
                self.tsc_deadline = 0;
            }
            _ => self.deadline = None,
        }
    }

    /// TPR as CR8 sees it (bits 7:4).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    pub fn set_cr8(&mut self, v: u64) {
        self.tpr = ((v & 0xf) << 4) as u32;
    }

    pub fn tsc_deadline(&self) -> u64 {
        self.tsc_deadline
    }

    /// IA32_TSC_DEADLINE: arms (non-zero) or disarms (zero) the timer in
    /// TSC-deadline mode; ignored in the other modes, as the SDM says.
    pub fn set_tsc_deadline(&mut self, v: u64, now: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = v;
        self.deadline = (v != 0).then_some(v.max(now));
    }

    /// A 32-bit read of register `offset`.
    pub fn read(&self, offset: u64, now: u64) -> u32 {
        match offset {
            ID => u32::from(self.id) << 24,
            VERSION => 0x0005_0014,
            TPR => self.tpr,
            0xa0 => self.ppr(),
            0xd0 => self.ldr,
            0xe0 => self.dfr,
            SVR => self.svr,
            0x100..=0x170 => self.isr[((offset - 0x100) >> 4) as usize],
            0x200..=0x270 => self.irr[((offset - 0x200) >> 4) as usize],
            0x280 => self.esr,
            ICR_LOW => self.icr[0] & !(1 << 12),
            ICR_HIGH => self.icr[1],
            TIMER_INITIAL_COUNT => self.timer_initial,
            TIMER_CURRENT_COUNT => self.current_count(now),
            TIMER_DIVIDE => self.timer_divide,
            o => LVT_OFFSETS.iter().position(|&l| l == o).map_or(0, |i| self.lvt[i]),
        }
    }

    fn current_count(&self, now: u64) -> u32 {
        match (self.deadline, self.timer_mode()) {
            (Some(d), TIMER_ONE_SHOT | TIMER_PERIODIC) => {
                let left = u128::from(d.saturating_sub(now));
                let per_tick = u128::from(self.divisor()) * u128::from(self.hz);
                (left * u128::from(APIC_BUS_HZ)).div_ceil(per_tick) as u32
            }
            _ => 0,
        }
    }

    /// A 32-bit write of register `offset`.
    pub fn write(&mut self, offset: u64, value: u32, now: u64) {
        match offset {
            TPR => self.tpr = value & 0xff,
            EOI => self.eoi(),
            0xd0 => self.ldr = value & 0xff00_0000,
            0xe0 => self.dfr = value | 0x0fff_ffff,
            SVR => {
                self.svr = value & 0x3ff;
                if !self.software_enabled() {
                    // Software disable masks every LVT entry.
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            0x280 => self.esr = 0,
            ICR_HIGH => self.icr[1] = value & 0xff00_0000,
            ICR_LOW => {
                self.icr[0] = value;
                self.send_ipi();
            }
            TIMER_INITIAL_COUNT => {
                if self.timer_mode() == TIMER_TSC_DEADLINE {
                    return;
                }
                self.timer_initial = value;
                self.period_start = now;
                self.deadline = (value != 0).then(|| now + self.period_cycles());
            }
            TIMER_DIVIDE => self.timer_divide = value & 0xb,
            LVT_TIMER => {
                let old_mode = self.timer_mode();
                let mut v = value & (0xff | LVT_MASKED | TIMER_MODE_MASK);
                if !self.software_enabled() {
                    v |= LVT_MASKED;
                }
                self.lvt[0] = v;
                if self.timer_mode() != old_mode {
                    self.deadline = None;
                    self.tsc_deadline = 0;
                    self.timer_initial = 0;
                }
            }
            o => {
                if let Some(i) = LVT_OFFSETS.iter().position(|&l| l == o) {
                    self.lvt[i] = value & 0x1_07ff;
                }
            }
        }
    }

    /// ICR: fixed-mode IPIs to this APIC (shorthand self or all-including-
    /// self, or our own ID) are the only ones a one-vCPU machine can take.
    /// An IPI through the ICR (SDM 11.6.1): with one vCPU only those that
    /// reach this APIC do anything: fixed (and lowest-priority) delivery
    /// requests the vector, NMI delivery latches an NMI; INIT, SIPI and
    /// the rest have no other processor to reach and are dropped.
    fn send_ipi(&mut self) {
        let lo = self.icr[0];
        let to_self = match (lo >> 18) & 3 {
            0 => matches!((self.icr[1] >> 24) as u8, d if d == self.id || d == 0xff),
            1 | 2 => true,
            _ => false,
        };
        if to_self {
            self.deliver((lo >> 8) & 7, lo as u8);
        }
    }

    /// An interrupt with delivery mode `mode` (ICR and LVT encoding) and
    /// `vector` arriving at this APIC.
    fn deliver(&mut self, mode: u32, vector: u8) {
        match mode {
            DELIVERY_FIXED | DELIVERY_LOWEST => self.request(vector),
            DELIVERY_NMI if !self.hw_disabled => self.nmi = true,
            _ => {}
        }
    }

    /// The LINT0 (`pin` 0) or LINT1 (`pin` 1) input asserted (an edge): it
    /// delivers what its LVT entry says, unless masked (SDM 11.5.1). The
    /// platform's NMI line is LINT1, programmed for NMI delivery (the
    /// MADT's local-APIC NMI structure says so).
    pub fn lint(&mut self, pin: u8) {
        let lvt = self.lvt[3 + usize::from(pin & 1)];
        if lvt & LVT_MASKED == 0 {
            self.deliver((lvt >> 8) & 7, lvt as u8);
        }
    }

    /// Takes the NMI the APIC latched, if any.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }

    /// Whether an NMI is latched (cheap: checked before every block).
    #[inline(always)]
    pub fn nmi_latched(&self) -> bool {
        self.nmi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Apic {
        let mut a = Apic::new(0, 2_000_000_000);
        a.write(SVR, SVR_ENABLE | 0xff, 0);
        a
    }

    #[test]
    fn priority_eoi_and_tpr() {
        let mut a = enabled();
        a.request(0x41);
        a.request(0x62);
        assert_eq!(a.deliverable(), Some(0x62));
        a.accept(0x62);
        // 0x41's class (4) is below the in-service class (6).
        assert_eq!(a.deliverable(), None);
        a.write(EOI, 0, 0);
        assert_eq!(a.deliverable(), Some(0x41));
        a.write(TPR, 0x50, 0);
        assert_eq!(a.deliverable(), None);
        a.set_cr8(3);
        assert_eq!(a.deliverable(), Some(0x41));
    }

    #[test]
    fn one_shot_and_periodic_timers_in_cycles() {
        let mut a = enabled();
        a.write(TIMER_DIVIDE, DIVIDE_BY_1, 0);
        a.write(LVT_TIMER, 0x40, 0);
        a.write(TIMER_INITIAL_COUNT, 1000, 100);
        // 1000 ticks at 1 GHz = 2000 cycles at 2 GHz.
        assert_eq!(a.next_event(), Some(2100));
        assert_eq!(a.read(TIMER_CURRENT_COUNT, 1100), 500);
        a.tick(2099);
        assert_eq!(a.deliverable(), None);
        a.tick(2100);
        assert_eq!(a.deliverable(), Some(0x40));
        assert_eq!(a.next_event(), None);

        a.write(LVT_TIMER, 0x41 | TIMER_PERIODIC, 3000);
        a.write(TIMER_INITIAL_COUNT, 10, 3000);
        a.tick(3020);
        assert_eq!(a.next_event(), Some(3040));
        a.tick(3105); // late: the phase is kept
        assert_eq!(a.next_event(), Some(3120));
        assert_eq!(a.timer_fires, 3);
    }

    #[test]
    fn tsc_deadline_mode_and_self_ipi() {
        let mut a = enabled();
        a.set_tsc_deadline(5000, 0); // ignored outside deadline mode
        assert_eq!(a.next_event(), None);
        a.write(LVT_TIMER, 0x42 | TIMER_TSC_DEADLINE, 0);
        a.set_tsc_deadline(5000, 0);
        assert_eq!(a.next_event(), Some(5000));
        a.tick(5000);
        assert_eq!((a.deliverable(), a.tsc_deadline()), (Some(0x42), 0));
        a.accept(0x42);
        a.write(ICR_LOW, 1 << 18 | 0x80, 0); // self IPI, vector 0x80
        assert_eq!(a.deliverable(), Some(0x80));
    }

    #[test]
    fn logical_destinations_match_the_ldr_in_flat_and_cluster_models() {
        let mut a = enabled();
        assert!(a.accepts(Destination::Physical(0)) && a.accepts(Destination::Physical(0xff)));
        assert!(!a.accepts(Destination::Physical(1)));
        // LDR 0 (reset): only the logical broadcast reaches it.
        assert!(!a.accepts(Destination::Logical(1)) && a.accepts(Destination::Logical(0xff)));
        // Linux's flat model on CPU 0: DFR all ones, LDR bit 24.
        a.write(0xe0, 0xffff_ffff, 0);
        a.write(0xd0, 0x0100_0000, 0);
        assert!(a.accepts(Destination::Logical(0x01)) && a.accepts(Destination::Logical(0x03)));
        assert!(!a.accepts(Destination::Logical(0x02)));
        // Cluster model: cluster 2, member bit 1.
        a.write(0xe0, 0x0fff_ffff, 0);
        a.write(0xd0, 0x2200_0000, 0);
        assert!(a.accepts(Destination::Logical(0x23)));
        assert!(!a.accepts(Destination::Logical(0x13)) && !a.accepts(Destination::Logical(0x21)));
    }

    #[test]
    fn disabled_apic_drops_requests() {
        let mut a = Apic::new(0, 2_000_000_000);
        a.request(0x40);
        assert_eq!(a.deliverable(), None);
        a.request(3);
        assert_eq!(a.read(0x280, 0), 1 << 6);
    }
}

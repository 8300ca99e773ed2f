//! The console watch: lines the guest prints on COM1 that end the run. A
//! guest kernel that panics says so on its console and then spins (Linux
//! without `panic=N`: an `mdelay` loop, forever), so a VMM that waits for
//! the guest's own end waits until a run limit. The watch matches each
//! complete line, as the guest finishes it, against a list of
//! [`StopRule`]s and records the first that completes in a
//! [`ConsoleLatch`] the run loop reads after every exit, as it reads a
//! device's power request: the run ends at the exit that wrote the line's
//! newline, on the simulator at the same instruction every time.
//!
//! Console matching rather than a panic device: Linux finds pvpanic
//! (QEMU's port 0x505) only through ACPI, PCI or a device tree, none of
//! which a minimal PC booted with `acpi=off pci=off` has; every kernel
//! that has a console prints its panic there.

use crate::report::{GuestError, Outcome};
use std::sync::{Arc, OnceLock};

/// Linux's panic banner (kernel/panic.c, `panic()`): `Kernel panic - not
/// syncing: <message>`, printed before the stack dump.
pub const LINUX_PANIC: &str = "Kernel panic - not syncing";
/// The line `panic()` prints last, after the stack dump, before it spins:
/// `---[ end Kernel panic - not syncing: <message> ]---`.
pub const LINUX_PANIC_END: &str = "---[ end Kernel panic";

/// How a run a rule stopped ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// [`GuestError::KernelPanic`], its message the matched line from the
    /// pattern on (a timestamp before it dropped).
    KernelPanic,
    /// [`Outcome::ConsoleStop`] with the whole line: a place the user
    /// asked the run to end at.
    Line,
}

/// One rule: a line containing `text` is the run's message (the first
/// such line); the run ends at that line, or, with `until`, at the first
/// line from it on that contains `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopRule {
    /// What a line must contain (bytes, compared exactly).
    pub text: String,
    /// What the line that ends the run contains, when it is a later one.
    pub until: Option<String>,
    /// The outcome the rule gives.
    pub kind: StopKind,
}

impl StopRule {
    /// Linux's panic: the banner line is the message, and the run ends at
    /// the end line, so the whole panic report (stack dump included) is on
    /// the console.
    pub fn linux_panic() -> StopRule {
        StopRule { text: LINUX_PANIC.into(), until: Some(LINUX_PANIC_END.into()), kind: StopKind::KernelPanic }
    }

    /// The first line containing `text` ends the run as
    /// [`Outcome::ConsoleStop`].
    pub fn line(text: &str) -> StopRule {
        StopRule { text: text.into(), until: None, kind: StopKind::Line }
    }

    /// Why `text` can never match a line: empty, or holding a line break.
    pub fn check_text(text: &str) -> Result<(), &'static str> {
        if text.is_empty() {
            Err("is empty")
        } else if text.contains(['\n', '\r']) {
            Err("holds a line break (a console line never does)")
        } else {
            Ok(())
        }
    }
}

/// The outcome a watch recorded, shared between the serial device and the
/// run loop; the first one stands.
#[derive(Clone, Debug, Default)]
pub struct ConsoleLatch(Arc<OnceLock<Outcome>>);

impl ConsoleLatch {
    /// The outcome a rule completed, if one has.
    pub fn get(&self) -> Option<Outcome> {
        self.0.get().cloned()
    }
}

/// The watch over one console's output: where the current line starts and
/// each rule's first matching line.
#[derive(Debug)]
pub struct ConsoleWatch {
    rules: Vec<StopRule>,
    /// The first line each rule matched (its `text`), awaiting `until`.
    matched: Vec<Option<String>>,
    /// Where in the output the line being written starts.
    line_start: usize,
    latch: ConsoleLatch,
}

impl ConsoleWatch {
    /// A watch over `rules` (none: `None`, nothing to scan) and the latch
    /// it reports to.
    pub fn new(rules: &[StopRule]) -> Option<(ConsoleWatch, ConsoleLatch)> {
        if rules.is_empty() {
            return None;
        }
        let latch = ConsoleLatch::default();
        let watch = ConsoleWatch {
            rules: rules.to_vec(),
            matched: vec![None; rules.len()],
            line_start: 0,
            latch: latch.clone(),
        };
        Some((watch, latch))
    }

    /// After the guest wrote bytes that end `output` (the whole console so
    /// far): each line they completed is matched, once.
    pub fn wrote(&mut self, output: &[u8], new: usize) {
        let from = output.len().saturating_sub(new).max(self.line_start);
        for at in from..output.len() {
            if output[at] == b'\n' {
                let line = &output[self.line_start..at];
                self.line_start = at + 1;
                self.line(line);
            }
        }
    }

    /// One complete line (without its `\n`; a `\r` before it is dropped).
    fn line(&mut self, line: &[u8]) {
        if self.latch.0.get().is_some() {
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for (rule, matched) in self.rules.iter().zip(&mut self.matched) {
            if matched.is_none() {
                if let Some(at) = find(line, rule.text.as_bytes()) {
                    let from = if rule.kind == StopKind::KernelPanic { at } else { 0 };
                    *matched = Some(String::from_utf8_lossy(&line[from..]).into_owned());
                }
            }
            let Some(message) = matched else { continue };
            if rule.until.as_ref().is_none_or(|u| find(line, u.as_bytes()).is_some()) {
                let outcome = match rule.kind {
                    StopKind::KernelPanic => Outcome::GuestError(GuestError::KernelPanic { message: message.clone() }),
                    StopKind::Line => Outcome::ConsoleStop { line: message.clone() },
                };
                let _ = self.latch.0.set(outcome);
                return;
            }
        }
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(w: &mut ConsoleWatch, out: &mut Vec<u8>, bytes: &[u8]) {
        for &b in bytes {
            out.push(b);
            w.wrote(out, 1);
        }
    }

    /// Linux's panic as its 8250 console prints it (CRLF, printk
    /// timestamps): the banner is the message, the end line stops the run,
    /// nothing before it does.
    #[test]
    fn a_linux_panic_stops_at_its_end_line_with_the_banner_as_message() {
        let (mut w, latch) = ConsoleWatch::new(&[StopRule::linux_panic()]).unwrap();
        let mut out = Vec::new();
        feed(&mut w, &mut out, b"[    0.99] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n");
        feed(&mut w, &mut out, b"[    0.99] Call Trace:\r\n[    0.99] ---[ end Kernel panic - not sync");
        assert_eq!(latch.get(), None, "the end line is not complete yet");
        feed(&mut w, &mut out, b"ing: VFS: Unable to mount root fs ]---\r");
        assert_eq!(latch.get(), None, "no newline yet");
        feed(&mut w, &mut out, b"\n");
        let message = "Kernel panic - not syncing: VFS: Unable to mount root fs".to_string();
        assert_eq!(latch.get(), Some(Outcome::GuestError(GuestError::KernelPanic { message })));
    }

    /// Bytes written many at a time are scanned once each; a match split
    /// over two writes is found; the first completed rule stands.
    #[test]
    fn lines_split_over_writes_match_and_the_first_rule_to_complete_stands() {
        let rules = [StopRule::linux_panic(), StopRule::line("init reached"), StopRule::line("later")];
        let (mut w, latch) = ConsoleWatch::new(&rules).unwrap();
        let mut out = b"boot\nEXITLAB-MARKER: init re".to_vec();
        w.wrote(&out, out.len());
        assert_eq!(latch.get(), None);
        out.extend_from_slice(b"ached\nlater\n");
        w.wrote(&out, 12);
        assert_eq!(latch.get(), Some(Outcome::ConsoleStop { line: "EXITLAB-MARKER: init reached".into() }));
    }

    #[test]
    fn no_rules_no_watch_and_bad_texts_are_named() {
        assert!(ConsoleWatch::new(&[]).is_none());
        assert_eq!(StopRule::check_text(""), Err("is empty"));
        assert!(StopRule::check_text("a\nb").is_err());
        assert_eq!(StopRule::check_text("Oops"), Ok(()));
    }
}

//! Turning what the user typed into values, or into the one line that says
//! what is wrong with it: the argument parser's own refusals, durations
//! and whole numbers.

use crate::UsageError;

/// One line for an error of the argument parser: its message and, where
/// it gives one, its tip, without the usage text clap prints after them.
pub fn clap_line(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a command is needed (see exitlab --help)".to_string();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match lines.find_map(|l| l.strip_prefix("tip: ")) {
        Some(tip) => format!("{first} ({tip})"),
        None => first.to_string(),
    }
}

/// Units a duration may carry, longest suffix first, in nanoseconds.
const UNITS: [(&str, f64); 7] =
    [("min", 60e9), ("ms", 1e6), ("us", 1e3), ("ns", 1.0), ("s", 1e9), ("m", 60e9), ("h", 3600e9)];

/// 2^64: one more nanosecond than a u64 counts (584 years).
const NS_CEILING: f64 = 18_446_744_073_709_551_616.0;

/// `10s`, `250ms`, `40us`, `7ns`, `2min`, `1h` (no unit: seconds) as
/// nanoseconds: at least 1 ns and fewer than 2^64 ns. `flag` names the
/// option in the error, which says what is wrong: not a number, an unknown
/// unit, negative, zero or too long.
pub fn duration_ns(flag: &str, text: &str) -> Result<u64, UsageError> {
    let t = text.trim();
    let (num, scale) = UNITS.iter().find_map(|(u, s)| t.strip_suffix(u).map(|n| (n.trim(), *s))).unwrap_or((t, 1e9));
    let err = |why: String| Err(UsageError(format!("{flag}: `{text}` {why}")));
    // Whole numbers exactly, without a float's rounding.
    if let Ok(whole) = num.parse::<u64>() {
        return match whole.checked_mul(scale as u64) {
            Some(0) => err("is shorter than 1 ns".into()),
            Some(ns) => Ok(ns),
            None => err("is longer than the longest limit, 2^64 - 1 ns (about 584 years)".into()),
        };
    }
    let v = match num.parse::<f64>() {
        Ok(v) => v,
        Err(_) => {
            // A number followed by a unit we do not know, or no number.
            let split = t.find(|c: char| c.is_alphabetic() || c.is_whitespace()).unwrap_or(t.len());
            let (n, unit) = t.split_at(split);
            return match n.parse::<f64>() {
                Ok(_) => err(format!("has an unknown unit `{}` (use ns, us, ms, s, min or h)", unit.trim())),
                Err(_) => err("is not a duration (a number and a unit: ns, us, ms, s, min or h)".into()),
            };
        }
    };
    let ns = v * scale;
    if v.is_nan() {
        err("is not a number".into())
    } else if v < 0.0 {
        err("is negative (a limit is a positive duration)".into())
    } else if ns < 1.0 {
        err("is shorter than 1 ns".into())
    } else if ns >= NS_CEILING {
        err("is longer than the longest limit, 2^64 - 1 ns (about 584 years)".into())
    } else {
        Ok(ns as u64)
    }
}

/// A limit that `off` turns off (`None`); any other text is `parse`d.
pub fn off_or<T>(text: &str, parse: impl FnOnce(&str) -> Result<T, UsageError>) -> Result<Option<T>, UsageError> {
    match text.trim() {
        "off" => Ok(None),
        _ => parse(text).map(Some),
    }
}

/// A whole number from `min` to `max`; the error names `flag` and says
/// whether the text is negative, not a whole number, or out of range.
pub fn whole(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, UsageError> {
    let t = text.trim();
    match t.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(v) => Err(UsageError(format!("{flag} = {v} is out of range ({min}..={max})"))),
        Err(_) if t.starts_with('-') && t[1..].parse::<u128>().is_ok() => {
            Err(UsageError(format!("{flag}: `{text}` is negative ({min}..={max})")))
        }
        Err(_) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            Err(UsageError(format!("{flag}: `{text}` is more than {max}")))
        }
        Err(_) => Err(UsageError(format!("{flag}: `{text}` is not a whole number ({min}..={max})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<u64, UsageError>) -> String {
        match r {
            Ok(v) => format!("ok {v}"),
            Err(UsageError(m)) => m,
        }
    }

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(msg(duration_ns("--max-time", "10s")), "ok 10000000000");
        assert_eq!(msg(duration_ns("--max-time", "250ms")), "ok 250000000");
        assert_eq!(msg(duration_ns("--max-time", "1.5us")), "ok 1500");
        assert_eq!(msg(duration_ns("--max-time", "2min")), "ok 120000000000");
        assert_eq!(msg(duration_ns("--max-time", "1h")), "ok 3600000000000");
        assert_eq!(msg(duration_ns("--max-time", "3")), "ok 3000000000");
        assert_eq!(msg(duration_ns("--max-time", "9223372036854775807ns")), "ok 9223372036854775807");
    }

    #[test]
    fn duration_errors_name_the_real_problem() {
        assert_eq!(
            msg(duration_ns("--max-time", "-1s")),
            "--max-time: `-1s` is negative (a limit is a positive duration)"
        );
        assert_eq!(msg(duration_ns("--max-time", "NaNs")), "--max-time: `NaNs` is not a number");
        assert_eq!(msg(duration_ns("--max-time", "0")), "--max-time: `0` is shorter than 1 ns");
        assert_eq!(msg(duration_ns("--max-time", "0.1ns")), "--max-time: `0.1ns` is shorter than 1 ns");
        assert!(msg(duration_ns("--max-time", "5 weeks")).contains("unknown unit `weeks`"));
        assert!(msg(duration_ns("--max-time", "18446744073709551616ns")).contains("longer than the longest limit"));
        assert!(msg(duration_ns("--max-time", "infs")).contains("longer than the longest limit"));
        assert!(msg(duration_ns("--max-time", "soon")).contains("is not a duration"));
    }

    #[test]
    fn whole_numbers_say_negative_too_big_or_not_a_number() {
        assert_eq!(msg(whole("--seed", "7", 0, u64::MAX)), "ok 7");
        assert_eq!(msg(whole("-n", "-1", 1, 10)), "-n: `-1` is negative (1..=10)");
        assert_eq!(
            msg(whole("-n", "99999999999999999999", 1, u64::MAX)),
            "-n: `99999999999999999999` is more than 18446744073709551615"
        );
        assert_eq!(msg(whole("-n", "0", 1, 10)), "-n = 0 is out of range (1..=10)");
        assert_eq!(msg(whole("-n", "1e3", 1, 10)), "-n: `1e3` is not a whole number (1..=10)");
    }
}

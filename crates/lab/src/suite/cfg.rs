//! kvm-unit-tests' `unittests.cfg`: one `[name]` section per test with
//! `key = value` lines (scripts/common.bash `for_each_unittest` reads the
//! same): `file`, `smp`, `qemu_params` (older trees: `extra_params`, with
//! the test's arguments in `-append '...'`), `test_args`, `arch`, `accel`,
//! `groups`, `timeout` and `check`. Lines starting with `#` are comments.

use std::fmt;

/// One test as the file describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestEntry {
    /// The section name: the test's name.
    pub name: String,
    /// The image, relative to the file's directory.
    pub file: String,
    /// vCPUs (`smp`, default 1).
    pub smp: u32,
    /// The test's own arguments (`test_args`, or `-append` in
    /// `extra_params`), quotes removed.
    pub args: String,
    /// QEMU's options for the test (`qemu_params`, or `extra_params`
    /// without its `-append`).
    pub qemu_params: String,
    /// `x86_64` or `i386`; empty: both.
    pub arch: String,
    /// `kvm` or `tcg`; empty: either.
    pub accel: String,
    pub groups: Vec<String>,
    /// `timeout` as written (`90s`, `180`); empty: the runner's default.
    pub timeout: String,
    /// `path=value` conditions on the host.
    pub check: Vec<String>,
}

/// A line the parser could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfgError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// `'a b'` or `"a b"` without its quotes.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Splits `extra_params` into QEMU's options and the `-append` argument.
fn split_append(extra: &str) -> (String, String) {
    let Some(at) = extra.find("-append") else { return (extra.trim().to_string(), String::new()) };
    let (before, rest) = extra.split_at(at);
    let rest = rest["-append".len()..].trim_start();
    let (arg, after) = match rest.chars().next() {
        Some(q @ ('\'' | '"')) => match rest[1..].find(q) {
            Some(end) => (&rest[1..=end], &rest[end + 2..]),
            None => (&rest[1..], ""),
        },
        _ => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
    };
    (format!("{} {}", before.trim(), after.trim()).trim().to_string(), arg.to_string())
}

/// Parses the text of a `unittests.cfg`.
pub fn parse(text: &str) -> Result<Vec<TestEntry>, CfgError> {
    let mut tests: Vec<TestEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| CfgError { line: i + 1, message };
        if let Some(name) = line.strip_prefix('[') {
            let name = name.strip_suffix(']').ok_or_else(|| err(format!("`{line}` does not close its `[`")))?;
            tests.push(TestEntry { name: name.trim().to_string(), smp: 1, ..TestEntry::default() });
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| err(format!("`{line}` is not `key = value`")))?;
        let t = tests.last_mut().ok_or_else(|| err(format!("`{}` before the first [test]", key.trim())))?;
        let value = value.trim();
        match key.trim() {
            "file" => t.file = unquote(value).to_string(),
            "smp" => {
                let v = unquote(value);
                t.smp = v.parse().map_err(|_| err(format!("smp = `{v}` is not a number")))?;
            }
            "test_args" => t.args = unquote(value).to_string(),
            "qemu_params" => t.qemu_params = value.to_string(),
            "extra_params" => {
                let (params, args) = split_append(value);
                t.qemu_params = params;
                if !args.is_empty() {
                    t.args = args;
                }
            }
            "arch" => t.arch = value.to_string(),
            "accel" => t.accel = value.to_string(),
            "groups" => t.groups = value.split_whitespace().map(str::to_string).collect(),
            "timeout" => t.timeout = value.to_string(),
            "check" => t.check = value.split_whitespace().map(str::to_string).collect(),
            // Keys that change nothing here (machine, disabled_if) are
            // read and left; the runner says n/a where one matters.
            _ => {}
        }
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_both_argument_forms() {
        let text = "# comment\n[vmexit_cpuid]\nfile = vmexit.flat\ntest_args = 'cpuid'\ngroups = vmexit\n\n\
                    [x2apic]\nfile = apic.flat\nsmp = 2\nqemu_params = -cpu qemu64,+x2apic\narch = x86_64\ntimeout = 30\n\
                    [old]\nfile = old.flat\nextra_params = -cpu max -append \"10000000 20\" -m 256\n\
                    [pmu]\nfile = pmu.flat\naccel = kvm\ncheck = /a=Y /b=0\n";
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            (t[0].name.as_str(), t[0].file.as_str(), t[0].args.as_str(), t[0].smp),
            ("vmexit_cpuid", "vmexit.flat", "cpuid", 1)
        );
        assert_eq!(t[0].groups, ["vmexit"]);
        assert_eq!(
            (t[1].smp, t[1].qemu_params.as_str(), t[1].arch.as_str(), t[1].timeout.as_str()),
            (2, "-cpu qemu64,+x2apic", "x86_64", "30")
        );
        assert_eq!((t[2].args.as_str(), t[2].qemu_params.as_str()), ("10000000 20", "-cpu max -m 256"));
        assert_eq!((t[3].accel.as_str(), t[3].check.len()), ("kvm", 2));
    }

    #[test]
    fn broken_lines_name_their_number() {
        assert_eq!(parse("file = a.flat\n").unwrap_err().line, 1);
        assert_eq!(parse("[a]\nsmp = two\n").unwrap_err().line, 2);
        assert_eq!(parse("[a\n").unwrap_err().line, 1);
        assert_eq!(parse("[a]\nnonsense\n").unwrap_err().message, "`nonsense` is not `key = value`");
    }

    #[test]
    fn the_shared_suites_file_parses_whole() {
        let path = crate::suite::tests::shared_x86().join("unittests.cfg");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipped: {} is not readable; ../shared is beside the repository in CI", path.display());
            return;
        };
        let t = parse(&text).unwrap();
        // `grep -c '^\[' unittests.cfg` on the shared copy.
        assert_eq!(t.len(), 87);
        let setjmp = t.iter().find(|e| e.name == "setjmp").unwrap();
        assert_eq!((setjmp.file.as_str(), setjmp.smp), ("setjmp.flat", 1));
        let kvmclock = t.iter().find(|e| e.name == "kvmclock_test").unwrap();
        assert_eq!(kvmclock.args, "10000000 `date +%s`");
    }
}

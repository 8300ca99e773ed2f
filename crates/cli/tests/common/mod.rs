//! Running the `exitlab` binary in tests, shared by this directory's test
//! files (each uses a part of it, hence the allow).
#![allow(dead_code)]

use std::process::{Command, Output};

#[path = "../../../lab/tests/support/tree.rs"]
pub mod tree;

pub fn exitlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exitlab")).args(args).output().expect("the binary runs")
}

/// `exitlab args` with `key=value` in its environment.
pub fn exitlab_env(args: &[&str], key: &str, value: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exitlab")).args(args).env(key, value).output().expect("the binary runs")
}

/// Whether /dev/kvm can be used here; prints why a KVM test skips when not.
pub fn kvm_usable() -> bool {
    match exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipping KVM test: {why}");
            false
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: exit status 2 and exactly one line on stderr naming `what`.
pub fn assert_usage_error(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.contains(what), "`{what}` not in: {err}");
}

/// A fresh, empty directory for one test: `exitlab-cli-<tag>-<pid>` in the
/// system's temporary directory.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("exitlab-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

//! `exitlab run --shard`, `exitlab report --shard` and `exitlab merge` as
//! a scheduler runs them: each shard a separate process, then one merge.

mod common;

use common::tree::assert_same_tree;
use common::{assert_usage_error, exitlab, stderr, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `args` once per shard of `count`, all at once, as a job array
/// would, and waits for every one; returns the parts' directories.
fn shards_as_processes(args: &[&str], count: usize, dir: &Path) -> Vec<PathBuf> {
    let parts: Vec<PathBuf> = (0..count).map(|i| dir.join(format!("part-{i}"))).collect();
    let children: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, out)| {
            Command::new(env!("CARGO_BIN_EXE_exitlab"))
                .args(args)
                .args(["--shard", &format!("{i}/{count}"), "--out", s(out)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the binary starts")
        })
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }
    parts
}

#[test]
fn four_shards_as_separate_processes_merge_to_the_unsharded_bytes() {
    let d = temp_dir("shards-four");
    let whole = d.join("whole");
    ok(exitlab(&["run", "e2", "--out", s(&whole)]));
    let parts = shards_as_processes(&["run", "e2"], 4, &d);
    let merged = d.join("merged");
    let mut args = vec!["merge"];
    args.extend(parts.iter().map(|p| s(p)));
    args.extend(["--out", s(&merged)]);
    let o = ok(exitlab(&args));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with(&format!("e2: 16 points from 4 part(s) -> {}\n", merged.display())), "{out}");
    assert_same_tree(&merged, &whole);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_report_in_two_shard_processes_merges_to_the_unsharded_report() {
    let d = temp_dir("shards-report");
    let whole = d.join("whole");
    // The simulator alone: where KVM is usable the host's side would run
    // too, with the host's timings, which no two runs share.
    // Without the kernel (its boots take minutes): shard 0 holds the
    // Linux section's line.
    ok(exitlab(&["report", "--backend", "sim", "--linux", "/nonexistent/linux", "--out", s(&whole)]));
    let parts = shards_as_processes(&["report", "--backend", "sim", "--linux", "/nonexistent/linux"], 2, &d);
    assert!(parts[0].join("linux.json").exists() && !parts[1].join("linux.json").exists());
    let merged = d.join("merged");
    ok(exitlab(&["merge", s(&parts[1]), s(&parts[0]), "--out", s(&merged)]));
    assert_same_tree(&merged, &whole);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn merges_of_parts_that_do_not_belong_together_exit_2_with_one_line() {
    let d = temp_dir("shards-refuse");
    let p = shards_as_processes(&["run", "e4"], 3, &d);
    let out = d.join("out");
    let merge = |parts: &[&PathBuf]| {
        let mut args = vec!["merge"];
        args.extend(parts.iter().map(|p| s(p)));
        args.extend(["--out", s(&out)]);
        exitlab(&args)
    };
    assert_usage_error(&merge(&[&p[0], &p[2]]), "shard 1/3 is missing: no part given holds it");
    let dup = format!("part {} is shard 2/3, and so is part {}: each shard merges once", s(&p[2]), s(&p[2]));
    assert_usage_error(&merge(&[&p[0], &p[1], &p[2], &p[2]]), &dup);
    let e6 = d.join("e6");
    ok(exitlab(&["run", "e6", "--set", "n=20", "--shard", "2/3", "--out", s(&e6)]));
    assert_usage_error(
        &merge(&[&p[0], &p[1], &e6]),
        &format!("part {} is of scenario e6, but part {} is of e4", s(&e6), s(&p[0])),
    );
    let n40 = d.join("n40");
    ok(exitlab(&["run", "e4", "--set", "n=40", "--shard", "2/3", "--out", s(&n40)]));
    let o = merge(&[&p[0], &p[1], &n40]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!("exitlab: part {} ran e4 with other parameters", s(&n40))),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
    // Another version: the part's manifest says which exitlab wrote it.
    let manifest = p[2].join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    std::fs::write(&manifest, text.replace(&format!("\"exitlab\": \"{version}\""), "\"exitlab\": \"0.0.1\"")).unwrap();
    assert_usage_error(
        &merge(&[&p[0], &p[1], &p[2]]),
        &format!("part {} was written by exitlab 0.0.1; this is exitlab {version}", s(&p[2])),
    );
    assert!(!out.exists(), "nothing is written by a refused merge");
    std::fs::write(&manifest, text).unwrap();
    ok(merge(&[&p[2], &p[0], &p[1]]));
    assert!(out.join("results.csv").exists());
    // Shards that are not shards; an --out that holds someone's files.
    assert_usage_error(
        &exitlab(&["run", "e4", "--shard", "3/3"]),
        "--shard `3/3`: I must be below N (shards are numbered 0 to 2)",
    );
    assert_usage_error(&exitlab(&["report", "--shard", "two"]), "--shard `two`: not of the form I/N (e.g. 0/4)");
    let theirs = d.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    assert_usage_error(
        &exitlab(&["run", "e4", "--out", s(&theirs)]),
        &format!(
            "{} exists and is not an exitlab output set (no manifest.json): remove it or choose another --out",
            s(&theirs)
        ),
    );
    std::fs::remove_dir_all(&d).unwrap();
}

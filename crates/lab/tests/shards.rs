//! Sharded sweeps: every shard written as a part, read back and merged,
//! gives the bytes of the unsharded run; parts that do not belong together
//! are refused with one line naming the part.

use exitlab_lab::manifest::SetKind;
use exitlab_lab::output::publish;
use exitlab_lab::part::{merge, run_whole, Part};
use exitlab_lab::shard::Shard;
use exitlab_lab::Scenario;
use std::path::{Path, PathBuf};

#[path = "support/tree.rs"]
mod support;

use support::{assert_same_tree, tree};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exitlab-shards-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes shards 0..count of the set as parts under `dir`, returns their
/// directories.
fn write_parts(set: SetKind, scenarios: &[Scenario], count: usize, dir: &Path) -> Vec<PathBuf> {
    (0..count)
        .map(|index| {
            let part = Part::run(set, scenarios, false, Shard { index, count }).unwrap();
            let d = dir.join(format!("part-{index}-of-{count}"));
            publish(&d, |t| part.write(t)).unwrap();
            d
        })
        .collect()
}

fn merged(parts: &[PathBuf]) -> Result<exitlab_lab::part::Whole, String> {
    merge(parts.iter().map(|d| Part::read(d)).collect::<Result<Vec<_>, _>>()?)
}

/// The check: 1, 3 and 7 shards of a built-in experiment merge to
/// the unsharded run's files, byte for byte.
#[test]
fn e1_in_1_3_and_7_shards_merges_to_the_unsharded_bytes() {
    let d = temp_dir("e1");
    let e1 = [Scenario::load("e1").unwrap()];
    let whole = d.join("whole");
    let w = run_whole(SetKind::Run, &e1, false).unwrap();
    publish(&whole, |t| w.write(t)).unwrap();
    let expected = tree(&whole);
    for f in ["results.csv", "results.json", "summary.md", "manifest.json", "exits-vs-p.svg", "rate-vs-p.svg"] {
        assert!(expected.contains_key(f), "{f} in {:?}", expected.keys());
    }
    for count in [1, 3, 7] {
        let parts = write_parts(SetKind::Run, &e1, count, &d.join(format!("n{count}")));
        let out = d.join(format!("merged-{count}"));
        let m = merged(&parts).unwrap();
        publish(&out, |t| m.write(t)).unwrap();
        assert_same_tree(&out, &whole);
        // The parts hold every point once: 22 points, dealt evenly.
        let sizes: Vec<usize> = parts.iter().map(|p| Part::read(p).unwrap().points[0].len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 22, "{sizes:?}");
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// The report in 3 shards (its experiments' points and E8 dealt together)
/// merges to the unsharded report.
#[test]
fn the_report_in_3_shards_merges_to_the_unsharded_report() {
    let d = temp_dir("report");
    let all = exitlab_lab::report::experiments().unwrap();
    let whole = d.join("whole");
    let w = run_whole(SetKind::Report, &all, false).unwrap();
    publish(&whole, |t| w.write(t)).unwrap();
    let expected = tree(&whole);
    assert!(expected.contains_key("report.html") && expected.contains_key("e8/results.csv"));
    let parts = write_parts(SetKind::Report, &all, 3, &d);
    // E8 is one unit: exactly one part holds it.
    assert_eq!(parts.iter().filter(|p| p.join("e8.json").exists()).count(), 1);
    let out = d.join("merged");
    let m = merged(&parts).unwrap();
    publish(&out, |t| m.write(t)).unwrap();
    assert_same_tree(&out, &whole);
    // The Linux section is shard 0's (here the line saying it was not
    // asked for), and only shard 0's.
    assert!(parts[0].join("linux.json").exists() && !parts[1].join("linux.json").exists());
    edit(&parts[0].join("manifest.json"), "\"linux\": true", "\"linux\": false");
    let e = merged(&parts).err().expect("refused");
    assert!(e.ends_with("lacks the report's Linux section, which shard 0/3 holds"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// A small scenario for the refusals: e4 at one period, four points.
fn small(n: i64) -> Scenario {
    let mut s = Scenario::load("e4").unwrap();
    s.params.insert("n".into(), toml::Value::Integer(n));
    s.sweep.insert("period_ms".into(), vec![toml::Value::Integer(1), toml::Value::Integer(10)]);
    s
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from} not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn parts_that_do_not_belong_together_are_refused_naming_the_part() {
    let d = temp_dir("refuse");
    let s = [small(20)];
    let p = write_parts(SetKind::Run, &s, 3, &d);
    let refused = |dirs: &[&PathBuf]| {
        let owned: Vec<PathBuf> = dirs.iter().map(|p| p.to_path_buf()).collect();
        let e = merged(&owned).err().expect("refused");
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let name = |p: &Path| p.display().to_string();
    assert!(merged(&p).is_ok());
    assert_eq!(refused(&[&p[0], &p[2]]), "shard 1/3 is missing: no part given holds it");
    assert_eq!(refused(&[&p[0]]), "shards 1/3, 2/3 are missing: no part given holds them");
    let dup = refused(&[&p[0], &p[1], &p[1], &p[2]]);
    assert_eq!(
        dup,
        format!("part {} is shard 1/3, and so is part {}: each shard merges once", name(&p[1]), name(&p[1]))
    );

    // Another scenario, other parameters, another size, another count.
    let other = |s: Scenario, shard: Shard, tag: &str| {
        let part = Part::run(SetKind::Run, &[s], false, shard).unwrap();
        let dir = d.join(tag);
        publish(&dir, |t| part.write(t)).unwrap();
        dir
    };
    let mut e6 = Scenario::load("e6").unwrap();
    e6.params.insert("n".into(), toml::Value::Integer(20));
    let q = other(e6, Shard { index: 2, count: 3 }, "e6");
    assert_eq!(
        refused(&[&p[0], &p[1], &q]),
        format!("part {} is of scenario e6, but part {} is of e4", name(&q), name(&p[0]))
    );
    let q = other(small(30), Shard { index: 2, count: 3 }, "n30");
    let e = refused(&[&p[0], &p[1], &q]);
    assert!(e.starts_with(&format!("part {} ran e4 with other parameters (digest ", name(&q))), "{e}");
    let q = other(small(20), Shard { index: 2, count: 4 }, "of4");
    assert_eq!(
        refused(&[&p[0], &p[1], &q]),
        format!("part {} is shard 2/4, but part {} is one of 3 shards", name(&q), name(&p[0]))
    );

    // Another exitlab version.
    let v = d.join("version");
    std::fs::create_dir_all(&v).unwrap();
    for f in ["manifest.json", "points.json"] {
        std::fs::copy(p[2].join(f), v.join(f)).unwrap();
    }
    edit(
        &v.join("manifest.json"),
        &format!("\"exitlab\": \"{}\"", exitlab_lab::manifest::VERSION),
        "\"exitlab\": \"0.0.1\"",
    );
    let e = Part::read(&v).err().unwrap();
    assert_eq!(
        e,
        format!("part {} was written by exitlab 0.0.1; this is exitlab {}", name(&v), exitlab_lab::manifest::VERSION)
    );

    // A part that claims another shard's number holds the wrong points.
    let relabeled = d.join("relabeled");
    std::fs::create_dir_all(&relabeled).unwrap();
    for f in ["manifest.json", "points.json"] {
        std::fs::copy(p[1].join(f), relabeled.join(f)).unwrap();
    }
    edit(&relabeled.join("manifest.json"), "\"shard\": \"1/3\"", "\"shard\": \"2/3\"");
    let e = refused(&[&p[0], &p[1], &relabeled]);
    assert!(
        e.starts_with(&format!("part {} holds ", name(&relabeled))) && e.ends_with("which is not a unit of shard 2/3"),
        "{e}"
    );

    // Files edited behind the manifest's back.
    let edited = d.join("edited");
    std::fs::create_dir_all(&edited).unwrap();
    for f in ["manifest.json", "points.json"] {
        std::fs::copy(p[2].join(f), edited.join(f)).unwrap();
    }
    edit(&edited.join("manifest.json"), "n = 20\\nwarmup", "n = 21\\nwarmup");
    let e = refused(&[&p[0], &p[1], &edited]);
    assert_eq!(
        e,
        format!(
            "part {}: the definition of e4 does not match its digest {}",
            name(&edited),
            Part::read(&p[2]).unwrap().manifest.experiments[0].digest
        )
    );
    std::fs::copy(p[2].join("manifest.json"), edited.join("manifest.json")).unwrap();
    edit(&edited.join("points.json"), "\"period_ms\",\n            \"", "\"period_ms\",\n            \"9");
    assert_eq!(
        Part::read(&edited).err().unwrap(),
        format!("part {}: points.json does not hold the points its manifest.json lists", name(&edited))
    );

    // A complete set is not a part; a directory without a manifest is nothing.
    let whole = d.join("whole");
    let w = run_whole(SetKind::Run, &s, false).unwrap();
    publish(&whole, |t| w.write(t)).unwrap();
    assert!(Part::read(&whole)
        .err()
        .unwrap()
        .ends_with("is a complete run set, not a part (merge takes what runs with --shard write)"));
    assert!(Part::read(&d).err().unwrap().contains("is not an exitlab part: cannot read its manifest.json"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_set_is_published_whole_and_never_over_a_users_files() {
    let d = temp_dir("publish");
    let target = d.join("set");
    // A failure while writing leaves nothing behind, not half a set.
    let e = publish(&target, |t| {
        std::fs::write(t.join("results.csv"), "half").unwrap();
        Err("disk full".to_string())
    });
    assert_eq!(e, Err("disk full".to_string()));
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no temporary directory is left");
    // A set replaces the set that was there, whole.
    let w = run_whole(SetKind::Run, &[small(10)], false).unwrap();
    publish(&target, |t| w.write(t)).unwrap();
    std::fs::write(target.join("stale.txt"), "from before").unwrap();
    publish(&target, |t| w.write(t)).unwrap();
    assert!(!target.join("stale.txt").exists() && target.join("results.csv").exists());
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "only the set itself");
    // A directory of someone else's files is refused, untouched.
    let theirs = d.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("thesis.tex"), "years of work").unwrap();
    let e = publish(&theirs, |t| w.write(t)).unwrap_err();
    assert_eq!(
        e,
        format!(
            "{} exists and is not an exitlab output set (no manifest.json): remove it or choose another --out",
            theirs.display()
        )
    );
    assert_eq!(std::fs::read_to_string(theirs.join("thesis.tex")).unwrap(), "years of work");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Report parts run beside the host and parts of the simulator alone are
/// not one set: merge refuses them, naming the part.
#[test]
fn report_parts_beside_the_host_and_alone_do_not_merge() {
    let d = temp_dir("host-mixed");
    let s = [small(10)];
    let p = write_parts(SetKind::Report, &s, 2, &d);
    assert!(merged(&p).is_ok());
    let manifest = p[1].join("manifest.json");
    let alone = format!("\"host\": {{\n    \"alone\": \"{}\"\n  }}", exitlab_lab::part::SIM_ALONE);
    edit(&manifest, &alone, "\"host\": \"kvm\"");
    let e = merged(&p).err().expect("refused");
    assert_eq!(
        e,
        format!(
            "part {} ran the report beside this host's KVM, but part {} ran it on the simulator alone",
            p[1].display(),
            p[0].display()
        )
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// Beside the host, a sharded report deals the host's points and E8 on the
/// host like the simulator's: each is held by exactly one part, and the
/// merged report has every host point in sweep order, E8's cases on the
/// host, and the host's files beside the simulator's.
#[test]
fn a_sharded_report_beside_the_host_holds_each_host_unit_once() {
    if let Err(why) = exitlab_kvm::probe(&exitlab_kvm::device_path()) {
        eprintln!("skipped: {why}");
        return;
    }
    use exitlab_lab::manifest::HostSide;
    let d = temp_dir("host-shards");
    let s = [small(10)];
    let parts: Vec<PathBuf> = (0..2)
        .map(|index| {
            let part = Part::run_report(&s, false, Shard { index, count: 2 }, HostSide::Kvm, None).unwrap();
            let dir = d.join(format!("part-{index}"));
            publish(&dir, |t| part.write(t)).unwrap();
            dir
        })
        .collect();
    let read: Vec<Part> = parts.iter().map(|p| Part::read(p).unwrap()).collect();
    let host = exitlab_lab::host::scenario(&s[0]).unwrap().unwrap();
    let held: Vec<usize> = read.iter().map(|p| p.host_points[0].len()).collect();
    // tick_hz x period_ms on the host (the profile axis dropped).
    assert_eq!(host.points(false).len(), 6);
    assert_eq!(held.iter().sum::<usize>(), 6, "{held:?}");
    assert_eq!(read.iter().filter(|p| p.e8_host.is_some()).count(), 1, "E8 on the host is one unit");
    let whole = merged(&parts).unwrap();
    let h = whole.host.as_ref().unwrap().as_ref().unwrap();
    let r = h.experiments[0].as_ref().unwrap();
    let axes: Vec<Vec<(String, String)>> = r.points.iter().map(|p| p.axes.clone()).collect();
    assert_eq!(axes, host.points(false), "in sweep order");
    assert!(r.points.iter().all(|p| p.na.is_none()), "{:?}", r.points);
    assert_eq!(h.e8.len(), exitlab_vmm::check::CASES.len());
    let out = d.join("merged");
    publish(&out, |t| whole.write(t)).unwrap();
    assert!(out.join("e4/host/results.csv").exists() && out.join("e8/host.csv").exists());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("### On this host (KVM)") && !md.contains("on the simulator alone"), "{md}");
    std::fs::remove_dir_all(&d).unwrap();
}

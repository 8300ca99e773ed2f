//! Output sets compared as a whole: every file, byte for byte. Shared by
//! the lab's tests and the command's (crates/cli/tests/common).

use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir`: path relative to `dir` -> bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

/// `got` holds the same files as `expected`, with the same bytes.
pub fn assert_same_tree(got: &Path, expected: &Path) {
    let (got, expected) = (tree(got), tree(expected));
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, bytes) in &expected {
        assert!(got[name] == *bytes, "{name} differs");
    }
}

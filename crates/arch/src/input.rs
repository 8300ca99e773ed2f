//! Reading a user's text file with a ceiling on its size. Not x86
//! vocabulary, but the one crate every reader of user files (profiles,
//! machines, scenarios, result sets) depends on, so the ceiling is kept
//! in one place.

use std::io::Read;
use std::path::Path;

/// The text of `path`, refused when it is larger than `limit` bytes (a
/// special file that never ends, such as /dev/zero, is refused the same
/// way after `limit` bytes) or not UTF-8. Errors: one line, without the
/// path (callers name the file their own way).
pub fn read_limited(path: &Path, limit: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than the {limit}-byte limit for this kind of file"));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_past_the_limit_and_endless_files_are_refused() {
        let p = std::env::temp_dir().join(format!("exitlab-read-limited-{}", std::process::id()));
        std::fs::write(&p, "12345").unwrap();
        assert_eq!(read_limited(&p, 5).unwrap(), "12345");
        assert_eq!(read_limited(&p, 4).unwrap_err(), "larger than the 4-byte limit for this kind of file");
        std::fs::write(&p, b"ab\xffc").unwrap();
        assert_eq!(read_limited(&p, 10).unwrap_err(), "not UTF-8 text (byte 2)");
        std::fs::remove_file(&p).unwrap();
        if Path::new("/dev/zero").exists() {
            assert_eq!(
                read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err(),
                "larger than the 1048576-byte limit for this kind of file"
            );
        }
    }
}

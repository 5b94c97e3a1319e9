//! File output that never loses data: atomic writes (temporary file beside the target, synced,
//! then renamed over it) and the guard against overwriting a model with its own output.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a
/// partial one, even if the process is killed mid-write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Refuses to write `output` when it is the same file as `input` (after resolving links and
/// relative paths), so that a model is never overwritten by its own fine-tuned copy.
pub fn ensure_distinct(input: &Path, output: &Path) -> Result<()> {
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::InvalidArgument(format!(
            "refusing to overwrite the input model {} with the output; choose another output path",
            input.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // Only the target remains: no temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn same_file_through_another_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nam");
        std::fs::write(&p, b"{}").unwrap();
        let other = dir.path().join(".").join("m.nam");
        assert!(ensure_distinct(&p, &other).is_err());
        assert!(ensure_distinct(&p, &dir.path().join("n.nam")).is_ok());
    }
}

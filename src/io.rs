//! File output that never loses data: atomic writes (temporary file beside the target, synced,
//! then renamed over it) and the guard against overwriting a model with its own output.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a
/// partial one, even if the process is killed mid-write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Creates `path` atomically from what `fill` writes into a temporary file beside it (synced,
/// then renamed over the target; the temporary file is removed on failure).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    fill(tmp.as_file_mut()).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Whether two paths name the same file, after resolving links, `.` and `..` (a path that
/// does not exist yet is resolved through its parent folder).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let parent = p
            .parent()
            .filter(|q| !q.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    match (canon(a), canon(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Refuses to write `output` when it is the same file as `input`, so that a model is never
/// overwritten by its own fine-tuned copy.
pub fn ensure_distinct(input: &Path, output: &Path) -> Result<()> {
    if same_file(input, output) {
        return Err(Error::InvalidArgument(format!(
            "{}: refusing to overwrite the input file; choose another output path",
            output.display()
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

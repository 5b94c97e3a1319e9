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
    // Temporary files are created owner-only; give the result the permissions of the file it
    // replaces, or those of a newly created file (0666 less the umask, read here as 0644).
    let perms = match std::fs::metadata(path) {
        Ok(m) => Some(m.permissions()),
        Err(_) => default_permissions(),
    };
    if let Some(perms) = perms {
        tmp.as_file()
            .set_permissions(perms)
            .map_err(|e| Error::io(path, e))?;
    }
    fill(tmp.as_file_mut()).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> Option<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::Permissions::from_mode(0o644))
}

/// Elsewhere temporary files already get ordinary permissions.
#[cfg(not(unix))]
fn default_permissions() -> Option<std::fs::Permissions> {
    None
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

    #[cfg(unix)]
    #[test]
    fn new_files_are_world_readable_and_replacements_keep_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(mode(&p), 0o600);
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

//! Files in and out without losing data, in one place:
//!
//! - [`read_regular_file`]: inputs are read only from regular files of bounded size (a FIFO, a
//!   device such as `/dev/zero` or a directory is refused at once, never read or waited on).
//! - [`write_atomic`]: a temporary file beside the target (`.NAME.XXXXXX.dealias-tmp.EXT`),
//!   synced, then renamed over it; only a missing or regular file is ever replaced (a symbolic
//!   link, device, FIFO or directory is refused, saying which).
//! - [`Outputs`]: the files a command will write, checked together before any long work:
//!   no output may be the same file as an input or as another output (compared by file
//!   identity, device and inode, or the canonical path of a file not yet created), each folder
//!   must exist, and each output is locked (`.NAME.lock` beside it) so that a second run writing
//!   the same file stops with a clear message ([`Outputs::try_claim`] and
//!   [`Outputs::claim_waiting`] let a batch skip or wait instead). Taking the lock also removes
//!   the temporary files a killed writer of that output left behind.
//! - [`write_together`]: files that belong together (a model and its report) written so that
//!   a reader who finds the last one always finds the others complete.

use std::fs::{File, FileType, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Suffix of the temporary files of [`write_atomic`].
const TMP_SUFFIX: &str = ".dealias-tmp";
/// Random characters in a temporary file's name.
const TMP_RAND: usize = 6;

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// What a file type is, for messages ("a directory", "a FIFO (named pipe)", ...).
fn kind_name(ft: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading without blocking on a FIFO (whose `open` would wait for a writer).
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path)
}

/// Reads the whole of `path`, which must be a regular file (or a link to one) of at most
/// `max_bytes`; `what` names the kind of file in messages ("model", "WAV", "checkpoint").
pub fn read_regular_file(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    // Refuse before opening what is not a regular file: opening a FIFO blocks.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(file_error(
            path,
            format!(
                "is {}, not a {what} file (only regular files are read)",
                kind_name(&meta.file_type())
            ),
        ));
    }
    let file = open_for_reading(path).map_err(|e| Error::io(path, e))?;
    // The path may have been replaced between the check and the open: check the open file.
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(file_error(
            path,
            format!("is {}, not a {what} file", kind_name(&meta.file_type())),
        ));
    }
    let too_big = |len: u64| {
        file_error(
            path,
            format!(
                "is {len} bytes; a {what} file is read only up to {max_bytes} bytes ({})",
                crate::limits::human_bytes(max_bytes as f64)
            ),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read even if the file grows while it is read.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Refuses to replace `path` unless it does not exist or is a regular file: a symbolic link,
/// a device, a FIFO, a socket or a directory is never replaced by a file.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            Err(file_error(
                path,
                format!(
                    "is a symbolic link{target}; dealias replaces only regular files, so give the \
                     path of the file itself"
                ),
            ))
        }
        Ok(m) => Err(file_error(
            path,
            format!(
                "is {}; dealias writes only regular files and will not replace it",
                kind_name(&m.file_type())
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The folder and file name of an output path.
fn split_output(path: &Path) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .ok_or_else(|| file_error(path, "is not a file name (it ends in a folder)"))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a
/// partial one, even if the process is killed mid-write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Creates `path` atomically from what `fill` writes into a temporary file beside it (synced,
/// then renamed over the target; the temporary file is removed on failure, and by the next
/// [`Outputs::claim`] of the same path if the process was killed).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = temp_file_for(path)?;
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

/// The end of the name of a temporary file for `name`: `.dealias-tmp`, and the target's
/// extension (some writers, e.g. of PNG, choose the encoding by extension).
fn temp_suffix(name: &str) -> String {
    match Path::new(name).extension() {
        Some(e) => format!("{TMP_SUFFIX}.{}", e.to_string_lossy()),
        None => TMP_SUFFIX.to_string(),
    }
}

/// A temporary file beside `path` to be renamed over it (`.NAME.XXXXXX.dealias-tmp.EXT`, which
/// [`Outputs::claim`] recognises as stale after a crash); refuses a `path` that is not
/// replaceable ([`check_replaceable`]).
pub fn temp_file_for(path: &Path) -> Result<tempfile::NamedTempFile> {
    check_replaceable(path)?;
    let (dir, name) = split_output(path)?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(&temp_suffix(&name))
        .rand_bytes(TMP_RAND)
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))
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

/// Writes files that belong together (e.g. a report, then the model it describes) so that a
/// reader who finds the last file finds the others complete: the last file is removed first,
/// then each is written atomically in the given order. An interruption leaves the earlier
/// files without the last one, never the last one with stale or partial companions.
pub fn write_together(files: &[(&Path, &[u8])]) -> Result<()> {
    let Some((last, _)) = files.last() else {
        return Ok(());
    };
    for (p, _) in files {
        check_replaceable(p)?;
    }
    match std::fs::remove_file(last) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(*last, e)),
    }
    for (p, bytes) in files {
        write_atomic(p, bytes)?;
    }
    Ok(())
}

/// A checksum of `bytes` for detecting corrupted or altered files: FNV-1a over 64 bits, as
/// `fnv1a64:` and 16 hex digits. Every step of FNV-1a is a bijection of the state, so any
/// change of a single byte changes the sum.
pub fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// The identity of a file: device and inode of an existing one (through links), else the
/// canonical path it would be created at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

fn file_id(path: &Path) -> Result<FileId> {
    match std::fs::metadata(path) {
        Ok(_m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                Ok(FileId::Inode(_m.dev(), _m.ino()))
            }
            #[cfg(not(unix))]
            {
                Ok(FileId::Path(
                    path.canonicalize().map_err(|e| Error::io(path, e))?,
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (dir, name) = split_output(path)?;
            let dir = dir.canonicalize().map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    file_error(path, format!("the folder {} does not exist", dir.display()))
                } else {
                    Error::io(&dir, e)
                }
            })?;
            if !dir.is_dir() {
                return Err(file_error(
                    path,
                    format!("{} is not a folder", dir.display()),
                ));
            }
            Ok(FileId::Path(dir.join(name)))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Whether two paths name the same file (same device and inode, or the same canonical path
/// for files that do not exist yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (file_id(a), file_id(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Refuses to write `output` when it is the same file as `input`, so that a model is never
/// overwritten by its own fine-tuned copy.
pub fn ensure_distinct(input: &Path, output: &Path) -> Result<()> {
    if same_file(input, output) {
        return Err(file_error(
            output,
            "refusing to overwrite the input file; choose another output path",
        ));
    }
    Ok(())
}

/// A path with the role it plays in a command (e.g. "-o", "--checkpoint", "the report").
#[derive(Clone, Debug)]
struct Role {
    path: PathBuf,
    role: String,
}

impl Role {
    fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.role)
    }
}

/// The files a command reads and writes, checked together before the work starts (see the
/// module documentation).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    inputs: Vec<Role>,
    outputs: Vec<Role>,
}

impl Outputs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A file the command reads (never to be overwritten).
    pub fn input(mut self, path: &Path, role: &str) -> Self {
        self.inputs.push(Role {
            path: path.to_path_buf(),
            role: role.into(),
        });
        self
    }

    /// A file the command writes.
    pub fn output(mut self, path: &Path, role: &str) -> Self {
        self.outputs.push(Role {
            path: path.to_path_buf(),
            role: role.into(),
        });
        self
    }

    /// Checks every output (replaceable, its folder exists, not the same file as an input or
    /// another output) and locks each one; the locks last as long as the returned value.
    pub fn claim(&self) -> Result<OutputLocks> {
        self.claim_checks()?;
        self.lock_all()?.map_err(Error::InvalidArgument)
    }

    /// The checks of [`Outputs::claim`], before any lock.
    fn claim_checks(&self) -> Result<()> {
        let mut ids: Vec<(FileId, &Role)> = Vec::new();
        for o in &self.outputs {
            check_replaceable(&o.path)?;
            let id = file_id(&o.path)?;
            if let Some((_, other)) = ids.iter().find(|(i, _)| *i == id) {
                return Err(Error::InvalidArgument(format!(
                    "{} and {} are the same file; every output needs its own path",
                    o.describe(),
                    other.describe()
                )));
            }
            ids.push((id, o));
        }
        for i in &self.inputs {
            // An input that cannot be identified is reported by whoever reads it.
            let Ok(id) = file_id(&i.path) else { continue };
            if let Some((_, o)) = ids.iter().find(|(x, _)| *x == id) {
                return Err(Error::InvalidArgument(format!(
                    "{} is the same file as the input {}: refusing to overwrite an input; \
                     choose another output path",
                    o.describe(),
                    i.describe()
                )));
            }
        }
        Ok(())
    }

    /// As [`Outputs::claim`], but an output that another run is writing is not an error:
    /// `Ok(None)`, holding no lock (a batch moves on to another model and comes back later).
    pub fn try_claim(&self) -> Result<Option<OutputLocks>> {
        self.claim_checks()?;
        Ok(self.lock_all()?.ok())
    }

    /// As [`Outputs::claim`], but waits (polling every `poll`) while another run holds an
    /// output; `Ok(None)` when `stop` is set before the locks are taken.
    pub fn claim_waiting(
        &self,
        poll: std::time::Duration,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Option<OutputLocks>> {
        loop {
            if let Some(l) = self.try_claim()? {
                return Ok(Some(l));
            }
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(None);
            }
            std::thread::sleep(poll);
        }
    }

    /// Locks every output, or none: `Ok(Err(message))` when another run holds one.
    fn lock_all(&self) -> Result<std::result::Result<OutputLocks, String>> {
        let mut locks = Vec::new();
        for o in &self.outputs {
            match Lock::acquire(o)? {
                Ok(l) => locks.push(l),
                // The locks taken so far are released as `locks` drops.
                Err(busy) => return Ok(Err(busy)),
            }
        }
        Ok(Ok(OutputLocks { _locks: locks }))
    }
}

/// Locks on the outputs of a command, released (and the lock files removed) on drop.
#[derive(Debug)]
pub struct OutputLocks {
    _locks: Vec<Lock>,
}

/// An advisory lock on `.NAME.lock` beside an output. The operating system releases it when
/// the process ends in any way, so a killed run never blocks the next one.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    _file: File,
}

impl Lock {
    /// The lock, or `Ok(Err(message))` when another process holds it.
    fn acquire(target: &Role) -> Result<std::result::Result<Lock, String>> {
        let (dir, name) = split_output(&target.path)?;
        let path = dir.join(format!(".{name}.lock"));
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| {
                    file_error(
                        &target.path,
                        format!(
                            "cannot create files in {} ({e}); choose a writable folder",
                            dir.display()
                        ),
                    )
                })?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let who = if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (process {holder})")
                    };
                    return Ok(Err(format!(
                        "{} is being written by another dealias run{who}; wait for it to \
                         finish or choose another output path",
                        target.describe()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // A run that finished removes its lock file after unlocking; if that happened
            // between our open and lock, the file we locked is no longer the lock: retry.
            if file_id(&path).ok() != Some(open_file_id(&file, &path)) {
                continue;
            }
            file.set_len(0).map_err(|e| Error::io(&path, e))?;
            let _ = write!(file, "{}", std::process::id());
            remove_stale_temporaries(&dir, &name);
            return Ok(Ok(Lock { path, _file: file }));
        }
    }
}

/// The identity of an open file.
fn open_file_id(_file: &File, _path: &Path) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match _file.metadata() {
            Ok(m) => FileId::Inode(m.dev(), m.ino()),
            Err(_) => FileId::Path(PathBuf::new()),
        }
    }
    #[cfg(not(unix))]
    {
        FileId::Path(_path.canonicalize().unwrap_or_default())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked; the file handle (and so the lock) closes after this.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the temporary files of `write_atomic` for `dir/name` (the caller holds the
/// output's lock, so no other run is writing them: they were left by a killed process).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let suffix = temp_suffix(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let f = e.file_name();
        let f = f.to_string_lossy();
        let is_ours = f
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(&suffix))
            .is_some_and(|mid| {
                mid.len() == TMP_RAND && mid.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if is_ours && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
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

    /// A hard link has another name but the same inode: identity, not names, decides.
    #[cfg(unix)]
    #[test]
    fn hard_links_and_symlinks_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nam");
        std::fs::write(&p, b"{}").unwrap();
        let hard = dir.path().join("hard.nam");
        std::fs::hard_link(&p, &hard).unwrap();
        assert!(same_file(&p, &hard));
        let err = Outputs::new()
            .input(&p, "MODEL")
            .output(&hard, "-o")
            .claim()
            .unwrap_err()
            .to_string();
        assert!(err.contains("same file as the input"), "{err}");
        let soft = dir.path().join("soft.nam");
        std::os::unix::fs::symlink(&p, &soft).unwrap();
        assert!(same_file(&p, &soft));
    }

    #[test]
    fn two_outputs_may_not_be_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("out.json");
        let b = dir.path().join("sub").join("..").join("out.json");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = Outputs::new()
            .output(&a, "-o")
            .output(&b, "--checkpoint")
            .claim()
            .unwrap_err()
            .to_string();
        assert!(err.contains("are the same file"), "{err}");
        assert!(err.contains("--checkpoint") && err.contains("-o"), "{err}");
    }

    #[test]
    fn a_missing_folder_is_reported_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("x.json");
        let err = Outputs::new()
            .output(&p, "-o")
            .claim()
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    /// A second claim of the same output fails while the first holds it, and succeeds once
    /// it is released; the lock file is removed on release.
    #[test]
    fn outputs_are_locked_while_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        let first = Outputs::new().output(&p, "-o").claim().unwrap();
        let lock = dir.path().join(".out.json.lock");
        assert!(lock.exists());
        let err = Outputs::new()
            .output(&p, "-o")
            .claim()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("being written by another dealias run"),
            "{err}"
        );
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!lock.exists());
        Outputs::new().output(&p, "-o").claim().unwrap();
    }

    /// `try_claim` answers `None` while another claim holds any of the outputs, and takes
    /// none of them then; `claim_waiting` gives up when told to stop.
    #[test]
    fn try_claim_skips_held_outputs_and_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let held = Outputs::new().output(&b, "-o").claim().unwrap();
        let both = Outputs::new().output(&a, "-o").output(&b, "--report");
        assert!(both.try_claim().unwrap().is_none());
        // `a` was released again: another run can take it.
        drop(Outputs::new().output(&a, "-o").claim().unwrap());
        let stop = std::sync::atomic::AtomicBool::new(true);
        let wait = std::time::Duration::from_millis(1);
        assert!(both.claim_waiting(wait, &stop).unwrap().is_none());
        drop(held);
        assert!(both.try_claim().unwrap().is_some());
    }

    /// Temporary files left by a killed write are removed by the next claim of that output,
    /// and nothing else is.
    #[test]
    fn stale_temporaries_are_removed_on_claim() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        let stale = dir.path().join(".out.json.Ab3xYz.dealias-tmp.json");
        let other = dir.path().join(".other.json.Ab3xYz.dealias-tmp.json");
        let user = dir.path().join(".out.json.notes");
        for f in [&stale, &other, &user] {
            std::fs::write(f, b"x").unwrap();
        }
        let _locks = Outputs::new().output(&p, "-o").claim().unwrap();
        assert!(!stale.exists());
        assert!(other.exists() && user.exists());
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_replaced_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.json");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let err = write_atomic(Path::new("/dev/null"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a character device"), "{err}");
        let err = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
        let err = read_regular_file(Path::new("/dev/zero"), 1 << 20, "model")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a character device, not a model file"),
            "{err}"
        );
        let err = read_regular_file(dir.path(), 1 << 20, "model")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = read_regular_file(&target, 2, "model")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is 4 bytes; a model file is read only up to 2"),
            "{err}"
        );
        assert_eq!(read_regular_file(&link, 4, "model").unwrap(), b"keep");
    }

    #[test]
    fn together_removes_the_last_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("m.json.report.json");
        let model = dir.path().join("m.json");
        std::fs::write(&model, b"old model").unwrap();
        write_together(&[(&report, b"report"), (&model, b"model")]).unwrap();
        assert_eq!(std::fs::read(&model).unwrap(), b"model");
        assert_eq!(std::fs::read(&report).unwrap(), b"report");
        // A destination that cannot be replaced is refused before anything is removed.
        let bad = dir.path().join("d");
        std::fs::create_dir(&bad).unwrap();
        assert!(write_together(&[(&bad, b"r"), (&model, b"m")]).is_err());
        assert_eq!(std::fs::read(&model).unwrap(), b"model");
    }

    #[test]
    fn checksum_sees_every_byte() {
        let a = checksum(b"hello world");
        assert_eq!(a, checksum(b"hello world"));
        assert_ne!(a, checksum(b"hello worle"));
        assert_ne!(a, checksum(b"hello world "));
        // FNV-1a 64 of "a", the published test vector.
        assert_eq!(checksum(b"a"), "fnv1a64:af63dc4c8601ec8c");
    }
}

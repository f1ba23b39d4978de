//! The derivative files of one image on disk: read, write atomically, remove together.
//!
//! Blocking calls; the cache runs them on tokio's blocking pool. Every image has its own
//! directory (the cache layout is shared with `lazyfetch`, whose prune and purge remove it with
//! the master), holding one file per derivative, `.id` (the identifier, for operators and
//! `lazyfetch stats`) and `.access` (the last-access stamp prune reads).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file holding the identifier, and the last-access stamp, inside an image's directory.
pub use lazyfetch::layout::{
    DERIVATIVES_ACCESS_FILE as ACCESS_FILE, DERIVATIVES_ID_FILE as ID_FILE,
};
/// Temporary files start with this; readers never open them and prune removes stale ones.
const TEMP_PREFIX: &str = ".tmp-";

/// The derivative `name` in `dir`, or `None` when it is not cached.
pub fn read(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(name)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `bytes` as `name` in `dir`: written to a temporary file, flushed to disk, then renamed,
/// so a reader sees the whole file or none, even after a crash or with a full disk (the
/// temporary file is removed on any error).
pub fn write(dir: &Path, identifier: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let id_file = dir.join(ID_FILE);
    if !id_file.exists() {
        write_atomically(dir, &id_file, identifier.as_bytes())?;
    }
    write_atomically(dir, &dir.join(name), bytes)
}

/// What a removal freed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Derivatives removed (bookkeeping files not counted).
    pub files: u64,
    /// Bytes of every file removed.
    pub bytes: u64,
}

/// Removes the directory of one image (nothing when absent).
pub fn remove_all(dir: &Path) -> io::Result<Removed> {
    let mut removed = Removed::default();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.filter_map(Result::ok) {
                let bookkeeping = entry.file_name().to_string_lossy().starts_with('.');
                removed.files += u64::from(!bookkeeping);
                removed.bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(removed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(removed),
        Err(e) => Err(e),
    }
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(dir);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A temporary name no other writer in this process or another uses at the same time.
fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("derivative-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn written_files_read_back_and_leave_no_temporaries() {
        let dir = scratch("write");
        write(&dir, "img/1", "a.jpg", b"jpeg bytes").unwrap();
        write(&dir, "img/1", "b.png", b"png").unwrap();
        assert_eq!(
            read(&dir, "a.jpg").unwrap().as_deref(),
            Some(&b"jpeg bytes"[..])
        );
        assert_eq!(read(&dir, "missing.jpg").unwrap(), None);
        assert_eq!(fs::read_to_string(dir.join(ID_FILE)).unwrap(), "img/1");
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
        let removed = remove_all(&dir).unwrap();
        assert_eq!(removed.files, 2);
        assert_eq!(removed.bytes, 10 + 3 + 5);
        assert!(!dir.exists());
        assert_eq!(remove_all(&dir).unwrap(), Removed::default());
    }

    #[test]
    fn a_failed_write_leaves_nothing_visible() {
        let dir = scratch("fail");
        fs::create_dir_all(&dir).unwrap();
        // A directory where the file should go makes the rename fail after the data is written.
        fs::create_dir_all(dir.join("taken.jpg/inner")).unwrap();
        assert!(write(&dir, "x", "taken.jpg", b"data").is_err());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

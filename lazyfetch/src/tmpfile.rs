//! Files that become visible only by `rename`: written under `{root}/tmp/`, fsynced, renamed into
//! place; removed on drop when never renamed (an error, a timeout, a cancelled task, a runtime
//! shut down mid-download). A process killed outright leaves its file in `tmp/`, where
//! `lazyfetch prune` removes it after an hour; nothing under `masters/` is ever partial.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Suffix of every file lazyfetch writes in `tmp/`.
pub const TMP_SUFFIX: &str = ".part";

/// A file being written in the tmp directory, deleted on drop unless [`TmpFile::persist`]ed.
#[derive(Debug)]
pub struct TmpFile {
    path: PathBuf,
    file: Option<File>,
}

impl TmpFile {
    /// Creates a new empty file `{tmp_dir}/{stem}.{unique}.part` (the directory too, if missing).
    ///
    /// The name is unique across processes and hosts sharing the directory (pid, a counter and
    /// random bits), and the file is created with `O_EXCL`, so two writers never share one.
    ///
    /// # Errors
    /// The directory or the file cannot be created.
    pub fn create(tmp_dir: &Path, stem: &str) -> io::Result<TmpFile> {
        fs::create_dir_all(tmp_dir)?;
        let path = tmp_dir.join(format!("{stem}.{}{TMP_SUFFIX}", unique_token()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TmpFile {
            path,
            file: Some(file),
        })
    }

    /// The file's current path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until persisted")
    }

    /// Flushes the data to disk, sets the modification time when given, and renames the file to
    /// `destination` (creating its directory). After this the file is no longer removed on drop.
    ///
    /// # Errors
    /// fsync, the time, the directory or the rename failed; the file is then removed on drop.
    pub fn persist(mut self, destination: &Path, modified: Option<SystemTime>) -> io::Result<()> {
        let file = self.file.take().expect("persisted once");
        if let Some(modified) = modified {
            file.set_modified(modified)?;
        }
        file.sync_all()?;
        drop(file);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(&self.path, destination)?;
        // Nothing left to clean up: the path now names the destination's old name, gone.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `destination` through a tmp file (fsynced, renamed).
///
/// # Errors
/// Any step failed; `destination` is then untouched.
pub fn write_atomically(
    tmp_dir: &Path,
    stem: &str,
    destination: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = TmpFile::create(tmp_dir, stem)?;
    tmp.file().write_all(bytes)?;
    tmp.persist(destination, None)
}

/// `{pid}-{counter}-{random}`: distinct for every call in this process, and (with 64 random
/// bits) for other processes on other hosts writing to a shared mount.
pub(crate) fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS's random source once per process, then varied per
    // instance: good enough for a name, and it needs no extra dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(counter);
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{}-{counter}-{:016x}", std::process::id(), hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn dropped_file_is_removed_and_persisted_file_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp_dir = dir.path().join("tmp");
        let mut dropped = TmpFile::create(&tmp_dir, "a").unwrap();
        dropped.file().write_all(b"partial").unwrap();
        let dropped_path = dropped.path().to_owned();
        assert!(dropped_path.exists());
        drop(dropped);
        assert!(!dropped_path.exists());

        let mut kept = TmpFile::create(&tmp_dir, "b").unwrap();
        kept.file().write_all(b"whole").unwrap();
        let destination = dir.path().join("x/y/b");
        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        kept.persist(&destination, Some(modified)).unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"whole");
        assert_eq!(
            fs::metadata(&destination).unwrap().modified().unwrap(),
            modified
        );
        assert_eq!(fs::read_dir(&tmp_dir).unwrap().count(), 0);
    }

    #[test]
    fn names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..100)
            .map(|_| TmpFile::create(dir.path(), "k").unwrap())
            .collect();
        let mut names: Vec<_> = files.iter().map(|f| f.path().to_owned()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 100);
        assert!(names
            .iter()
            .all(|n| n.to_string_lossy().ends_with(TMP_SUFFIX)));
    }

    #[test]
    fn write_atomically_replaces_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("d/file.json");
        write_atomically(&dir.path().join("tmp"), "s", &destination, b"one").unwrap();
        write_atomically(&dir.path().join("tmp"), "s", &destination, b"two").unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"two");
    }
}

//! Removing one image unit: every copy of its master (the current one, old ones, one from
//! before versioned names), its sidecar, its derivatives directory. Used by `purge` (one
//! identifier, on request) and by `prune` (least recently used units).
//!
//! The copies go first, so a gateway that checks its copy (one `stat` per request) notices at
//! once and fetches it again; the derivatives directory goes last. The fan-out directories
//! stay: a download may be renaming a file into one of them right now.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::CacheLayout;
use crate::units::masters_files;

/// One removed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// What a purge removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The identifier asked for.
    pub identifier: String,
    /// Its image key.
    pub key: String,
    /// Every file removed (derivatives listed one by one).
    pub removed: Vec<RemovedFile>,
    /// Their total size.
    pub bytes: u64,
}

impl PurgeReport {
    /// True when the image had no files.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
    }
}

/// Removes every copy of the master, the sidecar and the derivatives of `identifier`. Safe
/// while the gateway serves: a request that loses its master mid-flight fetches it again.
///
/// # Errors
/// A file or directory could not be removed (permissions); files that vanished meanwhile are
/// not errors.
pub fn purge(layout: &CacheLayout, identifier: &str) -> io::Result<PurgeReport> {
    let key = CacheLayout::image_key(identifier);
    let removed = remove_unit(layout, &key)?;
    Ok(PurgeReport {
        identifier: identifier.to_owned(),
        bytes: removed.iter().map(|f| f.bytes).sum(),
        key,
        removed,
    })
}

/// Removes the unit of `key`; returns what was removed.
pub(crate) fn remove_unit(layout: &CacheLayout, key: &str) -> io::Result<Vec<RemovedFile>> {
    let sidecar = layout.sidecar_path_for_key(key);
    let copies = masters_files(layout, key)?
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| *path != sidecar);
    let mut removed = Vec::new();
    for path in copies.chain([sidecar.clone()]) {
        if let Some(bytes) = remove_file(&path)? {
            removed.push(RemovedFile { path, bytes });
        }
    }
    remove_tree(&layout.derivatives_dir_for_key(key), &mut removed)?;
    Ok(removed)
}

/// Removes a file; its size, or `None` when it was not there.
fn remove_file(path: &Path) -> io::Result<Option<u64>> {
    let bytes = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes `dir` and everything in it, file by file (so the report can list them). A file the
/// gateway adds meanwhile is removed too: the directory is read again until it is empty.
fn remove_tree(dir: &Path, removed: &mut Vec<RemovedFile>) -> io::Result<()> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_dir() => remove_tree(&path, removed)?,
                Ok(_) => {
                    if let Some(bytes) = remove_file(&path)? {
                        removed.push(RemovedFile { path, bytes });
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Something was written meanwhile: another round.
            Err(error) if error.kind() == io::ErrorKind::DirectoryNotEmpty => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other(format!(
        "{} kept filling while it was removed",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_removes_exactly_one_images_files_every_copy_included() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().to_owned());
        for id in ["one", "two"] {
            let master = layout.master_path(id, "v1");
            fs::create_dir_all(master.parent().unwrap()).unwrap();
            fs::write(&master, b"master").unwrap();
            fs::write(layout.sidecar_path(id), b"{}").unwrap();
            let derivatives = layout.derivatives_dir(id);
            fs::create_dir_all(derivatives.join("a/b")).unwrap();
            fs::write(derivatives.join("a/b/t.jpg"), b"tile").unwrap();
            fs::write(derivatives.join(".id"), id).unwrap();
        }
        // "one" also has an old copy and a master from before versioned names.
        fs::write(layout.master_path("one", "v0"), b"old").unwrap();
        let key = CacheLayout::image_key("one");
        let unversioned = layout.masters_dir_for_key(&key).join(&key);
        fs::write(&unversioned, b"older").unwrap();

        let report = purge(&layout, "one").unwrap();
        assert_eq!(report.removed.len(), 6, "{report:#?}");
        assert_eq!(report.bytes, 6 + 3 + 5 + 2 + 4 + 3);
        assert_eq!(
            report.removed[3].path,
            layout.sidecar_path("one"),
            "the copies go before the sidecar"
        );
        for gone in [
            layout.master_path("one", "v1"),
            layout.master_path("one", "v0"),
            unversioned,
            layout.sidecar_path("one"),
            layout.derivatives_dir("one"),
        ] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        assert!(layout.master_path("two", "v1").exists());
        assert!(layout.sidecar_path("two").exists());
        assert!(layout.derivatives_dir("two").join("a/b/t.jpg").exists());
        // Nothing left: an empty report, not an error.
        assert!(purge(&layout, "one").unwrap().is_empty());
    }
}

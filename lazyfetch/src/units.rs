//! A scan of the cache into **image units**: the master, its sidecar and its derivatives
//! directory, grouped by image key. Prune, purge and stats work on units, never on single files,
//! so a master never goes without its derivatives or the other way round.
//!
//! The scan tolerates a cache in use: files that vanish while it runs are skipped, names that
//! are not image keys are left alone (and not counted).

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::layout::{
    CacheLayout, DERIVATIVES_ACCESS_FILE, DERIVATIVES_DIR, DERIVATIVES_ID_FILE, MASTERS_DIR,
    SIDECAR_EXTENSION,
};
use crate::sidecar::Sidecar;

/// One image's files, as found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The image key (64 hex digits).
    pub key: String,
    /// Size of the master file; `None` when there is none (derivatives of a local master).
    pub master_bytes: Option<u64>,
    /// Size of the sidecar (0 when there is none).
    pub sidecar_bytes: u64,
    /// Total size of the files in the derivatives directory.
    pub derivatives_bytes: u64,
    /// Whether the derivatives directory exists.
    pub has_derivatives: bool,
    /// The later of the sidecar's and `.access`'s mtimes (see [`last_access`]).
    pub last_access: SystemTime,
}

impl Unit {
    /// Every byte of the unit.
    pub fn bytes(&self) -> u64 {
        self.master_bytes.unwrap_or(0) + self.sidecar_bytes + self.derivatives_bytes
    }
}

/// Everything a scan found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Units, ordered by key.
    pub units: Vec<Unit>,
    /// Files in `tmp/` with their size and mtime.
    pub tmp_files: Vec<(PathBuf, u64, SystemTime)>,
}

impl Scan {
    /// Bytes of all units.
    pub fn unit_bytes(&self) -> u64 {
        self.units.iter().map(Unit::bytes).sum()
    }

    /// Bytes in `tmp/`.
    pub fn tmp_bytes(&self) -> u64 {
        self.tmp_files.iter().map(|(_, bytes, _)| bytes).sum()
    }
}

/// Scans the cache under `layout`'s root.
///
/// # Errors
/// A directory of the cache cannot be read (other than vanishing while the scan runs).
pub fn scan(layout: &CacheLayout) -> io::Result<Scan> {
    let mut found: BTreeMap<String, Partial> = BTreeMap::new();
    for (name, metadata) in fan_out_entries(&layout.root().join(MASTERS_DIR))? {
        let name = name.to_string_lossy();
        if let Some(key) = name.strip_suffix(&format!(".{SIDECAR_EXTENSION}")) {
            if CacheLayout::is_image_key(key) && metadata.is_file() {
                let unit = found.entry(key.to_owned()).or_default();
                unit.sidecar = Some(metadata);
            }
        } else if CacheLayout::is_image_key(&name) && metadata.is_file() {
            found.entry(name.into_owned()).or_default().master = Some(metadata);
        }
    }
    for (name, metadata) in fan_out_entries(&layout.root().join(DERIVATIVES_DIR))? {
        let name = name.to_string_lossy();
        if CacheLayout::is_image_key(&name) && metadata.is_dir() {
            let dir = layout.derivatives_dir_for_key(&name);
            let (bytes, access) = derivatives_summary(&dir)?;
            let unit = found.entry(name.into_owned()).or_default();
            unit.derivatives = Some((bytes, access, metadata));
        }
    }
    let units = found
        .into_iter()
        .filter_map(|(key, partial)| partial.into_unit(key))
        .collect();
    let tmp_files = list_tmp(&layout.tmp_dir())?;
    Ok(Scan { units, tmp_files })
}

/// The unit of one key as it is now (`None`: nothing on disk).
///
/// # Errors
/// Reading the unit's files failed other than by their absence.
pub fn scan_unit(layout: &CacheLayout, key: &str) -> io::Result<Option<Unit>> {
    let partial = Partial {
        master: metadata_if_exists(&layout.master_path_for_key(key))?.filter(Metadata::is_file),
        sidecar: metadata_if_exists(&layout.sidecar_path_for_key(key))?.filter(Metadata::is_file),
        derivatives: {
            let dir = layout.derivatives_dir_for_key(key);
            match metadata_if_exists(&dir)?.filter(Metadata::is_dir) {
                Some(metadata) => {
                    let (bytes, access) = derivatives_summary(&dir)?;
                    Some((bytes, access, metadata))
                }
                None => None,
            }
        },
    };
    Ok(partial.into_unit(key.to_owned()))
}

/// The identifier of a unit: from the sidecar, else from the derivatives' `.id` file.
pub fn identifier_of(layout: &CacheLayout, key: &str) -> Option<String> {
    if let Ok(Some(sidecar)) = Sidecar::read(&layout.sidecar_path_for_key(key)) {
        return Some(sidecar.identifier);
    }
    fs::read_to_string(
        layout
            .derivatives_dir_for_key(key)
            .join(DERIVATIVES_ID_FILE),
    )
    .ok()
    .map(|text| text.trim_end_matches('\n').to_owned())
}

#[derive(Default)]
struct Partial {
    master: Option<Metadata>,
    sidecar: Option<Metadata>,
    /// (bytes, `.access` mtime, the directory's metadata)
    derivatives: Option<(u64, Option<SystemTime>, Metadata)>,
}

impl Partial {
    fn into_unit(self, key: String) -> Option<Unit> {
        if self.master.is_none() && self.sidecar.is_none() && self.derivatives.is_none() {
            return None;
        }
        let last_access = last_access(
            self.sidecar.as_ref().and_then(|m| m.modified().ok()),
            self.derivatives.as_ref().and_then(|(_, access, _)| *access),
            self.master.as_ref().map(change_time),
            self.derivatives
                .as_ref()
                .and_then(|(_, _, dir)| dir.modified().ok()),
        );
        Some(Unit {
            key,
            master_bytes: self.master.as_ref().map(Metadata::len),
            sidecar_bytes: self.sidecar.as_ref().map_or(0, Metadata::len),
            derivatives_bytes: self.derivatives.as_ref().map_or(0, |(bytes, _, _)| *bytes),
            has_derivatives: self.derivatives.is_some(),
            last_access,
        })
    }
}

/// A unit's last access: the later of its two stamps (sidecar mtime, `.access` mtime). A unit
/// with neither stamp (a master whose sidecar is missing, derivatives without `.access`) falls
/// back to when it was written: the master's ctime (its rename into place) or the derivatives
/// directory's mtime.
pub fn last_access(
    sidecar_mtime: Option<SystemTime>,
    access_mtime: Option<SystemTime>,
    master_ctime: Option<SystemTime>,
    derivatives_dir_mtime: Option<SystemTime>,
) -> SystemTime {
    sidecar_mtime
        .max(access_mtime)
        .or(master_ctime.max(derivatives_dir_mtime))
        .unwrap_or(UNIX_EPOCH)
}

fn change_time(metadata: &Metadata) -> SystemTime {
    let seconds = u64::try_from(metadata.ctime()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Every entry two fan-out levels below `dir` (`dir/ab/cd/<entry>`), with its metadata.
fn fan_out_entries(dir: &Path) -> io::Result<Vec<(std::ffi::OsString, Metadata)>> {
    let mut entries = Vec::new();
    for first in read_dir_if_exists(dir)? {
        if !is_fan_out_name(&first) {
            continue;
        }
        for second in read_dir_if_exists(&dir.join(&first))? {
            if !is_fan_out_name(&second) {
                continue;
            }
            let leaf_dir = dir.join(&first).join(&second);
            for name in read_dir_if_exists(&leaf_dir)? {
                if let Some(metadata) = metadata_if_exists(&leaf_dir.join(&name))? {
                    entries.push((name, metadata));
                }
            }
        }
    }
    Ok(entries)
}

fn is_fan_out_name(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Total file bytes under `dir` (recursively) and the mtime of its `.access` file.
fn derivatives_summary(dir: &Path) -> io::Result<(u64, Option<SystemTime>)> {
    let access =
        metadata_if_exists(&dir.join(DERIVATIVES_ACCESS_FILE))?.and_then(|m| m.modified().ok());
    let mut bytes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for name in read_dir_if_exists(&current)? {
            let path = current.join(&name);
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_dir() => pending.push(path),
                Ok(metadata) => bytes += metadata.len(),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok((bytes, access))
}

fn list_tmp(dir: &Path) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut files = Vec::new();
    for name in read_dir_if_exists(dir)? {
        let path = dir.join(name);
        if let Some(metadata) = metadata_if_exists(&path)?.filter(Metadata::is_file) {
            files.push((
                path,
                metadata.len(),
                metadata.modified().unwrap_or(UNIX_EPOCH),
            ));
        }
    }
    Ok(files)
}

/// Names in `dir`; empty when it does not exist (or vanished).
fn read_dir_if_exists(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| match entry {
                Ok(entry) => Some(Ok(entry.file_name())),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => Some(Err(error)),
            })
            .collect(),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Vec::new())
        }
        Err(error) => Err(error),
    }
}

/// `symlink_metadata`, `None` when the path does not exist.
fn metadata_if_exists(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_access_prefers_stamps_then_write_times() {
        let t = |s| Some(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(last_access(t(10), t(20), t(99), t(99)), t(20).unwrap());
        assert_eq!(last_access(t(30), None, t(99), None), t(30).unwrap());
        assert_eq!(last_access(None, t(5), t(99), None), t(5).unwrap());
        assert_eq!(last_access(None, None, t(7), t(8)), t(8).unwrap());
        assert_eq!(last_access(None, None, None, None), UNIX_EPOCH);
    }

    #[test]
    fn scan_groups_files_into_units_and_ignores_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().to_owned());
        // One image with everything, one with derivatives only, one master without a sidecar.
        for (id, master, sidecar, derivatives) in [
            ("full", true, true, true),
            ("local", false, false, true),
            ("bare", true, false, false),
        ] {
            if master {
                let path = layout.master_path(id);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, vec![0u8; 100]).unwrap();
            }
            if sidecar {
                fs::write(layout.sidecar_path(id), b"{}").unwrap();
            }
            if derivatives {
                let d = layout.derivatives_dir(id);
                fs::create_dir_all(d.join("sub")).unwrap();
                fs::write(d.join(DERIVATIVES_ID_FILE), id).unwrap();
                fs::write(d.join(DERIVATIVES_ACCESS_FILE), b"").unwrap();
                fs::write(d.join("sub/tile.jpg"), vec![0u8; 1000]).unwrap();
            }
        }
        // Strangers: a bad name in a fan-out dir, a file at the top, a bad fan-out dir.
        let full = layout.master_path("full");
        fs::write(full.parent().unwrap().join("README"), b"x").unwrap();
        fs::write(dir.path().join(MASTERS_DIR).join("note.txt"), b"x").unwrap();
        fs::create_dir_all(dir.path().join(MASTERS_DIR).join("zz/zz")).unwrap();
        fs::create_dir_all(layout.tmp_dir()).unwrap();
        fs::write(layout.tmp_dir().join("x.part"), b"12345").unwrap();

        let scan = scan(&layout).unwrap();
        assert_eq!(scan.units.len(), 3);
        let unit = |id: &str| {
            let key = CacheLayout::image_key(id);
            scan.units.iter().find(|u| u.key == key).unwrap().clone()
        };
        assert_eq!(unit("full").bytes(), 100 + 2 + 1000 + id_len("full"));
        assert_eq!(unit("local").master_bytes, None);
        assert!(unit("local").has_derivatives);
        assert_eq!(unit("bare").sidecar_bytes, 0);
        assert_eq!(scan.tmp_bytes(), 5);
        assert_eq!(
            scan_unit(&layout, &CacheLayout::image_key("full")).unwrap(),
            Some(unit("full"))
        );
        assert_eq!(
            scan_unit(&layout, &CacheLayout::image_key("none")).unwrap(),
            None
        );
        assert_eq!(
            identifier_of(&layout, &CacheLayout::image_key("local")).as_deref(),
            Some("local")
        );
    }

    fn id_len(id: &str) -> u64 {
        id.len() as u64
    }

    #[test]
    fn scan_of_an_empty_or_missing_root_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(&CacheLayout::new(dir.path().join("missing"))).unwrap();
        assert!(scan.units.is_empty() && scan.tmp_files.is_empty());
    }
}

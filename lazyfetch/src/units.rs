//! A scan of the cache into **image units**: the master's current copy, its sidecar and its
//! derivatives directory, grouped by image key. Prune, purge and stats work on units, never on
//! single files, so a master never goes without its derivatives or the other way round.
//!
//! Files under `masters/` that no sidecar names are **orphans**, not part of a unit: a master
//! from before versioned names (`{k}`, never served), an old copy a replacement did not get to
//! remove (a crash, a failed `unlink`), a copy a crash left before its sidecar was written.
//! Prune removes them after [`crate::prune::ORPHAN_AGE`]; purge removes them with their image.
//!
//! The scan tolerates a cache in use: files that vanish while it runs are skipped, names that
//! lazyfetch does not write are left alone (and not counted).

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::layout::{
    CacheLayout, MastersEntry, DERIVATIVES_ACCESS_FILE, DERIVATIVES_DIR, DERIVATIVES_ID_FILE,
    MASTERS_DIR,
};
use crate::sidecar::Sidecar;

/// One image's files, as found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The image key (64 hex digits).
    pub key: String,
    /// Size of the master's current copy; `None` when there is none (derivatives of a local
    /// master, or only orphans).
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

/// A file under `masters/` that no sidecar names (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// When it was renamed into place (its ctime: the mtime of a copy is S3's Last-Modified).
    pub placed: SystemTime,
}

/// Everything a scan found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Units, ordered by key.
    pub units: Vec<Unit>,
    /// Master files no sidecar names.
    pub orphans: Vec<Orphan>,
    /// Files in `tmp/` with their size and mtime.
    pub tmp_files: Vec<(PathBuf, u64, SystemTime)>,
}

impl Scan {
    /// Bytes of all units.
    pub fn unit_bytes(&self) -> u64 {
        self.units.iter().map(Unit::bytes).sum()
    }

    /// Bytes of orphaned master files.
    pub fn orphan_bytes(&self) -> u64 {
        self.orphans.iter().map(|orphan| orphan.bytes).sum()
    }

    /// Bytes in `tmp/`.
    pub fn tmp_bytes(&self) -> u64 {
        self.tmp_files.iter().map(|(_, bytes, _)| bytes).sum()
    }
}

/// Scans the cache under `layout`'s root.
///
/// # Errors
/// A directory of the cache, or the sidecar of an image with several copies, cannot be read
/// (other than vanishing while the scan runs).
pub fn scan(layout: &CacheLayout) -> io::Result<Scan> {
    let mut found: BTreeMap<String, Partial> = BTreeMap::new();
    for (path, metadata) in fan_out_entries(&layout.root().join(MASTERS_DIR))? {
        let key = masters_entry(&path).map(|entry| entry.key().to_owned());
        if let Some(key) = key.filter(|_| metadata.is_file()) {
            found.entry(key).or_default().add(path, metadata);
        }
    }
    for (path, metadata) in fan_out_entries(&layout.root().join(DERIVATIVES_DIR))? {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if CacheLayout::is_image_key(name) && metadata.is_dir() {
            let (bytes, access) = derivatives_summary(&path)?;
            let unit = found.entry(name.to_owned()).or_default();
            unit.derivatives = Some((bytes, access, metadata));
        }
    }
    let mut units = Vec::new();
    let mut orphans = Vec::new();
    for (key, partial) in found {
        let (unit, mut unit_orphans) = partial.into_unit(layout, key)?;
        units.extend(unit);
        orphans.append(&mut unit_orphans);
    }
    let tmp_files = list_tmp(&layout.tmp_dir())?;
    Ok(Scan {
        units,
        orphans,
        tmp_files,
    })
}

/// The unit of one key as it is now (`None`: nothing on disk but orphans, if anything).
///
/// # Errors
/// Reading the unit's files failed other than by their absence.
pub fn scan_unit(layout: &CacheLayout, key: &str) -> io::Result<Option<Unit>> {
    let mut partial = Partial::default();
    for (path, metadata) in masters_files(layout, key)? {
        partial.add(path, metadata);
    }
    let dir = layout.derivatives_dir_for_key(key);
    if let Some(metadata) = metadata_if_exists(&dir)?.filter(Metadata::is_dir) {
        let (bytes, access) = derivatives_summary(&dir)?;
        partial.derivatives = Some((bytes, access, metadata));
    }
    Ok(partial.into_unit(layout, key.to_owned())?.0)
}

/// Every file of image `key` under `masters/` (its copies, versioned or not, and its sidecar),
/// with its metadata.
///
/// # Errors
/// The key's fan-out directory cannot be read (other than being absent).
pub fn masters_files(layout: &CacheLayout, key: &str) -> io::Result<Vec<(PathBuf, Metadata)>> {
    let dir = layout.masters_dir_for_key(key);
    let mut files = Vec::new();
    for name in read_dir_if_exists(&dir)? {
        let path = dir.join(name);
        if masters_entry(&path).is_none_or(|entry| entry.key() != key) {
            continue;
        }
        if let Some(metadata) = metadata_if_exists(&path)?.filter(Metadata::is_file) {
            files.push((path, metadata));
        }
    }
    Ok(files)
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

/// What a path under `masters/` is, by its file name.
fn masters_entry(path: &Path) -> Option<MastersEntry<'_>> {
    CacheLayout::parse_masters_entry(path.file_name()?.to_str()?)
}

/// One key's files as they are found, before the current copy is told from the orphans.
#[derive(Default)]
struct Partial {
    /// Versioned copies: (tag, path, metadata).
    copies: Vec<(String, PathBuf, Metadata)>,
    /// A master from before versioned names.
    unversioned: Option<(PathBuf, Metadata)>,
    sidecar: Option<Metadata>,
    /// (bytes, `.access` mtime, the directory's metadata)
    derivatives: Option<(u64, Option<SystemTime>, Metadata)>,
}

impl Partial {
    /// Adds a file of this key under `masters/` (anything else is ignored).
    fn add(&mut self, path: PathBuf, metadata: Metadata) {
        let tag = match masters_entry(&path) {
            Some(MastersEntry::Copy { tag, .. }) => tag.to_owned(),
            Some(MastersEntry::Sidecar { .. }) => {
                self.sidecar = Some(metadata);
                return;
            }
            Some(MastersEntry::Unversioned { .. }) => {
                self.unversioned = Some((path, metadata));
                return;
            }
            None => return,
        };
        self.copies.push((tag, path, metadata));
    }

    /// The unit (`None` when nothing but orphans is left) and the key's orphans.
    fn into_unit(
        mut self,
        layout: &CacheLayout,
        key: String,
    ) -> io::Result<(Option<Unit>, Vec<Orphan>)> {
        let current_tag = match self.copies.len() {
            0 => None,
            // The only copy is current: the common case costs the scan no sidecar read.
            1 => Some(self.copies[0].0.clone()),
            _ => Sidecar::read(&layout.sidecar_path_for_key(&key))?
                .map(|sidecar| CacheLayout::copy_tag(&sidecar.version())),
        };
        let mut orphans: Vec<Orphan> = self
            .unversioned
            .take()
            .into_iter()
            .map(|(path, metadata)| Orphan::new(path, &metadata))
            .collect();
        let mut master = None;
        for (tag, path, metadata) in self.copies {
            if current_tag.as_deref() == Some(tag.as_str()) {
                master = Some(metadata);
            } else {
                orphans.push(Orphan::new(path, &metadata));
            }
        }
        if master.is_none() && self.sidecar.is_none() && self.derivatives.is_none() {
            return Ok((None, orphans));
        }
        let last_access = last_access(
            self.sidecar.as_ref().and_then(|m| m.modified().ok()),
            self.derivatives.as_ref().and_then(|(_, access, _)| *access),
            master.as_ref().map(change_time),
            self.derivatives
                .as_ref()
                .and_then(|(_, _, dir)| dir.modified().ok()),
        );
        let unit = Unit {
            key,
            master_bytes: master.as_ref().map(Metadata::len),
            sidecar_bytes: self.sidecar.as_ref().map_or(0, Metadata::len),
            derivatives_bytes: self.derivatives.as_ref().map_or(0, |(bytes, _, _)| *bytes),
            has_derivatives: self.derivatives.is_some(),
            last_access,
        };
        Ok((Some(unit), orphans))
    }
}

impl Orphan {
    fn new(path: PathBuf, metadata: &Metadata) -> Self {
        Orphan {
            path,
            bytes: metadata.len(),
            placed: change_time(metadata),
        }
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

/// A file's ctime (when it was renamed into place: a copy's mtime is S3's Last-Modified).
pub(crate) fn change_time(metadata: &Metadata) -> SystemTime {
    let seconds = u64::try_from(metadata.ctime()).unwrap_or(0);
    let nanos = u32::try_from(metadata.ctime_nsec()).unwrap_or(0);
    UNIX_EPOCH + Duration::new(seconds, nanos.min(999_999_999))
}

/// Every entry two fan-out levels below `dir` (`dir/ab/cd/<entry>`), with its metadata.
fn fan_out_entries(dir: &Path) -> io::Result<Vec<(PathBuf, Metadata)>> {
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
                let path = leaf_dir.join(name);
                if let Some(metadata) = metadata_if_exists(&path)? {
                    entries.push((path, metadata));
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

    /// A sidecar for `identifier` whose version is `{etag}-{size}`.
    fn sidecar(identifier: &str, etag: &str, size: u64) -> Sidecar {
        Sidecar {
            identifier: identifier.into(),
            bucket: "b".into(),
            key: identifier.into(),
            etag: Some(format!("\"{etag}\"")),
            size,
            last_modified: UNIX_EPOCH,
            fetched_at: UNIX_EPOCH,
            verified_at: UNIX_EPOCH,
            checksum: None,
        }
    }

    /// Writes a copy of `size` bytes for the sidecar's version, and the sidecar when asked.
    fn put(layout: &CacheLayout, sidecar: &Sidecar, with_sidecar: bool) -> PathBuf {
        let path = layout.master_path(&sidecar.identifier, &sidecar.version());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, vec![0u8; sidecar.size as usize]).unwrap();
        if with_sidecar {
            fs::write(layout.sidecar_path(&sidecar.identifier), sidecar.to_json()).unwrap();
        }
        path
    }

    #[test]
    fn scan_groups_files_into_units_and_ignores_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().to_owned());
        // One image with everything, one with derivatives only, one master without a sidecar.
        put(&layout, &sidecar("full", "f", 100), true);
        put(&layout, &sidecar("bare", "b", 100), false);
        for id in ["full", "local"] {
            let d = layout.derivatives_dir(id);
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(d.join(DERIVATIVES_ID_FILE), id).unwrap();
            fs::write(d.join(DERIVATIVES_ACCESS_FILE), b"").unwrap();
            fs::write(d.join("sub/tile.jpg"), vec![0u8; 1000]).unwrap();
        }
        // Strangers: a bad name in a fan-out dir, a file at the top, a bad fan-out dir, a
        // directory with a copy's name.
        let full_dir = layout.masters_dir_for_key(&CacheLayout::image_key("full"));
        fs::write(full_dir.join("README"), b"x").unwrap();
        fs::write(dir.path().join(MASTERS_DIR).join("note.txt"), b"x").unwrap();
        fs::create_dir_all(dir.path().join(MASTERS_DIR).join("zz/zz")).unwrap();
        fs::create_dir_all(layout.master_path("full", "a directory")).unwrap();
        fs::create_dir_all(layout.tmp_dir()).unwrap();
        fs::write(layout.tmp_dir().join("x.part"), b"12345").unwrap();

        let scan = scan(&layout).unwrap();
        assert_eq!(scan.units.len(), 3);
        assert!(scan.orphans.is_empty(), "{:?}", scan.orphans);
        let unit = |id: &str| {
            let key = CacheLayout::image_key(id);
            scan.units.iter().find(|u| u.key == key).unwrap().clone()
        };
        let full_sidecar = sidecar("full", "f", 100).to_json().len() as u64;
        assert_eq!(
            unit("full").bytes(),
            100 + full_sidecar + 1000 + "full".len() as u64
        );
        assert_eq!(unit("local").master_bytes, None);
        assert!(unit("local").has_derivatives);
        assert_eq!(unit("bare").master_bytes, Some(100));
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

    /// Of several copies the sidecar names one; the others, and any unversioned master, are
    /// orphans outside the unit.
    #[test]
    fn copies_the_sidecar_does_not_name_are_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().to_owned());
        let old = put(&layout, &sidecar("img", "old", 300), false);
        let current = sidecar("img", "new", 200);
        let current_path = put(&layout, &current, true);
        let key = CacheLayout::image_key("img");
        let unversioned = layout.masters_dir_for_key(&key).join(&key);
        fs::write(&unversioned, vec![0u8; 50]).unwrap();
        // Only an unversioned master and its old sidecar: no copy to serve.
        let legacy_key = CacheLayout::image_key("legacy");
        let legacy = layout.masters_dir_for_key(&legacy_key).join(&legacy_key);
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(&legacy, vec![0u8; 70]).unwrap();
        fs::write(
            layout.sidecar_path("legacy"),
            sidecar("legacy", "l", 70).to_json(),
        )
        .unwrap();
        // An unversioned master alone is no unit at all.
        let lone_key = CacheLayout::image_key("lone");
        let lone = layout.masters_dir_for_key(&lone_key).join(&lone_key);
        fs::create_dir_all(lone.parent().unwrap()).unwrap();
        fs::write(&lone, vec![0u8; 9]).unwrap();

        let scan = scan(&layout).unwrap();
        let mut orphans: Vec<_> = scan.orphans.iter().map(|o| o.path.clone()).collect();
        orphans.sort();
        let mut expected = vec![old, unversioned, legacy, lone];
        expected.sort();
        assert_eq!(orphans, expected);
        assert_eq!(scan.orphan_bytes(), 300 + 50 + 70 + 9);
        assert_eq!(scan.units.len(), 2, "{:#?}", scan.units);
        let img = scan.units.iter().find(|u| u.key == key).unwrap();
        assert_eq!(img.master_bytes, Some(200));
        assert_eq!(
            scan_unit(&layout, &key).unwrap().as_ref(),
            Some(img),
            "one unit's scan agrees"
        );
        let legacy_unit = scan.units.iter().find(|u| u.key == legacy_key).unwrap();
        assert_eq!(legacy_unit.master_bytes, None);
        assert_eq!(scan_unit(&layout, &lone_key).unwrap(), None);

        // masters_files lists one key's files, not those of a key sharing its directory.
        let neighbour = format!(
            "{}{}",
            &key[..63],
            if key.ends_with('0') { '1' } else { '0' }
        );
        fs::write(
            layout
                .masters_dir_for_key(&key)
                .join(format!("{neighbour}.json")),
            b"{}",
        )
        .unwrap();
        let mut files: Vec<_> = masters_files(&layout, &key)
            .unwrap()
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        files.sort();
        let mut expected = vec![
            layout.master_path("img", &sidecar("img", "old", 300).version()),
            current_path,
            layout.sidecar_path("img"),
            layout.masters_dir_for_key(&key).join(&key),
        ];
        expected.sort();
        assert_eq!(files, expected);
    }

    #[test]
    fn scan_of_an_empty_or_missing_root_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(&CacheLayout::new(dir.path().join("missing"))).unwrap();
        assert!(scan.units.is_empty() && scan.tmp_files.is_empty() && scan.orphans.is_empty());
    }
}

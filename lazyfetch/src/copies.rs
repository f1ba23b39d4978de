//! The copies of masters on the cache mount, as [`crate::fetch`] sees them: which copy a sidecar
//! names and whether it is still the file last checked ([`read_disk`]), and putting a new copy in
//! place without iipsrv ever seeing a half-written or renamed-over file ([`place`]). All blocking.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::layout::CacheLayout;
use crate::rules::S3Location;
use crate::sidecar::Sidecar;
use crate::tmpfile::{write_atomically, TmpFile};
use crate::units::masters_files;

/// A master ready for iipsrv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Path relative to the cache root, for iipsrv's `FIF` (its `FILESYSTEM_PREFIX` is the cache
    /// root followed by `/`).
    pub fif: String,
    /// Stable for one copy of the master (S3 ETag and size); changes when it is replaced.
    pub version: String,
    /// S3's Last-Modified of this copy (also the file's mtime).
    pub last_modified: SystemTime,
    /// True when the master changed since this process last saw it: this call (or the download
    /// it waited for, or another node) swapped in a new copy. The caller drops what it derived
    /// from the old one (image facts); its derivatives directory is already gone.
    pub replaced: bool,
}

/// A copy of a master on disk with the sidecar that describes it.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) sidecar: Sidecar,
    /// The copy's path relative to the cache root (named by the sidecar's version).
    pub(crate) fif: String,
    pub(crate) identity: Identity,
}

/// What a `stat` says about one file: if any of it changes, the file was replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

impl Identity {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Self {
        Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            mtime: metadata.modified().ok(),
        }
    }
}

impl Known {
    /// The copy as the caller sees it.
    pub(crate) fn master(&self, replaced: bool) -> Master {
        Master {
            fif: self.fif.clone(),
            version: self.sidecar.version(),
            last_modified: self.sidecar.last_modified,
            replaced,
        }
    }

    /// True when this copy came from `location` (a changed rule makes it someone else's).
    pub(crate) fn is_from(&self, location: &S3Location) -> bool {
        self.sidecar.bucket == location.bucket && self.sidecar.key == location.key
    }
}

/// The copy on disk that the sidecar names, if they belong together. Blocking.
///
/// A remembered copy whose file is unchanged is taken as it is (one `stat`); otherwise the
/// sidecar says which copy is current. A copy the sidecar does not name is never returned, so
/// a replacement half done (new copy placed, sidecar not yet rewritten) serves the old copy
/// until the sidecar names the new one.
pub(crate) fn read_disk(
    layout: &CacheLayout,
    identifier: &str,
    image_key: &str,
    remembered: Option<Known>,
) -> io::Result<Option<Known>> {
    if let Some(known) = remembered {
        match metadata_if_exists(&layout.root().join(&known.fif))? {
            Some(metadata) if Identity::of(&metadata) == known.identity => return Ok(Some(known)),
            // Rewritten or gone (pruned, purged, replaced): the sidecar tells what is current.
            _ => {}
        }
    }
    let Some(sidecar) = Sidecar::read(&layout.sidecar_path_for_key(image_key))? else {
        return Ok(None);
    };
    if sidecar.identifier != identifier {
        return Ok(None);
    }
    let fif = layout.master_fif_for_key(image_key, &sidecar.version());
    let Some(metadata) = metadata_if_exists(&layout.root().join(&fif))? else {
        return Ok(None);
    };
    if !sidecar.describes(&metadata) {
        return Ok(None);
    }
    Ok(Some(Known {
        sidecar,
        fif,
        identity: Identity::of(&metadata),
    }))
}

/// Puts a downloaded copy in place: renamed to its own name (mtime = S3's Last-Modified), then
/// the sidecar replaced to name it, then every other copy of the image removed (the one the old
/// sidecar named, one from before versioned names, leftovers), and the derivatives when this
/// replaced a different version (whoever fetched that one, from whichever rule). Returns the
/// new copy and whether it replaced another version. Blocking.
pub(crate) fn place(
    layout: &CacheLayout,
    image_key: &str,
    tmp: TmpFile,
    sidecar: Sidecar,
) -> io::Result<(Known, bool)> {
    let fif = layout.master_fif_for_key(image_key, &sidecar.version());
    let copy = layout.root().join(&fif);
    let sidecar_path = layout.sidecar_path_for_key(image_key);
    let replaced = Sidecar::read(&sidecar_path)?
        .is_some_and(|previous| previous.version() != sidecar.version());
    tmp.persist(&copy, Some(sidecar.last_modified))?;
    write_atomically(
        &layout.tmp_dir(),
        image_key,
        &sidecar_path,
        &sidecar.to_json(),
    )?;
    let identity = Identity::of(&std::fs::metadata(&copy)?);
    remove_other_copies(layout, image_key, &[&copy, &sidecar_path]);
    if replaced {
        match std::fs::remove_dir_all(layout.derivatives_dir_for_key(image_key)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => log::warn!("removing the derivatives of a replaced master: {error}"),
        }
    }
    let known = Known {
        sidecar,
        fif,
        identity,
    };
    Ok((known, replaced))
}

/// Removes the image's files under `masters/` other than `keep`. Failures are logged, not
/// returned: the new copy is in place, and prune removes what is left over.
fn remove_other_copies(layout: &CacheLayout, image_key: &str, keep: &[&Path]) {
    let files = match masters_files(layout, image_key) {
        Ok(files) => files,
        Err(error) => {
            log::warn!("listing the old copies of {image_key}: {error}");
            return;
        }
    };
    for (path, _) in files {
        if keep.contains(&path.as_path()) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => log::warn!("removing the old copy {}: {error}", path.display()),
        }
    }
}

/// `metadata`, `None` when the path does not exist.
pub(crate) fn metadata_if_exists(path: &Path) -> io::Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

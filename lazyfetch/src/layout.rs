//! Where one image's files live under the cache root. The gateway, `lazyfetch prune` and
//! `lazyfetch purge` all go through this module, so they agree on every path.
//!
//! With `k` = [`CacheLayout::image_key`] of the identifier (64 lowercase hex digits):
//!
//! ```text
//! {root}/masters/{k[0..2]}/{k[2..4]}/{k}          the master (no extension: iipsrv sniffs TIFF)
//! {root}/masters/{k[0..2]}/{k[2..4]}/{k}.json     its sidecar; the sidecar's mtime is the last access
//! {root}/derivatives/{k[0..2]}/{k[2..4]}/{k}/     the gateway's files for the image, with `.id`
//!                                                 (the identifier) and `.access` (last access)
//! {root}/tmp/                                     downloads in progress, renamed into place
//! ```
//!
//! **Invariant:** every path this module returns is under the root, whatever the identifier
//! contains (`..`, `/`, NUL, any length): only the hash reaches the file system.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Directory of the masters and their sidecars.
pub const MASTERS_DIR: &str = "masters";
/// Directory of the gateway's derivative files.
pub const DERIVATIVES_DIR: &str = "derivatives";
/// Directory of downloads in progress (same file system as the masters, for `rename`).
pub const TMP_DIR: &str = "tmp";
/// Extension of a master's sidecar.
pub const SIDECAR_EXTENSION: &str = "json";
/// File in a derivatives directory holding the identifier.
pub const DERIVATIVES_ID_FILE: &str = ".id";
/// File in a derivatives directory whose mtime is the image's last access through the gateway.
pub const DERIVATIVES_ACCESS_FILE: &str = ".access";

/// The cache's directory layout under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    root: PathBuf,
}

impl CacheLayout {
    /// A layout under `root` (nothing is created).
    pub fn new(root: PathBuf) -> Self {
        CacheLayout { root }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lowercase hex SHA-256 of the identifier's UTF-8 bytes: fixed length, even fan-out, and
    /// nothing of the identifier itself reaches a path.
    pub fn image_key(identifier: &str) -> String {
        hex::encode(Sha256::digest(identifier.as_bytes()))
    }

    /// True for strings shaped like [`CacheLayout::image_key`] (what a scan of the cache accepts).
    pub fn is_image_key(text: &str) -> bool {
        text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The master's path.
    pub fn master_path(&self, identifier: &str) -> PathBuf {
        self.root
            .join(Self::master_relative(&Self::image_key(identifier)))
    }

    /// The master's path relative to the root, as iipsrv's `FIF` parameter
    /// (`masters/ab/cd/abcd…`; iipsrv's `FILESYSTEM_PREFIX` is the root followed by `/`).
    pub fn master_fif(&self, identifier: &str) -> String {
        Self::master_relative(&Self::image_key(identifier))
    }

    /// The master's sidecar path (`{master}.json`).
    pub fn sidecar_path(&self, identifier: &str) -> PathBuf {
        self.sidecar_path_for_key(&Self::image_key(identifier))
    }

    /// The directory of the gateway's derivative files for the image.
    pub fn derivatives_dir(&self, identifier: &str) -> PathBuf {
        self.derivatives_dir_for_key(&Self::image_key(identifier))
    }

    /// The directory of downloads in progress.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// The master's path for an image key.
    pub fn master_path_for_key(&self, key: &str) -> PathBuf {
        self.root.join(Self::master_relative(key))
    }

    /// [`CacheLayout::master_fif`] for an image key.
    pub fn master_fif_for_key(&self, key: &str) -> String {
        Self::master_relative(key)
    }

    /// The sidecar's path for an image key.
    pub fn sidecar_path_for_key(&self, key: &str) -> PathBuf {
        self.root.join(format!(
            "{}.{SIDECAR_EXTENSION}",
            Self::master_relative(key)
        ))
    }

    /// The derivatives directory for an image key.
    pub fn derivatives_dir_for_key(&self, key: &str) -> PathBuf {
        self.root
            .join(DERIVATIVES_DIR)
            .join(&key[0..2])
            .join(&key[2..4])
            .join(key)
    }

    fn master_relative(key: &str) -> String {
        format!("{MASTERS_DIR}/{}/{}/{key}", &key[0..2], &key[2..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Component;

    #[test]
    fn known_key_and_paths() {
        // printf %s astronaut | sha256sum
        let key = CacheLayout::image_key("astronaut");
        assert_eq!(
            key,
            "df0c29d39619e8cf2d4b67713d61dc9a9ea29f4133b3925bfcea433547eabf0a"
        );
        assert!(CacheLayout::is_image_key(&key));
        let layout = CacheLayout::new(PathBuf::from("/var/cache/iiif"));
        let fif = layout.master_fif("astronaut");
        assert_eq!(fif, format!("masters/{}/{}/{key}", &key[..2], &key[2..4]));
        assert_eq!(
            layout.master_path("astronaut"),
            Path::new("/var/cache/iiif").join(&fif)
        );
        assert_eq!(
            layout.sidecar_path("astronaut"),
            Path::new("/var/cache/iiif").join(format!("{fif}.json"))
        );
        assert_eq!(
            layout.derivatives_dir("astronaut"),
            Path::new("/var/cache/iiif/derivatives")
                .join(&key[..2])
                .join(&key[2..4])
                .join(&key)
        );
    }

    #[test]
    fn image_key_is_sha256_hex() {
        assert_eq!(
            CacheLayout::image_key(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            CacheLayout::image_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!CacheLayout::is_image_key(
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        ));
        assert!(!CacheLayout::is_image_key("abc"));
    }

    /// Every component below the root is a plain name (no `..`, no root, no prefix).
    fn strictly_under(root: &Path, path: &Path) -> bool {
        path.strip_prefix(root).is_ok_and(|rest| {
            rest.components().count() > 0
                && rest.components().all(|c| matches!(c, Component::Normal(_)))
        })
    }

    proptest! {
        #[test]
        fn any_identifier_maps_under_the_root(identifier in "\\PC*|(\\.\\./)+.*|/.*|.*\u{0}.*") {
            let root = PathBuf::from("/cache/root");
            let layout = CacheLayout::new(root.clone());
            for path in [
                layout.master_path(&identifier),
                layout.sidecar_path(&identifier),
                layout.derivatives_dir(&identifier),
            ] {
                prop_assert!(strictly_under(&root, &path), "{} escapes", path.display());
                prop_assert_eq!(path.components().count(), root.components().count() + 4);
            }
            let fif = layout.master_fif(&identifier);
            prop_assert!(!fif.starts_with('/') && !fif.contains(".."));
            prop_assert_eq!(fif.len(), "masters/ab/cd/".len() + 64);
        }
    }
}

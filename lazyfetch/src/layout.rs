//! Where one image's files live under the cache root. The gateway, `lazyfetch prune` and
//! `lazyfetch purge` all go through this module, so they agree on every path.
//!
//! With `k` = [`CacheLayout::image_key`] of the identifier (64 lowercase hex digits) and `v` =
//! [`CacheLayout::copy_tag`] of the copy's version (16 lowercase hex digits):
//!
//! ```text
//! {root}/masters/{k[0..2]}/{k[2..4]}/{k}.{v}      a copy of the master (no image extension:
//!                                                 iipsrv sniffs TIFF)
//! {root}/masters/{k[0..2]}/{k[2..4]}/{k}.json     its sidecar, naming the current copy by its
//!                                                 version; its mtime is the last access
//! {root}/derivatives/{k[0..2]}/{k[2..4]}/{k}/     the gateway's files for the image, with `.id`
//!                                                 (the identifier) and `.access` (last access)
//! {root}/tmp/                                     downloads in progress, renamed into place
//! ```
//!
//! **Why a copy's name carries its version:** iipsrv (1.1) caches an image's header (size,
//! tiles, levels) per process by file path and never notices a file replaced under the same
//! path: it would go on describing the old image and answer pixel requests with garbage. A new
//! version therefore gets a new path, and the old copy is removed once the sidecar names the new
//! one. A name without a version (`{k}`, the layout before versioned names) is never served.
//!
//! **Invariant:** every path this module returns is under the root, whatever the identifier
//! contains (`..`, `/`, NUL, any length): only hashes reach the file system.

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
/// Length of [`CacheLayout::copy_tag`] (hex digits: 64 bits, no collision between versions of
/// one image in practice).
pub const COPY_TAG_LEN: usize = 16;

/// What a name in a masters fan-out directory (`masters/ab/cd/`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MastersEntry<'a> {
    /// `{k}.{v}`: a copy of the master of image key `key`, version tag `tag`.
    Copy {
        /// The image key.
        key: &'a str,
        /// The copy's [`CacheLayout::copy_tag`].
        tag: &'a str,
    },
    /// `{k}.json`: the sidecar of image key `key`.
    Sidecar {
        /// The image key.
        key: &'a str,
    },
    /// `{k}`: a master from before versioned names; never served, removed by prune and purge.
    Unversioned {
        /// The image key.
        key: &'a str,
    },
}

impl MastersEntry<'_> {
    /// The image key the file belongs to.
    pub fn key(&self) -> &str {
        match self {
            MastersEntry::Copy { key, .. }
            | MastersEntry::Sidecar { key }
            | MastersEntry::Unversioned { key } => key,
        }
    }
}

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
        text.len() == 64 && is_lower_hex(text)
    }

    /// The tag of a copy in its file name: the first [`COPY_TAG_LEN`] hex digits of the SHA-256
    /// of its version ([`crate::sidecar::Sidecar::version`]): fixed length and file-system safe
    /// whatever the store's ETags look like.
    pub fn copy_tag(version: &str) -> String {
        let mut tag = hex::encode(Sha256::digest(version.as_bytes()));
        tag.truncate(COPY_TAG_LEN);
        tag
    }

    /// What `name` (a file name in a masters fan-out directory) is; `None` for anything
    /// lazyfetch did not write (a scan leaves such files alone).
    pub fn parse_masters_entry(name: &str) -> Option<MastersEntry<'_>> {
        let (key, suffix) = match name.split_once('.') {
            Some((key, suffix)) => (key, Some(suffix)),
            None => (name, None),
        };
        if !Self::is_image_key(key) {
            return None;
        }
        match suffix {
            None => Some(MastersEntry::Unversioned { key }),
            Some(SIDECAR_EXTENSION) => Some(MastersEntry::Sidecar { key }),
            Some(tag) if tag.len() == COPY_TAG_LEN && is_lower_hex(tag) => {
                Some(MastersEntry::Copy { key, tag })
            }
            Some(_) => None,
        }
    }

    /// The path of the copy of `identifier`'s master whose version is `version`.
    pub fn master_path(&self, identifier: &str, version: &str) -> PathBuf {
        self.master_path_for_key(&Self::image_key(identifier), version)
    }

    /// [`CacheLayout::master_path`] relative to the root, as iipsrv's `FIF` parameter
    /// (`masters/ab/cd/abcd….0123…`; iipsrv's `FILESYSTEM_PREFIX` is the root followed by `/`).
    pub fn master_fif(&self, identifier: &str, version: &str) -> String {
        self.master_fif_for_key(&Self::image_key(identifier), version)
    }

    /// The master's sidecar path (`{k}.json`).
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

    /// The fan-out directory holding an image key's copies and sidecar (and those of other
    /// keys with the same first four digits).
    pub fn masters_dir_for_key(&self, key: &str) -> PathBuf {
        self.root.join(Self::masters_dir_relative(key))
    }

    /// [`CacheLayout::master_path`] for an image key.
    pub fn master_path_for_key(&self, key: &str, version: &str) -> PathBuf {
        self.root.join(self.master_fif_for_key(key, version))
    }

    /// [`CacheLayout::master_fif`] for an image key.
    pub fn master_fif_for_key(&self, key: &str, version: &str) -> String {
        format!(
            "{}/{key}.{}",
            Self::masters_dir_relative(key),
            Self::copy_tag(version)
        )
    }

    /// The sidecar's path for an image key.
    pub fn sidecar_path_for_key(&self, key: &str) -> PathBuf {
        self.masters_dir_for_key(key)
            .join(format!("{key}.{SIDECAR_EXTENSION}"))
    }

    /// The derivatives directory for an image key.
    pub fn derivatives_dir_for_key(&self, key: &str) -> PathBuf {
        self.root
            .join(DERIVATIVES_DIR)
            .join(&key[0..2])
            .join(&key[2..4])
            .join(key)
    }

    fn masters_dir_relative(key: &str) -> String {
        format!("{MASTERS_DIR}/{}/{}", &key[0..2], &key[2..4])
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
        // printf %s 0123abcd-5 | sha256sum | cut -c1-16
        let tag = CacheLayout::copy_tag("0123abcd-5");
        assert_eq!(tag, "640d0d9537fe6903");
        let layout = CacheLayout::new(PathBuf::from("/var/cache/iiif"));
        let fif = layout.master_fif("astronaut", "0123abcd-5");
        assert_eq!(
            fif,
            format!("masters/{}/{}/{key}.{tag}", &key[..2], &key[2..4])
        );
        assert_eq!(
            layout.master_path("astronaut", "0123abcd-5"),
            Path::new("/var/cache/iiif").join(&fif)
        );
        assert_eq!(
            layout.sidecar_path("astronaut"),
            layout.masters_dir_for_key(&key).join(format!("{key}.json"))
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
    fn another_version_is_another_file() {
        let layout = CacheLayout::new(PathBuf::from("/c"));
        let one = layout.master_path("img", "aaaa-10");
        let two = layout.master_path("img", "bbbb-10");
        assert_ne!(one, two);
        assert_eq!(one.parent(), two.parent());
        assert_eq!(one, layout.master_path("img", "aaaa-10"), "stable");
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

    #[test]
    fn masters_entries_are_parsed_by_kind() {
        let key = CacheLayout::image_key("x");
        let tag = CacheLayout::copy_tag("v");
        assert_eq!(
            CacheLayout::parse_masters_entry(&format!("{key}.{tag}")),
            Some(MastersEntry::Copy {
                key: &key,
                tag: &tag
            })
        );
        assert_eq!(
            CacheLayout::parse_masters_entry(&format!("{key}.json")),
            Some(MastersEntry::Sidecar { key: &key })
        );
        assert_eq!(
            CacheLayout::parse_masters_entry(&key),
            Some(MastersEntry::Unversioned { key: &key })
        );
        for stranger in [
            "README".to_owned(),
            format!("{key}.json.bak"),
            format!("{key}.{}", tag.to_uppercase()),
            format!("{key}.{}", &tag[1..]),
            format!("{key}.{tag}0"),
            format!("{key}."),
            format!("{}.{tag}", &key[1..]),
            format!(".{key}"),
        ] {
            assert_eq!(
                CacheLayout::parse_masters_entry(&stranger),
                None,
                "{stranger}"
            );
        }
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
        fn any_identifier_maps_under_the_root(
            identifier in "\\PC*|(\\.\\./)+.*|/.*|.*\u{0}.*",
            version in "\\PC*|(\\.\\./)+.*|/.*",
        ) {
            let root = PathBuf::from("/cache/root");
            let layout = CacheLayout::new(root.clone());
            for path in [
                layout.master_path(&identifier, &version),
                layout.sidecar_path(&identifier),
                layout.derivatives_dir(&identifier),
            ] {
                prop_assert!(strictly_under(&root, &path), "{} escapes", path.display());
                prop_assert_eq!(path.components().count(), root.components().count() + 4);
            }
            let fif = layout.master_fif(&identifier, &version);
            prop_assert!(!fif.starts_with('/') && !fif.contains(".."));
            prop_assert_eq!(fif.len(), "masters/ab/cd/".len() + 64 + 1 + COPY_TAG_LEN);
            // A scan recognises what the layout writes.
            let name = fif.rsplit('/').next().unwrap();
            let tag = CacheLayout::copy_tag(&version);
            let key = CacheLayout::image_key(&identifier);
            prop_assert_eq!(
                CacheLayout::parse_masters_entry(name),
                Some(MastersEntry::Copy { key: &key, tag: &tag })
            );
        }
    }
}

//! The sidecar `{k}.json`: what lazyfetch knows about an image's master (where it came from,
//! which copy is current, when it was fetched and last verified). Its mtime doubles as the
//! image's last-access stamp.
//!
//! The sidecar names the current copy through its [`Sidecar::version`]: the copy is the file
//! `{k}.{v}` beside it, `v` = [`crate::CacheLayout::copy_tag`] of the version. Any other copy
//! (an older version, a master from before versioned names) is not served, whatever it holds.
//! The named copy belongs to the sidecar only while its size and mtime match the sidecar's
//! `size` and `last_modified` (a copy's mtime is set to S3's Last-Modified): a stray or
//! damaged file looks like "no master" instead of a wrong version.

use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The sidecar's content (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The identifier the master was fetched for.
    pub identifier: String,
    /// Its S3 bucket.
    pub bucket: String,
    /// Its S3 key.
    pub key: String,
    /// S3's ETag, quotes included as S3 sends it (`"…"`); absent when the store sent none.
    pub etag: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// S3's Last-Modified (also the master file's mtime).
    #[serde(with = "http_time")]
    pub last_modified: SystemTime,
    /// When it was downloaded.
    #[serde(with = "http_time")]
    pub fetched_at: SystemTime,
    /// When S3 last confirmed this copy is current (download or 304).
    #[serde(with = "http_time")]
    pub verified_at: SystemTime,
    /// The checksum S3 sent and the client checked (`crc32c:…`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl Sidecar {
    /// The master's version string: stable for one copy, different when it is replaced. Built
    /// from the ETag and the size; only `[A-Za-z0-9-]` so it can go into paths and headers.
    pub fn version(&self) -> String {
        let tag = match &self.etag {
            Some(etag) => etag
                .trim_matches('"')
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>(),
            None => format!("t{}", unix_seconds(self.last_modified)),
        };
        format!("{tag}-{}", self.size)
    }

    /// True when `master` (the master file's metadata) is the copy this sidecar describes.
    pub fn describes(&self, master: &Metadata) -> bool {
        master.is_file()
            && master.len() == self.size
            && master
                .modified()
                .is_ok_and(|mtime| unix_seconds(mtime) == unix_seconds(self.last_modified))
    }

    /// Reads a sidecar; `Ok(None)` when there is none or it does not parse (a stray file: the
    /// master is then treated as missing and fetched again, which rewrites it).
    ///
    /// # Errors
    /// Reading failed for another reason than absence.
    pub fn read(path: &Path) -> io::Result<Option<Sidecar>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The sidecar as pretty JSON (operators read these).
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("plain data serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Whole seconds since the epoch (S3 times have one-second resolution).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Times as HTTP dates (`Tue, 15 Nov 1994 08:12:31 GMT`): readable, and exact to the second.
mod http_time {
    use std::time::SystemTime;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&httpdate::fmt_http_date(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        httpdate::parse_http_date(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sidecar() -> Sidecar {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Sidecar {
            identifier: "maps/one".into(),
            bucket: "masters".into(),
            key: "maps/one.tif".into(),
            etag: Some("\"0123abcd\"".into()),
            size: 5,
            last_modified: t,
            fetched_at: t + Duration::from_secs(10),
            verified_at: t + Duration::from_secs(20),
            checksum: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let original = sidecar();
        let text = String::from_utf8(original.to_json()).unwrap();
        assert!(
            text.contains("\"last_modified\": \"Tue, 14 Nov 2023 22:13:20 GMT\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Sidecar>(&text).unwrap(), original);
    }

    #[test]
    fn version_is_tag_and_size_in_safe_characters() {
        let mut sidecar = sidecar();
        assert_eq!(sidecar.version(), "0123abcd-5");
        sidecar.etag = Some("\"ab/c d-2\"".into());
        assert_eq!(sidecar.version(), "ab_c_d-2-5");
        sidecar.etag = None;
        assert_eq!(sidecar.version(), "t1700000000-5");
    }

    #[test]
    fn describes_checks_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, b"12345").unwrap();
        let sidecar = sidecar();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(sidecar.last_modified + Duration::from_millis(300))
            .unwrap();
        assert!(sidecar.describes(&std::fs::metadata(&path).unwrap()));
        file.set_modified(sidecar.last_modified + Duration::from_secs(1))
            .unwrap();
        assert!(!sidecar.describes(&std::fs::metadata(&path).unwrap()));
        file.set_modified(sidecar.last_modified).unwrap();
        std::fs::write(&path, b"123456").unwrap();
        file.set_modified(sidecar.last_modified).unwrap();
        assert!(!sidecar.describes(&std::fs::metadata(&path).unwrap()));
    }

    #[test]
    fn garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        assert_eq!(Sidecar::read(&path).unwrap(), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Sidecar::read(&path).unwrap(), None);
    }
}

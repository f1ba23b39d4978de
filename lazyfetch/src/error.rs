//! What [`crate::LazyFetch`] can fail with, saying who failed: the request (no rule, not in S3),
//! the store (unavailable), or this host (cache I/O).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigErrors;

/// Why [`crate::LazyFetch::ensure`] could not provide a master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No rule of `gateway.masters.rules` matches the identifier (the gateway answers 404).
    #[error("no rule in gateway.masters.rules matches the identifier")]
    NoRule,
    /// The rule's bucket and key name no object in S3 (404).
    #[error("the master is not in S3")]
    NotFound,
    /// S3 cannot be reached, timed out, or refused the request; the image is not cached (503
    /// with `Retry-After: retry_after`).
    #[error("S3 is unavailable: {reason}")]
    Unavailable {
        /// How long the client should wait before trying again.
        retry_after: Duration,
        /// What went wrong, for the log.
        reason: String,
    },
    /// The master is larger than `max_master_bytes` and was not downloaded (502).
    #[error("the master is {size} bytes, more than max_master_bytes ({limit})")]
    TooLarge {
        /// Its size in S3.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The cache mount failed (disk full, permissions) or the download was interrupted (the
    /// gateway answers 503 with `Retry-After`: room may be made, or the mount come back).
    #[error("cache I/O: {0}")]
    Io(String),
    /// The cache mount's file system (or quota) is full; nothing partial was left (503 with
    /// `Retry-After`, like [`FetchError::Io`], and the gateway prunes to make room).
    #[error("cache mount full: {0}")]
    DiskFull(String),
}

impl FetchError {
    /// A failed write to the cache mount, `doing` what.
    pub(crate) fn cache_write(doing: &str, error: &io::Error) -> FetchError {
        let reason = format!("{doing}: {error}");
        if is_disk_full(error) {
            FetchError::DiskFull(reason)
        } else {
            FetchError::Io(reason)
        }
    }
}

/// Whether an I/O error means the file system (or the quota) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Why [`crate::LazyFetch::new`] refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `gateway.cache` or `gateway.masters` has invalid values.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// `gateway.masters.s3.secret_access_key_file` cannot be read or is empty.
    #[error("gateway.masters.s3.secret_access_key_file: {path}: {problem}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The cache root's directories cannot be created.
    #[error("gateway.cache.root: cannot create {path}: {source}")]
    CacheRoot {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics could not be registered (registered twice in one registry?).
    #[error("registering lazyfetch metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

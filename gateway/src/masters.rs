//! The gateway's side of the access-master cache (`lazyfetch`): started on first use, its
//! errors turned into IIIF-style failures.
//!
//! `LazyFetch` is built inside the serving runtime, not before the server starts: Pingora may
//! fork into the background at start-up, and a runtime (or an S3 client bound to one) created
//! before the fork would not survive it.

use std::sync::Arc;

use lazyfetch::{CacheConfig, FetchError, LazyFetch, Master, MastersConfig};
use prometheus::Registry;
use tokio::sync::OnceCell;

use crate::derivatives::files::Removed;
use crate::reply::Failure;

/// Retry-After for an access-master cache that failed to start (bad credentials file, …).
const START_FAILURE_RETRY_AFTER_S: u32 = 30;

pub struct Masters {
    cache: CacheConfig,
    masters: MastersConfig,
    registry: Registry,
    started: OnceCell<Arc<LazyFetch>>,
}

impl Masters {
    pub fn new(cache: CacheConfig, masters: MastersConfig, registry: Registry) -> Self {
        Masters {
            cache,
            masters,
            registry,
            started: OnceCell::new(),
        }
    }

    /// The running cache, started by the first caller.
    ///
    /// # Errors
    /// 503 while it cannot start; the next request tries again.
    pub async fn lazyfetch(&self) -> Result<&Arc<LazyFetch>, Failure> {
        self.started
            .get_or_try_init(|| async {
                LazyFetch::new(&self.cache, &self.masters, &self.registry)
                    .await
                    .map_err(|e| {
                        log::error!("the access-master cache cannot start: {e}");
                        Failure::unavailable(
                            "image storage is unavailable",
                            START_FAILURE_RETRY_AFTER_S,
                        )
                    })
            })
            .await
    }

    /// The master of `identifier` on the cache mount, fetched from S3 if needed.
    ///
    /// # Errors
    /// 404 when no rule maps the identifier or S3 has no such object; 503 + `Retry-After` when
    /// S3 or the cache mount cannot deliver it now.
    pub async fn ensure(&self, identifier: &str) -> Result<Master, Failure> {
        let lazyfetch = self.lazyfetch().await?;
        lazyfetch.ensure(identifier).await.map_err(failure)
    }

    /// Fetches `identifier` again after iipsrv found its file gone (pruned or purged mid-flight).
    ///
    /// # Errors
    /// As [`Masters::ensure`].
    pub async fn refetch(&self, identifier: &str) -> Result<Master, Failure> {
        let lazyfetch = self.lazyfetch().await?;
        lazyfetch.refetch(identifier).await.map_err(failure)
    }

    /// Removes the master copy of `identifier` and its sidecar (and whatever derivatives are
    /// left) from the cache mount.
    ///
    /// # Errors
    /// A file that exists but cannot be removed.
    pub async fn purge(&self, identifier: &str) -> std::io::Result<Removed> {
        // Through the running cache, so that it also forgets the copy it knew.
        let lazyfetch = self
            .lazyfetch()
            .await
            .map_err(|failure| std::io::Error::other(failure.message))?;
        let report = lazyfetch.purge(identifier).await?;
        Ok(Removed {
            files: report.removed.len() as u64,
            bytes: report.bytes,
        })
    }

    /// Whether the copy `fif` ([`Master::fif`], the one a request used) is absent from the
    /// cache mount: a 404 from iipsrv then means it was removed mid-flight (pruned, purged, or
    /// replaced by a newer version under another name), not that the image does not exist.
    pub fn is_missing(&self, fif: &str) -> bool {
        self.started.get().is_some() && !self.cache.root.join(fif).exists()
    }
}

fn failure(error: FetchError) -> Failure {
    match error {
        FetchError::NoRule | FetchError::NotFound => {
            Failure::new(404, "no image with this identifier")
        }
        FetchError::Unavailable {
            retry_after,
            reason,
        } => {
            log::warn!("access master unavailable: {reason}");
            let seconds = u32::try_from(retry_after.as_secs().max(1)).unwrap_or(u32::MAX);
            Failure::unavailable("image storage is unavailable, try again later", seconds)
        }
        FetchError::Io(reason) => {
            log::error!("access-master cache I/O failure: {reason}");
            Failure::unavailable("the image cannot be read right now", 10)
        }
    }
}

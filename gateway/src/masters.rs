//! The gateway's side of the access-master cache (`lazyfetch`): started on first use, its
//! errors translated into the request path's [`Error`].
//!
//! `LazyFetch` is built inside the serving runtime, not before the server starts: Pingora may
//! fork into the background at start-up, and a runtime (or an S3 client bound to one) created
//! before the fork would not survive it.

use std::sync::Arc;

use lazyfetch::{CacheConfig, FetchError, LazyFetch, Master, MastersConfig};
use prometheus::Registry;
use tokio::sync::OnceCell;

use crate::derivatives::files::Removed;
use crate::error::{Error, Source};
use crate::room::Room;

pub struct Masters {
    cache: CacheConfig,
    masters: MastersConfig,
    registry: Registry,
    started: OnceCell<Arc<LazyFetch>>,
    /// Told when a download finds the mount full, so that room is made for the next try.
    room: Arc<Room>,
}

impl Masters {
    pub fn new(
        cache: CacheConfig,
        masters: MastersConfig,
        room: Arc<Room>,
        registry: Registry,
    ) -> Self {
        Masters {
            cache,
            masters,
            registry,
            started: OnceCell::new(),
            room,
        }
    }

    /// The running cache, started by the first caller.
    ///
    /// # Errors
    /// [`Source::NotStarted`] while it cannot start; the next request tries again.
    pub async fn lazyfetch(&self) -> Result<&Arc<LazyFetch>, Error> {
        self.started
            .get_or_try_init(|| async {
                LazyFetch::new(&self.cache, &self.masters, &self.registry)
                    .await
                    .map_err(|e| Source::NotStarted {
                        detail: e.to_string(),
                    })
            })
            .await
            .map_err(Error::from)
    }

    /// The master of `identifier` on the cache mount, fetched from S3 if needed.
    ///
    /// # Errors
    /// [`Source::NotFound`] when no rule maps the identifier or S3 has no such object, the other
    /// [`Source`] variants when S3 or the cache mount cannot deliver it now.
    pub async fn ensure(&self, identifier: &str) -> Result<Master, Error> {
        let lazyfetch = self.lazyfetch().await?;
        lazyfetch
            .ensure(identifier)
            .await
            .map_err(|e| self.source_error(e))
    }

    /// Fetches `identifier` again after iipsrv found its file gone (pruned or purged mid-flight).
    ///
    /// # Errors
    /// As [`Masters::ensure`].
    pub async fn refetch(&self, identifier: &str) -> Result<Master, Error> {
        let lazyfetch = self.lazyfetch().await?;
        lazyfetch
            .refetch(identifier)
            .await
            .map_err(|e| self.source_error(e))
    }

    /// Removes the master copy of `identifier` and its sidecar (and whatever derivatives are
    /// left) from the cache mount.
    ///
    /// # Errors
    /// A file that exists but cannot be removed.
    pub async fn purge(&self, identifier: &str) -> std::io::Result<Removed> {
        // Through the running cache, so that it also forgets the copy it knew.
        let lazyfetch = self.lazyfetch().await.map_err(std::io::Error::other)?;
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

    /// [`source_error`], and a full mount reported to [`Room`].
    fn source_error(&self, error: FetchError) -> Error {
        if matches!(error, FetchError::DiskFull(_)) {
            self.room.disk_full();
        }
        source_error(error)
    }
}

fn source_error(error: FetchError) -> Error {
    Error::Source(match error {
        FetchError::NoRule | FetchError::NotFound => Source::NotFound,
        FetchError::Unavailable {
            retry_after,
            reason,
        } => Source::Unavailable {
            retry_after,
            detail: reason,
        },
        FetchError::Io(reason) | FetchError::DiskFull(reason) => Source::Io { detail: reason },
        error @ FetchError::TooLarge { .. } => Source::TooLarge {
            detail: error.to_string(),
        },
    })
}

//! The derivative cache: each derivative rendered once, kept on disk, served without iipsrv.
//!
//! Entries are keyed by what the pixels are ([`key::DerivativeKey`]), grouped per image in the
//! directory the shared cache layout gives (so purge and prune remove an image's derivatives
//! together with its master), and written by atomic rename off the response path. Concurrent
//! misses for one derivative run one render ([`SingleFlight`]). Disk problems only stop
//! caching: a failed read is a miss, a failed write is counted and logged, never a failed
//! request.

pub mod files;
pub mod key;
mod memory;
mod metrics;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use coalesce::{Role, SingleFlight};
use iiif::Plan;
use lazyfetch::layout::CacheLayout;
use lazyfetch::{AccessStamps, CacheConfig};
use prometheus::Registry;

pub use key::{body_etag, DerivativeKey};
use memory::MemoryTier;
pub use metrics::DerivativeMetrics;

use crate::budget::Body;
use crate::error::Error;
use crate::request_log::notes;
use crate::room::Room;

/// Which derivatives are worth keeping.
#[derive(Debug, Clone)]
pub struct DerivativePolicy {
    /// Outputs up to this many pixels are cached (tiles and thumbnails); larger renders are
    /// served but not kept.
    pub max_output_pixels: u64,
    /// …and encoded bodies up to this many bytes: the cache is budgeted in bytes, and a noisy
    /// PNG or lossless WebP of a small size class can still be megabytes.
    pub max_entry_bytes: u64,
    /// Bytes of the hottest derivatives also kept in memory.
    pub memory_bytes: usize,
}

/// What one render flight hands its callers.
#[derive(Clone)]
struct Rendered {
    body: Body,
    /// Rendered by this flight (to be stored), not found in memory from the one before.
    fresh: bool,
}

/// The on-disk cache of rendered images.
pub struct DerivativeCache {
    layout: CacheLayout,
    policy: DerivativePolicy,
    renders: SingleFlight<Result<Rendered, Error>>,
    /// The hottest derivatives, by path. A render goes in before its flight is released and
    /// its file written, so a request right after a render never renders again.
    memory: Mutex<MemoryTier>,
    stamps: AccessStamps,
    /// Whether the cache mount has room for one more derivative.
    room: Arc<Room>,
    metrics: DerivativeMetrics,
    /// Set after the first "disk full", so the log says it once per episode, not per request.
    disk_full: AtomicBool,
}

impl DerivativeCache {
    pub fn new(
        cache: &CacheConfig,
        policy: DerivativePolicy,
        room: Arc<Room>,
        registry: &Registry,
    ) -> Arc<Self> {
        let layout = CacheLayout::new(cache.root.clone());
        Arc::new(DerivativeCache {
            room,
            layout,
            renders: SingleFlight::new(),
            memory: Mutex::new(MemoryTier::new(policy.memory_bytes)),
            policy,
            stamps: AccessStamps::new(Duration::from_secs(cache.touch_interval_s)),
            metrics: DerivativeMetrics::register(registry),
            disk_full: AtomicBool::new(false),
        })
    }

    /// Whether `plan`'s output belongs to a size class the cache keeps.
    pub fn admits(&self, plan: &Plan) -> bool {
        let (w, h) = plan.output;
        u64::from(w) * u64::from(h) <= self.policy.max_output_pixels
    }

    /// The derivative from disk, or from `render` (run once however many identical requests
    /// arrive together) and then stored in the background when its size class is cached.
    ///
    /// # Errors
    /// The failure of `render`, shared by every request that waited for it.
    pub async fn get_or_render<F, Fut>(
        self: &Arc<Self>,
        identifier: &str,
        key: &DerivativeKey,
        cacheable: bool,
        render: F,
    ) -> Result<Body, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Body, Error>>,
    {
        let dir = self.layout.derivatives_dir(identifier);
        if cacheable {
            if let Some(bytes) = self.read(&dir, &key.file_name).await {
                self.metrics.lookups.with_label_values(&["hit"]).inc();
                self.metrics.served_bytes.inc_by(bytes.len() as u64);
                self.stamps.touch(&dir.join(files::ACCESS_FILE));
                return Ok(Body { bytes, held: None });
            }
        }
        let result = if cacheable { "miss" } else { "bypass" };
        self.metrics.lookups.with_label_values(&[result]).inc();
        let memory_path = memory_key(&dir, &key.file_name);
        let work = || async {
            // A request that missed just before the previous flight for this key landed
            // becomes a new leader: it finds that flight's result here instead of rendering
            // again (the result went into memory before the flight was released; a body too
            // large for the memory tier can still render twice in that narrow window).
            if cacheable {
                if let Some(bytes) = self.recall(&memory_path) {
                    return Ok(Rendered {
                        body: Body { bytes, held: None },
                        fresh: false,
                    });
                }
            }
            let body = render().await?;
            if cacheable && body.bytes.len() as u64 <= self.policy.max_entry_bytes {
                self.remember(&memory_path, &body.bytes);
            }
            Ok(Rendered { body, fresh: true })
        };
        let (rendered, role) = self.renders.run(&memory_path, work).await;
        notes::note(|n| {
            n.cache = Some(match (role, &rendered) {
                (Role::Follower, _) => "coalesced",
                (Role::Leader, Ok(Rendered { fresh: false, .. })) => "memory",
                (Role::Leader, _) => result,
            })
        });
        let Rendered { body, fresh } = rendered?;
        match role {
            Role::Leader if fresh && cacheable => {
                if body.bytes.len() as u64 <= self.policy.max_entry_bytes {
                    self.store_in_background(dir, identifier, key, &body.bytes);
                } else {
                    self.metrics.fills.with_label_values(&["too_large"]).inc();
                }
            }
            Role::Leader if fresh => {}
            Role::Leader | Role::Follower => self.metrics.coalesced.inc(),
        }
        Ok(body)
    }

    /// The derivative if it is cached (memory or disk), without rendering: for `HEAD`.
    pub async fn cached(&self, identifier: &str, key: &DerivativeKey) -> Option<Bytes> {
        self.read(&self.layout.derivatives_dir(identifier), &key.file_name)
            .await
    }

    /// Bytes held in the memory tier now.
    pub fn memory_bytes(&self) -> usize {
        self.memory.lock().expect("memory tier lock").bytes()
    }

    /// Empties the memory tier (the files stay).
    pub fn forget_memory(&self) {
        self.forget_in_memory("");
    }

    /// Removes every derivative of `identifier`.
    ///
    /// # Errors
    /// When the directory exists but cannot be removed.
    pub async fn purge(&self, identifier: &str) -> std::io::Result<files::Removed> {
        let dir = self.layout.derivatives_dir(identifier);
        self.forget_in_memory(&memory_key(&dir, ""));
        let removed = tokio::task::spawn_blocking(move || files::remove_all(&dir))
            .await
            .map_err(std::io::Error::other)??;
        if removed.bytes > 0 {
            self.metrics.evictions.inc();
            self.metrics.evicted_bytes.inc_by(removed.bytes);
        }
        Ok(removed)
    }

    /// Drops the memory tier's entries under `prefix` (`""`: all of them).
    fn forget_in_memory(&self, prefix: &str) {
        let mut memory = self.memory.lock().expect("memory tier lock");
        memory.remove_prefix(prefix);
        self.metrics.memory_bytes.set(memory.bytes() as i64);
    }

    /// The derivative from memory, else from disk (and then kept in memory).
    async fn read(&self, dir: &Path, name: &str) -> Option<Bytes> {
        let path = memory_key(dir, name);
        if let Some(bytes) = self.recall(&path) {
            notes::note(|n| n.cache = Some("memory"));
            return Some(bytes);
        }
        let (dir, name) = (dir.to_path_buf(), name.to_owned());
        let read = tokio::task::spawn_blocking(move || {
            files::read(&dir, &name).map_err(|e| format!("{}: {e}", dir.display()))
        })
        .await;
        match read {
            Ok(Ok(bytes)) => {
                let bytes = bytes.map(Bytes::from)?;
                notes::note(|n| n.cache = Some("disk"));
                self.remember(&path, &bytes);
                Some(bytes)
            }
            Ok(Err(e)) => {
                log::warn!("derivative cache read failed in {e}");
                None
            }
            Err(e) => {
                log::error!("derivative cache read task failed: {e}");
                None
            }
        }
    }

    fn recall(&self, path: &str) -> Option<Bytes> {
        self.memory.lock().expect("memory tier lock").get(path)
    }

    fn remember(&self, path: &str, bytes: &Bytes) {
        let mut memory = self.memory.lock().expect("memory tier lock");
        memory.insert(path, bytes.clone());
        self.metrics.memory_bytes.set(memory.bytes() as i64);
    }

    fn store_in_background(
        self: &Arc<Self>,
        dir: PathBuf,
        identifier: &str,
        key: &DerivativeKey,
        bytes: &Bytes,
    ) {
        let cache = self.clone();
        let (identifier, name, bytes) =
            (identifier.to_owned(), key.file_name.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || {
            if !cache.room.admit(bytes.len() as u64) {
                cache
                    .metrics
                    .fills
                    .with_label_values(&["over_hard_limit"])
                    .inc();
                return;
            }
            match files::write(&dir, &identifier, &name, &bytes) {
                Ok(()) => {
                    cache.metrics.fills.with_label_values(&["stored"]).inc();
                    cache.metrics.filled_bytes.inc_by(bytes.len() as u64);
                    cache.stamps.touch(&dir.join(files::ACCESS_FILE));
                    if cache.disk_full.swap(false, Ordering::Relaxed) {
                        log::info!("derivative cache: writing again after a full disk");
                    }
                }
                Err(e) if lazyfetch::is_disk_full(&e) => {
                    cache.metrics.fills.with_label_values(&["disk_full"]).inc();
                    cache.room.disk_full();
                    if !cache.disk_full.swap(true, Ordering::Relaxed) {
                        log::error!(
                            "derivative cache: disk full under {}; serving without caching until space is freed (run lazyfetch prune)",
                            cache.layout.root().display()
                        );
                    }
                }
                Err(e) => {
                    cache.metrics.fills.with_label_values(&["failed"]).inc();
                    log::warn!("derivative cache: storing in {} failed: {e}", dir.display());
                }
            }
        });
    }
}

/// The memory tier's key of a derivative: its path on disk (`name` empty: the image's directory
/// with a trailing separator, the prefix of all its derivatives).
fn memory_key(dir: &Path, name: &str) -> String {
    format!("{}/{name}", dir.display())
}

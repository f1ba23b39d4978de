//! [`LazyFetch`]: the master of an identifier on the cache mount, downloaded from S3 on first use.
//!
//! **Hot path** (master present and verified recently): one `stat` of the remembered copy (off
//! the async worker, so a hung NFS mount stalls a blocking-pool thread, not the runtime),
//! compared with the identity remembered in memory; the sidecar is read again only when that
//! file changed or vanished (prune, purge, a replacement by another node). The access stamp is
//! touched through [`AccessStamps`].
//!
//! **Slow path** (missing, changed, or due for revalidation): a single flight per image in this
//! process (`coalesce::SingleFlight::detached`: a client that hangs up does not cancel the
//! download the others wait for), then the Redis lock across nodes when configured
//! ([`crate::lock`]), then a second look at the disk (another flight or node may have done the
//! work), then a download slot (semaphore), then one GET, conditional on the cached ETag when
//! there is a cached copy. The body goes to a tmp file that is length-checked, fsynced and
//! renamed to the copy's own name (`{k}.{v}`, see [`crate::layout`]: iipsrv must never see a
//! new image under an old path); then the sidecar is replaced the same way, naming the new copy,
//! and only then are the other copies removed. A changed master takes its derivatives directory
//! with it. A request still holding the old copy's path gets a 404 from iipsrv and asks again
//! ([`LazyFetch::refetch`]).
//!
//! **Failures**: S3 down → the cached copy is served as it is (counted as
//! `revalidations_total{outcome="unavailable"}`), an uncached image gets
//! [`FetchError::Unavailable`] after the client's retries, and for a while after that at once
//! ([`crate::outage`]). A missing object is [`FetchError::NotFound`]; when it had a cached copy,
//! that copy and its derivatives are removed (the image was withdrawn).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::error::DisplayErrorContext;
use coalesce::{Role, SingleFlight};
use prometheus::Registry;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::config::{CacheConfig, ConfigErrors, ConfigProblem, MastersConfig, S3Config};
pub use crate::copies::Master;
use crate::copies::{place, read_disk, Known};
use crate::error::{FetchError, StartupError};
use crate::layout::{CacheLayout, DERIVATIVES_DIR, MASTERS_DIR, TMP_DIR};
use crate::lock::{Acquire, LockGuard, NodeLock};
use crate::metrics::{fetch_outcome, revalidation_outcome, warm_outcome, Metrics};
use crate::misses::{Lookups, Misses};
use crate::outage::Outage;
use crate::purge::{purge, PurgeReport};
use crate::rules::{Rules, S3Location};
use crate::s3::{self, GetAnswer, GetFailure, ObjectBody};
use crate::sidecar::Sidecar;
use crate::stamps::AccessStamps;
use crate::tmpfile::{write_atomically, TmpFile};

/// Identifiers remembered in memory; past this, an eighth of them is forgotten (they are read
/// again from their sidecars when next used).
const REMEMBERED_CAPACITY: usize = 200_000;

/// First and longest pause between looks at the disk while another node downloads.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(50);
const LOCK_POLL_MAX: Duration = Duration::from_millis(500);

/// The access-master cache. Cheap to share (`Arc`); all methods take `&self`.
pub struct LazyFetch {
    inner: Arc<Inner>,
}

struct Inner {
    layout: CacheLayout,
    rules: Rules,
    client: aws_sdk_s3::Client,
    revalidate_after: Duration,
    download_timeout: Duration,
    retry_after: Duration,
    /// The longest wait for the next piece of a body.
    stall_timeout: Duration,
    remembered: Mutex<HashMap<String, Remembered>>,
    flights: Arc<SingleFlight<Result<Master, FetchError>>>,
    downloads: Semaphore,
    /// Places for GETs waiting for S3's answer, and the identifiers S3 recently did not have.
    lookups: Lookups,
    misses: Misses,
    max_master_bytes: u64,
    stamps: AccessStamps,
    lock: Option<NodeLock>,
    outage: Outage,
    metrics: Metrics,
}

/// What this process last knew about an identifier's master.
#[derive(Debug, Clone)]
struct Remembered {
    /// The version last seen, kept when the file goes away, so a re-download of different
    /// content is reported as `replaced`.
    version: String,
    /// The copy on disk, with the file identity it was checked against; `None` after the file
    /// was found missing or [`LazyFetch::refetch`] asked to forget it.
    copy: Option<Known>,
}

/// Whether the download waited for another node.
enum NodeTurn {
    /// Ours to download (with the lock, or without it when Redis is unavailable).
    Ours(Option<LockGuard>),
    /// Another node downloaded or revalidated it meanwhile.
    DoneElsewhere(Master),
}

/// A download that did not produce a file.
enum DownloadError {
    /// The body broke off, stalled, was short, or failed its checksum.
    Body(String),
    /// The cache mount failed.
    Cache(io::Error),
}

impl LazyFetch {
    /// Checks the configuration, creates the cache directories, registers the metrics and
    /// builds the S3 client (no request is sent; Redis is connected on first use).
    ///
    /// # Errors
    /// Every invalid value of both sections, an unreadable secret file, a cache root that
    /// cannot be created, metrics already registered.
    pub async fn new(
        cache: &CacheConfig,
        masters: &MastersConfig,
        registry: &Registry,
    ) -> Result<Arc<Self>, StartupError> {
        let mut problems = ConfigErrors::default();
        if let Err(errors) = cache.validate() {
            problems.0.extend(errors.0);
        }
        let rules = masters
            .resolve()
            .map_err(|errors| problems.0.extend(errors.0))
            .ok();
        let lock = match masters.lock.as_ref().map(NodeLock::new).transpose() {
            Ok(lock) => lock,
            Err(error) => {
                problems.0.push(ConfigProblem {
                    key: "gateway.masters.lock.redis_url".into(),
                    message: error.to_string(),
                });
                None
            }
        };
        let Some(rules) = rules.filter(|_| problems.0.is_empty()) else {
            return Err(StartupError::Config(problems));
        };
        let secret = read_secret(&masters.s3)?;
        let layout = CacheLayout::new(cache.root.clone());
        for dir in [MASTERS_DIR, DERIVATIVES_DIR, TMP_DIR] {
            let path = layout.root().join(dir);
            std::fs::create_dir_all(&path)
                .map_err(|source| StartupError::CacheRoot { path, source })?;
        }
        // Writable? (A read-only mount would otherwise fail on the first download.)
        let tmp_dir = layout.tmp_dir();
        drop(
            TmpFile::create(&tmp_dir, "startup-probe").map_err(|source| {
                StartupError::CacheRoot {
                    path: tmp_dir.clone(),
                    source,
                }
            })?,
        );
        let metrics = Metrics::register(registry)?;
        let client = s3::client(&masters.s3, secret).await;
        let retry_after = Duration::from_secs(masters.unavailable_retry_after_s);
        Ok(Arc::new(LazyFetch {
            inner: Arc::new(Inner {
                layout,
                rules,
                client,
                revalidate_after: Duration::from_secs(masters.revalidate_after_s),
                download_timeout: Duration::from_secs(masters.download_timeout_s),
                retry_after,
                stall_timeout: Duration::from_millis(masters.s3.first_byte_timeout_ms),
                remembered: Mutex::new(HashMap::new()),
                flights: Arc::new(SingleFlight::new()),
                downloads: Semaphore::new(masters.max_concurrent_downloads),
                lookups: Lookups::new(masters.max_concurrent_lookups, masters.max_pending_lookups),
                misses: Misses::new(Duration::from_secs(masters.miss_ttl_s)),
                max_master_bytes: masters.max_master_bytes.bytes(),
                stamps: AccessStamps::new(Duration::from_secs(cache.touch_interval_s)),
                lock,
                outage: Outage::new(retry_after),
                metrics,
            }),
        }))
    }

    /// The master of `identifier`, ready on the cache mount: at once when it is present and was
    /// verified within `revalidate_after_s`; otherwise after one download (or conditional GET)
    /// shared by every concurrent caller in this process, and by every node when the Redis lock
    /// is configured.
    ///
    /// # Errors
    /// [`FetchError::NoRule`] and [`FetchError::NotFound`] (404), [`FetchError::Unavailable`]
    /// (503, only for masters not on disk), [`FetchError::Io`] and [`FetchError::DiskFull`]
    /// (503: the cache mount failed).
    pub async fn ensure(&self, identifier: &str) -> Result<Master, FetchError> {
        let inner = &self.inner;
        let location = inner.rules.locate(identifier).ok_or(FetchError::NoRule)?;
        let image_key = CacheLayout::image_key(identifier);
        if let Some((known, replaced)) = inner.on_disk(identifier, &image_key, true).await? {
            if known.is_from(&location) {
                inner
                    .stamps
                    .touch(&inner.layout.sidecar_path_for_key(&image_key));
                if inner.is_fresh(&known) {
                    return Ok(known.master(replaced));
                }
                if inner.outage.is_down() {
                    inner
                        .metrics
                        .revalidation(revalidation_outcome::UNAVAILABLE);
                    return Ok(known.master(replaced));
                }
            }
        } else if inner.misses.is_missing(identifier) {
            inner.metrics.fetch(fetch_outcome::REMEMBERED_MISSING);
            return Err(FetchError::NotFound);
        }
        inner.fly(identifier, image_key, location).await
    }

    /// iipsrv could not open the file [`LazyFetch::ensure`] gave (pruned or purged meanwhile):
    /// forgets the copy this process knew and ensures the master again (downloading it unless
    /// another request already did).
    ///
    /// # Errors
    /// As [`LazyFetch::ensure`].
    pub async fn refetch(&self, identifier: &str) -> Result<Master, FetchError> {
        self.inner.forget_copy(identifier);
        self.inner
            .stamps
            .forget(&self.inner.layout.sidecar_path(identifier));
        self.ensure(identifier).await
    }

    /// Starts [`LazyFetch::ensure`] in the background (an info.json request warms the master
    /// its tiles will need). Failures are logged and counted in `iiif_masters_warmups_total`.
    /// Must be called within a Tokio runtime.
    pub fn warm(self: &Arc<Self>, identifier: &str) {
        let this = Arc::clone(self);
        let identifier = identifier.to_owned();
        tokio::spawn(async move {
            let outcome = match this.ensure(&identifier).await {
                Ok(_) => warm_outcome::OK,
                Err(FetchError::NoRule) => warm_outcome::NO_RULE,
                Err(FetchError::NotFound) => warm_outcome::NOT_FOUND,
                Err(error @ FetchError::TooLarge { .. }) => {
                    log::error!("warming {identifier:?}: {error}");
                    warm_outcome::ERROR
                }
                Err(error @ FetchError::Unavailable { .. }) => {
                    log::warn!("warming {identifier:?}: {error}");
                    warm_outcome::UNAVAILABLE
                }
                Err(error @ (FetchError::Io(_) | FetchError::DiskFull(_))) => {
                    log::error!("warming {identifier:?}: {error}");
                    warm_outcome::ERROR
                }
            };
            this.inner
                .metrics
                .warmups
                .with_label_values(&[outcome])
                .inc();
        });
    }

    /// Removes the image's master, sidecar and derivatives (as [`crate::purge()`]) and forgets
    /// it in this process.
    ///
    /// # Errors
    /// A file could not be removed (what was removed before is in the error's message).
    pub async fn purge(&self, identifier: &str) -> io::Result<PurgeReport> {
        self.inner.forget_copy(identifier);
        self.inner.misses.forget(identifier);
        let layout = self.inner.layout.clone();
        let identifier = identifier.to_owned();
        tokio::task::spawn_blocking(move || purge(&layout, &identifier))
            .await
            .map_err(io::Error::other)?
    }

    /// Where `identifier`'s master lives in S3 (`None`: no rule matches).
    pub fn locate(&self, identifier: &str) -> Option<S3Location> {
        self.inner.rules.locate(identifier)
    }

    /// The cache layout.
    pub fn layout(&self) -> &CacheLayout {
        &self.inner.layout
    }
}

// === impl Inner ===

impl Inner {
    /// The master on disk for `identifier`, if its sidecar describes it, and whether its version
    /// differs from the one this process last saw.
    ///
    /// With `trust_memory`, a file whose identity matches the remembered copy is taken as that
    /// copy without reading its sidecar (the hot path); without it the sidecar is always read,
    /// to see a `verified_at` written by another node.
    async fn on_disk(
        self: &Arc<Self>,
        identifier: &str,
        image_key: &str,
        trust_memory: bool,
    ) -> Result<Option<(Known, bool)>, FetchError> {
        let remembered = if trust_memory {
            self.remembered_copy(identifier)
        } else {
            None
        };
        let layout = self.layout.clone();
        let (id, key) = (identifier.to_owned(), image_key.to_owned());
        let found = tokio::task::spawn_blocking(move || read_disk(&layout, &id, &key, remembered))
            .await
            .map_err(|e| FetchError::Io(format!("reading the cache: {e}")))?
            .map_err(|e| FetchError::Io(format!("reading the cache: {e}")))?;
        Ok(match found {
            Some(known) => {
                let replaced = self.remember(identifier, &known);
                Some((known, replaced))
            }
            None => {
                self.forget_copy(identifier);
                None
            }
        })
    }

    fn remembered_copy(&self, identifier: &str) -> Option<Known> {
        let remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        remembered.get(identifier).and_then(|r| r.copy.clone())
    }

    /// Records `known` as the current copy; true when its version differs from the last seen.
    fn remember(&self, identifier: &str, known: &Known) -> bool {
        let version = known.sidecar.version();
        let mut remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if remembered.len() >= REMEMBERED_CAPACITY && !remembered.contains_key(identifier) {
            let victims: Vec<String> = remembered
                .keys()
                .take(REMEMBERED_CAPACITY / 8)
                .cloned()
                .collect();
            for victim in victims {
                remembered.remove(&victim);
            }
        }
        let previous = remembered.insert(
            identifier.to_owned(),
            Remembered {
                version: version.clone(),
                copy: Some(known.clone()),
            },
        );
        previous.is_some_and(|p| p.version != version)
    }

    /// Forgets the copy (not the version) of `identifier`.
    fn forget_copy(&self, identifier: &str) {
        let mut remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = remembered.get_mut(identifier) {
            entry.copy = None;
        }
    }

    fn is_fresh(&self, known: &Known) -> bool {
        match SystemTime::now().duration_since(known.sidecar.verified_at) {
            Ok(age) => age < self.revalidate_after,
            // Verified "in the future" (clock stepped back): fresh.
            Err(_) => true,
        }
    }

    fn unavailable(&self, reason: String) -> FetchError {
        FetchError::Unavailable {
            retry_after: self.retry_after,
            reason,
        }
    }

    /// Runs (or joins) the flight that brings `identifier`'s master up to date.
    async fn fly(
        self: &Arc<Self>,
        identifier: &str,
        image_key: String,
        location: S3Location,
    ) -> Result<Master, FetchError> {
        let inner = Arc::clone(self);
        let identifier = identifier.to_owned();
        let flight_key = image_key.clone();
        let boarding = self.flights.detached(&flight_key, move || async move {
            let limit = inner.download_timeout;
            let refresh = inner.refresh(&identifier, &image_key, &location);
            match tokio::time::timeout(limit, refresh).await {
                Ok(result) => result,
                Err(_) => Err(inner.unavailable(format!(
                    "the download did not finish within download_timeout_s ({limit:?})"
                ))),
            }
        });
        if boarding.role() == Role::Follower {
            self.metrics.single_flight_waits.inc();
        }
        let answer = boarding.answer().await;
        answer.unwrap_or_else(|| {
            Err(FetchError::Io(
                "the download task ended without an answer (runtime shutting down?)".into(),
            ))
        })
    }

    /// The flight's work: see the module documentation.
    async fn refresh(
        self: &Arc<Self>,
        identifier: &str,
        image_key: &str,
        location: &S3Location,
    ) -> Result<Master, FetchError> {
        let _node_lock = match &self.lock {
            Some(lock) => match self
                .take_node_lock(lock, identifier, image_key, location)
                .await?
            {
                NodeTurn::Ours(guard) => guard,
                NodeTurn::DoneElsewhere(master) => return Ok(master),
            },
            None => None,
        };
        let on_disk = self.on_disk(identifier, image_key, false).await?;
        let mut current = None;
        if let Some((known, replaced)) = on_disk.filter(|(known, _)| known.is_from(location)) {
            if self.is_fresh(&known) {
                return Ok(known.master(replaced));
            }
            current = Some(known);
        }
        if self.outage.is_down() {
            return self.serve_cached_or_fail(current, "S3 failed moments ago".into());
        }
        // The look-up place is held until S3 has answered; only a body takes a download slot.
        let pending = self.lookups.join().map_err(|_| {
            self.unavailable("too many S3 look-ups are waiting (max_pending_lookups)".into())
        })?;
        let lookup = pending.place().await;
        let started = Instant::now();
        let etag = current.as_ref().and_then(|k| k.sidecar.etag.as_deref());
        let answer = s3::get(&self.client, location, etag).await;
        drop(lookup);
        match answer {
            Err(GetFailure::Unavailable { reason, outage }) => {
                self.metrics.fetch(fetch_outcome::UNAVAILABLE);
                if outage {
                    self.outage.record_failure();
                } else {
                    // S3 answered (403, 400…): a configuration problem, not an outage.
                    self.outage.record_success();
                }
                log::warn!("GET s3://{}/{}: {reason}", location.bucket, location.key);
                self.serve_cached_or_fail(current, reason)
            }
            Err(GetFailure::Invalid(reason)) => {
                self.metrics.fetch(fetch_outcome::UNAVAILABLE);
                log::error!("GET s3://{}/{}: {reason}", location.bucket, location.key);
                Err(FetchError::Io(reason))
            }
            Ok(GetAnswer::NotModified) => {
                self.outage.record_success();
                self.metrics.fetch(fetch_outcome::NOT_MODIFIED);
                let Some(known) = current else {
                    return Err(FetchError::Io(
                        "S3 answered 304 to an unconditional GET".into(),
                    ));
                };
                self.confirm(identifier, image_key, known).await
            }
            Ok(GetAnswer::NotFound) => {
                self.outage.record_success();
                self.metrics.fetch(fetch_outcome::NOT_FOUND);
                if current.is_some() {
                    self.metrics.revalidation(revalidation_outcome::GONE);
                    log::info!(
                        "s3://{}/{} is gone; removing the cached copy of {identifier:?}",
                        location.bucket,
                        location.key
                    );
                    self.forget_copy(identifier);
                    let layout = self.layout.clone();
                    let id = identifier.to_owned();
                    match tokio::task::spawn_blocking(move || purge(&layout, &id)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => {
                            log::warn!("removing the withdrawn {identifier:?}: {error}")
                        }
                        Err(error) => log::warn!("removing the withdrawn {identifier:?}: {error}"),
                    }
                } else {
                    self.misses.record(identifier);
                }
                Err(FetchError::NotFound)
            }
            Ok(GetAnswer::Body(object)) => {
                self.outage.record_success();
                if let Some(size) = object
                    .content_length
                    .filter(|size| *size > self.max_master_bytes)
                {
                    self.metrics.fetch(fetch_outcome::TOO_LARGE);
                    log::error!(
                        "s3://{}/{} is {size} bytes, more than max_master_bytes ({}); not downloaded",
                        location.bucket,
                        location.key,
                        self.max_master_bytes
                    );
                    return Err(FetchError::TooLarge {
                        size,
                        limit: self.max_master_bytes,
                    });
                }
                let _slot = self
                    .downloads
                    .acquire()
                    .await
                    .map_err(|_| FetchError::Io("download slots closed".into()))?;
                self.store(identifier, image_key, location, object, current, started)
                    .await
            }
        }
    }

    /// Waits while another node holds the lock of `image_key`; returns once the lock is ours
    /// (or Redis is unavailable), or the master appeared fresh on disk meanwhile.
    async fn take_node_lock(
        self: &Arc<Self>,
        lock: &NodeLock,
        identifier: &str,
        image_key: &str,
        location: &S3Location,
    ) -> Result<NodeTurn, FetchError> {
        let mut pause = LOCK_POLL_FIRST;
        let mut counted = false;
        loop {
            match lock.try_acquire(image_key).await {
                Acquire::Held(guard) => return Ok(NodeTurn::Ours(Some(guard))),
                Acquire::RedisUnavailable => return Ok(NodeTurn::Ours(None)),
                Acquire::Busy => {}
            }
            if !counted {
                counted = true;
                self.metrics.lock_waits.inc();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
            if let Some((known, replaced)) = self.on_disk(identifier, image_key, false).await? {
                if known.is_from(location) && self.is_fresh(&known) {
                    return Ok(NodeTurn::DoneElsewhere(known.master(replaced)));
                }
            }
        }
    }

    /// S3 cannot be asked: the cached copy if there is one (counted), else 503.
    fn serve_cached_or_fail(
        &self,
        current: Option<Known>,
        reason: String,
    ) -> Result<Master, FetchError> {
        match current {
            Some(known) => {
                self.metrics.revalidation(revalidation_outcome::UNAVAILABLE);
                Ok(known.master(false))
            }
            None => Err(self.unavailable(reason)),
        }
    }

    /// S3 confirmed the cached copy: its sidecar gets a new `verified_at`.
    async fn confirm(
        self: &Arc<Self>,
        identifier: &str,
        image_key: &str,
        mut known: Known,
    ) -> Result<Master, FetchError> {
        self.metrics.revalidation(revalidation_outcome::UNCHANGED);
        known.sidecar.verified_at = SystemTime::now();
        let (tmp_dir, path) = (
            self.layout.tmp_dir(),
            self.layout.sidecar_path_for_key(image_key),
        );
        let (bytes, key) = (known.sidecar.to_json(), image_key.to_owned());
        let written =
            tokio::task::spawn_blocking(move || write_atomically(&tmp_dir, &key, &path, &bytes))
                .await;
        match written {
            Ok(Ok(())) => {}
            // The copy is still good; the next use revalidates again.
            Ok(Err(error)) => log::warn!("updating the sidecar of {identifier:?}: {error}"),
            Err(error) => log::warn!("updating the sidecar of {identifier:?}: {error}"),
        }
        let replaced = self.remember(identifier, &known);
        Ok(known.master(replaced))
    }

    /// Downloads `object` and puts it in place with its sidecar.
    async fn store(
        self: &Arc<Self>,
        identifier: &str,
        image_key: &str,
        location: &S3Location,
        object: ObjectBody,
        current: Option<Known>,
        started: Instant,
    ) -> Result<Master, FetchError> {
        self.metrics.downloads_in_progress.inc();
        let downloaded = self
            .download(image_key, object.body, object.content_length)
            .await;
        self.metrics.downloads_in_progress.dec();
        let (tmp, size) = match downloaded {
            Ok(done) => done,
            Err(DownloadError::Body(reason)) => {
                self.metrics.fetch(fetch_outcome::UNAVAILABLE);
                log::warn!(
                    "downloading s3://{}/{}: {reason}",
                    location.bucket,
                    location.key
                );
                return self.serve_cached_or_fail(current, reason);
            }
            Err(DownloadError::Cache(error)) => {
                self.metrics.fetch(fetch_outcome::CACHE_ERROR);
                log::error!("writing the master of {identifier:?}: {error}");
                return Err(FetchError::cache_write("writing the master", &error));
            }
        };
        let now = SystemTime::now();
        let sidecar = Sidecar {
            identifier: identifier.to_owned(),
            bucket: location.bucket.clone(),
            key: location.key.clone(),
            etag: object.etag,
            size,
            last_modified: object.last_modified.unwrap_or(now),
            fetched_at: now,
            verified_at: now,
            checksum: object.checksum,
        };
        let layout = self.layout.clone();
        let key = image_key.to_owned();
        let placed = tokio::task::spawn_blocking(move || place(&layout, &key, tmp, sidecar))
            .await
            .map_err(io::Error::other)
            .and_then(|result| result);
        let (known, replaced_on_disk) = match placed {
            Ok(placed) => placed,
            Err(error) => {
                self.metrics.fetch(fetch_outcome::CACHE_ERROR);
                log::error!("putting the master of {identifier:?} in place: {error}");
                return Err(FetchError::cache_write(
                    "putting the master in place",
                    &error,
                ));
            }
        };
        self.metrics.fetch(fetch_outcome::DOWNLOADED);
        self.metrics.fetched_bytes.inc_by(size);
        self.metrics
            .fetch_duration
            .observe(started.elapsed().as_secs_f64());
        if current.is_some() {
            self.metrics.revalidation(if replaced_on_disk {
                revalidation_outcome::REPLACED
            } else {
                revalidation_outcome::UNCHANGED
            });
        }
        let replaced = self.remember(identifier, &known) || replaced_on_disk;
        Ok(known.master(replaced))
    }

    /// Streams `body` into a new tmp file; checks the length against `expected`.
    async fn download(
        &self,
        image_key: &str,
        mut body: aws_sdk_s3::primitives::ByteStream,
        expected: Option<u64>,
    ) -> Result<(TmpFile, u64), DownloadError> {
        let (tmp_dir, stem) = (self.layout.tmp_dir(), image_key.to_owned());
        let mut tmp = tokio::task::spawn_blocking(move || TmpFile::create(&tmp_dir, &stem))
            .await
            .map_err(|e| DownloadError::Cache(io::Error::other(e)))?
            .map_err(DownloadError::Cache)?;
        let clone = tmp.file().try_clone().map_err(DownloadError::Cache)?;
        let mut file = tokio::fs::File::from_std(clone);
        let mut written: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout(self.stall_timeout, body.next()).await {
                Err(_) => {
                    return Err(DownloadError::Body(format!(
                        "no data for {:?} after {written} bytes",
                        self.stall_timeout
                    )))
                }
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Err(DownloadError::Body(format!(
                        "after {written} bytes: {}",
                        DisplayErrorContext(&error)
                    )))
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            file.write_all(&chunk).await.map_err(DownloadError::Cache)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(DownloadError::Cache)?;
        drop(file);
        if let Some(expected) = expected.filter(|&n| n != written) {
            return Err(DownloadError::Body(format!(
                "got {written} bytes, Content-Length said {expected}"
            )));
        }
        Ok((tmp, written))
    }
}

/// The secret key from the config or its file (first line, trimmed).
fn read_secret(s3: &S3Config) -> Result<Option<String>, StartupError> {
    if let Some(secret) = &s3.secret_access_key {
        return Ok(Some(secret.clone()));
    }
    let Some(path) = &s3.secret_access_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|error| StartupError::SecretFile {
        path: path.clone(),
        problem: error.to_string(),
    })?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(StartupError::SecretFile {
            path: path.clone(),
            problem: "the first line is empty".into(),
        });
    }
    Ok(Some(secret.to_owned()))
}

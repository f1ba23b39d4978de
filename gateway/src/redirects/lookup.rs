//! The read side of the ID archive: is this identifier retired, and where did it go?
//!
//! Every public request asks, so the answer must cost nothing in the common case. Three rules
//! keep it that way:
//!
//! - **Answers are cached in process**, positive and negative alike (most identifiers are not
//!   retired, so "not redirected" is the answer the cache exists for), for `cache_ttl`, in a
//!   bounded map ([`coalesce::TtlMap`]: when full, expired answers go first, then the older
//!   half). Concurrent lookups of one uncached identifier share one Redis read
//!   ([`coalesce::SingleFlight::detached`]).
//! - **A lookup never blocks a request for longer than `lookup_timeout`.** The Redis read runs in
//!   its own task; a request that stops waiting is answered [`Lookup::Unknown`] (the caller serves
//!   the image as if it were not retired: fail open), and the read still fills the cache when it
//!   completes (a detached flight finishes whoever waits for it).
//! - **A failing Redis costs nothing per request.** After a failure a circuit breaker skips Redis
//!   for a backoff period (100 ms, doubling to 5 s, reset by the first fast success). While it is
//!   open, lookups answer from the last known record of the identifier if there is one (Redis
//!   being down, nobody can have changed it; an expired answer stays in the map as this
//!   fallback until the map needs room), and [`Lookup::Unknown`] otherwise.
//!
//! Freshness comes from the invalidation channel (`{prefix}invalidate`, delivered by
//! [`crate::events`], see [`invalidations`]): every edit publishes the identifier, and every node evicts it within
//! a round trip. The time-to-live bounds the damage of a missed message. **An invalidation is
//! never undone by a read that started before it**: every invalidation starts a new epoch; a
//! read keeps its answer only if no invalidation came in while it ran, and lookups after an
//! invalidation start a read of their own instead of joining one from before it (reads are keyed
//! by epoch and identifier). Invalidations are rare (admin edits), so an invalidation of one
//! identifier costing a few extra reads of others in flight at that moment is cheap.
//!
//! This module does not write to Redis; it reads records in the layout of [`idarchive::keys`]
//! through [`idarchive::codec`], like the store. Errors never leave this module: they are
//! counted in `iiif_gateway_redirect_errors_total{reason}` and logged when the breaker changes
//! state.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use coalesce::{Boarding, SingleFlight, TtlMap};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use prometheus::IntCounter;
use tokio::time::Instant;

use crate::config::RedirectsConfig;
use crate::metrics::Metrics;

pub mod invalidations;
mod source;

pub use idarchive::Redirect;
pub use source::RedisSource;

/// The shortest time the breaker keeps Redis skipped after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest; a dead Redis is retried this often.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A Redis read is abandoned after this long, whatever `lookup_timeout` says, so that a stuck
/// connection cannot hold a read in flight for long.
const MIN_READ_DEADLINE: Duration = Duration::from_secs(1);

/// Everything except the RFC 3986 unreserved characters `[A-Za-z0-9._~-]`: a target identifier
/// becomes exactly one path segment, so `/` is encoded as `%2F`.
const SEGMENT_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'-');

/// Percent-encodes a decoded identifier as one URL path segment.
pub fn encode_segment(identifier: &str) -> String {
    utf8_percent_encode(identifier, SEGMENT_ENCODE_SET).to_string()
}

/// The answer to one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The identifier is retired.
    Redirect(Redirect),
    /// The identifier is not in the archive: serve it.
    NotRedirected,
    /// Redis could not be asked in time and nothing is known: serve it (fail open).
    Unknown,
}

impl From<Option<Redirect>> for Lookup {
    fn from(record: Option<Redirect>) -> Self {
        record.map_or(Lookup::NotRedirected, Lookup::Redirect)
    }
}

/// The answer from what was known before, when Redis cannot be asked.
fn fallback(stale: Option<Option<Redirect>>) -> Lookup {
    stale.map_or(Lookup::Unknown, Lookup::from)
}

/// Why a read of the archive failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Redis unreachable, the connection dropped, or no answer before the read deadline.
    Connection(String),
    /// Redis answered with an error that concerns every key (authentication, loading, …).
    Server(String),
    /// The record exists but does not follow the data model (`idarchive::codec`); the
    /// identifier is served as if it were not retired, and the problem logged.
    InvalidRecord(String),
}

impl ReadError {
    fn reason(&self) -> &'static str {
        match self {
            ReadError::Connection(_) => "connection",
            ReadError::Server(_) => "server",
            ReadError::InvalidRecord(_) => "invalid_record",
        }
    }
}

/// Where records come from: Redis in production, a stand-in in the unit tests.
#[async_trait]
pub trait RecordSource: Send + Sync + 'static {
    /// The record of `identifier` (decoded), `None` when it is not retired.
    async fn read(&self, identifier: &str) -> Result<Option<Redirect>, ReadError>;
}

/// Settings of a [`RedirectLookup`], taken from `gateway.redirects`.
#[derive(Debug, Clone, Copy)]
pub struct LookupSettings {
    pub lookup_timeout: Duration,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
}

impl From<&RedirectsConfig> for LookupSettings {
    fn from(config: &RedirectsConfig) -> Self {
        LookupSettings {
            lookup_timeout: config.lookup_timeout,
            cache_ttl: config.cache_ttl,
            cache_capacity: config.cache_capacity,
        }
    }
}

/// The outcome of one read, shared by the lookups that waited for it.
type ReadResult = Result<Option<Redirect>, ReadError>;

/// The answers known, and the epoch they belong to.
struct Answers {
    /// The archive's answer per identifier, fresh until its time-to-live, then kept as the
    /// fallback for when Redis cannot be asked (until it is replaced or the map needs room).
    known: TtlMap<String, Option<Redirect>>,
    /// Bumped by every invalidation: a read started in an earlier epoch does not keep its
    /// answer, and lookups in this one do not join it.
    epoch: u64,
}

/// The cache of archive answers in front of a [`RecordSource`].
pub struct RedirectLookup {
    source: Arc<dyn RecordSource>,
    /// The same source when it is Redis, for the subscriber and the warm-up.
    redis: Option<Arc<RedisSource>>,
    answers: Mutex<Answers>,
    /// Reads in flight, keyed `{epoch}:{identifier}`; detached, so a read whose requests gave up
    /// still fills the cache.
    reads: Arc<SingleFlight<ReadResult>>,
    breaker: Mutex<Breaker>,
    settings: LookupSettings,
    read_deadline: Duration,
    metrics: Arc<Metrics>,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
}

/// What [`RedirectLookup::lookup`] decided while holding the lock.
enum Step {
    Answer(Lookup),
    Wait {
        read: Boarding<ReadResult>,
        /// The previous answer, if any, to fall back on.
        stale: Option<Option<Redirect>>,
    },
}

impl RedirectLookup {
    /// A lookup reading the archive from Redis. Nothing connects until the first lookup or the
    /// start of the node events (`crate::events`), so this can run before Pingora forks and starts runtimes.
    pub fn from_config(config: &RedirectsConfig, metrics: Arc<Metrics>) -> Self {
        let settings = LookupSettings::from(config);
        let source = Arc::new(RedisSource::new(
            &config.redis_url,
            &config.key_prefix,
            read_deadline(settings.lookup_timeout),
        ));
        RedirectLookup {
            redis: Some(source.clone()),
            ..Self::new(source, settings, metrics)
        }
    }

    /// A lookup in front of any record source.
    pub fn new(
        source: Arc<dyn RecordSource>,
        settings: LookupSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Create every series up front, so dashboards show zeros rather than gaps.
        for kind in idarchive::Kind::ALL {
            metrics.redirects.with_label_values(&[kind.as_str()]);
        }
        for reason in [
            "timeout",
            "connection",
            "server",
            "invalid_record",
            "circuit_open",
            "subscription",
        ] {
            metrics.redirect_errors.with_label_values(&[reason]);
        }
        RedirectLookup {
            source,
            redis: None,
            answers: Mutex::new(Answers {
                known: TtlMap::new(settings.cache_capacity),
                epoch: 0,
            }),
            reads: Arc::new(SingleFlight::new()),
            breaker: Mutex::new(Breaker::default()),
            read_deadline: read_deadline(settings.lookup_timeout),
            settings,
            cache_hits: metrics.redirect_cache_lookups.with_label_values(&["hit"]),
            cache_misses: metrics.redirect_cache_lookups.with_label_values(&["miss"]),
            metrics,
        }
    }

    /// What the archive says about `identifier` (decoded), within `lookup_timeout`.
    pub async fn lookup(self: &Arc<Self>, identifier: &str) -> Lookup {
        let started = Instant::now();
        let (read, stale) = match self.step(identifier, started) {
            Step::Answer(answer) => return answer,
            Step::Wait { read, stale } => (read, stale),
        };
        match tokio::time::timeout(self.settings.lookup_timeout, read.answer()).await {
            Ok(Some(Ok(record))) => Lookup::from(record),
            Ok(Some(Err(ReadError::InvalidRecord(_)))) => Lookup::NotRedirected,
            Ok(Some(Err(_))) => fallback(stale),
            // The read task was dropped (runtime shutting down).
            Ok(None) => fallback(stale),
            Err(_) => {
                self.count_error("timeout");
                // Reads that started before the breaker opened were accounted for already; a
                // lookup that joined a read waited no longer than it, so its start serves.
                self.record_failure(started, "no answer within lookup_timeout");
                fallback(stale)
            }
        }
    }

    /// Decides under the lock: answer from memory, or join (or start) the read of this epoch.
    fn step(self: &Arc<Self>, identifier: &str, now: Instant) -> Step {
        let answers = self.answers();
        let stale = match answers.known.get(identifier, now) {
            Some(found) if found.fresh => {
                self.cache_hits.inc();
                return Step::Answer(Lookup::from(found.value.clone()));
            }
            Some(found) => Some(found.value.clone()),
            None => None,
        };
        self.cache_misses.inc();
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if breaker.is_open(now) {
            // Redis is failing: even joining a read in flight would cost the timeout for nothing.
            self.count_error("circuit_open");
            return Step::Answer(fallback(stale));
        }
        let epoch = answers.epoch;
        let lookup = Arc::clone(self);
        let owned = identifier.to_owned();
        let read = self
            .reads
            .detached(&format!("{epoch}:{identifier}"), move || {
                // Starting a read: past its backoff, the breaker lets this one through as the
                // probe and holds the others back meanwhile (it is not open, so it allows).
                let allowed = breaker.allows(now);
                debug_assert!(allowed);
                drop(breaker);
                async move { lookup.read(owned, epoch, now).await }
            });
        Step::Wait { read, stale }
    }

    /// Reads one record from the source and keeps it (unless an invalidation came in meanwhile).
    async fn read(&self, identifier: String, epoch: u64, started: Instant) -> ReadResult {
        let result =
            match tokio::time::timeout(self.read_deadline, self.source.read(&identifier)).await {
                Ok(result) => result,
                Err(_) => Err(ReadError::Connection(format!(
                    "no answer within {:?}",
                    self.read_deadline
                ))),
            };
        let elapsed = started.elapsed();
        match &result {
            Ok(_) => {
                self.metrics
                    .redirect_lookup_duration
                    .observe(elapsed.as_secs_f64());
                // A late answer (the requests already gave up) proves Redis alive but does
                // not close the breaker: the next cold lookup would pay the timeout again.
                if elapsed <= self.settings.lookup_timeout {
                    self.record_success();
                }
            }
            Err(ReadError::InvalidRecord(why)) => {
                self.metrics
                    .redirect_lookup_duration
                    .observe(elapsed.as_secs_f64());
                self.count_error("invalid_record");
                log::warn!("redirect record of {identifier:?} ignored: {why}");
                self.record_success();
            }
            Err(error) => {
                self.count_error(error.reason());
                self.record_failure(started, &format!("{error:?}"));
            }
        }
        // Kept before the flight lands, so a lookup right after it finds the answer.
        self.keep(identifier, epoch, &result);
        result
    }

    /// Stores a read's answer, unless an invalidation came in since the read started (then the
    /// answer may predate the edit and is given to the waiters only). A failed read leaves the
    /// previous answer in place, as the fallback.
    fn keep(&self, identifier: String, epoch: u64, result: &ReadResult) {
        let answer = match result {
            Ok(record) => record.clone(),
            // Cached as "not retired", so a bad record does not cost a Redis read per request.
            Err(ReadError::InvalidRecord(_)) => None,
            Err(_) => return,
        };
        let mut answers = self.answers();
        if answers.epoch != epoch {
            return;
        }
        let now = Instant::now();
        answers
            .known
            .insert(identifier, answer, now + self.settings.cache_ttl, now);
    }

    /// Forgets what is known about `identifier` (its record changed).
    pub fn purge(&self, identifier: &str) {
        let mut answers = self.answers();
        answers.known.remove(identifier);
        answers.epoch += 1;
    }

    /// Forgets everything (a bulk import, or invalidations that may have been missed).
    pub fn purge_all(&self) {
        let mut answers = self.answers();
        answers.known.clear();
        answers.epoch += 1;
    }

    /// Number of identifiers held (fresh or stale).
    pub fn len(&self) -> usize {
        self.answers().known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether lookups currently skip Redis.
    pub fn circuit_open(&self) -> bool {
        self.breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_open(Instant::now())
    }

    /// The answers, also after a panic elsewhere: every critical section leaves them consistent.
    fn answers(&self) -> MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_error(&self, reason: &str) {
        self.metrics
            .redirect_errors
            .with_label_values(&[reason])
            .inc();
    }

    fn record_failure(&self, started: Instant, why: &str) {
        let opened = self
            .breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failure(started, Instant::now());
        if let Some(backoff) = opened {
            log::warn!(
                "redirect lookups: Redis failed ({why}); serving without redirects, next try in {backoff:?}"
            );
        }
    }

    fn record_success(&self) {
        if self
            .breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .success()
        {
            log::info!("redirect lookups: Redis answers again");
        }
    }
}

/// The read deadline for a given request timeout.
fn read_deadline(lookup_timeout: Duration) -> Duration {
    lookup_timeout.max(MIN_READ_DEADLINE)
}

// === impl Breaker ===

/// The circuit breaker in front of Redis: closed (Redis asked), or open until a deadline.
///
/// When the deadline passes, the next lookup goes through as a probe and the breaker re-arms
/// for the same backoff meanwhile, so a dead Redis sees one probe per backoff period, not one
/// per request. A failed probe doubles the backoff (up to [`MAX_BACKOFF`]); a fast success
/// closes the breaker and resets it.
#[derive(Debug, Default)]
struct Breaker {
    /// `None` while closed.
    open_until: Option<Instant>,
    backoff: Duration,
    /// When the breaker last opened or re-armed: failures of reads started before that were
    /// already accounted for (many requests fail together when Redis dies).
    armed_at: Option<Instant>,
}

impl Breaker {
    /// Whether a read may go to Redis now.
    fn allows(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => {
                // This read is the probe; hold the others back while it runs.
                self.open_until = Some(now + self.backoff);
                self.armed_at = Some(now);
                true
            }
        }
    }

    /// Whether Redis is being skipped now (without arming a probe).
    fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// Records a failed read that started at `started`; returns the backoff when the breaker
    /// just opened (to log the transition once).
    fn failure(&mut self, started: Instant, now: Instant) -> Option<Duration> {
        let was_closed = self.open_until.is_none();
        if self.armed_at.is_some_and(|armed| started < armed) {
            return None;
        }
        self.backoff = if was_closed {
            MIN_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        self.open_until = Some(now + self.backoff);
        self.armed_at = Some(now);
        was_closed.then_some(self.backoff)
    }

    /// Records a fast successful read; returns whether the breaker was open.
    fn success(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        *self = Breaker::default();
        was_open
    }
}

#[cfg(test)]
mod tests;

//! The read side of the ID archive: is this identifier retired, and where did it go?
//!
//! Every public request asks, so the answer must cost nothing in the common case. Three rules
//! keep it that way:
//!
//! - **Answers are cached in process**, positive and negative alike (most identifiers are not
//!   retired, so "not redirected" is the answer the cache exists for), for `cache_ttl`, in a
//!   bounded map. Concurrent lookups of one uncached identifier share one Redis read (single
//!   flight).
//! - **A lookup never blocks a request for longer than `lookup_timeout`.** The Redis read runs in
//!   its own task; a request that stops waiting is answered [`Lookup::Unknown`] (the caller serves
//!   the image as if it were not retired: fail open), and the read still fills the cache when it
//!   completes.
//! - **A failing Redis costs nothing per request.** After a failure a circuit breaker skips Redis
//!   for a backoff period (100 ms, doubling to 5 s, reset by the first fast success). While it is
//!   open, lookups answer from the last known record of the identifier if there is one (Redis
//!   being down, nobody can have changed it), and [`Lookup::Unknown`] otherwise.
//!
//! Freshness comes from the invalidation channel (`{prefix}invalidate`, see
//! [`invalidations::run`]): every edit publishes the identifier, and every node evicts it within
//! a round trip. The time-to-live bounds the damage of a missed message.
//!
//! This module does not write to Redis; the record format is the contract in `docs/redirects.md`.
//! Errors never leave this module: they are counted in
//! `iiif_gateway_redirect_errors_total{reason}` and logged when the breaker changes state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use prometheus::IntCounter;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::RedirectsConfig;
use crate::metrics::Metrics;

pub mod invalidations;
mod source;

pub use source::{check_redis_url, RedisSource};

/// The shortest time the breaker keeps Redis skipped after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest; a dead Redis is retried this often.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A Redis read is abandoned after this long, whatever `lookup_timeout` says, so that a stuck
/// connection cannot pin a cache slot.
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

/// What the archive says about a retired identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// Moved permanently (301 or 308) to `target`.
    Moved { target: Arc<str> },
    /// Moved temporarily (302 or 307) to `target`.
    Temporary { target: Arc<str> },
    /// Withdrawn (410).
    Gone,
}

impl Redirect {
    /// The record's `kind` as stored in Redis and used as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Redirect::Moved { .. } => "moved",
            Redirect::Temporary { .. } => "temporary",
            Redirect::Gone => "gone",
        }
    }
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

/// Why a read of the archive failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Redis unreachable, the connection dropped, or no answer before the read deadline.
    Connection(String),
    /// Redis answered with an error that concerns every key (authentication, loading, …).
    Server(String),
    /// The record exists but does not follow the data model; the identifier is served as if
    /// it were not retired, and the problem logged.
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

/// The state of one read in flight; waiters watch it until it holds the outcome.
type ReadOutcome = Option<Result<Option<Redirect>, ReadError>>;

/// One identifier in the cache.
enum Entry {
    /// The archive's answer, fresh until `fresh_until`; kept after that as the fallback for
    /// when Redis cannot be asked (until it is replaced or the map needs room).
    Known {
        record: Option<Redirect>,
        fresh_until: Instant,
    },
    /// A read is in flight.
    Reading {
        generation: u64,
        started: Instant,
        outcome: watch::Receiver<ReadOutcome>,
        /// The previous answer, if any, for the waiters to fall back on.
        stale: Option<Option<Redirect>>,
    },
}

/// The cache of archive answers in front of a [`RecordSource`].
pub struct RedirectLookup {
    source: Arc<dyn RecordSource>,
    /// The same source when it is Redis, for the subscriber and the warm-up.
    redis: Option<Arc<RedisSource>>,
    entries: Mutex<HashMap<String, Entry>>,
    breaker: Mutex<Breaker>,
    generations: AtomicU64,
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
        outcome: watch::Receiver<ReadOutcome>,
        started: Instant,
        stale: Option<Option<Redirect>>,
    },
}

impl RedirectLookup {
    /// A lookup reading the archive from Redis. Nothing connects until the first lookup or the
    /// start of [`invalidations::run`], so this can run before Pingora forks and starts runtimes.
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
        for kind in ["moved", "temporary", "gone"] {
            metrics.redirects.with_label_values(&[kind]);
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
            entries: Mutex::new(HashMap::new()),
            breaker: Mutex::new(Breaker::default()),
            generations: AtomicU64::new(0),
            read_deadline: read_deadline(settings.lookup_timeout),
            settings: LookupSettings {
                cache_capacity: settings.cache_capacity.max(1),
                ..settings
            },
            cache_hits: metrics.redirect_cache_lookups.with_label_values(&["hit"]),
            cache_misses: metrics.redirect_cache_lookups.with_label_values(&["miss"]),
            metrics,
        }
    }

    /// What the archive says about `identifier` (decoded), within `lookup_timeout`.
    pub async fn lookup(self: &Arc<Self>, identifier: &str) -> Lookup {
        let step = self.step(identifier);
        let (mut outcome, started, stale) = match step {
            Step::Answer(answer) => return answer,
            Step::Wait {
                outcome,
                started,
                stale,
            } => (outcome, started, stale),
        };
        let waited = tokio::time::timeout(
            self.settings.lookup_timeout,
            outcome.wait_for(Option::is_some),
        )
        .await;
        let fallback = || stale.clone().map_or(Lookup::Unknown, Lookup::from);
        match waited {
            Ok(Ok(outcome)) => match outcome.as_ref() {
                Some(Ok(record)) => Lookup::from(record.clone()),
                Some(Err(ReadError::InvalidRecord(_))) => Lookup::NotRedirected,
                _ => fallback(),
            },
            // The read task was dropped (runtime shutting down).
            Ok(Err(_)) => fallback(),
            Err(_) => {
                self.count_error("timeout");
                self.record_failure(started, "no answer within lookup_timeout");
                fallback()
            }
        }
    }

    /// Decides under the lock: answer from memory, join a read in flight, or start one.
    fn step(self: &Arc<Self>, identifier: &str) -> Step {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("redirect cache lock");
        let stale = match entries.get(identifier) {
            Some(Entry::Known {
                record,
                fresh_until,
            }) => {
                if now < *fresh_until {
                    self.cache_hits.inc();
                    return Step::Answer(Lookup::from(record.clone()));
                }
                Some(record.clone())
            }
            Some(Entry::Reading {
                started,
                outcome,
                stale,
                ..
            }) => {
                // A read older than its deadline was lost (its task dropped); start another.
                if now.duration_since(*started) <= self.read_deadline {
                    self.cache_misses.inc();
                    // Redis is failing: joining the read would cost the timeout for nothing.
                    if self.breaker.lock().expect("breaker lock").is_open(now) {
                        self.count_error("circuit_open");
                        return Step::Answer(stale.clone().map_or(Lookup::Unknown, Lookup::from));
                    }
                    return Step::Wait {
                        outcome: outcome.clone(),
                        started: *started,
                        stale: stale.clone(),
                    };
                }
                stale.clone()
            }
            None => None,
        };
        self.cache_misses.inc();
        if !self.breaker.lock().expect("breaker lock").allows(now) {
            self.count_error("circuit_open");
            return Step::Answer(stale.map_or(Lookup::Unknown, Lookup::from));
        }
        if entries.len() >= self.settings.cache_capacity && !entries.contains_key(identifier) {
            make_room(&mut entries, now, self.settings.cache_capacity);
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let (sender, outcome) = watch::channel(None);
        entries.insert(
            identifier.to_owned(),
            Entry::Reading {
                generation,
                started: now,
                outcome: outcome.clone(),
                stale: stale.clone(),
            },
        );
        drop(entries);
        let lookup = Arc::clone(self);
        let identifier = identifier.to_owned();
        tokio::spawn(async move {
            lookup.read(identifier, generation, now, sender).await;
        });
        Step::Wait {
            outcome,
            started: now,
            stale,
        }
    }

    /// Reads one record from the source, stores it, and tells the waiters.
    async fn read(
        &self,
        identifier: String,
        generation: u64,
        started: Instant,
        sender: watch::Sender<ReadOutcome>,
    ) {
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
        self.settle(&identifier, generation, &result);
        let _ = sender.send(Some(result));
    }

    /// Replaces the read's slot with its outcome, unless an invalidation removed or replaced it
    /// meanwhile (then the answer may predate the edit and is given to the waiters only).
    fn settle(
        &self,
        identifier: &str,
        generation: u64,
        result: &Result<Option<Redirect>, ReadError>,
    ) {
        let mut entries = self.entries.lock().expect("redirect cache lock");
        let Some(Entry::Reading {
            generation: current,
            stale,
            ..
        }) = entries.get(identifier)
        else {
            return;
        };
        if *current != generation {
            return;
        }
        let now = Instant::now();
        let known = match result {
            Ok(record) => Some((record.clone(), now + self.settings.cache_ttl)),
            // Cached as "not retired", so a bad record does not cost a Redis read per request.
            Err(ReadError::InvalidRecord(_)) => Some((None, now + self.settings.cache_ttl)),
            // Keep the previous answer as the fallback, already stale.
            Err(_) => stale.clone().map(|record| (record, now)),
        };
        match known {
            Some((record, fresh_until)) => {
                entries.insert(
                    identifier.to_owned(),
                    Entry::Known {
                        record,
                        fresh_until,
                    },
                );
            }
            None => {
                entries.remove(identifier);
            }
        }
    }

    /// Forgets what is known about `identifier` (its record changed).
    pub fn purge(&self, identifier: &str) {
        self.entries
            .lock()
            .expect("redirect cache lock")
            .remove(identifier);
    }

    /// Forgets everything (a bulk import, or invalidations that may have been missed).
    pub fn purge_all(&self) {
        self.entries.lock().expect("redirect cache lock").clear();
    }

    /// Number of identifiers held (fresh, stale or being read).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("redirect cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether lookups currently skip Redis.
    pub fn circuit_open(&self) -> bool {
        self.breaker
            .lock()
            .expect("breaker lock")
            .is_open(Instant::now())
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
            .expect("breaker lock")
            .failure(started, Instant::now());
        if let Some(backoff) = opened {
            log::warn!(
                "redirect lookups: Redis failed ({why}); serving without redirects, next try in {backoff:?}"
            );
        }
    }

    fn record_success(&self) {
        if self.breaker.lock().expect("breaker lock").success() {
            log::info!("redirect lookups: Redis answers again");
        }
    }
}

/// The read deadline for a given request timeout.
fn read_deadline(lookup_timeout: Duration) -> Duration {
    lookup_timeout.max(MIN_READ_DEADLINE)
}

/// Removes expired answers, then the older half of the rest if that was not enough. Runs only
/// when the map is full, so its cost is spread over many insertions. Reads in flight stay.
fn make_room(entries: &mut HashMap<String, Entry>, now: Instant, capacity: usize) {
    entries.retain(|_, entry| match entry {
        Entry::Known { fresh_until, .. } => now < *fresh_until,
        Entry::Reading { .. } => true,
    });
    if entries.len() >= capacity {
        let mut expiries: Vec<Instant> = entries
            .values()
            .filter_map(|entry| match entry {
                Entry::Known { fresh_until, .. } => Some(*fresh_until),
                Entry::Reading { .. } => None,
            })
            .collect();
        if expiries.is_empty() {
            return;
        }
        expiries.sort_unstable();
        let cutoff = expiries[expiries.len() / 2];
        entries.retain(|_, entry| match entry {
            Entry::Known { fresh_until, .. } => *fresh_until > cutoff,
            Entry::Reading { .. } => true,
        });
    }
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

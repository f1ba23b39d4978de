//! The cache and the circuit breaker against a stand-in source (no Redis). Tests that depend on
//! time run on tokio's paused clock, so they are exact and instant. (Which records are valid is
//! `idarchive::codec`'s rule, tested there.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// How the stand-in source behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers from `records` after `delay`.
    Answer { delay: Duration },
    /// Fails as an unreachable Redis would, after `delay`.
    Fail { delay: Duration },
}

struct FakeSource {
    records: Mutex<HashMap<String, Option<Redirect>>>,
    behaviour: Mutex<Behaviour>,
    reads: AtomicUsize,
}

impl FakeSource {
    fn new() -> Arc<Self> {
        Arc::new(FakeSource {
            records: Mutex::new(HashMap::new()),
            behaviour: Mutex::new(Behaviour::Answer {
                delay: Duration::ZERO,
            }),
            reads: AtomicUsize::new(0),
        })
    }

    fn set(&self, identifier: &str, record: Option<Redirect>) {
        self.records
            .lock()
            .unwrap()
            .insert(identifier.into(), record);
    }

    fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RecordSource for FakeSource {
    async fn read(&self, identifier: &str) -> Result<Option<Redirect>, ReadError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let behaviour = *self.behaviour.lock().unwrap();
        match behaviour {
            Behaviour::Answer { delay } => {
                // Redis reads the record at once; the answer then takes `delay` to arrive.
                let answer = match self.records.lock().unwrap().get(identifier) {
                    Some(Some(Redirect::Moved { target })) if &**target == "broken" => {
                        Err(ReadError::InvalidRecord("unknown kind".into()))
                    }
                    Some(record) => Ok(record.clone()),
                    None => Ok(None),
                };
                tokio::time::sleep(delay).await;
                answer
            }
            Behaviour::Fail { delay } => {
                tokio::time::sleep(delay).await;
                Err(ReadError::Connection("connection refused".into()))
            }
        }
    }
}

const TTL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_millis(50);

fn lookup_with(source: &Arc<FakeSource>, capacity: usize) -> Arc<RedirectLookup> {
    Arc::new(RedirectLookup::new(
        source.clone(),
        LookupSettings {
            lookup_timeout: TIMEOUT,
            cache_ttl: TTL,
            cache_capacity: capacity,
        },
        Arc::new(Metrics::new()),
    ))
}

fn moved(target: &str) -> Redirect {
    Redirect::Moved {
        target: Arc::from(target),
    }
}

fn counted(lookup: &RedirectLookup, family: &str, label: &str) -> u64 {
    match family {
        "cache" => lookup
            .metrics
            .redirect_cache_lookups
            .with_label_values(&[label])
            .get(),
        _ => lookup
            .metrics
            .redirect_errors
            .with_label_values(&[label])
            .get(),
    }
}

#[tokio::test]
async fn not_redirected_is_cached_too() {
    let source = FakeSource::new();
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("plain").await, Lookup::NotRedirected);
    assert_eq!(lookup.lookup("plain").await, Lookup::NotRedirected);
    assert_eq!(source.reads(), 1);
    assert_eq!(counted(&lookup, "cache", "hit"), 1);
    assert_eq!(counted(&lookup, "cache", "miss"), 1);
}

#[tokio::test]
async fn every_kind_is_answered() {
    let source = FakeSource::new();
    source.set("old", Some(moved("new")));
    source.set(
        "away",
        Some(Redirect::Temporary {
            target: Arc::from("elsewhere"),
        }),
    );
    source.set("withdrawn", Some(Redirect::Gone));
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    assert_eq!(
        lookup.lookup("away").await,
        Lookup::Redirect(Redirect::Temporary {
            target: Arc::from("elsewhere")
        })
    );
    assert_eq!(
        lookup.lookup("withdrawn").await,
        Lookup::Redirect(Redirect::Gone)
    );
}

#[tokio::test(start_paused = true)]
async fn answers_expire_after_the_ttl() {
    let source = FakeSource::new();
    source.set("old", Some(moved("new")));
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    source.set("old", Some(moved("newer")));
    tokio::time::sleep(TTL - Duration::from_millis(1)).await;
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("newer")));
    assert_eq!(source.reads(), 2);
}

#[tokio::test]
async fn concurrent_misses_share_one_read() {
    let source = FakeSource::new();
    source.set("old", Some(moved("new")));
    source.behave(Behaviour::Answer {
        delay: Duration::from_millis(20),
    });
    let lookup = Arc::new(RedirectLookup::new(
        source.clone(),
        LookupSettings {
            lookup_timeout: Duration::from_secs(5),
            cache_ttl: TTL,
            cache_capacity: 100,
        },
        Arc::new(Metrics::new()),
    ));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let lookup = lookup.clone();
            tokio::spawn(async move { lookup.lookup("old").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Lookup::Redirect(moved("new")));
    }
    assert_eq!(source.reads(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_costs_at_most_the_timeout_and_still_fills_the_cache() {
    let source = FakeSource::new();
    source.set("old", Some(moved("new")));
    source.behave(Behaviour::Answer {
        delay: Duration::from_millis(200),
    });
    let lookup = lookup_with(&source, 100);
    let started = Instant::now();
    assert_eq!(lookup.lookup("old").await, Lookup::Unknown);
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(counted(&lookup, "errors", "timeout"), 1);
    assert!(lookup.circuit_open());
    // The read goes on and its answer is kept.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    assert_eq!(source.reads(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_skipped_while_the_circuit_is_open() {
    let source = FakeSource::new();
    source.behave(Behaviour::Fail {
        delay: Duration::ZERO,
    });
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("a").await, Lookup::Unknown);
    assert_eq!(source.reads(), 1);
    assert_eq!(counted(&lookup, "errors", "connection"), 1);
    // Within the first backoff (100 ms) nothing reaches the source, and nothing waits.
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(lookup.lookup(&format!("id-{i}")).await, Lookup::Unknown);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    assert_eq!(source.reads(), 1);
    assert_eq!(counted(&lookup, "errors", "circuit_open"), 20);
    // After it, one probe goes through; it fails, so the next wait is 200 ms.
    tokio::time::sleep(MIN_BACKOFF).await;
    assert_eq!(lookup.lookup("b").await, Lookup::Unknown);
    assert_eq!(source.reads(), 2);
    tokio::time::sleep(MIN_BACKOFF).await;
    assert_eq!(lookup.lookup("c").await, Lookup::Unknown);
    assert_eq!(source.reads(), 2);
    // Redis comes back: the next probe succeeds and closes the circuit.
    source.behave(Behaviour::Answer {
        delay: Duration::ZERO,
    });
    tokio::time::sleep(MIN_BACKOFF).await;
    assert_eq!(lookup.lookup("d").await, Lookup::NotRedirected);
    assert!(!lookup.circuit_open());
    assert_eq!(lookup.lookup("e").await, Lookup::NotRedirected);
    assert_eq!(source.reads(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_known_answer_outlives_its_ttl_while_redis_fails() {
    let source = FakeSource::new();
    source.set("old", Some(moved("new")));
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    tokio::time::sleep(TTL * 2).await;
    source.behave(Behaviour::Fail {
        delay: Duration::ZERO,
    });
    // The failed read falls back to the last answer, and so do lookups while the circuit is open.
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    assert!(lookup.circuit_open());
    assert_eq!(lookup.lookup("old").await, Lookup::Redirect(moved("new")));
    assert_eq!(lookup.lookup("other").await, Lookup::Unknown);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_redis_costs_the_timeout_once_per_backoff() {
    let source = FakeSource::new();
    source.behave(Behaviour::Answer {
        delay: Duration::from_secs(3600),
    });
    let lookup = lookup_with(&source, 100);
    let started = Instant::now();
    assert_eq!(lookup.lookup("a").await, Lookup::Unknown);
    assert_eq!(started.elapsed(), TIMEOUT);
    // Joining the read in flight does not wait either while the circuit is open.
    let started = Instant::now();
    assert_eq!(lookup.lookup("a").await, Lookup::Unknown);
    assert_eq!(lookup.lookup("b").await, Lookup::Unknown);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(source.reads(), 1);
}

#[tokio::test]
async fn purge_forgets_one_identifier_and_purge_all_everything() {
    let source = FakeSource::new();
    source.set("a", Some(moved("x")));
    source.set("b", Some(moved("y")));
    let lookup = lookup_with(&source, 100);
    lookup.lookup("a").await;
    lookup.lookup("b").await;
    source.set("a", Some(Redirect::Gone));
    source.set("b", None);
    lookup.purge("a");
    assert_eq!(lookup.lookup("a").await, Lookup::Redirect(Redirect::Gone));
    assert_eq!(lookup.lookup("b").await, Lookup::Redirect(moved("y")));
    lookup.purge_all();
    assert!(lookup.is_empty());
    assert_eq!(lookup.lookup("b").await, Lookup::NotRedirected);
    assert_eq!(source.reads(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_during_a_read_is_not_undone_by_it() {
    let source = FakeSource::new();
    source.set("a", Some(moved("old-target")));
    source.behave(Behaviour::Answer {
        delay: Duration::from_millis(30),
    });
    let lookup = lookup_with(&source, 100);
    let reading = {
        let lookup = lookup.clone();
        tokio::spawn(async move { lookup.lookup("a").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    source.set("a", Some(moved("new-target")));
    lookup.purge("a");
    // The read that started before the edit may answer the old target, but does not keep it.
    assert_eq!(
        reading.await.unwrap(),
        Lookup::Redirect(moved("old-target"))
    );
    assert_eq!(
        lookup.lookup("a").await,
        Lookup::Redirect(moved("new-target"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_lookup_after_an_invalidation_does_not_join_the_read_before_it() {
    let source = FakeSource::new();
    source.set("a", Some(moved("old-target")));
    source.behave(Behaviour::Answer {
        delay: Duration::from_millis(30),
    });
    let lookup = lookup_with(&source, 100);
    let before = {
        let lookup = lookup.clone();
        tokio::spawn(async move { lookup.lookup("a").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    source.set("a", Some(moved("new-target")));
    lookup.purge("a");
    // Asked while the read from before the edit is still in flight: a read of its own.
    let after = {
        let lookup = lookup.clone();
        tokio::spawn(async move { lookup.lookup("a").await })
    };
    assert_eq!(before.await.unwrap(), Lookup::Redirect(moved("old-target")));
    assert_eq!(after.await.unwrap(), Lookup::Redirect(moved("new-target")));
    assert_eq!(source.reads(), 2);
    assert_eq!(
        lookup.lookup("a").await,
        Lookup::Redirect(moved("new-target"))
    );
    assert_eq!(source.reads(), 2, "the second read's answer was kept");
}

#[tokio::test]
async fn invalid_records_are_served_as_not_redirected_and_counted() {
    let source = FakeSource::new();
    source.set("a", Some(moved("broken")));
    let lookup = lookup_with(&source, 100);
    assert_eq!(lookup.lookup("a").await, Lookup::NotRedirected);
    assert_eq!(lookup.lookup("a").await, Lookup::NotRedirected);
    assert_eq!(source.reads(), 1);
    assert_eq!(counted(&lookup, "errors", "invalid_record"), 1);
    assert!(!lookup.circuit_open());
}

#[tokio::test]
async fn the_map_stays_bounded() {
    let source = FakeSource::new();
    let lookup = lookup_with(&source, 10);
    for i in 0..100 {
        lookup.lookup(&i.to_string()).await;
        assert!(lookup.len() <= 10, "{}", lookup.len());
    }
}

// === the breaker on its own ===

#[test]
fn the_backoff_doubles_up_to_five_seconds_and_resets_on_success() {
    let mut breaker = Breaker::default();
    let mut now = Instant::now();
    assert!(breaker.allows(now));
    assert_eq!(breaker.failure(now, now), Some(MIN_BACKOFF));
    let mut expected = MIN_BACKOFF;
    for _ in 0..10 {
        assert!(!breaker.allows(now + expected - Duration::from_millis(1)));
        now += expected;
        assert!(breaker.allows(now), "the probe goes through");
        assert!(!breaker.allows(now), "only one probe");
        assert_eq!(breaker.failure(now, now), None, "already open: logged once");
        expected = (expected * 2).min(MAX_BACKOFF);
        assert_eq!(breaker.backoff, expected);
    }
    assert_eq!(expected, MAX_BACKOFF);
    assert!(breaker.success());
    assert!(breaker.allows(now));
    assert_eq!(breaker.failure(now, now), Some(MIN_BACKOFF));
}

#[test]
fn failures_of_reads_started_before_the_breaker_opened_count_once() {
    let mut breaker = Breaker::default();
    let start = Instant::now();
    let later = start + Duration::from_millis(5);
    // Ten reads started together; all fail.
    assert_eq!(breaker.failure(start, later), Some(MIN_BACKOFF));
    for _ in 0..9 {
        assert_eq!(breaker.failure(start, later), None);
    }
    assert_eq!(breaker.backoff, MIN_BACKOFF);
}

// === encoding ===

#[test]
fn targets_become_one_encoded_path_segment() {
    assert_eq!(encode_segment("plain-id_1.tif~"), "plain-id_1.tif~");
    assert_eq!(encode_segment("a/b"), "a%2Fb");
    assert_eq!(encode_segment("café 1+2"), "caf%C3%A9%201%2B2");
    assert_eq!(encode_segment("50%?#[]"), "50%25%3F%23%5B%5D");
}

//! Image facts (size, tiles, pyramid) per identifier, kept in memory.
//!
//! Every v3 request needs the image's size before it can be translated, so the facts are on the
//! path of every request. They are fetched from iipsrv once per identifier and time-to-live,
//! however many requests for a new image arrive together (single flight: the first caller fetches,
//! the others wait for its result). Failures are not kept, so the next request asks again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iiif::{BackendInfo, ImageFacts};
use tokio::sync::OnceCell;

use crate::reply::Failure;

/// What the gateway knows about one image.
#[derive(Debug)]
pub struct ImageRecord {
    pub info: BackendInfo,
    pub facts: ImageFacts,
    /// iipsrv's `Last-Modified` (the master file's mtime), passed on to clients.
    pub last_modified: Option<String>,
}

type Slot = Arc<OnceCell<Arc<ImageRecord>>>;

struct Entry {
    slot: Slot,
    created: Instant,
}

/// A bounded map from identifier to facts with a time-to-live.
pub struct FactsCache {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
}

/// Whether a lookup was answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl FactsCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        FactsCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The facts of `identifier`, from memory or from `fetch` (run at most once at a time per
    /// identifier).
    ///
    /// # Errors
    /// The failure of `fetch`; it is not remembered.
    pub async fn get<F, Fut>(
        &self,
        identifier: &str,
        fetch: F,
    ) -> Result<(Arc<ImageRecord>, Lookup), Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ImageRecord, Failure>>,
    {
        let slot = self.slot(identifier);
        if let Some(record) = slot.get() {
            return Ok((record.clone(), Lookup::Hit));
        }
        let mut fetched_here = false;
        let result = slot
            .get_or_try_init(|| {
                fetched_here = true;
                async { fetch().await.map(Arc::new) }
            })
            .await;
        match result {
            Ok(record) => Ok((
                record.clone(),
                if fetched_here {
                    Lookup::Miss
                } else {
                    Lookup::Hit
                },
            )),
            Err(failure) => {
                self.forget_slot(identifier, &slot);
                Err(failure)
            }
        }
    }

    /// Drops what is known about `identifier` (its master changed or was purged).
    pub fn invalidate(&self, identifier: &str) {
        self.entries
            .lock()
            .expect("facts cache lock")
            .remove(identifier);
    }

    /// Drops the facts of every copy of `identifier`'s master (keys `identifier` and
    /// `identifier\0version`); returns how many entries went. Scans the map: for purges, not for
    /// the request path.
    pub fn invalidate_image(&self, identifier: &str) -> usize {
        let mut entries = self.entries.lock().expect("facts cache lock");
        let before = entries.len();
        entries.retain(|key, _| {
            key.strip_prefix(identifier)
                .is_none_or(|rest| !(rest.is_empty() || rest.starts_with('\0')))
        });
        before - entries.len()
    }

    /// Number of identifiers held.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("facts cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, identifier: &str) -> Slot {
        let mut entries = self.entries.lock().expect("facts cache lock");
        let now = Instant::now();
        if let Some(entry) = entries.get(identifier) {
            if now.duration_since(entry.created) < self.ttl {
                return entry.slot.clone();
            }
        }
        if entries.len() >= self.capacity {
            Self::make_room(&mut entries, now, self.ttl, self.capacity);
        }
        let slot = Slot::default();
        entries.insert(
            identifier.to_owned(),
            Entry {
                slot: slot.clone(),
                created: now,
            },
        );
        slot
    }

    /// Removes expired entries, then the oldest half if that was not enough. Runs only when the
    /// map is full, so its cost is spread over many insertions.
    fn make_room(
        entries: &mut HashMap<String, Entry>,
        now: Instant,
        ttl: Duration,
        capacity: usize,
    ) {
        entries.retain(|_, entry| now.duration_since(entry.created) < ttl);
        if entries.len() >= capacity {
            let mut ages: Vec<Instant> = entries.values().map(|entry| entry.created).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            entries.retain(|_, entry| entry.created > cutoff);
        }
    }

    /// Removes a failed slot, unless another request already replaced it.
    fn forget_slot(&self, identifier: &str, slot: &Slot) {
        let mut entries = self.entries.lock().expect("facts cache lock");
        if entries
            .get(identifier)
            .is_some_and(|entry| Arc::ptr_eq(&entry.slot, slot))
        {
            entries.remove(identifier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn sample_record(width: u32) -> ImageRecord {
        let json = format!(
            r#"{{"@context":"http://iiif.io/api/image/2/context.json","@id":"x","protocol":"http://iiif.io/api/image","width":{width},"height":100,"tiles":[{{"width":256,"height":256,"scaleFactors":[1]}}],"profile":["http://iiif.io/api/image/2/level1.json",{{"maxWidth":5000,"maxHeight":5000}}]}}"#
        );
        let info = iiif::parse_backend_info(json.as_bytes()).unwrap();
        ImageRecord {
            facts: info.facts(),
            info,
            last_modified: None,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let cache = Arc::new(FactsCache::new(Duration::from_secs(60), 100));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get("a", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(sample_record(640))
                    })
                    .await
                    .map(|(record, _)| record.facts.width)
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 640);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_not_remembered() {
        let cache = FactsCache::new(Duration::from_secs(60), 100);
        let failed = cache
            .get("a", || async { Err(Failure::new(503, "down")) })
            .await;
        assert_eq!(failed.unwrap_err().status, 503);
        let (record, lookup) = cache
            .get("a", || async { Ok(sample_record(10)) })
            .await
            .unwrap();
        assert_eq!((record.facts.width, lookup), (10, Lookup::Miss));
        let (_, lookup) = cache
            .get("a", || async { Ok(sample_record(99)) })
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Hit);
    }

    #[tokio::test]
    async fn expired_entries_are_fetched_again() {
        let cache = FactsCache::new(Duration::from_millis(10), 100);
        cache
            .get("a", || async { Ok(sample_record(10)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (record, lookup) = cache
            .get("a", || async { Ok(sample_record(20)) })
            .await
            .unwrap();
        assert_eq!((record.facts.width, lookup), (20, Lookup::Miss));
    }

    #[tokio::test]
    async fn invalidation_forces_a_fetch() {
        let cache = FactsCache::new(Duration::from_secs(60), 100);
        cache
            .get("a", || async { Ok(sample_record(10)) })
            .await
            .unwrap();
        cache.invalidate("a");
        let (record, _) = cache
            .get("a", || async { Ok(sample_record(30)) })
            .await
            .unwrap();
        assert_eq!(record.facts.width, 30);
    }

    #[tokio::test]
    async fn purging_an_image_drops_every_copy_and_no_other_image() {
        let cache = FactsCache::new(Duration::from_secs(60), 100);
        for key in ["a", "a\0v1", "a\0v2", "ab", "ab\0v1", "b"] {
            cache
                .get(key, || async { Ok(sample_record(10)) })
                .await
                .unwrap();
        }
        assert_eq!(cache.invalidate_image("a"), 3);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.invalidate_image("a"), 0);
    }

    #[tokio::test]
    async fn the_map_stays_bounded() {
        let cache = FactsCache::new(Duration::from_secs(60), 10);
        for i in 0..100 {
            cache
                .get(&i.to_string(), || async { Ok(sample_record(10)) })
                .await
                .unwrap();
            assert!(cache.len() <= 10);
        }
    }
}

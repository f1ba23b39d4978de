//! Image facts (size, tiles, pyramid) per identifier, kept in memory.
//!
//! Every v3 request needs the image's size before it can be translated, so the facts are on the
//! path of every request. They are fetched from iipsrv once per identifier and time-to-live,
//! however many requests for a new image arrive together (single flight: the first caller
//! fetches, the others wait for its result, failures included). Failures are not kept, so the
//! next request asks again.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalesce::{Role, SingleFlight, TtlMap};
use iiif::{BackendInfo, ImageFacts};
use tokio::time::Instant;

use crate::error::Error;

/// What the gateway knows about one image.
#[derive(Debug)]
pub struct ImageRecord {
    pub info: BackendInfo,
    pub facts: ImageFacts,
    /// iipsrv's `Last-Modified` (the master file's mtime), passed on to clients.
    pub last_modified: Option<String>,
}

/// A bounded map from identifier to facts with a time-to-live.
pub struct FactsCache {
    known: Mutex<TtlMap<String, Arc<ImageRecord>>>,
    fetches: SingleFlight<Result<Arc<ImageRecord>, Error>>,
    ttl: Duration,
}

/// Whether a lookup was answered without fetching (from memory, or by another request's fetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl FactsCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        FactsCache {
            known: Mutex::new(TtlMap::new(capacity)),
            fetches: SingleFlight::new(),
            ttl,
        }
    }

    /// The facts of `identifier`, from memory or from `fetch` (run at most once at a time per
    /// identifier; a caller that goes away hands the fetch over to one that waits).
    ///
    /// # Errors
    /// The failure of `fetch`, shared by the requests that waited for it; it is not remembered.
    pub async fn get<F, Fut>(
        &self,
        identifier: &str,
        fetch: F,
    ) -> Result<(Arc<ImageRecord>, Lookup), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ImageRecord, Error>>,
    {
        if let Some(record) = self.known().get_fresh(identifier, Instant::now()) {
            return Ok((record.clone(), Lookup::Hit));
        }
        let (result, role) = self
            .fetches
            .run(identifier, || async {
                let record = Arc::new(fetch().await?);
                // Kept before the flight lands, so a request right after it finds the facts.
                let now = Instant::now();
                self.known()
                    .insert(identifier.to_owned(), record.clone(), now + self.ttl, now);
                Ok(record)
            })
            .await;
        let lookup = match role {
            Role::Leader => Lookup::Miss,
            Role::Follower => Lookup::Hit,
        };
        result.map(|record| (record, lookup))
    }

    /// Drops the facts of every copy of `identifier`'s master (keys `identifier` and
    /// `identifier\0version`); returns how many entries went. Scans the map: for purges, not for
    /// the request path.
    pub fn invalidate_image(&self, identifier: &str) -> usize {
        self.known().retain(|key, _| {
            key.strip_prefix(identifier)
                .is_none_or(|rest| !(rest.is_empty() || rest.starts_with('\0')))
        })
    }

    /// Drops every image's facts.
    pub fn clear(&self) {
        self.known().retain(|_, _| false);
    }

    /// Number of identifiers held.
    pub fn len(&self) -> usize {
        self.known().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn known(&self) -> std::sync::MutexGuard<'_, TtlMap<String, Arc<ImageRecord>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
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
            .get("a", || async {
                Err(Error::from(crate::error::Iipsrv::NoProcess))
            })
            .await;
        assert_eq!(failed.unwrap_err().response().status, 503);
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
        assert_eq!(cache.invalidate_image("a"), 1);
        let (record, _) = cache
            .get("a", || async { Ok(sample_record(30)) })
            .await
            .unwrap();
        assert_eq!(record.facts.width, 30);
    }

    #[tokio::test]
    async fn concurrent_misses_share_a_failure() {
        let cache = Arc::new(FactsCache::new(Duration::from_secs(60), 100));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("a", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err(Error::from(crate::error::Iipsrv::NoProcess))
                    })
                    .await
                    .is_err()
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(cache.is_empty());
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

//! A bounded map whose entries expire.
//!
//! Not locked inside: callers that need several steps to be atomic (look, then start a read)
//! hold their own lock around it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::Instant;

/// An entry as [`TtlMap::get`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a, V> {
    /// The value.
    pub value: &'a V,
    /// Whether it is still within its time-to-live.
    pub fresh: bool,
}

/// A map with a capacity and an expiry time per entry.
///
/// Expired entries are not dropped when they expire: [`TtlMap::get`] still finds them (as
/// stale), which lets a cache answer from an old value when its source is down. They go when
/// the map needs room: an insertion into a full map first drops every expired entry, then, if
/// that was not enough, the older half of the rest by expiry time. That runs only when the map
/// is full, so its cost is spread over many insertions.
#[derive(Debug)]
pub struct TtlMap<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
}

impl<K: Eq + Hash, V> TtlMap<K, V> {
    /// An empty map that holds at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        TtlMap {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The entry under `key`, fresh or stale, as of `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<Found<'_, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, expires)| Found {
            value,
            fresh: now < *expires,
        })
    }

    /// The value under `key` if it has not expired by `now`.
    pub fn get_fresh<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key, now)
            .filter(|found| found.fresh)
            .map(|found| found.value)
    }

    /// Inserts `value` under `key` until `expires`, making room first when the map is full.
    pub fn insert(&mut self, key: K, value: V, expires: Instant, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(key, (value, expires));
    }

    /// Removes the entry under `key` and returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key).map(|(value, _)| value)
    }

    /// Keeps only the entries for which `keep` is true; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|key, (value, _)| keep(key, value));
        before - self.entries.len()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of entries, fresh or stale.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries the map holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, (_, expires)| now < *expires);
        if self.entries.len() >= self.capacity {
            let mut expiries: Vec<Instant> = self.entries.values().map(|(_, e)| *e).collect();
            expiries.sort_unstable();
            let cutoff = expiries[expiries.len() / 2];
            self.entries.retain(|_, (_, expires)| *expires > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn entries_are_fresh_until_they_expire_then_stale() {
        let now = Instant::now();
        let mut map = TtlMap::new(10);
        map.insert("a", 1, now + secs(10), now);
        assert_eq!(map.get_fresh("a", now), Some(&1));
        let later = now + secs(11);
        assert_eq!(map.get_fresh("a", later), None);
        assert_eq!(
            map.get("a", later),
            Some(Found {
                value: &1,
                fresh: false
            })
        );
    }

    #[test]
    fn a_full_map_drops_expired_entries_first() {
        let now = Instant::now();
        let mut map = TtlMap::new(3);
        map.insert("old", 0, now + secs(1), now);
        map.insert("b", 1, now + secs(100), now);
        map.insert("c", 2, now + secs(100), now);
        let later = now + secs(2);
        map.insert("d", 3, later + secs(100), later);
        assert_eq!(map.len(), 3);
        assert!(map.get("old", later).is_none());
        assert!(map.get("b", later).is_some());
    }

    #[test]
    fn a_full_map_of_fresh_entries_drops_the_older_half() {
        let now = Instant::now();
        let mut map = TtlMap::new(4);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            map.insert(key, i, now + secs(10 + i as u64), now);
        }
        map.insert("e", 9, now + secs(100), now);
        // a, b and c expire first; d and the new entry stay.
        assert_eq!(map.len(), 2);
        assert!(map.get("d", now).is_some());
        assert!(map.get("e", now).is_some());
    }

    #[test]
    fn replacing_a_key_in_a_full_map_drops_nothing() {
        let now = Instant::now();
        let mut map = TtlMap::new(2);
        map.insert("a", 1, now + secs(10), now);
        map.insert("b", 2, now + secs(10), now);
        map.insert("a", 3, now + secs(10), now);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get_fresh("a", now), Some(&3));
    }

    #[test]
    fn retain_counts_what_went() {
        let now = Instant::now();
        let mut map = TtlMap::new(10);
        for key in ["a", "a\0v1", "b"] {
            map.insert(key.to_owned(), (), now + secs(10), now);
        }
        assert_eq!(map.retain(|key, _| !key.starts_with('a')), 2);
        assert_eq!(map.len(), 1);
        map.clear();
        assert!(map.is_empty());
    }

    proptest! {
        /// Whatever is inserted, and whenever, the map stays within its capacity and keeps
        /// the entry just inserted.
        #[test]
        fn the_map_stays_bounded(
            capacity in 1usize..20,
            inserts in prop::collection::vec((0u8..40, 0u64..50, 0u64..5), 1..200),
        ) {
            let start = Instant::now();
            let mut map = TtlMap::new(capacity);
            let mut clock = start;
            for (key, ttl, step) in inserts {
                clock += secs(step);
                map.insert(key, ttl, clock + secs(ttl), clock);
                prop_assert!(map.len() <= capacity);
                prop_assert_eq!(map.get(&key, clock).map(|f| *f.value), Some(ttl));
            }
        }
    }
}

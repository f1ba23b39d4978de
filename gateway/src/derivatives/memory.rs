//! The hottest derivatives kept in memory, in front of the disk.
//!
//! A hit served from memory costs a map lookup; from disk it costs a hop to the blocking pool and
//! a file read, which measured at about a third of the gateway's CPU per cached tile. Entries are
//! few and small (tiles, thumbnails), so a byte budget with first-in-first-out eviction is
//! enough: a popular tile that was evicted comes back on its next disk hit.
//!
//! The budget counts what an entry really costs, not only its body: its path twice (the map's
//! key and the eviction queue's), and a fixed [`ENTRY_OVERHEAD`] for the map slot, the queue
//! slot and the allocator's rounding. Counting bodies alone, 1.5 M tiny entries would have made
//! a "64 MiB" tier hold 0.7 GB.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Bytes an entry costs beyond its body and its path's two copies: the map slot (a `String`
/// and a `Bytes`, 56 bytes, at a load factor of 7/8), the queue's `String` (24), the heap
/// headers of both path copies and of the body, rounded up.
pub(super) const ENTRY_OVERHEAD: usize = 160;

/// What keeping `body` under `path` costs.
fn cost(path: &str, body: &Bytes) -> usize {
    body.len() + 2 * path.len() + ENTRY_OVERHEAD
}

/// A byte-bounded map from derivative path to its bytes.
pub(super) struct MemoryTier {
    entries: HashMap<String, Bytes>,
    /// Insertion order, for eviction; may name entries already removed.
    order: VecDeque<String>,
    bytes: usize,
    capacity: usize,
}

impl MemoryTier {
    /// A tier whose entries cost at most `capacity` bytes in all (0 = keep nothing).
    pub(super) fn new(capacity: usize) -> Self {
        MemoryTier {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    pub(super) fn get(&self, path: &str) -> Option<Bytes> {
        self.entries.get(path).cloned()
    }

    /// Keeps `bytes` under `path`, evicting the oldest entries to make room. An entry costing
    /// more than an eighth of the budget is not kept: it would flush too much for one entry.
    pub(super) fn insert(&mut self, path: &str, bytes: Bytes) {
        let needed = cost(path, &bytes);
        if needed > self.capacity / 8 {
            return;
        }
        if let Some(old) = self.entries.remove(path) {
            self.bytes -= cost(path, &old);
        }
        while self.bytes + needed > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= cost(&oldest, &evicted);
            }
        }
        self.bytes += needed;
        self.entries.insert(path.to_owned(), bytes);
        self.order.push_back(path.to_owned());
        self.compact();
    }

    /// Stale names of replaced or removed entries accumulate in `order`; drops them once they
    /// outnumber the live entries, so the queue stays proportional to the map.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|p| entries.contains_key(p));
        }
    }

    /// Drops every entry whose path starts with `prefix` (one image's directory).
    pub(super) fn remove_prefix(&mut self, prefix: &str) {
        let bytes = &mut self.bytes;
        self.entries.retain(|path, body| {
            let keep = !path.starts_with(prefix);
            if !keep {
                *bytes -= cost(path, body);
            }
            keep
        });
        self.compact();
    }

    /// What the entries cost, bodies and bookkeeping.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    /// Each entry of these tests costs this much: a 3-byte path and a 100-byte body.
    const ONE: usize = 100 + 2 * 3 + ENTRY_OVERHEAD;

    #[test]
    fn entries_come_back_until_evicted_oldest_first() {
        let mut tier = MemoryTier::new(8 * ONE);
        tier.insert("a/1", body(100));
        tier.insert("a/2", body(100));
        assert_eq!(tier.get("a/1").map(|b| b.len()), Some(100));
        for i in 0..6 {
            tier.insert(&format!("b/{i}"), body(100));
        }
        assert_eq!(tier.bytes(), 8 * ONE);
        tier.insert("c", body(100));
        assert!(tier.get("a/1").is_none(), "the oldest went first");
        assert!(tier.get("a/2").is_some());
        assert!(tier.get("c").is_some());
    }

    #[test]
    fn large_bodies_and_a_zero_budget_keep_nothing() {
        let mut tier = MemoryTier::new(8 * ONE);
        tier.insert("big", body(101));
        assert!(tier.get("big").is_none());
        tier.insert("fit", body(100));
        assert!(tier.get("fit").is_some());
        let mut none = MemoryTier::new(0);
        none.insert("x", body(1));
        assert!(none.get("x").is_none());
        assert_eq!(none.bytes(), 0);
    }

    #[test]
    fn removing_a_prefix_drops_one_image_only() {
        let mut tier = MemoryTier::new(10_000);
        tier.insert("/d/ab/x/1.jpg", body(10));
        tier.insert("/d/ab/x/2.png", body(20));
        tier.insert("/d/ab/y/1.jpg", body(30));
        tier.remove_prefix("/d/ab/x/");
        assert!(tier.get("/d/ab/x/1.jpg").is_none());
        assert!(tier.get("/d/ab/x/2.png").is_none());
        assert!(tier.get("/d/ab/y/1.jpg").is_some());
        assert_eq!(tier.bytes(), 30 + 2 * 13 + ENTRY_OVERHEAD);
    }

    #[test]
    fn many_tiny_entries_are_bounded_by_what_they_cost() {
        let capacity = 1 << 20;
        let mut tier = MemoryTier::new(capacity);
        for i in 0..100_000 {
            tier.insert(&format!("/cache/derivatives/{i:08}.jpg"), body(1));
        }
        // Counting bodies alone would have kept all 100,000.
        let per_entry = 1 + 2 * 31 + ENTRY_OVERHEAD;
        assert_eq!(tier.entries.len(), capacity / per_entry);
        assert!(tier.bytes() <= capacity);
    }

    proptest! {
        #[test]
        fn the_budget_is_never_exceeded_and_the_count_is_exact(
            operations in prop::collection::vec((0u8..20, 0usize..150, any::<bool>()), 1..300),
        ) {
            let mut tier = MemoryTier::new(4000);
            for (key, size, remove) in operations {
                if remove {
                    tier.remove_prefix(&format!("k{key}"));
                } else {
                    tier.insert(&format!("k{key}"), body(size));
                }
                prop_assert!(tier.bytes() <= 4000);
                let counted: usize = tier.entries.iter().map(|(p, b)| cost(p, b)).sum();
                prop_assert_eq!(counted, tier.bytes());
                prop_assert!(tier.order.len() <= 2 * tier.entries.len() + 65);
            }
        }
    }
}

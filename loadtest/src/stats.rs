//! Exact latency statistics: every latency is kept, so medians and percentiles are real observed values of
//! exactly the group they describe. Percentiles of different groups are never averaged: the `any` row is
//! computed from the merged latencies.
//!
//! Percentiles use the nearest-rank definition: the p-th percentile is the smallest recorded latency such that
//! at least p % of the recorded latencies are less than or equal to it (the value at rank `⌈p/100 · n⌉`). The
//! median is the 50th percentile by this definition, so for an even count it is the lower of the two middle
//! values, never an interpolated value nobody observed.

/// The sorted latencies of one group, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    sorted: Vec<u64>,
}

impl Latencies {
    /// Sorts `micros` once.
    pub fn new(mut micros: Vec<u64>) -> Latencies {
        micros.sort_unstable();
        Latencies { sorted: micros }
    }

    /// The number of latencies.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The nearest-rank `percentile` (0 < p ≤ 100); `None` when empty.
    ///
    /// # Panics
    ///
    /// When `percentile` is not in (0, 100].
    pub fn percentile(&self, percentile: f64) -> Option<u64> {
        assert!(
            percentile > 0.0 && percentile <= 100.0,
            "percentile {percentile} is not in (0, 100]"
        );
        if self.sorted.is_empty() {
            return None;
        }
        let n = self.sorted.len();
        // Rank ⌈p·n/100⌉, computed in integers where possible so 50 % of 4 is exactly rank 2.
        let exact = percentile * n as f64 / 100.0;
        let rank = (exact - 1e-9).ceil().max(1.0) as usize;
        Some(self.sorted[rank.min(n) - 1])
    }

    /// The median (the nearest-rank 50th percentile).
    pub fn median(&self) -> Option<u64> {
        self.percentile(50.0)
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> Option<f64> {
        if self.sorted.is_empty() {
            return None;
        }
        let sum: u128 = self.sorted.iter().map(|micros| u128::from(*micros)).sum();
        Some(sum as f64 / self.sorted.len() as f64)
    }

    /// The smallest latency.
    pub fn min(&self) -> Option<u64> {
        self.sorted.first().copied()
    }

    /// The largest latency.
    pub fn max(&self) -> Option<u64> {
        self.sorted.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_inputs() {
        let latencies = Latencies::new(vec![40, 10, 30, 20]);
        assert_eq!(latencies.len(), 4);
        assert_eq!(latencies.median(), Some(20));
        assert_eq!(latencies.percentile(25.0), Some(10));
        assert_eq!(latencies.percentile(75.0), Some(30));
        assert_eq!(latencies.percentile(76.0), Some(40));
        assert_eq!(latencies.percentile(100.0), Some(40));
        assert_eq!(latencies.mean(), Some(25.0));
        assert_eq!(latencies.min(), Some(10));
        assert_eq!(latencies.max(), Some(40));

        let odd = Latencies::new(vec![5, 1, 3]);
        assert_eq!(odd.median(), Some(3));

        // 1..=100: the p-th percentile is p itself; p99 of 1..=1000 is 990.
        let hundred = Latencies::new((1..=100).rev().collect());
        for p in [1u32, 10, 50, 90, 99, 100] {
            assert_eq!(hundred.percentile(f64::from(p)), Some(u64::from(p)));
        }
        let thousand = Latencies::new((1..=1000).collect());
        assert_eq!(thousand.percentile(99.0), Some(990));
        assert_eq!(thousand.percentile(99.9), Some(999));
    }

    #[test]
    fn empty_has_no_statistics() {
        let empty = Latencies::default();
        assert!(empty.is_empty());
        assert_eq!(empty.median(), None);
        assert_eq!(empty.mean(), None);
        assert_eq!(empty.min(), None);
        assert_eq!(empty.max(), None);
    }

    #[test]
    #[should_panic(expected = "not in (0, 100]")]
    fn percentile_zero_is_refused() {
        Latencies::new(vec![1]).percentile(0.0);
    }

    proptest! {
        #[test]
        fn percentiles_match_the_nearest_rank_definition(
            values in proptest::collection::vec(0u64..1_000_000, 1..300),
            percentile in 0.1f64..=100.0,
        ) {
            let latencies = Latencies::new(values.clone());
            let value = latencies.percentile(percentile).unwrap();
            let at_most = values.iter().filter(|v| **v <= value).count() as f64;
            let below = values.iter().filter(|v| **v < value).count() as f64;
            let n = values.len() as f64;
            // At least p % are <= the value, and fewer than p % are strictly below it.
            prop_assert!(at_most >= percentile / 100.0 * n - 1e-6);
            prop_assert!(below < percentile / 100.0 * n + 1e-6);
            prop_assert!(values.contains(&value));
        }

        #[test]
        fn percentiles_are_monotonic(values in proptest::collection::vec(0u64..1000, 1..100)) {
            let latencies = Latencies::new(values);
            let ps = [1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 100.0];
            let got: Vec<u64> = ps.iter().map(|p| latencies.percentile(*p).unwrap()).collect();
            prop_assert!(got.windows(2).all(|w| w[0] <= w[1]));
            prop_assert_eq!(got[0] >= latencies.min().unwrap(), true);
            prop_assert_eq!(*got.last().unwrap(), latencies.max().unwrap());
        }
    }
}

//! The `iiif_masters_*` metrics of a running [`crate::LazyFetch`], registered in the registry the
//! gateway serves on its admin listener. No identifier is ever a label value.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

/// Outcomes of one GET sent to S3 (`fetches_total{outcome}`).
pub(crate) mod fetch_outcome {
    /// 200: the object was downloaded and stored.
    pub(crate) const DOWNLOADED: &str = "downloaded";
    /// 304 to a conditional GET.
    pub(crate) const NOT_MODIFIED: &str = "not_modified";
    /// 404 / NoSuchKey.
    pub(crate) const NOT_FOUND: &str = "not_found";
    /// Connection failure, timeout, 5xx, or an interrupted or invalid body.
    pub(crate) const UNAVAILABLE: &str = "unavailable";
    /// Writing the cache failed.
    pub(crate) const CACHE_ERROR: &str = "cache_error";
    /// Larger than `max_master_bytes`: not downloaded.
    pub(crate) const TOO_LARGE: &str = "too_large";
    /// No GET sent: S3 said it has no such master less than `miss_ttl_s` ago.
    pub(crate) const REMEMBERED_MISSING: &str = "remembered_missing";
    pub(crate) const ALL: [&str; 7] = [
        DOWNLOADED,
        NOT_MODIFIED,
        NOT_FOUND,
        UNAVAILABLE,
        CACHE_ERROR,
        TOO_LARGE,
        REMEMBERED_MISSING,
    ];
}

/// Results of revalidating a cached master (`revalidations_total{outcome}`).
pub(crate) mod revalidation_outcome {
    /// S3 confirmed the cached copy (304, or 200 with the same ETag).
    pub(crate) const UNCHANGED: &str = "unchanged";
    /// S3 had a new copy; it replaced the cached one.
    pub(crate) const REPLACED: &str = "replaced";
    /// The object is gone from S3; the cached copy was removed.
    pub(crate) const GONE: &str = "gone";
    /// S3 could not be asked; the cached copy was served as it was.
    pub(crate) const UNAVAILABLE: &str = "unavailable";
    pub(crate) const ALL: [&str; 4] = [UNCHANGED, REPLACED, GONE, UNAVAILABLE];
}

/// Results of background warm-ups (`warmups_total{outcome}`).
pub(crate) mod warm_outcome {
    pub(crate) const OK: &str = "ok";
    pub(crate) const NO_RULE: &str = "no_rule";
    pub(crate) const NOT_FOUND: &str = "not_found";
    pub(crate) const UNAVAILABLE: &str = "unavailable";
    pub(crate) const ERROR: &str = "error";
    pub(crate) const ALL: [&str; 5] = [OK, NO_RULE, NOT_FOUND, UNAVAILABLE, ERROR];
}

/// Handles on every metric.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) fetches: IntCounterVec,
    pub(crate) fetched_bytes: IntCounter,
    pub(crate) fetch_duration: Histogram,
    pub(crate) single_flight_waits: IntCounter,
    pub(crate) revalidations: IntCounterVec,
    pub(crate) lock_waits: IntCounter,
    pub(crate) downloads_in_progress: IntGauge,
    pub(crate) warmups: IntCounterVec,
}

impl Metrics {
    pub(crate) fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let fetches = IntCounterVec::new(
            Opts::new(
                "iiif_masters_fetches_total",
                "GET requests sent to S3 for masters, by outcome",
            ),
            &["outcome"],
        )?;
        let fetched_bytes = IntCounter::new(
            "iiif_masters_fetched_bytes_total",
            "Bytes of masters downloaded from S3 and stored",
        )?;
        let fetch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "iiif_masters_fetch_duration_seconds",
                "Time from sending a GET to a master stored in the cache, for completed downloads",
            )
            .buckets(exponential_buckets(0.005, 2.5, 12)?),
        )?;
        let single_flight_waits = IntCounter::new(
            "iiif_masters_single_flight_waits_total",
            "Calls that waited for a download or revalidation already running in this process",
        )?;
        let revalidations = IntCounterVec::new(
            Opts::new(
                "iiif_masters_revalidations_total",
                "Revalidations of cached masters older than revalidate_after_s, by outcome",
            ),
            &["outcome"],
        )?;
        let lock_waits = IntCounter::new(
            "iiif_masters_lock_waits_total",
            "Downloads that waited for another node holding the Redis lock of the same master",
        )?;
        let downloads_in_progress = IntGauge::new(
            "iiif_masters_downloads_in_progress",
            "Downloads from S3 running now",
        )?;
        let warmups = IntCounterVec::new(
            Opts::new(
                "iiif_masters_warmups_total",
                "Background warm-ups (info.json), by outcome",
            ),
            &["outcome"],
        )?;
        for outcome in fetch_outcome::ALL {
            fetches.with_label_values(&[outcome]);
        }
        for outcome in revalidation_outcome::ALL {
            revalidations.with_label_values(&[outcome]);
        }
        for outcome in warm_outcome::ALL {
            warmups.with_label_values(&[outcome]);
        }
        registry.register(Box::new(fetches.clone()))?;
        registry.register(Box::new(fetched_bytes.clone()))?;
        registry.register(Box::new(fetch_duration.clone()))?;
        registry.register(Box::new(single_flight_waits.clone()))?;
        registry.register(Box::new(revalidations.clone()))?;
        registry.register(Box::new(lock_waits.clone()))?;
        registry.register(Box::new(downloads_in_progress.clone()))?;
        registry.register(Box::new(warmups.clone()))?;
        Ok(Metrics {
            fetches,
            fetched_bytes,
            fetch_duration,
            single_flight_waits,
            revalidations,
            lock_waits,
            downloads_in_progress,
            warmups,
        })
    }

    pub(crate) fn fetch(&self, outcome: &str) {
        self.fetches.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn revalidation(&self, outcome: &str) {
        self.revalidations.with_label_values(&[outcome]).inc();
    }
}

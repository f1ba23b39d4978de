//! Metrics of the derivative cache (`iiif_gateway_derivative_cache_…`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct DerivativeMetrics {
    /// Lookups by result: `hit`, `miss`, `bypass` (a size class the cache does not keep).
    pub lookups: IntCounterVec,
    /// Bytes of response bodies served from the cache.
    pub served_bytes: IntCounter,
    /// Attempts to store a derivative by outcome: `stored`, `failed`, `disk_full`, `too_large`
    /// (encoded above `gateway.derivatives.max_entry_size`; served, not kept), `over_hard_limit`
    /// (the cache mount is above `gateway.cache.hard_limit`; a prune is running).
    pub fills: IntCounterVec,
    /// Bytes written into the cache.
    pub filled_bytes: IntCounter,
    /// Requests that waited for an identical render already running instead of starting one.
    pub coalesced: IntCounter,
    /// Directories of one image removed (purge, replaced master), and the bytes they held.
    pub evictions: IntCounter,
    pub evicted_bytes: IntCounter,
    /// Bytes of derivatives held in memory.
    pub memory_bytes: IntGauge,
}

impl DerivativeMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When called twice with the same registry (a programming error).
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let counter =
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        DerivativeMetrics {
            lookups: counter_vec(
                "iiif_gateway_derivative_cache_lookups_total",
                "Derivative cache lookups by result (hit, miss, bypass).",
                "result",
            ),
            served_bytes: counter(
                "iiif_gateway_derivative_cache_served_bytes_total",
                "Bytes of responses served from the derivative cache.",
            ),
            fills: counter_vec(
                "iiif_gateway_derivative_cache_fills_total",
                "Derivatives written into the cache, by outcome (stored, failed, disk_full, too_large, over_hard_limit).",
                "outcome",
            ),
            filled_bytes: counter(
                "iiif_gateway_derivative_cache_filled_bytes_total",
                "Bytes written into the derivative cache.",
            ),
            coalesced: counter(
                "iiif_gateway_derivative_renders_coalesced_total",
                "Requests that waited for an identical render in progress instead of starting one.",
            ),
            evictions: counter(
                "iiif_gateway_derivative_cache_evictions_total",
                "Image directories removed from the derivative cache by the gateway (purge, replaced master).",
            ),
            evicted_bytes: counter(
                "iiif_gateway_derivative_cache_evicted_bytes_total",
                "Bytes removed from the derivative cache by the gateway.",
            ),
            memory_bytes: {
                let gauge = IntGauge::new(
                    "iiif_gateway_derivative_cache_memory_bytes",
                    "Bytes of the hottest derivatives held in memory.",
                )
                .expect("valid gauge");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("unique metric");
                gauge
            },
        }
    }
}

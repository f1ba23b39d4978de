//! Prometheus metrics of the gateway, served on the admin listener only.
//!
//! Names follow the Prometheus conventions: a `iiif_gateway_` namespace, `_total` on counters,
//! base units (`_seconds`, `_bytes`) and low-cardinality labels (never an identifier).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from a tile out of the memory tier (a tenth of a millisecond) to the
/// largest render iipsrv is given time for (a minute).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Latency buckets of one Redis read on a local network (tenths of a millisecond) up to the
/// read deadline.
const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every metric the gateway records, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by API version (`2`, `3`, `none`), endpoint kind, status code and
    /// derivative-cache outcome (`memory`, `disk`, `miss`, `coalesced`, `bypass`, `none`).
    pub requests: IntCounterVec,
    /// Request latency by API version, endpoint kind and derivative-cache outcome.
    pub request_duration: HistogramVec,
    /// Bytes of response bodies by endpoint kind.
    pub response_bytes: IntCounterVec,
    /// FastCGI exchanges with iipsrv by outcome (`ok`, `not_found`, `rejected`, `crashed`, `timeout`, `saturated`, `unavailable`, `error`).
    pub backend_requests: IntCounterVec,
    /// Time spent in iipsrv (including the wait for a free process) by request kind.
    pub backend_duration: HistogramVec,
    /// Image facts served from memory or fetched from iipsrv (`hit`, `miss`).
    pub facts_lookups: IntCounterVec,
    /// Gateway-side renders (transcoding, arbitrary rotation) by output format.
    pub render_duration: HistogramVec,
    /// The render budget: its size, what is reserved, renders running, refusals.
    pub render_budget: crate::budget::BudgetMetrics,
    /// iipsrv answers whose pixel size differed from what was asked (an iipsrv fault; should stay 0).
    pub backend_size_mismatches: IntCounter,
    /// iipsrv processes per health state (`healthy`, `down`).
    pub backends: IntGaugeVec,
    /// Requests currently being handled.
    pub in_flight: IntGauge,
    /// Connections open on the public listener.
    pub connections_open: IntGauge,
    /// Connections refused by the connection cap, by reason (`total`, `per_client`); requests
    /// refused by the per-client cap behind a trusted proxy are counted here too.
    pub connections_refused: IntCounterVec,
    /// Connections closed because their request head took longer than the head deadline.
    pub head_timeouts: IntCounter,
    /// Requests whose client went away before the answer; their queued work was dropped.
    pub client_disconnects: IntCounter,
    /// Requests answered from the ID archive, by record kind (`moved`, `temporary`, `gone`).
    pub redirects: IntCounterVec,
    /// Time of the Redis reads of redirect lookups (cache misses that reached Redis and got an
    /// answer).
    pub redirect_lookup_duration: Histogram,
    /// Redirect lookups answered from the in-process cache or not (`hit`, `miss`).
    pub redirect_cache_lookups: IntCounterVec,
    /// Redirect lookup problems by reason (`timeout`, `connection`, `server`, `invalid_record`,
    /// `circuit_open`, `subscription`). None of them fails a request: the lookup fails open.
    pub redirect_errors: IntCounterVec,
    /// Messages received on the invalidation channel.
    pub redirect_invalidations: IntCounter,
    /// 1 while the circuit breaker in front of the ID archive's Redis is open (lookups skip
    /// Redis and fail open), else 0; set when `/metrics` is read.
    pub redirect_circuit_open: IntGauge,
    /// The admission lanes in front of the iipsrv pool.
    pub admission: AdmissionMetrics,
}

/// The admission lanes of the iipsrv pool (`crate::admission`), labelled by lane (`small`,
/// `large`). The pool's scheduler keeps them current.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// Requests waiting for an iipsrv process.
    pub queued: IntGaugeVec,
    /// Requests holding an iipsrv process.
    pub in_service: IntGaugeVec,
    /// Time from arrival to getting a process, for requests that got one.
    pub queue_wait: HistogramVec,
    /// Requests refused with 503, by lane and reason (`queue_full`, `wait_estimate`, `deadline`).
    pub rejections: IntCounterVec,
    /// iipsrv processes taken out of rotation (`to="down"`: died, hung, refused) and put back
    /// (`to="up"`: answered again, e.g. restarted by its supervisor).
    pub health_changes: IntCounterVec,
}

impl AdmissionMetrics {
    fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["lane"]).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let queue_wait = HistogramVec::new(
            HistogramOpts::new(
                "iiif_gateway_admission_queue_wait_seconds",
                "Time requests waited for an iipsrv process, by admission lane.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["lane"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(queue_wait.clone()))
            .expect("unique metric");
        let rejections = IntCounterVec::new(
            Opts::new(
                "iiif_gateway_admission_rejections_total",
                "Requests refused with 503 before reaching iipsrv, by admission lane and reason.",
            ),
            &["lane", "reason"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(rejections.clone()))
            .expect("unique metric");
        let health_changes = IntCounterVec::new(
            Opts::new(
                "iiif_gateway_backend_health_changes_total",
                "iipsrv processes taken out of rotation (to=down) or put back (to=up).",
            ),
            &["to"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(health_changes.clone()))
            .expect("unique metric");
        AdmissionMetrics {
            queued: gauge(
                "iiif_gateway_admission_queued",
                "Requests waiting for an iipsrv process, by admission lane.",
            ),
            in_service: gauge(
                "iiif_gateway_admission_in_service",
                "Requests holding an iipsrv process, by admission lane.",
            ),
            queue_wait,
            rejections,
            health_changes,
        }
    }
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Only on a programming error (a metric defined twice or with an invalid name).
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = |name: &str, help: &str, labels: &[&str]| {
            let histogram = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry
                .register(Box::new(histogram.clone()))
                .expect("unique metric");
            histogram
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let single_counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let single_gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        Metrics {
            requests: counter(
                "iiif_gateway_requests_total",
                "Requests answered, by API version, endpoint kind, status code and derivative-cache outcome.",
                &["version", "kind", "status", "cache"],
            ),
            request_duration: latency(
                "iiif_gateway_request_duration_seconds",
                "Time from request to complete response, by API version, endpoint kind and derivative-cache outcome.",
                &["version", "kind", "cache"],
            ),
            response_bytes: counter(
                "iiif_gateway_response_bytes_total",
                "Bytes of response bodies, by endpoint kind.",
                &["kind"],
            ),
            backend_requests: counter(
                "iiif_gateway_backend_requests_total",
                "FastCGI exchanges with iipsrv, by outcome.",
                &["outcome"],
            ),
            backend_duration: latency(
                "iiif_gateway_backend_duration_seconds",
                "Time spent waiting for and in iipsrv, by request kind.",
                &["kind"],
            ),
            facts_lookups: counter(
                "iiif_gateway_image_facts_lookups_total",
                "Image facts (size, tiles) found in memory or fetched from iipsrv.",
                &["result"],
            ),
            render_duration: latency(
                "iiif_gateway_render_duration_seconds",
                "Time spent transcoding or rotating in the gateway, by output format.",
                &["format"],
            ),
            render_budget: crate::budget::BudgetMetrics {
                budget: single_gauge(
                    "iiif_gateway_render_budget_bytes",
                    "Memory for the gateway's own renders and the bodies they are sending (gateway.render.memory_mib).",
                ),
                reserved: single_gauge(
                    "iiif_gateway_render_reserved_bytes",
                    "Worst-case bytes reserved now by renders and their bodies in flight.",
                ),
                running: single_gauge(
                    "iiif_gateway_renders_running",
                    "Renders running on the gateway's render workers now.",
                ),
                refusals: counter(
                    "iiif_gateway_render_refusals_total",
                    "Requests refused by the render budget: over_budget (400, worst case above the per-request limit) or busy (503, no room in time).",
                    &["reason"],
                ),
            },
            backend_size_mismatches: single_counter(
                "iiif_gateway_backend_size_mismatches_total",
                "iipsrv answers whose pixel size differed from the request.",
            ),
            backends: {
                let gauge = IntGaugeVec::new(
                    Opts::new("iiif_gateway_backends", "iipsrv processes by health state."),
                    &["state"],
                )
                .expect("valid gauge");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("unique metric");
                gauge
            },
            in_flight: single_gauge(
                "iiif_gateway_requests_in_flight",
                "Requests being handled now.",
            ),
            connections_open: single_gauge(
                "iiif_gateway_connections_open",
                "Connections open on the public listener.",
            ),
            connections_refused: counter(
                "iiif_gateway_connections_refused_total",
                "Connections (and requests behind a trusted proxy) refused by the connection caps, by reason.",
                &["reason"],
            ),
            head_timeouts: single_counter(
                "iiif_gateway_request_head_timeouts_total",
                "Connections closed because the request head did not arrive within the head deadline.",
            ),
            client_disconnects: single_counter(
                "iiif_gateway_client_disconnects_total",
                "Requests whose client went away before the answer.",
            ),
            redirects: counter(
                "iiif_gateway_redirects_total",
                "Requests answered from the ID archive, by record kind.",
                &["kind"],
            ),
            redirect_lookup_duration: {
                let histogram = Histogram::with_opts(
                    HistogramOpts::new(
                        "iiif_gateway_redirect_lookup_duration_seconds",
                        "Time of the Redis reads of redirect lookups that missed the cache.",
                    )
                    .buckets(REDIS_BUCKETS.to_vec()),
                )
                .expect("valid histogram");
                registry
                    .register(Box::new(histogram.clone()))
                    .expect("unique metric");
                histogram
            },
            redirect_cache_lookups: counter(
                "iiif_gateway_redirect_cache_lookups_total",
                "Redirect lookups answered from the in-process cache (hit) or not (miss).",
                &["result"],
            ),
            redirect_errors: counter(
                "iiif_gateway_redirect_errors_total",
                "Redirect lookup problems, by reason (lookups fail open: requests are still served).",
                &["reason"],
            ),
            redirect_invalidations: single_counter(
                "iiif_gateway_redirect_invalidations_total",
                "Messages received on the redirect invalidation channel.",
            ),
            redirect_circuit_open: single_gauge(
                "iiif_gateway_redirect_circuit_open",
                "1 while the circuit breaker in front of the ID archive's Redis is open (lookups fail open).",
            ),
            admission: AdmissionMetrics::register(&registry),
            registry,
        }
        .with_build_info()
    }

    /// `iiif_gateway_build_info{version}` (always 1: join on it, or count versions during a
    /// rolling upgrade) and `iiif_gateway_start_time_seconds` (a restart shows as a change).
    fn with_build_info(self) -> Self {
        let info = IntGaugeVec::new(
            Opts::new(
                "iiif_gateway_build_info",
                "Always 1; the labels say which gateway release is running.",
            ),
            &["version"],
        )
        .expect("valid gauge");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let started = prometheus::Gauge::new(
            "iiif_gateway_start_time_seconds",
            "When this gateway process started, seconds since the Unix epoch.",
        )
        .expect("valid gauge");
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        for collector in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(started),
        ] {
            self.registry.register(collector).expect("unique metric");
        }
        self
    }

    /// The registry, for modules that register their own metrics (the master and derivative
    /// caches).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        buffer
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_contains_recorded_values() {
        let metrics = Metrics::new();
        metrics
            .requests
            .with_label_values(&["3", "image", "200", "disk"])
            .inc();
        metrics
            .request_duration
            .with_label_values(&["3", "image", "disk"])
            .observe(0.002);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(
                "iiif_gateway_requests_total{cache=\"disk\",kind=\"image\",status=\"200\",version=\"3\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "iiif_gateway_request_duration_seconds_bucket{cache=\"disk\",kind=\"image\",version=\"3\",le=\"0.0025\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("iiif_gateway_build_info{version=\""),
            "{text}"
        );
    }
}

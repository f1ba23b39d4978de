//! Room on the cache mount: an estimate of the cache's size, a prune in the background when a
//! derivative would take it past `gateway.cache.hard_limit`, and relief when the file system
//! itself is full.
//!
//! The mount is there for masters: a request cannot be served without its master, while a
//! derivative that is not stored only costs a render next time. So above the hard limit no new
//! derivative is written (master downloads go on) and a prune starts, which brings the cache
//! down to its low watermark. The cron prune keeps doing the everyday work; this is the guard
//! for when it is late, not running, or outpaced.
//!
//! The estimate is the last measurement (a scan of the cache, or a prune's result) plus what
//! this process wrote since. What other nodes and master downloads write shows at the next
//! scan, which runs every `gateway.cache.rescan_interval_s` at the most, off the request path.
//!
//! A "disk full" from the file system (a derivative's write or a master's download) counts as
//! being over the limit until the next measurement, and starts a relief prune: the budget was
//! set larger than the mount, or something else filled it, so the budget cannot say what to
//! remove. The relief prunes as if the budget were what the cache holds now: least recently
//! used images go until it is down to `low_watermark` of that (80% by default), and it runs
//! at most every [`MIN_PRUNE_GAP`]. The decisions are pure ([`Estimate::decide`], [`Estimate::disk_full`]);
//! [`Room`] runs the scans and prunes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lazyfetch::layout::CacheLayout;
use lazyfetch::prune::{self, PruneOptions};
use lazyfetch::size::ByteSize;
use lazyfetch::CacheConfig;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Prunes start at most this often, even when the cache stays over the limit after one (its
/// images are all in use, or masters alone are above it): each prune scans the whole mount.
const MIN_PRUNE_GAP: Duration = Duration::from_secs(10);

/// What to run in the background to measure the cache again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Count the cache's bytes.
    Scan,
    /// Prune to the low watermark; its result is the new measurement.
    Prune,
    /// The file system is full: prune as if the budget were what the cache holds now.
    Relieve,
}

impl Refresh {
    fn as_str(self) -> &'static str {
        match self {
            Refresh::Scan => "scan",
            Refresh::Prune => "prune",
            Refresh::Relieve => "relieve",
        }
    }
}

/// Whether a derivative may be written, and what to start in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) write: bool,
    pub(crate) refresh: Option<Refresh>,
}

/// What the gateway knows about the cache's size. Pure: times are passed in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Estimate {
    /// Bytes at the last measurement, and when it was taken (`None`: not measured yet).
    measured: Option<(u64, Instant)>,
    /// Bytes this process wrote since.
    written: u64,
    /// A scan or prune is running (one at a time).
    refreshing: bool,
    /// When the last relief prune started.
    relieved_at: Option<Instant>,
}

impl Estimate {
    /// The estimated size, when it has been measured.
    pub(crate) fn bytes(&self) -> Option<u64> {
        self.measured
            .map(|(bytes, _)| bytes.saturating_add(self.written))
    }

    /// Whether `bytes` more may be written under `hard_limit`, counting them when so. Before the
    /// first measurement every write is allowed (the first one starts a scan).
    pub(crate) fn decide(
        &mut self,
        bytes: u64,
        hard_limit: u64,
        rescan: Duration,
        now: Instant,
    ) -> Verdict {
        // A sum that overflows is past any limit.
        let over = self.bytes().is_some_and(|estimate| {
            estimate
                .checked_add(bytes)
                .is_none_or(|total| total > hard_limit)
        });
        let age = self
            .measured
            .map(|(_, at)| now.saturating_duration_since(at));
        let refresh = if self.refreshing {
            None
        } else if over {
            age.is_some_and(|age| age >= MIN_PRUNE_GAP)
                .then_some(Refresh::Prune)
        } else {
            age.is_none_or(|age| age >= rescan).then_some(Refresh::Scan)
        };
        self.refreshing |= refresh.is_some();
        if !over {
            self.written = self.written.saturating_add(bytes);
        }
        Verdict {
            write: !over,
            refresh,
        }
    }

    /// The file system said it is full: over the limit until the next measurement, and a
    /// relief prune to start unless a refresh is running or the last relief was too recent.
    /// (A recent scan does not delay it: a scan under the limit is what a full disk beneath a
    /// budget larger than the mount looks like.)
    pub(crate) fn disk_full(&mut self, hard_limit: u64, now: Instant) -> Option<Refresh> {
        let due = !self.refreshing
            && self
                .relieved_at
                .is_none_or(|at| now.saturating_duration_since(at) >= MIN_PRUNE_GAP);
        let at = self.measured.map_or(now, |(_, at)| at);
        self.measured = Some((hard_limit.saturating_add(1), at));
        self.written = 0;
        if due {
            self.refreshing = true;
            self.relieved_at = Some(now);
        }
        due.then_some(Refresh::Relieve)
    }

    /// A refresh started when `written_before` bytes were counted ended with `measured` bytes
    /// (`None`: it failed, the old estimate stays). What was written while it ran may not be
    /// in the measurement, so it stays counted.
    pub(crate) fn refreshed(&mut self, measured: Option<u64>, written_before: u64, now: Instant) {
        self.refreshing = false;
        if let Some(bytes) = measured {
            self.measured = Some((bytes, now));
            self.written = self.written.saturating_sub(written_before);
        }
    }

    fn written(&self) -> u64 {
        self.written
    }
}

/// The guard the derivative cache asks before each write.
pub struct Room {
    layout: CacheLayout,
    cache: CacheConfig,
    estimate: Mutex<Estimate>,
    metrics: RoomMetrics,
}

impl Room {
    pub fn new(cache: CacheConfig, registry: &Registry) -> Arc<Self> {
        let layout = CacheLayout::new(cache.root.clone());
        let metrics = RoomMetrics::register(registry);
        metrics.hard_limit.set(gauge(cache.hard_limit_bytes()));
        metrics
            .high_watermark
            .set(gauge(cache.high_watermark_bytes()));
        Arc::new(Room {
            layout,
            cache,
            estimate: Mutex::new(Estimate::default()),
            metrics,
        })
    }

    /// Whether a derivative of `bytes` may be written now; starts a scan or prune when due.
    /// Call it from a blocking thread: a refresh it starts runs there too.
    pub fn admit(self: &Arc<Self>, bytes: u64) -> bool {
        let hard_limit = self.cache.hard_limit_bytes();
        let rescan = Duration::from_secs(self.cache.rescan_interval_s);
        let (verdict, written) = {
            let mut estimate = self.estimate.lock().expect("room lock");
            let verdict = estimate.decide(bytes, hard_limit, rescan, Instant::now());
            self.metrics.set_estimate(&estimate);
            (verdict, estimate.written())
        };
        if let Some(refresh) = verdict.refresh {
            self.start(refresh, written);
        }
        verdict.write
    }

    /// What the guard knows now: the estimate (`None` before the first measurement), the
    /// high watermark and the hard limit, in bytes.
    pub fn status(&self) -> (Option<u64>, u64, u64) {
        let estimate = self.estimate.lock().expect("room lock").bytes();
        (
            estimate,
            self.cache.high_watermark_bytes(),
            self.cache.hard_limit_bytes(),
        )
    }

    /// A write to the mount (a derivative, or a master's download) failed because the file
    /// system is full. Does not block: the relief prune runs on a thread of its own.
    pub fn disk_full(self: &Arc<Self>) {
        let refresh = {
            let mut estimate = self.estimate.lock().expect("room lock");
            let refresh = estimate.disk_full(self.cache.hard_limit_bytes(), Instant::now());
            self.metrics.set_estimate(&estimate);
            refresh
        };
        if let Some(refresh) = refresh {
            self.start(refresh, 0);
        }
    }

    fn start(self: &Arc<Self>, refresh: Refresh, written_before: u64) {
        let room = self.clone();
        let started = std::thread::Builder::new()
            .name(format!("cache-{}", refresh.as_str()))
            .spawn(move || room.refresh(refresh, written_before));
        if let Err(e) = started {
            log::error!("cache mount: cannot start a {refresh:?}: {e}");
            let mut estimate = self.estimate.lock().expect("room lock");
            estimate.refreshed(None, written_before, Instant::now());
        }
    }

    fn refresh(&self, refresh: Refresh, written_before: u64) {
        let measured = match refresh {
            Refresh::Scan => lazyfetch::stats::stats(&self.layout, &self.cache).map(|s| s.bytes),
            Refresh::Prune => self.prune(PruneOptions::default(), "above its hard limit"),
            Refresh::Relieve => {
                lazyfetch::stats::stats(&self.layout, &self.cache).and_then(|stats| {
                    let options = PruneOptions {
                        budget: Some(ByteSize(stats.bytes.min(self.cache.budget.0))),
                        ..PruneOptions::default()
                    };
                    self.prune(options, "full")
                })
            }
        };
        let outcome = match &measured {
            Ok(_) => "ok",
            Err(e) => {
                log::error!(
                    "cache mount: {} of {} failed: {e}",
                    refresh.as_str(),
                    self.layout.root().display()
                );
                "failed"
            }
        };
        self.metrics
            .refreshes
            .with_label_values(&[refresh.as_str(), outcome])
            .inc();
        let mut estimate = self.estimate.lock().expect("room lock");
        estimate.refreshed(measured.ok(), written_before, Instant::now());
        self.metrics.set_estimate(&estimate);
    }
}

impl Room {
    /// Prunes under `options`; the cache's size after it is the new measurement.
    fn prune(&self, options: PruneOptions, why: &str) -> std::io::Result<u64> {
        let report = prune::prune(&self.layout, &self.cache, options)?;
        log::warn!(
            "cache mount {why} (hard limit {} bytes): pruned {} images, {} bytes freed, {} bytes now",
            self.cache.hard_limit_bytes(),
            report.removed.len(),
            report.freed_bytes,
            report.after_bytes
        );
        Ok(report.after_bytes)
    }
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

struct RoomMetrics {
    estimated: IntGauge,
    hard_limit: IntGauge,
    high_watermark: IntGauge,
    refreshes: IntCounterVec,
}

impl RoomMetrics {
    fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let refreshes = IntCounterVec::new(
            Opts::new(
                "iiif_gateway_cache_mount_refreshes_total",
                "Measurements of the cache mount started by the gateway, by kind (scan; prune: over the hard limit; relieve: the file system was full) and outcome (ok, failed).",
            ),
            &["kind", "outcome"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(refreshes.clone()))
            .expect("unique metric");
        RoomMetrics {
            estimated: gauge(
                "iiif_gateway_cache_mount_estimated_bytes",
                "The gateway's estimate of the cache's size: its last scan plus what it wrote since.",
            ),
            hard_limit: gauge(
                "iiif_gateway_cache_mount_hard_limit_bytes",
                "Above this no derivative is written and a prune starts (gateway.cache.hard_limit).",
            ),
            high_watermark: gauge(
                "iiif_gateway_cache_mount_high_watermark_bytes",
                "Above this the cron prune removes least recently used images (gateway.cache.high_watermark of the budget).",
            ),
            refreshes,
        }
    }

    fn set_estimate(&self, estimate: &Estimate) {
        if let Some(bytes) = estimate.bytes() {
            self.estimated.set(gauge(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARD: u64 = 1000;
    const RESCAN: Duration = Duration::from_secs(300);

    fn measured(bytes: u64, at: Instant) -> Estimate {
        let mut estimate = Estimate::default();
        estimate.refreshed(Some(bytes), 0, at);
        estimate
    }

    #[test]
    fn the_first_write_is_allowed_and_starts_a_scan() {
        let now = Instant::now();
        let mut estimate = Estimate::default();
        let verdict = estimate.decide(10, HARD, RESCAN, now);
        assert_eq!(
            verdict,
            Verdict {
                write: true,
                refresh: Some(Refresh::Scan)
            }
        );
        // One refresh at a time.
        assert_eq!(estimate.decide(10, HARD, RESCAN, now).refresh, None);
        estimate.refreshed(Some(500), 10, now);
        // The write counted before the scan is in it; the one after is not.
        assert_eq!(estimate.bytes(), Some(510));
    }

    #[test]
    fn writes_are_counted_until_the_hard_limit() {
        let now = Instant::now();
        let mut estimate = measured(900, now);
        assert!(estimate.decide(100, HARD, RESCAN, now).write);
        assert_eq!(estimate.bytes(), Some(1000));
        let refused = estimate.decide(1, HARD, RESCAN, now);
        assert!(!refused.write);
        // Too soon after the last measurement for a prune.
        assert_eq!(refused.refresh, None);
        assert_eq!(
            estimate.bytes(),
            Some(1000),
            "a refused write is not counted"
        );
    }

    #[test]
    fn over_the_limit_a_prune_starts_and_its_result_is_the_new_estimate() {
        let then = Instant::now();
        let now = then + MIN_PRUNE_GAP;
        let mut estimate = measured(990, then);
        let verdict = estimate.decide(20, HARD, RESCAN, now);
        assert_eq!(
            verdict,
            Verdict {
                write: false,
                refresh: Some(Refresh::Prune)
            }
        );
        assert!(!estimate.decide(20, HARD, RESCAN, now).write);
        estimate.refreshed(Some(800), 0, now);
        assert!(estimate.decide(20, HARD, RESCAN, now).write);
        assert_eq!(estimate.bytes(), Some(820));
    }

    #[test]
    fn a_stale_estimate_is_scanned_again() {
        let then = Instant::now();
        let mut estimate = measured(100, then);
        assert_eq!(estimate.decide(1, HARD, RESCAN, then).refresh, None);
        let verdict = estimate.decide(1, HARD, RESCAN, then + RESCAN);
        assert_eq!(verdict.refresh, Some(Refresh::Scan));
        assert!(verdict.write);
    }

    #[test]
    fn a_failed_refresh_keeps_the_old_estimate_and_can_be_retried() {
        let then = Instant::now();
        let mut estimate = measured(100, then);
        estimate.decide(1, HARD, RESCAN, then + RESCAN);
        estimate.refreshed(None, 1, then + RESCAN);
        assert_eq!(estimate.bytes(), Some(101));
        assert_eq!(
            estimate.decide(1, HARD, RESCAN, then + RESCAN).refresh,
            Some(Refresh::Scan)
        );
    }

    #[test]
    fn a_full_disk_stops_writes_until_measured_again() {
        let then = Instant::now();
        let mut estimate = measured(100, then);
        assert_eq!(estimate.disk_full(HARD, then), Some(Refresh::Relieve));
        assert!(!estimate.decide(1, HARD, RESCAN, then).write);
        // While the relief runs, nothing else starts.
        let later = then + MIN_PRUNE_GAP;
        assert_eq!(estimate.decide(1, HARD, RESCAN, later).refresh, None);
        estimate.refreshed(Some(300), 0, later);
        assert!(estimate.decide(1, HARD, RESCAN, later).write);
    }

    #[test]
    fn a_full_disk_starts_one_relief_at_a_time_and_not_right_after_a_measurement() {
        let then = Instant::now();
        // Never measured: relief at once.
        let mut estimate = Estimate::default();
        assert_eq!(estimate.disk_full(HARD, then), Some(Refresh::Relieve));
        assert_eq!(estimate.disk_full(HARD, then), None, "one is running");
        estimate.refreshed(Some(400), 0, then);
        assert!(estimate.decide(1, HARD, RESCAN, then).write);
        // Full again right after that relief: writes stop, the next relief waits for the gap.
        assert_eq!(estimate.disk_full(HARD, then), None);
        assert!(!estimate.decide(1, HARD, RESCAN, then).write);
        let later = then + MIN_PRUNE_GAP;
        assert_eq!(estimate.disk_full(HARD, later), Some(Refresh::Relieve));
        // A scan that found the cache under the limit does not delay a relief.
        estimate.refreshed(Some(400), 0, later);
        let scanned = later + RESCAN;
        assert_eq!(
            estimate.decide(1, HARD, RESCAN, scanned).refresh,
            Some(Refresh::Scan)
        );
        estimate.refreshed(Some(400), 0, scanned);
        assert_eq!(estimate.disk_full(HARD, scanned), Some(Refresh::Relieve));
    }

    #[test]
    fn huge_numbers_saturate() {
        let now = Instant::now();
        let mut estimate = measured(u64::MAX - 1, now);
        assert!(!estimate.decide(u64::MAX, u64::MAX, RESCAN, now).write);
    }
}

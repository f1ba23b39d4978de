//! The render budget: the memory and threads the gateway's own pixel work may use.
//!
//! iipsrv's work is bounded by admission control (`crate::admission`); this bounds what the
//! gateway does with iipsrv's answer (decoding, rotating, encoding: `crate::render`) and the
//! bytes it holds while doing so and while sending the result:
//!
//! - every request that renders or passes a JPEG through **reserves its worst case**
//!   ([`crate::render::cost::peak_bytes`]) before asking iipsrv, from the budget of
//!   `gateway.render.memory_mib`; it waits at most `queue_timeout_ms` for room (then 503);
//! - the budget has **two lanes**, because a waiter is served first come, first served: a
//!   tile needing 200 KiB queued behind a render waiting for 200 MiB would wait as long as
//!   it does. An eighth of the budget is kept for *small* requests (a worst case of at most
//!   a sixteenth of that eighth: 4 MiB of the default 512 MiB, which covers tiles and
//!   thumbnails), the rest is for the others; neither lane waits for the other, and together
//!   they are the budget;
//! - a request whose worst case alone is above `max_request_mib` is refused at once (400): no
//!   amount of waiting makes room for it;
//! - after the render, the reservation shrinks to the encoded size and travels with the reply
//!   until its last byte is written, so slow readers count against the budget too;
//! - at most `workers` renders run at once, on blocking threads, so CPU-heavy renders cannot
//!   take every core from the tiles.
//!
//! Cache hits (memory or disk) take nothing: their size class is bounded by the derivative
//! cache's own settings.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::{IntCounterVec, IntGauge};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// The budget counts in KiB: the semaphore takes at most `u32::MAX` permits per acquisition.
const UNIT: u64 = 1024;

/// The small lane is this fraction of the budget...
const SMALL_LANE_DIVISOR: u64 = 8;
/// ...and a small request's worst case at most this fraction of the small lane.
const SMALL_REQUEST_DIVISOR: u64 = 16;

/// `gateway.render` as written in the file; every key is optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRender {
    /// Memory for all renders and the bodies they are sending, MiB. Default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The largest worst case one request may have, MiB. Default: half of `memory_mib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_mib: Option<u64>,
    /// Renders running at once. Default: the number of CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// The longest a request waits for room in the budget, ms. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout_ms: Option<u64>,
}

/// The resolved `gateway.render` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    pub memory_bytes: u64,
    pub max_request_bytes: u64,
    /// The part of `memory_bytes` kept for small requests.
    pub small_lane_bytes: u64,
    pub workers: usize,
    pub queue_timeout: Duration,
}

mod defaults {
    pub(super) const MEMORY_MIB: u64 = 512;
    pub(super) const QUEUE_TIMEOUT_MS: u64 = 10_000;
}

impl RawRender {
    /// Checks every value and fills in the defaults.
    ///
    /// # Errors
    /// Every problem, one message each, named by its key under `gateway.render`.
    pub fn resolve(&self) -> Result<RenderLimits, Vec<String>> {
        let mut problems = Vec::new();
        let memory_mib = self.memory_mib.unwrap_or(defaults::MEMORY_MIB);
        if memory_mib < 16 {
            problems.push("gateway.render.memory_mib must be at least 16".to_owned());
        }
        let max_request_mib = self.max_request_mib.unwrap_or(memory_mib / 2);
        // A large request can only ever get the large lane.
        let large_lane_mib = memory_mib - memory_mib / SMALL_LANE_DIVISOR;
        if max_request_mib == 0 || max_request_mib > large_lane_mib {
            problems.push(format!(
                "gateway.render.max_request_mib must be between 1 and {large_lane_mib} (memory_mib less the eighth kept for small requests)"
            ));
        }
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        if workers == 0 {
            problems.push("gateway.render.workers must be at least 1".to_owned());
        }
        let queue_timeout_ms = self.queue_timeout_ms.unwrap_or(defaults::QUEUE_TIMEOUT_MS);
        if queue_timeout_ms == 0 {
            problems.push("gateway.render.queue_timeout_ms must be at least 1".to_owned());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RenderLimits {
            memory_bytes: memory_mib << 20,
            max_request_bytes: max_request_mib << 20,
            small_lane_bytes: (memory_mib << 20) / SMALL_LANE_DIVISOR,
            workers,
            queue_timeout: Duration::from_millis(queue_timeout_ms),
        })
    }
}

impl Default for RenderLimits {
    fn default() -> Self {
        RawRender::default()
            .resolve()
            .expect("the defaults are valid")
    }
}

/// The metrics of the budget (registered in `crate::metrics`).
#[derive(Clone)]
pub struct BudgetMetrics {
    /// `iiif_gateway_render_budget_bytes`: the configured budget.
    pub budget: IntGauge,
    /// `iiif_gateway_render_reserved_bytes`: reserved now.
    pub reserved: IntGauge,
    /// `iiif_gateway_renders_running`: renders on the worker threads now.
    pub running: IntGauge,
    /// `iiif_gateway_render_refusals_total{reason}`: `over_budget` or `busy`.
    pub refusals: IntCounterVec,
}

/// A response body and the part of the budget it holds until it is sent (`None`: a cache
/// hit, which holds nothing of the budget).
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Bytes,
    pub held: Option<Arc<Reservation>>,
}

/// Memory and workers for renders.
pub struct RenderBudget {
    limits: RenderLimits,
    small: Lane,
    large: Lane,
    workers: Arc<Semaphore>,
    metrics: BudgetMetrics,
}

/// One lane of the memory budget.
#[derive(Debug, Clone)]
struct Lane {
    memory: Arc<Semaphore>,
    units: u32,
}

impl Lane {
    fn new(bytes: u64) -> Lane {
        let units = units(bytes);
        Lane {
            memory: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    lane: Lane,
    reserved: IntGauge,
}

impl RenderBudget {
    pub fn new(limits: RenderLimits, metrics: BudgetMetrics) -> Self {
        metrics.budget.set(gauge_value(limits.memory_bytes));
        RenderBudget {
            small: Lane::new(limits.small_lane_bytes),
            large: Lane::new(limits.memory_bytes - limits.small_lane_bytes),
            workers: Arc::new(Semaphore::new(limits.workers)),
            limits,
            metrics,
        }
    }

    /// Refuses a worst case above the per-request ceiling.
    ///
    /// # Errors
    /// [`Error::OverBudget`].
    pub fn check(&self, worst_case: u64) -> Result<(), Error> {
        if worst_case > self.limits.max_request_bytes {
            self.metrics
                .refusals
                .with_label_values(&["over_budget"])
                .inc();
            return Err(Error::OverBudget {
                needed: worst_case,
                limit: self.limits.max_request_bytes,
            });
        }
        Ok(())
    }

    /// Reserves `worst_case` bytes, waiting for room at most the queue timeout. Dropping the
    /// future (the client left) gives up its place at once.
    ///
    /// # Errors
    /// [`Error::OverBudget`] above the per-request ceiling, [`Error::RenderBusy`] when no room
    /// was made in time.
    pub async fn reserve(&self, worst_case: u64) -> Result<Reservation, Error> {
        self.check(worst_case)?;
        let wanted = units(worst_case).max(1);
        let lane = if wanted <= self.small.units / SMALL_REQUEST_DIVISOR as u32 {
            &self.small
        } else {
            &self.large
        };
        let permit = self.acquire(lane, wanted).await?;
        self.metrics
            .reserved
            .add(gauge_value(worst_case_of(&permit)));
        Ok(Reservation {
            permit,
            lane: lane.clone(),
            reserved: self.metrics.reserved.clone(),
        })
    }

    /// Grows `reservation` to `worst_case` when it holds less (iipsrv's JPEG turned out larger
    /// than estimated), waiting for room as [`RenderBudget::reserve`] does.
    ///
    /// # Errors
    /// As [`RenderBudget::reserve`]; the reservation keeps what it held. It grows in its own
    /// lane: a small request that outgrows the small lane gets [`Error::RenderBusy`].
    pub async fn grow_to(
        &self,
        reservation: &mut Reservation,
        worst_case: u64,
    ) -> Result<(), Error> {
        self.check(worst_case)?;
        let held = u32::try_from(reservation.permit.num_permits()).unwrap_or(u32::MAX);
        let wanted = units(worst_case);
        if wanted <= held {
            return Ok(());
        }
        let lane = reservation.lane.clone();
        if wanted > lane.units {
            // More than the whole lane: no amount of waiting makes room.
            self.metrics.refusals.with_label_values(&["busy"]).inc();
            return Err(Error::RenderBusy);
        }
        let more = self.acquire(&lane, wanted - held).await?;
        self.metrics.reserved.add(gauge_value(worst_case_of(&more)));
        reservation.permit.merge(more);
        Ok(())
    }

    /// `units` of `lane`, waiting at most the queue timeout.
    async fn acquire(&self, lane: &Lane, units: u32) -> Result<OwnedSemaphorePermit, Error> {
        let acquired = tokio::time::timeout(
            self.limits.queue_timeout,
            lane.memory.clone().acquire_many_owned(units),
        )
        .await;
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a timeout is the only real outcome here.
            Ok(Err(_)) | Err(_) => {
                self.metrics.refusals.with_label_values(&["busy"]).inc();
                Err(Error::RenderBusy)
            }
        }
    }

    /// Runs `work` on a blocking thread once one of the workers is free, and hands the
    /// reservation back with its result.
    ///
    /// The worker and the reservation go with the work, not with this future: a client that
    /// leaves mid-render cannot free either while its render still runs and allocates (nor
    /// let more than `workers` renders run). A client that leaves while waiting for a worker
    /// gives both up at once.
    ///
    /// # Errors
    /// [`Error::Internal`] when the work panicked (the panic text stays in the log).
    pub async fn run<T: Send + 'static>(
        &self,
        reservation: Reservation,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Reservation), Error> {
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("render workers closed".into()))?;
        let running = Running::enter(&self.metrics.running);
        tokio::task::spawn_blocking(move || {
            let _held = (worker, running);
            (work(), reservation)
        })
        .await
        .map_err(|e| Error::Internal(format!("render task failed: {e}")))
    }
}

/// One render counted in `iiif_gateway_renders_running` while it runs.
struct Running(IntGauge);

impl Running {
    fn enter(gauge: &IntGauge) -> Self {
        gauge.inc();
        Running(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Reservation {
    /// Gives back all but `bytes` (the encoded result, held until it is sent).
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = units(bytes).max(1) as usize;
        let held = self.permit.num_permits();
        if keep < held {
            if let Some(released) = self.permit.split(held - keep) {
                self.reserved
                    .sub(gauge_value(released.num_permits() as u64 * UNIT));
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        worst_case_of(&self.permit)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.sub(gauge_value(worst_case_of(&self.permit)));
    }
}

fn worst_case_of(permit: &OwnedSemaphorePermit) -> u64 {
    permit.num_permits() as u64 * UNIT
}

/// Whole units, rounded up; at most what one acquisition can take.
fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn metrics() -> BudgetMetrics {
        BudgetMetrics {
            budget: IntGauge::new("budget", "test").unwrap(),
            reserved: IntGauge::new("reserved", "test").unwrap(),
            running: IntGauge::new("running", "test").unwrap(),
            refusals: IntCounterVec::new(Opts::new("refusals", "test"), &["reason"]).unwrap(),
        }
    }

    fn budget(memory_mib: u64, max_request_mib: u64, timeout_ms: u64) -> RenderBudget {
        let limits = RawRender {
            memory_mib: Some(memory_mib),
            max_request_mib: Some(max_request_mib),
            workers: Some(1),
            queue_timeout_ms: Some(timeout_ms),
        }
        .resolve()
        .unwrap();
        RenderBudget::new(limits, metrics())
    }

    #[test]
    fn the_defaults_are_512_mib_with_half_for_one_request() {
        let limits = RenderLimits::default();
        assert_eq!(limits.memory_bytes, 512 << 20);
        assert_eq!(limits.max_request_bytes, 256 << 20);
        assert_eq!(limits.small_lane_bytes, 64 << 20);
        assert!(limits.workers >= 1);
        assert_eq!(limits.queue_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_bad_value_is_named() {
        let problems = RawRender {
            memory_mib: Some(8),
            max_request_mib: Some(64),
            workers: Some(0),
            queue_timeout_ms: Some(0),
        }
        .resolve()
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for key in [
            "memory_mib",
            "max_request_mib",
            "workers",
            "queue_timeout_ms",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key}: {problems:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_worst_case_above_the_ceiling_is_refused_without_waiting() {
        let budget = budget(64, 16, 60_000);
        let error = budget.reserve((16 << 20) + 1).await.unwrap_err();
        assert!(matches!(error, Error::OverBudget { .. }), "{error:?}");
        assert_eq!(
            budget
                .metrics
                .refusals
                .with_label_values(&["over_budget"])
                .get(),
            1
        );
        assert!(budget.reserve(16 << 20).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_makes_requests_wait_then_refuses_them() {
        // 32 MiB: 4 for small requests (up to 256 KiB each), 28 for the others.
        let budget = budget(32, 14, 500);
        let first = budget.reserve(14 << 20).await.unwrap();
        let second = budget.reserve(14 << 20).await.unwrap();
        assert_eq!(budget.metrics.reserved.get(), 28 << 20);
        // The large lane is full: the third waits for the timeout, then gets 503.
        let error = budget.reserve(1 << 20).await.unwrap_err();
        assert_eq!(error, Error::RenderBusy);
        drop(first);
        assert_eq!(budget.metrics.reserved.get(), 14 << 20);
        let third = budget.reserve(14 << 20).await.unwrap();
        drop((second, third));
        assert_eq!(budget.metrics.reserved.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn small_requests_never_wait_behind_large_ones() {
        let budget = Arc::new(budget(32, 14, 60_000));
        let first = budget.reserve(14 << 20).await.unwrap();
        let second = budget.reserve(14 << 20).await.unwrap();
        // A large request queues for the full large lane...
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(8 << 20).await.map(|r| r.bytes()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...and tiles go past it: 16 of 256 KiB fill the small lane without waiting.
        let mut tiles = Vec::new();
        for _ in 0..16 {
            let tile = tokio::time::timeout(Duration::ZERO, budget.reserve(256 << 10)).await;
            tiles.push(tile.expect("no wait").unwrap());
        }
        assert_eq!(budget.metrics.reserved.get(), 32 << 20);
        // A small request grows within its lane only: the lane is 4 MiB.
        let error = budget.grow_to(&mut tiles[0], 5 << 20).await.unwrap_err();
        assert_eq!(error, Error::RenderBusy);
        drop((first, tiles));
        assert_eq!(waiting.await.unwrap().unwrap(), 8 << 20);
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shrunk_reservation_gives_back_the_rest_at_once() {
        let budget = budget(32, 28, 500);
        let mut big = budget.reserve(26 << 20).await.unwrap();
        big.shrink_to(1 << 20);
        assert_eq!(big.bytes(), 1 << 20);
        assert_eq!(budget.metrics.reserved.get(), 1 << 20);
        // Of the large lane's 28 MiB, 27 are free again.
        let other = budget.reserve(27 << 20).await.unwrap();
        assert_eq!(budget.metrics.reserved.get(), 28 << 20);
        // Growing is not shrinking: asking for more keeps what is held.
        big.shrink_to(8 << 20);
        assert_eq!(big.bytes(), 1 << 20);
        drop((big, other));
        assert_eq!(budget.metrics.reserved.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_grows_to_the_real_size_within_the_limits() {
        let budget = budget(32, 16, 500);
        let mut reservation = budget.reserve(4 << 20).await.unwrap();
        budget.grow_to(&mut reservation, 2 << 20).await.unwrap();
        assert_eq!(reservation.bytes(), 4 << 20, "never shrinks");
        budget.grow_to(&mut reservation, 12 << 20).await.unwrap();
        assert_eq!(reservation.bytes(), 12 << 20);
        assert_eq!(budget.metrics.reserved.get(), 12 << 20);
        let error = budget
            .grow_to(&mut reservation, 17 << 20)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::OverBudget { .. }));
        let other = budget.reserve(16 << 20).await.unwrap();
        // 12 + 16 of the large lane's 28 MiB: no room for the 4 more that 16 needs.
        let error = budget
            .grow_to(&mut reservation, 16 << 20)
            .await
            .unwrap_err();
        assert_eq!(error, Error::RenderBusy);
        assert_eq!(reservation.bytes(), 12 << 20);
        drop(other);
        let smaller = budget.reserve(10 << 20).await.unwrap();
        // 12 + 10 of 28: now it fits.
        budget.grow_to(&mut reservation, 16 << 20).await.unwrap();
        assert_eq!(budget.metrics.reserved.get(), 26 << 20);
        drop((reservation, smaller));
        assert_eq!(budget.metrics.reserved.get(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_gives_up_its_place() {
        let budget = Arc::new(budget(32, 28, 60_000));
        let held = budget.reserve(28 << 20).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(28 << 20).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        // Nobody else holds or waits: the whole budget is free again.
        assert!(budget.reserve(28 << 20).await.is_ok());
    }

    #[tokio::test]
    async fn a_panicking_render_is_an_internal_error_not_a_crash() {
        let budget = budget(32, 16, 500);
        let reservation = budget.reserve(1 << 20).await.unwrap();
        let error = budget
            .run(reservation, || -> u8 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Internal(_)));
        assert_eq!(
            budget.metrics.reserved.get(),
            0,
            "given back by the unwinding"
        );
        let reservation = budget.reserve(1 << 20).await.unwrap();
        let (value, reservation) = budget.run(reservation, || 7).await.unwrap();
        assert_eq!((value, reservation.bytes()), (7, 1 << 20));
        assert_eq!(budget.metrics.running.get(), 0);
    }

    #[tokio::test]
    async fn a_render_whose_client_left_keeps_its_memory_until_it_ends() {
        let budget = Arc::new(budget(32, 28, 100));
        let (started, finish) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(std::sync::Barrier::new(2)),
        );
        let reservation = budget.reserve(28 << 20).await.unwrap();
        let request = {
            let (budget, started, finish) = (budget.clone(), started.clone(), finish.clone());
            tokio::spawn(async move {
                budget
                    .run(reservation, move || {
                        started.notify_one();
                        finish.wait();
                    })
                    .await
                    .map(|_| ())
            })
        };
        started.notified().await;
        request.abort();
        let _ = request.await;
        // The render still runs: its 28 MiB are not free.
        assert_eq!(budget.metrics.reserved.get(), 28 << 20);
        assert_eq!(
            budget.reserve(1 << 20).await.unwrap_err(),
            Error::RenderBusy
        );
        finish.wait();
        // Once it ends they are.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.metrics.reserved.get(), 0);
        assert_eq!(budget.metrics.running.get(), 0);
    }

    #[test]
    fn units_round_up_and_saturate() {
        assert_eq!(units(0), 0);
        assert_eq!(units(1), 1);
        assert_eq!(units(1024), 1);
        assert_eq!(units(1025), 2);
        assert_eq!(units(u64::MAX), u32::MAX);
    }
}

//! The lane policy of admission control: which lane gets the next free iipsrv process,
//! whether a request may wait at all, how long it will wait, and why it was refused.
//!
//! This half of admission knows nothing about IIIF: a request arrives already in its
//! [`Lane`] (the cost model, [`super::cost`], picked it), so the FastCGI pool (`fcgi`) can use
//! it without depending on the IIIF core.
//!
//! **Invariant:** pure: no clock, no I/O, no locks. The pool's scheduler
//! (`fcgi::scheduler`) holds the queues and asks the functions here, passing the times it
//! measured, so every rule can be tested exhaustively.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Weight of the newest service time in a lane's moving average: about the last twenty
/// requests count. The small lane mixes 2-ms tiles with 50-ms 1024-px renders, so a shorter
/// memory makes its estimate jump with every render; a longer one would follow a change of mix
/// too slowly in the large lane, which serves a few requests per second.
const SERVICE_TIME_WEIGHT: f64 = 0.1;

/// Bounds of the `Retry-After` a refusal suggests, in seconds.
const RETRY_AFTER_RANGE: (u32, u32) = (1, 60);

// === lanes ===

/// The queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Tiles, thumbnails, info.json, moderate renders: served first.
    Small,
    /// Big renders: at most `large_max_slots` processes at once.
    Large,
}

impl Lane {
    /// Both lanes, in priority order.
    pub const ALL: [Lane; 2] = [Lane::Small, Lane::Large];

    /// The lane's name in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Small => "small",
            Lane::Large => "large",
        }
    }

    /// Position in per-lane arrays such as [`LaneView::queued`].
    pub fn index(self) -> usize {
        match self {
            Lane::Small => 0,
            Lane::Large => 1,
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How long one lane may make requests wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    /// Requests waiting in the lane at most; one more is refused at once.
    pub max_queue: usize,
    /// The longest wait for a process. A request whose estimated wait is longer is refused at
    /// once; one still waiting at this deadline is refused then.
    pub max_wait: Duration,
}

/// The lane settings of the resolved `gateway.admission` section (the thresholds that pick a
/// request's lane are the cost model's, [`super::CostThresholds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Processes large requests may hold at once (further limited while processes are down;
    /// see [`large_slot_limit`]).
    pub large_max_slots: usize,
    /// A large request that has waited this long goes before small ones (within its slots), so
    /// a steady stream of small requests cannot starve it.
    pub large_first_after: Duration,
    pub small: LaneLimits,
    pub large: LaneLimits,
}

impl AdmissionConfig {
    /// The defaults for a pool of `processes` iipsrv processes whose requests wait at most
    /// `queue_timeout` (see [`super::RawAdmission`] for each value).
    pub fn defaults(processes: usize, queue_timeout: Duration) -> AdmissionConfig {
        let mut problems = Vec::new();
        let config = RawLanes::default().resolve(processes, queue_timeout, &mut problems);
        assert!(problems.is_empty(), "the defaults are valid for any pool");
        config
    }

    /// The limits of one lane.
    pub fn limits(&self, lane: Lane) -> &LaneLimits {
        match lane {
            Lane::Small => &self.small,
            Lane::Large => &self.large,
        }
    }
}

// === policy ===

/// The pool as the policy sees it at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaneView {
    /// Requests waiting, per lane ([`Lane::index`]).
    pub queued: [usize; 2],
    /// Requests holding a process, per lane.
    pub in_service: [usize; 2],
    /// Processes in rotation.
    pub healthy: usize,
    /// Recent time a request of each lane held its process; `None` before the first one.
    pub service_time: [Option<Duration>; 2],
}

/// How many processes large requests may hold now: the configured number, but never every
/// healthy process when two or more are healthy (so a dead process shrinks the large lane
/// before it shrinks the small one), and at least one (with a single healthy process, large
/// requests share it with small ones, which still go first).
pub fn large_slot_limit(configured: usize, healthy: usize) -> usize {
    configured.min(healthy.saturating_sub(1)).max(1)
}

/// Which lane gets the next free process, if any: a large request that has waited at least
/// `large_first_after` (anti-starvation), else the oldest small request, else a large one;
/// large ones only while the lane is below its slot limit.
///
/// `oldest_large_wait` is how long the first large request in line has waited.
pub fn next_lane(
    config: &AdmissionConfig,
    view: &LaneView,
    oldest_large_wait: Option<Duration>,
) -> Option<Lane> {
    let large_may_start = view.queued[Lane::Large.index()] > 0
        && view.in_service[Lane::Large.index()]
            < large_slot_limit(config.large_max_slots, view.healthy);
    let large_starving = oldest_large_wait.is_some_and(|wait| wait >= config.large_first_after);
    if large_may_start && large_starving {
        Some(Lane::Large)
    } else if view.queued[Lane::Small.index()] > 0 {
        Some(Lane::Small)
    } else if large_may_start {
        Some(Lane::Large)
    } else {
        None
    }
}

/// How long a request joining `lane` behind `ahead` others of the same lane will wait for a
/// process, from the lane's recent service time; `None` before any request of the lane has
/// finished (then only the deadline applies).
///
/// The lane drains at one request per service time per process serving it: every healthy
/// process not held by a large request for the small lane, the slot limit for the large lane.
/// Small requests waiting go first, so they delay a large one too. The estimate counts the
/// request's own turn as a full service time, erring towards refusing a little early rather
/// than answering late.
pub fn estimated_wait(
    config: &AdmissionConfig,
    lane: Lane,
    ahead: usize,
    view: &LaneView,
) -> Option<Duration> {
    let service = view.service_time[lane.index()]?;
    let turns = ahead as f64 + 1.0;
    let seconds = match lane {
        Lane::Small => {
            let free_of_large = view
                .healthy
                .saturating_sub(view.in_service[Lane::Large.index()]);
            let own = turns * service.as_secs_f64() / free_of_large.max(1) as f64;
            // With every healthy process rendering something large, the first small request
            // also waits for one of those to finish.
            let behind_large = if free_of_large == 0 {
                view.service_time[Lane::Large.index()].map_or(0.0, |t| t.as_secs_f64())
            } else {
                0.0
            };
            own + behind_large
        }
        Lane::Large => {
            let slots = large_slot_limit(config.large_max_slots, view.healthy) as f64;
            let small_first = view.service_time[Lane::Small.index()].map_or(0.0, |t| {
                view.queued[Lane::Small.index()] as f64 * t.as_secs_f64()
                    / view.healthy.max(1) as f64
            });
            turns * service.as_secs_f64() / slots + small_first
        }
    };
    Some(duration_from_secs(seconds))
}

/// Why a request was refused without being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The lane's queue already held `max_queue` requests.
    QueueFull,
    /// The estimated wait exceeded the lane's `max_wait`.
    WaitEstimate,
    /// The request waited until its deadline without getting a process.
    Deadline,
}

impl RejectReason {
    /// Every reason, for metrics.
    pub const ALL: [RejectReason; 3] = [
        RejectReason::QueueFull,
        RejectReason::WaitEstimate,
        RejectReason::Deadline,
    ];

    /// The reason's name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "queue_full",
            RejectReason::WaitEstimate => "wait_estimate",
            RejectReason::Deadline => "deadline",
        }
    }
}

/// A refused request: which lane, why, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub lane: Lane,
    pub reason: RejectReason,
    /// The estimated time for the lane's queue to drain, for `Retry-After`.
    pub retry_after: Duration,
}

impl Rejection {
    /// `Retry-After` in whole seconds, rounded up, between 1 and 60.
    pub fn retry_after_seconds(&self) -> u32 {
        let seconds = self.retry_after.as_secs_f64().ceil();
        let (low, high) = RETRY_AFTER_RANGE;
        if seconds >= f64::from(high) {
            high
        } else {
            (seconds as u32).max(low)
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lane = self.lane;
        match self.reason {
            RejectReason::QueueFull => write!(f, "the {lane} lane's queue is full"),
            RejectReason::WaitEstimate => {
                write!(f, "the {lane} lane's estimated wait exceeds its limit")
            }
            RejectReason::Deadline => {
                write!(f, "no process became free for the {lane} lane in time")
            }
        }
    }
}

/// Whether a request that cannot start at once may join `lane` behind `ahead` others.
///
/// # Errors
/// A [`Rejection`] when the queue is full or the estimated wait exceeds the lane's limit.
pub fn admit(
    config: &AdmissionConfig,
    lane: Lane,
    ahead: usize,
    view: &LaneView,
) -> Result<(), Rejection> {
    let limits = config.limits(lane);
    let reject = |reason| Rejection {
        lane,
        reason,
        retry_after: drain_time(config, lane, view),
    };
    if ahead >= limits.max_queue {
        return Err(reject(RejectReason::QueueFull));
    }
    match estimated_wait(config, lane, ahead, view) {
        Some(wait) if wait > limits.max_wait => Err(reject(RejectReason::WaitEstimate)),
        _ => Ok(()),
    }
}

/// A request that waited until its deadline: refused, with a retry hint.
pub fn deadline_passed(config: &AdmissionConfig, lane: Lane, view: &LaneView) -> Rejection {
    Rejection {
        lane,
        reason: RejectReason::Deadline,
        retry_after: drain_time(config, lane, view),
    }
}

/// How long until everything now queued in `lane` has been served (the `Retry-After` hint);
/// the lane's longest wait when there is no estimate yet.
fn drain_time(config: &AdmissionConfig, lane: Lane, view: &LaneView) -> Duration {
    let queued = view.queued[lane.index()];
    estimated_wait(config, lane, queued.saturating_sub(1), view)
        .unwrap_or(config.limits(lane).max_wait)
}

/// The moving average of a lane's service time after one more request took `sample`.
pub fn updated_service_time(previous: Option<Duration>, sample: Duration) -> Duration {
    match previous {
        None => sample,
        Some(average) => duration_from_secs(
            average.as_secs_f64() * (1.0 - SERVICE_TIME_WEIGHT)
                + sample.as_secs_f64() * SERVICE_TIME_WEIGHT,
        ),
    }
}

/// Seconds as a duration, saturating instead of panicking on huge or non-finite values.
fn duration_from_secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

// === configuration ===

/// `gateway.admission.small` or `.large`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLane {
    /// Requests waiting in the lane at most. Defaults: small 1000, large 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
    /// The longest wait for a process, at most `backend.queue_timeout_ms`. Defaults: small
    /// 750 (or the queue timeout if shorter), large the queue timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
}

/// The lane keys of `gateway.admission` as written (the section is [`super::RawAdmission`],
/// which documents each key); every one optional.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RawLanes {
    pub(super) large_max_slots: Option<usize>,
    pub(super) large_first_after_ms: Option<u64>,
    pub(super) small: RawLane,
    pub(super) large: RawLane,
}

mod defaults {
    pub(super) const LARGE_FIRST_AFTER_MS: u64 = 2000;
    pub(super) const SMALL_MAX_QUEUE: usize = 1000;
    pub(super) const LARGE_MAX_QUEUE: usize = 100;
    /// Measured (docs/operations.md): at 1,000 closed-loop connections the successful small
    /// requests wait close to this, so it bounds their p99; at 100 connections a shorter wait
    /// refused some of the first burst.
    pub(super) const SMALL_MAX_WAIT_MS: u64 = 750;
}

/// The full name of a key of the `gateway.admission` section, for problem messages.
pub(super) fn key(name: &str) -> String {
    format!("gateway.admission.{name}")
}

impl RawLanes {
    /// Checks every value against a pool of `processes` iipsrv processes whose requests wait
    /// at most `queue_timeout` (`backend.queue_timeout_ms`), and fills in the defaults. Each
    /// problem is added to `problems`, named by its key; the result is then meaningless.
    pub(super) fn resolve(
        &self,
        processes: usize,
        queue_timeout: Duration,
        problems: &mut Vec<String>,
    ) -> AdmissionConfig {
        let large_max_slots = match self.large_max_slots {
            None => default_large_slots(processes),
            Some(0) => {
                problems.push(format!(
                    "{} must be at least 1 (large requests would never run)",
                    key("large_max_slots")
                ));
                1
            }
            Some(slots) if processes >= 2 && slots >= processes => {
                problems.push(format!(
                    "{}: {slots} would let large renders take all {processes} iipsrv processes; \
                     use at most {} so that cheap requests always find one",
                    key("large_max_slots"),
                    processes - 1
                ));
                slots
            }
            Some(slots) => slots,
        };

        let small_default_wait =
            Duration::from_millis(defaults::SMALL_MAX_WAIT_MS).min(queue_timeout);
        let mut lane = |name: &str, raw: &RawLane, max_queue: usize, max_wait: Duration| {
            let max_wait = match raw.max_wait_ms {
                None => max_wait,
                Some(0) => {
                    problems.push(format!(
                        "{} must be at least 1",
                        key(&format!("{name}.max_wait_ms"))
                    ));
                    max_wait
                }
                Some(ms) if Duration::from_millis(ms) > queue_timeout => {
                    problems.push(format!(
                        "{}: {ms} exceeds gateway.backend.queue_timeout_ms ({}), the longest any \
                         request waits; raise that too",
                        key(&format!("{name}.max_wait_ms")),
                        queue_timeout.as_millis()
                    ));
                    max_wait
                }
                Some(ms) => Duration::from_millis(ms),
            };
            LaneLimits {
                max_queue: raw.max_queue.unwrap_or(max_queue),
                max_wait,
            }
        };
        let small = lane(
            "small",
            &self.small,
            defaults::SMALL_MAX_QUEUE,
            small_default_wait,
        );
        let large = lane(
            "large",
            &self.large,
            defaults::LARGE_MAX_QUEUE,
            queue_timeout,
        );

        AdmissionConfig {
            large_max_slots,
            large_first_after: Duration::from_millis(
                self.large_first_after_ms
                    .unwrap_or(defaults::LARGE_FIRST_AFTER_MS),
            ),
            small,
            large,
        }
    }
}

/// Half the processes rounded up, at least one, and never all of them when there are two or
/// more: 1 → 1, 2 → 1, 3 → 2, 4 → 2, 5 → 3.
fn default_large_slots(processes: usize) -> usize {
    processes
        .div_ceil(2)
        .min(processes.saturating_sub(1))
        .max(1)
}

#[cfg(test)]
mod tests;

//! Who gets the next free iipsrv process: the lanes of admission control over the pool.
//!
//! One lock guards who holds each process and the two lane queues. A request either gets a
//! free process at once, is refused at once (queue full, or a wait estimated past its lane's
//! limit), or waits in its lane until [`policy::next_lane`] picks it for a process that has
//! become free, or until its deadline. A process is handed directly to the chosen waiter, so a
//! later arrival can never take it first.
//!
//! The scheduler also owns each process's health: whether it is in rotation, and the results
//! of its health probes. A failed request or probe takes a process out through the scheduler's
//! methods, so the decision to stop handing it out and the handing out are made in one place.
//! Health probes claim only an idle process and never queue. A process out of rotation is
//! never handed out; when the last one leaves, every waiter fails at once.
//!
//! Dropping a waiting request (client gone, outer timeout) removes it from its queue, and
//! hands back a process it was given but had not yet picked up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::{FcgiError, Phase};
use crate::admission::policy::{self, AdmissionConfig, Lane, LaneView, RejectReason, Rejection};
use crate::metrics::AdmissionMetrics;

/// Probes in a row a process may accept without answering before it is taken out of rotation.
const SILENT_PROBES_BEFORE_DOWN: u32 = 3;

/// One lane as `/metrics` and the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    pub lane: Lane,
    /// Requests waiting for a process now.
    pub queued: usize,
    /// Requests holding a process now.
    pub in_service: usize,
    /// Highest `in_service` ever seen.
    pub peak_in_service: usize,
    /// Requests that got a process.
    pub admitted: u64,
    /// Requests refused (any reason).
    pub rejected: u64,
    /// Moving average of the time a request held its process.
    pub service_time: Option<Duration>,
}

/// The lane queues over the pool's processes, and which processes are in rotation.
pub(super) struct Scheduler {
    config: AdmissionConfig,
    /// The pool's `queue_timeout`: no lane waits longer.
    queue_timeout: Duration,
    /// Per process, by pool index. Changed only through [`Scheduler::set_health`] and the probe
    /// results; read without the lock (by `/healthz`) and under it (to hand processes out).
    health: Vec<Health>,
    state: Mutex<State>,
    metrics: OnceLock<LaneMetrics>,
}

/// Whether one process is in rotation.
struct Health {
    /// The process's label, for the log lines that say it left or rejoined the rotation.
    label: String,
    healthy: AtomicBool,
    /// Health probes in a row that the process accepted but did not answer in time.
    silent_probes: AtomicU32,
}

struct State {
    /// Who holds each process, by pool index.
    holders: Vec<Option<Holder>>,
    /// Waiting requests per lane ([`Lane::index`]), oldest first.
    queues: [VecDeque<Waiter>; 2],
    in_service: [usize; 2],
    peak_in_service: [usize; 2],
    service_time: [Option<Duration>; 2],
    admitted: [u64; 2],
    rejected: [u64; 2],
    next_ticket: u64,
    /// Where the next scan for a free process starts, to spread requests over idle processes.
    rotation: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Request(Lane),
    Probe,
}

struct Waiter {
    ticket: u64,
    since: Instant,
    /// A process this request must not get: the one that refused its connection.
    exclude: Option<usize>,
    reply: oneshot::Sender<Dispatch>,
}

/// What a waiter is told.
enum Dispatch {
    /// This process is now yours.
    Granted(usize),
    /// No process is left that you could use.
    NoHealthyBackend,
}

/// The metric handles of each lane, resolved once.
struct LaneMetrics {
    queued: [prometheus::IntGauge; 2],
    in_service: [prometheus::IntGauge; 2],
    queue_wait: [prometheus::Histogram; 2],
    /// Per lane, per [`RejectReason::ALL`] position.
    rejections: [[prometheus::IntCounter; 3]; 2],
    /// Processes taken out of rotation, and put back.
    went_down: prometheus::IntCounter,
    came_back: prometheus::IntCounter,
}

// === impl Scheduler ===

impl Scheduler {
    /// A scheduler over one process per label (in pool order), every one in rotation.
    pub(super) fn new(config: AdmissionConfig, queue_timeout: Duration, labels: &[&str]) -> Self {
        let state = State {
            holders: vec![None; labels.len()],
            queues: [VecDeque::new(), VecDeque::new()],
            in_service: [0; 2],
            peak_in_service: [0; 2],
            service_time: [None; 2],
            admitted: [0; 2],
            rejected: [0; 2],
            next_ticket: 0,
            rotation: 0,
        };
        Scheduler {
            config,
            queue_timeout,
            health: labels
                .iter()
                .map(|&label| Health {
                    label: label.to_owned(),
                    healthy: AtomicBool::new(true),
                    silent_probes: AtomicU32::new(0),
                })
                .collect(),
            state: Mutex::new(state),
            metrics: OnceLock::new(),
        }
    }

    /// Reports lane state to these metrics from now on (the first call wins).
    pub(super) fn attach_metrics(&self, metrics: &AdmissionMetrics) {
        let per_lane = |lane: Lane| lane.label();
        let resolved = LaneMetrics {
            queued: Lane::ALL.map(|l| metrics.queued.with_label_values(&[per_lane(l)])),
            in_service: Lane::ALL.map(|l| metrics.in_service.with_label_values(&[per_lane(l)])),
            queue_wait: Lane::ALL.map(|l| metrics.queue_wait.with_label_values(&[per_lane(l)])),
            rejections: Lane::ALL.map(|l| {
                RejectReason::ALL.map(|r| {
                    metrics
                        .rejections
                        .with_label_values(&[per_lane(l), r.label()])
                })
            }),
            went_down: metrics.health_changes.with_label_values(&["down"]),
            came_back: metrics.health_changes.with_label_values(&["up"]),
        };
        if self.metrics.set(resolved).is_ok() {
            self.publish(&self.lock());
        }
    }

    /// Waits for a healthy process other than `exclude`, in `lane`.
    ///
    /// # Errors
    /// `NoHealthyBackend` when no process is left to wait for (at once, or while waiting),
    /// `Saturated` when the lane refuses the request (at once) or its deadline passes.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        lane: Lane,
        exclude: Option<usize>,
    ) -> Result<Slot, FcgiError> {
        let since = Instant::now();
        let (reply, rx) = oneshot::channel();
        let ticket = {
            let mut state = self.lock();
            if !self.has_candidate(exclude) {
                return Err(FcgiError::NoHealthyBackend);
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queues[lane.index()].push_back(Waiter {
                ticket,
                since,
                exclude,
                reply,
            });
            self.dispatch(&mut state);
            // Not started at once: it may wait only if its lane admits it.
            if let Some(position) = position(&state, lane, ticket) {
                let mut view = self.view(&state);
                view.queued[lane.index()] -= 1;
                if let Err(rejection) = policy::admit(&self.config, lane, position, &view) {
                    state.queues[lane.index()].remove(position);
                    return Err(self.refuse(&mut state, rejection));
                }
            }
            self.publish(&state);
            ticket
        };
        let mut wait = Wait {
            scheduler: Arc::clone(self),
            lane,
            ticket,
            rx,
            settled: false,
        };
        let deadline = since + self.config.limits(lane).max_wait.min(self.queue_timeout);
        let dispatch = match tokio::time::timeout_at(deadline, &mut wait.rx).await {
            Ok(received) => received.unwrap_or(Dispatch::NoHealthyBackend),
            Err(_elapsed) => self.give_up(&mut wait)?,
        };
        wait.settled = true;
        match dispatch {
            Dispatch::Granted(index) => {
                if let Some(metrics) = self.metrics.get() {
                    metrics.queue_wait[lane.index()].observe(since.elapsed().as_secs_f64());
                }
                Ok(Slot {
                    scheduler: Arc::clone(self),
                    index,
                    lane,
                    granted: Instant::now(),
                })
            }
            Dispatch::NoHealthyBackend => Err(FcgiError::NoHealthyBackend),
        }
    }

    /// Claims `index` for a health probe if it is idle; never waits.
    pub(super) fn try_claim_idle(self: &Arc<Self>, index: usize) -> Option<ProbeSlot> {
        let mut state = self.lock();
        if state.holders[index].is_some() {
            return None;
        }
        state.holders[index] = Some(Holder::Probe);
        Some(ProbeSlot {
            scheduler: Arc::clone(self),
            index,
        })
    }

    /// Every lane's current state.
    pub(super) fn lanes(&self) -> Vec<LaneStatus> {
        let state = self.lock();
        Lane::ALL
            .iter()
            .map(|&lane| {
                let i = lane.index();
                LaneStatus {
                    lane,
                    queued: state.queues[i].len(),
                    in_service: state.in_service[i],
                    peak_in_service: state.peak_in_service[i],
                    admitted: state.admitted[i],
                    rejected: state.rejected[i],
                    service_time: state.service_time[i],
                }
            })
            .collect()
    }

    /// Hands free processes to waiters, in the order the admission policy says, until no
    /// process is free or no waiter may start.
    fn dispatch(&self, state: &mut State) {
        let now = Instant::now();
        loop {
            let view = self.view(state);
            let oldest_large = state.queues[Lane::Large.index()]
                .front()
                .map(|waiter| now.saturating_duration_since(waiter.since));
            let Some(lane) = policy::next_lane(&self.config, &view, oldest_large) else {
                return;
            };
            let free = self.free_processes(state);
            // The first waiter of the lane that may use a free process (a retried request
            // must avoid the process that refused its connection).
            let found =
                state.queues[lane.index()]
                    .iter()
                    .enumerate()
                    .find_map(|(position, waiter)| {
                        let index = free.iter().copied().find(|&i| Some(i) != waiter.exclude)?;
                        Some((position, index))
                    });
            let Some((position, index)) = found else {
                return;
            };
            let waiter = state.queues[lane.index()]
                .remove(position)
                .expect("position found above");
            state.holders[index] = Some(Holder::Request(lane));
            state.in_service[lane.index()] += 1;
            state.rotation = index + 1;
            // The receiver lives as long as its ticket is queued (see `Wait::drop`), so the
            // send only fails if that invariant is broken; then the process stays free.
            if waiter.reply.send(Dispatch::Granted(index)).is_err() {
                state.holders[index] = None;
                state.in_service[lane.index()] -= 1;
                continue;
            }
            let i = lane.index();
            state.admitted[i] += 1;
            state.peak_in_service[i] = state.peak_in_service[i].max(state.in_service[i]);
        }
    }

    /// Frees a process; `service` is the lane and how long a request held it, if one ran.
    fn release(&self, state: &mut State, index: usize, service: Option<(Lane, Duration)>) {
        if let Some(Holder::Request(lane)) = state.holders[index].take() {
            state.in_service[lane.index()] -= 1;
        }
        if let Some((lane, held)) = service {
            let average = &mut state.service_time[lane.index()];
            *average = Some(policy::updated_service_time(*average, held));
        }
        self.dispatch(state);
        self.publish(state);
    }

    /// A request whose deadline passed: out of the queue and refused, unless a process (or the
    /// news that none is left) reached it just before; the lock makes that check exact, since
    /// waiters are only answered under it.
    fn give_up(&self, wait: &mut Wait) -> Result<Dispatch, FcgiError> {
        let mut state = self.lock();
        wait.settled = true;
        match position(&state, wait.lane, wait.ticket) {
            Some(position) => {
                state.queues[wait.lane.index()].remove(position);
            }
            None => {
                if let Ok(dispatch) = wait.rx.try_recv() {
                    return Ok(dispatch);
                }
            }
        }
        let rejection = policy::deadline_passed(&self.config, wait.lane, &self.view(&state));
        Err(self.refuse(&mut state, rejection))
    }

    fn refuse(&self, state: &mut State, rejection: Rejection) -> FcgiError {
        state.rejected[rejection.lane.index()] += 1;
        if let Some(metrics) = self.metrics.get() {
            let reason = RejectReason::ALL
                .iter()
                .position(|&r| r == rejection.reason)
                .expect("every reason is listed");
            metrics.rejections[rejection.lane.index()][reason].inc();
        }
        self.publish(state);
        FcgiError::Saturated(rejection)
    }

    /// Fails the waiters that no healthy process could serve any more.
    fn fail_stranded(&self, state: &mut State) {
        for queue in &mut state.queues {
            for waiter in std::mem::take(queue) {
                if self.has_candidate(waiter.exclude) {
                    queue.push_back(waiter);
                } else {
                    // A waiter that has just given up has dropped its receiver; nothing to tell.
                    let _ = waiter.reply.send(Dispatch::NoHealthyBackend);
                }
            }
        }
    }

    fn view(&self, state: &State) -> LaneView {
        LaneView {
            queued: [state.queues[0].len(), state.queues[1].len()],
            in_service: state.in_service,
            healthy: self.healthy_count(),
            service_time: state.service_time,
        }
    }

    /// Healthy processes nobody holds, starting at the rotation point.
    fn free_processes(&self, state: &State) -> Vec<usize> {
        let n = self.health.len();
        (0..n)
            .map(|offset| (state.rotation + offset) % n)
            .filter(|&i| state.holders[i].is_none() && self.is_healthy(i))
            .collect()
    }

    fn has_candidate(&self, exclude: Option<usize>) -> bool {
        (0..self.health.len()).any(|i| Some(i) != exclude && self.is_healthy(i))
    }

    fn publish(&self, state: &State) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        for lane in Lane::ALL {
            let i = lane.index();
            metrics.queued[i].set(gauge_value(state.queues[i].len()));
            metrics.in_service[i].set(gauge_value(state.in_service[i]));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed by short, panic-free sections; a poisoned lock still holds
        // consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === health ===

impl Scheduler {
    /// Whether process `index` is in rotation.
    pub(super) fn is_healthy(&self, index: usize) -> bool {
        self.health[index].healthy.load(Ordering::SeqCst)
    }

    /// How many processes are in rotation.
    pub(super) fn healthy_count(&self) -> usize {
        (0..self.health.len())
            .filter(|&i| self.is_healthy(i))
            .count()
    }

    /// Puts a process into or out of rotation. Waiters that have no process left to wait for
    /// fail at once; a process back in rotation is handed to the next waiter.
    pub(super) fn set_health(&self, index: usize, healthy: bool, reason: &str) {
        let process = &self.health[index];
        let was = process.healthy.swap(healthy, Ordering::SeqCst);
        if was == healthy {
            if !healthy {
                log::warn!("iipsrv {} still down: {reason}", process.label);
            }
            return;
        }
        if healthy {
            log::info!("iipsrv {} is back in rotation", process.label);
        } else {
            log::error!("iipsrv {} taken out of rotation: {reason}", process.label);
        }
        if let Some(metrics) = self.metrics.get() {
            if healthy {
                &metrics.came_back
            } else {
                &metrics.went_down
            }
            .inc();
        }
        let mut state = self.lock();
        if !healthy {
            self.fail_stranded(&mut state);
        }
        self.dispatch(&mut state);
        self.publish(&state);
    }

    /// A health probe of process `index` got an answer: the process is serving.
    pub(super) fn probe_answered(&self, index: usize) {
        self.health[index].silent_probes.store(0, Ordering::Relaxed);
        self.set_health(index, true, "health probe succeeded");
    }

    /// A health probe of process `index` failed with `error` (its limit was `timeout`).
    ///
    /// A process that took the connection but did not answer in time is kept in rotation for a
    /// few probes in a row: when iipsrv processes are shared (several gateways, or nginx beside
    /// the gateway), that is usually a process busy with another client's connection, not a dead
    /// one, and taking it out at once would make requests fail with 503 while it works fine. Any
    /// other failure takes it out at once (a dead process refuses connections at once).
    pub(super) fn probe_failed(&self, index: usize, error: &FcgiError, timeout: Duration) {
        let process = &self.health[index];
        let within_grace = matches!(error, FcgiError::Timeout(Phase::FirstByte))
            && process.silent_probes.fetch_add(1, Ordering::Relaxed) + 1
                < SILENT_PROBES_BEFORE_DOWN;
        if within_grace && self.is_healthy(index) {
            log::info!(
                "iipsrv {} did not answer a health probe within {timeout:?}: busy with another client? (kept in rotation for now)",
                process.label,
            );
        } else {
            self.set_health(index, false, &format!("health probe failed: {error}"));
        }
    }
}

fn position(state: &State, lane: Lane, ticket: u64) -> Option<usize> {
    state.queues[lane.index()]
        .iter()
        .position(|waiter| waiter.ticket == ticket)
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

// === waiting ===

/// A queued request. Dropped before it is settled (the caller went away), it leaves its queue
/// or hands back the process it was just given.
struct Wait {
    scheduler: Arc<Scheduler>,
    lane: Lane,
    ticket: u64,
    rx: oneshot::Receiver<Dispatch>,
    settled: bool,
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let scheduler = Arc::clone(&self.scheduler);
        let mut state = scheduler.lock();
        if let Some(position) = position(&state, self.lane, self.ticket) {
            state.queues[self.lane.index()].remove(position);
            scheduler.publish(&state);
        } else if let Ok(Dispatch::Granted(index)) = self.rx.try_recv() {
            scheduler.release(&mut state, index, None);
        }
    }
}

// === slots ===

/// A process given to one request. Gives it back, and records how long it was held, on drop.
pub(super) struct Slot {
    scheduler: Arc<Scheduler>,
    index: usize,
    lane: Lane,
    granted: Instant,
}

impl Slot {
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// Takes this process out of rotation before the slot is released, so that the request
    /// queued behind this one is not handed a process that just failed.
    pub(super) fn mark_down(&self, reason: &str) {
        self.scheduler.set_health(self.index, false, reason);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        let held = self.granted.elapsed();
        self.scheduler
            .release(&mut state, self.index, Some((self.lane, held)));
    }
}

/// A process claimed by a health probe; freed on drop.
pub(super) struct ProbeSlot {
    scheduler: Arc<Scheduler>,
    index: usize,
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        self.scheduler.release(&mut state, self.index, None);
    }
}

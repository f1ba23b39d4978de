//! Active health checks: a real FastCGI round trip to every process, and (with keep-alive) the
//! closing of connections idle for too long.
//!
//! A TCP connect proves nothing: the kernel completes the handshake into the listen backlog even
//! when iipsrv is stopped or stuck (measured: `docs/pingora-notes.md` §1.6). So the probe is a
//! complete request, answered by iipsrv itself. What a probe's result does to the rotation is
//! the scheduler's to decide ([`Scheduler::probe_answered`], [`Scheduler::probe_failed`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::client::Limits;
use super::process::Process;
use super::record::encode_request;
use super::scheduler::Scheduler;

/// A probe answer is iipsrv's small HTML page; anything bigger is not a probe answer.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;

/// The pool's settings the health checks use.
#[derive(Debug, Clone, Copy)]
pub(super) struct HealthSettings {
    /// Time between health checks of each process.
    pub(super) interval: Duration,
    /// Limit on one health probe.
    pub(super) timeout: Duration,
    /// The pool's connect limit (a probe uses the shorter of this and `timeout`).
    pub(super) connect_timeout: Duration,
    /// A request running longer than this means its process hung.
    pub(super) total_timeout: Duration,
    /// Kept connections idle this long are closed; zero when keep-alive is off.
    pub(super) keepalive_idle: Duration,
}

/// The health checks of a pool's processes. The pool holds the only lasting reference; the
/// loops hold a weak one, so they end when the pool is dropped.
pub(super) struct HealthChecks {
    processes: Vec<Arc<Process>>,
    scheduler: Arc<Scheduler>,
    settings: HealthSettings,
    /// The probe request, encoded once.
    request: Bytes,
}

impl HealthChecks {
    /// The checks of `processes` (in pool order), whose rotation `scheduler` keeps.
    pub(super) fn new(
        processes: Vec<Arc<Process>>,
        scheduler: Arc<Scheduler>,
        settings: HealthSettings,
    ) -> Arc<Self> {
        Arc::new(HealthChecks {
            processes,
            scheduler,
            settings,
            request: probe_request(),
        })
    }

    /// Spawns the health-check loop (and, with keep-alive, the idle-connection reaper) on the
    /// current tokio runtime; see `BackendPool::spawn_health_checks`.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub(super) fn spawn(self: &Arc<Self>) {
        let keepalive_idle = self.settings.keepalive_idle;
        if !keepalive_idle.is_zero() {
            let checks = Arc::downgrade(self);
            tokio::spawn(async move {
                // Idle connections are closed within a fraction of their allowed idle time.
                let mut ticker =
                    tokio::time::interval((keepalive_idle / 4).max(Duration::from_millis(5)));
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(checks) = checks.upgrade() else {
                        return;
                    };
                    for process in &checks.processes {
                        process.close_idle_after(keepalive_idle);
                    }
                }
            });
        }
        let checks = Arc::downgrade(self);
        let interval = self.settings.interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(checks) = checks.upgrade() else {
                    return;
                };
                // Probe the processes in parallel: one slow probe must not delay the others.
                let mut running = JoinSet::new();
                for index in 0..checks.processes.len() {
                    let checks = checks.clone();
                    running.spawn(async move { checks.check(index).await });
                }
                while running.join_next().await.is_some() {}
            }
        });
    }

    /// Checks one process: a busy one only for a hung request, an idle one that has not
    /// answered a request within the last interval with a probe.
    async fn check(&self, index: usize) {
        let process = &self.processes[index];
        let settings = &self.settings;
        // The probe claims the process like a request does, so it never runs beside one on the
        // same single-threaded process, and only when it is idle: it never queues behind requests.
        let Some(claim) = self.scheduler.try_claim_idle(index) else {
            if let Some(busy) = process.busy_for() {
                if busy > settings.total_timeout {
                    let reason = format!("a request has been running for {busy:?} (hung?)");
                    self.scheduler.set_health(index, false, &reason);
                }
            }
            return;
        };
        if self.scheduler.is_healthy(index) && process.answered_within(settings.interval) {
            return;
        }
        let limits = Limits {
            connect_timeout: settings.connect_timeout.min(settings.timeout),
            first_byte_timeout: settings.timeout,
            total_timeout: settings.timeout,
            max_response_bytes: MAX_PROBE_RESPONSE,
        };
        match process.probe(&self.request, &limits).await {
            Ok(_) => self.scheduler.probe_answered(index),
            Err(error) => self.scheduler.probe_failed(index, &error, settings.timeout),
        }
        drop(claim);
    }
}

/// The health probe request.
fn probe_request() -> Bytes {
    // An empty QUERY_STRING makes iipsrv answer at once with its 400 HTML page: a full FastCGI
    // round trip that touches no image. Any well-formed answer proves the process is serving.
    encode_request(
        &[
            ("QUERY_STRING", ""),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/fcgi-bin/iipsrv.fcgi"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
        ],
        false,
    )
    .expect("the probe parameters are tiny")
}

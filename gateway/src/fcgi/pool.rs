//! The pool of iipsrv processes, the public face of `fcgi`: it composes the processes
//! (`process`), the admission lanes in front of them and their rotation (`scheduler`), and the
//! health checks (`health`).
//!
//! Each process serves one request at a time because iipsrv handles one connection at a time: a
//! second connection would only wait in its listen backlog, where no timeout or priority of ours
//! applies. A request holds its process (a [`Slot`]) for its whole exchange; health probes claim
//! only an idle process, so a probe never competes with a request for the same single-threaded
//! process and never waits behind one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::cgi::BackendResponse;
use super::client::Limits;
use super::error::FcgiError;
use super::health::{HealthChecks, HealthSettings};
use super::process::{Process, RunningRequest};
use super::record::encode_request;
use super::scheduler::{LaneStatus, Scheduler, Slot};
use crate::admission::policy::{AdmissionConfig, Lane};
use crate::metrics::AdmissionMetrics;

/// How the pool reaches its processes and how long it waits for them.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// One entry per iipsrv process: `127.0.0.1:9001` or `unix:/path/to.sock`.
    pub addresses: Vec<String>,
    /// Limit on opening a connection. Loopback connects take microseconds; a slow connect means
    /// the listen backlog is full.
    pub connect_timeout: Duration,
    /// Limit from sending the request to the first record of the answer. iipsrv writes nothing
    /// until the image is rendered, so this bounds rendering time.
    pub first_byte_timeout: Duration,
    /// Limit on the whole exchange, connect included.
    pub total_timeout: Duration,
    /// The longest any request waits for a free process before it fails with `Saturated`;
    /// each admission lane may set a shorter wait.
    pub queue_timeout: Duration,
    /// Time between health checks of each process.
    pub health_interval: Duration,
    /// Limit on one health probe (a complete FastCGI request).
    pub health_timeout: Duration,
    /// Limit on one answer (head and body).
    pub max_response_bytes: usize,
    /// How long a connection may stay open without a request before it is closed; zero opens a
    /// new connection for every request. While open it pins the process to this gateway (libfcgi
    /// serves one connection at a time), so use zero when several gateways share processes.
    pub keepalive_idle: Duration,
    /// Lanes, slot limits, queue bounds and waits (see [`crate::admission`]).
    pub admission: AdmissionConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            addresses: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
            queue_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(2),
            max_response_bytes: 64 * 1024 * 1024,
            keepalive_idle: Duration::ZERO,
            admission: AdmissionConfig::defaults(0, Duration::from_secs(10)),
        }
    }
}

/// One process as `/healthz` and the metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    pub addr: String,
    /// In rotation. A process leaves it on a failure and comes back after a good health probe.
    pub healthy: bool,
    /// Requests currently running on it: 0 or 1 (health probes are not counted).
    pub in_flight: usize,
    /// Requests that got a complete answer (any HTTP status).
    pub served: u64,
    /// Requests and health probes that failed.
    pub failures: u64,
}

/// The iipsrv processes behind the gateway. Cheap to share through `Arc`.
pub struct BackendPool {
    cfg: PoolConfig,
    /// In configuration order; a process's index is its position here, in the scheduler and in
    /// the health checks alike.
    processes: Vec<Arc<Process>>,
    /// Who holds each process, which are in rotation, and the lanes of requests waiting.
    scheduler: Arc<Scheduler>,
    health: Arc<HealthChecks>,
}

// === impl BackendPool ===

impl BackendPool {
    /// Creates the pool. Every process starts healthy; a dead one fails its first connect (which
    /// is retried elsewhere) or its first health probe, whichever comes first.
    pub fn new(cfg: PoolConfig) -> Arc<Self> {
        let processes: Vec<Arc<Process>> = cfg
            .addresses
            .iter()
            .map(|address| Arc::new(Process::new(address)))
            .collect();
        let labels: Vec<&str> = processes.iter().map(|p| p.label()).collect();
        let scheduler = Arc::new(Scheduler::new(
            cfg.admission.clone(),
            cfg.queue_timeout,
            &labels,
        ));
        let health = HealthChecks::new(
            processes.clone(),
            scheduler.clone(),
            HealthSettings {
                interval: cfg.health_interval,
                timeout: cfg.health_timeout,
                connect_timeout: cfg.connect_timeout,
                total_timeout: cfg.total_timeout,
                keepalive_idle: cfg.keepalive_idle,
            },
        );
        Arc::new(BackendPool {
            cfg,
            processes,
            scheduler,
            health,
        })
    }

    /// Runs one request on a free, healthy process, waiting in `lane` for one.
    ///
    /// At most one request runs on a process at a time. Within its lane a request waits first
    /// come first served; small requests go before large ones, and large ones never hold more
    /// than the lane's slots (see [`crate::admission`]). A request that would wait longer than
    /// its lane allows, or finds the queue full, is refused at once; one still waiting at its
    /// deadline is refused then. When the connection to the chosen process
    /// cannot be made, that process is marked down and the request is tried once on another. Any
    /// later failure is returned as is, without a retry: a request that crashed or hung one
    /// process would do the same to the next. A process that crashed, hung or misbehaved is taken
    /// out of rotation until a health probe succeeds.
    ///
    /// # Errors
    /// `NoHealthyBackend` at once when every process is down, `Saturated` when the lane refused
    /// the request (at once or at its deadline), otherwise what the exchange failed with (see
    /// [`FcgiError`]).
    pub async fn execute(
        &self,
        params: &[(&str, &str)],
        lane: Lane,
    ) -> Result<BackendResponse, FcgiError> {
        let keepalive_idle = self.cfg.keepalive_idle;
        let request = encode_request(params, !keepalive_idle.is_zero())?;
        let limits = self.request_limits();
        let mut failed: Option<usize> = None;
        loop {
            let slot = self.scheduler.acquire(lane, failed).await?;
            let index = slot.index();
            let process = self.processes[index].label().to_owned();
            crate::request_log::notes::note(|n| {
                n.lane = Some(lane.label());
                n.backend = Some(process);
            });
            let lease = Lease {
                running: self.processes[index].start_request(),
                slot,
            };
            // The exchange runs in its own task, which owns the slot. If the caller gives up
            // (client gone, an outer timeout), the task still runs to END_REQUEST or to its own
            // timeout: iipsrv keeps working on a request whose client left, and the slot must
            // keep saying so until it is done, or the next request would queue in the process's
            // backlog beside it.
            let exchange = tokio::spawn(lease.run(request.clone(), limits, keepalive_idle));
            let result = match exchange.await {
                Ok(result) => result,
                Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
            };
            match result {
                Err(error) if error.is_retryable() && failed.is_none() => {
                    failed = Some(index);
                }
                other => return other,
            }
        }
    }

    /// The state of every process, in configuration order.
    pub fn snapshot(&self) -> Vec<BackendStatus> {
        self.processes
            .iter()
            .enumerate()
            .map(|(index, process)| {
                let counts = process.counts();
                BackendStatus {
                    addr: process.label().to_owned(),
                    healthy: self.scheduler.is_healthy(index),
                    in_flight: counts.in_flight,
                    served: counts.served,
                    failures: counts.failures,
                }
            })
            .collect()
    }

    /// How many processes are in rotation.
    pub fn healthy_count(&self) -> usize {
        self.scheduler.healthy_count()
    }

    /// The state of each admission lane, small first.
    pub fn lanes(&self) -> Vec<LaneStatus> {
        self.scheduler.lanes()
    }

    /// Reports queue depth, in-service counts, waits and refusals per lane to these metrics
    /// from now on (the first call wins).
    pub fn attach_admission_metrics(&self, metrics: &AdmissionMetrics) {
        self.scheduler.attach_metrics(metrics);
    }

    /// Spawns the health-check loop (and, with keep-alive, the idle-connection reaper) on the
    /// current tokio runtime.
    ///
    /// Every `health_interval`, each process that is free and has not answered a request within
    /// the last interval gets a probe. A failed probe takes the process out of rotation and a good
    /// one puts it back. A busy process is not probed (the probe would only queue behind the
    /// running request), unless its request has run longer than `total_timeout`: then it is hung
    /// and goes out of rotation. The loop ends when the pool is dropped.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn spawn_health_checks(&self) {
        self.health.spawn();
    }

    fn request_limits(&self) -> Limits {
        Limits {
            connect_timeout: self.cfg.connect_timeout,
            first_byte_timeout: self.cfg.first_byte_timeout,
            total_timeout: self.cfg.total_timeout,
            max_response_bytes: self.cfg.max_response_bytes,
        }
    }

    #[cfg(test)]
    pub(crate) fn peak_in_flight(&self) -> Vec<usize> {
        self.processes.iter().map(|p| p.peak_in_flight()).collect()
    }
}

/// One request on the process it was given. The fields drop in order: the request ends
/// (in-flight accounting) before the slot goes back to the scheduler.
struct Lease {
    running: RunningRequest,
    slot: Slot,
}

impl Lease {
    /// Runs the exchange and, when it failed in a way that says the process is broken, takes
    /// the process out of rotation before the slot is released (when `self` drops), so the
    /// request queued behind this one is not handed a dead process.
    async fn run(
        self,
        request: Bytes,
        limits: Limits,
        keepalive_idle: Duration,
    ) -> Result<BackendResponse, FcgiError> {
        let result = self
            .running
            .exchange(&request, &limits, keepalive_idle)
            .await;
        if let Err(error) = &result {
            if error.marks_backend_down() {
                self.slot.mark_down(&error.to_string());
            } else {
                log::warn!("iipsrv {}: {error}", self.running.label());
            }
        }
        result
    }
}

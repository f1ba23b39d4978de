//! The pool of iipsrv processes: one request at a time per process, admission lanes in front
//! (see [`crate::admission`] and `scheduler`), and health state per process.
//!
//! Each process serves one request at a time because iipsrv handles one connection at a time: a
//! second connection would only wait in its listen backlog, where no timeout or priority of ours
//! applies. A request holds its process (a [`Slot`]) for its whole exchange; health probes claim
//! only an idle process, so a probe never competes with a request for the same single-threaded
//! process and never waits behind one.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::cgi::BackendResponse;
use super::client::{self, BackendAddr, Connection, Limits};
use super::record::encode_request;
use super::scheduler::{LaneStatus, ProbeSlot, Scheduler, Slot};
use super::{FcgiError, Phase};
use crate::admission::{AdmissionConfig, Lane};
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
    pub(super) cfg: PoolConfig,
    pub(super) backends: Vec<Arc<Backend>>,
    /// Who holds each process, and the lanes of requests waiting for one.
    scheduler: Arc<Scheduler>,
}

/// The state of one process.
pub(super) struct Backend {
    pub(super) label: String,
    pub(super) addr: BackendAddr,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    /// Highest `in_flight` ever seen; the tests check that it never exceeds one.
    peak_in_flight: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    /// Health probes in a row that the process accepted but did not answer in time.
    pub(super) silent_probes: AtomicU32,
    /// When the running request started, so the health loop can spot a hung process.
    busy_since: Mutex<Option<Instant>>,
    /// When a request last got a complete answer; a process that just answered needs no probe.
    last_answer: Mutex<Option<Instant>>,
    /// The connection kept open after the last request, if keep-alive is on.
    idle: Mutex<Option<IdleConnection>>,
}

/// A connection waiting for the next request to its process.
struct IdleConnection {
    connection: Connection,
    since: Instant,
}

// === impl BackendPool ===

impl BackendPool {
    /// Creates the pool. Every process starts healthy; a dead one fails its first connect (which
    /// is retried elsewhere) or its first health probe, whichever comes first.
    pub fn new(cfg: PoolConfig) -> Arc<Self> {
        let backends: Vec<Arc<Backend>> = cfg
            .addresses
            .iter()
            .map(|text| {
                Arc::new(Backend {
                    label: text.clone(),
                    addr: BackendAddr::parse(text),
                    healthy: AtomicBool::new(true),
                    in_flight: AtomicUsize::new(0),
                    peak_in_flight: AtomicUsize::new(0),
                    served: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    silent_probes: AtomicU32::new(0),
                    busy_since: Mutex::new(None),
                    last_answer: Mutex::new(None),
                    idle: Mutex::new(None),
                })
            })
            .collect();
        let scheduler = Arc::new(Scheduler::new(
            cfg.admission.clone(),
            cfg.queue_timeout,
            backends.clone(),
        ));
        Arc::new(BackendPool {
            cfg,
            backends,
            scheduler,
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
            let lease = Lease::new(&self.backends[index], slot);
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
        self.backends
            .iter()
            .map(|b| BackendStatus {
                addr: b.label.clone(),
                healthy: b.is_healthy(),
                in_flight: b.in_flight.load(Ordering::Relaxed),
                served: b.served.load(Ordering::Relaxed),
                failures: b.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// How many processes are in rotation.
    pub fn healthy_count(&self) -> usize {
        self.backends.iter().filter(|b| b.is_healthy()).count()
    }

    /// The state of each admission lane, small first.
    pub fn lanes(&self) -> Vec<LaneStatus> {
        self.scheduler.lanes()
    }

    /// The admission settings: thresholds, slots, queue bounds and waits.
    pub fn admission(&self) -> &AdmissionConfig {
        self.scheduler.config()
    }

    /// Reports queue depth, in-service counts, waits and refusals per lane to these metrics
    /// from now on (the first call wins).
    pub fn attach_admission_metrics(&self, metrics: &AdmissionMetrics) {
        self.scheduler.attach_metrics(metrics);
    }

    fn request_limits(&self) -> Limits {
        Limits {
            connect_timeout: self.cfg.connect_timeout,
            first_byte_timeout: self.cfg.first_byte_timeout,
            total_timeout: self.cfg.total_timeout,
            max_response_bytes: self.cfg.max_response_bytes,
        }
    }

    /// Puts a process into or out of rotation; see [`Backend::set_health`].
    pub(super) fn set_health(&self, index: usize, healthy: bool, reason: &str) {
        self.scheduler.set_health(index, healthy, reason);
    }

    /// Claims an idle process for a health probe; `None` when a request (or probe) holds it.
    pub(super) fn try_claim_idle(&self, index: usize) -> Option<ProbeSlot> {
        self.scheduler.try_claim_idle(index)
    }

    pub(super) fn record_probe_failure(&self, index: usize) {
        self.backends[index]
            .failures
            .fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn peak_in_flight(&self) -> Vec<usize> {
        self.backends
            .iter()
            .map(|b| b.peak_in_flight.load(Ordering::Relaxed))
            .collect()
    }
}

// === impl Backend ===

impl Backend {
    pub(super) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Puts the process into or out of rotation; true when that changed it. Only the scheduler
    /// calls this, so that it can hand out or withdraw the process.
    pub(super) fn set_health(&self, healthy: bool, reason: &str) -> bool {
        let was = self.healthy.swap(healthy, Ordering::SeqCst);
        if was != healthy {
            if healthy {
                log::info!("iipsrv {} is back in rotation", self.label);
            } else {
                log::error!("iipsrv {} taken out of rotation: {reason}", self.label);
            }
        } else if !healthy {
            log::warn!("iipsrv {} still down: {reason}", self.label);
        }
        was != healthy
    }

    /// How long the running request has been running, if there is one.
    pub(super) fn busy_for(&self) -> Option<Duration> {
        lock(&self.busy_since).map(|since| since.elapsed())
    }

    /// One exchange: on the kept connection when there is a fresh one, else on a new connection,
    /// which is kept afterwards when keep-alive is on.
    async fn exchange(
        &self,
        request: &[u8],
        limits: &Limits,
        keepalive_idle: Duration,
    ) -> Result<BackendResponse, FcgiError> {
        let total_deadline = Instant::now() + limits.total_timeout;
        let Some(mut kept) = self.take_idle(keepalive_idle) else {
            return self
                .exchange_fresh(request, limits, keepalive_idle, total_deadline)
                .await;
        };
        match client::exchange(&mut kept, &self.label, request, limits, total_deadline).await {
            Ok((response, clean_end)) => {
                if clean_end {
                    self.keep(kept);
                }
                return Ok(response);
            }
            // The process may have closed the kept connection (a restart); then the request never
            // ran, and it goes again on a new connection to the same process.
            Err(FcgiError::EndedWithoutResponse | FcgiError::Io(_)) => {
                log::debug!("iipsrv {}: kept connection ended, reconnecting", self.label);
            }
            Err(other) => return Err(other),
        }
        match self
            .exchange_fresh(request, limits, keepalive_idle, total_deadline)
            .await
        {
            // A refused connect now means the process died with this request in hand: it must not
            // look retryable, or the pool would hand the same request to the next process.
            Err(FcgiError::Connect(_) | FcgiError::Timeout(Phase::Connect)) => {
                Err(FcgiError::EndedWithoutResponse)
            }
            other => other,
        }
    }

    async fn exchange_fresh(
        &self,
        request: &[u8],
        limits: &Limits,
        keepalive_idle: Duration,
        total_deadline: Instant,
    ) -> Result<BackendResponse, FcgiError> {
        let connect_deadline = (Instant::now() + limits.connect_timeout).min(total_deadline);
        let mut connection = Connection::open(&self.addr, &self.label, connect_deadline).await?;
        let (response, clean_end) = client::exchange(
            &mut connection,
            &self.label,
            request,
            limits,
            total_deadline,
        )
        .await?;
        if clean_end && !keepalive_idle.is_zero() {
            self.keep(connection);
        }
        Ok(response)
    }

    /// The kept connection, if it has not been idle for `max_idle` yet.
    fn take_idle(&self, max_idle: Duration) -> Option<Connection> {
        lock(&self.idle)
            .take()
            .filter(|idle| idle.since.elapsed() < max_idle)
            .map(|idle| idle.connection)
    }

    fn keep(&self, connection: Connection) {
        *lock(&self.idle) = Some(IdleConnection {
            connection,
            since: Instant::now(),
        });
    }

    /// Closes the kept connection if it has been idle for `max_idle`, so that the process is free
    /// for other clients (another gateway, the next gateway process during an upgrade).
    pub(super) fn close_idle_after(&self, max_idle: Duration) {
        let mut idle = lock(&self.idle);
        if idle
            .as_ref()
            .is_some_and(|kept| kept.since.elapsed() >= max_idle)
        {
            *idle = None;
        }
    }

    /// Closes the kept connection now (before a health probe, which uses a connection of its own).
    pub(super) fn close_idle(&self) {
        lock(&self.idle).take();
    }

    /// Whether a request got a complete answer within `window`.
    pub(super) fn answered_within(&self, window: Duration) -> bool {
        lock(&self.last_answer).is_some_and(|at| at.elapsed() < window)
    }
}

/// The slot of one process, held for one request. Keeps the in-flight accounting honest
/// however the request ends; the slot itself is released after that (fields drop after
/// [`Lease::drop`]).
struct Lease {
    backend: Arc<Backend>,
    slot: Slot,
}

impl Lease {
    fn new(backend: &Arc<Backend>, slot: Slot) -> Self {
        let now = backend.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        backend.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        *lock(&backend.busy_since) = Some(Instant::now());
        Lease {
            backend: Arc::clone(backend),
            slot,
        }
    }

    /// Runs the exchange on this process and records how it went.
    async fn run(
        self,
        request: Bytes,
        limits: Limits,
        keepalive_idle: Duration,
    ) -> Result<BackendResponse, FcgiError> {
        let backend = &self.backend;
        let result = backend.exchange(&request, &limits, keepalive_idle).await;
        match &result {
            Ok(_) => {
                backend.served.fetch_add(1, Ordering::Relaxed);
                *lock(&backend.last_answer) = Some(Instant::now());
            }
            Err(error) => {
                backend.failures.fetch_add(1, Ordering::Relaxed);
                // Out of rotation before the slot is released (when `self` drops), so the
                // request queued behind this one is not handed a dead process.
                if error.marks_backend_down() {
                    let index = self.slot.index();
                    self.slot
                        .scheduler()
                        .set_health(index, false, &error.to_string());
                } else {
                    log::warn!("iipsrv {}: {error}", backend.label);
                }
            }
        }
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *lock(&self.backend.busy_since) = None;
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex that only guards plain data; a panic elsewhere cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The health probe request, encoded once.
pub(super) fn probe_request() -> Bytes {
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

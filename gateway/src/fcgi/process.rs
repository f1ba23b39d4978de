//! One iipsrv process: where it listens, the connection kept open to it, and how its requests
//! went.
//!
//! A process knows nothing about who may use it or whether it is in rotation: the scheduler
//! decides both (see `scheduler`). It runs the exchange it is given, on the kept connection or a
//! new one, and counts the outcome for `/healthz` and the metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::cgi::BackendResponse;
use super::client::{self, BackendAddr, Connection, Limits};
use super::error::{FcgiError, Phase};

/// The state of one process, apart from its health (which the scheduler owns).
pub(super) struct Process {
    label: String,
    addr: BackendAddr,
    in_flight: AtomicUsize,
    /// Highest `in_flight` ever seen; the tests check that it never exceeds one.
    peak_in_flight: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    /// When the running request started, so the health loop can spot a hung process.
    busy_since: Mutex<Option<Instant>>,
    /// When a request last got a complete answer; a process that just answered needs no probe.
    last_answer: Mutex<Option<Instant>>,
    /// The connection kept open after the last request, if keep-alive is on.
    idle: Mutex<Option<IdleConnection>>,
}

/// What a process has done, as `/healthz` and the metrics report it.
pub(super) struct Counts {
    /// Requests running on it now: 0 or 1 (health probes are not counted).
    pub(super) in_flight: usize,
    /// Requests that got a complete answer (any HTTP status).
    pub(super) served: u64,
    /// Requests and health probes that failed.
    pub(super) failures: u64,
}

/// A connection waiting for the next request to its process.
struct IdleConnection {
    connection: Connection,
    since: Instant,
}

impl Process {
    /// The process at `address` (`127.0.0.1:9001` or `unix:/path/to.sock`), which is also its
    /// label in logs and status.
    pub(super) fn new(address: &str) -> Process {
        Process {
            label: address.to_owned(),
            addr: BackendAddr::parse(address),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            busy_since: Mutex::new(None),
            last_answer: Mutex::new(None),
            idle: Mutex::new(None),
        }
    }

    pub(super) fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    pub(super) fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request as running on this process until the returned guard drops, however the
    /// request ends. The caller must hold the process's slot (see `scheduler`).
    pub(super) fn start_request(self: &Arc<Self>) -> RunningRequest {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        *lock(&self.busy_since) = Some(Instant::now());
        RunningRequest {
            process: Arc::clone(self),
        }
    }

    /// How long the running request has been running, if there is one.
    pub(super) fn busy_for(&self) -> Option<Duration> {
        lock(&self.busy_since).map(|since| since.elapsed())
    }

    /// Whether a request got a complete answer within `window`.
    pub(super) fn answered_within(&self, window: Duration) -> bool {
        lock(&self.last_answer).is_some_and(|at| at.elapsed() < window)
    }

    /// One health probe: `request` on a connection of its own (a kept one would make the
    /// process ignore the probe's, so it is closed first). A failure is counted.
    pub(super) async fn probe(
        &self,
        request: &[u8],
        limits: &Limits,
    ) -> Result<BackendResponse, FcgiError> {
        self.close_idle();
        let result = client::execute_once(&self.addr, &self.label, request, limits).await;
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
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

    /// Closes the kept connection now.
    fn close_idle(&self) {
        lock(&self.idle).take();
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
}

/// A request running on a process (see [`Process::start_request`]). Keeps the in-flight
/// accounting honest however the request ends: dropping it ends the request.
pub(super) struct RunningRequest {
    process: Arc<Process>,
}

impl RunningRequest {
    pub(super) fn label(&self) -> &str {
        &self.process.label
    }

    /// Runs the exchange on this process and counts how it went.
    pub(super) async fn exchange(
        &self,
        request: &[u8],
        limits: &Limits,
        keepalive_idle: Duration,
    ) -> Result<BackendResponse, FcgiError> {
        let process = &self.process;
        let result = process.exchange(request, limits, keepalive_idle).await;
        match &result {
            Ok(_) => {
                process.served.fetch_add(1, Ordering::Relaxed);
                *lock(&process.last_answer) = Some(Instant::now());
            }
            Err(_) => {
                process.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Drop for RunningRequest {
    fn drop(&mut self) {
        *lock(&self.process.busy_since) = None;
        self.process.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex that only guards plain data; a panic elsewhere cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

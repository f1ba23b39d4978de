//! Active health checks: a real FastCGI round trip to every process.
//!
//! A TCP connect proves nothing: the kernel completes the handshake into the listen backlog even
//! when iipsrv is stopped or stuck (measured, pingora-notes §1.6). So the probe is a complete
//! request, answered by iipsrv itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::client::{self, Limits};
use super::error::{FcgiError, Phase};
use super::pool::{probe_request, BackendPool};

/// A probe answer is iipsrv's small HTML page; anything bigger is not a probe answer.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;

/// Probes in a row a process may accept without answering before it is taken out of rotation.
const SILENT_PROBES_BEFORE_DOWN: u32 = 3;

impl BackendPool {
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
    pub fn spawn_health_checks(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        let interval = self.cfg.health_interval;
        let keepalive_idle = self.cfg.keepalive_idle;
        if !keepalive_idle.is_zero() {
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                // Idle connections are closed within a fraction of their allowed idle time.
                let mut ticker = tokio::time::interval(
                    (keepalive_idle / 4).max(std::time::Duration::from_millis(5)),
                );
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    for backend in &pool.backends {
                        backend.close_idle_after(keepalive_idle);
                    }
                }
            });
        }
        tokio::spawn(async move {
            let request = probe_request();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                // Probe the processes in parallel: one slow probe must not delay the others.
                let mut checks = JoinSet::new();
                for index in 0..pool.backends.len() {
                    let (pool, request) = (pool.clone(), request.clone());
                    checks.spawn(async move { pool.check(index, &request).await });
                }
                while checks.join_next().await.is_some() {}
            }
        });
    }

    /// Checks one process; see [`BackendPool::spawn_health_checks`].
    async fn check(&self, index: usize, request: &Bytes) {
        let backend = &self.backends[index];
        // The probe claims the process like a request does, so it never runs beside one on the
        // same single-threaded process, and only when it is idle: it never queues behind requests.
        let Some(claim) = self.try_claim_idle(index) else {
            if let Some(busy) = backend.busy_for() {
                if busy > self.cfg.total_timeout {
                    let reason = format!("a request has been running for {busy:?} (hung?)");
                    self.set_health(index, false, &reason);
                }
            }
            return;
        };
        if backend.is_healthy() && backend.answered_within(self.cfg.health_interval) {
            return;
        }
        // The probe opens its own connection; a kept one would make the process ignore it.
        backend.close_idle();
        let limits = Limits {
            connect_timeout: self.cfg.connect_timeout.min(self.cfg.health_timeout),
            first_byte_timeout: self.cfg.health_timeout,
            total_timeout: self.cfg.health_timeout,
            max_response_bytes: MAX_PROBE_RESPONSE,
        };
        let result = client::execute_once(&backend.addr, &backend.label, request, &limits).await;
        match result {
            Ok(_) => {
                backend.silent_probes.store(0, Ordering::Relaxed);
                self.set_health(index, true, "health probe succeeded");
            }
            // The process took the connection but did not answer in time. When iipsrv processes
            // are shared (several gateways, or nginx beside the gateway), that is usually a
            // process busy with another client's connection, not a dead one: taking it out at
            // once would make requests fail with 503 while it works fine. Only a process silent
            // for several probes in a row goes out (a dead one refuses connections at once).
            Err(error) => {
                self.record_probe_failure(index);
                let within_grace = matches!(error, FcgiError::Timeout(Phase::FirstByte))
                    && backend.silent_probes.fetch_add(1, Ordering::Relaxed) + 1
                        < SILENT_PROBES_BEFORE_DOWN;
                if within_grace && backend.is_healthy() {
                    log::info!(
                        "iipsrv {} did not answer a health probe within {:?}: busy with another client? (kept in rotation for now)",
                        backend.label,
                        self.cfg.health_timeout
                    );
                } else {
                    self.set_health(index, false, &format!("health probe failed: {error}"));
                }
            }
        }
        drop(claim);
    }
}

//! Connection hygiene on the public listener: what a client can hold open, and for how long.
//!
//! Pingora gives most of it per request, and the service sets it there (`service.rs`): the
//! keep-alive idle timeout (`Session::set_keepalive`), the write timeout and minimum send rate
//! for readers that stop reading (`set_write_timeout`, `set_min_send_rate`), and request heads
//! are capped at Pingora's 1 MiB. Two things Pingora does not have live here, in front of its
//! HTTP application ([`Guarded`], a `ServerApp` around Pingora's proxy app):
//!
//! - a cap on open connections, in total and per client address ([`gate`]): a connection
//!   over the cap gets a one-line 503 (total) or 429 (per client) and is closed before Pingora
//!   allocates anything for it. Connections from trusted proxies count only in the total; the
//!   clients behind them are capped per request instead, by the address the proxy recorded
//!   (`service.rs`, same [`gate::Gate`]);
//! - a deadline for the whole request head ([`head_deadline`]), against slow-loris clients.

pub mod gate;
pub mod head_deadline;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::metrics::Metrics;
use crate::public_url::TrustedProxies;
use gate::{Gate, Refused};
use head_deadline::HeadDeadline;

/// How long the one-line refusal of a connection over the cap may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// `gateway.connections`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// The whole request head must arrive within this.
    pub head_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// A write to the client that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    /// Bytes per second a client must at least read; larger bodies get proportionally longer
    /// than `write_timeout`. `None`: only `write_timeout` applies.
    pub min_send_rate: Option<usize>,
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64), and requests in flight per client
    /// behind a trusted proxy.
    pub max_per_client: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            head_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            min_send_rate: Some(32 * 1024),
            max_connections: 4096,
            max_per_client: 128,
        }
    }
}

/// `gateway.connections` as written in the file; every key is optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// The whole request head must arrive within this. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_timeout_ms: Option<u64>,
    /// An idle kept-alive connection is closed after this. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout_s: Option<u64>,
    /// A write that makes no progress for this long closes the connection. Default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
    /// The slowest reading a client may do, bytes/s (`0`: off). Default 32768.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_send_rate: Option<usize>,
    /// Open connections in total. Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Open connections per client (requests in flight behind a trusted proxy). Default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_client: Option<usize>,
}

impl RawConnections {
    /// Checks every value and fills in the defaults.
    ///
    /// # Errors
    /// Every problem, one message each, named by its key under `gateway.connections`.
    pub fn resolve(&self) -> Result<ConnectionSettings, Vec<String>> {
        let defaults = ConnectionSettings::default();
        let mut problems = Vec::new();
        let mut positive = |name: &str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if value == 0 {
                problems.push(format!("gateway.connections.{name} must be at least 1"));
            }
            value
        };
        let head_timeout = positive(
            "head_timeout_ms",
            self.head_timeout_ms,
            millis(defaults.head_timeout),
        );
        let keepalive_timeout = positive(
            "keepalive_timeout_s",
            self.keepalive_timeout_s,
            defaults.keepalive_timeout.as_secs(),
        );
        let write_timeout = positive(
            "write_timeout_ms",
            self.write_timeout_ms,
            millis(defaults.write_timeout),
        );
        let max_connections = positive(
            "max_connections",
            self.max_connections.map(|n| n as u64),
            defaults.max_connections as u64,
        );
        let max_per_client = positive(
            "max_per_client",
            self.max_per_client.map(|n| n as u64),
            defaults.max_per_client as u64,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ConnectionSettings {
            head_timeout: Duration::from_millis(head_timeout),
            keepalive_timeout: Duration::from_secs(keepalive_timeout),
            write_timeout: Duration::from_millis(write_timeout),
            min_send_rate: match self.min_send_rate {
                None => defaults.min_send_rate,
                Some(0) => None,
                Some(rate) => Some(rate),
            },
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            max_per_client: usize::try_from(max_per_client).unwrap_or(usize::MAX),
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Pingora's HTTP application behind the connection cap and the head deadline.
pub struct Guarded<A> {
    inner: Arc<A>,
    connections: Arc<Gate>,
    proxies: TrustedProxies,
    head_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl<A> Guarded<A> {
    pub fn new(
        inner: A,
        settings: &ConnectionSettings,
        proxies: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> Self {
        Guarded {
            inner: Arc::new(inner),
            connections: Gate::new(settings.max_connections, settings.max_per_client),
            proxies,
            head_timeout: settings.head_timeout,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = peer_ip(&stream);
        // A trusted proxy carries many clients: only the total applies to its connections.
        let counted_as = peer.filter(|ip| !self.proxies.contains(*ip));
        let permit = match self.connections.enter(counted_as) {
            Ok(permit) => permit,
            Err(refused) => {
                self.metrics
                    .connections_refused
                    .with_label_values(&[refusal_label(refused)])
                    .inc();
                refuse(&mut stream, refused).await;
                return None;
            }
        };
        self.metrics.connections_open.inc();
        let stream: Stream = Box::new(HeadDeadline::new(
            stream,
            self.head_timeout,
            self.metrics.head_timeouts.clone(),
        ));
        // Pingora's HTTP application serves every request of the connection before returning.
        let reusable = self.inner.process_new(stream, shutdown).await;
        self.metrics.connections_open.dec();
        drop(permit);
        reusable
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    let address = digest.peer_addr()?;
    address.as_inet().map(|inet| inet.ip())
}

pub(crate) fn refusal_label(refused: Refused) -> &'static str {
    match refused {
        Refused::Total => "total",
        Refused::PerClient => "per_client",
    }
}

/// A complete HTTP/1.1 answer that closes the connection, written without Pingora (nothing has
/// been read, and nothing more will be).
async fn refuse(stream: &mut Stream, refused: Refused) {
    let (status, body) = match refused {
        Refused::Total => ("503 Service Unavailable", "too many connections\n"),
        Refused::PerClient => (
            "429 Too Many Requests",
            "too many connections from this client\n",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        AsyncWriteExt::shutdown(stream).await
    })
    .await;
}

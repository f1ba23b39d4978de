//! The HTTP side of one virtual user: one keep-alive HTTP/1.1 connection per target, like a browser tab, and one
//! request at a time on it.
//!
//! A connection is opened on first use and again after any failure, so a timed-out or broken exchange never
//! poisons the next request. A GET that fails on a *reused* connection before any answer arrived is retried
//! once on a new connection, as browsers do: the server may close an idle keep-alive connection just as the
//! request is sent, and that race says nothing about the server's capacity.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST, RETRY_AFTER, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::sample::FailureKind;

/// The `User-Agent` of every request.
const AGENT: &str = concat!("iiif-loadtest/", env!("CARGO_PKG_VERSION"));

/// The result of one request.
#[derive(Debug)]
pub struct Exchange {
    /// From the start (including any connect) to the last body byte, or to the failure.
    pub latency: Duration,
    /// Body bytes received.
    pub bytes: u64,
    /// Why it failed, with a human-readable detail; `None` on success.
    pub failure: Option<(FailureKind, String)>,
    /// The `Retry-After` of an error answer, when it gave one in seconds.
    pub retry_after: Option<Duration>,
}

/// What a completed exchange answered.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
}

/// An open connection and the task that drives it.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
    used: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closing the socket now (rather than when the driver notices) frees the server's slot at once.
        self.driver.abort();
    }
}

/// A failure before the answer was complete.
struct Broken {
    kind: FailureKind,
    detail: String,
    /// True when no response header had arrived and the connection had been used before: safe to retry.
    retryable: bool,
}

/// One user's connection to one target.
pub struct Client {
    address: SocketAddr,
    host: HeaderValue,
    timeout: Duration,
    connection: Option<Connection>,
}

impl Client {
    /// A client for the server at `address`, sending `host` as the `Host` header; nothing is opened yet.
    pub fn new(address: SocketAddr, host: HeaderValue, timeout: Duration) -> Client {
        Client {
            address,
            host,
            timeout,
            connection: None,
        }
    }

    /// GETs `path` and reads the whole body, within the timeout.
    pub async fn get(&mut self, path: &str) -> Exchange {
        let started = Instant::now();
        let mut bytes = 0u64;
        let outcome = tokio::time::timeout(self.timeout, async {
            match self.exchange(path, &mut bytes).await {
                Err(broken) if broken.retryable => {
                    bytes = 0;
                    self.exchange(path, &mut bytes).await
                }
                other => other,
            }
        })
        .await;
        let mut retry_after = None;
        let failure = match outcome {
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => None,
            Ok(Ok(answer)) => {
                retry_after = answer.retry_after;
                let status = answer.status;
                let detail = match retry_after {
                    Some(wait) => format!("status {status}, Retry-After {} s", wait.as_secs()),
                    None => format!("status {status}"),
                };
                Some((FailureKind::Status(status), detail))
            }
            Ok(Err(broken)) => {
                self.connection = None;
                Some((broken.kind, broken.detail))
            }
            Err(_elapsed) => {
                // The exchange may be half-way through a body: the connection is unusable.
                self.connection = None;
                Some((
                    FailureKind::Timeout,
                    format!("no complete answer within {:?}", self.timeout),
                ))
            }
        };
        Exchange {
            latency: started.elapsed(),
            bytes,
            failure,
            retry_after,
        }
    }

    /// One attempt: the answer's status once its body has been read (the connection stays usable whatever
    /// the status), `Err` when the connection broke.
    async fn exchange(&mut self, path: &str, bytes: &mut u64) -> Result<Answer, Broken> {
        let host = self.host.clone();
        let connection = self.connection().await?;
        let reused = connection.used;
        connection.used = true;
        let broken = |kind, detail: String, answered: bool| Broken {
            kind,
            detail,
            retryable: reused && !answered,
        };
        if let Err(error) = connection.sender.ready().await {
            return Err(broken(FailureKind::Transport, error.to_string(), false));
        }
        let request = Request::get(path)
            .header(HOST, host)
            .header(USER_AGENT, AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|error| broken(FailureKind::Transport, error.to_string(), true))?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|error| broken(FailureKind::Transport, error.to_string(), false))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| broken(FailureKind::Transport, error.to_string(), true))?;
            if let Some(data) = frame.data_ref() {
                *bytes += data.len() as u64;
            }
        }
        Ok(Answer {
            status,
            retry_after,
        })
    }

    /// The open connection, opening one when there is none or the server closed it.
    async fn connection(&mut self) -> Result<&mut Connection, Broken> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.sender.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        Ok(self.connection.as_mut().expect("set above"))
    }

    async fn connect(&self) -> Result<Connection, Broken> {
        let connect_failed = |detail: String| Broken {
            kind: FailureKind::Connect,
            detail,
            retryable: false,
        };
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|error| connect_failed(format!("connect to {}: {error}", self.address)))?;
        // Requests are small and latency is what is measured: no Nagle delay.
        stream
            .set_nodelay(true)
            .map_err(|error| connect_failed(format!("set TCP_NODELAY: {error}")))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| connect_failed(format!("HTTP/1 handshake: {error}")))?;
        let driver = tokio::spawn(async move {
            // Errors surface through the sender; the driver only has to run.
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            driver,
            used: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::server;
    use tokio::net::TcpListener;

    fn client(address: SocketAddr, timeout: Duration) -> Client {
        Client::new(address, HeaderValue::from_static("test"), timeout)
    }

    #[tokio::test]
    async fn counts_body_bytes_and_keeps_the_connection() {
        let address = server(|_| Some("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")).await;
        let mut client = client(address, Duration::from_secs(5));
        for _ in 0..3 {
            let exchange = client.get("/a").await;
            assert!(exchange.failure.is_none(), "{:?}", exchange.failure);
            assert_eq!(exchange.bytes, 5);
        }
    }

    #[tokio::test]
    async fn a_non_2xx_status_is_a_failure_of_its_own_code() {
        let address = server(|_| {
            Some(
                "HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 2\r\n\r\nno",
            )
        })
        .await;
        let exchange = client(address, Duration::from_secs(5)).get("/a").await;
        assert_eq!(
            exchange.failure,
            Some((
                FailureKind::Status(503),
                "status 503, Retry-After 2 s".to_string()
            ))
        );
        assert_eq!(exchange.bytes, 2);
        assert_eq!(exchange.retry_after, Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let address = server(|_| None).await;
        let exchange = client(address, Duration::from_millis(200)).get("/a").await;
        assert_eq!(
            exchange.failure.map(|(kind, _)| kind),
            Some(FailureKind::Timeout)
        );
        assert!(exchange.latency >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure() {
        // Bind and drop, so nothing listens on the port.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let exchange = client(address, Duration::from_secs(5)).get("/a").await;
        assert_eq!(
            exchange.failure.map(|(kind, _)| kind),
            Some(FailureKind::Connect)
        );
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_is_reopened() {
        // Every answer closes the connection; each request must still succeed.
        let address =
            server(|_| Some("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx"))
                .await;
        let mut client = client(address, Duration::from_secs(5));
        for _ in 0..3 {
            assert!(client.get("/a").await.failure.is_none());
        }
    }
}

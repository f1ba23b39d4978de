//! A deadline for the whole request head, which Pingora does not have.
//!
//! Pingora's read timeouts apply to each read, so a client that sends one header line every
//! few seconds keeps a connection (and its buffer) forever: the slow-loris attack. This wrapper
//! around the accepted stream watches the bytes Pingora reads and fails the read once a head
//! has been arriving for longer than the deadline:
//!
//! - the clock starts when the connection is accepted, and again with the first byte of each
//!   later request on a kept-alive connection (the idle time between requests is the
//!   keep-alive timeout's business, not this one's);
//! - it stops at the blank line that ends the head (`\r\n\r\n`, or `\n\n` which HTTP parsers
//!   also accept);
//! - a write (the response) means the request is over: the next byte read starts a new head.
//!
//! Reads while a request is being served (Pingora's probe that notices a client hanging up)
//! have no deadline. Everything else is passed through to the wrapped stream untouched.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::Stream;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is, as far as its reads and writes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A head is arriving; `line_ends` counts the line ends in a row seen so far.
    Head { line_ends: u8 },
    /// The head is complete; the request is being served.
    Served,
    /// A response was written; waiting for the next request.
    Between,
}

impl Phase {
    /// The phase after `bytes` were read.
    pub(crate) fn after_read(self, bytes: &[u8]) -> Phase {
        let mut line_ends = match self {
            Phase::Served => return Phase::Served,
            Phase::Between if bytes.is_empty() => return Phase::Between,
            Phase::Between => 0,
            Phase::Head { line_ends } => line_ends,
        };
        for &byte in bytes {
            match byte {
                b'\n' => {
                    line_ends += 1;
                    if line_ends == 2 {
                        return Phase::Served;
                    }
                }
                // `\r\n\r\n`: a carriage return neither ends a line nor breaks a run.
                b'\r' => {}
                _ => line_ends = 0,
            }
        }
        Phase::Head { line_ends }
    }
}

/// The accepted stream with the head deadline enforced on its reads.
#[derive(Debug)]
pub struct HeadDeadline {
    inner: Stream,
    limit: Duration,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// Counts the heads that missed the deadline.
    timeouts: IntCounter,
}

impl HeadDeadline {
    /// Wraps a stream just accepted: its first head must be complete within `limit`.
    pub fn new(inner: Stream, limit: Duration, timeouts: IntCounter) -> HeadDeadline {
        HeadDeadline {
            inner,
            limit,
            phase: Phase::Head { line_ends: 0 },
            deadline: Box::pin(tokio::time::sleep(limit)),
            timeouts,
        }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.phase, Phase::Head { .. }) && this.deadline.as_mut().poll(cx).is_ready() {
            this.timeouts.inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head took longer than the head deadline",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if this.phase == Phase::Between && !read.is_empty() {
            let limit = this.limit;
            this.deadline.as_mut().reset(Instant::now() + limit);
        }
        this.phase = this.phase.after_read(read);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if written > 0 {
            self.phase = Phase::Between;
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        if written > 0 {
            self.phase = Phase::Between;
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// What Pingora asks of a stream besides reading and writing: all the wrapped stream's.

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(bytes: &[&[u8]]) -> Phase {
        bytes
            .iter()
            .fold(Phase::Head { line_ends: 0 }, |phase, chunk| {
                phase.after_read(chunk)
            })
    }

    #[test]
    fn a_head_ends_at_the_blank_line_however_it_is_split() {
        let head = b"GET /iiif/3/x/info.json HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in 0..=head.len() {
            let (left, right) = head.split_at(split);
            assert_eq!(after(&[left, right]), Phase::Served, "split at {split}");
        }
        assert_eq!(after(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Phase::Served);
    }

    #[test]
    fn an_unfinished_head_stays_a_head() {
        for partial in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\r\nX: 1\r\nY: 2\r\n\r",
            b"",
        ] {
            assert!(
                matches!(after(&[partial]), Phase::Head { .. }),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn between_requests_nothing_counts_until_a_byte_arrives() {
        assert_eq!(Phase::Between.after_read(b""), Phase::Between);
        assert_eq!(
            Phase::Between.after_read(b"G"),
            Phase::Head { line_ends: 0 }
        );
        assert_eq!(Phase::Served.after_read(b"\r\n\r\n"), Phase::Served);
    }

    /// A real socket pair: a trickled head fails at the deadline, a prompt one passes.
    #[tokio::test]
    async fn a_trickled_head_fails_at_the_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            // A head line every 100 ms for 2 s, then the client hangs up.
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream
                    .write_all(format!("X-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let (socket, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(socket));
        let timeouts = IntCounter::new("timeouts", "test").unwrap();
        let mut guarded = HeadDeadline::new(stream, Duration::from_millis(300), timeouts.clone());
        let mut buf = [0u8; 64];
        let error = loop {
            match guarded.read(&mut buf).await {
                Ok(0) => panic!("the client closed first"),
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        // Timed out while the client was still trickling (it would have hung up after 2 s).
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(timeouts.get(), 1);
        client.abort();
    }
}

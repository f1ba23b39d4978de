//! One FastCGI request over one connection, with timeouts and size limits.
//!
//! libfcgi serves the connection it accepted until the client closes it, so a kept-alive
//! connection pins a single-threaded iipsrv process to one client (measured, pingora-notes §3.3).
//! The pool therefore keeps at most one idle connection per process, only for a short idle time,
//! and only when configured (`keepalive_idle`); otherwise every request gets a fresh connection.
//! A request is always written with one write: libfcgi drops a kept connection when a record of
//! the previous request arrives late.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{timeout_at, Instant};

use super::cgi::{parse_response, BackendResponse};
use super::error::{FcgiError, Phase};
use super::record::{Output, ResponseReader, Step, HEADER_LEN};

/// The CGI head may not be longer than this; iipsrv's heads are a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At most this much of a process's `STDERR` is logged per request.
pub const MAX_STDERR_LOGGED: usize = 2048;

/// The socket is read in pieces of at most this size (the size of the buffered reader this
/// replaced, so that what "nothing received behind `END_REQUEST`" means did not change).
const READ_BUFFER: usize = 64 * 1024;

/// Where an iipsrv process listens: `127.0.0.1:9001` or `unix:/run/iipsrv/1.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl BackendAddr {
    pub(crate) fn parse(text: &str) -> BackendAddr {
        match text.strip_prefix("unix:") {
            Some(path) => BackendAddr::Unix(PathBuf::from(path)),
            None => BackendAddr::Tcp(text.to_owned()),
        }
    }
}

/// The bounds of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connect_timeout: Duration,
    /// From the moment the connection is open until the first record arrives.
    pub(crate) first_byte_timeout: Duration,
    /// From the start of the connect until `END_REQUEST`.
    pub(crate) total_timeout: Duration,
    /// Limit on the `STDOUT` stream (head and body).
    pub(crate) max_response_bytes: usize,
}

/// An open connection to one iipsrv process.
#[derive(Debug)]
pub(crate) enum Connection {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection {
    /// Opens a connection, giving up at `deadline`.
    ///
    /// # Errors
    /// `Connect` when the process refuses or is absent, `Timeout(Connect)` when the backlog is full.
    pub(crate) async fn open(
        addr: &BackendAddr,
        label: &str,
        deadline: Instant,
    ) -> Result<Connection, FcgiError> {
        match addr {
            BackendAddr::Tcp(host_port) => {
                let stream = connect(deadline, TcpStream::connect(host_port.as_str())).await?;
                // The request is one write and the answer is read to the end, but without NODELAY
                // a small final segment from us could still wait for a delayed ACK.
                if let Err(e) = stream.set_nodelay(true) {
                    log::debug!("iipsrv {label}: cannot set TCP_NODELAY: {e}");
                }
                Ok(Connection::Tcp(stream))
            }
            BackendAddr::Unix(path) => Ok(Connection::Unix(
                connect(deadline, UnixStream::connect(path)).await?,
            )),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// Sends one encoded request (see [`super::record::encode_request`]) over a fresh connection and reads
/// the complete answer; the connection is closed afterwards.
///
/// `label` names the process in log lines.
///
/// # Errors
/// Any [`FcgiError`] except `Saturated` and `NoHealthyBackend`.
pub(crate) async fn execute_once(
    addr: &BackendAddr,
    label: &str,
    request: &[u8],
    limits: &Limits,
) -> Result<BackendResponse, FcgiError> {
    let started = Instant::now();
    let total_deadline = started + limits.total_timeout;
    let connect_deadline = (started + limits.connect_timeout).min(total_deadline);
    let mut connection = Connection::open(addr, label, connect_deadline).await?;
    exchange(&mut connection, label, request, limits, total_deadline)
        .await
        .map(|(response, _)| response)
}

async fn connect<S>(
    deadline: Instant,
    fut: impl std::future::Future<Output = io::Result<S>>,
) -> Result<S, FcgiError> {
    match timeout_at(deadline, fut).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(FcgiError::Connect(e)),
        Err(_) => Err(FcgiError::Timeout(Phase::Connect)),
    }
}

/// Runs the exchange on an open connection under the total deadline.
///
/// The flag says whether the connection ended cleanly: `END_REQUEST` read and nothing unread
/// behind it, so it can carry another request if it was sent with `FCGI_KEEP_CONN`.
pub(crate) async fn exchange<S>(
    stream: &mut S,
    label: &str,
    request: &[u8],
    limits: &Limits,
    total_deadline: Instant,
) -> Result<(BackendResponse, bool), FcgiError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first_byte_deadline = (Instant::now() + limits.first_byte_timeout).min(total_deadline);
    let conversation = converse(stream, label, request, limits, first_byte_deadline);
    match timeout_at(total_deadline, conversation).await {
        Ok(result) => result,
        Err(_) => Err(FcgiError::Timeout(Phase::Total)),
    }
}

async fn converse<S>(
    stream: &mut S,
    label: &str,
    request: &[u8],
    limits: &Limits,
    first_byte_deadline: Instant,
) -> Result<(BackendResponse, bool), FcgiError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    timeout_at(first_byte_deadline, stream.write_all(request))
        .await
        .map_err(|_| FcgiError::Timeout(Phase::FirstByte))?
        .map_err(FcgiError::Io)?;

    // The socket is read in pieces of up to READ_BUFFER bytes; the reader decodes them.
    let mut reader = ResponseReader::new(limits.max_response_bytes, MAX_STDERR_LOGGED);
    let mut buffer = vec![0u8; READ_BUFFER];
    // Bytes received so far, for the first-byte deadline: it ends with the first record header.
    let mut received = 0;
    let (output, clean_end) = 'answer: loop {
        let n = if received < HEADER_LEN {
            timeout_at(first_byte_deadline, read_some(stream, &mut buffer))
                .await
                .map_err(|_| FcgiError::Timeout(Phase::FirstByte))??
        } else {
            read_some(stream, &mut buffer).await?
        };
        if n == 0 {
            // EOF before END_REQUEST: the process died (or closed on us) mid-request.
            return Err(FcgiError::EndedWithoutResponse);
        }
        received += n;
        let mut input = &buffer[..n];
        loop {
            match reader.feed(&mut input)? {
                Step::NeedMore => break,
                Step::Ignored(other) => {
                    log::debug!("iipsrv {label}: ignoring fastcgi record of type {other}");
                }
                // Clean: nothing received behind END_REQUEST.
                Step::Done(output) => break 'answer (output, input.is_empty()),
            }
        }
    };
    complete(output, label).map(|response| (response, clean_end))
}

/// The answer from its records: `STDERR` logged, the CGI head of `STDOUT` parsed. No I/O (the
/// fuzz target in `gateway/fuzz` runs it too).
///
/// # Errors
/// `EndedWithoutResponse` when there is no output at all, `BadHead` when its head is malformed.
pub fn complete(output: Output, label: &str) -> Result<BackendResponse, FcgiError> {
    let Output {
        stdout,
        stderr,
        app_status,
    } = output;
    if !stderr.is_empty() {
        log::warn!(
            "iipsrv {label} stderr: {}",
            String::from_utf8_lossy(&stderr).trim_end()
        );
    }
    if stdout.is_empty() {
        log::debug!("iipsrv {label}: END_REQUEST (app status {app_status}) without output");
        return Err(FcgiError::EndedWithoutResponse);
    }
    parse_response(stdout.freeze(), MAX_HEAD_BYTES)
}

/// One read: the number of bytes read, 0 when the connection ended (cleanly or not; for a
/// FastCGI server that has not sent `END_REQUEST` yet, both mean the same).
async fn read_some<R: AsyncRead + Unpin>(conn: &mut R, buf: &mut [u8]) -> Result<usize, FcgiError> {
    match conn.read(buf).await {
        Ok(n) => Ok(n),
        Err(e) if ended(&e) => Ok(0),
        Err(e) => Err(FcgiError::Io(e)),
    }
}

/// EOF, or a reset from a process that died with our request unread.
fn ended(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::super::record::{self, kind, REQUEST_ID};
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use tokio::io::duplex;

    const LIMITS: Limits = Limits {
        connect_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(500),
        max_response_bytes: 1024,
    };

    fn rec(kind: u8, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(1);
        out.put_u8(kind);
        out.put_u16(REQUEST_ID);
        out.put_u16(content.len() as u16);
        out.put_u8(padding);
        out.put_u8(0);
        out.put_slice(content);
        out.put_bytes(0, usize::from(padding));
        out.to_vec()
    }

    fn end_request() -> Vec<u8> {
        rec(kind::END_REQUEST, &[0, 0, 0, 0, 0, 0, 0, 0], 0)
    }

    /// Plays a scripted server: reads the request, then writes `answer` (and closes).
    async fn run(answer: Vec<u8>, close: bool) -> Result<BackendResponse, FcgiError> {
        let (client, mut server) = duplex(64 * 1024);
        let request = record::encode_request(&[("QUERY_STRING", "")], false).unwrap();
        let expected = request.len();
        let server = tokio::spawn(async move {
            let mut got = vec![0; expected];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&answer).await.unwrap();
            if close {
                drop(server);
            } else {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let mut client = client;
        let result = exchange(
            &mut client,
            "test",
            &request,
            &LIMITS,
            Instant::now() + LIMITS.total_timeout,
        )
        .await;
        server.abort();
        result.map(|(response, _)| response)
    }

    #[tokio::test]
    async fn stdout_records_are_joined_and_stderr_is_not_output() {
        let mut answer = rec(kind::STDOUT, b"Status: 404 Not Found\r\nX-A: 1\r\n", 3);
        answer.extend(rec(kind::STDERR, b"warning from the app", 0));
        answer.extend(rec(kind::STDOUT, b"\r\nbody", 2));
        answer.extend(rec(kind::STDOUT, b"", 0));
        answer.extend(end_request());
        let r = run(answer, true).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.body, Bytes::from_static(b"body"));
    }

    #[tokio::test]
    async fn eof_before_end_request_is_an_error_even_with_output() {
        let answer = rec(kind::STDOUT, b"Content-Type: image/jpeg\r\n\r\n\xFF\xD8", 0);
        assert!(matches!(
            run(answer, true).await,
            Err(FcgiError::EndedWithoutResponse)
        ));
        assert!(matches!(
            run(Vec::new(), true).await,
            Err(FcgiError::EndedWithoutResponse)
        ));
        // A record cut in the middle.
        let mut cut = rec(kind::STDOUT, b"Content-Type: image/jpeg\r\n\r\n", 0);
        cut.truncate(12);
        assert!(matches!(
            run(cut, true).await,
            Err(FcgiError::EndedWithoutResponse)
        ));
    }

    #[tokio::test]
    async fn end_request_without_output_is_an_error() {
        assert!(matches!(
            run(end_request(), true).await,
            Err(FcgiError::EndedWithoutResponse)
        ));
    }

    #[tokio::test]
    async fn a_refusing_server_is_a_protocol_error() {
        let answer = rec(kind::END_REQUEST, &[0, 0, 0, 0, 2, 0, 0, 0], 0);
        assert!(matches!(
            run(answer, true).await,
            Err(FcgiError::Protocol(_))
        ));
        assert!(matches!(
            run(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), true).await,
            Err(FcgiError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let mut answer = rec(kind::STDOUT, &[b'a'; 1000], 0);
        answer.extend(rec(kind::STDOUT, &[b'a'; 100], 0));
        answer.extend(end_request());
        assert!(matches!(
            run(answer, true).await,
            Err(FcgiError::TooLarge(1024))
        ));
    }

    #[tokio::test]
    async fn silence_is_a_first_byte_timeout_and_a_stall_a_total_timeout() {
        let started = Instant::now();
        assert!(matches!(
            run(Vec::new(), false).await,
            Err(FcgiError::Timeout(Phase::FirstByte))
        ));
        assert!(started.elapsed() < Duration::from_millis(450));
        let stalled = rec(kind::STDOUT, b"Content-Type: image/jpeg\r\n\r\n", 0);
        assert!(matches!(
            run(stalled, false).await,
            Err(FcgiError::Timeout(Phase::Total))
        ));
    }

    #[tokio::test]
    async fn connect_failures_are_connect_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let request = record::encode_request(&[], false).unwrap();
        let result = execute_once(&BackendAddr::parse(&addr), "test", &request, &LIMITS).await;
        assert!(
            matches!(&result, Err(e @ FcgiError::Connect(_)) if e.is_retryable()),
            "{result:?}"
        );
        let missing = BackendAddr::parse("unix:/nonexistent/iipsrv.sock");
        assert_eq!(
            missing,
            BackendAddr::Unix(PathBuf::from("/nonexistent/iipsrv.sock"))
        );
        assert!(matches!(
            execute_once(&missing, "test", &request, &LIMITS).await,
            Err(FcgiError::Connect(_))
        ));
    }
}

//! What can go wrong on the way to an iipsrv process and back, and whose fault it is.

use std::fmt;
use std::io;

use crate::admission::policy::Rejection;

/// The part of an exchange that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the connection. Nothing was sent, so the request may go to another process.
    Connect,
    /// Sending the request and waiting for the first record of the answer. The process has the
    /// request (or has it queued in its listen backlog): it is hung, or busy for too long.
    FirstByte,
    /// The whole exchange, from connecting to the end of the answer.
    Total,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::FirstByte => "first byte",
            Phase::Total => "total",
        })
    }
}

/// Why a FastCGI request produced no usable answer.
///
/// The variants say who failed: the pool (`Saturated`, `NoHealthyBackend`), the caller
/// (`InvalidParams`), or the iipsrv process (everything else). The address of the process is
/// logged by the pool when the error happens; it is not part of the error so that callers can
/// map errors to HTTP answers without caring which process was involved.
#[derive(thiserror::Error, Debug)]
pub enum FcgiError {
    /// The TCP or Unix connection was refused or failed. The process never saw the request.
    #[error("could not connect to the iipsrv process: {0}")]
    Connect(#[source] io::Error),
    /// A timeout ran out; see [`Phase`].
    #[error("the iipsrv process timed out ({0})")]
    Timeout(Phase),
    /// Reading or writing the socket failed after the connection was made.
    #[error("i/o error talking to the iipsrv process: {0}")]
    Io(#[source] io::Error),
    /// The process sent bytes that are not FastCGI, or refused the request at the protocol level.
    #[error("the iipsrv process broke the fastcgi protocol: {0}")]
    Protocol(String),
    /// The FastCGI exchange was fine but the CGI head (`Status:` and header lines) was not.
    #[error("the iipsrv process sent a malformed cgi head: {0}")]
    BadHead(String),
    /// The connection closed before `END_REQUEST`, or `END_REQUEST` came without any output.
    /// This is what a crashed (segfaulted) iipsrv looks like.
    #[error("the iipsrv process ended the request without a response (it probably crashed)")]
    EndedWithoutResponse,
    /// The answer exceeded the configured size limit (in bytes).
    #[error("the iipsrv response is larger than {0} bytes")]
    TooLarge(usize),
    /// The caller passed parameters that cannot be encoded (absurdly long values).
    #[error("invalid fastcgi parameters: {0}")]
    InvalidParams(&'static str),
    /// The request's admission lane refused it: its queue was full, its estimated wait too
    /// long, or it waited until its deadline (see [`crate::admission`]).
    #[error("the iipsrv pool is saturated: {0}")]
    Saturated(Rejection),
    /// Every process is marked down; the request was not queued.
    #[error("no healthy iipsrv process")]
    NoHealthyBackend,
}

impl FcgiError {
    /// Whether the request can safely be sent to another process.
    ///
    /// True only when the request certainly never reached a process (the connection could not be
    /// made). Anything later must not be retried: a request that made one iipsrv crash or hang
    /// would do the same to the next one, which is how a single bad URL took down both processes
    /// behind nginx in the baseline measurements.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FcgiError::Connect(_) | FcgiError::Timeout(Phase::Connect)
        )
    }

    /// Whether this error says something is wrong with the process itself, so that it should be
    /// taken out of rotation until a health check succeeds.
    pub(crate) fn marks_backend_down(&self) -> bool {
        matches!(
            self,
            FcgiError::Connect(_)
                | FcgiError::Timeout(_)
                | FcgiError::Io(_)
                | FcgiError::Protocol(_)
                | FcgiError::EndedWithoutResponse
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_are_retryable() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(FcgiError::Connect(refused()).is_retryable());
        assert!(FcgiError::Timeout(Phase::Connect).is_retryable());
        assert!(!FcgiError::Timeout(Phase::FirstByte).is_retryable());
        assert!(!FcgiError::Timeout(Phase::Total).is_retryable());
        assert!(!FcgiError::Io(refused()).is_retryable());
        assert!(!FcgiError::EndedWithoutResponse.is_retryable());
        assert!(!FcgiError::Protocol("x".into()).is_retryable());
        let rejection = Rejection {
            lane: crate::admission::policy::Lane::Small,
            reason: crate::admission::policy::RejectReason::QueueFull,
            retry_after: std::time::Duration::from_secs(1),
        };
        assert!(!FcgiError::Saturated(rejection).is_retryable());
        assert!(!FcgiError::NoHealthyBackend.is_retryable());
    }

    #[test]
    fn a_bad_head_or_a_big_answer_does_not_mark_the_process_down() {
        assert!(!FcgiError::BadHead("x".into()).marks_backend_down());
        assert!(!FcgiError::TooLarge(1).marks_backend_down());
        assert!(FcgiError::EndedWithoutResponse.marks_backend_down());
        assert!(FcgiError::Timeout(Phase::FirstByte).marks_backend_down());
    }
}

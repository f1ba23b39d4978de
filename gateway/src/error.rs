//! The one error type of the request path, and the one place it becomes an HTTP answer.
//!
//! Everything below the edge (`backend`, `masters`, `facts`, the derivative cache, `app`)
//! returns a typed [`Error`] and keeps it typed: caches share it with the requests that waited,
//! retries match its variants. Only [`Error::response`] decides the status, the `Retry-After`,
//! the text the client reads, the log level and the metric label, so a reader looking for "where
//! does this 502 come from" has one `match` to read.
//!
//! Like Pingora's `ErrorSource`, every error says whose fault it is ([`Origin`]): the client's
//! (a 4xx, never worth more than a debug line), an upstream's (iipsrv, S3: logged, counted,
//! often retryable later) or the gateway's own (a bug or a resource problem: logged as an error).
//!
//! Messages for clients are short, lowercase, without a trailing full stop, and never contain a
//! filesystem path or anything iipsrv said: operator detail goes to the log only.

use std::fmt;
use std::time::Duration;

use iiif::IiifError;

use crate::admission::{RejectReason, Rejection};

/// `Retry-After` when every iipsrv process is down: health probes run about every second, so a
/// client retrying after a few seconds finds a restarted process.
const NO_PROCESS_RETRY_AFTER_S: u32 = 5;

/// `Retry-After` when the access-master cache could not start (unreadable credentials, bad
/// endpoint): the next request tries to start it again.
const SOURCE_START_RETRY_AFTER_S: u32 = 30;

/// `Retry-After` when the cache mount cannot be read or written.
const SOURCE_IO_RETRY_AFTER_S: u32 = 10;

/// `Retry-After` when the render budget is full: large renders take seconds.
const RENDER_BUSY_RETRY_AFTER_S: u32 = 2;

/// Whose fault an error is, as Pingora's `ErrorSource` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client asked for something that cannot be served.
    Downstream,
    /// iipsrv or the S3 store failed or refused.
    Upstream,
    /// The gateway itself failed.
    Internal,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The URL is malformed or asks for what IIIF (or a configured limit) forbids; the IIIF core
    /// chose the status (400, 501) and the message.
    Iiif(IiifError),
    /// The path names no endpoint.
    NoSuchEndpoint,
    /// A method other than GET, HEAD and OPTIONS.
    MethodNotAllowed,
    /// The ID archive says the image was withdrawn.
    Gone,
    /// The client already has as many requests in flight as one client may
    /// (`gateway.connections.max_per_client`, behind a trusted proxy).
    TooManyRequests,
    /// iipsrv did not deliver.
    Iipsrv(Iipsrv),
    /// The access master could not be had from S3 or the cache mount.
    Source(Source),
    /// Rendering the request would need more memory than one request may have
    /// (`gateway.render.max_request_mib`); bytes, worst case.
    OverBudget { needed: u64, limit: u64 },
    /// The render budget stayed full for `gateway.render.queue_timeout_ms`.
    RenderBusy,
    /// The gateway-side conversion (rotation, transcoding) failed.
    Render(String),
    /// A bug or a resource problem inside the gateway (a task that panicked, …).
    Internal(String),
}

/// What went wrong with iipsrv. `detail` is for the log: the query and what iipsrv said.
#[derive(Debug, Clone, PartialEq)]
pub enum Iipsrv {
    /// iipsrv cannot open the file as an image (it answered 404, or 400 for info.json).
    NoSuchImage { detail: String },
    /// The admission lane refused the request (queue full, wait too long, deadline reached).
    Saturated(Rejection),
    /// Every iipsrv process is marked down.
    NoProcess,
    /// iipsrv took longer than the configured timeout.
    Timeout { detail: String },
    /// The process ended the request without an answer: it crashed on it.
    Crashed { detail: String },
    /// iipsrv answered 200 with something that is not what was asked for.
    InvalidAnswer { what: Answer, detail: String },
    /// iipsrv answered with an unexpected status.
    Rejected { status: u16, detail: String },
    /// The connection or the FastCGI exchange failed.
    Unreachable { detail: String },
}

/// The kind of iipsrv answer that was invalid, for the client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// info.json that does not parse.
    Info,
    /// Pixels that are not a JPEG.
    Image,
}

/// What went wrong getting the access master.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// No mapping rule matches the identifier, or the store has no such object.
    NotFound,
    /// The store is down or slow; `retry_after` is its back-off period.
    Unavailable {
        retry_after: Duration,
        detail: String,
    },
    /// The access-master cache could not start (credentials, endpoint).
    NotStarted { detail: String },
    /// Reading or writing the cache mount failed.
    Io { detail: String },
    /// The master is larger than `gateway.masters.max_master_bytes`.
    TooLarge { detail: String },
}

/// How an [`Error`] is answered, logged and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The plain-text body (without the final newline).
    pub message: String,
    /// Seconds for `Retry-After` (503 and 429).
    pub retry_after: Option<u32>,
    /// The level the failure is logged at; `None`: not logged (ordinary client errors).
    pub log_level: Option<log::Level>,
    /// A low-cardinality label for metrics (`iiif_gateway_backend_requests_total{outcome}` for
    /// iipsrv errors).
    pub label: &'static str,
    /// Whose fault it is.
    pub origin: Origin,
}

impl Response {
    fn new(status: u16, message: impl Into<String>, label: &'static str, origin: Origin) -> Self {
        Response {
            status,
            message: message.into(),
            retry_after: None,
            log_level: match origin {
                Origin::Downstream => None,
                Origin::Upstream | Origin::Internal => Some(log::Level::Error),
            },
            label,
            origin,
        }
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn log_level(mut self, level: Option<log::Level>) -> Self {
        self.log_level = level;
        self
    }
}

/// The message every "no image" answer gives, wherever the absence was found.
const NO_SUCH_IMAGE: &str = "no image with this identifier";

impl Error {
    /// The one decision of status, `Retry-After`, body, log level and metric label.
    pub fn response(&self) -> Response {
        use Origin::{Downstream, Internal, Upstream};
        match self {
            Error::Iiif(error) => {
                // The core's 502 is iipsrv's fault (an info.json it cannot use); the rest are
                // the client's.
                let origin = if error.status >= 500 && error.status != 501 {
                    Upstream
                } else {
                    Downstream
                };
                Response::new(error.status, error.message.clone(), "invalid", origin)
            }
            Error::NoSuchEndpoint => Response::new(404, "not found", "no_endpoint", Downstream),
            Error::MethodNotAllowed => {
                Response::new(405, "method not allowed", "method", Downstream)
            }
            Error::Gone => Response::new(410, "this image has been withdrawn", "gone", Downstream),
            Error::TooManyRequests => Response::new(
                429,
                "too many requests in flight from this client",
                "too_many_requests",
                Downstream,
            )
            .retry_after(1),
            Error::Iipsrv(error) => error.response(),
            Error::Source(error) => error.response(),
            // A property of the request, not of the moment: retrying cannot help, a smaller
            // size, a multiple of 90° or JPEG can. 400, as IIIF answers sizes above maxArea.
            Error::OverBudget { needed, limit } => Response::new(
                400,
                format!(
                    "rendering this request needs about {} MiB, above the limit of {} MiB per request",
                    needed.div_ceil(1 << 20),
                    limit >> 20
                ),
                "over_budget",
                Downstream,
            ),
            // Expected under a burst of large renders; counted, not worth a line each.
            Error::RenderBusy => Response::new(
                503,
                "the server is busy rendering other images",
                "render_busy",
                Internal,
            )
            .retry_after(RENDER_BUSY_RETRY_AFTER_S)
            .log_level(Some(log::Level::Debug)),
            Error::Render(_) => {
                Response::new(500, "the image could not be converted", "render", Internal)
            }
            Error::Internal(_) => Response::new(500, "internal error", "internal", Internal),
        }
    }

    /// Whether iipsrv said the file is not there: for a cached master this can mean it was
    /// removed while the request ran (pruned, purged), and fetching it again may help.
    pub fn is_missing_file(&self) -> bool {
        matches!(self, Error::Iipsrv(Iipsrv::NoSuchImage { .. }))
    }
}

impl Iipsrv {
    fn response(&self) -> Response {
        use Origin::Upstream;
        match self {
            // The identifier is valid but names no image: the client's miss, worth an info line
            // because iipsrv had to look.
            Iipsrv::NoSuchImage { .. } => {
                Response::new(404, NO_SUCH_IMAGE, "not_found", Origin::Downstream)
                    .log_level(Some(log::Level::Info))
            }
            // Expected under overload and counted per lane and reason: not worth a warning each.
            Iipsrv::Saturated(rejection) => Response::new(
                503,
                match rejection.reason {
                    RejectReason::QueueFull => "too many requests are waiting for the image server",
                    RejectReason::WaitEstimate | RejectReason::Deadline => {
                        "the image server is too busy to answer in time"
                    }
                },
                "saturated",
                Upstream,
            )
            .retry_after(rejection.retry_after_seconds())
            .log_level(Some(log::Level::Debug)),
            Iipsrv::NoProcess => Response::new(
                503,
                "no image server process is available",
                "unavailable",
                Upstream,
            )
            .retry_after(NO_PROCESS_RETRY_AFTER_S),
            Iipsrv::Timeout { .. } => {
                Response::new(504, "the image server took too long", "timeout", Upstream)
            }
            Iipsrv::Crashed { .. } => Response::new(
                502,
                "the image server failed on this request",
                "crashed",
                Upstream,
            ),
            Iipsrv::InvalidAnswer { what, .. } => Response::new(
                502,
                match what {
                    Answer::Info => "the image server returned an invalid info.json",
                    Answer::Image => "the image server returned an invalid image",
                },
                "invalid",
                Upstream,
            ),
            Iipsrv::Rejected { .. } => Response::new(
                502,
                "the image server rejected the request",
                "rejected",
                Upstream,
            ),
            Iipsrv::Unreachable { .. } => Response::new(
                502,
                "the image server could not be reached",
                "error",
                Upstream,
            ),
        }
    }
}

impl Source {
    fn response(&self) -> Response {
        use Origin::Upstream;
        match self {
            Source::NotFound => Response::new(404, NO_SUCH_IMAGE, "not_found", Origin::Downstream),
            Source::Unavailable { retry_after, .. } => Response::new(
                503,
                "image storage is unavailable, try again later",
                "source_unavailable",
                Upstream,
            )
            .retry_after(whole_seconds(*retry_after))
            .log_level(Some(log::Level::Warn)),
            Source::NotStarted { .. } => Response::new(
                503,
                "image storage is unavailable",
                "source_unavailable",
                Origin::Internal,
            )
            .retry_after(SOURCE_START_RETRY_AFTER_S),
            Source::Io { .. } => Response::new(
                503,
                "the image cannot be read right now",
                "source_io",
                Origin::Internal,
            )
            .retry_after(SOURCE_IO_RETRY_AFTER_S),
            Source::TooLarge { .. } => Response::new(
                502,
                "the image's master is larger than this service accepts",
                "master_too_large",
                Upstream,
            ),
        }
    }
}

/// `Retry-After` in whole seconds, at least 1.
fn whole_seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs().max(1)).unwrap_or(u32::MAX)
}

impl From<IiifError> for Error {
    fn from(error: IiifError) -> Self {
        Error::Iiif(error)
    }
}

impl From<Iipsrv> for Error {
    fn from(error: Iipsrv) -> Self {
        Error::Iipsrv(error)
    }
}

impl From<Source> for Error {
    fn from(error: Source) -> Self {
        Error::Source(error)
    }
}

/// For the log: what happened, with the operator detail the client never sees.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Iiif(error) => write!(f, "{error}"),
            Error::NoSuchEndpoint => f.write_str("no such endpoint"),
            Error::MethodNotAllowed => f.write_str("method not allowed"),
            Error::Gone => f.write_str("withdrawn identifier"),
            Error::TooManyRequests => f.write_str("too many requests from one client"),
            Error::Iipsrv(error) => write!(f, "iipsrv: {error}"),
            Error::Source(error) => write!(f, "access master: {error}"),
            Error::OverBudget { needed, limit } => {
                write!(
                    f,
                    "render needs {needed} bytes, above the per-request limit {limit}"
                )
            }
            Error::RenderBusy => f.write_str("render budget full"),
            Error::Render(detail) => write!(f, "render failed: {detail}"),
            Error::Internal(detail) => write!(f, "internal error: {detail}"),
        }
    }
}

impl fmt::Display for Iipsrv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iipsrv::NoSuchImage { detail } => write!(f, "no image: {detail}"),
            Iipsrv::Saturated(rejection) => write!(f, "refused: {rejection}"),
            Iipsrv::NoProcess => f.write_str("no healthy process"),
            Iipsrv::Timeout { detail } => write!(f, "timed out: {detail}"),
            Iipsrv::Crashed { detail } => write!(f, "crashed: {detail}"),
            Iipsrv::InvalidAnswer { what, detail } => {
                let what = match what {
                    Answer::Info => "info.json",
                    Answer::Image => "image",
                };
                write!(f, "invalid {what}: {detail}")
            }
            Iipsrv::Rejected { status, detail } => write!(f, "answered {status}: {detail}"),
            Iipsrv::Unreachable { detail } => write!(f, "unreachable: {detail}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::NotFound => f.write_str("no such object"),
            Source::Unavailable { detail, .. } => write!(f, "unavailable: {detail}"),
            Source::NotStarted { detail } => write!(f, "cache cannot start: {detail}"),
            Source::Io { detail } => write!(f, "cache mount i/o: {detail}"),
            Source::TooLarge { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Lane;

    /// One of every variant, so that a new variant must be added here (and thought about).
    fn every_error() -> Vec<Error> {
        let detail = || "IIIF=x/info.json: boom".to_owned();
        let rejection = |reason| Rejection {
            lane: Lane::Small,
            reason,
            retry_after: Duration::from_millis(1500),
        };
        vec![
            Error::Iiif(IiifError::bad_request("invalid size: 0,")),
            Error::Iiif(IiifError::not_implemented("upscaling is disabled")),
            Error::Iiif(IiifError::bad_backend("odd info.json")),
            Error::NoSuchEndpoint,
            Error::MethodNotAllowed,
            Error::Gone,
            Iipsrv::NoSuchImage { detail: detail() }.into(),
            Iipsrv::Saturated(rejection(RejectReason::QueueFull)).into(),
            Iipsrv::Saturated(rejection(RejectReason::WaitEstimate)).into(),
            Iipsrv::Saturated(rejection(RejectReason::Deadline)).into(),
            Iipsrv::NoProcess.into(),
            Iipsrv::Timeout { detail: detail() }.into(),
            Iipsrv::Crashed { detail: detail() }.into(),
            Iipsrv::InvalidAnswer {
                what: Answer::Info,
                detail: detail(),
            }
            .into(),
            Iipsrv::InvalidAnswer {
                what: Answer::Image,
                detail: detail(),
            }
            .into(),
            Iipsrv::Rejected {
                status: 500,
                detail: detail(),
            }
            .into(),
            Iipsrv::Unreachable { detail: detail() }.into(),
            Source::NotFound.into(),
            Source::Unavailable {
                retry_after: Duration::from_millis(200),
                detail: detail(),
            }
            .into(),
            Source::NotStarted { detail: detail() }.into(),
            Source::Io { detail: detail() }.into(),
            Source::TooLarge { detail: detail() }.into(),
            Error::TooManyRequests,
            Error::OverBudget {
                needed: 900 << 20,
                limit: 256 << 20,
            },
            Error::RenderBusy,
            Error::Render(detail()),
            Error::Internal(detail()),
        ]
    }

    #[test]
    fn statuses_follow_whose_fault_it_is() {
        for error in every_error() {
            let response = error.response();
            match response.origin {
                Origin::Downstream => assert!(
                    (400..500).contains(&response.status) || response.status == 501,
                    "{error:?} → {response:?}"
                ),
                Origin::Upstream | Origin::Internal => {
                    assert!(response.status >= 500, "{error:?} → {response:?}")
                }
            }
        }
    }

    #[test]
    fn only_503s_and_429s_carry_retry_after_and_every_one_does() {
        for error in every_error() {
            let response = error.response();
            assert_eq!(
                response.retry_after.is_some(),
                matches!(response.status, 503 | 429),
                "{error:?} → {response:?}"
            );
            if let Some(seconds) = response.retry_after {
                assert!(seconds >= 1, "{error:?}");
            }
        }
    }

    #[test]
    fn client_messages_never_carry_operator_detail() {
        for error in every_error() {
            let response = error.response();
            assert!(!response.message.contains("boom"), "{error:?}");
            assert!(!response.message.contains('/'), "{error:?}");
            assert!(!response.message.ends_with('.'), "{error:?}");
            // The log line does carry it, for every error that has some.
            if format!("{error:?}").contains("boom") {
                assert!(error.to_string().contains("boom"), "{error}");
            }
        }
    }

    #[test]
    fn client_errors_are_not_logged_upstream_and_internal_ones_are() {
        for error in every_error() {
            let response = error.response();
            match response.origin {
                Origin::Downstream => assert!(
                    response.log_level.is_none_or(|l| l >= log::Level::Info),
                    "{error:?}"
                ),
                Origin::Upstream | Origin::Internal => {
                    assert!(response.log_level.is_some(), "{error:?}")
                }
            }
        }
    }

    #[test]
    fn the_answers_clients_rely_on() {
        let cases: Vec<(Error, u16, Option<u32>, &str)> = vec![
            (Error::NoSuchEndpoint, 404, None, "not found"),
            (Error::MethodNotAllowed, 405, None, "method not allowed"),
            (Error::Gone, 410, None, "this image has been withdrawn"),
            (Source::NotFound.into(), 404, None, NO_SUCH_IMAGE),
            (
                Iipsrv::NoSuchImage {
                    detail: String::new(),
                }
                .into(),
                404,
                None,
                NO_SUCH_IMAGE,
            ),
            (
                Iipsrv::NoProcess.into(),
                503,
                Some(5),
                "no image server process is available",
            ),
            (
                Source::Unavailable {
                    retry_after: Duration::from_secs(7),
                    detail: String::new(),
                }
                .into(),
                503,
                Some(7),
                "image storage is unavailable, try again later",
            ),
            (
                Error::OverBudget {
                    needed: (900 << 20) + 1,
                    limit: 256 << 20,
                },
                400,
                None,
                "rendering this request needs about 901 MiB, above the limit of 256 MiB per request",
            ),
            (
                Error::RenderBusy,
                503,
                Some(2),
                "the server is busy rendering other images",
            ),
        ];
        for (error, status, retry_after, message) in cases {
            let response = error.response();
            assert_eq!(
                (
                    response.status,
                    response.retry_after,
                    response.message.as_str()
                ),
                (status, retry_after, message),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_refused_request_is_a_503_with_the_lanes_retry_hint() {
        for (reason, retry_after, seconds) in [
            (RejectReason::QueueFull, Duration::from_millis(2500), 3),
            (RejectReason::WaitEstimate, Duration::from_secs(20), 20),
            (RejectReason::Deadline, Duration::ZERO, 1),
        ] {
            let error = Error::from(Iipsrv::Saturated(Rejection {
                lane: Lane::Large,
                reason,
                retry_after,
            }));
            let response = error.response();
            assert_eq!(response.status, 503, "{reason:?}");
            assert_eq!(response.retry_after, Some(seconds), "{reason:?}");
            assert_eq!(response.label, "saturated");
        }
    }

    #[test]
    fn only_a_missing_file_at_iipsrv_asks_for_a_refetch() {
        for error in every_error() {
            assert_eq!(
                error.is_missing_file(),
                matches!(error, Error::Iipsrv(Iipsrv::NoSuchImage { .. })),
                "{error:?}"
            );
        }
    }
}

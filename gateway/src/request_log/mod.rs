//! One structured line per request (JSON or logfmt), with a request id that the response
//! carries back in `X-Request-Id` and that the gateway's own log lines about the request name.
//!
//! - [`config`]: `gateway.request_log` (format, level, sampling, what to include).
//! - [`notes`]: what the request path learns on the way (cache outcome, lane, iipsrv process,
//!   redirect, error), kept in a task-local so that deep code notes it without plumbing.
//! - [`entry`]: the line itself, and the pure decisions (which id, whether to log it).
//! - [`writer`]: a thread that writes the lines to stdout, so that a slow or blocked stdout
//!   never holds up a request (lines beyond its queue are dropped and counted).

pub mod config;
pub mod entry;
pub mod notes;
pub mod writer;

pub use config::{LogFormat, LogLevel, RawRequestLog, RequestLogSettings};
pub use entry::{Entry, RequestIds, Sampler};
pub use notes::Notes;
pub use writer::RequestLog;

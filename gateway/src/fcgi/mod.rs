//! FastCGI client and process pool for stock iipsrv 1.1.
//!
//! # Layout
//! Bottom-up: each module uses only the ones above it in this list (the test `layering`
//! checks it), so the module can be read from the top.
//! - `error`: [`FcgiError`] and [`Phase`].
//! - `record`: the FastCGI wire format (no I/O).
//! - `cgi`: the CGI head at the start of the output, and [`BackendResponse`].
//! - `client`: one request over one connection, with timeouts and size limits.
//! - `process`: one iipsrv process: its kept connection, its exchange, its counters.
//! - `scheduler`: who gets the next free process (the admission lanes), and which processes
//!   are in rotation: it owns their health, and probe results are applied through it.
//! - `health`: the active health-check loop (probes, hung requests, idle connections).
//! - `pool`: [`BackendPool`], the public face: the processes, their scheduler and their
//!   health checks together.
//!
//! Outside `fcgi`, only the lane policy ([`crate::admission::policy`]) and the metrics are
//! used; never the IIIF cost model (`crate::admission::cost`) nor the IIIF core: a request
//! arrives with its lane already chosen.
//!
//! # Invariants
//! - A connection to an iipsrv process stays open after its request only when keep-alive is
//!   configured, and then for at most `keepalive_idle` without a request: libfcgi serves one
//!   connection at a time, so an open connection pins the process to this gateway.
//! - A request is written with a single write.
//! - At most one request (or health probe) runs on a process at a time.
//! - A request is retried on another process only if it never reached the first one.
//! - Requests wait for a process in an admission lane (see [`crate::admission`]), bounded in
//!   length and time; health probes never wait.
//!
//! This module knows nothing about IIIF: it carries parameters and answers. The parameters
//! iipsrv is sent are decided in one place, `crate::backend::cgi_params`.

mod cgi;
mod client;
mod error;
mod health;
mod pool;
mod process;
mod record;
mod scheduler;

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lane_tests;

#[cfg(test)]
mod crash_probe;

#[cfg(test)]
mod layering;

/// The pure parsing code of the answer path, for the fuzz targets in `gateway/fuzz` and their
/// corpus replay (`gateway/tests/fuzz_corpus.rs`): the same functions the client runs on every
/// answer from iipsrv, reachable from outside the crate. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::cgi::parse_response;
    pub use super::client::{complete, MAX_HEAD_BYTES, MAX_STDERR_LOGGED};
    pub use super::record::{Output, ResponseReader, Step};
}

pub use cgi::BackendResponse;
pub use error::{FcgiError, Phase};
pub use pool::{BackendPool, BackendStatus, PoolConfig};
pub use scheduler::LaneStatus;

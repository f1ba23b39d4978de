//! One recorded request and the ways a request can fail.

use std::fmt;
use std::time::Duration;

use crate::dataset::SourceClass;
use crate::mix::Derivative;

/// Why a request failed.
///
/// `http 503` is its own kind because the gateway answers 503 deliberately when it sheds load; every other
/// status outside 2xx is a failure of its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// No complete answer within `--request-timeout`.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// The connection broke (reset, closed early, malformed HTTP).
    Transport,
    /// A status outside 2xx.
    Status(u16),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Connect => f.write_str("connect"),
            FailureKind::Transport => f.write_str("transport"),
            FailureKind::Status(code) => write!(f, "http {code}"),
        }
    }
}

/// One request of the measured window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Index of the target in the run's target list.
    pub target: usize,
    /// Source class of the image.
    pub source: SourceClass,
    /// Derivative class.
    pub derivative: Derivative,
    /// When it started, counted from the start of the measured window of its phase.
    pub started: Duration,
    /// From the start of the request (including a connect, if one was needed) to the last body byte.
    pub latency: Duration,
    /// Body bytes received.
    pub bytes: u64,
    /// `None` for a 2xx answer whose body arrived completely.
    pub failure: Option<FailureKind>,
}

impl Sample {
    /// When it completed, counted like [`Sample::started`].
    pub fn completed(&self) -> Duration {
        self.started + self.latency
    }

    /// Latency in whole microseconds (the unit of every statistic).
    pub fn latency_micros(&self) -> u64 {
        u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_read_like_the_report() {
        assert_eq!(FailureKind::Status(503).to_string(), "http 503");
        assert_eq!(FailureKind::Timeout.to_string(), "timeout");
        assert!(FailureKind::Timeout < FailureKind::Status(400));
    }
}

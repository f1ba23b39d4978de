//! Remembers that S3 just failed, so that requests for uncached masters get their 503 at once
//! instead of each paying for connection attempts and retries, and revalidations of cached
//! masters are skipped (the cached copy is served) until S3 is tried again.
//!
//! After the first failure S3 is left alone for 1 s, then 2 s, 4 s, … up to
//! `unavailable_retry_after_s`; the first call after that tries S3 again, and any answer from S3
//! (even a 404) ends the outage.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first hold after a failure.
const FIRST_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Outage {
    max_hold: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    down_until: Option<Instant>,
}

impl Outage {
    pub(crate) fn new(max_hold: Duration) -> Self {
        Outage {
            max_hold,
            state: Mutex::new(State::default()),
        }
    }

    /// True while S3 is being left alone after a failure.
    pub(crate) fn is_down(&self) -> bool {
        self.is_down_at(Instant::now())
    }

    fn is_down_at(&self, now: Instant) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.down_until.is_some_and(|until| now < until)
    }

    /// S3 failed (after the client's own retries).
    pub(crate) fn record_failure(&self) {
        self.record_failure_at(Instant::now());
    }

    fn record_failure_at(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let doublings = (state.consecutive_failures - 1).min(16);
        let hold = FIRST_HOLD.saturating_mul(1 << doublings).min(self.max_hold);
        state.down_until = Some(now + hold);
    }

    /// S3 answered.
    pub(crate) fn record_success(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_double_up_to_the_maximum_and_success_resets() {
        let outage = Outage::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!outage.is_down_at(t0));
        outage.record_failure_at(t0);
        assert!(outage.is_down_at(t0 + Duration::from_millis(999)));
        assert!(!outage.is_down_at(t0 + Duration::from_secs(1)));
        outage.record_failure_at(t0);
        assert!(outage.is_down_at(t0 + Duration::from_millis(1999)));
        assert!(!outage.is_down_at(t0 + Duration::from_secs(2)));
        for _ in 0..40 {
            outage.record_failure_at(t0);
        }
        assert!(outage.is_down_at(t0 + Duration::from_millis(4999)));
        assert!(!outage.is_down_at(t0 + Duration::from_secs(5)));
        outage.record_success();
        assert!(!outage.is_down_at(t0));
    }
}

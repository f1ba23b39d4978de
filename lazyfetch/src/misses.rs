//! What keeps identifiers that name no master cheap: a short memory of the ones S3 did not
//! have, and a bound on the S3 look-ups that may be waiting for an answer.
//!
//! A crawler or an attacker can ask for any number of identifiers that do not exist. Without
//! these, each of them is one S3 GET (every time, since a miss leaves nothing on disk), and
//! those GETs queue beside the downloads of real masters.
//!
//! - [`Misses`]: an identifier S3 answered 404 for (and that had no cached copy) is answered
//!   404 from memory for `miss_ttl_s`. Purging the identifier forgets the miss, so an operator
//!   who uploads a new master and purges sees it served at once; otherwise it appears within
//!   the time-to-live. Bounded like every map here ([`coalesce::TtlMap`]).
//! - [`Lookups`]: every GET holds a *look-up* place only until S3 has answered with a status
//!   (a 404 is over then); a body to download then waits for a download slot of its own. At
//!   most `max_concurrent_lookups` are on the wire at once and at most `max_pending_lookups`
//!   wait for a place: past that a look-up is refused at once (503 with `Retry-After`), so a
//!   flood of unknown identifiers cannot build an unbounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use coalesce::TtlMap;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Identifiers remembered as missing, at most.
const MISSES_CAPACITY: usize = 100_000;

/// The identifiers S3 recently did not have.
#[derive(Debug)]
pub(crate) struct Misses {
    ttl: Duration,
    map: Mutex<TtlMap<String, ()>>,
}

impl Misses {
    /// Misses remembered for `ttl`; a zero `ttl` remembers none.
    pub(crate) fn new(ttl: Duration) -> Misses {
        Misses {
            ttl,
            map: Mutex::new(TtlMap::new(MISSES_CAPACITY)),
        }
    }

    /// Whether S3 said it has no `identifier` less than the time-to-live ago.
    pub(crate) fn is_missing(&self, identifier: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get_fresh(identifier, Instant::now()).is_some()
    }

    pub(crate) fn record(&self, identifier: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(identifier.to_owned(), (), now + self.ttl, now);
    }

    pub(crate) fn forget(&self, identifier: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(identifier);
    }
}

/// The places for S3 look-ups.
#[derive(Debug)]
pub(crate) struct Lookups {
    places: Semaphore,
    max_pending: usize,
    pending: AtomicUsize,
}

/// Why a look-up got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyPending;

/// A look-up waiting for, or holding, its place.
#[derive(Debug)]
pub(crate) struct Pending<'a> {
    lookups: &'a Lookups,
}

impl Lookups {
    pub(crate) fn new(max_concurrent: usize, max_pending: usize) -> Lookups {
        Lookups {
            places: Semaphore::new(max_concurrent),
            max_pending,
            pending: AtomicUsize::new(0),
        }
    }

    /// Joins the queue for a place.
    ///
    /// # Errors
    /// [`TooManyPending`] at once when `max_pending` look-ups are already waiting.
    pub(crate) fn join(&self) -> Result<Pending<'_>, TooManyPending> {
        let mut pending = self.pending.load(Ordering::Relaxed);
        loop {
            if pending >= self.max_pending {
                return Err(TooManyPending);
            }
            match self.pending.compare_exchange_weak(
                pending,
                pending + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Pending { lookups: self }),
                Err(now) => pending = now,
            }
        }
    }

    /// Look-ups waiting for a place now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

impl<'a> Pending<'a> {
    /// Waits for a place; the look-up stops counting as pending once it has one.
    pub(crate) async fn place(self) -> SemaphorePermit<'a> {
        let lookups = self.lookups;
        let permit = lookups
            .places
            .acquire()
            .await
            .expect("the look-up semaphore is never closed");
        drop(self);
        permit
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.lookups.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn misses_are_remembered_for_their_time_and_forgotten_on_purge() {
        let misses = Misses::new(Duration::from_secs(60));
        assert!(!misses.is_missing("a"));
        misses.record("a");
        assert!(misses.is_missing("a"));
        assert!(!misses.is_missing("b"));
        misses.forget("a");
        assert!(!misses.is_missing("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_miss_expires() {
        let misses = Misses::new(Duration::from_secs(30));
        misses.record("a");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(misses.is_missing("a"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!misses.is_missing("a"));
    }

    #[tokio::test]
    async fn a_zero_ttl_remembers_nothing() {
        let misses = Misses::new(Duration::ZERO);
        misses.record("a");
        assert!(!misses.is_missing("a"));
    }

    #[tokio::test]
    async fn the_queue_of_lookups_is_bounded() {
        let lookups = Lookups::new(1, 2);
        let first = lookups.join().unwrap().place().await;
        // One on the wire; two may wait; the third is refused at once.
        let a = lookups.join().unwrap();
        let b = lookups.join().unwrap();
        assert_eq!(lookups.join().unwrap_err(), TooManyPending);
        assert_eq!(lookups.waiting(), 2);
        drop(a);
        assert_eq!(lookups.waiting(), 1);
        let c = lookups.join().unwrap();
        drop(first);
        // A waiter that gets its place stops counting as pending.
        let _second = b.place().await;
        assert_eq!(lookups.waiting(), 1);
        drop(c);
        assert_eq!(lookups.waiting(), 0);
    }
}

//! Single flight: concurrent calls for the same key share one run of the work.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OnceCell};

/// Whether a call did the work or shared another call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This call ran the work (or, in [`SingleFlight::detached`], started its task).
    Leader,
    /// This call waited for a run that another call started.
    Follower,
}

/// One run of the work, shared by everyone who asked for its key while it ran.
struct Flight<T> {
    value: OnceCell<T>,
    /// Woken when a detached task ends, with or without a value.
    landed: Notify,
    /// Set when a detached task ended without a value (it panicked or was cancelled).
    abandoned: AtomicBool,
}

impl<T> Flight<T> {
    fn new() -> Arc<Self> {
        Arc::new(Flight {
            value: OnceCell::new(),
            landed: Notify::new(),
            abandoned: AtomicBool::new(false),
        })
    }
}

/// Work in flight, by key. Use one cancellation mode per instance: [`SingleFlight::run`] or
/// [`SingleFlight::detached`] (see the crate documentation for which to choose).
pub struct SingleFlight<T> {
    in_flight: Mutex<HashMap<String, Arc<Flight<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for SingleFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &self.lock().len())
            .finish()
    }
}

impl<T> SingleFlight<T> {
    /// An empty set of flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys with work in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no work is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, also after a panic elsewhere: every critical section leaves it consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Flight<T>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key's flight, joined or started.
    fn flight(&self, key: &str) -> (Arc<Flight<T>>, Role) {
        let mut in_flight = self.lock();
        match in_flight.get(key) {
            Some(flight) => (flight.clone(), Role::Follower),
            None => {
                let flight = Flight::new();
                in_flight.insert(key.to_owned(), flight.clone());
                (flight, Role::Leader)
            }
        }
    }

    /// Removes `flight` from the map unless another flight already took its key.
    fn land(&self, key: &str, flight: &Arc<Flight<T>>, only_if_unshared: bool) {
        let mut in_flight = self.lock();
        let Some(current) = in_flight.get(key) else {
            return;
        };
        // Under the lock nobody can clone the flight, so two strong references mean the
        // map's and the caller's: nobody else is waiting.
        if Arc::ptr_eq(current, flight) && (!only_if_unshared || Arc::strong_count(flight) <= 2) {
            in_flight.remove(key);
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `work` for `key` unless it is already running, and returns its result (errors
    /// included: a failure is reported to every waiter, not retried by each of them).
    ///
    /// **A waiter takes over**: the work runs inside this call's future. If the caller running
    /// it goes away, one of the waiters runs its own `work` instead, so a cancelled request
    /// never leaves the others hanging; when every caller has gone, the work stops.
    pub async fn run<F, Fut>(&self, key: &str, work: F) -> (T, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let (flight, _) = self.flight(key);
        let _leave = Leave {
            flights: self,
            key,
            flight: &flight,
        };
        let mut role = Role::Follower;
        let value = flight
            .value
            .get_or_init(|| {
                role = Role::Leader;
                work()
            })
            .await
            .clone();
        (value, role)
    }
}

/// Removes the key's flight when its work is done, or when the last caller leaves.
struct Leave<'a, T> {
    flights: &'a SingleFlight<T>,
    key: &'a str,
    flight: &'a Arc<Flight<T>>,
}

impl<T> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let done = self.flight.value.initialized();
        self.flights.land(self.key, self.flight, !done);
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Joins the flight for `key`, or starts `work()` for it in a new Tokio task. The returned
    /// [`Boarding`] says at once which ([`Boarding::role`]) and waits for the answer
    /// ([`Boarding::answer`]). Must be called within a Tokio runtime.
    ///
    /// **A detached task finishes**: callers that go away neither cancel the work nor waste
    /// it; a caller arriving later while it runs joins it.
    pub fn detached<F, Fut>(self: &Arc<Self>, key: &str, work: F) -> Boarding<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (flight, role) = self.flight(key);
        if role == Role::Leader {
            let landing = Landing {
                flights: Arc::clone(self),
                key: key.to_owned(),
                flight: flight.clone(),
            };
            let work = work();
            tokio::spawn(async move {
                // Dropped last, also when the task panics or is cancelled: the key is free
                // again and the waiters are told.
                let landing = landing;
                let value = work.await;
                let _ = landing.flight.value.set(value);
            });
        }
        Boarding { flight, role }
    }
}

/// A seat on a detached flight.
pub struct Boarding<T> {
    flight: Arc<Flight<T>>,
    role: Role,
}

impl<T: Clone> Boarding<T> {
    /// Whether this call started the flight or joined one in the air.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The flight's result; `None` when its task ended without one (it panicked, or the
    /// runtime shut down).
    pub async fn answer(self) -> Option<T> {
        loop {
            // Registered before looking, so a landing in between is not missed.
            let landed = self.flight.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            if let Some(value) = self.flight.value.get() {
                return Some(value.clone());
            }
            if self.flight.abandoned.load(Ordering::Acquire) {
                return None;
            }
            landed.await;
        }
    }
}

/// Ends a detached flight: frees its key and wakes its waiters.
struct Landing<T> {
    flights: Arc<SingleFlight<T>>,
    key: String,
    flight: Arc<Flight<T>>,
}

impl<T> Drop for Landing<T> {
    fn drop(&mut self) {
        if !self.flight.value.initialized() {
            self.flight.abandoned.store(true, Ordering::Release);
        }
        self.flights.land(&self.key, &self.flight, false);
        self.flight.landed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(SingleFlight::<u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, runs) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (value, role) = task.await.unwrap();
            assert_eq!(value, 7);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(flights.is_empty());
    }

    /// A flight under key `k` whose work never ends (until its task is aborted).
    fn spawn_endless_flight(
        flights: &Arc<SingleFlight<u32>>,
    ) -> tokio::task::JoinHandle<(u32, Role)> {
        let flights = flights.clone();
        tokio::spawn(async move {
            flights
                .run("k", || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    1
                })
                .await
        })
    }

    #[tokio::test]
    async fn later_calls_run_again() {
        let flights = SingleFlight::<u32>::new();
        assert_eq!(flights.run("k", || async { 1 }).await, (1, Role::Leader));
        assert_eq!(flights.run("k", || async { 2 }).await, (2, Role::Leader));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(SingleFlight::<u32>::new());
        let leader = spawn_endless_flight(&flights);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run("k", || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        let (value, role) = waiter.await.unwrap();
        assert_eq!((value, role), (2, Role::Leader));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn abandoned_flights_leave_nothing_behind() {
        let flights = Arc::new(SingleFlight::<u32>::new());
        let task = spawn_endless_flight(&flights);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(flights.len(), 1);
        task.abort();
        let _ = task.await;
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn detached_callers_share_one_task() {
        let flights = Arc::new(SingleFlight::<usize>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut boardings = Vec::new();
        for _ in 0..50 {
            let (runs, release) = (runs.clone(), release.clone());
            boardings.push(flights.detached("k", move || async move {
                release.notified().await;
                runs.fetch_add(1, Ordering::SeqCst) + 41
            }));
        }
        let followers = boardings
            .iter()
            .filter(|b| b.role() == Role::Follower)
            .count();
        assert_eq!(followers, 49);
        // The task may not have reached `notified()` yet: keep notifying until it finishes.
        let answers = tokio::spawn(async move {
            let mut values = Vec::new();
            for boarding in boardings {
                values.push(boarding.answer().await);
            }
            values
        });
        while !answers.is_finished() {
            release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(answers.await.unwrap().iter().all(|v| *v == Some(41)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_detached_caller_going_away_does_not_cancel_the_work() {
        let flights = Arc::new(SingleFlight::<u8>::new());
        let done = Arc::new(Notify::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let caller = {
            let (flights, done, finished) = (flights.clone(), done.clone(), finished.clone());
            tokio::spawn(async move {
                flights
                    .detached("k", move || async move {
                        done.notified().await;
                        finished.fetch_add(1, Ordering::SeqCst);
                        5
                    })
                    .answer()
                    .await
            })
        };
        while flights.is_empty() {
            tokio::task::yield_now().await;
        }
        caller.abort();
        let _ = caller.await;
        // A later caller joins the same flight and gets its answer.
        let boarding = flights.detached("k", || async { 9 });
        assert_eq!(boarding.role(), Role::Follower);
        let answer = tokio::spawn(boarding.answer());
        while !answer.is_finished() {
            done.notify_waiters();
            tokio::task::yield_now().await;
        }
        assert_eq!(answer.await.unwrap(), Some(5));
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_detached_flight_answers_none_and_frees_the_key() {
        let flights = Arc::new(SingleFlight::<u8>::new());
        let boarding = flights.detached("k", || async { panic!("boom") });
        assert_eq!(boarding.answer().await, None);
        assert!(flights.is_empty());
        let again = flights.detached("k", || async { 7 });
        assert_eq!(again.role(), Role::Leader);
        assert_eq!(again.answer().await, Some(7));
    }
}

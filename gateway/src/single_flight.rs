//! Coalescing of concurrent identical work: the first caller for a key runs it, the callers that
//! arrive while it runs wait for its result instead of running it again.
//!
//! Nothing is kept once the work is done (the derivative cache keeps results on disk). If the
//! caller running the work goes away (its client disconnected), one of the waiters runs it
//! instead, so a cancelled request never leaves the others hanging.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

type Cell<T> = Arc<OnceCell<T>>;

/// In-flight work by key.
pub struct SingleFlight<T> {
    in_flight: Mutex<HashMap<String, Cell<T>>>,
}

/// Whether this caller did the work or waited for another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `work` for `key` unless it is already running, and returns its result (errors
    /// included: a failed render is reported to every waiter, not retried by each of them).
    pub async fn run<F, Fut>(&self, key: &str, work: F) -> (T, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self
            .in_flight
            .lock()
            .expect("single-flight lock")
            .entry(key.to_owned())
            .or_default()
            .clone();
        let _leave = Leave {
            flights: self,
            key,
            cell: &cell,
        };
        let mut role = Role::Follower;
        let value = cell
            .get_or_init(|| {
                role = Role::Leader;
                work()
            })
            .await
            .clone();
        (value, role)
    }

    /// Keys with work in flight (for tests and metrics).
    pub fn len(&self) -> usize {
        self.in_flight.lock().expect("single-flight lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the key's entry when the work is done, or when the last participant leaves.
struct Leave<'a, T> {
    flights: &'a SingleFlight<T>,
    key: &'a str,
    cell: &'a Cell<T>,
}

impl<T> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut in_flight = self.flights.in_flight.lock().expect("single-flight lock");
        let Some(current) = in_flight.get(self.key) else {
            return;
        };
        // Another flight may already have started under the same key: leave it alone. Under the
        // lock nobody can clone the cell, so two strong references mean the map's and ours.
        if Arc::ptr_eq(current, self.cell)
            && (self.cell.initialized() || Arc::strong_count(self.cell) <= 2)
        {
            in_flight.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(SingleFlight::<u32>::default());
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
        let flights = SingleFlight::<u32>::default();
        assert_eq!(flights.run("k", || async { 1 }).await, (1, Role::Leader));
        assert_eq!(flights.run("k", || async { 2 }).await, (2, Role::Leader));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(SingleFlight::<u32>::default());
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
        let flights = Arc::new(SingleFlight::<u32>::default());
        let task = spawn_endless_flight(&flights);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(flights.len(), 1);
        task.abort();
        let _ = task.await;
        assert!(flights.is_empty());
    }
}

//! Single flight: concurrent calls for the same key share one run of the work.
//!
//! The work runs in its own task, not in the caller's future, so a caller that goes away (a
//! client hanging up) neither cancels the download the others wait for nor wastes it: the next
//! request finds the master in place. If the task dies without an answer (panic, runtime shut
//! down), every waiter gets `None`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The flights in the air, by key.
#[derive(Debug)]
pub(crate) struct Flights<T> {
    in_air: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Flights {
            in_air: Mutex::new(HashMap::new()),
        })
    }

    /// The result of the flight for `key`: joins the one in the air, or starts `work()` in a new
    /// task. Also says whether this call joined (waited for) a flight started by another call.
    /// Must be called within a Tokio runtime.
    pub(crate) async fn run<F>(self: &Arc<Self>, key: &str, work: impl FnOnce() -> F) -> (Option<T>, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (mut answer, joined) = {
            let mut in_air = self.in_air.lock().unwrap_or_else(|e| e.into_inner());
            match in_air.get(key) {
                Some(answer) => (answer.clone(), true),
                None => {
                    let (sender, answer) = watch::channel(None);
                    in_air.insert(key.to_owned(), answer.clone());
                    let landing = Landing {
                        flights: Arc::clone(self),
                        key: key.to_owned(),
                    };
                    let work = work();
                    tokio::spawn(async move {
                        // Dropped last, also when the task is cancelled: the key is free again.
                        let _landing = landing;
                        let value = work.await;
                        let _ = sender.send(Some(value));
                    });
                    (answer, false)
                }
            }
        };
        let value = answer
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|value| value.clone());
        (value, joined)
    }

    /// Number of flights in the air (for tests and debugging).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.in_air.lock().unwrap().len()
    }
}

/// Removes a finished (or abandoned) flight from the map.
struct Landing<T> {
    flights: Arc<Flights<T>>,
    key: String,
}

impl<T> Drop for Landing<T> {
    fn drop(&mut self) {
        self.flights
            .in_air
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_calls_share_one_run() {
        let flights = Flights::<usize>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            let release = Arc::clone(&release);
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", move || async move {
                        release.notified().await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        // Let every caller join before the work may finish.
        while Arc::strong_count(&release) > 2 || flights.len() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        let mut joined = 0;
        for task in tasks {
            let (value, did_join) = task.await.unwrap();
            assert_eq!(value, Some(41));
            joined += usize::from(did_join);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 49);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_new_call_after_landing_runs_again() {
        let flights = Flights::<u8>::new();
        assert_eq!(flights.run("k", || async { 1 }).await, (Some(1), false));
        assert_eq!(flights.run("k", || async { 2 }).await, (Some(2), false));
        assert_eq!(flights.run("other", || async { 3 }).await, (Some(3), false));
    }

    #[tokio::test]
    async fn a_panicking_flight_answers_none_and_frees_the_key() {
        let flights = Flights::<u8>::new();
        let (value, _) = flights
            .run("k", || async {
                panic!("boom");
            })
            .await;
        assert_eq!(value, None);
        assert_eq!(flights.len(), 0);
        assert_eq!(flights.run("k", || async { 7 }).await.0, Some(7));
    }

    #[tokio::test]
    async fn a_caller_going_away_does_not_cancel_the_work() {
        let flights = Flights::<u8>::new();
        let done = Arc::new(Notify::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let caller = {
            let flights = Arc::clone(&flights);
            let done = Arc::clone(&done);
            let finished = Arc::clone(&finished);
            tokio::spawn(async move {
                flights
                    .run("k", move || async move {
                        done.notified().await;
                        finished.fetch_add(1, Ordering::SeqCst);
                        5
                    })
                    .await
            })
        };
        while flights.len() == 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        let _ = caller.await;
        // A later caller joins the same flight and gets its answer.
        let waiter = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move { flights.run("k", || async { 9 }).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        done.notify_one();
        assert_eq!(waiter.await.unwrap(), (Some(5), true));
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}

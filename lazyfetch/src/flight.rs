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

    /// Boards the flight for `key`: joins the one in the air, or starts `work()` in a new task.
    /// [`Boarding::joined`] says which, at once (before the answer); [`Boarding::answer`]
    /// waits for the result. Must be called within a Tokio runtime.
    pub(crate) fn board<F>(self: &Arc<Self>, key: &str, work: impl FnOnce() -> F) -> Boarding<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut in_air = self.in_air.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = in_air.get(key) {
            return Boarding {
                joined: true,
                answer: answer.clone(),
            };
        }
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
        Boarding {
            joined: false,
            answer,
        }
    }

    /// [`Flights::board`] and wait: the answer, and whether this call joined another's flight.
    #[cfg(test)]
    pub(crate) async fn run<F>(
        self: &Arc<Self>,
        key: &str,
        work: impl FnOnce() -> F,
    ) -> (Option<T>, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let boarding = self.board(key, work);
        let joined = boarding.joined;
        (boarding.answer().await, joined)
    }

    /// Number of flights in the air (for tests and debugging).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.in_air.lock().unwrap().len()
    }
}

/// A seat on a flight.
pub(crate) struct Boarding<T> {
    /// True when the flight was started by another call.
    pub(crate) joined: bool,
    answer: watch::Receiver<Option<T>>,
}

impl<T: Clone> Boarding<T> {
    /// The flight's result; `None` when its task died without one (panic, runtime shutdown).
    pub(crate) async fn answer(mut self) -> Option<T> {
        self.answer
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|value| value.clone())
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
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            let started = Arc::clone(&started);
            let release = Arc::clone(&release);
            tasks.push(tokio::spawn(async move {
                // Counted in the same poll that joins the flight (no await in between).
                started.fetch_add(1, Ordering::SeqCst);
                flights
                    .run("k", move || async move {
                        release.notified().await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        // Every caller has joined before the work may finish.
        while started.load(Ordering::SeqCst) < 50 {
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

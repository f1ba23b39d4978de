//! What the request path learns about one request, for its log line: noted where it is known
//! (the derivative cache, the iipsrv pool, the ID archive) into a task-local, so that no
//! function signature in between has to carry it.
//!
//! Work a request hands to another task (a single-flight render) takes the notes along with
//! [`carry`]; outside a request (health checks, tests) noting does nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};

/// The notes of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// The request id (`X-Request-Id`).
    pub id: String,
    /// What the derivative cache did: `memory` or `disk` (hits), `miss` (this request rendered
    /// it, to be stored), `coalesced` (it waited for an identical request's render), `bypass`
    /// (a size class the cache does not keep). Absent: no derivative cache, or not an image.
    pub cache: Option<&'static str>,
    /// The admission lane of its iipsrv request (`small`, `large`).
    pub lane: Option<&'static str>,
    /// The iipsrv process that answered it.
    pub backend: Option<String>,
    /// What the ID archive said: `moved`, `temporary`, `gone`, or `unchecked` (Redis could
    /// not be asked).
    pub redirect: Option<&'static str>,
    /// The error's label when the answer is an error (as in the metrics).
    pub error: Option<&'static str>,
}

/// The notes one request and the work it hands on share.
pub type SharedNotes = Arc<Mutex<Notes>>;

tokio::task_local! {
    static NOTES: SharedNotes;
}

/// Fresh notes for the request `id`.
pub fn start(id: String) -> SharedNotes {
    Arc::new(Mutex::new(Notes {
        id,
        ..Notes::default()
    }))
}

/// Runs `request` with `notes` as its notes.
pub async fn scope<F: Future>(notes: SharedNotes, request: F) -> F::Output {
    NOTES.scope(notes, request).await
}

/// Notes something about the current request (nothing outside one).
pub fn note(change: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|notes| change(&mut notes.lock().expect("notes lock")));
}

/// `future` with the current request's notes, for running on another task.
pub fn carry<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let notes = NOTES.try_with(Arc::clone).ok();
    async move {
        match notes {
            Some(notes) => NOTES.scope(notes, future).await,
            None => future.await,
        }
    }
}

/// `" [request ID]"` inside a request, `""` outside: for the gateway's own log lines, so
/// that each names the request it is about.
pub fn tag() -> String {
    NOTES
        .try_with(|notes| tag_of(&notes.lock().expect("notes lock")))
        .unwrap_or_default()
}

/// `" [request ID]"` of these notes, where the task-local is out of reach.
pub fn tag_of(notes: &Notes) -> String {
    format!(" [request {}]", notes.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_made_inside_a_request_and_its_carried_work_reach_its_notes() {
        let notes = start("abc".into());
        scope(notes.clone(), async {
            note(|n| n.cache = Some("miss"));
            assert_eq!(tag(), " [request abc]");
            tokio::spawn(carry(async { note(|n| n.lane = Some("small")) }))
                .await
                .unwrap();
            // Spawned without carry: not this request's.
            tokio::spawn(async { note(|n| n.lane = Some("large")) })
                .await
                .unwrap();
        })
        .await;
        let notes = notes.lock().unwrap().clone();
        assert_eq!(notes.cache, Some("miss"));
        assert_eq!(notes.lane, Some("small"));
    }

    #[tokio::test]
    async fn outside_a_request_noting_does_nothing() {
        note(|n| n.cache = Some("disk"));
        assert_eq!(tag(), "");
        carry(async { note(|n| n.cache = Some("disk")) }).await;
    }
}

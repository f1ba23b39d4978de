//! Keyed coalescing of concurrent work, and a bounded map whose entries expire.
//!
//! The gateway and `lazyfetch` have several places where many requests ask for the same thing
//! at once (an image's facts, a render, a redirect record, a master download) and where answers
//! are kept for a while in a map that must stay bounded. This crate is the one implementation of
//! both, so that their behaviour is decided (and tested) once.
//!
//! # Layout
//! - [`SingleFlight`]: concurrent calls for one key share one run of the work. Two cancellation
//!   modes, chosen per call:
//!   - [`SingleFlight::run`] (**a waiter takes over**): the work runs inside the first caller's
//!     future. If that caller goes away (its client hung up), one of the waiters runs its own
//!     work instead; if all go away, the work stops. For work that is only worth doing while
//!     someone waits for it (a render, a fetch of facts).
//!   - [`SingleFlight::detached`] (**a detached task finishes**): the work runs in its own Tokio
//!     task; callers that go away neither cancel it nor waste it. For work whose result outlives
//!     the request (a download into the cache mount, a read that fills a cache).
//! - [`TtlMap`]: a map with a capacity and a time-to-live per entry. Expired entries stay
//!   readable as stale values until room is needed; when the map is full, an insertion first
//!   drops the expired entries, then the older half by expiry time.
//!
//! # Invariants
//! - At most one run of the work per key is in flight at a time (per [`SingleFlight`]).
//! - A finished (or abandoned) flight leaves nothing behind in the map: a later call runs anew.
//! - A [`TtlMap`] never holds more than its capacity.

mod single_flight;
mod ttl_map;

pub use single_flight::{Boarding, Role, SingleFlight};
pub use ttl_map::{Found, TtlMap};

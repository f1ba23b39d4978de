//! The ID archive of retired identifiers (`docs/redirects.md`): its rules, its Redis store, its
//! import formats and its admin CLI. The gateway reads it on the request path (its own cached
//! lookup, with this crate's [`keys`] and [`codec`]) and serves its admin HTTP API.
//!
//! # Layout
//! - [`model`]: the pure model, no I/O: [`Redirect`] (the one type for what a retired identifier
//!   answers), records, edits, the rules that plan them, the in-memory archive and the import
//!   planner.
//! - [`keys`]: the Redis key layout; [`codec`]: the one record codec and its validity rule.
//! - [`store`]: the archive in Redis, by job (connection, reads, edits, import, journal, Lua
//!   scripts in `store/lua/`).
//! - [`formats`]: CSV, YAML and JSON rows of an import, and the exporter.
//! - [`json`]: records and changes as JSON (reports, the admin API).
//! - [`cli`]: `iiif-gateway redirects …`, one module per command.
//!
//! # Invariants
//! - No record targets a retired identifier (chains collapse), nor itself; no loops; gone
//!   spreads along chains (enforced by [`model::plan`], for single edits and imports alike).
//! - Records are written only by `store/lua/write_records.lua`, together with their indexes and
//!   history; they are read only through [`codec`].
//! - URLs appear in messages only redacted (`redis_url::redact`).

pub mod cli;
pub mod codec;
pub mod formats;
pub mod json;
pub mod keys;
pub mod model;
pub mod store;
#[cfg(test)]
mod test_redis;

pub use model::{Kind, Record, Redirect};

//! lazyfetch: access masters from S3 onto a local cache mount, once, with pruning and purge.
//!
//! iipsrv reads only local files; masters live in S3 (any S3-compatible store). The gateway
//! calls [`LazyFetch::ensure`] before sending a request to iipsrv: the master is copied from S3
//! onto the cache mount on first use, once however many requests arrive together, and kept
//! fresh by conditional GETs. `lazyfetch prune` (cron) removes least recently used images under
//! a size budget; `lazyfetch purge` removes one image. `docs/masters.md` is the operator's view.
//!
//! # Layout
//!
//! - [`config`]: the `gateway.cache` and `gateway.masters` sections, checked with every problem
//!   named by its key; [`size`]: `"500GiB"` and `"90%"`.
//! - [`rules`]: identifier → bucket and key (ordered regexes, templates). Pure.
//! - [`layout`]: identifier → paths under the cache root (SHA-256 fan-out). Pure.
//! - [`LazyFetch`] (`fetch.rs`): the hot path, single flight (`coalesce`), the cross-node Redis
//!   lock (`lock.rs`), the S3 client (`s3.rs`), outage memory (`outage.rs`), the memory of
//!   missing masters and the bound on S3 look-ups (`misses.rs`), metrics.
//! - [`sidecar`]: the JSON beside each master; [`stamps`]: throttled last-access stamps;
//!   [`tmpfile`]: files that appear only by rename.
//! - [`units`]: the cache scanned into image units; [`prune()`], [`purge()`], [`stats()`] on them.
//!
//! **Invariants:** lazyfetch knows nothing about IIIF. A file under `masters/` is always
//! complete: it appears only by `rename` of an fsynced, length-checked tmp file. Every path is
//! under the cache root, whatever the identifier.

#![deny(missing_docs)]

pub mod config;
mod copies;
mod error;
mod fetch;
pub mod layout;
mod lock;
mod metrics;
mod misses;
mod outage;
pub mod prune;
pub mod purge;
pub mod rules;
mod s3;
pub mod sidecar;
pub mod size;
pub mod stamps;
pub mod stats;
pub mod tmpfile;
pub mod units;

pub use config::{
    CacheConfig, ConfigErrors, ConfigProblem, GatewaySections, LoadError, MastersConfig,
};
pub use error::{is_disk_full, FetchError, StartupError};
pub use fetch::{LazyFetch, Master};
pub use layout::CacheLayout;
pub use prune::{prune, PruneOptions, PruneReport};
pub use purge::{purge, PurgeReport};
pub use s3::client as s3_client;
pub use stamps::AccessStamps;
pub use stats::{stats, CacheStats};

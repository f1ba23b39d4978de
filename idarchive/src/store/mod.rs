//! The ID archive in Redis: reads, single edits, bulk import and export, in the key layout of
//! `docs/redirects.md`.
//!
//! **One writer.** Every record is written by the same Lua function (`lua/write_records.lua`,
//! see `scripts.rs`): the hash, `P ids`, `P pointing:*` and the history entry together, inside
//! one script call, so a record and its indexes never disagree, whoever wrote it. Records are
//! read with the one codec ([`crate::codec`]) under the one key layout ([`crate::keys`]).
//!
//! **Single edits are atomic against concurrent admins** without holding a connection of their
//! own (the store shares one multiplexed connection, on which `WATCH` would not be ours alone):
//! an edit reads the records the rules look at, plans with [`crate::model::plan`], then commits
//! with one Lua script that first compares every record and reverse-index set it read with what
//! Redis holds now and writes only if nothing changed (optimistic concurrency; a conflict re-reads and
//! re-plans, a few times). The same script publishes the invalidations, so a node that hears
//! about an edit can already read it.
//!
//! **Imports** hold the lock key `P import-lock` from loading the archive to the last write;
//! single edits refuse to commit while it exists, so an import plans against an archive nobody
//! else changes. Every row is checked (with the same engine, over the whole archive in memory)
//! before anything is written.
//!
//! **What a failed import leaves behind.** A file with any bad row writes nothing. An import that
//! changes up to 10,000 records is written by one script call, which Redis runs atomically: if
//! the connection or Redis dies first, nothing is written; once Redis runs it, all of it is (with
//! an append-only file Redis also drops a script cut short on disk when it restarts). A bigger
//! import would block Redis too long in one call, so it first writes its planned changes to a
//! journal (`P import-journal`, completed by `P import-journal-meta`), then calls of 2,000
//! records, each writing its records and dropping them from the journal atomically. If it stops
//! part way ([`StoreError::ImportInterrupted`]):
//! - each record is either as before or as imported, with its reverse-index entry, `ids` entry
//!   and history entry;
//! - no loop can appear, but a chain may have two hops (`A → B → C`, or `A → B` with `B` gone);
//!   a client then follows two redirects instead of one;
//! - edits and other imports are refused until `iiif-gateway redirects import --resume`
//!   ([`RedirectStore::resume`]) writes the rest of the journal, exactly as planned (the rows
//!   are not re-applied to the half-written archive; the model's property tests show why that
//!   would not always end in the same place).
//!
//! Redis without persistence that restarts loses the journal with everything else.
//! `P invalidate` hears `*` after an import that wrote anything, including an interrupted one
//! when Redis still answers.
//!
//! The store needs a single Redis server (or a primary), not a cluster: listing uses one sorted
//! set and the scripts touch keys they only learn while running (not declared in `KEYS`).
//!
//! Files, one job each: `connection.rs` (the client and its one shared connection), `reads.rs`
//! (records, histories, paged listing, export and the import's load), `edits.rs` (single edits
//! and their optimistic commit), `import.rs` (bulk import under the lock), `journal.rs` (the
//! journal of a large import and its resume), `scripts.rs` (the Lua scripts).

use redis::aio::ConnectionManager;
use redis::Client;
use tokio::sync::OnceCell;

use crate::keys::Keys;
use crate::model::RuleError;

mod connection;
mod edits;
mod import;
mod journal;
mod reads;
mod scripts;

pub use import::{ImportOptions, ImportReport, Phase, Progress};

/// Something the store could not do, saying who failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configured URL is not a Redis URL.
    #[error("redis URL {url}: {source}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// The client's complaint.
        source: redis::RedisError,
    },
    /// Redis cannot be reached or refused the connection (down, wrong password, TLS).
    #[error("cannot reach redis at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What failed.
        source: redis::RedisError,
    },
    /// Redis answered a command with an error, or the connection broke.
    #[error("redis at {url}: {source}")]
    Redis {
        /// The URL, without its password.
        url: String,
        /// Redis's answer, or the broken connection.
        source: redis::RedisError,
    },
    /// The edit breaks a rule of the archive.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Redis holds something this program did not write (see [`crate::codec`]).
    #[error("redis holds a malformed record for {id:?}: {problem}")]
    Malformed {
        /// The identifier (or the key) concerned.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// Other admins kept changing the same records.
    #[error("{0} kept changing under concurrent edits; try again")]
    Contended(String),
    /// An import holds the lock.
    #[error("an import is running (key {0} exists); try again when it has finished")]
    ImportRunning(String),
    /// An earlier import stopped part way through writing; it must be finished first.
    #[error(
        "an import was interrupted while writing (key {0} exists); \
         finish it with `iiif-gateway redirects import --resume`"
    )]
    ImportUnfinished(String),
    /// An import written in one transaction failed.
    #[error(
        "the import was not written ({0}); nothing changed, unless Redis ran the transaction \
         just before the connection broke (a dry run of the same file then shows no changes)"
    )]
    ImportNotWritten(Box<StoreError>),
    /// A large import stopped part way through writing.
    #[error(
        "the import stopped after writing {written} of {total} records ({source}); \
         finish it with `iiif-gateway redirects import --resume`"
    )]
    ImportInterrupted {
        /// Records written, by this call and earlier ones.
        written: usize,
        /// Records the import changes in all.
        total: usize,
        /// What stopped it.
        source: Box<StoreError>,
    },
    /// The export's output failed.
    #[error("cannot write the export: {0}")]
    Output(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the caller asked for something the rules or the archive's state refuse (as
    /// opposed to Redis failing): exit code 1, HTTP 4xx.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Rule(_)
                | StoreError::Contended(_)
                | StoreError::ImportRunning(_)
                | StoreError::ImportUnfinished(_)
        )
    }

    /// A record (or journal) at `id` that does not decode.
    fn malformed(id: &str, problem: impl std::fmt::Display) -> StoreError {
        StoreError::Malformed {
            id: id.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// The ID archive in one Redis database, under one key prefix.
///
/// Cheap to share: the connection is one multiplexed [`ConnectionManager`], opened on first use
/// (and again after a failed attempt), which reconnects by itself when Redis comes back.
pub struct RedirectStore {
    client: Client,
    /// The URL without its password, for messages.
    url: String,
    keys: Keys,
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedirectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectStore")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .finish()
    }
}

#[cfg(test)]
mod tests;

//! The ID archive in Redis: reads, single edits, bulk import and export, in the key layout of
//! `docs/redirects.md`.
//!
//! **One writer.** Every record is written by the same Lua function (`WRITE_RECORDS_LUA`): the
//! hash, `P ids`, `P pointing:*` and the history entry together, inside one script call, so a
//! record and its indexes never disagree, whoever wrote it.
//!
//! **Single edits are atomic against concurrent admins** without holding a connection of their
//! own (the store shares one multiplexed connection, on which `WATCH` would not be ours alone):
//! an edit reads the records the rules look at, plans with [`model::plan`], then commits with one
//! Lua script that first compares every record and reverse-index set it read with what Redis holds
//! now and writes only if nothing changed (optimistic concurrency; a conflict re-reads and
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

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client};
use serde::Serialize;
use tokio::sync::OnceCell;

use super::import::{Location, Row, RowProblem};
use super::model::{
    self, rfc3339, Archive, ArchiveView, Change, Edit, HistoryEntry, ImportCounts, ImportPlanner,
    Kind, Meta, Redirect, RuleError, HISTORY_LIMIT,
};

/// A record hash as read.
type Fields = HashMap<String, String>;

/// How many times an edit is re-planned after losing a race with another edit.
const EDIT_ATTEMPTS: u32 = 8;

/// Identifiers read per round trip when loading or exporting the archive.
const PAGE: usize = 10_000;

/// Records per script call when writing a large import (about 10,000 Redis commands).
const BATCH_RECORDS: usize = 2_000;

/// Imports of up to this many changed records are written in one script call, all or nothing.
/// Bigger ones go in batches: one call of 10,000 new records keeps Redis busy for about 0.12 s
/// (measured: 23 ms per call of 2,000 records, importing a million), during which every
/// gateway's lookups wait or fail open.
const ATOMIC_RECORDS: usize = 10_000;

/// How long the import lock outlives its last refresh (a crashed import frees it after this).
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Something the store could not do, saying who failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configured URL is not a Redis URL.
    #[error("redis URL {url}: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    /// Redis cannot be reached or refused the connection (down, wrong password, TLS).
    #[error("cannot reach redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    /// Redis answered a command with an error, or the connection broke.
    #[error("redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    /// The edit breaks a rule of the archive.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Redis holds something this program did not write.
    #[error("redis holds a malformed record for {id:?}: {problem}")]
    Malformed { id: String, problem: String },
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
        written: usize,
        total: usize,
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
}

/// The Redis keys of one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn redirect(&self, id: &str) -> String {
        format!("{}redirect:{id}", self.prefix)
    }

    pub fn history(&self, id: &str) -> String {
        format!("{}history:{id}", self.prefix)
    }

    pub fn pointing(&self, id: &str) -> String {
        format!("{}pointing:{id}", self.prefix)
    }

    pub fn ids(&self) -> String {
        format!("{}ids", self.prefix)
    }

    pub fn invalidate(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    pub fn import_lock(&self) -> String {
        format!("{}import-lock", self.prefix)
    }

    /// The changes a large import still has to write, oldest first (see [`RedirectStore::resume`]).
    pub fn import_journal(&self) -> String {
        format!("{}import-journal", self.prefix)
    }

    /// Present once the journal is complete: who imported, when, how many changes.
    pub fn import_journal_meta(&self) -> String {
        format!("{}import-journal-meta", self.prefix)
    }
}

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the current archive (`done` of `total` records).
    Loading,
    /// Checking the rows against the rules (`done` of `total` rows).
    Checking,
    /// Writing the net changes (`done` of `total` records).
    Writing,
}

/// Progress of an import, reported to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// What an import did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    #[serde(flatten)]
    pub counts: ImportCounts,
    /// Every row refused, by place in the input; non-empty means nothing was written.
    #[serde(serialize_with = "serialize_problems")]
    pub problems: Vec<RowProblem>,
    pub dry_run: bool,
    /// Whether anything was written.
    pub written: bool,
    /// The first net changes (up to [`ImportReport::PREVIEW`]), for a dry run to show.
    #[serde(serialize_with = "serialize_changes")]
    pub preview: Vec<Change>,
    /// How many records change in all.
    pub n_changes: usize,
    /// Time spent loading, checking and writing.
    #[serde(skip)]
    pub elapsed: [Duration; 3],
}

impl ImportReport {
    pub const PREVIEW: usize = 50;
}

fn serialize_problems<S: serde::Serializer>(
    problems: &[RowProblem],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(problems.len()))?;
    for p in problems {
        seq.serialize_element(&serde_json::json!({
            "line": p.location.line,
            "item": p.location.item,
            "error": p.message,
        }))?;
    }
    seq.end()
}

fn serialize_changes<S: serde::Serializer>(
    changes: &[Change],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(changes.len()))?;
    for c in changes {
        seq.serialize_element(&change_json(c))?;
    }
    seq.end()
}

/// A change as JSON: `{"id", "kind", "target", "before": {"kind", "target"} | null, "cause"}`.
pub fn change_json(change: &Change) -> serde_json::Value {
    let brief = |r: &Option<Redirect>| {
        r.as_ref()
            .map(|r| serde_json::json!({"kind": r.kind, "target": r.target}))
    };
    let cause = match &change.cause {
        model::Cause::Requested => "requested".to_string(),
        model::Cause::Shortened { via } => format!("shortened: {via} had moved"),
        model::Cause::Retargeted { via } => format!("chain collapse through {via}"),
        model::Cause::GoneSpread { via } => format!("gone with {via}"),
    };
    serde_json::json!({
        "id": change.id,
        "kind": change.after.as_ref().map(|r| r.kind),
        "target": change.after.as_ref().and_then(|r| r.target.clone()),
        "removed": change.after.is_none(),
        "before": brief(&change.before),
        "cause": cause,
    })
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

impl RedirectStore {
    /// A store for `url` (`redis://[:password@]host:port/db`, `rediss://…`) and key `prefix`,
    /// without connecting yet. Needs no async runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] when the URL cannot be parsed.
    pub fn new(url: &str, prefix: &str) -> Result<RedirectStore, StoreError> {
        let shown = redact(url);
        let client = Client::open(url).map_err(|source| StoreError::Url {
            url: shown.clone(),
            source,
        })?;
        Ok(RedirectStore {
            client,
            url: shown,
            keys: Keys::new(prefix),
            connection: OnceCell::new(),
        })
    }

    /// A store for a `rediss://` URL whose server certificate comes from a private CA: `pem`
    /// is the CA certificate (instead of the public web roots). Does not connect yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] when the URL or the certificate cannot be used.
    pub fn with_root_certificate(
        url: &str,
        prefix: &str,
        pem: Vec<u8>,
    ) -> Result<RedirectStore, StoreError> {
        let shown = redact(url);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        let client =
            Client::build_with_tls(url, certificates).map_err(|source| StoreError::Url {
                url: shown.clone(),
                source,
            })?;
        Ok(RedirectStore {
            client,
            url: shown,
            keys: Keys::new(prefix),
            connection: OnceCell::new(),
        })
    }

    /// Connects if need be and checks that Redis answers (and accepts our credentials).
    ///
    /// # Errors
    ///
    /// [`StoreError::Connect`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|source| StoreError::Connect {
                url: self.url.clone(),
                source,
            })?;
        Ok(())
    }

    /// A store that has connected (and authenticated) once, so a bad URL, a wrong password or a
    /// dead server shows up now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] or [`StoreError::Connect`].
    pub async fn connect(url: &str, prefix: &str) -> Result<RedirectStore, StoreError> {
        let store = RedirectStore::new(url, prefix)?;
        // A connection opens even without the password Redis wants; a command finds out.
        store.ping().await?;
        Ok(store)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    // Import batches and the export pages are large; a stuck Redis still fails.
                    .set_response_timeout(Some(Duration::from_secs(60)))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: self.url.clone(),
                        source,
                    })
            })
            .await?;
        Ok(manager.clone())
    }

    fn redis_error(&self, source: redis::RedisError) -> StoreError {
        let url = self.url.clone();
        if source.is_connection_refusal()
            || source.is_timeout()
            || source.kind() == redis::ErrorKind::AuthenticationFailed
        {
            StoreError::Connect { url, source }
        } else {
            StoreError::Redis { url, source }
        }
    }

    /// Runs a script by its hash, loading it first if Redis does not know it (a restarted
    /// Redis forgets its scripts). `args` adds the arguments after `EVALSHA hash 0`.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        script: &redis::Script,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(0);
        args(&mut cmd);
        match cmd.query_async(conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                script.load_async(conn).await?;
                cmd.query_async(conn).await
            }
            result => result,
        }
    }

    // === reads ===

    /// The record of `id`, `None` if it is not retired.
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn get(&self, id: &str) -> Result<Option<Redirect>, StoreError> {
        let mut conn = self.conn().await?;
        let fields: HashMap<String, String> = conn
            .hgetall(self.keys.redirect(id))
            .await
            .map_err(|e| self.redis_error(e))?;
        parse_record(id, &fields)
    }

    /// The record of `id` and its history, newest first. Either may be empty: a removed
    /// identifier keeps its history.
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn show(
        &self,
        id: &str,
    ) -> Result<(Option<Redirect>, Vec<HistoryEntry>), StoreError> {
        let mut conn = self.conn().await?;
        let (fields, history): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.keys.redirect(id))
            .lrange(self.keys.history(id), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        // Entries this program did not write are skipped rather than failing the whole answer.
        let history = history
            .iter()
            .filter_map(|h| serde_json::from_str(h).ok())
            .collect();
        Ok((parse_record(id, &fields)?, history))
    }

    /// Up to `limit` retired identifiers starting with `prefix`, in byte order, with their
    /// records (`usize::MAX`: all of them).
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Redirect)>, StoreError> {
        let (min, max) = lex_range(prefix);
        self.page(min, max, limit).await
    }

    /// Identifiers in `[min, max]` (ZRANGEBYLEX syntax) with their records, `limit` at most.
    async fn page(
        &self,
        min: Vec<u8>,
        max: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<(String, Redirect)>, StoreError> {
        let mut conn = self.conn().await?;
        // Redis reads a negative count as "no limit".
        let count = i64::try_from(limit).unwrap_or(-1);
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.ids())
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.redirect(id));
        }
        let records: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, fields) in ids.into_iter().zip(records) {
            // An id listed without a record is skipped: it can only be a removal in between.
            if let Some(record) = parse_record(&id, &fields)? {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// Calls `sink` with every record, in identifier order, a page at a time; returns how many.
    ///
    /// # Errors
    ///
    /// Redis failed, or `sink` did ([`StoreError::Output`]).
    pub async fn export(
        &self,
        mut sink: impl FnMut(&str, &Redirect) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        let mut min = b"-".to_vec();
        let mut n = 0;
        loop {
            let page = self.page(min, b"+".to_vec(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            min = exclusive_after(last);
            for (id, record) in &page {
                sink(id, record)?;
                n += 1;
            }
        }
    }

    // === single edits ===

    /// `old` redirects to `new` (temporarily if `temporary`). Returns every record that changed,
    /// the edited one first; empty if the archive said so already.
    ///
    /// # Errors
    ///
    /// [`StoreError::Rule`] when the rules refuse it; Redis errors.
    pub async fn set(
        &self,
        old: &str,
        new: &str,
        temporary: bool,
        by: &str,
        reason: &str,
    ) -> Result<Vec<Change>, StoreError> {
        let edit = Edit::Redirect {
            old: old.into(),
            new: new.into(),
            temporary,
        };
        self.edit(&edit, by, reason).await
    }

    /// `old` is gone, and so is everything that redirected to it.
    ///
    /// # Errors
    ///
    /// See [`RedirectStore::set`].
    pub async fn gone(&self, old: &str, by: &str, reason: &str) -> Result<Vec<Change>, StoreError> {
        self.edit(&Edit::Gone { old: old.into() }, by, reason).await
    }

    /// `old` is not retired any more (its history stays).
    ///
    /// # Errors
    ///
    /// [`RuleError::NotRetired`] when it was not; see [`RedirectStore::set`].
    pub async fn remove(
        &self,
        old: &str,
        by: &str,
        reason: &str,
    ) -> Result<Vec<Change>, StoreError> {
        self.edit(&Edit::Remove { old: old.into() }, by, reason)
            .await
    }

    /// Plans and commits one edit, atomically (see the module documentation).
    ///
    /// # Errors
    ///
    /// See [`RedirectStore::set`].
    pub async fn edit(
        &self,
        edit: &Edit,
        by: &str,
        reason: &str,
    ) -> Result<Vec<Change>, StoreError> {
        model::validate_id(edit.old())?;
        let meta = Meta {
            at: rfc3339(SystemTime::now()),
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        for attempt in 0..EDIT_ATTEMPTS {
            let view = self.read_view(edit).await?;
            let changes = model::plan(&view, edit, &meta)?;
            if changes.is_empty() {
                return Ok(changes);
            }
            match self.commit(&view, &changes, &meta).await? {
                Commit::Done => return Ok(changes),
                Commit::Locked => return Err(StoreError::ImportRunning(self.keys.import_lock())),
                Commit::Unfinished => {
                    return Err(StoreError::ImportUnfinished(
                        self.keys.import_journal_meta(),
                    ))
                }
                Commit::Conflict => {
                    // Someone else committed in between: back off a little, then re-read.
                    let jitter =
                        u64::from(SystemTime::now().elapsed().map_or(0, |d| d.subsec_micros()) % 5);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt + 1) * 3 + jitter))
                        .await;
                }
            }
        }
        Err(StoreError::Contended(edit.old().to_owned()))
    }

    /// Reads what the rules look at for `edit`: its record, its new target's record, the
    /// identifiers pointing at it and their records.
    async fn read_view(&self, edit: &Edit) -> Result<EditView, StoreError> {
        let mut conn = self.conn().await?;
        let old = edit.old();
        let new = match edit {
            Edit::Redirect { new, .. } => Some(new.as_str()),
            _ => None,
        };
        // Without a new target, the edited record is simply read twice.
        let (old_fields, pointing, new_fields): (Fields, Vec<String>, Fields) = redis::pipe()
            .hgetall(self.keys.redirect(old))
            .smembers(self.keys.pointing(old))
            .hgetall(self.keys.redirect(new.unwrap_or(old)))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut view = EditView::default();
        view.add(old, old_fields)?;
        if let Some(new) = new {
            view.add(new, new_fields)?;
        }
        if !pointing.is_empty() {
            let mut pipe = redis::pipe();
            for id in &pointing {
                pipe.hgetall(self.keys.redirect(id));
            }
            let records: Vec<HashMap<String, String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            for (id, fields) in pointing.iter().zip(records) {
                view.add(id, fields)?;
            }
        }
        view.pointing.insert(old.to_owned(), pointing);
        Ok(view)
    }

    /// Writes `changes` if nothing `view` read has changed since.
    async fn commit(
        &self,
        view: &EditView,
        changes: &[Change],
        meta: &Meta,
    ) -> Result<Commit, StoreError> {
        let checks_records: Vec<Vec<String>> = view
            .raw
            .iter()
            .map(|(id, fields)| {
                let mut row = vec![self.keys.redirect(id)];
                row.extend(fields.iter().cloned());
                row
            })
            .collect();
        let checks_sets: Vec<Vec<String>> = view
            .pointing
            .iter()
            .map(|(id, members)| {
                let mut row = vec![self.keys.pointing(id)];
                row.extend(members.iter().cloned());
                row
            })
            .collect();
        let checks = serde_json::json!({
            "lock": self.keys.import_lock(),
            "journal": self.keys.import_journal_meta(),
            "records": checks_records,
            "sets": checks_sets,
        });
        let mut conn = self.conn().await?;
        let answer: String = self
            .eval(&mut conn, &COMMIT_SCRIPT, |cmd| {
                cmd.arg(checks.to_string())
                    .arg(&self.keys.prefix)
                    .arg(&meta.at)
                    .arg(&meta.by);
                for change in changes {
                    record_args(cmd, change, meta);
                }
            })
            .await
            .map_err(|e| self.redis_error(e))?;
        match answer.as_str() {
            "ok" => Ok(Commit::Done),
            "locked" => Ok(Commit::Locked),
            "unfinished" => Ok(Commit::Unfinished),
            _ => Ok(Commit::Conflict),
        }
    }
}

// === impl RedirectStore: import ===

/// How to run an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Check everything and report what would change, writing nothing.
    pub dry_run: bool,
    /// Who imports, for the records and their history.
    pub by: String,
}

impl RedirectStore {
    /// Imports `rows` in order: checks all of them against the rules and the archive, then, if
    /// none is refused and this is not a dry run, writes the net changes (see the module
    /// documentation for what a failure part way leaves behind) and publishes `*`.
    ///
    /// A refused row is reported in [`ImportReport::problems`] (with `written: false`), not as an
    /// error. `progress` hears about each phase now and then.
    ///
    /// # Errors
    ///
    /// [`StoreError::ImportRunning`] when another import holds the lock; Redis errors;
    /// [`StoreError::ImportInterrupted`] when writing stopped part way.
    pub async fn import(
        &self,
        rows: &[Row],
        options: &ImportOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<ImportReport, StoreError> {
        if options.dry_run {
            return self.import_under_lock(rows, options, progress, false).await;
        }
        let token = self.lock(&options.by).await?;
        let result = async {
            let mut conn = self.conn().await?;
            let unfinished: bool = conn
                .exists(self.keys.import_journal_meta())
                .await
                .map_err(|e| self.redis_error(e))?;
            if unfinished {
                return Err(StoreError::ImportUnfinished(
                    self.keys.import_journal_meta(),
                ));
            }
            self.import_under_lock(rows, options, progress, true).await
        }
        .await;
        self.unlock(&token).await;
        result
    }

    /// Finishes an import that stopped part way through writing (Redis or the connection
    /// failed, or the importing process died): writes the changes left in its journal, exactly
    /// as planned then. Returns how many records it wrote (0: nothing was left to do).
    ///
    /// # Errors
    ///
    /// [`StoreError::ImportRunning`] while an import runs; Redis errors;
    /// [`StoreError::ImportInterrupted`] when it stops part way again (resume again).
    pub async fn resume(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<usize, StoreError> {
        let token = self.lock("resume").await?;
        let result = self.resume_under_lock(progress).await;
        self.unlock(&token).await;
        result
    }

    async fn resume_under_lock(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let header: Option<String> = conn
            .get(self.keys.import_journal_meta())
            .await
            .map_err(|e| self.redis_error(e))?;
        let Some(header) = header else {
            // A journal without its header was cut short before any record was written.
            let _: i64 = conn
                .del(self.keys.import_journal())
                .await
                .map_err(|e| self.redis_error(e))?;
            return Ok(0);
        };
        let header: JournalHeader =
            serde_json::from_str(&header).map_err(|e| StoreError::Malformed {
                id: self.keys.import_journal_meta(),
                problem: e.to_string(),
            })?;
        let meta = Meta {
            at: header.at,
            by: header.by,
            reason: String::new(),
        };
        let left: usize = conn
            .llen(self.keys.import_journal())
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut written = 0;
        loop {
            let entries: Vec<String> = conn
                .lrange(self.keys.import_journal(), 0, PAGE as isize - 1)
                .await
                .map_err(|e| self.redis_error(e))?;
            if entries.is_empty() {
                break;
            }
            let changes = entries
                .iter()
                .map(|e| JournalEntry::decode(e, &meta))
                .collect::<Option<Vec<Change>>>()
                .ok_or_else(|| StoreError::Malformed {
                    id: self.keys.import_journal(),
                    problem: "an entry does not parse".into(),
                })?;
            written += self
                .write_journaled(&changes, &meta, written, left, progress)
                .await?;
        }
        self.close_journal().await?;
        Ok(written)
    }

    /// Takes the import lock, or says who has it.
    async fn lock(&self, by: &str) -> Result<String, StoreError> {
        let lock = self.keys.import_lock();
        let token = format!(
            "{by} {} {}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let mut conn = self.conn().await?;
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        match acquired {
            Some(_) => Ok(token),
            None => Err(StoreError::ImportRunning(lock)),
        }
    }

    /// Releases the import lock if it is still ours. Best effort: if Redis is gone, the lock
    /// expires by itself.
    async fn unlock(&self, token: &str) {
        let lock = self.keys.import_lock();
        let released: Result<i64, StoreError> = match self.conn().await {
            Ok(mut conn) => redis::Script::new(RELEASE_SCRIPT)
                .key(&lock)
                .arg(token)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e)),
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            log::warn!("could not release the import lock {lock}: {e}");
        }
    }

    async fn import_under_lock(
        &self,
        rows: &[Row],
        options: &ImportOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
        locked: bool,
    ) -> Result<ImportReport, StoreError> {
        let started = Instant::now();
        let archive = self.load(progress, locked).await?;
        let loaded = Instant::now();

        let mut meta = Meta {
            at: rfc3339(SystemTime::now()),
            by: options.by.clone(),
            reason: String::new(),
        };
        let mut planner = ImportPlanner::new(archive, rows.len());
        let total = rows.len() as u64;
        for (index, row) in rows.iter().enumerate() {
            meta.reason.clone_from(&row.reason);
            planner.apply(index, &row.edit, &meta);
            if index % 50_000 == 49_999 {
                progress(Progress {
                    phase: Phase::Checking,
                    done: index as u64 + 1,
                    total,
                });
                if locked {
                    self.refresh_lock().await?;
                }
            }
        }
        progress(Progress {
            phase: Phase::Checking,
            done: total,
            total,
        });
        let (mut plan, archive) = planner.finish();
        // Freeing a million records takes a second or two; not on the import's time.
        std::thread::spawn(move || drop(archive));
        let checked = Instant::now();
        let problems: Vec<RowProblem> = plan
            .refusals
            .iter()
            .map(|r| RowProblem {
                location: rows
                    .get(r.row)
                    .map_or(Location::default(), |row| row.location),
                message: r.error.to_string(),
            })
            .collect();
        let mut report = ImportReport {
            counts: plan.counts.clone(),
            problems,
            dry_run: options.dry_run,
            written: false,
            preview: plan.preview(ImportReport::PREVIEW),
            n_changes: plan.changes.len(),
            elapsed: [loaded - started, checked - loaded, Duration::ZERO],
        };
        if options.dry_run || !report.problems.is_empty() || plan.changes.is_empty() {
            return Ok(report);
        }
        // In identifier order: Redis inserts into the `ids` sorted set much faster in order
        // (measured: 7.5 µs per ZADD at random places in a million, about 1 µs in order).
        plan.changes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let written = self.write_changes(&plan.changes, &meta, progress).await;
        // Every node forgets what it cached, whether or not all batches made it.
        let mut conn = self.conn().await?;
        let published: Result<i64, _> = conn.publish(self.keys.invalidate(), "*").await;
        if let Err(e) = published {
            log::warn!("could not publish the invalidation after an import: {e}");
        }
        written?;
        report.written = true;
        report.elapsed[2] = checked.elapsed();
        Ok(report)
    }

    /// The whole archive, read a page of identifiers at a time with their records pipelined.
    async fn load(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
        refresh_lock: bool,
    ) -> Result<Archive, StoreError> {
        let mut conn = self.conn().await?;
        let total: u64 = conn
            .zcard(self.keys.ids())
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut archive = Archive::new();
        let mut min = b"-".to_vec();
        let mut done = 0;
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(self.keys.ids())
                .arg(&min)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            let Some(last) = ids.last() else {
                break;
            };
            min = exclusive_after(last);
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HMGET")
                    .arg(self.keys.redirect(id))
                    .arg(&["kind", "target", "reason"]);
            }
            if refresh_lock {
                pipe.pexpire(self.keys.import_lock(), LOCK_TTL.as_millis() as i64)
                    .ignore();
            }
            let records: Vec<(Option<String>, Option<String>, Option<String>)> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            for (id, (kind, target, reason)) in ids.into_iter().zip(records) {
                let Some(kind) = kind else {
                    continue;
                };
                let mut fields = HashMap::with_capacity(3);
                fields.insert("kind".to_owned(), kind);
                if let Some(target) = target {
                    fields.insert("target".to_owned(), target);
                }
                fields.insert("reason".to_owned(), reason.unwrap_or_default());
                if let Some(record) = parse_record(&id, &fields)? {
                    archive.insert(id, record);
                }
                done += 1;
            }
            progress(Progress {
                phase: Phase::Loading,
                done,
                total,
            });
        }
        Ok(archive)
    }

    async fn refresh_lock(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: bool = conn
            .pexpire(self.keys.import_lock(), LOCK_TTL.as_millis() as i64)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(())
    }

    /// Writes the net changes: in one script call up to [`ATOMIC_RECORDS`] records; otherwise
    /// through a journal (all changes first, then script calls that each write some records and
    /// drop them from the journal), so that [`RedirectStore::resume`] can finish an interrupted
    /// import exactly as planned.
    async fn write_changes(
        &self,
        changes: &[Change],
        meta: &Meta,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), StoreError> {
        let total = changes.len();
        let mut conn = self.conn().await?;
        if total <= ATOMIC_RECORDS {
            let sent: Result<(), _> = self
                .eval(&mut conn, &BATCH_SCRIPT, |cmd| {
                    self.batch_args(cmd, 0, meta);
                    for change in changes {
                        record_args(cmd, change, meta);
                    }
                })
                .await;
            sent.map_err(|e| StoreError::ImportNotWritten(Box::new(self.redis_error(e))))?;
            progress(Progress {
                phase: Phase::Writing,
                done: total as u64,
                total: total as u64,
            });
            return Ok(());
        }

        // The journal. Until its header exists nothing else is written, so a failure here
        // changes nothing (a later resume or import drops the partial journal).
        let not_written = |e| StoreError::ImportNotWritten(Box::new(self.redis_error(e)));
        let _: () = redis::pipe()
            .del(self.keys.import_journal())
            .ignore()
            .del(self.keys.import_journal_meta())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(not_written)?;
        for page in changes.chunks(PAGE) {
            let mut pipe = redis::pipe();
            for chunk in page.chunks(1000) {
                let entries: Vec<String> = chunk.iter().map(JournalEntry::encode).collect();
                pipe.rpush(self.keys.import_journal(), entries).ignore();
            }
            pipe.pexpire(self.keys.import_lock(), LOCK_TTL.as_millis() as i64)
                .ignore();
            let _: () = pipe.query_async(&mut conn).await.map_err(not_written)?;
        }
        let header = serde_json::to_string(&JournalHeader {
            at: meta.at.clone(),
            by: meta.by.clone(),
            total,
        })
        .expect("the header serializes");
        let _: () = conn
            .set(self.keys.import_journal_meta(), header)
            .await
            .map_err(not_written)?;

        self.write_journaled(changes, meta, 0, total, progress)
            .await?;
        self.close_journal().await
    }

    /// Writes `changes`, the head of the journal, in batches of [`BATCH_RECORDS`] records, each
    /// one [`BATCH_SCRIPT`] call that also drops its records from the journal. `before` of
    /// `total` were written earlier. Returns how many were written.
    ///
    /// One batch is in flight while the next is built, so Redis and this process work at the
    /// same time (on a multi-threaded runtime). Batches still go out one after the other, in
    /// order, as the journal requires.
    async fn write_journaled(
        &self,
        changes: &[Change],
        meta: &Meta,
        before: usize,
        total: usize,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        // Batches go out by hash, so load the script once first.
        BATCH_SCRIPT
            .load_async(&mut conn)
            .await
            .map_err(|e| StoreError::ImportInterrupted {
                written: before,
                total,
                source: Box::new(self.redis_error(e)),
            })?;
        let mut written = 0;
        let mut in_flight: Option<(tokio::task::JoinHandle<redis::RedisResult<()>>, usize)> = None;
        for batch in changes.chunks(BATCH_RECORDS) {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(BATCH_SCRIPT.get_hash()).arg(0);
            self.batch_args(&mut cmd, batch.len(), meta);
            for change in batch {
                record_args(&mut cmd, change, meta);
            }
            if let Some(previous) = in_flight.take() {
                written += self.settle(previous, before + written, total).await?;
                progress(Progress {
                    phase: Phase::Writing,
                    done: (before + written) as u64,
                    total: total as u64,
                });
            }
            let mut conn = conn.clone();
            let send = tokio::spawn(async move { cmd.query_async::<()>(&mut conn).await });
            in_flight = Some((send, batch.len()));
        }
        if let Some(last) = in_flight {
            written += self.settle(last, before + written, total).await?;
            progress(Progress {
                phase: Phase::Writing,
                done: (before + written) as u64,
                total: total as u64,
            });
        }
        Ok(written)
    }

    /// The arguments of [`BATCH_SCRIPT`] before the records.
    fn batch_args(&self, cmd: &mut redis::Cmd, drop_from_journal: usize, meta: &Meta) {
        cmd.arg(self.keys.import_journal())
            .arg(drop_from_journal)
            .arg(self.keys.import_lock())
            .arg(LOCK_TTL.as_millis() as u64)
            .arg(&self.keys.prefix)
            .arg(&meta.at)
            .arg(&meta.by);
    }

    /// Waits for a batch; returns its number of records.
    async fn settle(
        &self,
        (send, n_records): (tokio::task::JoinHandle<redis::RedisResult<()>>, usize),
        written: usize,
        total: usize,
    ) -> Result<usize, StoreError> {
        let interrupted = |source| StoreError::ImportInterrupted {
            written,
            total,
            source: Box::new(source),
        };
        match send.await {
            Ok(Ok(())) => Ok(n_records),
            Ok(Err(e)) => Err(interrupted(self.redis_error(e))),
            // The sending task panicked or was cancelled: the batch's fate is unknown.
            Err(e) => Err(interrupted(self.redis_error(redis::RedisError::from(
                std::io::Error::other(format!("the batch writer failed: {e}")),
            )))),
        }
    }

    /// Drops the (empty) journal and tells every node to forget what it cached.
    async fn close_journal(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .del(self.keys.import_journal_meta())
            .ignore()
            .del(self.keys.import_journal())
            .ignore()
            .publish(self.keys.invalidate(), "*")
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(())
    }
}

/// The journal's header (`P import-journal-meta`).
#[derive(Serialize, serde::Deserialize)]
struct JournalHeader {
    at: String,
    by: String,
    total: usize,
}

/// One change in the journal (`P import-journal`), as compact JSON:
/// `[id, before kind|null, before target|null, after kind|null, after target|null, reason, note]`.
struct JournalEntry;

impl JournalEntry {
    fn encode(change: &Change) -> String {
        let before = change.before.as_ref();
        let after = change.after.as_ref();
        serde_json::to_string(&(
            &change.id,
            before.map(|r| r.kind),
            before.and_then(|r| r.target.as_deref()),
            after.map(|r| r.kind),
            after.and_then(|r| r.target.as_deref()),
            after.map_or("", |r| r.reason.as_str()),
            &change.note,
        ))
        .expect("journal entries serialize")
    }

    /// The change an entry records; `meta` stamps the record (when, by whom) as the import did.
    fn decode(entry: &str, meta: &Meta) -> Option<Change> {
        type Entry = (
            String,
            Option<Kind>,
            Option<String>,
            Option<Kind>,
            Option<String>,
            String,
            String,
        );
        let (id, before_kind, before_target, after_kind, after_target, reason, note): Entry =
            serde_json::from_str(entry).ok()?;
        let record = |kind: Kind, target: Option<String>, reason: String| Redirect {
            kind,
            target,
            changed_at: meta.at.clone(),
            changed_by: meta.by.clone(),
            reason,
        };
        Some(Change {
            id,
            before: before_kind.map(|k| record(k, before_target, String::new())),
            after: after_kind.map(|k| record(k, after_target, reason)),
            cause: model::Cause::Requested,
            note,
        })
    }
}

/// Deletes the import lock if it is still ours.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The one place records are written, shared by single edits and imports (Lua, so each call is
/// atomic). `write_records(first, p, at, by)` writes the records described by `ARGV[first..]`,
/// seven arguments each: identifier, whether it had a record (`1`/`0`), its target before (or
/// ""), its kind after (or "" to remove the record), its target after (or ""), its reason after,
/// and its history entry (JSON). It keeps `P ids` and `P pointing:*` in step and caps the
/// history at 100 entries (see `docs/redirects.md`).
const WRITE_RECORDS_LUA: &str = r"
local function write_records(first, p, at, by)
  -- New identifiers join `ids` a thousand at a time (one ZADD per record costs twice as much).
  local added = {}
  local function add_ids()
    if #added > 0 then redis.call('ZADD', p .. 'ids', unpack(added)) end
    added = {}
  end
  for i = first, #ARGV, 7 do
    local id, had, old_t, kind, t, reason, entry =
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    local key = p .. 'redirect:' .. id
    if kind == '' then
      redis.call('DEL', key)
      redis.call('ZREM', p .. 'ids', id)
    else
      if t ~= '' then
        redis.call('HSET', key, 'kind', kind, 'changed_at', at, 'changed_by', by,
                   'reason', reason, 'target', t)
      else
        redis.call('HSET', key, 'kind', kind, 'changed_at', at, 'changed_by', by,
                   'reason', reason)
        if had == '1' then redis.call('HDEL', key, 'target') end
      end
      if had == '0' then
        added[#added + 1] = 0
        added[#added + 1] = id
        if #added >= 2000 then add_ids() end
      end
    end
    if old_t ~= t then
      if old_t ~= '' then redis.call('SREM', p .. 'pointing:' .. old_t, id) end
      if t ~= '' then redis.call('SADD', p .. 'pointing:' .. t, id) end
    end
    local history = p .. 'history:' .. id
    if redis.call('LPUSH', history, entry) > 100 then
      redis.call('LTRIM', history, 0, 99)
    end
  end
  add_ids()
end
";

/// A single edit's commit: checks that the records and sets it read are unchanged, then writes
/// and publishes each changed identifier. `ARGV[1]` is JSON:
/// `{"lock": key, "journal": key, "records": [[key, kind, target, changed_at, changed_by,
/// reason]…], "sets": [[key, member…]…]}` (a missing field reads as ""); then prefix, time,
/// author and the records (see [`WRITE_RECORDS_LUA`]).
const COMMIT_LUA: &str = r"
local plan = cjson.decode(ARGV[1])
if redis.call('EXISTS', plan.lock) == 1 then return 'locked' end
if redis.call('EXISTS', plan.journal) == 1 then return 'unfinished' end
for _, r in ipairs(plan.records) do
  local now = redis.call('HMGET', r[1], 'kind', 'target', 'changed_at', 'changed_by', 'reason')
  for i = 1, 5 do
    if (now[i] or '') ~= r[i + 1] then return 'conflict' end
  end
end
for _, s in ipairs(plan.sets) do
  if redis.call('SCARD', s[1]) ~= #s - 1 then return 'conflict' end
  for i = 2, #s do
    if redis.call('SISMEMBER', s[1], s[i]) == 0 then return 'conflict' end
  end
end
local p = ARGV[2]
write_records(5, p, ARGV[3], ARGV[4])
for i = 5, #ARGV, 7 do
  redis.call('PUBLISH', p .. 'invalidate', ARGV[i])
end
return 'ok'
";

/// One batch of an import: writes the records, drops as many entries from the head of the
/// journal, and keeps the import lock alive. Arguments: journal key, entries to drop, lock key,
/// lock time-to-live (ms), prefix, time, author, then the records.
const BATCH_LUA: &str = r"
write_records(8, ARGV[5], ARGV[6], ARGV[7])
local dropped = tonumber(ARGV[2])
if dropped > 0 then redis.call('LTRIM', ARGV[1], dropped, -1) end
redis.call('PEXPIRE', ARGV[3], ARGV[4])
return 0
";

// `WRITE_RECORDS_LUA` keeps 100 history entries.
const _: () = assert!(HISTORY_LIMIT == 100);

static COMMIT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{WRITE_RECORDS_LUA}{COMMIT_LUA}")));

static BATCH_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{WRITE_RECORDS_LUA}{BATCH_LUA}")));

/// Appends the seven [`WRITE_RECORDS_LUA`] arguments of one change.
fn record_args(cmd: &mut redis::Cmd, change: &Change, meta: &Meta) {
    let before = change.before.as_ref();
    let after = change.after.as_ref();
    cmd.arg(&change.id)
        .arg(if before.is_some() { "1" } else { "0" })
        .arg(before.and_then(|r| r.target.as_deref()).unwrap_or(""))
        .arg(after.map_or("", |r| r.kind.as_str()))
        .arg(after.and_then(|r| r.target.as_deref()).unwrap_or(""))
        .arg(after.map_or("", |r| r.reason.as_str()))
        .arg(change.history_json(meta));
}

enum Commit {
    Done,
    Conflict,
    Locked,
    Unfinished,
}

/// The few records a single edit reads, as the planner's view, plus their raw fields for the
/// commit's comparison.
#[derive(Default)]
struct EditView {
    records: HashMap<String, Redirect>,
    /// Every record read, present or not: id → kind, target, changed_at, changed_by, reason.
    raw: Vec<(String, [String; 5])>,
    pointing: HashMap<String, Vec<String>>,
}

impl EditView {
    fn add(&mut self, id: &str, fields: HashMap<String, String>) -> Result<(), StoreError> {
        if self.raw.iter().any(|(seen, _)| seen == id) {
            return Ok(());
        }
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        self.raw.push((
            id.to_owned(),
            [
                field("kind"),
                field("target"),
                field("changed_at"),
                field("changed_by"),
                field("reason"),
            ],
        ));
        if let Some(record) = parse_record(id, &fields)? {
            self.records.insert(id.to_owned(), record);
        }
        Ok(())
    }
}

impl ArchiveView for EditView {
    fn get(&self, id: &str) -> Option<&Redirect> {
        self.records.get(id)
    }

    fn pointing_to(&self, id: &str) -> Vec<String> {
        self.pointing.get(id).cloned().unwrap_or_default()
    }
}

/// Parses a record hash; an empty hash is "not retired".
fn parse_record(
    id: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<Redirect>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let malformed = |problem: String| StoreError::Malformed {
        id: id.to_owned(),
        problem,
    };
    let kind: Kind = fields
        .get("kind")
        .ok_or_else(|| malformed("no kind".into()))?
        .parse()
        .map_err(malformed)?;
    let target = fields.get("target").filter(|t| !t.is_empty()).cloned();
    if (kind == Kind::Gone) != target.is_none() {
        return Err(malformed(format!("kind {kind} with target {target:?}")));
    }
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    Ok(Some(Redirect {
        kind,
        target,
        changed_at: field("changed_at"),
        changed_by: field("changed_by"),
        reason: field("reason"),
    }))
}

/// The ZRANGEBYLEX bounds of the identifiers starting with `prefix`. UTF-8 never contains the
/// byte 0xFF, so `[prefix\xff` is above every identifier that starts with `prefix`.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = b"[".to_vec();
    min.extend_from_slice(prefix.as_bytes());
    let mut max = min.clone();
    max.push(0xff);
    (min, max)
}

fn exclusive_after(id: &str) -> Vec<u8> {
    let mut bound = b"(".to_vec();
    bound.extend_from_slice(id.as_bytes());
    bound
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    if !userinfo.contains(':') {
        return url.to_owned();
    }
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

/// A real `redis-server` per test, on a free port, killed on drop.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::RedirectStore;

    pub(crate) struct TestRedis {
        pub(crate) port: u16,
        password: Option<String>,
        tls: bool,
        child: Child,
        pub(crate) dir: PathBuf,
    }

    impl TestRedis {
        pub(crate) fn start() -> TestRedis {
            TestRedis::start_with(None, &[])
        }

        /// Starts `redis-server` with a password (if any) and extra arguments.
        /// A Redis that speaks only TLS, with a certificate for 127.0.0.1 from a throwaway CA
        /// (needs `openssl`); returns it and the CA certificate (PEM).
        pub(crate) fn start_tls() -> (TestRedis, Vec<u8>) {
            let dir = std::env::temp_dir().join(format!(
                "redirects-tls-{}-{}",
                std::process::id(),
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let openssl = |args: &[&str]| {
                let status = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("openssl runs");
                assert!(status.success(), "openssl {args:?}");
            };
            std::fs::write(
                dir.join("server.ext"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ]);
            let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
            let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
            let mut redis = TestRedis::start_with(
                None,
                &[
                    "--tls-port",
                    "PORT",
                    "--port",
                    "0",
                    "--tls-cert-file",
                    &cert,
                    "--tls-key-file",
                    &key,
                    "--tls-ca-cert-file",
                    &ca,
                    "--tls-auth-clients",
                    "no",
                ],
            );
            redis.tls = true;
            let ca = std::fs::read(&ca).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            (redis, ca)
        }

        pub(crate) fn start_with(password: Option<&str>, extra: &[&str]) -> TestRedis {
            static STARTED: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "redirects-test-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for _ in 0..5 {
                let port = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                if let Some(redis) = TestRedis::spawn(port, password, extra, &dir) {
                    return redis;
                }
            }
            panic!("redis-server did not start (apt install redis-server)");
        }

        // The child is waited for when the `TestRedis` holding it drops.
        #[allow(clippy::zombie_processes)]
        fn spawn(
            port: u16,
            password: Option<&str>,
            extra: &[&str],
            dir: &PathBuf,
        ) -> Option<TestRedis> {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(password) = password {
                command.args(["--requirepass", password]);
            }
            let port_text = port.to_string();
            command.args(
                extra
                    .iter()
                    .map(|a| if *a == "PORT" { port_text.as_str() } else { a }),
            );
            let mut child = command.spawn().expect("redis-server runs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(TestRedis {
                        port,
                        password: password.map(str::to_owned),
                        tls: false,
                        child,
                        dir: dir.clone(),
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        }

        pub(crate) fn url(&self) -> String {
            let scheme = if self.tls { "rediss" } else { "redis" };
            match &self.password {
                Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}/", self.port),
                None => format!("{scheme}://127.0.0.1:{}/", self.port),
            }
        }

        pub(crate) fn pid(&self) -> u32 {
            self.child.id()
        }

        pub(crate) async fn store(&self, prefix: &str) -> RedirectStore {
            RedirectStore::connect(&self.url(), prefix).await.unwrap()
        }

        /// A plain connection for looking at the keys directly.
        pub(crate) async fn conn(&self) -> redis::aio::MultiplexedConnection {
            redis::Client::open(self.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }

        pub(crate) fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use redis::AsyncCommands;

    use super::testing::TestRedis;
    use super::*;
    use crate::redirects::import::{self as format, Exporter, Format};

    const BY: &str = "tester";

    /// The archive as Redis holds it, checked against every rule of the key layout: records
    /// valid, `ids` = the records, the reverse index = the records' targets, no record targets a
    /// retired identifier.
    async fn check_layout(redis: &TestRedis, prefix: &str) -> Archive {
        let mut conn = redis.conn().await;
        let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
        let mut records = Archive::new();
        let mut pointing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for key in &keys {
            let rest = &key[prefix.len()..];
            if let Some(id) = rest.strip_prefix("redirect:") {
                let fields: HashMap<String, String> = conn.hgetall(key).await.unwrap();
                for field in ["kind", "changed_at", "changed_by", "reason"] {
                    assert!(fields.contains_key(field), "{key} has no {field}");
                }
                records.insert(id.to_owned(), parse_record(id, &fields).unwrap().unwrap());
            } else if let Some(target) = rest.strip_prefix("pointing:") {
                let members: BTreeSet<String> = conn.smembers(key).await.unwrap();
                assert!(!members.is_empty(), "{key} is an empty set");
                pointing.insert(target.to_owned(), members);
            }
        }
        records.check_invariants().unwrap();
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, record) in records.iter() {
            if let Some(target) = &record.target {
                expected
                    .entry(target.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
        assert_eq!(pointing, expected, "the reverse index in redis");
        let ids: BTreeSet<String> = conn.zrange(format!("{prefix}ids"), 0, -1).await.unwrap();
        let record_ids: BTreeSet<String> = records.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, record_ids, "{prefix}ids");
        records
    }

    fn target_of(archive: &Archive, id: &str) -> Option<(Kind, Option<String>)> {
        archive.get(id).map(|r| (r.kind, r.target.clone()))
    }

    #[tokio::test]
    async fn set_gone_rm_and_show() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        let changes = store
            .set("old-1", "new-1", false, BY, "merged")
            .await
            .unwrap();
        assert_eq!(changes.len(), 1);
        let record = store.get("old-1").await.unwrap().unwrap();
        assert_eq!(
            (record.kind, record.target.as_deref()),
            (Kind::Moved, Some("new-1"))
        );
        assert_eq!(
            (record.changed_by.as_str(), record.reason.as_str()),
            (BY, "merged")
        );
        assert!(record.changed_at.ends_with('Z'));

        // The hash is exactly the documented layout.
        let mut conn = redis.conn().await;
        let fields: BTreeMap<String, String> = conn.hgetall("t:redirect:old-1").await.unwrap();
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec!["changed_at", "changed_by", "kind", "reason", "target"]
        );

        // Setting the same again changes nothing and writes no history.
        assert!(store
            .set("old-1", "new-1", false, BY, "merged")
            .await
            .unwrap()
            .is_empty());
        store
            .set("old-1", "new-1", true, BY, "for now")
            .await
            .unwrap();
        store.gone("old-1", "bob", "withdrawn").await.unwrap();
        let fields: HashMap<String, String> = conn.hgetall("t:redirect:old-1").await.unwrap();
        assert!(
            !fields.contains_key("target"),
            "a gone record has no target"
        );
        check_layout(&redis, "t:").await;
        store.remove("old-1", "carol", "mistake").await.unwrap();
        assert!(store.get("old-1").await.unwrap().is_none());

        let (record, history) = store.show("old-1").await.unwrap();
        assert!(record.is_none());
        let actions: Vec<(Action, Option<Kind>, Option<&str>, &str)> = history
            .iter()
            .map(|h| (h.action, h.kind, h.target.as_deref(), h.by.as_str()))
            .collect();
        use model::Action;
        assert_eq!(
            actions,
            vec![
                (Action::Rm, None, None, "carol"),
                (Action::Gone, Some(Kind::Gone), None, "bob"),
                (Action::Set, Some(Kind::Temporary), Some("new-1"), BY),
                (Action::Set, Some(Kind::Moved), Some("new-1"), BY),
            ]
        );
        assert!(matches!(
            store.remove("old-1", BY, "").await,
            Err(StoreError::Rule(RuleError::NotRetired(_)))
        ));
        check_layout(&redis, "t:").await;
    }

    #[tokio::test]
    async fn history_is_capped() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        for i in 0..(HISTORY_LIMIT + 5) {
            store
                .set("a", &format!("b{i}"), false, BY, "")
                .await
                .unwrap();
        }
        let (_, history) = store.show("a").await.unwrap();
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].target.as_deref(), Some("b104"));
    }

    #[tokio::test]
    async fn chains_collapse_both_ways_and_loops_are_refused() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        store.set("a", "b", false, BY, "").await.unwrap();
        store.set("x", "b", true, BY, "").await.unwrap();
        // Backward: b → c rewrites a and x.
        let changes = store.set("b", "c", false, BY, "renamed").await.unwrap();
        assert_eq!(changes.len(), 3);
        // Forward: d → b is stored as d → c.
        let changes = store.set("d", "b", false, BY, "").await.unwrap();
        assert_eq!(
            changes[0].cause,
            model::Cause::Shortened { via: "b".into() }
        );
        let archive = check_layout(&redis, "t:").await;
        assert_eq!(
            target_of(&archive, "a"),
            Some((Kind::Moved, Some("c".into())))
        );
        assert_eq!(
            target_of(&archive, "x"),
            Some((Kind::Temporary, Some("c".into())))
        );
        assert_eq!(
            target_of(&archive, "d"),
            Some((Kind::Moved, Some("c".into())))
        );
        let (_, history) = store.show("a").await.unwrap();
        assert!(history[0].reason.contains("chain collapse"), "{history:?}");

        // Loops: c → a (a → c), and a → a.
        let before = check_layout(&redis, "t:").await;
        for (old, new) in [("c", "a"), ("c", "b"), ("a", "a")] {
            let error = store.set(old, new, false, BY, "").await.unwrap_err();
            assert!(
                matches!(
                    error,
                    StoreError::Rule(RuleError::Loop { .. } | RuleError::SelfRedirect(_))
                ),
                "{error}"
            );
            assert!(error.is_refusal());
        }
        let after = check_layout(&redis, "t:").await;
        assert_eq!(model::snapshot(&before), model::snapshot(&after));
    }

    #[tokio::test]
    async fn gone_spreads_and_gone_targets_are_refused() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        store.set("a", "b", false, BY, "").await.unwrap();
        store.set("x", "b", false, BY, "").await.unwrap();
        let changes = store.gone("b", BY, "withdrawn").await.unwrap();
        assert_eq!(changes.len(), 3);
        let archive = check_layout(&redis, "t:").await;
        for id in ["a", "b", "x"] {
            let record = archive.get(id).unwrap();
            assert_eq!(
                (record.kind, record.reason.as_str()),
                (Kind::Gone, "withdrawn")
            );
        }
        let error = store.set("y", "b", false, BY, "").await.unwrap_err();
        assert!(matches!(
            error,
            StoreError::Rule(RuleError::TargetGone { .. })
        ));
        assert!(error.to_string().contains("mark y gone instead"), "{error}");
        assert!(store.get("y").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn every_change_is_published() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let url = redis.url();
        let listener = std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_connection().unwrap();
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe("t:invalidate").unwrap();
            pubsub
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut messages = Vec::new();
            while messages.len() < 7 {
                let Ok(message) = pubsub.get_message() else {
                    break;
                };
                messages.push(message.get_payload::<String>().unwrap());
            }
            messages
        });
        ready_rx.recv().unwrap();
        store.set("a", "b", false, BY, "").await.unwrap();
        store.set("b", "c", false, BY, "").await.unwrap();
        store.gone("c", BY, "").await.unwrap();
        let rows = format::parse_csv("old,new\nz,y\n".as_bytes()).unwrap().rows;
        let options = ImportOptions {
            dry_run: false,
            by: BY.into(),
        };
        store.import(&rows, &options, &mut |_| {}).await.unwrap();
        let messages = listener.join().unwrap();
        // a; then b and a (collapse); then c, a, b (gone spreads); then * for the import.
        assert_eq!(messages, vec!["a", "b", "a", "c", "a", "b", "*"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_edits_keep_the_archive_consistent() {
        let redis = TestRedis::start();
        let shared = Arc::new(redis.store("t:").await);
        let ids = ["a", "b", "c", "d", "e", "f", "g"];
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            // Half share one connection, half have their own.
            let store = if worker % 2 == 0 {
                shared.clone()
            } else {
                Arc::new(redis.store("t:").await)
            };
            tasks.push(tokio::spawn(async move {
                let mut state = worker * 7919 + 1;
                let mut next = move || {
                    // xorshift: deterministic per worker, different across workers.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let (mut done, mut refused, mut contended) = (0, 0, 0);
                for _ in 0..150 {
                    let old = ids[(next() % 7) as usize];
                    let new = ids[(next() % 7) as usize];
                    let result = match next() % 6 {
                        0 => store.gone(old, "w", "").await,
                        1 => store.remove(old, "w", "").await,
                        n => store.set(old, new, n == 2, "w", "").await,
                    };
                    match result {
                        Ok(_) => done += 1,
                        Err(StoreError::Contended(_)) => contended += 1,
                        Err(e) if e.is_refusal() => refused += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (done, refused, contended)
            }));
        }
        let mut totals = (0, 0, 0);
        for task in tasks {
            let (d, r, c) = task.await.unwrap();
            totals = (totals.0 + d, totals.1 + r, totals.2 + c);
        }
        eprintln!(
            "concurrent edits: {} done, {} refused, {} contended",
            totals.0, totals.1, totals.2
        );
        assert!(totals.0 > 100);
        check_layout(&redis, "t:").await;
    }

    fn rows(csv: &str) -> Vec<Row> {
        let parsed = format::parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(parsed.problems, vec![]);
        parsed.rows
    }

    async fn export(store: &RedirectStore, format: Format) -> Vec<u8> {
        let mut exporter = Exporter::new(format, Vec::new()).unwrap();
        store.export(|id, r| exporter.write(id, r)).await.unwrap();
        exporter.finish().unwrap()
    }

    #[tokio::test]
    async fn import_export_round_trip() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        store.set("x", "a", false, BY, "existing").await.unwrap();
        let csv = "old,new,kind,reason\n\
                   a,b,moved,merged\n\
                   b,c,temporary,\"for now, really\"\n\
                   \"ark:/1/é\",c,,\n\
                   g,,gone,withdrawn\n";
        let options = ImportOptions {
            dry_run: false,
            by: "importer".into(),
        };
        let mut phases = Vec::new();
        let report = store
            .import(&rows(csv), &options, &mut |p| phases.push(p.phase))
            .await
            .unwrap();
        assert!(report.written);
        assert_eq!(report.counts.rows, 4);
        // a, b, ark, g added; x retargeted twice (→ b, → c).
        assert_eq!((report.counts.added, report.counts.changed), (4, 1));
        assert_eq!(report.counts.collapsed, 3);
        assert!(phases.contains(&Phase::Loading) && phases.contains(&Phase::Writing));
        let archive = check_layout(&redis, "t:").await;
        assert_eq!(
            target_of(&archive, "x"),
            Some((Kind::Temporary, Some("c".into())))
        );
        let (x, history) = store.show("x").await.unwrap();
        assert_eq!(x.unwrap().reason, "existing");
        assert_eq!(history.len(), 2, "one entry per import, not per collapse");
        assert_eq!(history[0].by, "importer");
        assert!(!redis
            .conn()
            .await
            .exists::<_, bool>("t:import-lock")
            .await
            .unwrap());

        for format in [Format::Csv, Format::Yaml] {
            let bytes = export(&store, format).await;
            let text = String::from_utf8(bytes.clone()).unwrap();
            if format == Format::Csv {
                assert!(
                    text.starts_with("old,new,kind,reason\na,c,temporary,merged\n"),
                    "{text}"
                );
            }
            // Importing the export into an empty archive gives the same archive…
            let parsed = format::parse(format, bytes.as_slice()).unwrap();
            assert_eq!(parsed.problems, vec![]);
            let other = redis.store(&format!("copy-{format:?}:")).await;
            let report = other
                .import(&parsed.rows, &options, &mut |_| {})
                .await
                .unwrap();
            assert_eq!(report.counts.added, 5);
            let copy = check_layout(&redis, &format!("copy-{format:?}:")).await;
            assert_eq!(model::snapshot(&copy), model::snapshot(&archive));
            assert_eq!(export(&other, format).await, bytes);
            // …and into the same archive changes nothing.
            let report = store
                .import(&parsed.rows, &options, &mut |_| {})
                .await
                .unwrap();
            assert_eq!(
                (report.counts.unchanged, report.n_changes, report.written),
                (5, 0, false)
            );
        }
        let listed = store.list("ark:", 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "ark:/1/é");
        assert_eq!(store.list("", 2).await.unwrap().len(), 2);
        assert!(store.list("zzz", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_import_writes_nothing_and_a_dry_run_neither() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        store.set("x", "a", false, BY, "").await.unwrap();
        store.gone("g", BY, "").await.unwrap();
        let mut conn = redis.conn().await;
        let dump = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut conn = conn.clone();
            async move {
                let mut keys: Vec<String> = conn.keys("*").await.unwrap();
                keys.sort();
                let mut out = Vec::new();
                for key in keys {
                    let dumped: Vec<u8> = redis::cmd("DUMP")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    out.push((key, dumped));
                }
                out
            }
        };
        let before = dump(&mut conn).await;
        let csv = "old,new,kind\n\
                   a,b,moved\n\
                   b,x,moved\n\
                   c,g,moved\n\
                   d,d,moved\n\
                   e,f,moved\n";
        let options = ImportOptions {
            dry_run: false,
            by: BY.into(),
        };
        let report = store
            .import(&rows(csv), &options, &mut |_| {})
            .await
            .unwrap();
        assert!(!report.written);
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("line 3: b → x would make a loop"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("line 4: g is gone"), "{problems:?}");
        assert!(
            problems[2].starts_with("line 5: d cannot redirect to itself"),
            "{problems:?}"
        );
        assert_eq!(dump(&mut conn).await, before);

        let options = ImportOptions {
            dry_run: true,
            by: BY.into(),
        };
        let report = store
            .import(&rows("old,new\na,b\nb,c\n"), &options, &mut |_| {})
            .await
            .unwrap();
        assert!(!report.written && report.dry_run);
        assert_eq!(
            (report.counts.added, report.counts.changed, report.n_changes),
            (2, 1, 3)
        );
        assert_eq!(report.preview.len(), 3);
        assert_eq!(dump(&mut conn).await, before);
    }

    #[tokio::test]
    async fn imports_and_edits_exclude_each_other() {
        let redis = TestRedis::start();
        let store = redis.store("t:").await;
        let mut conn = redis.conn().await;
        let _: () = conn.set("t:import-lock", "someone else").await.unwrap();
        let options = ImportOptions {
            dry_run: false,
            by: BY.into(),
        };
        let error = store
            .import(&rows("old,new\na,b\n"), &options, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::ImportRunning(_)), "{error}");
        let error = store.set("a", "b", false, BY, "").await.unwrap_err();
        assert!(matches!(error, StoreError::ImportRunning(_)), "{error}");
        // A dry run needs no lock.
        let dry = ImportOptions {
            dry_run: true,
            by: BY.into(),
        };
        store
            .import(&rows("old,new\na,b\n"), &dry, &mut |_| {})
            .await
            .unwrap();
        // The lock is not ours to release.
        let holder: String = conn.get("t:import-lock").await.unwrap();
        assert_eq!(holder, "someone else");
    }

    #[tokio::test]
    async fn a_password_protected_redis() {
        let redis = TestRedis::start_with(Some("s3cret pw"), &[]);
        // The URL encodes the space.
        let url = format!("redis://:s3cret%20pw@127.0.0.1:{}/", redis.port);
        let store = RedirectStore::connect(&url, "t:").await.unwrap();
        store.set("a", "b", false, BY, "").await.unwrap();
        assert!(store.get("a").await.unwrap().is_some());

        let wrong = format!("redis://:nope@127.0.0.1:{}/", redis.port);
        let error = RedirectStore::connect(&wrong, "t:").await.unwrap_err();
        assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
        assert!(!error.to_string().contains("nope"), "{error}");
        let none = format!("redis://127.0.0.1:{}/", redis.port);
        let error = RedirectStore::connect(&none, "t:").await.unwrap_err();
        assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_tls_redis() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (redis, ca) = TestRedis::start_tls();
        assert!(redis.url().starts_with("rediss://"));
        // The public roots do not know this CA.
        let error = RedirectStore::connect(&redis.url(), "t:")
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Connect { .. }), "{error}");
        let store = RedirectStore::with_root_certificate(&redis.url(), "t:", ca).unwrap();
        store.ping().await.unwrap();
        store.set("a", "b", false, BY, "").await.unwrap();
        assert!(store.get("a").await.unwrap().is_some());
        let rows = format::parse_csv("old,new\nc,d\n".as_bytes()).unwrap().rows;
        let options = ImportOptions {
            dry_run: false,
            by: BY.into(),
        };
        let report = store.import(&rows, &options, &mut |_| {}).await.unwrap();
        assert!(report.written);
        // Plain text to a TLS port fails to connect.
        let plain = format!("redis://127.0.0.1:{}/", redis.port);
        assert!(RedirectStore::connect(&plain, "t:").await.is_err());
    }

    #[tokio::test]
    async fn a_dead_redis_is_a_connection_error() {
        let mut redis = TestRedis::start();
        let url = redis.url();
        redis.kill();
        let error = RedirectStore::connect(&url, "t:").await.unwrap_err();
        assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
        assert!(!error.is_refusal());
        assert!(matches!(
            RedirectStore::new("http://x", "t:"),
            Err(StoreError::Url { .. })
        ));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("redis://:pw@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:p@ss@host/"),
            "rediss://user:***@host/"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host"), "redis://user@host");
    }

    #[test]
    fn lex_ranges_cover_a_prefix() {
        assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
        let (min, max) = lex_range("ab");
        assert_eq!(min, b"[ab".to_vec());
        assert_eq!(max, b"[ab\xff".to_vec());
    }

    /// Redis killed while a large import writes (with an append-only file, as production
    /// should run): the batches written stay, edits and imports are refused until the import
    /// is resumed, and resuming ends exactly where an uninterrupted import would have.
    #[tokio::test]
    async fn an_interrupted_import_is_resumed_exactly() {
        let aof = ["--appendonly", "yes", "--appendfsync", "always"];
        let mut redis = TestRedis::start_with(None, &aof);
        let store = redis.store("t:").await;
        let n = 40_000;
        let mut csv = String::from("old,new,kind\n");
        for i in 0..n {
            csv.push_str(&format!("old-{i},new-{},\n", i % 1000));
        }
        // Rows that depend on earlier ones: new-7 itself moves (old-7, old-1007, … collapse),
        // and new-99 goes (old-99, … become gone).
        for i in 0..50 {
            csv.push_str(&format!("new-{i},newer-{i},\n"));
        }
        csv.push_str("new-99,,gone\n");
        let rows = rows(&csv);
        let mut expected = ImportPlanner::new(Archive::new(), 0);
        for (i, row) in rows.iter().enumerate() {
            expected.apply(
                i,
                &row.edit,
                &Meta {
                    at: String::new(),
                    by: String::new(),
                    reason: row.reason.clone(),
                },
            );
        }
        let expected = model::snapshot(expected.archive());

        let options = ImportOptions {
            dry_run: false,
            by: BY.into(),
        };
        let pid = redis.pid();
        let mut killed = false;
        let result = store
            .import(&rows, &options, &mut |p| {
                if p.phase == Phase::Writing && !killed {
                    killed = true;
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            })
            .await;
        let error = result.unwrap_err();
        let StoreError::ImportInterrupted { written, total, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(*written > 0 && written < total, "{error}");
        assert!(error.to_string().contains("--resume"), "{error}");
        let (written, total) = (*written, *total);

        // Restart on the same port and directory (the AOF).
        let port = redis.port;
        let dir = redis.dir.clone();
        redis.kill();
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(aof)
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let store = loop {
            if let Ok(store) = RedirectStore::connect(&redis.url(), "t:").await {
                break store;
            }
            assert!(Instant::now() < deadline, "redis did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut conn = store.conn().await.unwrap();
        let partial: usize = conn.zcard("t:ids").await.unwrap();
        assert!(
            partial > 0 && partial < expected.len(),
            "{partial} ids after the crash"
        );
        // The dead import's lock expires by itself; don't wait for it.
        let _: () = conn.del("t:import-lock").await.unwrap();

        let error = store
            .import(&rows, &options, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::ImportUnfinished(_)), "{error}");
        let error = store.set("x", "y", false, BY, "").await.unwrap_err();
        assert!(matches!(error, StoreError::ImportUnfinished(_)), "{error}");

        let resumed = store.resume(&mut |_| {}).await.unwrap();
        assert_eq!(resumed, total - written);
        assert_eq!(store.resume(&mut |_| {}).await.unwrap(), 0, "nothing left");
        let archive = check_layout_at(&store).await;
        assert_eq!(model::snapshot(&archive), expected);
        // Every record was written once: one history entry each.
        let mut pipe = redis::pipe();
        for (id, _) in archive.iter() {
            pipe.llen(store.keys().history(id));
        }
        let lengths: Vec<usize> = pipe.query_async(&mut conn).await.unwrap();
        assert!(lengths.iter().all(|&n| n == 1));
        store.set("x", "y", false, BY, "").await.unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// [`check_layout`] through a store's own connection.
    async fn check_layout_at(store: &RedirectStore) -> Archive {
        let mut archive = Archive::new();
        store
            .export(|id, r| {
                archive.insert(id.to_owned(), r.clone());
                Ok(())
            })
            .await
            .unwrap();
        archive.check_invariants().unwrap();
        let mut conn = store.conn().await.unwrap();
        for (id, record) in archive.iter() {
            if let Some(target) = &record.target {
                let member: bool = conn
                    .sismember(store.keys().pointing(target), id)
                    .await
                    .unwrap();
                assert!(member, "{id} missing from pointing:{target}");
            }
        }
        archive
    }

    async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    }

    /// The import rate: `cargo test --release -p gateway redirects::store::tests::import_a_million -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark: about a minute of work"]
    async fn import_a_million() {
        let redis = TestRedis::start();
        let store = redis.store("bench:").await;
        let n = 1_000_000;
        let started = Instant::now();
        let mut csv = String::with_capacity(n * 40);
        csv.push_str("old,new,kind,reason\n");
        for i in 0..n {
            csv.push_str(&format!(
                "ark:/12345/old-{i:07},ark:/12345/new-{i:07},moved,migration 2024\n"
            ));
        }
        let generated = started.elapsed();
        let started = Instant::now();
        let parsed = format::parse_csv(csv.as_bytes()).unwrap();
        let parse = started.elapsed();
        assert_eq!(parsed.rows.len(), n);
        let options = ImportOptions {
            dry_run: false,
            by: "bench".into(),
        };
        let mut conn = redis.conn().await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .unwrap();
        let cpu_before = redis_cpu(&mut conn).await;
        let started = Instant::now();
        let report = store
            .import(&parsed.rows, &options, &mut |_| {})
            .await
            .unwrap();
        let import = started.elapsed();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        eprintln!(
            "redis CPU during the import: {:.1} s; per command:\n{}",
            redis_cpu(&mut conn).await - cpu_before,
            stats
                .lines()
                .filter(|l| l.starts_with("cmdstat"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(report.counts.added, n);
        let [load, check, write] = report.elapsed;
        eprintln!(
            "1M import into an empty archive: parse {parse:.2?}, load {load:.2?}, check {check:.2?}, \
             write {write:.2?}; import total {import:.2?} = {:.0} rows/s (+ generating the CSV {generated:.2?})",
            n as f64 / (parse + import).as_secs_f64()
        );
        let started = Instant::now();
        let report = store
            .import(&parsed.rows, &options, &mut |_| {})
            .await
            .unwrap();
        eprintln!(
            "the same 1M again (all unchanged): {:.2?} (load {:.2?}, check {:.2?})",
            started.elapsed(),
            report.elapsed[0],
            report.elapsed[1]
        );
        assert_eq!(report.counts.unchanged, n);
        let started = Instant::now();
        let bytes = export(&store, Format::Csv).await;
        eprintln!(
            "export of 1M: {:.2?}, {} MB",
            started.elapsed(),
            bytes.len() / 1_000_000
        );
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap();
        let used = info
            .lines()
            .find(|l| l.starts_with("used_memory_human"))
            .unwrap_or("");
        eprintln!("redis {used}");
    }
}

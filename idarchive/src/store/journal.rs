//! The journal of a large import (`P import-journal`, completed by `P import-journal-meta`):
//! written whole before the first record, then consumed by batches of [`BATCH_RECORDS`] that
//! each write their records and drop them from it atomically, so that [`RedirectStore::resume`]
//! finishes an interrupted import exactly as planned.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::import::LOCK_TTL;
use super::reads::PAGE;
use super::{scripts, Progress, RedirectStore, StoreError};
use crate::model::{Cause, Change, Kind, Meta, Record, Redirect};
use crate::store::import::Phase;

/// Records per script call when writing a large import (about 10,000 Redis commands).
const BATCH_RECORDS: usize = 2_000;

impl RedirectStore {
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

    /// Writes the net changes of a large import through the journal: all changes first, then
    /// script calls that each write some records and drop them from the journal, so that
    /// [`RedirectStore::resume`] can finish an interrupted import exactly as planned.
    pub(super) async fn write_through_journal(
        &self,
        changes: &[Change],
        meta: &Meta,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), StoreError> {
        let total = changes.len();
        let mut conn = self.conn().await?;
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
    /// one batch script call that also drops its records from the journal. `before` of
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
        scripts::BATCH
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
            let cmd = scripts::call(&scripts::BATCH, |cmd| {
                scripts::batch_args(cmd, &self.keys, batch.len(), meta);
                for change in batch {
                    scripts::record_args(cmd, change, meta);
                }
            });
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
#[derive(Serialize, Deserialize)]
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
            before.map(Record::kind),
            before.and_then(Record::target),
            after.map(Record::kind),
            after.and_then(Record::target),
            after.map_or("", |r| r.reason.as_str()),
            &change.note,
        ))
        .expect("journal entries serialize")
    }

    /// The change an entry records; `meta` stamps the record (when, by whom) as the import did.
    /// `None` when the entry does not parse, or a kind and its target disagree.
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
        let record = |kind: Option<Kind>, target: Option<String>, reason: String| {
            let Some(kind) = kind else {
                return Some(None);
            };
            let redirect = Redirect::new(kind, target.as_deref())?;
            Some(Some(Record {
                redirect,
                changed_at: meta.at.clone(),
                changed_by: meta.by.clone(),
                reason,
            }))
        };
        Some(Change {
            id,
            before: record(before_kind, before_target, String::new())?,
            after: record(after_kind, after_target, reason)?,
            cause: Cause::Requested,
            note,
        })
    }
}

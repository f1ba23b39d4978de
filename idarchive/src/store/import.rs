//! Bulk import under the lock `P import-lock`: every row checked against the rules and the
//! whole archive before anything is written; up to [`ATOMIC_RECORDS`] changed records written in
//! one script call, more through the journal (`journal.rs`). See the store's documentation for
//! what a failure leaves behind.

use std::time::{Duration, Instant, SystemTime};

use redis::AsyncCommands;
use serde::Serialize;

use super::{scripts, RedirectStore, StoreError};
use crate::formats::{Location, Row, RowProblem};
use crate::json::change_json;
use crate::model::{rfc3339, Change, ImportCounts, ImportPlanner, Meta};

/// Imports of up to this many changed records are written in one script call, all or nothing.
/// Bigger ones go in batches: one call of 10,000 new records keeps Redis busy for about 0.12 s
/// (measured: 23 ms per call of 2,000 records, importing a million), during which every
/// gateway's lookups wait or fail open.
const ATOMIC_RECORDS: usize = 10_000;

/// How long the import lock outlives its last refresh (a crashed import frees it after this).
pub(super) const LOCK_TTL: Duration = Duration::from_secs(60);

/// How to run an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Check everything and report what would change, writing nothing.
    pub dry_run: bool,
    /// Who imports, for the records and their history.
    pub by: String,
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
    /// Where the import is.
    pub phase: Phase,
    /// How much of the phase is done.
    pub done: u64,
    /// Of how much.
    pub total: u64,
}

/// What an import did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The numbers.
    #[serde(flatten)]
    pub counts: ImportCounts,
    /// Every row refused, by place in the input; non-empty means nothing was written.
    #[serde(serialize_with = "serialize_problems")]
    pub problems: Vec<RowProblem>,
    /// Whether this was a dry run.
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
    /// How many changes a report previews.
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

    /// Takes the import lock, or says who has it.
    pub(super) async fn lock(&self, by: &str) -> Result<String, StoreError> {
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
    pub(super) async fn unlock(&self, token: &str) {
        let lock = self.keys.import_lock();
        let released: Result<i64, StoreError> = match self.conn().await {
            Ok(mut conn) => scripts::RELEASE
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

    async fn refresh_lock(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: bool = conn
            .pexpire(self.keys.import_lock(), LOCK_TTL.as_millis() as i64)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(())
    }

    /// Writes the net changes: in one script call up to [`ATOMIC_RECORDS`] records; otherwise
    /// through the journal (`write_through_journal`, which a resume can finish).
    async fn write_changes(
        &self,
        changes: &[Change],
        meta: &Meta,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), StoreError> {
        let total = changes.len();
        if total <= ATOMIC_RECORDS {
            let mut conn = self.conn().await?;
            let sent: Result<(), _> = scripts::eval(&mut conn, &scripts::BATCH, |cmd| {
                scripts::batch_args(cmd, &self.keys, 0, meta);
                for change in changes {
                    scripts::record_args(cmd, change, meta);
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
        self.write_through_journal(changes, meta, progress).await
    }
}

//! Single edits: plan against the few records the rules look at, then commit with
//! `lua/commit.lua` only if none of them changed meanwhile (optimistic concurrency, re-planned
//! up to [`EDIT_ATTEMPTS`] times; see the store's documentation).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::reads::decode;
use super::{scripts, RedirectStore, StoreError};
use crate::codec;
use crate::model::{self, rfc3339, ArchiveView, Change, Edit, Meta, Record};

/// A record hash as read.
type Fields = HashMap<String, String>;

/// How many times an edit is re-planned after losing a race with another edit.
const EDIT_ATTEMPTS: u32 = 8;

impl RedirectStore {
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
        let answer: String = scripts::eval(&mut conn, &scripts::COMMIT, |cmd| {
            cmd.arg(checks.to_string())
                .arg(self.keys.prefix())
                .arg(&meta.at)
                .arg(&meta.by);
            for change in changes {
                scripts::record_args(cmd, change, meta);
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

/// How a commit went.
enum Commit {
    /// Written and published.
    Done,
    /// Something the edit read changed meanwhile: plan again.
    Conflict,
    /// An import holds the lock.
    Locked,
    /// An interrupted import left its journal.
    Unfinished,
}

/// The few records a single edit reads, as the planner's view, plus their raw fields for the
/// commit's comparison.
#[derive(Default)]
struct EditView {
    records: HashMap<String, Record>,
    /// Every record read, present or not: id → its [`codec::FIELDS`] ("" when absent).
    raw: Vec<(String, [String; 5])>,
    pointing: HashMap<String, Vec<String>>,
}

impl EditView {
    fn add(&mut self, id: &str, fields: HashMap<String, String>) -> Result<(), StoreError> {
        if self.raw.iter().any(|(seen, _)| seen == id) {
            return Ok(());
        }
        let raw = codec::FIELDS.map(|name| fields.get(name).cloned().unwrap_or_default());
        self.raw.push((id.to_owned(), raw));
        if let Some(record) = decode(id, &fields)? {
            self.records.insert(id.to_owned(), record);
        }
        Ok(())
    }
}

impl ArchiveView for EditView {
    fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id)
    }

    fn pointing_to(&self, id: &str) -> Vec<String> {
        self.pointing.get(id).cloned().unwrap_or_default()
    }
}

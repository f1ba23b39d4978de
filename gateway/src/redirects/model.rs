//! The rules of the ID archive, without I/O.
//!
//! `docs/redirects.md` is the contract; this module enforces its rules:
//!
//! - **Chains collapse** in both directions, so no record ever targets a retired identifier and a
//!   lookup is one read.
//! - **Loops are refused** (`A → A`, and `A → B` while `B → A`).
//! - **Gone spreads**: marking `B` gone makes every `A → B` gone too, and `A → B` is refused while
//!   `B` is gone.
//!
//! One engine serves single edits and bulk imports. [`plan`] looks at an [`ArchiveView`] (what the
//! archive holds) and returns the [`Change`]s an edit implies, or the [`RuleError`] that refuses
//! it. A single edit gives it a view of the few records it touches, read from Redis; an import
//! gives it an in-memory [`Archive`] of everything, and applies the rows one after the other with
//! an [`ImportPlanner`].
//!
//! **Invariant:** after any sequence of accepted edits, no record targets a retired identifier,
//! gone records have no target, and the reverse index (`pointing`) lists exactly the records that
//! target each identifier. Every planner here keeps it; the property tests at the bottom check it.
//!
//! A consequence of collapsing that the data model accepts: the intermediate step is forgotten.
//! After `A → B`, `B → C` the archive holds `A → C`; removing `B → C` later leaves `A → C`, and the
//! histories of `A` and `B` say what happened. A chain through a temporary redirect stays
//! temporary (see [`Kind::through`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest identifier accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 1024;

/// How many history entries each identifier keeps (newest first).
pub const HISTORY_LIMIT: usize = 100;

/// What a retired identifier answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Moved permanently: 301 or 308 to the target.
    Moved,
    /// Moved temporarily: 302 or 307 to the target.
    Temporary,
    /// Withdrawn: 410, no target.
    Gone,
}

impl Kind {
    /// The name stored in Redis and written in import files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Moved => "moved",
            Kind::Temporary => "temporary",
            Kind::Gone => "gone",
        }
    }

    /// The kind of a collapsed chain `A → B → C` whose hops have kinds `self` and `next`.
    ///
    /// A chain with a temporary hop is temporary: a client (or CloudFront) that cached a
    /// permanent `A → C` would keep going to `C` after `B`'s temporary move ends.
    pub fn through(self, next: Kind) -> Kind {
        if self == Kind::Temporary || next == Kind::Temporary {
            Kind::Temporary
        } else {
            Kind::Moved
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "moved" => Ok(Kind::Moved),
            "temporary" => Ok(Kind::Temporary),
            "gone" => Ok(Kind::Gone),
            other => Err(format!(
                "kind {other:?} is not one of moved, temporary, gone"
            )),
        }
    }
}

/// One retired identifier's record (`P redirect:{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: Kind,
    /// The current identifier; `None` exactly when `kind` is [`Kind::Gone`].
    pub target: Option<String>,
    /// RFC 3339, UTC.
    pub changed_at: String,
    pub changed_by: String,
    pub reason: String,
}

impl Redirect {
    /// Whether two records say the same thing (kind, target, reason), whoever wrote them when.
    pub fn same_as(&self, other: &Redirect) -> bool {
        self.kind == other.kind && self.target == other.target && self.reason == other.reason
    }
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Set,
    Gone,
    Rm,
}

impl Action {
    /// The name stored in history entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Gone => "gone",
            Action::Rm => "rm",
        }
    }
}

/// One entry of `P history:{id}`, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    pub by: String,
    pub action: Action,
    /// The kind after the change; `null` for `rm`.
    pub kind: Option<Kind>,
    /// The target after the change; `null` for `gone` and `rm`.
    pub target: Option<String>,
    pub reason: String,
}

/// Who makes an edit, when and why: stamped on every record and history entry it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// RFC 3339, UTC (see [`rfc3339`]).
    pub at: String,
    pub by: String,
    pub reason: String,
}

/// An edit an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `old` redirects to `new`, permanently or temporarily.
    Redirect {
        old: String,
        new: String,
        temporary: bool,
    },
    /// `old` is withdrawn.
    Gone { old: String },
    /// `old` is not retired any more.
    Remove { old: String },
}

impl Edit {
    /// The edit a row of an import file (or an API body) describes.
    ///
    /// # Errors
    ///
    /// A message when the kind and the target disagree: a redirect without a target, or a gone
    /// identifier with one.
    pub fn from_parts(old: &str, new: Option<&str>, kind: Kind) -> Result<Edit, String> {
        let new = new.filter(|n| !n.is_empty());
        match (kind, new) {
            (Kind::Gone, None) => Ok(Edit::Gone { old: old.into() }),
            (Kind::Gone, Some(new)) => Err(format!(
                "kind is gone but a target ({new:?}) is given; leave it empty"
            )),
            (_, None) => Err(format!(
                "kind is {kind} but there is no target; give one, or use kind gone"
            )),
            (_, Some(new)) => Ok(Edit::Redirect {
                old: old.into(),
                new: new.into(),
                temporary: kind == Kind::Temporary,
            }),
        }
    }

    /// The identifier the edit is about.
    pub fn old(&self) -> &str {
        match self {
            Edit::Redirect { old, .. } | Edit::Gone { old } | Edit::Remove { old } => old,
        }
    }
}

/// Why a record changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The edit itself, stored as asked.
    Requested,
    /// The edit itself, but its target `via` had moved on, so the record skips it.
    Shortened { via: String },
    /// Another record that targeted `via`, rewritten because `via` now redirects.
    Retargeted { via: String },
    /// Another record that targeted `via`, made gone because `via` is now gone.
    GoneSpread { via: String },
}

/// One record's change: from `before` to `after` (`None` = no record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    pub before: Option<Redirect>,
    pub after: Option<Redirect>,
    pub cause: Cause,
    /// The history entry's reason: the edit's reason, or what the collapse did.
    pub note: String,
}

impl Change {
    /// The history entry this change appends.
    pub fn history_entry(&self, meta: &Meta) -> HistoryEntry {
        let (action, kind, target) = match &self.after {
            None => (Action::Rm, None, None),
            Some(r) if r.kind == Kind::Gone => (Action::Gone, Some(Kind::Gone), None),
            Some(r) => (Action::Set, Some(r.kind), r.target.clone()),
        };
        HistoryEntry {
            at: meta.at.clone(),
            by: meta.by.clone(),
            action,
            kind,
            target,
            reason: self.note.clone(),
        }
    }
}

impl Change {
    /// [`Change::history_entry`] as the JSON stored in `P history:{id}`, without copying.
    pub fn history_json(&self, meta: &Meta) -> String {
        #[derive(Serialize)]
        struct Entry<'a> {
            at: &'a str,
            by: &'a str,
            action: Action,
            kind: Option<Kind>,
            target: Option<&'a str>,
            reason: &'a str,
        }
        let (action, kind, target) = match &self.after {
            None => (Action::Rm, None, None),
            Some(r) if r.kind == Kind::Gone => (Action::Gone, Some(Kind::Gone), None),
            Some(r) => (Action::Set, Some(r.kind), r.target.as_deref()),
        };
        serde_json::to_string(&Entry {
            at: &meta.at,
            by: &meta.by,
            action,
            kind,
            target,
            reason: &self.note,
        })
        .expect("history entries serialize")
    }
}

/// An edit the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the identifier is empty")]
    EmptyId,
    #[error("identifier {0:?} contains a control character")]
    ControlCharacter(String),
    #[error("an identifier of {0} bytes is longer than the limit of {MAX_ID_BYTES}")]
    TooLong(usize),
    #[error("{0} cannot redirect to itself")]
    SelfRedirect(String),
    #[error("{old} → {new} would make a loop: {new} already redirects to {old}")]
    Loop { old: String, new: String },
    #[error("{new} is gone, so {old} cannot redirect to it; mark {old} gone instead")]
    TargetGone { old: String, new: String },
    #[error("{0} is not a retired identifier")]
    NotRetired(String),
}

/// Checks an identifier: not empty, no control characters, at most [`MAX_ID_BYTES`] bytes.
///
/// # Errors
///
/// The rule it breaks.
pub fn validate_id(id: &str) -> Result<(), RuleError> {
    if id.is_empty() {
        return Err(RuleError::EmptyId);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(RuleError::TooLong(id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err(RuleError::ControlCharacter(id.into()));
    }
    Ok(())
}

/// What the planner needs to know about the archive.
///
/// A single edit implements it over the few records it read from Redis (the edited identifier,
/// its new target, and the records that target the edited identifier); an import implements it
/// over the whole archive in memory ([`Archive`]).
pub trait ArchiveView {
    /// The record of a retired identifier, `None` if `id` is not retired.
    fn get(&self, id: &str) -> Option<&Redirect>;
    /// The retired identifiers whose record targets `id`, in any order.
    fn pointing_to(&self, id: &str) -> Vec<String>;
}

/// The changes `edit` implies on `view`, the edit's own record first; empty if the archive
/// already says what the edit asks.
///
/// # Errors
///
/// The rule that refuses the edit; then nothing may be written.
pub fn plan(view: &impl ArchiveView, edit: &Edit, meta: &Meta) -> Result<Vec<Change>, RuleError> {
    validate_id(edit.old())?;
    match edit {
        Edit::Redirect {
            old,
            new,
            temporary,
        } => plan_redirect(view, old, new, *temporary, meta),
        Edit::Gone { old } => Ok(plan_gone(view, old, meta)),
        Edit::Remove { old } => plan_remove(view, old, meta),
    }
}

fn plan_redirect(
    view: &impl ArchiveView,
    old: &str,
    new: &str,
    temporary: bool,
    meta: &Meta,
) -> Result<Vec<Change>, RuleError> {
    validate_id(new)?;
    if old == new {
        return Err(RuleError::SelfRedirect(old.into()));
    }
    let asked = if temporary {
        Kind::Temporary
    } else {
        Kind::Moved
    };
    // Collapse forward: if `new` is itself retired, point at where it went.
    let (kind, target, cause) = match view.get(new) {
        None => (asked, new.to_owned(), Cause::Requested),
        Some(next) => match (&next.kind, &next.target) {
            (Kind::Gone, _) | (_, None) => {
                return Err(RuleError::TargetGone {
                    old: old.into(),
                    new: new.into(),
                })
            }
            (_, Some(next_target)) if next_target == old => {
                return Err(RuleError::Loop {
                    old: old.into(),
                    new: new.into(),
                })
            }
            (next_kind, Some(next_target)) => (
                asked.through(*next_kind),
                next_target.clone(),
                Cause::Shortened { via: new.into() },
            ),
        },
    };
    let after = Redirect {
        kind,
        target: Some(target.clone()),
        changed_at: meta.at.clone(),
        changed_by: meta.by.clone(),
        reason: meta.reason.clone(),
    };
    let before = view.get(old).cloned();
    let mut changes = Vec::new();
    if before.as_ref().is_none_or(|b| !b.same_as(&after)) {
        changes.push(Change {
            id: old.into(),
            before,
            after: Some(after),
            cause,
            note: meta.reason.clone(),
        });
    }
    // Collapse backward: whatever pointed at `old` now points where `old` goes. By the
    // invariant none of them is `target` (they are retired, `target` is not).
    let mut pointing = view.pointing_to(old);
    pointing.sort();
    for id in pointing {
        let Some(record) = view.get(&id) else {
            continue;
        };
        let after = Redirect {
            kind: record.kind.through(kind),
            target: Some(target.clone()),
            changed_at: meta.at.clone(),
            changed_by: meta.by.clone(),
            reason: record.reason.clone(),
        };
        changes.push(Change {
            note: format!("chain collapse: {old} now redirects to {target}"),
            id,
            before: Some(record.clone()),
            after: Some(after),
            cause: Cause::Retargeted { via: old.into() },
        });
    }
    Ok(changes)
}

fn plan_gone(view: &impl ArchiveView, old: &str, meta: &Meta) -> Vec<Change> {
    let gone = |reason: &str| Redirect {
        kind: Kind::Gone,
        target: None,
        changed_at: meta.at.clone(),
        changed_by: meta.by.clone(),
        reason: reason.to_owned(),
    };
    let before = view.get(old).cloned();
    let after = gone(&meta.reason);
    let mut changes = Vec::new();
    if before.as_ref().is_none_or(|b| !b.same_as(&after)) {
        changes.push(Change {
            id: old.into(),
            before,
            after: Some(after),
            cause: Cause::Requested,
            note: meta.reason.clone(),
        });
    }
    let mut pointing = view.pointing_to(old);
    pointing.sort();
    for id in pointing {
        let Some(record) = view.get(&id) else {
            continue;
        };
        changes.push(Change {
            id,
            before: Some(record.clone()),
            after: Some(gone(&meta.reason)),
            cause: Cause::GoneSpread { via: old.into() },
            note: meta.reason.clone(),
        });
    }
    changes
}

fn plan_remove(view: &impl ArchiveView, old: &str, meta: &Meta) -> Result<Vec<Change>, RuleError> {
    // Nothing can point at a retired identifier, so removing one never orphans another record.
    let before = view
        .get(old)
        .cloned()
        .ok_or_else(|| RuleError::NotRetired(old.into()))?;
    Ok(vec![Change {
        id: old.into(),
        before: Some(before),
        after: None,
        cause: Cause::Requested,
        note: meta.reason.clone(),
    }])
}

// === impl Archive ===

/// The whole archive in memory, with its reverse index: the view an import plans against.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    records: HashMap<String, Redirect>,
    pointing: HashMap<String, HashSet<String>>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// An empty archive with room for `n` records without growing.
    pub fn with_capacity(n: usize) -> Archive {
        Archive {
            records: HashMap::with_capacity(n),
            pointing: HashMap::with_capacity(n),
        }
    }

    /// Makes room for `n` more records.
    pub fn reserve(&mut self, n: usize) {
        self.records.reserve(n);
        self.pointing.reserve(n);
    }

    /// Adds or replaces one record, keeping the reverse index in step.
    pub fn insert(&mut self, id: String, record: Redirect) {
        if let Some(target) = &record.target {
            self.pointing
                .entry(target.clone())
                .or_default()
                .insert(id.clone());
        }
        if let Some(previous) = self.records.insert(id.clone(), record) {
            self.unindex(&id, &previous);
        }
    }

    /// Removes one record.
    pub fn remove(&mut self, id: &str) -> Option<Redirect> {
        let previous = self.records.remove(id)?;
        self.unindex(id, &previous);
        Some(previous)
    }

    fn unindex(&mut self, id: &str, previous: &Redirect) {
        let Some(target) = &previous.target else {
            return;
        };
        // The new record may target the same identifier; it was indexed already.
        if self.records.get(id).and_then(|r| r.target.as_ref()) == Some(target) {
            return;
        }
        if let Some(set) = self.pointing.get_mut(target) {
            set.remove(id);
            if set.is_empty() {
                self.pointing.remove(target);
            }
        }
    }

    /// Applies planned changes.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match &change.after {
                Some(after) => self.insert(change.id.clone(), after.clone()),
                None => {
                    self.remove(&change.id);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Redirect)> {
        self.records.iter()
    }

    /// The first broken invariant, if any: a record targeting a retired identifier or itself,
    /// a gone record with a target (or a redirect without one), a reverse index out of step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (id, record) in &self.records {
            match (&record.kind, &record.target) {
                (Kind::Gone, Some(t)) => return Err(format!("{id} is gone but targets {t}")),
                (Kind::Gone, None) => {}
                (_, None) => return Err(format!("{id} redirects without a target")),
                (_, Some(t)) if t == id => return Err(format!("{id} targets itself")),
                (_, Some(t)) if self.records.contains_key(t) => {
                    return Err(format!("{id} targets {t}, which is retired"))
                }
                (_, Some(t)) => {
                    expected.entry(t).or_default().insert(id);
                }
            }
        }
        let actual: HashMap<&str, HashSet<&str>> = self
            .pointing
            .iter()
            .map(|(t, ids)| (t.as_str(), ids.iter().map(String::as_str).collect()))
            .collect();
        if expected != actual {
            return Err("the reverse index does not match the records".into());
        }
        Ok(())
    }
}

impl ArchiveView for Archive {
    fn get(&self, id: &str) -> Option<&Redirect> {
        self.records.get(id)
    }

    fn pointing_to(&self, id: &str) -> Vec<String> {
        self.pointing
            .get(id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }
}

// === impl ImportPlanner ===

/// How an import went, by the numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// Rows read.
    pub rows: usize,
    /// Identifiers retired that were not before.
    pub added: usize,
    /// Identifiers whose record changes.
    pub changed: usize,
    /// Rows that asked for what the archive already said.
    pub unchanged: usize,
    /// Chain collapses: rows stored with a shorter chain, plus records retargeted.
    pub collapsed: usize,
    /// Records made gone because their target was.
    pub gone_spread: usize,
}

/// A row the rules refuse, by its index in the input (the caller maps it to a line number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRefusal {
    pub row: usize,
    pub error: RuleError,
}

/// Applies import rows in order to the archive in memory, and remembers what changed.
///
/// A refused row changes nothing and the next rows are checked as if it were absent, so one
/// pass reports every bad row.
#[derive(Debug)]
pub struct ImportPlanner {
    archive: Archive,
    /// The net change of every identifier touched: `before` as loaded, `after` as now.
    pending: HashMap<String, Change>,
    refusals: Vec<RowRefusal>,
    counts: ImportCounts,
}

/// The outcome of [`ImportPlanner::finish`].
#[derive(Debug)]
pub struct ImportPlan {
    /// Net changes, in no particular order, without those that ended where they started.
    pub changes: Vec<Change>,
    pub refusals: Vec<RowRefusal>,
    pub counts: ImportCounts,
}

impl ImportPlanner {
    /// A planner for up to `n_rows` rows over `archive`.
    pub fn new(mut archive: Archive, n_rows: usize) -> ImportPlanner {
        // Growing maps of a million entries rehashes them all several times; size them once.
        archive.reserve(n_rows);
        ImportPlanner {
            archive,
            pending: HashMap::with_capacity(n_rows),
            refusals: Vec::new(),
            counts: ImportCounts::default(),
        }
    }

    /// Applies one row (`index` identifies it in refusals).
    pub fn apply(&mut self, index: usize, edit: &Edit, meta: &Meta) {
        self.counts.rows += 1;
        let changes = match plan(&self.archive, edit, meta) {
            Ok(changes) => changes,
            Err(error) => {
                self.refusals.push(RowRefusal { row: index, error });
                return;
            }
        };
        if changes.is_empty() {
            self.counts.unchanged += 1;
        }
        for change in &changes {
            match change.cause {
                Cause::Shortened { .. } | Cause::Retargeted { .. } => self.counts.collapsed += 1,
                Cause::GoneSpread { .. } => self.counts.gone_spread += 1,
                Cause::Requested => {}
            }
        }
        self.archive.apply(&changes);
        for change in changes {
            match self.pending.get_mut(&change.id) {
                Some(net) => {
                    net.after = change.after;
                    net.cause = change.cause;
                    net.note = change.note;
                }
                None => {
                    self.pending.insert(change.id.clone(), change);
                }
            }
        }
    }

    /// The archive as it stands after the rows applied so far.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// The net changes, the refusals and the counts; and the archive as it ends, which the
    /// caller may want to drop elsewhere (freeing millions of records takes a while).
    pub fn finish(self) -> (ImportPlan, Archive) {
        let mut counts = self.counts;
        let changes: Vec<Change> = self
            .pending
            .into_values()
            .filter(|c| match (&c.before, &c.after) {
                (Some(b), Some(a)) => !b.same_as(a),
                (None, None) => false,
                _ => true,
            })
            .collect();
        for change in &changes {
            if change.before.is_none() {
                counts.added += 1;
            } else {
                counts.changed += 1;
            }
        }
        let plan = ImportPlan {
            changes,
            refusals: self.refusals,
            counts,
        };
        (plan, self.archive)
    }
}

impl ImportPlan {
    /// The first `n` changes by identifier, for showing.
    pub fn preview(&self, n: usize) -> Vec<Change> {
        let mut refs: Vec<&Change> = self.changes.iter().collect();
        if refs.len() > n {
            refs.select_nth_unstable_by(n, |a, b| a.id.cmp(&b.id));
            refs.truncate(n);
        }
        refs.sort_by(|a, b| a.id.cmp(&b.id));
        refs.into_iter().cloned().collect()
    }
}

// === time ===

/// Formats a time as RFC 3339 in UTC with whole seconds, e.g. `2024-05-01T12:34:56Z`.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The records of an archive, sorted, for comparisons in tests.
#[cfg(test)]
pub(crate) fn snapshot(
    archive: &Archive,
) -> std::collections::BTreeMap<String, (Kind, Option<String>)> {
    archive
        .iter()
        .map(|(id, r)| (id.clone(), (r.kind, r.target.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(reason: &str) -> Meta {
        Meta {
            at: "2024-05-01T12:00:00Z".into(),
            by: "tester".into(),
            reason: reason.into(),
        }
    }

    fn moved(old: &str, new: &str) -> Edit {
        Edit::Redirect {
            old: old.into(),
            new: new.into(),
            temporary: false,
        }
    }

    fn temporary(old: &str, new: &str) -> Edit {
        Edit::Redirect {
            old: old.into(),
            new: new.into(),
            temporary: true,
        }
    }

    fn gone(old: &str) -> Edit {
        Edit::Gone { old: old.into() }
    }

    fn rm(old: &str) -> Edit {
        Edit::Remove { old: old.into() }
    }

    /// Plans and applies, checking the invariants after every edit.
    fn run(archive: &mut Archive, edit: &Edit) -> Result<Vec<Change>, RuleError> {
        let changes = plan(archive, edit, &meta("why"))?;
        archive.apply(&changes);
        archive.check_invariants().unwrap();
        Ok(changes)
    }

    fn target(archive: &Archive, id: &str) -> Option<(Kind, Option<String>)> {
        archive.get(id).map(|r| (r.kind, r.target.clone()))
    }

    fn to(kind: Kind, id: &str) -> Option<(Kind, Option<String>)> {
        Some((kind, Some(id.into())))
    }

    #[test]
    fn identifiers_are_validated() {
        assert_eq!(validate_id(""), Err(RuleError::EmptyId));
        assert!(matches!(
            validate_id("a\nb"),
            Err(RuleError::ControlCharacter(_))
        ));
        assert!(matches!(
            validate_id("a\u{7f}"),
            Err(RuleError::ControlCharacter(_))
        ));
        assert_eq!(
            validate_id(&"x".repeat(1025)),
            Err(RuleError::TooLong(1025))
        );
        assert!(validate_id(&"x".repeat(1024)).is_ok());
        assert!(validate_id("ark:/12148/bpt6k/f1 été.jp2").is_ok());
        let mut archive = Archive::new();
        assert_eq!(run(&mut archive, &moved("a", "")), Err(RuleError::EmptyId));
        assert_eq!(run(&mut archive, &moved("", "a")), Err(RuleError::EmptyId));
    }

    #[test]
    fn a_redirect_is_stored_as_asked() {
        let mut archive = Archive::new();
        let changes = run(&mut archive, &moved("a", "b")).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].cause, Cause::Requested);
        assert_eq!(changes[0].before, None);
        let record = archive.get("a").unwrap();
        assert_eq!(record.kind, Kind::Moved);
        assert_eq!(record.target.as_deref(), Some("b"));
        assert_eq!(record.reason, "why");
        assert_eq!(record.changed_by, "tester");
        assert_eq!(archive.pointing_to("b"), vec!["a".to_string()]);
    }

    #[test]
    fn redirecting_to_itself_is_refused() {
        let mut archive = Archive::new();
        assert_eq!(
            run(&mut archive, &moved("a", "a")),
            Err(RuleError::SelfRedirect("a".into()))
        );
        assert!(archive.is_empty());
    }

    #[test]
    fn chains_collapse_forward() {
        // B → C exists; A → B is stored as A → C.
        let mut archive = Archive::new();
        run(&mut archive, &moved("b", "c")).unwrap();
        let changes = run(&mut archive, &moved("a", "b")).unwrap();
        assert_eq!(changes[0].cause, Cause::Shortened { via: "b".into() });
        assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
        assert_eq!(target(&archive, "b"), to(Kind::Moved, "c"));
    }

    #[test]
    fn chains_collapse_backward() {
        // A → B exists; B → C rewrites A → C.
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        run(&mut archive, &moved("x", "b")).unwrap();
        let changes = run(&mut archive, &moved("b", "c")).unwrap();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].id, "b");
        assert_eq!(changes[1].cause, Cause::Retargeted { via: "b".into() });
        assert!(changes[1].note.contains("chain collapse"));
        // The retargeted record keeps its own reason.
        assert_eq!(changes[1].after.as_ref().unwrap().reason, "why");
        assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
        assert_eq!(target(&archive, "x"), to(Kind::Moved, "c"));
        assert!(archive.pointing_to("b").is_empty());
    }

    #[test]
    fn a_chain_through_a_temporary_hop_is_temporary() {
        let mut archive = Archive::new();
        run(&mut archive, &temporary("b", "c")).unwrap();
        run(&mut archive, &moved("a", "b")).unwrap();
        assert_eq!(target(&archive, "a"), to(Kind::Temporary, "c"));

        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        run(&mut archive, &temporary("b", "c")).unwrap();
        assert_eq!(target(&archive, "a"), to(Kind::Temporary, "c"));
    }

    #[test]
    fn loops_are_refused() {
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        assert_eq!(
            run(&mut archive, &moved("b", "a")),
            Err(RuleError::Loop {
                old: "b".into(),
                new: "a".into()
            })
        );
        // A longer loop is a direct one after collapsing: a → c, b → c.
        run(&mut archive, &moved("b", "c")).unwrap();
        assert!(matches!(
            run(&mut archive, &moved("c", "a")),
            Err(RuleError::Loop { .. })
        ));
        assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
        assert_eq!(target(&archive, "c"), None);
    }

    #[test]
    fn gone_spreads_along_chains() {
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        run(&mut archive, &moved("x", "b")).unwrap();
        let changes = plan(&archive, &gone("b"), &meta("withdrawn")).unwrap();
        archive.apply(&changes);
        archive.check_invariants().unwrap();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[1].cause, Cause::GoneSpread { via: "b".into() });
        for id in ["a", "b", "x"] {
            let record = archive.get(id).unwrap();
            assert_eq!((record.kind, &record.target), (Kind::Gone, &None));
            assert_eq!(record.reason, "withdrawn");
        }
    }

    #[test]
    fn a_gone_target_is_refused() {
        let mut archive = Archive::new();
        run(&mut archive, &gone("b")).unwrap();
        assert_eq!(
            run(&mut archive, &moved("a", "b")),
            Err(RuleError::TargetGone {
                old: "a".into(),
                new: "b".into()
            })
        );
    }

    #[test]
    fn a_gone_identifier_can_redirect_again() {
        let mut archive = Archive::new();
        run(&mut archive, &gone("a")).unwrap();
        run(&mut archive, &moved("a", "b")).unwrap();
        assert_eq!(target(&archive, "a"), to(Kind::Moved, "b"));
    }

    #[test]
    fn remove_needs_a_record() {
        let mut archive = Archive::new();
        assert_eq!(
            run(&mut archive, &rm("a")),
            Err(RuleError::NotRetired("a".into()))
        );
        run(&mut archive, &moved("a", "b")).unwrap();
        let changes = run(&mut archive, &rm("a")).unwrap();
        assert_eq!(changes[0].after, None);
        assert!(archive.is_empty());
        assert!(archive.pointing_to("b").is_empty());
    }

    #[test]
    fn retargeting_moves_the_reverse_index() {
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        run(&mut archive, &moved("a", "c")).unwrap();
        assert!(archive.pointing_to("b").is_empty());
        assert_eq!(archive.pointing_to("c"), vec!["a".to_string()]);
        run(&mut archive, &gone("a")).unwrap();
        assert!(archive.pointing_to("c").is_empty());
    }

    #[test]
    fn an_edit_that_changes_nothing_plans_nothing() {
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        assert!(run(&mut archive, &moved("a", "b")).unwrap().is_empty());
        // Another reason or kind is a change.
        assert_eq!(
            plan(&archive, &moved("a", "b"), &meta("other"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(run(&mut archive, &temporary("a", "b")).unwrap().len(), 1);
        run(&mut archive, &gone("g")).unwrap();
        assert!(run(&mut archive, &gone("g")).unwrap().is_empty());
    }

    #[test]
    fn history_entries_say_what_happened() {
        let mut archive = Archive::new();
        let set = run(&mut archive, &moved("a", "b")).unwrap();
        let entry = set[0].history_entry(&meta("why"));
        assert_eq!(
            set[0].history_json(&meta("why")),
            serde_json::to_string(&entry).unwrap()
        );
        assert_eq!(entry.action, Action::Set);
        assert_eq!(entry.kind, Some(Kind::Moved));
        assert_eq!(entry.target.as_deref(), Some("b"));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"at": "2024-05-01T12:00:00Z", "by": "tester", "action": "set",
                               "kind": "moved", "target": "b", "reason": "why"})
        );
        let gone_entry = run(&mut archive, &gone("a")).unwrap()[0].history_entry(&meta("why"));
        assert_eq!(
            (gone_entry.action, gone_entry.kind, gone_entry.target),
            (Action::Gone, Some(Kind::Gone), None)
        );
        let rm_entry = run(&mut archive, &rm("a")).unwrap()[0].history_entry(&meta("why"));
        assert_eq!(
            (rm_entry.action, rm_entry.kind, rm_entry.target),
            (Action::Rm, None, None)
        );
    }

    #[test]
    fn edits_from_rows() {
        assert_eq!(
            Edit::from_parts("a", Some("b"), Kind::Temporary),
            Ok(temporary("a", "b"))
        );
        assert_eq!(Edit::from_parts("a", Some(""), Kind::Gone), Ok(gone("a")));
        assert!(Edit::from_parts("a", Some("b"), Kind::Gone).is_err());
        assert!(Edit::from_parts("a", None, Kind::Moved).is_err());
        assert_eq!("Temporary".parse::<Kind>(), Ok(Kind::Temporary));
        assert!("permanent".parse::<Kind>().is_err());
    }

    #[test]
    fn an_import_reports_every_refused_row_and_skips_it() {
        let mut archive = Archive::new();
        run(&mut archive, &gone("g")).unwrap();
        run(&mut archive, &moved("old", "new")).unwrap();
        let mut planner = ImportPlanner::new(archive, 0);
        let rows = [
            moved("a", "b"),     // 0: added
            moved("b", "a"),     // 1: loop
            moved("c", "g"),     // 2: target gone
            moved("b", "c"),     // 3: added; a → c collapses
            moved("old", "new"), // 4: unchanged
            moved("d", "d"),     // 5: self
            gone("new"),         // 6: added; old becomes gone
        ];
        for (i, edit) in rows.iter().enumerate() {
            planner.apply(i, edit, &meta("why"));
        }
        planner.archive().check_invariants().unwrap();
        let (result, _) = planner.finish();
        let refused: Vec<usize> = result.refusals.iter().map(|r| r.row).collect();
        assert_eq!(refused, vec![1, 2, 5]);
        assert_eq!(result.counts.rows, 7);
        assert_eq!(result.counts.unchanged, 1);
        assert_eq!(result.counts.collapsed, 1);
        assert_eq!(result.counts.gone_spread, 1);
        // a, b, new added; old changed.
        assert_eq!((result.counts.added, result.counts.changed), (3, 1));
        let changes = result.preview(10);
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "new", "old"]);
        assert_eq!(result.preview(2).len(), 2);
        let a = &changes[0];
        assert_eq!(a.before, None);
        assert_eq!(a.after.as_ref().unwrap().target.as_deref(), Some("c"));
    }

    #[test]
    fn an_import_that_ends_where_it_started_changes_nothing() {
        let mut archive = Archive::new();
        run(&mut archive, &moved("a", "b")).unwrap();
        let mut planner = ImportPlanner::new(archive, 0);
        planner.apply(0, &moved("a", "c"), &meta("why"));
        planner.apply(1, &moved("a", "b"), &meta("why"));
        let (result, _) = planner.finish();
        assert!(result.changes.is_empty());
        assert_eq!((result.counts.added, result.counts.changed), (0, 0));
    }

    #[test]
    fn rfc3339_formats_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_714_566_896)),
            "2024-05-01T12:34:56Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59Z"
        );
    }

    // === properties ===

    fn edit_strategy() -> impl Strategy<Value = Edit> {
        // Few identifiers, so chains, loops and collisions are common.
        let id = || prop::sample::select(vec!["a", "b", "c", "d", "e", "f"]);
        prop_oneof![
            4 => (id(), id(), any::<bool>()).prop_map(|(o, n, t)| Edit::Redirect {
                old: o.into(), new: n.into(), temporary: t }),
            1 => id().prop_map(|o| Edit::Gone { old: o.into() }),
            1 => id().prop_map(|o| Edit::Remove { old: o.into() }),
        ]
    }

    /// Where a client ends up following redirects from `id` (None: served as is; Gone).
    fn destination(archive: &Archive, id: &str) -> Result<Option<String>, ()> {
        match archive.get(id) {
            None => Ok(None),
            Some(r) if r.kind == Kind::Gone => Err(()),
            Some(r) => Ok(r.target.clone()),
        }
    }

    /// Drops the rows `A → B` for which a later row edits `B` or where `B` redirected to when
    /// the row was applied, until none is left.
    fn independent_rows(initial: &Archive, mut rows: Vec<Edit>) -> Vec<Edit> {
        rows.retain(|e| !matches!(e, Edit::Remove { .. }));
        loop {
            let mut archive = initial.clone();
            let mut dependent = None;
            for (i, edit) in rows.iter().enumerate() {
                if let Edit::Redirect { new, .. } = edit {
                    let leads_to = archive.get(new).and_then(|r| r.target.clone());
                    let edited_later = rows[i + 1..].iter().any(|later| {
                        later.old() == new || Some(later.old()) == leads_to.as_deref()
                    });
                    if edited_later {
                        dependent = Some(i);
                        break;
                    }
                }
                if let Ok(changes) = plan(&archive, edit, &meta("import")) {
                    archive.apply(&changes);
                }
            }
            match dependent {
                Some(i) => {
                    rows.remove(i);
                }
                None => return rows,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// After any sequence of edits the invariants hold, accepted edits do what they say,
        /// and refused ones change nothing.
        #[test]
        fn invariants_hold_after_any_edits(edits in prop::collection::vec(edit_strategy(), 1..40)) {
            let mut archive = Archive::new();
            for edit in &edits {
                let before = snapshot(&archive);
                match plan(&archive, edit, &meta("p")) {
                    Err(_) => {
                        prop_assert_eq!(&snapshot(&archive), &before);
                    }
                    Ok(changes) => {
                        let new_destination = match edit {
                            Edit::Redirect { new, .. } => destination(&archive, new).map(|d| d.unwrap_or(new.clone())),
                            _ => Err(()),
                        };
                        archive.apply(&changes);
                        prop_assert_eq!(archive.check_invariants(), Ok(()));
                        match edit {
                            Edit::Redirect { old, .. } => {
                                prop_assert_eq!(destination(&archive, old).map(|d| d.unwrap()), new_destination);
                            }
                            Edit::Gone { old } => {
                                prop_assert_eq!(archive.get(old).map(|r| r.kind), Some(Kind::Gone));
                                prop_assert!(archive.pointing_to(old).is_empty());
                            }
                            Edit::Remove { old } => prop_assert!(archive.get(old).is_none()),
                        }
                        // Nothing that resolved before resolves elsewhere now, except
                        // through the edited identifier.
                        for (id, (kind, old_target)) in &before {
                            if id == edit.old() || old_target.as_deref() == Some(edit.old()) {
                                continue;
                            }
                            prop_assert_eq!(target(&archive, id), Some((*kind, old_target.clone())));
                        }
                    }
                }
            }
        }

        /// An import gives the same archive as the same edits one by one. A partly written
        /// import (any subset of its net changes, as when Redis dies between batches) has no
        /// loops and no chain longer than two hops, and running the import again over it
        /// restores the invariants (but may end elsewhere, or refuse rows: hence the store
        /// resumes an interrupted import from its journal instead).
        #[test]
        fn imports_equal_single_edits_and_partial_writes_are_safe(
            setup in prop::collection::vec(edit_strategy(), 0..15),
            rows in prop::collection::vec(edit_strategy(), 1..15),
            written in prop::collection::vec(any::<bool>(), 6),
        ) {
            let rows: Vec<Edit> = rows.into_iter().filter(|e| !matches!(e, Edit::Remove { .. })).collect();
            let mut initial = Archive::new();
            for edit in &setup {
                if let Ok(changes) = plan(&initial, edit, &meta("setup")) {
                    initial.apply(&changes);
                }
            }
            let mut one_by_one = initial.clone();
            for edit in &rows {
                if let Ok(changes) = plan(&one_by_one, edit, &meta("import")) {
                    one_by_one.apply(&changes);
                }
            }
            let mut planner = ImportPlanner::new(initial.clone(), 0);
            for (i, edit) in rows.iter().enumerate() {
                planner.apply(i, edit, &meta("import"));
            }
            let (result, _) = planner.finish();
            let mut imported = initial.clone();
            imported.apply(&result.changes);
            prop_assert_eq!(imported.check_invariants(), Ok(()));
            prop_assert_eq!(snapshot(&imported), snapshot(&one_by_one));

            if !result.refusals.is_empty() {
                // Nothing is written.
                return Ok(());
            }
            let mut partial = initial.clone();
            let subset: Vec<Change> = result.changes.iter().enumerate()
                .filter(|(i, _)| written[i % written.len()])
                .map(|(_, c)| c.clone()).collect();
            partial.apply(&subset);
            for (id, _) in partial.iter() {
                let mut hops = 0;
                let mut at = id.clone();
                while let Some(Some(next)) = partial.get(&at).map(|r| r.target.clone()) {
                    hops += 1;
                    prop_assert!(hops <= 2, "a chain of {} hops from {}", hops, id);
                    at = next;
                }
            }
            let mut rerun = ImportPlanner::new(partial, 0);
            for (i, edit) in rows.iter().enumerate() {
                rerun.apply(i, edit, &meta("import"));
            }
            // A rerun that writes (no refused rows) restores the invariants; whether it ends
            // exactly where an uninterrupted import would is `reruns_of_independent_rows_complete`.
            let archive = rerun.archive().clone();
            if rerun.finish().0.refusals.is_empty() {
                prop_assert_eq!(archive.check_invariants(), Ok(()));
            }
        }

        /// Without rows that depend on a later row of the same file (`A → B` with `B`, or where
        /// `B` led, edited further down), a rerun over any partial write ends exactly where the
        /// uninterrupted import would have.
        #[test]
        fn reruns_of_independent_rows_complete(
            setup in prop::collection::vec(edit_strategy(), 0..15),
            rows in prop::collection::vec(edit_strategy(), 1..15),
            written in prop::collection::vec(any::<bool>(), 6),
        ) {
            let mut initial = Archive::new();
            for edit in &setup {
                if let Ok(changes) = plan(&initial, edit, &meta("setup")) {
                    initial.apply(&changes);
                }
            }
            let rows = independent_rows(&initial, rows);
            let mut planner = ImportPlanner::new(initial.clone(), 0);
            for (i, edit) in rows.iter().enumerate() {
                planner.apply(i, edit, &meta("import"));
            }
            let (result, _) = planner.finish();
            let mut imported = initial.clone();
            imported.apply(&result.changes);
            let mut partial = initial.clone();
            let subset: Vec<Change> = result.changes.iter().enumerate()
                .filter(|(i, _)| written[i % written.len()])
                .map(|(_, c)| c.clone()).collect();
            partial.apply(&subset);
            let mut rerun = ImportPlanner::new(partial, 0);
            for (i, edit) in rows.iter().enumerate() {
                rerun.apply(i, edit, &meta("import"));
            }
            let archive = rerun.archive().clone();
            let (rerun, _) = rerun.finish();
            if result.refusals.is_empty() {
                prop_assert!(rerun.refusals.is_empty(), "{:?}", rerun.refusals);
                prop_assert_eq!(snapshot(&archive), snapshot(&imported));
            }
        }
    }
}

//! Edits an admin asks for, and the changes of records they imply.

use serde::{Deserialize, Serialize};

use super::{Kind, Record};

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The identifier redirects (again, or elsewhere).
    Set,
    /// The identifier is withdrawn.
    Gone,
    /// The identifier is not retired any more.
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
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who.
    pub by: String,
    /// What happened.
    pub action: Action,
    /// The kind after the change; `null` for `rm`.
    pub kind: Option<Kind>,
    /// The target after the change; `null` for `gone` and `rm`.
    pub target: Option<String>,
    /// Why: the edit's reason, or what a chain collapse did.
    pub reason: String,
}

/// Who makes an edit, when and why: stamped on every record and history entry it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// RFC 3339, UTC (see [`super::rfc3339`]).
    pub at: String,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// An edit an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `old` redirects to `new`, permanently or temporarily.
    Redirect {
        /// The retired identifier.
        old: String,
        /// The current identifier.
        new: String,
        /// A temporary move rather than a permanent one.
        temporary: bool,
    },
    /// `old` is withdrawn.
    Gone {
        /// The withdrawn identifier.
        old: String,
    },
    /// `old` is not retired any more.
    Remove {
        /// The identifier served as itself again.
        old: String,
    },
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
    Shortened {
        /// The asked-for target, itself retired.
        via: String,
    },
    /// Another record that targeted `via`, rewritten because `via` now redirects.
    Retargeted {
        /// The identifier the record pointed at.
        via: String,
    },
    /// Another record that targeted `via`, made gone because `via` is now gone.
    GoneSpread {
        /// The identifier the record pointed at.
        via: String,
    },
}

/// One record's change: from `before` to `after` (`None` = no record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The identifier whose record changes.
    pub id: String,
    /// Its record before; `None` when it was not retired.
    pub before: Option<Record>,
    /// Its record after; `None` when it is not retired any more.
    pub after: Option<Record>,
    /// Why it changes.
    pub cause: Cause,
    /// The history entry's reason: the edit's reason, or what the collapse did.
    pub note: String,
}

impl Change {
    /// What the history entry says happened: the action, the kind and the target after.
    fn outcome(&self) -> (Action, Option<Kind>, Option<&str>) {
        match &self.after {
            None => (Action::Rm, None, None),
            Some(r) if r.kind() == Kind::Gone => (Action::Gone, Some(Kind::Gone), None),
            Some(r) => (Action::Set, Some(r.kind()), r.target()),
        }
    }

    /// The history entry this change appends.
    pub fn history_entry(&self, meta: &Meta) -> HistoryEntry {
        let (action, kind, target) = self.outcome();
        HistoryEntry {
            at: meta.at.clone(),
            by: meta.by.clone(),
            action,
            kind,
            target: target.map(str::to_owned),
            reason: self.note.clone(),
        }
    }

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
        let (action, kind, target) = self.outcome();
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

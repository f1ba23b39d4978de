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
//! and the reverse index (`pointing`) lists exactly the records that target each identifier.
//! (That a gone record has no target, and a move has one, is the shape of [`Redirect`].) Every
//! planner here keeps it; the property tests in `tests.rs` check it.
//!
//! A consequence of collapsing that the data model accepts: the intermediate step is forgotten.
//! After `A → B`, `B → C` the archive holds `A → C`; removing `B → C` later leaves `A → C`, and the
//! histories of `A` and `B` say what happened. A chain through a temporary redirect stays
//! temporary (see [`Redirect::then`]).
//!
//! Files: this one the values (kinds, redirects, records, identifiers); `edit.rs` edits and
//! changes; `plan.rs` the rules; `archive.rs` the in-memory archive; `import.rs` the planner of
//! a bulk import; `time.rs` timestamps.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod archive;
mod edit;
mod import;
mod plan;
mod time;

pub use archive::Archive;
pub use edit::{Action, Cause, Change, Edit, HistoryEntry, Meta};
pub use import::{ImportCounts, ImportPlan, ImportPlanner, RowRefusal};
pub use plan::{plan, ArchiveView};
pub use time::rfc3339;

/// The longest identifier accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 1024;

/// How many history entries each identifier keeps (newest first).
pub const HISTORY_LIMIT: usize = 100;

/// The name of what a retired identifier answers, as stored in Redis, written in import files
/// and used as a metrics label.
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
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [Kind; 3] = [Kind::Moved, Kind::Temporary, Kind::Gone];

    /// The name stored in Redis and written in import files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Moved => "moved",
            Kind::Temporary => "temporary",
            Kind::Gone => "gone",
        }
    }

    /// The kind whose stored name is exactly `name` (as Redis holds it; see [`crate::codec`]).
    pub fn from_stored(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a kind as people write it (import files, the admin API): surrounding blanks and
/// letter case do not matter.
impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        let name = s.trim().to_ascii_lowercase();
        Kind::from_stored(&name)
            .ok_or_else(|| format!("kind {name:?} is not one of moved, temporary, gone"))
    }
}

/// What a retired identifier answers: where it went, or that it is gone.
///
/// The one type for it, used by the store, the import and the gateway's lookup alike. A move
/// always has a target and a withdrawal never has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Redirect {
    /// Moved permanently (301 or 308) to `target`.
    Moved {
        /// The current identifier (decoded).
        target: Arc<str>,
    },
    /// Moved temporarily (302 or 307) to `target`.
    Temporary {
        /// The current identifier (decoded).
        target: Arc<str>,
    },
    /// Withdrawn (410).
    Gone,
}

impl Redirect {
    /// A move to `target`, temporary or permanent.
    pub fn to(target: impl Into<Arc<str>>, temporary: bool) -> Redirect {
        let target = target.into();
        if temporary {
            Redirect::Temporary { target }
        } else {
            Redirect::Moved { target }
        }
    }

    /// The redirect of `kind` to `target`; `None` when they disagree (a move without a target,
    /// or a withdrawal with one).
    pub fn new(kind: Kind, target: Option<&str>) -> Option<Redirect> {
        match (kind, target) {
            (Kind::Gone, None) => Some(Redirect::Gone),
            (Kind::Moved, Some(target)) => Some(Redirect::to(target, false)),
            (Kind::Temporary, Some(target)) => Some(Redirect::to(target, true)),
            _ => None,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Redirect::Moved { .. } => Kind::Moved,
            Redirect::Temporary { .. } => Kind::Temporary,
            Redirect::Gone => Kind::Gone,
        }
    }

    /// The current identifier; `None` when gone.
    pub fn target(&self) -> Option<&str> {
        match self {
            Redirect::Moved { target } | Redirect::Temporary { target } => Some(target),
            Redirect::Gone => None,
        }
    }

    /// Whether it is a temporary move.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Redirect::Temporary { .. })
    }

    /// The collapsed chain `A → B → C`, where `self` is `A → B` and `next` is what `B` answers:
    /// `B`'s target, temporary if either hop is, gone if `B` is (and gone if `A` already is).
    ///
    /// A chain with a temporary hop is temporary: a client (or CloudFront) that cached a
    /// permanent `A → C` would keep going to `C` after `B`'s temporary move ends.
    pub fn then(&self, next: &Redirect) -> Redirect {
        match (self, next) {
            (Redirect::Gone, _) | (_, Redirect::Gone) => Redirect::Gone,
            (_, Redirect::Moved { target } | Redirect::Temporary { target }) => {
                Redirect::to(target.clone(), self.is_temporary() || next.is_temporary())
            }
        }
    }
}

/// One retired identifier's record (`P redirect:{id}`): what it answers, and who said so when
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the identifier answers.
    pub redirect: Redirect,
    /// RFC 3339, UTC.
    pub changed_at: String,
    /// Who made the last change.
    pub changed_by: String,
    /// Why, in their words.
    pub reason: String,
}

impl Record {
    /// Whether two records say the same thing (redirect and reason), whoever wrote them when.
    pub fn same_as(&self, other: &Record) -> bool {
        self.redirect == other.redirect && self.reason == other.reason
    }

    /// The kind of its redirect.
    pub fn kind(&self) -> Kind {
        self.redirect.kind()
    }

    /// The target of its redirect; `None` when gone.
    pub fn target(&self) -> Option<&str> {
        self.redirect.target()
    }
}

/// An edit the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An empty identifier.
    #[error("the identifier is empty")]
    EmptyId,
    /// An identifier with a control character (line breaks, tabs, NUL, DEL, …).
    #[error("identifier {0:?} contains a control character")]
    ControlCharacter(String),
    /// An identifier longer than [`MAX_ID_BYTES`] (its length in bytes).
    #[error("an identifier of {0} bytes is longer than the limit of {MAX_ID_BYTES}")]
    TooLong(usize),
    /// `A → A`.
    #[error("{0} cannot redirect to itself")]
    SelfRedirect(String),
    /// `A → B` while `B → A`.
    #[error("{old} → {new} would make a loop: {new} already redirects to {old}")]
    Loop {
        /// The identifier edited.
        old: String,
        /// Its asked-for target, which redirects back to it.
        new: String,
    },
    /// `A → B` while `B` is gone.
    #[error("{new} is gone, so {old} cannot redirect to it; mark {old} gone instead")]
    TargetGone {
        /// The identifier edited.
        old: String,
        /// Its asked-for target, which is gone.
        new: String,
    },
    /// Removing an identifier that is not retired.
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

/// The records of an archive, sorted, for comparisons in tests.
#[cfg(test)]
pub(crate) fn snapshot(archive: &Archive) -> std::collections::BTreeMap<String, Redirect> {
    archive
        .iter()
        .map(|(id, r)| (id.clone(), r.redirect.clone()))
        .collect()
}

#[cfg(test)]
mod tests;

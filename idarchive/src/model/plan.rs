//! The rules: what an edit changes, or why it is refused.

use super::{validate_id, Cause, Change, Edit, Meta, Record, Redirect, RuleError};

/// What the planner needs to know about the archive.
///
/// A single edit implements it over the few records it read from Redis (the edited identifier,
/// its new target, and the records that target the edited identifier); an import implements it
/// over the whole archive in memory ([`super::Archive`]).
pub trait ArchiveView {
    /// The record of a retired identifier, `None` if `id` is not retired.
    fn get(&self, id: &str) -> Option<&Record>;
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

/// A record stamped by `meta`.
fn stamped(redirect: Redirect, reason: &str, meta: &Meta) -> Record {
    Record {
        redirect,
        changed_at: meta.at.clone(),
        changed_by: meta.by.clone(),
        reason: reason.to_owned(),
    }
}

/// The change of the edited record itself, unless it already says `after`.
fn own_change(view: &impl ArchiveView, old: &str, after: Record, cause: Cause) -> Option<Change> {
    let before = view.get(old).cloned();
    if before.as_ref().is_some_and(|b| b.same_as(&after)) {
        return None;
    }
    Some(Change {
        id: old.into(),
        before,
        note: after.reason.clone(),
        after: Some(after),
        cause,
    })
}

/// The records that target `id`, in identifier order (so plans are deterministic).
fn pointing_records<'v>(view: &'v impl ArchiveView, id: &str) -> Vec<(String, &'v Record)> {
    let mut pointing = view.pointing_to(id);
    pointing.sort();
    pointing
        .into_iter()
        .filter_map(|other| view.get(&other).map(|record| (other, record)))
        .collect()
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
    let asked = Redirect::to(new, temporary);
    // Collapse forward: if `new` is itself retired, point at where it went.
    let (redirect, cause) = match view.get(new).map(|r| &r.redirect) {
        None => (asked, Cause::Requested),
        Some(Redirect::Gone) => {
            return Err(RuleError::TargetGone {
                old: old.into(),
                new: new.into(),
            })
        }
        Some(next) if next.target() == Some(old) => {
            return Err(RuleError::Loop {
                old: old.into(),
                new: new.into(),
            })
        }
        Some(next) => (asked.then(next), Cause::Shortened { via: new.into() }),
    };
    // A move followed by a move is a move: it has a target.
    let target = redirect.target().unwrap_or_default();
    let mut changes: Vec<Change> = own_change(
        view,
        old,
        stamped(redirect.clone(), &meta.reason, meta),
        cause,
    )
    .into_iter()
    .collect();
    // Collapse backward: whatever pointed at `old` now points where `old` goes. By the
    // invariant none of them is `target` (they are retired, `target` is not).
    for (id, record) in pointing_records(view, old) {
        changes.push(Change {
            note: format!("chain collapse: {old} now redirects to {target}"),
            id,
            before: Some(record.clone()),
            after: Some(stamped(
                record.redirect.then(&redirect),
                &record.reason,
                meta,
            )),
            cause: Cause::Retargeted { via: old.into() },
        });
    }
    Ok(changes)
}

fn plan_gone(view: &impl ArchiveView, old: &str, meta: &Meta) -> Vec<Change> {
    let gone = || stamped(Redirect::Gone, &meta.reason, meta);
    let mut changes: Vec<Change> = own_change(view, old, gone(), Cause::Requested)
        .into_iter()
        .collect();
    for (id, record) in pointing_records(view, old) {
        changes.push(Change {
            id,
            before: Some(record.clone()),
            after: Some(gone()),
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

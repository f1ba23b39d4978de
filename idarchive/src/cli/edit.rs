//! `set`, `gone`, `rm`: one edit, and every record it changed, in words.

use super::{by, statuses, Failure, Who};
use crate::model::{Cause, Change, Edit};
use crate::store::RedirectStore;

/// Makes the edit and prints what changed.
pub(super) async fn run(store: &RedirectStore, edit: &Edit, who: Who) -> Result<(), Failure> {
    let changes = store.edit(edit, &by(who.by), &who.reason).await?;
    if changes.is_empty() {
        println!("{}: already so, nothing changed", edit.old());
    }
    for change in &changes {
        println!("{}", describe(change));
    }
    Ok(())
}

/// One line for a change, as the CLI prints it.
pub fn describe(change: &Change) -> String {
    let Some(after) = &change.after else {
        return format!("{} removed: served as itself again", change.id);
    };
    let what = match after.target() {
        Some(target) => format!(
            "{} → {target} ({}, {})",
            change.id,
            after.kind(),
            statuses(after.kind())
        ),
        None => format!("{} is gone (410)", change.id),
    };
    match &change.cause {
        Cause::Requested => what,
        Cause::Shortened { via } => format!("{what}; {via} had already moved there"),
        Cause::Retargeted { via } => format!("{what}; chain collapse: it pointed at {via}"),
        Cause::GoneSpread { via } => format!("{what}; it pointed at {via}, which is gone"),
    }
}

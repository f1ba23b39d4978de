//! `show`: one record and its history.

use super::{statuses, Failure};
use crate::model::Record;
use crate::store::RedirectStore;

/// Prints the record of `old` and its history, newest first.
pub(super) async fn run(store: &RedirectStore, old: &str) -> Result<(), Failure> {
    let (record, history) = store.show(old).await?;
    if record.is_none() && history.is_empty() {
        return Err(Failure::Refused(format!(
            "{old} is not a retired identifier and has no history"
        )));
    }
    let mut out = String::new();
    match &record {
        Some(r) => out.push_str(&record_text(old, r)),
        None => out.push_str(&format!("{old} is not retired (served as itself)\n")),
    }
    if !history.is_empty() {
        out.push_str("history, newest first:\n");
        for h in &history {
            let what = match (&h.kind, &h.target) {
                (Some(kind), Some(target)) => format!("set → {target} ({kind})"),
                _ => h.action.as_str().to_owned(),
            };
            let reason = if h.reason.is_empty() {
                String::new()
            } else {
                format!("  ({})", h.reason)
            };
            out.push_str(&format!("  {}  {:<12} {what}{reason}\n", h.at, h.by));
        }
    }
    print!("{out}");
    Ok(())
}

fn record_text(id: &str, record: &Record) -> String {
    let head = match record.target() {
        Some(target) => format!("{id} → {target}"),
        None => format!("{id} is gone"),
    };
    let reason = if record.reason.is_empty() {
        "(none given)"
    } else {
        &record.reason
    };
    format!(
        "{head}\n  kind:    {} ({})\n  changed: {} by {}\n  reason:  {reason}\n",
        record.kind(),
        statuses(record.kind()),
        record.changed_at,
        record.changed_by,
    )
}

//! `list`: retired identifiers by prefix, one per line.

use std::io::Write;

use super::Failure;
use crate::store::RedirectStore;

/// Prints up to `limit` (0: all) identifiers starting with `prefix`: identifier, kind, target.
pub(super) async fn run(store: &RedirectStore, prefix: &str, limit: usize) -> Result<(), Failure> {
    let wanted = if limit == 0 { usize::MAX } else { limit };
    // One more than asked, to tell whether there are more.
    let records = store.list(prefix, wanted.saturating_add(1)).await?;
    let mut out = std::io::stdout().lock();
    for (id, record) in records.iter().take(wanted) {
        let _ = writeln!(
            out,
            "{id}\t{}\t{}",
            record.kind(),
            record.target().unwrap_or("")
        );
    }
    if records.len() > wanted {
        eprintln!("(first {wanted} shown; --limit 0 lists all)");
    } else if records.is_empty() {
        eprintln!("no retired identifiers start with {prefix:?}");
    }
    Ok(())
}

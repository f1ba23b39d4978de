//! The planner of a bulk import: the rows applied in order to the archive in memory.

use std::collections::HashMap;

use serde::Serialize;

use super::{plan, Archive, Cause, Change, Edit, Meta, RuleError};

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
    /// The row's index in the input, from 0.
    pub row: usize,
    /// The rule it breaks.
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
    /// The rows refused; non-empty means nothing may be written.
    pub refusals: Vec<RowRefusal>,
    /// The numbers.
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

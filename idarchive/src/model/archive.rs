//! The whole archive in memory: what an import plans against.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ArchiveView, Change, Record, Redirect};

/// The whole archive in memory, with its reverse index: the view an import plans against.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    records: HashMap<String, Record>,
    /// Target → the identifiers whose record targets it. Keyed by the records' own target
    /// strings, so indexing a record allocates no copy of its target.
    pointing: HashMap<Arc<str>, HashSet<String>>,
}

/// The target of a move, as the record holds it.
fn target_of(redirect: &Redirect) -> Option<&Arc<str>> {
    match redirect {
        Redirect::Moved { target } | Redirect::Temporary { target } => Some(target),
        Redirect::Gone => None,
    }
}

impl Archive {
    /// An empty archive.
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
    pub fn insert(&mut self, id: String, record: Record) {
        if let Some(target) = target_of(&record.redirect) {
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
    pub fn remove(&mut self, id: &str) -> Option<Record> {
        let previous = self.records.remove(id)?;
        self.unindex(id, &previous);
        Some(previous)
    }

    fn unindex(&mut self, id: &str, previous: &Record) {
        let Some(target) = previous.target() else {
            return;
        };
        // The new record may target the same identifier; it was indexed already.
        if self.records.get(id).and_then(Record::target) == Some(target) {
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

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no identifier is retired.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Record)> {
        self.records.iter()
    }

    /// The first broken invariant, if any: a record targeting a retired identifier or itself,
    /// a reverse index out of step.
    ///
    /// # Errors
    ///
    /// What is broken, in words.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (id, record) in &self.records {
            match record.target() {
                None => {}
                Some(t) if t == id => return Err(format!("{id} targets itself")),
                Some(t) if self.records.contains_key(t) => {
                    return Err(format!("{id} targets {t}, which is retired"))
                }
                Some(t) => {
                    expected.entry(t).or_default().insert(id);
                }
            }
        }
        let actual: HashMap<&str, HashSet<&str>> = self
            .pointing
            .iter()
            .map(|(t, ids)| (&**t, ids.iter().map(String::as_str).collect()))
            .collect();
        if expected != actual {
            return Err("the reverse index does not match the records".into());
        }
        Ok(())
    }
}

impl ArchiveView for Archive {
    fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id)
    }

    fn pointing_to(&self, id: &str) -> Vec<String> {
        self.pointing
            .get(id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }
}

//! The Redis key layout of the archive (`docs/redirects.md`, "Data model in Redis").
//!
//! Every key starts with the configured prefix `P` (`redirects.key_prefix`, e.g. `iiif:`),
//! followed by a fixed name and, for per-identifier keys, the identifier as stored (decoded,
//! UTF-8). This is the one place those names are spelled in Rust; the store's Lua writer
//! (`store/lua/write_records.lua`) builds the same three per-identifier names from the prefix it
//! is given (`redirect:`, `pointing:`, `history:`) and `ids`, because it learns identifiers only
//! while it runs. The store's tests check what the scripts write against these names.

/// The Redis keys of one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself (the Lua writer builds its keys from it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P redirect:{id}`: the record hash of a retired identifier (see [`crate::codec`]).
    pub fn redirect(&self, id: &str) -> String {
        format!("{}redirect:{id}", self.prefix)
    }

    /// `P history:{id}`: the identifier's changes, newest first (JSON entries).
    pub fn history(&self, id: &str) -> String {
        format!("{}history:{id}", self.prefix)
    }

    /// `P pointing:{id}`: the set of retired identifiers whose record targets `id`.
    pub fn pointing(&self, id: &str) -> String {
        format!("{}pointing:{id}", self.prefix)
    }

    /// `P ids`: every retired identifier, in a sorted set (score 0, listed by lexical range).
    pub fn ids(&self) -> String {
        format!("{}ids", self.prefix)
    }

    /// `P invalidate`: the pub/sub channel that hears every changed identifier, or `*`.
    pub fn invalidate(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// `P purge`: the pub/sub channel on which a gateway node announces an image purged
    /// through its admin API, so every node drops it too.
    pub fn purge(&self) -> String {
        format!("{}purge", self.prefix)
    }

    /// `P import-lock`: held while an import writes; edits and other imports are refused.
    pub fn import_lock(&self) -> String {
        format!("{}import-lock", self.prefix)
    }

    /// `P import-journal`: the changes a large import still has to write, oldest first.
    pub fn import_journal(&self) -> String {
        format!("{}import-journal", self.prefix)
    }

    /// `P import-journal-meta`: present once the journal is complete (who imported, when, how
    /// many changes).
    pub fn import_journal_meta(&self) -> String {
        format!("{}import-journal-meta", self.prefix)
    }

    /// What `key` is, if it is one of this prefix's per-identifier keys or `ids`.
    pub fn parse<'k>(&self, key: &'k str) -> Option<Key<'k>> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if rest == "ids" {
            return Some(Key::Ids);
        }
        let (name, id) = rest.split_once(':')?;
        match name {
            "redirect" => Some(Key::Redirect(id)),
            "history" => Some(Key::History(id)),
            "pointing" => Some(Key::Pointing(id)),
            _ => None,
        }
    }
}

/// A key of the layout, as [`Keys::parse`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'k> {
    /// `P redirect:{id}`.
    Redirect(&'k str),
    /// `P history:{id}`.
    History(&'k str),
    /// `P pointing:{id}`.
    Pointing(&'k str),
    /// `P ids`.
    Ids,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_documented_names() {
        let keys = Keys::new("iiif:");
        assert_eq!(keys.redirect("old-42"), "iiif:redirect:old-42");
        assert_eq!(keys.history("a/b"), "iiif:history:a/b");
        assert_eq!(keys.pointing("é"), "iiif:pointing:é");
        assert_eq!(keys.ids(), "iiif:ids");
        assert_eq!(keys.invalidate(), "iiif:invalidate");
        assert_eq!(keys.purge(), "iiif:purge");
        assert_eq!(keys.import_lock(), "iiif:import-lock");
        assert_eq!(keys.import_journal(), "iiif:import-journal");
        assert_eq!(keys.import_journal_meta(), "iiif:import-journal-meta");
    }

    #[test]
    fn keys_parse_back() {
        let keys = Keys::new("p:");
        for id in ["a", "a:b", "redirect:x", ""] {
            assert_eq!(keys.parse(&keys.redirect(id)), Some(Key::Redirect(id)));
            assert_eq!(keys.parse(&keys.history(id)), Some(Key::History(id)));
            assert_eq!(keys.parse(&keys.pointing(id)), Some(Key::Pointing(id)));
        }
        assert_eq!(keys.parse(&keys.ids()), Some(Key::Ids));
        assert_eq!(keys.parse(&keys.import_lock()), None);
        assert_eq!(keys.parse("q:redirect:a"), None);
    }
}

//! The record codec: a [`Redirect`] as the fields of its hash `P redirect:{id}`, and back.
//!
//! The one reader and writer of records for everyone: the store's reads and edits, the import's
//! load of the whole archive, and the gateway's lookup on the request path all decode with
//! [`decode_redirect`] (or [`decode_record`], which adds the metadata); the store's Lua writer
//! gets its arguments from [`encode_redirect`].
//!
//! # The hash
//!
//! | field | content |
//! |---|---|
//! | `kind` | `moved`, `temporary` or `gone`, exactly so (lower case, no blanks) |
//! | `target` | the current identifier (decoded, UTF-8); absent for `gone` |
//! | `changed_at`, `changed_by`, `reason` | metadata; absent reads as empty |
//!
//! # Which records are valid
//!
//! A record is decided by `kind` and `target` alone; an empty `target` counts as absent.
//!
//! - Neither `kind` nor `target`: **not retired** (no hash at all, the common case; also a hash
//!   that holds only metadata).
//! - `kind` exactly one of the three names, and
//!   - `gone` without a target: withdrawn;
//!   - `moved` or `temporary` with a target that is a valid identifier ([`validate_id`]: not
//!     empty, no control character, at most [`crate::model::MAX_ID_BYTES`] bytes) other than the
//!     record's own identifier: a move.
//! - Anything else is **invalid** ([`InvalidRecord`]): a target without a kind, an unknown kind
//!   (`Moved` and ` moved` too), a withdrawal with a target, a move without one, a move to
//!   itself (a redirect loop) or to something no edit could have written.
//!
//! That is exactly what the writer can produce: every record the store writes decodes to what
//! was written, and every record that decodes is the encoding of its result (the tests below
//! check both, exhaustively on the corner cases and by property on the rest). The store reports
//! an invalid record as [`crate::store::StoreError::Malformed`]; the gateway's lookup serves the
//! identifier as if it were not retired, and counts and logs the record.

use std::collections::HashMap;

use crate::model::{validate_id, Kind, Record, Redirect, RuleError};

/// The field holding the kind.
pub const KIND: &str = "kind";
/// The field holding the target.
pub const TARGET: &str = "target";
/// The field holding when the record last changed.
pub const CHANGED_AT: &str = "changed_at";
/// The field holding who changed it.
pub const CHANGED_BY: &str = "changed_by";
/// The field holding why.
pub const REASON: &str = "reason";

/// Every field of a record, in the order the store's commit script compares them.
pub const FIELDS: [&str; 5] = [KIND, TARGET, CHANGED_AT, CHANGED_BY, REASON];

/// Why a hash is not a valid record (see the module documentation for the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    /// A target, but no kind.
    #[error("no kind")]
    NoKind,
    /// A kind that is not exactly `moved`, `temporary` or `gone`.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// `gone` with a target.
    #[error("kind gone with target {0:?}")]
    GoneWithTarget(String),
    /// `moved` or `temporary` without a target.
    #[error("kind {0} without a target")]
    NoTarget(Kind),
    /// A move to the record's own identifier (a redirect loop).
    #[error("the target is the identifier itself")]
    TargetIsItself,
    /// A move to something that is not a valid identifier.
    #[error("target: {0}")]
    BadTarget(RuleError),
}

/// What the record of `id` says, from its `kind` and `target` fields (`None`: absent).
///
/// # Errors
///
/// [`InvalidRecord`] for anything the writer could not have written.
pub fn decode_redirect(
    id: &str,
    kind: Option<&str>,
    target: Option<&str>,
) -> Result<Option<Redirect>, InvalidRecord> {
    let target = target.filter(|t| !t.is_empty());
    let Some(kind) = kind else {
        return match target {
            None => Ok(None),
            Some(_) => Err(InvalidRecord::NoKind),
        };
    };
    let kind = Kind::from_stored(kind).ok_or_else(|| InvalidRecord::UnknownKind(kind.into()))?;
    match (kind, target) {
        (Kind::Gone, None) => Ok(Some(Redirect::Gone)),
        (Kind::Gone, Some(target)) => Err(InvalidRecord::GoneWithTarget(target.into())),
        (_, None) => Err(InvalidRecord::NoTarget(kind)),
        (_, Some(target)) if target == id => Err(InvalidRecord::TargetIsItself),
        (_, Some(target)) => {
            validate_id(target).map_err(InvalidRecord::BadTarget)?;
            Ok(Some(Redirect::to(target, kind == Kind::Temporary)))
        }
    }
}

/// The whole record of `id` from its hash as `HGETALL` returns it (empty: not retired).
///
/// # Errors
///
/// See [`decode_redirect`].
pub fn decode_record(
    id: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<Record>, InvalidRecord> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let Some(redirect) = decode_redirect(id, field(KIND), field(TARGET))? else {
        return Ok(None);
    };
    let text = |name: &str| field(name).unwrap_or_default().to_owned();
    Ok(Some(Record {
        redirect,
        changed_at: text(CHANGED_AT),
        changed_by: text(CHANGED_BY),
        reason: text(REASON),
    }))
}

/// The `kind` and `target` fields of `redirect`; the target is `""` when there is none (the
/// writer then removes the field).
pub fn encode_redirect(redirect: &Redirect) -> (&'static str, &str) {
    (redirect.kind().as_str(), redirect.target().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ID: &str = "a";

    #[test]
    fn every_corner_case_is_decided() {
        let long = "x".repeat(crate::model::MAX_ID_BYTES + 1);
        let moved = |t: &str| Ok(Some(Redirect::to(t, false)));
        type Decoded = Result<Option<Redirect>, InvalidRecord>;
        let cases: Vec<(Option<&str>, Option<&str>, Decoded)> = vec![
            (None, None, Ok(None)),
            (None, Some(""), Ok(None)),
            (None, Some("b"), Err(InvalidRecord::NoKind)),
            (Some("moved"), Some("b"), moved("b")),
            (Some("moved"), Some("b/c é"), moved("b/c é")),
            (
                Some("temporary"),
                Some("b"),
                Ok(Some(Redirect::to("b", true))),
            ),
            (Some("gone"), None, Ok(Some(Redirect::Gone))),
            (Some("gone"), Some(""), Ok(Some(Redirect::Gone))),
            (
                Some("gone"),
                Some("b"),
                Err(InvalidRecord::GoneWithTarget("b".into())),
            ),
            (
                Some("moved"),
                None,
                Err(InvalidRecord::NoTarget(Kind::Moved)),
            ),
            (
                Some("moved"),
                Some(""),
                Err(InvalidRecord::NoTarget(Kind::Moved)),
            ),
            (
                Some("temporary"),
                None,
                Err(InvalidRecord::NoTarget(Kind::Temporary)),
            ),
            (Some("moved"), Some(ID), Err(InvalidRecord::TargetIsItself)),
            (
                Some("temporary"),
                Some(ID),
                Err(InvalidRecord::TargetIsItself),
            ),
            (
                Some("moved"),
                Some("b\nc"),
                Err(InvalidRecord::BadTarget(RuleError::ControlCharacter(
                    "b\nc".into(),
                ))),
            ),
            (
                Some("moved"),
                Some(&long),
                Err(InvalidRecord::BadTarget(RuleError::TooLong(long.len()))),
            ),
            (Some(""), None, Err(InvalidRecord::UnknownKind("".into()))),
            (
                Some("Moved"),
                Some("b"),
                Err(InvalidRecord::UnknownKind("Moved".into())),
            ),
            (
                Some(" moved"),
                Some("b"),
                Err(InvalidRecord::UnknownKind(" moved".into())),
            ),
            (
                Some("renamed"),
                Some("b"),
                Err(InvalidRecord::UnknownKind("renamed".into())),
            ),
        ];
        for (kind, target, expected) in cases {
            assert_eq!(
                decode_redirect(ID, kind, target),
                expected,
                "{kind:?} {target:?}"
            );
        }
    }

    #[test]
    fn whole_records_carry_their_metadata() {
        let mut fields = HashMap::new();
        assert_eq!(decode_record(ID, &fields), Ok(None));
        fields.insert(REASON.to_owned(), "orphaned".to_owned());
        assert_eq!(
            decode_record(ID, &fields),
            Ok(None),
            "metadata alone is no record"
        );
        fields.insert(KIND.to_owned(), "moved".to_owned());
        assert_eq!(
            decode_record(ID, &fields),
            Err(InvalidRecord::NoTarget(Kind::Moved))
        );
        fields.insert(TARGET.to_owned(), "b".to_owned());
        fields.insert(CHANGED_BY.to_owned(), "me".to_owned());
        let record = decode_record(ID, &fields).unwrap().unwrap();
        assert_eq!(record.redirect, Redirect::to("b", false));
        assert_eq!(
            (
                record.changed_at.as_str(),
                record.changed_by.as_str(),
                record.reason.as_str()
            ),
            ("", "me", "orphaned")
        );
    }

    /// A valid identifier, often one of a few short ones (so targets equal to the identifier
    /// come up), sometimes anything printable.
    fn identifier() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["a", "b", "ark:/1/é", "x y"]).prop_map(str::to_owned),
            "[^\\p{Cc}]{1,40}",
        ]
    }

    fn redirect() -> impl Strategy<Value = Redirect> {
        prop_oneof![
            Just(Redirect::Gone),
            (identifier(), any::<bool>()).prop_map(|(t, temporary)| Redirect::to(t, temporary)),
        ]
    }

    /// Any field value: absent, a kind name, empty, or anything at all (control characters
    /// included).
    fn field() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            prop::sample::select(vec!["moved", "temporary", "gone", "", "a"])
                .prop_map(|s| Some(s.to_owned())),
            any::<String>().prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Whatever the writer writes reads back as written.
        #[test]
        fn written_records_read_back(id in identifier(), redirect in redirect()) {
            prop_assume!(redirect.target() != Some(id.as_str()));
            let (kind, target) = encode_redirect(&redirect);
            let target = (!target.is_empty()).then_some(target);
            prop_assert_eq!(decode_redirect(&id, Some(kind), target), Ok(Some(redirect)));
        }

        /// Whatever reads as a record is the writer's encoding of it, and keeps the rules: no
        /// record targets its own identifier or an invalid one.
        #[test]
        fn only_what_the_writer_writes_reads(id in identifier(), kind in field(), target in field()) {
            let (kind, target) = (kind.as_deref(), target.as_deref());
            let target_given = target.filter(|t| !t.is_empty());
            match decode_redirect(&id, kind, target) {
                Ok(None) => prop_assert!(kind.is_none() && target_given.is_none()),
                Ok(Some(redirect)) => {
                    let (written_kind, written_target) = encode_redirect(&redirect);
                    prop_assert_eq!(Some(written_kind), kind);
                    prop_assert_eq!(written_target, target_given.unwrap_or(""));
                    if let Some(t) = redirect.target() {
                        prop_assert!(t != id && validate_id(t).is_ok());
                    }
                }
                Err(_) => {}
            }
        }
    }
}

//! Records and changes as JSON: the shapes of import reports and of the gateway's admin API.

use serde_json::{json, Value};

use crate::model::{Cause, Change, Record};

/// A record as JSON: `{"id", "kind", "target", "changed_at", "changed_by", "reason"}`.
pub fn record_json(id: &str, record: &Record) -> Value {
    json!({
        "id": id,
        "kind": record.kind(),
        "target": record.target(),
        "changed_at": record.changed_at,
        "changed_by": record.changed_by,
        "reason": record.reason,
    })
}

/// A change as JSON: `{"id", "kind", "target", "removed", "before": {"kind", "target"} | null,
/// "cause"}`.
pub fn change_json(change: &Change) -> Value {
    let brief = |r: &Option<Record>| {
        r.as_ref()
            .map(|r| json!({"kind": r.kind(), "target": r.target()}))
    };
    let cause = match &change.cause {
        Cause::Requested => "requested".to_string(),
        Cause::Shortened { via } => format!("shortened: {via} had moved"),
        Cause::Retargeted { via } => format!("chain collapse through {via}"),
        Cause::GoneSpread { via } => format!("gone with {via}"),
    };
    json!({
        "id": change.id,
        "kind": change.after.as_ref().map(Record::kind),
        "target": change.after.as_ref().and_then(Record::target),
        "removed": change.after.is_none(),
        "before": brief(&change.before),
        "cause": cause,
    })
}

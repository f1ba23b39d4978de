//! The rules, example by example, then their properties over random edit sequences.

use super::*;
use proptest::prelude::*;

fn meta(reason: &str) -> Meta {
    Meta {
        at: "2024-05-01T12:00:00Z".into(),
        by: "tester".into(),
        reason: reason.into(),
    }
}

fn moved(old: &str, new: &str) -> Edit {
    Edit::Redirect {
        old: old.into(),
        new: new.into(),
        temporary: false,
    }
}

fn temporary(old: &str, new: &str) -> Edit {
    Edit::Redirect {
        old: old.into(),
        new: new.into(),
        temporary: true,
    }
}

fn gone(old: &str) -> Edit {
    Edit::Gone { old: old.into() }
}

fn rm(old: &str) -> Edit {
    Edit::Remove { old: old.into() }
}

/// Plans and applies, checking the invariants after every edit.
fn run(archive: &mut Archive, edit: &Edit) -> Result<Vec<Change>, RuleError> {
    let changes = plan(archive, edit, &meta("why"))?;
    archive.apply(&changes);
    archive.check_invariants().unwrap();
    Ok(changes)
}

fn target(archive: &Archive, id: &str) -> Option<Redirect> {
    archive.get(id).map(|r| r.redirect.clone())
}

fn to(kind: Kind, id: &str) -> Option<Redirect> {
    Redirect::new(kind, Some(id))
}

#[test]
fn identifiers_are_validated() {
    assert_eq!(validate_id(""), Err(RuleError::EmptyId));
    assert!(matches!(
        validate_id("a\nb"),
        Err(RuleError::ControlCharacter(_))
    ));
    assert!(matches!(
        validate_id("a\u{7f}"),
        Err(RuleError::ControlCharacter(_))
    ));
    assert_eq!(
        validate_id(&"x".repeat(1025)),
        Err(RuleError::TooLong(1025))
    );
    assert!(validate_id(&"x".repeat(1024)).is_ok());
    assert!(validate_id("ark:/12148/bpt6k/f1 été.jp2").is_ok());
    let mut archive = Archive::new();
    assert_eq!(run(&mut archive, &moved("a", "")), Err(RuleError::EmptyId));
    assert_eq!(run(&mut archive, &moved("", "a")), Err(RuleError::EmptyId));
}

#[test]
fn a_redirect_is_stored_as_asked() {
    let mut archive = Archive::new();
    let changes = run(&mut archive, &moved("a", "b")).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].cause, Cause::Requested);
    assert_eq!(changes[0].before, None);
    let record = archive.get("a").unwrap();
    assert_eq!(record.kind(), Kind::Moved);
    assert_eq!(record.target(), Some("b"));
    assert_eq!(record.reason, "why");
    assert_eq!(record.changed_by, "tester");
    assert_eq!(archive.pointing_to("b"), vec!["a".to_string()]);
}

#[test]
fn redirecting_to_itself_is_refused() {
    let mut archive = Archive::new();
    assert_eq!(
        run(&mut archive, &moved("a", "a")),
        Err(RuleError::SelfRedirect("a".into()))
    );
    assert!(archive.is_empty());
}

#[test]
fn chains_collapse_forward() {
    // B → C exists; A → B is stored as A → C.
    let mut archive = Archive::new();
    run(&mut archive, &moved("b", "c")).unwrap();
    let changes = run(&mut archive, &moved("a", "b")).unwrap();
    assert_eq!(changes[0].cause, Cause::Shortened { via: "b".into() });
    assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
    assert_eq!(target(&archive, "b"), to(Kind::Moved, "c"));
}

#[test]
fn chains_collapse_backward() {
    // A → B exists; B → C rewrites A → C.
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    run(&mut archive, &moved("x", "b")).unwrap();
    let changes = run(&mut archive, &moved("b", "c")).unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0].id, "b");
    assert_eq!(changes[1].cause, Cause::Retargeted { via: "b".into() });
    assert!(changes[1].note.contains("chain collapse"));
    // The retargeted record keeps its own reason.
    assert_eq!(changes[1].after.as_ref().unwrap().reason, "why");
    assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
    assert_eq!(target(&archive, "x"), to(Kind::Moved, "c"));
    assert!(archive.pointing_to("b").is_empty());
}

#[test]
fn a_chain_through_a_temporary_hop_is_temporary() {
    let mut archive = Archive::new();
    run(&mut archive, &temporary("b", "c")).unwrap();
    run(&mut archive, &moved("a", "b")).unwrap();
    assert_eq!(target(&archive, "a"), to(Kind::Temporary, "c"));

    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    run(&mut archive, &temporary("b", "c")).unwrap();
    assert_eq!(target(&archive, "a"), to(Kind::Temporary, "c"));
}

#[test]
fn loops_are_refused() {
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    assert_eq!(
        run(&mut archive, &moved("b", "a")),
        Err(RuleError::Loop {
            old: "b".into(),
            new: "a".into()
        })
    );
    // A longer loop is a direct one after collapsing: a → c, b → c.
    run(&mut archive, &moved("b", "c")).unwrap();
    assert!(matches!(
        run(&mut archive, &moved("c", "a")),
        Err(RuleError::Loop { .. })
    ));
    assert_eq!(target(&archive, "a"), to(Kind::Moved, "c"));
    assert_eq!(target(&archive, "c"), None);
}

#[test]
fn gone_spreads_along_chains() {
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    run(&mut archive, &moved("x", "b")).unwrap();
    let changes = plan(&archive, &gone("b"), &meta("withdrawn")).unwrap();
    archive.apply(&changes);
    archive.check_invariants().unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[1].cause, Cause::GoneSpread { via: "b".into() });
    for id in ["a", "b", "x"] {
        let record = archive.get(id).unwrap();
        assert_eq!(record.redirect, Redirect::Gone);
        assert_eq!(record.reason, "withdrawn");
    }
}

#[test]
fn a_gone_target_is_refused() {
    let mut archive = Archive::new();
    run(&mut archive, &gone("b")).unwrap();
    assert_eq!(
        run(&mut archive, &moved("a", "b")),
        Err(RuleError::TargetGone {
            old: "a".into(),
            new: "b".into()
        })
    );
}

#[test]
fn a_gone_identifier_can_redirect_again() {
    let mut archive = Archive::new();
    run(&mut archive, &gone("a")).unwrap();
    run(&mut archive, &moved("a", "b")).unwrap();
    assert_eq!(target(&archive, "a"), to(Kind::Moved, "b"));
}

#[test]
fn remove_needs_a_record() {
    let mut archive = Archive::new();
    assert_eq!(
        run(&mut archive, &rm("a")),
        Err(RuleError::NotRetired("a".into()))
    );
    run(&mut archive, &moved("a", "b")).unwrap();
    let changes = run(&mut archive, &rm("a")).unwrap();
    assert_eq!(changes[0].after, None);
    assert!(archive.is_empty());
    assert!(archive.pointing_to("b").is_empty());
}

#[test]
fn retargeting_moves_the_reverse_index() {
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    run(&mut archive, &moved("a", "c")).unwrap();
    assert!(archive.pointing_to("b").is_empty());
    assert_eq!(archive.pointing_to("c"), vec!["a".to_string()]);
    run(&mut archive, &gone("a")).unwrap();
    assert!(archive.pointing_to("c").is_empty());
}

#[test]
fn an_edit_that_changes_nothing_plans_nothing() {
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    assert!(run(&mut archive, &moved("a", "b")).unwrap().is_empty());
    // Another reason or kind is a change.
    assert_eq!(
        plan(&archive, &moved("a", "b"), &meta("other"))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(run(&mut archive, &temporary("a", "b")).unwrap().len(), 1);
    run(&mut archive, &gone("g")).unwrap();
    assert!(run(&mut archive, &gone("g")).unwrap().is_empty());
}

#[test]
fn history_entries_say_what_happened() {
    let mut archive = Archive::new();
    let set = run(&mut archive, &moved("a", "b")).unwrap();
    let entry = set[0].history_entry(&meta("why"));
    assert_eq!(
        set[0].history_json(&meta("why")),
        serde_json::to_string(&entry).unwrap()
    );
    assert_eq!(entry.action, Action::Set);
    assert_eq!(entry.kind, Some(Kind::Moved));
    assert_eq!(entry.target.as_deref(), Some("b"));
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"at": "2024-05-01T12:00:00Z", "by": "tester", "action": "set",
                           "kind": "moved", "target": "b", "reason": "why"})
    );
    let gone_entry = run(&mut archive, &gone("a")).unwrap()[0].history_entry(&meta("why"));
    assert_eq!(
        (gone_entry.action, gone_entry.kind, gone_entry.target),
        (Action::Gone, Some(Kind::Gone), None)
    );
    let rm_entry = run(&mut archive, &rm("a")).unwrap()[0].history_entry(&meta("why"));
    assert_eq!(
        (rm_entry.action, rm_entry.kind, rm_entry.target),
        (Action::Rm, None, None)
    );
}

#[test]
fn edits_from_rows() {
    assert_eq!(
        Edit::from_parts("a", Some("b"), Kind::Temporary),
        Ok(temporary("a", "b"))
    );
    assert_eq!(Edit::from_parts("a", Some(""), Kind::Gone), Ok(gone("a")));
    assert!(Edit::from_parts("a", Some("b"), Kind::Gone).is_err());
    assert!(Edit::from_parts("a", None, Kind::Moved).is_err());
    assert_eq!("Temporary".parse::<Kind>(), Ok(Kind::Temporary));
    assert!("permanent".parse::<Kind>().is_err());
}

#[test]
fn an_import_reports_every_refused_row_and_skips_it() {
    let mut archive = Archive::new();
    run(&mut archive, &gone("g")).unwrap();
    run(&mut archive, &moved("old", "new")).unwrap();
    let mut planner = ImportPlanner::new(archive, 0);
    let rows = [
        moved("a", "b"),     // 0: added
        moved("b", "a"),     // 1: loop
        moved("c", "g"),     // 2: target gone
        moved("b", "c"),     // 3: added; a → c collapses
        moved("old", "new"), // 4: unchanged
        moved("d", "d"),     // 5: self
        gone("new"),         // 6: added; old becomes gone
    ];
    for (i, edit) in rows.iter().enumerate() {
        planner.apply(i, edit, &meta("why"));
    }
    planner.archive().check_invariants().unwrap();
    let (result, _) = planner.finish();
    let refused: Vec<usize> = result.refusals.iter().map(|r| r.row).collect();
    assert_eq!(refused, vec![1, 2, 5]);
    assert_eq!(result.counts.rows, 7);
    assert_eq!(result.counts.unchanged, 1);
    assert_eq!(result.counts.collapsed, 1);
    assert_eq!(result.counts.gone_spread, 1);
    // a, b, new added; old changed.
    assert_eq!((result.counts.added, result.counts.changed), (3, 1));
    let changes = result.preview(10);
    let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "new", "old"]);
    assert_eq!(result.preview(2).len(), 2);
    let a = &changes[0];
    assert_eq!(a.before, None);
    assert_eq!(a.after.as_ref().unwrap().target(), Some("c"));
}

#[test]
fn an_import_that_ends_where_it_started_changes_nothing() {
    let mut archive = Archive::new();
    run(&mut archive, &moved("a", "b")).unwrap();
    let mut planner = ImportPlanner::new(archive, 0);
    planner.apply(0, &moved("a", "c"), &meta("why"));
    planner.apply(1, &moved("a", "b"), &meta("why"));
    let (result, _) = planner.finish();
    assert!(result.changes.is_empty());
    assert_eq!((result.counts.added, result.counts.changed), (0, 0));
}

#[test]
fn redirects_compose_along_chains() {
    let moved = |t: &str| Redirect::to(t, false);
    let temporary = |t: &str| Redirect::to(t, true);
    assert_eq!(moved("b").then(&moved("c")), moved("c"));
    assert_eq!(moved("b").then(&temporary("c")), temporary("c"));
    assert_eq!(temporary("b").then(&moved("c")), temporary("c"));
    assert_eq!(moved("b").then(&Redirect::Gone), Redirect::Gone);
    assert_eq!(Redirect::Gone.then(&moved("c")), Redirect::Gone);
    for kind in Kind::ALL {
        assert_eq!(Kind::from_stored(kind.as_str()), Some(kind));
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        let target = (kind != Kind::Gone).then_some("t");
        assert_eq!(Redirect::new(kind, target).map(|r| r.kind()), Some(kind));
        assert_eq!(Redirect::new(kind, target).unwrap().target(), target);
    }
    assert_eq!(Redirect::new(Kind::Gone, Some("t")), None);
    assert_eq!(Redirect::new(Kind::Moved, None), None);
    // People may write kinds loosely; Redis holds them exactly.
    assert_eq!(" Moved ".parse::<Kind>(), Ok(Kind::Moved));
    assert_eq!(Kind::from_stored("Moved"), None);
}

#[test]
fn rfc3339_formats_utc() {
    use std::time::{Duration, UNIX_EPOCH};
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_714_566_896)),
        "2024-05-01T12:34:56Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
        "2099-12-31T23:59:59Z"
    );
}

// === properties ===

fn edit_strategy() -> impl Strategy<Value = Edit> {
    // Few identifiers, so chains, loops and collisions are common.
    let id = || prop::sample::select(vec!["a", "b", "c", "d", "e", "f"]);
    prop_oneof![
        4 => (id(), id(), any::<bool>()).prop_map(|(o, n, t)| Edit::Redirect {
            old: o.into(), new: n.into(), temporary: t }),
        1 => id().prop_map(|o| Edit::Gone { old: o.into() }),
        1 => id().prop_map(|o| Edit::Remove { old: o.into() }),
    ]
}

/// Where a client ends up following redirects from `id` (None: served as is; Gone).
fn destination(archive: &Archive, id: &str) -> Result<Option<String>, ()> {
    match archive.get(id) {
        None => Ok(None),
        Some(r) if r.kind() == Kind::Gone => Err(()),
        Some(r) => Ok(r.target().map(str::to_owned)),
    }
}

/// Drops the rows `A → B` for which a later row edits `B` or where `B` redirected to when
/// the row was applied, until none is left.
fn independent_rows(initial: &Archive, mut rows: Vec<Edit>) -> Vec<Edit> {
    rows.retain(|e| !matches!(e, Edit::Remove { .. }));
    loop {
        let mut archive = initial.clone();
        let mut dependent = None;
        for (i, edit) in rows.iter().enumerate() {
            if let Edit::Redirect { new, .. } = edit {
                let leads_to = archive.get(new).and_then(|r| r.target().map(str::to_owned));
                let edited_later = rows[i + 1..]
                    .iter()
                    .any(|later| later.old() == new || Some(later.old()) == leads_to.as_deref());
                if edited_later {
                    dependent = Some(i);
                    break;
                }
            }
            if let Ok(changes) = plan(&archive, edit, &meta("import")) {
                archive.apply(&changes);
            }
        }
        match dependent {
            Some(i) => {
                rows.remove(i);
            }
            None => return rows,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// After any sequence of edits the invariants hold, accepted edits do what they say,
    /// and refused ones change nothing.
    #[test]
    fn invariants_hold_after_any_edits(edits in prop::collection::vec(edit_strategy(), 1..40)) {
        let mut archive = Archive::new();
        for edit in &edits {
            let before = snapshot(&archive);
            match plan(&archive, edit, &meta("p")) {
                Err(_) => {
                    prop_assert_eq!(&snapshot(&archive), &before);
                }
                Ok(changes) => {
                    let new_destination = match edit {
                        Edit::Redirect { new, .. } => destination(&archive, new).map(|d| d.unwrap_or(new.clone())),
                        _ => Err(()),
                    };
                    archive.apply(&changes);
                    prop_assert_eq!(archive.check_invariants(), Ok(()));
                    match edit {
                        Edit::Redirect { old, .. } => {
                            prop_assert_eq!(destination(&archive, old).map(|d| d.unwrap()), new_destination);
                        }
                        Edit::Gone { old } => {
                            prop_assert_eq!(archive.get(old).map(Record::kind), Some(Kind::Gone));
                            prop_assert!(archive.pointing_to(old).is_empty());
                        }
                        Edit::Remove { old } => prop_assert!(archive.get(old).is_none()),
                    }
                    // Nothing that resolved before resolves elsewhere now, except
                    // through the edited identifier.
                    for (id, redirect) in &before {
                        if id == edit.old() || redirect.target() == Some(edit.old()) {
                            continue;
                        }
                        prop_assert_eq!(target(&archive, id), Some(redirect.clone()));
                    }
                }
            }
        }
    }

    /// An import gives the same archive as the same edits one by one. A partly written
    /// import (any subset of its net changes, as when Redis dies between batches) has no
    /// loops and no chain longer than two hops, and running the import again over it
    /// restores the invariants (but may end elsewhere, or refuse rows: hence the store
    /// resumes an interrupted import from its journal instead).
    #[test]
    fn imports_equal_single_edits_and_partial_writes_are_safe(
        setup in prop::collection::vec(edit_strategy(), 0..15),
        rows in prop::collection::vec(edit_strategy(), 1..15),
        written in prop::collection::vec(any::<bool>(), 6),
    ) {
        let rows: Vec<Edit> = rows.into_iter().filter(|e| !matches!(e, Edit::Remove { .. })).collect();
        let mut initial = Archive::new();
        for edit in &setup {
            if let Ok(changes) = plan(&initial, edit, &meta("setup")) {
                initial.apply(&changes);
            }
        }
        let mut one_by_one = initial.clone();
        for edit in &rows {
            if let Ok(changes) = plan(&one_by_one, edit, &meta("import")) {
                one_by_one.apply(&changes);
            }
        }
        let mut planner = ImportPlanner::new(initial.clone(), 0);
        for (i, edit) in rows.iter().enumerate() {
            planner.apply(i, edit, &meta("import"));
        }
        let (result, _) = planner.finish();
        let mut imported = initial.clone();
        imported.apply(&result.changes);
        prop_assert_eq!(imported.check_invariants(), Ok(()));
        prop_assert_eq!(snapshot(&imported), snapshot(&one_by_one));

        if !result.refusals.is_empty() {
            // Nothing is written.
            return Ok(());
        }
        let mut partial = initial.clone();
        let subset: Vec<Change> = result.changes.iter().enumerate()
            .filter(|(i, _)| written[i % written.len()])
            .map(|(_, c)| c.clone()).collect();
        partial.apply(&subset);
        for (id, _) in partial.iter() {
            let mut hops = 0;
            let mut at = id.clone();
            while let Some(Some(next)) = partial.get(&at).map(|r| r.target().map(str::to_owned)) {
                hops += 1;
                prop_assert!(hops <= 2, "a chain of {} hops from {}", hops, id);
                at = next;
            }
        }
        let mut rerun = ImportPlanner::new(partial, 0);
        for (i, edit) in rows.iter().enumerate() {
            rerun.apply(i, edit, &meta("import"));
        }
        // A rerun that writes (no refused rows) restores the invariants; whether it ends
        // exactly where an uninterrupted import would is `reruns_of_independent_rows_complete`.
        let archive = rerun.archive().clone();
        if rerun.finish().0.refusals.is_empty() {
            prop_assert_eq!(archive.check_invariants(), Ok(()));
        }
    }

    /// Without rows that depend on a later row of the same file (`A → B` with `B`, or where
    /// `B` led, edited further down), a rerun over any partial write ends exactly where the
    /// uninterrupted import would have.
    #[test]
    fn reruns_of_independent_rows_complete(
        setup in prop::collection::vec(edit_strategy(), 0..15),
        rows in prop::collection::vec(edit_strategy(), 1..15),
        written in prop::collection::vec(any::<bool>(), 6),
    ) {
        let mut initial = Archive::new();
        for edit in &setup {
            if let Ok(changes) = plan(&initial, edit, &meta("setup")) {
                initial.apply(&changes);
            }
        }
        let rows = independent_rows(&initial, rows);
        let mut planner = ImportPlanner::new(initial.clone(), 0);
        for (i, edit) in rows.iter().enumerate() {
            planner.apply(i, edit, &meta("import"));
        }
        let (result, _) = planner.finish();
        let mut imported = initial.clone();
        imported.apply(&result.changes);
        let mut partial = initial.clone();
        let subset: Vec<Change> = result.changes.iter().enumerate()
            .filter(|(i, _)| written[i % written.len()])
            .map(|(_, c)| c.clone()).collect();
        partial.apply(&subset);
        let mut rerun = ImportPlanner::new(partial, 0);
        for (i, edit) in rows.iter().enumerate() {
            rerun.apply(i, edit, &meta("import"));
        }
        let archive = rerun.archive().clone();
        let (rerun, _) = rerun.finish();
        if result.refusals.is_empty() {
            prop_assert!(rerun.refusals.is_empty(), "{:?}", rerun.refusals);
            prop_assert_eq!(snapshot(&archive), snapshot(&imported));
        }
    }
}

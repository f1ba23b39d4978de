//! The store against a real `redis-server` per test: the key layout as documented, every rule,
//! concurrent edits, imports (bad, dry, interrupted by a killed Redis, resumed), passwords and
//! TLS; and the million-row import benchmark (ignored by default).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::reads::lex_range;
use super::*;
use crate::codec;
use crate::formats::{self as format, Exporter, Format, Row};
use crate::keys::Key;
use crate::model::{
    self, Archive, ArchiveView, ImportPlanner, Kind, Meta, Redirect, RuleError, HISTORY_LIMIT,
};
use stack::redis::{Redis, RedisSpec};

use crate::test_redis::{conn, store_on};

const BY: &str = "tester";

/// The archive as Redis holds it, checked against every rule of the key layout: every key the
/// scripts wrote is one of [`crate::keys::Keys`], records decode and carry their metadata,
/// `ids` = the records, the reverse index = the records' targets, no record targets a retired
/// identifier.
async fn check_layout(redis: &Redis, prefix: &str) -> Archive {
    let mut conn = conn(redis).await;
    let layout = crate::keys::Keys::new(prefix);
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
    let mut records = Archive::new();
    let mut pointing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in &keys {
        match layout.parse(key) {
            Some(Key::Redirect(id)) => {
                let fields: HashMap<String, String> = conn.hgetall(key).await.unwrap();
                for field in [
                    codec::KIND,
                    codec::CHANGED_AT,
                    codec::CHANGED_BY,
                    codec::REASON,
                ] {
                    assert!(fields.contains_key(field), "{key} has no {field}");
                }
                let record = codec::decode_record(id, &fields).unwrap().unwrap();
                records.insert(id.to_owned(), record);
            }
            Some(Key::Pointing(target)) => {
                let members: BTreeSet<String> = conn.smembers(key).await.unwrap();
                assert!(!members.is_empty(), "{key} is an empty set");
                pointing.insert(target.to_owned(), members);
            }
            Some(Key::History(_) | Key::Ids) => {}
            None => assert!(
                [
                    layout.import_lock(),
                    layout.import_journal(),
                    layout.import_journal_meta()
                ]
                .contains(key),
                "{key} is not in the key layout"
            ),
        }
    }
    records.check_invariants().unwrap();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, record) in records.iter() {
        if let Some(target) = record.target() {
            expected
                .entry(target.to_owned())
                .or_default()
                .insert(id.clone());
        }
    }
    assert_eq!(pointing, expected, "the reverse index in redis");
    let ids: BTreeSet<String> = conn.zrange(layout.ids(), 0, -1).await.unwrap();
    let record_ids: BTreeSet<String> = records.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, record_ids, "{prefix}ids");
    records
}

fn target_of(archive: &Archive, id: &str) -> Option<Redirect> {
    archive.get(id).map(|r| r.redirect.clone())
}

#[tokio::test]
async fn set_gone_rm_and_show() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    let changes = store
        .set("old-1", "new-1", false, BY, "merged")
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    let record = store.get("old-1").await.unwrap().unwrap();
    assert_eq!(
        (record.kind(), record.target()),
        (Kind::Moved, Some("new-1"))
    );
    assert_eq!(
        (record.changed_by.as_str(), record.reason.as_str()),
        (BY, "merged")
    );
    assert!(record.changed_at.ends_with('Z'));

    // The hash is exactly the documented layout.
    let mut conn = conn(&redis).await;
    let fields: BTreeMap<String, String> = conn.hgetall("t:redirect:old-1").await.unwrap();
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["changed_at", "changed_by", "kind", "reason", "target"]
    );

    // Setting the same again changes nothing and writes no history.
    assert!(store
        .set("old-1", "new-1", false, BY, "merged")
        .await
        .unwrap()
        .is_empty());
    store
        .set("old-1", "new-1", true, BY, "for now")
        .await
        .unwrap();
    store.gone("old-1", "bob", "withdrawn").await.unwrap();
    let fields: HashMap<String, String> = conn.hgetall("t:redirect:old-1").await.unwrap();
    assert!(
        !fields.contains_key("target"),
        "a gone record has no target"
    );
    check_layout(&redis, "t:").await;
    store.remove("old-1", "carol", "mistake").await.unwrap();
    assert!(store.get("old-1").await.unwrap().is_none());

    let (record, history) = store.show("old-1").await.unwrap();
    assert!(record.is_none());
    let actions: Vec<(Action, Option<Kind>, Option<&str>, &str)> = history
        .iter()
        .map(|h| (h.action, h.kind, h.target.as_deref(), h.by.as_str()))
        .collect();
    use crate::model::Action;
    assert_eq!(
        actions,
        vec![
            (Action::Rm, None, None, "carol"),
            (Action::Gone, Some(Kind::Gone), None, "bob"),
            (Action::Set, Some(Kind::Temporary), Some("new-1"), BY),
            (Action::Set, Some(Kind::Moved), Some("new-1"), BY),
        ]
    );
    assert!(matches!(
        store.remove("old-1", BY, "").await,
        Err(StoreError::Rule(RuleError::NotRetired(_)))
    ));
    check_layout(&redis, "t:").await;
}

#[tokio::test]
async fn history_is_capped() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    for i in 0..(HISTORY_LIMIT + 5) {
        store
            .set("a", &format!("b{i}"), false, BY, "")
            .await
            .unwrap();
    }
    let (_, history) = store.show("a").await.unwrap();
    assert_eq!(history.len(), HISTORY_LIMIT);
    assert_eq!(history[0].target.as_deref(), Some("b104"));
}

#[tokio::test]
async fn chains_collapse_both_ways_and_loops_are_refused() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    store.set("a", "b", false, BY, "").await.unwrap();
    store.set("x", "b", true, BY, "").await.unwrap();
    // Backward: b → c rewrites a and x.
    let changes = store.set("b", "c", false, BY, "renamed").await.unwrap();
    assert_eq!(changes.len(), 3);
    // Forward: d → b is stored as d → c.
    let changes = store.set("d", "b", false, BY, "").await.unwrap();
    assert_eq!(
        changes[0].cause,
        model::Cause::Shortened { via: "b".into() }
    );
    let archive = check_layout(&redis, "t:").await;
    assert_eq!(target_of(&archive, "a"), Some(Redirect::to("c", false)));
    assert_eq!(target_of(&archive, "x"), Some(Redirect::to("c", true)));
    assert_eq!(target_of(&archive, "d"), Some(Redirect::to("c", false)));
    let (_, history) = store.show("a").await.unwrap();
    assert!(history[0].reason.contains("chain collapse"), "{history:?}");

    // Loops: c → a (a → c), and a → a.
    let before = check_layout(&redis, "t:").await;
    for (old, new) in [("c", "a"), ("c", "b"), ("a", "a")] {
        let error = store.set(old, new, false, BY, "").await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Rule(RuleError::Loop { .. } | RuleError::SelfRedirect(_))
            ),
            "{error}"
        );
        assert!(error.is_refusal());
    }
    let after = check_layout(&redis, "t:").await;
    assert_eq!(model::snapshot(&before), model::snapshot(&after));
}

#[tokio::test]
async fn gone_spreads_and_gone_targets_are_refused() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    store.set("a", "b", false, BY, "").await.unwrap();
    store.set("x", "b", false, BY, "").await.unwrap();
    let changes = store.gone("b", BY, "withdrawn").await.unwrap();
    assert_eq!(changes.len(), 3);
    let archive = check_layout(&redis, "t:").await;
    for id in ["a", "b", "x"] {
        let record = archive.get(id).unwrap();
        assert_eq!(
            (record.kind(), record.reason.as_str()),
            (Kind::Gone, "withdrawn")
        );
    }
    let error = store.set("y", "b", false, BY, "").await.unwrap_err();
    assert!(matches!(
        error,
        StoreError::Rule(RuleError::TargetGone { .. })
    ));
    assert!(error.to_string().contains("mark y gone instead"), "{error}");
    assert!(store.get("y").await.unwrap().is_none());
}

#[tokio::test]
async fn every_change_is_published() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let url = redis.url();
    let listener = std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe("t:invalidate").unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut messages = Vec::new();
        while messages.len() < 7 {
            let Ok(message) = pubsub.get_message() else {
                break;
            };
            messages.push(message.get_payload::<String>().unwrap());
        }
        messages
    });
    ready_rx.recv().unwrap();
    store.set("a", "b", false, BY, "").await.unwrap();
    store.set("b", "c", false, BY, "").await.unwrap();
    store.gone("c", BY, "").await.unwrap();
    let rows = format::parse_csv("old,new\nz,y\n".as_bytes()).unwrap().rows;
    let options = ImportOptions {
        dry_run: false,
        by: BY.into(),
    };
    store.import(&rows, &options, &mut |_| {}).await.unwrap();
    let messages = listener.join().unwrap();
    // a; then b and a (collapse); then c, a, b (gone spreads); then * for the import.
    assert_eq!(messages, vec!["a", "b", "a", "c", "a", "b", "*"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_keep_the_archive_consistent() {
    let redis = Redis::new();
    let shared = Arc::new(store_on(&redis, "t:").await);
    let ids = ["a", "b", "c", "d", "e", "f", "g"];
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        // Half share one connection, half have their own.
        let store = if worker % 2 == 0 {
            shared.clone()
        } else {
            Arc::new(store_on(&redis, "t:").await)
        };
        tasks.push(tokio::spawn(async move {
            let mut state = worker * 7919 + 1;
            let mut next = move || {
                // xorshift: deterministic per worker, different across workers.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let (mut done, mut refused, mut contended) = (0, 0, 0);
            for _ in 0..150 {
                let old = ids[(next() % 7) as usize];
                let new = ids[(next() % 7) as usize];
                let result = match next() % 6 {
                    0 => store.gone(old, "w", "").await,
                    1 => store.remove(old, "w", "").await,
                    n => store.set(old, new, n == 2, "w", "").await,
                };
                match result {
                    Ok(_) => done += 1,
                    Err(StoreError::Contended(_)) => contended += 1,
                    Err(e) if e.is_refusal() => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (done, refused, contended)
        }));
    }
    let mut totals = (0, 0, 0);
    for task in tasks {
        let (d, r, c) = task.await.unwrap();
        totals = (totals.0 + d, totals.1 + r, totals.2 + c);
    }
    eprintln!(
        "concurrent edits: {} done, {} refused, {} contended",
        totals.0, totals.1, totals.2
    );
    assert!(totals.0 > 100);
    check_layout(&redis, "t:").await;
}

fn rows(csv: &str) -> Vec<Row> {
    let parsed = format::parse_csv(csv.as_bytes()).unwrap();
    assert_eq!(parsed.problems, vec![]);
    parsed.rows
}

async fn export(store: &RedirectStore, format: Format) -> Vec<u8> {
    let mut exporter = Exporter::new(format, Vec::new()).unwrap();
    store.export(|id, r| exporter.write(id, r)).await.unwrap();
    exporter.finish().unwrap()
}

#[tokio::test]
async fn import_export_round_trip() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    store.set("x", "a", false, BY, "existing").await.unwrap();
    let csv = "old,new,kind,reason\n\
               a,b,moved,merged\n\
               b,c,temporary,\"for now, really\"\n\
               \"ark:/1/é\",c,,\n\
               g,,gone,withdrawn\n";
    let options = ImportOptions {
        dry_run: false,
        by: "importer".into(),
    };
    let mut phases = Vec::new();
    let report = store
        .import(&rows(csv), &options, &mut |p| phases.push(p.phase))
        .await
        .unwrap();
    assert!(report.written);
    assert_eq!(report.counts.rows, 4);
    // a, b, ark, g added; x retargeted twice (→ b, → c).
    assert_eq!((report.counts.added, report.counts.changed), (4, 1));
    assert_eq!(report.counts.collapsed, 3);
    assert!(phases.contains(&Phase::Loading) && phases.contains(&Phase::Writing));
    let archive = check_layout(&redis, "t:").await;
    assert_eq!(target_of(&archive, "x"), Some(Redirect::to("c", true)));
    let (x, history) = store.show("x").await.unwrap();
    assert_eq!(x.unwrap().reason, "existing");
    assert_eq!(history.len(), 2, "one entry per import, not per collapse");
    assert_eq!(history[0].by, "importer");
    assert!(!conn(&redis)
        .await
        .exists::<_, bool>("t:import-lock")
        .await
        .unwrap());

    for format in [Format::Csv, Format::Yaml] {
        let bytes = export(&store, format).await;
        let text = String::from_utf8(bytes.clone()).unwrap();
        if format == Format::Csv {
            assert!(
                text.starts_with("old,new,kind,reason\na,c,temporary,merged\n"),
                "{text}"
            );
        }
        // Importing the export into an empty archive gives the same archive…
        let parsed = format::parse(format, bytes.as_slice()).unwrap();
        assert_eq!(parsed.problems, vec![]);
        let other = store_on(&redis, &format!("copy-{format:?}:")).await;
        let report = other
            .import(&parsed.rows, &options, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.counts.added, 5);
        let copy = check_layout(&redis, &format!("copy-{format:?}:")).await;
        assert_eq!(model::snapshot(&copy), model::snapshot(&archive));
        assert_eq!(export(&other, format).await, bytes);
        // …and into the same archive changes nothing.
        let report = store
            .import(&parsed.rows, &options, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            (report.counts.unchanged, report.n_changes, report.written),
            (5, 0, false)
        );
    }
    let listed = store.list("ark:", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "ark:/1/é");
    assert_eq!(store.list("", 2).await.unwrap().len(), 2);
    assert!(store.list("zzz", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_import_writes_nothing_and_a_dry_run_neither() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    store.set("x", "a", false, BY, "").await.unwrap();
    store.gone("g", BY, "").await.unwrap();
    let mut conn = conn(&redis).await;
    let dump = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let mut keys: Vec<String> = conn.keys("*").await.unwrap();
            keys.sort();
            let mut out = Vec::new();
            for key in keys {
                let dumped: Vec<u8> = redis::cmd("DUMP")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                out.push((key, dumped));
            }
            out
        }
    };
    let before = dump(&mut conn).await;
    let csv = "old,new,kind\n\
               a,b,moved\n\
               b,x,moved\n\
               c,g,moved\n\
               d,d,moved\n\
               e,f,moved\n";
    let options = ImportOptions {
        dry_run: false,
        by: BY.into(),
    };
    let report = store
        .import(&rows(csv), &options, &mut |_| {})
        .await
        .unwrap();
    assert!(!report.written);
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("line 3: b → x would make a loop"),
        "{problems:?}"
    );
    assert!(problems[1].starts_with("line 4: g is gone"), "{problems:?}");
    assert!(
        problems[2].starts_with("line 5: d cannot redirect to itself"),
        "{problems:?}"
    );
    assert_eq!(dump(&mut conn).await, before);

    let options = ImportOptions {
        dry_run: true,
        by: BY.into(),
    };
    let report = store
        .import(&rows("old,new\na,b\nb,c\n"), &options, &mut |_| {})
        .await
        .unwrap();
    assert!(!report.written && report.dry_run);
    assert_eq!(
        (report.counts.added, report.counts.changed, report.n_changes),
        (2, 1, 3)
    );
    assert_eq!(report.preview.len(), 3);
    assert_eq!(dump(&mut conn).await, before);
}

#[tokio::test]
async fn imports_and_edits_exclude_each_other() {
    let redis = Redis::new();
    let store = store_on(&redis, "t:").await;
    let mut conn = conn(&redis).await;
    let _: () = conn.set("t:import-lock", "someone else").await.unwrap();
    let options = ImportOptions {
        dry_run: false,
        by: BY.into(),
    };
    let error = store
        .import(&rows("old,new\na,b\n"), &options, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ImportRunning(_)), "{error}");
    let error = store.set("a", "b", false, BY, "").await.unwrap_err();
    assert!(matches!(error, StoreError::ImportRunning(_)), "{error}");
    // A dry run needs no lock.
    let dry = ImportOptions {
        dry_run: true,
        by: BY.into(),
    };
    store
        .import(&rows("old,new\na,b\n"), &dry, &mut |_| {})
        .await
        .unwrap();
    // The lock is not ours to release.
    let holder: String = conn.get("t:import-lock").await.unwrap();
    assert_eq!(holder, "someone else");
}

#[tokio::test]
async fn a_password_protected_redis() {
    let redis = Redis::temporary(RedisSpec {
        password: Some("s3cret pw".into()),
        ..RedisSpec::default()
    });
    // The URL encodes the space.
    let url = format!("redis://:s3cret%20pw@127.0.0.1:{}/", redis.port());
    let store = RedirectStore::connect(&url, "t:").await.unwrap();
    store.set("a", "b", false, BY, "").await.unwrap();
    assert!(store.get("a").await.unwrap().is_some());

    let wrong = format!("redis://:nope@127.0.0.1:{}/", redis.port());
    let error = RedirectStore::connect(&wrong, "t:").await.unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    assert!(!error.to_string().contains("nope"), "{error}");
    let none = format!("redis://127.0.0.1:{}/", redis.port());
    let error = RedirectStore::connect(&none, "t:").await.unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn a_tls_redis() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redis = Redis::temporary(RedisSpec {
        tls: true,
        ..RedisSpec::default()
    });
    let ca = redis.ca_pem().expect("a TLS redis has a CA").to_vec();
    assert!(redis.url().starts_with("rediss://"));
    // The public roots do not know this CA.
    let error = RedirectStore::connect(&redis.url(), "t:")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error}");
    let store = RedirectStore::with_root_certificate(&redis.url(), "t:", ca).unwrap();
    store.ping().await.unwrap();
    store.set("a", "b", false, BY, "").await.unwrap();
    assert!(store.get("a").await.unwrap().is_some());
    let rows = format::parse_csv("old,new\nc,d\n".as_bytes()).unwrap().rows;
    let options = ImportOptions {
        dry_run: false,
        by: BY.into(),
    };
    let report = store.import(&rows, &options, &mut |_| {}).await.unwrap();
    assert!(report.written);
    // Plain text to a TLS port fails to connect.
    let plain = format!("redis://127.0.0.1:{}/", redis.port());
    assert!(RedirectStore::connect(&plain, "t:").await.is_err());
}

#[tokio::test]
async fn a_dead_redis_is_a_connection_error() {
    let mut redis = Redis::new();
    let url = redis.url();
    redis.kill();
    let error = RedirectStore::connect(&url, "t:").await.unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    assert!(!error.is_refusal());
    assert!(matches!(
        RedirectStore::new("http://x", "t:"),
        Err(StoreError::Url { .. })
    ));
}

#[test]
fn lex_ranges_cover_a_prefix() {
    assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
    let (min, max) = lex_range("ab");
    assert_eq!(min, b"[ab".to_vec());
    assert_eq!(max, b"[ab\xff".to_vec());
}

/// Redis killed while a large import writes (with an append-only file, as production
/// should run): the batches written stay, edits and imports are refused until the import
/// is resumed, and resuming ends exactly where an uninterrupted import would have.
#[tokio::test]
async fn an_interrupted_import_is_resumed_exactly() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = Redis::temporary(RedisSpec {
        args: aof.map(String::from).to_vec(),
        ..RedisSpec::default()
    });
    let store = store_on(&redis, "t:").await;
    let n = 40_000;
    let mut csv = String::from("old,new,kind\n");
    for i in 0..n {
        csv.push_str(&format!("old-{i},new-{},\n", i % 1000));
    }
    // Rows that depend on earlier ones: new-7 itself moves (old-7, old-1007, … collapse),
    // and new-99 goes (old-99, … become gone).
    for i in 0..50 {
        csv.push_str(&format!("new-{i},newer-{i},\n"));
    }
    csv.push_str("new-99,,gone\n");
    let rows = rows(&csv);
    let mut expected = ImportPlanner::new(Archive::new(), 0);
    for (i, row) in rows.iter().enumerate() {
        expected.apply(
            i,
            &row.edit,
            &Meta {
                at: String::new(),
                by: String::new(),
                reason: row.reason.clone(),
            },
        );
    }
    let expected = model::snapshot(expected.archive());

    let options = ImportOptions {
        dry_run: false,
        by: BY.into(),
    };
    let pid = redis.pid();
    let mut killed = false;
    let result = store
        .import(&rows, &options, &mut |p| {
            if p.phase == Phase::Writing && !killed {
                killed = true;
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        })
        .await;
    let error = result.unwrap_err();
    let StoreError::ImportInterrupted { written, total, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(*written > 0 && written < total, "{error}");
    assert!(error.to_string().contains("--resume"), "{error}");
    let (written, total) = (*written, *total);

    // Restart on the same port and directory (the AOF).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let store = loop {
        if let Ok(store) = RedirectStore::connect(&redis.url(), "t:").await {
            break store;
        }
        assert!(Instant::now() < deadline, "redis did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut conn = store.conn().await.unwrap();
    let partial: usize = conn.zcard("t:ids").await.unwrap();
    assert!(
        partial > 0 && partial < expected.len(),
        "{partial} ids after the crash"
    );
    // The dead import's lock expires by itself; don't wait for it.
    let _: () = conn.del("t:import-lock").await.unwrap();

    let error = store
        .import(&rows, &options, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ImportUnfinished(_)), "{error}");
    let error = store.set("x", "y", false, BY, "").await.unwrap_err();
    assert!(matches!(error, StoreError::ImportUnfinished(_)), "{error}");

    let resumed = store.resume(&mut |_| {}).await.unwrap();
    assert_eq!(resumed, total - written);
    assert_eq!(store.resume(&mut |_| {}).await.unwrap(), 0, "nothing left");
    let archive = check_layout_at(&store).await;
    assert_eq!(model::snapshot(&archive), expected);
    // Every record was written once: one history entry each.
    let mut pipe = redis::pipe();
    for (id, _) in archive.iter() {
        pipe.llen(store.keys().history(id));
    }
    let lengths: Vec<usize> = pipe.query_async(&mut conn).await.unwrap();
    assert!(lengths.iter().all(|&n| n == 1));
    store.set("x", "y", false, BY, "").await.unwrap();
}

/// [`check_layout`] through a store's own connection.
async fn check_layout_at(store: &RedirectStore) -> Archive {
    let mut archive = Archive::new();
    store
        .export(|id, r| {
            archive.insert(id.to_owned(), r.clone());
            Ok(())
        })
        .await
        .unwrap();
    archive.check_invariants().unwrap();
    let mut conn = store.conn().await.unwrap();
    for (id, record) in archive.iter() {
        if let Some(target) = record.target() {
            let member: bool = conn
                .sismember(store.keys().pointing(target), id)
                .await
                .unwrap();
            assert!(member, "{id} missing from pointing:{target}");
        }
    }
    archive
}

async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// The import rate: `cargo test --release -p idarchive import_a_million -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: about a minute of work"]
async fn import_a_million() {
    let redis = Redis::new();
    let store = store_on(&redis, "bench:").await;
    let n = 1_000_000;
    let started = Instant::now();
    let mut csv = String::with_capacity(n * 40);
    csv.push_str("old,new,kind,reason\n");
    for i in 0..n {
        csv.push_str(&format!(
            "ark:/12345/old-{i:07},ark:/12345/new-{i:07},moved,migration 2024\n"
        ));
    }
    let generated = started.elapsed();
    let started = Instant::now();
    let parsed = format::parse_csv(csv.as_bytes()).unwrap();
    let parse = started.elapsed();
    assert_eq!(parsed.rows.len(), n);
    let options = ImportOptions {
        dry_run: false,
        by: "bench".into(),
    };
    let mut conn = conn(&redis).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let cpu_before = redis_cpu(&mut conn).await;
    let started = Instant::now();
    let report = store
        .import(&parsed.rows, &options, &mut |_| {})
        .await
        .unwrap();
    let import = started.elapsed();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    eprintln!(
        "redis CPU during the import: {:.1} s; per command:\n{}",
        redis_cpu(&mut conn).await - cpu_before,
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(report.counts.added, n);
    let [load, check, write] = report.elapsed;
    eprintln!(
        "1M import into an empty archive: parse {parse:.2?}, load {load:.2?}, check {check:.2?}, \
         write {write:.2?}; import total {import:.2?} = {:.0} rows/s (+ generating the CSV {generated:.2?})",
        n as f64 / (parse + import).as_secs_f64()
    );
    let started = Instant::now();
    let report = store
        .import(&parsed.rows, &options, &mut |_| {})
        .await
        .unwrap();
    eprintln!(
        "the same 1M again (all unchanged): {:.2?} (load {:.2?}, check {:.2?})",
        started.elapsed(),
        report.elapsed[0],
        report.elapsed[1]
    );
    assert_eq!(report.counts.unchanged, n);
    let started = Instant::now();
    let bytes = export(&store, Format::Csv).await;
    eprintln!(
        "export of 1M: {:.2?}, {} MB",
        started.elapsed(),
        bytes.len() / 1_000_000
    );
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used = info
        .lines()
        .find(|l| l.starts_with("used_memory_human"))
        .unwrap_or("");
    eprintln!("redis {used}");
}

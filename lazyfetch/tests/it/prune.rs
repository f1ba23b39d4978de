//! prune and purge on a cache filled from a real Garage.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lazyfetch::layout::{DERIVATIVES_ACCESS_FILE, DERIVATIVES_ID_FILE};
use lazyfetch::size::{ByteSize, Percent};
use lazyfetch::{CacheLayout, PruneOptions};
use stack::Garage;

use crate::support::{cache_config, content, files_under, masters_config, node};

const KIB: u64 = 1024;

fn set_mtime(path: &Path, age: Duration) {
    File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// Derivatives for an image, as the gateway writes them: files, `.id`, `.access`.
fn add_derivatives(layout: &CacheLayout, identifier: &str, bytes: usize, age: Duration) {
    let dir = layout.derivatives_dir(identifier);
    std::fs::create_dir_all(dir.join("full")).unwrap();
    std::fs::write(dir.join("full/default.jpg"), vec![1u8; bytes]).unwrap();
    std::fs::write(dir.join(DERIVATIVES_ID_FILE), identifier).unwrap();
    std::fs::write(dir.join(DERIVATIVES_ACCESS_FILE), b"").unwrap();
    set_mtime(&dir.join(DERIVATIVES_ACCESS_FILE), age);
}

/// Prune removes nothing below the high watermark; above it, least recently used units first
/// (small masters weighted to stay longer), each with its derivatives, down to the low
/// watermark; a removed master is fetched again on its next use.
#[tokio::test]
async fn prune_respects_watermarks_weighting_and_takes_derivatives() {
    let garage = Garage::new();
    let root = tempfile::tempdir().unwrap();
    let mut cache = cache_config(root.path());
    cache.small_master_bytes = ByteSize(50 * KIB);
    cache.small_master_weight = 10.0;
    let node = node(&cache, &masters_config(&garage, None)).await;
    let layout = node.fetch.layout().clone();

    // (identifier, master size, last access age): big-old, big-older, small-oldest, big-new.
    let images = [
        ("big-old", 300 * KIB, hours(10)),
        ("big-older", 300 * KIB, hours(20)),
        ("small-oldest", 20 * KIB, hours(50)),
        ("big-new", 300 * KIB, hours(1)),
    ];
    let mut copies = HashMap::new();
    for (n, (id, size, age)) in images.iter().enumerate() {
        garage.put(id, content(*size as usize, n as u8)).await;
        let master = node.fetch.ensure(id).await.unwrap();
        copies.insert(*id, root.path().join(master.fif));
        set_mtime(&layout.sidecar_path(id), *age);
    }
    // Derivatives of a master: younger .access than the sidecar makes the unit younger.
    add_derivatives(&layout, "big-older", 100 * KIB as usize, hours(20));
    // A unit with derivatives only (a local master), the oldest of all.
    add_derivatives(&layout, "local-only", 50 * KIB as usize, hours(100));

    let stats = lazyfetch::stats(&layout, &cache).unwrap();
    assert_eq!(stats.units, 5);
    assert_eq!(stats.masters, 4);
    let total = stats.bytes;

    // Budget so the cache is above high: total = 100%+ of budget.
    let budget = ByteSize(total * 10 / 11); // cache is 110% of the budget
    let options = |dry_run| PruneOptions {
        dry_run,
        budget: Some(budget),
        high_watermark: Some("95%".parse::<Percent>().unwrap()),
        low_watermark: Some("60%".parse::<Percent>().unwrap()),
    };
    // Below the high watermark: nothing.
    let calm = lazyfetch::prune(
        &layout,
        &cache,
        PruneOptions {
            budget: Some(ByteSize(total * 2)),
            ..PruneOptions::default()
        },
    )
    .unwrap();
    assert!(calm.removed.is_empty());

    let dry = lazyfetch::prune(&layout, &cache, options(true)).unwrap();
    let files_before = files_under(root.path());
    assert!(!dry.removed.is_empty());
    assert_eq!(
        files_under(root.path()),
        files_before,
        "a dry run removes nothing"
    );

    let report = lazyfetch::prune(&layout, &cache, options(false)).unwrap();
    let removed: Vec<_> = report
        .removed
        .iter()
        .map(|u| u.identifier.clone().unwrap())
        .collect();
    // Order: local-only (100 h), big-older (20 h), big-old (10 h); small-oldest (50 h / 10 =
    // 5 h weighted) outlives big-old, and the cache is under 60% before big-new is reached.
    assert_eq!(
        removed,
        ["local-only", "big-older", "big-old"],
        "{report:#?}"
    );
    assert_eq!(
        dry.removed
            .iter()
            .map(|u| u.key.clone())
            .collect::<Vec<_>>(),
        report
            .removed
            .iter()
            .map(|u| u.key.clone())
            .collect::<Vec<_>>(),
        "the dry run listed exactly what the real run removed"
    );
    assert!(report.after_bytes <= report.low_bytes);
    assert_eq!(report.before_bytes - report.freed_bytes, report.after_bytes);
    for id in ["local-only", "big-older", "big-old"] {
        if let Some(copy) = copies.get(id) {
            assert!(!copy.exists(), "{id} master");
        }
        assert!(!layout.sidecar_path(id).exists(), "{id} sidecar");
        assert!(!layout.derivatives_dir(id).exists(), "{id} derivatives");
    }
    for id in ["small-oldest", "big-new"] {
        assert!(copies[id].exists(), "{id} stays");
    }
    assert_eq!(
        lazyfetch::stats(&layout, &cache).unwrap().bytes,
        report.after_bytes
    );

    // Safe while serving: the next request for a pruned master fetches it again.
    let again = node.fetch.ensure("big-old").await.unwrap();
    assert!(root.path().join(again.fif).exists());
}

/// A unit used between prune's scan and its removal is spared (the gateway is serving it);
/// downloads left in tmp/ for over an hour go, recent ones stay.
#[tokio::test]
async fn prune_spares_units_used_after_its_scan_and_removes_stale_tmp() {
    let garage = Garage::new();
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let node = node(&cache, &masters_config(&garage, None)).await;
    let layout = node.fetch.layout().clone();
    let mut copies = HashMap::new();
    for id in ["used", "idle"] {
        garage.put(id, content(10_000, 1)).await;
        let master = node.fetch.ensure(id).await.unwrap();
        copies.insert(id, root.path().join(master.fif));
        set_mtime(&layout.sidecar_path(id), hours(5));
    }
    let stale = layout.tmp_dir().join("dead.1-2-3.part");
    let recent = layout.tmp_dir().join("live.1-2-4.part");
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&recent, b"partial").unwrap();
    set_mtime(&stale, hours(2));

    // A 1-byte budget: every unit must go.
    let options = PruneOptions {
        budget: Some(ByteSize(1)),
        ..PruneOptions::default()
    };
    let plan = lazyfetch::prune::plan(&layout, &cache, &options, SystemTime::now()).unwrap();
    // The gateway serves "used" now: its stamp is touched after the scan.
    set_mtime(&layout.sidecar_path("used"), Duration::ZERO);
    let report = plan.apply(&layout);

    assert_eq!(report.spared_in_use, 1);
    let removed: Vec<_> = report
        .removed
        .iter()
        .map(|u| u.identifier.clone().unwrap())
        .collect();
    assert_eq!(removed, ["idle"]);
    assert!(copies["used"].exists());
    assert!(!copies["idle"].exists());
    assert_eq!(report.stale_tmp_removed, std::slice::from_ref(&stale));
    assert!(!stale.exists() && recent.exists());
}

/// Issue acceptance: purge removes exactly one image's files.
#[tokio::test]
async fn purge_removes_exactly_one_images_files() {
    let garage = Garage::new();
    let root = tempfile::tempdir().unwrap();
    let node = node(&cache_config(root.path()), &masters_config(&garage, None)).await;
    let layout = node.fetch.layout().clone();
    let mut copies = HashMap::new();
    for (n, id) in ["keep", "Zoë café/1"].iter().enumerate() {
        garage.put(id, content(5000, n as u8)).await;
        let master = node.fetch.ensure(id).await.unwrap();
        copies.insert(*id, root.path().join(master.fif));
        add_derivatives(&layout, id, 3000, hours(1));
    }
    let before = files_under(root.path());
    let report = node.fetch.purge("Zoë café/1").await.unwrap();
    let after = files_under(root.path());
    let gone: Vec<_> = before
        .iter()
        .filter(|f| !after.contains(f))
        .cloned()
        .collect();
    let mut reported: Vec<_> = report.removed.iter().map(|f| f.path.clone()).collect();
    reported.sort();
    assert_eq!(gone, reported, "the report lists exactly the removed files");
    assert_eq!(
        gone.len(),
        5,
        "master, sidecar, tile, .id, .access: {gone:#?}"
    );
    assert_eq!(
        report.bytes,
        5000 + report.removed[1].bytes + 3000 + "Zoë café/1".len() as u64
    );
    assert!(after
        .iter()
        .all(|f| !f.starts_with(layout.derivatives_dir("Zoë café/1"))));
    assert!(copies["keep"].exists() && layout.derivatives_dir("keep").exists());
    assert!(node.fetch.purge("Zoë café/1").await.unwrap().is_empty());
    // And the image comes back on the next request.
    assert!(node.fetch.ensure("Zoë café/1").await.is_ok());
}

/// Master files no sidecar names: an old copy a replacement left (a crash), a master from
/// before versioned names beside its image's current copy, and one whose image has nothing
/// else. stats counts them apart; prune removes them whatever the watermarks once they are
/// older than ORPHAN_AGE (not before: a copy may be waiting for its sidecar), and leaves every
/// current copy; purge removes them with their image.
#[tokio::test]
async fn orphaned_and_unversioned_copies_are_counted_apart_and_removed() {
    let garage = Garage::new();
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let node = node(&cache, &masters_config(&garage, None)).await;
    let layout = node.fetch.layout().clone();
    let mut current = HashMap::new();
    for (n, id) in ["a", "b"].iter().enumerate() {
        garage.put(id, content(4000, n as u8)).await;
        let master = node.fetch.ensure(id).await.unwrap();
        current.insert(*id, root.path().join(master.fif));
    }
    let unversioned = |id: &str| -> PathBuf {
        let key = CacheLayout::image_key(id);
        layout.masters_dir_for_key(&key).join(key)
    };
    let old_copy = layout.master_path("a", "an-old-version");
    std::fs::write(&old_copy, vec![0u8; 300]).unwrap();
    std::fs::write(unversioned("a"), vec![0u8; 200]).unwrap();
    let lone = unversioned("lone");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::write(&lone, vec![0u8; 100]).unwrap();

    let stats = lazyfetch::stats(&layout, &cache).unwrap();
    assert_eq!((stats.units, stats.masters), (2, 2), "{stats:#?}");
    assert_eq!(stats.master_bytes, 8000);
    assert_eq!((stats.orphans, stats.orphan_bytes), (3, 600));

    // Nothing above the watermark, and the orphans are new: nothing goes.
    let calm = lazyfetch::prune(&layout, &cache, PruneOptions::default()).unwrap();
    assert!(calm.orphans_removed.is_empty() && calm.removed.is_empty());
    assert!(old_copy.exists());

    let later = SystemTime::now() + lazyfetch::prune::ORPHAN_AGE + Duration::from_secs(60);
    let dry = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let listed = lazyfetch::prune::prune_at(&layout, &cache, &dry, later).unwrap();
    assert_eq!(listed.orphans_removed.len(), 3);
    assert!(old_copy.exists(), "a dry run removes nothing");

    let report =
        lazyfetch::prune::prune_at(&layout, &cache, &PruneOptions::default(), later).unwrap();
    let mut removed = report.orphans_removed.clone();
    removed.sort();
    let mut expected = vec![old_copy.clone(), unversioned("a"), lone.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(report.orphan_bytes, 600);
    assert!(report.removed.is_empty(), "no image went: {report:#?}");
    assert!(report.errors.is_empty(), "{report:#?}");
    for path in &expected {
        assert!(!path.exists(), "{}", path.display());
    }
    assert!(current["a"].exists() && current["b"].exists());
    let stats = lazyfetch::stats(&layout, &cache).unwrap();
    assert_eq!((stats.orphans, stats.masters), (0, 2));
    // The current copies are served as they were.
    node.fetch.ensure("a").await.unwrap();
    assert_eq!(node.fetches("downloaded"), 2);

    // purge takes every file of its image, orphans included, and nothing of another.
    let b_old = layout.master_path("b", "an-old-version");
    std::fs::write(&b_old, vec![0u8; 10]).unwrap();
    std::fs::write(unversioned("b"), vec![0u8; 20]).unwrap();
    let purged = node.fetch.purge("b").await.unwrap();
    assert_eq!(purged.removed.len(), 4, "{purged:#?}");
    assert!(!b_old.exists() && !unversioned("b").exists() && !current["b"].exists());
    assert!(!layout.sidecar_path("b").exists());
    assert!(current["a"].exists());
}

//! ensure(): single flight, freshness and revalidation, outages, against a real Garage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lazyfetch::{CacheLayout, FetchError};
use stack::{FaultProxy, Garage};

use crate::support::{cache_config, content, files_under, masters_config, node};

/// Issue acceptance: 100 concurrent first requests for one master → exactly one GET reaches S3.
/// The download is held mid-body by a proxy until all 100 calls are waiting on it, so the test
/// proves the sharing instead of hoping the calls overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_first_requests_make_one_get() {
    let garage = Garage::new();
    let master = content(3 << 20, 1);
    garage.put("maps/one.tif", master.clone()).await;
    let proxy = FaultProxy::new(([127, 0, 0, 1], garage.s3_port()).into());
    proxy.hold_after(64 << 10);
    let root = tempfile::tempdir().unwrap();
    let node = node(
        &cache_config(root.path()),
        &masters_config(&garage, Some(proxy.endpoint())),
    )
    .await;
    let gets_before = garage.s3_requests("GetObject");

    let calls: Vec<_> = (0..100)
        .map(|_| {
            let fetch = Arc::clone(&node.fetch);
            tokio::spawn(async move { fetch.ensure("maps/one.tif").await })
        })
        .collect();
    assert!(
        proxy.wait_until_holding(Duration::from_secs(20)),
        "the download never started"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.metric("iiif_masters_single_flight_waits_total", None) < 99.0 {
        assert!(
            Instant::now() < deadline,
            "not all 100 calls joined the download"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.release();

    let mut copies = Vec::new();
    for call in calls {
        let master = call.await.unwrap().expect("every call gets the master");
        copies.push((master.version, master.fif));
    }
    copies.dedup();
    assert_eq!(copies.len(), 1, "one copy for all: {copies:?}");
    assert_eq!(node.fetches("downloaded"), 1, "lazyfetch counted one GET");
    assert_eq!(
        garage.s3_requests("GetObject") - gets_before,
        1,
        "Garage counted one GetObject"
    );
    assert_eq!(
        node.metric("iiif_masters_single_flight_waits_total", None),
        99.0
    );
    let layout = node.fetch.layout();
    assert_eq!(
        std::fs::read(layout.root().join(&copies[0].1)).unwrap(),
        master
    );
    assert!(
        files_under(&layout.tmp_dir()).is_empty(),
        "no tmp file left"
    );
}

/// The hot path answers from memory plus one stat: no request reaches S3.
#[tokio::test]
async fn present_master_is_served_without_asking_s3() {
    let garage = Garage::new();
    garage.put("a", content(1000, 2)).await;
    let root = tempfile::tempdir().unwrap();
    let node = node(&cache_config(root.path()), &masters_config(&garage, None)).await;
    let first = node.fetch.ensure("a").await.unwrap();
    assert!(!first.replaced);
    let layout = CacheLayout::new(root.path().to_owned());
    assert_eq!(first.fif, layout.master_fif("a", &first.version));
    // The master's mtime is S3's Last-Modified, as the sidecar says.
    let mtime = std::fs::metadata(layout.master_path("a", &first.version))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, first.last_modified);
    let gets = garage.s3_requests("GetObject");
    for _ in 0..20 {
        assert_eq!(node.fetch.ensure("a").await.unwrap(), first);
    }
    assert_eq!(garage.s3_requests("GetObject"), gets);
    assert_eq!(node.fetches("downloaded"), 1);
}

/// Issue acceptance: an object changed in S3 is picked up after the TTL; the replacing call
/// reports `replaced`, a new version and a new file (iipsrv caches image headers by path), the
/// old copy and the old derivatives go; an unchanged one costs a 304.
#[tokio::test]
async fn changed_object_is_picked_up_after_the_ttl() {
    let garage = Garage::new();
    garage.put("img", content(2000, 3)).await;
    let root = tempfile::tempdir().unwrap();
    let mut masters = masters_config(&garage, None);
    masters.revalidate_after_s = 1;
    let node = node(&cache_config(root.path()), &masters).await;
    let layout = node.fetch.layout().clone();

    let old = node.fetch.ensure("img").await.unwrap();
    let derivatives = layout.derivatives_dir("img");
    std::fs::create_dir_all(&derivatives).unwrap();
    std::fs::write(derivatives.join("tile.jpg"), b"old tile").unwrap();

    let new_content = content(2500, 4);
    garage.put("img", new_content.clone()).await;
    // Within the TTL the cached copy is served without asking.
    assert_eq!(node.fetch.ensure("img").await.unwrap().version, old.version);
    assert_eq!(node.fetches("downloaded"), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = node.fetch.ensure("img").await.unwrap();
    assert!(new.replaced, "the call that swapped the master says so");
    assert_ne!(new.version, old.version);
    assert_ne!(new.fif, old.fif, "a new version gets a new path");
    assert_eq!(
        std::fs::read(root.path().join(&new.fif)).unwrap(),
        new_content
    );
    assert_eq!(
        files_under(&root.path().join("masters")),
        {
            let mut files = vec![root.path().join(&new.fif), layout.sidecar_path("img")];
            files.sort();
            files
        },
        "the old copy is gone"
    );
    assert!(
        !derivatives.exists(),
        "the old derivatives went with the old master"
    );
    assert_eq!(node.revalidations("replaced"), 1);
    // The next call sees the same new copy, not "replaced" again.
    let again = node.fetch.ensure("img").await.unwrap();
    assert!(!again.replaced);
    assert_eq!(again.version, new.version);

    // Unchanged after the TTL: a conditional GET answered 304, the copy stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let inode = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(root.path().join(&new.fif)).unwrap(),
    );
    let confirmed = node.fetch.ensure("img").await.unwrap();
    assert_eq!(confirmed.version, new.version);
    assert_eq!(confirmed.fif, new.fif);
    assert!(!confirmed.replaced);
    assert_eq!(node.fetches("not_modified"), 1);
    assert_eq!(node.revalidations("unchanged"), 1);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(root.path().join(&new.fif)).unwrap()
        ),
        inode,
        "a 304 does not rewrite the master"
    );

    // Deleted from S3: after the TTL the image is gone, and so is its cached copy.
    garage.delete("img").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(node.fetch.ensure("img").await, Err(FetchError::NotFound));
    assert!(files_under(&root.path().join("masters")).is_empty());
    assert_eq!(node.revalidations("gone"), 1);
}

#[tokio::test]
async fn missing_object_and_no_rule_are_not_found() {
    let garage = Garage::new();
    let root = tempfile::tempdir().unwrap();
    let mut masters = masters_config(&garage, None);
    masters.rules[0].pattern = "^img/(.+)$".into();
    let node = node(&cache_config(root.path()), &masters).await;
    assert_eq!(
        node.fetch.ensure("img/nothing").await,
        Err(FetchError::NotFound)
    );
    assert_eq!(node.fetch.ensure("other").await, Err(FetchError::NoRule));
    assert_eq!(node.fetches("not_found"), 1);
    assert!(files_under(root.path()).is_empty());
}

/// Issue acceptance: S3 stopped → cached images still served, uncached ones get Unavailable
/// quickly (well before the download timeout), and everything works again once S3 is back.
#[tokio::test]
async fn s3_outage_serves_cached_masters_and_fails_uncached_fast() {
    let garage = Garage::new();
    garage.put("cached", content(5000, 5)).await;
    garage.put("uncached", content(5000, 6)).await;
    let root = tempfile::tempdir().unwrap();
    let mut masters = masters_config(&garage, None);
    masters.revalidate_after_s = 1;
    masters.download_timeout_s = 60;
    masters.unavailable_retry_after_s = 2;
    let node = node(&cache_config(root.path()), &masters).await;
    let cached = node.fetch.ensure("cached").await.unwrap();

    garage.stop();
    // Fresh: served from disk.
    assert_eq!(node.fetch.ensure("cached").await.unwrap(), cached);
    let started = Instant::now();
    let error = node.fetch.ensure("uncached").await.unwrap_err();
    let first_failure = started.elapsed();
    assert!(
        matches!(error, FetchError::Unavailable { retry_after, .. } if retry_after == Duration::from_secs(2)),
        "{error:?}"
    );
    println!("uncached during the outage: first failure after {first_failure:?}");
    assert!(
        first_failure < Duration::from_secs(6),
        "{first_failure:?}: not well before the 60 s download timeout"
    );
    // S3 failed moments ago: the next caller is not made to wait for retries again.
    let started = Instant::now();
    assert!(matches!(
        node.fetch.ensure("uncached").await,
        Err(FetchError::Unavailable { .. })
    ));
    let second_failure = started.elapsed();
    println!("uncached during the outage: second failure after {second_failure:?}");
    assert!(
        second_failure < Duration::from_millis(500),
        "{second_failure:?}"
    );
    // Due for revalidation, S3 down: still served, counted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        node.fetch.ensure("cached").await.unwrap().version,
        cached.version
    );
    assert!(node.revalidations("unavailable") >= 1);

    garage.start();
    // The outage memory holds S3 off for at most unavailable_retry_after_s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        match node.fetch.ensure("uncached").await {
            Ok(master) => break master,
            Err(FetchError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("after S3 came back: {error:?}"),
        }
    };
    assert!(!recovered.replaced);
    assert!(root.path().join(&recovered.fif).exists());
}

/// An identifier's master is fetched again after prune or purge removed it under the gateway
/// (what `refetch` is for: iipsrv could not open the file it was given).
#[tokio::test]
async fn refetch_after_the_file_was_removed() {
    let garage = Garage::new();
    garage.put("x", content(4000, 7)).await;
    let root = tempfile::tempdir().unwrap();
    let node = node(&cache_config(root.path()), &masters_config(&garage, None)).await;
    let first = node.fetch.ensure("x").await.unwrap();
    let report = lazyfetch::purge(node.fetch.layout(), "x").unwrap();
    assert_eq!(report.removed.len(), 2);
    let again = node.fetch.refetch("x").await.unwrap();
    assert_eq!(again.version, first.version);
    assert_eq!(again.fif, first.fif, "same version, same name");
    assert!(!again.replaced, "same content: not a replacement");
    assert!(root.path().join(&again.fif).exists());
    assert_eq!(node.fetches("downloaded"), 2);
    // ensure() alone notices a removed file too (one stat per call).
    std::fs::remove_file(root.path().join(&again.fif)).unwrap();
    assert!(node.fetch.ensure("x").await.is_ok());
    assert_eq!(node.fetches("downloaded"), 3);
}

/// info.json warm-up: the master is fetched in the background.
#[tokio::test]
async fn warm_fetches_in_the_background() {
    let garage = Garage::new();
    garage.put("w", content(3000, 8)).await;
    let root = tempfile::tempdir().unwrap();
    let node = node(&cache_config(root.path()), &masters_config(&garage, None)).await;
    node.fetch.warm("w");
    node.fetch.warm("not-there");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.metric("iiif_masters_warmups_total", None) < 2.0 {
        assert!(Instant::now() < deadline, "warm-ups did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        node.metric("iiif_masters_warmups_total", Some(("outcome", "ok"))),
        1.0
    );
    assert_eq!(
        node.metric("iiif_masters_warmups_total", Some(("outcome", "not_found"))),
        1.0
    );
    let master = node.fetch.ensure("w").await.unwrap();
    assert!(root.path().join(&master.fif).exists());
    assert_eq!(node.fetches("downloaded"), 1, "already there");
}

/// Two processes on one cache mount: when one replaces a master, the other, whose remembered
/// copy vanished, follows the sidecar to the new copy without downloading it again.
#[tokio::test]
async fn a_replacement_by_another_node_is_followed_through_the_sidecar() {
    let garage = Garage::new();
    garage.put("shared", content(3000, 20)).await;
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let mut masters = masters_config(&garage, None);
    masters.revalidate_after_s = 1;
    let (a, b) = (node(&cache, &masters).await, node(&cache, &masters).await);
    let old = a.fetch.ensure("shared").await.unwrap();
    assert_eq!(b.fetch.ensure("shared").await.unwrap(), old);

    garage.put("shared", content(3500, 21)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = a.fetch.ensure("shared").await.unwrap();
    assert!(new.replaced && new.fif != old.fif);
    assert!(!root.path().join(&old.fif).exists());

    let seen_by_b = b.fetch.ensure("shared").await.unwrap();
    assert_eq!(seen_by_b.fif, new.fif);
    assert_eq!(seen_by_b.version, new.version);
    assert!(seen_by_b.replaced, "new to B: it drops what it derived");
    assert_eq!(b.fetches("downloaded"), 0);
    assert_eq!(a.fetches("downloaded"), 2);
}

/// A cache written before versioned names: the master `{k}` beside its sidecar. It is never
/// served (iipsrv may have cached the header of that path); the next use downloads a versioned
/// copy and removes the old file, keeping the derivatives when the version is the same.
#[tokio::test]
async fn an_unversioned_master_is_never_served_and_goes_at_the_next_download() {
    let garage = Garage::new();
    let bytes = content(2000, 22);
    garage.put("legacy", bytes.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let masters = masters_config(&garage, None);
    let first = node(&cache, &masters).await;
    let master = first.fetch.ensure("legacy").await.unwrap();
    let layout = first.fetch.layout().clone();
    let key = CacheLayout::image_key("legacy");
    let unversioned = layout.masters_dir_for_key(&key).join(&key);
    std::fs::rename(root.path().join(&master.fif), &unversioned).unwrap();
    let derivatives = layout.derivatives_dir("legacy");
    std::fs::create_dir_all(&derivatives).unwrap();
    std::fs::write(derivatives.join("tile.jpg"), b"tile").unwrap();

    // A gateway started on that cache.
    let upgraded = node(&cache, &masters).await;
    let again = upgraded.fetch.ensure("legacy").await.unwrap();
    assert_eq!(again.fif, master.fif);
    assert_eq!(again.version, master.version);
    assert!(!again.replaced, "same version");
    assert_eq!(
        upgraded.fetches("downloaded"),
        1,
        "the old file was not served"
    );
    assert_eq!(std::fs::read(root.path().join(&again.fif)).unwrap(), bytes);
    assert!(!unversioned.exists(), "the unversioned master is gone");
    assert!(
        derivatives.join("tile.jpg").exists(),
        "same version: derivatives stay"
    );
}

/// Startup refuses bad values with every key named, and an unreadable secret file.
#[tokio::test]
async fn startup_errors_name_the_key() {
    let root = tempfile::tempdir().unwrap();
    let garage_free = lazyfetch::config::S3Config {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let mut masters = lazyfetch::config::MastersConfig {
        s3: garage_free,
        rules: vec![lazyfetch::config::RuleConfig {
            pattern: "^(a$".into(),
            bucket: "b".into(),
            key: "${2}".into(),
            bucket_from_identifier: false,
        }],
        revalidate_after_s: 1,
        max_concurrent_downloads: 0,
        max_concurrent_lookups: 1,
        max_pending_lookups: 1,
        miss_ttl_s: 0,
        max_master_bytes: lazyfetch::size::ByteSize(1),
        download_timeout_s: 1,
        unavailable_retry_after_s: 1,
        lock: None,
    };
    let mut cache = cache_config(root.path());
    cache.low_watermark = "95%".parse().unwrap();
    let registry = prometheus::Registry::new();
    let error = match lazyfetch::LazyFetch::new(&cache, &masters, &registry).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("accepted a bad configuration"),
    };
    for key in [
        "gateway.cache.low_watermark",
        "gateway.masters.rules[0].match: invalid regex",
        "gateway.masters.max_concurrent_downloads",
    ] {
        assert!(error.contains(key), "{key} missing in:\n{error}");
    }

    masters.rules[0].pattern = "^(a)$".into();
    masters.rules[0].key = "${1}".into();
    masters.max_concurrent_downloads = 1;
    masters.s3.access_key_id = Some("GK1".into());
    masters.s3.secret_access_key_file = Some(root.path().join("no-such-secret"));
    let cache = cache_config(root.path());
    let error = match lazyfetch::LazyFetch::new(&cache, &masters, &registry).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("accepted a missing secret file"),
    };
    assert!(
        error.starts_with("gateway.masters.s3.secret_access_key_file: ")
            && error.contains("no-such-secret"),
        "{error}"
    );
}

//! Two gateway nodes sharing one cache mount: the Redis lock keeps them to one download.

use std::time::{Duration, Instant};

use stack::{FaultProxy, Garage, Redis};

use crate::support::{cache_config, content, lock_config, masters_config, node};

/// Node A takes the lock and downloads (held mid-body by the proxy); node B, asked for the same
/// master meanwhile, waits for the lock instead of downloading, then serves A's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_root_make_one_get() {
    let garage = Garage::new();
    let redis = Redis::new();
    let master = content(2 << 20, 11);
    garage.put("shared.tif", master.clone()).await;
    let proxy = FaultProxy::new(([127, 0, 0, 1], garage.s3_port()).into());
    proxy.hold_after(64 << 10);
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let mut masters = masters_config(&garage, Some(proxy.endpoint()));
    masters.lock = Some(lock_config(redis.url()));
    let (a, b) = (node(&cache, &masters).await, node(&cache, &masters).await);
    let gets_before = garage.s3_requests("GetObject");

    let fetch_a = a.fetch.clone();
    let call_a = tokio::spawn(async move { fetch_a.ensure("shared.tif").await });
    assert!(
        tokio::task::block_in_place(|| proxy.wait_until_holding(Duration::from_secs(20))),
        "node A never started downloading"
    );
    let fetch_b = b.fetch.clone();
    let call_b = tokio::spawn(async move { fetch_b.ensure("shared.tif").await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.metric("iiif_masters_lock_waits_total", None) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "node B did not wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.release();

    let master_a = call_a.await.unwrap().unwrap();
    let master_b = call_b.await.unwrap().unwrap();
    assert_eq!(master_a.version, master_b.version);
    assert_eq!(master_a.fif, master_b.fif);
    assert_eq!(a.fetches("downloaded"), 1);
    assert_eq!(b.fetches("downloaded"), 0);
    assert_eq!(
        garage.s3_requests("GetObject") - gets_before,
        1,
        "Garage counted one GetObject"
    );
    assert_eq!(
        std::fs::read(root.path().join(&master_b.fif)).unwrap(),
        master
    );
}

/// Redis unreachable: the lock is skipped (logged), the download goes ahead.
#[tokio::test]
async fn redis_down_does_not_block_downloads() {
    let garage = Garage::new();
    garage.put("solo", content(1000, 12)).await;
    let mut redis = Redis::new();
    let url = redis.url();
    redis.kill();
    let root = tempfile::tempdir().unwrap();
    let mut masters = masters_config(&garage, None);
    masters.lock = Some(lock_config(url));
    let node = node(&cache_config(root.path()), &masters).await;
    let started = Instant::now();
    let fetched = node.fetch.ensure("solo").await.unwrap();
    println!("download without Redis took {:?}", started.elapsed());
    assert!(root.path().join(&fetched.fif).exists());
    assert_eq!(node.metric("iiif_masters_lock_waits_total", None), 0.0);
}

//! Downloads that die half-way leave no visible file (issue acceptance), whether the process's
//! runtime goes away mid-body or the connection to S3 breaks.

use std::time::Duration;

use lazyfetch::FetchError;
use stack::{FaultProxy, Garage};

use crate::support::{cache_config, content, files_under, masters_config, node};

const BIG: usize = 8 << 20;

/// The runtime running the download is shut down while the body is half-way (what a gateway
/// being stopped does to its tasks): the tmp file is removed and nothing appears under masters/.
/// A new instance on the same cache then downloads the master whole.
#[test]
fn download_killed_half_way_leaves_no_file() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let garage = Garage::new();
    let master = content(BIG, 9);
    main.block_on(garage.put("big.tif", master.clone()));
    let proxy = FaultProxy::new(([127, 0, 0, 1], garage.s3_port()).into());
    proxy.hold_after(1 << 20);
    let root = tempfile::tempdir().unwrap();
    let cache = cache_config(root.path());
    let masters = masters_config(&garage, Some(proxy.endpoint()));

    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let doomed_node = doomed.block_on(node(&cache, &masters));
    let fetch = doomed_node.fetch.clone();
    let _call = doomed.spawn(async move { fetch.ensure("big.tif").await });
    assert!(
        proxy.wait_until_holding(Duration::from_secs(20)),
        "the download never started"
    );
    // Part of the body is in a tmp file, none of it under masters/.
    let tmp_dir = root.path().join("tmp");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files_under(&tmp_dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no tmp file while downloading"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(files_under(&root.path().join("masters")).is_empty());

    doomed.shutdown_timeout(Duration::from_secs(10));
    drop(doomed_node);
    assert!(
        files_under(&root.path().join("masters")).is_empty(),
        "no master appeared"
    );
    assert!(
        files_under(&tmp_dir).is_empty(),
        "the partial tmp file was removed"
    );

    proxy.release();
    let fresh = main.block_on(node(&cache, &masters));
    let fetched = main.block_on(fresh.fetch.ensure("big.tif")).unwrap();
    assert!(!fetched.replaced);
    assert_eq!(
        std::fs::read(root.path().join(&fetched.fif)).unwrap(),
        master
    );
    assert!(files_under(&tmp_dir).is_empty());
}

/// The connection to S3 breaks mid-body: the call fails as Unavailable, nothing is left behind,
/// and the next call downloads the master whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_body_leaves_no_file() {
    let garage = Garage::new();
    let master = content(BIG, 10);
    garage.put("cut.tif", master.clone()).await;
    let proxy = FaultProxy::new(([127, 0, 0, 1], garage.s3_port()).into());
    proxy.hold_after(1 << 20);
    let root = tempfile::tempdir().unwrap();
    let node = node(
        &cache_config(root.path()),
        &masters_config(&garage, Some(proxy.endpoint())),
    )
    .await;

    let fetch = node.fetch.clone();
    let call = tokio::spawn(async move { fetch.ensure("cut.tif").await });
    assert!(
        tokio::task::block_in_place(|| proxy.wait_until_holding(Duration::from_secs(20))),
        "the download never started"
    );
    proxy.cut();
    let error = call.await.unwrap().unwrap_err();
    assert!(matches!(error, FetchError::Unavailable { .. }), "{error:?}");
    assert_eq!(node.fetches("unavailable"), 1);
    assert!(files_under(&root.path().join("masters")).is_empty());
    assert!(files_under(&root.path().join("tmp")).is_empty());

    // The proxy passes everything again; the body broke after S3 answered, so S3 itself is not
    // held off and the next call downloads.
    let fetched = node.fetch.ensure("cut.tif").await.unwrap();
    assert_eq!(
        std::fs::read(root.path().join(&fetched.fif)).unwrap(),
        master
    );
}

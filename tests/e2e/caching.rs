//! The derivative cache and HTTP revalidation, against real iipsrv: what is rendered once, what
//! is answered 304, what a purge removes.

use std::path::{Path, PathBuf};

use lazyfetch::config::CacheConfig;
use lazyfetch::size::ByteSize;
use reqwest::StatusCode;

use crate::support::{
    all_files, client, configure, get, iipsrv_image_requests, metric_line, metrics, purge,
    temporary_files, Stack, StackOptions, TinyMount, ADMIN_TOKEN,
};

const ONE_GIB: ByteSize = ByteSize(1 << 30);

/// A stack with a derivative cache in its scratch directory (masters read by iipsrv itself).
fn cached_stack(max_output_pixels: u64) -> Stack {
    Stack::start_with(StackOptions {
        configure: configure(move |raw, scratch| {
            raw.cache = Some(CacheConfig::new(scratch.join("cache"), ONE_GIB));
            raw.derivatives.max_output_pixels = max_output_pixels;
            raw.admin.token = Some(ADMIN_TOKEN.into());
        }),
        ..StackOptions::default()
    })
}

fn cache_root(stack: &Stack) -> PathBuf {
    stack.scratch.join("cache")
}

/// Every derivative file under the cache (not the `.id`/`.access` bookkeeping files).
fn derivative_files(root: &Path) -> Vec<PathBuf> {
    all_files(&root.join("derivatives"))
        .into_iter()
        .filter(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// The derivative directories of the cache, one per image.
fn image_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = derivative_files(root)
        .into_iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.dedup();
    dirs
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Waits until the background write of a derivative has landed (it happens after the reply).
async fn wait_for_files(root: &Path, count: usize) {
    for _ in 0..200 {
        if derivative_files(root).len() >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "expected {count} derivative files, found {:?}",
        derivative_files(root)
    );
}

#[tokio::test]
async fn a_second_identical_request_is_served_without_iipsrv() {
    let stack = cached_stack(1 << 20);
    let path = "/iiif/3/astronaut/0,0,256,256/256,256/0/default.jpg";
    let first = get(&stack, path).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let first_body = first.bytes().await.unwrap();
    wait_for_files(&cache_root(&stack), 1).await;
    assert_eq!(iipsrv_image_requests(&stack).await, 1);

    let second = get(&stack, path).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header(&second, "etag"), etag);
    assert_eq!(
        header(&second, "content-length"),
        first_body.len().to_string()
    );
    assert_eq!(second.bytes().await.unwrap(), first_body);
    assert_eq!(
        iipsrv_image_requests(&stack).await,
        1,
        "the hit reached iipsrv"
    );
    assert_eq!(derivative_files(&cache_root(&stack)).len(), 1);

    // A HEAD of a cached derivative has the GET's exact length (and still no iipsrv request).
    let head = client().head(stack.url(path)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "etag"), etag);
    assert_eq!(
        header(&head, "content-length"),
        first_body.len().to_string()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(iipsrv_image_requests(&stack).await, 1);
}

#[tokio::test]
async fn v2_and_v3_forms_of_the_same_pixels_share_one_entry() {
    let stack = cached_stack(1 << 20);
    let v2 = get(&stack, "/iiif/2/hubble/0,0,512,512/256,/0/default.jpg").await;
    assert_eq!(v2.status(), StatusCode::OK);
    let etag = header(&v2, "etag");
    let v2_body = v2.bytes().await.unwrap();
    wait_for_files(&cache_root(&stack), 1).await;
    for path in [
        "/iiif/3/hubble/0,0,512,512/256,256/0/default.jpg",
        "/iiif/3/hubble/0,0,512,512/256,/0/default.jpg",
        "/iiif/2/hubble/0,0,512,512/pct:50/0/default.jpg",
    ] {
        let response = get(&stack, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "etag"), etag, "{path}");
        assert_eq!(response.bytes().await.unwrap(), v2_body, "{path}");
    }
    assert_eq!(iipsrv_image_requests(&stack).await, 1);
    assert_eq!(derivative_files(&cache_root(&stack)).len(), 1);
}

#[tokio::test]
async fn revalidation_is_answered_304_by_etag_and_by_date() {
    let stack = cached_stack(1 << 20);
    for path in [
        "/iiif/3/odd-1001x777/full/128,/0/default.jpg",
        "/iiif/2/odd-1001x777/full/128,/0/default.png",
        "/iiif/3/odd-1001x777/info.json",
        "/iiif/2/odd-1001x777/info.json",
    ] {
        let first = get(&stack, path).await;
        assert_eq!(first.status(), StatusCode::OK, "{path}");
        let etag = header(&first, "etag");
        let last_modified = header(&first, "last-modified");
        let cache_control = header(&first, "cache-control");

        let by_tag = client()
            .get(stack.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(by_tag.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&by_tag, "etag"), etag);
        assert_eq!(header(&by_tag, "cache-control"), cache_control);
        assert_eq!(header(&by_tag, "access-control-allow-origin"), "*");
        assert!(by_tag.bytes().await.unwrap().is_empty());

        let weak_in_list = client()
            .get(stack.url(path))
            .header("If-None-Match", format!("\"nope\", W/{etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(weak_in_list.status(), StatusCode::NOT_MODIFIED, "{path}");

        let by_date = client()
            .get(stack.url(path))
            .header("If-Modified-Since", &last_modified)
            .send()
            .await
            .unwrap();
        assert_eq!(by_date.status(), StatusCode::NOT_MODIFIED, "{path}");

        let stale = client()
            .get(stack.url(path))
            .header("If-None-Match", "\"something-else\"")
            .header("If-Modified-Since", &last_modified)
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}: If-None-Match wins");
        assert!(!stale.bytes().await.unwrap().is_empty());

        let old_date = client()
            .get(stack.url(path))
            .header("If-Modified-Since", "Thu, 01 Jan 1970 00:00:01 GMT")
            .send()
            .await
            .unwrap();
        assert_eq!(old_date.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn info_json_tags_differ_by_version_and_base() {
    let stack = cached_stack(1 << 20);
    let v3 = get(&stack, "/iiif/3/astronaut/info.json").await;
    let v2 = get(&stack, "/iiif/2/astronaut/info.json").await;
    assert_ne!(header(&v3, "etag"), header(&v2, "etag"));
    assert_eq!(header(&v3, "vary"), "Accept");
    let other_base = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .header("X-Forwarded-Host", "images.example.org")
        .send()
        .await
        .unwrap();
    assert_ne!(header(&other_base, "etag"), header(&v3, "etag"));
}

#[tokio::test]
async fn fifty_concurrent_misses_render_once() {
    let stack = cached_stack(1 << 20);
    let path = "/iiif/3/odd-1001x777/512,256,489,521/max/0/default.jpg";
    let client = client();
    let requests = (0..50).map(|_| {
        let (client, url) = (client.clone(), stack.url(path));
        tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap()
        })
    });
    let bodies: Vec<_> = futures_join(requests).await;
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(iipsrv_image_requests(&stack).await, 1);
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn renders_above_the_size_class_are_served_but_not_kept() {
    let stack = cached_stack(300 * 300);
    let small = "/iiif/3/hubble/full/256,/0/default.jpg";
    let large = "/iiif/3/hubble/full/max/0/default.jpg";
    for path in [small, small, large, large] {
        assert_eq!(get(&stack, path).await.status(), StatusCode::OK, "{path}");
    }
    // One render for the two small requests, two for the large ones.
    assert_eq!(iipsrv_image_requests(&stack).await, 3);
    wait_for_files(&cache_root(&stack), 1).await;
    assert_eq!(derivative_files(&cache_root(&stack)).len(), 1);
}

#[tokio::test]
async fn purge_removes_every_derivative_of_one_image_and_nothing_else() {
    let stack = cached_stack(1 << 20);
    for path in [
        "/iiif/3/astronaut/0,0,256,256/256,256/0/default.jpg",
        "/iiif/3/astronaut/256,0,256,256/256,256/0/default.png",
        "/iiif/3/astronaut/info.json",
        "/iiif/3/hubble/0,0,256,256/256,256/0/default.jpg",
    ] {
        assert_eq!(get(&stack, path).await.status(), StatusCode::OK, "{path}");
    }
    let root = cache_root(&stack);
    wait_for_files(&root, 3).await;
    let before = image_dirs(&root);
    assert_eq!(before.len(), 2, "{before:?}");
    let renders = iipsrv_image_requests(&stack).await;

    let unauthenticated = client()
        .delete(stack.admin_url("/admin/images/astronaut"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(image_dirs(&root).len(), 2);

    let purged = purge(&stack, "astronaut").await;
    assert_eq!(purged.status(), StatusCode::OK);
    let report: serde_json::Value = purged.json().await.unwrap();
    assert_eq!(report["identifier"], "astronaut");
    assert_eq!(report["derivatives"]["files"], 2, "{report}");
    assert!(
        report["derivatives"]["bytes"].as_u64().unwrap() > 0,
        "{report}"
    );

    let after = image_dirs(&root);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.contains(&after[0]));
    let hubble_files = derivative_files(&root);
    assert_eq!(hubble_files.len(), 1);

    // A second purge has nothing left to remove, and says so.
    let again = purge(&stack, "astronaut").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // The purged image is rendered afresh; the other one still comes from the cache.
    get(
        &stack,
        "/iiif/3/astronaut/0,0,256,256/256,256/0/default.jpg",
    )
    .await;
    get(&stack, "/iiif/3/hubble/0,0,256,256/256,256/0/default.jpg").await;
    assert_eq!(iipsrv_image_requests(&stack).await, renders + 1);
}

#[tokio::test]
async fn a_failing_disk_only_stops_caching() {
    // The cache root is a file, so no directory can be made under it: every write fails, the
    // way a full or read-only disk makes it fail. Requests are still served. (No memory tier,
    // so that the second request needs the disk too.)
    let stack = Stack::start_with(StackOptions {
        configure: configure(|raw, scratch| {
            raw.cache = Some(CacheConfig::new(scratch.join("not-a-directory"), ONE_GIB));
            raw.derivatives.memory = ByteSize(0);
        }),
        ..StackOptions::default()
    });
    std::fs::write(stack.scratch.join("not-a-directory"), b"x").unwrap();
    let path = "/iiif/3/astronaut/0,0,256,256/256,256/0/default.jpg";
    for _ in 0..2 {
        let response = get(&stack, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(iipsrv_image_requests(&stack).await, 2);
    let mut failed = 0.0;
    for _ in 0..100 {
        let text = metrics(&stack).await;
        failed = metric_line(
            &text,
            "iiif_gateway_derivative_cache_fills_total{outcome=\"failed\"}",
        );
        if failed >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(failed, 2.0, "both failed writes are counted");
}

#[tokio::test]
async fn hot_derivatives_are_served_from_memory_even_when_the_disk_copy_is_gone() {
    let stack = cached_stack(1 << 20);
    let path = "/iiif/3/hubble/256,256,256,256/256,256/0/default.jpg";
    let first = get(&stack, path).await.bytes().await.unwrap();
    wait_for_files(&cache_root(&stack), 1).await;
    for file in derivative_files(&cache_root(&stack)) {
        std::fs::remove_file(file).unwrap();
    }
    assert_eq!(get(&stack, path).await.bytes().await.unwrap(), first);
    assert_eq!(iipsrv_image_requests(&stack).await, 1);
}

#[tokio::test]
async fn a_full_disk_is_counted_and_every_request_is_still_served() {
    let scratch = crate::support::scratch_dir();
    let Some(mount) = TinyMount::new(&scratch, "64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); the failing-disk test covers writes that fail");
        return;
    };
    let stack = Stack::start_with(StackOptions {
        configure: {
            let root = mount.path.clone();
            configure(move |raw, _| {
                raw.cache = Some(CacheConfig::new(root.clone(), ONE_GIB));
                raw.derivatives.memory = ByteSize(0);
            })
        },
        ..StackOptions::default()
    });
    // Distinct tiles until the 64 KiB mount is full, and a few more.
    for i in 0..12 {
        let path = format!(
            "/iiif/3/hubble/{},{},200,200/200,200/0/default.jpg",
            (i % 4) * 200,
            (i / 4) * 200
        );
        let response = get(&stack, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let mut full = 0.0;
    for _ in 0..100 {
        full = metric_line(
            &metrics(&stack).await,
            "iiif_gateway_derivative_cache_fills_total{outcome=\"disk_full\"}",
        );
        if full > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(full > 0.0, "a full disk is counted as such");
    let leftovers = temporary_files(&mount.path);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(stack);
}

//! The pool against real iipsrv 1.1 processes.
//!
//! Each test starts its own processes (see [`test_support`]) so that crashing, killing and
//! freezing them cannot disturb other tests running in parallel.

use std::sync::Arc;
use std::time::Duration;

use super::test_support::{images, jpeg_dimensions, Iipsrv};
use super::*;
use crate::admission::{AdmissionConfig, Lane, RejectReason};
use crate::backend::{cgi_params, PLACEHOLDER_ID};

/// Short timeouts so failure tests finish quickly; still generous for a 2-core machine. The
/// admission lanes have their defaults for the pool's size.
pub(super) fn config(addresses: Vec<String>) -> PoolConfig {
    let queue_timeout = Duration::from_secs(20);
    PoolConfig {
        admission: AdmissionConfig::defaults(addresses.len(), queue_timeout),
        addresses,
        connect_timeout: Duration::from_millis(500),
        first_byte_timeout: Duration::from_secs(10),
        total_timeout: Duration::from_secs(15),
        queue_timeout,
        health_interval: Duration::from_millis(200),
        health_timeout: Duration::from_millis(1000),
        max_response_bytes: 64 * 1024 * 1024,
        keepalive_idle: Duration::ZERO,
    }
}

/// The same, with connections kept open for `idle` between requests.
fn keepalive_config(addresses: Vec<String>, idle: Duration) -> PoolConfig {
    PoolConfig {
        keepalive_idle: idle,
        ..config(addresses)
    }
}

/// A request in the small lane.
pub(super) async fn get(pool: &BackendPool, query: &str) -> Result<BackendResponse, FcgiError> {
    get_in(pool, query, Lane::Small).await
}

pub(super) async fn get_in(
    pool: &BackendPool,
    query: &str,
    lane: Lane,
) -> Result<BackendResponse, FcgiError> {
    pool.execute(&cgi_params(query), lane).await
}

/// Polls `condition` every 20 ms for up to `limit`.
pub(super) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

pub(super) const TILE: &str = "IIIF=test.tif/0,0,256,256/256,/0/default.jpg";
const CRASHER: &str = "IIIF=test.tif/0,999,100,1/50,1/0/default.jpg";

#[tokio::test]
async fn info_json_round_trip() {
    let server = Iipsrv::spawn(images());
    let pool = BackendPool::new(config(vec![server.addr.clone()]));
    let params = [
        ("QUERY_STRING", "IIIF=test.tif/info.json"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/iiif/test.tif/info.json"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "gateway.example"),
        ("HTTP_X_IIIF_ID", "placeholder"),
    ];
    let response = pool.execute(&params, Lane::Small).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/ld+json"));
    assert!(response.header("last-modified").is_some());
    let info: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(info["@id"], "placeholder");
    assert_eq!(info["width"], 1000);
    assert_eq!(info["height"], 1000);

    // The production parameters work too (iipsrv needs at least 10 bytes in REQUEST_URI).
    let response = get(&pool, "IIIF=test.tif/info.json").await.unwrap();
    assert_eq!(response.status, 200);
    let info: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(info["@id"], PLACEHOLDER_ID);
    // ...and a short one does not: documents the iipsrv quirk the helper avoids.
    let mut short = cgi_params("IIIF=test.tif/info.json");
    short[2].1 = "/iiif/x";
    assert_eq!(pool.execute(&short, Lane::Small).await.unwrap().status, 400);
    assert_eq!(pool.snapshot()[0].served, 3);
}

#[tokio::test]
async fn image_request_returns_a_jpeg() {
    let server = Iipsrv::spawn(images());
    let pool = BackendPool::new(config(vec![server.addr.clone()]));
    let response = get(&pool, TILE).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("image/jpeg"));
    assert!(response.body.starts_with(&[0xFF, 0xD8]));
    assert_eq!(jpeg_dimensions(&response.body), Some((256, 256, 3)));

    // A CVT (scaled region) answer has no Content-Length and still parses.
    let response = get(&pool, "IIIF=test.tif/10,20,300,200/150,100/0/default.jpg")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(jpeg_dimensions(&response.body), Some((150, 100, 3)));
}

#[tokio::test]
async fn missing_image_is_404() {
    let server = Iipsrv::spawn(images());
    let pool = BackendPool::new(config(vec![server.addr.clone()]));
    let response = get(&pool, "IIIF=nope.tif/info.json").await.unwrap();
    assert_eq!(response.status, 404);
    let response = get(&pool, "IIIF=nope.tif/full/100,/0/default.jpg")
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    assert!(pool.snapshot()[0].healthy);
}

#[tokio::test]
async fn unix_socket_backend() {
    let server = Iipsrv::spawn_unix(images());
    assert!(server.addr.starts_with("unix:"));
    let pool = BackendPool::new(config(vec![server.addr.clone()]));
    let response = get(&pool, TILE).await.unwrap();
    assert_eq!(jpeg_dimensions(&response.body), Some((256, 256, 3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_requests_over_two_processes() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = BackendPool::new(config(servers.iter().map(|s| s.addr.clone()).collect()));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let pool = Arc::clone(&pool);
        tasks.push(tokio::spawn(async move {
            // A mix of tiles and scaled regions, so requests take different times.
            let query = if i % 2 == 0 {
                format!(
                    "IIIF=test.tif/{},0,256,256/256,/0/default.jpg",
                    (i % 3) * 256
                )
            } else {
                format!("IIIF=photo.tif/full/{},/0/default.jpg", 100 + i)
            };
            get(&pool, &query).await
        }));
    }
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status, 200);
        assert!(response.body.starts_with(&[0xFF, 0xD8]));
    }
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.iter().map(|s| s.served).sum::<u64>(), 40);
    assert!(
        snapshot.iter().all(|s| s.served > 0),
        "both processes served: {snapshot:?}"
    );
    assert!(snapshot.iter().all(|s| s.in_flight == 0 && s.failures == 0));
    assert_eq!(
        pool.peak_in_flight(),
        [1, 1],
        "never two requests on one process"
    );
}

#[tokio::test]
async fn killed_process_fails_over_and_comes_back_after_restart() {
    let mut servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = BackendPool::new(config(servers.iter().map(|s| s.addr.clone()).collect()));
    pool.spawn_health_checks();
    assert_eq!(get(&pool, TILE).await.unwrap().status, 200);

    servers[0].kill();
    // Every request succeeds: a refused connect is retried on the other process.
    for _ in 0..6 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    let snapshot = pool.snapshot();
    assert!(!snapshot[0].healthy && snapshot[1].healthy, "{snapshot:?}");
    assert_eq!(pool.healthy_count(), 1);

    servers[0].restart();
    assert!(
        eventually(Duration::from_secs(5), || pool.healthy_count() == 2).await,
        "health check puts the restarted process back: {:?}",
        pool.snapshot()
    );
    let before = pool.snapshot()[0].served;
    for _ in 0..6 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    assert!(
        pool.snapshot()[0].served > before,
        "the restarted process serves again"
    );
}

#[tokio::test]
async fn frozen_process_times_out_and_is_taken_out_of_rotation() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let mut cfg = config(servers.iter().map(|s| s.addr.clone()).collect());
    cfg.first_byte_timeout = Duration::from_millis(700);
    cfg.total_timeout = Duration::from_millis(1500);
    let pool = BackendPool::new(cfg);
    servers[0].freeze();

    // Without health checks running yet, some request has to find out the hard way.
    let mut timeouts = 0;
    for _ in 0..4 {
        match get(&pool, TILE).await {
            Ok(response) => assert_eq!(response.status, 200),
            Err(FcgiError::Timeout(Phase::FirstByte)) => timeouts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        timeouts, 1,
        "one request timed out, then the process was out of rotation"
    );
    assert!(!pool.snapshot()[0].healthy);

    // Probes keep failing while it is frozen...
    pool.spawn_health_checks();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!pool.snapshot()[0].healthy);
    assert_eq!(get(&pool, TILE).await.unwrap().status, 200);

    // ...and the first good one after the thaw puts it back.
    servers[0].thaw();
    assert!(eventually(Duration::from_secs(5), || pool.healthy_count() == 2).await);
}

#[tokio::test]
async fn a_crashing_request_is_not_retried_and_the_other_process_survives() {
    let mut servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = BackendPool::new(config(servers.iter().map(|s| s.addr.clone()).collect()));

    let result = get(&pool, CRASHER).await;
    assert!(
        matches!(result, Err(FcgiError::EndedWithoutResponse)),
        "{result:?}"
    );
    assert!(!result.unwrap_err().is_retryable());

    let dead = servers
        .iter_mut()
        .position(|s| s.wait_exit(Duration::from_secs(2)))
        .expect("one process crashed");
    let other = 1 - dead;
    assert!(
        servers[other].is_alive(),
        "the request was not retried on the other process"
    );
    let snapshot = pool.snapshot();
    assert!(
        !snapshot[dead].healthy && snapshot[other].healthy,
        "{snapshot:?}"
    );
    assert_eq!(
        snapshot[other].served + snapshot[other].failures,
        0,
        "the other process never saw it"
    );

    // The survivor keeps serving.
    assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    assert_eq!(pool.snapshot()[other].served, 1);
}

#[tokio::test]
async fn no_healthy_backend_fails_fast() {
    let ports: Vec<String> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string()
        })
        .collect();
    // The listeners are dropped: both addresses refuse connections.
    let pool = BackendPool::new(config(ports));
    let result = get(&pool, TILE).await;
    assert!(matches!(result, Err(FcgiError::Connect(_))), "{result:?}");
    assert_eq!(pool.healthy_count(), 0);

    let started = std::time::Instant::now();
    assert!(matches!(
        get(&pool, TILE).await,
        Err(FcgiError::NoHealthyBackend)
    ));
    assert!(started.elapsed() < Duration::from_millis(50));

    let empty = BackendPool::new(config(Vec::new()));
    assert!(matches!(
        get(&empty, TILE).await,
        Err(FcgiError::NoHealthyBackend)
    ));
}

#[tokio::test]
async fn waiting_past_the_queue_timeout_fails_with_saturated() {
    let server = Iipsrv::spawn(images());
    let mut cfg = config(vec![server.addr.clone()]);
    cfg.first_byte_timeout = Duration::from_secs(2);
    cfg.queue_timeout = Duration::from_millis(200);
    let pool = BackendPool::new(cfg);
    server.freeze();

    let blocked = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { get(&pool, TILE).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.snapshot()[0].in_flight, 1);
    let started = std::time::Instant::now();
    let refused = get(&pool, TILE).await;
    assert!(
        matches!(&refused, Err(FcgiError::Saturated(r)) if r.reason == RejectReason::Deadline),
        "{refused:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert!(matches!(
        blocked.await.unwrap(),
        Err(FcgiError::Timeout(Phase::FirstByte))
    ));
    server.thaw();
}

#[tokio::test]
async fn queued_requests_give_up_when_the_last_process_goes_down() {
    let server = Iipsrv::spawn(images());
    let mut cfg = config(vec![server.addr.clone()]);
    cfg.first_byte_timeout = Duration::from_millis(500);
    let pool = BackendPool::new(cfg);
    server.freeze();

    let first = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { get(&pool, TILE).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Queued behind the frozen request; when that one times out the process goes down, and the
    // queued request fails at once instead of waiting for the whole queue timeout.
    let started = std::time::Instant::now();
    assert!(matches!(
        get(&pool, TILE).await,
        Err(FcgiError::NoHealthyBackend)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        first.await.unwrap(),
        Err(FcgiError::Timeout(Phase::FirstByte))
    ));
    server.thaw();
}

#[tokio::test]
async fn health_checks_find_a_dead_process_without_traffic() {
    let server = Iipsrv::spawn(images());
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let pool = BackendPool::new(config(vec![dead, server.addr.clone()]));
    pool.spawn_health_checks();
    assert!(eventually(Duration::from_secs(3), || pool.healthy_count() == 1).await);
    assert!(!pool.snapshot()[0].healthy && pool.snapshot()[0].failures > 0);
}

#[tokio::test]
async fn a_silent_fastcgi_peer_fails_health_checks() {
    // A listener that accepts and never answers: what a TCP-only check would call healthy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut cfg = config(vec![addr]);
    cfg.health_timeout = Duration::from_millis(300);
    let pool = BackendPool::new(cfg);
    pool.spawn_health_checks();
    assert!(eventually(Duration::from_secs(3), || pool.healthy_count() == 0).await);
    holder.abort();
}

#[tokio::test]
async fn reshaped_edge_strips_succeed_with_the_requested_size() {
    use super::crash_probe::vips_facts;
    let server = Iipsrv::spawn(images());
    let pool = BackendPool::new(config(vec![server.addr.clone()]));
    // In-bounds requests that crash iipsrv 1.1 as they are (see crash_probe).
    let cases: [(&str, iiif::ImageFacts, [u32; 4], u32, u32); 5] = [
        ("test.tif", vips_facts(1000, 1000), [0, 999, 100, 1], 50, 1),
        ("test.tif", vips_facts(1000, 1000), [999, 0, 1, 100], 1, 50),
        (
            "test.tif",
            vips_facts(1000, 1000),
            [0, 998, 1000, 2],
            250,
            1,
        ),
        ("photo.tif", vips_facts(2736, 1824), [0, 1816, 100, 8], 6, 1),
        ("odd999.tif", vips_facts(999, 777), [997, 775, 2, 2], 1, 1),
    ];
    for (image, facts, [x, y, rw, rh], w, h) in cases {
        let region = iiif::PixelRect { x, y, w: rw, h: rh };
        assert!(
            iiif::crashes_iipsrv(&facts, &region, (w, h)),
            "{image} {region}"
        );
        let iiif::PixelRect { x, y, w: rw, h: rh } =
            iiif::shift_off_the_edge(&facts, &region, (w, h));
        assert_eq!((rw, rh), region.size(), "only the origin moves");
        let query = format!("IIIF={image}/{x},{y},{rw},{rh}/{w},{h}/0/default.jpg");
        let response = get(&pool, &query).await.unwrap();
        assert_eq!(response.status, 200, "{query}");
        let (gw, gh, _) = jpeg_dimensions(&response.body).unwrap();
        assert_eq!((u32::from(gw), u32::from(gh)), (w, h), "{query}");
    }
    assert!(pool.snapshot()[0].healthy);
}

#[tokio::test]
async fn a_cancelled_request_keeps_its_process_until_the_exchange_ends() {
    let server = Iipsrv::spawn(images());
    let mut cfg = config(vec![server.addr.clone()]);
    cfg.first_byte_timeout = Duration::from_millis(800);
    let pool = BackendPool::new(cfg);
    server.freeze();

    // The caller gives up after 100 ms, as an outer timeout or a vanished client would.
    let outer = tokio::time::timeout(Duration::from_millis(100), get(&pool, TILE)).await;
    assert!(outer.is_err());
    // iipsrv still has the request, so the process stays taken...
    assert_eq!(pool.snapshot()[0].in_flight, 1);
    // ...until the exchange times out on its own and takes the process out of rotation.
    assert!(eventually(Duration::from_secs(2), || pool.snapshot()[0].in_flight == 0).await);
    assert!(!pool.snapshot()[0].healthy);
    assert_eq!(pool.snapshot()[0].failures, 1);
    server.thaw();
}

// === keep-alive ===

/// A fresh connection from another client, as a second gateway or the next gateway process
/// during an upgrade would open it.
async fn direct_probe(server: &Iipsrv, limit: Duration) -> Result<BackendResponse, FcgiError> {
    let limits = client::Limits {
        connect_timeout: limit,
        first_byte_timeout: limit,
        total_timeout: limit,
        max_response_bytes: 1 << 20,
    };
    let request = record::encode_request(&cgi_params(TILE), false).unwrap();
    client::execute_once(
        &client::BackendAddr::parse(&server.addr),
        "direct",
        &request,
        &limits,
    )
    .await
}

#[tokio::test]
async fn kept_connections_serve_many_requests_and_are_released_when_idle() {
    let server = Iipsrv::spawn(images());
    let idle = Duration::from_millis(300);
    let pool = BackendPool::new(keepalive_config(vec![server.addr.clone()], idle));
    pool.spawn_health_checks();
    for _ in 0..20 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    // While the connection is kept, libfcgi serves nobody else: that is the pinning the idle
    // limit bounds. Once it has passed, another client is served again.
    assert!(
        direct_probe(&server, Duration::from_millis(100))
            .await
            .is_err(),
        "the kept connection pins the process"
    );
    tokio::time::sleep(idle * 2).await;
    let response = direct_probe(&server, Duration::from_secs(2)).await.unwrap();
    assert_eq!(response.status, 200, "the idle connection was closed");
    assert_eq!(pool.snapshot()[0].failures, 0);
}

#[tokio::test]
async fn a_kept_connection_to_a_restarted_process_is_replaced_transparently() {
    let mut server = Iipsrv::spawn(images());
    let pool = BackendPool::new(keepalive_config(
        vec![server.addr.clone()],
        Duration::from_secs(30),
    ));
    assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    server.restart();
    // The kept connection died with the old process; the request goes again on a new one.
    assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    assert!(pool.snapshot()[0].healthy);
}

#[tokio::test]
async fn with_keepalive_a_crashing_request_is_still_not_retried_elsewhere() {
    let mut servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = BackendPool::new(keepalive_config(
        servers.iter().map(|s| s.addr.clone()).collect(),
        Duration::from_secs(30),
    ));
    // Warm both processes so the crasher travels on a kept connection.
    for _ in 0..4 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    let result = get(&pool, CRASHER).await;
    assert!(
        matches!(result, Err(FcgiError::EndedWithoutResponse)),
        "{result:?}"
    );
    let crashed: Vec<bool> = servers
        .iter_mut()
        .map(|s| s.wait_exit(Duration::from_secs(2)))
        .collect();
    assert_eq!(
        crashed.iter().filter(|c| **c).count(),
        1,
        "exactly one process saw the crasher: {crashed:?}"
    );
}

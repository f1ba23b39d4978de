//! The admission lanes against real iipsrv 1.1 processes.
//!
//! Slot usage is read from the pool's lane snapshot, not inferred from timing. Where a process
//! must stay busy for as long as a test needs, it is frozen (SIGSTOP): a request sent to it then
//! holds its slot until the test thaws it.

use std::sync::Arc;
use std::time::Duration;

use super::test_support::{images, Iipsrv};
use super::tests::{config, eventually, get, get_in, TILE};
use super::*;
use crate::admission::{Lane, RejectReason};
use crate::metrics::Metrics;

/// A render of the whole 2736×1824 photo at full size: 5 Mpx decoded and written, large by the
/// default thresholds, and slow enough (tens to hundreds of milliseconds) to make a queue.
const LARGE: &str = "IIIF=photo.tif/full/2736,1824/0/default.jpg";

fn large(lanes: &[LaneStatus]) -> &LaneStatus {
    &lanes[Lane::Large.index()]
}

fn small(lanes: &[LaneStatus]) -> &LaneStatus {
    &lanes[Lane::Small.index()]
}

/// A pool over `servers` with large requests limited to one process at a time.
fn pool_with(servers: &[Iipsrv], adjust: impl FnOnce(&mut PoolConfig)) -> Arc<BackendPool> {
    let mut cfg = config(servers.iter().map(|s| s.addr.clone()).collect());
    cfg.admission.large_max_slots = 1;
    adjust(&mut cfg);
    BackendPool::new(cfg)
}

fn spawn_large(
    pool: &Arc<BackendPool>,
) -> tokio::task::JoinHandle<Result<BackendResponse, FcgiError>> {
    let pool = Arc::clone(pool);
    tokio::spawn(async move { get_in(&pool, LARGE, Lane::Large).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_requests_never_holds_both_processes() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |_| {});
    let flood: Vec<_> = (0..10).map(|_| spawn_large(&pool)).collect();
    for request in flood {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status, 200);
    }
    let lanes = pool.lanes();
    assert_eq!(large(&lanes).admitted, 10);
    assert_eq!(large(&lanes).peak_in_service, 1, "{lanes:?}");
    assert_eq!((large(&lanes).queued, large(&lanes).in_service), (0, 0));
    assert!(large(&lanes).service_time.is_some());
    assert_eq!(pool.snapshot().iter().map(|s| s.served).sum::<u64>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_overtake_queued_large_ones() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |_| {});
    let flood: Vec<_> = (0..8).map(|_| spawn_large(&pool)).collect();
    assert!(
        eventually(Duration::from_secs(5), || large(&pool.lanes()).queued >= 5).await,
        "{:?}",
        pool.lanes()
    );
    // Each tile is served by the process large requests may not take, while the large ones
    // behind the first are still waiting.
    for _ in 0..10 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    let lanes = pool.lanes();
    assert_eq!(small(&lanes).admitted, 10);
    assert!(
        large(&lanes).queued > 0,
        "the tiles waited for the large queue: {lanes:?}"
    );
    for request in flood {
        assert_eq!(request.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(large(&pool.lanes()).peak_in_service, 1);
}

#[tokio::test]
async fn a_full_lane_refuses_at_once_and_counts_it() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |cfg| {
        cfg.first_byte_timeout = Duration::from_secs(5);
        cfg.admission.large.max_queue = 2;
    });
    let metrics = Metrics::new();
    pool.attach_admission_metrics(&metrics.admission);
    servers.iter().for_each(Iipsrv::freeze);

    // One large request holds the large slot (on a frozen process), two wait.
    let held: Vec<_> = (0..3).map(|_| spawn_large(&pool)).collect();
    assert!(
        eventually(Duration::from_secs(2), || {
            let lanes = pool.lanes();
            large(&lanes).in_service == 1 && large(&lanes).queued == 2
        })
        .await
    );
    let started = std::time::Instant::now();
    let refused = get_in(&pool, LARGE, Lane::Large).await;
    assert!(
        matches!(&refused, Err(FcgiError::Saturated(r)) if r.reason == RejectReason::QueueFull && r.lane == Lane::Large),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );
    let lanes = pool.lanes();
    assert_eq!((large(&lanes).queued, large(&lanes).rejected), (2, 1));

    let text = String::from_utf8(metrics.render()).unwrap();
    for line in [
        "iiif_gateway_admission_rejections_total{lane=\"large\",reason=\"queue_full\"} 1",
        "iiif_gateway_admission_queued{lane=\"large\"} 2",
        "iiif_gateway_admission_in_service{lane=\"large\"} 1",
        "iiif_gateway_admission_queue_wait_seconds_count{lane=\"large\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    servers.iter().for_each(Iipsrv::thaw);
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status, 200);
    }
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains("iiif_gateway_admission_queued{lane=\"large\"} 0"));
    assert!(text.contains("iiif_gateway_admission_in_service{lane=\"large\"} 0"));
}

#[tokio::test]
async fn a_request_waiting_past_its_lane_deadline_is_refused() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |cfg| {
        cfg.first_byte_timeout = Duration::from_secs(5);
        cfg.admission.large.max_wait = Duration::from_millis(300);
    });
    servers.iter().for_each(Iipsrv::freeze);
    let held = spawn_large(&pool);
    assert!(
        eventually(Duration::from_secs(2), || large(&pool.lanes()).in_service
            == 1)
        .await
    );

    let started = std::time::Instant::now();
    let refused = get_in(&pool, LARGE, Lane::Large).await;
    let waited = started.elapsed();
    assert!(
        matches!(&refused, Err(FcgiError::Saturated(r)) if r.reason == RejectReason::Deadline),
        "{refused:?}"
    );
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(1300),
        "{waited:?}"
    );
    assert_eq!(large(&pool.lanes()).queued, 0, "it left the queue");
    servers.iter().for_each(Iipsrv::thaw);
    assert_eq!(held.await.unwrap().unwrap().status, 200);
}

#[tokio::test]
async fn dropped_waiters_leave_the_queue_and_release_nothing_they_never_had() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |cfg| {
        cfg.first_byte_timeout = Duration::from_secs(5);
    });
    servers.iter().for_each(Iipsrv::freeze);
    let held = spawn_large(&pool);
    let waiting: Vec<_> = (0..3).map(|_| spawn_large(&pool)).collect();
    assert!(eventually(Duration::from_secs(2), || large(&pool.lanes()).queued == 3).await);

    // The clients go away: their futures are dropped while queued.
    for (gone, waiter) in waiting.into_iter().enumerate() {
        waiter.abort();
        assert!(matches!(waiter.await, Err(e) if e.is_cancelled()));
        let lanes = pool.lanes();
        assert_eq!(large(&lanes).queued, 2 - gone, "{lanes:?}");
        assert_eq!(large(&lanes).in_service, 1);
    }
    // A caller that gives up through a timeout leaves too.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(100),
        get_in(&pool, LARGE, Lane::Large),
    )
    .await;
    assert!(timed_out.is_err());
    assert_eq!(large(&pool.lanes()).queued, 0);

    servers.iter().for_each(Iipsrv::thaw);
    assert_eq!(held.await.unwrap().unwrap().status, 200);
    // Nothing leaked: the slot is free and the next large request runs.
    assert_eq!(get_in(&pool, LARGE, Lane::Large).await.unwrap().status, 200);
    let lanes = pool.lanes();
    assert_eq!((large(&lanes).in_service, large(&lanes).queued), (0, 0));
    assert_eq!(
        large(&lanes).admitted,
        2,
        "only the held and the last request ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_estimated_wait_is_refused_at_once() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let pool = pool_with(&servers, |cfg| {
        cfg.admission.large.max_wait = Duration::from_millis(500);
    });
    // History: the lane learns how long a large render takes here.
    for _ in 0..3 {
        assert_eq!(get_in(&pool, LARGE, Lane::Large).await.unwrap().status, 200);
    }
    let service = large(&pool.lanes()).service_time.unwrap();
    // 40 at once on one slot is at least 40 service times of work: far more than 500 ms.
    let flood: Vec<_> = (0..40).map(|_| spawn_large(&pool)).collect();
    let (mut served, mut estimated, mut late) = (0, 0, 0);
    for request in flood {
        match request.await.unwrap() {
            Ok(response) => {
                assert_eq!(response.status, 200);
                served += 1;
            }
            // Refused on arrival.
            Err(FcgiError::Saturated(r)) if r.reason == RejectReason::WaitEstimate => {
                assert!(r.retry_after_seconds() >= 1);
                estimated += 1;
            }
            // Admitted on an estimate that a busy machine then missed.
            Err(FcgiError::Saturated(r)) if r.reason == RejectReason::Deadline => late += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        served >= 1 && estimated >= 1,
        "{served} served, {estimated} refused at once, {late} late ({service:?} each)"
    );
    assert_eq!(served + estimated + late, 40);
    assert_eq!(large(&pool.lanes()).rejected, estimated + late);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_process_shrinks_the_large_lane() {
    let servers = [Iipsrv::spawn(images()), Iipsrv::spawn(images())];
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut addresses: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    addresses.push(dead);
    let mut cfg = config(addresses);
    cfg.admission.large_max_slots = 2;
    let pool = BackendPool::new(cfg);
    pool.spawn_health_checks();
    assert!(eventually(Duration::from_secs(3), || pool.healthy_count() == 2).await);

    // Two of three processes left: large requests get one of them, never both.
    let flood: Vec<_> = (0..8).map(|_| spawn_large(&pool)).collect();
    for _ in 0..5 {
        assert_eq!(get(&pool, TILE).await.unwrap().status, 200);
    }
    for request in flood {
        assert_eq!(request.await.unwrap().unwrap().status, 200);
    }
    let lanes = pool.lanes();
    assert_eq!(large(&lanes).peak_in_service, 1, "{lanes:?}");
    assert_eq!(large(&lanes).admitted, 8);
}

#[tokio::test]
async fn the_last_process_going_down_fails_every_waiter_at_once() {
    let server = Iipsrv::spawn(images());
    let pool = pool_with(std::slice::from_ref(&server), |cfg| {
        cfg.first_byte_timeout = Duration::from_millis(500);
    });
    server.freeze();
    let held = spawn_large(&pool);
    assert!(
        eventually(Duration::from_secs(2), || large(&pool.lanes()).in_service
            == 1)
        .await
    );
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { get(&pool, TILE).await })
        })
        .collect();
    // The held request times out, its process goes down, and the small waiters fail with it.
    assert!(matches!(
        held.await.unwrap(),
        Err(FcgiError::Timeout(Phase::FirstByte))
    ));
    for waiter in waiting {
        let result = waiter.await.unwrap();
        assert!(
            matches!(result, Err(FcgiError::NoHealthyBackend)),
            "{result:?}"
        );
    }
    let lanes = pool.lanes();
    assert_eq!((small(&lanes).queued, large(&lanes).in_service), (0, 0));
    server.thaw();
}

#[tokio::test]
async fn health_probes_never_wait_for_a_busy_process() {
    let server = Iipsrv::spawn(images());
    let mut cfg = config(vec![server.addr.clone()]);
    cfg.first_byte_timeout = Duration::from_secs(5);
    cfg.total_timeout = Duration::from_secs(6);
    let pool = BackendPool::new(cfg);
    server.freeze();
    let held = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { get(&pool, TILE).await })
    };
    assert!(
        eventually(Duration::from_secs(2), || small(&pool.lanes()).in_service
            == 1)
        .await
    );
    // Several health intervals pass: the probes skip the busy process instead of queueing
    // (a queued probe would show as a failure or take the process out of rotation).
    pool.spawn_health_checks();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let snapshot = pool.snapshot();
    assert!(
        snapshot[0].healthy && snapshot[0].failures == 0,
        "{snapshot:?}"
    );
    assert_eq!(small(&pool.lanes()).queued, 0);
    server.thaw();
    assert_eq!(held.await.unwrap().unwrap().status, 200);
}

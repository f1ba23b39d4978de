//! The ID archive as the public sees it: retired identifiers redirect or answer 410, edits reach
//! every gateway within a second, and a dead or stopped Redis never stops images.
//!
//! Each test starts a real redis-server on a free port and writes the records itself, as
//! `docs/redirects.md` defines them (a hash per identifier, a message on the invalidation
//! channel), so these tests hold the gateway to the data model, not to the admin tools.

use std::time::{Duration, Instant};

use gateway::config::RawRedirects;

use crate::support::{
    client, configure, image_size, metric_line, metrics, Redis, Stack, StackOptions,
};

const PREFIX: &str = "iiif:";
const CHANNEL: &str = "iiif:invalidate";

/// A gateway reading the archive in `redis`; `settings` adjusts its `gateway.redirects`.
fn stack_with_redirects(
    redis: &Redis,
    settings: impl Fn(&mut RawRedirects) + Send + Sync + 'static,
) -> Stack {
    let url = redis.url();
    Stack::start_with(StackOptions {
        iipsrv_processes: 1,
        configure: configure(move |raw, _| {
            let mut redirects = RawRedirects::new(url.clone());
            settings(&mut redirects);
            raw.redirects = Some(redirects);
        }),
        ..StackOptions::default()
    })
}

/// A Redis command on a fresh connection, its reply as `T`.
fn command<T: redis::FromRedisValue>(redis: &Redis, args: &[&str]) -> T {
    let mut connection = redis.connection().expect("redis reachable");
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut connection)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Writes one record (`kind` moved, temporary or gone) without announcing it.
fn write_record(redis: &Redis, id: &str, kind: &str, target: Option<&str>) {
    let key = format!("{PREFIX}redirect:{id}");
    let _: i64 = command(redis, &["DEL", &key]);
    let mut args = vec![
        "HSET",
        &key,
        "kind",
        kind,
        "changed_at",
        "2025-01-01T00:00:00Z",
        "changed_by",
        "e2e",
        "reason",
        "test",
    ];
    if let Some(target) = target {
        args.extend(["target", target]);
    }
    let _: i64 = command(redis, &args);
}

/// Announces a change on the invalidation channel; returns how many gateways heard it.
fn publish(redis: &Redis, message: &str) -> i64 {
    command(redis, &["PUBLISH", CHANNEL, message])
}

/// Waits until `n` gateways are subscribed to the invalidation channel.
fn wait_for_subscribers(redis: &Redis, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let (_, subscribers): (String, i64) = command(redis, &["PUBSUB", "NUMSUB", CHANNEL]);
        if subscribers == n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{n} gateways did not subscribe to {CHANNEL}");
}

/// Status and `Location` of one request (redirects are not followed).
async fn answer(stack: &Stack, path: &str) -> (u16, Option<String>) {
    let response = client().get(stack.url(path)).send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status().as_u16(), location)
}

/// Checks one redirect: status, `Location`, `Cache-Control` and CORS.
async fn assert_redirect(stack: &Stack, path: &str, status: u16, location_path: &str) {
    let response = client().get(stack.url(path)).send().await.unwrap();
    assert_eq!(response.status(), status, "{path}");
    let headers = response.headers();
    assert_eq!(headers["location"], stack.url(location_path), "{path}");
    assert_eq!(headers["cache-control"], "public, max-age=3600", "{path}");
    assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
    assert!(response.bytes().await.unwrap().is_empty(), "{path}");
}

/// Follows a `Location` and expects the image or info.json there.
async fn assert_served_at(location: &str) {
    let response = client().get(location).send().await.unwrap();
    assert_eq!(response.status(), 200, "{location}");
}

#[tokio::test]
async fn retired_identifiers_redirect_with_the_rest_of_the_path_kept() {
    let redis = Redis::new();
    write_record(&redis, "old-astronaut", "moved", Some("astronaut"));
    write_record(&redis, "old/nested", "moved", Some("collection/astronaut"));
    write_record(&redis, "vieux-été", "moved", Some("Zoë café"));
    let stack = stack_with_redirects(&redis, |_| {});

    // An image request, info.json and the base URI alike, in both versions.
    for (path, location) in [
        (
            "/iiif/3/old-astronaut/full/max/0/default.jpg",
            "/iiif/3/astronaut/full/max/0/default.jpg",
        ),
        (
            "/iiif/3/old-astronaut/pct:10,10,50,50/!50,50/90/gray.png",
            "/iiif/3/astronaut/pct:10,10,50,50/!50,50/90/gray.png",
        ),
        (
            "/iiif/3/old-astronaut/info.json",
            "/iiif/3/astronaut/info.json",
        ),
        ("/iiif/3/old-astronaut", "/iiif/3/astronaut"),
        ("/iiif/3/old-astronaut/", "/iiif/3/astronaut/"),
        (
            "/iiif/2/old-astronaut/full/full/0/default.jpg",
            "/iiif/2/astronaut/full/full/0/default.jpg",
        ),
        // The old identifier spelled with %2F, or with a bare `/`, or with escapes it does
        // not need; the new one always as one encoded segment.
        (
            "/iiif/3/old%2Fnested/info.json",
            "/iiif/3/collection%2Fastronaut/info.json",
        ),
        (
            "/iiif/3/old/nested/full/max/0/default.jpg",
            "/iiif/3/collection%2Fastronaut/full/max/0/default.jpg",
        ),
        (
            "/iiif/3/old%2Dastronaut/info.json",
            "/iiif/3/astronaut/info.json",
        ),
        // Non-ASCII on both sides.
        (
            "/iiif/3/vieux-%C3%A9t%C3%A9/full/max/0/default.jpg",
            "/iiif/3/Zo%C3%AB%20caf%C3%A9/full/max/0/default.jpg",
        ),
    ] {
        assert_redirect(&stack, path, 301, location).await;
    }

    // Each Location names an image the gateway serves.
    for location in [
        "/iiif/3/astronaut/full/max/0/default.jpg",
        "/iiif/3/astronaut/pct:10,10,50,50/!50,50/90/gray.png",
        "/iiif/3/collection%2Fastronaut/info.json",
        "/iiif/3/collection%2Fastronaut/full/max/0/default.jpg",
        "/iiif/3/Zo%C3%AB%20caf%C3%A9/full/max/0/default.jpg",
    ] {
        assert_served_at(&stack.url(location)).await;
    }
    // Identifiers that are not retired are served as always.
    let response = client()
        .get(stack.url("/iiif/3/astronaut/full/64,/0/default.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(image_size(&response.bytes().await.unwrap()), (64, 64));

    let text = metrics(&stack).await;
    assert_eq!(
        metric_line(&text, "iiif_gateway_redirects_total{kind=\"moved\"}"),
        10.0
    );
    assert!(
        metric_line(
            &text,
            "iiif_gateway_redirect_cache_lookups_total{result=\"hit\"}"
        ) > 0.0
    );
    assert!(metric_line(&text, "iiif_gateway_redirect_lookup_duration_seconds_count") > 0.0);
}

#[tokio::test]
async fn temporary_moves_are_302_and_withdrawn_images_410() {
    let redis = Redis::new();
    write_record(&redis, "on-loan", "temporary", Some("hubble"));
    write_record(&redis, "withdrawn", "gone", None);
    let stack = stack_with_redirects(&redis, |_| {});

    assert_redirect(
        &stack,
        "/iiif/3/on-loan/full/max/0/default.jpg",
        302,
        "/iiif/3/hubble/full/max/0/default.jpg",
    )
    .await;
    assert_redirect(
        &stack,
        "/iiif/2/on-loan/info.json",
        302,
        "/iiif/2/hubble/info.json",
    )
    .await;

    for path in [
        "/iiif/3/withdrawn/info.json",
        "/iiif/3/withdrawn/full/max/0/default.jpg",
        "/iiif/2/withdrawn",
    ] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 410, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["cache-control"], "public, max-age=3600");
        assert!(headers.get("location").is_none());
        assert_eq!(
            response.text().await.unwrap(),
            "this image has been withdrawn\n"
        );
    }
    // The CORS preflight is answered before any lookup.
    let response = client()
        .request(
            reqwest::Method::OPTIONS,
            stack.url("/iiif/3/withdrawn/info.json"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let text = metrics(&stack).await;
    assert_eq!(
        metric_line(&text, "iiif_gateway_redirects_total{kind=\"temporary\"}"),
        2.0
    );
    assert_eq!(
        metric_line(&text, "iiif_gateway_redirects_total{kind=\"gone\"}"),
        3.0
    );
}

#[tokio::test]
async fn redirect_statuses_follow_the_configuration() {
    let redis = Redis::new();
    write_record(&redis, "a", "moved", Some("astronaut"));
    write_record(&redis, "b", "temporary", Some("astronaut"));
    let stack = stack_with_redirects(&redis, |r| {
        r.permanent_status = 308;
        r.temporary_status = 307;
    });
    assert_redirect(
        &stack,
        "/iiif/3/a/info.json",
        308,
        "/iiif/3/astronaut/info.json",
    )
    .await;
    assert_redirect(
        &stack,
        "/iiif/3/b/info.json",
        307,
        "/iiif/3/astronaut/info.json",
    )
    .await;
}

/// Polls `path` on every stack until each answers `expected`; returns the slowest time.
async fn time_until_all(
    stacks: &[&Stack],
    path: &str,
    expected: (u16, Option<String>),
) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for stack in stacks {
        let expected = (
            expected.0,
            expected.1.as_deref().map(|location| stack.url(location)),
        );
        loop {
            if answer(stack, path).await == expected {
                slowest = slowest.max(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} never became {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    slowest
}

#[tokio::test]
async fn an_edit_reaches_two_gateways_within_a_second() {
    let redis = Redis::new();
    write_record(&redis, "old", "moved", Some("astronaut"));
    // A long time-to-live: only the invalidation message can make an edit visible in time.
    let settings = |r: &mut RawRedirects| r.cache_ttl_ms = 600_000;
    let first = stack_with_redirects(&redis, settings);
    let second = stack_with_redirects(&redis, settings);
    wait_for_subscribers(&redis, 2);
    let both = [&first, &second];
    let path = "/iiif/3/old/info.json";
    let fresh = "/iiif/3/hubble/info.json";
    // Warm both caches, with a redirect and with a "not redirected".
    for stack in both {
        assert_redirect(stack, path, 301, "/iiif/3/astronaut/info.json").await;
        assert_eq!(answer(stack, fresh).await.0, 200);
    }

    // A changed target.
    write_record(&redis, "old", "moved", Some("odd-1001x777"));
    assert_eq!(publish(&redis, "old"), 2);
    let changed = time_until_all(
        &both,
        path,
        (301, Some("/iiif/3/odd-1001x777/info.json".into())),
    )
    .await;

    // A newly retired identifier that both gateways had cached as "not redirected".
    write_record(&redis, "hubble", "gone", None);
    assert_eq!(publish(&redis, "hubble"), 2);
    let retired = time_until_all(&both, fresh, (410, None)).await;

    // A bulk change announced with `*`.
    let _: i64 = command(&redis, &["DEL", &format!("{PREFIX}redirect:hubble")]);
    write_record(&redis, "old", "temporary", Some("astronaut"));
    assert_eq!(publish(&redis, "*"), 2);
    let bulk_old = time_until_all(
        &both,
        path,
        (302, Some("/iiif/3/astronaut/info.json".into())),
    )
    .await;
    let bulk_fresh = time_until_all(&both, fresh, (200, None)).await;

    eprintln!(
        "invalidation across two gateways: changed {changed:?}, retired {retired:?}, \
         bulk {bulk_old:?} / {bulk_fresh:?}"
    );
    for (what, took) in [
        ("changed target", changed),
        ("newly retired", retired),
        ("bulk", bulk_old),
        ("bulk un-retired", bulk_fresh),
    ] {
        assert!(took <= Duration::from_secs(1), "{what} took {took:?}");
    }
    let text = metrics(&first).await;
    assert!(metric_line(&text, "iiif_gateway_redirect_invalidations_total") >= 3.0);
}

/// Requests images and info.json of identifiers that are not retired; every answer must be a
/// 200, each well under a second. Returns the slowest.
async fn serve_normally_while_redis_is_out(stack: &Stack, round: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    let ids = [
        "astronaut",
        "hubble",
        "odd-1001x777",
        "Zo%C3%AB%20caf%C3%A9",
        "collection%2Fastronaut",
        "67352ccc-d1b0-11e1-89ae-279075081939",
    ];
    for i in 0..30 {
        let id = ids[i % ids.len()];
        let path = if i % 2 == 0 {
            format!("/iiif/3/{id}/info.json")
        } else {
            format!("/iiif/3/{id}/full/{},/0/default.jpg", 40 + round * 30 + i)
        };
        let started = Instant::now();
        let response = client().get(stack.url(&path)).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

/// Writes a fresh record and waits until the gateway redirects it; returns how long it took.
async fn time_until_redirects_work(redis: &Redis, stack: &Stack, id: &str) -> Duration {
    let started = Instant::now();
    loop {
        // The server may not answer for a moment after a restart.
        if redis.ping() {
            write_record(redis, id, "moved", Some("astronaut"));
            let (status, location) = answer(stack, &format!("/iiif/3/{id}/info.json")).await;
            assert!(status < 500, "{status}");
            if status == 301 {
                assert_eq!(location, Some(stack.url("/iiif/3/astronaut/info.json")));
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "redirects did not come back: {}",
            stack.gateway_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_dead_redis_never_stops_images_and_redirects_return_with_it() {
    let mut redis = Redis::new();
    write_record(&redis, "old", "moved", Some("astronaut"));
    let stack = stack_with_redirects(&redis, |_| {});
    assert_redirect(
        &stack,
        "/iiif/3/old/info.json",
        301,
        "/iiif/3/astronaut/info.json",
    )
    .await;

    redis.kill();
    // Served without the archive's word: cacheable for a minute, not for the image's month.
    for path in [
        "/iiif/3/never-asked/info.json",
        "/iiif/3/astronaut/full/33,/0/default.jpg",
    ] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        let cache_control = response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        if path.contains("never-asked") {
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(cache_control, "no-store", "{path}");
        } else {
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(cache_control, "public, max-age=60", "{path}");
        }
    }
    let slowest = serve_normally_while_redis_is_out(&stack, 0).await;
    // A retired identifier is answered from the last known record, or served; never a 5xx.
    let (status, _) = answer(&stack, "/iiif/3/old/info.json").await;
    assert!(status == 301 || status == 404, "{status}");

    redis.restart();
    let back = time_until_redirects_work(&redis, &stack, "after-restart").await;
    eprintln!("dead redis: slowest request {slowest:?}; redirects back {back:?} after restart");

    let text = metrics(&stack).await;
    assert!(
        metric_line(
            &text,
            "iiif_gateway_redirect_errors_total{reason=\"connection\"}"
        ) > 0.0
    );
    assert!(
        metric_line(
            &text,
            "iiif_gateway_redirect_errors_total{reason=\"circuit_open\"}"
        ) > 0.0
    );
    let five_hundreds: f64 = text
        .lines()
        .filter(|line| {
            line.starts_with("iiif_gateway_requests_total") && line.contains("status=\"5")
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(five_hundreds, 0.0, "{text}");
}

#[tokio::test]
async fn a_stopped_redis_costs_at_most_the_lookup_timeout() {
    let mut redis = Redis::new();
    write_record(&redis, "old", "moved", Some("astronaut"));
    let stack = stack_with_redirects(&redis, |r| r.lookup_timeout_ms = 50);
    assert_redirect(
        &stack,
        "/iiif/3/old/info.json",
        301,
        "/iiif/3/astronaut/info.json",
    )
    .await;

    redis.pause();
    let slowest_first = serve_normally_while_redis_is_out(&stack, 0).await;
    // Long enough for the breaker to probe a few times and the subscriber to give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let slowest_later = serve_normally_while_redis_is_out(&stack, 1).await;
    redis.resume();
    let back = time_until_redirects_work(&redis, &stack, "after-resume").await;
    eprintln!(
        "stopped redis: slowest request {slowest_first:?} then {slowest_later:?}; \
         redirects back {back:?} after SIGCONT"
    );
    let text = metrics(&stack).await;
    assert!(
        metric_line(
            &text,
            "iiif_gateway_redirect_errors_total{reason=\"timeout\"}"
        ) > 0.0
    );
}

// === latency of the lookup (a measurement for docs/benchmarks.md, not a test) ===

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

async fn sequential_latencies(stack: &Stack, path: &str, n: usize) -> Vec<Duration> {
    let client = client();
    let url = stack.url(path);
    for _ in 0..200 {
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

/// `cargo test --release -p e2e redirects::lookup_latency -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement: run on its own, on a quiet machine"]
async fn lookup_latency() {
    let n: usize = std::env::var("LATENCY_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let redis = Redis::new();
    let off = Stack::start_with(StackOptions {
        iipsrv_processes: 1,
        ..StackOptions::default()
    });
    let warm = stack_with_redirects(&redis, |_| {});
    // A zero time-to-live: every lookup is a Redis read (the cold-cache cost).
    let cold = stack_with_redirects(&redis, |r| r.cache_ttl_ms = 0);
    for path in [
        "/iiif/3/astronaut/info.json",
        "/iiif/3/astronaut/full/64,/0/default.jpg",
    ] {
        let mut results = Vec::new();
        // Interleave the configurations so drift in the machine's load hits all of them.
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for _ in 0..5 {
            for (i, stack) in [&off, &warm, &cold].into_iter().enumerate() {
                samples[i].extend(sequential_latencies(stack, path, n / 5).await);
            }
        }
        for (name, samples) in ["off", "warm", "cold"].into_iter().zip(samples.iter_mut()) {
            results.push((
                name,
                percentile(samples, 0.5),
                percentile(samples, 0.9),
                percentile(samples, 0.99),
            ));
        }
        eprintln!("{path} ({n} sequential requests per configuration, keep-alive):");
        for (name, p50, p90, p99) in results {
            eprintln!("  redirects {name:>4}: p50 {p50:?}  p90 {p90:?}  p99 {p99:?}");
        }
    }
    let text = metrics(&cold).await;
    for line in text
        .lines()
        .filter(|l| l.starts_with("iiif_gateway_redirect_lookup_duration_seconds_"))
    {
        eprintln!("  cold {line}");
    }
}

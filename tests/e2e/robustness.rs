//! Bad input and failing parts never hurt the service: iipsrv's known crashers are defused, a
//! dead iipsrv process costs at most its own request, and the pool recovers.

use std::time::Duration;

use crate::support::{
    client, image_size, metric_line, metrics_once_they_show, Stack, StackOptions,
};

/// Requests that crash or corrupt stock iipsrv 1.1 when sent to it directly (iiif-reference §3.8,
/// iipsrv-baseline §3), each with the status the gateway must answer and, for successes, the size.
/// A request path, the status the gateway must answer and, for successes, the pixel size.
type Expectation = (&'static str, u16, Option<(u32, u32)>);

const CRASHERS: &[Expectation] = &[
    // Regions starting outside the image: iipsrv segfaults or returns an empty JPEG.
    ("/iiif/3/hubble/0,872,10,10/max/0/default.jpg", 400, None),
    (
        "/iiif/3/hubble/100,900,300,200/max/0/default.jpg",
        400,
        None,
    ),
    ("/iiif/3/hubble/1000,0,10,10/max/0/default.jpg", 400, None),
    (
        "/iiif/3/hubble/pct:0,100,10,10/max/0/default.jpg",
        400,
        None,
    ),
    (
        "/iiif/3/hubble/pct:110,0,10,10/max/0/default.jpg",
        400,
        None,
    ),
    (
        "/iiif/2/astronaut/600,600,100,100/full/0/default.jpg",
        400,
        None,
    ),
    // Regions running past the bottom edge: clipped by the gateway.
    (
        "/iiif/3/hubble/999,871,10,10/max/0/default.jpg",
        200,
        Some((1, 1)),
    ),
    (
        "/iiif/3/hubble/0,860,1000,100/max/0/default.jpg",
        200,
        Some((1000, 12)),
    ),
    // In-bounds one-pixel strips on the last row or column, scaled down: these crash iipsrv 1.1.
    (
        "/iiif/3/67352ccc-d1b0-11e1-89ae-279075081939/0,999,100,1/50,1/0/default.jpg",
        200,
        Some((50, 1)),
    ),
    (
        "/iiif/3/67352ccc-d1b0-11e1-89ae-279075081939/999,0,1,100/1,50/0/default.jpg",
        200,
        Some((1, 50)),
    ),
    (
        "/iiif/2/hubble/0,871,1000,1/500,1/0/default.jpg",
        200,
        Some((500, 1)),
    ),
    (
        "/iiif/2/hubble/999,0,1,872/1,436/0/default.jpg",
        200,
        Some((1, 436)),
    ),
    // Negative and junk numbers: iipsrv wraps them to 5000×5000 renders.
    ("/iiif/2/hubble/full/-256,/0/default.jpg", 400, None),
    ("/iiif/2/hubble/full/pct:-5/0/default.jpg", 400, None),
    ("/iiif/2/hubble/-10,0,100,100/full/0/default.jpg", 400, None),
    ("/iiif/2/hubble/10x,0,100,100/full/0/default.jpg", 400, None),
    // Sizes beyond MAX_CVT: iipsrv distorts them to 5000×5000.
    ("/iiif/2/hubble/full/10000,100/0/default.jpg", 400, None),
    ("/iiif/2/hubble/full/100,10000/0/default.jpg", 400, None),
    // Bitonal tiles: iipsrv's tile path crashes or answers raw pixels.
    (
        "/iiif/2/hubble/0,0,256,256/256,/0/bitonal.jpg",
        200,
        Some((256, 256)),
    ),
    (
        "/iiif/3/hubble/256,256,256,256/256,/0/bitonal.jpg",
        200,
        Some((256, 256)),
    ),
    // The tile path returns the wrong tile for 180°.
    (
        "/iiif/2/hubble/0,0,256,256/256,/180/default.jpg",
        200,
        Some((256, 256)),
    ),
];

#[tokio::test]
async fn known_iipsrv_crashers_are_answered_and_iipsrv_survives() {
    let mut stack = Stack::start();
    let client = client();
    for (path, status, size) in CRASHERS {
        let response = client.get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), *status, "{path}");
        let body = response.bytes().await.unwrap();
        if let Some(size) = size {
            assert_eq!(image_size(&body), *size, "{path}");
        }
    }
    for process in &mut stack.iipsrv {
        assert!(
            process.is_alive(),
            "iipsrv on {} died; log: {}",
            process.port,
            process.log_path().display()
        );
    }
    assert!(stack.gateway_alive());
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_never_reach_iipsrv_alive_state() {
    let mut stack = Stack::start();
    let client = client();
    let junk = [
        "/iiif/3/%00/info.json",
        "/iiif/3/%ZZ/info.json",
        "/iiif/3/%C3%28/info.json",
        "/iiif/3/..%2F..%2Fetc%2Fpasswd/info.json",
        "/iiif/3/..%2Fsecret/full/max/0/default.jpg",
        "/iiif/3/a%26b/info.json",
        "/iiif/3/astronaut/full/max/0/default.jpg%00",
        "/iiif/3/astronaut/full/max/0/default",
        "/iiif/3/astronaut/full/max/0/.jpg",
        "/iiif/3/astronaut/full/max/0/default.jpg.jpg",
        "/iiif/3/astronaut//max/0/default.jpg",
        "/iiif/3/astronaut/full/99999999999999999999,/0/default.jpg",
        "/iiif/3/astronaut/pct:1e3,0,10,10/max/0/default.jpg",
        "/iiif/3/astronaut/full/max/NaN/default.jpg",
        "/iiif/3/astronaut/full/max/-0/default.jpg",
        "/iiif/3/astronaut/full/max/+90/default.jpg",
        "/iiif/2/astronaut/full/,/0/default.jpg",
        "/iiif/2/astronaut/full/!,/0/default.jpg",
        "/iiif/2/astronaut/full/pct:/0/default.jpg",
        "/iiif/2/astronaut/square/full/0/DEFAULT.JPG",
    ];
    for path in junk {
        let response = client.get(stack.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{path} → {status}");
    }
    for process in &mut stack.iipsrv {
        assert!(process.is_alive());
    }
}

#[tokio::test]
async fn query_strings_are_never_forwarded() {
    let stack = Stack::start();
    // iipsrv would run its FIF/CVT protocols from a query string; the gateway drops it.
    let response = client()
        .get(stack.url("/iiif/3/astronaut/full/64,/0/default.jpg?FIF=../etc/passwd&CVT=jpeg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(image_size(&response.bytes().await.unwrap()), (64, 64));
}

#[tokio::test]
async fn a_dead_iipsrv_process_is_taken_out_and_back_into_rotation() {
    let mut stack = Stack::start();
    let client = client();
    stack.iipsrv[0].kill();
    // Every request still succeeds: connection refused is retried on the live process.
    for i in 0..20 {
        let path = format!("/iiif/3/astronaut/full/{},/0/default.jpg", 40 + i);
        let response = client.get(stack.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let health: serde_json::Value = client
        .get(stack.admin_url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let healthy: Vec<bool> = health["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["healthy"].as_bool().unwrap())
        .collect();
    assert_eq!(healthy.iter().filter(|h| **h).count(), 1, "{health}");

    stack.iipsrv[0].restart();
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let health: serde_json::Value = client
            .get(stack.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["healthy"] == true)
        {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "restarted iipsrv was not put back into rotation");
    // Counted just after the process is back in rotation: wait for the count.
    let text = metrics_once_they_show(
        &stack,
        "iiif_gateway_backend_health_changes_total{to=\"up\"} 1",
    )
    .await;
    for to in ["down", "up"] {
        let line = format!("iiif_gateway_backend_health_changes_total{{to=\"{to}\"}}");
        assert_eq!(metric_line(&text, &line), 1.0, "{line}: {text}");
    }
}

#[tokio::test]
async fn with_every_iipsrv_dead_the_gateway_answers_503_fast_and_recovers() {
    let mut stack = Stack::start_with(StackOptions {
        iipsrv_processes: 1,
        ..Default::default()
    });
    let client = client();
    // Warm the facts so the image request goes straight to the pool.
    assert_eq!(
        client
            .get(stack.url("/iiif/3/astronaut/info.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stack.iipsrv[0].kill();
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = client
            .get(stack.url("/iiif/3/astronaut/full/50,/0/default.jpg"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let ready = client.get(stack.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(stack.gateway_alive());

    stack.iipsrv[0].restart();
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = client
            .get(stack.url("/iiif/3/astronaut/full/50,/0/default.jpg"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "service did not recover after iipsrv came back");
}

#[tokio::test]
async fn concurrent_requests_all_succeed_over_two_processes() {
    let stack = Stack::start();
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let url = stack.url(&format!("/iiif/3/hubble/full/{},/0/default.jpg", 50 + i));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
}

/// The parser's fuzz seed corpus (`gateway/iiif/fuzz/corpus/parse_route`), sent through the
/// gateway to real iipsrv processes with a real image's identifier.
#[tokio::test]
async fn the_fuzz_corpus_never_crashes_iipsrv_or_gets_a_5xx() {
    let mut stack = Stack::start();
    let client = client();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/iiif/fuzz/corpus/parse_route");
    let mut sent = 0;
    for entry in std::fs::read_dir(&corpus).expect("fuzz corpus") {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let rest = text
            .strip_prefix("id")
            .map_or(text.to_string(), |tail| format!("hubble{tail}"));
        for version in ["2", "3"] {
            let Ok(url) = reqwest::Url::parse(&stack.url(&format!("/iiif/{version}/{rest}")))
            else {
                continue;
            };
            let response = client.get(url.clone()).send().await.unwrap();
            assert!(
                response.status().as_u16() < 500,
                "{url} → {}",
                response.status()
            );
            sent += 1;
        }
    }
    assert!(sent >= 50, "only {sent} corpus requests could be sent");
    for process in &mut stack.iipsrv {
        assert!(process.is_alive(), "iipsrv on {} died", process.port);
    }
}

/// From the moment the gateway acts on SIGTERM (it logs that it is draining), it is not ready:
/// `/readyz` answers 503 "draining" while the admin listener still answers, and nothing once it
/// has closed. A load balancer polling readiness never sees it ready again. (`kill` returns
/// before the signal is handled, so a poll right after it may still come first.)
#[tokio::test]
async fn after_sigterm_the_gateway_is_never_ready_again() {
    let stack = Stack::start();
    let ready = stack.admin_url("/readyz");
    let before = client().get(&ready).send().await.unwrap();
    assert_eq!(before.status(), 200);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &stack.gateway_pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let handled = std::time::Instant::now() + Duration::from_secs(5);
    while !stack.gateway_log().contains("draining:") {
        assert!(
            std::time::Instant::now() < handled,
            "no drain within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let answer = match client().get(&ready).send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                assert_ne!(code, 200, "ready after SIGTERM: {body}");
                format!("{code} {}", body.trim())
            }
            Err(_) => "no answer".to_owned(),
        };
        *seen.entry(answer).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("/readyz after SIGTERM: {seen:?}");
}

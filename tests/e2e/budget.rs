//! The render budget against the real gateway and iipsrv (docs/security.md, "Render budget"):
//! worst-case renders at 50 concurrent stay within the memory bound and every request gets an
//! answer; a request above the per-request ceiling is refused up front; clients that hang up
//! leave nothing queued; `HEAD` does no pixel work. Bounded in requests and time.

use std::time::{Duration, Instant};

use crate::support::{client, configure, metric_line, metrics, Stack, StackOptions};

const BUDGET_MIB: u64 = 192;

fn budget_stack() -> Stack {
    Stack::start_with(StackOptions {
        configure: configure(|raw, _| {
            raw.render.memory_mib = Some(BUDGET_MIB);
            raw.render.queue_timeout_ms = Some(3000);
        }),
        ..StackOptions::default()
    })
}

/// The sum of every sample of `name` (all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn fifty_worst_case_renders_stay_within_the_memory_bound() {
    let stack = budget_stack();
    let before = stack.gateway_peak_rss();
    let client = client();
    // Upscaled, rotated by odd angles, into the formats that cost the most to encode: each
    // is a new render (no two alike), and most are too large to run more than two at once.
    let formats = ["tif", "gif", "png", "webp", "jpg"];
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let path = format!(
                "/iiif/3/astronaut/full/^{},/{}.5/default.{}",
                1200 + 40 * i,
                11 + i,
                formats[i % formats.len()]
            );
            let (client, url) = (client.clone(), stack.url(&path));
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.bytes().await.unwrap();
                (path, status, retry_after, body.len())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for request in requests {
        let (path, status, retry_after, length) = request.await.unwrap();
        assert!(
            matches!(status, 200 | 400 | 503),
            "{path} → {status} ({length} bytes)"
        );
        if status == 503 {
            assert!(retry_after, "{path}: a 503 says when to come back");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    let grown = stack.gateway_peak_rss().saturating_sub(before);
    println!(
        "statuses {statuses:?}; peak RSS grew by {} MiB (budget {BUDGET_MIB} MiB)",
        grown >> 20
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 2,
        "{statuses:?}"
    );
    // The budget bounds what renders hold; the allocator's own overhead (per-thread arenas,
    // fragmentation) comes on top, and stays well under half the budget here.
    assert!(
        grown <= (BUDGET_MIB + BUDGET_MIB / 2) << 20,
        "peak RSS grew by {} MiB with a {BUDGET_MIB} MiB budget",
        grown >> 20
    );
    let text = metrics(&stack).await;
    assert_eq!(
        metric_line(&text, "iiif_gateway_render_reserved_bytes"),
        0.0
    );
    assert_eq!(
        metric_line(&text, "iiif_gateway_render_budget_bytes"),
        (BUDGET_MIB << 20) as f64
    );
    assert!(stack.gateway_log().lines().all(|l| !l.contains("panicked")));
}

#[tokio::test]
async fn a_request_above_the_per_request_ceiling_is_refused_at_once() {
    let stack = budget_stack();
    let started = Instant::now();
    // 5000² upscaled and rotated into TIFF: about a gigabyte in the worst case.
    let response = client()
        .get(stack.url("/iiif/3/astronaut/full/^max/45.5/default.tif"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("rendering this request needs about ")
            && text.ends_with(&format!(
                "above the limit of {} MiB per request\n",
                BUDGET_MIB / 2
            )),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing reached iipsrv.
    let metrics = metrics(&stack).await;
    assert_eq!(
        metric_line(
            &metrics,
            "iiif_gateway_render_refusals_total{reason=\"over_budget\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "iiif_gateway_backend_duration_seconds_count{kind=\"image\"}"
        ),
        0.0
    );
    // The same pixels as a JPEG without rotation are fine.
    let response = client()
        .get(stack.url("/iiif/3/astronaut/full/^2000,/0/default.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn clients_that_hang_up_leave_nothing_queued() {
    let stack = budget_stack();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let requests: Vec<_> = (1..=30)
        .map(|i| {
            let url = stack.url(&format!("/iiif/3/hubble/full/^2000,/{i}.5/default.jpg"));
            let impatient = impatient.clone();
            tokio::spawn(async move { impatient.get(url).send().await.is_err() })
        })
        .collect();
    // On a quiet machine the first render or two can finish inside 0.3 s; the rest cannot.
    let mut gave_up = 0;
    for request in requests {
        gave_up += usize::from(request.await.unwrap());
    }
    assert!(
        gave_up >= 25,
        "only {gave_up} of 30 clients gave up after 0.3 s"
    );
    let left = Instant::now();
    // Within a second of the last client leaving, nothing waits for iipsrv or for the budget.
    let deadline = left + Duration::from_secs(1);
    loop {
        let text = metrics(&stack).await;
        let queued = metric_sum(&text, "iiif_gateway_admission_queued");
        if queued == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} still queued 1 s after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What was already running finishes, then the budget is free again.
    let deadline = left + Duration::from_secs(20);
    loop {
        let text = metrics(&stack).await;
        let reserved = metric_line(&text, "iiif_gateway_render_reserved_bytes");
        let in_flight = metric_line(&text, "iiif_gateway_requests_in_flight");
        if reserved == 0.0 && in_flight == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{reserved} bytes reserved, {in_flight} in flight 20 s after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let disconnects = metric_line(
        &metrics(&stack).await,
        "iiif_gateway_client_disconnects_total",
    );
    assert!(disconnects >= 25.0, "{disconnects} disconnects seen");
}

#[tokio::test]
async fn head_answers_without_rendering() {
    let stack = budget_stack();
    let path = "/iiif/3/astronaut/full/^800,/33.5/default.png";
    let head = client().head(stack.url(path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "image/png");
    assert!(head.headers().contains_key("etag"));
    assert!(!head.headers().contains_key("content-length"));
    let text = metrics(&stack).await;
    assert_eq!(
        metric_sum(
            &text,
            "iiif_gateway_backend_duration_seconds_count{kind=\"image\"}"
        ),
        0.0
    );
    assert_eq!(
        metric_sum(&text, "iiif_gateway_render_duration_seconds_count"),
        0.0
    );
    // The same ETag as the GET that does render.
    let get = client().get(stack.url(path)).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["etag"], head.headers()["etag"]);
    // An invalid request is still refused.
    let bad = client()
        .head(stack.url("/iiif/3/astronaut/full/0,/0/default.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

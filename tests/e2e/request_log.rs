//! The request log, read from the gateway's real output: one JSON line per request carrying
//! the id the response sends back, what the derivative cache and the iipsrv pool did, and no
//! id a client other than a trusted proxy chose.

use std::time::{Duration, Instant};

use gateway::request_log::{LogFormat, LogLevel};
use lazyfetch::config::CacheConfig;
use lazyfetch::size::ByteSize;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{client, configure, get, Stack, StackOptions};

/// The gateway's request-log lines so far (its log file mixes them with its own lines).
fn request_lines(stack: &Stack) -> Vec<Value> {
    stack
        .gateway_log()
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The line of the request `id`, waiting for the writer thread.
async fn line_of(stack: &Stack, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = request_lines(stack)
            .into_iter()
            .find(|line| line["request_id"] == id)
        {
            return line;
        }
        assert!(Instant::now() < deadline, "no request-log line for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every answer carries X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn cached_stack() -> Stack {
    Stack::start_with(StackOptions {
        configure: configure(|raw, scratch| {
            raw.cache = Some(CacheConfig::new(scratch.join("cache"), ByteSize(1 << 30)));
        }),
        ..StackOptions::default()
    })
}

#[tokio::test]
async fn each_request_gets_one_line_with_its_id_cache_outcome_lane_and_process() {
    let stack = cached_stack();
    let path = "/iiif/3/astronaut/0,0,256,256/256,/0/default.jpg";
    let first = get(&stack, path).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_id = request_id(&first);
    assert_eq!(first_id.len(), 16, "a made id: {first_id}");
    let bytes = first.bytes().await.unwrap().len();

    let line = line_of(&stack, &first_id).await;
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], path);
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], bytes);
    assert_eq!(line["version"], "3");
    assert_eq!(line["kind"], "image");
    assert_eq!(line["cache"], "miss");
    assert_eq!(line["lane"], "small");
    let backend = line["backend"].as_str().unwrap();
    assert!(
        stack
            .iipsrv
            .iter()
            .any(|i| backend.ends_with(&i.port.to_string())),
        "{backend} is one of the iipsrv processes"
    );
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    assert!(line.get("client").is_none(), "no addresses by default");

    // The same tile again: from the derivative cache, without iipsrv.
    let again = get(&stack, path).await;
    let line = line_of(&stack, &request_id(&again)).await;
    assert!(
        line["cache"] == "memory" || line["cache"] == "disk",
        "{line}"
    );
    assert!(line.get("backend").is_none(), "{line}");

    // An error carries its label.
    let missing = get(&stack, "/iiif/3/no-such-image/info.json").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let line = line_of(&stack, &request_id(&missing)).await;
    assert_eq!(line["status"], 404);
    assert!(line["error"].is_string(), "{line}");
}

#[tokio::test]
async fn a_request_id_is_taken_only_from_a_trusted_proxy_and_only_when_well_formed() {
    // The stack trusts 127.0.0.1, where the test client is.
    let stack = Stack::start();
    let offered = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .header("X-Request-Id", "front-4bf92f3577b34da6")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&offered), "front-4bf92f3577b34da6");
    line_of(&stack, "front-4bf92f3577b34da6").await;

    let hostile = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .header("X-Request-Id", "a\" injected=\"1")
        .send()
        .await
        .unwrap();
    let made = request_id(&hostile);
    assert_eq!(made.len(), 16, "{made}");

    let untrusting = Stack::start_with(StackOptions {
        configure: configure(|raw, _| raw.trusted_proxies.clear()),
        ..StackOptions::default()
    });
    let ignored = client()
        .get(untrusting.url("/iiif/3/astronaut/info.json"))
        .header("X-Request-Id", "chosen-by-client")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id(&ignored), "chosen-by-client");
}

#[tokio::test]
async fn logfmt_sampling_and_level_come_from_the_config() {
    let stack = Stack::start_with(StackOptions {
        configure: configure(|raw, _| {
            raw.request_log.format = Some(LogFormat::Logfmt);
            raw.request_log.level = Some(LogLevel::Warn);
        }),
        ..StackOptions::default()
    });
    let ok = get(&stack, "/iiif/3/astronaut/info.json").await;
    let ok_id = request_id(&ok);
    let missing = get(&stack, "/iiif/3/nothing-here/info.json").await;
    let missing_id = request_id(&missing);
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = stack.gateway_log();
        if log.contains(&format!("request_id={missing_id}")) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = log
        .lines()
        .find(|l| l.contains(&format!("request_id={missing_id}")))
        .expect("the 404 is logged at level warn");
    assert!(line.contains(" status=404 "), "{line}");
    assert!(line.starts_with("time="), "{line}");
    assert!(
        log.contains(&format!("[request {missing_id}]")),
        "the gateway's own line about the 404 names the request"
    );
    assert!(!log.contains(&ok_id), "a 200 is below level warn");
}

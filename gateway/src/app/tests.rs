//! [`Gateway::handle`] without sockets: requests go in as [`Incoming`] values and replies come
//! out as [`Reply`](crate::reply::Reply) values. The pool has no iipsrv process, so every answer
//! here is one the gateway gives by itself; pixel paths are covered by the end-to-end tests in
//! `tests/e2e`.

use std::sync::Arc;

use super::{Gateway, Incoming, Outcome};
use crate::config;
use crate::fcgi::{BackendPool, PoolConfig};
use crate::metrics::Metrics;

const BASE: &str = "http://gateway.test";

fn gateway() -> Gateway {
    let yaml =
        format!("gateway:\n  public_base_url: {BASE}\n  backend:\n    addresses: [127.0.0.1:9]\n");
    let config = config::parse(&yaml).expect("a valid configuration");
    // No process at all: the pool refuses at once, nothing is ever connected to.
    let pool = BackendPool::new(PoolConfig {
        addresses: Vec::new(),
        ..PoolConfig::default()
    });
    Gateway::new(config, pool, Arc::new(Metrics::new()))
}

async fn get(path: &str) -> Outcome {
    send(Incoming {
        method: "GET",
        path,
        ..Incoming::default()
    })
    .await
}

async fn send(request: Incoming<'_>) -> Outcome {
    gateway().handle(&request).await
}

fn body(outcome: &Outcome) -> &str {
    std::str::from_utf8(&outcome.reply.body).expect("a text body")
}

/// Every reply, error or not, carries CORS (`Content-Length` is the listener's job, `service.rs`).
fn assert_common_headers(outcome: &Outcome) {
    assert_eq!(
        outcome.reply.header_value("Access-Control-Allow-Origin"),
        Some("*")
    );
}

#[tokio::test]
async fn an_unknown_path_is_404_with_a_text_body() {
    let outcome = get("/elsewhere/x").await;
    assert_eq!(outcome.reply.status, 404);
    assert_eq!(outcome.kind, "other");
    assert!(outcome
        .reply
        .header_value("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert!(!body(&outcome).is_empty());
    assert_common_headers(&outcome);
}

#[tokio::test]
async fn methods_other_than_get_head_options_are_405() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let outcome = send(Incoming {
            method,
            path: "/iiif/3/a/info.json",
            ..Incoming::default()
        })
        .await;
        assert_eq!(outcome.reply.status, 405, "{method}");
        assert_common_headers(&outcome);
    }
}

#[tokio::test]
async fn a_preflight_is_answered_without_routing() {
    let outcome = send(Incoming {
        method: "OPTIONS",
        path: "/anything",
        preflight_headers: Some("range"),
        ..Incoming::default()
    })
    .await;
    assert_eq!(outcome.kind, "preflight");
    assert!(outcome.reply.status < 300, "{}", outcome.reply.status);
    assert_common_headers(&outcome);
}

#[tokio::test]
async fn an_unversioned_path_redirects_to_the_default_version() {
    let outcome = get("/iiif/a/full/max/0/default.jpg").await;
    assert_eq!(outcome.reply.status, 302);
    assert_eq!(
        outcome.reply.header_value("Location"),
        Some(format!("{BASE}/iiif/3/a/full/max/0/default.jpg").as_str())
    );
    assert_eq!(outcome.reply.header_value("Vary"), Some("Accept"));
}

#[tokio::test]
async fn an_unversioned_info_json_follows_the_accept_profile() {
    let outcome = send(Incoming {
        method: "GET",
        path: "/iiif/a/info.json",
        accept: Some(r#"application/ld+json;profile="http://iiif.io/api/image/2/context.json""#),
        ..Incoming::default()
    })
    .await;
    assert_eq!(outcome.reply.status, 302);
    assert_eq!(
        outcome.reply.header_value("Location"),
        Some(format!("{BASE}/iiif/2/a/info.json").as_str())
    );
}

#[tokio::test]
async fn the_base_uri_is_303_to_info_json() {
    for version in ["2", "3"] {
        let outcome = get(&format!("/iiif/{version}/a%2Fb")).await;
        assert_eq!(outcome.reply.status, 303);
        assert_eq!(outcome.version, version);
        assert_eq!(
            outcome.reply.header_value("Location"),
            Some(format!("{BASE}/iiif/{version}/a%2Fb/info.json").as_str())
        );
    }
}

#[tokio::test]
async fn malformed_image_requests_are_400_before_any_backend_work() {
    for path in [
        "/iiif/3/a/full/max/0/default.jpx",
        "/iiif/3/a/full/full/0/default.jpg", // `full` is a 2.1 size only
        "/iiif/2/a/full/^max/0/default.jpg", // `^` is 3.0 only
        "/iiif/3/a/0,0,0,10/max/0/default.jpg",
        "/iiif/3/a/full/max/400/default.jpg",
        "/iiif/3/a/full/max/0/fancy.jpg",
    ] {
        let outcome = get(path).await;
        assert_eq!(outcome.reply.status, 400, "{path}: {}", body(&outcome));
        assert_eq!(outcome.kind, "invalid", "{path}");
        assert_common_headers(&outcome);
    }
}

#[tokio::test]
async fn identifiers_that_could_escape_the_cache_root_are_refused() {
    for path in [
        "/iiif/3/..%2Fetc%2Fpasswd/info.json",
        "/iiif/3/%2Fetc%2Fpasswd/info.json",
    ] {
        let outcome = get(path).await;
        assert_eq!(outcome.reply.status, 400, "{path}: {}", body(&outcome));
        assert!(
            !body(&outcome).contains("/etc"),
            "{path}: {}",
            body(&outcome)
        );
    }
}

#[tokio::test]
async fn with_no_iipsrv_process_a_valid_request_is_503_with_retry_after() {
    let error_cache_control = gateway().config.cache_control.error.clone();
    for path in [
        "/iiif/3/a/info.json",
        "/iiif/2/a/0,0,10,10/10,/0/default.jpg",
    ] {
        let outcome = get(path).await;
        assert_eq!(outcome.reply.status, 503, "{path}: {}", body(&outcome));
        assert!(
            outcome.reply.header_value("Retry-After").is_some(),
            "{path}"
        );
        assert_eq!(
            outcome.reply.header_value("Cache-Control"),
            Some(error_cache_control.as_str()),
            "{path}"
        );
        assert_common_headers(&outcome);
    }
}

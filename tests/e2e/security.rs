//! Headers iipsrv would trust are never passed on, ids never come from untrusted clients, and
//! the admin endpoints are never on the public listener.

use serde_json::Value;

use crate::support::{client, metrics_once_they_show, Stack, StackOptions};

#[tokio::test]
async fn client_x_iiif_id_and_host_do_not_reach_the_id() {
    let stack = Stack::start_with(StackOptions {
        public_base_url: Some("https://images.example.org".into()),
        ..Default::default()
    });
    let response = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .header("X-IIIF-ID", "https://attacker.example/x\"")
        .header("Host", "evil.example")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["id"], "https://images.example.org/iiif/3/astronaut");
}

#[tokio::test]
async fn trusted_proxy_headers_shape_the_public_id() {
    let stack = Stack::start();
    let response = client()
        .get(stack.url("/iiif/2/astronaut/info.json"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "cdn.example.org")
        .send()
        .await
        .unwrap();
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["@id"], "https://cdn.example.org/iiif/2/astronaut");
}

/// Through the real nginx front (which appends its own value to `X-Forwarded-Host` and
/// `X-Forwarded-For`), what a client writes in those headers or in `Host` never becomes the host
/// of ids, `Location` or `Link`: the gateway believes only the last item, the one nginx added,
/// and nginx answers only for its own server name.
#[tokio::test]
async fn behind_the_nginx_front_clients_cannot_choose_the_public_host() {
    let stack = Stack::start();
    let front = stack.front("images.example.org");
    let through_front = |path: &str| {
        client()
            .get(format!("{}{path}", front.url()))
            .header("Host", "images.example.org")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Prefix", "/phish")
            .header("Forwarded", "host=evil.example;proto=https")
    };

    let response = through_front("/iiif/3/astronaut/info.json")
        .header("X-Request-Id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The id is the front's own ($request_id: 32 hex digits), not the client's.
    let request_id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(
        request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{request_id}"
    );
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["id"], "http://images.example.org/iiif/3/astronaut");

    let response = through_front("/iiif/2/astronaut").send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "http://images.example.org/iiif/2/astronaut/info.json"
    );

    let response = through_front("/iiif/3/astronaut/0,0,256,256/256,/0/default.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains(
            "<http://images.example.org/iiif/3/astronaut/0,0,256,256/max/0/default.jpg>;rel=\"canonical\""
        ),
        "{link}"
    );
    assert!(!link.contains("evil"), "{link}");

    // Another host is not served at all.
    let response = client()
        .get(format!("{}/iiif/3/astronaut/info.json", front.url()))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
}

#[tokio::test]
async fn admin_endpoints_are_not_public() {
    let stack = Stack::start();
    for path in ["/metrics", "/healthz", "/readyz", "/admin/redirects"] {
        let public = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 404, "{path} on the public listener");
    }
    let metrics = client()
        .get(stack.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let ready = client()
        .get(stack.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn error_bodies_never_leak_filesystem_paths() {
    let stack = Stack::start();
    for path in [
        "/iiif/3/no-such-image/info.json",
        "/iiif/2/no-such-image/full/full/0/default.jpg",
        "/iiif/3/collection/info.json",
    ] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains(stack.images.to_str().unwrap()),
            "{path}: {body}"
        );
        assert!(!body.contains('/'), "{path}: {body}");
    }
}

#[tokio::test]
async fn metrics_count_requests() {
    let stack = Stack::start();
    client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .send()
        .await
        .unwrap();
    let counted =
        "iiif_gateway_requests_total{cache=\"none\",kind=\"info\",status=\"200\",version=\"3\"} 1";
    // The latency is recorded just after the count, when the request is logged: wait for it.
    let timed =
        "iiif_gateway_request_duration_seconds_count{cache=\"none\",kind=\"info\",version=\"3\"} 1";
    let text = metrics_once_they_show(&stack, timed).await;
    assert!(text.contains(counted), "{text}");
    assert!(
        text.contains("iiif_gateway_backends{state=\"healthy\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "iiif_gateway_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        text.contains("\niiif_gateway_start_time_seconds "),
        "{text}"
    );
    // Buckets from a memory-tier hit to a minute-long render.
    for bucket in ["0.0001", "60"] {
        assert!(
            text.contains(&format!(
                "iiif_gateway_request_duration_seconds_bucket{{cache=\"none\",kind=\"info\",version=\"3\",le=\"{bucket}\"}}"
            )),
            "{text}"
        );
    }
}

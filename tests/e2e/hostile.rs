//! Hostile clients against the real gateway and iipsrv (docs/security.md): percent-encoded
//! parameters, forged forwarded headers, trickled request heads, connection floods, readers that
//! stop reading. Every test is bounded in requests and time.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{
    client, configure, metric_line, metrics, metrics_once_they_show, Stack, StackOptions,
};

fn address(stack: &Stack) -> String {
    stack
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Python's requests and Java's URI classes encode `^`, `!`, `:` and `,` (IIIF §9).
#[tokio::test]
async fn percent_encoded_parameters_are_served_at_the_right_size() {
    let stack = Stack::start();
    for (path, size) in [
        (
            "/iiif/3/astronaut/full/%5E1200,/0/default.jpg",
            (1200, 1200),
        ),
        (
            "/iiif/3/astronaut/full/%21128,128/0/default.jpg",
            (128, 128),
        ),
        ("/iiif/3/astronaut/full/128%2C/0/default.jpg", (128, 128)),
        ("/iiif/3/astronaut/full/pct%3A50/0/default.jpg", (256, 256)),
        (
            "/iiif/3/astronaut/pct%3A0,0,50,50/100,/0/default.jpg",
            (100, 100),
        ),
        ("/iiif/2/astronaut/full/100,/%2190/default.jpg", (100, 100)),
        ("/iiif/3/astronaut/full/64,/0/default%2Epng", (64, 64)),
    ] {
        let response = client().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.bytes().await.unwrap();
        let image = image::load_from_memory(&body).unwrap();
        assert_eq!((image.width(), image.height()), size, "{path}");
    }
    let response = client()
        .get(stack.url("/iiif/3/astronaut/full/%zz64,/0/default.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.unwrap(),
        "invalid size: malformed percent-encoding\n"
    );
}

/// A client that puts its own host in front of the one the proxy appended chooses nothing.
#[tokio::test]
async fn only_the_nearest_proxys_forwarded_values_count() {
    let stack = Stack::start();
    let response = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .header("X-Forwarded-Host", "evil.example, images.example.org")
        .header("X-Forwarded-Proto", "http, https")
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["id"], "https://images.example.org/iiif/3/astronaut");
}

/// A head trickled one line at a time is cut off at the head deadline, not kept for ever.
#[tokio::test]
async fn a_trickled_request_head_is_closed_at_the_deadline() {
    let stack = Stack::start_with(StackOptions {
        configure: configure(|raw, _| raw.connections.head_timeout_ms = Some(1000)),
        ..StackOptions::default()
    });
    let mut stream = TcpStream::connect(address(&stack)).await.unwrap();
    stream
        .write_all(b"GET /iiif/3/astronaut/info.json HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header line every 300 ms for up to 10 s: far longer than the 1 s deadline.
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the connection was still open after 10 s");
    let text = metrics_once_they_show(&stack, "iiif_gateway_request_head_timeouts_total 1").await;
    assert!(
        text.contains("iiif_gateway_request_head_timeouts_total 1"),
        "{text}"
    );
    // A prompt client on a new connection is served as usual.
    assert_still_serving(&stack).await;
}

/// Past the per-client cap, a connection gets a one-line 429 and is closed; the others stay.
#[tokio::test]
async fn connections_over_the_per_client_cap_are_refused() {
    let stack = Stack::start_with(StackOptions {
        configure: configure(|raw, _| {
            raw.connections.max_per_client = Some(4);
            // Loopback is a trusted proxy in the test stack; this test is about direct clients.
            raw.trusted_proxies.clear();
        }),
        ..StackOptions::default()
    });
    // Six connections from one address: at most four are kept (another one, such as the
    // launcher's readiness probe, may still hold a place), the others are refused at once.
    let mut held = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(address(&stack)).await.unwrap();
        let mut answer = String::new();
        match tokio::time::timeout(
            Duration::from_millis(500),
            stream.read_to_string(&mut answer),
        )
        .await
        {
            Ok(_) => refusals.push(answer),
            Err(_) => held.push(stream),
        }
    }
    assert!(
        (1..=4).contains(&held.len()),
        "{} connections kept",
        held.len()
    );
    assert!(refusals.len() >= 2, "{refusals:?}");
    for answer in &refusals {
        assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
        assert!(
            answer.ends_with("too many connections from this client\n"),
            "{answer}"
        );
    }
    // The held connections still work.
    let stream = &mut held[0];
    stream
        .write_all(
            b"GET /iiif/3/astronaut/info.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    drop(held);
    // Places come back once the gateway has seen the connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client()
            .get(stack.url("/iiif/3/astronaut/info.json"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that reads the head of a large answer and then stops reading is cut off at the
/// write timeout, and the memory its body held goes back to the render budget.
#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_and_its_body_freed() {
    let stack = Stack::start_with(StackOptions {
        configure: configure(|raw, _| {
            raw.connections.write_timeout_ms = Some(1000);
            raw.connections.min_send_rate = Some(0);
        }),
        ..StackOptions::default()
    });
    let socket = TcpSocket::new_v4().unwrap();
    // A small window, so the body cannot hide in the kernel's buffers.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(address(&stack).parse().unwrap())
        .await
        .unwrap();
    // Several megabytes of PNG: too large for the derivative cache, so the body is only held
    // by the response, counted in the render budget until it is sent or dropped.
    stream
        .write_all(
            b"GET /iiif/3/hubble/full/^3000,/0/default.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let read = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..read]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let length: u64 = head
        .lines()
        .find_map(|line| {
            line.strip_prefix("content-length: ")
                .or(line.strip_prefix("Content-Length: "))
        })
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    assert!(
        length > 4 << 20,
        "{length} bytes is too small for this test"
    );
    // Not reading: within a few seconds the gateway gives up and frees the body.
    let started = Instant::now();
    loop {
        let reserved = metric_line(
            &metrics(&stack).await,
            "iiif_gateway_render_reserved_bytes ",
        );
        if reserved == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{reserved} bytes still reserved 15 s after the client stopped reading"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What is left in the socket ends before the body does: the connection was closed.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the connection is closed");
    assert!(
        (rest.len() as u64) < length,
        "{} of {length} bytes arrived",
        rest.len()
    );
    // The gateway serves as before.
    assert_still_serving(&stack).await;
}

/// A prompt client on a new connection is served as usual.
async fn assert_still_serving(stack: &Stack) {
    let response = client()
        .get(stack.url("/iiif/3/astronaut/info.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

//! A one-purpose HTTP/1.1 server on loopback for the tests of the client and the engine: it answers every
//! request with a fixed reply chosen by the request's number, or never.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-purpose HTTP server on loopback: answers each connection's requests with `respond(n)`, where `n`
/// counts requests across connections.
pub(crate) async fn server(respond: fn(usize) -> Option<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let index = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    match respond(index) {
                        Some(answer) => {
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        // Hang: never answer.
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                }
            });
        }
    });
    address
}

//! The admin listener: metrics and health, never on the public port.
//!
//! `/metrics` is the Prometheus exposition, `/healthz` says the process is alive and lists the
//! iipsrv processes, `/readyz` is 200 only while at least one iipsrv process is healthy (a load
//! balancer should stop sending traffic otherwise).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::Gateway;

/// Serves the admin endpoints.
pub struct AdminApp {
    gateway: Arc<Gateway>,
}

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        AdminApp { gateway }
    }

    fn metrics(&self) -> (u16, &'static str, Vec<u8>) {
        let healthy = self.gateway.pool.healthy_count() as i64;
        let total = self.gateway.pool.snapshot().len() as i64;
        let gauge = &self.gateway.metrics.backends;
        gauge.with_label_values(&["healthy"]).set(healthy);
        gauge.with_label_values(&["down"]).set(total - healthy);
        (
            200,
            "text/plain; version=0.0.4",
            self.gateway.metrics.render(),
        )
    }

    fn health(&self) -> (u16, &'static str, Vec<u8>) {
        let backends: Vec<serde_json::Value> = self
            .gateway
            .pool
            .snapshot()
            .into_iter()
            .map(|b| {
                serde_json::json!({
                    "address": b.addr,
                    "healthy": b.healthy,
                    "in_flight": b.in_flight,
                    "served": b.served,
                    "failures": b.failures,
                })
            })
            .collect();
        let body = serde_json::json!({ "status": "alive", "backends": backends });
        (200, "application/json", body.to_string().into_bytes())
    }

    fn ready(&self) -> (u16, &'static str, Vec<u8>) {
        if self.gateway.pool.healthy_count() > 0 {
            (200, "text/plain", b"ready\n".to_vec())
        } else {
            (503, "text/plain", b"no healthy iipsrv process\n".to_vec())
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => self.metrics(),
            "/healthz" => self.health(),
            "/readyz" => self.ready(),
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .header("Cache-Control", "no-store")
            .body(body)
            .expect("static response parts")
    }
}

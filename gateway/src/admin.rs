//! The admin listener: metrics and health, never on the public port.
//!
//! `/metrics` is the Prometheus exposition, `/healthz` says the process is alive and lists the
//! iipsrv processes, `/readyz` is 200 only while at least one iipsrv process is healthy (a load
//! balancer should stop sending traffic otherwise), `/admin/redirects/…` is the ID archive's
//! admin API (bearer token; see `redirects::admin_api`) and `DELETE /admin/images/{id}` purges
//! one image from the caches (`images_api`).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::Gateway;
use crate::images_api;
use crate::redirects::admin_api::{self, AdminResponse};
use crate::redirects::store::RedirectStore;

/// Serves the admin endpoints.
pub struct AdminApp {
    gateway: Arc<Gateway>,
    /// The ID archive, when `gateway.redirects` is configured.
    store: Option<RedirectStore>,
    token: Option<String>,
}

impl AdminApp {
    pub fn new(gateway: Arc<Gateway>, store: Option<RedirectStore>, token: Option<String>) -> Self {
        AdminApp {
            gateway,
            store,
            token,
        }
    }

    /// Reads the request body, stopping one byte past `limit` (the API answers 413 then).
    async fn read_body(session: &mut ServerSession, limit: usize) -> Vec<u8> {
        let mut body = Vec::new();
        while body.len() <= limit {
            match session.read_request_body().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body
    }

    async fn redirects_api(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let target = header
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authorization = header
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Refuse unauthenticated calls before reading a body of up to the import limit.
        let early = admin_api::refuse_early(
            self.store.is_some(),
            self.token.as_deref(),
            &target,
            authorization.as_deref(),
        );
        let answer = match early {
            Some(refusal) => refusal,
            None => {
                let limit = admin_api::body_limit(&method, &target);
                let body = Self::read_body(session, limit).await;
                admin_api::handle(
                    self.store.as_ref(),
                    self.token.as_deref(),
                    &method,
                    &target,
                    authorization.as_deref(),
                    &body,
                )
                .await
            }
        };
        admin_response(answer)
    }

    async fn images_api(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let authorization = header
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let answer = images_api::handle(
            &self.gateway,
            self.token.as_deref(),
            header.method.as_str(),
            header.uri.path(),
            authorization,
        )
        .await;
        admin_response(answer)
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

/// The HTTP form of an admin API answer.
fn admin_response(answer: AdminResponse) -> Response<Vec<u8>> {
    let mut response = Response::builder()
        .status(answer.status)
        .header("Content-Type", answer.content_type)
        .header("Content-Length", answer.body.len())
        .header("Cache-Control", "no-store");
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    response
        .body(answer.body)
        .expect("valid admin API response")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if admin_api::handles(session.req_header().uri.path()) {
            return self.redirects_api(session).await;
        }
        if images_api::handles(session.req_header().uri.path()) {
            return self.images_api(session).await;
        }
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

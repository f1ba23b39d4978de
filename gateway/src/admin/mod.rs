//! The admin listener: metrics, health and the admin APIs, never on the public port.
//!
//! `/metrics` is the Prometheus exposition, `/healthz` says the process is alive and lists the
//! iipsrv processes, `/readyz` is 200 only while at least one iipsrv process is healthy (a load
//! balancer should stop sending traffic otherwise), `/admin/redirects/…` is the ID archive's
//! admin API ([`redirects`]) and `DELETE /admin/images/{id}` purges one image from the caches
//! ([`images`]), `GET /admin/status` feeds the admin console ([`status`]). The APIs need the
//! bearer token ([`auth`]) and answer an [`AdminResponse`] ([`reply`]). `/` and `/console/…`
//! serve the admin console itself ([`console`]), a page that signs in with the token and calls
//! the same APIs. Only this file knows Pingora.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use idarchive::store::RedirectStore;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::Gateway;

pub mod auth;
pub mod console;
pub mod images;
pub mod redirects;
pub mod reply;
pub mod status;

pub use reply::AdminResponse;

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

    async fn redirects_api(&self, session: &mut ServerSession) -> AdminResponse {
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let target = header
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authorization = authorization(session).map(str::to_owned);
        // Refuse unauthenticated calls before reading a body of up to the import limit.
        let early = redirects::refuse_early(
            self.store.is_some(),
            self.token.as_deref(),
            &target,
            authorization.as_deref(),
        );
        if let Some(refusal) = early {
            return refusal;
        }
        let limit = redirects::body_limit(&method, &target);
        let body = Self::read_body(session, limit).await;
        redirects::handle(
            self.store.as_ref(),
            self.token.as_deref(),
            &method,
            &target,
            authorization.as_deref(),
            &body,
        )
        .await
    }

    async fn images_api(&self, session: &mut ServerSession) -> AdminResponse {
        let header = session.req_header();
        images::handle(
            &self.gateway,
            self.token.as_deref(),
            header.method.as_str(),
            header.uri.path(),
            authorization(session),
        )
        .await
    }

    fn metrics(&self) -> AdminResponse {
        let healthy = self.gateway.pool.healthy_count() as i64;
        let total = self.gateway.pool.snapshot().len() as i64;
        let gauge = &self.gateway.metrics.backends;
        gauge.with_label_values(&["healthy"]).set(healthy);
        gauge.with_label_values(&["down"]).set(total - healthy);
        if let Some(lookup) = self.gateway.redirect_lookup() {
            let open = lookup.circuit_open();
            self.gateway
                .metrics
                .redirect_circuit_open
                .set(i64::from(open));
        }
        AdminResponse::new(
            200,
            "text/plain; version=0.0.4",
            self.gateway.metrics.render(),
        )
    }

    fn health(&self) -> AdminResponse {
        let backends = status::backends_json(&self.gateway);
        let body = serde_json::json!({ "status": "alive", "backends": backends });
        AdminResponse::new(200, "application/json", body.to_string().into_bytes())
    }

    fn ready(&self) -> AdminResponse {
        match self.gateway.not_ready() {
            None => AdminResponse::new(200, "text/plain", b"ready\n".to_vec()),
            Some(why) => AdminResponse::new(503, "text/plain", format!("{why}\n").into_bytes()),
        }
    }
}

/// The `Authorization` header, if it is text.
fn authorization(session: &ServerSession) -> Option<&str> {
    session
        .req_header()
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let answer = if redirects::handles(&path) {
            self.redirects_api(session).await
        } else if images::handles(&path) {
            self.images_api(session).await
        } else {
            let method = session.req_header().method.as_str().to_owned();
            match path.as_str() {
                "/metrics" => self.metrics(),
                "/healthz" => self.health(),
                "/readyz" => self.ready(),
                status::PATH => status::handle(
                    &self.gateway,
                    self.token.as_deref(),
                    &method,
                    authorization(session),
                ),
                _ => console::asset(&method, &path).unwrap_or_else(|| {
                    AdminResponse::new(404, "text/plain", b"not found\n".to_vec())
                }),
            }
        };
        answer.into_http()
    }
}

//! `GET /admin/status`: what the admin console's status page shows, in one call: readiness,
//! the iipsrv processes and admission lanes, the cache mount and memory tier, the ID archive's
//! breaker, and where the public IIIF endpoints are (for the console's viewer). Needs the
//! bearer token, like every admin API.

use serde_json::{json, Value};

use super::auth::refuse_unauthenticated;
use super::AdminResponse;
use crate::app::Gateway;

/// The path this API answers.
pub const PATH: &str = "/admin/status";

/// Answers one request.
pub fn handle(
    gateway: &Gateway,
    token: Option<&str>,
    method: &str,
    authorization: Option<&str>,
) -> AdminResponse {
    if let Some(refusal) = refuse_unauthenticated(token, authorization) {
        return refusal;
    }
    if method != "GET" && method != "HEAD" {
        return AdminResponse::error(405, format!("{method} is not allowed here"))
            .with_header("Allow", "GET");
    }
    let lanes: Vec<Value> = gateway
        .pool
        .lanes()
        .into_iter()
        .map(|lane| {
            json!({
                "lane": lane.lane.label(),
                "queued": lane.queued,
                "in_service": lane.in_service,
                "peak_in_service": lane.peak_in_service,
                "admitted": lane.admitted,
                "rejected": lane.rejected,
                "service_time_ms": lane.service_time.map(|t| t.as_secs_f64() * 1000.0),
            })
        })
        .collect();
    let redirects = gateway
        .redirect_lookup()
        .map(|lookup| json!({ "circuit_open": lookup.circuit_open() }));
    AdminResponse::json(
        200,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "not_ready": gateway.not_ready(),
            "public": gateway.public_endpoint(),
            "backends": backends_json(gateway),
            "lanes": lanes,
            "cache": gateway.cache_status(),
            "redirects": redirects,
        }),
    )
}

/// Each iipsrv process: address, health, requests in flight, served and failed.
pub fn backends_json(gateway: &Gateway) -> Vec<Value> {
    gateway
        .pool
        .snapshot()
        .into_iter()
        .map(|b| {
            json!({
                "address": b.addr,
                "healthy": b.healthy,
                "in_flight": b.in_flight,
                "served": b.served,
                "failures": b.failures,
            })
        })
        .collect()
}

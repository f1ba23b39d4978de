//! The Pingora adapter: the only module that knows Pingora's types.
//!
//! The gateway answers every request itself from `request_filter` (iipsrv speaks FastCGI, which
//! Pingora's upstream side cannot), so `upstream_peer` is never reached.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use prometheus::IntGauge;

use crate::app::{Gateway, Incoming};
use crate::conditional::Preconditions;
use crate::connections::gate::{Gate, Permit, Refused};
use crate::connections::ConnectionSettings;
use crate::forwarded::ProxyHeaders;
use crate::public_url::{OriginHeaders, TrustedProxies};
use crate::reply::Reply;
use crate::request_log::notes::{self, SharedNotes};
use crate::request_log::Entry;

/// The public IIIF listener.
pub struct PublicService {
    gateway: Arc<Gateway>,
    connections: ConnectionSettings,
    proxies: TrustedProxies,
    /// Requests in flight per client behind a trusted proxy (see `crate::connections`).
    proxied_clients: Arc<Gate>,
}

impl PublicService {
    pub fn new(
        gateway: Arc<Gateway>,
        connections: ConnectionSettings,
        proxies: TrustedProxies,
    ) -> Self {
        PublicService {
            gateway,
            proxied_clients: Gate::new(usize::MAX, connections.max_per_client),
            connections,
            proxies,
        }
    }

    /// The per-request settings of connection hygiene, which Pingora keeps per session.
    fn apply_connection_settings(&self, session: &mut Session) {
        let settings = &self.connections;
        session.set_keepalive(Some(settings.keepalive_timeout.as_secs()));
        session.set_write_timeout(Some(settings.write_timeout));
        session.set_min_send_rate(settings.min_send_rate);
    }

    /// A place among the requests of `client` when it came through a trusted proxy;
    /// `Ok(None)` when the peer is not a proxy (its connections are capped instead).
    fn enter_proxied(
        &self,
        client: Option<IpAddr>,
        behind_proxy: bool,
    ) -> std::result::Result<Option<Permit>, Refused> {
        if behind_proxy {
            self.proxied_clients.enter(client).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Per-request state kept for the request log and metrics.
pub struct RequestContext {
    started: Instant,
    version: &'static str,
    kind: &'static str,
    status: u16,
    body_bytes: usize,
    /// What the request path noted, its id included (set when the request head is read).
    notes: Option<SharedNotes>,
    /// The client's address as the request log gives it (a trusted proxy's word, or the peer).
    client: Option<IpAddr>,
}

#[async_trait]
impl ProxyHttp for PublicService {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            started: Instant::now(),
            version: "none",
            kind: "other",
            status: 0,
            body_bytes: 0,
            notes: None,
            client: None,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "the gateway answers every request itself",
        )
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        self.apply_connection_settings(session);
        // The request's view borrows from a copy of its head, so that the session stays free
        // to notice a client that hangs up while the answer is being made.
        let header = session.req_header().clone();
        let text = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let proxy = ProxyHeaders {
            forwarded: text("forwarded"),
            forwarded_for: text("x-forwarded-for"),
            forwarded_proto: text("x-forwarded-proto"),
            forwarded_host: text("x-forwarded-host"),
            forwarded_prefix: text("x-forwarded-prefix"),
        };
        let behind_proxy = peer.is_some_and(|ip| self.proxies.contains(ip));
        // The peer, or the client a trusted proxy names: resolved once, for the per-client
        // cap and the request log.
        ctx.client = peer.map(|ip| self.proxies.client_address(ip, &proxy));
        let notes = notes::start(
            self.gateway
                .request_log
                .ids
                .choose(text("x-request-id"), behind_proxy),
        );
        ctx.notes = Some(notes.clone());
        let _client_permit = match self.enter_proxied(ctx.client, behind_proxy) {
            Ok(permit) => permit,
            Err(refused) => {
                self.gateway
                    .metrics
                    .connections_refused
                    .with_label_values(&[crate::connections::refusal_label(refused)])
                    .inc();
                let reply =
                    Reply::failure(&crate::error::Error::TooManyRequests.response(), "no-store")
                        .finish();
                ctx.status = reply.status;
                write_reply(session, with_request_id(reply, &notes), false).await?;
                return Ok(true);
            }
        };
        let incoming = Incoming {
            method: header.method.as_str(),
            path: header.uri.path(),
            peer,
            accept: text("accept"),
            origin_headers: OriginHeaders {
                host: text("host").or_else(|| header.uri.authority().map(|a| a.as_str())),
                proxy,
            },
            preflight_headers: text("access-control-request-headers"),
            preconditions: Preconditions {
                if_none_match: text("if-none-match"),
                if_modified_since: text("if-modified-since"),
            },
        };
        let outcome = {
            // Dropped when the request is answered, and also when its future is dropped (the
            // client went away mid-request), so the gauge never drifts upwards.
            let _in_flight = InFlight::enter(&self.gateway.metrics.in_flight);
            let answer = notes::scope(notes.clone(), self.gateway.handle(&incoming));
            tokio::pin!(answer);
            tokio::select! {
                biased;
                outcome = &mut answer => outcome,
                gone = session.read_body_or_idle(true) => match gone {
                    Err(error) if error.etype() == &ErrorType::ConnectionClosed => {
                        // Dropping the answer drops its place in the iipsrv queue and any step
                        // not yet started; iipsrv finishes what it is running (see `fcgi`).
                        self.gateway.metrics.client_disconnects.inc();
                        ctx.status = 499;
                        return Ok(true);
                    }
                    // Bytes after the request (pipelining, which Pingora does not do here):
                    // answer, then close rather than misread the next request.
                    _ => {
                        session.set_keepalive(None);
                        answer.await
                    }
                },
            }
        };
        ctx.version = outcome.version;
        ctx.kind = outcome.kind;
        ctx.status = outcome.reply.status;
        ctx.body_bytes = outcome.reply.body.len();
        let head_only = header.method == "HEAD";
        if self.gateway.is_draining() {
            // `Connection: close` on every answer while stopping: a client moves to the new
            // process (or another node) after this request, instead of finding its kept-alive
            // connection closed under a request it has just sent.
            session.set_keepalive(None);
        }
        write_reply(session, with_request_id(outcome.reply, &notes), head_only).await?;
        Ok(true)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        let tag = ctx
            .notes
            .as_ref()
            .map(|n| notes::tag_of(&n.lock().expect("notes lock")))
            .unwrap_or_default();
        log::error!("request failed inside the gateway{tag}: {error}");
        ctx.status = 500;
        let written = session.response_written().is_some();
        if !written {
            let reply =
                Reply::with_body(500, "text/plain; charset=utf-8", "internal error\n").finish();
            let _ = write_reply(session, reply, false).await;
        }
        FailToProxy {
            error_code: 500,
            can_reuse_downstream: !written,
        }
    }

    async fn logging(
        &self,
        session: &mut Session,
        _error: Option<&Error>,
        ctx: &mut RequestContext,
    ) {
        let elapsed = ctx.started.elapsed();
        let shared = ctx
            .notes
            .get_or_insert_with(|| notes::start(self.gateway.request_log.ids.choose(None, false)))
            .clone();
        // Held while the line is made: nothing else uses a finished request's notes.
        let notes = shared.lock().expect("notes lock");
        let cache = notes.cache.unwrap_or("none");
        let metrics = &self.gateway.metrics;
        metrics
            .requests
            .with_label_values(&[ctx.version, ctx.kind, status_label(ctx.status), cache])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[ctx.version, ctx.kind, cache])
            .observe(elapsed.as_secs_f64());
        metrics
            .response_bytes
            .with_label_values(&[ctx.kind])
            .inc_by(ctx.body_bytes as u64);
        let request_log = &self.gateway.request_log;
        let header = session.req_header();
        request_log.record(&Entry {
            time: std::time::SystemTime::now(),
            notes: &notes,
            method: header.method.as_str(),
            path: header.uri.path(),
            status: ctx.status,
            bytes: ctx.body_bytes,
            duration: elapsed,
            version: ctx.version,
            kind: ctx.kind,
            client: ctx.client.filter(|_| request_log.settings.client_address),
        });
    }
}

/// `reply` with the request's id, so that a client (or the front) can quote it.
fn with_request_id(reply: Reply, notes: &SharedNotes) -> Reply {
    let id = notes.lock().expect("notes lock").id.clone();
    reply.set_header("X-Request-Id", id)
}

/// One request counted in the `in_flight` gauge for as long as it lives.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Writes a complete reply. The length is always declared: a body without `Content-Length` or
/// chunking would be close-delimited and hang keep-alive clients. A 304 has no body by
/// definition and must not claim a length of 0 (that would describe the resource, RFC 9110
/// §8.6), so it gets none; nor does a `HEAD` answer that did not render the body. The reply's
/// part of the render budget is given back when this returns (or is dropped).
async fn write_reply(session: &mut Session, reply: Reply, head_only: bool) -> Result<()> {
    let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in reply.headers {
        header.append_header(name, value)?;
    }
    if reply.status != 304 && !reply.unknown_length {
        header.insert_header("Content-Length", reply.body.len().to_string())?;
    }
    let no_body = head_only || reply.body.is_empty();
    session
        .write_response_header(Box::new(header), no_body)
        .await?;
    if !no_body {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}

/// Status codes are few, so a label per code stays low-cardinality; anything odd is folded.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        404 => "404",
        429 => "429",
        405 => "405",
        410 => "410",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        499 => "499",
        504 => "504",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_request_leaves_the_in_flight_gauge() {
        let gauge = IntGauge::new("in_flight", "test").unwrap();
        let request = async {
            let _in_flight = InFlight::enter(&gauge);
            std::future::pending::<()>().await;
        };
        // The client goes away after the request started.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), request).await;
        assert_eq!(gauge.get(), 0);
        {
            let _in_flight = InFlight::enter(&gauge);
            assert_eq!(gauge.get(), 1);
        }
        assert_eq!(gauge.get(), 0);
    }
}

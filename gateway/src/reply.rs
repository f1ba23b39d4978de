//! The gateway's answer to one request, independent of the HTTP server that writes it.
//!
//! Handlers build a [`Reply`]; `service.rs` turns it into Pingora calls. Keeping the response a
//! plain value lets the request logic be tested without sockets, and puts the headers every
//! response must carry (CORS above all) in one place: [`Reply::finish`].

use std::sync::Arc;

use bytes::Bytes;

use crate::budget::Reservation;

use crate::error::Response;

/// Methods the public IIIF listener answers.
pub const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

/// Response headers a cross-origin script may read (viewers look at `Link` for the canonical URI).
const EXPOSED_HEADERS: &str = "Link, ETag, Last-Modified, X-Request-Id";

/// One complete response: status, headers and a body already in memory.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The render budget the body holds; given back once the reply is written.
    pub held: Option<Arc<Reservation>>,
    /// A `HEAD` answer that does not know the body's length: no `Content-Length` is sent.
    pub unknown_length: bool,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            held: None,
            unknown_length: false,
        }
    }

    pub fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Reply::new(status)
            .header("Content-Type", content_type)
            .body(body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Replaces every value of a header (matched ignoring case) with one.
    pub fn set_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.header(name, value)
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Keeps `held` (the body's part of the render budget) until the reply is written.
    pub fn holding(mut self, held: Option<Arc<Reservation>>) -> Self {
        self.held = held;
        self
    }

    /// For `HEAD` without the body: the length a `GET` would have is not known.
    pub fn length_unknown(mut self) -> Self {
        self.unknown_length = true;
        self
    }

    /// A redirect; the body stays empty as IIIF's base-URI redirect asks.
    pub fn redirect(status: u16, location: String, cache_control: &str) -> Self {
        Reply::new(status)
            .header("Location", location)
            .header("Cache-Control", cache_control)
    }

    /// The plain-text answer to a failed request ([`crate::error::Error::response`] decided
    /// what it says).
    pub fn failure(response: &Response, cache_control: &str) -> Self {
        let mut reply = Reply::with_body(
            response.status,
            "text/plain; charset=utf-8",
            format!("{}\n", response.message),
        )
        .header("Cache-Control", cache_control);
        if let Some(seconds) = response.retry_after {
            reply = reply.header("Retry-After", seconds.to_string());
        }
        if response.status == 405 {
            reply = reply.header("Allow", ALLOWED_METHODS);
        }
        reply
    }

    /// The CORS preflight answer (IIIF 3.0 §7: SHOULD support OPTIONS).
    pub fn preflight(requested_headers: Option<&str>) -> Self {
        let mut reply = Reply::new(204)
            .header("Access-Control-Allow-Methods", ALLOWED_METHODS)
            .header("Access-Control-Max-Age", "86400");
        if let Some(requested) = requested_headers.filter(|h| is_token_list(h)) {
            reply = reply.header("Access-Control-Allow-Headers", requested.to_owned());
        }
        reply
    }

    /// Adds what every response carries, whatever produced it.
    pub fn finish(mut self) -> Self {
        self.headers
            .push(("Access-Control-Allow-Origin", "*".into()));
        self.headers
            .push(("Access-Control-Expose-Headers", EXPOSED_HEADERS.into()));
        self
    }

    /// The first value of a header, ignoring case.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Only echo preflight header lists made of header-name tokens, so nothing odd is reflected.
fn is_token_list(value: &str) -> bool {
    value.len() <= 1024
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Iipsrv};

    #[test]
    fn every_finished_reply_allows_any_origin() {
        for reply in [
            Reply::new(200),
            Reply::failure(&Error::NoSuchEndpoint.response(), "no-store"),
            Reply::redirect(303, "http://x/info.json".into(), "max-age=1"),
            Reply::new(304),
        ] {
            assert_eq!(
                reply.finish().header_value("access-control-allow-origin"),
                Some("*")
            );
        }
    }

    #[test]
    fn failures_are_short_plain_text() {
        let reply = Reply::failure(&Error::from(Iipsrv::NoProcess).response(), "no-store");
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.header_value("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.header_value("Retry-After"), Some("5"));
        assert_eq!(&reply.body[..], b"no image server process is available\n");
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let reply = Reply::failure(&Error::MethodNotAllowed.response(), "no-store");
        assert_eq!(reply.header_value("Allow"), Some(ALLOWED_METHODS));
    }

    #[test]
    fn preflight_echoes_only_token_lists() {
        let reply = Reply::preflight(Some("Range, X-Requested-With"));
        assert_eq!(
            reply.header_value("Access-Control-Allow-Headers"),
            Some("Range, X-Requested-With")
        );
        let reply = Reply::preflight(Some("x\r\nSet-Cookie: a=b"));
        assert_eq!(reply.header_value("Access-Control-Allow-Headers"), None);
        assert_eq!(reply.status, 204);
    }
}

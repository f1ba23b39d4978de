//! The admin listener's one response type, and its HTTP form.

use http::Response;
use serde_json::{json, Value};

/// An HTTP answer of the admin listener: status, content type, extra headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides `Content-Type`, `Content-Length` and `Cache-Control` (`WWW-Authenticate`,
    /// `Allow`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl AdminResponse {
    /// An answer with a body of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> AdminResponse {
        AdminResponse {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON answer (pretty, with a final newline).
    pub fn json(status: u16, value: &Value) -> AdminResponse {
        let mut body = serde_json::to_vec_pretty(value).expect("JSON values serialize");
        body.push(b'\n');
        AdminResponse::new(status, "application/json", body)
    }

    /// A JSON error: `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> AdminResponse {
        AdminResponse::json(status, &json!({ "error": message.to_string() }))
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> AdminResponse {
        self.headers.push((name, value.into()));
        self
    }

    /// The HTTP response: never cached, always with its length.
    pub fn into_http(self) -> Response<Vec<u8>> {
        let mut response = Response::builder()
            .status(self.status)
            .header("Content-Type", self.content_type)
            .header("Content-Length", self.body.len())
            .header("Cache-Control", "no-store");
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response.body(self.body).expect("valid admin response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_their_headers() {
        let response = AdminResponse::error(405, "no")
            .with_header("Allow", "GET")
            .into_http();
        assert_eq!(response.status(), 405);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("allow"), "GET");
        assert_eq!(header("content-length"), response.body().len().to_string());
        assert_eq!(response.body().as_slice(), b"{\n  \"error\": \"no\"\n}\n");
    }
}

//! The one error type of the IIIF core.
//!
//! Every failure the core can report maps to exactly one HTTP status, so the error carries that status and a
//! short plain-text message that is safe to send to the client. Messages never contain filesystem paths: the
//! core never sees any, and callers must not add them.

use std::fmt;

/// A request the gateway must refuse, with the HTTP status to answer and a message for the client.
///
/// The status is one of:
/// * 400 Bad Request: the URL is malformed, or asks for something IIIF forbids (a size over the limits, upscaling
///   without `^` in 3.0, an unsupported format or rotation);
/// * 501 Not Implemented: a valid 3.0 `^` request that needs upscaling on a deployment that disables it;
/// * 502 Bad Gateway: iipsrv answered with an info.json the core cannot use.
///
/// Tests compare errors with `==`, so the message wording is part of the contract: lowercase, no trailing full
/// stop, and prefixed with the name of the faulty URL segment (`invalid size: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IiifError {
    /// The HTTP status code to answer with.
    pub status: u16,
    /// A short plain-text explanation for the client.
    pub message: String,
}

impl IiifError {
    /// A 400 Bad Request error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// A 501 Not Implemented error.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self {
            status: 501,
            message: message.into(),
        }
    }

    /// A 502 Bad Gateway error: the backend said something the core cannot use.
    pub fn bad_backend(message: impl Into<String>) -> Self {
        Self {
            status: 502,
            message: message.into(),
        }
    }
}

impl fmt::Display for IiifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IiifError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_the_status() {
        assert_eq!(IiifError::bad_request("x").status, 400);
        assert_eq!(IiifError::not_implemented("x").status, 501);
        assert_eq!(IiifError::bad_backend("x").status, 502);
    }

    #[test]
    fn display_is_the_message() {
        assert_eq!(
            IiifError::bad_request("invalid size: 0,").to_string(),
            "invalid size: 0,"
        );
    }
}

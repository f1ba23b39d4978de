//! Targets: a name and the IIIF base URL requests go to (`gateway=http://127.0.0.1:8080/iiif/2`).
//!
//! Only plain `http://` is supported: the benchmark runs on loopback, and TLS would measure the load generator's
//! handshakes rather than the image servers.

use std::fmt;

/// The IIIF Image API syntax a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// IIIF Image API 2.1 (the baseline: iipsrv's own IIIF through nginx).
    V2,
    /// IIIF Image API 3.0.
    V3,
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiVersion::V2 => "IIIF 2.1",
            ApiVersion::V3 => "IIIF 3.0",
        })
    }
}

/// A target as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The name in tables and charts.
    pub name: String,
    /// `host:port`, for connecting and for the `Host` header.
    pub authority: String,
    /// The path before the identifier, without a trailing slash (`/iiif/2`).
    pub base_path: String,
    /// The URL syntax: 3.0 when the base path ends in `/3`, else 2.1.
    pub version: ApiVersion,
}

/// An invalid `--target` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not `NAME=URL`.
    #[error("invalid target {0:?}: expected NAME=http://HOST:PORT/PATH, e.g. gateway=http://127.0.0.1:8080/iiif/2")]
    Syntax(String),
    /// The name cannot be used in tables, CSV and file names.
    #[error("invalid target name {0:?}: use letters, digits, '-' and '_'")]
    Name(String),
    /// Not an `http://` URL with a host.
    #[error("invalid target URL {0:?}: only http://HOST[:PORT][/PATH] is supported")]
    Url(String),
}

impl Target {
    /// Parses `NAME=URL`.
    ///
    /// # Errors
    ///
    /// A missing `=`, a name with other characters than letters, digits, `-` and `_`, or a URL that is not
    /// `http://host[:port][/path]` (no query, no fragment).
    pub fn parse(spec: &str) -> Result<Target, TargetError> {
        let Some((name, url)) = spec.split_once('=') else {
            return Err(TargetError::Syntax(spec.to_string()));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TargetError::Name(name.to_string()));
        }
        let url_error = || TargetError::Url(url.to_string());
        let rest = url.trim().strip_prefix("http://").ok_or_else(url_error)?;
        if rest.contains(['?', '#', ' ']) {
            return Err(url_error());
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once(':') {
            _ if authority.is_empty() || authority.contains('@') => return Err(url_error()),
            Some((host, port)) => {
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(url_error());
                }
                authority.to_string()
            }
            None => format!("{authority}:80"),
        };
        let base_path = path.trim_end_matches('/').to_string();
        let version = if base_path.ends_with("/3") {
            ApiVersion::V3
        } else {
            ApiVersion::V2
        };
        Ok(Target {
            name: name.to_string(),
            authority,
            base_path,
            version,
        })
    }

    /// The full request path for `iiif_path` (`{identifier}/{region}/…`).
    pub fn request_path(&self, iiif_path: &str) -> String {
        format!("{}/{iiif_path}", self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_and_baseline_targets() {
        let gateway = Target::parse("gateway=http://127.0.0.1:8080/iiif/2/").unwrap();
        assert_eq!(
            gateway,
            Target {
                name: "gateway".into(),
                authority: "127.0.0.1:8080".into(),
                base_path: "/iiif/2".into(),
                version: ApiVersion::V2,
            }
        );
        assert_eq!(
            gateway.request_path("a/full/!128,128/0/default.jpg"),
            "/iiif/2/a/full/!128,128/0/default.jpg"
        );
        let baseline = Target::parse("baseline=http://localhost/iiif").unwrap();
        assert_eq!(baseline.authority, "localhost:80");
        assert_eq!(baseline.version, ApiVersion::V2);
        let v3 = Target::parse("gateway-v3=http://127.0.0.1:8080/iiif/3").unwrap();
        assert_eq!(v3.version, ApiVersion::V3);
        assert_eq!(
            Target::parse("root=http://127.0.0.1:1")
                .unwrap()
                .request_path("x"),
            "/x"
        );
    }

    #[test]
    fn rejects_bad_targets() {
        assert!(matches!(
            Target::parse("http://x"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("a b=http://x"),
            Err(TargetError::Name(_))
        ));
        assert!(matches!(
            Target::parse("=http://x"),
            Err(TargetError::Name(_))
        ));
        for url in [
            "https://x/iiif",
            "http://",
            "http://:80/",
            "http://x:port/",
            "http://x:99999/",
            "http://x/iiif?a=b",
            "http://u@x/",
        ] {
            assert!(
                matches!(Target::parse(&format!("t={url}")), Err(TargetError::Url(_))),
                "{url}"
            );
        }
    }
}

//! Which public endpoint a request path names, before any IIIF parsing.
//!
//! `{prefix}/3/…` and `{prefix}/2/…` are the versioned APIs; `{prefix}/…` without a version
//! redirects to one of them. A first segment of `2` or `3` always means a version, so an image
//! whose identifier is literally `3` is reachable only on a versioned path (`{prefix}/3/3/…`).

use iiif::Version;

/// The endpoint a raw request path (without its query string) belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `{prefix}/{2|3}/{rest}`, `rest` non-empty and still percent-encoded.
    Versioned { version: Version, rest: &'a str },
    /// `{prefix}/{rest}` where `rest` does not start with a version.
    Unversioned { rest: &'a str },
    /// Anything else: not an IIIF path of this service.
    Unknown,
}

/// Classifies `path` under `prefix` (which starts with `/` and has no trailing slash).
pub fn classify<'a>(prefix: &str, path: &'a str) -> Endpoint<'a> {
    let Some(after_prefix) = path.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')) else {
        return Endpoint::Unknown;
    };
    let (first, tail) = match after_prefix.split_once('/') {
        Some((first, tail)) => (first, Some(tail)),
        None => (after_prefix, None),
    };
    let version = match first {
        "2" => Some(Version::V2),
        "3" => Some(Version::V3),
        _ => None,
    };
    match (version, tail) {
        (Some(version), Some(rest)) if !rest.is_empty() => Endpoint::Versioned { version, rest },
        (Some(_), _) => Endpoint::Unknown,
        (None, _) if after_prefix.is_empty() => Endpoint::Unknown,
        (None, _) => Endpoint::Unversioned { rest: after_prefix },
    }
}

/// Whether an unversioned path asks for an info.json (the only kind whose version may be
/// negotiated from an `Accept` profile).
pub fn is_info_path(rest: &str) -> bool {
    rest.ends_with("/info.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths() {
        assert_eq!(
            classify("/iiif", "/iiif/3/abc/info.json"),
            Endpoint::Versioned {
                version: Version::V3,
                rest: "abc/info.json"
            }
        );
        assert_eq!(
            classify("/iiif", "/iiif/2/a%2Fb/full/max/0/default.jpg"),
            Endpoint::Versioned {
                version: Version::V2,
                rest: "a%2Fb/full/max/0/default.jpg"
            }
        );
    }

    #[test]
    fn unversioned_paths() {
        assert_eq!(
            classify("/iiif", "/iiif/abc"),
            Endpoint::Unversioned { rest: "abc" }
        );
        assert_eq!(
            classify("/iiif", "/iiif/4/x"),
            Endpoint::Unversioned { rest: "4/x" }
        );
        assert_eq!(
            classify("/iiif", "/iiif/30/x"),
            Endpoint::Unversioned { rest: "30/x" }
        );
    }

    #[test]
    fn everything_else_is_unknown() {
        for path in [
            "/",
            "/iiif",
            "/iiif/",
            "/iiif/3",
            "/iiif/3/",
            "/iiifx/3/a",
            "/other/3/a",
            "/metrics",
            "/admin/x",
        ] {
            assert_eq!(classify("/iiif", path), Endpoint::Unknown, "{path}");
        }
    }

    #[test]
    fn custom_prefix() {
        assert_eq!(
            classify("/images/iiif", "/images/iiif/3/x"),
            Endpoint::Versioned {
                version: Version::V3,
                rest: "x"
            }
        );
        assert_eq!(classify("/images/iiif", "/iiif/3/x"), Endpoint::Unknown);
    }

    #[test]
    fn info_paths() {
        assert!(is_info_path("a/info.json"));
        assert!(!is_info_path("info.json"));
        assert!(!is_info_path("a/full/max/0/default.jpg"));
    }
}

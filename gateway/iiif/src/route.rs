//! Routing: what a path below `/iiif/{2|3}/` asks for.
//!
//! Paths are parsed from the right, as the 3.0 implementation notes suggest, so an identifier may contain an
//! unencoded `/`: the last four segments are always the image parameters, and everything before them is the
//! identifier. The validator's `id_error_escapedslash` relies on this (it sends `a/b` unencoded and expects the
//! 404 of an unknown image, not a 400).

use crate::error::IiifError;
use crate::identifier::Identifier;
use crate::request::ImageRequest;
use crate::version::Version;

/// The file name of the image information document.
const INFO_JSON: &str = "info.json";

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `{identifier}/{region}/{size}/{rotation}/{quality}.{format}`.
    Image {
        /// The image.
        identifier: Identifier,
        /// The parsed parameters.
        request: ImageRequest,
    },
    /// `{identifier}/info.json`.
    Info {
        /// The image.
        identifier: Identifier,
    },
    /// `{identifier}` (optionally with a trailing `/`): the base URI, answered with a 303 to info.json.
    Base {
        /// The image.
        identifier: Identifier,
    },
}

impl Route {
    /// The identifier the route is about.
    pub fn identifier(&self) -> &Identifier {
        match self {
            Route::Image { identifier, .. }
            | Route::Info { identifier }
            | Route::Base { identifier } => identifier,
        }
    }
}

/// Classifies and parses the raw path after `/iiif/{2|3}/` (without any query string).
///
/// * `…/info.json` is an info request; everything before it is the identifier.
/// * Five or more segments are an image request: the last four are the parameters.
/// * A single segment, optionally followed by `/`, is the base URI.
///
/// # Errors
///
/// 400 for empty segments (`a//b`, a leading `/`), for two to four segments that are not an info request, and
/// for any invalid identifier or parameter.
pub fn parse_route(version: Version, rest: &str) -> Result<Route, IiifError> {
    if rest.is_empty() {
        return Err(IiifError::bad_request(
            "invalid request: missing identifier",
        ));
    }
    if let Some(identifier) = rest
        .strip_suffix(INFO_JSON)
        .and_then(|head| head.strip_suffix('/'))
    {
        return Ok(Route::Info {
            identifier: identifier_from_segments(identifier)?,
        });
    }
    let base = rest.strip_suffix('/').unwrap_or(rest);
    if !base.is_empty() && !base.contains('/') {
        return Ok(Route::Base {
            identifier: Identifier::from_raw(base)?,
        });
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(IiifError::bad_request(
            "invalid request: empty path segment",
        ));
    }
    let Some(split) = segments.len().checked_sub(4).filter(|&split| split > 0) else {
        return Err(IiifError::bad_request(
            "invalid request: expected {identifier}/{region}/{size}/{rotation}/{quality}.{format}",
        ));
    };
    let identifier = Identifier::from_raw(&segments[..split].join("/"))?;
    let [region, size, rotation, quality_and_format] = [
        segments[split],
        segments[split + 1],
        segments[split + 2],
        segments[split + 3],
    ];
    let request = ImageRequest::parse(version, region, size, rotation, quality_and_format)?;
    Ok(Route::Image {
        identifier,
        request,
    })
}

/// Builds the identifier of an info request, refusing empty segments such as `a//b`.
fn identifier_from_segments(raw: &str) -> Result<Identifier, IiifError> {
    if raw.is_empty() {
        return Err(IiifError::bad_request(
            "invalid request: missing identifier",
        ));
    }
    if raw.split('/').any(str::is_empty) {
        return Err(IiifError::bad_request(
            "invalid request: empty path segment",
        ));
    }
    Identifier::from_raw(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::quality::Quality;
    use crate::region::Region;
    use crate::size::{Size, SizeKind};

    fn id(raw: &str) -> Identifier {
        Identifier::from_raw(raw).unwrap()
    }

    #[test]
    fn info_requests() {
        assert_eq!(
            parse_route(Version::V3, "abc/info.json"),
            Ok(Route::Info {
                identifier: id("abc")
            })
        );
        assert_eq!(
            parse_route(Version::V2, "a%2Fb/info.json"),
            Ok(Route::Info {
                identifier: id("a%2Fb")
            })
        );
        // An unencoded slash stays part of the identifier.
        assert_eq!(
            parse_route(Version::V3, "a/b/info.json"),
            Ok(Route::Info {
                identifier: id("a/b")
            })
        );
        assert_eq!(
            parse_route(Version::V3, "a/b/c/d/e/f/info.json"),
            Ok(Route::Info {
                identifier: id("a/b/c/d/e/f")
            })
        );
    }

    #[test]
    fn base_requests() {
        assert_eq!(
            parse_route(Version::V3, "abc"),
            Ok(Route::Base {
                identifier: id("abc")
            })
        );
        assert_eq!(
            parse_route(Version::V3, "abc/"),
            Ok(Route::Base {
                identifier: id("abc")
            })
        );
        assert_eq!(
            parse_route(Version::V2, "a%2Fb"),
            Ok(Route::Base {
                identifier: id("a%2Fb")
            })
        );
        // A lone "info.json" is an identifier that happens to have that name.
        assert_eq!(
            parse_route(Version::V3, "info.json"),
            Ok(Route::Base {
                identifier: id("info.json")
            })
        );
    }

    #[test]
    fn image_requests() {
        let route = parse_route(Version::V3, "abc/full/max/0/default.jpg").unwrap();
        let Route::Image {
            identifier,
            request,
        } = route
        else {
            panic!("not an image route")
        };
        assert_eq!(identifier, id("abc"));
        assert_eq!(request.region, Region::Full);
        assert_eq!(
            request.size,
            Size {
                upscale: false,
                kind: SizeKind::Max
            }
        );
        assert_eq!(request.quality, Quality::Default);
        assert_eq!(request.format, Format::Jpg);
    }

    #[test]
    fn identifiers_are_parsed_from_the_right() {
        // The validator's id_error_escapedslash: parsed fine, and the unknown image is then a 404.
        let route = parse_route(Version::V3, "a/b/full/max/0/default.jpg").unwrap();
        assert_eq!(route.identifier(), &id("a/b"));
        let route = parse_route(Version::V2, "x/y/z/full/full/0/default.jpg").unwrap();
        assert_eq!(route.identifier(), &id("x/y/z"));
        assert_eq!(route.identifier().decoded(), "x/y/z");
    }

    #[test]
    fn wrong_segment_counts_are_400() {
        let expected = IiifError::bad_request(
            "invalid request: expected {identifier}/{region}/{size}/{rotation}/{quality}.{format}",
        );
        for rest in [
            "a/b",
            "a/b/",
            "a/full/max/0",
            "full/max/0/default.jpg",
            "a/b/c/d/",
            "a/full/max/default.jpg",
        ] {
            let error = parse_route(Version::V3, rest).unwrap_err();
            assert_eq!(error.status, 400, "{rest:?}");
            if !rest.ends_with('/') {
                assert_eq!(error, expected, "{rest:?}");
            }
        }
    }

    #[test]
    fn empty_segments_are_400() {
        let empty = IiifError::bad_request("invalid request: empty path segment");
        assert_eq!(
            parse_route(Version::V3, "a//full/max/0/default.jpg"),
            Err(empty.clone())
        );
        assert_eq!(
            parse_route(Version::V3, "/a/full/max/0/default.jpg"),
            Err(empty.clone())
        );
        assert_eq!(
            parse_route(Version::V3, "a/full/max/0/default.jpg/"),
            Err(empty.clone())
        );
        assert_eq!(
            parse_route(Version::V3, "a/full//0/default.jpg"),
            Err(empty.clone())
        );
        assert_eq!(
            parse_route(Version::V3, "a//b/info.json"),
            Err(empty.clone())
        );
        assert_eq!(
            parse_route(Version::V3, "/info.json"),
            Err(IiifError::bad_request(
                "invalid request: missing identifier"
            ))
        );
        assert_eq!(parse_route(Version::V3, "/"), Err(empty.clone()));
        assert_eq!(parse_route(Version::V3, "//"), Err(empty));
        assert_eq!(
            parse_route(Version::V3, ""),
            Err(IiifError::bad_request(
                "invalid request: missing identifier"
            ))
        );
    }

    #[test]
    fn parameter_and_identifier_errors_propagate() {
        assert_eq!(
            parse_route(Version::V3, "a/full/full/0/default.jpg")
                .unwrap_err()
                .message,
            "invalid size: full is not valid in IIIF 3.0, use max"
        );
        assert_eq!(
            parse_route(Version::V2, "a/full/^max/0/default.jpg")
                .unwrap_err()
                .message,
            "invalid size: ^max is not valid in IIIF 2.1"
        );
        assert_eq!(
            parse_route(Version::V3, "..%2Fx/info.json")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(parse_route(Version::V3, "%00").unwrap_err().status, 400);
        assert_eq!(
            parse_route(Version::V3, "a/../b/full/max/0/default.jpg")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            parse_route(Version::V3, "a/full/max/0/default")
                .unwrap_err()
                .message,
            "invalid format: missing .format after the quality"
        );
    }
}

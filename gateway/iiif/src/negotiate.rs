//! Content negotiation for info.json and the `Link` headers (iiif-reference §2.3).

use crate::version::Version;

/// The info.json media type of 3.0 when JSON-LD is wanted (the default).
pub const LD_JSON_V3: &str =
    "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"";

/// One media range of an `Accept` header.
#[derive(Debug, PartialEq)]
struct MediaRange {
    /// `type/subtype`, lowercased.
    essence: String,
    /// The `profile` parameter, unquoted, if any.
    profile: Option<String>,
    /// The `q` parameter, 1 when absent.
    quality: f32,
}

/// The `Content-Type` for an info.json response.
///
/// * 3.0: `application/ld+json;profile="…/3/context.json"`, unless the client accepts `application/json` but not
///   `application/ld+json`, in which case plain `application/json` (3.0 §5.1).
/// * 2.1: `application/json`, unless the client accepts `application/ld+json` (2.1 §5.1).
///
/// Media ranges with `q=0` count as not accepted.
pub fn info_content_type(version: Version, accept: Option<&str>) -> &'static str {
    let ranges = accept.map(parse_accept).unwrap_or_default();
    let accepts = |essence: &str| {
        ranges
            .iter()
            .any(|range| range.essence == essence && range.quality > 0.0)
    };
    match version {
        Version::V3 if accepts("application/json") && !accepts("application/ld+json") => {
            "application/json"
        }
        Version::V3 => LD_JSON_V3,
        Version::V2 if accepts("application/ld+json") => "application/ld+json",
        Version::V2 => "application/json",
    }
}

/// The API version an `Accept` header asks for through a JSON-LD `profile` parameter naming a IIIF image context
/// (`…/image/3/context.json` or `…/image/2/context.json`), or `None` when it names neither.
///
/// Quoting, spaces, several media ranges and `q` values are tolerated; the range with the highest `q` wins, and
/// the first listed wins ties. The profile parameter may hold several space-separated URIs.
pub fn version_from_accept(accept: Option<&str>) -> Option<Version> {
    let mut best: Option<(f32, Version)> = None;
    for range in parse_accept(accept?) {
        if range.quality <= 0.0 {
            continue;
        }
        let Some(profile) = &range.profile else {
            continue;
        };
        let version = profile.split_whitespace().find_map(|uri| match uri {
            "http://iiif.io/api/image/3/context.json"
            | "https://iiif.io/api/image/3/context.json" => Some(Version::V3),
            "http://iiif.io/api/image/2/context.json"
            | "https://iiif.io/api/image/2/context.json" => Some(Version::V2),
            _ => None,
        });
        if let Some(version) = version {
            if best.is_none_or(|(quality, _)| range.quality > quality) {
                best = Some((range.quality, version));
            }
        }
    }
    best.map(|(_, version)| version)
}

/// `Link: <http://iiif.io/api/image/{v}/level2.json>;rel="profile"`, for a level-2 service.
pub fn profile_link_header(version: Version) -> String {
    profile_link_header_at_level(version, 2)
}

/// The profile `Link` header for the given compliance level (see `Capabilities::compliance_level`).
pub fn profile_link_header_at_level(version: Version, level: u8) -> String {
    format!("<{}>;rel=\"profile\"", version.level_profile_uri(level))
}

/// `Link: <url>;rel="canonical"`.
pub fn canonical_link_header(url: &str) -> String {
    format!("<{url}>;rel=\"canonical\"")
}

/// Splits an `Accept` header into media ranges. Commas and semicolons inside quoted strings do not split.
fn parse_accept(accept: &str) -> Vec<MediaRange> {
    split_outside_quotes(accept, ',')
        .into_iter()
        .filter_map(|range| {
            let mut parts = split_outside_quotes(range, ';').into_iter();
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut media_range = MediaRange {
                essence,
                profile: None,
                quality: 1.0,
            };
            for parameter in parts {
                let Some((name, value)) = parameter.split_once('=') else {
                    continue;
                };
                let value = unquote(value.trim());
                match name.trim().to_ascii_lowercase().as_str() {
                    "profile" => media_range.profile = Some(value),
                    "q" => {
                        media_range.quality = value
                            .parse::<f32>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .unwrap_or(0.0)
                    }
                    _ => {}
                }
            }
            Some(media_range)
        })
        .collect()
}

/// Splits on `separator` except inside double-quoted strings (where `\` escapes the next character).
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if in_quotes && character == '\\' {
            escaped = true;
        } else if character == '"' {
            in_quotes = !in_quotes;
        } else if character == separator && !in_quotes {
            parts.push(&text[start..index]);
            start = index + character.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Removes surrounding double quotes and backslash escapes from a parameter value.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_string();
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            unquoted.extend(characters.next());
        } else {
            unquoted.push(character);
        }
    }
    unquoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_content_types() {
        assert_eq!(info_content_type(Version::V3, None), LD_JSON_V3);
        assert_eq!(info_content_type(Version::V3, Some("*/*")), LD_JSON_V3);
        assert_eq!(
            info_content_type(Version::V3, Some("application/ld+json")),
            LD_JSON_V3
        );
        assert_eq!(
            info_content_type(Version::V3, Some("application/json")),
            "application/json"
        );
        assert_eq!(
            info_content_type(Version::V3, Some("Application/JSON; charset=utf-8")),
            "application/json"
        );
        assert_eq!(
            info_content_type(Version::V3, Some("application/json, application/ld+json")),
            LD_JSON_V3
        );
        assert_eq!(
            info_content_type(
                Version::V3,
                Some("application/json, application/ld+json;q=0")
            ),
            "application/json"
        );
        assert_eq!(
            info_content_type(Version::V3, Some("application/json;q=0")),
            LD_JSON_V3
        );
        assert_eq!(info_content_type(Version::V3, Some("")), LD_JSON_V3);
    }

    #[test]
    fn v2_content_types() {
        assert_eq!(info_content_type(Version::V2, None), "application/json");
        assert_eq!(
            info_content_type(Version::V2, Some("*/*")),
            "application/json"
        );
        assert_eq!(
            info_content_type(Version::V2, Some("application/json")),
            "application/json"
        );
        // The validator's jsonld test.
        assert_eq!(
            info_content_type(Version::V2, Some("application/ld+json")),
            "application/ld+json"
        );
        assert_eq!(
            info_content_type(Version::V2, Some("text/html, application/ld+json;q=0.5")),
            "application/ld+json"
        );
        assert_eq!(
            info_content_type(Version::V2, Some("application/ld+json;q=0")),
            "application/json"
        );
    }

    #[test]
    fn versions_from_profiles() {
        let v3 = "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"";
        let v2 = "application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\"";
        assert_eq!(version_from_accept(Some(v3)), Some(Version::V3));
        assert_eq!(version_from_accept(Some(v2)), Some(Version::V2));
        assert_eq!(
            version_from_accept(Some(
                "application/ld+json ; profile=http://iiif.io/api/image/2/context.json"
            )),
            Some(Version::V2)
        );
        assert_eq!(
            version_from_accept(Some("application/ld+json;PROFILE=\"http://www.w3.org/ns/json-ld#compacted http://iiif.io/api/image/3/context.json\"")),
            Some(Version::V3)
        );
        assert_eq!(version_from_accept(Some("application/ld+json")), None);
        assert_eq!(version_from_accept(Some("application/json")), None);
        assert_eq!(version_from_accept(None), None);
        assert_eq!(
            version_from_accept(Some("application/ld+json;profile=\"http://example.org/x\"")),
            None
        );
    }

    #[test]
    fn highest_q_then_first_listed_wins() {
        let both = format!(
            "{};q=0.5, {};q=0.9",
            "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"",
            "application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\""
        );
        assert_eq!(version_from_accept(Some(&both)), Some(Version::V2));
        let tie = "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\", \
                   application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\"";
        assert_eq!(version_from_accept(Some(tie)), Some(Version::V3));
        let refused = "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\";q=0, \
                       application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\";q=0.1";
        assert_eq!(version_from_accept(Some(refused)), Some(Version::V2));
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let accept =
            "application/ld+json;profile=\"a,b;c http://iiif.io/api/image/3/context.json\";q=0.8";
        assert_eq!(version_from_accept(Some(accept)), Some(Version::V3));
        assert_eq!(unquote("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn garbage_is_tolerated() {
        for accept in [
            ";;;",
            ",,,",
            "\"",
            "a/b;q=abc",
            "a/b;q=NaN;profile",
            "=;=,=",
            "\u{0}\u{ffff}",
        ] {
            assert_eq!(version_from_accept(Some(accept)), None, "{accept:?}");
            let _ = info_content_type(Version::V3, Some(accept));
        }
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            profile_link_header(Version::V3),
            "<http://iiif.io/api/image/3/level2.json>;rel=\"profile\""
        );
        assert_eq!(
            profile_link_header(Version::V2),
            "<http://iiif.io/api/image/2/level2.json>;rel=\"profile\""
        );
        assert_eq!(
            profile_link_header_at_level(Version::V3, 1),
            "<http://iiif.io/api/image/3/level1.json>;rel=\"profile\""
        );
        assert_eq!(
            canonical_link_header("https://x.org/iiif/3/a/full/max/0/default.jpg"),
            "<https://x.org/iiif/3/a/full/max/0/default.jpg>;rel=\"canonical\""
        );
    }
}

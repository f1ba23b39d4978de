//! Reading iipsrv 1.1's own info.json.
//!
//! Only the image facts are taken from it: size, pyramid levels, tiles and `MAX_CVT`. Everything public-facing
//! (`@id`, profile, qualities, features) is rebuilt by the `info` module, because iipsrv gets much of it wrong
//! (iiif-reference §2.1, §3.5).
//!
//! iipsrv does not JSON-escape control characters in `@id`, so its body is not always valid JSON. The parser
//! first tries the body as it is and, if that fails, blanks the `@id` value with a small scanner and tries again.
//! `@id` is never used, so nothing is lost.

use serde_json::Value;

use crate::error::IiifError;
use crate::limits::ImageFacts;

/// iipsrv's default `MAX_CVT`, used when its info.json does not say.
const DEFAULT_BACKEND_MAX: u32 = 5000;

/// The facts iipsrv's info.json states about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Full-resolution width, never 0.
    pub width: u32,
    /// Full-resolution height, never 0.
    pub height: u32,
    /// Pyramid levels, smallest first, as iipsrv lists them.
    pub sizes: Vec<(u32, u32)>,
    /// Tile sets (iipsrv lists exactly one).
    pub tiles: Vec<TileSpec>,
    /// `MAX_CVT` as `profile[1].maxWidth`.
    pub max_width: Option<u32>,
    /// `MAX_CVT` as `profile[1].maxHeight`.
    pub max_height: Option<u32>,
}

/// One entry of `tiles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileSpec {
    /// Tile width.
    pub width: u32,
    /// Tile height; the width when absent.
    pub height: Option<u32>,
    /// The scale factors at which tiles exist.
    pub scale_factors: Vec<u32>,
}

/// Parses iipsrv's v2 info.json.
///
/// Malformed optional parts (a size without a height, a non-numeric scale factor) are skipped rather than fatal.
///
/// # Errors
///
/// 502 when the body is not JSON even after blanking `@id`, or has no positive integer `width` and `height`.
pub fn parse_backend_info(body: &[u8]) -> Result<BackendInfo, IiifError> {
    let document: Value = match serde_json::from_slice(body) {
        Ok(document) => document,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let repaired = blank_id_value(&text).ok_or_else(|| invalid("not JSON"))?;
            serde_json::from_str(&repaired).map_err(|_| invalid("not JSON"))?
        }
    };
    let width = positive_u32(&document["width"]).ok_or_else(|| invalid("no valid width"))?;
    let height = positive_u32(&document["height"]).ok_or_else(|| invalid("no valid height"))?;
    let sizes = array(&document["sizes"])
        .filter_map(|size| {
            Some((
                positive_u32(&size["width"])?,
                positive_u32(&size["height"])?,
            ))
        })
        .collect();
    let tiles = array(&document["tiles"])
        .filter_map(|tile| {
            Some(TileSpec {
                width: positive_u32(&tile["width"])?,
                height: positive_u32(&tile["height"]),
                scale_factors: array(&tile["scaleFactors"])
                    .filter_map(positive_u32)
                    .collect(),
            })
        })
        .collect();
    // 2.x keeps the limits in the profile's object; accept a top-level value too, in case a newer iipsrv answers.
    let limit = |name: &str| {
        positive_u32(&document[name])
            .or_else(|| array(&document["profile"]).find_map(|entry| positive_u32(&entry[name])))
    };
    Ok(BackendInfo {
        width,
        height,
        sizes,
        tiles,
        max_width: limit("maxWidth"),
        max_height: limit("maxHeight"),
    })
}

impl BackendInfo {
    /// The facts the planner needs: the size, the scale factors of the first tile set (none when there is none),
    /// and `MAX_CVT` (5000 when absent; the height limit defaults to the width limit).
    pub fn facts(&self) -> ImageFacts {
        ImageFacts {
            width: self.width,
            height: self.height,
            scale_factors: self
                .tiles
                .first()
                .map(|tiles| tiles.scale_factors.clone())
                .unwrap_or_default(),
            backend_max_width: self.max_width.unwrap_or(DEFAULT_BACKEND_MAX),
            backend_max_height: self
                .max_height
                .or(self.max_width)
                .unwrap_or(DEFAULT_BACKEND_MAX),
        }
    }
}

/// A 502 about iipsrv's info.json.
fn invalid(why: &str) -> IiifError {
    IiifError::bad_backend(format!("invalid backend info.json: {why}"))
}

/// The elements of a JSON array, or nothing for any other value.
fn array(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// A positive integer that fits in `u32`. Integral floats are accepted, since iipsrv prints scale factors with
/// C++ stream formatting of `pow()` results.
fn positive_u32(value: &Value) -> Option<u32> {
    let number = match value.as_u64() {
        Some(integer) => integer,
        None => {
            let float = value.as_f64()?;
            if float.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&float) {
                return None;
            }
            float as u64
        }
    };
    u32::try_from(number).ok().filter(|&number| number > 0)
}

/// Replaces the `@id` string value with `""`, whatever it contains.
///
/// iipsrv writes `"@id" : "<value>",` followed by `"protocol"`, and the value may hold raw control characters,
/// unescaped quotes (from `X-IIIF-ID`) or anything else. The value therefore ends at the last `"` before the last
/// `"protocol"` key, not at the first quote. Returns `None` when the body does not have that shape.
fn blank_id_value(text: &str) -> Option<String> {
    let key = text.find("\"@id\"")?;
    let after_key = key + "\"@id\"".len();
    let colon = after_key + text[after_key..].find(|c: char| !c.is_whitespace())?;
    if !text[colon..].starts_with(':') {
        return None;
    }
    let value_start = colon + 1 + text[colon + 1..].find(|c: char| !c.is_whitespace())?;
    if !text[value_start..].starts_with('"') {
        return None;
    }
    let protocol = value_start + text[value_start..].rfind("\"protocol\"")?;
    let before_protocol = text[..protocol].trim_end();
    let before_comma = before_protocol.strip_suffix(',')?.trim_end();
    let value_end = before_comma.len().checked_sub(1)?;
    if value_end <= value_start || !before_comma.ends_with('"') {
        return None;
    }
    Some(format!(
        "{}\"\"{}",
        &text[..value_start],
        &text[value_end + 1..]
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// iipsrv 1.1's info.json for a 1000×750 image, as in iiif-reference §2.1, in iipsrv's own layout.
    pub(crate) const SAMPLE: &str = r#"{
  "@context" : "http://iiif.io/api/image/2/context.json",
  "@id" : "http://127.0.0.1:8080/iiif/photo.tif",
  "protocol" : "http://iiif.io/api/image",
  "width" : 1000,
  "height" : 750,
  "sizes" : [
     { "width" : 250, "height" : 187 },
     { "width" : 500, "height" : 375 }
  ],
  "tiles" : [
     { "width" : 256, "height" : 256, "scaleFactors" : [ 1, 2, 4 ] }
  ],
  "profile" : [
     "http://iiif.io/api/image/2/level1.json",
     { "formats" : [ "jpg" ],
       "qualities" : [ "native","color","gray","bitonal" ],
       "supports" : ["regionByPct","regionSquare","sizeByForcedWh","sizeByWh","sizeAboveFull","rotationBy90s","mirroring"],
       "maxWidth" : 5000,
       "maxHeight" : 5000
     }
  ]
}"#;

    pub(crate) fn sample() -> BackendInfo {
        parse_backend_info(SAMPLE.as_bytes()).unwrap()
    }

    #[test]
    fn parses_the_sample() {
        let info = sample();
        assert_eq!(info.width, 1000);
        assert_eq!(info.height, 750);
        assert_eq!(info.sizes, vec![(250, 187), (500, 375)]);
        assert_eq!(
            info.tiles,
            vec![TileSpec {
                width: 256,
                height: Some(256),
                scale_factors: vec![1, 2, 4]
            }]
        );
        assert_eq!(info.max_width, Some(5000));
        assert_eq!(info.max_height, Some(5000));
    }

    #[test]
    fn facts_from_the_sample() {
        assert_eq!(
            sample().facts(),
            ImageFacts {
                width: 1000,
                height: 750,
                scale_factors: vec![1, 2, 4],
                backend_max_width: 5000,
                backend_max_height: 5000,
            }
        );
    }

    #[test]
    fn facts_defaults() {
        let info = parse_backend_info(br#"{"width": 10, "height": 20, "tiles": [{"width": 512}], "profile": [{"maxWidth": 64}]}"#)
            .unwrap();
        let facts = info.facts();
        assert!(facts.scale_factors.is_empty());
        assert_eq!(
            (facts.backend_max_width, facts.backend_max_height),
            (64, 64)
        );
        let bare = parse_backend_info(br#"{"width": 10, "height": 20}"#)
            .unwrap()
            .facts();
        assert!(bare.scale_factors.is_empty());
        assert_eq!(
            (bare.backend_max_width, bare.backend_max_height),
            (5000, 5000)
        );
    }

    #[test]
    fn control_characters_in_the_id_are_survived() {
        let broken = SAMPLE.replace("photo.tif", "pho\u{1}to\n\t.tif");
        assert!(serde_json::from_str::<Value>(&broken).is_err());
        assert_eq!(parse_backend_info(broken.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn quotes_and_keys_in_the_id_are_survived() {
        // An X-IIIF-ID is pasted verbatim by iipsrv.
        let hostile = SAMPLE.replace(
            "http://127.0.0.1:8080/iiif/photo.tif",
            r#"x", "width" : 1, "protocol" : "y\"#,
        );
        assert!(serde_json::from_str::<Value>(&hostile).is_err());
        assert_eq!(parse_backend_info(hostile.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn invalid_utf8_in_the_id_is_survived() {
        let mut bytes = SAMPLE.as_bytes().to_vec();
        let position = SAMPLE.find("photo").unwrap();
        bytes[position] = 0xFF;
        assert_eq!(parse_backend_info(&bytes).unwrap(), sample());
    }

    #[test]
    fn scale_factors_printed_as_floats_are_accepted() {
        let info = parse_backend_info(
            br#"{"width": 10, "height": 10, "tiles": [{"width": 256, "height": 256, "scaleFactors": [1, 2.0, 4e0, 1.5, -2, "8"]}]}"#,
        )
        .unwrap();
        assert_eq!(info.tiles[0].scale_factors, vec![1, 2, 4]);
    }

    #[test]
    fn malformed_optional_parts_are_skipped() {
        let info = parse_backend_info(
            br#"{"width": 10, "height": 10, "sizes": [{"width": 5}, {"width": 5, "height": 5}, 7], "tiles": {"width": 1}}"#,
        )
        .unwrap();
        assert_eq!(info.sizes, vec![(5, 5)]);
        assert!(info.tiles.is_empty());
    }

    #[test]
    fn unusable_bodies_are_502() {
        for body in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"width": 0, "height": 10}"#,
            br#"{"width": 10}"#,
            br#"{"width": -1, "height": 10}"#,
            br#"{"width": 4294967296, "height": 10}"#,
            br#"{"width": "10", "height": 10}"#,
            b"[1, 2]",
            br#"{"@id" : "x"#,
        ] {
            let error = parse_backend_info(body).unwrap_err();
            assert_eq!(error.status, 502, "{:?}", String::from_utf8_lossy(body));
            assert!(error.message.starts_with("invalid backend info.json: "));
        }
    }

    #[test]
    fn blanking_needs_iipsrvs_shape() {
        assert_eq!(
            blank_id_value(r#"{"@id" : "a\u0001b", "protocol" : "p"}"#).unwrap(),
            r#"{"@id" : "", "protocol" : "p"}"#
        );
        assert_eq!(blank_id_value(r#"{"@id": 5, "protocol": "p"}"#), None);
        assert_eq!(blank_id_value(r#"{"@id": "x"}"#), None);
        assert_eq!(blank_id_value(r#"{"protocol": "p", "@id": "x"}"#), None);
        assert_eq!(blank_id_value("\"@id\""), None);
    }
}

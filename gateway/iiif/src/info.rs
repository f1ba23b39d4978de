//! The public info.json documents, rebuilt from iipsrv's facts (iiif-reference §2.2).
//!
//! Nothing iipsrv says about the service itself is passed through: its `@id` comes from request headers, its
//! profile claims level 1, it lists the 1.x quality `native`, and it advertises `sizeAboveFull` even when upscaling
//! is off. Both documents are built from the image facts plus the gateway's own limits and capabilities, so what
//! info.json promises is exactly what `plan` accepts.

use serde_json::{json, Map, Value};

use crate::backend_info::BackendInfo;
use crate::capabilities::Capabilities;
use crate::limits::{EffectiveLimits, Limits};
use crate::quality::Quality;
use crate::version::Version;

/// The IIIF protocol URI, the same in both versions.
const PROTOCOL: &str = "http://iiif.io/api/image";

/// What the gateway advertises about itself in info.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoOptions {
    /// The size policy; the advertised limits are these tightened to iipsrv's `MAX_CVT`.
    pub limits: Limits,
    /// Formats and rotations the gateway produces.
    pub caps: Capabilities,
    /// Whether responses carry `Link` headers with `rel="profile"` and `rel="canonical"`.
    pub link_headers: bool,
    /// A rights URI (Creative Commons or RightsStatements.org): `rights` in 3.0, `license` in 2.1.
    pub rights: Option<String>,
}

/// The 3.0 info.json for an image whose public base URI is `id` (no trailing slash, no `/info.json`).
pub fn info_v3(info: &BackendInfo, id: &str, opts: &InfoOptions) -> Value {
    let limits = opts.limits.effective(&info.facts());
    let mut document = Map::new();
    document.insert("@context".into(), json!(Version::V3.context_uri()));
    document.insert("id".into(), json!(id));
    document.insert("type".into(), json!("ImageService3"));
    document.insert("protocol".into(), json!(PROTOCOL));
    document.insert(
        "profile".into(),
        json!(format!("level{}", opts.caps.compliance_level())),
    );
    document.insert("width".into(), json!(info.width));
    document.insert("height".into(), json!(info.height));
    document.insert("maxWidth".into(), json!(limits.max_width));
    document.insert("maxHeight".into(), json!(limits.max_height));
    document.insert("maxArea".into(), json!(limits.max_area));
    insert_sizes_and_tiles(&mut document, info, &limits);
    let extra_qualities: Vec<&str> = Quality::ALL
        .iter()
        .filter(|quality| **quality != Quality::Default)
        .map(|quality| quality.name())
        .collect();
    document.insert("extraQualities".into(), json!(extra_qualities));
    let extra_formats: Vec<&str> = opts
        .caps
        .extra_formats()
        .iter()
        .map(|format| format.extension())
        .collect();
    if !extra_formats.is_empty() {
        document.insert("extraFormats".into(), json!(extra_formats));
    }
    document.insert("extraFeatures".into(), json!(features(Version::V3, opts)));
    if let Some(rights) = &opts.rights {
        document.insert("rights".into(), json!(rights));
    }
    Value::Object(document)
}

/// The 2.1 info.json for an image whose public base URI is `id`.
pub fn info_v2(info: &BackendInfo, id: &str, opts: &InfoOptions) -> Value {
    let limits = opts.limits.effective(&info.facts());
    let mut document = Map::new();
    document.insert("@context".into(), json!(Version::V2.context_uri()));
    document.insert("@id".into(), json!(id));
    document.insert("protocol".into(), json!(PROTOCOL));
    document.insert("width".into(), json!(info.width));
    document.insert("height".into(), json!(info.height));
    insert_sizes_and_tiles(&mut document, info, &limits);

    let mut description = Map::new();
    let extra_formats: Vec<&str> = opts
        .caps
        .extra_formats()
        .iter()
        .map(|format| format.extension())
        .collect();
    if !extra_formats.is_empty() {
        description.insert("formats".into(), json!(extra_formats));
    }
    let qualities: Vec<&str> = Quality::ALL.iter().map(|quality| quality.name()).collect();
    description.insert("qualities".into(), json!(qualities));
    description.insert("supports".into(), json!(features(Version::V2, opts)));
    description.insert("maxWidth".into(), json!(limits.max_width));
    description.insert("maxHeight".into(), json!(limits.max_height));
    description.insert("maxArea".into(), json!(limits.max_area));
    let level_uri = Version::V2.level_profile_uri(opts.caps.compliance_level());
    document.insert(
        "profile".into(),
        json!([level_uri, Value::Object(description)]),
    );
    if let Some(rights) = &opts.rights {
        document.insert("license".into(), json!(rights));
    }
    Value::Object(document)
}

/// Adds `sizes` and `tiles`, keeping only entries within the limits (both specs require that) and leaving a key
/// out rather than writing an empty list.
fn insert_sizes_and_tiles(
    document: &mut Map<String, Value>,
    info: &BackendInfo,
    limits: &EffectiveLimits,
) {
    let sizes: Vec<Value> = info
        .sizes
        .iter()
        .filter(|(width, height)| limits.allows(u64::from(*width), u64::from(*height)))
        .map(|(width, height)| json!({ "width": width, "height": height }))
        .collect();
    if !sizes.is_empty() {
        document.insert("sizes".into(), Value::Array(sizes));
    }
    let tiles: Vec<Value> = info
        .tiles
        .iter()
        .filter(|tile| !tile.scale_factors.is_empty())
        .filter(|tile| {
            limits.allows(
                u64::from(tile.width),
                u64::from(tile.height.unwrap_or(tile.width)),
            )
        })
        .map(|tile| {
            json!({
                "width": tile.width,
                "height": tile.height.unwrap_or(tile.width),
                "scaleFactors": tile.scale_factors,
            })
        })
        .collect();
    if !tiles.is_empty() {
        document.insert("tiles".into(), Value::Array(tiles));
    }
}

/// The feature names the service supports, in the version's own vocabulary and in alphabetical order (the order
/// of the specs' tables).
///
/// Features the compliance level already implies are listed too: both specs allow it, and it makes the document
/// readable on its own. 3.0 has no `sizeByDistortedWh` (its `sizeByWh` may distort) and calls 2.1's
/// `sizeAboveFull` `sizeUpscaling`.
fn features(version: Version, opts: &InfoOptions) -> Vec<&'static str> {
    let optional = |enabled: bool, name: &'static str| enabled.then_some(name);
    let upscaling = opts.limits.allow_upscaling;
    let names: Vec<Option<&'static str>> = match version {
        Version::V3 => vec![
            Some("baseUriRedirect"),
            optional(opts.link_headers, "canonicalLinkHeader"),
            Some("cors"),
            Some("jsonldMediaType"),
            Some("mirroring"),
            optional(opts.link_headers, "profileLinkHeader"),
            Some("regionByPct"),
            Some("regionByPx"),
            Some("regionSquare"),
            optional(opts.caps.arbitrary_rotation, "rotationArbitrary"),
            Some("rotationBy90s"),
            Some("sizeByConfinedWh"),
            Some("sizeByH"),
            Some("sizeByPct"),
            Some("sizeByW"),
            Some("sizeByWh"),
            optional(upscaling, "sizeUpscaling"),
        ],
        Version::V2 => vec![
            Some("baseUriRedirect"),
            optional(opts.link_headers, "canonicalLinkHeader"),
            Some("cors"),
            Some("jsonldMediaType"),
            Some("mirroring"),
            optional(opts.link_headers, "profileLinkHeader"),
            Some("regionByPct"),
            Some("regionByPx"),
            Some("regionSquare"),
            optional(opts.caps.arbitrary_rotation, "rotationArbitrary"),
            Some("rotationBy90s"),
            optional(upscaling, "sizeAboveFull"),
            Some("sizeByConfinedWh"),
            Some("sizeByDistortedWh"),
            Some("sizeByH"),
            Some("sizeByPct"),
            Some("sizeByW"),
            Some("sizeByWh"),
        ],
    };
    names.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_info::tests::sample;
    use crate::format::Format;

    const ID_V3: &str = "https://images.example.org/iiif/3/photo.tif";
    const ID_V2: &str = "https://images.example.org/iiif/2/photo.tif";

    fn level2_options() -> InfoOptions {
        InfoOptions {
            limits: Limits::default(),
            caps: Capabilities {
                formats: vec![
                    Format::Jpg,
                    Format::Png,
                    Format::Gif,
                    Format::Webp,
                    Format::Tif,
                ],
                arbitrary_rotation: true,
            },
            link_headers: true,
            rights: Some("http://creativecommons.org/licenses/by/4.0/".to_string()),
        }
    }

    fn plain_options() -> InfoOptions {
        InfoOptions {
            limits: Limits {
                allow_upscaling: false,
                ..Limits::default()
            },
            caps: Capabilities::default(),
            link_headers: false,
            rights: None,
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn v3_field_by_field() {
        let document = info_v3(&sample(), ID_V3, &level2_options());
        assert_eq!(
            keys(&document),
            [
                "@context",
                "id",
                "type",
                "protocol",
                "profile",
                "width",
                "height",
                "maxWidth",
                "maxHeight",
                "maxArea",
                "sizes",
                "tiles",
                "extraQualities",
                "extraFormats",
                "extraFeatures",
                "rights",
            ]
        );
        assert_eq!(
            document["@context"],
            "http://iiif.io/api/image/3/context.json"
        );
        assert_eq!(document["id"], ID_V3);
        assert_eq!(document["type"], "ImageService3");
        assert_eq!(document["protocol"], "http://iiif.io/api/image");
        assert_eq!(document["profile"], "level2");
        assert_eq!(document["width"], 1000);
        assert_eq!(document["height"], 750);
        assert_eq!(document["maxWidth"], 5000);
        assert_eq!(document["maxHeight"], 5000);
        assert_eq!(document["maxArea"], 25_000_000);
        assert_eq!(
            document["sizes"],
            json!([{"width": 250, "height": 187}, {"width": 500, "height": 375}])
        );
        assert_eq!(
            document["tiles"],
            json!([{"width": 256, "height": 256, "scaleFactors": [1, 2, 4]}])
        );
        assert_eq!(
            document["extraQualities"],
            json!(["color", "gray", "bitonal"])
        );
        assert_eq!(document["extraFormats"], json!(["gif", "webp", "tif"]));
        assert_eq!(
            document["extraFeatures"],
            json!([
                "baseUriRedirect",
                "canonicalLinkHeader",
                "cors",
                "jsonldMediaType",
                "mirroring",
                "profileLinkHeader",
                "regionByPct",
                "regionByPx",
                "regionSquare",
                "rotationArbitrary",
                "rotationBy90s",
                "sizeByConfinedWh",
                "sizeByH",
                "sizeByPct",
                "sizeByW",
                "sizeByWh",
                "sizeUpscaling",
            ])
        );
        assert_eq!(
            document["rights"],
            "http://creativecommons.org/licenses/by/4.0/"
        );
        // The @context comes first in the serialised text too.
        assert!(document
            .to_string()
            .starts_with("{\"@context\":\"http://iiif.io/api/image/3/context.json\",\"id\":"));
    }

    #[test]
    fn v3_without_extras() {
        let document = info_v3(&sample(), ID_V3, &plain_options());
        assert_eq!(document["profile"], "level1");
        assert!(document.get("extraFormats").is_none());
        assert!(document.get("rights").is_none());
        let features = document["extraFeatures"].as_array().unwrap();
        for absent in [
            "canonicalLinkHeader",
            "profileLinkHeader",
            "rotationArbitrary",
            "sizeUpscaling",
            "sizeByDistortedWh",
        ] {
            assert!(!features.contains(&json!(absent)), "{absent}");
        }
        assert!(document.get("native").is_none());
        assert!(!document.to_string().contains("native"));
    }

    #[test]
    fn v3_only_uses_3_0_feature_names() {
        const NAMES_3_0: [&str; 17] = [
            "baseUriRedirect",
            "canonicalLinkHeader",
            "cors",
            "jsonldMediaType",
            "mirroring",
            "profileLinkHeader",
            "regionByPct",
            "regionByPx",
            "regionSquare",
            "rotationArbitrary",
            "rotationBy90s",
            "sizeByConfinedWh",
            "sizeByH",
            "sizeByPct",
            "sizeByW",
            "sizeByWh",
            "sizeUpscaling",
        ];
        let document = info_v3(&sample(), ID_V3, &level2_options());
        for feature in document["extraFeatures"].as_array().unwrap() {
            assert!(NAMES_3_0.contains(&feature.as_str().unwrap()), "{feature}");
        }
    }

    #[test]
    fn limits_tighten_and_filter_sizes() {
        let options = InfoOptions {
            limits: Limits {
                max_width: 400,
                max_height: 300,
                max_area: 100_000,
                ..Limits::default()
            },
            ..level2_options()
        };
        let document = info_v3(&sample(), ID_V3, &options);
        assert_eq!(document["maxWidth"], 400);
        assert_eq!(document["maxHeight"], 300);
        assert_eq!(document["maxArea"], 100_000);
        // 500×375 exceeds every limit; 250×187 = 46 750 px fits.
        assert_eq!(document["sizes"], json!([{"width": 250, "height": 187}]));
        let tiny = InfoOptions {
            limits: Limits {
                max_width: 100,
                ..Limits::default()
            },
            ..level2_options()
        };
        let document = info_v3(&sample(), ID_V3, &tiny);
        assert!(document.get("sizes").is_none());
        assert!(document.get("tiles").is_none());
    }

    #[test]
    fn backend_max_cvt_caps_the_advertised_limits() {
        let mut info = sample();
        info.max_width = Some(3000);
        info.max_height = Some(2000);
        let document = info_v3(&info, ID_V3, &level2_options());
        assert_eq!(document["maxWidth"], 3000);
        assert_eq!(document["maxHeight"], 2000);
        assert_eq!(document["maxArea"], 6_000_000);
    }

    #[test]
    fn v2_field_by_field() {
        let document = info_v2(&sample(), ID_V2, &level2_options());
        assert_eq!(
            keys(&document),
            [
                "@context", "@id", "protocol", "width", "height", "sizes", "tiles", "profile",
                "license"
            ]
        );
        assert_eq!(
            document["@context"],
            "http://iiif.io/api/image/2/context.json"
        );
        assert_eq!(document["@id"], ID_V2);
        assert_eq!(document["protocol"], "http://iiif.io/api/image");
        assert_eq!(document["width"], 1000);
        assert_eq!(document["height"], 750);
        assert_eq!(
            document["sizes"],
            json!([{"width": 250, "height": 187}, {"width": 500, "height": 375}])
        );
        assert_eq!(
            document["tiles"],
            json!([{"width": 256, "height": 256, "scaleFactors": [1, 2, 4]}])
        );
        assert_eq!(
            document["profile"][0],
            "http://iiif.io/api/image/2/level2.json"
        );
        let description = &document["profile"][1];
        assert_eq!(
            keys(description),
            [
                "formats",
                "qualities",
                "supports",
                "maxWidth",
                "maxHeight",
                "maxArea"
            ]
        );
        assert_eq!(description["formats"], json!(["gif", "webp", "tif"]));
        assert_eq!(
            description["qualities"],
            json!(["default", "color", "gray", "bitonal"])
        );
        assert_eq!(
            description["supports"],
            json!([
                "baseUriRedirect",
                "canonicalLinkHeader",
                "cors",
                "jsonldMediaType",
                "mirroring",
                "profileLinkHeader",
                "regionByPct",
                "regionByPx",
                "regionSquare",
                "rotationArbitrary",
                "rotationBy90s",
                "sizeAboveFull",
                "sizeByConfinedWh",
                "sizeByDistortedWh",
                "sizeByH",
                "sizeByPct",
                "sizeByW",
                "sizeByWh",
            ])
        );
        assert_eq!(description["maxWidth"], 5000);
        assert_eq!(description["maxHeight"], 5000);
        assert_eq!(description["maxArea"], 25_000_000);
        assert_eq!(
            document["license"],
            "http://creativecommons.org/licenses/by/4.0/"
        );
    }

    #[test]
    fn v2_without_extras() {
        let document = info_v2(&sample(), ID_V2, &plain_options());
        assert_eq!(
            document["profile"][0],
            "http://iiif.io/api/image/2/level1.json"
        );
        let description = &document["profile"][1];
        assert!(description.get("formats").is_none());
        let supports = description["supports"].as_array().unwrap();
        for absent in [
            "sizeAboveFull",
            "rotationArbitrary",
            "profileLinkHeader",
            "canonicalLinkHeader",
            "sizeByForcedWh",
        ] {
            assert!(!supports.contains(&json!(absent)), "{absent}");
        }
        assert!(document.get("license").is_none());
        assert!(!document.to_string().contains("native"));
    }

    #[test]
    fn ids_are_used_verbatim() {
        let id = "https://x.org/iiif/3/a%2Fb%20c";
        assert_eq!(info_v3(&sample(), id, &plain_options())["id"], id);
        assert_eq!(info_v2(&sample(), id, &plain_options())["@id"], id);
    }
}

//! What a derivative is called: one name for the same pixels, whatever URL asked for them.
//!
//! The name is derived from the plan, not from the URL, so `/iiif/2/x/full/256,/0/default.jpg` and
//! `/iiif/3/x/full/256,192/0/default.jpg` (same pixels) share one cache entry, and from the
//! master's version, so a replaced master can never serve its predecessor's derivatives. The same
//! digest is the entity tag: it is known before anything is rendered, so a revalidation is
//! answered without touching iipsrv.

use iiif::Plan;
use sha2::{Digest, Sha256};

/// Hex digits of SHA-256 kept in names and tags: 160 bits, collision-free for any real cache.
const DIGEST_HEX_LEN: usize = 40;

/// The cache name and entity tag of one derivative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivativeKey {
    /// File name inside the image's derivatives directory: digest + format extension.
    pub file_name: String,
    /// Strong entity tag, quotes included.
    pub etag: String,
}

impl DerivativeKey {
    /// The key of `plan`'s output for one copy of one master.
    ///
    /// `jpeg_quality` counts only when the gateway encodes the output itself (a change of the
    /// setting must not serve old encodings); iipsrv's own JPEG quality is fixed per deployment.
    pub fn new(identifier: &str, master_version: &str, plan: &Plan, jpeg_quality: u8) -> Self {
        let post = &plan.post;
        let gateway_encoding = if post.is_passthrough() {
            String::new()
        } else {
            format!(
                "rotate={};quality={jpeg_quality}",
                post.rotate.map(|r| r.to_string()).unwrap_or_default()
            )
        };
        let pixels = format!(
            "{}|{}|{}",
            plan.backend.path(),
            gateway_encoding,
            plan.format.extension()
        );
        let digest = digest_hex(&[identifier, master_version, &pixels]);
        DerivativeKey {
            file_name: format!("{digest}.{}", plan.format.extension()),
            etag: format!("\"{digest}\""),
        }
    }
}

/// A strong entity tag for a body held in memory (info.json documents).
pub fn body_etag(body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("\"{}\"", &digest[..DIGEST_HEX_LEN])
}

/// SHA-256 over the parts, each followed by a NUL so that ("ab", "c") ≠ ("a", "bc").
fn digest_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let mut text = hex::encode(hasher.finalize());
    text.truncate(DIGEST_HEX_LEN);
    text
}

#[cfg(test)]
mod tests {
    use iiif::{Capabilities, Format, ImageFacts, Limits, Route, Version};

    use super::*;

    fn plan(version: Version, path: &str) -> Plan {
        let facts = ImageFacts::vips_pyramid(1000, 800);
        let caps = Capabilities {
            formats: vec![Format::Jpg, Format::Png, Format::Webp],
            arbitrary_rotation: true,
        };
        let Route::Image { request, .. } = iiif::parse_route(version, path).unwrap() else {
            panic!("{path} is not an image request");
        };
        iiif::plan(version, &request, &facts, &Limits::default(), &caps).unwrap()
    }

    fn key(version: Version, path: &str) -> DerivativeKey {
        DerivativeKey::new("img", "etag-1", &plan(version, path), 90)
    }

    #[test]
    fn the_same_pixels_share_a_key_across_versions_and_spellings() {
        let v3 = key(Version::V3, "img/0,0,512,512/256,256/0/default.jpg");
        assert_eq!(v3, key(Version::V2, "img/0,0,512,512/256,/0/default.jpg"));
        assert_eq!(
            v3,
            key(Version::V2, "img/0,0,512,512/!256,256/0/default.jpg")
        );
        assert_eq!(v3, key(Version::V3, "img/0,0,512,512/pct:50/0/default.jpg"));
        assert_eq!(
            key(Version::V3, "img/full/max/0/default.jpg"),
            key(Version::V2, "img/full/full/0/default.jpg")
        );
    }

    #[test]
    fn different_pixels_formats_masters_and_images_get_different_keys() {
        let base = key(Version::V3, "img/0,0,512,512/256,256/0/default.jpg");
        for other in [
            key(Version::V3, "img/0,0,512,512/256,256/0/default.png"),
            key(Version::V3, "img/0,0,512,512/256,256/90/default.jpg"),
            key(Version::V3, "img/0,0,512,512/256,256/!0/default.jpg"),
            key(Version::V3, "img/0,0,512,512/256,256/0/gray.jpg"),
            key(Version::V3, "img/0,0,512,511/256,256/0/default.jpg"),
            key(Version::V3, "img/0,0,512,512/255,256/0/default.jpg"),
        ] {
            assert_ne!(base, other);
        }
        let p = plan(Version::V3, "img/0,0,512,512/256,256/0/default.jpg");
        assert_ne!(base, DerivativeKey::new("img", "etag-2", &p, 90));
        assert_ne!(base, DerivativeKey::new("img2", "etag-1", &p, 90));
        // iipsrv's JPEG does not depend on the gateway's encoder setting …
        assert_eq!(base, DerivativeKey::new("img", "etag-1", &p, 75));
        // … what the gateway encodes does.
        let png = plan(Version::V3, "img/0,0,512,512/256,256/45/default.png");
        assert_ne!(
            DerivativeKey::new("img", "v", &png, 90),
            DerivativeKey::new("img", "v", &png, 75)
        );
    }

    #[test]
    fn names_are_safe_file_names_and_tags_are_quoted() {
        let k = key(Version::V3, "img/full/max/0/default.webp");
        assert!(k.file_name.ends_with(".webp"));
        let stem = k.file_name.trim_end_matches(".webp");
        assert_eq!(stem.len(), DIGEST_HEX_LEN);
        assert!(stem.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(k.etag, format!("\"{stem}\""));
    }

    #[test]
    fn parts_are_delimited() {
        assert_ne!(digest_hex(&["ab", "c"]), digest_hex(&["a", "bc"]));
        assert_eq!(body_etag(b"x"), body_etag(b"x"));
        assert_ne!(body_etag(b"x"), body_etag(b"y"));
    }
}

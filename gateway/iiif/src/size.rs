//! The size segment: how large the extracted region should be returned.
//!
//! This module only knows the grammar, which differs between the versions: 2.1 has `full` and implicit
//! upscaling, 3.0 removed `full` and marks upscaling with a `^` prefix. The arithmetic lives in `sizing`.

use std::fmt;

use crate::error::IiifError;
use crate::number::{format_decimal, parse_decimal, parse_pixel};
use crate::version::Version;

/// A parsed size segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    /// The 3.0 `^` prefix: the client allows the result to be larger than the region. Always false in 2.1.
    pub upscale: bool,
    /// The size form.
    pub kind: SizeKind,
}

/// The size forms of both versions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeKind {
    /// `full` (2.1 only): the region's own size.
    Full,
    /// `max`: the region's size, reduced to the server's limits.
    Max,
    /// `w,`: exactly this width, height keeps the aspect ratio.
    Width(u32),
    /// `,h`: exactly this height, width keeps the aspect ratio.
    Height(u32),
    /// `pct:n`: n percent of the region.
    Percent(f64),
    /// `w,h`: exactly this size, possibly distorting.
    Exact(u32, u32),
    /// `!w,h`: the largest size that fits in the box and keeps the aspect ratio.
    Confined(u32, u32),
}

impl Size {
    /// Parses a size segment in the given version's grammar.
    ///
    /// # Errors
    ///
    /// 400 for malformed numbers, zero widths or heights, `^` in 2.1, `full` in 3.0, and `pct:n` above 100
    /// without `^` in 3.0.
    pub fn parse(version: Version, text: &str) -> Result<Size, IiifError> {
        let invalid = |why: String| IiifError::bad_request(format!("invalid size: {why}"));
        let (upscale, body) = match text.strip_prefix('^') {
            Some(_) if version == Version::V2 => {
                return Err(invalid(format!(
                    "{text} is not valid in IIIF {}",
                    version.api_name()
                )));
            }
            Some(body) => (true, body),
            None => (false, text),
        };
        let kind = match body {
            "full" if version == Version::V3 => {
                return Err(invalid(format!("{text} is not valid in IIIF 3.0, use max")));
            }
            "full" => SizeKind::Full,
            "max" => SizeKind::Max,
            _ => parse_numeric_form(body)
                .ok_or_else(|| invalid(format!("{text} is not a valid size")))?,
        };
        match kind {
            SizeKind::Width(0)
            | SizeKind::Height(0)
            | SizeKind::Exact(0, _)
            | SizeKind::Exact(_, 0)
            | SizeKind::Confined(0, _)
            | SizeKind::Confined(_, 0) => {
                return Err(invalid(
                    "width and height must be greater than zero".to_string(),
                ));
            }
            SizeKind::Percent(0.0) => {
                return Err(invalid("pct:0 is an empty image".to_string()));
            }
            SizeKind::Percent(percent) if percent > 100.0 && version == Version::V3 && !upscale => {
                return Err(invalid(format!(
                    "{text} is larger than the region, use ^pct: to upscale"
                )));
            }
            _ => {}
        }
        Ok(Size { upscale, kind })
    }
}

/// Parses the numeric forms `pct:n`, `w,`, `,h`, `w,h` and `!w,h`.
fn parse_numeric_form(body: &str) -> Option<SizeKind> {
    if let Some(percent) = body.strip_prefix("pct:") {
        return parse_decimal(percent).map(SizeKind::Percent);
    }
    if let Some(confined) = body.strip_prefix('!') {
        let (w, h) = confined.split_once(',')?;
        return Some(SizeKind::Confined(parse_pixel(w)?, parse_pixel(h)?));
    }
    match body.split_once(',')? {
        (w, "") => parse_pixel(w).map(SizeKind::Width),
        ("", h) => parse_pixel(h).map(SizeKind::Height),
        (w, h) => Some(SizeKind::Exact(parse_pixel(w)?, parse_pixel(h)?)),
    }
}

/// Formats the size as it would be written in a URL; [`Size::parse`] reads it back to the same value.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.upscale {
            f.write_str("^")?;
        }
        match self.kind {
            SizeKind::Full => f.write_str("full"),
            SizeKind::Max => f.write_str("max"),
            SizeKind::Width(w) => write!(f, "{w},"),
            SizeKind::Height(h) => write!(f, ",{h}"),
            SizeKind::Percent(percent) => write!(f, "pct:{}", format_decimal(percent)),
            SizeKind::Exact(w, h) => write!(f, "{w},{h}"),
            SizeKind::Confined(w, h) => write!(f, "!{w},{h}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(text: &str) -> Result<Size, IiifError> {
        Size::parse(Version::V2, text)
    }

    fn v3(text: &str) -> Result<Size, IiifError> {
        Size::parse(Version::V3, text)
    }

    fn plain(kind: SizeKind) -> Size {
        Size {
            upscale: false,
            kind,
        }
    }

    fn up(kind: SizeKind) -> Size {
        Size {
            upscale: true,
            kind,
        }
    }

    #[test]
    fn every_form_in_2_1() {
        assert_eq!(v2("full"), Ok(plain(SizeKind::Full)));
        assert_eq!(v2("max"), Ok(plain(SizeKind::Max)));
        assert_eq!(v2("256,"), Ok(plain(SizeKind::Width(256))));
        assert_eq!(v2(",256"), Ok(plain(SizeKind::Height(256))));
        assert_eq!(v2("pct:50"), Ok(plain(SizeKind::Percent(50.0))));
        assert_eq!(v2("pct:200"), Ok(plain(SizeKind::Percent(200.0))));
        assert_eq!(v2("100,200"), Ok(plain(SizeKind::Exact(100, 200))));
        assert_eq!(v2("!100,200"), Ok(plain(SizeKind::Confined(100, 200))));
    }

    #[test]
    fn every_form_in_3_0() {
        assert_eq!(v3("max"), Ok(plain(SizeKind::Max)));
        assert_eq!(v3("^max"), Ok(up(SizeKind::Max)));
        assert_eq!(v3("256,"), Ok(plain(SizeKind::Width(256))));
        assert_eq!(v3("^256,"), Ok(up(SizeKind::Width(256))));
        assert_eq!(v3(",256"), Ok(plain(SizeKind::Height(256))));
        assert_eq!(v3("^,256"), Ok(up(SizeKind::Height(256))));
        assert_eq!(v3("pct:50"), Ok(plain(SizeKind::Percent(50.0))));
        assert_eq!(v3("pct:100"), Ok(plain(SizeKind::Percent(100.0))));
        assert_eq!(v3("^pct:150.5"), Ok(up(SizeKind::Percent(150.5))));
        assert_eq!(v3("100,200"), Ok(plain(SizeKind::Exact(100, 200))));
        assert_eq!(v3("^100,200"), Ok(up(SizeKind::Exact(100, 200))));
        assert_eq!(v3("!100,200"), Ok(plain(SizeKind::Confined(100, 200))));
        assert_eq!(v3("^!100,200"), Ok(up(SizeKind::Confined(100, 200))));
    }

    #[test]
    fn version_specific_errors() {
        assert_eq!(
            v2("^max"),
            Err(IiifError::bad_request(
                "invalid size: ^max is not valid in IIIF 2.1"
            ))
        );
        assert_eq!(
            v2("^256,"),
            Err(IiifError::bad_request(
                "invalid size: ^256, is not valid in IIIF 2.1"
            ))
        );
        assert_eq!(
            v3("full"),
            Err(IiifError::bad_request(
                "invalid size: full is not valid in IIIF 3.0, use max"
            ))
        );
        assert_eq!(
            v3("^full"),
            Err(IiifError::bad_request(
                "invalid size: ^full is not valid in IIIF 3.0, use max"
            ))
        );
        assert_eq!(
            v3("pct:200"),
            Err(IiifError::bad_request(
                "invalid size: pct:200 is larger than the region, use ^pct: to upscale"
            ))
        );
        assert_eq!(
            v3("pct:100.0001").unwrap_err().message,
            "invalid size: pct:100.0001 is larger than the region, use ^pct: to upscale"
        );
    }

    #[test]
    fn zero_sizes_are_400() {
        let zero =
            IiifError::bad_request("invalid size: width and height must be greater than zero");
        for text in ["0,", ",0", "0,10", "10,0", "!0,10", "!10,0", "^0,"] {
            assert_eq!(v3(text), Err(zero.clone()), "{text}");
        }
        assert_eq!(
            v3("pct:0"),
            Err(IiifError::bad_request(
                "invalid size: pct:0 is an empty image"
            ))
        );
        assert_eq!(
            v2("pct:0.0"),
            Err(IiifError::bad_request(
                "invalid size: pct:0 is an empty image"
            ))
        );
    }

    #[test]
    fn malformed_sizes_are_400() {
        for bad in [
            "",
            ",",
            "^",
            "^^max",
            "256",
            "-256,",
            "+256,",
            "256.5,",
            "abc,",
            "256,abc",
            "pct:",
            "pct:-5",
            "pct:+5",
            "pct:1e2",
            "!256",
            "!,256",
            "!256,",
            "^!,256",
            "1,2,3",
            "Max",
            "MAX",
            "full ",
            "4294967296,",
            "! 1,1",
            "!!1,1",
            "pct:.5",
            "max,",
        ] {
            for version in [Version::V2, Version::V3] {
                let error = Size::parse(version, bad).expect_err(bad);
                assert_eq!(error.status, 400, "{bad:?}");
                assert!(error.message.starts_with("invalid size: "), "{bad:?}");
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for (version, text) in [
            (Version::V2, "full"),
            (Version::V2, "pct:200"),
            (Version::V3, "max"),
            (Version::V3, "^max"),
            (Version::V3, "^256,"),
            (Version::V3, ",256"),
            (Version::V3, "pct:33.5"),
            (Version::V3, "^!10,20"),
            (Version::V3, "10,20"),
        ] {
            let size = Size::parse(version, text).unwrap();
            assert_eq!(size.to_string(), text);
        }
    }
}

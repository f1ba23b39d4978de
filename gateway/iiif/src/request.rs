//! An image request: the four parameter segments after the identifier.

use std::fmt;

use crate::error::IiifError;
use crate::format::Format;
use crate::percent;
use crate::quality::Quality;
use crate::region::Region;
use crate::rotation::Rotation;
use crate::size::Size;
use crate::version::Version;

/// The parsed `{region}/{size}/{rotation}/{quality}.{format}` of an image URL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageRequest {
    /// Which part of the image.
    pub region: Region,
    /// How large to return it.
    pub size: Size,
    /// Mirroring and rotation.
    pub rotation: Rotation,
    /// Colour, grey or bitonal.
    pub quality: Quality,
    /// The output file type.
    pub format: Format,
}

impl ImageRequest {
    /// Parses the four parameter segments.
    ///
    /// Each segment is percent-decoded first (IIIF §9: `%5Emax` is `^max`), then parsed strictly.
    /// Segments are checked left to right, so a URL with several mistakes reports the left-most one.
    ///
    /// # Errors
    ///
    /// 400 naming the first invalid segment.
    pub fn parse(
        version: Version,
        region: &str,
        size: &str,
        rotation: &str,
        quality_and_format: &str,
    ) -> Result<ImageRequest, IiifError> {
        let region = Region::parse(version, &decoded("region", region)?)?;
        let size = Size::parse(version, &decoded("size", size)?)?;
        let rotation = Rotation::parse(version, &decoded("rotation", rotation)?)?;
        let quality_and_format = decoded("format", quality_and_format)?;
        // The format is what follows the last '.', as in iipsrv; a quality never contains a dot.
        let (quality, format) = quality_and_format.rsplit_once('.').ok_or_else(|| {
            IiifError::bad_request("invalid format: missing .format after the quality")
        })?;
        let quality = Quality::parse(version, quality)?;
        let format = Format::parse(version, format)?;
        Ok(ImageRequest {
            region,
            size,
            rotation,
            quality,
            format,
        })
    }
}

/// A parameter segment with its `%XX` escapes decoded; a malformed one is a 400 naming `what`.
fn decoded<'a>(what: &str, segment: &'a str) -> Result<std::borrow::Cow<'a, str>, IiifError> {
    percent::decode(segment)
        .map_err(|error| IiifError::bad_request(format!("invalid {what}: {}", error.reason())))
}

/// Formats as `region/size/rotation/quality.format`.
impl fmt::Display for ImageRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}.{}",
            self.region, self.size, self.rotation, self.quality, self.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::SizeKind;

    #[test]
    fn parses_all_segments() {
        let request =
            ImageRequest::parse(Version::V3, "square", "^!100,200", "!22.5", "gray.png").unwrap();
        assert_eq!(request.region, Region::Square);
        assert_eq!(
            request.size,
            Size {
                upscale: true,
                kind: SizeKind::Confined(100, 200)
            }
        );
        assert_eq!(
            request.rotation,
            Rotation {
                mirror: true,
                degrees: 22.5
            }
        );
        assert_eq!(request.quality, Quality::Gray);
        assert_eq!(request.format, Format::Png);
        assert_eq!(request.to_string(), "square/^!100,200/!22.5/gray.png");
    }

    #[test]
    fn a_missing_format_is_400() {
        assert_eq!(
            ImageRequest::parse(Version::V2, "full", "full", "0", "default"),
            Err(IiifError::bad_request(
                "invalid format: missing .format after the quality"
            ))
        );
    }

    #[test]
    fn the_left_most_error_wins() {
        let error = ImageRequest::parse(Version::V3, "nope", "full", "999", "x.y").unwrap_err();
        assert!(error.message.starts_with("invalid region: "));
        let error = ImageRequest::parse(Version::V3, "full", "full", "999", "x.y").unwrap_err();
        assert!(error.message.starts_with("invalid size: "));
        let error = ImageRequest::parse(Version::V3, "full", "max", "999", "x.y").unwrap_err();
        assert!(error.message.starts_with("invalid rotation: "));
        let error = ImageRequest::parse(Version::V3, "full", "max", "0", "x.y").unwrap_err();
        assert!(error.message.starts_with("invalid quality: "));
        let error = ImageRequest::parse(Version::V3, "full", "max", "0", "default.y").unwrap_err();
        assert!(error.message.starts_with("invalid format: "));
        let error =
            ImageRequest::parse(Version::V3, "full", "max", "0", "default.jpg.jpg").unwrap_err();
        assert!(error.message.starts_with("invalid quality: "));
    }
}

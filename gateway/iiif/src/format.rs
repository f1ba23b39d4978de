//! The format segment: the file type of the returned image.

use std::fmt;

use crate::error::IiifError;
use crate::version::Version;

/// A parsed output format. Names are case-sensitive file extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `jpg`, the only format iipsrv 1.1 produces.
    Jpg,
    /// `png`, required at level 2.
    Png,
    /// `gif`.
    Gif,
    /// `webp`.
    Webp,
    /// `tif`.
    Tif,
    /// `jp2`.
    Jp2,
    /// `pdf`.
    Pdf,
}

impl Format {
    /// Every format IIIF defines, in the order info.json lists them.
    pub const ALL: [Format; 7] = [
        Format::Jpg,
        Format::Png,
        Format::Gif,
        Format::Webp,
        Format::Tif,
        Format::Jp2,
        Format::Pdf,
    ];

    /// Parses a format extension.
    ///
    /// # Errors
    ///
    /// 400 for anything that is not one of the seven IIIF extensions (so `jpeg`, `tiff` and `JPG` too). Whether the
    /// gateway can actually produce the format is decided later, by the plan.
    pub fn parse(_version: Version, text: &str) -> Result<Format, IiifError> {
        Format::ALL
            .into_iter()
            .find(|format| format.extension() == text)
            .ok_or_else(|| {
                IiifError::bad_request(format!("invalid format: {text} is not a IIIF format"))
            })
    }

    /// The file extension used in URLs.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Tif => "tif",
            Format::Jp2 => "jp2",
            Format::Pdf => "pdf",
        }
    }

    /// The media type for the `Content-Type` header.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Tif => "image/tiff",
            Format::Jp2 => "image/jp2",
            Format::Pdf => "application/pdf",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_media_types() {
        let expected = [
            (Format::Jpg, "jpg", "image/jpeg"),
            (Format::Png, "png", "image/png"),
            (Format::Gif, "gif", "image/gif"),
            (Format::Webp, "webp", "image/webp"),
            (Format::Tif, "tif", "image/tiff"),
            (Format::Jp2, "jp2", "image/jp2"),
            (Format::Pdf, "pdf", "application/pdf"),
        ];
        for (format, extension, mime) in expected {
            assert_eq!(format.extension(), extension);
            assert_eq!(format.mime(), mime);
            assert_eq!(Format::parse(Version::V3, extension), Ok(format));
            assert_eq!(Format::parse(Version::V2, &format.to_string()), Ok(format));
        }
    }

    #[test]
    fn unknown_formats_are_400() {
        for bad in ["", "jpeg", "JPG", "tiff", "bmp", "jpg ", "png?"] {
            let error = Format::parse(Version::V3, bad).expect_err(bad);
            assert_eq!(error.status, 400);
            assert!(error.message.starts_with("invalid format: "));
        }
    }
}

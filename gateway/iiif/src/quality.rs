//! The quality segment: colour, greyscale or black-and-white.

use std::fmt;

use crate::error::IiifError;
use crate::version::Version;

/// A parsed quality. The names are the same in 2.1 and 3.0 and are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// `default`: the server's choice (colour for colour images).
    Default,
    /// `color`: full colour; must never fail, even for grey images (3.0).
    Color,
    /// `gray`: greyscale.
    Gray,
    /// `bitonal`: black and white.
    Bitonal,
}

impl Quality {
    /// Every quality, in the order info.json lists them.
    pub const ALL: [Quality; 4] = [
        Quality::Default,
        Quality::Color,
        Quality::Gray,
        Quality::Bitonal,
    ];

    /// Parses a quality name.
    ///
    /// # Errors
    ///
    /// 400 for anything but `default`, `color`, `gray` and `bitonal` (iipsrv's `native` and `grey` included).
    pub fn parse(_version: Version, text: &str) -> Result<Quality, IiifError> {
        Quality::ALL
            .into_iter()
            .find(|quality| quality.name() == text)
            .ok_or_else(|| {
                IiifError::bad_request(format!(
                    "invalid quality: {text} is not one of default, color, gray, bitonal"
                ))
            })
    }

    /// The IIIF name, which iipsrv 1.1 also understands.
    pub fn name(self) -> &'static str {
        match self {
            Quality::Default => "default",
            Quality::Color => "color",
            Quality::Gray => "gray",
            Quality::Bitonal => "bitonal",
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for quality in Quality::ALL {
            assert_eq!(Quality::parse(Version::V3, quality.name()), Ok(quality));
            assert_eq!(
                Quality::parse(Version::V2, &quality.to_string()),
                Ok(quality)
            );
        }
    }

    #[test]
    fn unknown_qualities_are_400() {
        for bad in [
            "",
            "native",
            "grey",
            "Default",
            "COLOR",
            "gray ",
            "bitonal.jpg",
        ] {
            let error = Quality::parse(Version::V3, bad).expect_err(bad);
            assert_eq!(error.status, 400);
            assert!(error.message.starts_with("invalid quality: "));
        }
    }
}

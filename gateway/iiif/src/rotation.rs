//! The rotation segment: optional mirroring, then clockwise rotation in degrees.

use std::fmt;

use crate::error::IiifError;
use crate::number::{format_decimal, parse_decimal};
use crate::version::Version;

/// A parsed rotation: `!` mirrors on the vertical axis *before* rotating clockwise by `degrees`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    /// The `!` prefix.
    pub mirror: bool,
    /// Clockwise degrees, `0 ≤ degrees ≤ 360`.
    pub degrees: f64,
}

impl Rotation {
    /// No rotation and no mirroring.
    pub const NONE: Rotation = Rotation {
        mirror: false,
        degrees: 0.0,
    };

    /// Parses a rotation segment: `!?\d+(\.\d+)?` with a value from 0 to 360. The grammar is the same in both
    /// versions; 3.0 only made explicit that `+0.9` and exponents are not numbers.
    ///
    /// # Errors
    ///
    /// 400 for anything else, including values above 360.
    pub fn parse(_version: Version, text: &str) -> Result<Rotation, IiifError> {
        let (mirror, number) = match text.strip_prefix('!') {
            Some(number) => (true, number),
            None => (false, text),
        };
        let degrees = parse_decimal(number).ok_or_else(|| {
            IiifError::bad_request(format!(
                "invalid rotation: {text} is not a number of degrees"
            ))
        })?;
        if degrees > 360.0 {
            return Err(IiifError::bad_request(
                "invalid rotation: must be between 0 and 360",
            ));
        }
        Ok(Rotation { mirror, degrees })
    }

    /// The same rotation with 360° written as 0°, which is what it means.
    pub fn normalized(self) -> Rotation {
        if self.degrees == 360.0 {
            Rotation {
                degrees: 0.0,
                ..self
            }
        } else {
            self
        }
    }

    /// True for 0, 90, 180, 270 and 360 degrees, which iipsrv can do itself.
    pub fn is_multiple_of_90(&self) -> bool {
        self.degrees % 90.0 == 0.0
    }

    /// True when the rotation changes nothing.
    pub fn is_identity(&self) -> bool {
        !self.mirror && self.normalized().degrees == 0.0
    }

    /// True when the rotated image's width and height swap (90° and 270°).
    pub fn swaps_axes(&self) -> bool {
        let degrees = self.normalized().degrees;
        degrees == 90.0 || degrees == 270.0
    }
}

/// Formats the canonical IIIF way: optional `!`, then an integer if whole, else the shortest decimal with a
/// leading `0` and no trailing zeros.
impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mirror {
            f.write_str("!")?;
        }
        f.write_str(&format_decimal(self.degrees))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rotation, IiifError> {
        Rotation::parse(Version::V3, text)
    }

    #[test]
    fn valid_rotations() {
        assert_eq!(
            parse("0"),
            Ok(Rotation {
                mirror: false,
                degrees: 0.0
            })
        );
        assert_eq!(
            parse("!0"),
            Ok(Rotation {
                mirror: true,
                degrees: 0.0
            })
        );
        assert_eq!(
            parse("90"),
            Ok(Rotation {
                mirror: false,
                degrees: 90.0
            })
        );
        assert_eq!(
            parse("90.0"),
            Ok(Rotation {
                mirror: false,
                degrees: 90.0
            })
        );
        assert_eq!(
            parse("!180"),
            Ok(Rotation {
                mirror: true,
                degrees: 180.0
            })
        );
        assert_eq!(
            parse("22.5"),
            Ok(Rotation {
                mirror: false,
                degrees: 22.5
            })
        );
        assert_eq!(
            parse("360"),
            Ok(Rotation {
                mirror: false,
                degrees: 360.0
            })
        );
        assert_eq!(
            Rotation::parse(Version::V2, "0.9"),
            Ok(Rotation {
                mirror: false,
                degrees: 0.9
            })
        );
    }

    #[test]
    fn invalid_rotations_are_400() {
        assert_eq!(
            parse("361"),
            Err(IiifError::bad_request(
                "invalid rotation: must be between 0 and 360"
            ))
        );
        assert_eq!(
            parse("360.1"),
            Err(IiifError::bad_request(
                "invalid rotation: must be between 0 and 360"
            ))
        );
        assert_eq!(
            parse("-90"),
            Err(IiifError::bad_request(
                "invalid rotation: -90 is not a number of degrees"
            ))
        );
        for bad in [
            "", "!", "!!90", "+0.9", ".9", "9.", "abc", "90deg", "1e2", " 90", "90 ", "!-1", "NaN",
            "inf",
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.status, 400, "{bad:?}");
            assert!(error.message.starts_with("invalid rotation: "), "{bad:?}");
        }
    }

    #[test]
    fn canonical_display() {
        assert_eq!(parse("90.0").unwrap().to_string(), "90");
        assert_eq!(parse("!0").unwrap().to_string(), "!0");
        assert_eq!(parse("22.50").unwrap().to_string(), "22.5");
        assert_eq!(parse("0.900").unwrap().to_string(), "0.9");
        assert_eq!(parse("360").unwrap().normalized().to_string(), "0");
    }

    #[test]
    fn classification() {
        assert!(parse("0").unwrap().is_multiple_of_90());
        assert!(parse("270").unwrap().is_multiple_of_90());
        assert!(parse("360").unwrap().is_multiple_of_90());
        assert!(!parse("45").unwrap().is_multiple_of_90());
        assert!(!parse("90.5").unwrap().is_multiple_of_90());
        assert!(parse("360").unwrap().is_identity());
        assert!(!parse("!0").unwrap().is_identity());
        assert!(parse("!90").unwrap().swaps_axes());
        assert!(!parse("180").unwrap().swaps_axes());
    }
}

//! What the gateway itself can do on top of iipsrv.

use crate::format::Format;

/// The gateway's own abilities, which decide the formats and rotations it accepts and the level it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Output formats: always `Jpg` (iipsrv's own output), plus whatever the gateway transcodes to.
    pub formats: Vec<Format>,
    /// Whether the gateway rotates by angles that are not multiples of 90°.
    pub arbitrary_rotation: bool,
}

impl Default for Capabilities {
    /// What stock iipsrv 1.1 gives without any post-processing: JPEG and 90° steps.
    fn default() -> Self {
        Capabilities {
            formats: vec![Format::Jpg],
            arbitrary_rotation: false,
        }
    }
}

impl Capabilities {
    /// True when the gateway can produce `format`.
    pub fn supports(&self, format: Format) -> bool {
        self.formats.contains(&format)
    }

    /// The compliance level the service can honestly claim: 2 when it produces both JPEG and PNG (the one
    /// level-2 requirement iipsrv 1.1 lacks), else 1.
    pub fn compliance_level(&self) -> u8 {
        if self.supports(Format::Jpg) && self.supports(Format::Png) {
            2
        } else {
            1
        }
    }

    /// The formats beyond those the compliance level already implies, in IIIF order.
    pub fn extra_formats(&self) -> Vec<Format> {
        let implied: &[Format] = if self.compliance_level() == 2 {
            &[Format::Jpg, Format::Png]
        } else {
            &[Format::Jpg]
        };
        Format::ALL
            .into_iter()
            .filter(|format| self.supports(*format) && !implied.contains(format))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_depends_on_png() {
        assert_eq!(Capabilities::default().compliance_level(), 1);
        let transcoding = Capabilities {
            formats: vec![Format::Jpg, Format::Png, Format::Webp],
            arbitrary_rotation: true,
        };
        assert_eq!(transcoding.compliance_level(), 2);
        assert_eq!(transcoding.extra_formats(), vec![Format::Webp]);
    }

    #[test]
    fn extra_formats_follow_iiif_order() {
        let caps = Capabilities {
            formats: vec![Format::Tif, Format::Gif, Format::Jpg, Format::Webp],
            arbitrary_rotation: false,
        };
        assert_eq!(caps.compliance_level(), 1);
        assert_eq!(
            caps.extra_formats(),
            vec![Format::Gif, Format::Webp, Format::Tif]
        );
    }
}

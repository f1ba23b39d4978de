//! The request the gateway sends to iipsrv 1.1.
//!
//! iipsrv gets only requests it handles correctly (iiif-reference §1.4, §3.8): a region that is `full` or an
//! in-bounds `x,y,w,h`, an exact `w,h` size, a rotation that is a multiple of 90°, and always JPEG. The size is
//! always the exact `w,h` (iipsrv's CVT path), never iipsrv's `w,`, not even for tiles it could send from the
//! pyramid: measured against iipsrv 1.1, `w,h` is faster than its stored-tile path and always exact, while `w,` is
//! off by one about 17% of the time.

use crate::geometry::PixelRect;
use crate::quality::Quality;
use crate::rotation::Rotation;

/// What iipsrv is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendRequest {
    /// `None` sends `full`; otherwise an in-bounds pixel region.
    pub region: Option<PixelRect>,
    /// The exact output size, sent as `w,h`; iipsrv applies its rotation afterwards.
    pub size: (u32, u32),
    /// Only mirroring and 0, 90, 180 or 270 degrees.
    pub rotation: Rotation,
    /// Passed through by name.
    pub quality: Quality,
}

impl BackendRequest {
    /// The IIIF path iipsrv gets: `{x,y,w,h|full}/{w,h}/{[!]deg}/{quality}.jpg`.
    pub fn path(&self) -> String {
        let region = match self.region {
            Some(rect) => rect.to_string(),
            None => "full".to_string(),
        };
        let (width, height) = self.size;
        // The rotation is always 0, 90, 180 or 270 here, so it prints as an integer.
        format!(
            "{region}/{width},{height}/{}/{}.jpg",
            self.rotation.normalized(),
            self.quality
        )
    }
}

/// The FastCGI `QUERY_STRING` for iipsrv: `IIIF=` + the image file, already encoded for iipsrv
/// (see [`crate::identifier::encode_backend_file`]), + `/` + the path.
pub fn backend_query(encoded_file: &str, backend: &BackendRequest) -> String {
    format!("IIIF={encoded_file}/{}", backend.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::Identifier;

    #[test]
    fn paths() {
        let full = BackendRequest {
            region: None,
            size: (500, 375),
            rotation: Rotation::NONE,
            quality: Quality::Default,
        };
        assert_eq!(full.path(), "full/500,375/0/default.jpg");
        let tile = BackendRequest {
            region: Some(PixelRect {
                x: 512,
                y: 256,
                w: 256,
                h: 256,
            }),
            size: (256, 256),
            rotation: Rotation {
                mirror: true,
                degrees: 90.0,
            },
            quality: Quality::Gray,
        };
        assert_eq!(tile.path(), "512,256,256,256/256,256/!90/gray.jpg");
        let bitonal = BackendRequest {
            rotation: Rotation {
                mirror: false,
                degrees: 360.0,
            },
            quality: Quality::Bitonal,
            ..full
        };
        assert_eq!(bitonal.path(), "full/500,375/0/bitonal.jpg");
    }

    #[test]
    fn query_strings_encode_the_identifier() {
        let identifier = Identifier::from_raw("sub/a&b+c.tif").unwrap();
        let request = BackendRequest {
            region: Some(PixelRect {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
            }),
            size: (1, 1),
            rotation: Rotation {
                mirror: false,
                degrees: 270.0,
            },
            quality: Quality::Color,
        };
        assert_eq!(
            backend_query(&identifier.backend_encoded(), &request),
            "IIIF=sub%2Fa%26b%2Bc.tif/0,0,1,1/1,1/270/color.jpg"
        );
    }
}

//! The request the gateway sends to iipsrv 1.1.
//!
//! iipsrv gets only requests it handles correctly (iiif-reference §1.4, §3.8): a region that is `full` or an
//! in-bounds `x,y,w,h`, an exact `w,h` size (its `w,` is off by one about 17% of the time), a rotation that is a
//! multiple of 90°, and always JPEG. The one exception to the exact size is the tile fast path, see
//! [`BackendSize::Tile`].

use crate::geometry::PixelRect;
use crate::identifier::Identifier;
use crate::quality::Quality;
use crate::rotation::Rotation;

/// What iipsrv is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendRequest {
    /// `None` sends `full`; otherwise an in-bounds pixel region.
    pub region: Option<PixelRect>,
    /// The size to send.
    pub size: BackendSize,
    /// Only mirroring and 0, 90, 180 or 270 degrees.
    pub rotation: Rotation,
    /// Passed through by name.
    pub quality: Quality,
}

/// The size sent to iipsrv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSize {
    /// Sent as `w,h`: iipsrv's CVT path, which is always exact.
    Exact(u32, u32),
    /// Sent as `w,`: only for a region that is exactly one tile of a pyramid level, so that iipsrv takes its much
    /// faster JTL path and sends the stored tile.
    Tile(u32),
}

impl BackendRequest {
    /// The IIIF path iipsrv gets: `{x,y,w,h|full}/{w,h|w,}/{[!]deg}/{quality}.jpg`.
    pub fn path(&self) -> String {
        let region = match self.region {
            Some(rect) => rect.to_string(),
            None => "full".to_string(),
        };
        let size = match self.size {
            BackendSize::Exact(width, height) => format!("{width},{height}"),
            BackendSize::Tile(width) => format!("{width},"),
        };
        // The rotation is always 0, 90, 180 or 270 here, so it prints as an integer.
        format!(
            "{region}/{size}/{}/{}.jpg",
            self.rotation.normalized(),
            self.quality
        )
    }
}

impl BackendRequest {
    /// The same request with the size sent as an exact `w,h`, chosen so that iipsrv returns an image of
    /// `returned` dimensions: the size of the JPEG *as it comes back*, after iipsrv's own 90° or 270° rotation
    /// (which is what `Plan::backend_output_size` gives). This is the fallback for a tile request that iipsrv did
    /// not answer from a stored tile.
    pub fn with_exact_size(&self, returned: (u32, u32)) -> BackendRequest {
        let (width, height) = if self.rotation.swaps_axes() {
            (returned.1, returned.0)
        } else {
            returned
        };
        BackendRequest {
            size: BackendSize::Exact(width, height),
            ..*self
        }
    }
}

/// The FastCGI `QUERY_STRING` for iipsrv: `IIIF=` + the identifier encoded for iipsrv + `/` + the path.
pub fn backend_query(identifier: &Identifier, backend: &BackendRequest) -> String {
    format!("IIIF={}/{}", identifier.backend_encoded(), backend.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let full = BackendRequest {
            region: None,
            size: BackendSize::Exact(500, 375),
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
            size: BackendSize::Tile(256),
            rotation: Rotation {
                mirror: true,
                degrees: 90.0,
            },
            quality: Quality::Gray,
        };
        assert_eq!(tile.path(), "512,256,256,256/256,/!90/gray.jpg");
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
    fn exact_sizes_account_for_iipsrv_rotation() {
        let tile = BackendRequest {
            region: Some(PixelRect {
                x: 0,
                y: 0,
                w: 512,
                h: 256,
            }),
            size: BackendSize::Tile(512),
            rotation: Rotation {
                mirror: false,
                degrees: 90.0,
            },
            quality: Quality::Default,
        };
        // iipsrv returns the 512×256 tile turned into 256×512.
        assert_eq!(
            tile.with_exact_size((256, 512)).size,
            BackendSize::Exact(512, 256)
        );
        assert_eq!(
            tile.with_exact_size((256, 512)).path(),
            "0,0,512,256/512,256/90/default.jpg"
        );
        let upright = BackendRequest {
            rotation: Rotation {
                mirror: true,
                degrees: 180.0,
            },
            ..tile
        };
        assert_eq!(
            upright.with_exact_size((512, 256)).size,
            BackendSize::Exact(512, 256)
        );
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
            size: BackendSize::Exact(1, 1),
            rotation: Rotation {
                mirror: false,
                degrees: 270.0,
            },
            quality: Quality::Color,
        };
        assert_eq!(
            backend_query(&identifier, &request),
            "IIIF=sub%2Fa%26b%2Bc.tif/0,0,1,1/1,1/270/color.jpg"
        );
    }
}

//! What a request asks for, independent of the URL syntax, and its IIIF path in 2.1 or 3.0 syntax.
//!
//! The same [`Shape`] rendered for two targets gives the same image: that is what lets one request sequence be
//! replayed against the nginx baseline (2.1) and the gateway (2.1 or 3.0).
//!
//! | shape | 2.1 | 3.0 |
//! |---|---|---|
//! | confined `n` | `full/!n,n/0/default.jpg` | `full/!n,n/…`, or `full/^!n,n/…` when `n` exceeds the long side |
//! | full size | `full/full/…` when the image fits the servers' size limit, else `full/max/…` | `full/max/…` |
//! | tile | `x,y,w,h/w',/…` (`full` region for a whole-image tile) | `x,y,w,h/w',h'/…` |
//!
//! 2.1 upscales implicitly, 3.0 only with `^`: small sources asked for a 3000-4096 px render need it.
//! iipsrv clamps every output to `MAX_CVT` (5000 px) and the gateway refuses `full` beyond its limits with a
//! 400, so a full-size request for a larger image asks for `max`, the largest size both servers deliver.

use crate::dataset::Image;
use crate::target::ApiVersion;
use crate::tile::Tile;

/// A request, independent of the URL syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The whole image scaled to fit an `n`×`n` box (`!n,n`).
    Confined(u32),
    /// The whole image at full size (`full`), or at the largest size allowed (`max`) when it is larger.
    Full,
    /// One viewer tile.
    Tile(Tile),
}

/// The servers' output size limit (iipsrv's `MAX_CVT`, the gateway's `max_width`, `max_height`, `max_area`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeLimit {
    /// Maximum output width.
    pub max_width: u32,
    /// Maximum output height.
    pub max_height: u32,
    /// Maximum output area in pixels.
    pub max_area: u64,
}

impl SizeLimit {
    /// `MAX_CVT=5000` and the gateway's local configuration: 5000×5000, 25 megapixels.
    pub const LOCAL_STACK: SizeLimit = SizeLimit {
        max_width: 5000,
        max_height: 5000,
        max_area: 25_000_000,
    };

    /// True when an output of `width`×`height` is within the limit.
    pub fn allows(&self, width: u32, height: u32) -> bool {
        width <= self.max_width
            && height <= self.max_height
            && u64::from(width) * u64::from(height) <= self.max_area
    }
}

impl Shape {
    /// The IIIF path after the base URL: `{identifier}/{region}/{size}/0/default.jpg`.
    pub fn path(&self, image: &Image, version: ApiVersion, limit: &SizeLimit) -> String {
        let (region, size) = match (self, version) {
            (Shape::Confined(side), ApiVersion::V2) => {
                ("full".to_string(), format!("!{side},{side}"))
            }
            (Shape::Confined(side), ApiVersion::V3) => {
                let upscale = if *side > image.long_side() { "^" } else { "" };
                ("full".to_string(), format!("{upscale}!{side},{side}"))
            }
            (Shape::Full, ApiVersion::V2) if limit.allows(image.width, image.height) => {
                ("full".to_string(), "full".to_string())
            }
            (Shape::Full, _) => ("full".to_string(), "max".to_string()),
            (Shape::Tile(tile), version) => {
                let region = if tile.is_whole_image {
                    "full".to_string()
                } else {
                    let r = tile.region;
                    format!("{},{},{},{}", r.x, r.y, r.width, r.height)
                };
                let size = match version {
                    ApiVersion::V2 => format!("{},", tile.width),
                    ApiVersion::V3 => format!("{},{}", tile.width, tile.height),
                };
                (region, size)
            }
        };
        format!("{}/{region}/{size}/0/default.jpg", image.identifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::tile_at;

    fn image(width: u32, height: u32) -> Image {
        Image {
            identifier: "id".into(),
            width,
            height,
        }
    }

    #[test]
    fn confined_renders() {
        let small = image(2736, 1824);
        let limit = SizeLimit::LOCAL_STACK;
        assert_eq!(
            Shape::Confined(128).path(&small, ApiVersion::V2, &limit),
            "id/full/!128,128/0/default.jpg"
        );
        assert_eq!(
            Shape::Confined(128).path(&small, ApiVersion::V3, &limit),
            "id/full/!128,128/0/default.jpg"
        );
        // 3.0 needs ^ to upscale a 2736 px image to 3500 px; 2.1 upscales implicitly.
        assert_eq!(
            Shape::Confined(3500).path(&small, ApiVersion::V3, &limit),
            "id/full/^!3500,3500/0/default.jpg"
        );
        assert_eq!(
            Shape::Confined(3500).path(&small, ApiVersion::V2, &limit),
            "id/full/!3500,3500/0/default.jpg"
        );
        assert_eq!(
            Shape::Confined(2736).path(&small, ApiVersion::V3, &limit),
            "id/full/!2736,2736/0/default.jpg"
        );
    }

    #[test]
    fn full_size_asks_for_max_beyond_the_limit() {
        let limit = SizeLimit::LOCAL_STACK;
        assert_eq!(
            Shape::Full.path(&image(2736, 1824), ApiVersion::V2, &limit),
            "id/full/full/0/default.jpg"
        );
        assert_eq!(
            Shape::Full.path(&image(5000, 5000), ApiVersion::V2, &limit),
            "id/full/full/0/default.jpg"
        );
        assert_eq!(
            Shape::Full.path(&image(5001, 100), ApiVersion::V2, &limit),
            "id/full/max/0/default.jpg"
        );
        assert_eq!(
            Shape::Full.path(&image(12288, 8192), ApiVersion::V2, &limit),
            "id/full/max/0/default.jpg"
        );
        assert_eq!(
            Shape::Full.path(&image(100, 100), ApiVersion::V3, &limit),
            "id/full/max/0/default.jpg"
        );
        let area_bound = SizeLimit {
            max_width: 10_000,
            max_height: 10_000,
            max_area: 1_000_000,
        };
        assert_eq!(
            Shape::Full.path(&image(2000, 1000), ApiVersion::V2, &area_bound),
            "id/full/max/0/default.jpg"
        );
    }

    #[test]
    fn tiles_use_the_viewers_syntax() {
        let hubble = image(1000, 872);
        let limit = SizeLimit::LOCAL_STACK;
        let edge = Shape::Tile(tile_at(1000, 872, 2, 1, 1));
        assert_eq!(
            edge.path(&hubble, ApiVersion::V2, &limit),
            "id/512,512,488,360/244,/0/default.jpg"
        );
        assert_eq!(
            edge.path(&hubble, ApiVersion::V3, &limit),
            "id/512,512,488,360/244,180/0/default.jpg"
        );
        let whole = Shape::Tile(tile_at(1000, 872, 4, 0, 0));
        assert_eq!(
            whole.path(&hubble, ApiVersion::V2, &limit),
            "id/full/250,/0/default.jpg"
        );
        assert_eq!(
            whole.path(&hubble, ApiVersion::V3, &limit),
            "id/full/250,218/0/default.jpg"
        );
    }
}

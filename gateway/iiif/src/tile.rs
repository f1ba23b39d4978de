//! The tile fast path: recognising requests that iipsrv can answer from a stored tile.
//!
//! iipsrv 1.1 has two ways to answer an IIIF request (`IIIF.cc`, end of `IIIF::run`): JTL sends one stored tile
//! of one pyramid level, CVT decodes, crops and resizes. JTL is several times faster, so tiled viewers depend on
//! it. iipsrv only takes JTL when *all* of these hold:
//!
//! * the size keeps the aspect ratio (`w,`, never `w,h`);
//! * either the request is a **full** `tw×th` tile, tile-aligned at a level that is not the smallest one and is
//!   strictly larger than one tile in both directions (`getViewWidth() < im_width`),
//! * or it is the **whole image at the smallest level**, whose size must then be requested exactly.
//!
//! Everything else, including the partial tiles on the right and bottom edges, goes through CVT, and CVT's `w,`
//! is the one that is off by a pixel about one time in six (iiif-reference §3.8 item 3). So edge tiles are
//! deliberately *not* sent as `w,`: they are sent as an exact `w,h`, which CVT always gets right. Sending `w,`
//! only when JTL is certain keeps every response at exactly the planned size.
//!
//! Two further exclusions come from iipsrv bugs: with rotation 180 JTL remaps the tile index and returns the
//! diagonally opposite tile (`JTL.cc`), and bitonal tiles on the JTL path crash the process or come back as raw
//! pixels instead of a JPEG (iipsrv-baseline §3, row 2).

use crate::geometry::PixelRect;
use crate::limits::ImageFacts;
use crate::quality::Quality;
use crate::rotation::Rotation;

/// The width to send as `w,` when iipsrv will answer this request from one stored tile, else `None`.
///
/// `region` is the clipped region in full-resolution pixels, `output` the exact output size before rotation and
/// `backend_rotation` what iipsrv will be asked to do (only multiples of 90°).
pub fn fast_path_tile_width(
    region: &PixelRect,
    output: (u32, u32),
    facts: &ImageFacts,
    backend_rotation: &Rotation,
    quality: Quality,
) -> Option<u32> {
    if backend_rotation.normalized().degrees == 180.0 || quality == Quality::Bitonal {
        return None;
    }
    if is_full_tile(region, output, facts) || is_whole_smallest_level(region, output, facts) {
        Some(output.0)
    } else {
        None
    }
}

/// True for a full `tw×th` tile at a level that is neither the smallest nor a single tile wide or high.
fn is_full_tile(region: &PixelRect, output: (u32, u32), facts: &ImageFacts) -> bool {
    let (tile_width, tile_height) = (u64::from(facts.tile_width), u64::from(facts.tile_height));
    if tile_width == 0 || tile_height == 0 || output != (facts.tile_width, facts.tile_height) {
        return false;
    }
    let Some(smallest_level_scale) = facts.scale_factors.iter().copied().max() else {
        return false;
    };
    facts
        .scale_factors
        .iter()
        .copied()
        .filter(|&scale| scale >= 1 && scale < smallest_level_scale)
        .any(|scale| {
            let scale = u64::from(scale);
            let (scaled_tile_width, scaled_tile_height) = (tile_width * scale, tile_height * scale);
            // A lower bound of the level size whichever way the pyramid rounded its levels.
            let (level_width_at_least, level_height_at_least) = (
                u64::from(facts.width) / scale,
                u64::from(facts.height) / scale,
            );
            u64::from(region.x) % scaled_tile_width == 0
                && u64::from(region.y) % scaled_tile_height == 0
                && u64::from(region.w) == scaled_tile_width
                && u64::from(region.h) == scaled_tile_height
                && region.right() <= u64::from(facts.width)
                && region.bottom() <= u64::from(facts.height)
                && tile_width < level_width_at_least
                && tile_height < level_height_at_least
        })
}

/// True when the whole image is asked for at exactly the size of the smallest level, and that level is a
/// single tile (otherwise JTL would send only its first tile).
fn is_whole_smallest_level(region: &PixelRect, output: (u32, u32), facts: &ImageFacts) -> bool {
    if !region.is_whole(facts.width, facts.height) {
        return false;
    }
    let Some(smallest_level_scale) = facts.scale_factors.iter().copied().max() else {
        return false;
    };
    let Some((level_width, level_height)) = facts.level_size(smallest_level_scale) else {
        return false;
    };
    output == (level_width, level_height)
        && level_width <= facts.tile_width
        && level_height <= facts.tile_height
        && iipsrv_height_for_width(level_width, facts) == Some(level_height)
}

/// The height iipsrv derives for `w,` on the whole image (`round(w / (W/H))` in single precision), or `None`
/// when the exact value sits so close to a half that single-precision rounding could go either way.
fn iipsrv_height_for_width(width: u32, facts: &ImageFacts) -> Option<u32> {
    let exact = f64::from(width) * f64::from(facts.height) / f64::from(facts.width);
    let fraction = exact - exact.floor();
    if (fraction - 0.5).abs() < 0.01 {
        return None;
    }
    Some(exact.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// skimage's hubble_deep_field as the baseline converted it: 1000×872, 256-px tiles, levels 500×436 and
    /// 250×218.
    fn hubble() -> ImageFacts {
        ImageFacts {
            width: 1000,
            height: 872,
            tile_width: 256,
            tile_height: 256,
            scale_factors: vec![1, 2, 4],
            sizes: vec![(250, 218), (500, 436)],
            backend_max_width: 5000,
            backend_max_height: 5000,
        }
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    fn fast(region: PixelRect, output: (u32, u32), facts: &ImageFacts) -> Option<u32> {
        fast_path_tile_width(&region, output, facts, &Rotation::NONE, Quality::Default)
    }

    #[test]
    fn full_tiles_at_full_resolution() {
        let image = hubble();
        assert_eq!(fast(rect(0, 0, 256, 256), (256, 256), &image), Some(256));
        assert_eq!(
            fast(rect(512, 256, 256, 256), (256, 256), &image),
            Some(256)
        );
        // The last full tile before the ragged edge.
        assert_eq!(
            fast(rect(512, 512, 256, 256), (256, 256), &image),
            Some(256)
        );
    }

    #[test]
    fn full_tiles_at_lower_levels() {
        let image = hubble();
        // Scale 2: level 500×436, so tile (0,0) covers 512×512 of the full image.
        assert_eq!(fast(rect(0, 0, 512, 512), (256, 256), &image), Some(256));
    }

    #[test]
    fn edge_tiles_are_never_sent_as_w_comma() {
        let image = hubble();
        // Right edge at scale 1: 1000 − 768 = 232 wide.
        assert_eq!(fast(rect(768, 0, 232, 256), (232, 256), &image), None);
        // Bottom edge at scale 1: 872 − 768 = 104 high.
        assert_eq!(fast(rect(0, 768, 256, 104), (256, 104), &image), None);
        // Corner.
        assert_eq!(fast(rect(768, 768, 232, 104), (232, 104), &image), None);
        // Scale 2 edges: 1000 − 512 = 488 → 244 wide; 872 − 512 = 360 → 180 high.
        assert_eq!(fast(rect(512, 0, 488, 512), (244, 256), &image), None);
        assert_eq!(fast(rect(0, 512, 512, 360), (256, 180), &image), None);
    }

    #[test]
    fn levels_of_a_single_tile_are_not_tiles() {
        let image = hubble();
        // Scale 4 is the smallest level (250×218): only its whole-image form qualifies.
        assert_eq!(fast(rect(0, 0, 1000, 872), (250, 218), &image), Some(250));
        assert_eq!(fast(rect(0, 0, 1000, 872), (250, 219), &image), None);
        assert_eq!(fast(rect(0, 0, 1000, 872), (125, 109), &image), None);
        // A level exactly one tile wide fails iipsrv's `getViewWidth() < im_width` test.
        let one_tile_wide = ImageFacts {
            width: 512,
            height: 2048,
            scale_factors: vec![1, 2, 4, 8],
            ..hubble()
        };
        assert_eq!(fast(rect(0, 0, 512, 512), (256, 256), &one_tile_wide), None);
        assert_eq!(
            fast(rect(0, 0, 256, 256), (256, 256), &one_tile_wide),
            Some(256)
        );
    }

    #[test]
    fn the_whole_smallest_level_needs_an_unambiguous_height() {
        // iipsrv's own example: 1000×750 with a rounded-down smallest level of 250×187. iipsrv would derive
        // round(187.5) = 188 for "250,", so that request must not be sent as w,.
        let image = ImageFacts {
            width: 1000,
            height: 750,
            sizes: vec![(250, 187), (500, 375)],
            ..hubble()
        };
        assert_eq!(fast(rect(0, 0, 1000, 750), (250, 187), &image), None);
        // A smallest level larger than one tile would make JTL send only its first tile.
        let big = ImageFacts {
            width: 4000,
            height: 4000,
            scale_factors: vec![1, 2],
            sizes: vec![(2000, 2000)],
            ..hubble()
        };
        assert_eq!(fast(rect(0, 0, 4000, 4000), (2000, 2000), &big), None);
    }

    #[test]
    fn misaligned_or_rescaled_tiles_are_not_tiles() {
        let image = hubble();
        assert_eq!(fast(rect(1, 0, 256, 256), (256, 256), &image), None);
        assert_eq!(fast(rect(256, 0, 256, 256), (255, 255), &image), None);
        assert_eq!(fast(rect(256, 0, 512, 512), (256, 256), &image), None);
        assert_eq!(fast(rect(0, 0, 256, 256), (128, 128), &image), None);
        assert_eq!(fast(rect(0, 0, 512, 256), (256, 128), &image), None);
    }

    #[test]
    fn non_power_of_two_scale_factors() {
        let image = ImageFacts {
            width: 3000,
            height: 3000,
            scale_factors: vec![1, 3, 9],
            sizes: vec![],
            ..hubble()
        };
        assert_eq!(
            fast(rect(768, 768, 768, 768), (256, 256), &image),
            Some(256)
        );
        assert_eq!(fast(rect(768, 0, 768, 768), (256, 256), &image), Some(256));
        assert_eq!(fast(rect(512, 0, 768, 768), (256, 256), &image), None);
    }

    #[test]
    fn exclusions() {
        let image = hubble();
        let tile = rect(256, 256, 256, 256);
        let rotated = |mirror, degrees| {
            fast_path_tile_width(
                &tile,
                (256, 256),
                &image,
                &Rotation { mirror, degrees },
                Quality::Default,
            )
        };
        assert_eq!(rotated(false, 180.0), None);
        assert_eq!(rotated(true, 180.0), None);
        assert_eq!(rotated(false, 90.0), Some(256));
        assert_eq!(rotated(true, 270.0), Some(256));
        assert_eq!(rotated(true, 0.0), Some(256));
        assert_eq!(
            fast_path_tile_width(&tile, (256, 256), &image, &Rotation::NONE, Quality::Bitonal),
            None
        );
        assert_eq!(
            fast_path_tile_width(&tile, (256, 256), &image, &Rotation::NONE, Quality::Gray),
            Some(256)
        );
        assert_eq!(
            fast_path_tile_width(&tile, (256, 256), &image, &Rotation::NONE, Quality::Color),
            Some(256)
        );
        let untiled = ImageFacts {
            scale_factors: vec![],
            ..hubble()
        };
        assert_eq!(fast(tile, (256, 256), &untiled), None);
    }
}

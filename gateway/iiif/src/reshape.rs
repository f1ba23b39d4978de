//! The workaround for iipsrv 1.1's crash on thin strips.
//!
//! iipsrv 1.1 segfaults on some *in-bounds* requests: a one-pixel strip on the last row or column that is scaled
//! down (`0,999,100,1/50,1` and `999,0,1,100/1,50` on a 1000-px image, iiif-reference §3.8 item 1). The likely
//! cause, from `View.cc`: iipsrv picks a smaller pyramid level for the downscale, where the strip is less than a
//! pixel thick, rounds its offset onto the level's edge and is left with a zero-sized region.
//!
//! The workaround never turns a valid request into an error. It asks iipsrv for a *taller* (or wider) in-bounds
//! region, an exact multiple of the requested one, at the proportionally larger output size, and records a crop
//! that cuts the requested pixels back out of iipsrv's answer. Because the region grows by whole multiples of
//! itself, each block of the grown region maps onto exactly `output` pixels of the grown output, so the crop is
//! exact.

use crate::geometry::PixelRect;
use crate::limits::ImageFacts;
use crate::number::div_ceil;
use crate::rotation::Rotation;

/// A request reshaped so that iipsrv survives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendReshape {
    /// The grown region to ask iipsrv for; always inside the image.
    pub region: PixelRect,
    /// The exact output size to ask iipsrv for (before rotation).
    pub output: (u32, u32),
    /// Where the requested pixels lie in iipsrv's output, before any rotation iipsrv applies.
    pub crop: PixelRect,
}

/// How many pixels thick a strip must be, in units of the request's downscale factor, to be safe.
///
/// At the pyramid level iipsrv reads, the strip is `side / level_scale` pixels thick, where `level_scale` is at
/// most the overall downscale factor. Two level pixels survive iipsrv's rounding of both the offset and the size.
const SAFE_THICKNESS_IN_LEVEL_PIXELS: u64 = 2;

/// True when a side of the region is so thin, for the downscale of this request, that iipsrv 1.1 may crash on it.
///
/// This is **deliberately conservative**: it fires for any strip under two level pixels thick in either
/// direction whenever the request downscales, not only on the last row or column where the crash was seen. The
/// exact crashing pattern is being measured against the real binary; this predicate is the one place to tighten
/// once it is known. Reshaping a request that would not have crashed costs a slightly larger iipsrv render; the
/// pixels come from the same scale, so at most the resampling along the crop's edges differs.
pub fn is_crash_prone_strip(region_side: u32, downscale: u64) -> bool {
    downscale >= 2 && u64::from(region_side) < SAFE_THICKNESS_IN_LEVEL_PIXELS * downscale
}

/// The overall downscale factor of a request, rounded up: the larger of `region / output` over both axes.
pub fn downscale_factor(region: &PixelRect, output: (u32, u32)) -> u64 {
    let horizontal = div_ceil(u64::from(region.w), u64::from(output.0.max(1)));
    let vertical = div_ceil(u64::from(region.h), u64::from(output.1.max(1)));
    horizontal.max(vertical)
}

/// Grows thin strips so that iipsrv 1.1 does not crash on them, or returns `None` when the request is safe as it
/// is (or cannot be grown because the image itself is that thin).
///
/// Each thin axis grows by a whole multiple `m` of the region's own size, towards the image's interior, far
/// enough to reach the safe thickness, but never beyond the image and never to an output larger than iipsrv's
/// `MAX_CVT`. The output grows by the same multiple, and the crop selects the requested block.
pub fn reshape_for_backend(
    region: &PixelRect,
    output: (u32, u32),
    facts: &ImageFacts,
) -> Option<BackendReshape> {
    // Plans only ever pass in-bounds regions and non-empty outputs; anything else is left alone.
    if !region.fits_in(facts.width, facts.height) || output.0 == 0 || output.1 == 0 {
        return None;
    }
    let downscale = downscale_factor(region, output);
    let horizontal = grow_axis(
        Axis {
            start: region.x,
            side: region.w,
            image_side: facts.width,
            out_side: output.0,
            backend_max: facts.backend_max_width,
        },
        downscale,
    );
    let vertical = grow_axis(
        Axis {
            start: region.y,
            side: region.h,
            image_side: facts.height,
            out_side: output.1,
            backend_max: facts.backend_max_height,
        },
        downscale,
    );
    if horizontal.is_none() && vertical.is_none() {
        return None;
    }
    let unchanged = |start: u32, side: u32, out_side: u32| Grown {
        start,
        side,
        out_side,
        crop_offset: 0,
    };
    let horizontal = horizontal.unwrap_or_else(|| unchanged(region.x, region.w, output.0));
    let vertical = vertical.unwrap_or_else(|| unchanged(region.y, region.h, output.1));
    Some(BackendReshape {
        region: PixelRect {
            x: horizontal.start,
            y: vertical.start,
            w: horizontal.side,
            h: vertical.side,
        },
        output: (horizontal.out_side, vertical.out_side),
        crop: PixelRect {
            x: horizontal.crop_offset,
            y: vertical.crop_offset,
            w: output.0,
            h: output.1,
        },
    })
}

/// Maps a crop expressed in iipsrv's unrotated output onto the image iipsrv actually returns after it mirrors
/// (on the vertical axis) and then rotates clockwise by 0, 90, 180 or 270 degrees.
pub fn crop_after_backend_rotation(
    crop: PixelRect,
    backend_output: (u32, u32),
    rotation: &Rotation,
) -> PixelRect {
    let (width, height) = backend_output;
    // The subtractions saturate so that a crop that does not fit (which plans never produce) cannot panic.
    let from_right = |rect: &PixelRect| width.saturating_sub(rect.x).saturating_sub(rect.w);
    let from_bottom = |rect: &PixelRect| height.saturating_sub(rect.y).saturating_sub(rect.h);
    let mirrored = if rotation.mirror {
        PixelRect {
            x: from_right(&crop),
            ..crop
        }
    } else {
        crop
    };
    match rotation.normalized().degrees as u32 {
        // A point (x, y) of a W×H image lands on (H−1−y, x) after a clockwise quarter turn.
        90 => PixelRect {
            x: from_bottom(&mirrored),
            y: mirrored.x,
            w: mirrored.h,
            h: mirrored.w,
        },
        180 => PixelRect {
            x: from_right(&mirrored),
            y: from_bottom(&mirrored),
            ..mirrored
        },
        // A point (x, y) lands on (y, W−1−x) after three clockwise quarter turns.
        270 => PixelRect {
            x: mirrored.y,
            y: from_right(&mirrored),
            w: mirrored.h,
            h: mirrored.w,
        },
        _ => mirrored,
    }
}

/// One axis of a region and its output.
struct Axis {
    start: u32,
    side: u32,
    image_side: u32,
    out_side: u32,
    backend_max: u32,
}

/// One axis after growing.
struct Grown {
    start: u32,
    side: u32,
    out_side: u32,
    crop_offset: u32,
}

/// Grows one axis by whole multiples of itself, or returns `None` when it is not thin or cannot grow.
fn grow_axis(axis: Axis, downscale: u64) -> Option<Grown> {
    if !is_crash_prone_strip(axis.side, downscale) {
        return None;
    }
    let side = u64::from(axis.side);
    let out_side = u64::from(axis.out_side);
    let wanted_multiple = div_ceil(SAFE_THICKNESS_IN_LEVEL_PIXELS * downscale, side);
    let blocks_before = u64::from(axis.start) / side;
    let blocks_after = (u64::from(axis.image_side) - u64::from(axis.start) - side) / side;
    let max_multiple_in_backend = u64::from(axis.backend_max) / out_side.max(1);
    let multiple = wanted_multiple
        .min(1 + blocks_before + blocks_after)
        .min(max_multiple_in_backend);
    if multiple <= 1 {
        return None;
    }
    let extra_blocks = multiple - 1;
    // Grow towards the interior: upwards (leftwards) for a strip in the far half, so the crash-prone last rows
    // and columns end up inside the grown region rather than on its edge.
    let in_far_half = 2 * u64::from(axis.start) + side > u64::from(axis.image_side);
    let before = if in_far_half {
        extra_blocks.min(blocks_before)
    } else {
        extra_blocks - extra_blocks.min(blocks_after)
    };
    let start = u64::from(axis.start) - before * side;
    // Every value is bounded by the image side or by MAX_CVT, both u32.
    Some(Grown {
        start: start as u32,
        side: (side * multiple) as u32,
        out_side: (out_side * multiple) as u32,
        crop_offset: (before * out_side) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_image(side: u32) -> ImageFacts {
        ImageFacts {
            width: side,
            height: side,
            tile_width: 256,
            tile_height: 256,
            scale_factors: vec![1, 2, 4],
            sizes: vec![],
            backend_max_width: 5000,
            backend_max_height: 5000,
        }
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    #[test]
    fn last_row_strip_scaled_down_is_reshaped() {
        // 0,999,100,1/50,1 on a 1000-px image crashes iipsrv 1.1.
        let region = rect(0, 999, 100, 1);
        let reshaped =
            reshape_for_backend(&region, (50, 1), &square_image(1000)).expect("must be reshaped");
        assert_eq!(reshaped.region, rect(0, 996, 100, 4));
        assert_eq!(reshaped.output, (50, 4));
        assert_eq!(reshaped.crop, rect(0, 3, 50, 1));
        assert!(reshaped.region.h > 1, "still a one-pixel strip");
        assert!(reshaped.region.fits_in(1000, 1000));
    }

    #[test]
    fn last_column_strip_scaled_down_is_reshaped() {
        // 999,0,1,100/1,50 on a 1000-px image crashes iipsrv 1.1.
        let region = rect(999, 0, 1, 100);
        let reshaped =
            reshape_for_backend(&region, (1, 50), &square_image(1000)).expect("must be reshaped");
        assert_eq!(reshaped.region, rect(996, 0, 4, 100));
        assert_eq!(reshaped.output, (4, 50));
        assert_eq!(reshaped.crop, rect(3, 0, 1, 50));
    }

    #[test]
    fn strips_near_the_top_grow_downwards() {
        let reshaped =
            reshape_for_backend(&rect(0, 0, 100, 1), (50, 1), &square_image(1000)).unwrap();
        assert_eq!(reshaped.region, rect(0, 0, 100, 4));
        assert_eq!(reshaped.crop, rect(0, 0, 50, 1));
    }

    #[test]
    fn thicker_strips_grow_by_whole_multiples() {
        // 3 rows scaled by 4: needs 8 rows, so 3 blocks of 3 rows; the output grows from 2 to 6 rows.
        let region = rect(0, 997, 400, 3);
        let reshaped = reshape_for_backend(&region, (100, 2), &square_image(1000)).unwrap();
        assert_eq!(reshaped.region, rect(0, 991, 400, 9));
        assert_eq!(reshaped.output, (100, 6));
        assert_eq!(reshaped.crop, rect(0, 4, 100, 2));
    }

    #[test]
    fn safe_requests_are_left_alone() {
        let image = square_image(1000);
        // Not downscaled.
        assert_eq!(
            reshape_for_backend(&rect(0, 999, 100, 1), (100, 1), &image),
            None
        );
        // Thick enough.
        assert_eq!(
            reshape_for_backend(&rect(0, 996, 100, 4), (50, 2), &image),
            None
        );
        // Ordinary tiles and thumbnails.
        assert_eq!(
            reshape_for_backend(&rect(768, 768, 232, 232), (116, 116), &image),
            None
        );
        assert_eq!(
            reshape_for_backend(&rect(0, 0, 1000, 1000), (100, 100), &image),
            None
        );
    }

    #[test]
    fn images_too_thin_to_grow_are_left_alone() {
        let strip_image = ImageFacts {
            width: 1000,
            height: 1,
            ..square_image(1000)
        };
        assert_eq!(
            reshape_for_backend(&rect(0, 0, 1000, 1), (500, 1), &strip_image),
            None
        );
    }

    #[test]
    fn growth_stops_at_the_image_and_the_backend_limit() {
        let short_image = ImageFacts {
            width: 1000,
            height: 3,
            ..square_image(1000)
        };
        let reshaped = reshape_for_backend(&rect(0, 2, 1000, 1), (100, 1), &short_image).unwrap();
        assert_eq!(reshaped.region, rect(0, 0, 1000, 3));
        assert_eq!(reshaped.crop, rect(0, 2, 100, 1));
        let small_backend = ImageFacts {
            backend_max_height: 2,
            ..square_image(1000)
        };
        let reshaped = reshape_for_backend(&rect(0, 999, 100, 1), (50, 1), &small_backend).unwrap();
        assert_eq!(reshaped.output, (50, 2));
    }

    #[test]
    fn crops_follow_iipsrv_rotation() {
        // A 4×3 output in which the crop is the 1×1 pixel at (3, 0), the top-right corner.
        let crop = rect(3, 0, 1, 1);
        let at = |mirror, degrees| {
            crop_after_backend_rotation(crop, (4, 3), &Rotation { mirror, degrees })
        };
        assert_eq!(at(false, 0.0), rect(3, 0, 1, 1));
        // Mirrored, the top-right corner becomes the top-left.
        assert_eq!(at(true, 0.0), rect(0, 0, 1, 1));
        // A clockwise quarter turn moves the top-right corner to the bottom-right of the 3×4 result.
        assert_eq!(at(false, 90.0), rect(2, 3, 1, 1));
        assert_eq!(at(false, 180.0), rect(0, 2, 1, 1));
        assert_eq!(at(false, 270.0), rect(0, 0, 1, 1));
        assert_eq!(at(true, 90.0), rect(2, 0, 1, 1));
        // Non-square crops swap their sides with the axes.
        let strip = crop_after_backend_rotation(
            rect(0, 2, 4, 1),
            (4, 3),
            &Rotation {
                mirror: false,
                degrees: 90.0,
            },
        );
        assert_eq!(strip, rect(0, 0, 1, 4));
    }
}

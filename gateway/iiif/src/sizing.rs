//! Size arithmetic: the exact output size of a request, and every size error IIIF defines.
//!
//! The rules are those of 3.0 §4.2 and 2.1 §4.2 as summarised in iiif-reference §1.2:
//!
//! * 3.0 without `^` never returns more pixels than the region in either direction (400 otherwise); with `^`,
//!   a request that needs upscaling on a deployment that disables it is a 501.
//! * 2.1 upscales implicitly when the deployment allows it, else it is a 400.
//! * A result of zero pixels, or beyond `maxWidth`, `maxHeight` or `maxArea`, is a 400.
//!
//! All arithmetic that can be done in integers is, so that rounding is exact and reproducible: a size that keeps
//! the aspect ratio rounds halves up (`w,` on 1000×750 gives `333,` → 333×250).

use crate::error::IiifError;
use crate::limits::{ConfinedUpscale, EffectiveLimits, Limits};
use crate::number::div_round;
use crate::size::{Size, SizeKind};
use crate::version::Version;

/// Computes the output size (before rotation) for a region of `region_width×region_height`.
///
/// # Errors
///
/// * 400 for `full` (2.1) beyond the limits, a `pct:` that rounds to nothing, a 3.0 size without `^` that is
///   larger than the region (including `!w,h` under [`ConfinedUpscale::Reject`]), a 2.1 size larger than the
///   region when upscaling is disabled, and any result beyond the effective limits;
/// * 501 for a 3.0 `^` size that needs upscaling when upscaling is disabled.
pub(crate) fn output_size(
    version: Version,
    size: &Size,
    region: (u32, u32),
    limits: &Limits,
    effective: &EffectiveLimits,
) -> Result<(u32, u32), IiifError> {
    let (region_width, region_height) = (u64::from(region.0), u64::from(region.1));
    let (width, height) = match size.kind {
        SizeKind::Full => {
            if !effective.allows(region_width, region_height) {
                return Err(IiifError::bad_request(format!(
                    "invalid size: full is larger than the size limits ({}), use max",
                    describe(effective)
                )));
            }
            (region_width, region_height)
        }
        SizeKind::Max => fit_within_limits(region, effective, size.upscale),
        SizeKind::Width(width) => {
            let width = u64::from(width);
            (width, div_round(width * region_height, region_width).max(1))
        }
        SizeKind::Height(height) => {
            let height = u64::from(height);
            (
                div_round(height * region_width, region_height).max(1),
                height,
            )
        }
        SizeKind::Percent(percent) => {
            let scaled = |side: u64| (side as f64 * percent / 100.0).round() as u64;
            let (width, height) = (scaled(region_width), scaled(region_height));
            if width == 0 || height == 0 {
                return Err(IiifError::bad_request(format!(
                    "invalid size: {size} results in an empty image"
                )));
            }
            (width, height)
        }
        SizeKind::Exact(width, height) => (u64::from(width), u64::from(height)),
        SizeKind::Confined(box_width, box_height) => {
            let fitted = confine(region, (box_width, box_height));
            let larger_than_region = fitted.0 > region_width || fitted.1 > region_height;
            // A box larger than the region either gives the region itself or is left to the upscaling checks
            // below (which reject it in 3.0 without `^`).
            let clamp_to_region = match version {
                Version::V3 => !size.upscale && limits.confined_upscale == ConfinedUpscale::Allow,
                // 2.1 without upscaling: the best fit that is not larger than the region is the region itself.
                Version::V2 => !limits.allow_upscaling,
            };
            if larger_than_region && clamp_to_region {
                (region_width, region_height)
            } else {
                fitted
            }
        }
    };

    // Parsing rejects zero sizes, but a hand-built `Size` could still ask for one.
    if width == 0 || height == 0 {
        return Err(IiifError::bad_request(format!(
            "invalid size: {size} results in an empty image"
        )));
    }
    if width > region_width || height > region_height {
        if version == Version::V3 && !size.upscale {
            return Err(IiifError::bad_request(format!(
                "invalid size: {size} is larger than the region ({}x{}), use ^ to upscale",
                region.0, region.1
            )));
        }
        if !limits.allow_upscaling {
            return Err(match version {
                Version::V3 => {
                    IiifError::not_implemented("upscaling is not supported by this server")
                }
                Version::V2 => IiifError::bad_request(
                    "invalid size: upscaling is not supported by this server",
                ),
            });
        }
    }
    if !effective.allows(width, height) {
        return Err(IiifError::bad_request(format!(
            "invalid size: {width}x{height} is larger than the size limits ({})",
            describe(effective)
        )));
    }
    // `allows` bounded both sides by u32 limits, so these conversions are lossless.
    Ok((width as u32, height as u32))
}

/// The largest size for the region that keeps its aspect ratio and respects the limits: what `max` returns
/// (`upscale == false`, never larger than the region) or what `^max` returns (`upscale == true`).
///
/// This follows the 3.0 implementation notes (§4): when the area binds, both sides scale by
/// `sqrt(maxArea / area)` and round down; when a side binds, it takes the limit and the other side is rounded
/// from the original ratio. Of the candidates, the largest one that satisfies every limit wins, and a final
/// step trims a pixel at a time if floating-point rounding left the result one pixel over.
pub(crate) fn fit_within_limits(
    region: (u32, u32),
    limits: &EffectiveLimits,
    upscale: bool,
) -> (u64, u64) {
    let (region_width, region_height) = (u64::from(region.0), u64::from(region.1));
    if !upscale && limits.allows(region_width, region_height) {
        return (region_width, region_height);
    }
    let max_width = u64::from(limits.max_width);
    let max_height = u64::from(limits.max_height);
    let area_scale = (limits.max_area as f64 / (region_width as f64 * region_height as f64)).sqrt();
    let scaled_floor = |side: u64| ((side as f64 * area_scale).floor() as u64).max(1);

    let candidates = [
        (
            max_width,
            div_round(region_height * max_width, region_width).max(1),
        ),
        (
            div_round(region_width * max_height, region_height).max(1),
            max_height,
        ),
        (scaled_floor(region_width), scaled_floor(region_height)),
    ];
    let acceptable = |&(width, height): &(u64, u64)| {
        limits.allows(width, height)
            && (upscale || (width <= region_width && height <= region_height))
    };
    if let Some(best) = candidates
        .iter()
        .copied()
        .filter(acceptable)
        .max_by_key(|&(width, height)| width * height)
    {
        return best;
    }
    // Rounding pushed every candidate over a limit: trim the relatively larger side until everything fits.
    let (mut width, mut height) = candidates[2];
    width = width
        .min(max_width)
        .min(if upscale { u64::MAX } else { region_width });
    height = height
        .min(max_height)
        .min(if upscale { u64::MAX } else { region_height });
    while !limits.allows(width, height) {
        if width > 1 && (height == 1 || width * region_height >= height * region_width) {
            width -= 1;
        } else {
            height -= 1;
        }
    }
    (width, height)
}

/// The largest size that fits in the `box_width×box_height` box and keeps the region's aspect ratio, with each
/// side at least 1 pixel and never larger than the box. It may be larger than the region; callers decide.
fn confine(region: (u32, u32), bounding_box: (u32, u32)) -> (u64, u64) {
    let (region_width, region_height) = (u64::from(region.0), u64::from(region.1));
    let (box_width, box_height) = (u64::from(bounding_box.0), u64::from(bounding_box.1));
    // Compare box_width/region_width with box_height/region_height without division.
    if box_width * region_height <= box_height * region_width {
        (
            box_width,
            div_round(region_height * box_width, region_width).clamp(1, box_height),
        )
    } else {
        (
            div_round(region_width * box_height, region_height).clamp(1, box_width),
            box_height,
        )
    }
}

/// The limits as a client should read them in an error message.
fn describe(limits: &EffectiveLimits) -> String {
    format!(
        "maxWidth {}, maxHeight {}, maxArea {}",
        limits.max_width, limits.max_height, limits.max_area
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_width: 5000,
        max_height: 5000,
        max_area: 25_000_000,
        allow_upscaling: true,
        confined_upscale: ConfinedUpscale::Reject,
    };

    const NO_UPSCALING: Limits = Limits {
        allow_upscaling: false,
        ..LIMITS
    };

    fn effective(limits: &Limits) -> EffectiveLimits {
        EffectiveLimits {
            max_width: limits.max_width,
            max_height: limits.max_height,
            max_area: limits.max_area,
        }
    }

    fn size_with(
        version: Version,
        text: &str,
        region: (u32, u32),
        limits: &Limits,
    ) -> Result<(u32, u32), IiifError> {
        let size = Size::parse(version, text)?;
        output_size(version, &size, region, limits, &effective(limits))
    }

    fn v3(text: &str, region: (u32, u32)) -> Result<(u32, u32), IiifError> {
        size_with(Version::V3, text, region, &LIMITS)
    }

    fn v2(text: &str, region: (u32, u32)) -> Result<(u32, u32), IiifError> {
        size_with(Version::V2, text, region, &LIMITS)
    }

    fn status(result: Result<(u32, u32), IiifError>) -> u16 {
        result.expect_err("expected an error").status
    }

    #[test]
    fn v3_max_keeps_the_region_when_within_limits() {
        assert_eq!(v3("max", (1000, 750)), Ok((1000, 750)));
        assert_eq!(v3("max", (1, 1)), Ok((1, 1)));
        assert_eq!(v3("max", (5000, 5000)), Ok((5000, 5000)));
    }

    #[test]
    fn v3_max_shrinks_to_each_limit() {
        // Width binds.
        assert_eq!(v3("max", (12288, 8192)), Ok((5000, 3333)));
        // Height binds.
        assert_eq!(v3("max", (8192, 12288)), Ok((3333, 5000)));
        // Area binds: 4000×4000 = 16 Mpx against 10 Mpx → scale sqrt(0.625).
        let area_limited = Limits {
            max_area: 10_000_000,
            ..LIMITS
        };
        assert_eq!(
            size_with(Version::V3, "max", (4000, 4000), &area_limited),
            Ok((3162, 3162))
        );
        // An extreme aspect ratio keeps at least one pixel.
        assert_eq!(v3("max", (100_000, 1)), Ok((5000, 1)));
        assert_eq!(v3("max", (1, 100_000)), Ok((1, 5000)));
    }

    #[test]
    fn v3_caret_max_scales_up_or_down_to_the_limits() {
        assert_eq!(v3("^max", (1000, 1000)), Ok((5000, 5000)));
        assert_eq!(v3("^max", (1000, 750)), Ok((5000, 3750)));
        assert_eq!(v3("^max", (12288, 8192)), Ok((5000, 3333)));
        let area_limited = Limits {
            max_area: 1_000_000,
            ..LIMITS
        };
        assert_eq!(
            size_with(Version::V3, "^max", (100, 100), &area_limited),
            Ok((1000, 1000))
        );
        assert_eq!(
            size_with(Version::V3, "^max", (1000, 1000), &NO_UPSCALING)
                .unwrap_err()
                .status,
            501
        );
        // Shrinking with ^max is still fine without upscaling.
        assert_eq!(
            size_with(Version::V3, "^max", (6000, 6000), &NO_UPSCALING),
            Ok((5000, 5000))
        );
        // Exactly at the limits needs no upscaling.
        assert_eq!(
            size_with(Version::V3, "^max", (5000, 5000), &NO_UPSCALING),
            Ok((5000, 5000))
        );
    }

    #[test]
    fn v3_width_and_height() {
        assert_eq!(v3("500,", (1000, 750)), Ok((500, 375)));
        assert_eq!(v3(",375", (1000, 750)), Ok((500, 375)));
        // Odd ratios round halves up: 333 × 750/1000 = 249.75 → 250; 1000 × 333/750 = 444.0.
        assert_eq!(v3("333,", (1000, 750)), Ok((333, 250)));
        assert_eq!(v3(",333", (1000, 750)), Ok((444, 333)));
        // 1000×872: 300 × 0.872 = 261.6 → 262; 256 × 0.872 = 223.232 → 223.
        assert_eq!(v3("300,", (1000, 872)), Ok((300, 262)));
        assert_eq!(v3("256,", (1000, 872)), Ok((256, 223)));
        // Half pixels: 1 × 3/2 = 1.5 → 2.
        assert_eq!(v3("1,", (2, 3)), Ok((1, 2)));
        // The derived side is at least one pixel.
        assert_eq!(v3("10,", (10_000, 1)), Ok((10, 1)));
        assert_eq!(v3(",10", (1, 10_000)), Ok((1, 10)));
        // Equal to the region is not upscaling.
        assert_eq!(v3("1000,", (1000, 750)), Ok((1000, 750)));
    }

    #[test]
    fn v3_without_caret_never_exceeds_the_region() {
        let expected = IiifError::bad_request(
            "invalid size: 1001, is larger than the region (1000x750), use ^ to upscale",
        );
        assert_eq!(v3("1001,", (1000, 750)), Err(expected));
        assert_eq!(status(v3(",751", (1000, 750))), 400);
        assert_eq!(status(v3("1001,750", (1000, 750))), 400);
        assert_eq!(status(v3("1000,751", (1000, 750))), 400);
        assert_eq!(status(v3("2000,10", (1000, 750))), 400);
        // The validator's size_noup cases on its 1000×1000 image.
        for text in ["1100,1100", ",1100", "1100,", "2000,2000", "!2000,3000"] {
            assert_eq!(status(v3(text, (1000, 1000))), 400, "{text}");
        }
    }

    #[test]
    fn v3_caret_forms_upscale() {
        assert_eq!(v3("^2000,", (1000, 750)), Ok((2000, 1500)));
        assert_eq!(v3("^,1500", (1000, 750)), Ok((2000, 1500)));
        assert_eq!(v3("^pct:200", (1000, 750)), Ok((2000, 1500)));
        assert_eq!(v3("^2000,100", (1000, 750)), Ok((2000, 100)));
        assert_eq!(v3("^!2000,3000", (1000, 1000)), Ok((2000, 2000)));
        // ^ that does not need upscaling is fine everywhere.
        assert_eq!(
            size_with(Version::V3, "^500,", (1000, 750), &NO_UPSCALING),
            Ok((500, 375))
        );
        assert_eq!(
            size_with(Version::V3, "^!500,500", (1000, 750), &NO_UPSCALING),
            Ok((500, 375))
        );
    }

    #[test]
    fn v3_caret_without_upscaling_support_is_501() {
        for text in [
            "^2000,",
            "^,1500",
            "^pct:101",
            "^1001,750",
            "^!2000,3000",
            "^max",
        ] {
            let error = size_with(Version::V3, text, (1000, 750), &NO_UPSCALING).unwrap_err();
            assert_eq!(
                error,
                IiifError::not_implemented("upscaling is not supported by this server"),
                "{text}"
            );
        }
    }

    #[test]
    fn v3_percent() {
        assert_eq!(v3("pct:50", (1000, 750)), Ok((500, 375)));
        assert_eq!(v3("pct:100", (1000, 750)), Ok((1000, 750)));
        assert_eq!(v3("pct:33.3", (1000, 750)), Ok((333, 250)));
        // 0.1% of 1000×750 is 1×0.75 → 1×1; 0.05% is 0.5×0.375 → 1×0: an empty image.
        assert_eq!(v3("pct:0.1", (1000, 750)), Ok((1, 1)));
        assert_eq!(
            v3("pct:0.05", (1000, 750)),
            Err(IiifError::bad_request(
                "invalid size: pct:0.05 results in an empty image"
            ))
        );
    }

    #[test]
    fn v3_exact_sizes_may_distort() {
        assert_eq!(v3("100,700", (1000, 750)), Ok((100, 700)));
        assert_eq!(v3("1000,750", (1000, 750)), Ok((1000, 750)));
    }

    #[test]
    fn v3_confined() {
        assert_eq!(v3("!300,300", (1000, 872)), Ok((300, 262)));
        assert_eq!(v3("!300,300", (872, 1000)), Ok((262, 300)));
        assert_eq!(v3("!500,500", (1000, 750)), Ok((500, 375)));
        assert_eq!(v3("!1000,100", (1000, 750)), Ok((133, 100)));
        // Equal in one dimension and larger in the other is not upscaling.
        assert_eq!(v3("!1000,2000", (1000, 1000)), Ok((1000, 1000)));
        // Tiny boxes give at least one pixel and never exceed the box.
        assert_eq!(v3("!1,1", (1000, 10)), Ok((1, 1)));
        assert_eq!(v3("!10,1", (1000, 10)), Ok((10, 1)));
        assert_eq!(v3("!1,1000", (3, 1000)), Ok((1, 333)));
    }

    #[test]
    fn v3_confined_larger_than_region_follows_the_switch() {
        assert_eq!(
            v3("!2000,3000", (1000, 1000)),
            Err(IiifError::bad_request(
                "invalid size: !2000,3000 is larger than the region (1000x1000), use ^ to upscale"
            ))
        );
        let spec_reading = Limits {
            confined_upscale: ConfinedUpscale::Allow,
            ..LIMITS
        };
        assert_eq!(
            size_with(Version::V3, "!2000,3000", (1000, 1000), &spec_reading),
            Ok((1000, 1000))
        );
        assert_eq!(
            size_with(Version::V3, "!2000,3000", (1000, 750), &spec_reading),
            Ok((1000, 750))
        );
    }

    #[test]
    fn v2_full_is_the_region() {
        assert_eq!(v2("full", (1000, 750)), Ok((1000, 750)));
        assert_eq!(
            v2("full", (12288, 8192)),
            Err(IiifError::bad_request(
                "invalid size: full is larger than the size limits (maxWidth 5000, maxHeight 5000, maxArea 25000000), use max"
            ))
        );
        assert_eq!(v2("max", (12288, 8192)), Ok((5000, 3333)));
        assert_eq!(v2("max", (1000, 750)), Ok((1000, 750)));
    }

    #[test]
    fn v2_upscales_implicitly_when_allowed() {
        assert_eq!(v2("2000,", (1000, 750)), Ok((2000, 1500)));
        assert_eq!(v2("pct:200", (1000, 750)), Ok((2000, 1500)));
        assert_eq!(v2("!2000,2000", (1000, 1000)), Ok((2000, 2000)));
        assert_eq!(v2("1024,1024", (256, 256)), Ok((1024, 1024)));
    }

    #[test]
    fn v2_without_upscaling() {
        let no_up = |text: &str, region| size_with(Version::V2, text, region, &NO_UPSCALING);
        assert_eq!(
            no_up("2000,", (1000, 750)),
            Err(IiifError::bad_request(
                "invalid size: upscaling is not supported by this server"
            ))
        );
        assert_eq!(status(no_up("pct:101", (1000, 750))), 400);
        assert_eq!(status(no_up("1000,751", (1000, 750))), 400);
        assert_eq!(no_up("1000,", (1000, 750)), Ok((1000, 750)));
        // A box larger than the region gives the region itself.
        assert_eq!(no_up("!2000,2000", (1000, 750)), Ok((1000, 750)));
    }

    #[test]
    fn results_beyond_the_limits_are_400() {
        let expected = IiifError::bad_request(
            "invalid size: 5001x3751 is larger than the size limits (maxWidth 5000, maxHeight 5000, maxArea 25000000)",
        );
        assert_eq!(v2("5001,", (1000, 750)), Err(expected));
        assert_eq!(status(v3("^5001,10", (1000, 750))), 400);
        assert_eq!(status(v3("^10,5001", (1000, 750))), 400);
        assert_eq!(status(v2("pct:99999999999999999999", (1000, 750))), 400);
        let area_limited = Limits {
            max_area: 1_000_000,
            ..LIMITS
        };
        assert_eq!(
            status(size_with(
                Version::V3,
                "^1001,1000",
                (500, 500),
                &area_limited
            )),
            400
        );
        assert_eq!(
            size_with(Version::V3, "^1000,1000", (500, 500), &area_limited),
            Ok((1000, 1000))
        );
        // The region itself may exceed the limits as long as the output does not.
        assert_eq!(v3("1000,", (20_000, 20_000)), Ok((1000, 1000)));
        assert_eq!(status(v3("pct:50", (20_000, 20_000))), 400);
    }

    #[test]
    fn hand_built_zero_sizes_are_400() {
        let zero = Size {
            upscale: false,
            kind: SizeKind::Width(0),
        };
        assert_eq!(
            output_size(Version::V3, &zero, (10, 10), &LIMITS, &effective(&LIMITS))
                .unwrap_err()
                .status,
            400
        );
        let nan = Size {
            upscale: true,
            kind: SizeKind::Percent(f64::NAN),
        };
        assert_eq!(
            output_size(Version::V3, &nan, (10, 10), &LIMITS, &effective(&LIMITS))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn fit_never_breaks_a_limit() {
        let limits = EffectiveLimits {
            max_width: 4999,
            max_height: 3001,
            max_area: 7_777_777,
        };
        for region in [
            (1, 1),
            (3, 7),
            (1000, 999),
            (65_535, 3),
            (3, 65_535),
            (40_000, 30_001),
            (u32::MAX, u32::MAX),
        ] {
            for upscale in [false, true] {
                let (width, height) = fit_within_limits(region, &limits, upscale);
                assert!(
                    limits.allows(width, height),
                    "{region:?} → {width}x{height}"
                );
                assert!(width >= 1 && height >= 1);
                if !upscale {
                    assert!(width <= u64::from(region.0) && height <= u64::from(region.1));
                }
            }
        }
    }
}

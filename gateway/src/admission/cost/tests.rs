//! The cost model: what a request decodes and writes, and the lane that puts it in.

use iiif::{Capabilities, ImageFacts, Limits, Route, Version};
use proptest::prelude::*;

use super::*;

/// The 100 Mpx benchmark image of `make-samples --bench`, as vips pyramids it.
fn large_photo() -> ImageFacts {
    ImageFacts::vips_pyramid(12288, 8192)
}

/// The cost of `path` (`region/size/rotation/quality.format`) on `facts` with 256-px tiles.
fn cost(path: &str, facts: &ImageFacts) -> Cost {
    let Route::Image { request, .. } =
        iiif::parse_route(Version::V3, &format!("id/{path}")).expect("a valid request")
    else {
        panic!("{path} is not an image request");
    };
    let plan = iiif::plan(
        Version::V3,
        &request,
        facts,
        &Limits::default(),
        &Capabilities::default(),
    )
    .expect("a plannable request");
    Cost::of_image(&plan, facts, DEFAULT_TILE)
}

/// The default thresholds.
fn thresholds() -> CostThresholds {
    CostThresholds::default()
}

// === cost ===

#[test]
fn an_aligned_tile_decodes_one_tile() {
    let tile = cost("0,0,256,256/256,256/0/default.jpg", &large_photo());
    assert_eq!(
        tile,
        Cost {
            decoded_pixels: 256 * 256,
            output_pixels: 256 * 256
        }
    );
    assert_eq!(thresholds().lane(&tile), Lane::Small);
}

#[test]
fn an_unaligned_tile_decodes_the_four_it_touches() {
    let tile = cost("100,100,256,256/256,256/0/default.jpg", &large_photo());
    assert_eq!(tile.decoded_pixels, 4 * 256 * 256);
}

#[test]
fn a_zoomed_out_tile_reads_a_smaller_level() {
    // 1024×1024 of the full image at 256 px: iipsrv reads level 2, where it is one tile.
    let tile = cost("1024,1024,1024,1024/256,256/0/default.jpg", &large_photo());
    assert_eq!(tile.decoded_pixels, 256 * 256);
}

#[test]
fn a_thumbnail_of_a_huge_image_reads_its_smallest_level() {
    // The 12288×8192 pyramid ends in a 192×128 level: one tile.
    let thumb = cost("full/!128,128/0/default.jpg", &large_photo());
    assert_eq!(thumb.decoded_pixels, 256 * 256);
    assert_eq!(thumb.output_pixels, 128 * 85);
    assert_eq!(thresholds().lane(&thumb), Lane::Small);
}

#[test]
fn a_1024_render_of_a_huge_image_is_small() {
    // Level 3 (1536×1024): 6 × 4 tiles.
    let render = cost("full/1024,/0/default.jpg", &large_photo());
    assert_eq!(render.decoded_pixels, 24 * 256 * 256);
    assert_eq!(render.output_pixels, 1024 * 683);
    assert_eq!(thresholds().lane(&render), Lane::Small);
}

#[test]
fn a_full_render_of_a_huge_image_is_large() {
    // `max` is 5000×3333 (MAX_CVT); iipsrv reads level 1 (6144×4096), all 24 × 16 tiles.
    let full = cost("full/max/0/default.jpg", &large_photo());
    assert_eq!(full.output_pixels, 5000 * 3333);
    assert_eq!(full.decoded_pixels, 24 * 16 * 256 * 256);
    assert_eq!(thresholds().lane(&full), Lane::Large);
    // A 3000-px render reads level 2 (3072×2048), all 12 × 8 tiles: large by both measures.
    let render = cost("full/3000,/0/default.jpg", &large_photo());
    assert_eq!(render.decoded_pixels, 12 * 8 * 256 * 256);
    assert_eq!(thresholds().lane(&render), Lane::Large);
}

#[test]
fn a_large_output_from_a_small_source_is_large() {
    // 1000×1000 upscaled to 3000×3000: little to decode, much to write.
    let facts = ImageFacts::vips_pyramid(1000, 1000);
    let upscaled = cost("full/^3000,/0/default.jpg", &facts);
    assert_eq!(upscaled.decoded_pixels, 16 * 256 * 256);
    assert_eq!(thresholds().lane(&upscaled), Lane::Large);
}

#[test]
fn info_is_small() {
    assert_eq!(thresholds().lane(&Cost::INFO), Lane::Small);
}

#[test]
fn thresholds_are_exclusive() {
    let config = thresholds();
    let at = Cost {
        decoded_pixels: config.large_decoded_pixels,
        output_pixels: config.large_output_pixels,
    };
    assert_eq!(config.lane(&at), Lane::Small);
    let over_decoded = Cost {
        decoded_pixels: at.decoded_pixels + 1,
        ..at
    };
    let over_output = Cost {
        output_pixels: at.output_pixels + 1,
        ..at
    };
    assert_eq!(config.lane(&over_decoded), Lane::Large);
    assert_eq!(config.lane(&over_output), Lane::Large);
}

#[test]
fn tile_size_comes_from_iipsrv_info() {
    let info = iiif::parse_backend_info(
        br#"{"width": 1000, "height": 750, "tiles": [{"width": 512, "scaleFactors": [1, 2]}]}"#,
    )
    .unwrap();
    assert_eq!(tile_size(&info), (512, 512));
    let bare = iiif::parse_backend_info(br#"{"width": 10, "height": 10}"#).unwrap();
    assert_eq!(tile_size(&bare), DEFAULT_TILE);
}

/// `tiles_spanned` against counting tiles one level pixel at a time.
#[test]
fn tile_spans_match_a_brute_force_count() {
    for dim in 1..=70u32 {
        for k in 0..=3 {
            for tile in [1, 3, 8, 16] {
                for start in 0..dim {
                    for len in 1..=dim - start {
                        let s = 1u32 << k;
                        let level = (dim >> k).max(1);
                        let first = (start / s).min(level - 1);
                        let end = (start + len).div_ceil(s).clamp(first + 1, level);
                        let tiles: std::collections::BTreeSet<u32> =
                            (first..end).map(|p| p / tile).collect();
                        assert_eq!(
                            tiles_spanned(dim, start, len, k, tile),
                            tiles.len() as u64,
                            "dim {dim} k {k} tile {tile} start {start} len {len}"
                        );
                    }
                }
            }
        }
    }
}

// === properties ===

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The cost covers the region at the level iipsrv reads, and a request that decodes and
    /// writes no more than a small one is small too.
    #[test]
    fn costs_cover_the_region_and_lanes_are_monotone(
        width in 1u32..40_000,
        height in 1u32..40_000,
        rx in 0.0f64..1.0, ry in 0.0f64..1.0, rw in 0.0f64..1.0, rh in 0.0f64..1.0,
        out_w in 1u32..5000, out_h in 1u32..5000,
        tile in prop_oneof![Just(256u32), 1u32..1024],
    ) {
        let facts = ImageFacts::vips_pyramid(width, height);
        let x = (rx * f64::from(width)) as u32;
        let y = (ry * f64::from(height)) as u32;
        let w = ((rw * f64::from(width - x)) as u32).max(1);
        let h = ((rh * f64::from(height - y)) as u32).max(1);
        let region = iiif::PixelRect { x, y, w, h };
        let output = (out_w, out_h);
        let k = iiif::backend_level(&facts, &region, output);
        let across = tiles_spanned(width, x, w, k, tile);
        let down = tiles_spanned(height, y, h, k, tile);
        let level_width = u64::from((width >> k).max(1));
        let level_height = u64::from((height >> k).max(1));
        // At least one tile each way, never more than the level has.
        prop_assert!(across >= 1 && across <= level_width.div_ceil(u64::from(tile)));
        prop_assert!(down >= 1 && down <= level_height.div_ceil(u64::from(tile)));
        // The tiles cover the region's pixels at that level.
        let scale = 1u64 << k;
        prop_assert!(across * u64::from(tile) >= (u64::from(w) / scale).min(level_width));
        prop_assert!(down * u64::from(tile) >= (u64::from(h) / scale).min(level_height));

        let config = thresholds();
        let cost = Cost {
            decoded_pixels: across * down * u64::from(tile) * u64::from(tile),
            output_pixels: u64::from(out_w) * u64::from(out_h),
        };
        let cheaper = Cost {
            decoded_pixels: cost.decoded_pixels / 2,
            output_pixels: cost.output_pixels / 2,
        };
        if config.lane(&cost) == Lane::Small {
            prop_assert_eq!(config.lane(&cheaper), Lane::Small);
        }
    }
}

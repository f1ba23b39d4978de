//! iipsrv 1.1's crash on regions at the bottom and right edges, and how plans avoid it.
//!
//! iipsrv 1.1 segfaults on some *in-bounds* requests: thin strips on the last rows or columns that are scaled
//! down (`0,999,100,1/50,1` and `999,0,1,100/1,50` on a 1000-px image, iiif-reference §3.8 item 1). This module
//! is a transcription of the geometry of iipsrv 1.1's `View.cc` that decides it, measured against the real
//! binary by the gateway's `crash_probe` investigation (`gateway/src/fcgi/crash_probe.rs`, `Model`): over 17,112
//! requests it predicted every crash with no mismatch, and all 518 crashing requests, shifted as below, succeeded
//! with exactly the requested size.
//!
//! # The rule
//!
//! For an in-bounds region `x,y,w,h` of a `W×H` image with `L` pyramid levels, asked for at an exact `out_w,out_h`:
//!
//! 1. Each axis picks a level: `target = floor(out / (side / dim))`; halve `d = floor(d / 2)` from `d = dim` while
//!    `d ≥ target`; `k_axis = clamp(halvings − 1, 0, L − 1)`.
//! 2. iipsrv reads the *lower-resolution* of the two: `k = max(k_x, k_y)`, scale factor `s = 2^k`.
//! 3. The region starts at `top = round(H · (y / H) / s)` and `left = round(W · (x / W) / s)` in that level.
//! 4. It crashes iff `top ≥ H >> k` or `left ≥ W >> k`: the region starts past the level's last row (column)
//!    and iipsrv reads outside its buffer.
//!
//! Everything is computed in `f32`, as iipsrv does: whether `round` lands on the edge depends on single-precision
//! rounding, so the transcription must not be "improved" to `f64`. The region's size only matters through the
//! level choice: a crash needs a region that starts within about `s/2` rows (columns) of the far edge, so a thin
//! strip or a small corner scaled down.
//!
//! # The workaround
//!
//! [`shift_off_the_edge`] keeps the region's size and the exact output and moves only its origin up (left), to
//! the largest start for which the rule says no crash. The level stays the same, so iipsrv returns exactly the
//! requested size and the gateway has nothing to crop, decode or re-encode. The shifted region starts on the
//! level's last row (column), which is the data iipsrv would have read had it clamped the offset itself. The move
//! is less than one and a half pixels of that level: at most half a level pixel (`s/2` full-resolution rows) when
//! `s` divides the image, plus the `H mod s` last rows that the floor-rounded level does not keep otherwise.
//!
//! A region at `0,0` never crashes (step 4 compares `0` with a level of at least one pixel), so neither does the
//! whole image, which plans send as `full` whatever its size. Only iipsrv's exact `w,h` form is covered: the
//! measured rule is for it, and it is the only form plans send.

use crate::geometry::PixelRect;
use crate::limits::ImageFacts;

/// The `k` of the pyramid level (scale factor `2^k`) iipsrv 1.1 reads for an in-bounds `region` asked for at
/// exactly `output` (`View::calculateResolution` and `View::getResolution`).
pub fn backend_level(facts: &ImageFacts, region: &PixelRect, output: (u32, u32)) -> u32 {
    let levels = level_count(facts);
    let horizontal = axis_level(facts.width, region.w, output.0, levels);
    let vertical = axis_level(facts.height, region.h, output.1, levels);
    // iipsrv turns each axis's level into a resolution index and keeps the minimum: the lower resolution.
    horizontal.max(vertical)
}

/// True when iipsrv 1.1 segfaults on this in-bounds `region` asked for at exactly `output`.
pub fn crashes_iipsrv(facts: &ImageFacts, region: &PixelRect, output: (u32, u32)) -> bool {
    let k = backend_level(facts, region, output);
    crashes_at(facts.width, region.x, k) || crashes_at(facts.height, region.y, k)
}

/// The region to send iipsrv 1.1 for an in-bounds `region` asked for at exactly `output`: the region itself when
/// it is safe, otherwise the same size moved up and/or left just far enough that iipsrv survives it.
///
/// Each axis is moved only if that axis crashes, to the largest start at or before the requested one that does
/// not. This is the measured reshape of `crash_probe` (`Model::reshape`), which steps back one pixel at a time;
/// because a start's position in the level never decreases as the start grows, a bisection finds the same start
/// without a walk as long as the scale factor.
pub fn shift_off_the_edge(facts: &ImageFacts, region: &PixelRect, output: (u32, u32)) -> PixelRect {
    let k = backend_level(facts, region, output);
    PixelRect {
        x: last_safe_start(facts.width, region.x, k),
        y: last_safe_start(facts.height, region.y, k),
        ..*region
    }
}

/// `L`, the number of pyramid levels iipsrv reports (`scaleFactors` in its info.json); an image without a
/// pyramid has the one level of its full resolution.
fn level_count(facts: &ImageFacts) -> u32 {
    u32::try_from(facts.scale_factors.len())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The level one axis asks for: one halving fewer than it takes to fall below the pixels the output needs.
fn axis_level(dim: u32, side: u32, out: u32, levels: u32) -> u32 {
    let fraction = side as f32 / dim as f32;
    let target = (out as f32 / fraction).floor() as u32;
    let (mut d, mut halvings) = (dim, 0u32);
    while d >= target {
        d /= 2;
        halvings += 1;
        // A target of zero (impossible for a non-empty output) must not loop forever.
        if d == 0 {
            break;
        }
    }
    // At most 32 halvings fit a u32, so `k` stays below 32 and `1 << k` cannot overflow.
    halvings.saturating_sub(1).min(levels - 1)
}

/// Where a region starting at `start` starts inside level `k` (`View::getViewLeft` / `View::getViewTop`): the
/// full-resolution offset goes through iipsrv's fraction of the image and back, in `f32`.
fn start_in_level(dim: u32, start: u32, k: u32) -> u32 {
    let scale = (1u32 << k) as f32;
    (dim as f32 * (start as f32 / dim as f32) / scale).round() as u32
}

/// True when a region starting at `start` starts past the last row (column) of level `k`.
///
/// The level is `dim >> k` pixels, as in a pyramid halved with floor the way `vips` builds them (the measured
/// images). Where that is zero the real level still has a pixel (no file stores an empty level), so it counts as
/// one; the measured images never get there, and otherwise `0,0` would "crash" and no shift could help.
fn crashes_at(dim: u32, start: u32, k: u32) -> bool {
    start_in_level(dim, start, k) >= (dim >> k).max(1)
}

/// The largest start at or before `start` that does not crash at level `k`.
fn last_safe_start(dim: u32, start: u32, k: u32) -> u32 {
    if !crashes_at(dim, start, k) {
        return start;
    }
    // `start_in_level` never decreases as the start grows, so the crashing starts are all those from some point
    // on; bisect for it. Start 0 maps to 0, which never crashes.
    let (mut safe, mut crashing) = (0, start);
    while crashing - safe > 1 {
        let middle = safe + (crashing - safe) / 2;
        if crashes_at(dim, middle, k) {
            crashing = middle;
        } else {
            safe = middle;
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with the levels `vips tiffsave --pyramid` gives it, as in the measurement: halve (floor) until it
    /// fits one 256-px tile.
    fn vips(width: u32, height: u32) -> ImageFacts {
        ImageFacts::vips_pyramid(width, height)
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    /// Asserts that `region` at `output` crashes, shifts to `expected`, and that the shifted request is safe.
    fn assert_shifted(
        facts: &ImageFacts,
        region: PixelRect,
        output: (u32, u32),
        expected: PixelRect,
    ) {
        assert!(
            crashes_iipsrv(facts, &region, output),
            "{region} at {output:?}"
        );
        let shifted = shift_off_the_edge(facts, &region, output);
        assert_eq!(shifted, expected, "{region} at {output:?}");
        assert_eq!(shifted.size(), region.size());
        assert!(shifted.fits_in(facts.width, facts.height));
        assert!(
            !crashes_iipsrv(facts, &shifted, output),
            "{shifted} at {output:?}"
        );
        assert_eq!(
            backend_level(facts, &shifted, output),
            backend_level(facts, &region, output),
            "the level changed"
        );
    }

    fn assert_safe(facts: &ImageFacts, region: PixelRect, output: (u32, u32)) {
        assert!(
            !crashes_iipsrv(facts, &region, output),
            "{region} at {output:?}"
        );
        assert_eq!(shift_off_the_edge(facts, &region, output), region);
    }

    #[test]
    fn vips_levels_match_iipsrv() {
        assert_eq!(vips(1000, 1000).scale_factors, [1, 2, 4]);
        assert_eq!(vips(1000, 872).scale_factors.len(), 3);
        assert_eq!(vips(2736, 1824).scale_factors.len(), 5);
        assert_eq!(vips(999, 777).scale_factors.len(), 3);
    }

    #[test]
    fn the_documented_crashers_are_shifted_by_a_pixel() {
        let square = vips(1000, 1000);
        assert_eq!(backend_level(&square, &rect(0, 999, 100, 1), (50, 1)), 1);
        assert_shifted(&square, rect(0, 999, 100, 1), (50, 1), rect(0, 998, 100, 1));
        assert_shifted(&square, rect(999, 0, 1, 100), (1, 50), rect(998, 0, 1, 100));
        // The shifted requests themselves, as the probe sent them.
        assert_safe(&square, rect(0, 998, 100, 1), (50, 1));
        assert_safe(&square, rect(998, 0, 1, 100), (1, 50));
    }

    #[test]
    fn measured_crashers_on_other_images() {
        // 1000×750: the whole last row, halved.
        let wide = vips(1000, 750);
        assert_shifted(
            &wide,
            rect(0, 749, 1000, 1),
            (500, 1),
            rect(0, 748, 1000, 1),
        );
        // 2736×1824: the width picks level 4 (s = 16), whose last row is 113; 1816 / 16 = 113.5 rounds onto the
        // edge at 114.
        let photo = vips(2736, 1824);
        let region = rect(0, 1816, 100, 8);
        assert_eq!(backend_level(&photo, &region, (6, 1)), 4);
        assert_shifted(&photo, region, (6, 1), rect(0, 1815, 100, 8));
    }

    #[test]
    fn crashers_on_an_odd_height() {
        // 1000×872 (hubble): the last row halved reaches level 1, whose last row is 435.
        let hubble = vips(1000, 872);
        assert_shifted(&hubble, rect(0, 871, 100, 1), (50, 1), rect(0, 870, 100, 1));
        // Two rows scaled by four reach level 2 (s = 4): 870 / 4 = 217.5 rounds onto the edge at 218.
        let region = rect(0, 870, 400, 2);
        assert_eq!(backend_level(&hubble, &region, (100, 1)), 2);
        assert_shifted(&hubble, region, (100, 1), rect(0, 869, 400, 2));
        // The same on the right edge.
        assert_shifted(
            &hubble,
            rect(998, 0, 2, 400),
            (1, 100),
            rect(997, 0, 2, 400),
        );
        // 999×777: the level drops the last full-resolution row, so the shift is larger than half a level pixel.
        let odd = vips(999, 777);
        assert_shifted(&odd, rect(0, 776, 100, 1), (50, 1), rect(0, 774, 100, 1));
    }

    #[test]
    fn measured_safe_requests_are_left_alone() {
        let square = vips(1000, 1000);
        // Not scaled: level 0, where every in-bounds start is inside the level.
        assert_safe(&square, rect(0, 999, 100, 1), (100, 1));
        assert_safe(&square, rect(0, 998, 100, 1), (50, 1));
        // Ordinary tiles and thumbnails.
        assert_safe(&square, rect(768, 768, 232, 232), (116, 116));
        assert_safe(&square, rect(0, 0, 1000, 1000), (100, 100));
        // Upscaling a corner reads level 0.
        let wide = vips(1000, 750);
        assert_safe(&wide, rect(999, 749, 1, 1), (100, 100));
        assert_safe(&wide, rect(999, 749, 1, 1), (1, 1));
    }

    #[test]
    fn the_whole_image_never_crashes() {
        // Sent as `full`: origin 0,0, at whichever level the size picks, down to a single pixel.
        for facts in [
            vips(1000, 1000),
            vips(2736, 1824),
            vips(999, 777),
            vips(3000, 1),
        ] {
            let whole = PixelRect::whole(facts.width, facts.height);
            for output in [(1, 1), (2, 1), (1, 2), (7, 5), (facts.width, facts.height)] {
                assert_safe(&facts, whole, output);
            }
        }
    }

    #[test]
    fn levels_are_clamped_to_the_pyramid() {
        let square = vips(1000, 1000);
        // A one-pixel thumbnail would want level 9; the pyramid stops at level 2.
        assert_eq!(backend_level(&square, &rect(0, 0, 1000, 1000), (1, 1)), 2);
        let flat = ImageFacts {
            scale_factors: vec![],
            ..square.clone()
        };
        assert_eq!(backend_level(&flat, &rect(0, 999, 100, 1), (50, 1)), 0);
        assert_safe(&flat, rect(0, 999, 100, 1), (50, 1));
    }

    #[test]
    fn levels_without_rows_count_as_one_row() {
        // 3000×5 gets five levels; from level 3 on, `5 >> k` is zero but the stored level has a row.
        let strip = vips(3000, 5);
        assert_eq!(strip.scale_factors.len(), 5);
        let region = rect(0, 4, 3000, 1);
        assert_eq!(backend_level(&strip, &region, (300, 1)), 3);
        // 4 / 8 rounds to row 1 of a one-row level; row 3 maps to row 0.
        assert_shifted(&strip, region, (300, 1), rect(0, 3, 3000, 1));
        assert_safe(&strip, rect(0, 0, 3000, 5), (300, 1));
        assert_safe(&strip, rect(0, 3, 3000, 1), (300, 1));
    }

    /// The bisection gives exactly the start `crash_probe`'s `Model::reshape` finds by stepping back one pixel
    /// at a time.
    #[test]
    fn the_shift_matches_the_measured_walk() {
        let walk = |dim: u32, start: u32, k: u32| {
            let mut start = start;
            while start > 0 && start_in_level(dim, start, k) >= dim >> k {
                start -= 1;
            }
            start
        };
        for dim in (1..=1100u32).chain([1824, 2736, 99_999, 16_777_217]) {
            for k in 0..=5 {
                if dim >> k == 0 {
                    continue;
                }
                for start in dim.saturating_sub(80)..dim {
                    assert_eq!(
                        last_safe_start(dim, start, k),
                        walk(dim, start, k),
                        "{dim} {start} {k}"
                    );
                }
            }
        }
    }
}

//! Viewer-style tile geometry: the region and size a deep-zoom viewer (OpenSeadragon's IIIF tile source) asks
//! for, computed as the IIIF Image API's tile algorithm describes it.
//!
//! For a scale factor `s` and tiles of `t` pixels, the tile in column `c` and row `r` covers the source region
//! `x = c·t·s`, `y = r·t·s`, `w = min(t·s, width − x)`, `h = min(t·s, height − y)` and is delivered at
//! `⌈w/s⌉ × ⌈h/s⌉` pixels. The scale factors are those iipsrv advertises for a vips pyramid that stops at one
//! tile: 1, 2, 4, … up to the first level at which the whole image fits in one tile. A tile that covers the
//! whole image is requested with the region `full`, as OpenSeadragon does.

use rand::Rng;

/// The tile size of the pyramids (vips `--tile-width 256 --tile-height 256`) and of the viewer's requests.
pub const TILE_SIZE: u32 = 256;

/// A source rectangle in full-resolution pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// One tile request: the source region and the exact output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The scale factor of the level the tile belongs to.
    pub scale: u32,
    /// The source region.
    pub region: Rect,
    /// Output width: `⌈region.width / scale⌉`.
    pub width: u32,
    /// Output height: `⌈region.height / scale⌉`.
    pub height: u32,
    /// True when the region is the whole image (requested as `full`).
    pub is_whole_image: bool,
}

/// The scale factors of an image's pyramid, smallest first: 1, 2, 4, … until the image fits in one tile.
pub fn scale_factors(width: u32, height: u32) -> Vec<u32> {
    let mut scales = vec![1u32];
    loop {
        let scale = *scales.last().expect("starts with one element");
        let fits = width.div_ceil(scale) <= TILE_SIZE && height.div_ceil(scale) <= TILE_SIZE;
        // The second condition only matters for absurd sizes: it keeps the scale a u32.
        if fits || scale > u32::MAX / 2 {
            return scales;
        }
        scales.push(scale * 2);
    }
}

/// The number of tile columns and rows at `scale`.
pub fn grid(width: u32, height: u32, scale: u32) -> (u32, u32) {
    let span = span(scale);
    (
        (u64::from(width).div_ceil(span)) as u32,
        (u64::from(height).div_ceil(span)) as u32,
    )
}

/// The source pixels one tile covers at `scale` (a u64: `256 · 2^31` does not fit a u32).
fn span(scale: u32) -> u64 {
    u64::from(TILE_SIZE) * u64::from(scale)
}

/// The tile at `column`, `row` of the level with `scale`.
///
/// # Panics
///
/// When the column or row is outside the grid of that level, or `scale` is zero.
pub fn tile_at(width: u32, height: u32, scale: u32, column: u32, row: u32) -> Tile {
    assert!(scale > 0, "scale factor must be positive");
    let (columns, rows) = grid(width, height, scale);
    assert!(
        column < columns && row < rows,
        "tile {column},{row} is outside the {columns}x{rows} grid at scale {scale}"
    );
    let span = span(scale);
    // Both products are below width/height (checked above), so they fit a u32.
    let x = (u64::from(column) * span) as u32;
    let y = (u64::from(row) * span) as u32;
    let region = Rect {
        x,
        y,
        width: span.min(u64::from(width - x)) as u32,
        height: span.min(u64::from(height - y)) as u32,
    };
    Tile {
        scale,
        region,
        width: region.width.div_ceil(scale),
        height: region.height.div_ceil(scale),
        is_whole_image: region.width == width && region.height == height,
    }
}

/// A random tile as a viewer requests them: a level chosen uniformly among the pyramid's levels, then a tile
/// chosen uniformly in that level.
pub fn random_tile<R: Rng>(rng: &mut R, width: u32, height: u32) -> Tile {
    let scales = scale_factors(width, height);
    let scale = scales[rng.gen_range(0..scales.len())];
    let (columns, rows) = grid(width, height, scale);
    tile_at(
        width,
        height,
        scale,
        rng.gen_range(0..columns),
        rng.gen_range(0..rows),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn scale_factors_of_the_baseline_images() {
        // iipsrv-baseline.md §1: large.tif (12288x8192) has 7 levels, scale factors 1-64.
        assert_eq!(scale_factors(12288, 8192), vec![1, 2, 4, 8, 16, 32, 64]);
        // photo.tif (512x512): 2 levels. hubble (1000x872): 3 levels.
        assert_eq!(scale_factors(512, 512), vec![1, 2]);
        assert_eq!(scale_factors(1000, 872), vec![1, 2, 4]);
        assert_eq!(scale_factors(256, 256), vec![1]);
        assert_eq!(scale_factors(257, 1), vec![1, 2]);
    }

    #[test]
    fn edge_tiles_are_cropped_and_rounded_up() {
        // hubble, 1000x872, scale 2: a tile spans 512 source pixels.
        let tile = tile_at(1000, 872, 2, 1, 1);
        assert_eq!(
            tile.region,
            Rect {
                x: 512,
                y: 512,
                width: 488,
                height: 360
            }
        );
        assert_eq!((tile.width, tile.height), (244, 180));
        assert!(!tile.is_whole_image);
        // An odd remainder rounds up: 1001 - 512 = 489 source pixels at scale 2 -> 245.
        assert_eq!(tile_at(1001, 777, 2, 1, 0).width, 245);
    }

    #[test]
    fn the_top_level_tile_is_the_whole_image() {
        let tile = tile_at(1000, 872, 4, 0, 0);
        assert!(tile.is_whole_image);
        assert_eq!((tile.width, tile.height), (250, 218));
    }

    #[test]
    #[should_panic(expected = "outside the")]
    fn refuses_a_tile_outside_the_grid() {
        tile_at(1000, 872, 4, 1, 0);
    }

    #[test]
    fn every_level_is_drawn() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            seen.insert(random_tile(&mut rng, 12288, 8192).scale);
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            scale_factors(12288, 8192)
        );
    }

    proptest! {
        #[test]
        fn random_tiles_stay_inside_the_image_and_have_exact_sizes(
            width in 1u32..200_000,
            height in 1u32..200_000,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let tile = random_tile(&mut rng, width, height);
            let region = tile.region;
            prop_assert!(region.width >= 1 && region.height >= 1);
            prop_assert!(u64::from(region.x) + u64::from(region.width) <= u64::from(width));
            prop_assert!(u64::from(region.y) + u64::from(region.height) <= u64::from(height));
            prop_assert!(tile.width >= 1 && tile.width <= TILE_SIZE);
            prop_assert!(tile.height >= 1 && tile.height <= TILE_SIZE);
            prop_assert_eq!(tile.width, region.width.div_ceil(tile.scale));
            prop_assert_eq!(tile.height, region.height.div_ceil(tile.scale));
            // Regions start on the level's grid.
            prop_assert_eq!(u64::from(region.x) % (u64::from(TILE_SIZE) * u64::from(tile.scale)), 0);
            prop_assert_eq!(u64::from(region.y) % (u64::from(TILE_SIZE) * u64::from(tile.scale)), 0);
            prop_assert_eq!(tile.is_whole_image, region.width == width && region.height == height);
        }

        #[test]
        fn the_tiles_of_a_level_cover_the_image_exactly_once(
            width in 1u32..5000,
            height in 1u32..5000,
            level in 0usize..8,
        ) {
            let scales = scale_factors(width, height);
            let scale = scales[level % scales.len()];
            let (columns, rows) = grid(width, height, scale);
            let mut covered: u64 = 0;
            for column in 0..columns {
                for row in 0..rows {
                    let region = tile_at(width, height, scale, column, row).region;
                    covered += u64::from(region.width) * u64::from(region.height);
                }
            }
            prop_assert_eq!(covered, u64::from(width) * u64::from(height));
        }

        #[test]
        fn the_last_level_is_a_single_tile(width in 1u32..1_000_000, height in 1u32..1_000_000) {
            let scales = scale_factors(width, height);
            let last = *scales.last().unwrap();
            prop_assert_eq!(grid(width, height, last), (1, 1));
            if scales.len() > 1 {
                prop_assert_ne!(grid(width, height, scales[scales.len() - 2]), (1, 1));
            }
        }
    }
}

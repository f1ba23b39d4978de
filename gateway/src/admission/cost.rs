//! The cost model of admission control: what a request will cost iipsrv, estimated from its
//! IIIF plan before it runs, and which lane that cost puts it in.
//!
//! This is the half of admission that knows IIIF (it reads [`Plan`] and [`ImageFacts`]). The
//! FastCGI pool never sees it: the gateway turns a cost into a [`Lane`] here and hands the pool
//! only the lane (see [`super::policy`]).
//!
//! **Invariant:** pure: no clock, no I/O.

use iiif::{BackendInfo, ImageFacts, Plan};

use super::policy::{key, Lane};

/// The tile size assumed when iipsrv's info.json lists none (iipsrv's and vips' default).
pub const DEFAULT_TILE: (u32, u32) = (256, 256);

// === cost ===

/// What a request costs iipsrv, estimated before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Pixels iipsrv decodes: every stored tile of the pyramid level it reads that the region
    /// touches (iipsrv decodes whole tiles).
    pub decoded_pixels: u64,
    /// Pixels of the image iipsrv resamples into and encodes.
    pub output_pixels: u64,
}

impl Cost {
    /// An info.json request: iipsrv opens the file and reads its header, no pixels.
    pub const INFO: Cost = Cost {
        decoded_pixels: 0,
        output_pixels: 0,
    };

    /// The cost of a planned image request: the tiles of the level iipsrv reads
    /// ([`iiif::backend_level`]) under the backend region, and the output size.
    ///
    /// `tile` is the stored tile size (see [`tile_size`]); a zero side counts as one pixel.
    pub fn of_image(plan: &Plan, facts: &ImageFacts, tile: (u32, u32)) -> Cost {
        let region = plan
            .backend
            .region
            .unwrap_or_else(|| iiif::PixelRect::whole(facts.width, facts.height));
        let output = plan.backend.size;
        let k = iiif::backend_level(facts, &region, output);
        let tiles_across = tiles_spanned(facts.width, region.x, region.w, k, tile.0);
        let tiles_down = tiles_spanned(facts.height, region.y, region.h, k, tile.1);
        let tile_area = u64::from(tile.0.max(1)) * u64::from(tile.1.max(1));
        Cost {
            decoded_pixels: tiles_across
                .saturating_mul(tiles_down)
                .saturating_mul(tile_area),
            output_pixels: u64::from(output.0) * u64::from(output.1),
        }
    }
}

/// The stored tile size of an image, from iipsrv's info.json; [`DEFAULT_TILE`] when it lists
/// none.
pub fn tile_size(info: &BackendInfo) -> (u32, u32) {
    info.tiles
        .first()
        .map_or(DEFAULT_TILE, |t| (t.width, t.height.unwrap_or(t.width)))
}

/// How many tiles of level `k` (the full-resolution axis `dim` shifted right by `k`, as vips
/// halves its pyramids) the full-resolution span `start..start + len` touches.
fn tiles_spanned(dim: u32, start: u32, len: u32, k: u32, tile: u32) -> u64 {
    let scale = 1u64 << k.min(32);
    let level_dim = (u64::from(dim) >> k.min(32)).max(1);
    let tile = u64::from(tile.max(1));
    let first = (u64::from(start) / scale).min(level_dim - 1);
    let end = (u64::from(start) + u64::from(len))
        .div_ceil(scale)
        .clamp(first + 1, level_dim);
    end.div_ceil(tile) - first / tile
}

/// Where the large lane starts: the resolved thresholds of the `gateway.admission` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostThresholds {
    /// A request decoding more pixels than this is large.
    pub large_decoded_pixels: u64,
    /// A request writing more pixels than this is large.
    pub large_output_pixels: u64,
}

mod defaults {
    pub(super) const LARGE_DECODED_PIXELS: u64 = 2048 * 2048;
    pub(super) const LARGE_OUTPUT_PIXELS: u64 = 1024 * 1024;
}

impl Default for CostThresholds {
    fn default() -> Self {
        CostThresholds {
            large_decoded_pixels: defaults::LARGE_DECODED_PIXELS,
            large_output_pixels: defaults::LARGE_OUTPUT_PIXELS,
        }
    }
}

impl CostThresholds {
    /// The lane of a request of this cost.
    pub fn lane(&self, cost: &Cost) -> Lane {
        if cost.decoded_pixels > self.large_decoded_pixels
            || cost.output_pixels > self.large_output_pixels
        {
            Lane::Large
        } else {
            Lane::Small
        }
    }

    /// The thresholds from the keys `large_decoded_pixels` and `large_output_pixels` as
    /// written (see [`super::RawAdmission`]), with the defaults for absent ones. Each problem is
    /// added to `problems`, named by its key.
    pub(super) fn resolve(
        large_decoded_pixels: Option<u64>,
        large_output_pixels: Option<u64>,
        problems: &mut Vec<String>,
    ) -> CostThresholds {
        let mut at_least_one = |name: &str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if value == 0 {
                problems.push(format!("{} must be at least 1", key(name)));
            }
            value
        };
        CostThresholds {
            large_decoded_pixels: at_least_one(
                "large_decoded_pixels",
                large_decoded_pixels,
                defaults::LARGE_DECODED_PIXELS,
            ),
            large_output_pixels: at_least_one(
                "large_output_pixels",
                large_output_pixels,
                defaults::LARGE_OUTPUT_PIXELS,
            ),
        }
    }
}

#[cfg(test)]
mod tests;

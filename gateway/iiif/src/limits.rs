//! Size limits and the facts about an image that planning needs.

/// What a 3.0 `!w,h` without `^` does when the box is larger than the region in both dimensions.
///
/// The 3.0 spec says the result is the region's size ("not larger than the extracted region", 200), but the
/// validator's level-1 `size_noup` test requires an error for `!2000,3000` on a 1000×1000 image, and Cantaloupe
/// and iipsrv 1.2 answer 400 too (iiif-reference §4.3). The default follows the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfinedUpscale {
    /// Answer 400, as the validator expects.
    #[default]
    Reject,
    /// Answer the region's own size, as the spec text says.
    Allow,
}

/// The deployment's size policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The widest output the gateway produces (before rotation).
    pub max_width: u32,
    /// The tallest output the gateway produces (before rotation).
    pub max_height: u32,
    /// The largest output area in pixels.
    pub max_area: u64,
    /// Whether any output may be larger than its region (2.1 implicit upscaling, 3.0 `^`).
    pub allow_upscaling: bool,
    /// See [`ConfinedUpscale`].
    pub confined_upscale: ConfinedUpscale,
}

impl Default for Limits {
    /// iipsrv's own default `MAX_CVT` of 5000 in each direction, the area that implies, upscaling allowed (as in
    /// iipsrv) and the validator-compatible `!w,h` rule.
    fn default() -> Self {
        Limits {
            max_width: 5000,
            max_height: 5000,
            max_area: 5000 * 5000,
            allow_upscaling: true,
            confined_upscale: ConfinedUpscale::Reject,
        }
    }
}

impl Limits {
    /// The limits that actually apply to one image: the configured ones, tightened to what the backend can
    /// produce without distorting (iipsrv clamps anything above `MAX_CVT` into a wrong aspect ratio).
    pub fn effective(&self, facts: &ImageFacts) -> EffectiveLimits {
        let max_width = self.max_width.min(facts.backend_max_width).max(1);
        let max_height = self.max_height.min(facts.backend_max_height).max(1);
        let max_area = self
            .max_area
            .min(u64::from(max_width) * u64::from(max_height))
            .max(1);
        EffectiveLimits {
            max_width,
            max_height,
            max_area,
        }
    }
}

/// The size limits that apply to one image, as advertised in its info.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// `maxWidth`.
    pub max_width: u32,
    /// `maxHeight`.
    pub max_height: u32,
    /// `maxArea`, never more than `max_width × max_height`.
    pub max_area: u64,
}

impl EffectiveLimits {
    /// True when a `width×height` output respects every limit.
    pub fn allows(&self, width: u64, height: u64) -> bool {
        width <= u64::from(self.max_width)
            && height <= u64::from(self.max_height)
            && width.saturating_mul(height) <= self.max_area
    }
}

/// What the planner needs to know about one image, taken from iipsrv's info.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// Full-resolution width.
    pub width: u32,
    /// Full-resolution height.
    pub height: u32,
    /// The pyramid's scale factors (1, 2, 4, …).
    pub scale_factors: Vec<u32>,
    /// iipsrv's `MAX_CVT` for widths.
    pub backend_max_width: u32,
    /// iipsrv's `MAX_CVT` for heights.
    pub backend_max_height: u32,
}

impl ImageFacts {
    /// The facts of a pyramid as `vips tiffsave --pyramid --tile-width 256` writes it (default
    /// `--depth onetile`: halve with floor until the image fits one tile, one scale factor 1, 2,
    /// 4, … per level), behind an iipsrv with its default `MAX_CVT` of 5000. Tests and the crash
    /// probe use it to describe the images iipsrv was measured with.
    pub fn vips_pyramid(width: u32, height: u32) -> ImageFacts {
        let (mut w, mut h, mut scale_factors) = (width, height, vec![1]);
        while w.max(h) > 256 {
            w /= 2;
            h /= 2;
            scale_factors.push(scale_factors.last().expect("starts with 1") * 2);
        }
        ImageFacts {
            width,
            height,
            scale_factors,
            backend_max_width: 5000,
            backend_max_height: 5000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_limits_take_the_tighter_value() {
        let image = ImageFacts {
            width: 100,
            height: 100,
            scale_factors: vec![1],
            backend_max_width: 4000,
            backend_max_height: 5000,
        };
        let limits = Limits {
            max_width: 6000,
            max_height: 3000,
            max_area: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(
            limits.effective(&image),
            EffectiveLimits {
                max_width: 4000,
                max_height: 3000,
                max_area: 12_000_000
            }
        );
        let limits = Limits {
            max_area: 1_000_000,
            ..Limits::default()
        };
        assert_eq!(limits.effective(&image).max_area, 1_000_000);
    }

    #[test]
    fn effective_limits_allow() {
        let limits = EffectiveLimits {
            max_width: 100,
            max_height: 50,
            max_area: 4000,
        };
        assert!(limits.allows(100, 40));
        assert!(!limits.allows(101, 1));
        assert!(!limits.allows(1, 51));
        assert!(!limits.allows(100, 41));
        assert!(!limits.allows(u64::MAX, u64::MAX));
    }
}

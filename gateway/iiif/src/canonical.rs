//! Canonical URI forms (iiif-reference §2.4), used for `Link: <…>;rel="canonical"` and as a stable description
//! of what a plan produces.
//!
//! | part | 2.1 | 3.0 |
//! |---|---|---|
//! | region | `full` for the whole image, else `x,y,w,h` | the same |
//! | size | `full` if unscaled; `w,` if the aspect ratio is kept; else `w,h` | `max` or `^max` when the output is what they give, else `w,h` (`^w,h` if upscaled) |
//! | rotation | optional `!`, an integer if whole, else the shortest decimal | the same |
//! | quality, format | as requested | the same |

use crate::limits::ImageFacts;
use crate::number::div_round;
use crate::plan::Plan;
use crate::version::Version;

/// The canonical `region/size/rotation/quality.format` of a plan in the given version's syntax.
///
/// Requesting the canonical path gives the same plan back (same region, output, rotation, quality and format).
pub fn canonical_path(version: Version, plan: &Plan, facts: &ImageFacts) -> String {
    let region = if plan.region.is_whole(facts.width, facts.height) {
        "full".to_string()
    } else {
        plan.region.to_string()
    };
    let size = match version {
        Version::V2 => canonical_size_v2(plan),
        Version::V3 => canonical_size_v3(plan),
    };
    format!(
        "{region}/{size}/{}/{}.{}",
        plan.rotation.normalized(),
        plan.quality,
        plan.format
    )
}

/// 2.1: `full` when unscaled, `w,` when the height is what `w,` would give, else `w,h`. (`max` is not canonical
/// in 2.1.1.)
fn canonical_size_v2(plan: &Plan) -> String {
    let (width, height) = plan.output;
    if plan.output == plan.region.size() {
        return "full".to_string();
    }
    let height_for_width = div_round(
        u64::from(width) * u64::from(plan.region.h),
        u64::from(plan.region.w),
    )
    .max(1);
    if u64::from(height) == height_for_width {
        format!("{width},")
    } else {
        format!("{width},{height}")
    }
}

/// 3.0: `max` when the output is the largest without upscaling, `^max` when it is the largest with upscaling,
/// else `w,h` with a `^` when either side is larger than the region.
fn canonical_size_v3(plan: &Plan) -> String {
    let (width, height) = plan.output;
    let upscaled = width > plan.region.w || height > plan.region.h;
    if !upscaled && plan.output == plan.max_size {
        "max".to_string()
    } else if upscaled && Some(plan.output) == plan.upscaled_max_size {
        "^max".to_string()
    } else if upscaled {
        format!("^{width},{height}")
    } else {
        format!("{width},{height}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Capabilities;
    use crate::format::Format;
    use crate::limits::Limits;
    use crate::plan::plan;
    use crate::request::ImageRequest;

    /// The validator's test image: 1000×1000.
    fn validator_image() -> ImageFacts {
        ImageFacts {
            width: 1000,
            height: 1000,
            scale_factors: vec![1, 2, 4],
            backend_max_width: 5000,
            backend_max_height: 5000,
        }
    }

    fn canonical(version: Version, path: &str, image: &ImageFacts) -> String {
        let caps = Capabilities {
            formats: Format::ALL.to_vec(),
            arbitrary_rotation: true,
        };
        let parts: Vec<&str> = path.split('/').collect();
        let request = ImageRequest::parse(version, parts[0], parts[1], parts[2], parts[3]).unwrap();
        let plan = plan(version, &request, image, &Limits::default(), &caps).unwrap();
        canonical_path(version, &plan, image)
    }

    fn v3(path: &str) -> String {
        canonical(Version::V3, path, &validator_image())
    }

    fn v2(path: &str) -> String {
        canonical(Version::V2, path, &validator_image())
    }

    #[test]
    fn v3_regions() {
        assert_eq!(v3("full/max/0/default.jpg"), "full/max/0/default.jpg");
        assert_eq!(v3("square/max/0/default.jpg"), "full/max/0/default.jpg");
        assert_eq!(
            v3("0,0,1000,1000/max/0/default.jpg"),
            "full/max/0/default.jpg"
        );
        assert_eq!(
            v3("pct:0,0,100,100/max/0/default.jpg"),
            "full/max/0/default.jpg"
        );
        assert_eq!(
            v3("pct:10,10,20,20/max/0/default.jpg"),
            "100,100,200,200/max/0/default.jpg"
        );
        assert_eq!(
            v3("900,900,500,500/max/0/default.jpg"),
            "900,900,100,100/max/0/default.jpg"
        );
        let landscape = ImageFacts {
            width: 1000,
            height: 750,
            ..validator_image()
        };
        assert_eq!(
            canonical(Version::V3, "square/max/0/default.jpg", &landscape),
            "125,0,750,750/max/0/default.jpg"
        );
    }

    #[test]
    fn v3_sizes() {
        assert_eq!(v3("full/1000,/0/default.jpg"), "full/max/0/default.jpg");
        assert_eq!(v3("full/pct:100/0/default.jpg"), "full/max/0/default.jpg");
        assert_eq!(v3("full/500,/0/default.jpg"), "full/500,500/0/default.jpg");
        assert_eq!(v3("full/,500/0/default.jpg"), "full/500,500/0/default.jpg");
        assert_eq!(
            v3("full/!500,300/0/default.jpg"),
            "full/300,300/0/default.jpg"
        );
        assert_eq!(
            v3("full/500,300/0/default.jpg"),
            "full/500,300/0/default.jpg"
        );
        assert_eq!(
            v3("full/^2000,/0/default.jpg"),
            "full/^2000,2000/0/default.jpg"
        );
        assert_eq!(v3("full/^max/0/default.jpg"), "full/^max/0/default.jpg");
        assert_eq!(
            v3("full/^5000,5000/0/default.jpg"),
            "full/^max/0/default.jpg"
        );
        assert_eq!(
            v3("full/^1000,1000/0/default.jpg"),
            "full/max/0/default.jpg"
        );
        // Upscaled in one direction only.
        assert_eq!(
            v3("full/^1200,800/0/default.jpg"),
            "full/^1200,800/0/default.jpg"
        );
    }

    #[test]
    fn v3_max_of_a_large_image() {
        let large = ImageFacts {
            width: 12288,
            height: 8192,
            ..validator_image()
        };
        assert_eq!(
            canonical(Version::V3, "full/max/0/default.jpg", &large),
            "full/max/0/default.jpg"
        );
        assert_eq!(
            canonical(Version::V3, "full/5000,/0/default.jpg", &large),
            "full/max/0/default.jpg"
        );
        assert_eq!(
            canonical(Version::V3, "full/4000,/0/default.jpg", &large),
            "full/4000,2667/0/default.jpg"
        );
    }

    #[test]
    fn v2_sizes() {
        assert_eq!(v2("full/full/0/default.jpg"), "full/full/0/default.jpg");
        assert_eq!(v2("full/max/0/default.jpg"), "full/full/0/default.jpg");
        assert_eq!(v2("full/pct:50/0/default.jpg"), "full/500,/0/default.jpg");
        assert_eq!(v2("full/,500/0/default.jpg"), "full/500,/0/default.jpg");
        assert_eq!(v2("full/!500,300/0/default.jpg"), "full/300,/0/default.jpg");
        assert_eq!(
            v2("full/500,300/0/default.jpg"),
            "full/500,300/0/default.jpg"
        );
        assert_eq!(v2("full/2000,/0/default.jpg"), "full/2000,/0/default.jpg");
        let landscape = ImageFacts {
            width: 1000,
            height: 750,
            ..validator_image()
        };
        assert_eq!(
            canonical(Version::V2, "full/,250/0/default.jpg", &landscape),
            "full/333,/0/default.jpg"
        );
        assert_eq!(
            canonical(Version::V2, "full/333,250/0/default.jpg", &landscape),
            "full/333,/0/default.jpg"
        );
        assert_eq!(
            canonical(Version::V2, "full/333,251/0/default.jpg", &landscape),
            "full/333,251/0/default.jpg"
        );
        let large = ImageFacts {
            width: 12288,
            height: 8192,
            ..validator_image()
        };
        assert_eq!(
            canonical(Version::V2, "full/max/0/default.jpg", &large),
            "full/5000,/0/default.jpg"
        );
    }

    #[test]
    fn rotation_quality_and_format() {
        assert_eq!(v3("full/max/90.0/color.png"), "full/max/90/color.png");
        assert_eq!(v3("full/max/360/gray.jpg"), "full/max/0/gray.jpg");
        assert_eq!(v3("full/max/!0/bitonal.webp"), "full/max/!0/bitonal.webp");
        assert_eq!(
            v3("full/max/22.50/default.jpg"),
            "full/max/22.5/default.jpg"
        );
        assert_eq!(
            v2("full/full/!180.0/default.gif"),
            "full/full/!180/default.gif"
        );
    }

    #[test]
    fn validator_style_requests() {
        // region_pixels, size_region, rot_region_basic style requests.
        assert_eq!(
            v3("100,100,100,100/max/0/default.jpg"),
            "100,100,100,100/max/0/default.jpg"
        );
        assert_eq!(
            v3("100,100,100,100/,50/0/default.jpg"),
            "100,100,100,100/50,50/0/default.jpg"
        );
        assert_eq!(
            v2("100,100,100,100/,50/90/default.jpg"),
            "100,100,100,100/50,/90/default.jpg"
        );
        assert_eq!(
            v2("pct:10,10,10,10/full/0/default.jpg"),
            "100,100,100,100/full/0/default.jpg"
        );
    }
}

//! The plan: everything the gateway needs to answer one image request, computed up front.
//!
//! A [`Plan`] holds the resolved request (exact region and output size), the request to send iipsrv and the steps
//! the gateway must apply to iipsrv's JPEG afterwards. Because it is computed from the request and the image facts
//! alone, every error the request deserves is raised before any backend work, and equivalent URLs produce equal
//! plans (which is what the derivative cache keys on).

use crate::backend::BackendRequest;
use crate::capabilities::Capabilities;
use crate::error::IiifError;
use crate::format::Format;
use crate::geometry::PixelRect;
use crate::limits::{ImageFacts, Limits};
use crate::quality::Quality;
use crate::request::ImageRequest;
use crate::reshape::shift_off_the_edge;
use crate::rotation::Rotation;
use crate::sizing::{fit_within_limits, output_size};
use crate::version::Version;

/// A fully resolved image request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The requested region, resolved to pixels and clipped to the image.
    pub region: PixelRect,
    /// The exact output size before rotation.
    pub output: (u32, u32),
    /// The requested rotation, with 360° written as 0°.
    pub rotation: Rotation,
    /// The requested quality.
    pub quality: Quality,
    /// The requested format.
    pub format: Format,
    /// What iipsrv is asked for: always JPEG, always in bounds, always the exact output size as `w,h` (see
    /// [`backend`](crate::backend) for why never `w,`). Its region has the size of [`Plan::region`] but may start
    /// slightly above or left of it (by less than one and a half pixels of the pyramid level iipsrv reads), off
    /// the edge where iipsrv 1.1 crashes (see [`reshape`](crate::reshape)).
    pub backend: BackendRequest,
    /// What the gateway does to iipsrv's JPEG afterwards.
    pub post: PostSteps,
    /// The size `max` gives for this region; the canonical form of the size needs it.
    pub max_size: (u32, u32),
    /// The size `^max` gives for this region, or `None` when upscaling is disabled.
    pub upscaled_max_size: Option<(u32, u32)>,
}

/// The work left to the gateway after iipsrv has answered, in this order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostSteps {
    /// A rotation the gateway performs itself (mirroring included): angles that are not multiples of 90°.
    pub rotate: Option<Rotation>,
    /// The output format; `Jpg` means iipsrv's bytes can be sent unchanged if nothing else is to be done.
    pub encode: Format,
}

impl PostSteps {
    /// True when iipsrv's JPEG is the final answer, byte for byte.
    pub fn is_passthrough(&self) -> bool {
        self.rotate.is_none() && self.encode == Format::Jpg
    }
}

impl Plan {
    /// The dimensions of the JPEG iipsrv returns for [`Plan::backend`]: the size it is asked for, turned by its own
    /// 90° or 270° rotation. The gateway can compare this with what came back.
    pub fn backend_output_size(&self) -> (u32, u32) {
        let (width, height) = self.backend.size;
        if self.backend.rotation.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }
}

/// Resolves an image request against one image.
///
/// # Errors
///
/// * 400 for a region outside the image, any size error (see `sizing`), a rotation that is not a multiple of 90°
///   when the gateway cannot rotate, and a format the gateway cannot produce;
/// * 501 for a 3.0 `^` size that needs upscaling when upscaling is disabled;
/// * 502 when the image facts describe an image without pixels.
pub fn plan(
    version: Version,
    request: &ImageRequest,
    facts: &ImageFacts,
    limits: &Limits,
    caps: &Capabilities,
) -> Result<Plan, IiifError> {
    if facts.width == 0 || facts.height == 0 {
        return Err(IiifError::bad_backend("the image has no pixels"));
    }
    let region = request.region.resolve(facts.width, facts.height)?;
    let effective = limits.effective(facts);
    let output = output_size(version, &request.size, region.size(), limits, &effective)?;

    let rotation = request.rotation.normalized();
    // Parsing guarantees the range; a hand-built `Rotation` must not reach iipsrv as, say, 450 degrees.
    if !(0.0..=360.0).contains(&rotation.degrees) {
        return Err(IiifError::bad_request(
            "invalid rotation: must be between 0 and 360",
        ));
    }
    let (backend_rotation, post_rotate) = if rotation.is_multiple_of_90() {
        (rotation, None)
    } else if caps.arbitrary_rotation {
        (Rotation::NONE, Some(rotation))
    } else {
        // 400 rather than 501: both specs list an unsupported rotation among the 400 cases.
        return Err(IiifError::bad_request(
            "invalid rotation: only multiples of 90 degrees are supported",
        ));
    };

    if !caps.supports(request.format) {
        return Err(IiifError::bad_request(format!(
            "invalid format: {} is not supported by this server",
            request.format
        )));
    }

    let backend_region = shift_off_the_edge(facts, &region, output);

    let narrow = |(width, height): (u64, u64)| (width as u32, height as u32);
    Ok(Plan {
        region,
        output,
        rotation,
        quality: request.quality,
        format: request.format,
        backend: BackendRequest {
            region: (!backend_region.is_whole(facts.width, facts.height)).then_some(backend_region),
            size: output,
            rotation: backend_rotation,
            quality: request.quality,
        },
        post: PostSteps {
            rotate: post_rotate,
            encode: request.format,
        },
        // Both fits respect the u32 limits, so narrowing is lossless.
        max_size: narrow(fit_within_limits(region.size(), &effective, false)),
        upscaled_max_size: limits
            .allow_upscaling
            .then(|| narrow(fit_within_limits(region.size(), &effective, true))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ConfinedUpscale;

    fn facts(width: u32, height: u32) -> ImageFacts {
        ImageFacts {
            width,
            height,
            scale_factors: vec![1, 2, 4],
            backend_max_width: 5000,
            backend_max_height: 5000,
        }
    }

    /// skimage's hubble_deep_field, whose right and bottom edges do not line up with its 256-px tiles.
    fn hubble() -> ImageFacts {
        facts(1000, 872)
    }

    fn transcoding() -> Capabilities {
        Capabilities {
            formats: vec![Format::Jpg, Format::Png, Format::Webp],
            arbitrary_rotation: true,
        }
    }

    fn plan_with(
        version: Version,
        path: &str,
        image: &ImageFacts,
        limits: &Limits,
        caps: &Capabilities,
    ) -> Result<Plan, IiifError> {
        let parts: Vec<&str> = path.split('/').collect();
        let request = ImageRequest::parse(version, parts[0], parts[1], parts[2], parts[3])?;
        plan(version, &request, image, limits, caps)
    }

    fn v3(path: &str, image: &ImageFacts) -> Result<Plan, IiifError> {
        plan_with(
            Version::V3,
            path,
            image,
            &Limits::default(),
            &Capabilities::default(),
        )
    }

    fn v2(path: &str, image: &ImageFacts) -> Result<Plan, IiifError> {
        plan_with(
            Version::V2,
            path,
            image,
            &Limits::default(),
            &Capabilities::default(),
        )
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    #[test]
    fn full_max_is_a_plain_full_request() {
        let plan = v3("full/max/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.region, rect(0, 0, 1000, 750));
        assert_eq!(plan.output, (1000, 750));
        assert_eq!(plan.backend.path(), "full/1000,750/0/default.jpg");
        assert!(plan.post.is_passthrough());
        assert_eq!(plan.max_size, (1000, 750));
        assert_eq!(plan.upscaled_max_size, Some((5000, 3750)));
    }

    #[test]
    fn regions_are_clipped_before_iipsrv_sees_them() {
        // iipsrv 1.1 crashes on 999,749,10,10 and clips 900,700,300,200 wrongly (iiif-reference §3.8).
        let plan = v2("999,749,10,10/full/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.backend.path(), "999,749,1,1/1,1/0/default.jpg");
        let plan = v2("900,700,300,200/full/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.backend.path(), "900,700,100,50/100,50/0/default.jpg");
        let plan = v3("pct:0,0,100,100/max/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.backend.region, None);
    }

    #[test]
    fn square_is_sent_as_pixels() {
        let plan = v3("square/100,/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.output, (100, 100));
        assert_eq!(plan.backend.path(), "125,0,750,750/100,100/0/default.jpg");
        // Square of a square image is the whole image.
        let plan = v3("square/max/0/default.jpg", &facts(1000, 1000)).unwrap();
        assert_eq!(plan.backend.path(), "full/1000,1000/0/default.jpg");
    }

    #[test]
    fn sizes_are_always_exact() {
        // iipsrv's own "333," would come back as 332×249 here.
        let plan = v2("3,3,997,747/333,/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.output, (333, 249));
        assert_eq!(plan.backend.size, (333, 249));
    }

    #[test]
    fn tiles_are_sent_with_exact_sizes() {
        // Full tiles, which iipsrv could send from the pyramid for `w,`: `w,h` is faster and exact.
        let plan = v3("256,512,256,256/256,/0/default.jpg", &hubble()).unwrap();
        assert_eq!(plan.backend.path(), "256,512,256,256/256,256/0/default.jpg");
        let plan = v3("0,0,512,512/256,/90/gray.jpg", &hubble()).unwrap();
        assert_eq!(plan.backend.path(), "0,0,512,512/256,256/90/gray.jpg");
        let plan = v3("256,512,256,256/256,/180/bitonal.jpg", &hubble()).unwrap();
        assert_eq!(
            plan.backend.path(),
            "256,512,256,256/256,256/180/bitonal.jpg"
        );
        // Edge tiles.
        let plan = v3("768,768,232,104/232,/0/default.jpg", &hubble()).unwrap();
        assert_eq!(plan.backend.path(), "768,768,232,104/232,104/0/default.jpg");
        // The whole smallest level, as viewers ask for first.
        let plan = v3("full/250,/0/default.jpg", &hubble()).unwrap();
        assert_eq!(plan.backend.path(), "full/250,218/0/default.jpg");
    }

    #[test]
    fn backend_output_sizes() {
        let plan = v3("256,512,256,256/256,/90/default.jpg", &hubble()).unwrap();
        assert_eq!(plan.backend_output_size(), (256, 256));
        let plan = v3("0,0,1000,500/200,/270/default.jpg", &hubble()).unwrap();
        assert_eq!(plan.output, (200, 100));
        assert_eq!(plan.backend.size, (200, 100));
        assert_eq!(plan.backend_output_size(), (100, 200));
        // With the crash workaround, iipsrv still returns the requested size.
        let plan = v3("0,999,100,1/50,1/90/default.jpg", &facts(1000, 1000)).unwrap();
        assert_eq!(plan.backend_output_size(), (1, 50));
    }

    #[test]
    fn rotations_by_90_go_to_iipsrv() {
        let plan = v3("full/max/!90/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(
            plan.backend.rotation,
            Rotation {
                mirror: true,
                degrees: 90.0
            }
        );
        assert_eq!(plan.post.rotate, None);
        let plan = v3("full/max/360/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.rotation, Rotation::NONE);
        assert_eq!(plan.backend.path(), "full/1000,750/0/default.jpg");
        let plan = v3("full/max/!360/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.backend.path(), "full/1000,750/!0/default.jpg");
    }

    #[test]
    fn arbitrary_rotations_need_the_gateway() {
        assert_eq!(
            v3("full/max/22.5/default.jpg", &facts(1000, 750)),
            Err(IiifError::bad_request(
                "invalid rotation: only multiples of 90 degrees are supported"
            ))
        );
        let plan = plan_with(
            Version::V3,
            "full/max/!22.5/default.jpg",
            &facts(1000, 750),
            &Limits::default(),
            &transcoding(),
        )
        .unwrap();
        assert_eq!(plan.backend.rotation, Rotation::NONE);
        assert_eq!(
            plan.post.rotate,
            Some(Rotation {
                mirror: true,
                degrees: 22.5
            })
        );
        assert!(!plan.post.is_passthrough());
    }

    #[test]
    fn formats_need_the_gateway() {
        assert_eq!(
            v3("full/max/0/default.png", &facts(1000, 750)),
            Err(IiifError::bad_request(
                "invalid format: png is not supported by this server"
            ))
        );
        let plan = plan_with(
            Version::V3,
            "full/max/0/default.png",
            &facts(1000, 750),
            &Limits::default(),
            &transcoding(),
        )
        .unwrap();
        assert_eq!(plan.post.encode, Format::Png);
        assert_eq!(plan.backend.path(), "full/1000,750/0/default.jpg");
        assert!(!plan.post.is_passthrough());
        assert_eq!(
            plan_with(
                Version::V2,
                "full/full/0/default.tif",
                &facts(10, 10),
                &Limits::default(),
                &transcoding()
            )
            .unwrap_err()
            .status,
            400
        );
    }

    #[test]
    fn qualities_pass_through() {
        for (name, quality) in [
            ("default", Quality::Default),
            ("color", Quality::Color),
            ("gray", Quality::Gray),
        ] {
            let plan = v2(&format!("full/full/0/{name}.jpg"), &facts(10, 10)).unwrap();
            assert_eq!(plan.backend.quality, quality);
            assert_eq!(plan.backend.path(), format!("full/10,10/0/{name}.jpg"));
        }
    }

    #[test]
    fn the_thin_strip_crash_is_shifted_off_the_edge() {
        let image = facts(1000, 1000);
        let plan = v2("0,999,100,1/50,1/0/default.jpg", &image).unwrap();
        assert_eq!(plan.region, rect(0, 999, 100, 1));
        assert_eq!(plan.output, (50, 1));
        assert_eq!(plan.backend.path(), "0,998,100,1/50,1/0/default.jpg");
        assert!(plan.post.is_passthrough());
        let plan = v3("999,0,1,100/1,50/0/default.jpg", &image).unwrap();
        assert_eq!(plan.region, rect(999, 0, 1, 100));
        assert_eq!(plan.backend.path(), "998,0,1,100/1,50/0/default.jpg");
        assert!(plan.post.is_passthrough());
        // iipsrv rotates the shifted region's render; nothing is left for the gateway.
        let plan = v3("0,999,100,1/50,1/90/default.jpg", &image).unwrap();
        assert_eq!(plan.backend.path(), "0,998,100,1/50,1/90/default.jpg");
        assert!(plan.post.is_passthrough());
        // Without downscaling iipsrv reads full resolution, where the last row is safe.
        let plan = v3("0,999,100,1/100,1/0/default.jpg", &image).unwrap();
        assert_eq!(plan.backend.path(), "0,999,100,1/100,1/0/default.jpg");
    }

    #[test]
    fn tiny_thumbnails_of_the_whole_image_stay_full() {
        // `full` starts at 0,0, which no level choice can push past the edge.
        let plan = v3("full/1,1/0/default.jpg", &facts(1000, 750)).unwrap();
        assert_eq!(plan.backend.path(), "full/1,1/0/default.jpg");
    }

    #[test]
    fn size_errors_keep_their_status() {
        let image = facts(1000, 1000);
        assert_eq!(
            v3("full/1001,/0/default.jpg", &image).unwrap_err().status,
            400
        );
        assert_eq!(
            v3("full/!2000,3000/0/default.jpg", &image)
                .unwrap_err()
                .status,
            400
        );
        let no_up = Limits {
            allow_upscaling: false,
            ..Limits::default()
        };
        let caps = Capabilities::default();
        assert_eq!(
            plan_with(
                Version::V3,
                "full/^1001,/0/default.jpg",
                &image,
                &no_up,
                &caps
            )
            .unwrap_err()
            .status,
            501
        );
        assert_eq!(
            plan_with(
                Version::V2,
                "full/1001,/0/default.jpg",
                &image,
                &no_up,
                &caps
            )
            .unwrap_err()
            .status,
            400
        );
        let allow = Limits {
            confined_upscale: ConfinedUpscale::Allow,
            ..Limits::default()
        };
        assert_eq!(
            plan_with(
                Version::V3,
                "full/!2000,3000/0/default.jpg",
                &image,
                &allow,
                &caps
            )
            .unwrap()
            .output,
            (1000, 1000)
        );
    }

    #[test]
    fn backend_max_tightens_the_limits() {
        let image = ImageFacts {
            backend_max_width: 800,
            backend_max_height: 600,
            ..facts(1000, 1000)
        };
        assert_eq!(
            v3("full/max/0/default.jpg", &image).unwrap().output,
            (600, 600)
        );
        assert_eq!(
            v3("full/700,/0/default.jpg", &image).unwrap_err().status,
            400
        );
        assert_eq!(
            v2("full/full/0/default.jpg", &image).unwrap_err().status,
            400
        );
    }

    #[test]
    fn regions_outside_the_image_are_400() {
        let image = facts(1000, 750);
        for path in [
            "1000,0,10,10/max/0/default.jpg",
            "0,750,10,10/max/0/default.jpg",
            "pct:100,0,10,10/max/0/default.jpg",
        ] {
            assert_eq!(
                v3(path, &image),
                Err(IiifError::bad_request(
                    "invalid region: it lies outside the image"
                ))
            );
        }
    }

    #[test]
    fn hand_built_rotations_out_of_range_are_400() {
        let mut request =
            ImageRequest::parse(Version::V3, "full", "max", "0", "default.jpg").unwrap();
        request.rotation = Rotation {
            mirror: false,
            degrees: 450.0,
        };
        let result = plan(
            Version::V3,
            &request,
            &facts(10, 10),
            &Limits::default(),
            &Capabilities::default(),
        );
        assert_eq!(result.unwrap_err().status, 400);
        request.rotation = Rotation {
            mirror: false,
            degrees: f64::NAN,
        };
        let result = plan(
            Version::V3,
            &request,
            &facts(10, 10),
            &Limits::default(),
            &transcoding(),
        );
        assert_eq!(result.unwrap_err().status, 400);
    }

    #[test]
    fn empty_images_are_a_backend_fault() {
        assert_eq!(
            v3("full/max/0/default.jpg", &facts(0, 10))
                .unwrap_err()
                .status,
            502
        );
    }
}

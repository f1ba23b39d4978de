//! Property tests of the IIIF core: random images, limits and requests.
//!
//! They check that planning never sends iipsrv anything out of bounds or outside its limits, that every output
//! respects the configured limits and the 3.0 no-upscaling rule, that iipsrv is never sent a region its measured
//! crash rule says it dies on, that every URL segment reads back what it prints, that canonical forms plan to the
//! same result, and that routing never panics on arbitrary input.

mod support;

use iiif::{
    crashes_iipsrv, parse_route, Capabilities, ConfinedUpscale, Format, Identifier, ImageFacts,
    ImageRequest, Limits, PixelRect, Quality, Region, Rotation, Route, Size, SizeKind, Version,
};
use proptest::prelude::*;

/// Builds a pyramid the way `vips tiffsave --pyramid` does: halve until the level fits in one tile, rounding
/// either down or up.
fn pyramid(width: u32, height: u32, tile: (u32, u32), round_up: bool, max_cvt: u32) -> ImageFacts {
    let mut scale_factors = vec![1];
    let (mut level_width, mut level_height) = (width, height);
    let halve = |side: u32| {
        if round_up {
            side.div_ceil(2)
        } else {
            (side / 2).max(1)
        }
    };
    while level_width > tile.0 || level_height > tile.1 {
        level_width = halve(level_width);
        level_height = halve(level_height);
        scale_factors.push(scale_factors.last().unwrap() * 2);
    }
    ImageFacts {
        width,
        height,
        scale_factors,
        backend_max_width: max_cvt,
        backend_max_height: max_cvt,
    }
}

/// An image with its pyramid's tile size.
fn tiled_image() -> BoxedStrategy<(ImageFacts, (u32, u32))> {
    let tile = prop_oneof![
        Just((256, 256)),
        Just((512, 512)),
        (16u32..=600, 16u32..=600)
    ];
    let side = prop_oneof![1u32..=64, 1u32..=4000, 1u32..=30_000];
    let max_cvt = prop_oneof![Just(5000u32), 64u32..=12_000];
    (side.clone(), side, tile, any::<bool>(), max_cvt)
        .prop_map(|(width, height, tile, round_up, max_cvt)| {
            (pyramid(width, height, tile, round_up, max_cvt), tile)
        })
        .boxed()
}

fn image() -> BoxedStrategy<ImageFacts> {
    tiled_image().prop_map(|(facts, _)| facts).boxed()
}

fn limits() -> BoxedStrategy<Limits> {
    let limit = prop_oneof![Just(5000u32), 1u32..=12_000];
    let area = prop_oneof![Just(25_000_000u64), 1u64..=150_000_000];
    let confined = prop_oneof![Just(ConfinedUpscale::Reject), Just(ConfinedUpscale::Allow)];
    (limit.clone(), limit, area, any::<bool>(), confined)
        .prop_map(
            |(max_width, max_height, max_area, allow_upscaling, confined_upscale)| Limits {
                max_width,
                max_height,
                max_area,
                allow_upscaling,
                confined_upscale,
            },
        )
        .boxed()
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (
        proptest::sample::subsequence(Format::ALL[1..].to_vec(), 0..=6),
        any::<bool>(),
    )
        .prop_map(|(mut formats, arbitrary_rotation)| {
            formats.insert(0, Format::Jpg);
            Capabilities {
                formats,
                arbitrary_rotation,
            }
        })
}

/// A decimal with up to three places, so that its printed form reads back exactly.
fn decimal(max_thousandths: u64) -> impl Strategy<Value = f64> {
    (0..=max_thousandths).prop_map(|thousandths| thousandths as f64 / 1000.0)
}

fn region() -> BoxedStrategy<Region> {
    let pixel = prop_oneof![0u32..=300, 0u32..=32_000, Just(u32::MAX)];
    let extent = prop_oneof![1u32..=300, 1u32..=32_000, Just(u32::MAX)];
    prop_oneof![
        Just(Region::Full),
        Just(Region::Square),
        (pixel.clone(), pixel, extent.clone(), extent).prop_map(|(x, y, w, h)| Region::Pixels {
            x,
            y,
            w,
            h
        }),
        (
            decimal(120_000),
            decimal(120_000),
            decimal(120_000),
            decimal(120_000)
        )
            .prop_filter("non-empty", |(_, _, w, h)| *w > 0.0 && *h > 0.0)
            .prop_map(|(x, y, w, h)| Region::Percent { x, y, w, h }),
    ]
    .boxed()
}

/// A size valid in `version`'s grammar.
fn size(version: Version) -> BoxedStrategy<Size> {
    let side = prop_oneof![1u32..=64, 1u32..=6000, 1u32..=40_000];
    let kind = prop_oneof![
        Just(SizeKind::Full),
        Just(SizeKind::Max),
        side.clone().prop_map(SizeKind::Width),
        side.clone().prop_map(SizeKind::Height),
        decimal(400_000)
            .prop_filter("non-zero", |p| *p > 0.0)
            .prop_map(SizeKind::Percent),
        (side.clone(), side.clone()).prop_map(|(w, h)| SizeKind::Exact(w, h)),
        (side.clone(), side).prop_map(|(w, h)| SizeKind::Confined(w, h)),
    ];
    (kind, any::<bool>())
        .prop_filter_map(
            "valid in the version",
            move |(kind, upscale)| match version {
                Version::V2 => Some(Size {
                    upscale: false,
                    kind,
                }),
                Version::V3 if kind == SizeKind::Full => None,
                Version::V3 => {
                    let needs_caret = matches!(kind, SizeKind::Percent(p) if p > 100.0);
                    Some(Size {
                        upscale: upscale || needs_caret,
                        kind,
                    })
                }
            },
        )
        .boxed()
}

fn rotation() -> impl Strategy<Value = Rotation> {
    let degrees = prop_oneof![
        prop::sample::select(vec![0.0, 90.0, 180.0, 270.0, 360.0]),
        (0u32..=360_000).prop_map(|n| f64::from(n) / 1000.0),
    ];
    (any::<bool>(), degrees).prop_map(|(mirror, degrees)| Rotation { mirror, degrees })
}

fn quality() -> impl Strategy<Value = Quality> {
    prop::sample::select(Quality::ALL.to_vec())
}

fn format() -> impl Strategy<Value = Format> {
    prop::sample::select(Format::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V2), Just(Version::V3)]
}

/// Regions that mostly start inside a `width×height` image, plus arbitrary ones.
fn region_in(width: u32, height: u32) -> BoxedStrategy<Region> {
    let inside = (
        0..width,
        0..height,
        1..=width.saturating_mul(2),
        1..=height.saturating_mul(2),
    )
        .prop_map(|(x, y, w, h)| Region::Pixels { x, y, w, h });
    prop_oneof![3 => inside, 2 => region()].boxed()
}

fn request_with(region: BoxedStrategy<Region>) -> impl Strategy<Value = (Version, ImageRequest)> {
    version().prop_flat_map(move |version| {
        (
            Just(version),
            region.clone(),
            size(version),
            rotation(),
            quality(),
            format(),
        )
            .prop_map(|(version, region, size, rotation, quality, format)| {
                (
                    version,
                    ImageRequest {
                        region,
                        size,
                        rotation,
                        quality,
                        format,
                    },
                )
            })
    })
}

fn request() -> impl Strategy<Value = (Version, ImageRequest)> {
    request_with(region())
}

/// An image with a request aimed at it.
fn scenario() -> BoxedStrategy<(ImageFacts, Version, ImageRequest)> {
    image()
        .prop_flat_map(|facts| {
            let (width, height) = (facts.width, facts.height);
            (Just(facts), request_with(region_in(width, height)))
        })
        .prop_map(|(facts, (version, request))| (facts, version, request))
        .boxed()
}

/// Requests biased towards what viewers send: tiles of the image's own pyramid, at every level and edge.
fn tile_request() -> impl Strategy<Value = (ImageFacts, Version, ImageRequest)> {
    (
        tiled_image(),
        version(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_flat_map(|((mut facts, tile), version, level, column, row)| {
            // Viewers only ask for tiles the limits allow, and a ragged edge tile's `w,` may derive a height a
            // little above the tile height; keep iipsrv's default MAX_CVT, far above any tile.
            facts.backend_max_width = 5000;
            facts.backend_max_height = 5000;
            let scale = facts.scale_factors[level.index(facts.scale_factors.len())];
            let (scaled_width, scaled_height) = (tile.0 * scale, tile.1 * scale);
            let x = scaled_width * column.index(facts.width.div_ceil(scaled_width) as usize) as u32;
            let y = scaled_height * row.index(facts.height.div_ceil(scaled_height) as usize) as u32;
            let w = scaled_width.min(facts.width - x);
            let h = scaled_height.min(facts.height - y);
            // The exact `w,h` of the 3.0 implementation notes (§3), valid in both versions even for images so
            // thin that `w,` would derive a height beyond the limits.
            let size = SizeKind::Exact(w.div_ceil(scale), h.div_ceil(scale));
            let quarter_turns = (
                any::<bool>(),
                prop::sample::select(vec![0.0, 90.0, 180.0, 270.0]),
            )
                .prop_map(|(mirror, degrees)| Rotation { mirror, degrees });
            (
                Just(facts),
                Just(version),
                Just(Region::Pixels { x, y, w, h }),
                Just(size),
                quarter_turns,
                quality(),
            )
        })
        .prop_map(|(facts, version, region, kind, rotation, quality)| {
            let request = ImageRequest {
                region,
                size: Size {
                    upscale: false,
                    kind,
                },
                rotation,
                quality,
                format: Format::Jpg,
            };
            (facts, version, request)
        })
}

/// An image with the levels `vips tiffsave --pyramid` gives it, as in the crash measurement: halve (floor) until
/// it fits one 256-px tile.
fn vips_image() -> impl Strategy<Value = ImageFacts> {
    let side = prop_oneof![1u32..=300, 1u32..=4000, 1u32..=30_000];
    (side.clone(), side).prop_map(|(width, height)| ImageFacts::vips_pyramid(width, height))
}

/// Valid requests against a vips pyramid, mostly for thin strips and small regions within a few pixels of the
/// bottom or right edge, downscaled by up to 64 on each axis: where iipsrv 1.1 crashes.
fn edge_request() -> impl Strategy<Value = (ImageFacts, Version, ImageRequest)> {
    (vips_image(), version()).prop_flat_map(|(facts, version)| {
        let (width, height) = (facts.width, facts.height);
        // A side is thin (up to 20 pixels) and near the far edge, or anything anywhere.
        let axis = |dim: u32| {
            prop_oneof![
                3 => (1..=dim.min(20), 0..=dim.min(12)).prop_map(move |(side, gap)| {
                    let start = (dim - side).saturating_sub(gap);
                    (start, side)
                }),
                1 => (1..=dim).prop_flat_map(move |side| (0..=dim - side, Just(side))),
            ]
        };
        let divisor = prop_oneof![3 => 10u32..=640, 1 => 1u32..=20];
        let quarter_turns = (
            any::<bool>(),
            prop::sample::select(vec![0.0, 90.0, 180.0, 270.0]),
        )
            .prop_map(|(mirror, degrees)| Rotation { mirror, degrees });
        (
            Just(facts),
            Just(version),
            axis(width),
            axis(height),
            divisor.clone(),
            divisor,
            quarter_turns,
            quality(),
        )
            .prop_map(
                |(facts, version, (x, w), (y, h), x_divisor, y_divisor, rotation, quality)| {
                    // Each axis scaled by 1 to 64 (tenths), independently; 2.1 may upscale, so small divisors stay.
                    let scaled = |side: u32, divisor: u32| {
                        ((u64::from(side) * 10 / u64::from(divisor)) as u32).max(1)
                    };
                    let size = Size {
                        upscale: version == Version::V3,
                        kind: SizeKind::Exact(scaled(w, x_divisor), scaled(h, y_divisor)),
                    };
                    let request = ImageRequest {
                        region: Region::Pixels { x, y, w, h },
                        size,
                        rotation,
                        quality,
                        format: Format::Jpg,
                    };
                    (facts, version, request)
                },
            )
    })
}

fn identifier() -> Identifier {
    Identifier::from_raw("sub%2Fa%26b+c.tif").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Every successful plan is in bounds, within limits, exact, and canonicalises to itself.
    #[test]
    fn plans_respect_every_invariant(
        (facts, version, request) in scenario(),
        limits in limits(),
        caps in capabilities(),
    ) {
        let _ = support::plan_and_check(version, &identifier(), &request, &facts, &limits, &caps);
    }

    /// Viewer tiles always plan, with an exact size like every other request.
    #[test]
    fn tiles_always_plan((facts, version, request) in tile_request()) {
        let result = support::plan_and_check(version, &identifier(), &request, &facts, &Limits::default(), &Capabilities::default());
        let planned = result.unwrap_or_else(|error| panic!("tile {request} failed: {error}"));
        prop_assert!(planned.region.fits_in(facts.width, facts.height));
    }

    /// Whatever the request, iipsrv gets a region of the requested size, in bounds, that its crash rule says it
    /// survives; requests at the bottom and right edges, where it crashes, are the common case here.
    #[test]
    fn iipsrv_never_gets_a_crashing_region((facts, version, request) in edge_request()) {
        let Ok(planned) = support::plan_and_check(version, &identifier(), &request, &facts, &Limits::default(), &Capabilities::default()) else {
            return Ok(());
        };
        let region = planned.backend.region.unwrap_or(PixelRect::whole(facts.width, facts.height));
        prop_assert!(region.fits_in(facts.width, facts.height));
        prop_assert_eq!(region.size(), planned.region.size());
        prop_assert!(!crashes_iipsrv(&facts, &region, planned.output), "{}", planned.backend.path());
        // Only the origin moves, and only up and left.
        prop_assert!(region.x <= planned.region.x && region.y <= planned.region.y);
        if region != planned.region {
            prop_assert!(crashes_iipsrv(&facts, &planned.region, planned.output));
            // As little as possible: one pixel further down (right) would crash again.
            for moved in [
                PixelRect { y: region.y + 1, ..region },
                PixelRect { x: region.x + 1, ..region },
            ] {
                if moved.x <= planned.region.x && moved.y <= planned.region.y && moved != region {
                    prop_assert!(crashes_iipsrv(&facts, &moved, planned.output), "{}", moved);
                }
            }
        }
    }

    /// Segments print in a form that parses back to the same value.
    #[test]
    fn segments_round_trip((version, request) in request()) {
        prop_assert_eq!(Region::parse(version, &request.region.to_string()), Ok(request.region));
        prop_assert_eq!(Size::parse(version, &request.size.to_string()), Ok(request.size));
        prop_assert_eq!(Rotation::parse(version, &request.rotation.to_string()), Ok(request.rotation));
        prop_assert_eq!(Quality::parse(version, &request.quality.to_string()), Ok(request.quality));
        prop_assert_eq!(Format::parse(version, &request.format.to_string()), Ok(request.format));
        let printed = request.to_string();
        let parts: Vec<&str> = printed.split('/').collect();
        prop_assert_eq!(ImageRequest::parse(version, parts[0], parts[1], parts[2], parts[3]), Ok(request));
        let route = parse_route(version, &format!("some%2Fid/{printed}"));
        prop_assert_eq!(route, Ok(Route::Image { identifier: Identifier::from_raw("some%2Fid").unwrap(), request }));
    }

    /// Percent-encoding any characters of the parameters (IIIF §9) changes nothing.
    #[test]
    fn encoded_parameters_parse_like_plain_ones(
        (version, request) in request(),
        mask in prop::collection::vec(any::<bool>(), 64),
        lowercase in any::<bool>(),
    ) {
        let printed = request.to_string();
        let encoded: String = printed
            .chars()
            .zip(mask.iter().cycle())
            .map(|(c, &encode)| {
                if encode && c != '/' {
                    let escape = format!("%{:02X}", c as u32);
                    if lowercase { escape.to_lowercase() } else { escape }
                } else {
                    c.to_string()
                }
            })
            .collect();
        let route = parse_route(version, &format!("id/{encoded}"));
        prop_assert_eq!(route, Ok(Route::Image { identifier: Identifier::from_raw("id").unwrap(), request }), "{}", encoded);
    }

    /// 3.0 without `^` never returns more pixels than the region, whatever the configuration.
    #[test]
    fn v3_without_caret_never_upscales(
        (facts, _, request) in scenario(),
        limits in limits(),
        size in size(Version::V3),
    ) {
        let size = Size { upscale: false, ..size };
        let region = request.region;
        let request = ImageRequest { region, size, rotation: Rotation::NONE, quality: Quality::Default, format: Format::Jpg };
        if let Ok(planned) = iiif::plan(Version::V3, &request, &facts, &limits, &Capabilities::default()) {
            prop_assert!(planned.output.0 <= planned.region.w && planned.output.1 <= planned.region.h);
        }
    }

    /// Routing never panics on arbitrary text, and whatever it accepts plans without breaking an invariant.
    #[test]
    fn routing_never_panics_on_text(rest in ".{0,80}", version in version()) {
        route_and_plan(version, &rest);
    }

    /// Routing never panics on arbitrary bytes either.
    #[test]
    fn routing_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..120), version in version()) {
        route_and_plan(version, &String::from_utf8_lossy(&bytes));
    }

    /// Routing never panics on inputs built from IIIF-like pieces, which reach deeper than random text.
    #[test]
    fn routing_never_panics_on_iiif_like_paths(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "id", "a%2Fb", "%2E%2E", "..", "", "full", "square", "max", "^max", "pct:", "pct:50", "0", "!", "^",
                ",", "1", "999", "4294967296", "0.5", "360", "!90", "default.jpg", "gray.png", ".", "info.json",
                "%", "%00", "x,y", "1,2,3,4", "!1,1",
            ]),
            0..8,
        ),
        separators in prop::collection::vec(prop::sample::select(vec!["/", ",", "", "."]), 8),
        version in version(),
    ) {
        let mut rest = String::new();
        for (index, piece) in pieces.iter().enumerate() {
            rest.push_str(piece);
            if index + 1 < pieces.len() {
                rest.push_str(separators[index]);
            }
        }
        route_and_plan(version, &rest);
    }

    /// The identifier sent to iipsrv decodes back to the decoded identifier.
    #[test]
    fn backend_encoding_round_trips(raw in "[a-zA-Z0-9%/&+ ._~\\[\\]()-]{1,40}") {
        if let Ok(identifier) = Identifier::from_raw(&raw) {
            let encoded = identifier.backend_encoded();
            let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
            prop_assert_eq!(decoded, identifier.decoded());
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-%".contains(&b)));
            prop_assert_eq!(identifier.public_encoded(), raw);
        }
    }
}

/// Routes `rest` and plans any image request against every fixed image and configuration.
fn route_and_plan(version: Version, rest: &str) {
    let Ok(route) = parse_route(version, rest) else {
        return;
    };
    if let Route::Image {
        identifier,
        request,
    } = route
    {
        for facts in support::fixed_images() {
            for (limits, caps) in support::fixed_configurations() {
                let _ =
                    support::plan_and_check(version, &identifier, &request, &facts, &limits, &caps);
            }
        }
    }
}

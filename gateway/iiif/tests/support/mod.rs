//! Invariants every successful plan must satisfy, shared by the property tests, the corpus replay and the fuzz
//! target. Each check panics with a description of the broken rule.

#![allow(dead_code)]

use iiif::{
    backend_query, canonical_path, crashes_iipsrv, plan, shift_off_the_edge, Capabilities,
    Identifier, IiifError, ImageFacts, ImageRequest, Limits, PixelRect, Plan, Version,
};

/// A few fixed images: the validator's, iipsrv's own 1000×750 example, skimage's hubble (edges that do not line
/// up with 256-px tiles), a large pyramid, a thin strip and a single pixel.
pub(crate) fn fixed_images() -> Vec<ImageFacts> {
    let facts = |width, height, scale_factors: &[u32]| ImageFacts {
        width,
        height,
        scale_factors: scale_factors.to_vec(),
        backend_max_width: 5000,
        backend_max_height: 5000,
    };
    vec![
        facts(1000, 1000, &[1, 2, 4]),
        facts(1000, 750, &[1, 2, 4]),
        facts(1000, 872, &[1, 2, 4]),
        facts(12288, 8192, &[1, 2, 4, 8, 16, 32, 64]),
        facts(3000, 1, &[1, 2, 4, 8, 16]),
        facts(1, 1, &[1]),
    ]
}

/// The gateway's configurations worth exercising: validator-compatible defaults, no upscaling, the spec's `!w,h`
/// reading with a small area limit, and a transcoding deployment.
pub(crate) fn fixed_configurations() -> Vec<(Limits, Capabilities)> {
    use iiif::{ConfinedUpscale, Format};
    let transcoding = Capabilities {
        formats: vec![
            Format::Jpg,
            Format::Png,
            Format::Gif,
            Format::Webp,
            Format::Tif,
        ],
        arbitrary_rotation: true,
    };
    vec![
        (Limits::default(), Capabilities::default()),
        (
            Limits {
                allow_upscaling: false,
                ..Limits::default()
            },
            transcoding.clone(),
        ),
        (
            Limits {
                max_width: 3000,
                max_height: 2000,
                max_area: 1_000_000,
                allow_upscaling: true,
                confined_upscale: ConfinedUpscale::Allow,
            },
            transcoding,
        ),
    ]
}

/// Plans a request and, if it succeeds, checks every invariant; an error must carry a client-facing status.
pub(crate) fn plan_and_check(
    version: Version,
    identifier: &Identifier,
    request: &ImageRequest,
    facts: &ImageFacts,
    limits: &Limits,
    caps: &Capabilities,
) -> Result<Plan, IiifError> {
    let result = plan(version, request, facts, limits, caps);
    match &result {
        Ok(planned) => {
            check_plan(version, request, facts, limits, caps, planned);
            check_backend_query(identifier, planned);
            check_canonical_round_trip(version, facts, limits, caps, planned);
        }
        Err(error) => {
            assert!(
                matches!(error.status, 400 | 501),
                "unexpected status {} for {request}",
                error.status
            );
            assert!(!error.message.is_empty());
            assert!(
                !error.message.ends_with('.'),
                "error message ends with a full stop: {}",
                error.message
            );
        }
    }
    result
}

/// The invariants of one successful plan.
pub(crate) fn check_plan(
    version: Version,
    request: &ImageRequest,
    facts: &ImageFacts,
    limits: &Limits,
    caps: &Capabilities,
    planned: &Plan,
) {
    let context = format!("{request} on {}x{}", facts.width, facts.height);
    let (width, height) = planned.output;
    let effective = limits.effective(facts);

    // The region and the output.
    assert!(
        planned.region.fits_in(facts.width, facts.height),
        "region outside the image: {context}"
    );
    assert!(width >= 1 && height >= 1, "empty output: {context}");
    assert!(
        effective.allows(u64::from(width), u64::from(height)),
        "output over the limits: {context}"
    );
    let upscaled = width > planned.region.w || height > planned.region.h;
    if version == Version::V3 && !request.size.upscale {
        assert!(!upscaled, "3.0 without ^ upscaled: {context}");
    }
    if !limits.allow_upscaling {
        assert!(
            !upscaled,
            "upscaled although upscaling is disabled: {context}"
        );
    }

    // What iipsrv is asked for.
    let backend = &planned.backend;
    if let Some(region) = backend.region {
        assert!(
            region.fits_in(facts.width, facts.height),
            "backend region outside the image: {context}"
        );
        assert!(
            !region.is_whole(facts.width, facts.height),
            "whole image not sent as full: {context}"
        );
    }
    let backend_region = backend
        .region
        .unwrap_or(PixelRect::whole(facts.width, facts.height));
    // What iipsrv gets must never crash it.
    assert!(
        !crashes_iipsrv(facts, &backend_region, planned.output),
        "iipsrv 1.1 crashes on {}: {context}",
        backend.path()
    );
    let degrees = backend.rotation.degrees;
    assert!(
        [0.0, 90.0, 180.0, 270.0].contains(&degrees),
        "backend rotation {degrees}: {context}"
    );
    assert_eq!(backend.quality, planned.quality, "{context}");
    let (backend_width, backend_height) = backend.size;
    assert!(
        backend_width >= 1 && backend_height >= 1,
        "empty backend size: {context}"
    );
    assert!(
        backend_width <= facts.backend_max_width,
        "backend width over MAX_CVT: {context}"
    );
    assert!(
        backend_height <= facts.backend_max_height,
        "backend height over MAX_CVT: {context}"
    );
    assert_eq!(
        backend.size, planned.output,
        "inexact backend size: {context}"
    );
    // The requested region, moved off iipsrv's crash edge only if it is on it.
    assert_eq!(
        backend_region,
        shift_off_the_edge(facts, &planned.region, planned.output),
        "{context}"
    );
    assert_eq!(backend_region.size(), planned.region.size(), "{context}");

    // What the gateway does afterwards.
    match planned.post.rotate {
        Some(rotation) => {
            assert!(
                caps.arbitrary_rotation,
                "gateway rotation without the capability: {context}"
            );
            assert!(
                !rotation.is_multiple_of_90(),
                "gateway rotation by a multiple of 90: {context}"
            );
            assert!(backend.rotation.is_identity(), "rotated twice: {context}");
        }
        None => assert_eq!(
            backend.rotation, planned.rotation,
            "rotation lost: {context}"
        ),
    }
    assert!(
        caps.supports(planned.format),
        "unsupported format planned: {context}"
    );
    assert_eq!(planned.post.encode, planned.format);
}

/// The identifier in iipsrv's query string uses unreserved characters and escapes only.
pub(crate) fn check_backend_query(identifier: &Identifier, planned: &Plan) {
    let query = backend_query_for(identifier, planned);
    let encoded = identifier.backend_encoded();
    assert!(query.starts_with("IIIF="));
    assert!(query.ends_with(".jpg"));
    assert!(
        encoded
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._~-%".contains(&byte)),
        "unsafe identifier encoding {encoded}"
    );
    assert!(!query.contains('&') && !query.contains('+') && !query.contains(' '));
}

/// Requesting the canonical form of a plan gives the same plan.
pub(crate) fn check_canonical_round_trip(
    version: Version,
    facts: &ImageFacts,
    limits: &Limits,
    caps: &Capabilities,
    planned: &Plan,
) {
    let canonical = canonical_path(version, planned, facts);
    let parts: Vec<&str> = canonical.split('/').collect();
    assert_eq!(parts.len(), 4, "{canonical}");
    let request = ImageRequest::parse(version, parts[0], parts[1], parts[2], parts[3])
        .unwrap_or_else(|error| panic!("canonical form {canonical} does not parse: {error}"));
    let again = plan(version, &request, facts, limits, caps)
        .unwrap_or_else(|error| panic!("canonical form {canonical} does not plan: {error}"));
    assert_eq!(
        &again, planned,
        "canonical form {canonical} plans differently"
    );
    assert_eq!(
        canonical_path(version, &again, facts),
        canonical,
        "canonical form is not stable"
    );
}

/// `backend_query` takes the plan's backend request; this keeps the call sites short.
fn backend_query_for(identifier: &Identifier, planned: &Plan) -> String {
    backend_query(&identifier.backend_encoded(), &planned.backend)
}

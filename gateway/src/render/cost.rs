//! What a render holds in memory, worst case, known before it runs.
//!
//! The gateway refuses a request whose worst case is above the per-request ceiling and reserves
//! the worst case from its render budget before asking iipsrv (see `crate::budget`). The model
//! follows the steps of [`super::render`]: every buffer that can be alive at the same moment is
//! counted, in the widest pixel layout it can have, so the figure is an upper bound (checked
//! against a counting allocator by `gateway/tests/render_memory.rs`), not an average.
//!
//! **Invariant:** pure arithmetic on the backend size and the [`RenderSpec`]; saturating, never
//! panics.

use super::geometry::{self, RotationKind};
use super::{OutputFormat, RenderSpec, Tone};

/// Bytes per pixel assumed for iipsrv's JPEG before it arrives. Photographs at iipsrv's
/// default quality (75) take 0.1–0.5; noise at quality 100 can take over 4. The estimate is
/// only the reservation made before asking iipsrv: once the JPEG is there, the reservation
/// grows to its real size ([`peak_bytes`] with the real length) before anything is decoded.
pub const BACKEND_JPEG_BYTES_PER_PIXEL: u64 = 1;

/// Bytes per backend pixel while decoding: the RGB pixels plus the decoder's own working rows
/// and component planes.
const DECODE_BYTES_PER_PIXEL: u64 = 6;

/// What iipsrv's JPEG of `backend` pixels is assumed to take before it arrives.
pub fn jpeg_estimate(backend: (u32, u32)) -> u64 {
    (u64::from(backend.0) * u64::from(backend.1)).saturating_mul(BACKEND_JPEG_BYTES_PER_PIXEL)
}

/// The worst case for a request whose JPEG from iipsrv is `backend` pixels and `jpeg_bytes`
/// long: the JPEG alone when it is passed through (`spec` is `None`), else everything
/// [`super::render`] allocates as well.
pub fn peak_bytes(backend: (u32, u32), spec: Option<&RenderSpec>, jpeg_bytes: u64) -> u64 {
    let Some(spec) = spec else {
        return jpeg_bytes;
    };
    let backend_pixels = u64::from(backend.0) * u64::from(backend.1);
    let (width, height) = output_size(backend, spec);
    let output_pixels = u64::from(width) * u64::from(height);
    let decoded = backend_pixels.saturating_mul(DECODE_BYTES_PER_PIXEL);
    jpeg_bytes
        .saturating_add(decoded)
        .saturating_add(output_pixels.saturating_mul(output_bytes_per_pixel(spec)))
}

/// The size of the image [`super::render`] encodes: the backend size, turned by the rotation.
pub fn output_size(backend: (u32, u32), spec: &RenderSpec) -> (u32, u32) {
    let degrees = if spec.degrees.is_finite() {
        spec.degrees
    } else {
        0.0
    };
    match geometry::rotation_kind(degrees) {
        RotationKind::QuarterTurns(turns) if turns % 2 == 1 => (backend.1, backend.0),
        RotationKind::QuarterTurns(_) => backend,
        RotationKind::Arbitrary => geometry::rotated_size(backend.0, backend.1, degrees),
    }
}

/// Bytes per output pixel of the buffers after decoding: the turned or rotated copy, the
/// gray, flattened or widened copies an encoder needs, and the encoded bytes as they grow.
fn output_bytes_per_pixel(spec: &RenderSpec) -> u64 {
    // A turned or rotated copy of the pixels (RGBA at most) next to the decoded ones.
    let turned = 4;
    // The gray conversion or flattening onto white makes one more copy.
    let toned = if spec.tone == Tone::AsIs { 0 } else { 4 };
    let encoder = match spec.format {
        // Widening to RGBA, the palette indices, and the quantiser's copy of the frame.
        OutputFormat::Gif => 4 + 1 + 4 + 1,
        // Widening gray+alpha to RGBA, and compressed strips no larger than the raw pixels.
        OutputFormat::Tiff => 4 + 4,
        // Filtered rows and deflate output, worst case near the raw size.
        OutputFormat::Png => 4 + 1,
        // The lossless encoder works on 32-bit ARGB pixels and keeps its transforms' output.
        OutputFormat::Webp => 4 * 3,
        OutputFormat::Jpeg => 3,
    };
    // Encoded output grows by doubling, so it can briefly hold twice what it has written.
    turned + toned + 2 * encoder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: OutputFormat, degrees: f64, tone: Tone) -> RenderSpec {
        RenderSpec {
            mirror: false,
            degrees,
            tone,
            format,
            jpeg_quality: 90,
        }
    }

    #[test]
    fn a_passthrough_holds_only_the_jpeg() {
        let estimate = jpeg_estimate((1000, 500));
        assert_eq!(estimate, 500_000 * BACKEND_JPEG_BYTES_PER_PIXEL);
        assert_eq!(peak_bytes((1000, 500), None, estimate), estimate);
        assert_eq!(peak_bytes((1000, 500), None, 77), 77);
    }

    #[test]
    fn quarter_turns_swap_sides_and_other_angles_grow_the_box() {
        let png = |degrees| spec(OutputFormat::Png, degrees, Tone::AsIs);
        assert_eq!(output_size((400, 100), &png(0.0)), (400, 100));
        assert_eq!(output_size((400, 100), &png(90.0)), (100, 400));
        assert_eq!(output_size((400, 100), &png(180.0)), (400, 100));
        assert_eq!(output_size((100, 50), &png(45.0)), (107, 107));
        assert_eq!(output_size((400, 100), &png(f64::NAN)), (400, 100));
    }

    #[test]
    fn the_worst_case_grows_with_rotation_and_format() {
        let jpeg = jpeg_estimate((1000, 1000));
        let at = |format, degrees| {
            peak_bytes((1000, 1000), Some(&spec(format, degrees, Tone::AsIs)), jpeg)
        };
        assert!(at(OutputFormat::Png, 45.0) > at(OutputFormat::Png, 0.0));
        assert!(at(OutputFormat::Gif, 0.0) > at(OutputFormat::Jpeg, 0.0));
        assert!(at(OutputFormat::Jpeg, 0.0) > peak_bytes((1000, 1000), None, jpeg));
    }

    #[test]
    fn the_largest_sizes_do_not_overflow() {
        let huge = spec(OutputFormat::Webp, 45.0, Tone::Bitonal);
        let max = (u32::MAX, u32::MAX);
        assert!(peak_bytes(max, Some(&huge), jpeg_estimate(max)) > 0);
    }
}

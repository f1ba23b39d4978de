//! Image post-processing: what stock iipsrv 1.1 cannot do itself.
//!
//! iipsrv only writes JPEG and only rotates by multiples of 90°. IIIF level 2 needs PNG, and the
//! gateway also offers GIF, WebP and TIFF and arbitrary rotation (`rotationArbitrary`). For those
//! requests the gateway asks iipsrv for a JPEG of the right region and size and [`render`] turns
//! it into the final image:
//!
//! 1. decode the JPEG (keeping its ICC profile);
//! 2. convert to gray for the gray and bitonal qualities;
//! 3. mirror and rotate ([`RenderSpec::mirror`], [`RenderSpec::degrees`]); the corners an
//!    arbitrary rotation uncovers are transparent, or white if the format has no alpha;
//! 4. flatten any other transparency onto white if the format has no alpha;
//! 5. threshold for bitonal;
//! 6. encode.
//!
//! Gray conversion comes before rotation because rotating one channel is cheaper than three and
//! gives the same result (both steps are weighted sums). The bitonal threshold comes after
//! rotation, because interpolation and the white background create in-between values.
//!
//! What this module does not do: HTTP, caching, choosing what to ask iipsrv for, or cropping and
//! scaling (iipsrv does both). A request iipsrv can answer as is never reaches it.

pub mod cost;
mod encode;
mod geometry;
mod sof;
mod tone;

#[cfg(test)]
mod tests;

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::error::{LimitError, LimitErrorKind};
use image::{DynamicImage, ImageDecoder, ImageError};

pub use sof::jpeg_dimensions;

use geometry::RotationKind;

/// The largest backend image, in pixels, that [`render`] will decode.
///
/// A JPEG header can claim up to 65 535 × 65 535 pixels (12 GiB of RGB) in a few bytes, so the
/// size is checked before allocating. 64 Mpx is far above anything iipsrv is asked for (its
/// `MAX_CVT` defaults to 5000 px a side), and a 45° rotation of it stays under 1 GiB of RGBA.
pub const MAX_DECODE_PIXELS: u64 = 64 * 1024 * 1024;

/// An output format the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// `jpg`.
    Jpeg,
    /// `png`, required for IIIF level 2.
    Png,
    /// `gif`, with a quantised palette of at most 256 colours.
    Gif,
    /// `webp`, always lossless (the only WebP encoder the image crate has).
    Webp,
    /// `tif`, deflate-compressed strips with a horizontal predictor.
    Tiff,
}

impl OutputFormat {
    /// The `Content-Type` of images in this format.
    pub fn mime(&self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Gif => "image/gif",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Tiff => "image/tiff",
        }
    }

    /// Whether the format can show transparency, and so leave the corners of an arbitrary
    /// rotation transparent instead of white.
    fn has_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }
}

/// The quality's effect on the output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// `color` and `default`: the pixels as decoded.
    AsIs,
    /// `gray`: single-channel 8-bit output (RGB for GIF, which has no gray mode; RGBA for a TIFF
    /// that needs transparent corners).
    Gray,
    /// `bitonal`: every pixel pure black or pure white (threshold 128 on the gray value).
    Bitonal,
}

/// What to do to the backend JPEG, in the order the fields are listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderSpec {
    /// Mirror left to right, before rotating. Only set when the gateway does
    /// the rotation itself (otherwise iipsrv has mirrored already).
    pub mirror: bool,
    /// Clockwise rotation, `0 ≤ degrees < 360`; non-zero only when the gateway rotates. Other
    /// finite values are reduced modulo 360; a non-finite value is treated as 0.
    pub degrees: f64,
    /// Enforced on the output pixels. iipsrv has usually applied it already; it is applied again
    /// so the rotation background and interpolated edges follow it too.
    pub tone: Tone,
    pub format: OutputFormat,
    /// JPEG quality, 1–100, used when re-encoding to JPEG.
    pub jpeg_quality: u8,
}

/// Why [`render`] failed.
#[derive(thiserror::Error, Debug)]
pub enum RenderError {
    /// The backend's bytes are not a complete JPEG we can decode, or it is implausibly large.
    /// This is a backend fault (HTTP 502 at the edge), not a client error.
    #[error("cannot decode the backend JPEG")]
    Decode(#[source] ImageError),
    /// The final image could not be encoded (for example a GIF side over 65 535 px).
    #[error("cannot encode the output image")]
    Encode(#[source] ImageError),
}

/// Decodes iipsrv's JPEG, applies `spec` and encodes the result.
///
/// Pure CPU work that can take tens of milliseconds on large images; the caller runs it on a
/// blocking thread. It does not panic on any input: undecodable, truncated or oversized JPEGs
/// give [`RenderError::Decode`].
pub fn render(backend_jpeg: &[u8], spec: &RenderSpec) -> Result<Vec<u8>, RenderError> {
    let (mut image, icc_profile) = decode(backend_jpeg)?;

    if spec.tone != Tone::AsIs {
        image = tone::into_gray(image);
    }

    let degrees = if spec.degrees.is_finite() {
        spec.degrees
    } else {
        0.0
    };
    match geometry::rotation_kind(degrees) {
        RotationKind::QuarterTurns(quarter_turns) => {
            geometry::transpose(&mut image, spec.mirror, quarter_turns);
        }
        RotationKind::Arbitrary => {
            // For JPEG the corners are filled with white while resampling, which saves an
            // alpha channel and a compositing pass over the whole image.
            let corners = if spec.format.has_alpha() {
                geometry::Corners::Transparent
            } else {
                geometry::Corners::White
            };
            image = geometry::rotate_bilinear(&image, spec.mirror, degrees, corners);
        }
    }

    if !spec.format.has_alpha() {
        // Only does anything for a source JPEG with alpha, which iipsrv does not write.
        image = tone::flatten_onto_white(image);
    }
    if spec.tone == Tone::Bitonal {
        tone::threshold(&mut image);
    }

    encode::encode(image, spec.format, spec.jpeg_quality, icc_profile).map_err(RenderError::Encode)
}

/// Decodes a complete JPEG and returns its pixels and embedded ICC profile.
fn decode(jpeg: &[u8]) -> Result<(DynamicImage, Option<Vec<u8>>), RenderError> {
    // The decoder is lenient: it fills a truncated image with gray and reports success. A cut
    // off backend response must not be served (and cached) as a half-gray image, so require the
    // end-of-image marker that every complete JPEG from iipsrv (libjpeg) ends with.
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(RenderError::Decode(ImageError::IoError(
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the JPEG does not end with an end-of-image marker (truncated?)",
            ),
        )));
    }
    let mut decoder = JpegDecoder::new(Cursor::new(jpeg)).map_err(RenderError::Decode)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS {
        return Err(RenderError::Decode(ImageError::Limits(
            LimitError::from_kind(LimitErrorKind::DimensionError),
        )));
    }
    // A malformed ICC segment is not worth failing the image for; it is just not copied.
    let icc_profile = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(RenderError::Decode)?;
    Ok((image, icc_profile))
}

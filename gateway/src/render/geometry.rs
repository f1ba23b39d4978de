//! Mirroring and rotation.
//!
//! Rotations by a multiple of 90° are exact pixel transposes (no interpolation, so they are
//! lossless and the size is exactly swapped or kept). Any other angle goes through
//! [`rotate_bilinear`], an own implementation (no `imageproc`): the output is the rotated
//! image's bounding box, whose uncovered corners are transparent or, for formats without
//! alpha, white.
//!
//! Coordinates follow the image convention: x grows to the right, y grows downwards, and a pixel
//! `(i, j)` covers the square `[i, i + 1) × [j, j + 1)`, so its centre is at `(i + 0.5, j + 0.5)`.

use image::metadata::Orientation;
use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};

/// A rotation within this many degrees of a multiple of 90° is done as an exact transpose.
///
/// IIIF allows up to ten decimals in the rotation, so `90.0000000001` is a legal request. Over
/// the largest JPEG side (65 535 px) an error of 1e-6° moves no pixel by more than 0.0012 px,
/// which is invisible, while interpolating would blur the whole image and grow its box.
const RIGHT_ANGLE_TOLERANCE_DEGREES: f64 = 1e-6;

/// Slack subtracted from the exact bounding box before rounding it up.
///
/// Without it, floating-point noise in `sin`/`cos` or an angle a hair off a right angle (say
/// 89.99999°, which is not snapped to a transpose) would push a side a few millionths of a pixel
/// past a whole number, and the ceiling would add a row or column of fully transparent pixels.
/// Cutting off a thousandth of a pixel of a corner instead is invisible.
const BOUNDING_BOX_SLACK_PIXELS: f64 = 1e-3;

/// How a rotation by `degrees` will be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RotationKind {
    /// A multiple of 90°: the number of clockwise quarter turns, 0–3.
    QuarterTurns(u8),
    /// Any other angle, which needs resampling.
    Arbitrary,
}

/// Classifies a clockwise rotation in degrees; any finite value is accepted and reduced modulo
/// 360.
pub(crate) fn rotation_kind(degrees: f64) -> RotationKind {
    let quarters = (degrees / 90.0).round();
    if (degrees - quarters * 90.0).abs() < RIGHT_ANGLE_TOLERANCE_DEGREES {
        // `rem_euclid` keeps the count in 0..4 for negative and large inputs alike.
        RotationKind::QuarterTurns((quarters.rem_euclid(4.0)) as u8)
    } else {
        RotationKind::Arbitrary
    }
}

/// Applies the optional horizontal mirror and then a rotation by whole quarter turns, without
/// resampling.
///
/// The mirror comes first, as IIIF requires. Mirror-then-rotate is expressed with the image
/// crate's EXIF orientations, which are defined as rotate-then-flip; the pairs below are equal
/// as pixel maps (for example, mirroring and then turning 90° clockwise sends `(x, y)` to
/// `(−y, −x)`, as does turning 270° and then mirroring).
pub(crate) fn transpose(image: &mut DynamicImage, mirror: bool, quarter_turns: u8) {
    let orientation = match (mirror, quarter_turns % 4) {
        (false, 0) => return,
        (false, 1) => Orientation::Rotate90,
        (false, 2) => Orientation::Rotate180,
        (false, _) => Orientation::Rotate270,
        (true, 0) => Orientation::FlipHorizontal,
        (true, 1) => Orientation::Rotate270FlipH,
        (true, 2) => Orientation::FlipVertical,
        (true, _) => Orientation::Rotate90FlipH,
    };
    image.apply_orientation(orientation);
}

/// The size of the output of a rotation of a `width × height` image by `degrees`.
///
/// Rounding rule: each side of the exact bounding box of the rotated rectangle
/// (`w·|cos θ| + h·|sin θ|` by `w·|sin θ| + h·|cos θ|`) is rounded **up** to whole pixels, after
/// subtracting [`BOUNDING_BOX_SLACK_PIXELS`], and is at least 1. Rounding up keeps every source
/// pixel in the output; the rotated image stays centred in the box, so the extra fraction of a
/// pixel is shared between opposite edges. For 100 × 50 at 45° the exact box is
/// 150/√2 ≈ 106.07 px square, so the output is 107 × 107.
pub(crate) fn rotated_size(width: u32, height: u32, degrees: f64) -> (u32, u32) {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (sin, cos) = (sin.abs(), cos.abs());
    let (width, height) = (f64::from(width), f64::from(height));
    let side = |exact: f64| (exact - BOUNDING_BOX_SLACK_PIXELS).ceil().max(1.0) as u32;
    (
        side(width * cos + height * sin),
        side(width * sin + height * cos),
    )
}

/// What fills the parts of the bounding box that the rotated image does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corners {
    /// Alpha 0; the output has an alpha channel.
    Transparent,
    /// Opaque white; the output has no alpha channel (for JPEG).
    White,
}

/// Rotates clockwise by any angle with bilinear sampling, mirroring first if asked.
///
/// Each output pixel centre is mapped back into the source by the inverse rotation about the
/// two images' centres, and the (up to) four source pixels around that point are blended.
/// Pixels outside the source count as transparent and the blend uses premultiplied alpha, so:
/// * the uncovered corners are transparent, or white with [`Corners::White`];
/// * along the rotated edges the image fades smoothly into the corners (antialiased edges),
///   without the dark fringe that blending with transparent black would leave.
///
/// The input may be 8-bit gray or RGB, with or without alpha. The output is gray for gray
/// input and RGB otherwise, plus alpha with [`Corners::Transparent`].
pub(crate) fn rotate_bilinear(
    image: &DynamicImage,
    mirror: bool,
    degrees: f64,
    corners: Corners,
) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    let out_size = rotated_size(width, height, degrees);
    let gray = !image.color().has_color();
    // An RGBA or gray+alpha source is rare (iipsrv writes neither), so it is converted once to
    // 8-bit and takes the general path; the usual gray and RGB sources are used in place.
    let converted;
    let source = match image {
        DynamicImage::ImageLuma8(buffer) => Source::opaque(buffer.as_raw(), width, height, 1),
        DynamicImage::ImageRgb8(buffer) => Source::opaque(buffer.as_raw(), width, height, 3),
        _ if gray => {
            converted = image.to_luma_alpha8().into_raw();
            Source::with_alpha(&converted, width, height, 2)
        }
        _ => {
            converted = image.to_rgba8().into_raw();
            Source::with_alpha(&converted, width, height, 4)
        }
    };
    let pixels = if gray {
        resample::<1>(&source, mirror, degrees, out_size, corners)
    } else {
        resample::<3>(&source, mirror, degrees, out_size, corners)
    };
    package(pixels, gray, corners, out_size)
}

fn package(
    pixels: Vec<u8>,
    gray: bool,
    corners: Corners,
    (width, height): (u32, u32),
) -> DynamicImage {
    // The buffer length is `width × height × channels` by construction in `resample`, so the
    // constructors cannot fail; the fallback only exists so this can never panic.
    let packaged = match (gray, corners) {
        (true, Corners::Transparent) => {
            GrayAlphaImage::from_raw(width, height, pixels).map(DynamicImage::ImageLumaA8)
        }
        (true, Corners::White) => {
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        (false, Corners::Transparent) => {
            RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
        }
        (false, Corners::White) => {
            RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
    };
    packaged.unwrap_or_else(|| DynamicImage::new_rgba8(width, height))
}

/// An interleaved 8-bit source image; alpha, when present, is the last channel.
struct Source<'a> {
    pixels: &'a [u8],
    width: u32,
    height: u32,
    channels: usize,
    has_alpha: bool,
}

impl<'a> Source<'a> {
    fn opaque(pixels: &'a [u8], width: u32, height: u32, channels: usize) -> Self {
        Source {
            pixels,
            width,
            height,
            channels,
            has_alpha: false,
        }
    }

    fn with_alpha(pixels: &'a [u8], width: u32, height: u32, channels: usize) -> Self {
        Source {
            has_alpha: true,
            ..Source::opaque(pixels, width, height, channels)
        }
    }
}

/// Fractional bits of the fixed-point bilinear weights on the fast path. Eight bits give
/// 1/256 px steps, finer than 8-bit output can show, and keep every product in a `u32`.
const WEIGHT_BITS: u32 = 8;
const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;

/// The inverse-mapping loop. `COLOURS` is the number of colour channels (1 or 3); the output has
/// those plus alpha with [`Corners::Transparent`], and just those with [`Corners::White`].
fn resample<const COLOURS: usize>(
    source: &Source<'_>,
    mirror: bool,
    degrees: f64,
    (out_width, out_height): (u32, u32),
    corners: Corners,
) -> Vec<u8> {
    let out_channels = COLOURS + usize::from(corners == Corners::Transparent);
    let mut output = vec![0u8; out_width as usize * out_height as usize * out_channels];
    if corners == Corners::White {
        output.fill(255);
    }
    let (width, height) = (f64::from(source.width), f64::from(source.height));
    let (sin, cos) = degrees.to_radians().sin_cos();

    // A clockwise turn by θ (with y pointing down) sends an offset (dx, dy) from the centre to
    // (dx·cos θ − dy·sin θ, dx·sin θ + dy·cos θ); the inverse used here is the turn by −θ.
    // `u`, `v` are source coordinates in "pixel index" space: pixel (i, j) has its centre at
    // u = i, v = j, which makes the bilinear neighbours simply floor(u) and floor(u) + 1.
    // Mirroring first means reading mirrored column i from source column (width − 1 − i), so
    // it only flips the sign of u around the centre.
    let mirror_sign = if mirror { -1.0 } else { 1.0 };
    let out_centre_x = f64::from(out_width) / 2.0;
    let out_centre_y = f64::from(out_height) / 2.0;
    let source_centre_u = width / 2.0 - 0.5;
    let source_centre_v = height / 2.0 - 0.5;
    // The fast path needs all four neighbours inside: 0 ≤ u < width − 1, likewise v.
    let (last_u, last_v) = (width - 1.0, height - 1.0);
    let row_length = out_width as usize * out_channels;
    let source_row_length = source.width as usize * source.channels;

    for (row_index, row) in output.chunks_exact_mut(row_length).enumerate() {
        let dy = row_index as f64 + 0.5 - out_centre_y;
        for (column_index, pixel) in row.chunks_exact_mut(out_channels).enumerate() {
            let dx = column_index as f64 + 0.5 - out_centre_x;
            let u = source_centre_u + mirror_sign * (dx * cos + dy * sin);
            let v = source_centre_v - dx * sin + dy * cos;
            if !source.has_alpha && u >= 0.0 && v >= 0.0 && u < last_u && v < last_v {
                // Interior of an opaque source: all four neighbours exist, integer blend.
                let (u0, v0) = (u as usize, v as usize);
                let fu = ((u - u0 as f64) * f64::from(WEIGHT_ONE)) as u32;
                let fv = ((v - v0 as f64) * f64::from(WEIGHT_ONE)) as u32;
                let top = v0 * source_row_length + u0 * COLOURS;
                let bottom = top + source_row_length;
                let (Some(top), Some(bottom)) = (
                    source.pixels.get(top..top + 2 * COLOURS),
                    source.pixels.get(bottom..bottom + 2 * COLOURS),
                ) else {
                    continue;
                };
                for channel in 0..COLOURS {
                    let blend = |pair: &[u8]| {
                        u32::from(pair[channel]) * (WEIGHT_ONE - fu)
                            + u32::from(pair[channel + COLOURS]) * fu
                    };
                    let value = blend(top) * (WEIGHT_ONE - fv) + blend(bottom) * fv;
                    pixel[channel] =
                        ((value + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)) as u8;
                }
                if corners == Corners::Transparent {
                    pixel[COLOURS] = 255;
                }
            } else if u > -1.0 && v > -1.0 && u < width && v < height {
                edge_pixel::<COLOURS>(source, u, v, pixel, corners);
            }
            // Otherwise no source pixel is within reach: leave the background.
        }
    }
    output
}

/// Bilinear sampling near or beyond the source's border (or of a source with alpha), where
/// some neighbours are missing or partly transparent. Missing neighbours count as transparent.
fn edge_pixel<const COLOURS: usize>(
    source: &Source<'_>,
    u: f64,
    v: f64,
    pixel: &mut [u8],
    corners: Corners,
) {
    let (u0, v0) = (u.floor(), v.floor());
    let (fu, fv) = (u - u0, v - v0);
    let (u0, v0) = (u0 as i64, v0 as i64);
    // Premultiplied colour sums and the covered fraction (the alpha, 0–1).
    let mut premultiplied = [0f64; COLOURS];
    let mut coverage = 0f64;
    for (neighbour_u, neighbour_v, weight) in [
        (u0, v0, (1.0 - fu) * (1.0 - fv)),
        (u0 + 1, v0, fu * (1.0 - fv)),
        (u0, v0 + 1, (1.0 - fu) * fv),
        (u0 + 1, v0 + 1, fu * fv),
    ] {
        if neighbour_u < 0
            || neighbour_v < 0
            || neighbour_u >= i64::from(source.width)
            || neighbour_v >= i64::from(source.height)
            || weight <= 0.0
        {
            continue;
        }
        let start =
            (neighbour_v as usize * source.width as usize + neighbour_u as usize) * source.channels;
        let Some(texel) = source.pixels.get(start..start + source.channels) else {
            continue;
        };
        let alpha = if source.has_alpha {
            f64::from(texel[COLOURS]) / 255.0
        } else {
            1.0
        };
        coverage += weight * alpha;
        for (sum, &value) in premultiplied.iter_mut().zip(&texel[..COLOURS]) {
            *sum += weight * alpha * f64::from(value);
        }
    }
    let to_byte = |value: f64| value.round().clamp(0.0, 255.0) as u8;
    match corners {
        Corners::Transparent => {
            if coverage > 0.0 {
                for (target, sum) in pixel.iter_mut().zip(premultiplied) {
                    *target = to_byte(sum / coverage);
                }
                pixel[COLOURS] = to_byte(coverage * 255.0);
            }
        }
        Corners::White => {
            // "Over" compositing onto white: colour·alpha + white·(1 − alpha).
            for (target, sum) in pixel.iter_mut().zip(premultiplied) {
                *target = to_byte(sum + 255.0 * (1.0 - coverage));
            }
        }
    }
}

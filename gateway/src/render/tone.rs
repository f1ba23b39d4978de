//! Gray and bitonal qualities, and flattening transparency onto a background.

use image::{DynamicImage, GrayImage};

/// Bitonal threshold on the 8-bit gray value: values at or above it become white.
const BITONAL_THRESHOLD: u8 = 128;

/// Converts the image to 8-bit gray (keeping an alpha channel if there is one).
///
/// Already-gray images are moved, not copied. The conversion uses the image crate's sRGB luma
/// weights (Rec. 709); iipsrv's own gray output is used as is, since it arrives single-channel.
pub(crate) fn into_gray(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLumaA8(_) => image,
        image if image.color().has_alpha() => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        image => DynamicImage::ImageLuma8(image.to_luma8()),
    }
}

/// Makes every pixel pure black or pure white, in place.
///
/// Expects the output of [`into_gray`]. Alpha, when present, is thresholded too, so an
/// antialiased rotated edge does not show as gray once composited: bitonal output has exactly
/// two visible tones.
pub(crate) fn threshold(image: &mut DynamicImage) {
    let threshold_value = |value: &mut u8| {
        *value = if *value >= BITONAL_THRESHOLD { 255 } else { 0 };
    };
    match image {
        DynamicImage::ImageLuma8(buffer) => buffer.iter_mut().for_each(threshold_value),
        DynamicImage::ImageLumaA8(buffer) => buffer.iter_mut().for_each(threshold_value),
        other => {
            // Not reached through `render`, which converts to gray first; handled anyway so a
            // future caller cannot get colour pixels out of a bitonal request.
            let mut gray = into_gray(std::mem::take(other));
            threshold(&mut gray);
            *other = gray;
        }
    }
}

/// Composites an image with alpha onto an opaque white background, dropping the alpha channel.
///
/// Used for formats without transparency (JPEG). Images without alpha are returned unchanged.
pub(crate) fn flatten_onto_white(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLumaA8(buffer) => {
            let (width, height) = buffer.dimensions();
            let pixels = flatten_pixels(buffer.as_raw(), 1);
            GrayImage::from_raw(width, height, pixels)
                .map(DynamicImage::ImageLuma8)
                .unwrap_or_else(|| DynamicImage::new_luma8(width, height))
        }
        DynamicImage::ImageRgba8(buffer) => {
            let (width, height) = buffer.dimensions();
            let pixels = flatten_pixels(buffer.as_raw(), 3);
            image::RgbImage::from_raw(width, height, pixels)
                .map(DynamicImage::ImageRgb8)
                .unwrap_or_else(|| DynamicImage::new_rgb8(width, height))
        }
        image if image.color().has_alpha() => {
            // 16-bit or float images with alpha; the JPEG decoder never produces them.
            flatten_onto_white(DynamicImage::ImageRgba8(image.to_rgba8()))
        }
        image => image,
    }
}

/// `colour × alpha + white × (1 − alpha)` per channel, rounded, for interleaved 8-bit pixels
/// whose last channel is alpha.
fn flatten_pixels(pixels: &[u8], colour_channels: usize) -> Vec<u8> {
    let mut flattened = Vec::with_capacity(pixels.len() / (colour_channels + 1) * colour_channels);
    for pixel in pixels.chunks_exact(colour_channels + 1) {
        let alpha = u32::from(pixel[colour_channels]);
        for &value in &pixel[..colour_channels] {
            let blended = (u32::from(value) * alpha + 255 * (255 - alpha) + 127) / 255;
            flattened.push(blended as u8);
        }
    }
    flattened
}

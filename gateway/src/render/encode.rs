//! Encoding the processed pixels in the requested output format, with the source's ICC profile.

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::error::{EncodingError, ImageFormatHint, UnsupportedError, UnsupportedErrorKind};
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageError, ImageFormat, ImageResult};
use tiff::encoder::colortype::{self, ColorType};
use tiff::encoder::{Compression, DeflateLevel, Predictor, TiffEncoder, TiffValue};
use tiff::tags::Tag;

use super::OutputFormat;

/// GIF palette quantiser speed, 1 (best, very slow) to 30 (fastest).
///
/// The image crate's default is 1, which costs seconds on a large image. 10 is the gif crate's
/// own default for `Frame::from_rgba` and looks the same on photographs. It only matters for
/// images with more than 256 colours: gray and bitonal images get an exact palette.
const GIF_QUANTISER_SPEED: i32 = 10;

/// Encodes `image` as `format`.
///
/// `image` must already suit the format: no alpha for JPEG (see `tone::flatten_onto_white`).
/// Pixel layouts an encoder cannot take are widened here: gray becomes RGB for GIF, and gray
/// with alpha becomes RGBA for GIF and TIFF (the image crate's TIFF encoder has no gray+alpha
/// layout, and keeping the transparent corners matters more than keeping one channel).
///
/// `icc_profile` is embedded if the format and encoder support it and the profile's colour
/// space matches the pixels written (an RGB profile on gray pixels, as left by a gray
/// conversion, or a CMYK profile on the RGB pixels the decoder produced, would be wrong and is
/// rejected by some readers). PNG, JPEG, WebP and TIFF support it; the image crate's GIF
/// encoder does not (GIF can only carry ICC in a non-standard application extension).
pub(crate) fn encode(
    image: DynamicImage,
    format: OutputFormat,
    jpeg_quality: u8,
    icc_profile: Option<Vec<u8>>,
) -> ImageResult<Vec<u8>> {
    let image = widen_for(format, image);
    let (width, height) = (image.width(), image.height());
    let colour_type = image.color();
    let icc_profile = icc_profile.filter(|profile| profile_matches(profile, &image));
    // A `Vec` grows as needed; the estimate only saves a few reallocations on large outputs.
    let mut output = Vec::with_capacity(image.as_bytes().len() / 4);
    match format {
        OutputFormat::Jpeg => write(
            JpegEncoder::new_with_quality(&mut output, jpeg_quality.clamp(1, 100)),
            &image,
            icc_profile,
        )?,
        OutputFormat::Png => write(
            // Tiles are requested far more often than they are stored; fast deflate costs some
            // size but keeps a 256 px tile in the low milliseconds.
            PngEncoder::new_with_quality(&mut output, CompressionType::Fast, FilterType::Adaptive),
            &image,
            icc_profile,
        )?,
        OutputFormat::Webp => write(WebPEncoder::new_lossless(&mut output), &image, icc_profile)?,
        OutputFormat::Tiff => write_tiff(&mut output, &image, icc_profile)?,
        OutputFormat::Gif => {
            // No ICC support (see above), so the profile is dropped.
            let mut encoder = GifEncoder::new_with_speed(&mut output, GIF_QUANTISER_SPEED);
            encoder.encode(image.as_bytes(), width, height, colour_type.into())?;
        }
    }
    Ok(output)
}

/// Sets the ICC profile if there is one and writes the pixels.
fn write(
    mut encoder: impl ImageEncoder,
    image: &DynamicImage,
    icc_profile: Option<Vec<u8>>,
) -> ImageResult<()> {
    if let Some(profile) = icc_profile {
        // Only fails for encoders without ICC support, which are not routed here; the image is
        // still worth sending without the profile.
        if let Err(error) = encoder.set_icc_profile(profile) {
            log::debug!("ICC profile not embedded: {error}");
        }
    }
    encoder.write_image(
        image.as_bytes(),
        image.width(),
        image.height(),
        ExtendedColorType::from(image.color()),
    )
}

/// Writes a TIFF with deflate-compressed strips: the image crate's own TIFF writer only writes
/// uncompressed files, four bytes per pixel for an RGBA rotation (a 5000 px square, rotated, was
/// a 200 MB body). Fast deflate with the horizontal predictor (TIFF 6.0 §14) is what libtiff
/// readers and viewers all understand, at a fraction of that size.
fn write_tiff(
    output: &mut Vec<u8>,
    image: &DynamicImage,
    icc_profile: Option<Vec<u8>>,
) -> ImageResult<()> {
    // The TIFF writer seeks back to patch offsets, hence the cursor.
    let encoder = TiffEncoder::new(Cursor::new(output)).map_err(tiff_error)?;
    let mut encoder = encoder
        .with_compression(Compression::Deflate(DeflateLevel::Fast))
        .with_predictor(Predictor::Horizontal);
    let (width, height) = (image.width(), image.height());
    match image {
        DynamicImage::ImageLuma8(pixels) => {
            tiff_image::<colortype::Gray8>(&mut encoder, width, height, pixels, icc_profile)
        }
        DynamicImage::ImageRgb8(pixels) => {
            tiff_image::<colortype::RGB8>(&mut encoder, width, height, pixels, icc_profile)
        }
        DynamicImage::ImageRgba8(pixels) => {
            tiff_image::<colortype::RGBA8>(&mut encoder, width, height, pixels, icc_profile)
        }
        // `widen_for` leaves only the layouts above; the decoder makes no others.
        other => Err(ImageError::Unsupported(
            UnsupportedError::from_format_and_kind(
                ImageFormat::Tiff.into(),
                UnsupportedErrorKind::Color(other.color().into()),
            ),
        )),
    }
}

fn tiff_image<C: ColorType<Inner = u8>>(
    encoder: &mut TiffEncoder<Cursor<&mut Vec<u8>>>,
    width: u32,
    height: u32,
    pixels: &[u8],
    icc_profile: Option<Vec<u8>>,
) -> ImageResult<()>
where
    [u8]: TiffValue,
{
    let mut image = encoder.new_image::<C>(width, height).map_err(tiff_error)?;
    if let Some(profile) = icc_profile {
        image
            .encoder()
            .write_tag(Tag::IccProfile, profile.as_slice())
            .map_err(tiff_error)?;
    }
    image.write_data(pixels).map_err(tiff_error)
}

fn tiff_error(error: tiff::TiffError) -> ImageError {
    ImageError::Encoding(EncodingError::new(
        ImageFormatHint::Exact(ImageFormat::Tiff),
        error,
    ))
}

/// Converts pixel layouts that `format`'s encoder does not accept into ones it does.
fn widen_for(format: OutputFormat, image: DynamicImage) -> DynamicImage {
    match (format, image) {
        (OutputFormat::Gif, DynamicImage::ImageLuma8(buffer)) => {
            DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(buffer).to_rgb8())
        }
        (OutputFormat::Gif | OutputFormat::Tiff, DynamicImage::ImageLumaA8(buffer)) => {
            DynamicImage::ImageRgba8(DynamicImage::ImageLumaA8(buffer).to_rgba8())
        }
        (_, image) => image,
    }
}

/// Whether an ICC profile describes the colour model of `image`'s pixels.
///
/// Bytes 16–19 of an ICC profile header name its data colour space (ICC.1:2022 §7.2.6).
fn profile_matches(profile: &[u8], image: &DynamicImage) -> bool {
    let expected: &[u8] = if image.color().has_color() {
        b"RGB "
    } else {
        b"GRAY"
    };
    profile.get(16..20) == Some(expected)
}

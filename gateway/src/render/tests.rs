//! Tests for `render` and `jpeg_dimensions`, asserting on decoded pixels.
//!
//! The source image is a 100 × 50 JPEG with four coloured quadrants and a magenta patch in the
//! middle; colours are compared with a tolerance because the source went through JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{
    DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage,
};
use proptest::prelude::*;

use super::*;

const RED: [u8; 3] = [220, 30, 30];
const GREEN: [u8; 3] = [30, 200, 30];
const BLUE: [u8; 3] = [30, 30, 220];
const YELLOW: [u8; 3] = [230, 220, 30];
const MAGENTA: [u8; 3] = [200, 30, 200];
const WHITE: [u8; 3] = [255, 255, 255];

/// Sample points well inside each quadrant of the 100 × 50 source, away from the centre patch
/// and from JPEG ringing at the edges, with the quadrant's colour.
const QUADRANT_SAMPLES: [((u32, u32), [u8; 3]); 4] = [
    ((10, 10), RED),
    ((89, 10), GREEN),
    ((10, 39), BLUE),
    ((89, 39), YELLOW),
];

const ALL_FORMATS: [OutputFormat; 5] = [
    OutputFormat::Jpeg,
    OutputFormat::Png,
    OutputFormat::Gif,
    OutputFormat::Webp,
    OutputFormat::Tiff,
];

fn quadrant_image(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let in_centre = (width * 2 / 5..width * 3 / 5).contains(&x)
            && (height * 2 / 5..height * 3 / 5).contains(&y);
        let colour = match (in_centre, x < width / 2, y < height / 2) {
            (true, _, _) => MAGENTA,
            (false, true, true) => RED,
            (false, false, true) => GREEN,
            (false, true, false) => BLUE,
            (false, false, false) => YELLOW,
        };
        Rgb(colour)
    })
}

fn encode_jpeg(image: &RgbImage, icc_profile: Option<Vec<u8>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 95);
    if let Some(profile) = icc_profile {
        encoder.set_icc_profile(profile).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    bytes
}

fn source_jpeg() -> Vec<u8> {
    encode_jpeg(&quadrant_image(100, 50), None)
}

fn spec(format: OutputFormat) -> RenderSpec {
    RenderSpec {
        mirror: false,
        degrees: 0.0,
        tone: Tone::AsIs,
        format,
        jpeg_quality: 90,
    }
}

fn render_and_decode(jpeg: &[u8], spec: &RenderSpec) -> DynamicImage {
    let bytes = render(jpeg, spec).unwrap();
    image::load_from_memory(&bytes).unwrap()
}

fn rgba_at(image: &DynamicImage, x: u32, y: u32) -> [u8; 4] {
    image.to_rgba8().get_pixel(x, y).0
}

#[track_caller]
fn assert_colour(image: &DynamicImage, (x, y): (u32, u32), expected: [u8; 3], what: &str) {
    let actual = rgba_at(image, x, y);
    let close = actual[..3]
        .iter()
        .zip(expected)
        .all(|(&a, e)| a.abs_diff(e) <= 24);
    assert!(
        close && actual[3] == 255,
        "{what}: pixel ({x}, {y}) is {actual:?}, expected about {expected:?} and opaque"
    );
}

/// Where the source point `(x, y)` (a pixel centre) lands after mirroring (optional) and a
/// clockwise rotation about the centre, in an output of `out_size`, as the formula in the IIIF
/// spec describes it; independent of the implementation's inverse mapping.
fn forward_map(
    (x, y): (u32, u32),
    source_size: (u32, u32),
    mirror: bool,
    degrees: f64,
    out_size: (u32, u32),
) -> (u32, u32) {
    let (width, height) = (f64::from(source_size.0), f64::from(source_size.1));
    let mut px = f64::from(x) + 0.5;
    if mirror {
        px = width - px;
    }
    let (dx, dy) = (px - width / 2.0, f64::from(y) + 0.5 - height / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let rx = dx * cos - dy * sin + f64::from(out_size.0) / 2.0;
    let ry = dx * sin + dy * cos + f64::from(out_size.1) / 2.0;
    (rx.floor() as u32, ry.floor() as u32)
}

// === formats ===

#[test]
fn every_format_decodes_back_with_the_right_size_magic_and_colours() {
    let jpeg = source_jpeg();
    for format in ALL_FORMATS {
        let bytes = render(&jpeg, &spec(format)).unwrap();
        let (magic, expected_format): (&[u8], ImageFormat) = match format {
            OutputFormat::Jpeg => (b"\xFF\xD8\xFF", ImageFormat::Jpeg),
            OutputFormat::Png => (b"\x89PNG\r\n\x1A\n", ImageFormat::Png),
            OutputFormat::Gif => (b"GIF89a", ImageFormat::Gif),
            OutputFormat::Webp => (b"RIFF", ImageFormat::WebP),
            OutputFormat::Tiff => (b"II*\0", ImageFormat::Tiff),
        };
        assert!(bytes.starts_with(magic), "{format:?} magic");
        if format == OutputFormat::Webp {
            assert_eq!(&bytes[8..12], b"WEBP");
        }
        assert_eq!(image::guess_format(&bytes).unwrap(), expected_format);
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (100, 50), "{format:?}");
        for (point, colour) in QUADRANT_SAMPLES {
            assert_colour(&decoded, point, colour, &format!("{format:?}"));
        }
    }
}

#[test]
fn mime_types() {
    let mimes: Vec<_> = ALL_FORMATS.iter().map(OutputFormat::mime).collect();
    assert_eq!(
        mimes,
        [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/tiff"
        ]
    );
}

#[test]
fn lossless_formats_keep_the_decoded_pixels_exactly() {
    let jpeg = source_jpeg();
    let decoded_source = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    for format in [OutputFormat::Png, OutputFormat::Webp, OutputFormat::Tiff] {
        let output = render_and_decode(&jpeg, &spec(format)).to_rgb8();
        assert!(output == decoded_source, "{format:?} changed pixels");
    }
}

// === mirror ===

#[test]
fn mirror_flips_left_and_right() {
    let mut spec = spec(OutputFormat::Png);
    spec.mirror = true;
    let image = render_and_decode(&source_jpeg(), &spec);
    assert_eq!((image.width(), image.height()), (100, 50));
    assert_colour(&image, (10, 10), GREEN, "mirrored top-left");
    assert_colour(&image, (89, 10), RED, "mirrored top-right");
    assert_colour(&image, (10, 39), YELLOW, "mirrored bottom-left");
    assert_colour(&image, (89, 39), BLUE, "mirrored bottom-right");
}

// === quarter turns ===

#[test]
fn quarter_turns_are_exact_transposes() {
    let jpeg = source_jpeg();
    let source = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let (w, h) = source.dimensions();
    // For each rotation: the output size and where output pixel (x, y) comes from.
    type SourceOf = fn(u32, u32, u32, u32) -> (u32, u32);
    let cases: [(f64, (u32, u32), SourceOf); 4] = [
        (0.0, (w, h), |x, y, _, _| (x, y)),
        (90.0, (h, w), |x, y, _, h| (y, h - 1 - x)),
        (180.0, (w, h), |x, y, w, h| (w - 1 - x, h - 1 - y)),
        (270.0, (h, w), |x, y, w, _| (w - 1 - y, x)),
    ];
    for (degrees, size, source_of) in cases {
        let mut spec = spec(OutputFormat::Png);
        spec.degrees = degrees;
        let output = render_and_decode(&jpeg, &spec);
        assert_eq!(
            output.color(),
            image::ColorType::Rgb8,
            "no alpha at {degrees}°"
        );
        let output = output.to_rgb8();
        assert_eq!(output.dimensions(), size, "{degrees}°");
        for (x, y, pixel) in output.enumerate_pixels() {
            let (sx, sy) = source_of(x, y, w, h);
            assert_eq!(pixel, source.get_pixel(sx, sy), "{degrees}° at ({x}, {y})");
        }
    }
}

#[test]
fn quarter_turns_put_the_corners_in_the_right_place() {
    let jpeg = source_jpeg();
    // Output corners (top-left, top-right, bottom-left, bottom-right) per clockwise rotation.
    let cases = [
        (90.0, (50, 100), [BLUE, RED, YELLOW, GREEN]),
        (180.0, (100, 50), [YELLOW, BLUE, GREEN, RED]),
        (270.0, (50, 100), [GREEN, YELLOW, RED, BLUE]),
    ];
    for (degrees, (width, height), corners) in cases {
        let mut spec = spec(OutputFormat::Jpeg);
        spec.degrees = degrees;
        let image = render_and_decode(&jpeg, &spec);
        assert_eq!((image.width(), image.height()), (width, height));
        let points = [
            (5, 5),
            (width - 6, 5),
            (5, height - 6),
            (width - 6, height - 6),
        ];
        for (point, colour) in points.into_iter().zip(corners) {
            assert_colour(&image, point, colour, &format!("{degrees}°"));
        }
    }
}

#[test]
fn nearly_right_angles_do_not_grow_the_box() {
    let jpeg = source_jpeg();
    let mut exact = spec(OutputFormat::Png);
    exact.degrees = 90.0;
    let exact_bytes = render(&jpeg, &exact).unwrap();
    for degrees in [90.0000000001, 89.9999999999] {
        let mut nearly = exact.clone();
        nearly.degrees = degrees;
        assert_eq!(render(&jpeg, &nearly).unwrap(), exact_bytes, "{degrees}°");
    }
    // 1e-5° off is resampled, but the box still rounds to the exact size.
    assert_eq!(geometry::rotated_size(100, 50, 90.00001), (50, 100));
    assert_eq!(geometry::rotated_size(100, 50, 359.99999), (100, 50));
    assert_eq!(
        geometry::rotation_kind(359.9999999),
        geometry::RotationKind::QuarterTurns(0)
    );
}

// === arbitrary rotation ===

#[test]
fn rotated_size_rounds_the_bounding_box_up() {
    // 45°: (100 + 50) / √2 = 106.07 both ways.
    assert_eq!(geometry::rotated_size(100, 50, 45.0), (107, 107));
    // 30°: 100·cos + 50·sin = 111.60 wide, 100·sin + 50·cos = 93.30 high.
    assert_eq!(geometry::rotated_size(100, 50, 30.0), (112, 94));
    assert_eq!(geometry::rotated_size(1, 1, 45.0), (2, 2));
    assert_eq!(geometry::rotated_size(256, 256, 10.0), (297, 297));
}

#[test]
fn forty_five_degrees_in_png_has_transparent_corners() {
    let mut spec = spec(OutputFormat::Png);
    spec.degrees = 45.0;
    let image = render_and_decode(&source_jpeg(), &spec);
    assert_eq!((image.width(), image.height()), (107, 107));
    assert_eq!(image.color(), image::ColorType::Rgba8);
    for corner in [(0, 0), (106, 0), (0, 106), (106, 106), (3, 3), (103, 103)] {
        assert_eq!(
            rgba_at(&image, corner.0, corner.1)[3],
            0,
            "corner {corner:?}"
        );
    }
    assert_colour(&image, (53, 53), MAGENTA, "centre");
    for (point, colour) in QUADRANT_SAMPLES {
        let target = forward_map(point, (100, 50), false, 45.0, (107, 107));
        assert_colour(&image, target, colour, "rotated quadrant");
    }
}

#[test]
fn forty_five_degrees_in_jpeg_has_white_corners() {
    let mut spec = spec(OutputFormat::Jpeg);
    spec.degrees = 45.0;
    let image = render_and_decode(&source_jpeg(), &spec);
    assert_eq!((image.width(), image.height()), (107, 107));
    assert_eq!(image.color(), image::ColorType::Rgb8);
    for corner in [(0, 0), (106, 0), (0, 106), (106, 106)] {
        assert_colour(&image, corner, WHITE, "corner");
    }
    assert_colour(&image, (53, 53), MAGENTA, "centre");
}

#[test]
fn other_alpha_formats_keep_transparent_corners() {
    for format in [OutputFormat::Webp, OutputFormat::Tiff, OutputFormat::Gif] {
        let mut spec = spec(format);
        spec.degrees = 30.0;
        let image = render_and_decode(&source_jpeg(), &spec);
        assert_eq!((image.width(), image.height()), (112, 94), "{format:?}");
        assert_eq!(rgba_at(&image, 0, 0)[3], 0, "{format:?} corner");
        assert_eq!(rgba_at(&image, 111, 93)[3], 0, "{format:?} corner");
        assert_colour(&image, (56, 47), MAGENTA, &format!("{format:?} centre"));
    }
}

#[test]
fn mirroring_happens_before_an_arbitrary_rotation() {
    let mut spec = spec(OutputFormat::Png);
    spec.mirror = true;
    spec.degrees = 30.0;
    let image = render_and_decode(&source_jpeg(), &spec);
    for (point, colour) in QUADRANT_SAMPLES {
        let target = forward_map(point, (100, 50), true, 30.0, (112, 94));
        assert_colour(&image, target, colour, "mirrored then rotated");
    }
    // Rotating first and mirroring afterwards would put red on the right of the top half.
    let (x, y) = forward_map((10, 10), (100, 50), true, 30.0, (112, 94));
    assert!(
        x > 56,
        "red is mirrored to the right before turning: ({x}, {y})"
    );
}

#[test]
fn mirroring_happens_before_a_quarter_turn() {
    let mut spec = spec(OutputFormat::Png);
    spec.mirror = true;
    for (degrees, corners) in [
        // Mirrored: GREEN RED / YELLOW BLUE; then turned.
        (90.0, [YELLOW, GREEN, BLUE, RED]),
        (180.0, [BLUE, YELLOW, RED, GREEN]),
        (270.0, [RED, BLUE, GREEN, YELLOW]),
    ] {
        spec.degrees = degrees;
        let image = render_and_decode(&source_jpeg(), &spec);
        let (width, height) = (image.width(), image.height());
        let points = [
            (5, 5),
            (width - 6, 5),
            (5, height - 6),
            (width - 6, height - 6),
        ];
        for (point, colour) in points.into_iter().zip(corners) {
            assert_colour(&image, point, colour, &format!("!{degrees}"));
        }
    }
}

#[test]
fn rotation_keeps_source_alpha_and_a_gray_source() {
    // Not produced by iipsrv, but exercised so no layout hits an unexpected path.
    let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(20, 10, image::Luma([77])));
    let rotated = geometry::rotate_bilinear(&gray, false, 45.0, geometry::Corners::Transparent);
    assert_eq!(rotated.color(), image::ColorType::La8);
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 10, Rgba([1, 2, 3, 128])));
    let rotated =
        geometry::rotate_bilinear(&rgba, true, 10.0, geometry::Corners::Transparent).to_rgba8();
    let centre = rotated
        .get_pixel(rotated.width() / 2, rotated.height() / 2)
        .0;
    assert_eq!(centre, [1, 2, 3, 128]);
}

// === qualities ===

#[test]
fn gray_gives_single_channel_output() {
    let jpeg = source_jpeg();
    for format in [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Tiff] {
        let mut spec = spec(format);
        spec.tone = Tone::Gray;
        let image = render_and_decode(&jpeg, &spec);
        assert_eq!(image.color(), image::ColorType::L8, "{format:?}");
        // Rec. 709 luma of RED = 0.2126·220 + 0.7152·30 + 0.0722·30 ≈ 70.
        let luma = image.to_luma8().get_pixel(10, 10).0[0];
        assert!(luma.abs_diff(70) <= 12, "{format:?} luma {luma}");
    }
    // Gray with transparent corners: gray plus alpha, still one colour channel.
    let mut spec = spec(OutputFormat::Png);
    spec.tone = Tone::Gray;
    spec.degrees = 45.0;
    let image = render_and_decode(&jpeg, &spec);
    assert_eq!(image.color(), image::ColorType::La8);
    // GIF has no gray mode, but its pixels are still gray.
    spec.format = OutputFormat::Gif;
    let image = render_and_decode(&jpeg, &spec).to_rgba8();
    assert!(image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn bitonal_gives_only_black_and_white() {
    let jpeg = source_jpeg();
    for degrees in [0.0, 90.0, 33.0] {
        let mut spec = spec(OutputFormat::Png);
        spec.tone = Tone::Bitonal;
        spec.degrees = degrees;
        let image = render_and_decode(&jpeg, &spec);
        let expected_colour = if degrees == 33.0 {
            image::ColorType::La8
        } else {
            image::ColorType::L8
        };
        assert_eq!(image.color(), expected_colour);
        let bytes = image.as_bytes();
        assert!(bytes.iter().all(|&v| v == 0 || v == 255), "{degrees}°");
        // Both tones occur: yellow is light, red is dark.
        assert!(bytes.contains(&0) && bytes.contains(&255));

        // GIF: only black, white and (when rotated) the transparent entry.
        spec.format = OutputFormat::Gif;
        let gif = render(&jpeg, &spec).unwrap();
        let image = image::load_from_memory(&gif).unwrap().to_rgba8();
        for pixel in image.pixels() {
            assert!(
                pixel[3] == 0 || pixel.0 == [0, 0, 0, 255] || pixel.0 == [255; 4],
                "{degrees}° GIF pixel {pixel:?}"
            );
        }

        // JPEG: flattened onto white before thresholding, so the corners stay white.
        spec.format = OutputFormat::Jpeg;
        let image = render_and_decode(&jpeg, &spec);
        assert_eq!(image.color(), image::ColorType::L8);
        if degrees == 33.0 {
            assert!(image.to_luma8().get_pixel(0, 0).0[0] > 230);
        }
    }
}

// === ICC profiles ===

/// A syntactically plausible ICC header: size, the data colour space at bytes 16–19 and the
/// `acsp` signature at 36–39. The decoders under test copy it without interpreting it.
fn fake_icc_profile(colour_space: &[u8; 4]) -> Vec<u8> {
    let mut profile = vec![0u8; 132];
    profile[..4].copy_from_slice(&132u32.to_be_bytes());
    profile[16..20].copy_from_slice(colour_space);
    profile[36..40].copy_from_slice(b"acsp");
    profile[100] = 42;
    profile
}

#[test]
fn icc_profile_is_carried_into_formats_that_support_it() {
    let profile = fake_icc_profile(b"RGB ");
    let jpeg = encode_jpeg(&quadrant_image(100, 50), Some(profile.clone()));
    for format in [
        OutputFormat::Jpeg,
        OutputFormat::Png,
        OutputFormat::Webp,
        OutputFormat::Tiff,
    ] {
        let bytes = render(&jpeg, &spec(format)).unwrap();
        let found = match format {
            OutputFormat::Jpeg => image::codecs::jpeg::JpegDecoder::new(Cursor::new(&bytes))
                .unwrap()
                .icc_profile(),
            OutputFormat::Png => image::codecs::png::PngDecoder::new(Cursor::new(&bytes))
                .unwrap()
                .icc_profile(),
            OutputFormat::Webp => image::codecs::webp::WebPDecoder::new(Cursor::new(&bytes))
                .unwrap()
                .icc_profile(),
            _ => image::codecs::tiff::TiffDecoder::new(Cursor::new(&bytes))
                .unwrap()
                .icc_profile(),
        };
        assert_eq!(found.unwrap().as_ref(), Some(&profile), "{format:?}");
    }
    // An RGB profile does not describe gray pixels, so gray output drops it.
    let mut gray = spec(OutputFormat::Png);
    gray.tone = Tone::Gray;
    let bytes = render(&jpeg, &gray).unwrap();
    let mut decoder = image::codecs::png::PngDecoder::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(decoder.icc_profile().unwrap(), None);
}

// === jpeg_dimensions ===

#[test]
fn jpeg_dimensions_reads_baseline_and_progressive_headers() {
    assert_eq!(jpeg_dimensions(&source_jpeg()), Some((100, 50)));
    let odd = encode_jpeg(&quadrant_image(257, 3), None);
    assert_eq!(jpeg_dimensions(&odd), Some((257, 3)));

    // Made with ImageMagick (`convert -size 37x23 gradient:red-blue -interlace JPEG`): SOF2.
    let progressive = include_bytes!("testdata/progressive_37x23.jpg");
    assert!(progressive.windows(2).any(|w| w == [0xFF, 0xC2]));
    assert_eq!(jpeg_dimensions(progressive), Some((37, 23)));
    // And the decoder handles it too.
    let image = render_and_decode(progressive, &spec(OutputFormat::Png));
    assert_eq!((image.width(), image.height()), (37, 23));
}

#[test]
fn jpeg_dimensions_skips_tables_and_fill_bytes() {
    // SOI, a DHT segment (0xC4 must not be taken for a SOF), fill bytes, then SOF2.
    let header = [
        0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xFF, 0xFF, 0xC2, 0x00, 0x0B, 0x08,
        0x01, 0x2C, 0x02, 0x58, 0x03, 0x01, 0x11, 0x00,
    ];
    assert_eq!(jpeg_dimensions(&header), Some((600, 300)));
}

#[test]
fn jpeg_dimensions_rejects_garbage() {
    let garbage: [&[u8]; 9] = [
        b"",
        b"\xFF",
        b"\xFF\xD8",
        b"\xFF\xD8\xFF",
        b"\x89PNG\r\n\x1A\n",
        b"\xFF\xD8\xFF\xDA\x00\x08",
        b"\xFF\xD8\xFF\xC0\x00\x01",
        // Zero height (height in a DNL marker).
        b"\xFF\xD8\xFF\xC0\x00\x0B\x08\x00\x00\x00\x10\x01\x01\x11\x00",
        b"\xFF\xD8\x00\xC0",
    ];
    for bytes in garbage {
        assert_eq!(jpeg_dimensions(bytes), None, "{bytes:?}");
    }
    // Every prefix that ends before the SOF's size fields is unparseable, every longer one
    // is fine.
    let jpeg = source_jpeg();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    for length in 0..jpeg.len() {
        let expected = (length >= sof + 9).then_some((100, 50));
        assert_eq!(
            jpeg_dimensions(&jpeg[..length]),
            expected,
            "prefix {length}"
        );
    }
}

// === bad input ===

#[test]
fn truncated_jpegs_are_decode_errors() {
    let jpeg = source_jpeg();
    for length in 0..jpeg.len() {
        match render(&jpeg[..length], &spec(OutputFormat::Png)) {
            Err(RenderError::Decode(_)) => {}
            other => panic!("prefix of {length} bytes: {other:?}"),
        }
    }
}

#[test]
fn an_implausibly_large_header_is_refused_before_allocating() {
    let mut jpeg = source_jpeg();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    // Height and width fields of the SOF0 segment.
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(jpeg_dimensions(&jpeg), Some((65535, 65535)));
    assert!(matches!(
        render(&jpeg, &spec(OutputFormat::Png)),
        Err(RenderError::Decode(_))
    ));
}

#[test]
fn non_finite_rotation_does_not_panic() {
    let jpeg = source_jpeg();
    for degrees in [f64::NAN, f64::INFINITY, -90.0, 720.0 + 45.0] {
        let mut spec = spec(OutputFormat::Png);
        spec.degrees = degrees;
        assert!(render(&jpeg, &spec).is_ok(), "{degrees}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_are_rejected_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(matches!(render(&bytes, &spec(OutputFormat::Png)), Err(RenderError::Decode(_))));
        let _ = jpeg_dimensions(&bytes);
    }

    #[test]
    fn random_bytes_after_a_jpeg_header_are_rejected_without_panicking(
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![0xFF, 0xD8, 0xFF];
        bytes.extend(tail);
        bytes.extend([0xFF, 0xD9]);
        let _ = render(&bytes, &spec(OutputFormat::Png));
        let _ = jpeg_dimensions(&bytes);
    }

    #[test]
    fn corrupted_jpegs_do_not_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        degrees in 0.0f64..360.0,
    ) {
        let mut jpeg = source_jpeg();
        // Leave the frame size alone: a corrupted size of up to `MAX_DECODE_PIXELS` is legal
        // and merely slow to fill, and it has its own test above.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let size_fields = sof + 5..sof + 9;
        let length = jpeg.len();
        for (index, value) in edits {
            let index = index.index(length);
            if !size_fields.contains(&index) {
                jpeg[index] = value;
            }
        }
        let mut spec = spec(OutputFormat::Gif);
        spec.degrees = degrees;
        let _ = render(&jpeg, &spec);
        let _ = jpeg_dimensions(&jpeg);
    }
}

// === timing (not run by default) ===

/// `cargo test --release -p gateway render::tests::timing -- --ignored --nocapture`
#[test]
#[ignore = "prints timings; run by hand in release mode"]
fn timing() {
    fn photo_like(size: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(size, size, |x, y| {
            let noise = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) % 23;
            Rgb([
                ((x * 255 / size) as u8).wrapping_add(noise as u8),
                ((y * 255 / size) as u8).wrapping_add(noise as u8),
                (((x + y) * 127 / size) as u8).wrapping_sub(noise as u8),
            ])
        });
        encode_jpeg(&image, None)
    }
    let cases = [
        (256, OutputFormat::Png, 0.0),
        (1000, OutputFormat::Png, 0.0),
        (1000, OutputFormat::Png, 45.0),
        (1000, OutputFormat::Jpeg, 45.0),
        (256, OutputFormat::Webp, 0.0),
        (256, OutputFormat::Gif, 0.0),
        (256, OutputFormat::Tiff, 0.0),
    ];
    for (size, format, degrees) in cases {
        let jpeg = photo_like(size);
        let mut spec = spec(format);
        spec.degrees = degrees;
        let runs = if size > 500 { 5 } else { 20 };
        let start = std::time::Instant::now();
        let mut output_len = 0;
        for _ in 0..runs {
            output_len = render(&jpeg, &spec).unwrap().len();
        }
        let per_run = start.elapsed() / runs;
        println!("{size}x{size} JPEG -> {format:?} at {degrees}°: {per_run:?} per render, {output_len} bytes");
    }
}

#[test]
fn tiff_output_is_deflate_compressed() {
    let jpeg = encode_jpeg(&quadrant_image(400, 200), None);
    let mut rotated = spec(OutputFormat::Tiff);
    rotated.degrees = 30.0;
    for spec in [spec(OutputFormat::Tiff), rotated] {
        let bytes = render(&jpeg, &spec).unwrap();
        let mut decoder = tiff::decoder::Decoder::new(Cursor::new(&bytes)).unwrap();
        let compression = decoder.get_tag_u32(tiff::tags::Tag::Compression).unwrap();
        assert_eq!(compression, 8, "Adobe deflate");
        let (width, height) = decoder.dimensions().unwrap();
        let raw = u64::from(width) * u64::from(height) * 3;
        assert!(
            (bytes.len() as u64) < raw / 4,
            "{} bytes for {width}x{height}: flat colours compress",
            bytes.len()
        );
        // And it still decodes to the same picture.
        let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::Tiff).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (width, height));
    }
}

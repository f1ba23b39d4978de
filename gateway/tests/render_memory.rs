//! The render's memory model (`render::cost::peak_bytes`) is an upper bound of what
//! `render::render` really allocates: every case is rendered under a counting allocator and its
//! peak compared with the model. The budget that keeps the gateway's memory bounded is only as
//! good as this bound.
//!
//! One test function, so no other test allocates at the same time in this binary.

use gateway::render::cost::peak_bytes;
use gateway::render::{render, OutputFormat, RenderSpec, Tone};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// A JPEG of noise (the least compressible content), `channels` 1 or 3, at `quality`.
fn noise_jpeg(width: u32, height: u32, channels: usize, quality: u8) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..width as usize * height as usize * channels)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let colour = if channels == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .write_image(&pixels, width, height, colour)
        .unwrap();
    jpeg
}

/// Bytes allocated at the peak of `work`, above what was allocated before it.
fn peak_of<T>(work: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let value = work();
    (ALLOCATOR.peak_usage() - before, value)
}

#[test]
fn every_render_stays_within_its_modelled_peak() {
    let formats = [
        OutputFormat::Jpeg,
        OutputFormat::Png,
        OutputFormat::Gif,
        OutputFormat::Webp,
        OutputFormat::Tiff,
    ];
    let mut report = Vec::new();
    let mut worst_ratio: f64 = 0.0;
    for (width, height, channels) in [(640, 480, 3), (480, 640, 1), (300, 200, 3)] {
        let jpeg = noise_jpeg(width, height, channels, 100);
        for format in formats {
            for degrees in [0.0, 90.0, 45.0, 17.5] {
                for tone in [Tone::AsIs, Tone::Gray, Tone::Bitonal] {
                    let spec = RenderSpec {
                        mirror: degrees == 17.5,
                        degrees,
                        tone,
                        format,
                        jpeg_quality: 90,
                    };
                    let (peak, output) = peak_of(|| render(&jpeg, &spec));
                    output.unwrap();
                    // The caller holds the JPEG, which the model counts too.
                    let used = (peak + jpeg.len()) as u64;
                    let modelled = peak_bytes((width, height), Some(&spec), jpeg.len() as u64);
                    let ratio = used as f64 / modelled as f64;
                    worst_ratio = worst_ratio.max(ratio);
                    report.push(format!(
                        "{width}x{height}x{channels} {format:?} {degrees}° {tone:?}: used {used}, modelled {modelled} ({ratio:.2})"
                    ));
                    assert!(used <= modelled, "{}", report.last().unwrap());
                }
            }
        }
    }
    println!(
        "{}\nworst used/modelled: {worst_ratio:.2}",
        report.join("\n")
    );
}

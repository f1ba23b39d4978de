//! Reading a JPEG's pixel size from its frame header without decoding it.
//!
//! The gateway uses this to check that iipsrv returned the size it asked for, on every image
//! response, so it must be cheap: it walks the marker segments up to the first start-of-frame
//! (SOF) marker and never touches the entropy-coded data.

/// Start of image.
const SOI: u8 = 0xD8;
/// End of image.
const EOI: u8 = 0xD9;
/// Start of scan: entropy-coded data follows, so a frame header can no longer appear.
const SOS: u8 = 0xDA;

/// Reads the pixel size `(width, height)` from a JPEG's SOF marker without decoding.
///
/// All SOF variants are understood (baseline, extended, progressive, lossless, arithmetic,
/// hierarchical). Returns `None` if the bytes do not start with a JPEG SOI marker, if a segment
/// is cut short, if no SOF marker precedes the first scan, or if the frame header declares a
/// zero width or height (a zero height means the real height is in a later DNL marker, which
/// iipsrv never writes).
pub fn jpeg_dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    if jpeg.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut position = 2;
    loop {
        // A marker is 0xFF followed by a code; any number of extra 0xFF fill bytes may come first.
        if *jpeg.get(position)? != 0xFF {
            return None;
        }
        while *jpeg.get(position)? == 0xFF {
            position += 1;
        }
        let code = *jpeg.get(position)?;
        position += 1;
        match code {
            // Markers without a length field: TEM and the restart markers RST0–RST7.
            0x01 | 0xD0..=0xD7 => continue,
            SOI | EOI | SOS => return None,
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([
            *jpeg.get(position)?,
            *jpeg.get(position + 1)?,
        ]));
        if length < 2 {
            return None;
        }
        if is_start_of_frame(code) {
            // Frame header: length (2), sample precision (1), height (2), width (2), …
            let header = jpeg.get(position + 2..position + 7)?;
            let height = u32::from(u16::from_be_bytes([header[1], header[2]]));
            let width = u32::from(u16::from_be_bytes([header[3], header[4]]));
            return (width > 0 && height > 0).then_some((width, height));
        }
        position += length;
    }
}

/// SOF0–SOF15 share the code range 0xC0–0xCF with three markers that are not frame headers:
/// DHT (0xC4, Huffman tables), JPG (0xC8, reserved) and DAC (0xCC, arithmetic conditioning).
fn is_start_of_frame(code: u8) -> bool {
    matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC)
}

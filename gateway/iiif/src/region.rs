//! The region segment: which part of the image to extract.
//!
//! Parsing is strict and needs no image; [`Region::resolve`] then turns the request into a pixel rectangle that
//! is clipped to the image, because iipsrv 1.1 crashes or returns garbage for regions that leave the image
//! (iiif-reference §3.8).

use std::fmt;

use crate::error::IiifError;
use crate::geometry::PixelRect;
use crate::number::{format_decimal, parse_decimal, parse_pixel};
use crate::version::Version;

/// A parsed region segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    /// `full`: the whole image.
    Full,
    /// `square`: the largest centred square.
    Square,
    /// `x,y,w,h` in pixels.
    Pixels {
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Width, never 0.
        w: u32,
        /// Height, never 0.
        h: u32,
    },
    /// `pct:x,y,w,h` in percent of the image size.
    Percent {
        /// Left edge in percent of the width.
        x: f64,
        /// Top edge in percent of the height.
        y: f64,
        /// Width in percent of the width, never 0.
        w: f64,
        /// Height in percent of the height, never 0.
        h: f64,
    },
}

impl Region {
    /// Parses a region segment. The grammar is the same in 2.1 and 3.0 and is case-sensitive.
    ///
    /// # Errors
    ///
    /// 400 for anything that is not `full`, `square`, four `\d+` values, or `pct:` and four `\d+(\.\d+)?` values,
    /// and for a zero width or height.
    pub fn parse(_version: Version, text: &str) -> Result<Region, IiifError> {
        let invalid = |why: &str| IiifError::bad_request(format!("invalid region: {why}"));
        match text {
            "full" => return Ok(Region::Full),
            "square" => return Ok(Region::Square),
            _ => {}
        }
        if let Some(percentages) = text.strip_prefix("pct:") {
            let [x, y, w, h] = four_values(percentages, parse_decimal)
                .ok_or_else(|| invalid("expected pct:x,y,w,h with non-negative decimal numbers"))?;
            if w == 0.0 || h == 0.0 {
                return Err(invalid("width and height must be greater than zero"));
            }
            return Ok(Region::Percent { x, y, w, h });
        }
        let [x, y, w, h] = four_values(text, parse_pixel)
            .ok_or_else(|| invalid("expected full, square, x,y,w,h or pct:x,y,w,h"))?;
        if w == 0 || h == 0 {
            return Err(invalid("width and height must be greater than zero"));
        }
        Ok(Region::Pixels { x, y, w, h })
    }

    /// Resolves the region against a `width×height` image, clipping it to the image.
    ///
    /// * `full` is the whole image.
    /// * `square` is the largest centred square; odd leftovers put the extra pixel on the right or bottom
    ///   (`x = (W−s)/2`, `y = (H−s)/2`, rounded down).
    /// * `x,y,w,h` must start inside the image and is clipped at the right and bottom edges.
    /// * `pct:x,y,w,h` is converted with `round(p·W/100)`; width and height are at least 1 pixel, and a start that
    ///   only rounds onto the edge (such as `pct:99.96` of 1000 px) is pulled back onto the last pixel so that a
    ///   region that lies inside the image never becomes an error.
    ///
    /// # Errors
    ///
    /// 400 when the region starts at or beyond the right or bottom edge, or has a zero width or height.
    pub fn resolve(&self, width: u32, height: u32) -> Result<PixelRect, IiifError> {
        let (x, y, w, h) = match *self {
            Region::Full => return Ok(PixelRect::whole(width, height)),
            Region::Square => {
                let side = width.min(height);
                return Ok(PixelRect {
                    x: (width - side) / 2,
                    y: (height - side) / 2,
                    w: side,
                    h: side,
                });
            }
            Region::Pixels { x, y, w, h } => {
                (u64::from(x), u64::from(y), u64::from(w), u64::from(h))
            }
            Region::Percent { x, y, w, h } => {
                let (width_f, height_f) = (f64::from(width), f64::from(height));
                let start_x = percent_start(x, width_f, width);
                let start_y = percent_start(y, height_f, height);
                let extent_w = percent_of(w, width_f).max(1);
                let extent_h = percent_of(h, height_f).max(1);
                (start_x, start_y, extent_w, extent_h)
            }
        };
        // Parsing never yields a zero extent, but a hand-built `Region` could.
        if w == 0 || h == 0 {
            return Err(IiifError::bad_request(
                "invalid region: width and height must be greater than zero",
            ));
        }
        if x >= u64::from(width) || y >= u64::from(height) {
            return Err(IiifError::bad_request(
                "invalid region: it lies outside the image",
            ));
        }
        // Both values fit in u32 because they are bounded by the image size.
        let clipped_w = w.min(u64::from(width) - x) as u32;
        let clipped_h = h.min(u64::from(height) - y) as u32;
        Ok(PixelRect {
            x: x as u32,
            y: y as u32,
            w: clipped_w,
            h: clipped_h,
        })
    }
}

/// `round(percent · extent / 100)` as a pixel count; `as` saturates absurdly large values, which the callers
/// then reject or clip.
fn percent_of(percent: f64, extent: f64) -> u64 {
    (percent * extent / 100.0).round() as u64
}

/// The pixel where a percentage region starts: rounded, but never pushed onto the edge by rounding alone.
fn percent_start(percent: f64, extent_f: f64, extent: u32) -> u64 {
    let rounded = percent_of(percent, extent_f);
    let exact = percent * extent_f / 100.0;
    if rounded >= u64::from(extent) && exact < extent_f && extent > 0 {
        u64::from(extent) - 1
    } else {
        rounded
    }
}

/// Splits `a,b,c,d` and parses each part, or returns `None` unless there are exactly four valid parts.
fn four_values<T: Copy>(text: &str, parse: fn(&str) -> Option<T>) -> Option<[T; 4]> {
    let mut parts = text.split(',');
    let mut values = [parse(parts.next()?)?; 4];
    for value in values.iter_mut().skip(1) {
        *value = parse(parts.next()?)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(values)
}

/// Formats the region as it would be written in a URL; [`Region::parse`] reads it back to the same value.
impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Region::Full => f.write_str("full"),
            Region::Square => f.write_str("square"),
            Region::Pixels { x, y, w, h } => write!(f, "{x},{y},{w},{h}"),
            Region::Percent { x, y, w, h } => write!(
                f,
                "pct:{},{},{},{}",
                format_decimal(x),
                format_decimal(y),
                format_decimal(w),
                format_decimal(h)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Region, IiifError> {
        Region::parse(Version::V3, text)
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    fn resolve(text: &str, width: u32, height: u32) -> Result<PixelRect, IiifError> {
        parse(text)?.resolve(width, height)
    }

    #[test]
    fn keywords() {
        assert_eq!(parse("full"), Ok(Region::Full));
        assert_eq!(parse("square"), Ok(Region::Square));
        assert_eq!(Region::parse(Version::V2, "square"), Ok(Region::Square));
        assert!(parse("FULL").is_err());
        assert!(parse("Square").is_err());
    }

    #[test]
    fn pixel_regions() {
        assert_eq!(
            parse("0,0,10,20"),
            Ok(Region::Pixels {
                x: 0,
                y: 0,
                w: 10,
                h: 20
            })
        );
        assert_eq!(
            parse("007,1,2,3"),
            Ok(Region::Pixels {
                x: 7,
                y: 1,
                w: 2,
                h: 3
            })
        );
    }

    #[test]
    fn percent_regions() {
        assert_eq!(
            parse("pct:10,20.5,30,40"),
            Ok(Region::Percent {
                x: 10.0,
                y: 20.5,
                w: 30.0,
                h: 40.0
            })
        );
        assert_eq!(
            parse("pct:0,0,100,100"),
            Ok(Region::Percent {
                x: 0.0,
                y: 0.0,
                w: 100.0,
                h: 100.0
            })
        );
    }

    #[test]
    fn malformed_regions_are_400() {
        for bad in [
            "",
            "abc",
            "0,0,10",
            "0,0,10,10,10",
            "-1,0,10,10",
            "+1,0,10,10",
            "1.5,0,10,10",
            "10x,0,10,10",
            "0,0,,10",
            " 0,0,10,10",
            "pct:",
            "pct:1,2,3",
            "pct:+0.9,0,10,10",
            "pct:.5,0,10,10",
            "pct:-1,0,10,10",
            "pct:1e1,0,10,10",
            "PCT:0,0,10,10",
            "0,0,4294967296,10",
            "pct :0,0,1,1",
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.status, 400, "{bad:?}");
            assert!(error.message.starts_with("invalid region: "), "{bad:?}");
        }
    }

    #[test]
    fn zero_sized_regions_are_400() {
        let zero =
            IiifError::bad_request("invalid region: width and height must be greater than zero");
        assert_eq!(parse("0,0,0,10"), Err(zero.clone()));
        assert_eq!(parse("0,0,10,0"), Err(zero.clone()));
        assert_eq!(parse("pct:0,0,0,10"), Err(zero.clone()));
        assert_eq!(parse("pct:0,0,10,0.0"), Err(zero));
    }

    #[test]
    fn full_and_square_resolve() {
        assert_eq!(resolve("full", 1000, 750), Ok(rect(0, 0, 1000, 750)));
        // Landscape, portrait and square images; iipsrv's own square gives 100×99 on 1000×750, ours is exact.
        assert_eq!(resolve("square", 1000, 750), Ok(rect(125, 0, 750, 750)));
        assert_eq!(resolve("square", 750, 1000), Ok(rect(0, 125, 750, 750)));
        assert_eq!(resolve("square", 1000, 1000), Ok(rect(0, 0, 1000, 1000)));
        // Odd leftovers round the offset down.
        assert_eq!(resolve("square", 1000, 872), Ok(rect(64, 0, 872, 872)));
        assert_eq!(resolve("square", 5, 2), Ok(rect(1, 0, 2, 2)));
        assert_eq!(resolve("square", 1, 1), Ok(rect(0, 0, 1, 1)));
    }

    #[test]
    fn pixel_regions_are_clipped_at_the_edges() {
        assert_eq!(resolve("0,0,10,10", 1000, 750), Ok(rect(0, 0, 10, 10)));
        // The last pixel.
        assert_eq!(resolve("999,749,1,1", 1000, 750), Ok(rect(999, 749, 1, 1)));
        // Regions past the edge (iipsrv crashes on some of these, iiif-reference §3.8).
        assert_eq!(
            resolve("999,749,10,10", 1000, 750),
            Ok(rect(999, 749, 1, 1))
        );
        assert_eq!(
            resolve("900,700,300,200", 1000, 750),
            Ok(rect(900, 700, 100, 50))
        );
        assert_eq!(
            resolve("100,600,300,200", 1000, 750),
            Ok(rect(100, 600, 300, 150))
        );
        assert_eq!(
            resolve("0,0,4294967295,4294967295", 1000, 750),
            Ok(rect(0, 0, 1000, 750))
        );
    }

    #[test]
    fn regions_outside_the_image_are_400() {
        let outside = Err(IiifError::bad_request(
            "invalid region: it lies outside the image",
        ));
        assert_eq!(resolve("1000,0,10,10", 1000, 750), outside);
        assert_eq!(resolve("0,750,10,10", 1000, 750), outside);
        assert_eq!(resolve("100,800,300,200", 1000, 750), outside);
        assert_eq!(resolve("4294967295,0,1,1", 1000, 750), outside);
        assert_eq!(resolve("pct:100,0,10,10", 1000, 750), outside);
        assert_eq!(resolve("pct:0,100,10,10", 1000, 750), outside);
        assert_eq!(resolve("pct:110,0,10,10", 1000, 750), outside);
        assert_eq!(
            resolve("pct:99999999999999999999,0,10,10", 1000, 750),
            outside
        );
    }

    #[test]
    fn percent_regions_round_to_pixels() {
        assert_eq!(
            resolve("pct:0,0,100,100", 1000, 750),
            Ok(rect(0, 0, 1000, 750))
        );
        assert_eq!(
            resolve("pct:10,10,25.6,25.6", 1000, 1000),
            Ok(rect(100, 100, 256, 256))
        );
        // 33.3% of 1000 is 333; 33.35% of 750 is 250.125 → 250.
        assert_eq!(
            resolve("pct:33.3,33.35,10,10", 1000, 750),
            Ok(rect(333, 250, 100, 75))
        );
        // Halves round up: 12.5% of 100 is 12.5 → 13.
        assert_eq!(
            resolve("pct:12.5,12.5,12.5,12.5", 100, 100),
            Ok(rect(13, 13, 13, 13))
        );
        // Tiny widths become one pixel rather than an error.
        assert_eq!(
            resolve("pct:50,50,0.001,0.001", 1000, 750),
            Ok(rect(500, 375, 1, 1))
        );
        // A start that only rounds onto the edge is pulled back onto the last pixel.
        assert_eq!(
            resolve("pct:99.96,99.99,0.04,0.01", 1000, 750),
            Ok(rect(999, 749, 1, 1))
        );
        // Clipped like pixel regions.
        assert_eq!(
            resolve("pct:90,90,50,50", 1000, 750),
            Ok(rect(900, 675, 100, 75))
        );
    }

    #[test]
    fn hand_built_empty_regions_are_400() {
        let empty = Region::Pixels {
            x: 0,
            y: 0,
            w: 0,
            h: 5,
        };
        assert_eq!(empty.resolve(10, 10).unwrap_err().status, 400);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "full",
            "square",
            "0,0,10,20",
            "pct:0,0,100,100",
            "pct:10.5,0.25,33.333,1",
        ] {
            let region = parse(text).unwrap();
            assert_eq!(region.to_string(), text);
            assert_eq!(parse(&region.to_string()), Ok(region));
        }
        assert_eq!(
            parse("pct:10.50,0,1.0,1").unwrap().to_string(),
            "pct:10.5,0,1,1"
        );
    }
}

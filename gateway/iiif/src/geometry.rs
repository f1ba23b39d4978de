//! Pixel rectangles in image or output coordinates.

use std::fmt;

/// A rectangle of whole pixels: `x,y` is the top-left corner, `w×h` the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelRect {
    /// Left edge, in pixels from the left of the containing image.
    pub x: u32,
    /// Top edge, in pixels from the top of the containing image.
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

impl PixelRect {
    /// The rectangle covering a whole `width×height` image.
    pub fn whole(width: u32, height: u32) -> PixelRect {
        PixelRect {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
    }

    /// One past the right-most column, computed without overflow.
    pub fn right(&self) -> u64 {
        u64::from(self.x) + u64::from(self.w)
    }

    /// One past the bottom row, computed without overflow.
    pub fn bottom(&self) -> u64 {
        u64::from(self.y) + u64::from(self.h)
    }

    /// True when the rectangle is non-empty and lies entirely inside a `width×height` image.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        self.w > 0
            && self.h > 0
            && self.right() <= u64::from(width)
            && self.bottom() <= u64::from(height)
    }

    /// True when the rectangle is exactly the whole `width×height` image.
    pub fn is_whole(&self, width: u32, height: u32) -> bool {
        *self == PixelRect::whole(width, height)
    }

    /// The size as a `(width, height)` pair.
    pub fn size(&self) -> (u32, u32) {
        (self.w, self.h)
    }
}

/// Formats as the IIIF pixel region `x,y,w,h`.
impl fmt::Display for PixelRect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.w, self.h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let rect = PixelRect {
            x: 999,
            y: 0,
            w: 1,
            h: 1000,
        };
        assert!(rect.fits_in(1000, 1000));
        assert!(!rect.fits_in(999, 1000));
        assert!(!PixelRect {
            x: 0,
            y: 0,
            w: 0,
            h: 1
        }
        .fits_in(10, 10));
        assert!(!PixelRect {
            x: u32::MAX,
            y: 0,
            w: u32::MAX,
            h: 1
        }
        .fits_in(u32::MAX, 10));
        assert!(PixelRect::whole(7, 5).is_whole(7, 5));
        assert_eq!(
            PixelRect {
                x: 1,
                y: 2,
                w: 3,
                h: 4
            }
            .to_string(),
            "1,2,3,4"
        );
    }
}

//! Identifier lists grouped by source size, as the report groups them (§3.2.4): one list of images below
//! 10 megapixels, one from 10 to 75, one of 75 and more.
//!
//! A list is a text file with one `identifier width height` line per image; blank lines and lines starting with
//! `#` are ignored. The identifier is used verbatim as a URL path segment, so it must already be percent-encoded
//! (`Zo%C3%AB%20caf%C3%A9`, `collection%2Fastronaut`). Every image is checked against the bounds of the class it
//! is listed under: a mislabelled image would silently move its requests into the wrong table row.

use std::collections::BTreeMap;
use std::fmt;

/// One megapixel, as the report counts it.
const MEGAPIXEL: u64 = 1_000_000;

/// A source-size class of the report's Appendix 2 (`src min` / `src max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceClass {
    /// Below 10 megapixels.
    Small,
    /// From 10 up to (not including) 75 megapixels.
    Medium,
    /// 75 megapixels and more.
    Large,
}

impl SourceClass {
    /// Every class, in table order.
    pub const ALL: [SourceClass; 3] = [SourceClass::Small, SourceClass::Medium, SourceClass::Large];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            SourceClass::Small => "small",
            SourceClass::Medium => "medium",
            SourceClass::Large => "large",
        }
    }

    /// Parses [`SourceClass::name`].
    pub fn from_name(name: &str) -> Option<SourceClass> {
        SourceClass::ALL
            .into_iter()
            .find(|class| class.name() == name)
    }

    /// The inclusive lower bound in megapixels (the table's `src min`).
    pub fn min_megapixels(self) -> u32 {
        match self {
            SourceClass::Small => 0,
            SourceClass::Medium => 10,
            SourceClass::Large => 75,
        }
    }

    /// The exclusive upper bound in megapixels (the table's `src max`); `None` for the open-ended class.
    pub fn max_megapixels(self) -> Option<u32> {
        match self {
            SourceClass::Small => Some(10),
            SourceClass::Medium => Some(75),
            SourceClass::Large => None,
        }
    }

    /// The class an image of `pixels` pixels belongs to.
    pub fn of_pixels(pixels: u64) -> SourceClass {
        SourceClass::ALL
            .into_iter()
            .rev()
            .find(|class| pixels >= u64::from(class.min_megapixels()) * MEGAPIXEL)
            .unwrap_or(SourceClass::Small)
    }
}

impl fmt::Display for SourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One source image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The identifier as it appears in the URL path (already percent-encoded).
    pub identifier: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Image {
    /// Width × height.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The longer side.
    pub fn long_side(&self) -> u32 {
        self.width.max(self.height)
    }
}

/// A problem in an identifier list, with the line it is on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DatasetError {
    /// The line does not have the form `identifier width height`.
    #[error("{origin}:{line}: expected `identifier width height`, found {text:?}")]
    Malformed {
        /// The file name (or another description of where the text came from).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// The identifier contains a character that cannot appear in a path segment unencoded.
    #[error("{origin}:{line}: identifier {identifier:?} must be percent-encoded (no '/', '?', '#', spaces or control characters)")]
    BadIdentifier {
        /// The file name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The identifier as written.
        identifier: String,
    },
    /// The image's size puts it in another class than the list it is in.
    #[error("{origin}:{line}: {identifier} is {width}x{height} ({megapixels:.1} Mpx), which is {actual}, not {listed}")]
    WrongClass {
        /// The file name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The identifier.
        identifier: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Its size in megapixels.
        megapixels: f64,
        /// The class its size belongs to.
        actual: SourceClass,
        /// The class of the list it is in.
        listed: SourceClass,
    },
    /// The list has no image at all.
    #[error("{origin}: no images listed")]
    Empty {
        /// The file name.
        origin: String,
    },
}

/// Parses the identifier list `text` of `class`; `origin` names the file in error messages.
///
/// # Errors
///
/// Any malformed line, an identifier that is not a single encoded path segment, an image whose size belongs to
/// another class, or a list without images.
pub fn parse_list(
    class: SourceClass,
    text: &str,
    origin: &str,
) -> Result<Vec<Image>, DatasetError> {
    let mut images = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let malformed = || DatasetError::Malformed {
            origin: origin.to_string(),
            line,
            text: trimmed.to_string(),
        };
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let [identifier, width, height] = fields[..] else {
            return Err(malformed());
        };
        let (Ok(width), Ok(height)) = (width.parse::<u32>(), height.parse::<u32>()) else {
            return Err(malformed());
        };
        if width == 0 || height == 0 {
            return Err(malformed());
        }
        if !is_encoded_segment(identifier) {
            return Err(DatasetError::BadIdentifier {
                origin: origin.to_string(),
                line,
                identifier: identifier.to_string(),
            });
        }
        let image = Image {
            identifier: identifier.to_string(),
            width,
            height,
        };
        let actual = SourceClass::of_pixels(image.pixels());
        if actual != class {
            return Err(DatasetError::WrongClass {
                origin: origin.to_string(),
                line,
                megapixels: image.pixels() as f64 / MEGAPIXEL as f64,
                identifier: image.identifier,
                width,
                height,
                actual,
                listed: class,
            });
        }
        images.push(image);
    }
    if images.is_empty() {
        return Err(DatasetError::Empty {
            origin: origin.to_string(),
        });
    }
    Ok(images)
}

/// True when `identifier` can be pasted into a URL path as one segment.
fn is_encoded_segment(identifier: &str) -> bool {
    !identifier.is_empty()
        && identifier
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '\\'))
}

/// The images of every class that has a list.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    classes: BTreeMap<SourceClass, Vec<Image>>,
}

impl Dataset {
    /// Adds (or replaces) the list of `class`.
    pub fn insert(&mut self, class: SourceClass, images: Vec<Image>) {
        self.classes.insert(class, images);
    }

    /// The classes that have images, in table order.
    pub fn classes(&self) -> Vec<SourceClass> {
        self.classes.keys().copied().collect()
    }

    /// The images of `class` (empty when it has no list).
    pub fn images(&self, class: SourceClass) -> &[Image] {
        self.classes.get(&class).map_or(&[], Vec::as_slice)
    }

    /// True when no class has images.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_reports_bounds() {
        assert_eq!(SourceClass::of_pixels(0), SourceClass::Small);
        assert_eq!(SourceClass::of_pixels(9_999_999), SourceClass::Small);
        assert_eq!(SourceClass::of_pixels(10_000_000), SourceClass::Medium);
        assert_eq!(SourceClass::of_pixels(74_999_999), SourceClass::Medium);
        assert_eq!(SourceClass::of_pixels(75_000_000), SourceClass::Large);
        assert_eq!(SourceClass::of_pixels(u64::MAX), SourceClass::Large);
        for class in SourceClass::ALL {
            assert_eq!(SourceClass::from_name(class.name()), Some(class));
        }
        assert_eq!(SourceClass::from_name("huge"), None);
    }

    #[test]
    fn parses_a_list_with_comments_and_blank_lines() {
        let text =
            "# identifier width height\n\nsmall-01 2736 1824\n  Zo%C3%AB%20caf%C3%A9  512 512  \n";
        let images = parse_list(SourceClass::Small, text, "small.txt").unwrap();
        assert_eq!(
            images,
            vec![
                Image {
                    identifier: "small-01".into(),
                    width: 2736,
                    height: 1824
                },
                Image {
                    identifier: "Zo%C3%AB%20caf%C3%A9".into(),
                    width: 512,
                    height: 512
                },
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines_with_their_line_number() {
        for bad in ["a 1", "a 1 2 3", "a x 2", "a 0 2", "a -1 2"] {
            let error =
                parse_list(SourceClass::Small, &format!("ok 10 10\n{bad}\n"), "f").unwrap_err();
            assert!(
                matches!(error, DatasetError::Malformed { line: 2, .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn rejects_identifiers_that_are_not_one_encoded_segment() {
        for bad in ["a/b", "a?b", "a#b", "Zoë"] {
            let error = parse_list(SourceClass::Small, &format!("{bad} 10 10"), "f").unwrap_err();
            assert!(
                matches!(error, DatasetError::BadIdentifier { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn rejects_an_image_listed_under_the_wrong_class() {
        let error = parse_list(SourceClass::Large, "big 7680 5120", "large.txt").unwrap_err();
        assert_eq!(
            error.to_string(),
            "large.txt:1: big is 7680x5120 (39.3 Mpx), which is medium, not large"
        );
    }

    #[test]
    fn rejects_an_empty_list() {
        assert_eq!(
            parse_list(SourceClass::Medium, "# nothing\n", "m").unwrap_err(),
            DatasetError::Empty { origin: "m".into() }
        );
    }
}

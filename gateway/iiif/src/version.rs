//! The two public versions of the IIIF Image API the gateway speaks.

use std::fmt;

/// A public IIIF Image API version.
///
/// `V2` is 2.1 (2.1.1); `V3` is 3.0. The backend (iipsrv 1.1) only speaks its own dialect of 2.x, so the version
/// only decides what the *client* may send and what it gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// IIIF Image API 2.1.
    V2,
    /// IIIF Image API 3.0.
    V3,
}

impl Version {
    /// The JSON-LD context URI of this version's info.json.
    pub fn context_uri(self) -> &'static str {
        match self {
            Version::V2 => "http://iiif.io/api/image/2/context.json",
            Version::V3 => "http://iiif.io/api/image/3/context.json",
        }
    }

    /// The compliance level profile URI, e.g. `http://iiif.io/api/image/3/level2.json`.
    pub fn level_profile_uri(self, level: u8) -> String {
        format!("http://iiif.io/api/image/{self}/level{level}.json")
    }

    /// The version named by a path segment (`"2"` or `"3"`), as in `/iiif/3/…`.
    pub fn from_path_segment(segment: &str) -> Option<Version> {
        match segment {
            "2" => Some(Version::V2),
            "3" => Some(Version::V3),
            _ => None,
        }
    }

    /// The human-readable API version, used in error messages ("2.1" or "3.0").
    pub fn api_name(self) -> &'static str {
        match self {
            Version::V2 => "2.1",
            Version::V3 => "3.0",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V2 => "2",
            Version::V3 => "3",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_major_number() {
        assert_eq!(Version::V2.to_string(), "2");
        assert_eq!(Version::V3.to_string(), "3");
    }

    #[test]
    fn uris() {
        assert_eq!(
            Version::V2.context_uri(),
            "http://iiif.io/api/image/2/context.json"
        );
        assert_eq!(
            Version::V3.context_uri(),
            "http://iiif.io/api/image/3/context.json"
        );
        assert_eq!(
            Version::V2.level_profile_uri(2),
            "http://iiif.io/api/image/2/level2.json"
        );
        assert_eq!(
            Version::V3.level_profile_uri(1),
            "http://iiif.io/api/image/3/level1.json"
        );
    }

    #[test]
    fn path_segments() {
        assert_eq!(Version::from_path_segment("2"), Some(Version::V2));
        assert_eq!(Version::from_path_segment("3"), Some(Version::V3));
        assert_eq!(Version::from_path_segment("2.1"), None);
        assert_eq!(Version::from_path_segment(""), None);
    }
}

//! Image identifiers: the `{identifier}` part of a IIIF URL.
//!
//! The core keeps two forms. The *raw* form is exactly what the client put in the URL path, still percent-encoded;
//! it is echoed back in `id`, `@id` and `Location` because the validator wants `id` to equal the request URL minus
//! `/info.json` byte for byte. The *decoded* form names the file under iipsrv's `FILESYSTEM_PREFIX`, so it is held
//! to safety rules: no control characters, no absolute paths, no `..` components and no backslashes.
//!
//! What characters a client may leave unencoded is treated leniently (the validator's `[frob]` case accepts 400 or
//! 404); what the decoded value may contain is treated strictly.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::IiifError;
use crate::percent;

/// The longest decoded identifier accepted, in bytes.
///
/// Real identifiers are short; this bound keeps the FastCGI `QUERY_STRING` (where the identifier may triple in
/// size when re-encoded) and the log lines small, while staying far above any sensible file name.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;

/// Everything except the RFC 3986 unreserved characters `[A-Za-z0-9._~-]` is encoded for iipsrv.
///
/// iipsrv splits `QUERY_STRING` on `&` before decoding, turns `+` into a space and decodes `%XX`, so `/`, `&`,
/// `+`, `%` and spaces must all be encoded. Encoding `/` is harmless: iipsrv decodes before it maps the identifier
/// to a path, so sub-directories keep working.
const BACKEND_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'-');

/// A validated image identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// Exactly as in the URL path, still percent-encoded.
    raw: String,
    /// The percent-decoded value, used to find the image.
    decoded: String,
}

impl Identifier {
    /// Validates and decodes an identifier taken from a URL path.
    ///
    /// # Errors
    ///
    /// 400 when the identifier is empty, longer than [`MAX_IDENTIFIER_BYTES`] once decoded, contains a malformed
    /// `%` escape, does not decode to UTF-8, contains a control character (including NUL and DEL), starts with `/`,
    /// contains a `\`, or has a `..`, `.` or empty path component (`a/../b`, `a/./b`, `a//b`, `a/`).
    pub fn from_raw(raw: &str) -> Result<Identifier, IiifError> {
        let invalid = |why: &str| IiifError::bad_request(format!("invalid identifier: {why}"));
        if raw.is_empty() {
            return Err(invalid("empty"));
        }
        let decoded = percent::decode(raw)
            .map_err(|error| invalid(error.reason()))?
            .into_owned();
        if decoded.is_empty() {
            return Err(invalid("empty"));
        }
        if decoded.len() > MAX_IDENTIFIER_BYTES {
            return Err(invalid("too long"));
        }
        // `char::is_control` covers C0 (including NUL), DEL and the C1 range.
        if decoded.chars().any(char::is_control) {
            return Err(invalid("control characters are not allowed"));
        }
        if decoded.starts_with('/') {
            return Err(invalid("must not start with a slash"));
        }
        if decoded.contains('\\') {
            return Err(invalid("backslashes are not allowed"));
        }
        for component in decoded.split('/') {
            match component {
                ".." => return Err(invalid("'..' path components are not allowed")),
                // `a/./b` and `a//b` would be a second name for `a/b` on disk, and a trailing `/`
                // names a directory: one spelling per image keeps caches and purges exact.
                "." => return Err(invalid("'.' path components are not allowed")),
                "" => return Err(invalid("empty path components are not allowed")),
                _ => {}
            }
        }
        Ok(Identifier {
            raw: raw.to_string(),
            decoded,
        })
    }

    /// The identifier exactly as the client wrote it in the URL path (still percent-encoded).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The percent-decoded identifier: the image's name below iipsrv's `FILESYSTEM_PREFIX`.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The identifier encoded for iipsrv's `QUERY_STRING`: everything except `[A-Za-z0-9._~-]` is percent-encoded.
    pub fn backend_encoded(&self) -> String {
        encode_backend_file(&self.decoded)
    }

    /// The form used to build public `id`s, `@id`s and `Location` headers.
    ///
    /// This is the raw form, unchanged, because clients and the validator compare `id` with the URL they used.
    pub fn public_encoded(&self) -> String {
        self.raw.clone()
    }
}

/// A file name below iipsrv's `FILESYSTEM_PREFIX`, encoded for iipsrv's `QUERY_STRING`: everything
/// except `[A-Za-z0-9._~-]` is percent-encoded (so `/` becomes `%2F`, which iipsrv decodes).
pub fn encode_backend_file(name: &str) -> String {
    utf8_percent_encode(name, BACKEND_ENCODE_SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(raw: &str) -> IiifError {
        Identifier::from_raw(raw).expect_err(raw)
    }

    #[test]
    fn plain_identifiers_decode_to_themselves() {
        let id = Identifier::from_raw("67352ccc-d1b0-11e1-89ae-279075081939").unwrap();
        assert_eq!(id.raw(), "67352ccc-d1b0-11e1-89ae-279075081939");
        assert_eq!(id.decoded(), "67352ccc-d1b0-11e1-89ae-279075081939");
        assert_eq!(id.backend_encoded(), "67352ccc-d1b0-11e1-89ae-279075081939");
        assert_eq!(id.public_encoded(), "67352ccc-d1b0-11e1-89ae-279075081939");
    }

    #[test]
    fn escapes_are_decoded_but_the_raw_form_is_kept() {
        // The validator's id_escaped test sends '-' as %2D and expects the same image.
        let id = Identifier::from_raw("67352ccc%2Dd1b0").unwrap();
        assert_eq!(id.decoded(), "67352ccc-d1b0");
        assert_eq!(id.public_encoded(), "67352ccc%2Dd1b0");
        assert_eq!(id.backend_encoded(), "67352ccc-d1b0");
    }

    #[test]
    fn sub_directories_work_encoded_or_not() {
        let encoded = Identifier::from_raw("sub%2Ftest.tif").unwrap();
        assert_eq!(encoded.decoded(), "sub/test.tif");
        assert_eq!(encoded.backend_encoded(), "sub%2Ftest.tif");
        let unencoded = Identifier::from_raw("a/b").unwrap();
        assert_eq!(unencoded.decoded(), "a/b");
        assert_eq!(unencoded.backend_encoded(), "a%2Fb");
        assert_eq!(unencoded.public_encoded(), "a/b");
    }

    #[test]
    fn backend_encoding_protects_iipsrv_query_parsing() {
        let id = Identifier::from_raw("a&b+c%20d%25e~f_g.h(i)[j]").unwrap();
        assert_eq!(id.decoded(), "a&b+c d%e~f_g.h(i)[j]");
        assert_eq!(
            id.backend_encoded(),
            "a%26b%2Bc%20d%25e~f_g.h%28i%29%5Bj%5D"
        );
    }

    #[test]
    fn non_ascii_is_encoded_as_utf8() {
        let id = Identifier::from_raw("caf%C3%A9.tif").unwrap();
        assert_eq!(id.decoded(), "café.tif");
        assert_eq!(id.backend_encoded(), "caf%C3%A9.tif");
        let raw_unicode = Identifier::from_raw("café.tif").unwrap();
        assert_eq!(raw_unicode.backend_encoded(), "caf%C3%A9.tif");
    }

    #[test]
    fn lenient_about_raw_characters() {
        // The validator's id_error_unescaped sends "[frob]" and accepts 400 or 404; accepting it leads to 404.
        assert!(Identifier::from_raw("[frob]").is_ok());
        assert!(Identifier::from_raw("a+b").is_ok());
        assert_eq!(Identifier::from_raw("a+b").unwrap().decoded(), "a+b");
    }

    #[test]
    fn unsafe_identifiers_are_400() {
        let cases = [
            ("", "invalid identifier: empty"),
            (
                "%00",
                "invalid identifier: control characters are not allowed",
            ),
            (
                "a%0Ab",
                "invalid identifier: control characters are not allowed",
            ),
            (
                "a%7Fb",
                "invalid identifier: control characters are not allowed",
            ),
            (
                "a%C2%85b",
                "invalid identifier: control characters are not allowed",
            ),
            (
                "a\tb",
                "invalid identifier: control characters are not allowed",
            ),
            (
                "%2Fetc%2Fpasswd",
                "invalid identifier: must not start with a slash",
            ),
            (
                "..",
                "invalid identifier: '..' path components are not allowed",
            ),
            (
                "..%2F..%2Fetc%2Fpasswd",
                "invalid identifier: '..' path components are not allowed",
            ),
            (
                "a/../b",
                "invalid identifier: '..' path components are not allowed",
            ),
            (
                "a%2F..",
                "invalid identifier: '..' path components are not allowed",
            ),
            (
                "%2E%2E%2Fx",
                "invalid identifier: '..' path components are not allowed",
            ),
            ("a%5Cb", "invalid identifier: backslashes are not allowed"),
            ("..%5Cx", "invalid identifier: backslashes are not allowed"),
            ("%FF", "invalid identifier: not valid UTF-8 once decoded"),
            ("%", "invalid identifier: malformed percent-encoding"),
            ("a%2", "invalid identifier: malformed percent-encoding"),
            ("a%zzb", "invalid identifier: malformed percent-encoding"),
        ];
        for (raw, message) in cases {
            let error = rejected(raw);
            assert_eq!(error, IiifError::bad_request(message), "{raw:?}");
        }
    }

    #[test]
    fn dot_and_empty_components_are_400() {
        for (raw, message) in [
            (
                ".",
                "invalid identifier: '.' path components are not allowed",
            ),
            (
                "a/./b",
                "invalid identifier: '.' path components are not allowed",
            ),
            (
                "a%2F.%2Fb",
                "invalid identifier: '.' path components are not allowed",
            ),
            (
                "%2E",
                "invalid identifier: '.' path components are not allowed",
            ),
            (
                "a%2F%2Fb",
                "invalid identifier: empty path components are not allowed",
            ),
            (
                "a%2F",
                "invalid identifier: empty path components are not allowed",
            ),
        ] {
            assert_eq!(rejected(raw), IiifError::bad_request(message), "{raw:?}");
        }
    }

    #[test]
    fn dots_that_are_not_parent_components_are_fine() {
        for raw in ["a..b", "...", "a/.../b", "x..", "..x", "a.tif"] {
            assert!(Identifier::from_raw(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn length_is_bounded() {
        assert!(Identifier::from_raw(&"a".repeat(MAX_IDENTIFIER_BYTES)).is_ok());
        assert_eq!(
            rejected(&"a".repeat(MAX_IDENTIFIER_BYTES + 1)),
            IiifError::bad_request("invalid identifier: too long")
        );
    }
}

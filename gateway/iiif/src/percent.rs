//! Percent-decoding of URL path segments, with one rule for what counts as well-formed.
//!
//! IIIF 3.0 §9 and 2.1 §9: percent-encoding characters outside the identifier "introduces no
//! ambiguity", so `%5Emax` is `^max` and `pct%3A50` is `pct:50`. Python's `requests`, urllib3
//! and Java's URI classes encode `^`, `!`, `:` and `,` this way, so the parameters are decoded
//! before the strict parsers see them. Identifiers are decoded too, under their own rules
//! ([`crate::identifier`]).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a segment could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A `%` not followed by two hex digits.
    Malformed,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl DecodeError {
    /// The reason as it appears in a 400's message.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            DecodeError::Malformed => "malformed percent-encoding",
            DecodeError::NotUtf8 => "not valid UTF-8 once decoded",
        }
    }
}

/// Decodes every `%XX` in `segment`; borrows when there is none.
///
/// Malformed escapes are refused, not kept as literal text (which `percent_decode_str` would do):
/// otherwise `%zz` and `%25zz` would name the same thing and a value would have two spellings.
pub(crate) fn decode(segment: &str) -> Result<Cow<'_, str>, DecodeError> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    if !has_only_well_formed_escapes(segment) {
        return Err(DecodeError::Malformed);
    }
    percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| Cow::Owned(decoded.into_owned()))
        .map_err(|_| DecodeError::NotUtf8)
}

/// True when every `%` in `text` starts a `%XX` escape with two hex digits.
fn has_only_well_formed_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let escape = bytes.get(index + 1..index + 3);
            if !escape.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            index += 3;
        } else {
            index += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(decode("full"), Ok(Cow::Borrowed("full"))));
    }

    #[test]
    fn escapes_are_decoded_in_either_case() {
        assert_eq!(decode("%5Emax").unwrap(), "^max");
        assert_eq!(decode("%5emax").unwrap(), "^max");
        assert_eq!(decode("pct%3A0%2C0%2C50%2C50").unwrap(), "pct:0,0,50,50");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        // One level only: %2521 is "%21", not "!".
        assert_eq!(decode("%2521").unwrap(), "%21");
    }

    #[test]
    fn malformed_escapes_and_bad_utf8_are_refused() {
        for bad in ["%", "%2", "a%zz", "%%41", "%G0"] {
            assert_eq!(decode(bad), Err(DecodeError::Malformed), "{bad:?}");
        }
        assert_eq!(decode("%FF"), Err(DecodeError::NotUtf8));
        assert_eq!(decode("%C3"), Err(DecodeError::NotUtf8));
    }
}

//! The strict number grammars shared by the region, size and rotation segments.
//!
//! IIIF says pixel values are non-negative integers and that percentages and rotations are non-negative floats
//! written with digits and `.` only (3.0 §4.7). iipsrv parses numbers with `atof`, which accepts signs, exponents,
//! whitespace and trailing junk, so the gateway must be the one that says no.

/// The longest decimal number (digits and the point) the parser accepts.
///
/// The spec sets no bound for 3.0 (2.1 says at most 10 decimals). A bound keeps hostile URLs cheap to reject and
/// is far above anything a client needs: 32 characters hold 20 decimals of a three-digit percentage.
const MAX_DECIMAL_CHARS: usize = 32;

/// Parses a non-negative integer written as `\d+`, rejecting signs, junk and values that do not fit in a `u32`.
pub(crate) fn parse_pixel(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are legal `\d+`; `u32::from_str` accepts them and reports overflow.
    text.parse::<u32>().ok()
}

/// Parses a non-negative decimal written as `\d+(\.\d+)?`.
///
/// This rejects `+0.9`, `-1`, `.5`, `5.`, `1e3`, `inf`, `nan` and anything longer than [`MAX_DECIMAL_CHARS`].
pub(crate) fn parse_decimal(text: &str) -> Option<f64> {
    if text.is_empty() || text.len() > MAX_DECIMAL_CHARS {
        return None;
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let all_digits =
        |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|fraction| !all_digits(fraction)) {
        return None;
    }
    // Only digits and one point remain, which `f64::from_str` always accepts and never maps to infinity
    // within 32 characters.
    text.parse::<f64>().ok()
}

/// Formats a non-negative decimal in the canonical IIIF way: an integer when the value is whole, otherwise the
/// shortest decimal that reads back to the same value, with a leading `0` and no trailing zeros (`0.9`, `22.5`).
///
/// Rust's `Display` for `f64` already has exactly that shape and never uses an exponent.
pub(crate) fn format_decimal(value: f64) -> String {
    if value == 0.0 {
        // Avoids printing "-0" for a negative zero.
        return "0".to_string();
    }
    format!("{value}")
}

/// `round(numerator / denominator)` with halves rounded up, in exact integer arithmetic.
pub(crate) fn div_round(numerator: u64, denominator: u64) -> u64 {
    debug_assert!(denominator > 0);
    // The u128 widening keeps `2 * numerator + denominator` from overflowing for any u64 inputs.
    ((2 * u128::from(numerator) + u128::from(denominator)) / (2 * u128::from(denominator))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_accept_plain_digits_only() {
        assert_eq!(parse_pixel("0"), Some(0));
        assert_eq!(parse_pixel("007"), Some(7));
        assert_eq!(parse_pixel("4294967295"), Some(u32::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "10x",
            "4294967296",
            "99999999999999999999",
            "٣",
        ] {
            assert_eq!(parse_pixel(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_accept_digits_and_one_point() {
        assert_eq!(parse_decimal("0"), Some(0.0));
        assert_eq!(parse_decimal("0.9"), Some(0.9));
        assert_eq!(parse_decimal("22.5"), Some(22.5));
        assert_eq!(parse_decimal("100.0000000001"), Some(100.0000000001));
        assert_eq!(
            parse_decimal("0.12345678901234567890"),
            Some(0.123_456_789_012_345_68)
        );
        for bad in [
            "", "+0.9", "-1", ".5", "5.", "1.2.3", "1e3", "inf", "NaN", "1,5", " 1", "0x10",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(&"1".repeat(33)), None);
        assert!(parse_decimal(&"1".repeat(32)).is_some());
    }

    #[test]
    fn decimals_format_canonically() {
        assert_eq!(format_decimal(0.0), "0");
        assert_eq!(format_decimal(-0.0), "0");
        assert_eq!(format_decimal(90.0), "90");
        assert_eq!(format_decimal(0.9), "0.9");
        assert_eq!(format_decimal(22.50), "22.5");
        assert_eq!(format_decimal(1e20), "100000000000000000000");
        assert_eq!(format_decimal(1e-7), "0.0000001");
    }

    #[test]
    fn integer_rounding_helpers() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(5, 3), 2);
        assert_eq!(div_round(0, 7), 0);
        assert_eq!(div_round(u64::MAX, 1), u64::MAX);
    }
}

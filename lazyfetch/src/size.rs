//! Byte sizes (`"500GiB"`, `"8MiB"`, `1048576`) and percentages (`"90%"`) as the YAML file writes
//! them. Pure parsing, no I/O.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number of bytes, written as plain bytes or with a unit.
///
/// Units: `B`, decimal `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000) and binary `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024), case-insensitive, with an optional space and an optional fraction
/// (`"1.5GiB"`). The result is rounded down to whole bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a size or a percentage did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let trimmed = text.trim();
        let number_end = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(number_end);
        let unit = unit.trim_start().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, multiplier)| *multiplier)
                .ok_or_else(|| {
                    ParseError(format!(
                        "invalid size {text:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                    ))
                })?
        };
        let bytes = parse_scaled(number, multiplier).ok_or_else(|| {
            ParseError(format!(
                "invalid size {text:?}: expected a number of bytes, optionally with a unit, e.g. \"500GiB\""
            ))
        })?;
        Ok(ByteSize(bytes))
    }
}

/// `number × multiplier` in whole bytes, exactly for integers, without overflow.
fn parse_scaled(number: &str, multiplier: u64) -> Option<u64> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole_value: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let bytes = whole_value.checked_mul(multiplier)?;
    // The fraction exactly, in integers: multiplier × digits / 10^n, rounded down ("1.5GiB" is
    // 1610612736, "0.5KiB" is 512). Digits past the 18th cannot matter below one byte per EiB.
    let digits = &fraction[..fraction.len().min(18)];
    if digits.is_empty() {
        return Some(bytes);
    }
    let numerator = u128::from(multiplier) * digits.parse::<u128>().ok()?;
    let part = numerator / 10u128.pow(digits.len() as u32);
    let bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    Some(bytes)
}

impl fmt::Display for ByteSize {
    /// Binary units with two decimals (`1.50 GiB`), plain bytes below 1 KiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < NAMES.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.2} {}", NAMES[unit])
        }
    }
}

impl Serialize for ByteSize {
    /// As a plain number of bytes: exact, and read back by any version of the parser.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"500GiB\", \"8MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {value}: negative")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A share of something, written `"90%"` (fractions allowed: `"92.5%"`), between 0 and 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    /// A percentage; `None` outside 0..=100 or not finite.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Percent(value))
    }

    /// The percentage (90.0 for `"90%"`).
    pub fn value(self) -> f64 {
        self.0
    }

    /// `total × self`, rounded down.
    pub fn of(self, total: u64) -> u64 {
        // f64 is exact for budgets up to 2^53 bytes (8 PiB); beyond that a byte of rounding is moot.
        ((total as f64) * self.0 / 100.0).floor() as u64
    }
}

impl FromStr for Percent {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let invalid = || {
            ParseError(format!(
                "invalid percentage {text:?}: expected a number from 0 to 100 followed by %, e.g. \"90%\""
            ))
        };
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(invalid)?
            .trim_end();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(invalid());
        }
        number
            .parse::<f64>()
            .ok()
            .and_then(Percent::new)
            .ok_or_else(invalid)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    /// As written in the file: `"90%"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_with_units() {
        let cases = [
            ("0", 0),
            ("1048576", 1_048_576),
            ("500GiB", 500 << 30),
            ("8MiB", 8 << 20),
            ("8 mib", 8 << 20),
            ("1.5GiB", 3 << 29),
            ("0.5KiB", 512),
            (".5KiB", 512),
            ("2KB", 2_000),
            ("2kb", 2_000),
            ("3TB", 3_000_000_000_000),
            ("1TiB", 1 << 40),
            ("12B", 12),
            ("  7MB  ", 7_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text_in_the_message() {
        for text in [
            "",
            "GiB",
            "5 XB",
            "-5",
            "1.2.3MiB",
            "1e9",
            "5GiBs",
            ".",
            "99999999999999999999",
        ] {
            let error = text.parse::<ByteSize>().unwrap_err();
            assert!(
                error.to_string().contains(&format!("{text:?}")),
                "{text}: {error}"
            );
        }
        // 2^64 bytes do not fit.
        assert!("16777216TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_from_yaml_numbers_and_strings() {
        let sizes: Vec<ByteSize> = serde_yaml_ng::from_str("[1024, \"1KiB\", 8MiB]").unwrap();
        assert_eq!(sizes, [ByteSize(1024), ByteSize(1024), ByteSize(8 << 20)]);
        assert!(serde_yaml_ng::from_str::<ByteSize>("-1").is_err());
        assert!(serde_yaml_ng::from_str::<ByteSize>("1.5").is_err());
    }

    #[test]
    fn percentages() {
        assert_eq!("90%".parse::<Percent>().unwrap().value(), 90.0);
        assert_eq!("92.5 %".parse::<Percent>().unwrap().value(), 92.5);
        assert_eq!("0%".parse::<Percent>().unwrap().value(), 0.0);
        assert_eq!("100%".parse::<Percent>().unwrap().value(), 100.0);
        for bad in ["90", "101%", "-5%", "%", "abc%", "0.9", "1e2%", "nan%"] {
            assert!(bad.parse::<Percent>().is_err(), "{bad}");
        }
        assert_eq!("80%".parse::<Percent>().unwrap().of(1000), 800);
        assert_eq!("33.3%".parse::<Percent>().unwrap().of(10), 3);
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(ByteSize(512).to_string(), "512 B");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.50 GiB");
    }

    proptest! {
        #[test]
        fn integers_with_binary_units_are_exact(n in 0u64..1_000_000, unit in 0usize..UNITS.len()) {
            let (name, multiplier) = UNITS[unit];
            prop_assert_eq!(format!("{n}{name}").parse::<ByteSize>(), Ok(ByteSize(n * multiplier)));
        }

        #[test]
        fn any_text_parses_or_errs_without_panic(text in "\\PC{0,12}") {
            let _ = text.parse::<ByteSize>();
            let _ = text.parse::<Percent>();
        }
    }
}

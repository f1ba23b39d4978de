//! Identifier → S3 location: ordered regex rules with bucket and key templates. Pure, no I/O.
//!
//! A template is literal text with capture references: `$name` or `${name}` for a named group,
//! `$1` or `${1}` for a numbered one, `$$` for a literal `$`. An unbraced reference takes the
//! longest run of letters, digits and `_` after the `$` (as in the `regex` crate), so write
//! `${1}_x`, not `$1_x`. Every reference must name a group of its rule's regex; that is checked
//! when the configuration is resolved, not when a request arrives.

use regex::{Captures, Regex};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Index(usize),
    Name(String),
}

/// A parsed bucket or key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; the error says what is wrong (an unclosed `${`, an empty reference).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (reference, consumed) = if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            } else if let Some(braced) = after.strip_prefix('{') {
                let close = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
                (&braced[..close], close + 2)
            } else {
                let length = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..length], length)
            };
            if reference.is_empty() {
                return Err(format!(
                    "\"$\" without a group name or number in {text:?} (write \"$$\" for a literal \"$\")"
                ));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(match reference.parse::<usize>() {
                Ok(index) => Piece::Index(index),
                Err(_) => {
                    if !reference
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!("invalid group name {reference:?} in {text:?}"));
                    }
                    Piece::Name(reference.to_owned())
                }
            });
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// The references that `regex` does not define, as written (`"${3}"`, `"${name}"`).
    pub fn unknown_groups(&self, regex: &Regex) -> Vec<String> {
        self.pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Index(index) if *index >= regex.captures_len() => {
                    Some(format!("${{{index}}}"))
                }
                Piece::Name(name) if !regex.capture_names().any(|n| n == Some(name)) => {
                    Some(format!("${{{name}}}"))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether the template refers to any capture group (its result depends on the identifier).
    pub fn has_references(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| !matches!(piece, Piece::Literal(_)))
    }

    /// The template with the captures filled in; a group that did not take part is empty.
    pub fn expand(&self, captures: &Captures<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Index(index) => {
                    out.push_str(captures.get(*index).map_or("", |m| m.as_str()));
                }
                Piece::Name(name) => {
                    out.push_str(captures.name(name).map_or("", |m| m.as_str()));
                }
            }
        }
        out
    }
}

/// Where a master lives in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket name.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) pattern: Regex,
    pub(crate) bucket: Template,
    pub(crate) key: Template,
}

/// The ordered rules of `gateway.masters.rules`; the first whose regex matches decides.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub(crate) rules: Vec<Rule>,
}

impl Rules {
    /// The S3 location of `identifier`, or `None` when no rule matches, the matching rule
    /// produced an empty bucket or key (an optional group that did not take part), or a bucket
    /// taken from the identifier is not a valid S3 bucket name.
    pub fn locate(&self, identifier: &str) -> Option<S3Location> {
        let (rule, captures) = self
            .rules
            .iter()
            .find_map(|rule| rule.pattern.captures(identifier).map(|c| (rule, c)))?;
        let location = S3Location {
            bucket: rule.bucket.expand(&captures),
            key: rule.key.expand(&captures),
        };
        let bucket_ok = if rule.bucket.has_references() {
            is_bucket_name(&location.bucket)
        } else {
            // The operator's own literal: S3 itself says if it is wrong, at the first request.
            !location.bucket.is_empty()
        };
        (bucket_ok && !location.key.is_empty()).then_some(location)
    }
}

/// S3's bucket naming rules (3-63 characters of lower-case letters, digits, `.` and `-`,
/// starting and ending with a letter or digit). A bucket a client's identifier chose is checked
/// with them, so it can never smuggle a path, a host or a query into the request.
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'.' || *b == b'-')
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, bucket: &str, key: &str) -> Rule {
        Rule {
            pattern: Regex::new(pattern).unwrap(),
            bucket: Template::parse(bucket).unwrap(),
            key: Template::parse(key).unwrap(),
        }
    }

    fn expand(pattern: &str, template: &str, input: &str) -> String {
        let regex = Regex::new(pattern).unwrap();
        Template::parse(template)
            .unwrap()
            .expand(&regex.captures(input).unwrap())
    }

    #[test]
    fn references_in_every_spelling() {
        let pattern = r"^(?<collection>[a-z]+)/(?<name>[^/]+)$";
        assert_eq!(
            expand(pattern, "${collection}/${name}.tif", "maps/a b"),
            "maps/a b.tif"
        );
        assert_eq!(
            expand(pattern, "$collection/$name.tif", "maps/x"),
            "maps/x.tif"
        );
        assert_eq!(expand(pattern, "${1}-${2}", "maps/x"), "maps-x");
        assert_eq!(expand(pattern, "$1-$2", "maps/x"), "maps-x");
        assert_eq!(expand(pattern, "${0}", "maps/x"), "maps/x");
        assert_eq!(expand(pattern, "cost $$5 ${2}", "maps/x"), "cost $5 x");
        assert_eq!(expand(pattern, "plain", "maps/x"), "plain");
        assert_eq!(expand(pattern, "", "maps/x"), "");
    }

    #[test]
    fn unbraced_reference_takes_the_longest_name() {
        // `$1_x` names group "1_x" (not group 1), as in the regex crate: a config check catches it.
        let regex = Regex::new("(a)").unwrap();
        let template = Template::parse("$1_x").unwrap();
        assert_eq!(template.unknown_groups(&regex), ["${1_x}"]);
        assert!(Template::parse("${1}_x")
            .unwrap()
            .unknown_groups(&regex)
            .is_empty());
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("${name").unwrap_err().contains("unclosed"));
        assert!(Template::parse("a$")
            .unwrap_err()
            .contains("without a group"));
        assert!(Template::parse("${}")
            .unwrap_err()
            .contains("without a group"));
        assert!(Template::parse("$/x")
            .unwrap_err()
            .contains("without a group"));
        assert!(Template::parse("${a-b}")
            .unwrap_err()
            .contains("invalid group name"));
    }

    #[test]
    fn unknown_groups_are_listed() {
        let regex = Regex::new(r"^(?<name>.+)$").unwrap();
        let template = Template::parse("${name}/${other}/${2}/${1}").unwrap();
        assert_eq!(template.unknown_groups(&regex), ["${other}", "${2}"]);
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = Rules {
            rules: vec![
                rule(r"^(?<c>[a-z]+)/(?<n>[^/]+)$", "masters", "${c}/${n}.tif"),
                rule(r"^(.+)$", "other", "${1}"),
            ],
        };
        assert_eq!(
            rules.locate("maps/one"),
            Some(S3Location {
                bucket: "masters".into(),
                key: "maps/one.tif".into()
            })
        );
        assert_eq!(
            rules.locate("Maps/one"),
            Some(S3Location {
                bucket: "other".into(),
                key: "Maps/one".into()
            })
        );
        assert_eq!(rules.locate(""), None);
    }

    #[test]
    fn buckets_from_identifiers_must_be_valid_names() {
        let rules = Rules {
            rules: vec![rule("^([^/]+)/(.+)$", "${1}", "${2}")],
        };
        assert_eq!(rules.locate("maps/a.tif").unwrap().bucket, "maps");
        for bad in [
            "Maps/a", "ab/a", "-ab/a", "ab-/a", "a..b/a", "a_b/a", "a b/a", "a%2fb/a", "a:b/a",
            "a?b/a", "a#b/a", "a@b/a",
        ] {
            assert_eq!(rules.locate(bad), None, "{bad}");
        }
        assert!(is_bucket_name(&"a".repeat(63)));
        assert!(!is_bucket_name(&"a".repeat(64)));
        assert!(is_bucket_name("my.bucket-1"));
    }

    #[test]
    fn references_are_seen() {
        assert!(!Template::parse("masters$$").unwrap().has_references());
        assert!(Template::parse("m-$1").unwrap().has_references());
        assert!(Template::parse("${name}").unwrap().has_references());
    }

    #[test]
    fn empty_expansion_is_no_location() {
        let rules = Rules {
            rules: vec![rule(r"^(a)?b$", "bucket", "${1}")],
        };
        assert_eq!(rules.locate("b"), None);
        assert_eq!(rules.locate("ab").unwrap().key, "a");
    }
}

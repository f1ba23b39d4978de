//! Conditional GET (RFC 9110 §13): whether the client's copy is still current.
//!
//! The gateway answers `304 Not Modified` itself, before any work: an image's validators are
//! known from its master's version and the request's plan, without rendering anything. (iipsrv's
//! own 304 handling is unreliable: `iipsrv-baseline.md` §3.)

use std::time::SystemTime;

/// The validators a client sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Preconditions<'a> {
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
}

/// The validators of the representation the gateway would send.
#[derive(Debug, Clone)]
pub struct Validators {
    /// A strong entity tag, quotes included.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
}

impl Preconditions<'_> {
    /// True when the client's copy is current, so a 304 is the answer (for GET and HEAD).
    ///
    /// `If-None-Match` wins when present (RFC 9110 §13.2.2: `If-Modified-Since` is then
    /// ignored); it uses the weak comparison, so `W/"x"` matches `"x"`. `If-Modified-Since`
    /// matches when the representation has not changed since that date (one-second precision,
    /// as HTTP dates have); an unparseable date is ignored.
    pub fn not_modified(&self, validators: &Validators) -> bool {
        if let Some(list) = self.if_none_match {
            return etag_list_matches(list, &validators.etag);
        }
        match (self.if_modified_since, validators.last_modified) {
            (Some(since), Some(modified)) => match httpdate::parse_http_date(since.trim()) {
                Ok(since) => unix_seconds(modified) <= unix_seconds(since),
                Err(_) => false,
            },
            _ => false,
        }
    }
}

/// Whether a comma-separated `If-None-Match` list contains `*` or a tag weakly equal to `etag`.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    let ours = opaque_tag(etag);
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || (!candidate.is_empty() && opaque_tag(candidate) == ours)
    })
}

/// The quoted part of an entity tag, without the weakness prefix.
fn opaque_tag(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn validators(seconds: u64) -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)),
        }
    }

    fn check(if_none_match: Option<&str>, if_modified_since: Option<&str>) -> bool {
        Preconditions {
            if_none_match,
            if_modified_since,
        }
        .not_modified(&validators(1_700_000_000))
    }

    #[test]
    fn no_validators_means_send_the_body() {
        assert!(!check(None, None));
    }

    #[test]
    fn entity_tags_match_weakly_and_in_lists() {
        assert!(check(Some("\"abc\""), None));
        assert!(check(Some("W/\"abc\""), None));
        assert!(check(Some("\"zzz\", \"abc\""), None));
        assert!(check(Some("*"), None));
        assert!(!check(Some("\"abd\""), None));
        assert!(!check(Some("abc"), None));
        assert!(!check(Some(""), None));
        assert!(!check(Some(" , "), None));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let later = "Tue, 01 Jan 2030 00:00:00 GMT";
        assert!(check(None, Some(later)));
        assert!(!check(Some("\"other\""), Some(later)));
    }

    #[test]
    fn modified_since_compares_whole_seconds() {
        let exact =
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let before =
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_999));
        assert!(check(None, Some(&exact)));
        assert!(!check(None, Some(&before)));
        // Sub-second parts of the file time do not make a copy from the same second stale.
        let v = Validators {
            etag: "\"abc\"".into(),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_900)),
        };
        let p = Preconditions {
            if_none_match: None,
            if_modified_since: Some(&exact),
        };
        assert!(p.not_modified(&v));
    }

    #[test]
    fn unparseable_dates_and_unknown_times_are_ignored() {
        assert!(!check(None, Some("yesterday")));
        let unknown = Validators {
            etag: "\"abc\"".into(),
            last_modified: None,
        };
        let p = Preconditions {
            if_none_match: None,
            if_modified_since: Some("Tue, 01 Jan 2030 00:00:00 GMT"),
        };
        assert!(!p.not_modified(&unknown));
    }
}

//! The request log's line, and the pure decisions around it: which request id, whether a
//! request gets a line.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::config::{LogFormat, LogLevel};
use super::notes::Notes;

/// The longest `X-Request-Id` taken from a proxy.
pub const MAX_OFFERED_ID: usize = 128;

/// Everything one line says.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub notes: &'a Notes,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    /// The IIIF API version (`2`, `3`, `none`) and endpoint kind, as in the metrics.
    pub version: &'a str,
    pub kind: &'a str,
    /// Only when `gateway.request_log.client_address` is on.
    pub client: Option<IpAddr>,
}

impl Entry<'_> {
    /// The line, without its newline. Written straight into one string: at tens of
    /// thousands of requests a second, a map of JSON values per line cost more than the rest
    /// of a cache hit.
    pub fn format(&self, format: LogFormat) -> String {
        let time = jiff::Timestamp::try_from(self.time)
            .map(|t| format!("{t:.3}"))
            .unwrap_or_default();
        let client = self.client.map(|ip| ip.to_string());
        let json = format != LogFormat::Logfmt;
        let mut line = String::with_capacity(320);
        if json {
            line.push('{');
        }
        for (i, (key, value)) in self.fields(&time, client.as_deref()).enumerate() {
            if i > 0 {
                line.push(if json { ',' } else { ' ' });
            }
            if json {
                line.push('"');
                line.push_str(key);
                line.push_str("\":");
            } else {
                line.push_str(key);
                line.push('=');
            }
            match value {
                Field::Text(text) if json => push_json_string(&mut line, text),
                Field::Text(text) => push_logfmt_value(&mut line, text),
                Field::Number(n) => line.push_str(&n.to_string()),
                Field::Millis(ms) => line.push_str(&ms.to_string()),
            }
        }
        if json {
            line.push('}');
        }
        line
    }

    /// The fields in their order; absent notes are left out.
    fn fields<'s>(
        &'s self,
        time: &'s str,
        client: Option<&'s str>,
    ) -> impl Iterator<Item = (&'static str, Field<'s>)> {
        let notes = self.notes;
        let duration_ms = (self.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let always = [
            ("time", Field::Text(time)),
            ("request_id", Field::Text(&notes.id)),
            ("method", Field::Text(self.method)),
            ("path", Field::Text(self.path)),
            ("status", Field::Number(u64::from(self.status))),
            ("bytes", Field::Number(self.bytes as u64)),
            ("duration_ms", Field::Millis(duration_ms)),
            ("version", Field::Text(self.version)),
            ("kind", Field::Text(self.kind)),
        ];
        let optional = [
            ("cache", notes.cache),
            ("lane", notes.lane),
            ("backend", notes.backend.as_deref()),
            ("redirect", notes.redirect),
            ("error", notes.error),
            ("client", client),
        ];
        always.into_iter().chain(
            optional
                .into_iter()
                .filter_map(|(key, value)| value.map(|v| (key, Field::Text(v)))),
        )
    }
}

/// One field's value.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Number(u64),
    Millis(f64),
}

/// `text` as a JSON string, quotes included.
fn push_json_string(line: &mut String, text: &str) {
    push_quoted(line, text, |c| match c {
        '\r' => "\\r".to_owned(),
        '\t' => "\\t".to_owned(),
        c if u32::from(c) < 0x20 => format!("\\u{:04x}", u32::from(c)),
        // DEL and the C1 controls may stand as they are in JSON.
        c => c.to_string(),
    });
}

/// A logfmt value: bare when it is one plain word, else quoted with `"` and `\` escaped and
/// control characters written as escapes (a path cannot break the line in two).
fn push_logfmt_value(line: &mut String, text: &str) {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        line.push_str(text);
    } else {
        push_quoted(line, text, |c| format!("\\u{{{:x}}}", c as u32));
    }
}

/// `text` in double quotes with `"`, `\` and newlines escaped, and other control characters
/// as `control` writes them.
fn push_quoted(line: &mut String, text: &str, control: impl Fn(char) -> String) {
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            c if c.is_control() => line.push_str(&control(c)),
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Request ids: the one a trusted proxy sent when it is well formed, else a new one.
#[derive(Debug)]
pub struct RequestIds {
    trust_offered: bool,
    seed: u64,
    made: AtomicU64,
}

impl RequestIds {
    /// New ids differ between processes (a random seed) and within one (a counter).
    pub fn new(trust_offered: bool) -> Self {
        RequestIds {
            trust_offered,
            seed: RandomState::new().hash_one(std::process::id()),
            made: AtomicU64::new(0),
        }
    }

    /// The id of a request whose `X-Request-Id` is `offered`, from a peer that is (or is not)
    /// a trusted proxy.
    pub fn choose(&self, offered: Option<&str>, from_trusted_proxy: bool) -> String {
        match offered {
            Some(id) if self.trust_offered && from_trusted_proxy && is_well_formed(id) => {
                id.to_owned()
            }
            _ => self.make(),
        }
    }

    fn make(&self) -> String {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", splitmix64(self.seed.wrapping_add(n)))
    }
}

/// 1 to [`MAX_OFFERED_ID`] characters that are safe in a header, a log line and a URL:
/// letters, digits and `-._:+/=` (UUIDs, hex, base64, nginx's `$request_id`, AWS trace ids).
pub fn is_well_formed(id: &str) -> bool {
    (1..=MAX_OFFERED_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:+/=".contains(&b))
}

/// A bijective mix, so that consecutive counters give unrelated-looking ids.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which requests get a line: errors by `level`, successes also by `sample` (evenly spaced,
/// not random: 0.1 logs every tenth).
#[derive(Debug)]
pub struct Sampler {
    level: LogLevel,
    rate: f64,
    successes: AtomicU64,
}

impl Sampler {
    pub fn new(level: LogLevel, rate: f64) -> Self {
        Sampler {
            level,
            rate: rate.clamp(0.0, 1.0),
            successes: AtomicU64::new(0),
        }
    }

    /// Whether the request answered with `status` gets a line.
    pub fn keep(&self, status: u16) -> bool {
        let severity = match status {
            500.. => LogLevel::Error,
            400..=499 => LogLevel::Warn,
            _ => LogLevel::Info,
        };
        if severity < self.level {
            return false;
        }
        if severity > LogLevel::Info {
            return true;
        }
        let n = self.successes.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.rate).floor() > (n * self.rate).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(notes: &Notes) -> Entry<'_> {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_806_400_123),
            notes,
            method: "GET",
            path: "/iiif/3/a b\"c/full/max/0/default.jpg",
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(1500),
            version: "3",
            kind: "image",
            client: None,
        }
    }

    #[test]
    fn a_json_line_has_every_field_in_order_and_leaves_absent_notes_out() {
        let notes = Notes {
            id: "abc".into(),
            cache: Some("disk"),
            ..Notes::default()
        };
        let line = entry(&notes).format(LogFormat::Json);
        assert_eq!(
            line,
            r#"{"time":"2025-12-04T00:00:00.123Z","request_id":"abc","method":"GET","path":"/iiif/3/a b\"c/full/max/0/default.jpg","status":200,"bytes":1234,"duration_ms":1.5,"version":"3","kind":"image","cache":"disk"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(parsed.get("lane").is_none());
    }

    #[test]
    fn a_logfmt_line_quotes_what_needs_it_and_cannot_be_split() {
        let notes = Notes {
            id: "abc".into(),
            backend: Some("127.0.0.1:9000".into()),
            error: Some("not_found"),
            ..Notes::default()
        };
        let mut e = entry(&notes);
        e.path = "/iiif/3/x\ny";
        e.client = Some("192.0.2.7".parse().unwrap());
        let line = e.format(LogFormat::Logfmt);
        assert_eq!(
            line,
            r#"time=2025-12-04T00:00:00.123Z request_id=abc method=GET path="/iiif/3/x\ny" status=200 bytes=1234 duration_ms=1.5 version=3 kind=image backend=127.0.0.1:9000 error=not_found client=192.0.2.7"#
        );
        assert!(!line.contains('\n'));
        let logfmt = |text: &str| {
            let mut out = String::new();
            push_logfmt_value(&mut out, text);
            out
        };
        assert_eq!(logfmt(""), "\"\"");
        assert_eq!(logfmt("a=b"), "\"a=b\"");
        assert_eq!(logfmt("a\\b"), "\"a\\\\b\"");
    }

    #[test]
    fn json_strings_escape_what_json_needs_and_parse_back() {
        for text in [
            "plain",
            "a\"b",
            "a\\b",
            "line\nbreak",
            "tab\tand\u{1}",
            "carriage\rreturn, del\u{7f}",
            "Zoë café",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, text);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, text, "{out}");
        }
    }

    #[test]
    fn an_offered_id_is_taken_only_from_a_trusted_proxy_and_only_when_well_formed() {
        let ids = RequestIds::new(true);
        assert_eq!(ids.choose(Some("req-42"), true), "req-42");
        assert_ne!(ids.choose(Some("req-42"), false), "req-42");
        for bad in ["", "a b", "a\"b", "a\nb", &"x".repeat(MAX_OFFERED_ID + 1)] {
            let chosen = ids.choose(Some(bad), true);
            assert_ne!(chosen, bad);
            assert!(is_well_formed(&chosen));
        }
        assert!(is_well_formed(&"x".repeat(MAX_OFFERED_ID)));
        assert!(is_well_formed("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(is_well_formed("Root=1-5759e988-bd862e3fe1be46a994272793"));
        let untrusting = RequestIds::new(false);
        assert_ne!(untrusting.choose(Some("req-42"), true), "req-42");
    }

    #[test]
    fn made_ids_are_16_hex_digits_and_do_not_repeat() {
        let ids = RequestIds::new(true);
        let made: std::collections::HashSet<String> =
            (0..10_000).map(|_| ids.choose(None, false)).collect();
        assert_eq!(made.len(), 10_000);
        assert!(made
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn sampling_keeps_the_given_share_of_successes_and_every_error() {
        let sampler = Sampler::new(LogLevel::Info, 0.25);
        let kept = (0..1000).filter(|_| sampler.keep(200)).count();
        assert_eq!(kept, 250);
        assert!((0..100).all(|_| sampler.keep(404) && sampler.keep(503)));
        let none = Sampler::new(LogLevel::Info, 0.0);
        assert!(!(0..100).any(|_| none.keep(304)));
        let all = Sampler::new(LogLevel::Info, 1.0);
        assert!((0..100).all(|_| all.keep(200)));
    }

    #[test]
    fn the_level_drops_what_is_below_it() {
        let warn = Sampler::new(LogLevel::Warn, 1.0);
        assert!(!warn.keep(200) && !warn.keep(302));
        assert!(warn.keep(400) && warn.keep(500));
        let error = Sampler::new(LogLevel::Error, 1.0);
        assert!(!error.keep(404) && error.keep(503));
    }
}

//! `gateway.request_log`: how each request is logged.

use serde::{Deserialize, Serialize};

/// The line's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (what Loki, Elasticsearch and CloudWatch parse as is).
    Json,
    /// `key=value` pairs, values quoted when they need it.
    Logfmt,
    /// No request log.
    Off,
}

/// Which requests get a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Every request (successes sampled by `sample`).
    Info,
    /// Only answers with a 4xx or 5xx status.
    Warn,
    /// Only 5xx answers.
    Error,
}

/// `gateway.request_log` as written in the file; every key is optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestLog {
    /// `json` (default), `logfmt` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// `info` (default: every request), `warn` (4xx and 5xx) or `error` (5xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// The share of successful (1xx-3xx) requests that get a line, 0 to 1. Default 1.
    /// Errors are never sampled away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// Take `X-Request-Id` from a trusted proxy (`trusted_proxies`) instead of making one.
    /// Default true. Another client's header is never believed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_request_id: Option<bool>,
    /// Log the client's address (the peer, or what a trusted proxy says). Default false: in
    /// many jurisdictions an IP address is personal data, and most operators need it only at
    /// the front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<bool>,
}

/// `gateway.request_log`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLogSettings {
    pub format: LogFormat,
    pub level: LogLevel,
    pub sample: f64,
    pub trust_request_id: bool,
    pub client_address: bool,
}

impl Default for RequestLogSettings {
    fn default() -> Self {
        RequestLogSettings {
            format: LogFormat::Json,
            level: LogLevel::Info,
            sample: 1.0,
            trust_request_id: true,
            client_address: false,
        }
    }
}

impl RawRequestLog {
    /// Checks every value and fills in the defaults.
    ///
    /// # Errors
    /// Every problem, one message each, named by its key under `gateway.request_log`.
    pub fn resolve(&self) -> Result<RequestLogSettings, Vec<String>> {
        let defaults = RequestLogSettings::default();
        let sample = self.sample.unwrap_or(defaults.sample);
        if !(0.0..=1.0).contains(&sample) {
            return Err(vec![format!(
                "gateway.request_log.sample must be between 0 and 1, not {sample}"
            )]);
        }
        Ok(RequestLogSettings {
            format: self.format.unwrap_or(defaults.format),
            level: self.level.unwrap_or(defaults.level),
            sample,
            trust_request_id: self.trust_request_id.unwrap_or(defaults.trust_request_id),
            client_address: self.client_address.unwrap_or(defaults.client_address),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_log_every_request_as_json_without_addresses() {
        let settings = RawRequestLog::default().resolve().unwrap();
        assert_eq!(settings, RequestLogSettings::default());
        assert!(!settings.client_address);
    }

    #[test]
    fn a_sample_outside_0_to_1_is_refused_by_name() {
        for sample in [-0.1, 1.5, f64::NAN] {
            let raw = RawRequestLog {
                sample: Some(sample),
                ..RawRequestLog::default()
            };
            let problems = raw.resolve().unwrap_err();
            assert!(
                problems[0].contains("gateway.request_log.sample"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn the_file_spells_formats_and_levels_in_lower_case() {
        let raw: RawRequestLog =
            serde_yaml_ng::from_str("format: logfmt\nlevel: warn\nsample: 0.25\n").unwrap();
        let settings = raw.resolve().unwrap();
        assert_eq!(settings.format, LogFormat::Logfmt);
        assert_eq!(settings.level, LogLevel::Warn);
        assert_eq!(settings.sample, 0.25);
    }
}

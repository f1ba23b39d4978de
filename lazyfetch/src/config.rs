//! `gateway.cache` and `gateway.masters`: the two sections of the gateway's YAML file that
//! lazyfetch reads (the gateway embeds these structs in its own parser; the CLI reads them with
//! [`GatewaySections`], ignoring every other key).
//!
//! Two stages, as in the gateway's own config: serde reads the file (unknown keys inside these
//! sections are refused, so a typo fails loudly; a malformed size or percentage is a type error
//! with its path), then [`CacheConfig::validate`] and [`MastersConfig::resolve`] check the values
//! together and report **every** problem, each naming its key
//! (`gateway.masters.rules[1].match: invalid regex: …`).

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::rules::{Rule, Rules, Template};
use crate::size::{ByteSize, Percent};

/// `gateway.cache`: where masters and derivatives live and how big the cache may grow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache root: `masters/`, `derivatives/` and `tmp/` live here. iipsrv's
    /// `FILESYSTEM_PREFIX` is this path followed by `/`. Must be absolute.
    pub root: PathBuf,
    /// The size the cache should stay under (masters, sidecars and derivatives together).
    pub budget: ByteSize,
    /// `lazyfetch prune` does nothing until the cache exceeds this share of the budget...
    #[serde(default = "defaults::high_watermark")]
    pub high_watermark: Percent,
    /// ...and then removes least recently used images until it is below this share.
    #[serde(default = "defaults::low_watermark")]
    pub low_watermark: Percent,
    /// Masters smaller than this (thumbnail-only images) count as small...
    #[serde(default = "defaults::small_master_bytes")]
    pub small_master_bytes: ByteSize,
    /// ...and their idle time counts this many times less when choosing what to prune.
    #[serde(default = "defaults::small_master_weight")]
    pub small_master_weight: f64,
    /// Last-access stamps are rewritten at most this often per image (seconds), so serving a
    /// hot image does not write to the disk on every request.
    #[serde(default = "defaults::touch_interval_s")]
    pub touch_interval_s: u64,
    /// Above this share of the budget the gateway writes no new derivatives and starts a prune
    /// in the background, so that derivatives can never fill the mount that masters need.
    #[serde(default = "defaults::hard_limit")]
    pub hard_limit: Percent,
    /// How often (seconds) the gateway re-measures the cache between the prunes it starts:
    /// what other nodes and master downloads wrote shows in its estimate after at most this.
    #[serde(default = "defaults::rescan_interval_s")]
    pub rescan_interval_s: u64,
}

/// `gateway.masters`: where access masters come from. Absent: no S3, iipsrv reads its own files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MastersConfig {
    /// How to reach the S3 store.
    #[serde(default)]
    pub s3: S3Config,
    /// Identifier → bucket and key, first match wins.
    pub rules: Vec<RuleConfig>,
    /// A master verified longer ago than this (seconds) is revalidated with a conditional GET
    /// on its next use.
    #[serde(default = "defaults::revalidate_after_s")]
    pub revalidate_after_s: u64,
    /// Downloads running at once in this process; more wait their turn.
    #[serde(default = "defaults::max_concurrent_downloads")]
    pub max_concurrent_downloads: usize,
    /// S3 requests waiting for their answer (status and headers) at once; a body to download
    /// then waits for one of `max_concurrent_downloads`. A 404 never takes a download slot.
    #[serde(default = "defaults::max_concurrent_lookups")]
    pub max_concurrent_lookups: usize,
    /// S3 requests that may wait for one of those places; past this, a request for an uncached
    /// master is refused at once (503 with `Retry-After`).
    #[serde(default = "defaults::max_pending_lookups")]
    pub max_pending_lookups: usize,
    /// An identifier S3 has no master for is answered 404 from memory for this long (seconds;
    /// `0` asks S3 every time). A purge forgets it at once.
    #[serde(default = "defaults::miss_ttl_s")]
    pub miss_ttl_s: u64,
    /// Masters larger than this are not downloaded (the request fails with 502, the log says
    /// why): a mistaken upload must not fill the cache mount.
    #[serde(default = "defaults::max_master_bytes")]
    pub max_master_bytes: ByteSize,
    /// A download (waiting for a slot included) that takes longer than this is abandoned.
    #[serde(default = "defaults::download_timeout_s")]
    pub download_timeout_s: u64,
    /// The `Retry-After` given with a 503 while S3 cannot be reached, and the longest time
    /// lazyfetch waits before trying S3 again after failures.
    #[serde(default = "defaults::unavailable_retry_after_s")]
    pub unavailable_retry_after_s: u64,
    /// A Redis lock that keeps gateways sharing one cache mount to one download per master.
    #[serde(default)]
    pub lock: Option<LockConfig>,
}

/// `gateway.masters.s3`: the S3 client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible store; absent: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region name (Garage: its `s3_region`); absent: the usual AWS region chain.
    #[serde(default)]
    pub region: Option<String>,
    /// `GET /bucket/key` instead of `GET bucket.host/key`; most self-hosted stores need it.
    #[serde(default)]
    pub force_path_style: bool,
    /// Access key id; absent: the usual AWS credential chain (environment, profile, instance role).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret key itself. Prefer `secret_access_key_file`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A file whose first line is the secret key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Limit on opening a connection to S3 (milliseconds).
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Limit on the wait for the first byte of an answer, and for each further piece of a
    /// download (milliseconds): a stalled transfer fails instead of hanging.
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    /// Retries of a failed request (connection refused, timeout, 5xx), with exponential
    /// backoff and jitter.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// The first retry waits up to this long (milliseconds); each later one up to twice as long.
    #[serde(default = "defaults::retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            connect_timeout_ms: defaults::connect_timeout_ms(),
            first_byte_timeout_ms: defaults::first_byte_timeout_ms(),
            retries: defaults::retries(),
            retry_initial_backoff_ms: defaults::retry_initial_backoff_ms(),
        }
    }
}

/// One entry of `gateway.masters.rules`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A regex (Rust `regex` syntax) matched against the whole identifier as received (decoded);
    /// anchor it with `^…$`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Bucket template (`$name`, `${name}`, `${1}`, `$$`).
    pub bucket: String,
    /// Object key template.
    pub key: String,
    /// Lets `bucket` refer to a capture group, so the identifier chooses the bucket. Off by
    /// default: a client could then make the gateway read any bucket its S3 credentials reach.
    /// Only turn it on for credentials limited to the buckets meant to be public.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bucket_from_identifier: bool,
}

/// `gateway.masters.lock`: the cross-node download lock.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// `redis://[:password@]host:port/db`, `rediss://…` (TLS) or `redis+unix:///path`.
    pub redis_url: String,
    /// The lock expires this long after its last refresh (milliseconds), so a crashed node
    /// frees it; a live holder refreshes it every third of this.
    #[serde(default = "defaults::lock_ttl_ms")]
    pub ttl_ms: u64,
    /// Prefix of the lock keys (`{prefix}lock:{image key}`).
    #[serde(default = "defaults::lock_key_prefix")]
    pub key_prefix: String,
    /// A Redis command slower than this (milliseconds) counts as Redis being unavailable: the
    /// download goes ahead without the lock (at most a few downloads, never a corrupt file).
    #[serde(default = "defaults::lock_timeout_ms")]
    pub timeout_ms: u64,
}

mod defaults {
    use crate::size::{ByteSize, Percent};

    pub(super) fn high_watermark() -> Percent {
        Percent::new(90.0).expect("in range")
    }
    pub(super) fn low_watermark() -> Percent {
        Percent::new(80.0).expect("in range")
    }
    pub(super) fn small_master_bytes() -> ByteSize {
        ByteSize(8 << 20)
    }
    pub(super) fn small_master_weight() -> f64 {
        4.0
    }
    pub(super) fn touch_interval_s() -> u64 {
        300
    }
    pub(super) fn hard_limit() -> Percent {
        Percent::new(100.0).expect("in range")
    }
    pub(super) fn rescan_interval_s() -> u64 {
        300
    }
    pub(super) fn revalidate_after_s() -> u64 {
        3600
    }
    pub(super) fn max_concurrent_downloads() -> usize {
        4
    }
    pub(super) fn download_timeout_s() -> u64 {
        600
    }
    pub(super) fn max_concurrent_lookups() -> usize {
        16
    }
    pub(super) fn max_pending_lookups() -> usize {
        256
    }
    pub(super) fn miss_ttl_s() -> u64 {
        30
    }
    pub(super) fn max_master_bytes() -> ByteSize {
        ByteSize(8 << 30)
    }
    pub(super) fn unavailable_retry_after_s() -> u64 {
        30
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        1000
    }
    pub(super) fn first_byte_timeout_ms() -> u64 {
        5000
    }
    pub(super) fn retries() -> u32 {
        3
    }
    pub(super) fn retry_initial_backoff_ms() -> u64 {
        100
    }
    pub(super) fn lock_ttl_ms() -> u64 {
        30_000
    }
    pub(super) fn lock_key_prefix() -> String {
        "iiif:lazyfetch:".to_owned()
    }
    pub(super) fn lock_timeout_ms() -> u64 {
        500
    }
}

/// One invalid value, named by its full key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `gateway.masters.rules[1].match`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a section, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl ConfigErrors {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const CACHE: &str = "gateway.cache";
const MASTERS: &str = "gateway.masters";

// === impl CacheConfig ===

impl CacheConfig {
    /// A cache at `root` of `budget` bytes, every other key at its default.
    pub fn new(root: impl Into<PathBuf>, budget: ByteSize) -> CacheConfig {
        CacheConfig {
            root: root.into(),
            budget,
            high_watermark: defaults::high_watermark(),
            low_watermark: defaults::low_watermark(),
            small_master_bytes: defaults::small_master_bytes(),
            small_master_weight: defaults::small_master_weight(),
            touch_interval_s: defaults::touch_interval_s(),
            hard_limit: defaults::hard_limit(),
            rescan_interval_s: defaults::rescan_interval_s(),
        }
    }

    /// Checks the values together (watermarks in order, a positive budget, an absolute root).
    ///
    /// # Errors
    /// Every problem, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        if !self.root.is_absolute() {
            errors.add(
                format!("{CACHE}.root"),
                format!("must be an absolute path, not {:?}", self.root),
            );
        }
        if self.budget.bytes() == 0 {
            errors.add(format!("{CACHE}.budget"), "must be more than 0 bytes");
        }
        if self.high_watermark.value() == 0.0 {
            errors.add(format!("{CACHE}.high_watermark"), "must be more than 0%");
        }
        if self.low_watermark >= self.high_watermark {
            errors.add(
                format!("{CACHE}.low_watermark"),
                format!(
                    "{} must be below high_watermark ({})",
                    self.low_watermark, self.high_watermark
                ),
            );
        }
        if self.hard_limit < self.high_watermark {
            errors.add(
                format!("{CACHE}.hard_limit"),
                format!(
                    "{} must be at or above high_watermark ({})",
                    self.hard_limit, self.high_watermark
                ),
            );
        }
        if self.rescan_interval_s == 0 {
            errors.add(format!("{CACHE}.rescan_interval_s"), "must be 1 or more");
        }
        if !(self.small_master_weight.is_finite() && self.small_master_weight >= 1.0) {
            errors.add(
                format!("{CACHE}.small_master_weight"),
                format!("must be 1 or more, not {}", self.small_master_weight),
            );
        }
        errors.into_result(())
    }

    /// The high watermark in bytes.
    pub fn high_watermark_bytes(&self) -> u64 {
        self.high_watermark.of(self.budget.bytes())
    }

    /// The low watermark in bytes.
    pub fn low_watermark_bytes(&self) -> u64 {
        self.low_watermark.of(self.budget.bytes())
    }

    /// The hard limit in bytes.
    pub fn hard_limit_bytes(&self) -> u64 {
        self.hard_limit.of(self.budget.bytes())
    }
}

// === impl MastersConfig ===

impl MastersConfig {
    /// Masters from `s3` by `rules`, every other key at its default.
    pub fn new(s3: S3Config, rules: Vec<RuleConfig>) -> MastersConfig {
        MastersConfig {
            s3,
            rules,
            revalidate_after_s: defaults::revalidate_after_s(),
            max_concurrent_downloads: defaults::max_concurrent_downloads(),
            max_concurrent_lookups: defaults::max_concurrent_lookups(),
            max_pending_lookups: defaults::max_pending_lookups(),
            miss_ttl_s: defaults::miss_ttl_s(),
            max_master_bytes: defaults::max_master_bytes(),
            download_timeout_s: defaults::download_timeout_s(),
            unavailable_retry_after_s: defaults::unavailable_retry_after_s(),
            lock: None,
        }
    }

    /// Checks every value and compiles the rules.
    ///
    /// # Errors
    /// Every problem, each naming its key: a regex that does not compile, a template that uses
    /// a group its regex does not have, credentials given by halves, a zero limit.
    pub fn resolve(&self) -> Result<Rules, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let rules = self.compile_rules(&mut errors);
        self.check_s3(&mut errors);
        self.check_limits(&mut errors);
        errors.into_result(Rules { rules })
    }

    /// [`MastersConfig::resolve`] without keeping the rules.
    ///
    /// # Errors
    /// As [`MastersConfig::resolve`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.resolve().map(drop)
    }

    fn compile_rules(&self, errors: &mut ConfigErrors) -> Vec<Rule> {
        if self.rules.is_empty() {
            errors.add(
                format!("{MASTERS}.rules"),
                "needs at least one rule (e.g. match: '^(.+)$', bucket: masters, key: '${1}')",
            );
        }
        let mut rules = Vec::new();
        for (n, rule) in self.rules.iter().enumerate() {
            let at = format!("{MASTERS}.rules[{n}]");
            let pattern = match Regex::new(&rule.pattern) {
                Ok(pattern) => Some(pattern),
                Err(error) => {
                    errors.add(format!("{at}.match"), format!("invalid regex: {error}"));
                    None
                }
            };
            let mut template = |field: &str, text: &str| -> Option<Template> {
                if text.is_empty() {
                    errors.add(format!("{at}.{field}"), "must not be empty");
                    return None;
                }
                let template = Template::parse(text)
                    .map_err(|message| errors.add(format!("{at}.{field}"), message))
                    .ok()?;
                if let Some(pattern) = &pattern {
                    let unknown = template.unknown_groups(pattern);
                    if !unknown.is_empty() {
                        errors.add(
                            format!("{at}.{field}"),
                            format!(
                                "{} not a capture group of match {:?}",
                                unknown.join(", ")
                                    + if unknown.len() == 1 { " is" } else { " are" },
                                rule.pattern
                            ),
                        );
                    }
                }
                Some(template)
            };
            let bucket = template("bucket", &rule.bucket);
            let key = template("key", &rule.key);
            if bucket.as_ref().is_some_and(Template::has_references) && !rule.bucket_from_identifier
            {
                errors.add(
                    format!("{at}.bucket"),
                    "takes a capture from the identifier, so clients would choose the bucket; \
                     set bucket_from_identifier: true if your S3 credentials reach only public buckets",
                );
            }
            if let (Some(pattern), Some(bucket), Some(key)) = (pattern, bucket, key) {
                rules.push(Rule {
                    pattern,
                    bucket,
                    key,
                });
            }
        }
        rules
    }

    fn check_s3(&self, errors: &mut ConfigErrors) {
        let s3 = &self.s3;
        let at = format!("{MASTERS}.s3");
        if let Some(endpoint) = &s3.endpoint {
            if endpoint.parse::<http_uri::Endpoint>().is_err() {
                errors.add(
                    format!("{at}.endpoint"),
                    format!("expected http://host:port or https://host:port, not {endpoint:?}"),
                );
            }
        }
        if s3.region.as_deref() == Some("") {
            errors.add(
                format!("{at}.region"),
                "must not be empty (leave it out for the AWS default)",
            );
        }
        let has_secret = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
        if s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some() {
            errors.add(
                format!("{at}.secret_access_key_file"),
                "give secret_access_key or secret_access_key_file, not both",
            );
        }
        match (&s3.access_key_id, has_secret) {
            (Some(_), false) => errors.add(
                format!("{at}.access_key_id"),
                "needs secret_access_key_file (or secret_access_key)",
            ),
            (None, true) => errors.add(
                format!("{at}.access_key_id"),
                "missing, but a secret key is given",
            ),
            _ => {}
        }
        if s3.connect_timeout_ms == 0 {
            errors.add(format!("{at}.connect_timeout_ms"), "must be more than 0");
        }
        if s3.first_byte_timeout_ms == 0 {
            errors.add(format!("{at}.first_byte_timeout_ms"), "must be more than 0");
        }
    }

    fn check_limits(&self, errors: &mut ConfigErrors) {
        if self.max_concurrent_downloads == 0 {
            errors.add(
                format!("{MASTERS}.max_concurrent_downloads"),
                "must be 1 or more",
            );
        }
        if self.download_timeout_s == 0 {
            errors.add(
                format!("{MASTERS}.download_timeout_s"),
                "must be more than 0",
            );
        }
        for (key, value) in [
            ("max_concurrent_lookups", self.max_concurrent_lookups),
            ("max_pending_lookups", self.max_pending_lookups),
        ] {
            if value == 0 {
                errors.add(format!("{MASTERS}.{key}"), "must be 1 or more");
            }
        }
        if self.max_master_bytes.bytes() == 0 {
            errors.add(format!("{MASTERS}.max_master_bytes"), "must be more than 0");
        }
        if self.unavailable_retry_after_s == 0 {
            errors.add(
                format!("{MASTERS}.unavailable_retry_after_s"),
                "must be more than 0",
            );
        }
        if let Some(lock) = &self.lock {
            let at = format!("{MASTERS}.lock");
            if let Err(error) = redis_url::check(&lock.redis_url) {
                errors.add(
                    format!("{at}.redis_url"),
                    format!("invalid Redis URL: {error}"),
                );
            }
            if lock.ttl_ms < 1000 {
                errors.add(format!("{at}.ttl_ms"), "must be 1000 or more");
            }
            if lock.timeout_ms == 0 {
                errors.add(format!("{at}.timeout_ms"), "must be more than 0");
            }
        }
    }
}

/// Just enough URL syntax to refuse an endpoint the S3 client would choke on later.
mod http_uri {
    use std::str::FromStr;

    pub(super) struct Endpoint;

    impl FromStr for Endpoint {
        type Err = ();
        fn from_str(text: &str) -> Result<Self, ()> {
            let rest = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"))
                .ok_or(())?;
            let authority = rest.split('/').next().unwrap_or_default();
            // `[v6]:port`, `[v6]`, `host:port` or `host`.
            let (host, port) = match authority.strip_prefix('[') {
                Some(bracketed) => {
                    let (host, after) = bracketed.split_once(']').ok_or(())?;
                    (host, after.strip_prefix(':'))
                }
                None => match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                },
            };
            if let Some(port) = port {
                port.parse::<u16>().map_err(drop)?;
            }
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(());
            }
            Ok(Endpoint)
        }
    }
}

// === reading the sections from the gateway's file ===

/// `gateway.cache` and `gateway.masters` read from the gateway's YAML file, every other key
/// ignored.
#[derive(Debug, Clone, Default)]
pub struct GatewaySections {
    /// `gateway.cache`, when present.
    pub cache: Option<CacheConfig>,
    /// `gateway.masters`, when present.
    pub masters: Option<MastersConfig>,
}

/// The file could not be read or one of the two sections is malformed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse, or a section does not fit its shape.
    #[error("{0}")]
    Parse(String),
    /// A section parsed but its values do not go together.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl GatewaySections {
    /// Reads and validates the two sections of the file at `path`.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and the key.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|error| match error {
            LoadError::Parse(message) => LoadError::Parse(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// Reads and validates the two sections of a YAML document.
    ///
    /// # Errors
    /// [`LoadError::Parse`] or [`LoadError::Invalid`].
    pub fn from_yaml(text: &str) -> Result<Self, LoadError> {
        let document: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| LoadError::Parse(e.to_string()))?;
        let gateway = document.get("gateway");
        let section = |name: &str| gateway.and_then(|g| g.get(name)).filter(|v| !v.is_null());
        let cache = section("cache")
            .map(|value| {
                serde_yaml_ng::from_value::<CacheConfig>(value.clone())
                    .map_err(|e| LoadError::Parse(format!("{CACHE}: {e}")))
            })
            .transpose()?;
        let masters = section("masters")
            .map(|value| {
                serde_yaml_ng::from_value::<MastersConfig>(value.clone())
                    .map_err(|e| LoadError::Parse(format!("{MASTERS}: {e}")))
            })
            .transpose()?;
        let mut problems = ConfigErrors::default();
        if let Some(Err(errors)) = cache.as_ref().map(CacheConfig::validate) {
            problems.0.extend(errors.0);
        }
        if let Some(Err(errors)) = masters.as_ref().map(MastersConfig::validate) {
            problems.0.extend(errors.0);
        }
        if !problems.0.is_empty() {
            return Err(LoadError::Invalid(problems));
        }
        Ok(GatewaySections { cache, masters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
threads: 2
gateway:
  listen: 127.0.0.1:8080
  backend: { whatever: 1 }
  cache:
    root: /var/cache/iiif
    budget: 500GiB
    high_watermark: 90%
    low_watermark: 80%
    small_master_bytes: 8MiB
    small_master_weight: 4
    touch_interval_s: 300
  masters:
    s3:
      endpoint: http://127.0.0.1:3900
      region: garage
      force_path_style: true
      access_key_id: GK123
      secret_access_key_file: /etc/iiif/s3-secret
      connect_timeout_ms: 1000
      first_byte_timeout_ms: 5000
      retries: 3
    rules:
      - match: '^(?<collection>[a-z]+)/(?<name>[^/]+)$'
        bucket: masters
        key: '${collection}/${name}.tif'
      - match: '^(.+)$'
        bucket: masters
        key: '${1}'
    revalidate_after_s: 3600
    max_concurrent_downloads: 4
    download_timeout_s: 600
    unavailable_retry_after_s: 30
    lock:
      redis_url: redis://127.0.0.1:6379/0
      ttl_ms: 30000
"#;

    fn problems(text: &str) -> Vec<String> {
        match GatewaySections::from_yaml(text) {
            Err(LoadError::Invalid(errors)) => errors.0.iter().map(|p| p.to_string()).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn the_sections_serialise_back_to_what_they_were_read_from() {
        // The launcher writes these sections with serde; what it writes must read back the same.
        let sections = GatewaySections::from_yaml(FULL).unwrap();
        let (cache, masters) = (sections.cache.unwrap(), sections.masters.unwrap());
        let yaml = serde_yaml_ng::to_string(&serde_json::json!({
            "gateway": { "cache": &cache, "masters": &masters }
        }))
        .unwrap();
        let again = GatewaySections::from_yaml(&yaml).unwrap();
        assert_eq!(format!("{:?}", again.cache.unwrap()), format!("{cache:?}"));
        assert_eq!(
            format!("{:?}", again.masters.unwrap()),
            format!("{masters:?}")
        );
        assert!(yaml.contains("high_watermark: 90%"), "{yaml}");
        assert!(yaml.contains("match: ^(.+)$"), "{yaml}");
    }

    #[test]
    fn constructors_use_the_documented_defaults() {
        let cache = CacheConfig::new("/cache", ByteSize(1 << 30));
        assert_eq!(cache.high_watermark, defaults::high_watermark());
        assert!(cache.validate().is_ok());
        let masters = MastersConfig::new(S3Config::default(), Vec::new());
        assert_eq!(masters.revalidate_after_s, defaults::revalidate_after_s());
    }

    #[test]
    fn the_documented_example_reads_and_other_keys_are_ignored() {
        let sections = GatewaySections::from_yaml(FULL).unwrap();
        let cache = sections.cache.unwrap();
        assert_eq!(cache.budget, ByteSize(500 << 30));
        assert_eq!(cache.high_watermark_bytes(), (500u64 << 30) / 10 * 9);
        let masters = sections.masters.unwrap();
        assert_eq!(masters.lock.as_ref().unwrap().ttl_ms, 30_000);
        let rules = masters.resolve().unwrap();
        assert_eq!(rules.locate("maps/x").unwrap().key, "maps/x.tif");
    }

    #[test]
    fn absent_sections_are_none() {
        let sections = GatewaySections::from_yaml("gateway: { listen: x }").unwrap();
        assert!(sections.cache.is_none() && sections.masters.is_none());
        let sections = GatewaySections::from_yaml("threads: 1").unwrap();
        assert!(sections.cache.is_none());
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let sections = GatewaySections::from_yaml(
            "gateway:\n  cache: { root: /c, budget: 1GiB }\n  masters:\n    rules: [{match: '(.+)', bucket: b, key: '$1'}]\n",
        )
        .unwrap();
        let cache = sections.cache.unwrap();
        assert_eq!(cache.low_watermark.value(), 80.0);
        assert_eq!(cache.small_master_weight, 4.0);
        let masters = sections.masters.unwrap();
        assert_eq!(masters.s3.retries, 3);
        assert!(masters.lock.is_none());
    }

    #[test]
    fn unknown_keys_inside_the_sections_are_refused_with_their_path() {
        let error = GatewaySections::from_yaml(
            "gateway:\n  cache: { root: /c, budget: 1GiB, budgett: 2 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("gateway.cache: unknown field `budgett`"),
            "{error}"
        );
        let error = GatewaySections::from_yaml("gateway:\n  cache: { root: /c, budget: 1 GB B }\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gateway.cache") && error.contains("invalid size"),
            "{error}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let found = problems(
            r#"
gateway:
  cache: { root: relative, budget: 0, high_watermark: 50%, low_watermark: 60%, hard_limit: 40%, rescan_interval_s: 0, small_master_weight: 0.5 }
  masters:
    s3: { endpoint: "ftp://x", access_key_id: GK1, connect_timeout_ms: 0 }
    rules:
      - { match: '^(?<name>.+)$', bucket: masters, key: '${name}.tif' }
      - { match: '^(unclosed$', bucket: b, key: '$1' }
      - { match: '^(a)$', bucket: '', key: '${2}/${nope}' }
      - { match: '^a$', bucket: b, key: '${oops' }
    max_concurrent_downloads: 0
    lock: { redis_url: 'http://nope', ttl_ms: 10 }
"#,
        );
        let expected = [
            "gateway.cache.root: must be an absolute path",
            "gateway.cache.budget: must be more than 0 bytes",
            "gateway.cache.low_watermark: 60% must be below high_watermark (50%)",
            "gateway.cache.hard_limit: 40% must be at or above high_watermark (50%)",
            "gateway.cache.rescan_interval_s: must be 1 or more",
            "gateway.cache.small_master_weight: must be 1 or more",
            "gateway.masters.rules[1].match: invalid regex: ",
            "gateway.masters.rules[2].bucket: must not be empty",
            "gateway.masters.rules[2].key: ${2}, ${nope} are not a capture group",
            "gateway.masters.rules[3].key: unclosed",
            "gateway.masters.s3.endpoint: expected http://host:port",
            "gateway.masters.s3.access_key_id: needs secret_access_key_file",
            "gateway.masters.s3.connect_timeout_ms: must be more than 0",
            "gateway.masters.max_concurrent_downloads: must be 1 or more",
            "gateway.masters.lock.redis_url: invalid Redis URL",
            "gateway.masters.lock.ttl_ms: must be 1000 or more",
        ];
        for prefix in expected {
            assert!(
                found.iter().any(|p| p.starts_with(prefix)),
                "missing {prefix:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn a_bucket_from_the_identifier_needs_consent() {
        let rule = "gateway:\n  masters: { rules: [{match: '^([a-z]+)/(.+)$', bucket: '${1}', key: '$2'BFI}] }\n";
        let found = problems(&rule.replace("BFI", ""));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("gateway.masters.rules[0].bucket: takes a capture"),
            "{found:#?}"
        );
        let allowed = rule.replace("BFI", ", bucket_from_identifier: true");
        let masters = GatewaySections::from_yaml(&allowed)
            .unwrap()
            .masters
            .unwrap();
        let rules = masters.resolve().unwrap();
        assert_eq!(rules.locate("maps/x").unwrap().bucket, "maps");
    }

    #[test]
    fn no_rules_is_an_error() {
        let found = problems("gateway:\n  masters: { rules: [] }\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("gateway.masters.rules: needs at least one rule"));
    }

    #[test]
    fn endpoints() {
        for good in [
            "http://127.0.0.1:3900",
            "https://s3.example.org",
            "http://[::1]:3900/",
        ] {
            assert!(good.parse::<http_uri::Endpoint>().is_ok(), "{good}");
        }
        for bad in [
            "http://",
            "http://host:port",
            "s3.example.org",
            "http://a b",
        ] {
            assert!(bad.parse::<http_uri::Endpoint>().is_err(), "{bad}");
        }
    }
}

//! The gateway's configuration: one YAML file shared with Pingora.
//!
//! Pingora reads its own top-level keys (`threads`, `pid_file`, `grace_period_seconds`, …) and
//! ignores the rest; everything the gateway needs lives under the `gateway:` key. Loading happens
//! in two stages, as in ripgrep's flags: [`RawGatewayConfig`] mirrors the file (serde, unknown keys
//! refused so typos fail loudly), then [`RawGatewayConfig::resolve`] checks every value and
//! produces a [`GatewayConfig`] with typed durations and addresses. Resolution reports every
//! problem it finds, not only the first, so an operator fixes the file in one pass.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::derivatives::DerivativePolicy;
use crate::forwarded::ForwardedHeaders;

/// The whole configuration file as the gateway sees it.
#[derive(Debug, Deserialize)]
struct RawFile {
    gateway: Option<RawGatewayConfig>,
}

/// The `gateway:` section exactly as written in the file. It serialises back to the same YAML,
/// so that the launcher (`stack/`) writes configuration files from these values, never from
/// text templates.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGatewayConfig {
    /// Public IIIF listener, `HOST:PORT`.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`); must not be the public one.
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: String,
    /// Base of every public id, e.g. `https://images.example.org`. When absent, ids are built
    /// from the `Host` and `X-Forwarded-*` headers of trusted proxies, or from `listen`.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Path prefix of the IIIF endpoints.
    #[serde(default = "defaults::prefix")]
    pub prefix: String,
    /// Peers whose `Host` and forwarded headers are believed (CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Which forwarded headers the trusted proxies set: `x-forwarded` (`X-Forwarded-For/Proto/
    /// Host/Prefix`, the default) or `forwarded` (RFC 7239). Only the last list item, the one
    /// the nearest proxy added, is believed; the other family is ignored.
    #[serde(default = "defaults::forwarded_headers")]
    pub forwarded_headers: String,
    #[serde(default)]
    pub iiif: RawIiif,
    pub backend: RawBackend,
    #[serde(default)]
    pub output: RawOutput,
    #[serde(default)]
    pub cache_control: RawCacheControl,
    /// The ID archive of retired identifiers; absent = no redirects.
    #[serde(default)]
    pub redirects: Option<RawRedirects>,
    #[serde(default)]
    pub admin: RawAdmin,
    /// The cache mount (masters from S3, derivatives): see `docs/masters.md`. Absent: no
    /// derivative cache and no S3.
    #[serde(default)]
    pub cache: Option<lazyfetch::CacheConfig>,
    /// Access masters in S3, copied onto the cache mount on first use. Absent: iipsrv reads the
    /// identifiers from its own `FILESYSTEM_PREFIX`.
    #[serde(default)]
    pub masters: Option<lazyfetch::MastersConfig>,
    #[serde(default)]
    pub derivatives: RawDerivatives,
    /// Cost-aware admission to the iipsrv pool (lanes, slots, queue bounds, waits): see
    /// `crate::admission`. Every key is optional.
    #[serde(default)]
    pub admission: crate::admission::RawAdmission,
    /// Connection hygiene on the public listener (head deadline, timeouts, connection caps):
    /// see `crate::connections`. Every key is optional.
    #[serde(default)]
    pub connections: crate::connections::RawConnections,
    /// The memory and threads of the gateway's own pixel work (rotation, transcoding): see
    /// `crate::budget`. Every key is optional.
    #[serde(default)]
    pub render: crate::budget::RawRender,
    /// One structured line per request on stdout (format, level, sampling): see
    /// `crate::request_log`. Every key is optional.
    #[serde(default)]
    pub request_log: crate::request_log::RawRequestLog,
}

/// `gateway.derivatives`: which rendered images the cache keeps.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDerivatives {
    /// Keep derivatives on the cache mount (needs `gateway.cache`).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Outputs up to this many pixels are kept (default 1024 x 1024: tiles and thumbnails);
    /// larger renders are served but not kept.
    #[serde(default = "defaults::max_cached_output_pixels")]
    pub max_output_pixels: u64,
    /// …and whose encoded size is at most this (`2MiB`): a noisy PNG of the same pixels can be
    /// ten times a JPEG's size, and the cache is budgeted in bytes.
    #[serde(default = "defaults::max_cached_entry")]
    pub max_entry_size: lazyfetch::size::ByteSize,
    /// The hottest derivatives are also kept in memory, up to this size (`64MiB`, `0` = none).
    #[serde(default = "defaults::derivative_memory")]
    pub memory: lazyfetch::size::ByteSize,
}

impl Default for RawDerivatives {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("defaults of gateway.derivatives")
    }
}

/// `gateway.redirects`: where the ID archive lives and how redirects are answered.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirects {
    /// `redis://[:password@]host:port/db` or `rediss://…` for TLS.
    pub redis_url: String,
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// 301 or 308 for identifiers that moved permanently.
    #[serde(default = "defaults::permanent_status")]
    pub permanent_status: u16,
    /// 302 or 307 for identifiers that moved temporarily.
    #[serde(default = "defaults::temporary_status")]
    pub temporary_status: u16,
    /// A lookup slower than this is given up and the request served as if not redirected.
    #[serde(default = "defaults::lookup_timeout_ms")]
    pub lookup_timeout_ms: u64,
    /// How long a lookup result (including "not redirected") is reused without asking Redis.
    #[serde(default = "defaults::redirect_cache_ttl_ms")]
    pub cache_ttl_ms: u64,
    #[serde(default = "defaults::redirect_cache_capacity")]
    pub cache_capacity: usize,
}

impl RawRedirects {
    /// The ID archive at `redis_url`, every other key at its default.
    pub fn new(redis_url: String) -> RawRedirects {
        RawRedirects {
            redis_url,
            key_prefix: defaults::key_prefix(),
            permanent_status: defaults::permanent_status(),
            temporary_status: defaults::temporary_status(),
            lookup_timeout_ms: defaults::lookup_timeout_ms(),
            cache_ttl_ms: defaults::redirect_cache_ttl_ms(),
            cache_capacity: defaults::redirect_cache_capacity(),
        }
    }
}

/// `gateway.admin`: the admin API on the admin listener.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token the admin API requires. Prefer `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the bearer token (first line).
    #[serde(default)]
    pub token_file: Option<String>,
}

/// `gateway.iiif`: the limits and the behaviour choices of the IIIF API.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIiif {
    #[serde(default = "defaults::max_side")]
    pub max_width: u32,
    #[serde(default = "defaults::max_side")]
    pub max_height: u32,
    #[serde(default = "defaults::max_area")]
    pub max_area: u64,
    #[serde(default = "defaults::yes")]
    pub allow_upscaling: bool,
    /// `reject` (what the IIIF validator expects) or `allow` (what the 3.0 text says) for a v3
    /// `!w,h` box larger than the region.
    #[serde(default = "defaults::confined_upscale")]
    pub confined_upscale: String,
    /// Version that unversioned URLs redirect to.
    #[serde(default = "defaults::version")]
    pub default_version: u8,
    /// Seconds an image's facts (size, tiles) are reused before iipsrv is asked again.
    #[serde(default = "defaults::facts_ttl_seconds")]
    pub facts_ttl_seconds: u64,
    /// A `rights` URI to publish in every info.json (v3 `rights`, v2 `license`).
    #[serde(default)]
    pub rights: Option<String>,
}

impl Default for RawIiif {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("defaults of gateway.iiif")
    }
}

/// `gateway.backend`: the pool of iipsrv processes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// iipsrv FastCGI addresses: `HOST:PORT` or `unix:/path.sock`, one process each.
    pub addresses: Vec<String>,
    /// The `MAX_CVT` the iipsrv processes were started with; iipsrv distorts beyond it.
    #[serde(default = "defaults::max_side")]
    pub max_cvt: u32,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "defaults::total_timeout_ms")]
    pub total_timeout_ms: u64,
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    #[serde(default = "defaults::health_interval_ms")]
    pub health_interval_ms: u64,
    #[serde(default = "defaults::health_timeout_ms")]
    pub health_timeout_ms: u64,
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Keep a connection to each iipsrv process open this long after a request (0 = a new
    /// connection per request). An open connection pins the process to this gateway, so keep 0
    /// when several gateways share iipsrv processes.
    #[serde(default)]
    pub keepalive_idle_ms: u64,
}

impl RawBackend {
    /// The iipsrv processes at `addresses`, every other key at its default.
    pub fn new(addresses: Vec<String>) -> RawBackend {
        RawBackend {
            addresses,
            max_cvt: defaults::max_side(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            first_byte_timeout_ms: defaults::first_byte_timeout_ms(),
            total_timeout_ms: defaults::total_timeout_ms(),
            queue_timeout_ms: defaults::queue_timeout_ms(),
            health_interval_ms: defaults::health_interval_ms(),
            health_timeout_ms: defaults::health_timeout_ms(),
            max_response_bytes: defaults::max_response_bytes(),
            keepalive_idle_ms: 0,
        }
    }
}

/// `gateway.output`: how the gateway encodes what it renders itself.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    #[serde(default = "defaults::jpeg_quality")]
    pub jpeg_quality: u8,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            jpeg_quality: defaults::jpeg_quality(),
        }
    }
}

/// `gateway.cache_control`: `Cache-Control` values per response class.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheControl {
    #[serde(default = "defaults::cc_image")]
    pub image: String,
    #[serde(default = "defaults::cc_info")]
    pub info: String,
    #[serde(default = "defaults::cc_redirect")]
    pub redirect: String,
    #[serde(default = "defaults::cc_error")]
    pub error: String,
    /// Images and info.json served while the ID archive could not be consulted (Redis slow or
    /// down, nothing known about the identifier): short, so that an identifier withdrawn in the
    /// meantime does not stay at the edge for the image lifetime.
    #[serde(default = "defaults::cc_unchecked")]
    pub unchecked: String,
}

impl Default for RawCacheControl {
    fn default() -> Self {
        RawCacheControl {
            image: defaults::cc_image(),
            info: defaults::cc_info(),
            redirect: defaults::cc_redirect(),
            error: defaults::cc_error(),
            unchecked: defaults::cc_unchecked(),
        }
    }
}

mod defaults {
    pub(super) fn listen() -> String {
        "127.0.0.1:8080".into()
    }
    pub(super) fn admin_listen() -> String {
        "127.0.0.1:9180".into()
    }
    pub(super) fn prefix() -> String {
        "/iiif".into()
    }
    pub(super) fn forwarded_headers() -> String {
        "x-forwarded".into()
    }
    pub(super) fn max_side() -> u32 {
        5000
    }
    pub(super) fn max_area() -> u64 {
        25_000_000
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn confined_upscale() -> String {
        "reject".into()
    }
    pub(super) fn version() -> u8 {
        3
    }
    pub(super) fn facts_ttl_seconds() -> u64 {
        300
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        1000
    }
    pub(super) fn first_byte_timeout_ms() -> u64 {
        15_000
    }
    pub(super) fn total_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn queue_timeout_ms() -> u64 {
        5000
    }
    pub(super) fn health_interval_ms() -> u64 {
        2000
    }
    pub(super) fn health_timeout_ms() -> u64 {
        1000
    }
    pub(super) fn max_response_bytes() -> usize {
        64 << 20
    }
    pub(super) fn max_cached_entry() -> lazyfetch::size::ByteSize {
        lazyfetch::size::ByteSize(2 << 20)
    }
    pub(super) fn derivative_memory() -> lazyfetch::size::ByteSize {
        lazyfetch::size::ByteSize(64 << 20)
    }
    pub(super) fn max_cached_output_pixels() -> u64 {
        1024 * 1024
    }
    pub(super) fn jpeg_quality() -> u8 {
        90
    }
    pub(super) fn cc_image() -> String {
        "public, max-age=2592000".into()
    }
    pub(super) fn cc_info() -> String {
        "public, max-age=86400".into()
    }
    pub(super) fn cc_redirect() -> String {
        "public, max-age=3600".into()
    }
    pub(super) fn cc_error() -> String {
        "no-store".into()
    }
    pub(super) fn cc_unchecked() -> String {
        "public, max-age=60".into()
    }
    pub(super) fn key_prefix() -> String {
        "iiif:".into()
    }
    pub(super) fn permanent_status() -> u16 {
        301
    }
    pub(super) fn temporary_status() -> u16 {
        302
    }
    pub(super) fn lookup_timeout_ms() -> u64 {
        50
    }
    pub(super) fn redirect_cache_ttl_ms() -> u64 {
        5000
    }
    pub(super) fn redirect_cache_capacity() -> usize {
        100_000
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Without a trailing slash.
    pub public_base_url: Option<String>,
    /// Starts with `/`, no trailing slash.
    pub prefix: String,
    pub trusted_proxies: crate::public_url::TrustedProxies,
    pub limits: iiif::Limits,
    pub default_version: iiif::Version,
    pub facts_ttl: Duration,
    pub rights: Option<String>,
    pub backend: BackendConfig,
    pub jpeg_quality: u8,
    pub cache_control: RawCacheControlValues,
    pub redirects: Option<RedirectsConfig>,
    /// The admin API's bearer token; without one the admin API answers 403 to every call.
    pub admin_token: Option<String>,
    pub cache: Option<lazyfetch::CacheConfig>,
    pub masters: Option<lazyfetch::MastersConfig>,
    /// `None` when there is no cache mount or the derivative cache is disabled.
    pub derivatives: Option<DerivativePolicy>,
    /// Lanes, slot limits, queue bounds and waits of the iipsrv pool.
    pub admission: crate::admission::AdmissionConfig,
    /// Which lane a request's estimated cost puts it in (`gateway.admission` too).
    pub cost_thresholds: crate::admission::CostThresholds,
    /// Timeouts and caps of the public listener's connections.
    pub connections: crate::connections::ConnectionSettings,
    /// The render budget (memory, workers, wait).
    pub render: crate::budget::RenderLimits,
    /// The request log.
    pub request_log: crate::request_log::RequestLogSettings,
}

/// The ID archive settings.
#[derive(Debug, Clone)]
pub struct RedirectsConfig {
    pub redis_url: String,
    pub key_prefix: String,
    pub permanent_status: u16,
    pub temporary_status: u16,
    pub lookup_timeout: Duration,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
}

/// `Cache-Control` values, validated as header values.
#[derive(Debug, Clone)]
pub struct RawCacheControlValues {
    pub image: String,
    pub info: String,
    pub redirect: String,
    pub error: String,
    pub unchecked: String,
}

/// The iipsrv pool settings.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub addresses: Vec<String>,
    pub max_cvt: u32,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub queue_timeout: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub max_response_bytes: usize,
    pub keepalive_idle: Duration,
}

/// Every problem found in a configuration file, one per line.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }
}

/// Parses the `gateway:` section of a configuration file's text.
///
/// # Errors
/// A [`ConfigError`] listing every invalid or missing value.
pub fn parse(yaml: &str) -> Result<GatewayConfig, ConfigError> {
    let file: RawFile =
        serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::one(e.to_string()))?;
    let raw = file
        .gateway
        .ok_or_else(|| ConfigError::one("missing section `gateway:`"))?;
    raw.resolve()
}

impl RawGatewayConfig {
    /// A gateway on `listen` and `admin_listen` in front of `backend`, every other key at its
    /// default (what a file with only these keys reads as).
    pub fn new(listen: String, admin_listen: String, backend: RawBackend) -> RawGatewayConfig {
        RawGatewayConfig {
            listen,
            admin_listen,
            public_base_url: None,
            prefix: defaults::prefix(),
            trusted_proxies: Vec::new(),
            forwarded_headers: defaults::forwarded_headers(),
            iiif: RawIiif::default(),
            backend,
            output: RawOutput::default(),
            cache_control: RawCacheControl::default(),
            redirects: None,
            admin: RawAdmin::default(),
            cache: None,
            masters: None,
            derivatives: RawDerivatives::default(),
            admission: crate::admission::RawAdmission::default(),
            connections: crate::connections::RawConnections::default(),
            render: crate::budget::RawRender::default(),
            request_log: crate::request_log::RawRequestLog::default(),
        }
    }

    /// Checks every value and converts it to its runtime type.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem, not only the first.
    pub fn resolve(self) -> Result<GatewayConfig, ConfigError> {
        let mut problems = Vec::new();
        let listen = socket_addr("gateway.listen", &self.listen, &mut problems);
        let admin_listen = socket_addr("gateway.admin_listen", &self.admin_listen, &mut problems);
        if listen.is_some() && listen == admin_listen {
            problems.push("gateway.admin_listen must differ from gateway.listen: admin endpoints are never public".into());
        }
        let public_base_url = self
            .public_base_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(['?', '#', ' '])
            {
                problems.push(format!("gateway.public_base_url: {url:?} is not an http(s) URL without query or fragment"));
            }
        }
        let prefix = self.prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ', '%']) {
            problems.push(format!(
                "gateway.prefix: {:?} must start with '/' and be a plain path",
                self.prefix
            ));
        }
        let networks = self
            .trusted_proxies
            .iter()
            .filter_map(|cidr| {
                parse_cidr(cidr)
                    .map_err(|e| problems.push(format!("gateway.trusted_proxies: {e}")))
                    .ok()
            })
            .collect();
        let forwarded_headers = ForwardedHeaders::from_config(&self.forwarded_headers)
            .unwrap_or_else(|| {
                problems.push(format!(
                    "gateway.forwarded_headers: {:?} is neither x-forwarded nor forwarded",
                    self.forwarded_headers
                ));
                ForwardedHeaders::default()
            });
        let trusted_proxies = crate::public_url::TrustedProxies {
            networks,
            headers: forwarded_headers,
        };

        let iiif = &self.iiif;
        let backend = &self.backend;
        for (name, value) in [
            ("gateway.iiif.max_width", iiif.max_width),
            ("gateway.iiif.max_height", iiif.max_height),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if iiif.max_area == 0 {
            problems.push("gateway.iiif.max_area must be at least 1".into());
        }
        if backend.max_cvt < 64 {
            problems.push(
                "gateway.backend.max_cvt must be at least 64 (iipsrv raises smaller values to 64)"
                    .into(),
            );
        }
        let confined_upscale = match iiif.confined_upscale.as_str() {
            "reject" => iiif::ConfinedUpscale::Reject,
            "allow" => iiif::ConfinedUpscale::Allow,
            other => {
                problems.push(format!(
                    "gateway.iiif.confined_upscale: {other:?} is neither \"reject\" nor \"allow\""
                ));
                iiif::ConfinedUpscale::Reject
            }
        };
        let default_version = match iiif.default_version {
            2 => iiif::Version::V2,
            3 => iiif::Version::V3,
            other => {
                problems.push(format!(
                    "gateway.iiif.default_version: {other} is neither 2 nor 3"
                ));
                iiif::Version::V3
            }
        };
        if backend.addresses.is_empty() {
            problems.push("gateway.backend.addresses: list at least one iipsrv process".into());
        }
        for address in &backend.addresses {
            let valid = match address.strip_prefix("unix:") {
                Some(path) => path.starts_with('/'),
                None => is_host_port(address),
            };
            if !valid {
                problems.push(format!("gateway.backend.addresses: {address:?} is neither HOST:PORT nor unix:/absolute/path"));
            }
        }
        for (name, ms) in [
            ("connect_timeout_ms", backend.connect_timeout_ms),
            ("first_byte_timeout_ms", backend.first_byte_timeout_ms),
            ("total_timeout_ms", backend.total_timeout_ms),
            ("queue_timeout_ms", backend.queue_timeout_ms),
            ("health_interval_ms", backend.health_interval_ms),
            ("health_timeout_ms", backend.health_timeout_ms),
        ] {
            if ms == 0 {
                problems.push(format!("gateway.backend.{name} must be at least 1"));
            }
        }
        if backend.first_byte_timeout_ms > backend.total_timeout_ms {
            problems.push(
                "gateway.backend.first_byte_timeout_ms must not exceed total_timeout_ms".into(),
            );
        }
        if !(1..=100).contains(&self.output.jpeg_quality) {
            problems.push("gateway.output.jpeg_quality must be between 1 and 100".into());
        }
        let cc = &self.cache_control;
        for (name, value) in [
            ("image", &cc.image),
            ("info", &cc.info),
            ("redirect", &cc.redirect),
            ("error", &cc.error),
            ("unchecked", &cc.unchecked),
        ] {
            if value.is_empty() || value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                problems.push(format!(
                    "gateway.cache_control.{name} must be a non-empty single-line header value"
                ));
            }
        }
        let redirects = self.redirects.as_ref().map(|r| {
            if !(r.redis_url.starts_with("redis://")
                || r.redis_url.starts_with("rediss://")
                || r.redis_url.starts_with("unix://"))
            {
                problems.push(
                    "gateway.redirects.redis_url must start with redis://, rediss:// or unix://"
                        .into(),
                );
            }
            if ![301, 308].contains(&r.permanent_status) {
                problems.push("gateway.redirects.permanent_status must be 301 or 308".into());
            }
            if ![302, 307].contains(&r.temporary_status) {
                problems.push("gateway.redirects.temporary_status must be 302 or 307".into());
            }
            if r.lookup_timeout_ms == 0 {
                problems.push("gateway.redirects.lookup_timeout_ms must be at least 1".into());
            }
            RedirectsConfig {
                redis_url: r.redis_url.clone(),
                key_prefix: r.key_prefix.clone(),
                permanent_status: r.permanent_status,
                temporary_status: r.temporary_status,
                lookup_timeout: Duration::from_millis(r.lookup_timeout_ms),
                cache_ttl: Duration::from_millis(r.cache_ttl_ms),
                cache_capacity: r.cache_capacity.max(1),
            }
        });
        let admin_token = match (&self.admin.token, &self.admin.token_file) {
            (Some(_), Some(_)) => {
                problems.push("gateway.admin: give token or token_file, not both".into());
                None
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => text
                    .lines()
                    .next()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
                Err(e) => {
                    problems.push(format!("gateway.admin.token_file: cannot read {path}: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(token) = &admin_token {
            if token.len() < 16 {
                problems.push("gateway.admin token must be at least 16 characters".into());
            }
        }
        if let Some(rights) = &iiif.rights {
            if !(rights.starts_with("http://") || rights.starts_with("https://")) {
                problems.push(
                    "gateway.iiif.rights must be a URI (Creative Commons or RightsStatements.org)"
                        .into(),
                );
            }
        }

        if self.masters.is_some() && self.cache.is_none() {
            problems.push(
                "gateway.masters needs gateway.cache (the mount the masters are copied to)".into(),
            );
        }
        if let Err(errors) = self.cache.as_ref().map_or(Ok(()), |c| c.validate()) {
            problems.extend(errors.0.iter().map(ToString::to_string));
        }
        if let Err(errors) = self.masters.as_ref().map_or(Ok(()), |m| m.validate()) {
            problems.extend(errors.0.iter().map(ToString::to_string));
        }
        let derivatives =
            (self.cache.is_some() && self.derivatives.enabled).then_some(DerivativePolicy {
                max_output_pixels: self.derivatives.max_output_pixels,
                max_entry_bytes: self.derivatives.max_entry_size.bytes(),
                memory_bytes: usize::try_from(self.derivatives.memory.bytes())
                    .unwrap_or(usize::MAX),
            });
        let admission = self
            .admission
            .resolve(
                backend.addresses.len(),
                Duration::from_millis(backend.queue_timeout_ms),
            )
            .map_err(|errors| problems.extend(errors))
            .ok();
        let connections = self
            .connections
            .resolve()
            .map_err(|errors| problems.extend(errors))
            .ok();
        let render = self
            .render
            .resolve()
            .map_err(|errors| problems.extend(errors))
            .ok();
        let request_log = self
            .request_log
            .resolve()
            .map_err(|errors| problems.extend(errors))
            .ok();

        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let admission = admission.expect("checked above");
        let connections = connections.expect("checked above");
        let render = render.expect("checked above");
        let request_log = request_log.expect("checked above");
        Ok(GatewayConfig {
            listen: listen.expect("checked above"),
            admin_listen: admin_listen.expect("checked above"),
            public_base_url,
            prefix,
            trusted_proxies,
            limits: iiif::Limits {
                max_width: iiif.max_width,
                max_height: iiif.max_height,
                max_area: iiif.max_area,
                allow_upscaling: iiif.allow_upscaling,
                confined_upscale,
            },
            default_version,
            facts_ttl: Duration::from_secs(iiif.facts_ttl_seconds),
            rights: iiif.rights.clone(),
            backend: BackendConfig {
                addresses: backend.addresses.clone(),
                max_cvt: backend.max_cvt,
                connect_timeout: Duration::from_millis(backend.connect_timeout_ms),
                first_byte_timeout: Duration::from_millis(backend.first_byte_timeout_ms),
                total_timeout: Duration::from_millis(backend.total_timeout_ms),
                queue_timeout: Duration::from_millis(backend.queue_timeout_ms),
                health_interval: Duration::from_millis(backend.health_interval_ms),
                health_timeout: Duration::from_millis(backend.health_timeout_ms),
                max_response_bytes: backend.max_response_bytes,
                keepalive_idle: Duration::from_millis(backend.keepalive_idle_ms),
            },
            jpeg_quality: self.output.jpeg_quality,
            cache_control: RawCacheControlValues {
                image: cc.image.clone(),
                info: cc.info.clone(),
                redirect: cc.redirect.clone(),
                error: cc.error.clone(),
                unchecked: cc.unchecked.clone(),
            },
            redirects,
            admin_token,
            cache: self.cache,
            masters: self.masters,
            derivatives,
            admission: admission.lanes,
            cost_thresholds: admission.costs,
            connections,
            render,
            request_log,
        })
    }
}

fn socket_addr(name: &str, value: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    value
        .parse()
        .map_err(|_| problems.push(format!("{name}: {value:?} is not an IP:PORT address")))
        .ok()
}

/// `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`: a backend may be named (a container or a
/// Kubernetes service); the name is looked up at each connect, so a replaced container's new
/// address is found.
fn is_host_port(value: &str) -> bool {
    if value.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    !host.is_empty() && host.len() <= 253 && labels_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn parse_cidr(value: &str) -> Result<IpNet, String> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is neither an IP address nor a CIDR"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_example_is_valid() {
        let example = include_str!("../../deploy/gateway.example.yaml");
        let config = parse(example).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.masters.is_some() && config.cache.is_some());
        assert_eq!(
            config.derivatives.map(|d| d.max_output_pixels),
            Some(1024 * 1024)
        );
    }

    #[test]
    fn masters_need_a_cache_mount() {
        let yaml =
            "gateway:\n  backend:\n    addresses: [127.0.0.1:9001]\n  masters:\n    rules: []\n";
        let error = parse(yaml).unwrap_err();
        assert!(
            error
                .problems
                .iter()
                .any(|p| p.contains("gateway.masters needs gateway.cache")),
            "{error}"
        );
    }

    #[test]
    fn derivatives_are_off_without_a_cache_or_when_disabled() {
        let base = "gateway:\n  backend:\n    addresses: [127.0.0.1:9001]\n";
        assert!(parse(base).unwrap().derivatives.is_none());
        let cached = format!("{base}  cache:\n    root: /srv/iiif-cache\n    budget: 1GiB\n");
        assert!(parse(&cached).unwrap().derivatives.is_some());
        let disabled = format!("{cached}  derivatives:\n    enabled: false\n");
        assert!(parse(&disabled).unwrap().derivatives.is_none());
    }

    use super::*;

    const MINIMAL: &str = "gateway:\n  backend:\n    addresses: [127.0.0.1:9001]\n";

    /// The file as serde reads it, for the round trip below.
    fn raw(yaml: &str) -> RawGatewayConfig {
        serde_yaml_ng::from_str::<RawFile>(yaml)
            .unwrap()
            .gateway
            .unwrap()
    }

    #[test]
    fn the_raw_config_serialises_back_to_the_same_values() {
        // What the launcher writes (serde, never text templates) reads back unchanged.
        let example = raw(include_str!("../../deploy/gateway.example.yaml"));
        let written = serde_yaml_ng::to_string(&RawFileOut { gateway: &example }).unwrap();
        let again = raw(&written);
        // `admission` is not written back; compare everything else.
        let without_admission = |config: &RawGatewayConfig| {
            let text = format!("{config:?}");
            text[..text.find("admission:").unwrap()].to_owned()
        };
        assert_eq!(without_admission(&again), without_admission(&example));
        assert!(parse(&written).is_ok(), "{written}");
    }

    #[test]
    fn the_constructors_read_as_a_minimal_file_does() {
        let built = RawGatewayConfig::new(
            defaults::listen(),
            defaults::admin_listen(),
            RawBackend::new(vec!["127.0.0.1:9001".into()]),
        );
        assert_eq!(format!("{built:?}"), format!("{:?}", raw(MINIMAL)));
        let redirects = RawRedirects::new("redis://127.0.0.1:6379/0".into());
        let read: RawRedirects =
            serde_yaml_ng::from_str("redis_url: redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(format!("{redirects:?}"), format!("{read:?}"));
    }

    #[derive(Serialize)]
    struct RawFileOut<'a> {
        gateway: &'a RawGatewayConfig,
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.admin_listen, "127.0.0.1:9180".parse().unwrap());
        assert_eq!(config.prefix, "/iiif");
        assert_eq!(config.limits.max_width, 5000);
        assert_eq!(config.limits.max_area, 25_000_000);
        assert_eq!(
            config.limits.confined_upscale,
            iiif::ConfinedUpscale::Reject
        );
        assert_eq!(config.default_version, iiif::Version::V3);
        assert_eq!(config.backend.addresses, vec!["127.0.0.1:9001".to_string()]);
    }

    #[test]
    fn pingora_keys_beside_the_gateway_section_are_ignored() {
        let yaml = format!("version: 1\nthreads: 2\npid_file: /run/x.pid\n{MINIMAL}");
        assert!(parse(&yaml).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = "gateway:\n  listen: nowhere\n  prefix: iiif\n  trusted_proxies: [10.0.0.0/33]\n  iiif:\n    confined_upscale: maybe\n    default_version: 4\n  backend:\n    addresses: []\n    connect_timeout_ms: 0\n";
        let error = parse(yaml).unwrap_err();
        let text = error.to_string();
        for expected in [
            "gateway.listen",
            "gateway.prefix",
            "trusted_proxies",
            "confined_upscale",
            "default_version",
            "addresses",
            "connect_timeout_ms",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(error.problems.len(), 7, "{text}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let yaml = "gateway:\n  backend:\n    addresses: [127.0.0.1:9001]\n    adresses: []\n";
        assert!(parse(yaml).unwrap_err().to_string().contains("adresses"));
    }

    #[test]
    fn admin_listener_cannot_be_the_public_one() {
        let yaml = "gateway:\n  listen: 127.0.0.1:8080\n  admin_listen: 127.0.0.1:8080\n  backend:\n    addresses: [127.0.0.1:9001]\n";
        assert!(parse(yaml)
            .unwrap_err()
            .to_string()
            .contains("admin endpoints are never public"));
    }

    #[test]
    fn missing_gateway_section_is_named() {
        assert_eq!(
            parse("version: 1\n").unwrap_err(),
            ConfigError::one("missing section `gateway:`")
        );
    }

    #[test]
    fn trailing_slashes_are_normalised() {
        let yaml = "gateway:\n  public_base_url: https://img.example.org/\n  prefix: /iiif/\n  backend:\n    addresses: [unix:/run/iipsrv.sock]\n";
        let config = parse(yaml).unwrap();
        assert_eq!(
            config.public_base_url.as_deref(),
            Some("https://img.example.org")
        );
        assert_eq!(config.prefix, "/iiif");
    }

    #[test]
    fn backends_may_be_named() {
        for good in [
            "127.0.0.1:9000",
            "[::1]:9000",
            "iipsrv-a:9000",
            "iipsrv.iiif.svc.cluster.local:9001",
        ] {
            assert!(is_host_port(good), "{good}");
        }
        for bad in [
            "iipsrv-a",
            "iipsrv-a:",
            "iipsrv-a:0",
            "iipsrv-a:70000",
            ":9000",
            "-a:9000",
            "a..b:9000",
            "a b:9000",
            "http://a:9000",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}

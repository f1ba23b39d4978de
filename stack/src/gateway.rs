//! The gateway binary with a configuration file written by serialising its own raw config
//! types (Pingora's `ServerConf` for the top-level keys, [`RawGatewayConfig`] under
//! `gateway:`), never from text templates. Ready when the admin listener's `/readyz` answers
//! 200 (its iipsrv processes answer health checks) and the public listener accepts
//! connections (no request: it would show in the gateway's metrics).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gateway::config::{RawBackend, RawGatewayConfig, RawRedirects};
use lazyfetch::config::{CacheConfig, MastersConfig};
use nix::sys::signal::Signal;
use pingora_core::server::configuration::ServerConf;
use serde::Serialize;

use crate::binaries::GATEWAY;
use crate::error::Error;
use crate::ports;
use crate::probe;
use crate::process::Process;

/// How long the gateway may take to become ready (its first health checks of iipsrv).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A change to the gateway's config after the stack has filled it in (tests use it for the
/// settings they exercise).
pub type Configure = Arc<dyn Fn(&mut RawGatewayConfig) + Send + Sync>;

/// The public base URL the gateway builds ids from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicBaseUrl {
    /// None configured: from trusted proxies' headers or `listen`.
    Unset,
    /// `http://127.0.0.1:PORT` of its own public listener.
    Listener,
    /// This URL.
    Url(String),
}

/// One gateway of the stack.
#[derive(Clone)]
pub struct GatewaySpec {
    /// Its name: the config is `DIR/NAME.yaml`, the log `DIR/log/NAME.log`.
    pub name: String,
    /// A fixed public port; a free one when `None`.
    pub port: Option<u16>,
    /// A fixed admin port; a free one when `None`.
    pub admin_port: Option<u16>,
    /// `gateway.public_base_url`.
    pub public_base_url: PublicBaseUrl,
    /// Pingora's `threads`.
    pub threads: usize,
    /// `gateway.backend.health_interval_ms`.
    pub health_interval_ms: u64,
    /// `gateway.backend.queue_timeout_ms`: the longest a request waits for an iipsrv process.
    pub queue_timeout_ms: u64,
    /// `gateway.cache`: the cache mount (derivatives, and masters from S3).
    pub cache: Option<CacheConfig>,
    /// Masters from the stack's Garage (needs `cache`).
    pub masters: bool,
    /// Redirects from the stack's Redis (the ID archive).
    pub redirects: bool,
    /// `RUST_LOG` of the process.
    pub log_filter: String,
    /// Applied last, to the filled-in config.
    pub configure: Option<Configure>,
}

impl std::fmt::Debug for GatewaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySpec")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("admin_port", &self.admin_port)
            .field("cache", &self.cache)
            .field("masters", &self.masters)
            .field("redirects", &self.redirects)
            .field("configure", &self.configure.is_some())
            .finish_non_exhaustive()
    }
}

impl GatewaySpec {
    /// The local stack's gateway: free ports, 2 threads, health checks every 2 s, requests
    /// wait up to 60 s for an iipsrv process (big renders queue behind tiles and thumbnails,
    /// which always go first), the public base URL of its own listener.
    pub fn new(name: &str) -> GatewaySpec {
        GatewaySpec {
            name: name.to_owned(),
            port: None,
            admin_port: None,
            public_base_url: PublicBaseUrl::Listener,
            threads: 2,
            health_interval_ms: 2000,
            queue_timeout_ms: 60_000,
            cache: None,
            masters: false,
            redirects: false,
            log_filter: "info".to_owned(),
            configure: None,
        }
    }
}

/// What the rest of the stack gives a gateway.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// iipsrv addresses.
    pub backends: Vec<String>,
    /// The `MAX_CVT` iipsrv runs with (also the largest output side the gateway accepts).
    pub max_cvt: u32,
    /// iipsrv's `JPEG_QUALITY`, which the gateway's own encoder matches.
    pub jpeg_quality: u8,
    /// The stack's Redis, for `gateway.redirects`.
    pub redis_url: Option<String>,
    /// The stack's Garage as `gateway.masters`.
    pub masters: Option<MastersConfig>,
    /// The admin API's token file.
    pub admin_token_file: Option<PathBuf>,
}

/// The whole file: Pingora's keys at the top level, the gateway's under `gateway:`.
#[derive(Serialize)]
struct ConfigFile<'a> {
    #[serde(flatten)]
    server: serde_yaml_ng::Mapping,
    gateway: &'a RawGatewayConfig,
}

/// Pingora's keys of `server` that differ from Pingora's defaults (and `version`): the file
/// says what this stack chose, not the thirty defaults.
fn chosen_server_keys(server: &ServerConf) -> serde_yaml_ng::Mapping {
    let mapping = |conf: &ServerConf| match serde_yaml_ng::to_value(conf) {
        Ok(serde_yaml_ng::Value::Mapping(mapping)) => mapping,
        _ => serde_yaml_ng::Mapping::new(),
    };
    let defaults = mapping(&ServerConf::default());
    mapping(server)
        .into_iter()
        .filter(|(key, value)| key.as_str() == Some("version") || defaults.get(key) != Some(value))
        .collect()
}

/// Where a gateway's files are.
#[derive(Debug, Clone)]
pub struct GatewayFiles {
    /// `DIR/NAME.yaml`.
    pub config: PathBuf,
    /// `DIR/log/NAME.log`.
    pub log: PathBuf,
    /// `DIR/run/NAME.pid` (written by Pingora when it daemonises).
    pub pid_file: PathBuf,
    /// `DIR/run/NAME-upgrade.sock`.
    pub upgrade_sock: PathBuf,
}

impl GatewayFiles {
    /// The files of gateway `name` in the stack directory `dir`.
    pub fn new(dir: &Path, name: &str) -> GatewayFiles {
        GatewayFiles {
            config: dir.join(format!("{name}.yaml")),
            log: dir.join("log").join(format!("{name}.log")),
            pid_file: dir.join("run").join(format!("{name}.pid")),
            upgrade_sock: dir.join("run").join(format!("{name}-upgrade.sock")),
        }
    }
}

/// Pingora's settings: short grace periods, so a local stack stops in a second or two.
pub fn server_conf(spec: &GatewaySpec, files: &GatewayFiles) -> ServerConf {
    ServerConf {
        version: 1,
        threads: spec.threads,
        pid_file: files.pid_file.display().to_string(),
        upgrade_sock: files.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        ..ServerConf::default()
    }
}

/// The `gateway:` section for `spec` on `port` and `admin_port`, wired to the stack.
pub fn raw_config(
    spec: &GatewaySpec,
    wiring: &Wiring,
    port: u16,
    admin_port: u16,
) -> RawGatewayConfig {
    let mut backend = RawBackend::new(wiring.backends.clone());
    backend.max_cvt = wiring.max_cvt;
    backend.health_interval_ms = spec.health_interval_ms;
    backend.queue_timeout_ms = spec.queue_timeout_ms;
    // One host, one gateway per iipsrv pool: keep each FastCGI connection open between requests.
    backend.keepalive_idle_ms = 250;
    let mut raw = RawGatewayConfig::new(
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{admin_port}"),
        backend,
    );
    raw.public_base_url = match &spec.public_base_url {
        PublicBaseUrl::Unset => None,
        PublicBaseUrl::Listener => Some(format!("http://127.0.0.1:{port}")),
        PublicBaseUrl::Url(url) => Some(url.clone()),
    };
    raw.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
    raw.iiif.max_width = wiring.max_cvt;
    raw.iiif.max_height = wiring.max_cvt;
    raw.output.jpeg_quality = wiring.jpeg_quality;
    if spec.redirects {
        raw.redirects = wiring.redis_url.clone().map(RawRedirects::new);
    }
    raw.admin.token_file = wiring
        .admin_token_file
        .as_ref()
        .map(|file| file.display().to_string());
    raw.cache = spec.cache.clone();
    if spec.masters {
        raw.masters = wiring.masters.clone();
    }
    if let Some(configure) = &spec.configure {
        configure(&mut raw);
    }
    raw
}

/// The YAML text of the whole file.
///
/// # Panics
/// Never for these types (serde_yaml_ng serialises every value they hold).
pub fn config_yaml(server: &ServerConf, gateway: &RawGatewayConfig) -> String {
    let header =
        "# Written by the stack launcher (stack/src/gateway.rs) from the gateway's config types;\n\
                  # every key is documented in deploy/gateway.example.yaml.\n";
    let file = ConfigFile {
        server: chosen_server_keys(server),
        gateway,
    };
    let body = serde_yaml_ng::to_string(&file).expect("the config types serialise");
    format!("{header}{body}")
}

/// A file with only the `gateway:` section and Pingora's defaults: enough for the gateway's
/// `-t` check and its subcommands (`redirects …`), which never start the server.
pub fn standalone_yaml(gateway: &RawGatewayConfig) -> String {
    config_yaml(
        &ServerConf {
            version: 1,
            ..ServerConf::default()
        },
        gateway,
    )
}

/// A running gateway, stopped with SIGTERM (Pingora's graceful stop).
#[derive(Debug)]
pub struct Gateway {
    name: String,
    port: u16,
    admin_port: u16,
    files: GatewayFiles,
    process: Process,
}

impl Gateway {
    /// Writes its config into `dir` and starts it.
    ///
    /// # Errors
    /// A missing binary, taken ports, or not ready within 60 s (the error quotes its log).
    pub fn start(spec: &GatewaySpec, wiring: &Wiring, dir: &Path) -> Result<Gateway, Error> {
        if spec.port.is_some() && spec.admin_port.is_some() {
            return Gateway::start_once(spec, wiring, dir);
        }
        ports::retry_on_collision(|| Gateway::start_once(spec, wiring, dir))
    }

    fn start_once(spec: &GatewaySpec, wiring: &Wiring, dir: &Path) -> Result<Gateway, Error> {
        let binary = GATEWAY.require()?;
        let port = ports::fixed_or_free(spec.port);
        let admin_port = ports::fixed_or_free(spec.admin_port);
        for p in [port, admin_port] {
            ports::check_free(&spec.name, p)?;
        }
        let files = GatewayFiles::new(dir, &spec.name);
        for sub in ["log", "run"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(Error::io(dir.join(sub)))?;
        }
        let raw = raw_config(spec, wiring, port, admin_port);
        let yaml = config_yaml(&server_conf(spec, &files), &raw);
        std::fs::write(&files.config, yaml).map_err(Error::io(&files.config))?;
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&files.config)
            .env("RUST_LOG", &spec.log_filter);
        let mut process = Process::spawn(
            &spec.name,
            &mut command,
            &files.log,
            // Pingora's graceful stop: quick with the grace periods above (1 s + 2 s).
            Signal::SIGTERM,
            Duration::from_secs(20),
        )?;
        let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
        let public: SocketAddr = ([127, 0, 0, 1], port).into();
        process.wait_ready(&format!("{admin}/readyz"), READY_WITHIN, || {
            probe::http_status_is(admin, "/readyz", 200)?;
            probe::accepts(public)
        })?;
        Ok(Gateway {
            name: spec.name.clone(),
            port,
            admin_port,
            files,
            process,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// `http://127.0.0.1:PORT{path}` on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://127.0.0.1:ADMIN_PORT{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Its files (config, log).
    pub fn files(&self) -> &GatewayFiles {
        &self.files
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.files.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether it still runs.
    pub fn is_alive(&mut self) -> bool {
        self.process.is_alive()
    }

    /// SIGTERM, then waits.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring(token: &Path) -> Wiring {
        Wiring {
            backends: vec!["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
            max_cvt: 5000,
            jpeg_quality: 90,
            redis_url: Some("redis://127.0.0.1:6390/0".into()),
            masters: None,
            admin_token_file: Some(token.to_path_buf()),
        }
    }

    #[test]
    fn the_written_file_is_a_valid_gateway_config() {
        let spec = GatewaySpec {
            redirects: true,
            ..GatewaySpec::new("gateway")
        };
        let files = GatewayFiles::new(Path::new("/stack"), "gateway");
        // The gateway reads the token file while it checks the config.
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
        let yaml = config_yaml(
            &server_conf(&spec, &files),
            &raw_config(&spec, &wiring(&token), 8080, 9180),
        );
        let config = gateway::config::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9180");
        assert_eq!(
            config.public_base_url.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(config.redirects.is_some());
        let server = ServerConf::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(server.threads, 2);
        assert_eq!(server.pid_file, "/stack/run/gateway.pid");
        assert_eq!(server.grace_period_seconds, Some(1));
        assert!(
            !yaml.contains("work_stealing"),
            "Pingora's defaults are left out:\n{yaml}"
        );
    }

    #[test]
    fn configure_runs_last() {
        let spec = GatewaySpec {
            public_base_url: PublicBaseUrl::Unset,
            configure: Some(Arc::new(|raw: &mut RawGatewayConfig| {
                raw.backend.queue_timeout_ms = 1234;
            })),
            ..GatewaySpec::new("gateway")
        };
        let raw = raw_config(&spec, &wiring(Path::new("/token")), 1, 2);
        assert_eq!(raw.backend.queue_timeout_ms, 1234);
        assert_eq!(raw.public_base_url, None);
        assert!(raw.redirects.is_none(), "redirects only when asked");
    }
}

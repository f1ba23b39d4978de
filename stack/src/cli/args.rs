//! The command line: what clap parses, and the [`StackSpec`] it describes. Defaults are the
//! local stack's; scripts pass what differs (free ports are the default everywhere, the fixed
//! ports of `deploy/local/up` are passed by it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use lazyfetch::config::CacheConfig;
use lazyfetch::size::ByteSize;

use stack::gateway::{GatewaySpec, PublicBaseUrl};
use stack::nginx::{NginxSpec, Site};
use stack::stack::{Backends, GarageSetup, StackSpec};
use stack::{GarageSpec, IipsrvSpec, RedisSpec};

/// One launcher for the local stack and the tests: iipsrv, Redis, Garage, nginx and the
/// gateway on 127.0.0.1, each ready when it answers its protocol.
///
/// Examples:
///   stack up --detach --garage --redis        the local stack in the background (deploy/local/up)
///   stack env                                 its addresses, as `export STACK_…=…` lines
///   stack down                                stop it
///   stack run --dir var/try -- sh -c 'curl -s $STACK_GATEWAY_URL/iiif/3/astronaut/info.json'
///   stack run --dir var/try --uri-map --baseline -- sh -c 'echo $STACK_BASELINE_URL $STACK_GATEWAY_URL'
///
/// Every service is ready when it answers its protocol (Redis PING, an HTTP answer from
/// Garage and nginx, FastCGI from iipsrv, 200 from the gateway's /readyz), or the launcher
/// stops with the service's name, its log and the last probe error.
///
/// Every external program can be overridden by its variable: IIPSRV_BIN, REDIS_SERVER_BIN,
/// GARAGE_BIN, NGINX_BIN, OPENSSL_BIN, IIIF_GATEWAY_BIN, LAZYFETCH_BIN, LOADTEST_BIN
/// (`stack binaries` lists them).
#[derive(Debug, Parser)]
#[command(name = "stack", version, verbatim_doc_comment)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the stack and keep it running until Ctrl-C, SIGTERM or `stack down`; with
    /// --detach, return once every service answers. Already running: says so and exits 0.
    Up {
        /// Run in the background (log in DIR/log/stack.log).
        #[arg(long, short)]
        detach: bool,
        /// What to start.
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Stop the stack started by `stack up` in DIR (gateways first, Garage last).
    Down {
        /// The state directory.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Start the stack, run COMMAND with the STACK_* variables set, stop the stack; exits with
    /// COMMAND's status.
    Run {
        /// What to start.
        #[command(flatten)]
        stack: StackArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print the STACK_* variables of the running stack as `export NAME='value'` lines, for
    /// `eval "$(stack env)"`.
    Env {
        /// The state directory.
        #[command(flatten)]
        dir: DirArg,
    },
    /// List the external programs, their variables and where each is found.
    Binaries,
    /// Print the path of one external program (iipsrv, redis-server, garage, nginx, openssl,
    /// iiif-gateway, lazyfetch, loadtest); exit 1 with how to get it when it is missing.
    Which {
        /// Its name.
        name: String,
    },
}

/// `--dir`.
#[derive(Debug, Args)]
pub(crate) struct DirArg {
    /// The state directory: log/, run/, the gateway configs, admin-token, garage/.
    #[arg(long, env = "IIIF_VAR", default_value = "var")]
    pub dir: PathBuf,
}

impl DirArg {
    /// The directory, absolute.
    pub(crate) fn absolute(&self) -> PathBuf {
        absolute(&self.dir)
    }
}

/// Everything `up` and `run` can start.
#[derive(Debug, Args)]
pub(crate) struct StackArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The sample images: iipsrv's FILESYSTEM_PREFIX without --garage, what is uploaded with it.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// iipsrv processes.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub iipsrv: usize,
    /// Fixed iipsrv ports, space- or comma-separated (one process each).
    #[arg(long, value_name = "PORTS")]
    pub iipsrv_ports: Option<String>,
    /// Use these running iipsrv processes (HOST:PORT, space- or comma-separated) instead.
    #[arg(long, value_name = "ADDRESSES", conflicts_with_all = ["iipsrv_ports"])]
    pub iipsrv_addresses: Option<String>,
    /// iipsrv's FILESYSTEM_PREFIX [the cache mount with --garage, else --images].
    #[arg(long, value_name = "DIR")]
    pub iipsrv_root: Option<PathBuf>,
    /// iipsrv with URI_MAP='iiif=>IIIF' and CORS='*', as the nginx baseline needs.
    #[arg(long)]
    pub uri_map: bool,
    /// iipsrv's MAX_CVT (and the gateway's largest output side).
    #[arg(long, env = "IIPSRV_MAX_CVT", default_value_t = 5000)]
    pub max_cvt: u32,
    /// iipsrv's JPEG_QUALITY (and the gateway's own JPEG encoder's).
    #[arg(long, env = "IIPSRV_JPEG_QUALITY", default_value_t = 90)]
    pub jpeg_quality: u8,
    /// Do not restart iipsrv processes that die.
    #[arg(long)]
    pub no_supervise: bool,

    /// A Redis for the ID archive (the gateway's redirects).
    #[arg(long)]
    pub redis: bool,
    /// Its fixed port.
    #[arg(long, value_name = "PORT", requires = "redis")]
    pub redis_port: Option<u16>,
    /// Its password.
    #[arg(long, value_name = "PASSWORD", requires = "redis")]
    pub redis_password: Option<String>,
    /// TLS only, with a throwaway CA (DIR/redis/ca.pem; for clients given that CA: the gateway
    /// trusts only the public roots).
    #[arg(long, requires = "redis")]
    pub redis_tls: bool,

    /// A single-node Garage holding the masters; the first gateway reads them through a cache
    /// mount.
    #[arg(long)]
    pub garage: bool,
    /// Its fixed S3 port (RPC and admin on the next two).
    #[arg(long, value_name = "PORT", requires = "garage")]
    pub garage_port: Option<u16>,
    /// Its bucket.
    #[arg(long, default_value = "iiif-masters", requires = "garage")]
    pub bucket: String,
    /// Upload this file (key = its name) or directory (key = relative path) when new or
    /// changed; repeatable [--images].
    #[arg(long, value_name = "PATH", requires = "garage")]
    pub upload: Vec<PathBuf>,

    /// A gateway NAME, or NAME:cache for one with a derivative cache of its own in
    /// DIR/NAME-cache; repeatable [gateway]. The first one gets --garage's masters, --redis's
    /// redirects and the options below.
    #[arg(long = "gateway", value_name = "NAME[:cache]")]
    pub gateways: Vec<String>,
    /// No gateway at all.
    #[arg(long, conflicts_with = "gateways")]
    pub no_gateway: bool,
    /// The first gateway's fixed public port.
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<u16>,
    /// The first gateway's fixed admin port.
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// The first gateway's public base URL [http://127.0.0.1:PORT].
    #[arg(long, value_name = "URL")]
    pub public_base_url: Option<String>,
    /// The first gateway's cache mount [DIR/cache with --garage; none otherwise].
    #[arg(long, value_name = "DIR")]
    pub cache_root: Option<PathBuf>,
    /// The budget of every gateway cache.
    #[arg(long, default_value = "10GiB", value_name = "SIZE")]
    pub cache_budget: String,
    /// The gateways keep no derivatives: every image request is rendered (masters still come
    /// through the cache mount), as when measuring uncached requests.
    #[arg(long)]
    pub no_derivatives: bool,
    /// Pingora threads per gateway.
    #[arg(long, env = "GATEWAY_THREADS", default_value_t = 2)]
    pub gateway_threads: usize,
    /// The gateways' RUST_LOG.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// nginx -> iipsrv, the measured baseline (needs --uri-map).
    #[arg(long, requires = "uri_map")]
    pub baseline: bool,
    /// Its fixed port.
    #[arg(long, value_name = "PORT", requires = "baseline")]
    pub baseline_port: Option<u16>,
    /// nginx serving the files in DIR at their paths (the hot-cache anchor).
    #[arg(long = "static", value_name = "DIR")]
    pub static_root: Option<PathBuf>,
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', ',']).filter(|item| !item.is_empty())
}

impl StackArgs {
    /// The stack these arguments describe.
    ///
    /// # Errors
    /// A malformed port list, size or gateway name.
    pub(crate) fn spec(&self) -> Result<StackSpec, String> {
        let dir = self.dir.absolute();
        let log = dir.join("log");
        let images = absolute(&self.images.clone().unwrap_or_else(|| dir.join("images")));
        let budget: ByteSize = self
            .cache_budget
            .parse()
            .map_err(|e| format!("--cache-budget: {e}"))?;
        let first_cache = match (&self.cache_root, self.garage) {
            (Some(root), _) => Some(absolute(root)),
            (None, true) => Some(dir.join("cache")),
            (None, false) => None,
        };
        let gateways = self.gateways(&dir, first_cache.clone(), budget)?;
        let backends = match &self.iipsrv_addresses {
            Some(addresses) => Backends::Existing {
                addresses: split_list(addresses).map(str::to_owned).collect(),
                max_cvt: self.max_cvt,
                jpeg_quality: self.jpeg_quality,
            },
            None => Backends::Start(self.iipsrv_spec(&dir, &images, first_cache.as_deref())?),
        };
        let garage = self.garage.then(|| GarageSetup {
            spec: GarageSpec {
                dir: dir.join("garage"),
                log: Some(log.join("garage.log")),
                s3_port: self.garage_port,
                bucket: self.bucket.clone(),
            },
            upload: if self.upload.is_empty() {
                vec![images.clone()]
            } else {
                self.upload.iter().map(|p| absolute(p)).collect()
            },
        });
        let redis = self.redis.then(|| RedisSpec {
            dir: dir.join("redis"),
            log: Some(log.join("redis.log")),
            port: self.redis_port,
            password: self.redis_password.clone(),
            tls: self.redis_tls,
            args: Vec::new(),
        });
        let mut nginx = Vec::new();
        if self.baseline {
            nginx.push(NginxSpec {
                name: "baseline".into(),
                prefix: dir.join("nginx-baseline"),
                port: self.baseline_port,
                site: Site::Baseline,
            });
        }
        if let Some(root) = &self.static_root {
            nginx.push(NginxSpec {
                name: "static".into(),
                prefix: dir.join("nginx-static"),
                port: None,
                site: Site::Static(absolute(root)),
            });
        }
        Ok(StackSpec {
            dir,
            backends,
            redis,
            garage,
            nginx,
            gateways,
        })
    }

    fn iipsrv_spec(
        &self,
        dir: &Path,
        images: &Path,
        cache: Option<&Path>,
    ) -> Result<IipsrvSpec, String> {
        let ports = match &self.iipsrv_ports {
            Some(list) => split_list(list)
                .map(|p| {
                    p.parse::<u16>()
                        .map_err(|e| format!("--iipsrv-ports: {p:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        // With masters from Garage, iipsrv reads the copies on the cache mount.
        let root = match (&self.iipsrv_root, cache, self.garage) {
            (Some(root), _, _) => absolute(root),
            (None, Some(cache), true) => cache.to_path_buf(),
            _ => images.to_path_buf(),
        };
        if self.garage {
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        }
        Ok(IipsrvSpec {
            processes: if ports.is_empty() {
                self.iipsrv
            } else {
                ports.len()
            },
            ports,
            uri_map: self.uri_map.then(|| "iiif=>IIIF".to_owned()),
            cors: self.uri_map.then(|| "*".to_owned()),
            max_cvt: self.max_cvt,
            jpeg_quality: self.jpeg_quality,
            supervise: !self.no_supervise,
            pid_dir: Some(dir.join("run")),
            ..IipsrvSpec::new(root, dir.join("log"))
        })
    }

    fn gateways(
        &self,
        dir: &Path,
        first_cache: Option<PathBuf>,
        budget: ByteSize,
    ) -> Result<Vec<GatewaySpec>, String> {
        if self.no_gateway {
            return Ok(Vec::new());
        }
        let names = if self.gateways.is_empty() {
            vec!["gateway".to_owned()]
        } else {
            self.gateways.clone()
        };
        let mut specs = Vec::new();
        for (i, entry) in names.iter().enumerate() {
            let (name, own_cache) = match entry.split_once(':') {
                None => (entry.as_str(), false),
                Some((name, "cache")) => (name, true),
                Some((_, other)) => {
                    return Err(format!(
                        "--gateway {entry}: unknown option {other:?} (only \"cache\")"
                    ))
                }
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "--gateway {entry}: a name of letters, digits, - and _"
                ));
            }
            let mut spec = GatewaySpec {
                threads: self.gateway_threads,
                log_filter: self.log_filter.clone(),
                ..GatewaySpec::new(name)
            };
            if self.no_derivatives {
                spec.configure = Some(Arc::new(|raw| raw.derivatives.enabled = false));
            }
            let mut cache = own_cache.then(|| dir.join(format!("{name}-cache")));
            if i == 0 {
                spec.port = self.gateway_port;
                spec.admin_port = self.admin_port;
                if let Some(url) = &self.public_base_url {
                    spec.public_base_url = PublicBaseUrl::Url(url.clone());
                }
                spec.masters = self.garage;
                spec.redirects = self.redis;
                cache = cache.or_else(|| first_cache.clone());
            }
            if let Some(root) = cache {
                std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                spec.cache = Some(CacheConfig::new(root, budget));
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> StackSpec {
        let mut all = vec!["stack", "run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Run { stack, .. } => stack.spec().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_local_stack() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let spec = parse(&[
            "--dir",
            d,
            "--garage",
            "--redis",
            "--iipsrv-ports",
            "9001 9002",
            "--gateway-port",
            "8080",
        ]);
        let Backends::Start(iipsrv) = &spec.backends else {
            panic!()
        };
        assert_eq!(iipsrv.ports, vec![9001, 9002]);
        assert_eq!(
            iipsrv.root,
            dir.path().join("cache"),
            "iipsrv reads the cache mount"
        );
        let gateway = &spec.gateways[0];
        assert!(gateway.masters && gateway.redirects);
        assert_eq!(gateway.port, Some(8080));
        assert_eq!(
            gateway.cache.as_ref().unwrap().root,
            dir.path().join("cache")
        );
        assert_eq!(spec.garage.unwrap().upload, vec![dir.path().join("images")]);
    }

    #[test]
    fn two_gateways_and_two_nginx_on_one_pool() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let spec = parse(&[
            "--dir",
            d,
            "--uri-map",
            "--baseline",
            "--static",
            d,
            "--gateway",
            "gateway",
            "--gateway",
            "cached:cache",
        ]);
        assert_eq!(spec.gateways.len(), 2);
        assert!(spec.gateways[0].cache.is_none());
        assert_eq!(
            spec.gateways[1].cache.as_ref().unwrap().root,
            dir.path().join("cached-cache")
        );
        assert_eq!(spec.nginx.len(), 2);
        let Backends::Start(iipsrv) = &spec.backends else {
            panic!()
        };
        assert_eq!(iipsrv.uri_map.as_deref(), Some("iiif=>IIIF"));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = |args: &[&str]| {
            let mut all = vec!["stack", "run"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--", "true"]);
            match Cli::try_parse_from(all) {
                Err(_) => true,
                Ok(cli) => match cli.command {
                    Command::Run { stack, .. } => stack.spec().is_err(),
                    _ => false,
                },
            }
        };
        assert!(bad(&["--baseline"]), "the baseline needs --uri-map");
        assert!(bad(&["--gateway", "x:other"]));
        assert!(bad(&["--iipsrv-ports", "90a"]));
        assert!(bad(&["--cache-budget", "lots"]));
    }
}

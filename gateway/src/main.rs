//! `iiif-gateway`: IIIF Image API 3.0 and 2.1 in front of stock iipsrv.
//!
//! Glue only: parse the command line, load and check the configuration, wire the services into a
//! Pingora server and run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use clap::{Parser, Subcommand};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tokio::sync::broadcast;

use gateway::admin::AdminApp;
use gateway::app::Gateway;
use gateway::config::{self, GatewayConfig};
use gateway::connections::Guarded;
use gateway::events;
use gateway::fcgi::{BackendPool, PoolConfig};
use gateway::metrics::Metrics;
use gateway::redirects::lookup::RedirectLookup;
use gateway::service::PublicService;
use idarchive::cli::RedirectsArgs;
use idarchive::store::RedirectStore;

/// IIIF Image API 3.0 and 2.1 (level 2) gateway in front of stock iipsrv 1.1.
///
/// Serves /iiif/3/… and /iiif/2/… on the public listener, talks FastCGI to a pool of iipsrv
/// processes, and exposes /metrics, /healthz and /readyz on a separate admin listener.
/// Logging follows RUST_LOG (default "info"; "access=debug" adds an access log line per request).
/// Without a subcommand it runs the server.
#[derive(Parser, Debug)]
#[command(name = "iiif-gateway", version)]
struct Cli {
    /// Configuration file (YAML: Pingora's server keys plus a `gateway:` section).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/iiif-gateway/gateway.yaml",
        global = true
    )]
    conf: PathBuf,
    /// Check the configuration file and exit (0 = valid).
    #[arg(short, long)]
    test: bool,
    /// Run in the background (writes `pid_file`, logs to `error_log`).
    #[arg(short, long)]
    daemon: bool,
    /// Take over the listening sockets of a running gateway (zero-downtime upgrade; send the old
    /// process SIGQUIT first).
    #[arg(short, long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    Redirects(RedirectsArgs),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Redirects(args)) = cli.command.take() {
        // An admin command: quiet logs, and only the `gateway:` section matters.
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
        return match load_gateway_config(&cli) {
            Ok(config) => {
                let settings = config.redirects.map(|r| idarchive::cli::Settings {
                    redis_url: r.redis_url,
                    key_prefix: r.key_prefix,
                });
                idarchive::cli::run(settings.as_ref(), args)
            }
            Err(message) => {
                eprintln!("iiif-gateway: {message}");
                ExitCode::from(2)
            }
        };
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // TLS to Redis (rediss://) needs one process-wide crypto provider; choose it explicitly so a
    // second provider pulled in by another dependency cannot make rustls refuse to pick.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (server_conf, gateway_config) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("iiif-gateway: {message}");
            return ExitCode::from(2);
        }
    };
    if cli.test {
        println!(
            "iiif-gateway: configuration {} is valid",
            cli.conf.display()
        );
        return ExitCode::SUCCESS;
    }
    run(cli, server_conf, gateway_config)
}

fn load_gateway_config(cli: &Cli) -> Result<GatewayConfig, String> {
    let path = cli.conf.display();
    let text =
        std::fs::read_to_string(&cli.conf).map_err(|e| format!("cannot read {path}: {e}"))?;
    config::parse(&text).map_err(|e| format!("{path}: {e}"))
}

fn load(cli: &Cli) -> Result<(ServerConf, GatewayConfig), String> {
    let path = cli.conf.display();
    let text =
        std::fs::read_to_string(&cli.conf).map_err(|e| format!("cannot read {path}: {e}"))?;
    let gateway_config = config::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    if let Some(redirects) = &gateway_config.redirects {
        redis_url::check(&redirects.redis_url)
            .map_err(|e| format!("{path}: gateway.redirects.redis_url: {e}"))?;
    }
    if let (Some(cache), Some(masters)) = (&gateway_config.cache, &gateway_config.masters) {
        check_masters(cache, masters).map_err(|e| format!("{path}: gateway.masters: {e}"))?;
    }
    let server_conf =
        ServerConf::from_yaml(&text).map_err(|e| format!("{path}: server settings: {e}"))?;
    Ok((server_conf, gateway_config))
}

/// Starts the access-master cache once, on a throwaway runtime, so that what only shows at start
/// (an unreadable secret file, a bad endpoint URL) is reported now, not as 503s later. The
/// serving one is started again inside the server (see `gateway::masters`).
fn check_masters(
    cache: &lazyfetch::CacheConfig,
    masters: &lazyfetch::MastersConfig,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime
        .block_on(lazyfetch::LazyFetch::new(
            cache,
            masters,
            &prometheus::Registry::new(),
        ))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn run(cli: Cli, server_conf: ServerConf, config: GatewayConfig) -> ExitCode {
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let backend = &config.backend;
    let pool = BackendPool::new(PoolConfig {
        addresses: backend.addresses.clone(),
        connect_timeout: backend.connect_timeout,
        first_byte_timeout: backend.first_byte_timeout,
        total_timeout: backend.total_timeout,
        queue_timeout: backend.queue_timeout,
        health_interval: backend.health_interval,
        health_timeout: backend.health_timeout,
        max_response_bytes: backend.max_response_bytes,
        keepalive_idle: backend.keepalive_idle,
        admission: config.admission.clone(),
    });
    let metrics = Arc::new(Metrics::new());
    let listen = config.listen.to_string();
    let admin_listen = config.admin_listen.to_string();
    let admin_token = config.admin_token.clone();
    // The URL was checked in `load`, so only a programming error can fail here.
    let admin_store = config.redirects.as_ref().map(|r| {
        RedirectStore::new(&r.redis_url, &r.key_prefix).expect("redis URL checked at load")
    });
    let connections = config.connections.clone();
    let proxies = config.trusted_proxies.clone();
    let gateway = Arc::new(Gateway::new(config, pool.clone(), metrics.clone()));
    let redirect_cache = gateway.redirect_lookup();
    let gateway_handle = gateway.clone();

    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        PublicService::new(gateway.clone(), connections.clone(), proxies.clone()),
    );
    let mut public = Service::new(
        "iiif".to_string(),
        Guarded::new(proxy, &connections, proxies, metrics),
    );
    public.add_tcp(&listen);
    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp::new(gateway, admin_store, admin_token),
    );
    admin.add_tcp(&admin_listen);
    let mut health = background_service("iipsrv health checks", HealthChecks { pool });
    health.threads = Some(1);
    let drain = Drain {
        gateway: gateway_handle.clone(),
        phases: std::sync::Mutex::new(Some(server.watch_execution_phase())),
    };
    let mut drain = background_service("drain", drain);
    drain.threads = Some(1);
    server.add_service(drain);

    server.add_service(public);
    server.add_service(admin);
    server.add_service(health);
    if let Some(events) = redirect_cache.and_then(|lookup| NodeEvents::new(gateway_handle, lookup))
    {
        let mut events = background_service("node events", events);
        events.threads = Some(1);
        server.add_service(events);
    }
    log::info!("iiif-gateway listening on {listen} (admin on {admin_listen})");
    server.run_forever()
}

/// Runs the pool's health checks on a Pingora-managed runtime (created after daemonising).
struct HealthChecks {
    pool: Arc<BackendPool>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.pool.spawn_health_checks();
        let _ = shutdown.changed().await;
    }
}

/// Starts draining the moment the process is told to stop (SIGTERM) or to hand its sockets to
/// a new process (SIGQUIT, a graceful upgrade): readiness turns off and every answer closes its
/// connection, so clients move on while this process still answers. Pingora's own shutdown
/// signal comes later (after the upgrade's 5 s close timeout) and then closes kept-alive
/// connections without a `Connection: close`, under requests clients may already have sent.
struct Drain {
    gateway: Arc<Gateway>,
    /// Taken by `start` (it runs once, after daemonising; the channel lives in the server).
    phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                phase = phases.recv() => match phase {
                    Ok(
                        ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::GracefulUpgradeCloseTimeout
                        | ExecutionPhase::GracefulTerminate
                        | ExecutionPhase::ShutdownStarted,
                    ) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
        self.gateway.start_draining();
        log::info!("draining: /readyz answers 503 and every answer closes its connection");
    }
}

/// What the other nodes say (`gateway::events`, pub/sub on the archive's Redis, on a
/// Pingora-managed runtime; the lookups' Redis connection is opened there too): redirect
/// invalidations keep the lookup cache in step with the archive, and purges announced by
/// another node's admin API are carried out here too.
struct NodeEvents {
    gateway: Arc<Gateway>,
    lookup: Arc<RedirectLookup>,
    client: redis::Client,
    invalidate: String,
    purge: Option<String>,
}

impl NodeEvents {
    fn new(gateway: Arc<Gateway>, lookup: Arc<RedirectLookup>) -> Option<NodeEvents> {
        let (client, invalidate) = lookup.invalidations()?;
        let purge = gateway.purge_channel().map(str::to_owned);
        Some(NodeEvents {
            gateway,
            lookup,
            client,
            invalidate,
            purge,
        })
    }
}

#[async_trait]
impl BackgroundService for NodeEvents {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        let channels: Vec<String> = std::iter::once(self.invalidate.clone())
            .chain(self.purge.clone())
            .collect();
        tokio::join!(
            self.lookup.warm_up(),
            events::run(&self.client, &channels, self, stop)
        );
    }
}

impl events::Listener for NodeEvents {
    fn subscribed(&self) {
        self.lookup.invalidations_resumed();
        self.gateway.forget_all_in_memory();
    }

    fn message(&self, channel: &str, payload: &[u8]) {
        if channel == self.invalidate {
            self.lookup.invalidate(payload);
            return;
        }
        if self.purge.as_deref() != Some(channel) {
            return;
        }
        let Ok(identifier) = std::str::from_utf8(payload) else {
            // Identifiers are UTF-8; a message that is not cannot name one, so be safe.
            self.gateway.forget_all_in_memory();
            return;
        };
        let (gateway, identifier) = (self.gateway.clone(), identifier.to_owned());
        tokio::spawn(async move {
            match gateway.purge(&identifier).await {
                Ok(outcome) => log::info!(
                    "purge of {identifier:?} announced by another node: {} derivative files, {} facts dropped here",
                    outcome.derivatives.files,
                    outcome.facts
                ),
                Err(e) => log::error!("purge of {identifier:?} announced by another node failed here: {e}"),
            }
        });
    }

    fn subscription_error(&self) {
        self.lookup.invalidations_lost();
    }
}

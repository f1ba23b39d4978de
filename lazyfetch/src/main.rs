//! `lazyfetch`: the access-master cache's command line, for cron and operators. Reads the
//! `gateway.cache` and `gateway.masters` sections of the gateway's YAML file; safe to run while
//! the gateway serves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Manage the IIIF gateway's access-master cache (masters copied from S3 onto the cache mount).
#[derive(Debug, Parser)]
#[command(version, after_help = "The cache layout and every config key: docs/masters.md")]
struct Args {
    /// The gateway's YAML file (only gateway.cache and gateway.masters are read).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/iiif/gateway.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remove least recently used images while the cache is above its high watermark, down to
    /// the low watermark; also removes downloads left in tmp/ for over an hour. For cron, e.g.
    /// `*/10 * * * * lazyfetch -c /etc/iiif/gateway.yaml prune --metrics-file /var/lib/node_exporter/textfile/lazyfetch.prom`
    Prune(cli::prune::PruneArgs),
    /// Remove every cached file of the given images (master, sidecar, derivatives). Exits 1 when
    /// an identifier had nothing cached.
    Purge(cli::purge::PurgeArgs),
    /// Fetch the masters of a list of identifiers (one per line; blank lines and # comments
    /// skipped) from S3 into the cache, a few at a time. Exits 1 when any failed.
    Warm(cli::warm::WarmArgs),
    /// Show the cache's size, number of images, oldest access and distance to the watermarks.
    Stats(cli::stats::StatsArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // rediss:// (the download lock) needs a process-wide TLS crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let result = match args.command {
        Command::Prune(command) => cli::prune::run(&args.config, command),
        Command::Purge(command) => cli::purge::run(&args.config, command),
        Command::Warm(command) => cli::warm::run(&args.config, command),
        Command::Stats(command) => cli::stats::run(&args.config, command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lazyfetch: {error:#}");
            ExitCode::from(2)
        }
    }
}

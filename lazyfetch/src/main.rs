//! `lazyfetch`: the access-master cache's command line, for cron and operators. Reads the
//! `gateway.cache` and `gateway.masters` sections of the gateway's YAML file; safe to run while
//! the gateway serves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Manage the IIIF gateway's access-master cache (masters copied from S3 onto the cache mount).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "The cache layout and every config key: docs/masters.md"
)]
struct Args {
    /// The gateway's YAML file (only gateway.cache and gateway.masters are read).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/iiif/gateway.yaml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remove least recently used images while the cache is above its high watermark (cron)
    ///
    /// Removes images (master, sidecar and derivatives together) until the cache is below the
    /// low watermark, sparing any used while pruning; also removes downloads left in tmp/ for
    /// over an hour. Exit 1 when an image could not be removed. For cron, e.g.
    /// `*/10 * * * * lazyfetch -c /etc/iiif/gateway.yaml prune --metrics-file /var/lib/node_exporter/textfile/lazyfetch.prom`
    Prune(cli::prune::PruneArgs),
    /// Remove every cached file of the given images
    ///
    /// Removes master, sidecar and derivatives, and lists each file. Exit 1 when an identifier
    /// had nothing cached. A running gateway fetches a purged master again on its next request
    /// (use the gateway's admin API to also drop the image facts it holds in memory).
    Purge(cli::purge::PurgeArgs),
    /// Fetch the masters of a list of identifiers from S3 into the cache
    ///
    /// One identifier per line (blank lines and # comments skipped), a few at a time, with a
    /// progress bar and a summary; failures are listed. Exit 1 when any failed.
    Warm(cli::warm::WarmArgs),
    /// Show the cache's size, images, oldest access and distance to the watermarks
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

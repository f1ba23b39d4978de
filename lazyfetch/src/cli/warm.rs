//! `lazyfetch warm`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lazyfetch::{FetchError, LazyFetch};
use tokio::task::JoinSet;

use super::both_sections;

#[derive(Debug, Args)]
pub(crate) struct WarmArgs {
    /// File with one identifier per line; `-` or nothing: standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Masters fetched at once (default: gateway.masters.max_concurrent_downloads).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// How one identifier ended.
enum Outcome {
    Fetched,
    Failed(String),
}

pub(crate) fn run(config: &Path, args: WarmArgs) -> anyhow::Result<ExitCode> {
    let (cache, masters) = both_sections(config)?;
    let identifiers = read_identifiers(args.file.as_deref())?;
    let jobs = args.jobs.unwrap_or(masters.max_concurrent_downloads).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let fetcher = LazyFetch::new(&cache, &masters, &registry).await?;
        Ok(warm_all(fetcher, identifiers, jobs).await)
    })
}

fn read_identifiers(file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn BufRead> = match file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(path) if path == Path::new("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
    };
    let mut identifiers = Vec::new();
    for line in reader.lines() {
        let line = line.context("reading the identifiers")?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        identifiers.push(line);
    }
    Ok(identifiers)
}

async fn warm_all(fetcher: Arc<LazyFetch>, identifiers: Vec<String>, jobs: usize) -> ExitCode {
    let started = Instant::now();
    let progress = ProgressBar::new(identifiers.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {wide_msg}")
            .expect("valid template"),
    );
    let mut running = JoinSet::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut fetched = 0usize;
    let mut record = |(identifier, outcome): (String, Outcome), progress: &ProgressBar| {
        match outcome {
            Outcome::Fetched => fetched += 1,
            Outcome::Failed(reason) => {
                progress.set_message(format!("failed: {identifier}"));
                failures.push((identifier, reason));
            }
        }
        progress.inc(1);
    };
    for identifier in identifiers {
        if running.len() >= jobs {
            if let Some(Ok(done)) = running.join_next().await {
                record(done, &progress);
            }
        }
        let fetcher = Arc::clone(&fetcher);
        running.spawn(async move {
            let outcome = match fetcher.ensure(&identifier).await {
                Ok(_) => Outcome::Fetched,
                Err(FetchError::NoRule) => Outcome::Failed("no rule matches".into()),
                Err(FetchError::NotFound) => Outcome::Failed("not in S3".into()),
                Err(error) => Outcome::Failed(error.to_string()),
            };
            (identifier, outcome)
        });
    }
    while let Some(done) = running.join_next().await {
        if let Ok(done) = done {
            record(done, &progress);
        }
    }
    progress.finish_and_clear();
    for (identifier, reason) in &failures {
        println!("failed {identifier:?}: {reason}");
    }
    println!(
        "warmed {fetched} masters, {} failed, in {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The run from start to finish: resolve the targets, check the open-file limit, watch memory, run the engine,
//! write the report, and (with `--check`) read the table back and judge it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::Config;
use crate::engine::{self, Endpoint, Stop};
use crate::nofile;
use crate::report::{self, Report, RunDescription};
use crate::rss::Watcher;
use crate::table;

/// How the run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The report was written (and passed the check, if asked).
    Done,
    /// `--check` found problems (already printed).
    CheckFailed,
}

/// Runs `config`; `command` is the command line as the user typed it, for the report.
///
/// # Errors
///
/// An unresolvable target, too low an open-file limit, or a report that cannot be written.
pub async fn run(config: Config, command: String) -> anyhow::Result<Verdict> {
    let mut endpoints = Vec::new();
    for target in &config.targets {
        let endpoint = Endpoint::resolve(target.clone()).await?;
        eprintln!(
            "loadtest: target {} = http://{}{}/ ({}, {})",
            target.name, target.authority, target.base_path, endpoint.address, target.version
        );
        endpoints.push(endpoint);
    }
    let sockets_per_user = match config.settings.mode {
        engine::Mode::Sequential => 1,
        engine::Mode::Interleaved => config.targets.len() as u64,
    };
    let needed = u64::from(config.settings.users) * sockets_per_user + nofile::RESERVE;
    if let Some(limit) = nofile::current_soft_limit() {
        if limit < needed {
            bail!(
                "{} users need about {needed} open files but the limit is {limit}; raise it first (ulimit -n {needed})",
                config.settings.users
            );
        }
    }
    eprintln!("loadtest: mix per identifier: {}", config.mix.describe());
    for class in config.dataset.classes() {
        eprintln!(
            "loadtest: {class}: {} images",
            config.dataset.images(class).len()
        );
    }

    let stop = Arc::new(Stop::default());
    let on_interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "loadtest: interrupted: finishing the requests in flight, then writing the report"
            );
            on_interrupt.trigger();
        }
    });

    let watcher = (!config.watched.is_empty())
        .then(|| Watcher::start(config.watched.clone(), Duration::from_secs(1)));
    let recording = engine::run(
        config.settings.clone(),
        endpoints,
        Arc::new(config.dataset.clone()),
        Arc::new(config.mix.clone()),
        watcher.as_ref(),
        stop,
    )
    .await?;
    let readings = match watcher {
        Some(watcher) => watcher.finish().await,
        None => Vec::new(),
    };

    let sources = config.dataset.classes();
    let derivatives = config.mix.active();
    let report = Report::new(
        &recording,
        &config.targets,
        config.baseline.as_deref(),
        &sources,
        &derivatives,
        readings,
    );
    let description = RunDescription {
        title: &config.title,
        command: &command,
        settings: &config.settings,
        targets: &config.targets,
        baseline: config.baseline.as_deref(),
        mix: &config.mix,
        dataset: &config.dataset,
        recording: &recording,
    };
    let summary = report::write(&config.out, &description, &report)?;
    println!("{summary}");
    eprintln!("loadtest: report written to {}", config.out.display());

    if !config.check {
        return Ok(Verdict::Done);
    }
    // Judge what was written, not what is in memory: the check covers the CSV round trip too.
    let csv_path = config.out.join("table.csv");
    let file = std::fs::File::open(&csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let outcome = match table::read_csv(file) {
        Ok(rows) => {
            let names: Vec<String> = config
                .targets
                .iter()
                .map(|target| target.name.clone())
                .collect();
            table::check(&rows, &names, &sources, &derivatives)
        }
        Err(error) => table::CheckOutcome {
            problems: vec![format!("{}: {error}", csv_path.display())],
            empty_rows: Vec::new(),
        },
    };
    if !outcome.empty_rows.is_empty() {
        eprintln!(
            "loadtest: check: no request reached {} row(s) in this short run: {}",
            outcome.empty_rows.len(),
            outcome.empty_rows.join(", ")
        );
    }
    let problems = outcome.problems;
    if problems.is_empty() {
        eprintln!("loadtest: check passed: every row present and well-formed, no failures");
        Ok(Verdict::Done)
    } else {
        for problem in &problems {
            eprintln!("loadtest: check failed: {problem}");
        }
        Ok(Verdict::CheckFailed)
    }
}

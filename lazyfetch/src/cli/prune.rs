//! `lazyfetch prune`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;
use lazyfetch::size::{ByteSize, Percent};
use lazyfetch::{CacheLayout, PruneOptions};

use super::{cache_section, human_bytes, human_time};

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// List what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Use this budget instead of gateway.cache.budget (e.g. 400GiB).
    #[arg(long, value_name = "SIZE")]
    budget: Option<ByteSize>,
    /// Use this high watermark instead of gateway.cache.high_watermark (e.g. 90%).
    #[arg(long, value_name = "PCT")]
    high: Option<Percent>,
    /// Use this low watermark instead of gateway.cache.low_watermark (e.g. 80%).
    #[arg(long, value_name = "PCT")]
    low: Option<Percent>,
    /// Write node_exporter textfile metrics here (atomically; counters continue across runs).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Path, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_section(config)?;
    let layout = CacheLayout::new(cache.root.clone());
    eprintln!("lazyfetch prune: scanning {}", layout.root().display());
    let options = PruneOptions {
        dry_run: args.dry_run,
        budget: args.budget,
        high_watermark: args.high,
        low_watermark: args.low,
    };
    let report = lazyfetch::prune(&layout, &cache, options)
        .with_context(|| format!("pruning {}", layout.root().display()))?;
    if let Some(path) = &args.metrics_file {
        if !args.dry_run {
            write_textfile(path, &report)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &lazyfetch::PruneReport) {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "cache {} in {} images; budget {}, high watermark {}, low watermark {}",
        human_bytes(report.before_bytes),
        report.units_before,
        human_bytes(report.budget_bytes),
        human_bytes(report.high_bytes),
        human_bytes(report.low_bytes),
    );
    if report.removed.is_empty() && report.before_bytes <= report.high_bytes {
        println!("below the high watermark: nothing to remove");
    }
    for unit in &report.removed {
        println!(
            "{verb} {} ({}{}, last access {})",
            unit.identifier
                .as_deref()
                .map_or_else(|| unit.key.clone(), |id| format!("{id:?}")),
            human_bytes(unit.bytes),
            if unit.small { ", small master" } else { "" },
            human_time(unit.last_access),
        );
    }
    for path in &report.stale_tmp_removed {
        println!("{verb} stale download {}", path.display());
    }
    for path in &report.orphans_removed {
        println!("{verb} orphaned master copy {}", path.display());
    }
    if report.spared_in_use > 0 {
        println!("spared {} images used while pruning", report.spared_in_use);
    }
    for error in &report.errors {
        println!("error: {error}");
    }
    println!(
        "{verb} {} images, {} (+ {} of stale downloads, {} of orphaned copies); cache now {}",
        report.removed.len(),
        human_bytes(report.freed_bytes),
        human_bytes(report.stale_tmp_bytes),
        human_bytes(report.orphan_bytes),
        human_bytes(report.after_bytes),
    );
}

fn write_textfile(path: &Path, report: &lazyfetch::PruneReport) -> anyhow::Result<()> {
    let previous = std::fs::read_to_string(path).ok();
    let text = lazyfetch::prune::textfile(report, previous.as_deref(), SystemTime::now());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Same directory: node_exporter must never read a half-written file.
    lazyfetch::tmpfile::write_atomically(dir, ".lazyfetch-prune", path, text.as_bytes())
        .with_context(|| format!("writing the metrics file {}", path.display()))
}

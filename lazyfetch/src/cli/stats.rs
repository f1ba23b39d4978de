//! `lazyfetch stats`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use lazyfetch::CacheLayout;

use super::{cache_section, human_bytes, human_time};

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print the numbers as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Path, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_section(config)?;
    let layout = CacheLayout::new(cache.root.clone());
    let stats = lazyfetch::stats(&layout, &cache)
        .with_context(|| format!("scanning {}", layout.root().display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    let distance = |below: i64| {
        if below >= 0 {
            format!("{} below", human_bytes(below.unsigned_abs()))
        } else {
            format!("{} ABOVE", human_bytes(below.unsigned_abs()))
        }
    };
    println!("root            {}", stats.root);
    println!(
        "size            {} of {} budget ({:.1}%)",
        human_bytes(stats.bytes),
        human_bytes(stats.budget_bytes),
        stats.percent_of_budget
    );
    println!(
        "images          {} ({} with a master: {}; derivatives {})",
        stats.units,
        stats.masters,
        human_bytes(stats.master_bytes),
        human_bytes(stats.derivatives_bytes)
    );
    println!(
        "orphaned copies {} ({}; the next prune removes them)",
        stats.orphans,
        human_bytes(stats.orphan_bytes)
    );
    println!("downloads (tmp) {}", human_bytes(stats.tmp_bytes));
    match (stats.oldest_access, stats.newest_access) {
        (Some(oldest), Some(newest)) => {
            println!("oldest access   {}", human_time(oldest));
            println!("newest access   {}", human_time(newest));
        }
        _ => println!("oldest access   -"),
    }
    println!(
        "high watermark  {} ({})",
        human_bytes(stats.high_watermark_bytes),
        distance(stats.bytes_below_high)
    );
    println!(
        "low watermark   {} ({})",
        human_bytes(stats.low_watermark_bytes),
        distance(stats.bytes_below_low)
    );
    Ok(ExitCode::SUCCESS)
}

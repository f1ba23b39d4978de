//! `lazyfetch purge`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use lazyfetch::CacheLayout;

use super::{cache_section, human_bytes};

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Identifiers, exactly as in IIIF URLs after percent-decoding.
    #[arg(value_name = "ID", required = true)]
    identifiers: Vec<String>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: &Path, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_section(config)?;
    let layout = CacheLayout::new(cache.root.clone());
    let mut reports = Vec::new();
    for identifier in &args.identifiers {
        let report = lazyfetch::purge(&layout, identifier)
            .with_context(|| format!("purging {identifier:?}"))?;
        if !args.json {
            if report.is_empty() {
                println!("{identifier:?}: nothing cached");
            }
            for file in &report.removed {
                println!(
                    "removed {} ({})",
                    file.path.display(),
                    human_bytes(file.bytes)
                );
            }
            if !report.is_empty() {
                println!(
                    "{identifier:?}: removed {} files, {}",
                    report.removed.len(),
                    human_bytes(report.bytes)
                );
            }
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if reports.iter().any(|r| r.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

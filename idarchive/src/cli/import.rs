//! `import FILE` and `import --resume`.

use std::path::Path;
use std::time::Instant;

use super::progress::Bar;
use super::{chosen_format, describe, Failure, FormatArg};
use crate::formats::{self, RowProblem};
use crate::store::{ImportOptions, ImportReport, RedirectStore};

/// Imports `file` (`-`: standard input), or with `dry_run` shows what it would change.
pub(super) async fn run(
    store: &RedirectStore,
    file: &Path,
    dry_run: bool,
    format: Option<FormatArg>,
    by: &str,
) -> Result<(), Failure> {
    let format = chosen_format(file, format);
    let name = file.display().to_string();
    let started = Instant::now();
    let parsed = if name == "-" {
        formats::parse(format, std::io::stdin().lock())
    } else {
        let input = std::fs::File::open(file)
            .map_err(|e| Failure::Setup(format!("cannot open {name}: {e}")))?;
        formats::parse(format, std::io::BufReader::with_capacity(1 << 20, input))
    }
    .map_err(|e| Failure::Refused(format!("{name}: {e}")))?;
    let parse_time = started.elapsed();

    let options = ImportOptions {
        // With unreadable rows, the other rows are still checked, but nothing is written.
        dry_run: dry_run || !parsed.problems.is_empty(),
        by: by.to_owned(),
    };
    let mut bar = Bar::new(parsed.rows.len());
    let report = store
        .import(&parsed.rows, &options, &mut |p| bar.update(p))
        .await;
    bar.finish();
    let report = report?;

    let mut problems: Vec<RowProblem> = parsed.problems;
    problems.extend(report.problems.iter().cloned());
    problems.sort_by_key(|p| p.location);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{name}: {problem}");
        }
        return Err(Failure::Refused(format!(
            "{} bad row{} in {name}; nothing written",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        )));
    }
    if dry_run {
        for change in &report.preview {
            println!("would change {}", describe(change));
        }
        if report.n_changes > report.preview.len() {
            println!("… and {} more", report.n_changes - report.preview.len());
        }
    }
    println!("{}", summary(&report));
    let [load, check, write] = report.elapsed;
    eprintln!(
        "{name}: read in {parse_time:.1?}, archive loaded in {load:.1?}, checked in {check:.1?}{}",
        if report.written {
            format!(", written in {write:.1?}")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Finishes an interrupted import from its journal.
pub(super) async fn resume(store: &RedirectStore) -> Result<(), Failure> {
    let mut bar = Bar::new(Bar::WORTH_SHOWING);
    let written = store.resume(&mut |p| bar.update(p)).await;
    bar.finish();
    match written? {
        0 => println!("no interrupted import to finish"),
        n => println!("finished the interrupted import: {n} records written"),
    }
    Ok(())
}

/// The one-line outcome of an import.
pub fn summary(report: &ImportReport) -> String {
    let c = &report.counts;
    let outcome = if report.dry_run {
        "dry run, nothing written"
    } else if report.written {
        "written"
    } else {
        "nothing to write"
    };
    format!(
        "{} rows: {} added, {} changed, {} unchanged; {} chains collapsed, {} made gone by a gone target ({outcome})",
        c.rows, c.added, c.changed, c.unchanged, c.collapsed, c.gone_spread
    )
}

//! Turns a [`Recording`] into the report: the Appendix-2 table per target, the failure breakdown, the ratios
//! between targets, memory peaks, charts, and the files of the output directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::charts;
use crate::dataset::{Dataset, SourceClass};
use crate::engine::{Mode, Recording, RetryAfter, Settings};
use crate::mix::{Derivative, Mix};
use crate::rss::{self, Reading};
use crate::sample::{FailureKind, Sample};
use crate::stats::Latencies;
use crate::table::{self, Row};
use crate::target::Target;
use crate::timeline;

/// The failures of one (target, source class, derivative class, kind).
#[derive(Clone, Debug, PartialEq)]
pub struct FailureRow {
    /// The target's name.
    pub target: String,
    /// The source class.
    pub source: SourceClass,
    /// The derivative class.
    pub derivative: Derivative,
    /// What went wrong.
    pub kind: FailureKind,
    /// How often.
    pub count: u64,
    /// Median time until the failure was known, ms.
    pub median_ms: f64,
    /// Longest time until the failure was known, ms.
    pub max_ms: f64,
}

/// One target against the baseline for one table row.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// The target's name.
    pub target: String,
    /// The row's source class (`None` = any).
    pub source: Option<SourceClass>,
    /// The row's derivative class (`None` = any).
    pub derivative: Option<Derivative>,
    /// req/s of the target ÷ req/s of the baseline (higher is better).
    pub requests_per_second: Option<f64>,
    /// Median ÷ baseline median (lower is better).
    pub median: Option<f64>,
    /// p99 ÷ baseline p99 (lower is better).
    pub p99: Option<f64>,
}

/// Everything the report shows, computed from a recording.
#[derive(Debug)]
pub struct Report {
    /// The table rows of every target, target by target.
    pub rows: Vec<Row>,
    /// Failures by class and kind.
    pub failures: Vec<FailureRow>,
    /// Every non-baseline target against the baseline.
    pub ratios: Vec<Ratio>,
    /// The per-second series of every target.
    pub timelines: Vec<(String, Vec<timeline::Second>)>,
    /// Memory readings of the watched processes.
    pub readings: Vec<Reading>,
}

/// Groups samples by key, keeping successful latencies and failures apart.
#[derive(Default)]
struct Group {
    micros: Vec<u64>,
    bytes: u64,
    failures: u64,
}

impl Group {
    fn add(&mut self, sample: &Sample) {
        match sample.failure {
            None => {
                self.micros.push(sample.latency_micros());
                self.bytes += sample.bytes;
            }
            Some(_) => self.failures += 1,
        }
    }
}

/// The table rows: for every target, one row per (source class with images × active derivative class), in
/// table order, then its `any` row.
pub fn table_rows(
    recording: &Recording,
    targets: &[Target],
    sources: &[SourceClass],
    derivatives: &[Derivative],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let seconds = recording.measured(index).as_secs_f64();
        let mut groups: BTreeMap<(SourceClass, Derivative), Group> = BTreeMap::new();
        let mut any = Group::default();
        for sample in recording
            .samples
            .iter()
            .filter(|sample| sample.target == index)
        {
            groups
                .entry((sample.source, sample.derivative))
                .or_default()
                .add(sample);
            any.add(sample);
        }
        for source in sources {
            for derivative in derivatives {
                let group = groups.remove(&(*source, *derivative)).unwrap_or_default();
                rows.push(Row::new(
                    &target.name,
                    Some(*source),
                    Some(*derivative),
                    &Latencies::new(group.micros),
                    group.bytes,
                    group.failures,
                    seconds,
                ));
            }
        }
        rows.push(Row::new(
            &target.name,
            None,
            None,
            &Latencies::new(any.micros),
            any.bytes,
            any.failures,
            seconds,
        ));
    }
    rows
}

/// The failure breakdown, by target, class and kind.
pub fn failure_rows(recording: &Recording, targets: &[Target]) -> Vec<FailureRow> {
    let mut groups: BTreeMap<(usize, SourceClass, Derivative, FailureKind), Vec<u64>> =
        BTreeMap::new();
    for sample in &recording.samples {
        if let Some(kind) = sample.failure {
            groups
                .entry((sample.target, sample.source, sample.derivative, kind))
                .or_default()
                .push(sample.latency_micros());
        }
    }
    groups
        .into_iter()
        .map(|((target, source, derivative, kind), micros)| {
            let latencies = Latencies::new(micros);
            FailureRow {
                target: targets[target].name.clone(),
                source,
                derivative,
                kind,
                count: latencies.len() as u64,
                median_ms: latencies.median().unwrap_or(0) as f64 / 1000.0,
                max_ms: latencies.max().unwrap_or(0) as f64 / 1000.0,
            }
        })
        .collect()
}

/// Every row of every other target divided by the same row of `baseline`.
pub fn ratios(rows: &[Row], baseline: &str) -> Vec<Ratio> {
    let divide = |numerator: Option<f64>, denominator: Option<f64>| match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => Some(numerator / denominator),
        _ => None,
    };
    rows.iter()
        .filter(|row| row.target != baseline)
        .filter_map(|row| {
            let base = rows.iter().find(|base| {
                base.target == baseline
                    && base.source == row.source
                    && base.derivative == row.derivative
            })?;
            Some(Ratio {
                target: row.target.clone(),
                source: row.source,
                derivative: row.derivative,
                requests_per_second: divide(
                    Some(row.requests_per_second),
                    Some(base.requests_per_second),
                ),
                median: divide(row.median_ms, base.median_ms),
                p99: divide(row.p99_ms, base.p99_ms),
            })
        })
        .collect()
}

impl Report {
    /// Computes the report.
    pub fn new(
        recording: &Recording,
        targets: &[Target],
        baseline: Option<&str>,
        sources: &[SourceClass],
        derivatives: &[Derivative],
        readings: Vec<Reading>,
    ) -> Report {
        let rows = table_rows(recording, targets, sources, derivatives);
        let ratios = baseline.map_or_else(Vec::new, |baseline| ratios(&rows, baseline));
        let timelines = targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                let samples = recording
                    .samples
                    .iter()
                    .filter(|sample| sample.target == index);
                (target.name.clone(), timeline::per_second(samples))
            })
            .collect();
        Report {
            failures: failure_rows(recording, targets),
            rows,
            ratios,
            timelines,
            readings,
        }
    }
}

/// What the summary says about the run besides the numbers.
#[derive(Debug)]
pub struct RunDescription<'a> {
    /// A title (e.g. "10 users").
    pub title: &'a str,
    /// The command line, as run.
    pub command: &'a str,
    /// The settings.
    pub settings: &'a Settings,
    /// The targets.
    pub targets: &'a [Target],
    /// The baseline's name, if any.
    pub baseline: Option<&'a str>,
    /// The mix.
    pub mix: &'a Mix,
    /// The dataset.
    pub dataset: &'a Dataset,
    /// The recording (for phase lengths and failure examples).
    pub recording: &'a Recording,
}

fn format_ratio(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |value| format!("{value:.2}"))
}

fn class_cells(source: Option<SourceClass>, derivative: Option<Derivative>) -> String {
    let (min, max) = match source {
        None => ("any".to_string(), "any".to_string()),
        Some(class) => (
            class.min_megapixels().to_string(),
            class
                .max_megapixels()
                .map_or("-".to_string(), |max| max.to_string()),
        ),
    };
    format!(
        "{min} | {max} | {}",
        derivative.map_or("any", Derivative::label)
    )
}

/// The whole report as Markdown (`summary.md`).
pub fn summary_markdown(run: &RunDescription<'_>, report: &Report) -> String {
    let settings = run.settings;
    let mut out = String::new();
    let _ = writeln!(out, "# Load test: {}\n", run.title);
    let _ = writeln!(out, "Command: `{}`\n", run.command);
    for (index, target) in run.targets.iter().enumerate() {
        let phase = run
            .recording
            .phases
            .iter()
            .find(|phase| phase.targets.contains(&index));
        let generator = phase
            .and_then(|phase| {
                let cpu = phase.generator_cpu_seconds?;
                let wall = phase.wall.as_secs_f64();
                (wall > 0.0).then(|| {
                    format!(
                        "; load generator CPU {cpu:.1} s in {wall:.1} s ({:.0} % of one core)",
                        100.0 * cpu / wall
                    )
                })
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- target **{}**: http://{}{}/ ({}), measured {:.1} s{}{generator}",
            target.name,
            target.authority,
            target.base_path,
            target.version,
            run.recording.measured(index).as_secs_f64(),
            if phase.is_some_and(|phase| phase.interrupted) {
                " (interrupted)"
            } else {
                ""
            }
        );
    }
    let mode = match settings.mode {
        Mode::Sequential => "sequential (one target after the other, same request sequences)",
        Mode::Interleaved => "interleaved (every request to every target in turn)",
    };
    let _ = writeln!(
        out,
        "- {} users (one keep-alive connection each), {mode}; {:.0} s warm-up and {:.0} s measured per phase; request timeout {:.0} s; seed {}",
        settings.users,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
        settings.request_timeout.as_secs_f64(),
        settings.seed
    );
    let _ = writeln!(
        out,
        "- Retry-After of error answers: {}",
        match settings.retry_after {
            RetryAfter::Honor =>
                "honoured (the user waits before its next request; not counted as latency)",
            RetryAfter::Ignore => "ignored (the user sends its next request at once)",
        }
    );
    let _ = writeln!(out, "- mix per identifier: {}", run.mix.describe());
    let _ = writeln!(
        out,
        "- full size: `full/full` up to {}x{} px and {} Mpx, `full/max` beyond (the servers' limit)",
        settings.size_limit.max_width,
        settings.size_limit.max_height,
        settings.size_limit.max_area as f64 / 1e6
    );
    for class in run.dataset.classes() {
        let images = run.dataset.images(class);
        let megapixels = |pixels: u64| pixels as f64 / 1e6;
        let smallest = images.iter().map(|image| image.pixels()).min().unwrap_or(0);
        let largest = images.iter().map(|image| image.pixels()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "- {class} sources: {} images, {:.1}-{:.1} Mpx",
            images.len(),
            megapixels(smallest),
            megapixels(largest)
        );
    }
    out.push_str(
        "\nLatencies in ms over successful requests; `# req` counts successful requests, `# fail` every failure; \
         `avg sz` in bytes; `req/s` = successful requests per second of the measured window.\n",
    );

    for target in run.targets {
        let rows: Vec<Row> = report
            .rows
            .iter()
            .filter(|row| row.target == target.name)
            .cloned()
            .collect();
        let _ = writeln!(out, "\n## {}\n", target.name);
        out.push_str(&table::markdown(&rows));
    }

    if let Some(baseline) = run.baseline {
        if !report.ratios.is_empty() {
            let _ = writeln!(
                out,
                "\n## Ratios against {baseline}\n\nreq/s: higher is better; median and p99: lower is better.\n"
            );
            out.push_str("| target | src min | src max | derv sz | req/s | median | p99 |\n|---|---:|---:|---|---:|---:|---:|\n");
            for ratio in &report.ratios {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    ratio.target,
                    class_cells(ratio.source, ratio.derivative),
                    format_ratio(ratio.requests_per_second),
                    format_ratio(ratio.median),
                    format_ratio(ratio.p99)
                );
            }
        }
    }

    out.push_str("\n## Failures\n\n");
    if report.failures.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| target | src min | src max | derv sz | kind | count | median ms | max ms |\n|---|---:|---:|---|---|---:|---:|---:|\n");
        for failure in &report.failures {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} | {:.1} |",
                failure.target,
                class_cells(Some(failure.source), Some(failure.derivative)),
                failure.kind,
                failure.count,
                failure.median_ms,
                failure.max_ms
            );
        }
        out.push_str("\nFirst example of each kind:\n\n");
        for ((target, kind), detail) in &run.recording.failure_examples {
            let _ = writeln!(out, "- {} {kind}: {detail}", run.targets[*target].name);
        }
    }

    let peaks = rss::peaks(&report.readings);
    if !peaks.is_empty() {
        out.push_str("\n## Memory of watched processes\n\nSampled once a second; VmHWM is the kernel's peak since the process started.\n\n");
        out.push_str("| phase | process | first RSS MiB | last RSS MiB | peak sampled RSS MiB | VmHWM MiB | unreadable samples |\n|---|---|---:|---:|---:|---:|---:|\n");
        let mib = |kib: u64| kib as f64 / 1024.0;
        for peak in peaks {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                peak.phase,
                peak.name,
                mib(peak.first_rss_kib),
                mib(peak.last_rss_kib),
                mib(peak.peak_rss_kib),
                mib(peak.hwm_kib),
                peak.missing
            );
        }
    }

    out.push_str(
        "\n## Charts\n\n![latency over time](latency-over-time.svg)\n\n![latency by class](latency-by-class.svg)\n\n\
         Files: `table.csv` (this table), `failures.csv`, `timeline.csv` (per second), `rss.csv`, `run.json`.\n",
    );
    out
}

/// Writes every file of the report into `dir` and returns the summary text.
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write(dir: &Path, run: &RunDescription<'_>, report: &Report) -> anyhow::Result<String> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = |name: &str| dir.join(name);
    let write_file = |name: &str, contents: &[u8]| {
        fs::write(path(name), contents)
            .with_context(|| format!("cannot write {}", path(name).display()))
    };

    let mut csv = Vec::new();
    table::write_csv(&report.rows, &mut csv).context("cannot format table.csv")?;
    write_file("table.csv", &csv)?;

    let mut failures = String::from("target,src_min,src_max,derv_sz,kind,count,median_ms,max_ms\n");
    for failure in &report.failures {
        let cells = class_cells(Some(failure.source), Some(failure.derivative)).replace(" | ", ",");
        let _ = writeln!(
            failures,
            "{},{cells},{},{},{:.3},{:.3}",
            failure.target, failure.kind, failure.count, failure.median_ms, failure.max_ms
        );
    }
    write_file("failures.csv", failures.as_bytes())?;

    let mut timeline_csv = String::from("target,second,successes,failures,median_ms,p99_ms\n");
    for (name, seconds) in &report.timelines {
        for second in seconds {
            let cell = |value: Option<f64>| value.map_or(String::new(), |ms| format!("{ms:.3}"));
            let _ = writeln!(
                timeline_csv,
                "{name},{},{},{},{},{}",
                second.second,
                second.successes,
                second.failures,
                cell(second.median_ms),
                cell(second.p99_ms)
            );
        }
    }
    write_file("timeline.csv", timeline_csv.as_bytes())?;

    let mut rss_csv = String::from("seconds,phase,process,rss_kib,hwm_kib\n");
    for reading in &report.readings {
        let (rss, hwm) = reading
            .memory
            .map_or((String::new(), String::new()), |memory| {
                (memory.rss_kib.to_string(), memory.hwm_kib.to_string())
            });
        let _ = writeln!(
            rss_csv,
            "{:.1},{},{},{rss},{hwm}",
            reading.at_seconds, reading.phase, reading.name
        );
    }
    write_file("rss.csv", rss_csv.as_bytes())?;

    let names: Vec<String> = run
        .targets
        .iter()
        .map(|target| target.name.clone())
        .collect();
    write_file(
        "latency-over-time.svg",
        charts::latency_over_time(
            &format!(
                "Latency over time, {}: median (solid) and p99 (dashed) per second",
                run.title
            ),
            &report.timelines,
        )
        .as_bytes(),
    )?;
    write_file(
        "latency-by-class.svg",
        charts::latency_by_class(
            &format!("Latency by class, {}", run.title),
            &report.rows,
            &names,
        )
        .as_bytes(),
    )?;

    let settings = run.settings;
    let description = serde_json::json!({
        "title": run.title,
        "command": run.command,
        "targets": run.targets.iter().enumerate().map(|(index, target)| serde_json::json!({
            "name": target.name,
            "url": format!("http://{}{}", target.authority, target.base_path),
            "version": target.version.to_string(),
            "measured_seconds": run.recording.measured(index).as_secs_f64(),
        })).collect::<Vec<_>>(),
        "baseline": run.baseline,
        "users": settings.users,
        "mode": format!("{:?}", settings.mode).to_lowercase(),
        "warmup_seconds": settings.warmup.as_secs_f64(),
        "duration_seconds": settings.duration.as_secs_f64(),
        "request_timeout_seconds": settings.request_timeout.as_secs_f64(),
        "seed": settings.seed,
        "retry_after": format!("{:?}", settings.retry_after).to_lowercase(),
        "mix": Derivative::ALL.iter().map(|derivative| (derivative.label().to_string(), run.mix.weight(*derivative))).collect::<BTreeMap<_, _>>(),
        "dataset": run.dataset.classes().iter().map(|class| (class.name().to_string(), run.dataset.images(*class).len())).collect::<BTreeMap<_, _>>(),
        "phases": run.recording.phases.iter().map(|phase| serde_json::json!({
            "targets": phase.targets.iter().map(|index| run.targets[*index].name.clone()).collect::<Vec<_>>(),
            "measured_seconds": phase.measured.as_secs_f64(),
            "warmup_requests": phase.warmup_requests,
            "interrupted": phase.interrupted,
            "wall_seconds": phase.wall.as_secs_f64(),
            "generator_cpu_seconds": phase.generator_cpu_seconds,
        })).collect::<Vec<_>>(),
    });
    write_file(
        "run.json",
        serde_json::to_string_pretty(&description)
            .context("cannot format run.json")?
            .as_bytes(),
    )?;

    let summary = summary_markdown(run, report);
    write_file("summary.md", summary.as_bytes())?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PhaseResult;
    use std::time::Duration;

    fn target(name: &str) -> Target {
        Target::parse(&format!("{name}=http://127.0.0.1:1/iiif")).unwrap()
    }

    fn sample(
        target: usize,
        derivative: Derivative,
        latency_ms: u64,
        failure: Option<FailureKind>,
    ) -> Sample {
        Sample {
            target,
            source: SourceClass::Small,
            derivative,
            started: Duration::from_millis(10),
            latency: Duration::from_millis(latency_ms),
            bytes: 100,
            failure,
        }
    }

    fn recording() -> Recording {
        Recording {
            samples: vec![
                sample(0, Derivative::Tile, 10, None),
                sample(0, Derivative::Tile, 30, None),
                sample(0, Derivative::Full, 500, None),
                sample(0, Derivative::Tile, 2, Some(FailureKind::Status(503))),
                sample(1, Derivative::Tile, 100, None),
                sample(1, Derivative::Full, 1000, None),
            ],
            phases: vec![
                PhaseResult {
                    targets: vec![0],
                    measured: Duration::from_secs(2),
                    warmup_requests: 0,
                    interrupted: false,
                    wall: Duration::from_secs(3),
                    generator_cpu_seconds: None,
                },
                PhaseResult {
                    targets: vec![1],
                    measured: Duration::from_secs(4),
                    warmup_requests: 0,
                    interrupted: false,
                    wall: Duration::from_secs(3),
                    generator_cpu_seconds: None,
                },
            ],
            failure_examples: BTreeMap::new(),
        }
    }

    #[test]
    fn rows_per_target_and_class_with_an_exact_any_row() {
        let targets = [target("gateway"), target("baseline")];
        let rows = table_rows(
            &recording(),
            &targets,
            &[SourceClass::Small],
            &[Derivative::Tile, Derivative::Full],
        );
        assert_eq!(rows.len(), 6);
        let gateway_tile = &rows[0];
        assert_eq!((gateway_tile.requests, gateway_tile.failures), (2, 1));
        assert_eq!(gateway_tile.median_ms, Some(10.0));
        assert_eq!(gateway_tile.requests_per_second, 1.0);
        let gateway_any = &rows[2];
        assert_eq!((gateway_any.source, gateway_any.derivative), (None, None));
        // The any row is computed from the merged latencies 10, 30, 500: median 30, not a mean of medians.
        assert_eq!(gateway_any.median_ms, Some(30.0));
        assert_eq!(gateway_any.requests_per_second, 1.5);
        assert_eq!(rows[5].requests_per_second, 0.5);
    }

    #[test]
    fn ratios_divide_by_the_baseline_row() {
        let targets = [target("gateway"), target("baseline")];
        let rows = table_rows(
            &recording(),
            &targets,
            &[SourceClass::Small],
            &[Derivative::Tile, Derivative::Full],
        );
        let ratios = ratios(&rows, "baseline");
        assert_eq!(ratios.len(), 3);
        assert_eq!(ratios[0].target, "gateway");
        assert_eq!(ratios[0].requests_per_second, Some(1.0 / 0.25));
        assert_eq!(ratios[0].median, Some(0.1));
        assert_eq!(ratios[1].p99, Some(0.5));
    }

    #[test]
    fn failures_are_broken_down_by_kind() {
        let targets = [target("gateway"), target("baseline")];
        let failures = failure_rows(&recording(), &targets);
        assert_eq!(
            failures,
            vec![FailureRow {
                target: "gateway".into(),
                source: SourceClass::Small,
                derivative: Derivative::Tile,
                kind: FailureKind::Status(503),
                count: 1,
                median_ms: 2.0,
                max_ms: 2.0,
            }]
        );
    }
}

//! The wrk side-by-side (`loadtest/wrk/compare.sh`): one row per scenario and target from wrk's
//! `RESULT {…}` line (printed by `loadtest/wrk/urls.lua`) and the CPU time the servers used
//! meanwhile, and the Markdown report with the ratios against each scenario's reference. Pure:
//! the measuring is in [`crate::wrk_tool`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What `urls.lua` prints after a run (the fields the report uses).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// The measured window.
    pub duration_us: u64,
    /// Socket errors by kind.
    pub connect: u64,
    /// Read errors.
    pub read: u64,
    /// Write errors.
    pub write: u64,
    /// Timeouts.
    pub timeout: u64,
    /// Answers with a status outside 2xx/3xx.
    pub status: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
}

/// The `RESULT` line of a wrk run's output.
///
/// # Errors
/// No such line, or one that does not parse.
pub fn parse_result(output: &str) -> Result<WrkResult, String> {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .ok_or("no RESULT line in the wrk output (is -s loadtest/wrk/urls.lua given?)")?;
    serde_json::from_str(line).map_err(|e| format!("RESULT {line}: {e}"))
}

/// One measured scenario on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `tiles-v2`, `thumbs-v3`, `hot-tiles`, …
    pub scenario: String,
    /// `baseline`, `gateway`, `cached`, `static`.
    pub target: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Non-2xx answers.
    pub non_2xx: u64,
    /// CPU of the front process(es) (nginx master and workers, or the gateway) per request, ms.
    pub front_cpu_ms: f64,
    /// CPU of the iipsrv processes per request, ms.
    pub iipsrv_cpu_ms: f64,
}

impl Row {
    /// The row of `result`, with the CPU seconds the front and iipsrv used during the run.
    pub fn new(
        scenario: &str,
        target: &str,
        result: &WrkResult,
        front_cpu_s: f64,
        iipsrv_cpu_s: f64,
    ) -> Row {
        let n = result.requests.max(1) as f64;
        let seconds = result.duration_us as f64 / 1e6;
        Row {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            rps: if seconds > 0.0 {
                result.requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: result.p50_us as f64 / 1000.0,
            p99_ms: result.p99_us as f64 / 1000.0,
            socket_errors: result.connect + result.read + result.write + result.timeout,
            non_2xx: result.status,
            front_cpu_ms: front_cpu_s * 1000.0 / n,
            iipsrv_cpu_ms: iipsrv_cpu_s * 1000.0 / n,
        }
    }

    /// The console line printed after each run.
    pub fn line(&self) -> String {
        format!(
            "{:<10} {:<9} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors/non-2xx {}/{}",
            self.scenario,
            self.target,
            self.rps,
            self.p50_ms,
            self.p99_ms,
            self.socket_errors,
            self.non_2xx
        )
    }

    fn cells(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {}/{} | {:.3} | {:.3} |",
            self.scenario,
            self.target,
            self.rps,
            self.p50_ms,
            self.p99_ms,
            self.socket_errors,
            self.non_2xx,
            self.front_cpu_ms,
            self.iipsrv_cpu_ms
        )
    }
}

/// How the runs were made, for the report's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// wrk `-t`.
    pub threads: u32,
    /// wrk `-c`.
    pub connections: u32,
    /// Measured seconds per run.
    pub duration_s: u32,
    /// Unrecorded warm-up seconds before each run.
    pub warmup_s: u32,
    /// The seed of the request lists.
    pub seed: u64,
}

/// Each scenario's reference: the static files for the hot cache, else the nginx baseline.
fn reference(scenario: &str) -> &'static str {
    if scenario.starts_with("hot") {
        "static"
    } else {
        "baseline"
    }
}

/// Scenarios compared with one reference: `tiles-v2` and `tiles-v3` share the baseline's
/// `tiles-v2`; each hot scenario is its own.
fn family(scenario: &str) -> &str {
    if scenario.starts_with("hot") {
        scenario
    } else {
        scenario.split('-').next().unwrap_or(scenario)
    }
}

fn ratio_line(row: &Row, reference: &Row, label: &str) -> String {
    let ratio = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
    format!(
        "| {} | {label} | {:.2} | {:.2} | {:.2} |",
        row.scenario,
        ratio(row.rps, reference.rps),
        ratio(row.p50_ms, reference.p50_ms),
        ratio(row.p99_ms, reference.p99_ms)
    )
}

/// The Markdown report: every row, then each row's ratios against its scenario's reference
/// (and the cached gateway's against the uncached one).
pub fn report_markdown(rows: &[Row], settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "wrk -t{} -c{} -d{}s --latency after a {}s warm-up; seed {}; same iipsrv processes for every target.\n",
        settings.threads, settings.connections, settings.duration_s, settings.warmup_s, settings.seed
    );
    out.push_str("| scenario | target | req/s | p50 ms | p99 ms | errors/non-2xx | front CPU ms/req | iipsrv CPU ms/req |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row.cells());
        out.push('\n');
    }
    let reference_of = |row: &Row| {
        rows.iter().rev().find(|r| {
            r.target == reference(&r.scenario) && family(&r.scenario) == family(&row.scenario)
        })
    };
    let mut ratios = Vec::new();
    for row in rows {
        let Some(base) = reference_of(row) else {
            continue;
        };
        if row.target == reference(&row.scenario) {
            continue;
        }
        ratios.push(ratio_line(
            row,
            base,
            &format!("{} / {}", row.target, base.target),
        ));
        if row.target == "cached" {
            if let Some(plain) = rows
                .iter()
                .find(|r| r.scenario == row.scenario && r.target == "gateway")
            {
                ratios.push(ratio_line(row, plain, "cached / gateway"));
            }
        }
    }
    if !ratios.is_empty() {
        out.push_str("\nRatios (req/s: higher is better; latency: lower is better):\n\n");
        out.push_str("| scenario | comparison | req/s | p50 | p99 |\n|---|---|---|---|---|\n");
        for line in ratios {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Where the static copy of `prefix` + `path` goes below the static root: the URL path
/// percent-decoded (nginx decodes it before it looks for the file), without its leading `/`.
pub fn static_file(prefix: &str, path: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let url_path = format!("{prefix}{path}");
    let bytes = url_path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let start = decoded.iter().take_while(|&&b| b == b'/').count();
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&decoded[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 20s test @ http://127.0.0.1:1\n\
        RESULT {\"requests\":2000,\"duration_us\":20000000,\"bytes\":1,\"connect\":0,\"read\":1,\
        \"write\":0,\"status\":3,\"timeout\":2,\"mean_us\":5.0,\"p50_us\":4500,\"p90_us\":1,\
        \"p99_us\":12000,\"max_us\":1}\n";

    fn row(scenario: &str, target: &str, rps: f64, p50_ms: f64) -> Row {
        Row {
            scenario: scenario.into(),
            target: target.into(),
            rps,
            p50_ms,
            p99_ms: p50_ms * 2.0,
            socket_errors: 0,
            non_2xx: 0,
            front_cpu_ms: 0.0,
            iipsrv_cpu_ms: 0.0,
        }
    }

    #[test]
    fn a_row_from_wrk_and_the_cpu_used() {
        let result = parse_result(OUTPUT).unwrap();
        let row = Row::new("tiles-v2", "gateway", &result, 1.0, 10.0);
        assert_eq!(row.rps, 100.0);
        assert_eq!((row.p50_ms, row.p99_ms), (4.5, 12.0));
        assert_eq!((row.socket_errors, row.non_2xx), (3, 3));
        assert_eq!((row.front_cpu_ms, row.iipsrv_cpu_ms), (0.5, 5.0));
        assert!(row.line().contains("100 req/s"), "{}", row.line());
        assert!(parse_result("no result").is_err());
    }

    #[test]
    fn ratios_against_each_scenarios_reference() {
        let rows = [
            row("tiles-v2", "baseline", 100.0, 10.0),
            row("tiles-v2", "gateway", 150.0, 5.0),
            row("tiles-v3", "gateway", 120.0, 8.0),
            row("hot-tiles", "static", 1000.0, 1.0),
            row("hot-tiles", "cached", 500.0, 2.0),
            row("hot-tiles", "gateway", 100.0, 10.0),
        ];
        let text = report_markdown(
            &rows,
            &Settings {
                threads: 2,
                connections: 10,
                duration_s: 20,
                warmup_s: 3,
                seed: 1,
            },
        );
        assert!(
            text.starts_with("wrk -t2 -c10 -d20s --latency after a 3s warm-up; seed 1;"),
            "{text}"
        );
        assert!(
            text.contains("| tiles-v2 | gateway / baseline | 1.50 | 0.50 | 0.50 |"),
            "{text}"
        );
        assert!(
            text.contains("| tiles-v3 | gateway / baseline | 1.20 | 0.80 | 0.80 |"),
            "{text}"
        );
        assert!(
            text.contains("| hot-tiles | cached / static | 0.50 | 2.00 | 2.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| hot-tiles | cached / gateway | 5.00 | 0.20 | 0.20 |"),
            "{text}"
        );
        assert!(
            text.contains("| hot-tiles | gateway / static | 0.10 | 10.00 | 10.00 |"),
            "{text}"
        );
        assert!(!text.contains("baseline / baseline"), "{text}");
    }

    #[test]
    fn static_files_have_the_decoded_url_path() {
        assert_eq!(
            static_file(
                "/iiif/2/",
                "Zo%C3%AB%20caf%C3%A9/full/!128,128/0/default.jpg"
            ),
            std::path::PathBuf::from("iiif/2/Zoë café/full/!128,128/0/default.jpg")
        );
        assert_eq!(
            static_file("/iiif/2/", "collection%2Fastronaut/x"),
            std::path::PathBuf::from("iiif/2/collection/astronaut/x")
        );
        assert_eq!(static_file("/", "100%"), std::path::PathBuf::from("100%"));
    }

    #[test]
    fn without_a_reference_there_are_no_ratios() {
        let text = report_markdown(
            &[row("thumbs-v2", "gateway", 10.0, 1.0)],
            &Settings {
                threads: 1,
                connections: 1,
                duration_s: 1,
                warmup_s: 0,
                seed: 0,
            },
        );
        assert!(!text.contains("Ratios"), "{text}");
    }
}

//! The Appendix-2 table: one row per (source class × derivative class) and an `any` row per target, in Markdown
//! and CSV, read back from CSV, and checked for the smoke test.
//!
//! Columns, as in the report plus `p99`: `src min`, `src max` (megapixels), `derv sz`, `# req` (successful
//! requests), `# fail`, `median`, `avg`, `min`, `max`, `p99` (milliseconds, successful requests only),
//! `avg sz` (bytes per successful response), `req/s` (successful requests per second of the measured window).

use std::io;

use serde::{Deserialize, Serialize};

use crate::dataset::SourceClass;
use crate::mix::Derivative;
use crate::stats::Latencies;

/// One table row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The target's name.
    pub target: String,
    /// The source class; `None` for the `any` row.
    pub source: Option<SourceClass>,
    /// The derivative class; `None` for the `any` row.
    pub derivative: Option<Derivative>,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests (every kind).
    pub failures: u64,
    /// Median latency of the successful requests, ms.
    pub median_ms: Option<f64>,
    /// Mean latency, ms.
    pub avg_ms: Option<f64>,
    /// Smallest latency, ms.
    pub min_ms: Option<f64>,
    /// Largest latency, ms.
    pub max_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Mean body size of the successful responses, bytes.
    pub avg_size_bytes: Option<u64>,
    /// Successful requests per second of the measured window.
    pub requests_per_second: f64,
}

/// Microseconds to milliseconds, exact to the microsecond.
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Row {
    /// The row of one group: its successful latencies, their total body bytes, its failure count, and the
    /// length of the measured window in seconds.
    pub fn new(
        target: &str,
        source: Option<SourceClass>,
        derivative: Option<Derivative>,
        latencies: &Latencies,
        bytes: u64,
        failures: u64,
        seconds: f64,
    ) -> Row {
        let requests = latencies.len() as u64;
        Row {
            target: target.to_string(),
            source,
            derivative,
            requests,
            failures,
            median_ms: latencies.median().map(ms),
            // The mean is rounded to the microsecond like the other columns, so CSV reads back exactly.
            avg_ms: latencies.mean().map(|mean| ms(mean.round() as u64)),
            min_ms: latencies.min().map(ms),
            max_ms: latencies.max().map(ms),
            p99_ms: latencies.percentile(99.0).map(ms),
            avg_size_bytes: (requests > 0).then(|| (bytes as f64 / requests as f64).round() as u64),
            requests_per_second: if seconds > 0.0 {
                // Two decimals, as printed, so CSV reads back exactly.
                (requests as f64 / seconds * 100.0).round() / 100.0
            } else {
                0.0
            },
        }
    }

    /// `src min` as printed.
    fn src_min(&self) -> String {
        self.source.map_or("any".to_string(), |class| {
            class.min_megapixels().to_string()
        })
    }

    /// `src max` as printed (`-` for the open-ended class).
    fn src_max(&self) -> String {
        match self.source {
            None => "any".to_string(),
            Some(class) => class
                .max_megapixels()
                .map_or("-".to_string(), |max| max.to_string()),
        }
    }

    /// `derv sz` as printed.
    fn derivative_label(&self) -> &'static str {
        self.derivative.map_or("any", Derivative::label)
    }
}

/// The Markdown header and separator line.
const MARKDOWN_HEADER: &str = "| src min | src max | derv sz | # req | # fail | median | avg | min | max | p99 | avg sz | req/s |\n\
     |---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

fn cell_ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |ms| format!("{ms:.1}"))
}

/// The Markdown table of `rows` (one target's rows; the target column is left out, as in the report).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(MARKDOWN_HEADER);
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
            row.src_min(),
            row.src_max(),
            row.derivative_label(),
            row.requests,
            row.failures,
            cell_ms(row.median_ms),
            cell_ms(row.avg_ms),
            cell_ms(row.min_ms),
            cell_ms(row.max_ms),
            cell_ms(row.p99_ms),
            row.avg_size_bytes
                .map_or("-".to_string(), |bytes| bytes.to_string()),
            row.requests_per_second,
        ));
    }
    out
}

/// A CSV line: the row in plain fields (empty when there is no value).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    target: String,
    src_min: String,
    src_max: String,
    derv_sz: String,
    req: u64,
    fail: u64,
    median_ms: Option<f64>,
    avg_ms: Option<f64>,
    min_ms: Option<f64>,
    max_ms: Option<f64>,
    p99_ms: Option<f64>,
    avg_sz_bytes: Option<u64>,
    req_per_s: f64,
}

/// A CSV file that does not hold a well-formed table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Not CSV, a missing column, or a number that does not parse.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// `src min`/`src max` or `derv sz` name no known class.
    #[error("line {line}: unknown class {src_min}-{src_max} / {derivative}")]
    UnknownClass {
        /// 1-based line.
        line: u64,
        /// The `src_min` field.
        src_min: String,
        /// The `src_max` field.
        src_max: String,
        /// The `derv_sz` field.
        derivative: String,
    },
}

/// Writes `rows` as CSV with a header line.
///
/// # Errors
///
/// Any write error of `writer`.
pub fn write_csv<W: io::Write>(rows: &[Row], writer: W) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(writer);
    for row in rows {
        csv.serialize(Record {
            target: row.target.clone(),
            src_min: row.src_min(),
            src_max: row.src_max(),
            derv_sz: row.derivative_label().to_string(),
            req: row.requests,
            fail: row.failures,
            median_ms: row.median_ms,
            avg_ms: row.avg_ms,
            min_ms: row.min_ms,
            max_ms: row.max_ms,
            p99_ms: row.p99_ms,
            avg_sz_bytes: row.avg_size_bytes,
            req_per_s: row.requests_per_second,
        })?;
    }
    csv.flush()?;
    Ok(())
}

/// Reads a table written by [`write_csv`].
///
/// # Errors
///
/// Anything that is not such a table: see [`TableError`].
pub fn read_csv<R: io::Read>(reader: R) -> Result<Vec<Row>, TableError> {
    let mut rows = Vec::new();
    for (index, record) in csv::Reader::from_reader(reader)
        .deserialize::<Record>()
        .enumerate()
    {
        let line = index as u64 + 2;
        let record = record.map_err(|error| TableError::Csv {
            line,
            message: error.to_string(),
        })?;
        let unknown = || TableError::UnknownClass {
            line,
            src_min: record.src_min.clone(),
            src_max: record.src_max.clone(),
            derivative: record.derv_sz.clone(),
        };
        let source = if record.src_min == "any" && record.src_max == "any" {
            None
        } else {
            let class = SourceClass::ALL
                .into_iter()
                .find(|class| class.min_megapixels().to_string() == record.src_min)
                .ok_or_else(unknown)?;
            let expected_max = class
                .max_megapixels()
                .map_or("-".to_string(), |max| max.to_string());
            if expected_max != record.src_max {
                return Err(unknown());
            }
            Some(class)
        };
        let derivative = if record.derv_sz == "any" {
            None
        } else {
            Some(Derivative::from_label(&record.derv_sz).ok_or_else(unknown)?)
        };
        rows.push(Row {
            target: record.target,
            source,
            derivative,
            requests: record.req,
            failures: record.fail,
            median_ms: record.median_ms,
            avg_ms: record.avg_ms,
            min_ms: record.min_ms,
            max_ms: record.max_ms,
            p99_ms: record.p99_ms,
            avg_size_bytes: record.avg_sz_bytes,
            requests_per_second: record.req_per_s,
        });
    }
    Ok(rows)
}

/// The verdict of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// What makes the table fail: missing or repeated rows, failures, missing or stray statistics, a target
    /// without any successful request.
    pub problems: Vec<String>,
    /// Rows without any request (allowed: a short run may not reach a rare class, such as `full` at weight 1
    /// of 121, within a few seconds).
    pub empty_rows: Vec<String>,
}

/// The smoke test's verdict on a table read back from CSV: every expected row is present exactly once, a row
/// with successful requests has every statistic and a row without any has none, every target has successful
/// requests, and nothing failed.
pub fn check(
    rows: &[Row],
    targets: &[String],
    sources: &[SourceClass],
    derivatives: &[Derivative],
) -> CheckOutcome {
    let mut outcome = CheckOutcome::default();
    for target in targets {
        let mut expected: Vec<(Option<SourceClass>, Option<Derivative>)> = sources
            .iter()
            .flat_map(|source| {
                derivatives
                    .iter()
                    .map(move |derivative| (Some(*source), Some(*derivative)))
            })
            .collect();
        expected.push((None, None));
        for (source, derivative) in expected {
            let name = format!(
                "{target} {} / {}",
                source.map_or("any", SourceClass::name),
                derivative.map_or("any", Derivative::label)
            );
            let matching: Vec<&Row> = rows
                .iter()
                .filter(|row| {
                    &row.target == target && row.source == source && row.derivative == derivative
                })
                .collect();
            let [row] = matching[..] else {
                outcome
                    .problems
                    .push(format!("{name}: {} rows instead of 1", matching.len()));
                continue;
            };
            if row.failures > 0 {
                outcome
                    .problems
                    .push(format!("{name}: {} failed requests", row.failures));
            }
            let statistics = [
                row.median_ms,
                row.avg_ms,
                row.min_ms,
                row.max_ms,
                row.p99_ms,
            ];
            let numbers = statistics
                .iter()
                .filter(|value| value.is_some_and(f64::is_finite))
                .count()
                + usize::from(row.avg_size_bytes.is_some());
            let has_requests = row.requests > 0;
            if !row.requests_per_second.is_finite() || numbers != if has_requests { 6 } else { 0 } {
                outcome.problems.push(format!(
                    "{name}: {numbers} of 6 statistics for {} successful requests",
                    row.requests
                ));
            }
            if !has_requests {
                if source.is_none() {
                    outcome
                        .problems
                        .push(format!("{name}: no successful request at all"));
                } else if row.failures == 0 {
                    outcome.empty_rows.push(name);
                }
            }
        }
    }
    let known = rows
        .iter()
        .filter(|row| targets.contains(&row.target))
        .count();
    if known != rows.len() {
        outcome
            .problems
            .push(format!("{} rows of unknown targets", rows.len() - known));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(source: Option<SourceClass>, derivative: Option<Derivative>) -> Row {
        Row::new(
            "gateway",
            source,
            derivative,
            &Latencies::new(vec![2_000, 13_000, 13_500, 1_418_000]),
            4 * 42_960,
            0,
            10.0,
        )
    }

    #[test]
    fn a_row_from_known_latencies() {
        let row = row(Some(SourceClass::Small), Some(Derivative::Tile));
        assert_eq!(row.requests, 4);
        assert_eq!(row.median_ms, Some(13.0));
        assert_eq!(row.avg_ms, Some(361.625));
        assert_eq!(row.min_ms, Some(2.0));
        assert_eq!(row.max_ms, Some(1418.0));
        assert_eq!(row.p99_ms, Some(1418.0));
        assert_eq!(row.avg_size_bytes, Some(42_960));
        assert_eq!(row.requests_per_second, 0.4);
    }

    #[test]
    fn markdown_looks_like_appendix_2() {
        let rows = vec![
            row(Some(SourceClass::Large), Some(Derivative::Render3000To4096)),
            Row::new("gateway", None, None, &Latencies::default(), 0, 3, 10.0),
        ];
        assert_eq!(
            markdown(&rows),
            "| src min | src max | derv sz | # req | # fail | median | avg | min | max | p99 | avg sz | req/s |\n\
             |---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | 75 | - | 3000-4096 | 4 | 0 | 13.0 | 361.6 | 2.0 | 1418.0 | 1418.0 | 42960 | 0.40 |\n\
             | any | any | any | 0 | 3 | - | - | - | - | - | - | 0.00 |\n"
        );
    }

    #[test]
    fn csv_round_trip() {
        let mut rows = Vec::new();
        for source in SourceClass::ALL {
            for derivative in Derivative::ALL {
                rows.push(row(Some(source), Some(derivative)));
            }
        }
        rows.push(Row::new(
            "baseline",
            None,
            None,
            &Latencies::new(vec![1, 1_234_567, 999]),
            12_345,
            7,
            3.0,
        ));
        rows.push(Row::new(
            "baseline",
            Some(SourceClass::Medium),
            None,
            &Latencies::default(),
            0,
            0,
            3.0,
        ));
        let mut bytes = Vec::new();
        write_csv(&rows, &mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(
            "target,src_min,src_max,derv_sz,req,fail,median_ms,avg_ms,min_ms,max_ms,p99_ms,avg_sz_bytes,req_per_s\n"
        ));
        assert_eq!(read_csv(bytes.as_slice()).unwrap(), rows);
    }

    #[test]
    fn read_csv_reports_the_bad_line() {
        let header = "target,src_min,src_max,derv_sz,req,fail,median_ms,avg_ms,min_ms,max_ms,p99_ms,avg_sz_bytes,req_per_s\n";
        let good = "g,0,10,tile,1,0,1,1,1,1,1,1,1\n";
        let bad_number = format!("{header}{good}g,0,10,tile,x,0,1,1,1,1,1,1,1\n");
        let error = read_csv(bad_number.as_bytes()).unwrap_err();
        assert!(matches!(error, TableError::Csv { line: 3, .. }), "{error}");
        let bad_class = format!("{header}g,0,75,tile,1,0,1,1,1,1,1,1,1\n");
        assert!(matches!(
            read_csv(bad_class.as_bytes()).unwrap_err(),
            TableError::UnknownClass { line: 2, .. }
        ));
        let bad_derivative = format!("{header}g,0,10,huge,1,0,1,1,1,1,1,1,1\n");
        assert!(matches!(
            read_csv(bad_derivative.as_bytes()).unwrap_err(),
            TableError::UnknownClass { .. }
        ));
        let missing_column = "target,src_min\ng,0\n";
        assert!(read_csv(missing_column.as_bytes()).is_err());
    }

    #[test]
    fn check_accepts_a_complete_table_without_failures() {
        let sources = [SourceClass::Small, SourceClass::Large];
        let derivatives = [Derivative::Tile, Derivative::Full];
        let mut rows: Vec<Row> = sources
            .iter()
            .flat_map(|s| derivatives.iter().map(|d| row(Some(*s), Some(*d))))
            .collect();
        rows.push(row(None, None));
        let targets = ["gateway".to_string()];
        assert_eq!(
            check(&rows, &targets, &sources, &derivatives),
            CheckOutcome::default()
        );

        // A row without requests is noted, not a problem.
        let empty = |source, derivative| {
            Row::new(
                "gateway",
                source,
                derivative,
                &Latencies::default(),
                0,
                0,
                1.0,
            )
        };
        let mut sparse = rows.clone();
        sparse[3] = empty(Some(SourceClass::Large), Some(Derivative::Full));
        let outcome = check(&sparse, &targets, &sources, &derivatives);
        assert_eq!(outcome.problems, Vec::<String>::new());
        assert_eq!(outcome.empty_rows, vec!["gateway large / full".to_string()]);

        // A missing row, a failure, a half-filled row and an empty target are each reported.
        let mut broken = rows.clone();
        broken.remove(0);
        broken[0].failures = 2;
        broken[1].p99_ms = None;
        broken[3] = empty(None, None);
        assert_eq!(
            check(&broken, &targets, &sources, &derivatives).problems,
            vec![
                "gateway small / tile: 0 rows instead of 1".to_string(),
                "gateway small / full: 2 failed requests".to_string(),
                "gateway large / tile: 5 of 6 statistics for 4 successful requests".to_string(),
                "gateway any / any: no successful request at all".to_string(),
            ]
        );
        // Rows of another target are not enough.
        let other = ["baseline".to_string()];
        assert_eq!(
            check(&rows, &other, &sources, &derivatives).problems.len(),
            6
        );
    }

    proptest! {
        #[test]
        fn any_row_reads_back_from_csv(
            micros in proptest::collection::vec(0u64..10_000_000_000, 0..50),
            bytes in 0u64..1_000_000_000_000,
            failures in 0u64..1_000_000,
            seconds in 0.0f64..100_000.0,
            source in proptest::option::of(0usize..3),
            derivative in proptest::option::of(0usize..5),
        ) {
            let row = Row::new(
                "t",
                source.map(|i| SourceClass::ALL[i]),
                derivative.map(|i| Derivative::ALL[i]),
                &Latencies::new(micros),
                bytes,
                failures,
                seconds,
            );
            let mut csv = Vec::new();
            write_csv(std::slice::from_ref(&row), &mut csv).unwrap();
            prop_assert_eq!(read_csv(csv.as_slice()).unwrap(), vec![row]);
        }
    }
}

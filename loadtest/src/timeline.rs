//! Latency over time: per second of the measured window, the number of completions and the exact median and
//! p99 of the successful requests that completed in that second.

use std::time::Duration;

use crate::sample::Sample;
use crate::stats::Latencies;

/// One second of one target.
#[derive(Clone, Debug, PartialEq)]
pub struct Second {
    /// Seconds since the start of the measured window (completions in `[second, second + 1)`).
    pub second: u64,
    /// Successful completions.
    pub successes: u64,
    /// Failed completions.
    pub failures: u64,
    /// Median latency of the successes, ms.
    pub median_ms: Option<f64>,
    /// p99 latency of the successes, ms.
    pub p99_ms: Option<f64>,
}

/// The per-second series of the samples of one target, bucketed by completion time, from second 0 to the last
/// second with a completion (seconds without completions are included, empty).
pub fn per_second<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<Second> {
    let mut buckets: Vec<(Vec<u64>, u64)> = Vec::new();
    for sample in samples {
        let second = sample.completed().as_secs() as usize;
        if buckets.len() <= second {
            buckets.resize_with(second + 1, Default::default);
        }
        match sample.failure {
            None => buckets[second].0.push(sample.latency_micros()),
            Some(_) => buckets[second].1 += 1,
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(second, (micros, failures))| {
            let latencies = Latencies::new(micros);
            let ms = |micros: u64| Duration::from_micros(micros).as_secs_f64() * 1000.0;
            Second {
                second: second as u64,
                successes: latencies.len() as u64,
                failures,
                median_ms: latencies.median().map(ms),
                p99_ms: latencies.percentile(99.0).map(ms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::SourceClass;
    use crate::mix::Derivative;
    use crate::sample::FailureKind;

    fn sample(started_ms: u64, latency_ms: u64, failure: Option<FailureKind>) -> Sample {
        Sample {
            target: 0,
            source: SourceClass::Small,
            derivative: Derivative::Tile,
            started: Duration::from_millis(started_ms),
            latency: Duration::from_millis(latency_ms),
            bytes: 1,
            failure,
        }
    }

    #[test]
    fn buckets_by_completion_second() {
        let samples = vec![
            sample(0, 100, None),
            sample(500, 400, None),
            sample(900, 200, None),
            sample(100, 2_950, Some(FailureKind::Status(503))),
        ];
        let series = per_second(&samples);
        assert_eq!(
            series,
            vec![
                Second {
                    second: 0,
                    successes: 2,
                    failures: 0,
                    median_ms: Some(100.0),
                    p99_ms: Some(400.0)
                },
                Second {
                    second: 1,
                    successes: 1,
                    failures: 0,
                    median_ms: Some(200.0),
                    p99_ms: Some(200.0)
                },
                Second {
                    second: 2,
                    successes: 0,
                    failures: 0,
                    median_ms: None,
                    p99_ms: None
                },
                Second {
                    second: 3,
                    successes: 0,
                    failures: 1,
                    median_ms: None,
                    p99_ms: None
                },
            ]
        );
    }

    #[test]
    fn no_samples_no_seconds() {
        assert!(per_second(&[]).is_empty());
    }
}

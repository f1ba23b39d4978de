//! The run: N virtual users per phase, each a loop of one request at a time on its own keep-alive connection,
//! for a warm-up and then a fixed measured window.
//!
//! * **sequential** (the default): one phase per target, back to back. Every phase replays the same request
//!   sequences (user `u` of every phase draws from the same seeded [`Schedule`]), so each target sees the same
//!   requests in the same order, with the full N users.
//! * **interleaved**: one phase for all targets. Each user sends every request to every target in turn
//!   (alternating which goes first), so machine noise hits all targets alike; each target then sees about N/T
//!   of the concurrency.
//!
//! Requests that *start* during the warm-up are not recorded. Requests that start inside the measured window
//! are all recorded, including those that complete after it (users stop starting requests at the end of the
//! window and the phase waits for them; the request timeout bounds the wait), so no slow request is hidden.
//! `req/s` divides by the length of the measured window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use hyper::header::HeaderValue;
use tokio::time::Instant;

use crate::client::Client;
use crate::cpu;
use crate::dataset::Dataset;
use crate::mix::Mix;
use crate::rss::{Watcher, BETWEEN_PHASES};
use crate::sample::{FailureKind, Sample};
use crate::schedule::Schedule;
use crate::shape::SizeLimit;
use crate::target::Target;

/// How two or more targets share the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One phase per target, back to back, same request sequences.
    Sequential,
    /// One phase; every request goes to every target in turn.
    Interleaved,
}

/// The settings of a run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Virtual users (concurrent connections) per phase.
    pub users: u32,
    /// Length of the measured window of each phase.
    pub duration: Duration,
    /// Unrecorded warm-up before each measured window.
    pub warmup: Duration,
    /// A request without a complete answer by then is a `timeout` failure.
    pub request_timeout: Duration,
    /// Seed of the request sequences.
    pub seed: u64,
    /// Sequential or interleaved.
    pub mode: Mode,
    /// Size limit for `full` requests (see [`SizeLimit`]).
    pub size_limit: SizeLimit,
    /// How often progress is printed.
    pub progress_every: Duration,
    /// Whether a user waits for an error answer's `Retry-After` before its next request.
    pub retry_after: RetryAfter,
}

/// What a virtual user does with the `Retry-After` of an error answer (the gateway's deliberate 503s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryAfter {
    /// Wait that long (at most until the end of the window) before the next request, as a well-behaved
    /// client backs off; the wait is not part of any latency.
    Honor,
    /// Send the next request at once: a tight loop of rejected requests, a stress test of the rejection path.
    Ignore,
}

/// A target with its resolved address.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The target.
    pub target: Target,
    /// Where to connect.
    pub address: SocketAddr,
    host: HeaderValue,
}

impl Endpoint {
    /// Resolves the target's host.
    ///
    /// # Errors
    ///
    /// When the host does not resolve.
    pub async fn resolve(target: Target) -> anyhow::Result<Endpoint> {
        let address = tokio::net::lookup_host(&target.authority)
            .await
            .with_context(|| {
                format!(
                    "target {}: cannot resolve {}",
                    target.name, target.authority
                )
            })?
            .next()
            .with_context(|| {
                format!(
                    "target {}: {} has no address",
                    target.name, target.authority
                )
            })?;
        let host = HeaderValue::from_str(&target.authority).with_context(|| {
            format!("target {}: invalid host {}", target.name, target.authority)
        })?;
        Ok(Endpoint {
            target,
            address,
            host,
        })
    }
}

/// What one phase measured.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// Indices of the targets of the phase.
    pub targets: Vec<usize>,
    /// The length of the measured window (shorter than asked when interrupted).
    pub measured: Duration,
    /// Requests that started during the warm-up (not recorded).
    pub warmup_requests: u64,
    /// True when Ctrl-C cut the phase short.
    pub interrupted: bool,
    /// Wall time of the whole phase: warm-up, window and the wait for requests in flight.
    pub wall: Duration,
    /// CPU seconds the load generator itself used during the phase (`None` when unknown).
    pub generator_cpu_seconds: Option<f64>,
}

/// Everything a run recorded.
#[derive(Debug, Default)]
pub struct Recording {
    /// Every request of the measured windows.
    pub samples: Vec<Sample>,
    /// One entry per phase.
    pub phases: Vec<PhaseResult>,
    /// The first detail message of each (target, failure kind).
    pub failure_examples: BTreeMap<(usize, FailureKind), String>,
}

impl Recording {
    /// The measured window of `target`'s phase.
    pub fn measured(&self, target: usize) -> Duration {
        self.phases
            .iter()
            .find(|phase| phase.targets.contains(&target))
            .map_or(Duration::ZERO, |phase| phase.measured)
    }
}

/// The Ctrl-C switch: once triggered, users start no new request and the current phase ends.
#[derive(Debug, Default)]
pub struct Stop {
    at: Mutex<Option<Instant>>,
    set: AtomicBool,
}

impl Stop {
    /// Triggers the stop (the first call's time counts).
    pub fn trigger(&self) {
        let mut at = self
            .at
            .lock()
            .expect("never poisoned: no panics while held");
        at.get_or_insert_with(Instant::now);
        self.set.store(true, Ordering::SeqCst);
    }

    /// True once triggered.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    /// When it was triggered.
    fn at(&self) -> Option<Instant> {
        *self
            .at
            .lock()
            .expect("never poisoned: no panics while held")
    }
}

/// Live counters for the progress lines.
#[derive(Default)]
struct Progress {
    successes: AtomicU64,
    failures: AtomicU64,
    warmup: AtomicU64,
}

/// The shared, read-only inputs of every user.
struct Plan {
    settings: Settings,
    endpoints: Vec<Endpoint>,
    dataset: Arc<Dataset>,
    mix: Arc<Mix>,
}

/// Runs every phase and returns the recording. `stop` cuts the current phase short when set (Ctrl-C).
///
/// # Errors
///
/// When the settings cannot produce a run (no users, no targets).
pub async fn run(
    settings: Settings,
    endpoints: Vec<Endpoint>,
    dataset: Arc<Dataset>,
    mix: Arc<Mix>,
    watcher: Option<&Watcher>,
    stop: Arc<Stop>,
) -> anyhow::Result<Recording> {
    if settings.users == 0 {
        bail!("--users must be at least 1");
    }
    if endpoints.is_empty() {
        bail!("no target given");
    }
    let phases: Vec<Vec<usize>> = match settings.mode {
        Mode::Sequential => (0..endpoints.len()).map(|index| vec![index]).collect(),
        Mode::Interleaved => vec![(0..endpoints.len()).collect()],
    };
    let plan = Arc::new(Plan {
        settings,
        endpoints,
        dataset,
        mix,
    });
    let mut recording = Recording::default();
    for targets in phases {
        if stop.is_set() {
            break;
        }
        let names = targets
            .iter()
            .map(|index| plan.endpoints[*index].target.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        if let Some(watcher) = watcher {
            watcher.set_phase(&names);
        }
        eprintln!(
            "loadtest: phase {names}: {} users, {:?} warm-up, {:?} measured",
            plan.settings.users, plan.settings.warmup, plan.settings.duration
        );
        let phase = run_phase(&plan, &targets, &names, &stop, &mut recording).await;
        if let Some(watcher) = watcher {
            watcher.set_phase(BETWEEN_PHASES);
        }
        recording.phases.push(phase);
    }
    Ok(recording)
}

async fn run_phase(
    plan: &Arc<Plan>,
    targets: &[usize],
    names: &str,
    stop: &Arc<Stop>,
    recording: &mut Recording,
) -> PhaseResult {
    let settings = &plan.settings;
    let cpu_before = cpu::own_cpu_seconds();
    let started = Instant::now();
    let measure_start = started + settings.warmup;
    let end = measure_start + settings.duration;
    let progress = Arc::new(Progress::default());
    let examples: Arc<Mutex<BTreeMap<(usize, FailureKind), String>>> = Arc::default();

    let users: Vec<_> = (0..settings.users)
        .map(|user| {
            tokio::spawn(run_user(
                plan.clone(),
                user,
                targets.to_vec(),
                (measure_start, end),
                stop.clone(),
                progress.clone(),
                examples.clone(),
            ))
        })
        .collect();

    let reporter = tokio::spawn(report_progress(
        names.to_string(),
        progress.clone(),
        (started, measure_start, end),
        settings.progress_every,
        stop.clone(),
    ));
    for user in users {
        match user.await {
            Ok(samples) => recording.samples.extend(samples),
            Err(error) => eprintln!("loadtest: a virtual user failed: {error}"),
        }
    }
    reporter.abort();
    let stopped_at = stop.at();
    let window_end = stopped_at.map_or(end, |at| at.min(end));
    let failures = progress.failures.load(Ordering::Relaxed);
    let successes = progress.successes.load(Ordering::Relaxed);
    eprintln!(
        "loadtest: phase {names} done: {successes} ok, {failures} failed, {} warm-up requests not recorded",
        progress.warmup.load(Ordering::Relaxed)
    );
    recording.failure_examples.extend(std::mem::take(
        &mut *examples.lock().expect("no user panics while holding it"),
    ));
    PhaseResult {
        targets: targets.to_vec(),
        measured: window_end.saturating_duration_since(measure_start),
        warmup_requests: progress.warmup.load(Ordering::Relaxed),
        interrupted: stopped_at.is_some_and(|at| at < end),
        wall: started.elapsed(),
        generator_cpu_seconds: cpu_before
            .zip(cpu::own_cpu_seconds())
            .map(|(before, after)| after - before),
    }
}

/// One virtual user: requests until the end of the window (or `stop`), returning its measured samples.
async fn run_user(
    plan: Arc<Plan>,
    user: u32,
    targets: Vec<usize>,
    (measure_start, end): (Instant, Instant),
    stop: Arc<Stop>,
    progress: Arc<Progress>,
    examples: Arc<Mutex<BTreeMap<(usize, FailureKind), String>>>,
) -> Vec<Sample> {
    let settings = &plan.settings;
    let mut schedule = Schedule::new(&plan.dataset, &plan.mix, settings.seed, user);
    let mut clients: Vec<Client> = targets
        .iter()
        .map(|index| {
            let endpoint = &plan.endpoints[*index];
            Client::new(
                endpoint.address,
                endpoint.host.clone(),
                settings.request_timeout,
            )
        })
        .collect();
    let mut samples = Vec::new();
    let mut round: usize = 0;
    while Instant::now() < end && !stop.is_set() {
        let planned = schedule.next_request();
        for turn in 0..targets.len() {
            // Alternate which target goes first, so neither always meets the other's cache or queue.
            let slot = (turn + round) % targets.len();
            let target_index = targets[slot];
            let target = &plan.endpoints[target_index].target;
            let path = target.request_path(&planned.shape.path(
                &planned.image,
                target.version,
                &settings.size_limit,
            ));
            let started = Instant::now();
            let exchange = clients[slot].get(&path).await;
            if started < measure_start {
                progress.warmup.fetch_add(1, Ordering::Relaxed);
            } else {
                let failure = exchange.failure.map(|(kind, detail)| {
                    examples
                        .lock()
                        .expect("no user panics while holding it")
                        .entry((target_index, kind))
                        .or_insert_with(|| format!("{detail} (GET {path})"));
                    kind
                });
                let counter = if failure.is_some() {
                    &progress.failures
                } else {
                    &progress.successes
                };
                counter.fetch_add(1, Ordering::Relaxed);
                samples.push(Sample {
                    target: target_index,
                    source: planned.source,
                    derivative: planned.derivative,
                    started: started - measure_start,
                    latency: exchange.latency,
                    bytes: exchange.bytes,
                    failure,
                });
            }
            if let (RetryAfter::Honor, Some(wait)) = (settings.retry_after, exchange.retry_after) {
                tokio::time::sleep_until((Instant::now() + wait).min(end)).await;
            }
        }
        round += 1;
    }
    samples
}

/// Prints a progress line every `every` until aborted.
async fn report_progress(
    names: String,
    progress: Arc<Progress>,
    (started, measure_start, end): (Instant, Instant, Instant),
    every: Duration,
    stop: Arc<Stop>,
) {
    let mut ticker = tokio::time::interval_at(started + every, every);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if stop.is_set() {
            eprintln!("loadtest: {names}: stopping, waiting for requests in flight");
        } else if now < measure_start {
            eprintln!(
                "loadtest: {names}: warming up, {} requests",
                progress.warmup.load(Ordering::Relaxed)
            );
        } else if now < end {
            let elapsed = now - measure_start;
            let successes = progress.successes.load(Ordering::Relaxed);
            eprintln!(
                "loadtest: {names}: {:>4.0}s/{:.0}s  {successes} ok ({:.1}/s)  {} failed",
                elapsed.as_secs_f64(),
                (end - measure_start).as_secs_f64(),
                successes as f64 / elapsed.as_secs_f64().max(1e-9),
                progress.failures.load(Ordering::Relaxed),
            );
        } else {
            eprintln!("loadtest: {names}: window closed, waiting for requests in flight");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Image, SourceClass};
    use crate::test_server::server;

    fn dataset() -> Arc<Dataset> {
        let mut dataset = Dataset::default();
        dataset.insert(
            SourceClass::Small,
            vec![Image {
                identifier: "a".into(),
                width: 2000,
                height: 1500,
            }],
        );
        Arc::new(dataset)
    }

    fn settings(mode: Mode, retry_after: RetryAfter) -> Settings {
        Settings {
            users: 3,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            seed: 1,
            mode,
            size_limit: SizeLimit::LOCAL_STACK,
            progress_every: Duration::from_secs(60),
            retry_after,
        }
    }

    async fn endpoint(name: &str, address: SocketAddr) -> Endpoint {
        Endpoint::resolve(Target::parse(&format!("{name}=http://{address}/iiif/2")).unwrap())
            .await
            .unwrap()
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
    const BUSY: &str =
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 60\r\ncontent-length: 0\r\n\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequential_phases_record_each_target_in_its_own_window() {
        let first = endpoint("first", server(|_| Some(OK)).await).await;
        let second = endpoint("second", server(|_| Some(OK)).await).await;
        let recording = run(
            settings(Mode::Sequential, RetryAfter::Honor),
            vec![first, second],
            dataset(),
            Arc::new(Mix::report()),
            None,
            Arc::new(Stop::default()),
        )
        .await
        .unwrap();
        assert_eq!(recording.phases.len(), 2);
        assert_eq!(recording.phases[1].targets, vec![1]);
        for target in 0..2 {
            let samples: Vec<&Sample> = recording
                .samples
                .iter()
                .filter(|s| s.target == target)
                .collect();
            assert!(!samples.is_empty(), "target {target} has no samples");
            assert!(samples.iter().all(|s| s.failure.is_none() && s.bytes == 3));
            // Only requests that started inside the window are recorded.
            assert!(samples
                .iter()
                .all(|s| s.started < Duration::from_millis(300)));
            assert_eq!(recording.measured(target), Duration::from_millis(300));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interleaved_sends_every_request_to_every_target() {
        let first = endpoint("first", server(|_| Some(OK)).await).await;
        let second = endpoint("second", server(|_| Some(OK)).await).await;
        let recording = run(
            settings(Mode::Interleaved, RetryAfter::Honor),
            vec![first, second],
            dataset(),
            Arc::new(Mix::report()),
            None,
            Arc::new(Stop::default()),
        )
        .await
        .unwrap();
        assert_eq!(recording.phases.len(), 1);
        let count = |target| {
            recording
                .samples
                .iter()
                .filter(|s| s.target == target)
                .count()
        };
        // Each round sends one request to each target; the window may cut at most one round per user short.
        assert!(count(0) > 0);
        assert!(
            count(0).abs_diff(count(1)) <= 3,
            "{} vs {}",
            count(0),
            count(1)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_after_is_honoured_or_ignored() {
        let busy = server(|_| Some(BUSY)).await;
        let measured_requests = |retry_after| async move {
            let recording = run(
                Settings {
                    warmup: Duration::ZERO,
                    ..settings(Mode::Sequential, retry_after)
                },
                vec![endpoint("busy", busy).await],
                dataset(),
                Arc::new(Mix::report()),
                None,
                Arc::new(Stop::default()),
            )
            .await
            .unwrap();
            assert!(recording
                .samples
                .iter()
                .all(|s| s.failure == Some(FailureKind::Status(503))));
            recording.samples.len()
        };
        // Honouring a 60 s Retry-After, each of the 3 users sends one request in the 300 ms window.
        assert_eq!(measured_requests(RetryAfter::Honor).await, 3);
        assert!(measured_requests(RetryAfter::Ignore).await > 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_ends_the_phase_early_and_shortens_the_window() {
        let target = endpoint("t", server(|_| Some(OK)).await).await;
        let stop = Arc::new(Stop::default());
        let trigger = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.trigger();
        });
        let recording = run(
            Settings {
                duration: Duration::from_secs(3600),
                ..settings(Mode::Sequential, RetryAfter::Honor)
            },
            vec![target],
            dataset(),
            Arc::new(Mix::report()),
            None,
            stop,
        )
        .await
        .unwrap();
        let phase = &recording.phases[0];
        assert!(phase.interrupted);
        assert!(phase.measured < Duration::from_secs(3600));
        assert!(!recording.samples.is_empty());
    }
}

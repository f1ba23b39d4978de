//! The command line in two stages: [`Args`] is what clap parses, [`Config`] is the validated run, with every
//! identifier list loaded. [`Config::from_args`] reports every problem at once instead of stopping at the first.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::dataset::{self, Dataset, SourceClass};
use crate::engine::{Mode, RetryAfter, Settings};
use crate::mix::Mix;
use crate::rss::Watched;
use crate::shape::SizeLimit;
use crate::target::Target;

/// Reproduces the IIIF image-server benchmark of the design report (section 3.2, Appendix 2).
///
/// N virtual users, each with one keep-alive connection per target, request IIIF derivatives of images from
/// three source-size classes (< 10, 10-75, > 75 megapixels) with the report's mix: per identifier 50 viewer
/// tiles, 50 thumbnails of 128 px, 10 renders of 1024 px, 10 of 3000-4096 px and 1 full-size image. After a
/// warm-up, a fixed window is measured; the result is the Appendix-2 table per target (Markdown and CSV) plus
/// p99, a failure breakdown, ratios against the baseline target, memory of watched processes and SVG charts.
///
/// Example:
///   loadtest --target gateway=http://127.0.0.1:8080/iiif/2 --target baseline=http://127.0.0.1:8088/iiif
///     --ids small=var/bench-images/lists/small.txt --ids medium=… --ids large=…
///     --users 100 --duration 60s --out var/loadtest/run1
///
/// `loadtest wrk --help`: the measuring and report tools of loadtest/wrk/compare.sh.
#[derive(Parser, Debug)]
#[command(name = "loadtest", version, verbatim_doc_comment)]
pub struct Args {
    /// A target, NAME=URL of its IIIF base (repeatable). A base path ending in /3 is sent IIIF 3.0 syntax,
    /// anything else IIIF 2.1 (e.g. gateway=http://127.0.0.1:8080/iiif/2, baseline=http://127.0.0.1:8088/iiif).
    #[arg(long = "target", value_name = "NAME=URL", required = true)]
    pub targets: Vec<String>,
    /// An identifier list, CLASS=FILE with CLASS small (< 10 Mpx), medium (10-75) or large (>= 75); each line
    /// `identifier width height` (repeatable; classes without a list are left out).
    #[arg(long = "ids", value_name = "CLASS=FILE", required = true)]
    pub ids: Vec<String>,
    /// Concurrent virtual users (connections) per phase.
    #[arg(long, default_value_t = 10)]
    pub users: u32,
    /// Length of the measured window of each phase (e.g. 600s, 10m, 2.5s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded warm-up before each measured window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A request without a complete answer after this long counts as a failure of kind "timeout".
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Seed of the request sequences (the same seed gives every target the same requests).
    #[arg(long, default_value_t = 20_240_601)]
    pub seed: u64,
    /// With several targets: sequential = one phase per target, back to back; interleaved = every request is
    /// sent to every target in turn within one phase.
    #[arg(long, value_enum, default_value_t = Mode::Sequential)]
    pub mode: Mode,
    /// What a user does with the Retry-After of an error answer (the gateway's deliberate 503s).
    #[arg(long, value_enum, default_value_t = RetryAfter::Honor)]
    pub retry_after: RetryAfter,
    /// Derivative weights: `report` (tile=50,128=50,1024=10,3000-4096=10,full=1), `even`, or a list such as
    /// `tile=1,128=1`.
    #[arg(long, default_value = "report")]
    pub mix: String,
    /// The servers' output limit WxH (iipsrv MAX_CVT, the gateway's max_width/max_height, area W·H): a full-size
    /// request for a larger image asks for `max` instead of `full`.
    #[arg(long, value_name = "WxH", default_value = "5000x5000")]
    pub full_limit: String,
    /// The target the others are compared with (default: the one named "baseline", else the first).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// Report the memory (VmRSS sampled each second, VmHWM) of a process (repeatable).
    #[arg(long = "watch-pid", value_name = "NAME=PID")]
    pub watch: Vec<String>,
    /// Directory for summary.md, table.csv, failures.csv, timeline.csv, rss.csv, run.json and the SVG charts.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Title of the report and charts (default: "N users").
    #[arg(long)]
    pub title: Option<String>,
    /// Exit with status 1 unless the table read back from table.csv is well-formed (every row present, every
    /// statistic a number where the row has requests), every target has successful requests, and nothing
    /// failed (the smoke test).
    #[arg(long)]
    pub check: bool,
    /// How often to print progress.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub progress: Duration,
}

/// Parses `90`, `90s`, `1.5s`, `500ms`, `10m`.
///
/// # Errors
///
/// A message for anything else, or a negative or absurd value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else {
        (text, 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|value| value * scale)
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0 && *seconds < 1e9)
        .ok_or_else(|| format!("invalid duration {text:?}: use e.g. 60s, 10m, 500ms"))?;
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `WxH` into a limit with area W·H.
///
/// # Errors
///
/// A message unless both sides are positive integers.
pub fn parse_size_limit(text: &str) -> Result<SizeLimit, String> {
    let error = || format!("invalid --full-limit {text:?}: expected WxH, e.g. 5000x5000");
    let (width, height) = text.split_once('x').ok_or_else(error)?;
    let width: u32 = width.trim().parse().map_err(|_| error())?;
    let height: u32 = height.trim().parse().map_err(|_| error())?;
    if width == 0 || height == 0 {
        return Err(error());
    }
    Ok(SizeLimit {
        max_width: width,
        max_height: height,
        max_area: u64::from(width) * u64::from(height),
    })
}

/// A validated run.
#[derive(Debug)]
pub struct Config {
    /// The targets, in command-line order.
    pub targets: Vec<Target>,
    /// The name of the baseline target (ratios are against it), if there are several targets.
    pub baseline: Option<String>,
    /// The images by class.
    pub dataset: Dataset,
    /// The derivative mix.
    pub mix: Mix,
    /// The engine's settings.
    pub settings: Settings,
    /// Processes whose memory is reported.
    pub watched: Vec<Watched>,
    /// The output directory.
    pub out: PathBuf,
    /// The report's title.
    pub title: String,
    /// Whether to run the smoke check.
    pub check: bool,
}

impl Config {
    /// Validates `args` and loads the identifier lists.
    ///
    /// # Errors
    ///
    /// Every problem found, one message each.
    pub fn from_args(args: Args) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();

        let mut targets: Vec<Target> = Vec::new();
        for spec in &args.targets {
            match Target::parse(spec) {
                Ok(target) if targets.iter().any(|known| known.name == target.name) => {
                    problems.push(format!("target name {} is given twice", target.name));
                }
                Ok(target) => targets.push(target),
                Err(error) => problems.push(error.to_string()),
            }
        }
        let baseline = match &args.baseline {
            Some(name) if targets.iter().any(|target| &target.name == name) => Some(name.clone()),
            Some(name) => {
                problems.push(format!("--baseline {name} is not one of the targets"));
                None
            }
            None if targets.len() < 2 => None,
            None => Some(
                targets
                    .iter()
                    .find(|target| target.name == "baseline")
                    .unwrap_or(&targets[0])
                    .name
                    .clone(),
            ),
        };

        let mut dataset = Dataset::default();
        for spec in &args.ids {
            let Some((class_name, file)) = spec.split_once('=') else {
                problems.push(format!(
                    "invalid --ids {spec:?}: expected CLASS=FILE, e.g. small=lists/small.txt"
                ));
                continue;
            };
            let Some(class) = SourceClass::from_name(class_name.trim()) else {
                problems.push(format!(
                    "invalid --ids class {class_name:?}: use small, medium or large"
                ));
                continue;
            };
            if !dataset.images(class).is_empty() {
                problems.push(format!("--ids {class} is given twice"));
                continue;
            }
            match std::fs::read_to_string(file) {
                Ok(text) => match dataset::parse_list(class, &text, file) {
                    Ok(images) => dataset.insert(class, images),
                    Err(error) => problems.push(error.to_string()),
                },
                Err(error) => problems.push(format!("cannot read {file}: {error}")),
            }
        }

        let mix = Mix::parse(&args.mix).unwrap_or_else(|error| {
            problems.push(error.to_string());
            Mix::report()
        });
        let size_limit = parse_size_limit(&args.full_limit).unwrap_or_else(|error| {
            problems.push(error);
            SizeLimit::LOCAL_STACK
        });
        if args.users == 0 {
            problems.push("--users must be at least 1".to_string());
        }
        if args.duration.is_zero() {
            problems.push("--duration must be above zero".to_string());
        }
        if args.request_timeout.is_zero() {
            problems.push("--request-timeout must be above zero".to_string());
        }
        if args.progress.is_zero() {
            problems.push("--progress must be above zero".to_string());
        }
        let mut watched = Vec::new();
        for spec in &args.watch {
            match Watched::parse(spec) {
                Ok(process) => watched.push(process),
                Err(error) => problems.push(error),
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            targets,
            baseline,
            dataset,
            mix,
            settings: Settings {
                users: args.users,
                duration: args.duration,
                warmup: args.warmup,
                request_timeout: args.request_timeout,
                seed: args.seed,
                mode: args.mode,
                size_limit,
                progress_every: args.progress,
                retry_after: args.retry_after,
            },
            watched,
            out: args.out,
            title: args
                .title
                .unwrap_or_else(|| format!("{} users", args.users)),
            check: args.check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        for bad in ["", "s", "-1s", "1h", "NaN", "1e99"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn size_limits() {
        assert_eq!(parse_size_limit("5000x5000"), Ok(SizeLimit::LOCAL_STACK));
        for bad in ["5000", "0x5", "axb", "5x"] {
            assert!(parse_size_limit(bad).is_err(), "{bad}");
        }
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["loadtest", "--out", "results"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = Config::from_args(args(&[
            "--target",
            "a=http://x/iiif",
            "--target",
            "a=http://y/iiif",
            "--target",
            "bad",
            "--ids",
            "huge=f",
            "--ids",
            "small=/nonexistent/list.txt",
            "--mix",
            "tile=0",
            "--users",
            "0",
            "--baseline",
            "nobody",
            "--watch-pid",
            "x",
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("given twice")));
        assert!(problems
            .iter()
            .any(|p| p.contains("cannot read /nonexistent/list.txt")));
    }

    #[test]
    fn the_baseline_defaults_to_the_target_named_baseline() {
        let dir = std::env::temp_dir().join(format!("loadtest-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("small.txt");
        std::fs::write(&list, "a 100 100\n").unwrap();
        let ids = format!("small={}", list.display());
        let config = Config::from_args(args(&[
            "--target",
            "gateway=http://127.0.0.1:1/iiif/2",
            "--target",
            "baseline=http://127.0.0.1:2/iiif",
            "--ids",
            &ids,
        ]))
        .unwrap();
        assert_eq!(config.baseline.as_deref(), Some("baseline"));
        assert_eq!(config.title, "10 users");
        assert_eq!(config.dataset.images(SourceClass::Small).len(), 1);
        let single =
            Config::from_args(args(&["--target", "g=http://127.0.0.1:1/", "--ids", &ids])).unwrap();
        assert_eq!(single.baseline, None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! `iiif-gateway redirects …`: the admin CLI of the ID archive.
//!
//! Reads the Redis URL and key prefix from the configuration file's `gateway.redirects`, does one
//! thing, and says what it did in plain words. Exit codes: 0 done, 1 refused (a rule, bad import
//! rows, an unknown identifier, an import already running), 2 configuration, connection or I/O
//! failure.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::import::{self, Exporter, Format, RowProblem};
use super::model::{Cause, Change, Kind, Redirect};
use super::store::{ImportOptions, ImportReport, Phase, Progress, RedirectStore, StoreError};
use crate::config::RedirectsConfig;

/// Edit the ID archive of retired identifiers (in Redis, shared by every gateway node).
///
/// A retired identifier answers 301/308 (moved), 302/307 (temporary) or 410 (gone). Chains
/// collapse (A → B then B → C stores A → C), loops are refused, and gone spreads along chains.
/// Redis comes from `gateway.redirects` in the configuration file (-c).
#[derive(Args, Debug)]
pub struct RedirectsArgs {
    #[command(subcommand)]
    pub command: RedirectsCommand,
}

#[derive(Subcommand, Debug)]
pub enum RedirectsCommand {
    /// OLD now redirects to NEW (permanently unless --temporary).
    ///
    /// If NEW is itself retired, OLD points where NEW went; whatever pointed at OLD now points at
    /// NEW too. Refused if NEW is gone or redirects back to OLD.
    Set {
        /// The retired identifier (decoded, as in the URL after percent-decoding).
        old: String,
        /// The current identifier.
        new: String,
        /// A temporary move (302/307) rather than a permanent one (301/308).
        #[arg(long)]
        temporary: bool,
        #[command(flatten)]
        who: Who,
    },
    /// OLD is withdrawn (410 Gone), and so is every identifier that redirected to it.
    Gone {
        old: String,
        #[command(flatten)]
        who: Who,
    },
    /// OLD is not retired any more: it is served as itself again (its history stays).
    Rm {
        old: String,
        #[command(flatten)]
        who: Who,
    },
    /// The record of OLD and its history, newest first.
    Show { old: String },
    /// Retired identifiers in byte order, one per line: identifier, kind, target (tab-separated).
    List {
        /// Only identifiers starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many (0 = all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Import a CSV or YAML file (columns/keys old,new,kind,reason; kind moved|temporary|gone).
    ///
    /// Every row is checked against the rules and the archive before anything is written; a file
    /// with any bad row changes nothing and every bad row is listed with its line number. Rows
    /// apply in order, so a later row may build on an earlier one.
    ///
    /// A large import interrupted while writing (Redis or the connection failed) is finished
    /// with --resume; until then edits and imports are refused.
    Import {
        /// The file; `-` reads standard input. YAML if it ends in .yaml or .yml, else CSV.
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Finish an interrupted import from its journal in Redis (no file needed).
        #[arg(long, conflicts_with_all = ["file", "dry_run", "format"])]
        resume: bool,
        /// Check everything and show what would change, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// The file format, when the extension does not tell.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Who imports, for the records and their history [default: $SUDO_USER or $USER].
        #[arg(long)]
        by: Option<String>,
    },
    /// Write the whole archive as CSV (or YAML), in a form `import` takes back unchanged.
    Export {
        /// The file; `-` (the default) writes standard output. YAML if it ends in .yaml or .yml.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// The file format, when the extension does not tell.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
}

/// Who makes an edit and why, recorded in the record and its history.
#[derive(Args, Debug)]
pub struct Who {
    /// Why, in a few words.
    #[arg(long, short, default_value = "")]
    reason: String,
    /// Who [default: $SUDO_USER or $USER].
    #[arg(long)]
    by: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Csv,
    Yaml,
}

/// Why the CLI stops: a refusal (exit 1) or a failure of the setup (exit 2).
enum Failure {
    Refused(String),
    Setup(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        if error.is_refusal() {
            Failure::Refused(error.to_string())
        } else {
            Failure::Setup(error.to_string())
        }
    }
}

/// Runs one `redirects` command; `config` is the file's `gateway.redirects`.
pub fn run(config: Option<&RedirectsConfig>, args: RedirectsArgs) -> ExitCode {
    let Some(config) = config else {
        eprintln!(
            "iiif-gateway redirects: the configuration has no gateway.redirects section \
             (redis_url, key_prefix)"
        );
        return ExitCode::from(2);
    };
    // TLS to Redis (rediss://) needs one process-wide crypto provider, as in the server.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Two threads: an import builds its next batch while Redis writes the previous one.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("iiif-gateway redirects: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(execute(config, args.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            eprintln!("iiif-gateway redirects: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Setup(message)) => {
            eprintln!("iiif-gateway redirects: {message}");
            ExitCode::from(2)
        }
    }
}

async fn execute(config: &RedirectsConfig, command: RedirectsCommand) -> Result<(), Failure> {
    let store = RedirectStore::connect(&config.redis_url, &config.key_prefix).await?;
    match command {
        RedirectsCommand::Set {
            old,
            new,
            temporary,
            who,
        } => {
            let changes = store
                .set(&old, &new, temporary, &by(who.by), &who.reason)
                .await?;
            print_changes(&old, &changes);
        }
        RedirectsCommand::Gone { old, who } => {
            let changes = store.gone(&old, &by(who.by), &who.reason).await?;
            print_changes(&old, &changes);
        }
        RedirectsCommand::Rm { old, who } => {
            let changes = store.remove(&old, &by(who.by), &who.reason).await?;
            print_changes(&old, &changes);
        }
        RedirectsCommand::Show { old } => show(&store, &old).await?,
        RedirectsCommand::List { prefix, limit } => {
            let wanted = if limit == 0 { usize::MAX } else { limit };
            // One more than asked, to tell whether there are more.
            let records = store.list(&prefix, wanted.saturating_add(1)).await?;
            let mut out = std::io::stdout().lock();
            for (id, record) in records.iter().take(wanted) {
                let _ = writeln!(
                    out,
                    "{id}\t{}\t{}",
                    record.kind,
                    record.target.as_deref().unwrap_or("")
                );
            }
            if records.len() > wanted {
                eprintln!("(first {wanted} shown; --limit 0 lists all)");
            } else if records.is_empty() {
                eprintln!("no retired identifiers start with {prefix:?}");
            }
        }
        RedirectsCommand::Import { resume: true, .. } => {
            let mut bar = Bar::new(Bar::WORTH_SHOWING);
            let written = store.resume(&mut |p| bar.update(p)).await;
            bar.finish();
            match written? {
                0 => println!("no interrupted import to finish"),
                n => println!("finished the interrupted import: {n} records written"),
            }
        }
        RedirectsCommand::Import {
            file,
            dry_run,
            format,
            by: who,
            ..
        } => {
            let file = file.unwrap_or_else(|| PathBuf::from("-"));
            import_file(&store, &file, dry_run, format, &by(who)).await?;
        }
        RedirectsCommand::Export { file, format } => export_file(&store, &file, format).await?,
    }
    Ok(())
}

/// `--by`, else the invoking user.
fn by(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The HTTP statuses a kind answers (which one of a pair is `gateway.redirects` config).
fn statuses(kind: Kind) -> &'static str {
    match kind {
        Kind::Moved => "301/308",
        Kind::Temporary => "302/307",
        Kind::Gone => "410",
    }
}

fn status_words(kind: Kind) -> String {
    format!("{kind}, {}", statuses(kind))
}

/// One line for a change, as the CLI prints it.
pub fn describe(change: &Change) -> String {
    let Some(after) = &change.after else {
        return format!("{} removed: served as itself again", change.id);
    };
    let what = match &after.target {
        Some(target) => format!("{} → {target} ({})", change.id, status_words(after.kind)),
        None => format!("{} is gone (410)", change.id),
    };
    match &change.cause {
        Cause::Requested => what,
        Cause::Shortened { via } => format!("{what}; {via} had already moved there"),
        Cause::Retargeted { via } => format!("{what}; chain collapse: it pointed at {via}"),
        Cause::GoneSpread { via } => format!("{what}; it pointed at {via}, which is gone"),
    }
}

fn print_changes(old: &str, changes: &[Change]) {
    if changes.is_empty() {
        println!("{old}: already so, nothing changed");
        return;
    }
    for change in changes {
        println!("{}", describe(change));
    }
}

async fn show(store: &RedirectStore, old: &str) -> Result<(), Failure> {
    let (record, history) = store.show(old).await?;
    if record.is_none() && history.is_empty() {
        return Err(Failure::Refused(format!(
            "{old} is not a retired identifier and has no history"
        )));
    }
    let mut out = String::new();
    match &record {
        Some(r) => out.push_str(&record_text(old, r)),
        None => out.push_str(&format!("{old} is not retired (served as itself)\n")),
    }
    if !history.is_empty() {
        out.push_str("history, newest first:\n");
        for h in &history {
            let what = match (&h.kind, &h.target) {
                (Some(kind), Some(target)) => format!("set → {target} ({kind})"),
                _ => h.action.as_str().to_owned(),
            };
            let reason = if h.reason.is_empty() {
                String::new()
            } else {
                format!("  ({})", h.reason)
            };
            out.push_str(&format!("  {}  {:<12} {what}{reason}\n", h.at, h.by));
        }
    }
    print!("{out}");
    Ok(())
}

fn record_text(id: &str, record: &Redirect) -> String {
    let head = match &record.target {
        Some(target) => format!("{id} → {target}"),
        None => format!("{id} is gone"),
    };
    let reason = if record.reason.is_empty() {
        "(none given)"
    } else {
        &record.reason
    };
    format!(
        "{head}\n  kind:    {} ({})\n  changed: {} by {}\n  reason:  {reason}\n",
        record.kind,
        statuses(record.kind),
        record.changed_at,
        record.changed_by,
    )
}

fn chosen_format(file: &std::path::Path, format: Option<FormatArg>) -> Format {
    match format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Yaml) => Format::Yaml,
        None => Format::from_path(file),
    }
}

async fn import_file(
    store: &RedirectStore,
    file: &std::path::Path,
    dry_run: bool,
    format: Option<FormatArg>,
    by: &str,
) -> Result<(), Failure> {
    let format = chosen_format(file, format);
    let name = file.display().to_string();
    let started = Instant::now();
    let parsed = if name == "-" {
        import::parse(format, std::io::stdin().lock())
    } else {
        let input = std::fs::File::open(file)
            .map_err(|e| Failure::Setup(format!("cannot open {name}: {e}")))?;
        import::parse(format, std::io::BufReader::with_capacity(1 << 20, input))
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

/// The progress bar of an import: on a terminal only, and only for files big enough to wait
/// for.
struct Bar {
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

impl Bar {
    const WORTH_SHOWING: usize = 20_000;

    fn new(n_rows: usize) -> Bar {
        let shown = n_rows >= Bar::WORTH_SHOWING && std::io::stderr().is_terminal();
        Bar {
            bar: shown.then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())),
            phase: None,
        }
    }

    fn update(&mut self, progress: Progress) {
        let Some(bar) = &self.bar else {
            return;
        };
        if self.phase != Some(progress.phase) {
            self.phase = Some(progress.phase);
            let label = match progress.phase {
                Phase::Loading => "loading the archive",
                Phase::Checking => "checking rows",
                Phase::Writing => "writing",
            };
            bar.reset();
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left)",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(label);
        }
        bar.set_length(progress.total);
        bar.set_position(progress.done);
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

async fn export_file(
    store: &RedirectStore,
    file: &std::path::Path,
    format: Option<FormatArg>,
) -> Result<(), Failure> {
    let format = chosen_format(file, format);
    let name = file.display().to_string();
    let started = Instant::now();
    let n = if name == "-" {
        let stdout = std::io::stdout().lock();
        let mut exporter = Exporter::new(format, std::io::BufWriter::new(stdout))
            .map_err(|e| Failure::Setup(format!("cannot write: {e}")))?;
        let n = store.export(|id, r| exporter.write(id, r)).await?;
        exporter
            .finish()
            .map_err(|e| Failure::Setup(format!("cannot write: {e}")))?;
        n
    } else {
        // Write next to the destination, then rename: a failed export leaves no half file.
        let partial = file.with_extension(format!(
            "{}partial",
            file.extension()
                .map(|e| format!("{}.", e.to_string_lossy()))
                .unwrap_or_default()
        ));
        let output = std::fs::File::create(&partial)
            .map_err(|e| Failure::Setup(format!("cannot create {}: {e}", partial.display())))?;
        let result = async {
            let mut exporter = Exporter::new(format, std::io::BufWriter::new(output))?;
            let n = store.export(|id, r| exporter.write(id, r)).await?;
            exporter
                .finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            std::fs::rename(&partial, file)?;
            Ok::<usize, StoreError>(n)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result.map_err(|e| Failure::Setup(format!("{name}: {e}")))?
    };
    eprintln!(
        "exported {n} records to {} in {:.1?}",
        if name == "-" {
            "standard output"
        } else {
            &name
        },
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirects::store::testing::TestRedis;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Test {
        #[command(subcommand)]
        command: RedirectsCommand,
    }

    fn config(redis: &TestRedis) -> RedirectsConfig {
        RedirectsConfig {
            redis_url: redis.url(),
            key_prefix: "cli:".into(),
            permanent_status: 301,
            temporary_status: 302,
            lookup_timeout: std::time::Duration::from_millis(50),
            cache_ttl: std::time::Duration::from_secs(5),
            cache_capacity: 10,
        }
    }

    fn parse(args: &[&str]) -> RedirectsCommand {
        Test::try_parse_from(std::iter::once("redirects").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn arguments_parse() {
        assert!(matches!(
            parse(&["set", "a", "b", "--temporary", "-r", "why"]),
            RedirectsCommand::Set { temporary: true, ref who, .. } if who.reason == "why"
        ));
        assert!(matches!(
            parse(&["list"]),
            RedirectsCommand::List { limit: 100, .. }
        ));
        assert!(matches!(
            parse(&["export"]),
            RedirectsCommand::Export { ref file, .. } if file.as_os_str() == "-"
        ));
        assert!(Test::try_parse_from(["redirects", "set", "a"]).is_err());
        assert!(matches!(
            parse(&["import", "--resume"]),
            RedirectsCommand::Import {
                resume: true,
                file: None,
                ..
            }
        ));
        assert!(Test::try_parse_from(["redirects", "import"]).is_err());
        assert!(Test::try_parse_from(["redirects", "import", "f.csv", "--resume"]).is_err());
        assert_eq!(by(Some("me".into())), "me");
    }

    #[test]
    fn exit_codes() {
        let redis = TestRedis::start();
        let config = config(&redis);
        let run_args = |args: &[&str]| {
            run(
                Some(&config),
                RedirectsArgs {
                    command: parse(args),
                },
            )
        };
        assert_eq!(run_args(&["set", "a", "b"]), ExitCode::SUCCESS);
        assert_eq!(run_args(&["set", "b", "a"]), ExitCode::from(1));
        assert_eq!(run_args(&["rm", "zzz"]), ExitCode::from(1));
        assert_eq!(run_args(&["show", "zzz"]), ExitCode::from(1));
        assert_eq!(run_args(&["show", "a"]), ExitCode::SUCCESS);
        assert_eq!(
            run(
                None,
                RedirectsArgs {
                    command: parse(&["list"])
                }
            ),
            ExitCode::from(2)
        );

        let dir = &redis.dir;
        let good = dir.join("good.csv");
        std::fs::write(&good, "old,new\nc,d\n").unwrap();
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "- old: e\n  new: f\n- old: d\n  new: c\n- old: q\n").unwrap();
        assert_eq!(
            run_args(&["import", good.to_str().unwrap()]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            run_args(&["import", bad.to_str().unwrap()]),
            ExitCode::from(1)
        );
        assert_eq!(run_args(&["import", "/nonexistent.csv"]), ExitCode::from(2));
        let out = dir.join("out.yaml");
        assert_eq!(
            run_args(&["export", out.to_str().unwrap()]),
            ExitCode::SUCCESS
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("- old: a\n  new: b\n"), "{text}");
        assert!(!dir.join("out.yaml.partial").exists());

        let mut dead = TestRedis::start();
        let dead_config = crate::redirects::cli::tests::config(&dead);
        dead.kill();
        assert_eq!(
            run(
                Some(&dead_config),
                RedirectsArgs {
                    command: parse(&["list"])
                }
            ),
            ExitCode::from(2)
        );
    }

    #[test]
    fn descriptions_read_well() {
        let change = Change {
            id: "a".into(),
            before: None,
            after: Some(Redirect {
                kind: Kind::Moved,
                target: Some("c".into()),
                changed_at: String::new(),
                changed_by: String::new(),
                reason: String::new(),
            }),
            cause: Cause::Shortened { via: "b".into() },
            note: String::new(),
        };
        assert_eq!(
            describe(&change),
            "a → c (moved, 301/308); b had already moved there"
        );
    }
}

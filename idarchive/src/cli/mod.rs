//! `iiif-gateway redirects …`: the admin CLI of the ID archive, one module per command.
//!
//! The gateway binary reads the Redis URL and key prefix from its configuration file's
//! `gateway.redirects` and hands them over as [`Settings`]; each command does one thing and says
//! what it did in plain words. Exit codes: 0 done, 1 refused (a rule, bad import rows, an
//! unknown identifier, an import already running), 2 configuration, connection or I/O failure.
//!
//! Modules: `edit.rs` (`set`, `gone`, `rm`), `show.rs`, `list.rs`, `import.rs` (`import`, also
//! `--resume`), `export.rs`; `progress.rs` is the import's progress bar.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::formats::Format;
use crate::model::{Edit, Kind};
use crate::store::{RedirectStore, StoreError};

mod edit;
mod export;
mod import;
mod list;
mod progress;
mod show;

pub use edit::describe;
pub use import::summary;

/// Edit the ID archive of retired identifiers (in Redis, shared by every gateway node).
///
/// A retired identifier answers 301/308 (moved), 302/307 (temporary) or 410 (gone). Chains
/// collapse (A → B then B → C stores A → C), loops are refused, and gone spreads along chains.
/// Redis comes from `gateway.redirects` in the configuration file (-c).
#[derive(Args, Debug)]
pub struct RedirectsArgs {
    // No doc comments on clap's fields and variants beyond what `--help` shows.
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: RedirectsCommand,
}

/// The commands (`--help` shows these comments).
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
        #[allow(missing_docs)]
        who: Who,
    },
    /// OLD is withdrawn (410 Gone), and so is every identifier that redirected to it.
    Gone {
        #[allow(missing_docs)]
        old: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        who: Who,
    },
    /// OLD is not retired any more: it is served as itself again (its history stays).
    Rm {
        #[allow(missing_docs)]
        old: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        who: Who,
    },
    /// The record of OLD and its history, newest first.
    Show {
        #[allow(missing_docs)]
        old: String,
    },
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

/// A file format named on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
#[allow(missing_docs)] // a doc comment would become help text
pub enum FormatArg {
    Csv,
    Yaml,
}

/// Where the archive lives: the configuration file's `gateway.redirects`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `redis://[:password@]host:port/db`, `rediss://…` or `unix://…`.
    pub redis_url: String,
    /// The key prefix `P`.
    pub key_prefix: String,
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

/// Runs one `redirects` command against the archive at `settings` (`None`: the configuration
/// has no `gateway.redirects`).
pub fn run(settings: Option<&Settings>, args: RedirectsArgs) -> ExitCode {
    let Some(settings) = settings else {
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
    match runtime.block_on(execute(settings, args.command)) {
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

async fn execute(settings: &Settings, command: RedirectsCommand) -> Result<(), Failure> {
    let store = RedirectStore::connect(&settings.redis_url, &settings.key_prefix).await?;
    match command {
        RedirectsCommand::Set {
            old,
            new,
            temporary,
            who,
        } => {
            let edit = Edit::Redirect {
                old,
                new,
                temporary,
            };
            edit::run(&store, &edit, who).await
        }
        RedirectsCommand::Gone { old, who } => edit::run(&store, &Edit::Gone { old }, who).await,
        RedirectsCommand::Rm { old, who } => edit::run(&store, &Edit::Remove { old }, who).await,
        RedirectsCommand::Show { old } => show::run(&store, &old).await,
        RedirectsCommand::List { prefix, limit } => list::run(&store, &prefix, limit).await,
        RedirectsCommand::Import { resume: true, .. } => import::resume(&store).await,
        RedirectsCommand::Import {
            file,
            dry_run,
            format,
            by: who,
            ..
        } => {
            let file = file.unwrap_or_else(|| PathBuf::from("-"));
            import::run(&store, &file, dry_run, format, &by(who)).await
        }
        RedirectsCommand::Export { file, format } => export::run(&store, &file, format).await,
    }
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

/// `--format`, else what the file name says.
fn chosen_format(file: &std::path::Path, format: Option<FormatArg>) -> Format {
    match format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Yaml) => Format::Yaml,
        None => Format::from_path(file),
    }
}

#[cfg(test)]
mod tests;

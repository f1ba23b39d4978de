//! What can go wrong while starting or stopping the stack. Every error names the service, and
//! where there is one, its log file and the last lines of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A failure of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An external program is not where it is looked for.
    #[error("{name} not found at {} (set {env} to use another); {hint}", path.display())]
    MissingBinary {
        /// The program.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The variable that overrides the path.
        env: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// A program could not be started at all.
    #[error("cannot start {service} ({}): {source}", binary.display())]
    Spawn {
        /// The service.
        service: String,
        /// The program.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The service did not answer its protocol before the deadline.
    #[error("{0}")]
    NotReady(Box<NotReady>),
    /// The service's process ended while it was being started.
    #[error("{0}")]
    Exited(Box<Exited>),
    /// A port the stack was told to use is taken.
    #[error("port 127.0.0.1:{port} for {service} is already in use by a process the stack did not start")]
    PortInUse {
        /// The service.
        service: String,
        /// The port.
        port: u16,
    },
    /// A service's setup (credentials, an upload, a certificate) failed.
    #[error("{service}: {message}")]
    Setup {
        /// The service.
        service: String,
        /// What failed.
        message: String,
    },
    /// A file or directory of the stack could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A service that did not answer its protocol before the deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "{service} did not answer on {address} within {}s (last probe: {last_probe}); its log {}:{}",
    waited.as_secs_f32(), log.display(), indent(log_tail)
)]
pub struct NotReady {
    /// The service.
    pub service: String,
    /// Where it was probed.
    pub address: String,
    /// How long it was given.
    pub waited: Duration,
    /// The last probe's failure.
    pub last_probe: String,
    /// Its log file.
    pub log: PathBuf,
    /// The last lines of the log.
    pub log_tail: String,
}

/// A service whose process ended while it was being started.
#[derive(Debug, thiserror::Error)]
#[error("{service} exited during startup ({status}); its log {}:{}", log.display(), indent(log_tail))]
pub struct Exited {
    /// The service.
    pub service: String,
    /// How it ended.
    pub status: String,
    /// Its log file.
    pub log: PathBuf,
    /// The last lines of the log.
    pub log_tail: String,
}

impl Error {
    /// Whether a start on free ports may have lost one of them to another process between
    /// choosing and binding it (the port was taken, or the process ended while starting), so
    /// that starting again on new free ports is worth it.
    pub fn may_be_port_collision(&self) -> bool {
        matches!(self, Error::PortInUse { .. } | Error::Exited(_))
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// An [`Error::Setup`] of `service`.
    pub fn setup(service: &str, message: impl Into<String>) -> Error {
        Error::Setup {
            service: service.to_owned(),
            message: message.into(),
        }
    }
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn indent(text: &str) -> String {
    if text.is_empty() {
        " (empty)".to_owned()
    } else {
        text.lines().map(|line| format!("\n    {line}")).collect()
    }
}

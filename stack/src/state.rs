//! The state file of a running `stack up` (`DIR/run/stack.json`): which process runs the
//! stack, the variables that describe it, and its service processes, so that `stack env` and
//! `stack down` work from another shell. Every pid is stored with its start time and only
//! signalled while both still match, so a recycled pid is never touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::process::{signal_if_same, start_time_of};

/// A process as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The service (`stack` for the launcher itself).
    pub service: String,
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat` field 22), to recognise it.
    pub start_time: u64,
}

impl Recorded {
    /// The process `pid` as it is now; `None` when it does not run.
    pub fn now(service: &str, pid: u32) -> Option<Recorded> {
        Some(Recorded {
            service: service.to_owned(),
            pid,
            start_time: start_time_of(pid)?,
        })
    }

    /// Whether it is still the same running process.
    pub fn is_running(&self) -> bool {
        start_time_of(self.pid) == Some(self.start_time)
    }

    /// Sends `signal` if it is still the same process.
    pub fn signal(&self, signal: Signal) -> bool {
        signal_if_same(self.pid, self.start_time, signal)
    }

    /// Waits until it has exited; false after `within`.
    pub fn wait_gone(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

/// What `DIR/run/stack.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The `stack up` process.
    pub launcher: Recorded,
    /// The variables of [`crate::Stack::env`].
    pub env: Vec<(String, String)>,
    /// Its service processes at the time it became ready.
    pub services: Vec<Recorded>,
}

/// The state file of the stack directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("run").join("stack.json")
}

impl State {
    /// Reads the state file; `None` when there is none.
    ///
    /// # Errors
    /// When it exists but cannot be read or parsed.
    pub fn read(dir: &Path) -> Result<Option<State>, Error> {
        let file = path(dir);
        match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::setup("stack", format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                path: file,
                source: e,
            }),
        }
    }

    /// Writes it atomically (a reader never sees half a file).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let file = path(dir);
        let part = file.with_extension("json.part");
        let text = serde_json::to_string_pretty(self).expect("the state serialises");
        std::fs::write(&part, text).map_err(Error::io(&part))?;
        std::fs::rename(&part, &file).map_err(Error::io(&file))
    }

    /// Removes the state file of `dir` (gone already is fine).
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(path(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), None);
        let state = State {
            launcher: Recorded::now("stack", std::process::id()).unwrap(),
            env: vec![("STACK_DIR".into(), "/x".into())],
            services: Vec::new(),
        };
        state.write(dir.path()).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), Some(state.clone()));
        assert!(state.launcher.is_running());
        State::remove(dir.path());
        assert_eq!(State::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_process_with_another_start_time_is_not_running() {
        let mut me = Recorded::now("stack", std::process::id()).unwrap();
        me.start_time += 1;
        assert!(!me.is_running());
        assert!(!me.signal(Signal::SIGCONT));
    }
}

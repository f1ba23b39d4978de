//! One child process of the stack: started with its output appended to a log file, in its own
//! process group (so a Ctrl-C at the terminal reaches only the launcher, which then stops every
//! service in order), stopped with its own signal and a deadline, killed when dropped.

use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{log_tail, Error, Exited, NotReady};
use crate::probe::Probe;

/// How many log lines an error quotes.
const TAIL_LINES: usize = 30;

/// How often readiness is probed.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running service process.
#[derive(Debug)]
pub struct Process {
    service: String,
    child: Child,
    log: PathBuf,
    stop_signal: Signal,
    stop_within: Duration,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` as `service`: stdin from /dev/null, stdout and stderr appended to `log`,
    /// in a process group of its own. Stopped with `stop_signal`, then SIGKILL after
    /// `stop_within`.
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be opened, [`Error::Spawn`] when the program cannot run.
    pub fn spawn(
        service: &str,
        command: &mut Command,
        log: &Path,
        stop_signal: Signal,
        stop_within: Duration,
    ) -> Result<Process, Error> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(log))?;
        let err = out.try_clone().map_err(Error::io(log))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                service: service.to_owned(),
                binary: PathBuf::from(command.get_program()),
                source,
            })?;
        Ok(Process {
            service: service.to_owned(),
            child,
            log: log.to_path_buf(),
            stop_signal,
            stop_within,
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether it still runs.
    pub fn is_alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` (SIGSTOP and SIGCONT included); false when the process is gone.
    pub fn signal(&mut self, signal: Signal) -> bool {
        self.is_alive() && kill(pid(self.child.id()), signal).is_ok()
    }

    /// Its stop signal, then SIGKILL after the deadline; waits until it has exited.
    pub fn stop(&mut self) {
        if self.signal(self.stop_signal) && !self.wait_for_exit(self.stop_within) {
            eprintln!(
                "stack: {} (pid {}) did not exit within {}s after {}; sending SIGKILL",
                self.service,
                self.pid(),
                self.stop_within.as_secs(),
                self.stop_signal
            );
        }
        self.kill();
    }

    /// SIGKILL, then waits (a stopped process ends too).
    pub fn kill(&mut self) {
        if self.is_alive() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    fn wait_for_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.is_alive()
    }

    /// Polls `probe` until it succeeds, the process exits, or `within` has passed.
    ///
    /// # Errors
    /// [`Error::Exited`] or [`Error::NotReady`], each with the end of the log.
    pub fn wait_ready(
        &mut self,
        address: &str,
        within: Duration,
        mut probe: impl FnMut() -> Probe,
    ) -> Result<(), Error> {
        let log = self.log.clone();
        let service = self.service.clone();
        poll_ready(&service, address, &log, within, &mut probe, || {
            self.exit_status().map(describe)
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` every 50 ms until it succeeds; fails when `exited` reports an end of the
/// process or after `within`, naming the service, the address, the last probe error and the
/// log.
///
/// # Errors
/// [`Error::Exited`] or [`Error::NotReady`].
pub fn poll_ready(
    service: &str,
    address: &str,
    log: &Path,
    within: Duration,
    probe: &mut dyn FnMut() -> Probe,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    loop {
        let last_probe = match probe() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if let Some(status) = exited() {
            return Err(Error::Exited(Box::new(Exited {
                service: service.to_owned(),
                status,
                log: log.to_path_buf(),
                log_tail: log_tail(log, TAIL_LINES),
            })));
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady(Box::new(NotReady {
                service: service.to_owned(),
                address: address.to_owned(),
                waited: within,
                last_probe,
                log: log.to_path_buf(),
                log_tail: log_tail(log, TAIL_LINES),
            })));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// "exit status 1" or "killed by signal 11".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Now as `2026-01-31T12:34:56Z`, for log lines.
pub fn timestamp() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(seconds)
}

/// `seconds` since the epoch as an RFC 3339 UTC time (the civil-from-days algorithm of
/// Howard Hinnant's date library).
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (hour, minute, second) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

fn pid(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).expect("a pid fits in i32"))
}

/// Sends `signal` to the process `id` when it is still the process that started at
/// `start_time` (so a recycled pid is never signalled). False when it is gone or another one.
pub fn signal_if_same(id: u32, start_time: u64, signal: Signal) -> bool {
    start_time_of(id) == Some(start_time) && kill(pid(id), signal).is_ok()
}

/// When the process `id` started (clock ticks since boot, `/proc/PID/stat` field 22); `None`
/// when there is no such process or it is a zombie.
pub fn start_time_of(id: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn output_goes_to_the_log_and_the_exit_is_described() {
        let dir = scratch();
        let log = dir.path().join("echo.log");
        let mut process = Process::spawn(
            "echo",
            Command::new("sh").args(["-c", "echo hello; exit 3"]),
            &log,
            Signal::SIGTERM,
            Duration::from_secs(1),
        )
        .unwrap();
        let error = process
            .wait_ready("nowhere", Duration::from_secs(5), || Err("never".into()))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("echo exited during startup (exit status 3)"),
            "{message}"
        );
        assert!(message.contains("hello"), "{message}");
    }

    #[test]
    fn the_deadline_names_the_last_probe_error_and_the_log() {
        let dir = scratch();
        let log = dir.path().join("sleep.log");
        let mut process = Process::spawn(
            "sleeper",
            Command::new("sleep").arg("30"),
            &log,
            Signal::SIGTERM,
            Duration::from_secs(1),
        )
        .unwrap();
        let error = process
            .wait_ready("127.0.0.1:1", Duration::from_millis(200), || {
                Err("connection refused".into())
            })
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("sleeper did not answer on 127.0.0.1:1"),
            "{message}"
        );
        assert!(message.contains("connection refused"), "{message}");
        assert!(message.contains("sleep.log"), "{message}");
        process.stop();
        assert!(!process.is_alive());
        assert_eq!(
            process.exit_status().map(describe).as_deref(),
            Some("killed by signal 15")
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn a_recycled_pid_is_not_signalled() {
        let own = std::process::id();
        let started = start_time_of(own).expect("our own start time");
        assert!(!signal_if_same(own, started + 1, Signal::SIGCONT));
        assert!(signal_if_same(own, started, Signal::SIGCONT));
    }
}

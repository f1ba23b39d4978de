//! A pool of stock iipsrv 1.1 FastCGI processes, one per loopback port, each with a clean
//! environment (`FILESYSTEM_PREFIX`, `MAX_CVT`, `JPEG_QUALITY`, …). Supervised, a process that
//! dies (iipsrv 1.1 segfaults on some requests) is started again with a short backoff, as
//! systemd's `Restart=always` does in production; unsupervised (the end-to-end tests, which
//! kill processes on purpose) it stays dead until [`Iipsrv::restart`]. Ready when every process
//! answers a FastCGI `GET_VALUES` record.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::binaries::IIPSRV;
use crate::error::Error;
use crate::ports;
use crate::probe;
use crate::process::{self, describe, Process};

/// How long a process may take to answer FastCGI.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// The first restart waits this long; each quick death doubles it up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A process that ran this long crashed on a request (restart at once-ish); one that died
/// sooner probably cannot start at all (port taken, bad prefix) and backs off.
const RAN_A_WHILE: Duration = Duration::from_secs(10);

/// How to run the pool.
#[derive(Debug, Clone)]
pub struct IipsrvSpec {
    /// How many processes (ignored when `ports` is given).
    pub processes: usize,
    /// Fixed ports, one process each; free ones when empty.
    pub ports: Vec<u16>,
    /// iipsrv's `FILESYSTEM_PREFIX`: the directory identifiers are resolved in.
    pub root: PathBuf,
    /// Where `iipsrv-PORT.log` (iipsrv's `LOGFILE`) and `iipsrv-PORT.supervise.log` (its output,
    /// starts, crashes, restarts) go.
    pub log_dir: PathBuf,
    /// `MAX_CVT`: the largest output side iipsrv renders without distortion.
    pub max_cvt: u32,
    /// `JPEG_QUALITY`.
    pub jpeg_quality: u8,
    /// `VERBOSITY`.
    pub verbosity: u8,
    /// `URI_MAP`, e.g. `iiif=>IIIF` (the nginx baseline needs it).
    pub uri_map: Option<String>,
    /// `CORS`, e.g. `*`.
    pub cors: Option<String>,
    /// Restart processes that die.
    pub supervise: bool,
    /// Where `iipsrv-PORT.pid` names the current process (rewritten on each restart), for
    /// scripts that watch the processes; none when `None`.
    pub pid_dir: Option<PathBuf>,
}

impl IipsrvSpec {
    /// Two supervised processes on free ports reading `root`, with the stack's defaults
    /// (`MAX_CVT` 5000, `JPEG_QUALITY` 90, `VERBOSITY` 1).
    pub fn new(root: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> IipsrvSpec {
        IipsrvSpec {
            processes: 2,
            ports: Vec::new(),
            root: root.into(),
            log_dir: log_dir.into(),
            max_cvt: 5000,
            jpeg_quality: 90,
            verbosity: 1,
            uri_map: None,
            cors: None,
            supervise: true,
            pid_dir: None,
        }
    }

    /// The environment iipsrv runs with, and nothing else: its memcached client off
    /// (`MEMCACHED_SERVERS=`) and one thread (`OMP_NUM_THREADS=1`, one process per core).
    fn environment(&self, root: &Path, logfile: &Path) -> Vec<(&'static str, String)> {
        // FILESYSTEM_PREFIX is a plain string prefix: absolute, with a trailing slash.
        let mut prefix = root.display().to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let mut env = vec![
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
            ("FILESYSTEM_PREFIX", prefix),
            ("MAX_CVT", self.max_cvt.to_string()),
            ("JPEG_QUALITY", self.jpeg_quality.to_string()),
            ("VERBOSITY", self.verbosity.to_string()),
            ("LOGFILE", logfile.display().to_string()),
            ("MEMCACHED_SERVERS", String::new()),
            ("OMP_NUM_THREADS", "1".to_owned()),
        ];
        if let Some(map) = &self.uri_map {
            env.push(("URI_MAP", map.clone()));
        }
        if let Some(cors) = &self.cors {
            env.push(("CORS", cors.clone()));
        }
        env
    }
}

/// The running pool.
#[derive(Debug)]
pub struct IipsrvPool {
    processes: Vec<Iipsrv>,
}

impl IipsrvPool {
    /// Starts every process and waits until each answers FastCGI.
    ///
    /// # Errors
    /// A missing binary or image directory, a taken fixed port, or a process that does not
    /// answer within 15 s (the error quotes its log).
    pub fn start(spec: IipsrvSpec) -> Result<IipsrvPool, Error> {
        let binary = IIPSRV.require()?;
        let root = std::fs::canonicalize(&spec.root).map_err(|e| {
            Error::setup(
                "iipsrv",
                format!(
                    "image directory {}: {e} (run deploy/local/make-samples)",
                    spec.root.display()
                ),
            )
        })?;
        std::fs::create_dir_all(&spec.log_dir).map_err(Error::io(&spec.log_dir))?;
        let spec = Arc::new(IipsrvSpec { root, ..spec });
        if !spec.ports.is_empty() {
            return IipsrvPool::start_on(&binary, &spec, spec.ports.clone());
        }
        // Tests start many stacks at once: a port free when chosen can be taken before
        // iipsrv binds it, so a collision chooses new ports (a failed attempt's processes
        // are stopped when dropped).
        ports::retry_on_collision(|| {
            IipsrvPool::start_on(&binary, &spec, ports::free_ports(spec.processes))
        })
    }

    fn start_on(
        binary: &Path,
        spec: &Arc<IipsrvSpec>,
        ports: Vec<u16>,
    ) -> Result<IipsrvPool, Error> {
        for &port in &ports {
            ports::check_free("iipsrv", port)?;
        }
        let mut processes = Vec::new();
        for port in ports {
            processes.push(Iipsrv::start(binary.to_path_buf(), spec.clone(), port)?);
        }
        for process in &mut processes {
            process.wait_ready()?;
        }
        Ok(IipsrvPool { processes })
    }

    /// The processes, in port order as given.
    pub fn processes(&self) -> &[Iipsrv] {
        &self.processes
    }

    /// The processes, for tests that kill and restart them.
    pub fn processes_mut(&mut self) -> &mut [Iipsrv] {
        &mut self.processes
    }

    /// `127.0.0.1:PORT` of each process, for the gateway's and nginx's backend lists.
    pub fn addresses(&self) -> Vec<String> {
        self.processes
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect()
    }

    /// Stops every process (and its supervision).
    pub fn stop(&mut self) {
        for process in &mut self.processes {
            process.stop();
        }
    }

    /// Into its processes (the end-to-end tests index them).
    pub fn into_processes(self) -> Vec<Iipsrv> {
        self.processes
    }
}

/// One iipsrv process on one port.
#[derive(Debug)]
pub struct Iipsrv {
    /// Its port on 127.0.0.1.
    pub port: u16,
    slot: Arc<Slot>,
    supervisor: Option<JoinHandle<()>>,
}

/// What the process and its supervisor share.
#[derive(Debug)]
struct Slot {
    binary: PathBuf,
    spec: Arc<IipsrvSpec>,
    port: u16,
    logfile: PathBuf,
    supervise_log: PathBuf,
    process: Mutex<Option<Process>>,
    stopping: AtomicBool,
    restarts: AtomicU32,
}

impl Slot {
    fn process(&self) -> MutexGuard<'_, Option<Process>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) -> Result<Process, Error> {
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .envs(self.spec.environment(&self.spec.root, &self.logfile))
            .args(["--bind", &format!("127.0.0.1:{}", self.port)]);
        let process = Process::spawn(
            &format!("iipsrv :{}", self.port),
            &mut command,
            &self.supervise_log,
            // iipsrv exits on SIGTERM once its current request is done.
            Signal::SIGTERM,
            Duration::from_secs(5),
        )?;
        self.say(&format!("started iipsrv pid {}", process.pid()));
        if let Some(dir) = &self.spec.pid_dir {
            let file = dir.join(format!("iipsrv-{}.pid", self.port));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&file, format!("{}\n", process.pid())))
                .map_err(Error::io(file))?;
        }
        Ok(process)
    }

    fn remove_pid_file(&self) {
        if let Some(dir) = &self.spec.pid_dir {
            let _ = std::fs::remove_file(dir.join(format!("iipsrv-{}.pid", self.port)));
        }
    }

    /// A line in the supervise log, as iipsrv-supervise wrote them.
    fn say(&self, message: &str) {
        let mut line = String::new();
        let _ = write!(
            line,
            "{} iipsrv-supervise :{} {message}",
            process::timestamp(),
            self.port
        );
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.supervise_log)
        {
            let _ = writeln!(file, "{line}");
        }
    }

    /// The supervisor: restarts the process whenever it has died, until `stopping`.
    fn supervise(&self) {
        let mut backoff = BACKOFF_INITIAL;
        let mut started = Instant::now();
        while !self.stopping.load(Ordering::SeqCst) {
            let ended = self.process().as_mut().and_then(Process::exit_status);
            let Some(status) = ended else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let ran = started.elapsed();
            if ran >= RAN_A_WHILE {
                backoff = BACKOFF_INITIAL;
            }
            let n = self.restarts.fetch_add(1, Ordering::SeqCst) + 1;
            let pid = self.process().as_ref().map_or(0, Process::pid);
            self.say(&format!(
                "iipsrv pid {pid} {} after {}s; restart #{n} in {:.1}s",
                describe(status),
                ran.as_secs(),
                backoff.as_secs_f32()
            ));
            let wake = Instant::now() + backoff;
            while Instant::now() < wake && !self.stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            let mut process = self.process();
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match self.spawn() {
                Ok(new) => *process = Some(new),
                Err(error) => self.say(&format!("cannot restart: {error}")),
            }
            started = Instant::now();
        }
    }
}

impl Iipsrv {
    fn start(binary: PathBuf, spec: Arc<IipsrvSpec>, port: u16) -> Result<Iipsrv, Error> {
        let slot = Arc::new(Slot {
            binary,
            logfile: spec.log_dir.join(format!("iipsrv-{port}.log")),
            supervise_log: spec.log_dir.join(format!("iipsrv-{port}.supervise.log")),
            spec,
            port,
            process: Mutex::new(None),
            stopping: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
        });
        slot.say(&format!(
            "supervising {} on 127.0.0.1:{port} (images {})",
            slot.binary.display(),
            slot.spec.root.display()
        ));
        *slot.process() = Some(slot.spawn()?);
        let supervisor = slot.spec.supervise.then(|| {
            let slot = slot.clone();
            std::thread::spawn(move || slot.supervise())
        });
        Ok(Iipsrv {
            port,
            slot,
            supervisor,
        })
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let supervised = self.supervisor.is_some();
        let slot = self.slot.clone();
        process::poll_ready(
            &format!("iipsrv :{}", self.port),
            &addr.to_string(),
            &self.slot.supervise_log,
            READY_WITHIN,
            &mut || probe::fastcgi(addr),
            // A supervised process that dies is restarted: only the deadline ends the wait.
            || {
                if supervised {
                    return None;
                }
                slot.process()
                    .as_mut()
                    .and_then(Process::exit_status)
                    .map(describe)
            },
        )
    }

    /// The current process id (a supervised process gets a new one on each restart).
    pub fn pid(&self) -> Option<u32> {
        self.slot.process().as_ref().map(Process::pid)
    }

    /// How many times the supervisor restarted it (crashes).
    pub fn restarts(&self) -> u32 {
        self.slot.restarts.load(Ordering::SeqCst)
    }

    /// Whether the process is running (a segfault ends it).
    pub fn is_alive(&mut self) -> bool {
        self.slot.process().as_mut().is_some_and(Process::is_alive)
    }

    /// SIGKILL, as a crash would (a supervised process is then restarted).
    pub fn kill(&mut self) {
        if let Some(process) = self.slot.process().as_mut() {
            process.kill();
        }
    }

    /// A fresh process on the same port, as a supervisor does after a crash; waits until it
    /// answers.
    ///
    /// # Panics
    /// When it does not start (the error quotes its log).
    pub fn restart(&mut self) {
        let mut process = self.slot.process();
        if let Some(old) = process.as_mut() {
            old.kill();
        }
        *process = Some(self.slot.spawn().unwrap_or_else(|e| panic!("{e}")));
        drop(process);
        self.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    }

    /// iipsrv's own log (`LOGFILE`).
    pub fn log_path(&self) -> &Path {
        &self.slot.logfile
    }

    /// Its output and the supervisor's lines (starts, crashes, restarts).
    pub fn supervise_log(&self) -> &Path {
        &self.slot.supervise_log
    }

    /// Stops supervision, then the process.
    pub fn stop(&mut self) {
        self.slot.stopping.store(true, Ordering::SeqCst);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        if let Some(process) = self.slot.process().as_mut() {
            process.stop();
        }
        self.slot.remove_pid_file();
        self.slot.say("stopped");
    }
}

impl Drop for Iipsrv {
    fn drop(&mut self) {
        self.slot.stopping.store(true, Ordering::SeqCst);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        if let Some(process) = self.slot.process().as_mut() {
            process.kill();
        }
        self.slot.remove_pid_file();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, supervise: bool) -> IipsrvSpec {
        IipsrvSpec {
            processes: 1,
            supervise,
            ..IipsrvSpec::new(dir, dir.join("log"))
        }
    }

    #[test]
    fn a_clean_environment_with_an_absolute_prefix() {
        let spec = IipsrvSpec {
            uri_map: Some("iiif=>IIIF".into()),
            ..IipsrvSpec::new("/images", "/log")
        };
        let env = spec.environment(Path::new("/images"), Path::new("/log/iipsrv-1.log"));
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("FILESYSTEM_PREFIX"), Some("/images/"));
        assert_eq!(get("MAX_CVT"), Some("5000"));
        assert_eq!(get("URI_MAP"), Some("iiif=>IIIF"));
        assert_eq!(get("CORS"), None);
        assert_eq!(get("MEMCACHED_SERVERS"), Some(""));
    }

    #[test]
    fn a_supervised_process_comes_back_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut pool = IipsrvPool::start(spec(dir.path(), true)).unwrap();
        let process = &mut pool.processes_mut()[0];
        let first = process.pid();
        process.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.restarts() == 0 || !process.is_alive() {
            assert!(Instant::now() < deadline, "not restarted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_ne!(process.pid(), first);
        process.wait_ready().unwrap();
        let log = std::fs::read_to_string(process.supervise_log()).unwrap();
        assert!(log.contains("killed by signal 9"), "{log}");
        assert!(log.contains("restart #1"), "{log}");
        pool.stop();
    }

    #[test]
    fn an_unsupervised_process_stays_dead_until_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let pool = IipsrvPool::start(spec(dir.path(), false)).unwrap();
        let mut process = pool.into_processes().remove(0);
        process.kill();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!process.is_alive());
        assert!(probe::fastcgi(([127, 0, 0, 1], process.port).into()).is_err());
        process.restart();
        assert!(process.is_alive());
        assert_eq!(process.restarts(), 0);
    }

    #[test]
    fn a_missing_image_directory_says_what_to_run() {
        let error = IipsrvPool::start(IipsrvSpec::new("/nonexistent/images", "/tmp"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("make-samples"), "{error}");
    }
}

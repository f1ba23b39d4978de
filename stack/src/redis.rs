//! A private redis-server: on a loopback port, without persistence unless asked, optionally
//! with a password and TLS (a throwaway CA made with openssl). Ready when it answers `PING`.
//! [`Redis::connection`] is the tests' client (the `redis` crate, not a hand-written parser).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::binaries::{OPENSSL, REDIS_SERVER};
use crate::error::Error;
use crate::ports;
use crate::probe;
use crate::process::Process;

/// How long redis-server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// What Redis to start.
#[derive(Debug, Clone, Default)]
pub struct RedisSpec {
    /// Its working directory (`--dir`) and the TLS files; created.
    pub dir: PathBuf,
    /// Its log file; `dir/redis.log` when `None`.
    pub log: Option<PathBuf>,
    /// A fixed port; a free one when `None`.
    pub port: Option<u16>,
    /// `requirepass`; the URL carries it.
    pub password: Option<String>,
    /// Speak only TLS, with a certificate for 127.0.0.1 from a throwaway CA.
    pub tls: bool,
    /// More `redis-server` arguments (e.g. `--appendonly yes` for a test of persistence).
    pub args: Vec<String>,
}

/// A running redis-server, killed when dropped.
#[derive(Debug)]
pub struct Redis {
    spec: RedisSpec,
    port: u16,
    ca: Option<Vec<u8>>,
    process: Process,
    _temp: Option<tempfile::TempDir>,
}

impl Redis {
    /// Starts redis-server and waits until it answers `PING`.
    ///
    /// # Errors
    /// A missing binary, a taken fixed port, a failed certificate, or no answer in 10 s.
    pub fn start(spec: RedisSpec) -> Result<Redis, Error> {
        if spec.port.is_some() {
            return Redis::start_once(spec);
        }
        ports::retry_on_collision(|| Redis::start_once(spec.clone()))
    }

    fn start_once(spec: RedisSpec) -> Result<Redis, Error> {
        std::fs::create_dir_all(&spec.dir).map_err(Error::io(&spec.dir))?;
        let port = ports::fixed_or_free(spec.port);
        ports::check_free("redis", port)?;
        let ca = if spec.tls {
            Some(make_certificates(&spec.dir)?)
        } else {
            None
        };
        let process = spawn(&spec, port)?;
        let mut redis = Redis {
            spec,
            port,
            ca,
            process,
            _temp: None,
        };
        redis.wait_ready()?;
        Ok(redis)
    }

    /// A Redis for one test, in a temporary directory on a free port.
    ///
    /// # Panics
    /// When it does not start (the error says why).
    pub fn new() -> Redis {
        Self::temporary(RedisSpec::default())
    }

    /// A Redis for one test with `spec`'s settings, in a temporary directory on a free port.
    ///
    /// # Panics
    /// When it does not start (the error says why).
    pub fn temporary(spec: RedisSpec) -> Redis {
        let temp = tempfile::Builder::new()
            .prefix("stack-redis-")
            .tempdir()
            .expect("a temporary directory");
        let spec = RedisSpec {
            dir: temp.path().to_path_buf(),
            ..spec
        };
        let mut redis = Redis::start(spec).unwrap_or_else(|e| panic!("{e}"));
        redis._temp = Some(temp);
        redis
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let url = self.url();
        let ca = self.ca.clone();
        self.process
            .wait_ready(&format!("127.0.0.1:{}", self.port), READY_WITHIN, || {
                probe::redis(&url, ca.as_deref())
            })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (for a test that signals it).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`, `rediss://…` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.spec.tls { "rediss" } else { "redis" };
        let auth = self
            .spec
            .password
            .as_ref()
            .map(|password| format!(":{password}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}/0", self.port)
    }

    /// The throwaway CA's certificate (PEM) of a TLS Redis.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_deref()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// A new synchronous connection (the `redis` crate's).
    ///
    /// # Errors
    /// When Redis does not accept it.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        client(&self.url(), self.ca.as_deref())?.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// Whether it answers `PING` right now.
    pub fn ping(&self) -> bool {
        probe::redis(&self.url(), self.ca.as_deref()).is_ok()
    }

    /// SIGKILL: the port stops answering at once.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then waits.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// A fresh server on the same port and directory (empty, unless persistence was asked).
    ///
    /// # Panics
    /// When it does not start again.
    pub fn restart(&mut self) {
        self.kill();
        self.process = spawn(&self.spec, self.port).unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGSTOP: connections stay open but nothing is answered.
    pub fn pause(&mut self) {
        assert!(self.process.signal(Signal::SIGSTOP), "redis is not running");
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        assert!(self.process.signal(Signal::SIGCONT), "redis is not running");
    }
}

impl Default for Redis {
    fn default() -> Self {
        Redis::new()
    }
}

/// A `redis` client for `url`; with `ca`, TLS trusts that certificate instead of the web roots.
///
/// # Errors
/// When the URL is invalid.
pub fn client(url: &str, ca: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    match ca {
        None => redis::Client::open(url),
        Some(pem) => {
            // rediss:// needs a process-wide rustls provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )
        }
    }
}

fn spawn(spec: &RedisSpec, port: u16) -> Result<Process, Error> {
    let binary = REDIS_SERVER.require()?;
    let mut command = Command::new(binary);
    command
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&spec.dir);
    if spec.tls {
        let file = |name: &str| spec.dir.join(name);
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(file("server.pem"))
            .arg("--tls-key-file")
            .arg(file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(file("ca.pem"))
            .args(["--tls-auth-clients", "no"]);
    } else {
        command.args(["--port", &port.to_string()]);
    }
    if let Some(password) = &spec.password {
        command.args(["--requirepass", password]);
    }
    // Later arguments win in redis-server, so these can override the defaults above.
    command.args(&spec.args);
    let log = spec
        .log
        .clone()
        .unwrap_or_else(|| spec.dir.join("redis.log"));
    Process::spawn(
        "redis",
        &mut command,
        &log,
        Signal::SIGTERM,
        Duration::from_secs(10),
    )
}

/// A CA and a server certificate for 127.0.0.1 in `dir` (`ca.pem`, `server.pem`,
/// `server.key`); returns the CA certificate.
fn make_certificates(dir: &Path) -> Result<Vec<u8>, Error> {
    let openssl_bin = OPENSSL.require()?;
    let openssl = |args: &[&str]| -> Result<(), Error> {
        let output = Command::new(&openssl_bin)
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| Error::setup("redis", format!("openssl: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::setup(
                "redis",
                format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ),
            ))
        }
    };
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(Error::io(&ext))?;
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=stack-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    let ca = dir.join("ca.pem");
    std::fs::read(&ca).map_err(Error::io(ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_restarts_empty() {
        let mut redis = Redis::new();
        let mut connection = redis.connection().unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query(&mut connection)
            .unwrap();
        redis.kill();
        assert!(!redis.ping());
        redis.restart();
        let value: Option<String> = redis::cmd("GET")
            .arg("k")
            .query(&mut redis.connection().unwrap())
            .unwrap();
        assert_eq!(value, None, "no persistence");
    }

    #[test]
    fn a_password_is_required_and_carried_by_the_url() {
        let redis = Redis::temporary(RedisSpec {
            password: Some("s3cret".into()),
            ..RedisSpec::default()
        });
        assert!(redis.url().contains(":s3cret@"));
        assert!(redis.ping());
        let without = format!("redis://127.0.0.1:{}/0", redis.port());
        assert!(probe::redis(&without, None).is_err());
    }

    #[test]
    fn tls_with_a_throwaway_ca() {
        let redis = Redis::temporary(RedisSpec {
            tls: true,
            ..RedisSpec::default()
        });
        assert!(redis.url().starts_with("rediss://"));
        assert!(redis.ping());
        // Plain text to a TLS port is not an answer.
        let plain = format!("redis://127.0.0.1:{}/0", redis.port());
        assert!(probe::redis(&plain, None).is_err());
    }

    #[test]
    fn pause_and_resume() {
        let mut redis = Redis::new();
        redis.pause();
        assert!(!redis.ping());
        redis.resume();
        assert!(redis.ping());
    }
}

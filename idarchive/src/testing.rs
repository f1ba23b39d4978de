//! A real `redis-server` per test, on a free loopback port, killed (and its directory removed)
//! on drop: plain, with a password, TLS-only, or with persistence, for this crate's tests and
//! the gateway's (cargo feature `testing`).
//!
//! Needs `redis-server` on the `PATH` (`apt install redis-server`), and `openssl` for
//! [`TestRedis::start_tls`].

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::store::RedirectStore;

/// A running `redis-server` of one test.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    password: Option<String>,
    /// The arguments after the port, dir and password (`PORT` stands for the port).
    extra: Vec<String>,
    tls: bool,
    child: Child,
    dir: PathBuf,
}

/// A free loopback port (free when asked; the caller retries if another process takes it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestRedis {
    /// A Redis without password or persistence.
    pub fn start() -> TestRedis {
        TestRedis::start_with(None, &[])
    }

    /// Starts `redis-server` with a password (if any) and extra arguments (`PORT` in them
    /// stands for the port chosen).
    ///
    /// # Panics
    ///
    /// When it does not start within a few attempts.
    pub fn start_with(password: Option<&str>, extra: &[&str]) -> TestRedis {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "idarchive-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, password, &extra, &dir) {
                return TestRedis {
                    port,
                    password: password.map(str::to_owned),
                    extra,
                    tls: false,
                    child,
                    dir,
                };
            }
        }
        panic!("redis-server did not start (apt install redis-server)");
    }

    /// A Redis that speaks only TLS, with a certificate for 127.0.0.1 from a throwaway CA
    /// (needs `openssl`); returns it and the CA certificate (PEM).
    ///
    /// # Panics
    ///
    /// When `openssl` or `redis-server` fail.
    pub fn start_tls() -> (TestRedis, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!(
            "idarchive-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?}");
        };
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("the certificate extensions");
        #[rustfmt::skip]
        openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                  "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem"]);
        #[rustfmt::skip]
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                  "-keyout", "server.key", "-out", "server.csr"]);
        #[rustfmt::skip]
        openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "server.pem"]);
        let path = |name: &str| dir.join(name).to_str().expect("a UTF-8 path").to_owned();
        let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
        #[rustfmt::skip]
        let mut redis = TestRedis::start_with(None, &[
            "--tls-port", "PORT", "--port", "0", "--tls-cert-file", &cert,
            "--tls-key-file", &key, "--tls-ca-cert-file", &ca, "--tls-auth-clients", "no",
        ]);
        redis.tls = true;
        let ca = std::fs::read(&ca).expect("the CA certificate");
        let _ = std::fs::remove_dir_all(&dir);
        (redis, ca)
    }

    /// Starts the server again after [`TestRedis::kill`] (or a crash), on the same port, in the
    /// same directory, with the same arguments (with an append-only file it reloads it).
    ///
    /// # Panics
    ///
    /// When it does not come back within ten seconds.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, self.password.as_deref(), &self.extra, &self.dir)
            .expect("redis-server restarts on its port");
    }

    /// `redis://…` or `rediss://…`, with the password if any.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}/", self.port),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory (removed on drop): a place for a test's files too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A store under `prefix`, connected.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn store(&self, prefix: &str) -> RedirectStore {
        RedirectStore::connect(&self.url(), prefix)
            .await
            .expect("the test redis answers")
    }

    /// A plain connection for looking at the keys directly.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the test redis answers")
    }

    /// Stops the server now (`SIGKILL`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `redis-server` on `port` and waits until it accepts connections; `None` if it exits
/// (the port was taken) or does not answer within ten seconds.
// The child is waited for when the `TestRedis` holding it drops.
#[allow(clippy::zombie_processes)]
fn spawn(port: u16, password: Option<&str>, extra: &[String], dir: &Path) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    let port_text = port.to_string();
    command.args(extra.iter().map(|a| {
        if a == "PORT" {
            port_text.as_str()
        } else {
            a.as_str()
        }
    }));
    let mut child = command.spawn().expect("redis-server runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

//! A private redis-server for tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::{find_binary, free_port, wait_for_port};

/// A redis-server on a free loopback port, without persistence, killed on drop.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    _dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl Redis {
    /// Starts one.
    ///
    /// # Panics
    /// When `redis-server` is missing (`apt-get install redis-server`, or set `REDIS_SERVER_BIN`)
    /// or does not listen within 10 s.
    pub fn new() -> Redis {
        let binary: PathBuf = find_binary("REDIS_SERVER_BIN", "redis-server").unwrap_or_else(|| {
            panic!("redis-server is missing: apt-get install redis-server (or set REDIS_SERVER_BIN)")
        });
        let dir = tempfile::Builder::new()
            .prefix("lazyfetch-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server");
        let redis = Redis {
            port,
            _dir: dir,
            child: Mutex::new(Some(child)),
        };
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "redis-server did not listen on {port} within 10 s"
        );
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Default for Redis {
    fn default() -> Self {
        Redis::new()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

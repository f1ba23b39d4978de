//! Real servers for integration tests (feature `garage-harness`): a single-node [`Garage`] S3
//! store, a private [`Redis`], and a [`FaultProxy`] for the failures a real server will not
//! produce on demand (a body that stalls half-way, a connection cut mid-transfer).
//!
//! Each server runs on free loopback ports in its own temporary directory and is killed when
//! dropped. They are used by this crate's tests and by the gateway's end-to-end tests.

mod fault_proxy;
mod garage;
mod redis_server;

pub use fault_proxy::FaultProxy;
pub use garage::Garage;
pub use redis_server::Redis;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now (another process may take it before it is used;
/// tests accept that).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a loopback port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`; false after `limit`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `name` from the environment variable `env`, else on PATH, else in `~/.cargo/bin`.
fn find_binary(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let candidate = PathBuf::from(home).join(".cargo/bin").join(name);
        candidate.is_file().then_some(candidate)
    })
}

/// `n_bytes` random bytes as hex (keys and secrets for test servers).
fn random_hex(n_bytes: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < n_bytes * 2 {
        // Each RandomState is keyed from the OS's random source (per process, then varied).
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(n_bytes * 2);
    out
}

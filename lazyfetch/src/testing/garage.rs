//! A single-node Garage (the S3-compatible store) for tests.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use super::{find_binary, free_port, random_hex, wait_for_port};
use crate::config::S3Config;

/// The region Garage is configured with.
pub const REGION: &str = "garage";

/// A running single-node Garage with one bucket and one key allowed on it.
///
/// Started with `garage server --single-node --default-bucket` (Garage ≥ 2.0): the layout,
/// the key (`access_key_id`/`secret_access_key`) and the bucket are created by the server
/// itself. [`Garage::stop`] and [`Garage::start`] simulate an outage; the data survives them.
#[derive(Debug)]
pub struct Garage {
    dir: tempfile::TempDir,
    binary: PathBuf,
    s3_port: u16,
    admin_port: u16,
    /// The bucket.
    pub bucket: String,
    /// Access key id with read, write and owner rights on the bucket.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    child: Mutex<Option<Child>>,
}

impl Garage {
    /// Starts Garage on free loopback ports with a fresh bucket `masters`.
    ///
    /// # Panics
    /// When the `garage` binary is missing (install it with `cargo install garage --locked`, or
    /// set `GARAGE_BIN`), or it does not start within 30 s (its log is printed).
    pub fn new() -> Garage {
        let binary = find_binary("GARAGE_BIN", "garage").unwrap_or_else(|| {
            panic!(
                "the garage binary is missing: these tests need a real S3 store. Install it with \
                 `cargo install garage --locked` (about 12 minutes once; deploy/local/install-deps \
                 does it), or set GARAGE_BIN to its path"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("lazyfetch-garage-")
            .tempdir()
            .expect("create a temp dir for garage");
        let (s3_port, admin_port, rpc_port) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            dir = dir.path().display(),
            rpc_secret = random_hex(32),
        );
        fs::write(dir.path().join("garage.toml"), config).expect("write garage.toml");
        let garage = Garage {
            dir,
            binary,
            s3_port,
            admin_port,
            bucket: "masters".to_owned(),
            access_key_id: format!("GK{}", random_hex(12)),
            secret_access_key: random_hex(32),
            child: Mutex::new(None),
        };
        garage.start();
        garage
    }

    /// Starts the server again after [`Garage::stop`] (same ports, same data).
    ///
    /// # Panics
    /// When it does not listen within 30 s.
    pub fn start(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.is_some() {
            return;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the garage log");
        let spawned = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_access_key)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        *child = Some(spawned);
        // The S3 listener opens after the layout, key and bucket exist.
        if !wait_for_port(self.s3_port, Duration::from_secs(30)) {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            panic!(
                "garage did not listen on {} within 30 s; its log:\n{log}",
                self.s3_port
            );
        }
        assert!(
            wait_for_port(self.admin_port, Duration::from_secs(10)),
            "garage admin API did not listen"
        );
    }

    /// Kills the server (an outage: connections are refused until [`Garage::start`]).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 API port.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// `gateway.masters.s3` for this server (explicit credentials, path-style, short timeouts
    /// and retries suitable for tests).
    pub fn s3_config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.to_owned()),
            force_path_style: true,
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(self.secret_access_key.clone()),
            ..S3Config::default()
        }
    }

    /// An S3 client for this server (to upload test objects).
    pub async fn client(&self) -> aws_sdk_s3::Client {
        crate::s3::client(&self.s3_config(), Some(self.secret_access_key.clone())).await
    }

    /// Uploads `bytes` as `key` (with a CRC32 checksum stored, which downloads then check).
    ///
    /// # Panics
    /// When the upload fails.
    pub async fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        self.client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(bytes.into()))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("PUT {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
            });
    }

    /// Deletes `key`.
    ///
    /// # Panics
    /// When the delete fails.
    pub async fn delete(&self, key: &str) {
        self.client()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "DELETE {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
    }

    /// How many S3 requests of one API endpoint (`"GetObject"`, `"PutObject"`, …) Garage
    /// itself has counted since it started (its admin `/metrics`; restarts reset it).
    ///
    /// # Panics
    /// When the admin API does not answer.
    pub fn s3_requests(&self, api_endpoint: &str) -> u64 {
        let metrics = self.admin_metrics();
        let wanted = format!("api_endpoint=\"{api_endpoint}\"");
        metrics
            .lines()
            .filter(|line| line.starts_with("api_s3_request_counter") && line.contains(&wanted))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum()
    }

    /// Garage's Prometheus metrics text (admin API `/metrics`).
    ///
    /// # Panics
    /// When the admin API does not answer.
    pub fn admin_metrics(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin_port))
            .expect("connect to the garage admin API");
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read /metrics");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "garage /metrics: {head}"
        );
        body.to_owned()
    }
}

impl Default for Garage {
    fn default() -> Self {
        Garage::new()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

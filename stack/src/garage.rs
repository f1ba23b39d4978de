//! A single-node Garage (the S3-compatible store of the access masters):
//! `garage server --single-node --default-bucket` (Garage ≥ 2.0) creates the layout, the key
//! and the bucket itself. Its directory keeps the data, the credentials and the RPC secret
//! across restarts, so a local stack's bucket survives `stack down`. Ready when its S3 API and
//! its admin API answer HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use lazyfetch::config::S3Config;
use nix::sys::signal::Signal;

use crate::binaries::GARAGE;
use crate::error::Error;
use crate::ports;
use crate::probe;
use crate::process::Process;

/// The region Garage is configured with.
pub const REGION: &str = "garage";

/// How long Garage may take to serve S3 (it opens the listener once the layout, the key and
/// the bucket exist: well under a second on a warm machine, longer on a cold disk).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// What Garage to start.
#[derive(Debug, Clone)]
pub struct GarageSpec {
    /// Its directory: `garage.toml`, `meta/`, `data/`, the credentials; kept across restarts.
    pub dir: PathBuf,
    /// Its log; `dir/garage.log` when `None`.
    pub log: Option<PathBuf>,
    /// A fixed S3 port (RPC and admin on the next two); free ports when `None`.
    pub s3_port: Option<u16>,
    /// The bucket the key may read and write.
    pub bucket: String,
}

/// A running Garage with one bucket and one key allowed on it, killed when dropped.
/// [`Garage::stop`] and [`Garage::start`] simulate an outage; the data survives them.
#[derive(Debug)]
pub struct Garage {
    dir: PathBuf,
    log: PathBuf,
    s3_port: u16,
    admin_port: u16,
    /// The bucket.
    pub bucket: String,
    /// Access key id with read, write and owner rights on the bucket.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    process: Mutex<Option<Process>>,
    _temp: Option<tempfile::TempDir>,
}

impl Garage {
    /// Starts Garage and waits until it serves S3.
    ///
    /// # Errors
    /// A missing binary, taken fixed ports, unwritable files, or no answer within 60 s (the
    /// error quotes its log).
    pub fn launch(spec: GarageSpec) -> Result<Garage, Error> {
        if spec.s3_port.is_some() {
            return Garage::launch_once(spec);
        }
        ports::retry_on_collision(|| Garage::launch_once(spec.clone()))
    }

    fn launch_once(spec: GarageSpec) -> Result<Garage, Error> {
        let dir = &spec.dir;
        for sub in ["meta", "data"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(Error::io(dir.join(sub)))?;
        }
        let [s3_port, rpc_port, admin_port] = match spec.s3_port {
            Some(port) => [port, port + 1, port + 2],
            None => {
                let free = ports::free_ports(3);
                [free[0], free[1], free[2]]
            }
        };
        for port in [s3_port, rpc_port, admin_port] {
            ports::check_free("garage", port)?;
        }
        // Made once: the data written with them stays usable.
        let rpc_secret = kept_secret(&dir.join("rpc-secret"), || random_hex(32))?;
        let access_key_id = kept_secret(&dir.join("access-key-id"), || {
            format!("GK{}", random_hex(12))
        })?;
        let secret_access_key = kept_secret(&dir.join("secret-access-key"), || random_hex(32))?;
        // It holds the RPC secret: readable by its owner only.
        let config = dir.join("garage.toml");
        let toml = garage_toml(dir, s3_port, rpc_port, admin_port, &rpc_secret);
        write_private(&config, &toml)?;
        let garage = Garage {
            dir: dir.clone(),
            log: spec.log.clone().unwrap_or_else(|| dir.join("garage.log")),
            s3_port,
            admin_port,
            bucket: spec.bucket,
            access_key_id,
            secret_access_key,
            process: Mutex::new(None),
            _temp: None,
        };
        garage.try_start()?;
        Ok(garage)
    }

    /// A Garage for one test: a temporary directory, free ports, a fresh bucket `masters`.
    ///
    /// # Panics
    /// When it does not start (e.g. the `garage` binary is missing: the error says how to get
    /// it).
    pub fn new() -> Garage {
        let temp = tempfile::Builder::new()
            .prefix("stack-garage-")
            .tempdir()
            .expect("a temporary directory");
        let mut garage = Garage::launch(GarageSpec {
            dir: temp.path().to_path_buf(),
            log: None,
            s3_port: None,
            bucket: "masters".to_owned(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        garage._temp = Some(temp);
        garage
    }

    fn process(&self) -> MutexGuard<'_, Option<Process>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_start(&self) -> Result<(), Error> {
        let mut slot = self.process();
        if slot.as_mut().is_some_and(Process::is_alive) {
            return Ok(());
        }
        let mut command = Command::new(GARAGE.require()?);
        command
            .arg("-c")
            .arg(self.dir.join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_access_key)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env(
                "RUST_LOG",
                std::env::var("GARAGE_LOG").unwrap_or_else(|_| "garage=info".into()),
            );
        // Garage finishes its background work on SIGTERM; a few seconds is normal.
        let mut process = Process::spawn(
            "garage",
            &mut command,
            &self.log,
            Signal::SIGTERM,
            Duration::from_secs(15),
        )?;
        let s3: SocketAddr = ([127, 0, 0, 1], self.s3_port).into();
        let admin: SocketAddr = ([127, 0, 0, 1], self.admin_port).into();
        process.wait_ready(&format!("{s3} (S3)"), READY_WITHIN, || {
            probe::http_answers(s3, "/")
        })?;
        process.wait_ready(&format!("{admin} (admin API)"), READY_WITHIN, || {
            probe::http_answers(admin, "/health")
        })?;
        *slot = Some(process);
        Ok(())
    }

    /// Starts the server again after [`Garage::stop`] (same ports, same data).
    ///
    /// # Panics
    /// When it does not answer within 60 s.
    pub fn start(&self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills the server (an outage: connections are refused until [`Garage::start`]).
    pub fn stop(&self) {
        if let Some(mut process) = self.process().take() {
            process.kill();
        }
    }

    /// SIGTERM and a wait: the end of a local stack.
    pub fn shut_down(&self) {
        if let Some(mut process) = self.process().take() {
            process.stop();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process().as_ref().map(Process::pid)
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
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The file holding the secret key (for `secret_access_key_file`).
    pub fn secret_file(&self) -> PathBuf {
        self.dir.join("secret-access-key")
    }

    /// `gateway.masters.s3` for this server: explicit credentials, path-style, and lazyfetch's
    /// default timeouts and retries.
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

    /// An S3 client for this server (lazyfetch's, with the same settings the gateway uses).
    pub async fn client(&self) -> aws_sdk_s3::Client {
        lazyfetch::s3_client(&self.s3_config(), Some(self.secret_access_key.clone())).await
    }

    /// Uploads `bytes` as `key`, with a CRC32 checksum stored (which downloads then check).
    ///
    /// # Panics
    /// When the upload fails.
    pub async fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        self.put_body(key, ByteStream::from(bytes.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn put_body(&self, key: &str, body: ByteStream) -> Result<(), Error> {
        self.client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::setup(
                    "garage",
                    format!("PUT {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
                )
            })
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

    /// Uploads what is new or changed since the last upload: each file in `paths` (key = its
    /// name) and each file below each directory in `paths` (key = its path relative to that
    /// directory). A stamp per key under `dir/uploaded/` records the last upload. Returns how
    /// many were uploaded.
    ///
    /// # Errors
    /// An unreadable file or a failed upload.
    pub fn upload_new(&self, paths: &[PathBuf]) -> Result<usize, Error> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                collect_files(path, path, &mut files)?;
            } else {
                let key = path
                    .file_name()
                    .ok_or_else(|| {
                        Error::setup("garage", format!("{}: no file name", path.display()))
                    })?
                    .to_string_lossy()
                    .into_owned();
                files.push((path.clone(), key));
            }
        }
        let stamps = self.dir.join("uploaded");
        let stale: Vec<(PathBuf, String)> = files
            .into_iter()
            .filter(|(file, key)| !is_stamped(&stamps.join(key), file))
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::setup("garage", format!("a runtime for the upload: {e}")))?;
        runtime.block_on(async {
            for (file, key) in &stale {
                let body = ByteStream::from_path(file)
                    .await
                    .map_err(|e| Error::setup("garage", format!("{}: {e}", file.display())))?;
                self.put_body(key, body).await?;
                let stamp = stamps.join(key);
                if let Some(parent) = stamp.parent() {
                    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
                }
                std::fs::write(&stamp, b"").map_err(Error::io(&stamp))?;
            }
            Ok::<(), Error>(())
        })?;
        Ok(stale.len())
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

/// `garage.toml`. Strings are written as JSON strings, which are valid TOML basic strings.
fn garage_toml(
    dir: &Path,
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    rpc_secret: &str,
) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("a string serialises");
    let path = |name: &str| quote(&dir.join(name).display().to_string());
    format!(
        "metadata_dir = {meta}\ndata_dir = {data}\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_secret = {secret}\n\n[s3_api]\ns3_region = {region}\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
         root_domain = \".s3.garage.localhost\"\n\n[admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
        meta = path("meta"),
        data = path("data"),
        secret = quote(rpc_secret),
        region = quote(REGION),
    )
}

/// The content of `file`, made by `make` (and written with mode 600) when it does not exist.
pub fn kept_secret(file: &Path, make: impl FnOnce() -> String) -> Result<String, Error> {
    if let Ok(text) = std::fs::read_to_string(file) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_owned());
        }
    }
    let value = make();
    write_private(file, &value)?;
    Ok(value)
}

/// Writes `text` to `file` with mode 600.
fn write_private(file: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(Error::io(file))?;
    out.write_all(text.as_bytes()).map_err(Error::io(file))
}

/// `n_bytes` bytes from the kernel's random source, as hex (keys and secrets).
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if path.is_file() {
            let key = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            out.push((path, key));
        }
    }
    Ok(())
}

/// Whether `stamp` is at least as new as `file` (it was uploaded since it last changed).
fn is_stamped(stamp: &Path, file: &Path) -> bool {
    let modified = |path: &Path| path.metadata().and_then(|m| m.modified()).ok();
    match (modified(stamp), modified(file)) {
        (Some(stamped), Some(changed)) => stamped >= changed,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_quotes_paths() {
        let toml = garage_toml(Path::new("var/a \"b\""), 1, 2, 3, "ab");
        assert!(
            toml.contains(r#"metadata_dir = "var/a \"b\"/meta""#),
            "{toml}"
        );
        assert!(toml.contains("api_bind_addr = \"127.0.0.1:1\""), "{toml}");
        assert!(toml.contains("rpc_secret = \"ab\""), "{toml}");
    }

    #[test]
    fn secrets_are_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        let first = kept_secret(&file, || random_hex(8)).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(kept_secret(&file, || "other".into()).unwrap(), first);
    }

    #[test]
    fn stamps_newer_than_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let stamp = dir.path().join("stamp");
        std::fs::write(&file, b"x").unwrap();
        assert!(!is_stamped(&stamp, &file));
        std::fs::write(&stamp, b"").unwrap();
        assert!(is_stamped(&stamp, &file));
    }
}

//! Starts real servers for the end-to-end tests: iipsrv processes and the gateway binary, on free
//! loopback ports, killed when the [`Stack`] is dropped.
//!
//! Needs the sample images (`deploy/local/make-samples`, or `IIIF_SAMPLES_DIR`) and a built
//! gateway (`cargo build --release -p gateway`, or `IIIF_GATEWAY_BIN`). `tests/run` provides both.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const IIPSRV: &str = "/usr/lib/iipimage-server/iipsrv.fcgi";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn samples_dir() -> PathBuf {
    let dir = std::env::var_os("IIIF_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("var/images"));
    assert!(
        dir.join("67352ccc-d1b0-11e1-89ae-279075081939").exists(),
        "sample images missing in {}: run deploy/local/make-samples (or set IIIF_SAMPLES_DIR)",
        dir.display()
    );
    dir
}

fn gateway_bin() -> PathBuf {
    let bin = std::env::var_os("IIIF_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/iiif-gateway"));
    assert!(
        bin.exists(),
        "{} missing: run cargo build --release -p gateway",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port} within 20 s");
}

pub fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "iiif-e2e-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One stock iipsrv process.
pub struct Iipsrv {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Iipsrv {
    pub fn start(images: &Path, scratch: &Path, index: usize) -> Iipsrv {
        Self::start_on(images, scratch, index, free_port())
    }

    fn start_on(images: &Path, scratch: &Path, index: usize, port: u16) -> Iipsrv {
        let log = scratch.join(format!("iipsrv-{index}.log"));
        let mut child = Command::new(IIPSRV)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .env("FILESYSTEM_PREFIX", format!("{}/", images.display()))
            .env("MAX_CVT", "5000")
            .env("MEMCACHED_SERVERS", "")
            .env("OMP_NUM_THREADS", "1")
            .env("VERBOSITY", "1")
            .env("LOGFILE", &log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iipsrv starts (apt install iipimage-server)");
        wait_for_port(port, &mut child, "iipsrv");
        Iipsrv { port, child, log }
    }

    /// Whether the process is still running (a segfault ends it).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh process on the same port, as a supervisor would after a crash.
    pub fn restart(&mut self, images: &Path, scratch: &Path, index: usize) {
        self.kill();
        *self = Self::start_on(images, scratch, index, self.port);
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Iipsrv {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings that differ between test stacks.
#[derive(Clone)]
pub struct StackOptions {
    pub iipsrv_processes: usize,
    /// iipsrv's `FILESYSTEM_PREFIX`; the sample images when `None`.
    pub iipsrv_root: Option<PathBuf>,
    /// Appended under `gateway:`; `@SCRATCH@` becomes the stack's scratch directory.
    pub extra_gateway_yaml: String,
    pub public_base_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            iipsrv_processes: 2,
            iipsrv_root: None,
            extra_gateway_yaml: String::new(),
            public_base_url: None,
        }
    }
}

/// iipsrv processes plus one gateway in front of them.
pub struct Stack {
    pub port: u16,
    pub admin_port: u16,
    pub iipsrv: Vec<Iipsrv>,
    pub images: PathBuf,
    pub scratch: PathBuf,
    gateway: Child,
}

impl Stack {
    pub fn start() -> Stack {
        Self::start_with(StackOptions::default())
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let images = options.iipsrv_root.clone().unwrap_or_else(samples_dir);
        let scratch = scratch_dir();
        let iipsrv: Vec<Iipsrv> = (0..options.iipsrv_processes)
            .map(|i| Iipsrv::start(&images, &scratch, i))
            .collect();
        let port = free_port();
        let admin_port = free_port();
        let addresses: Vec<String> = iipsrv
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        let base = options
            .public_base_url
            .map(|url| format!("  public_base_url: {url}\n"))
            .unwrap_or_default();
        let config = format!(
            "version: 1\nthreads: 2\npid_file: {scratch}/gateway.pid\nupgrade_sock: {scratch}/upgrade.sock\n\
             grace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n\
             gateway:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin_port}\n{base}\
             \x20 trusted_proxies: [127.0.0.1/32]\n\
             \x20 backend:\n    addresses: [{addresses}]\n    health_interval_ms: 200\n    health_timeout_ms: 1000\n    keepalive_idle_ms: 250\n\
             \x20   queue_timeout_ms: 10000\n{extra}",
            scratch = scratch.display(),
            addresses = addresses.join(", "),
            extra = options
                .extra_gateway_yaml
                .replace("@SCRATCH@", &scratch.display().to_string()),
        );
        let config_path = scratch.join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(scratch.join("gateway.log")).unwrap();
        let mut gateway = Command::new(gateway_bin())
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gateway starts");
        wait_for_port(port, &mut gateway, "gateway");
        wait_for_port(admin_port, &mut gateway, "gateway admin listener");
        let stack = Stack {
            port,
            admin_port,
            iipsrv,
            images,
            scratch,
            gateway,
        };
        stack.wait_until_ready();
        stack
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_status(self.admin_port, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway not ready: {}", self.gateway_log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn gateway_log(&self) -> String {
        std::fs::read_to_string(self.scratch.join("gateway.log")).unwrap_or_default()
    }

    pub fn gateway_alive(&mut self) -> bool {
        matches!(self.gateway.try_wait(), Ok(None))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.gateway.wait();
    }
}

/// A raw HTTP/1.0 GET, for readiness polling without an async runtime.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The client every test uses: no redirects followed, so 30x answers can be checked.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The admin token of the stacks whose tests use the admin API.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// A GET of a public path with the shared client.
pub async fn get(stack: &Stack, path: &str) -> reqwest::Response {
    client().get(stack.url(path)).send().await.unwrap()
}

/// `DELETE /admin/images/{encoded_id}` with the admin token: purges one image.
pub async fn purge(stack: &Stack, encoded_id: &str) -> reqwest::Response {
    client()
        .delete(stack.admin_url(&format!("/admin/images/{encoded_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// The value of one sample in a Prometheus exposition, by its name and labels as written.
pub fn metric_line(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} missing in\n{text}"))
}

/// The gateway's metrics, as Prometheus scrapes them.
pub async fn metrics(stack: &Stack) -> String {
    client()
        .get(stack.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// How many image requests reached iipsrv (the FastCGI exchanges of kind `image`).
pub async fn iipsrv_image_requests(stack: &Stack) -> u64 {
    let text = metrics(stack).await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("iiif_gateway_backend_duration_seconds_count{kind=\"image\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Decodes an image body and returns its pixel size.
pub fn image_size(body: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(body).expect("a decodable image");
    (image.width(), image.height())
}

/// A real redis-server on a free loopback port, without persistence; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
    scratch: PathBuf,
}

/// One reply of the Redis protocol (RESP2), as much of it as the tests need.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisReply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<RedisReply>>),
}

const REDIS_SERVER: &str = "/usr/bin/redis-server";

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port(), scratch_dir())
    }

    fn start_on(port: u16, scratch: PathBuf) -> Redis {
        let mut child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&scratch)
            .arg("--logfile")
            .arg(scratch.join(format!("redis-{port}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt install redis-server)");
        wait_for_port(port, &mut child, "redis-server");
        Redis {
            port,
            child,
            scratch,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command on a fresh connection and reads its reply.
    pub fn command(&self, args: &[&str]) -> RedisReply {
        use std::io::{BufReader, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("redis reachable");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).unwrap();
        read_reply(&mut BufReader::new(stream))
    }

    /// Whether the server answers a `PING` right now.
    pub fn is_up(&self) -> bool {
        use std::io::{BufRead, BufReader, Write};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    /// SIGKILL: the port stops answering at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh, empty server on the same port (a restart without persistence).
    pub fn restart(&mut self) {
        self.kill();
        *self = Self::start_on(self.port, self.scratch.clone());
    }

    /// SIGSTOP: connections stay open but nothing is answered.
    pub fn pause(&self) {
        assert!(self.signal("-STOP"), "kill -STOP failed");
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&self) {
        assert!(self.signal("-CONT"), "kill -CONT failed");
    }

    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

fn read_reply(reader: &mut impl std::io::BufRead) -> RedisReply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a redis reply");
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => RedisReply::Status(rest.into()),
        "-" => RedisReply::Error(rest.into()),
        ":" => RedisReply::Integer(rest.parse().unwrap()),
        "$" => {
            let length: i64 = rest.parse().unwrap();
            if length < 0 {
                return RedisReply::Bulk(None);
            }
            let mut bytes = vec![0; length as usize + 2];
            reader.read_exact(&mut bytes).unwrap();
            bytes.truncate(length as usize);
            RedisReply::Bulk(Some(bytes))
        }
        "*" => {
            let count: i64 = rest.parse().unwrap();
            if count < 0 {
                return RedisReply::Array(None);
            }
            RedisReply::Array(Some((0..count).map(|_| read_reply(reader)).collect()))
        }
        _ => panic!("unexpected redis reply {line:?}"),
    }
}

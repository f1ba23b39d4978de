//! The end-to-end tests' stacks: real iipsrv processes and the gateway binary on free loopback
//! ports, started by the launcher (`stack`), killed when the [`Stack`] is dropped. Real Redis
//! and Garage servers come from the launcher too ([`Redis`], `stack::Garage`).
//!
//! Needs the sample images (`deploy/local/make-samples`, or `IIIF_SAMPLES_DIR`) and a built
//! gateway (`cargo build --release -p gateway`, or `IIIF_GATEWAY_BIN`); every other binary is
//! found as `stack::binaries` says (`IIPSRV_BIN`, `REDIS_SERVER_BIN`, `GARAGE_BIN`). `tests/run`
//! provides them all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway::config::RawGatewayConfig;
use stack::gateway::{Gateway, GatewaySpec, PublicBaseUrl, Wiring};
use stack::iipsrv::{Iipsrv, IipsrvPool, IipsrvSpec};
use stack::nginx::{Nginx, NginxSpec, Site};

pub(crate) use stack::{free_port, Redis};

pub(crate) fn samples_dir() -> PathBuf {
    let dir = std::env::var_os("IIIF_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| stack::binaries::repo_root().join("var/images"));
    assert!(
        dir.join("67352ccc-d1b0-11e1-89ae-279075081939").exists(),
        "sample images missing in {}: run deploy/local/make-samples (or set IIIF_SAMPLES_DIR)",
        dir.display()
    );
    dir
}

pub(crate) fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "iiif-e2e-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A change to a test stack's gateway config; gets the stack's scratch directory.
pub(crate) type Configure = Arc<dyn Fn(&mut RawGatewayConfig, &Path) + Send + Sync>;

/// `f` as [`StackOptions::configure`].
pub(crate) fn configure(
    f: impl Fn(&mut RawGatewayConfig, &Path) + Send + Sync + 'static,
) -> Option<Configure> {
    Some(Arc::new(f))
}

/// Settings that differ between test stacks.
#[derive(Clone)]
pub(crate) struct StackOptions {
    pub iipsrv_processes: usize,
    /// iipsrv's `FILESYSTEM_PREFIX`; the sample images when `None`.
    pub iipsrv_root: Option<PathBuf>,
    /// Applied to the gateway's config after the stack has filled it in.
    pub configure: Option<Configure>,
    pub public_base_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            iipsrv_processes: 2,
            iipsrv_root: None,
            configure: None,
            public_base_url: None,
        }
    }
}

/// iipsrv processes (not supervised: the tests kill and restart them) plus one gateway in
/// front of them: health checks every 200 ms, requests wait up to 10 s for a process.
pub(crate) struct Stack {
    pub iipsrv: Vec<Iipsrv>,
    pub images: PathBuf,
    pub scratch: PathBuf,
    gateway: Gateway,
}

impl Stack {
    pub(crate) fn start() -> Stack {
        Self::start_with(StackOptions::default())
    }

    pub(crate) fn start_with(options: StackOptions) -> Stack {
        let images = options.iipsrv_root.clone().unwrap_or_else(samples_dir);
        let scratch = scratch_dir();
        let pool = IipsrvPool::start(IipsrvSpec {
            processes: options.iipsrv_processes,
            supervise: false,
            ..IipsrvSpec::new(&images, &scratch)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let wiring = Wiring {
            backends: pool.addresses(),
            max_cvt: 5000,
            jpeg_quality: 90,
            ..Wiring::default()
        };
        let configure = options.configure.clone().map(|f| {
            let scratch = scratch.clone();
            Arc::new(move |raw: &mut RawGatewayConfig| f(raw, &scratch))
                as stack::gateway::Configure
        });
        let spec = GatewaySpec {
            public_base_url: options
                .public_base_url
                .map_or(PublicBaseUrl::Unset, PublicBaseUrl::Url),
            health_interval_ms: 200,
            queue_timeout_ms: 10_000,
            configure,
            ..GatewaySpec::new("gateway")
        };
        let gateway = Gateway::start(&spec, &wiring, &scratch).unwrap_or_else(|e| panic!("{e}"));
        Stack {
            iipsrv: pool.into_processes(),
            images,
            scratch,
            gateway,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// A real nginx in front of the gateway (`nginx/gateway-front.conf`), answering for
    /// `server_name`; stopped when dropped.
    pub(crate) fn front(&self, server_name: &str) -> Nginx {
        let spec = NginxSpec {
            name: "front".into(),
            prefix: self.scratch.join("front"),
            port: None,
            site: Site::Front {
                server_name: server_name.into(),
                public_host: server_name.into(),
            },
        };
        let gateway = format!("127.0.0.1:{}", self.gateway.port());
        Nginx::start(&spec, &[gateway]).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        self.gateway.admin_url(path)
    }

    pub(crate) fn gateway_log(&self) -> String {
        self.gateway.log_text()
    }

    /// `VmHWM` (peak resident memory so far) of the gateway process, bytes.
    /// The gateway's process id.
    pub(crate) fn gateway_pid(&self) -> u32 {
        self.gateway.pid()
    }

    pub(crate) fn gateway_peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.gateway.pid()))
            .expect("the gateway's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line");
        kib * 1024
    }

    pub(crate) fn gateway_alive(&mut self) -> bool {
        self.gateway.is_alive()
    }
}

/// The client every test uses: no redirects followed, so 30x answers can be checked.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The admin token of the stacks whose tests use the admin API.
pub(crate) const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// A GET of a public path with the shared client.
pub(crate) async fn get(stack: &Stack, path: &str) -> reqwest::Response {
    client().get(stack.url(path)).send().await.unwrap()
}

/// `DELETE /admin/images/{encoded_id}` with the admin token: purges one image.
pub(crate) async fn purge(stack: &Stack, encoded_id: &str) -> reqwest::Response {
    client()
        .delete(stack.admin_url(&format!("/admin/images/{encoded_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// The value of one sample in a Prometheus exposition, by its name and labels as written.
pub(crate) fn metric_line(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} missing in\n{text}"))
}

/// The gateway's metrics, as Prometheus scrapes them.
pub(crate) async fn metrics(stack: &Stack) -> String {
    client()
        .get(stack.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The gateway's metrics once they contain `line`, or as they are after 5 s: a request is
/// counted in Pingora's logging phase, which runs after its response was sent, so a client
/// that has read the response can scrape before the count is there.
pub(crate) async fn metrics_once_they_show(stack: &Stack, line: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = metrics(stack).await;
        if text.contains(line) || std::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// How many image requests reached iipsrv (the FastCGI exchanges of kind `image`).
pub(crate) async fn iipsrv_image_requests(stack: &Stack) -> u64 {
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
pub(crate) fn image_size(body: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(body).expect("a decodable image");
    (image.width(), image.height())
}

/// A tiny tmpfs as the cache mount, so that writes really fail with "no space left on device".
/// Needs root (CI runs as root); elsewhere the test says why it did not run.
pub(crate) struct TinyMount {
    pub(crate) path: PathBuf,
}

impl TinyMount {
    pub(crate) fn new(parent: &Path, size: &str) -> Option<TinyMount> {
        let path = parent.join("tiny-mount");
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(TinyMount { path })
    }
}

impl Drop for TinyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// Every file below `dir`, bookkeeping and temporary files included.
pub(crate) fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(all_files(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The temporary files (`.tmp-…`: a download or write in progress, or one left behind) below
/// `dir`.
pub(crate) fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

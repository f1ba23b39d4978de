//! Real iipsrv processes and real pyramid TIFFs for tests.
//!
//! [`Iipsrv::spawn`] starts iipsrv (found as `stack::binaries::IIPSRV` says) on a free loopback port (or a Unix socket)
//! with memcached disabled and one OpenMP thread, and kills it on drop. [`images`] makes the test
//! images once per test binary with `vips`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Test images as (file name, width, height): square, odd-sized, a 5 Mpx photo size, and the
/// 1000×750 image of the crash list.
pub(crate) const IMAGES: &[(&str, u32, u32)] = &[
    ("test.tif", 1000, 1000),
    ("odd.tif", 1000, 872),
    ("photo.tif", 2736, 1824),
    ("wide.tif", 1000, 750),
    ("odd999.tif", 999, 777),
];

/// The directory holding [`IMAGES`], created on first use.
///
/// The images are tiled (256×256), JPEG-compressed pyramids like the ones in production. They are
/// kept between runs (the directory name carries a version) because `vips` takes a while.
pub(crate) fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("gateway-fcgi-test-images-v1");
        if IMAGES.iter().all(|(name, _, _)| dir.join(name).is_file()) {
            return dir;
        }
        // Build in a private directory and rename, so a concurrent run never sees half a file.
        let work =
            std::env::temp_dir().join(format!("gateway-fcgi-test-images-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        for (name, width, height) in IMAGES {
            make_pyramid(&work, name, *width, *height);
        }
        if std::fs::rename(&work, &dir).is_err() {
            // Someone else got there first.
            let _ = std::fs::remove_dir_all(&work);
        }
        assert!(
            dir.join("test.tif").is_file(),
            "test images missing in {}",
            dir.display()
        );
        dir
    })
}

/// Writes a noisy sRGB image as a tiled pyramid TIFF with `vips`.
pub(crate) fn make_pyramid(dir: &Path, name: &str, width: u32, height: u32) {
    let stem = dir.join(name.trim_end_matches(".tif"));
    let path = |suffix: &str| format!("{}-{suffix}.v", stem.display());
    let (w, h) = (width.to_string(), height.to_string());
    vips(&[
        "gaussnoise",
        &path("n"),
        &w,
        &h,
        "--mean",
        "128",
        "--sigma",
        "30",
    ]);
    vips(&["cast", &path("n"), &path("c"), "uchar"]);
    let bands = format!("{} {} {}", path("c"), path("c"), path("c"));
    vips(&["bandjoin", &bands, &path("r")]);
    vips(&["copy", &path("r"), &path("s"), "--interpretation", "srgb"]);
    let out = dir.join(name);
    vips(&[
        "tiffsave",
        &path("s"),
        out.to_str().unwrap(),
        "--tile",
        "--pyramid",
        "--tile-width",
        "256",
        "--tile-height",
        "256",
        "--compression",
        "jpeg",
        "--Q",
        "90",
    ]);
    for suffix in ["n", "c", "r", "s"] {
        let _ = std::fs::remove_file(path(suffix));
    }
}

fn vips(args: &[&str]) {
    let status = Command::new("vips")
        .args(args)
        .status()
        .expect("vips is installed");
    assert!(status.success(), "vips {args:?} failed");
}

/// A running `iipsrv.fcgi`, killed on drop.
pub(crate) struct Iipsrv {
    child: Child,
    /// What the pool connects to: `127.0.0.1:PORT` or `unix:/path`.
    pub(crate) addr: String,
    bind: String,
    images: PathBuf,
    scratch: PathBuf,
}

impl Iipsrv {
    /// Starts iipsrv on a free loopback port serving `images`.
    pub(crate) fn spawn(images: &Path) -> Iipsrv {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let bind = format!("127.0.0.1:{port}");
            if let Some(server) = Iipsrv::start(images, bind.clone(), bind) {
                return server;
            }
            // Another process took the port between our probe and iipsrv's bind; try another.
        }
        panic!("could not start iipsrv on a free port");
    }

    /// Starts iipsrv on a Unix socket inside its scratch directory.
    pub(crate) fn spawn_unix(images: &Path) -> Iipsrv {
        let scratch = scratch_dir();
        let socket = scratch.join("iipsrv.sock").display().to_string();
        Iipsrv::start_in(images, socket.clone(), format!("unix:{socket}"), scratch)
            .expect("iipsrv on a unix socket")
    }

    fn start(images: &Path, bind: String, addr: String) -> Option<Iipsrv> {
        Iipsrv::start_in(images, bind, addr, scratch_dir())
    }

    fn start_in(images: &Path, bind: String, addr: String, scratch: PathBuf) -> Option<Iipsrv> {
        let mut child = launch(images, &bind, &scratch);
        if !wait_ready(&mut child, &addr) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&scratch);
            return None;
        }
        Some(Iipsrv {
            child,
            addr,
            bind,
            images: images.to_owned(),
            scratch,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (a crashed one has exited).
    pub(crate) fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `limit` for the process to exit; true if it did.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh process on the same port or socket (after a crash or [`Iipsrv::kill`]).
    pub(crate) fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            let mut child = launch(&self.images, &self.bind, &self.scratch);
            if wait_ready(&mut child, &self.addr) {
                self.child = child;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart iipsrv on {}", self.bind);
    }

    /// Freezes the process (SIGSTOP): it keeps its socket, the kernel keeps accepting into the
    /// backlog, and nothing answers. This is a real hung iipsrv.
    pub(crate) fn freeze(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Undoes [`Iipsrv::freeze`].
    pub(crate) fn thaw(&self) {
        signal(self.pid(), "-CONT");
    }

    /// The process's log file (empty at `VERBOSITY=0`, useful when raised).
    #[allow(dead_code)]
    pub(crate) fn log_path(&self) -> PathBuf {
        self.scratch.join("iipsrv.log")
    }
}

impl Drop for Iipsrv {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn launch(images: &Path, bind: &str, scratch: &Path) -> Child {
    // Where the workspace's launcher finds it (`IIPSRV_BIN` overrides the Debian path).
    Command::new(
        stack::binaries::IIPSRV
            .require()
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .args(["--bind", bind])
    .env("FILESYSTEM_PREFIX", format!("{}/", images.display()))
    .env("MEMCACHED_SERVERS", "")
    .env("MAX_CVT", "5000")
    .env("LOGFILE", scratch.join("iipsrv.log"))
    .env("VERBOSITY", "0")
    .env("OMP_NUM_THREADS", "1")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("iipsrv is installed")
}

/// Waits until the socket accepts connections; false if the process exited instead.
fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let connected = match addr.strip_prefix("unix:") {
            Some(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            None => TcpStream::connect(addr).is_ok(),
        };
        if connected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid} failed");
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gateway-fcgi-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width, height and number of components from a JPEG's start-of-frame marker.
pub(crate) fn jpeg_dimensions(jpeg: &[u8]) -> Option<(u16, u16, u8)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let height = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let width = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((width, height, jpeg[i + 9]));
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        i += 2 + len;
    }
    None
}

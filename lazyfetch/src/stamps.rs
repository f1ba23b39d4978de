//! Last-access stamps that work on `noatime` mounts and cost nothing on the hot path.
//!
//! The stamp of an image is the mtime of a small file (the master's sidecar, the derivatives'
//! `.access`). [`AccessStamps::touch`] remembers when it last touched each path and rewrites the
//! mtime at most once per interval; the write itself happens on a background thread, so a slow
//! or hung disk (NFS) never delays a request. If that thread falls behind, touches are dropped:
//! a stamp is a hint for pruning, and the next request touches again.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Touches waiting for the background thread; more are dropped.
const QUEUE: usize = 4096;

/// Entries of the last-touch map; past this, entries older than the interval are forgotten.
const MAP_SOFT_LIMIT: usize = 100_000;

/// Throttled, non-blocking touching of stamp files.
#[derive(Debug)]
pub struct AccessStamps {
    interval: Duration,
    last_touch: Mutex<HashMap<PathBuf, Instant>>,
    queue: SyncSender<PathBuf>,
}

impl AccessStamps {
    /// Stamps rewritten at most once per `interval` per path (zero: on every touch). Starts the
    /// background thread, which ends when this value is dropped.
    pub fn new(interval: Duration) -> Self {
        let (queue, touches) = sync_channel::<PathBuf>(QUEUE);
        std::thread::Builder::new()
            .name("lazyfetch-stamps".into())
            .spawn(move || {
                for path in touches {
                    set_mtime_now(&path);
                }
            })
            .expect("spawn the stamp thread");
        AccessStamps {
            interval,
            last_touch: Mutex::new(HashMap::new()),
            queue,
        }
    }

    /// Sets `stamp_file`'s mtime to now, unless this value did so less than the interval ago.
    /// Never creates the file (a stamp touched after its image was purged must not bring back
    /// an empty file) and never blocks on the disk.
    pub fn touch(&self, stamp_file: &Path) {
        let now = Instant::now();
        {
            let mut last_touch = self.last_touch.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(previous) = last_touch.get(stamp_file) {
                if now.duration_since(*previous) < self.interval {
                    return;
                }
            }
            if last_touch.len() >= MAP_SOFT_LIMIT {
                let interval = self.interval;
                last_touch.retain(|_, at| now.duration_since(*at) < interval);
            }
            last_touch.insert(stamp_file.to_owned(), now);
        }
        match self.queue.try_send(stamp_file.to_owned()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::debug!("access stamp queue full; skipped {}", stamp_file.display());
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Forgets that `stamp_file` was touched, so the next [`AccessStamps::touch`] writes.
    pub fn forget(&self, stamp_file: &Path) {
        self.last_touch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stamp_file);
    }
}

/// The mtime of an existing file set to now; missing files and errors are ignored (best effort).
fn set_mtime_now(path: &Path) {
    // Opening read-only is enough for futimens on a file we own, and cannot create the file.
    if let Ok(file) = File::open(path) {
        if let Err(error) = file.set_modified(SystemTime::now()) {
            log::debug!("cannot touch {}: {error}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtime(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn set_old(path: &Path) -> SystemTime {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(path).unwrap().set_modified(old).unwrap();
        old
    }

    /// Waits for the background thread (bounded: this is a correctness wait, not a timing test).
    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn touches_once_per_interval_and_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("s.json");
        std::fs::write(&stamp, b"{}").unwrap();
        let old = set_old(&stamp);

        let stamps = AccessStamps::new(Duration::from_secs(3600));
        stamps.touch(&stamp);
        assert!(wait_until(|| mtime(&stamp) > old), "first touch is written");

        // Within the interval: remembered, not written again.
        let old = set_old(&stamp);
        stamps.touch(&stamp);
        let marker = dir.path().join("marker");
        std::fs::write(&marker, b"").unwrap();
        let marker_old = set_old(&marker);
        stamps.forget(&marker);
        stamps.touch(&marker);
        // The queue is FIFO: once the later marker is written, the earlier touch would have been.
        assert!(wait_until(|| mtime(&marker) > marker_old));
        assert_eq!(mtime(&stamp), old);

        // After forget, the next touch writes.
        stamps.forget(&stamp);
        stamps.touch(&stamp);
        assert!(wait_until(|| mtime(&stamp) > old));

        // A missing stamp is not created: checked once a later touch has been written.
        let missing = dir.path().join("missing.json");
        let marker_old = set_old(&marker);
        stamps.forget(&marker);
        stamps.touch(&missing);
        stamps.touch(&marker);
        assert!(wait_until(|| mtime(&marker) > marker_old));
        assert!(!missing.exists());
    }

    #[test]
    fn zero_interval_touches_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("a");
        std::fs::write(&stamp, b"").unwrap();
        let stamps = AccessStamps::new(Duration::ZERO);
        for _ in 0..3 {
            let old = set_old(&stamp);
            stamps.touch(&stamp);
            assert!(wait_until(|| mtime(&stamp) > old));
        }
    }
}

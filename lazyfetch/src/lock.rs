//! The cross-node download lock: gateways sharing one cache mount (NFS) take
//! `{prefix}lock:{image key}` in Redis before downloading a master, so one of them downloads and
//! the others wait for the file to appear.
//!
//! The lock is a hint, not a guarantee of correctness: the file itself is always written to a
//! private tmp file and renamed, so two nodes downloading at once (Redis down, a lock that
//! expired under a stalled holder) waste a download, never corrupt the master. Hence every Redis
//! problem is answered with [`Acquire::RedisUnavailable`] and the caller goes ahead unlocked.
//!
//! The holder refreshes the lock every third of its TTL and deletes it when done, both only if
//! the lock still carries its own random token (a Lua compare-and-act), so it never extends or
//! frees a lock that expired and was taken by another node.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::config::LockConfig;

/// After Redis could not be reached, it is not tried again for this long (each try costs up to
/// `timeout_ms` on every download).
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
         else return 0 end",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('DEL', KEYS[1]) \
         else return 0 end",
    )
});

/// The outcome of one attempt to take a lock.
pub(crate) enum Acquire {
    /// Ours until the guard is dropped.
    Held(LockGuard),
    /// Another node holds it.
    Busy,
    /// Redis did not answer in time or failed: go ahead without the lock.
    RedisUnavailable,
}

/// A client of the lock's Redis, connected on first use.
pub(crate) struct NodeLock {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The server's URL without its password, for log lines.
    shown_url: String,
    connection: OnceCell<ConnectionManager>,
    /// Set when connecting failed; no new attempt before it.
    retry_connect_at: Mutex<Option<Instant>>,
    ttl: Duration,
    timeout: Duration,
    prefix: String,
}

impl NodeLock {
    /// A lock client for `config` (its URL was checked by the config's validation).
    pub(crate) fn new(config: &LockConfig) -> Result<Self, redis::RedisError> {
        Ok(NodeLock {
            inner: Arc::new(Inner {
                client: redis::Client::open(config.redis_url.as_str())?,
                shown_url: redis_url::redact(&config.redis_url),
                connection: OnceCell::new(),
                retry_connect_at: Mutex::new(None),
                ttl: Duration::from_millis(config.ttl_ms),
                timeout: Duration::from_millis(config.timeout_ms),
                prefix: config.key_prefix.clone(),
            }),
        })
    }

    /// One attempt to take the lock of `image_key`.
    pub(crate) async fn try_acquire(&self, image_key: &str) -> Acquire {
        let inner = &self.inner;
        let Some(mut connection) = inner.connection().await else {
            return Acquire::RedisUnavailable;
        };
        let key = format!("{}lock:{image_key}", inner.prefix);
        let token = crate::tmpfile::unique_token();
        let ttl_ms = u64::try_from(inner.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut command = redis::cmd("SET");
        command
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let set = command.query_async::<Option<String>>(&mut connection);
        match tokio::time::timeout(inner.timeout, set).await {
            Ok(Ok(Some(_))) => {
                Acquire::Held(LockGuard::start(Arc::clone(inner), connection, key, token))
            }
            Ok(Ok(None)) => Acquire::Busy,
            Ok(Err(error)) => {
                log::warn!(
                    "download lock at {}: {error}; downloading without it",
                    inner.shown_url
                );
                Acquire::RedisUnavailable
            }
            Err(_) => {
                log::warn!(
                    "download lock at {}: no answer within {:?}; downloading without it",
                    inner.shown_url,
                    inner.timeout
                );
                Acquire::RedisUnavailable
            }
        }
    }
}

impl Inner {
    /// The shared connection, opened on first use; `None` while Redis cannot be reached.
    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Some(connection.clone());
        }
        {
            let retry_at = self
                .retry_connect_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
        }
        let connect = self.connection.get_or_try_init(|| async {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            tokio::time::timeout(
                self.timeout,
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            .map_err(|_| format!("no connection within {:?}", self.timeout))?
            .map_err(|e| e.to_string())
        });
        match connect.await {
            Ok(connection) => Some(connection.clone()),
            Err(reason) => {
                log::warn!(
                    "download lock: cannot reach redis at {}: {reason}; downloading without the lock for {:?}",
                    self.shown_url,
                    RECONNECT_AFTER
                );
                *self
                    .retry_connect_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + RECONNECT_AFTER);
                None
            }
        }
    }
}

/// A held lock: refreshed in the background, released when dropped.
pub(crate) struct LockGuard {
    inner: Arc<Inner>,
    connection: ConnectionManager,
    key: String,
    token: String,
    refresher: JoinHandle<()>,
}

impl LockGuard {
    fn start(inner: Arc<Inner>, connection: ConnectionManager, key: String, token: String) -> Self {
        let refresher = {
            let mut connection = connection.clone();
            let (key, token, inner) = (key.clone(), token.clone(), Arc::clone(&inner));
            tokio::spawn(async move {
                let every = inner.ttl / 3;
                let ttl_ms = u64::try_from(inner.ttl.as_millis()).unwrap_or(u64::MAX);
                loop {
                    tokio::time::sleep(every).await;
                    let mut invocation = REFRESH.key(&key);
                    invocation.arg(&token).arg(ttl_ms);
                    let refresh = invocation.invoke_async::<i64>(&mut connection);
                    match tokio::time::timeout(inner.timeout, refresh).await {
                        Ok(Ok(1)) => {}
                        Ok(Ok(_)) => {
                            log::warn!(
                                "download lock {key} expired while held; the download goes on"
                            );
                            return;
                        }
                        Ok(Err(error)) => {
                            log::warn!("download lock {key}: refresh failed: {error}")
                        }
                        Err(_) => log::warn!("download lock {key}: refresh timed out"),
                    }
                }
            })
        };
        LockGuard {
            inner,
            connection,
            key,
            token,
            refresher,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
        // Releasing needs a round trip; outside a runtime (shutdown) the TTL frees the lock.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut connection = self.connection.clone();
        let (key, token, timeout) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
            self.inner.timeout,
        );
        runtime.spawn(async move {
            let mut invocation = RELEASE.key(&key);
            invocation.arg(&token);
            let release = invocation.invoke_async::<i64>(&mut connection);
            if !matches!(tokio::time::timeout(timeout, release).await, Ok(Ok(_))) {
                log::debug!("download lock {key}: release failed; it expires on its own");
            }
        });
    }
}

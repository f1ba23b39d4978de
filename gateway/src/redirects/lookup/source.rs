//! Records read from Redis: one `HMGET {prefix}redirect:{id} kind target` per lookup, over a
//! [`ConnectionManager`] (one multiplexed connection, reconnected when it drops).
//!
//! The manager is created on first use, on the runtime of whoever asks first (a Pingora service
//! runtime, never `main` before the fork). Connection and response timeouts are set on it, so a
//! dead or stopped Redis fails reads instead of holding tasks; the reconnection retries are few
//! because the lookup's circuit breaker does the backing off.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Value};

use super::{ReadError, RecordSource, Redirect};

/// Checks that `url` is a Redis URL the client accepts (done when the configuration loads, so a
/// typo stops the gateway instead of disabling redirects).
///
/// # Errors
/// The client's description of the problem.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

/// The archive in Redis, read-only.
pub struct RedisSource {
    client: Result<Client, String>,
    key_prefix: String,
    timeout: Duration,
    manager: OnceLock<ConnectionManager>,
}

impl RedisSource {
    /// Prepares the client; nothing connects yet. `timeout` bounds each connection attempt and
    /// each command.
    pub fn new(url: &str, key_prefix: &str, timeout: Duration) -> Self {
        RedisSource {
            client: Client::open(url).map_err(|e| e.to_string()),
            key_prefix: key_prefix.to_owned(),
            timeout,
            manager: OnceLock::new(),
        }
    }

    /// The client, for the invalidation subscriber's dedicated connection.
    ///
    /// # Errors
    /// The URL did not parse.
    pub fn client(&self) -> Result<&Client, String> {
        self.client.as_ref().map_err(Clone::clone)
    }

    /// The shared connection, created (not yet connected) on first use.
    fn manager(&self) -> Result<ConnectionManager, ReadError> {
        if let Some(manager) = self.manager.get() {
            return Ok(manager.clone());
        }
        let client = self.client().map_err(ReadError::Connection)?.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ReadError::Connection(e.to_string()))?;
        // Two first lookups may race; one manager wins and the other is dropped unused.
        Ok(self.manager.get_or_init(|| manager).clone())
    }

    /// Starts connecting now (on the caller's runtime) and waits for a `PING`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn connect(&self) -> Result<(), ReadError> {
        let mut manager = self.manager()?;
        redis::cmd("PING")
            .query_async::<Value>(&mut manager)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// The invalidation channel, `{prefix}invalidate`.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.key_prefix)
    }

    fn key(&self, identifier: &str) -> String {
        format!("{}redirect:{identifier}", self.key_prefix)
    }
}

#[async_trait]
impl RecordSource for RedisSource {
    async fn read(&self, identifier: &str) -> Result<Option<Redirect>, ReadError> {
        let mut manager = self.manager()?;
        // Read as a raw value: a typed read that fails to convert would count as a protocol
        // error and drop the shared connection.
        let reply: Value = redis::cmd("HMGET")
            .arg(self.key(identifier))
            .arg("kind")
            .arg("target")
            .query_async(&mut manager)
            .await
            .map_err(classify)?;
        let fields = match reply {
            Value::Array(fields) if fields.len() == 2 => fields,
            other => {
                return Err(ReadError::InvalidRecord(format!(
                    "unexpected HMGET reply {other:?}"
                )))
            }
        };
        let kind = field_text(&fields[0], "kind")?;
        let target = field_text(&fields[1], "target")?;
        parse_record(identifier, kind.as_deref(), target.as_deref())
    }
}

/// One field of the `HMGET` reply as text (`None` when absent).
fn field_text(value: &Value, name: &str) -> Result<Option<String>, ReadError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map(Some)
            .map_err(|_| ReadError::InvalidRecord(format!("{name} is not UTF-8"))),
        Value::SimpleString(text) => Ok(Some(text.clone())),
        other => Err(ReadError::InvalidRecord(format!(
            "{name} is {other:?}, not a string"
        ))),
    }
}

/// The record of `identifier` from its `kind` and `target` fields, per `docs/redirects.md`.
///
/// # Errors
/// [`ReadError::InvalidRecord`] for an unknown kind, a missing or empty target of a move, or a
/// target equal to the identifier (a redirect to itself would loop forever).
pub fn parse_record(
    identifier: &str,
    kind: Option<&str>,
    target: Option<&str>,
) -> Result<Option<Redirect>, ReadError> {
    let moved_target = || -> Result<Arc<str>, ReadError> {
        match target {
            None | Some("") => Err(ReadError::InvalidRecord("no target".into())),
            Some(target) if target == identifier => Err(ReadError::InvalidRecord(
                "the target is the identifier itself".into(),
            )),
            Some(target) => Ok(Arc::from(target)),
        }
    };
    match kind {
        // No hash at all: the common case.
        None if target.is_none() => Ok(None),
        Some("moved") => Ok(Some(Redirect::Moved {
            target: moved_target()?,
        })),
        Some("temporary") => Ok(Some(Redirect::Temporary {
            target: moved_target()?,
        })),
        Some("gone") => Ok(Some(Redirect::Gone)),
        None => Err(ReadError::InvalidRecord("no kind".into())),
        Some(other) => Err(ReadError::InvalidRecord(format!("unknown kind {other:?}"))),
    }
}

/// Sorts a Redis error into the lookup's categories.
fn classify(error: RedisError) -> ReadError {
    if error.code() == Some("WRONGTYPE") {
        // Something else lives at this key; only this identifier is affected.
        ReadError::InvalidRecord(error.to_string())
    } else if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
        ReadError::Connection(error.to_string())
    } else {
        ReadError::Server(error.to_string())
    }
}

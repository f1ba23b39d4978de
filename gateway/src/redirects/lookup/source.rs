//! Records read from Redis: one `HMGET {prefix}redirect:{id} kind target` per lookup, over a
//! [`ConnectionManager`] (one multiplexed connection, reconnected when it drops), decoded by
//! [`idarchive::codec`] under the key layout of [`idarchive::keys`], as the store reads them.
//!
//! The manager is created on first use, on the runtime of whoever asks first (a Pingora service
//! runtime, never `main` before the fork). Connection and response timeouts are set on it, so a
//! dead or stopped Redis fails reads instead of holding tasks; the reconnection retries are few
//! because the lookup's circuit breaker does the backing off.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use idarchive::codec;
use idarchive::keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Value};

use super::{ReadError, RecordSource, Redirect};

/// The archive in Redis, read-only.
pub struct RedisSource {
    client: Result<Client, String>,
    keys: Keys,
    timeout: Duration,
    manager: OnceLock<ConnectionManager>,
}

impl RedisSource {
    /// Prepares the client; nothing connects yet. `timeout` bounds each connection attempt and
    /// each command.
    pub fn new(url: &str, key_prefix: &str, timeout: Duration) -> Self {
        RedisSource {
            client: Client::open(url).map_err(|e| e.to_string()),
            keys: Keys::new(key_prefix),
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
        self.keys.invalidate()
    }
}

#[async_trait]
impl RecordSource for RedisSource {
    async fn read(&self, identifier: &str) -> Result<Option<Redirect>, ReadError> {
        let mut manager = self.manager()?;
        // Read as a raw value: a typed read that fails to convert would count as a protocol
        // error and drop the shared connection.
        let reply: Value = redis::cmd("HMGET")
            .arg(self.keys.redirect(identifier))
            .arg(codec::KIND)
            .arg(codec::TARGET)
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
        let kind = field_text(&fields[0], codec::KIND)?;
        let target = field_text(&fields[1], codec::TARGET)?;
        codec::decode_redirect(identifier, kind.as_deref(), target.as_deref())
            .map_err(|invalid| ReadError::InvalidRecord(invalid.to_string()))
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
